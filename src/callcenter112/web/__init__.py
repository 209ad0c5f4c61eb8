"""The web console: operators, supervisors, auditors and telecom staff (issue 6).

Server-rendered pages with live updates over server-sent events, a JSON API
with its OpenAPI document, Prometheus metrics and a health check, all in one
Starlette application (`create_app`) that uvicorn serves inside the centre's
own event loop (`serve_web`). See docs/web.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import WebServer, create_app, serve_web

__all__ = ["WebServer", "create_app", "serve_web"]


def __getattr__(name: str) -> Any:
    # The application (Starlette, every route, the OpenAPI models) loads on first
    # use: the command-line tools in this package (`users`) start without it.
    if name in __all__:
        from . import app

        return getattr(app, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
