"""Where the caller is, on the web: the AML receiver, the map's data, the operator's pin, EIDO.

Routes (registered by `routes()`; `install()` puts a `LocationWeb` on
``app.state.location``):

- ``POST /api/v1/aml`` — Android ELS / AML HTTPS form (ETSI TS 103 625). No
  sign-in: protected by ``[aml] allow`` (source addresses) and ``[aml] key``
  (HMAC-SHA1). Always answers 200, as ELS requires; a discarded message is
  logged with the reason.
- ``POST /api/v1/aml/sms`` — an SMS gateway's hook (form ``from``, ``body``):
  AML SMS v1/v2. Same allow-list; always 200.
- ``GET /api/v1/incidents/{id}/location`` — the incident's ``location`` JSON
  (every fix, the best on top) and the kecamatan/kelurahan it suggests.
- ``POST /api/v1/incidents/{id}/location`` — the operator places or moves the
  pin (JSON or form ``lat``, ``lon``, optional ``radius_m``): an ``operator`` fix.
- ``GET /api/v1/incidents/{id}/eido`` — NENA EIDO JSON for agency CAD systems.
- ``GET /api/v1/map`` — the map's settings (tiles, attribution) and the
  city's shipped vector data, for ``static/map.js``.

Every fix goes to one `LocationSink` (`location.sink`): the store's
(`callflow.location.StoreLocationSink`, table ``fixes``), the same the call
flow writes the INVITE's PIDF-LO through; an in-memory `FixBoard` only when
no store is given. AML fixes are matched here to the caller's live call
(`LiveCenter.snapshot()`) or a recent incident (`Store.list_incidents`)
within ``[aml] match_window_s``; unmatched ones wait in the store (incident
NULL) for the caller's call to claim them.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..callflow.location import StoreLocationSink
from ..config import Config
from ..incidents import IncidentQuery, IncidentRecord, incident_to_json
from ..location.aml import MAX_AML_BODY, AmlResult, parse_aml_form, parse_aml_sms
from ..location.areas import AreaMap, AreaMapError, parse_area_map
from ..location.eido import EIDO_MEDIA_TYPE, incident_to_eido
from ..location.fix import MAX_RADIUS_M, Fix, location_json
from ..location.match import Candidate, match_fix
from ..location.numbers import normalise_number
from ..location.sink import FixBoard, LocationSink
from ..logs import get_logger
from . import schemas
from .bodies import WebError, read_body
from .console import load_for
from .context import Call, WebContext, client_ip, guarded
from .openapi import Operation, documented

__all__ = [
    "LocationWeb",
    "content_security_policy",
    "install",
    "load_area_map",
    "routes",
]

log = get_logger("location")

MAX_RECENT = 500  # recent incidents scanned for an AML match


def load_area_map(config: Config) -> tuple[AreaMap | None, dict[str, Any] | None]:
    """The city's vector data (parsed, and as GeoJSON for the browser).

    A file named in the configuration that cannot be read stops the start
    (`AreaMapError` naming it); the default file missing only leaves the map
    without its offline layer.
    """
    path = config.path(config.map.areas)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        # A document written back by the telecom page names every key, the
        # default too: the default value, not whether it was typed, decides.
        if config.map.areas == type(config.map).model_fields["areas"].default:
            log.warning("map_areas_missing", path=str(path))
            return None, None
        raise AreaMapError(f"map.areas: cannot read {path}: {exc.strerror or exc}") from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise AreaMapError(f"map.areas: {path} is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise AreaMapError(f"map.areas: {path} is not a GeoJSON object")
    return parse_area_map(data, source=f"map.areas: {path}"), data


def content_security_policy(config: Config, base: str) -> str:
    """The page policy with the tile server's origin allowed for images."""
    url = config.map.tile_url
    if not url:
        return base
    scheme, _, rest = url.partition("://")
    host = rest.split("/", 1)[0].replace("{s}", "*")
    return base.replace("img-src 'self' data:", f"img-src 'self' data: {scheme}://{host}", 1)


@dataclass(slots=True, kw_only=True)
class LocationWeb:
    config: Config
    sink: LocationSink
    board: FixBoard | None  # the in-memory sink when there is no store
    areas: AreaMap | None
    areas_json: dict[str, Any] | None

    async def fixes(self, incident_id: str) -> list[Fix]:
        if isinstance(self.sink, StoreLocationSink):
            return await self.sink.store.fixes_for(incident_id)
        return self.board.fixes(incident_id) if self.board is not None else []

    async def deliver(
        self, fix: Fix, *, caller: str | None, incident_id: str | None, received_at: float
    ) -> None:
        """Hand a fix to the sink; with the store's, answer only after it is kept."""
        if isinstance(self.sink, StoreLocationSink):
            await self.sink.save(
                fix, caller=caller, incident_id=incident_id, received_at=received_at
            )
        else:
            self.sink.fix_received(
                fix, caller=caller, incident_id=incident_id, received_at=received_at
            )


def install(app_state: Any, config: Config, *, sink: LocationSink | None = None) -> LocationWeb:
    """Create the location web state on ``app.state.location``: fixes go to the
    store of ``app.state.web`` when it is set, else to an in-memory board."""
    board: FixBoard | None = None
    web_ctx = getattr(app_state, "web", None)
    if sink is None and web_ctx is not None:
        sink = StoreLocationSink(web_ctx.store, window_s=config.aml.match_window_s)
    if sink is None:
        board = FixBoard(window_s=config.aml.match_window_s)
        sink = board
    areas, areas_json = load_area_map(config)
    web = LocationWeb(
        config=config,
        sink=sink,
        board=board,
        areas=areas,
        areas_json=areas_json,
    )
    app_state.location = web
    return web


def _state(request: Request) -> tuple[WebContext, LocationWeb]:
    return request.app.state.web, request.app.state.location


def _allowed(config: Config, address: str) -> bool:
    nets = config.aml.networks
    if not nets:
        return True
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in nets)


async def _candidates(ctx: WebContext, now: float, window_s: float) -> list[Candidate]:
    region = ctx.config.aml.region
    snap = ctx.live.snapshot()
    live: list[tuple[str, str, float]] = [
        (c.incident_id, c.caller, c.arrived_at) for c in snap.calls
    ] + [(w.incident_id, w.caller, w.arrived_at) for w in snap.waiting]
    out = [
        Candidate(
            incident_id=incident_id,
            caller=normalise_number(caller, region=region),
            arrived_at=arrived_at,
            ended_at=None,
            live=True,
        )
        for incident_id, caller, arrived_at in live
    ]
    recent = await ctx.store.list_incidents(
        IncidentQuery(since=now - 2 * window_s), limit=MAX_RECENT
    )
    out += [
        Candidate(
            incident_id=i.id,
            caller=normalise_number(i.caller, region=region),
            arrived_at=i.arrived_at,
            ended_at=i.ended_at,
            live=False,
        )
        for i in recent
    ]
    return out


async def _deliver(request: Request, result: AmlResult, kind: str) -> Response:
    ctx, loc = _state(request)
    if result.discarded is not None or result.fix is None:
        log.warning("aml_discarded", kind=kind, source=client_ip(request), reason=result.discarded)
        return Response(status_code=200)
    now = ctx.now()
    window = ctx.config.aml.match_window_s
    incident_id = match_fix(
        result.caller, now, await _candidates(ctx, now, window), window_s=window
    )
    for note in result.notes:
        log.info("aml_note", kind=kind, caller=result.caller, note=note)
    log.info(
        "aml_fix",
        kind=kind,
        caller=result.caller,
        incident_id=incident_id,
        valid=result.fix.valid,
        reason=result.fix.reason,
    )
    await loc.deliver(result.fix, caller=result.caller, incident_id=incident_id, received_at=now)
    return Response(status_code=200)


@documented(
    Operation(
        summary="Receive an Advanced Mobile Location message (Android ELS HTTPS form).",
        description="No sign-in: `[aml] allow` source addresses and `[aml] key` HMAC-SHA1 over "
        "the text before `&hmac=`. ETSI TS 103 625.",
        body=schemas.AmlForm,
        body_media="application/x-www-form-urlencoded",
        answer_description="Always, also when the message was discarded (logged).",
        public=True,
    )
)
async def aml_https(request: Request) -> Response:
    """ELS/AML HTTPS POST: always 200; discarded messages are logged with the reason."""
    ctx, _ = _state(request)
    if not _allowed(ctx.config, client_ip(request)):
        log.warning("aml_discarded", kind="https", source=client_ip(request), reason="not allowed")
        return Response(status_code=200)
    try:
        body = await read_body(request, limit=MAX_AML_BODY)
    except WebError as exc:
        log.warning("aml_discarded", kind="https", source=client_ip(request), reason=exc.message)
        return Response(status_code=200)
    key = ctx.config.aml.key.encode("utf-8") if ctx.config.aml.key else None
    result = parse_aml_form(body, key=key, now=ctx.now(), region=ctx.config.aml.region)
    return await _deliver(request, result, "https")


@documented(
    Operation(
        summary="An SMS gateway hands over an AML SMS (v1 or v2) as form fields from, body.",
        description="No sign-in: `[aml] allow` source addresses.",
        body=schemas.AmlSmsForm,
        body_media="application/x-www-form-urlencoded",
        answer_description="Always, also when the message was discarded (logged).",
        public=True,
    )
)
async def aml_sms(request: Request) -> Response:
    """An SMS gateway hands over an AML SMS (form ``from``, ``body``): always 200."""
    ctx, _ = _state(request)
    if not _allowed(ctx.config, client_ip(request)):
        log.warning("aml_discarded", kind="sms", source=client_ip(request), reason="not allowed")
        return Response(status_code=200)
    try:
        body = await read_body(request, limit=MAX_AML_BODY * 2)
        form = parse_qs(body.decode("utf-8"), max_num_fields=16, keep_blank_values=True)
    except (WebError, UnicodeDecodeError, ValueError) as exc:
        reason = exc.message if isinstance(exc, WebError) else f"not a form: {exc}"[:120]
        log.warning("aml_discarded", kind="sms", source=client_ip(request), reason=reason)
        return Response(status_code=200)
    sender = (form.get("from") or [""])[0]
    text = (form.get("body") or [""])[0]
    result = parse_aml_sms(text, sender=sender, now=ctx.now(), region=ctx.config.aml.region)
    return await _deliver(request, result, "sms")


async def _incident_for(call: Call, incident_id: str) -> IncidentRecord:
    if call.who.role == "operator":
        handled, _ = await load_for(call, incident_id)
        return handled
    record = await call.ctx.store.get_incident(incident_id)
    if record is None:
        raise WebError(404, f"no incident {incident_id!r}"[:120])
    return record


async def _location_answer(loc: LocationWeb, incident_id: str) -> dict[str, object]:
    body = location_json(await loc.fixes(incident_id))
    suggestion = None
    lat, lon = body.get("lat"), body.get("lon")
    if loc.areas is not None and isinstance(lat, float) and isinstance(lon, float):
        found = loc.areas.suggest(lat, lon)
        suggestion = None if found is None else found.to_json()
    return {"incident_id": incident_id, "location": body, "suggestion": suggestion}


@documented(
    Operation(
        summary="The incident's location: every fix, the best on top, the area it suggests.",
        description="Roles: operator (their own incidents), supervisor, auditor, admin.",
        answer=schemas.IncidentLocation,
        answer_description="The location.",
        errors=(401, 403, 404),
    )
)
@guarded("operator", "supervisor", "auditor")
async def get_location(call: Call) -> Response:
    incident_id = call.param("incident_id")
    await _incident_for(call, incident_id)
    return JSONResponse(await _location_answer(call.request.app.state.location, incident_id))


def _required(value: float | None, name: str) -> float:
    if value is None:
        raise WebError(400, f"{name}: required")
    return value


@documented(
    Operation(
        summary="The operator places or moves the pin (an `operator` fix, audit-logged).",
        description="Roles: operator (their own incidents), supervisor, admin.",
        body=schemas.PinBody,
        status=201,
        answer=schemas.IncidentLocation,
        answer_description="The location after the pin.",
        errors=(400, 401, 403, 404, 413, 415, 422),
    )
)
@guarded("operator", "supervisor")
async def place_pin(call: Call) -> Response:
    """The operator places or moves the pin: an `operator` fix for this incident."""
    incident_id = call.param("incident_id")
    record = await _incident_for(call, incident_id)
    call.payload.only({"lat", "lon", "radius_m"})
    lat = _required(call.payload.number("lat", low=-90, high=90), "lat")
    lon = _required(call.payload.number("lon", low=-180, high=180), "lon")
    radius = call.payload.number("radius_m", low=0, high=MAX_RADIUS_M)
    loc: LocationWeb = call.request.app.state.location
    fix = Fix.position(
        lat=lat,
        lon=lon,
        radius_m=radius,
        source="operator",
        at=call.now(),
        shape="pin",
        caller=normalise_number(record.incident.caller, region=call.ctx.config.aml.region),
    )
    await loc.deliver(fix, caller=fix.caller, incident_id=incident_id, received_at=fix.at)
    await call.ctx.audit(
        call.who, "location_pin", incident_id, {"lat": lat, "lon": lon, "radius_m": radius}
    )
    return JSONResponse(await _location_answer(loc, incident_id), status_code=201)


@documented(
    Operation(
        summary="The incident as NENA EIDO JSON (NENA-STA-021) for agency CAD systems.",
        description="Roles: supervisor, auditor, admin.",
        answer=schemas.Eido,
        answer_media=EIDO_MEDIA_TYPE,
        answer_description="The EIDO document.",
        errors=(401, 403, 404),
    )
)
@guarded("supervisor", "auditor")
async def get_eido(call: Call) -> Response:
    incident_id = call.param("incident_id")
    record = await _incident_for(call, incident_id)
    loc: LocationWeb = call.request.app.state.location
    incident = incident_to_json(record)
    incident.setdefault("location", location_json(await loc.fixes(incident_id)))
    host = call.request.url.hostname or "localhost"
    return JSONResponse(incident_to_eido(incident, centre=host), media_type=EIDO_MEDIA_TYPE)


@documented(
    Operation(
        summary="The map's tile server, attribution and the city's shipped vector data.",
        description="Roles: operator, supervisor, auditor, admin.",
        answer=schemas.MapSettings,
        answer_description="Map settings.",
        errors=(401, 403),
    )
)
@guarded("operator", "supervisor", "auditor")
async def map_settings(call: Call) -> Response:
    loc: LocationWeb = call.request.app.state.location
    return JSONResponse(
        {
            "tile_url": call.ctx.config.map.tile_url or None,
            "attribution": call.ctx.config.map.attribution,
            "areas": loc.areas_json,
        }
    )


def routes() -> list[Route]:
    v1 = "/api/v1"
    return [
        Route(f"{v1}/aml", aml_https, methods=["POST"]),
        Route(f"{v1}/aml/sms", aml_sms, methods=["POST"]),
        Route(f"{v1}/incidents/{{incident_id}}/location", get_location, methods=["GET"]),
        Route(f"{v1}/incidents/{{incident_id}}/location", place_pin, methods=["POST"]),
        Route(f"{v1}/incidents/{{incident_id}}/eido", get_eido, methods=["GET"]),
        Route(f"{v1}/map", map_settings, methods=["GET"]),
    ]
