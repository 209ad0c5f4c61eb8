"""What every web request shares: the context, sign-in checks, CSRF, rendering, errors.

`WebContext` holds the running centre's seams (config, store, live centre,
clock) and the web layer's own state (accounts, sessions, lockout, areas,
templates). It lives on ``app.state.web``.

`guarded(*roles)` wraps a handler ``async def handler(call: Call) -> Response``
into a Starlette endpoint that

1. finds who is asking — a bearer API token, or the session cookie; nobody:
   401 for the API, a redirect to the sign-in page for browsers;
2. checks the role (admin may do everything): 403 otherwise;
3. reads a write's body under the size limit (413) and checks its CSRF token
   (header ``X-CSRF-Token`` or form field ``csrf_token``, constant-time) when
   the request rides on a session cookie: 403 otherwise.

Errors are one type (`bodies.WebError`) plus the seams' own (`ControlError`,
`IncidentError`, `StoreError`), each carrying its HTTP status; `error_response`
answers JSON ``{"error": ...}`` to API clients and an error page to people.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import jinja2
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from ..config import Config
from ..incidents import IncidentError, format_timestamp
from ..live import ControlError, LiveCenter
from ..logs import get_logger
from ..records import Store, StoreError
from .areas import CityAreas
from .auth import (
    Directory,
    LoginGuard,
    Principal,
    Role,
    Session,
    SessionStore,
    TokenRing,
    csrf_matches,
    hash_api_token,
)
from .bodies import Payload, WebError

__all__ = [
    "CLOSE_STREAM",
    "NAV",
    "SESSION_COOKIE",
    "Call",
    "Handler",
    "MetricsTokenGate",
    "WebContext",
    "authenticate",
    "client_ip",
    "error_response",
    "guarded",
    "is_https",
    "make_templates",
    "metrics_token_ok",
    "uvicorn_tls_options",
    "wants_json",
]

SESSION_COOKIE = "cc112_session"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_WAVEFORM_CACHE = 64  # waveform pictures kept (recordings are immutable once sealed)

log = get_logger("web")


@dataclass(frozen=True, slots=True, kw_only=True)
class NavItem:
    href: str
    label_id: str
    label_en: str
    roles: frozenset[Role]


NAV: tuple[NavItem, ...] = (
    NavItem(href="/console", label_id="Konsol", label_en="Console", roles=frozenset({"operator"})),
    NavItem(
        href="/wallboard",
        label_id="Papan Pantau",
        label_en="Wallboard",
        roles=frozenset({"supervisor"}),
    ),
    NavItem(
        href="/reports", label_id="Laporan", label_en="Reports", roles=frozenset({"supervisor"})
    ),
    NavItem(href="/audit", label_id="Audit", label_en="Audit", roles=frozenset({"auditor"})),
    NavItem(
        href="/telecom",
        label_id="Telekom",
        label_en="Telecom",
        roles=frozenset({"supervisor", "telecom"}),
    ),
    NavItem(href="/people", label_id="Petugas", label_en="People", roles=frozenset({"supervisor"})),
    NavItem(  # issue 12
        href="/watchlist",
        label_id="Daftar Pantau",
        label_en="Watch list",
        roles=frozenset({"supervisor"}),
    ),
    NavItem(href="/prompts", label_id="Rekaman", label_en="Prompts", roles=frozenset({"admin"})),
)


@dataclass(slots=True, kw_only=True)
class WebContext:
    config: Config
    store: Store
    live: LiveCenter
    recordings_dir: Path
    clock: Callable[[], float]
    directory: Directory
    sessions: SessionStore
    guard: LoginGuard
    tokens: TokenRing
    areas: CityAreas
    templates: jinja2.Environment
    zone: ZoneInfo
    # Live event streams open now; `close_streams` ends them at shutdown.
    streams: set[asyncio.Queue[object]] = field(default_factory=set)
    closing: bool = False
    # Password checks run in threads; at most this many at once (scrypt is CPU).
    verify_slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(2))
    waveforms: OrderedDict[str, str] = field(default_factory=OrderedDict)
    # Live streams open per account (`web.max_streams_per_account`).
    stream_counts: dict[str, int] = field(default_factory=dict)

    def now(self) -> float:
        return self.clock()

    def local_midnight(self, now: float) -> float:
        """Start of the centre's local day containing `now` (Ambon: WIT, UTC+9)."""
        local = datetime.fromtimestamp(now, self.zone)
        return local.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()

    def local_time(self, t: float | None, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
        if t is None:
            return "—"
        return datetime.fromtimestamp(t, self.zone).strftime(fmt)

    async def audit(
        self, who: Principal | str, action: str, target: str, detail: Mapping[str, object]
    ) -> None:
        actor = who if isinstance(who, str) else who.user
        await self.store.audit(
            actor=actor,
            action=action,
            target=target,
            detail={**detail, "via": "web"},
            at=self.now(),
        )

    def cache_waveform(self, key: str, svg: str) -> None:
        self.waveforms[key] = svg
        while len(self.waveforms) > _WAVEFORM_CACHE:
            self.waveforms.popitem(last=False)

    def take_stream(self, account: str) -> bool:
        """Count one more live stream for `account`; False when at its cap (issue 11:
        a leaked session must not open streams until the server runs out)."""
        held = self.stream_counts.get(account, 0)
        if held >= self.config.web.max_streams_per_account:
            return False
        self.stream_counts[account] = held + 1
        return True

    def release_stream(self, account: str) -> None:
        held = self.stream_counts.get(account, 0) - 1
        if held > 0:
            self.stream_counts[account] = held
        else:
            self.stream_counts.pop(account, None)

    def close_streams(self) -> None:
        """Tell every open event stream to end (the server is stopping)."""
        self.closing = True
        for queue in list(self.streams):
            with suppress(asyncio.QueueFull):
                queue.put_nowait(CLOSE_STREAM)

    # -- rendering

    def render(self, name: str, **values: Any) -> str:
        return self.templates.get_template(name).render(**values)

    def page(
        self,
        request: Request,
        name: str,
        *,
        who: Principal | None,
        session: Session | None,
        status: int = 200,
        headers: Mapping[str, str] | None = None,
        **values: Any,
    ) -> HTMLResponse:
        nav = [item for item in NAV if who is not None and who.may(item.roles)]
        context: dict[str, Any] = {
            "request_path": request.url.path,
            "who": who,
            "csrf": session.csrf if session is not None else "",
            "centre": self.config.centre.name,
            "nav": nav,
            "now": self.now(),
        }
        context.update(values)
        body = self.render(name, **context)
        return HTMLResponse(body, status_code=status, headers=dict(headers or {}))


CLOSE_STREAM = object()  # put on a stream's queue: end it


def make_templates(ctx_zone: ZoneInfo) -> jinja2.Environment:
    """The Jinja environment: package templates, autoescaping, strict undefined names."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(Path(__file__).parent / "templates")),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )

    def local(t: float | None, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
        return "—" if t is None else datetime.fromtimestamp(t, ctx_zone).strftime(fmt)

    def clock(t: float | None) -> str:
        return local(t, "%H:%M:%S")

    def duration(seconds: float | None) -> str:
        if seconds is None:
            return "—"
        s = max(0, int(seconds))
        return (
            f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"
            if s >= 3600
            else f"{s // 60}:{s % 60:02d}"
        )

    def percent(ratio: float | None) -> str:
        return "—" if ratio is None else f"{ratio * 100:.0f}%"

    env.filters.update(
        local=local,
        clock=clock,
        duration=duration,
        iso=format_timestamp,
        percent=percent,
        urlq=lambda s: quote(str(s), safe=""),
    )
    env.globals["zone_name"] = datetime.now(ctx_zone).strftime("%Z") or str(ctx_zone)
    return env


# --------------------------------------------------------------------------- requests


def _trusted(ctx_config: Config, host: str) -> bool:
    nets = ctx_config.web.trusted_proxies
    if not nets:
        return False
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        return False
    return any(addr in ipaddress.ip_network(n, strict=False) for n in nets)


def client_ip(request: Request) -> str:
    """The client's address: the TCP peer, or — only when the peer is one of
    `web.trusted_proxies` — the rightmost X-Forwarded-For entry that is not
    itself a trusted proxy (left entries are whatever the client wrote)."""
    peer = request.client.host if request.client is not None else "unknown"
    ctx = getattr(request.app.state, "web", None) if "app" in request.scope else None
    if not isinstance(ctx, WebContext) or not _trusted(ctx.config, peer):
        return peer
    hops = [h.strip() for h in request.headers.get("x-forwarded-for", "").split(",") if h.strip()]
    for hop in reversed(hops):
        if not _trusted(ctx.config, hop):
            return hop
    return peer


def is_https(request: Request) -> bool:
    """Whether the browser's connection is HTTPS: served over TLS here, or
    X-Forwarded-Proto from a trusted proxy says so (then cookies are Secure)."""
    if request.url.scheme == "https":
        return True
    peer = request.client.host if request.client is not None else ""
    ctx = getattr(request.app.state, "web", None) if "app" in request.scope else None
    if isinstance(ctx, WebContext) and _trusted(ctx.config, peer):
        proto = request.headers.get("x-forwarded-proto", "").split(",")[-1].strip().lower()
        return proto == "https"
    return False


def metrics_token_ok(config: Config, authorization: str | None) -> bool:
    """`/metrics` with `web.metrics_token` set needs ``Authorization: Bearer
    <token>`` whose SHA-256 is the configured one; unset, anyone may scrape."""
    if not config.web.metrics_token:
        return True
    scheme, _, value = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return False
    return hmac.compare_digest(hash_api_token(value.strip()), config.web.metrics_token)


class MetricsTokenGate:
    """ASGI middleware: `/metrics` answers 401 without the configured token."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("path") == "/metrics":
            ctx = getattr(scope["app"].state, "web", None) if "app" in scope else None
            headers = dict(scope.get("headers") or [])
            auth = headers.get(b"authorization", b"").decode("latin-1")
            if isinstance(ctx, WebContext) and not metrics_token_ok(ctx.config, auth):
                response = JSONResponse(
                    {"error": "metrics need the bearer token (web.metrics_token)"},
                    status_code=401,
                    headers={"WWW-Authenticate": "Bearer"},
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def uvicorn_tls_options(ctx: object) -> dict[str, Any]:
    """What uvicorn needs for `web.tls_certificate`/`web.tls_key` (paths
    resolved like every other file). Proxies are handled by `client_ip` and
    `is_https`, one rule for both, not by uvicorn's proxy_headers."""
    out: dict[str, Any] = {}
    if not isinstance(ctx, WebContext):
        return out
    config = ctx.config
    if config.web.tls_certificate:
        out["ssl_certfile"] = str(config.path(config.web.tls_certificate))
        out["ssl_keyfile"] = str(config.path(config.web.tls_key))
    return out


def wants_json(request: Request) -> bool:
    if request.url.path.startswith("/api/"):
        return True
    accept = request.headers.get("accept", "")
    return "application/json" in accept and "text/html" not in accept


@dataclass(slots=True, kw_only=True)
class Call:
    """One authorised request as a handler sees it."""

    ctx: WebContext
    request: Request
    who: Principal
    session: Session | None
    payload: Payload

    def param(self, name: str) -> str:
        return str(self.request.path_params[name])

    def now(self) -> float:
        return self.ctx.now()

    @property
    def wants_json(self) -> bool:
        return wants_json(self.request)

    def page(self, name: str, *, status: int = 200, **values: Any) -> HTMLResponse:
        return self.ctx.page(
            self.request, name, who=self.who, session=self.session, status=status, **values
        )

    def fragment(self, name: str, **values: Any) -> HTMLResponse:
        context: dict[str, Any] = {
            "who": self.who,
            "csrf": self.session.csrf if self.session else "",
            "now": self.now(),
        }
        context.update(values)
        return HTMLResponse(self.ctx.render(name, **context))

    def done(self, redirect: str, **result: object) -> Response:
        """Answer a write: JSON for scripts and the pages' fetch(), else back to the page."""
        if self.wants_json:
            return JSONResponse({"ok": True, **result})
        return RedirectResponse(redirect, status_code=303)


Handler = Callable[[Call], Awaitable[Response]]
Endpoint = Callable[[Request], Awaitable[Response]]


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise WebError(
            401, "Authorization must be 'Bearer <token>'", headers={"WWW-Authenticate": "Bearer"}
        )
    return value.strip()


def authenticate(ctx: WebContext, request: Request) -> tuple[Principal, Session | None] | None:
    """Who is asking: (principal, session) or None when nobody is signed in."""
    now = ctx.now()
    token = _bearer(request)
    if token is not None:
        keys = ctx.guard.keys(None, client_ip(request))
        if ctx.guard.locked_until(keys, now) is not None:
            raise WebError(429, "too many failed attempts from this address; try later")
        found = ctx.tokens.verify(token)
        if found is None:
            ctx.guard.failed(keys, now)
            raise WebError(401, "unknown API token", headers={"WWW-Authenticate": "Bearer"})
        return found.principal(), None
    session = ctx.sessions.get(request.cookies.get(SESSION_COOKIE), now)
    if session is None:
        return None
    return session.principal(), session


def guarded(*roles: Role) -> Callable[[Handler], Endpoint]:
    """Wrap a handler: sign-in, role (admin passes), body limit and CSRF on writes."""
    allowed = frozenset(roles)

    def wrap(handler: Handler) -> Endpoint:
        async def endpoint(request: Request) -> Response:
            ctx: WebContext = request.app.state.web
            found = authenticate(ctx, request)
            if found is None:
                if wants_json(request) or request.method not in _SAFE_METHODS:
                    raise WebError(401, "sign in first (session cookie or bearer token)")
                target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)
            who, session = found
            if not who.may(allowed):
                raise WebError(403, f"role {who.role} may not open this page")
            payload = Payload("empty")
            if request.method not in _SAFE_METHODS:
                payload = await Payload.read(request)
                if session is not None:
                    given = request.headers.get("x-csrf-token") or payload.csrf_token()
                    if not csrf_matches(session.csrf, given):
                        raise WebError(403, "CSRF token missing or wrong; reload the page")
            return await handler(
                Call(ctx=ctx, request=request, who=who, session=session, payload=payload)
            )

        endpoint.__name__ = handler.__name__
        endpoint.__doc__ = handler.__doc__
        endpoint.roles = allowed  # type: ignore[attr-defined]
        return endpoint

    return wrap


# --------------------------------------------------------------------------- errors


def _status_and_message(exc: Exception) -> tuple[int, str, dict[str, str]]:
    if isinstance(exc, WebError):
        return exc.status, exc.message, exc.headers
    if isinstance(exc, ControlError):
        return exc.status, exc.message, {}
    if isinstance(exc, IncidentError):
        return exc.status_hint, str(exc), {}
    if isinstance(exc, StoreError):
        return exc.status_hint, "the incident store is unavailable", {}
    if isinstance(exc, HTTPException):
        return exc.status_code, str(exc.detail), dict(exc.headers or {})
    return 500, "internal error", {}


_TITLES = {
    400: ("Permintaan salah", "Bad request"),
    401: ("Belum masuk", "Not signed in"),
    403: ("Akses ditolak", "Forbidden"),
    404: ("Tidak ditemukan", "Not found"),
    405: ("Metode tidak diizinkan", "Method not allowed"),
    409: ("Konflik", "Conflict"),
    413: ("Terlalu besar", "Too large"),
    415: ("Format tidak didukung", "Unsupported media type"),
    416: ("Rentang tidak valid", "Range not satisfiable"),
    422: ("Data tidak valid", "Invalid data"),
    429: ("Terlalu banyak percobaan", "Too many attempts"),
    503: ("Tidak tersedia", "Unavailable"),
}


async def error_response(request: Request, exc: Exception) -> Response:
    status, message, headers = _status_and_message(exc)
    if status >= 500:
        log.error("web_error", path=request.url.path, status=status, error=repr(exc))
    if wants_json(request):
        return JSONResponse({"error": message}, status_code=status, headers=headers)
    ctx: WebContext = request.app.state.web
    found: tuple[Principal, Session | None] | None = None
    try:
        found = authenticate(ctx, request)
    except WebError:
        found = None
    title_id, title_en = _TITLES.get(status, ("Kesalahan", "Error"))
    return ctx.page(
        request,
        "error.html",
        who=found[0] if found else None,
        session=found[1] if found else None,
        status=status,
        headers=headers,
        code=status,
        title_id=title_id,
        title_en=title_en,
        message=message,
    )
