"""Changing the centre from the web: trunks and agencies, people, prompts; the SIP ladder.

Who may do what:

- **telecom** (and admin): edit trunks and agencies, roll back to an earlier
  version, probe a trunk (OPTIONS with its round-trip time), place a test
  call, read the per-trunk counters, read an incident's SIP ladder and
  download it as a pcap;
- **auditor**: the ladder and the pcap too (evidence of what crossed the
  wire);
- **supervisor**: people — add an operator, reset a softphone password, set
  skills, disable an account;
- **admin**: prompts — upload a recording, hear it converted, apply it, roll
  it back.

Every change goes through the seams in `admin` (`ConfigAdmin`,
`TrunkTools`, `CaptureSource`, `PromptAdmin`) found on
``app.state.telecom`` (a `TelecomServices`): a proposal is a whole
configuration document, validated by `parse_config` (a bad form names the
key and changes nothing), applied live and audited with the diff (secrets
hidden). A seam that is not wired answers 503.

`WebConfigFollower` keeps the web's own view (accounts, the configuration
shown) in step with every applied configuration: register it with the
centre's `LiveConfig`.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import tomllib
from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from ..admin import (
    PROMPT_NAME,
    ConfigAdmin,
    NewPassword,
    PromptAdmin,
    PromptUploadError,
    TelecomServices,
    config_document,
    new_softphone_password,
    softphone_secret,
)
from ..config import SKILLS, Config, ConfigError, ConfigProblem, parse_config
from ..config_diff import ConfigDiff, diff_configs
from ..config_source import ConfigVersion
from ..runtime_config import ReloadResult
from ..sip.capture import CapturedMessage, ladder, to_pcap
from . import schemas
from .auth import Directory, csrf_matches, hash_password
from .bodies import WebError, read_body
from .context import Call, WebContext, authenticate, guarded
from .ladder import ladder_svg
from .openapi import Operation, documented

__all__ = ["MAX_PROMPT_UPLOAD", "WebConfigFollower", "routes"]

# A recorded prompt is seconds long; 10 MB holds minutes of 48 kHz stereo WAV.
MAX_PROMPT_UPLOAD = 10 * 1024 * 1024
_TRUNK_FIELDS = ("allow", "numbers", "proxy", "transport", "caller_id", "auth_user")
_AGENCY_FIELDS = ("number", "trunk", "label", "ring_timeout_s")
_ROW_INDEX = re.compile(r"^(trunk|agency|operator|user)\[(\d+)\]")
_VERSIONS_SHOWN = 20
_ROW_KEY = {"trunk": "name", "agency": "name", "operator": "user", "user": "name"}


class WebConfigFollower:
    """A `ConfigListener` for the web layer: new accounts sign in, removed ones cannot."""

    def __init__(self, ctx: WebContext, *, scrypt_n: int | None = None) -> None:
        self.ctx = ctx
        self.scrypt_n = scrypt_n

    def check_config(self, new: Config, diff: ConfigDiff) -> list[ConfigProblem]:
        return []

    def apply_config(self, new: Config, diff: ConfigDiff) -> None:
        self.ctx.config = new
        if diff.sections() & {"operator", "user"}:
            extra = {} if self.scrypt_n is None else {"scrypt_n": self.scrypt_n}
            self.ctx.directory = Directory(users=new.user, operators=new.operator, **extra)


# --------------------------------------------------------------------------- seams


def _services(request: Request) -> TelecomServices:
    found = getattr(request.app.state, "telecom", None)
    return found if isinstance(found, TelecomServices) else TelecomServices()


def _config_admin(call: Call) -> ConfigAdmin:
    admin = _services(call.request).config
    if admin is None:
        raise WebError(503, "live configuration is not available on this node")
    return admin


def _name_rows(problems: tuple[str, ...], document: dict[str, Any]) -> list[str]:
    """`trunk[0].allow: …` → `trunk[telkom].allow: …`: the row a person edited."""
    out = []
    for given in problems:
        problem = given
        m = _ROW_INDEX.match(problem)
        if m:
            rows = document.get(m.group(1))
            i = int(m.group(2))
            if isinstance(rows, list) and i < len(rows) and isinstance(rows[i], dict):
                ident = rows[i].get(_ROW_KEY[m.group(1)])
                if ident:
                    problem = f"{m.group(1)}[{ident}]" + problem[m.end() :]
        out.append(problem)
    return out


async def _propose(
    call: Call, document: dict[str, Any], *, action: str, target: str
) -> ReloadResult:
    """Apply a document and audit the outcome (refusals too: who tried what)."""
    admin = _config_admin(call)
    result = await admin.propose(document, actor=call.who.user)
    if not result.ok:
        problems = _name_rows(result.problems, document)
        await call.ctx.audit(
            call.who, f"{action}_refused", target, {"problems": problems, "source": "web"}
        )
        raise WebError(422, "nothing changed: " + "; ".join(problems))
    await call.ctx.audit(call.who, action, target, result.audit_detail())
    return result


def _lines(text: str | None) -> list[str]:
    """A textarea or a comma list: one value per line or comma."""
    if not text:
        return []
    return [v.strip() for v in re.split(r"[\n,]", text) if v.strip()]


def _version_changes(versions: list[ConfigVersion]) -> dict[int, list[str]]:
    """What each version changed from the one before it (secrets hidden)."""
    parsed: dict[int, Config | None] = {}
    for v in versions:
        try:
            parsed[v.version] = parse_config(tomllib.loads(v.text), source=f"version {v.version}")
        except (ConfigError, tomllib.TOMLDecodeError):
            parsed[v.version] = None
    out: dict[int, list[str]] = {}
    for newer, older in itertools.pairwise(versions):
        a, b = parsed[older.version], parsed[newer.version]
        if a is not None and b is not None:
            out[newer.version] = diff_configs(a, b).lines()
    return out


async def _config_view(call: Call) -> dict[str, Any]:
    services = _services(call.request)
    admin = services.config
    config = admin.current() if admin is not None else call.ctx.config
    versions = await admin.versions() if admin is not None else []
    return {
        "config": config,
        "versions": versions,
        "changes": _version_changes(versions[:_VERSIONS_SHOWN]),
        "conflict": await admin.conflict() if admin is not None else None,
        "health": services.trunks.health() if services.trunks is not None else {},
        "wired": admin is not None,
        "tools": services.trunks is not None,
    }


# --------------------------------------------------------------------------- trunks, agencies


@guarded("telecom")
async def config_page(call: Call) -> Response:
    return call.page("telecom_config.html", **(await _config_view(call)))


@guarded("telecom")
async def save_trunk(call: Call) -> Response:
    p = call.payload
    p.only(("original", "name", *_TRUNK_FIELDS, "auth_password"))
    document = config_document(_config_admin(call).current())
    name, original, rows, row = _edited_row(call, document, "trunk")
    new: dict[str, Any] = dict(row or {})
    new["name"] = name
    new["allow"] = _lines(p.text("allow"))
    new["numbers"] = _lines(p.text("numbers")) or ["112"]
    for key in ("proxy", "caller_id", "auth_user"):
        value = p.text(key)
        if value:
            new[key] = value
        else:
            new.pop(key, None)
    new["transport"] = p.text("transport") or "udp"
    secret = p.secret("auth_password")
    if secret:
        new["auth_password"] = secret
    if row is None:
        rows.append(new)
    else:
        rows[rows.index(row)] = new
        if original and original != name:
            for agency in document.get("agency", []):
                if agency.get("trunk") == original:
                    agency["trunk"] = name
    result = await _propose(call, document, action="trunk_changed", target=f"trunk:{name}")
    return call.done("/telecom/config", **result.to_json())


async def _remove_row(call: Call, section: str) -> Response:
    name = call.param("name")
    document = config_document(_config_admin(call).current())
    rows = document.get(section, [])
    if not any(r.get("name") == name for r in rows):
        raise WebError(404, f"no {section} {name!r}")
    document[section] = [r for r in rows if r.get("name") != name]
    result = await _propose(call, document, action=f"{section}_removed", target=f"{section}:{name}")
    return call.done("/telecom/config", **result.to_json())


def _edited_row(
    call: Call, document: dict[str, Any], section: str
) -> tuple[str, str | None, list[dict[str, Any]], dict[str, Any] | None]:
    """(name, original name, the section's rows, the row being edited or None for a new one)."""
    original = call.payload.text("original")
    name = call.payload.text("name", required=True) or ""
    rows: list[dict[str, Any]] = document.setdefault(section, [])
    row = next((r for r in rows if r.get("name") == (original or name)), None)
    if original and row is None:
        raise WebError(404, f"no {section} {original!r}")
    if not original and row is not None:
        raise WebError(409, f"{section} {name!r} already exists; edit it instead")
    return name, original, rows, row


@guarded("telecom")
async def delete_trunk(call: Call) -> Response:
    return await _remove_row(call, "trunk")


@guarded("telecom")
async def save_agency(call: Call) -> Response:
    p = call.payload
    p.only(("original", "name", *_AGENCY_FIELDS))
    document = config_document(_config_admin(call).current())
    name, _, rows, row = _edited_row(call, document, "agency")
    new: dict[str, Any] = dict(row or {})
    new.update(
        name=name,
        number=p.text("number") or "",
        trunk=p.text("trunk") or "",
        label=p.text("label") or "",
    )
    timeout = p.text("ring_timeout_s")
    if timeout:
        try:
            new["ring_timeout_s"] = float(timeout)
        except ValueError:
            reason = f"agency[{name}].ring_timeout_s: {timeout!r} is not a number"
            raise WebError(422, reason) from None
    if row is None:
        rows.append(new)
    else:
        rows[rows.index(row)] = new
    result = await _propose(call, document, action="agency_changed", target=f"agency:{name}")
    return call.done("/telecom/config", **result.to_json())


@guarded("telecom")
async def delete_agency(call: Call) -> Response:
    return await _remove_row(call, "agency")


@guarded("telecom")
async def rollback(call: Call) -> Response:
    call.payload.only(("version",))
    text = call.payload.text("version", required=True) or ""
    if not text.isdigit():
        raise WebError(400, "version: expected a number")
    admin = _config_admin(call)
    result = await admin.rollback(int(text), actor=call.who.user)
    if not result.ok:
        await call.ctx.audit(
            call.who, "config_rollback_refused", f"version:{text}", result.audit_detail()
        )
        raise WebError(422, "nothing changed: " + "; ".join(result.problems))
    await call.ctx.audit(call.who, "config_rollback", f"version:{text}", result.audit_detail())
    return call.done("/telecom/config", **result.to_json())


@guarded("telecom")
async def probe_trunk(call: Call) -> Response:
    tools = _services(call.request).trunks
    if tools is None:
        raise WebError(503, "trunk tools are not available on this node")
    name = call.param("name")
    if _config_admin(call).current().trunk_named(name) is None:
        raise WebError(404, f"no trunk {name!r}")
    result = await tools.probe(name)
    await call.ctx.audit(call.who, "trunk_probe", f"trunk:{name}", result.to_json())
    return JSONResponse(result.to_json())


@guarded("telecom")
async def test_call(call: Call) -> Response:
    tools = _services(call.request).trunks
    if tools is None:
        raise WebError(503, "trunk tools are not available on this node")
    call.payload.only(("target",))
    target = call.payload.text("target", required=True, max_len=64) or ""
    config = _config_admin(call).current()
    known = config.agency_named(target) is not None or any(
        target in t.numbers for t in config.trunk
    )
    if not known:
        raise WebError(404, f"{target!r} is neither an agency nor a configured number")
    result = await tools.test_call(target)
    await call.ctx.audit(call.who, "trunk_test_call", target, result.to_json())
    return JSONResponse(result.to_json())


@documented(
    Operation(
        summary="Each trunk's qualify state and its counters, today and the last hour.",
        description="Roles: telecom, supervisor.",
        answer=schemas.TrunkHealthList,
        answer_description="Trunks by name.",
        errors=(401, 403),
    )
)
@guarded("telecom", "supervisor")
async def trunk_health(call: Call) -> Response:
    tools = _services(call.request).trunks
    return JSONResponse({"trunks": tools.health() if tools is not None else {}})


# --------------------------------------------------------------------------- SIP ladder


async def _messages(call: Call) -> tuple[str, list[CapturedMessage]]:
    captures = _services(call.request).captures
    if captures is None:
        raise WebError(503, "SIP capture is not available on this node")
    incident_id = call.param("incident_id")
    return incident_id, await captures.messages(incident_id)


@guarded("telecom", "auditor")
async def ladder_lookup(call: Call) -> Response:
    incident_id = (call.request.query_params.get("incident") or "").strip()
    if not incident_id:
        raise WebError(400, "incident: required")
    return RedirectResponse(f"/telecom/incidents/{quote(incident_id, safe='')}/sip", 303)


@guarded("telecom", "auditor")
async def ladder_page(call: Call) -> Response:
    incident_id, messages = await _messages(call)
    record = await call.ctx.store.get_incident(incident_id)
    if record is None and not messages:
        raise WebError(404, f"no incident {incident_id!r}")
    diagram = ladder(messages)

    def stamp(t: float) -> str:
        return call.ctx.local_time(t, "%H:%M:%S") + f".{int(t * 1000) % 1000:03d}"

    await call.ctx.audit(call.who, "sip_ladder", incident_id, {"messages": len(messages)})
    return call.page(
        "telecom_ladder.html",
        incident_id=incident_id,
        svg=ladder_svg(diagram, clock=stamp),
        rows=[(row, messages[row.index], stamp(row.at)) for row in diagram.rows],
        columns=diagram.columns,
    )


@documented(
    Operation(
        summary="Every SIP message kept for the incident, as a pcap Wireshark opens.",
        description="Roles: telecom, auditor. Audit-logged as sip_pcap_download; secrets "
        "(digest responses, SDES keys) are masked.",
        answer_media="application/vnd.tcpdump.pcap",
        answer_description="A libpcap file (raw IP, one UDP datagram per message).",
        errors=(401, 403, 404, 503),
    )
)
@guarded("telecom", "auditor")
async def ladder_pcap(call: Call) -> Response:
    incident_id, messages = await _messages(call)
    if not messages:
        raise WebError(404, f"no SIP messages kept for incident {incident_id!r}")
    data = to_pcap(messages)
    await call.ctx.audit(
        call.who, "sip_pcap_download", incident_id, {"messages": len(messages), "bytes": len(data)}
    )
    return Response(
        data,
        media_type="application/vnd.tcpdump.pcap",
        headers={"Content-Disposition": f'attachment; filename="{incident_id}-sip.pcap"'},
    )


# --------------------------------------------------------------------------- people


def _operator_rows(document: dict[str, Any]) -> list[dict[str, Any]]:
    rows = document.setdefault("operator", [])
    assert isinstance(rows, list)
    return rows


def _skills(call: Call) -> list[str]:
    skills = call.payload.texts("skills", max_items=len(SKILLS))
    bad = [s for s in skills if s not in SKILLS]
    if bad:
        raise WebError(422, f"skills: unknown {', '.join(bad)} (one of {', '.join(SKILLS)})")
    return skills


@guarded("supervisor")
async def people_page(call: Call) -> Response:
    admin = _config_admin(call)
    return call.page("people.html", config=admin.current(), skills=SKILLS, new_password=None)


async def _password_answer(call: Call, shown: NewPassword) -> Response:
    if call.wants_json:
        return JSONResponse({"ok": True, "user": shown.user, "password": shown.password})
    # Shown once, on this response only; nothing keeps it.
    return call.page(
        "people.html",
        config=_config_admin(call).current(),
        skills=SKILLS,
        new_password=shown,
    )


@guarded("supervisor")
async def add_operator(call: Call) -> Response:
    p = call.payload
    p.only(("user", "name", "skills", "takes_calls"))
    admin = _config_admin(call)
    config = admin.current()
    user = p.text("user", required=True, max_len=64) or ""
    if config.operator_named(user) is not None:
        raise WebError(409, f"operator {user!r} already exists")
    document = config_document(config)
    password = new_softphone_password()
    row: dict[str, Any] = {
        "user": user,
        "name": p.text("name") or "",
        "skills": _skills(call) or list(SKILLS),
        "takes_calls": p.flag("takes_calls", default=True),
        **softphone_secret(user, config.sip.realm, password),
        # The console checks its own scrypt hash, never the SIP HA1.
        "web_password_hash": await asyncio.to_thread(hash_password, password),
    }
    _operator_rows(document).append(row)
    result = await _propose(call, document, action="operator_added", target=f"operator:{user}")
    return await _password_answer(call, NewPassword(user=user, password=password, result=result))


def _operator_document(call: Call) -> tuple[str, dict[str, Any], dict[str, Any]]:
    admin = _config_admin(call)
    user = call.param("user")
    document = config_document(admin.current())
    row = next((r for r in _operator_rows(document) if r.get("user") == user), None)
    if row is None:
        raise WebError(404, f"no operator {user!r}")
    return user, document, row


@guarded("supervisor")
async def reset_password(call: Call) -> Response:
    user, document, row = _operator_document(call)
    password = new_softphone_password()
    for key in ("password", "ha1_md5", "ha1_sha256", "web_password_hash"):
        row.pop(key, None)
    row.update(softphone_secret(user, _config_admin(call).current().sip.realm, password))
    row["web_password_hash"] = await asyncio.to_thread(hash_password, password)
    result = await _propose(call, document, action="password_reset", target=f"operator:{user}")
    return await _password_answer(call, NewPassword(user=user, password=password, result=result))


@guarded("supervisor")
async def set_skills(call: Call) -> Response:
    call.payload.only(("skills",))
    user, document, row = _operator_document(call)
    skills = _skills(call)
    if not skills:
        raise WebError(422, f"operator[{user}].skills: choose at least one skill")
    row["skills"] = skills
    result = await _propose(call, document, action="skills_set", target=f"operator:{user}")
    return call.done("/people", **result.to_json())


@guarded("supervisor")
async def disable_operator(call: Call) -> Response:
    """Remove the account: the centre lets a call in progress finish, then signs them out."""
    user, document, _ = _operator_document(call)
    document["operator"] = [r for r in _operator_rows(document) if r.get("user") != user]
    for account in document.get("user", []):
        if account.get("sip_user") == user:
            account.pop("sip_user", None)
    result = await _propose(call, document, action="operator_disabled", target=f"operator:{user}")
    return call.done("/people", **result.to_json())


# --------------------------------------------------------------------------- prompts


def _prompt_admin(request: Request) -> PromptAdmin:
    prompts = _services(request).prompts
    if prompts is None:
        raise WebError(503, "prompt management is not available on this node")
    return prompts


@guarded("admin")
async def prompts_page(call: Call) -> Response:
    prompts = _prompt_admin(call.request)
    entries = await asyncio.to_thread(prompts.list)
    return call.page("prompts.html", prompts=entries)


async def upload_prompt(request: Request) -> Response:
    """PUT the recording as the raw body (`?name=id/greeting&filename=x.mp3`).

    The form body reader takes 64 KiB of text; a recording is megabytes of
    audio, so this endpoint checks sign-in, role and CSRF itself and reads
    the body under `MAX_PROMPT_UPLOAD`."""
    ctx: WebContext = request.app.state.web
    found = authenticate(ctx, request)
    if found is None:
        raise WebError(401, "sign in first")
    who, session = found
    if not who.may(("admin",)):  # admin only, like `guarded("admin")`
        raise WebError(403, f"role {who.role} may not upload prompts")
    if session is not None and not csrf_matches(session.csrf, request.headers.get("x-csrf-token")):
        raise WebError(403, "CSRF token missing or wrong; reload the page")
    name = request.query_params.get("name", "")
    filename = request.query_params.get("filename", "")
    if not PROMPT_NAME.match(name):
        raise WebError(422, f"name: {name!r} is not id/<prompt> or en/<prompt>")
    data = await read_body(request, limit=MAX_PROMPT_UPLOAD)
    if not data:
        raise WebError(422, "the recording is empty")
    prompts = _prompt_admin(request)
    try:
        preview = await asyncio.to_thread(prompts.upload, name, data, filename)
    except PromptUploadError as exc:
        raise WebError(422, str(exc)) from None
    await ctx.audit(
        who, "prompt_uploaded", name, {"filename": filename, "bytes": len(data), "preview": True}
    )
    return JSONResponse(
        {
            "ok": True,
            "preview_id": preview.preview_id,
            "name": preview.name,
            "seconds": round(preview.seconds, 2),
            "preview_url": f"/prompts/preview/{preview.preview_id}.wav",
        }
    )


@guarded("admin")
async def preview_prompt(call: Call) -> Response:
    from .audio import pcm_plan, read_output

    preview = _prompt_admin(call.request).preview(call.param("preview_id"))
    if preview is None:
        raise WebError(404, "no such preview (upload again)")

    def decode() -> bytes:
        plan = pcm_plan(preview.path)
        with preview.path.open("rb") as f:
            return read_output(plan, f, 0, plan.total - 1)

    # A-law on disk; browsers play linear PCM only.
    return Response(await asyncio.to_thread(decode), media_type="audio/wav")


@guarded("admin")
async def apply_prompt(call: Call) -> Response:
    call.payload.only(("preview_id",))
    preview_id = call.payload.text("preview_id", required=True) or ""
    prompts = _prompt_admin(call.request)
    try:
        entry = await asyncio.to_thread(prompts.apply, preview_id, actor=call.who.user)
    except PromptUploadError as exc:
        raise WebError(404, str(exc)) from None
    await call.ctx.audit(call.who, "prompt_applied", entry.name, {"seconds": entry.seconds})
    return call.done("/prompts", name=entry.name)


@guarded("admin")
async def rollback_prompt(call: Call) -> Response:
    call.payload.only(("name",))
    name = call.payload.text("name", required=True) or ""
    prompts = _prompt_admin(call.request)
    try:
        entry = await asyncio.to_thread(prompts.rollback, name, actor=call.who.user)
    except PromptUploadError as exc:
        raise WebError(409, str(exc)) from None
    await call.ctx.audit(call.who, "prompt_rolled_back", entry.name, {"seconds": entry.seconds})
    return call.done("/prompts", name=entry.name)


def routes() -> list[Route]:
    return [
        Route("/telecom/config", config_page, methods=["GET"]),
        Route("/telecom/config/trunk", save_trunk, methods=["POST"]),
        Route("/telecom/config/trunk/{name}/delete", delete_trunk, methods=["POST"]),
        Route("/telecom/config/agency", save_agency, methods=["POST"]),
        Route("/telecom/config/agency/{name}/delete", delete_agency, methods=["POST"]),
        Route("/telecom/config/rollback", rollback, methods=["POST"]),
        Route("/telecom/trunks/{name}/probe", probe_trunk, methods=["POST"]),
        Route("/telecom/test-call", test_call, methods=["POST"]),
        Route("/api/v1/trunks/health", trunk_health, methods=["GET"]),
        Route("/telecom/ladder", ladder_lookup, methods=["GET"]),
        Route("/telecom/incidents/{incident_id}/sip", ladder_page, methods=["GET"]),
        Route("/api/v1/incidents/{incident_id}/sip.pcap", ladder_pcap, methods=["GET"]),
        Route("/people", people_page, methods=["GET"]),
        Route("/people/operators", add_operator, methods=["POST"]),
        Route("/people/operators/{user}/password", reset_password, methods=["POST"]),
        Route("/people/operators/{user}/skills", set_skills, methods=["POST"]),
        Route("/people/operators/{user}/disable", disable_operator, methods=["POST"]),
        Route("/prompts", prompts_page, methods=["GET"]),
        Route("/prompts/upload", upload_prompt, methods=["PUT"]),
        Route("/prompts/preview/{preview_id}.wav", preview_prompt, methods=["GET"]),
        Route("/prompts/apply", apply_prompt, methods=["POST"]),
        Route("/prompts/rollback", rollback_prompt, methods=["POST"]),
    ]
