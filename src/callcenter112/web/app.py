"""The web application and the server that runs it inside the centre's event loop.

`create_app()` builds the Starlette application from the configuration, the
incident store and the live centre: it loads the city areas, the accounts
(hashing plain passwords once), the API tokens, and mounts every page,
the API, `/metrics`, `/healthz` and the static files. Every response gets the
security headers (a strict Content-Security-Policy: no inline script or
style anywhere; no framing; no caching except static files).

`serve_web()` / `WebServer` run it with uvicorn in the caller's loop, as one
task of the application's TaskGroup: lifespan off, no signal handlers of its
own (the application owns SIGINT/SIGTERM), uvicorn's access log off (our
audit log records what matters) and its logging configuration untouched.
Cancelling the task stops it gracefully: live streams are told to end,
listeners close, open requests get `GRACEFUL_SHUTDOWN_S` to finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Callable, Generator, Sequence
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import uvicorn
from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..admin import TelecomServices
from ..config import Config
from ..incidents import IncidentError
from ..live import ControlError, LiveCenter
from ..records import Store, StoreError
from . import api, audit, console, reports, signin, telecom, telecom_admin, wallboard
from . import cluster as cluster_web
from . import location as location_web
from . import watchlist as watchlist_web  # issue 12
from .areas import load_city_areas
from .auth import ROLE_NAMES, SCRYPT_N, ApiToken, Directory, LoginGuard, SessionStore, TokenRing
from .bodies import WebError
from .context import (
    MetricsTokenGate,
    WebContext,
    error_response,
    make_templates,
    uvicorn_tls_options,
)
from .metrics import healthz, metrics

__all__ = [
    "CONTENT_SECURITY_POLICY",
    "GRACEFUL_SHUTDOWN_S",
    "WebServer",
    "api_tokens_from_config",
    "create_app",
    "serve_web",
]

GRACEFUL_SHUTDOWN_S = 5
# Bounds what one misbehaving client population can hold open (SSE included).
MAX_CONNECTIONS = 500

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "media-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
_HEADERS = (
    ("content-security-policy", CONTENT_SECURITY_POLICY),
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "same-origin"),
)
_STATIC = Path(__file__).parent / "static"


class SecurityHeaders:
    """ASGI middleware: the same protective headers on every response."""

    def __init__(self, app: ASGIApp, csp: str = CONTENT_SECURITY_POLICY) -> None:
        self.app = app
        self.headers = (("content-security-policy", csp), *_HEADERS[1:])

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = str(scope.get("path", "")).startswith("/static/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in self.headers:
                    headers.setdefault(name, value)
                if not static:
                    headers.setdefault("cache-control", "no-store")
            await send(message)

        await self.app(scope, receive, send_with_headers)


def api_tokens_from_config(config: Config) -> list[ApiToken]:
    """`[[api_token]]` tables (name, role, token_hash) if the configuration has them."""
    rows: Sequence[Any] = getattr(config, "api_token", None) or ()
    tokens = []
    for row in rows:
        role = next((r for r in ROLE_NAMES if r == row.role), None)
        if role is None:
            raise ValueError(f"api_token {row.name!r}: unknown role {row.role!r}")
        tokens.append(ApiToken(name=row.name, role=role, token_hash=row.token_hash))
    return tokens


def create_app(
    *,
    config: Config,
    store: Store,
    live: LiveCenter,
    recordings_dir: Path,
    clock: Callable[[], float] = time.time,
    api_tokens: Sequence[ApiToken] | None = None,
    scrypt_n: int = SCRYPT_N,
    telecom_services: TelecomServices | None = None,
) -> Starlette:
    """The web console, API and metrics as one ASGI application.

    Raises `areas.AreaError` if `web.city_areas` cannot be read and
    `ValueError` for a malformed password hash or API token, so a bad
    configuration stops the start rather than the first sign-in. `scrypt_n`
    is the cost for hashing plain passwords in memory (lower it only in tests).
    `telecom_services` are the seams the telecom, people and prompt pages
    change the running centre through (see `admin`); without them those
    pages answer 503.
    """
    zone = ZoneInfo(config.centre.timezone)
    ctx = WebContext(
        config=config,
        store=store,
        live=live,
        recordings_dir=recordings_dir,
        clock=clock,
        directory=Directory(users=config.user, operators=config.operator, scrypt_n=scrypt_n),
        sessions=SessionStore(
            ttl_s=config.web.session_hours * 3600,
            max_per_account=config.web.max_sessions_per_account,
        ),
        guard=LoginGuard(
            limit=config.web.login_fail_limit,
            lockout_s=config.web.login_lockout_s,
            address_limit=config.web.login_address_fail_limit,
        ),
        tokens=TokenRing(api_tokens if api_tokens is not None else api_tokens_from_config(config)),
        areas=load_city_areas(config.path(config.web.city_areas)),
        templates=make_templates(zone),
        zone=zone,
    )
    routes: list[BaseRoute] = [
        *signin.routes(),
        *console.routes(),
        *wallboard.routes(),
        *reports.routes(),
        *audit.routes(),
        *telecom.routes(),
        *telecom_admin.routes(),
        *api.routes(),
        *location_web.routes(),
        *watchlist_web.routes(),  # issue 12
        *cluster_web.routes(),  # issues 14, 15: role and database outage
        Route("/metrics", metrics, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Mount("/static", app=StaticFiles(directory=str(_STATIC)), name="static"),
    ]
    app = Starlette(
        routes=routes,
        middleware=[
            Middleware(
                SecurityHeaders,
                csp=location_web.content_security_policy(config, CONTENT_SECURITY_POLICY),
            ),
            Middleware(MetricsTokenGate),
        ],
        exception_handlers={
            WebError: error_response,
            ControlError: error_response,
            IncidentError: error_response,
            StoreError: error_response,
            HTTPException: error_response,
            Exception: error_response,
        },
    )
    app.state.web = ctx
    location_web.install(app.state, config)
    app.state.telecom = telecom_services or TelecomServices()
    return app


class WebServer(uvicorn.Server):
    """uvicorn's server without signal handling, with a `ready` event and the bound port."""

    def __init__(
        self,
        app: Starlette,
        host: str,
        port: int,
        *,
        sock: socket.socket | None = None,
        behind_proxy: bool = False,
        started: asyncio.Event | None = None,
    ) -> None:
        super().__init__(
            uvicorn.Config(
                app,
                host=host,
                port=port,
                loop="none",
                ws="none",
                lifespan="off",
                log_config=None,
                access_log=False,
                server_header=False,
                proxy_headers=behind_proxy,
                limit_concurrency=MAX_CONNECTIONS,
                **uvicorn_tls_options(getattr(app.state, "web", None)),
                timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
            )
        )
        self.app = app
        self.ready = started if started is not None else asyncio.Event()
        self._sock = sock

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        # The application owns SIGINT/SIGTERM and stops us by cancelling.
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            self.ready.set()

    @property
    def bound_port(self) -> int:
        for server in getattr(self, "servers", []):
            for sock in server.sockets:
                return int(sock.getsockname()[1])
        raise RuntimeError("the web server is not listening")

    async def serve_until_cancelled(self) -> None:
        """Serve until cancelled; then close gracefully and re-raise the cancellation."""
        try:
            await self.serve(sockets=[self._sock] if self._sock is not None else None)
        except SystemExit:
            # uvicorn exits the process when it cannot bind; a task must not.
            raise OSError(
                f"web server cannot listen on {self.config.host}:{self.config.port}"
            ) from None
        except asyncio.CancelledError:
            ctx = getattr(self.app.state, "web", None)
            if isinstance(ctx, WebContext):
                ctx.close_streams()
            if self.started:
                self.should_exit = True
                await self.shutdown(sockets=None)
            raise


async def serve_web(
    app: Starlette,
    host: str,
    port: int,
    *,
    started: asyncio.Event | None = None,
    behind_proxy: bool = False,
) -> None:
    """Run the web application in this loop until cancelled.

    `started` is set once the listener is bound (port 0 picks a free port;
    use `WebServer` directly to learn it). `behind_proxy` trusts
    X-Forwarded-For/Proto from loopback (the sign-in lockout counts per
    client address, so leave it off unless a reverse proxy is in front).
    """
    server = WebServer(app, host, port, behind_proxy=behind_proxy, started=started)
    await server.serve_until_cancelled()
