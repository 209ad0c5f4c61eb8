"""The telecom view (`/telecom`): trunks, softphone registrations, RTP ports, the configuration.

For the staff who keep the lines up: each trunk with its last inbound and
outbound traffic and today's calls and rejections, each registered operator
softphone with its contact, source address, reachability (qualify OPTIONS
round trip) and expiry, the RTP port pool's use, and the running
configuration with every secret (passwords, password hashes, tokens)
replaced by a mask. The live part refreshes over server-sent events.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from starlette.responses import Response
from starlette.routing import Route

from ..config import Config
from ..live import LiveEvent
from .context import Call, WebContext, guarded
from .live_stream import SseMessage, event_stream

__all__ = ["MASK", "config_lines", "routes"]

MASK = "••••••"
_SECRET_WORDS = ("password", "secret", "token")
_REFRESH_S = 5.0
_REFRESH_ON = frozenset({"operator_changed", "registration_changed", "call_arrived", "call_ended"})


def _is_secret(key: str) -> bool:
    return any(word in key.lower() for word in _SECRET_WORDS)


def _flatten(value: object, prefix: str, out: list[tuple[str, str]]) -> None:
    if isinstance(value, dict):
        if {"host", "port"} == set(value):
            out.append((prefix, f"{value['host']}:{value['port']}"))
            return
        for key, item in value.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            if _is_secret(str(key)):
                out.append((path, MASK if item else ""))
            else:
                _flatten(item, path, out)
    elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        for i, item in enumerate(value):
            _flatten(item, f"{prefix}[{i}]", out)
    else:
        out.append((prefix, repr(value) if isinstance(value, str) else _plain(value)))


def _plain(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(repr(v) if isinstance(v, str) else _plain(v) for v in value) + "]"
    return str(value)


def config_lines(config: Config) -> list[tuple[str, str]]:
    """The configuration as ``(key.path, value)`` lines, secrets masked."""
    out: list[tuple[str, str]] = []
    _flatten(config.model_dump(mode="json"), "", out)
    return out


def _live_values(ctx: WebContext) -> dict[str, Any]:
    snapshot = ctx.live.snapshot()
    return {"snapshot": snapshot, "now": ctx.now()}


@guarded("supervisor", "telecom")
async def telecom_page(call: Call) -> Response:
    return call.page(
        "telecom.html",
        config_lines=config_lines(call.ctx.config),
        config_source=str(call.ctx.config.base_dir),
        **_live_values(call.ctx),
    )


@guarded("supervisor", "telecom")
async def telecom_events(call: Call) -> Response:
    ctx = call.ctx

    async def render(events: Sequence[LiveEvent], full: bool) -> list[SseMessage]:
        if not full and not any(e.kind in _REFRESH_ON for e in events):
            return []
        return [SseMessage("live", ctx.render("_telecom_live.html", **_live_values(ctx)))]

    return event_stream(ctx, call.session, render, refresh_s=_REFRESH_S)


def routes() -> list[Route]:
    return [
        Route("/telecom", telecom_page, methods=["GET"]),
        Route("/telecom/events", telecom_events, methods=["GET"]),
    ]
