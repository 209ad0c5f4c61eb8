"""The local control socket: `callcenter112 reload` talking to the running server.

Like Kamailio's `kamcmd` and Asterisk's `asterisk -rx`, administration of a
running server goes over a Unix socket on the server's own machine: no
network exposure, no password, and the answer comes back to the person who
asked (a signal cannot say what changed or why a file was refused). The
socket is created mode 0600 beside the database, so only the account that
runs the server (and root) can use it.

Protocol: one JSON object per line each way. Request `{"command": "reload",
"actor": "…"}`; answer the command's JSON result, or `{"ok": false,
"error": "…"}` for an unknown command or a bad line.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from ..logs import get_logger

__all__ = ["MAX_LINE", "ControlServer", "control_request"]

log = get_logger("control")

MAX_LINE = 64 * 1024  # a request is a few dozen bytes; an answer a diff

CommandHandler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


class ControlServer:
    def __init__(self, path: Path, handlers: dict[str, CommandHandler]) -> None:
        self.path = path
        self.handlers = handlers
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # a stale socket from a crashed run
        old = os.umask(0o177)
        try:
            self._server = await asyncio.start_unix_server(
                self._client, path=str(self.path), limit=MAX_LINE
            )
        finally:
            os.umask(old)
        os.chmod(self.path, 0o600)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 10)
            answer = await self._answer(line)
            writer.write(json.dumps(answer).encode() + b"\n")
            await writer.drain()
        except (TimeoutError, ConnectionError, ValueError) as exc:
            log.info("control_client_dropped", error=type(exc).__name__)
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _answer(self, line: bytes) -> dict[str, Any]:
        try:
            request = json.loads(line)
        except ValueError:
            return {"ok": False, "error": "not a JSON line"}
        if not isinstance(request, dict):
            return {"ok": False, "error": "expected a JSON object"}
        handler = self.handlers.get(str(request.get("command")))
        if handler is None:
            known = ", ".join(sorted(self.handlers))
            return {"ok": False, "error": f"unknown command (known: {known})"}
        try:
            return await handler(request)
        except Exception as exc:  # noqa: BLE001 - an admin command must not stop the centre
            log.error("control_command_failed", command=request.get("command"), error=str(exc))
            return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}


async def control_request(path: Path, request: dict[str, Any], *, wait_s: float = 30.0) -> Any:
    """Send one command to the server listening on `path`; its JSON answer."""
    reader, writer = await asyncio.wait_for(
        asyncio.open_unix_connection(str(path), limit=MAX_LINE), wait_s
    )
    try:
        writer.write(json.dumps(request).encode() + b"\n")
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), wait_s)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    if not line:
        raise ConnectionError("the server closed the control socket without answering")
    return json.loads(line)
