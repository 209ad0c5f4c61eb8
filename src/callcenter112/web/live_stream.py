"""Server-sent events: the live centre's changes pushed to one browser page.

Each open page (console, wallboard, telecom) holds one ``text/event-stream``
response. Its body subscribes to `LiveCenter.subscribe()` through a small
pump task that copies events onto a bounded queue (a slow browser loses the
oldest events and then gets a full refresh, it never holds up the centre).
The body waits for events or for the next periodic refresh, takes every
event already queued at once (a burst of 200 arrivals becomes one update),
asks the page's `Renderer` what to send, and writes SSE messages (event name
plus data lines, WHATWG HTML §9.2).

The stream ends when the centre's subscription ends, when the session is
signed out or expires, when the server stops (`WebContext.close_streams`) or
when the browser goes away (Starlette cancels the body); the pump task is
always cancelled and awaited in `finally`, so nothing is left running.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass

from starlette.responses import StreamingResponse

from ..live import LiveEvent
from ..logs import get_logger
from ..records import StoreError
from .auth import Session
from .context import CLOSE_STREAM, WebContext

__all__ = ["QUEUE_BOUND", "Renderer", "SseMessage", "event_stream", "json_message"]

QUEUE_BOUND = 256  # events buffered per open page before the oldest are dropped
_RETRY_MS = 3000  # how long a browser waits before reconnecting (SSE `retry:`)
_END = object()

log = get_logger("web.sse")


@dataclass(frozen=True, slots=True)
class SseMessage:
    event: str
    data: str

    def encode(self) -> bytes:
        lines = self.data.replace("\r\n", "\n").replace("\r", "\n").split("\n")
        body = "".join(f"data: {line}\n" for line in lines)
        return f"event: {self.event}\n{body}\n".encode()


def json_message(event: str, value: object) -> SseMessage:
    return SseMessage(event, json.dumps(value, separators=(",", ":"), default=str))


# (events since the last call, full refresh wanted) -> messages to send
Renderer = Callable[[Sequence[LiveEvent], bool], Awaitable[list[SseMessage]]]


async def _body(
    ctx: WebContext, session: Session | None, render: Renderer, refresh_s: float
) -> AsyncIterator[bytes]:
    queue: asyncio.Queue[object] = asyncio.Queue(QUEUE_BOUND)
    lost = False

    def offer(item: object) -> None:
        nonlocal lost
        if queue.full():
            with suppress(asyncio.QueueEmpty):
                queue.get_nowait()
            lost = True
        queue.put_nowait(item)

    async def pump() -> None:
        try:
            async for event in ctx.live.subscribe():
                offer(event)
        except Exception as exc:  # noqa: BLE001 - whatever broke the centre's stream ends this page's
            log.warning("sse_subscription_failed", error=repr(exc))
        finally:
            offer(_END)

    loop = asyncio.get_running_loop()
    account = session.account.name if session is not None else "token"
    if not ctx.take_stream(account):  # web.max_streams_per_account (context.py)
        yield json_message("bye", {"reason": "too_many_streams"}).encode()
        return
    ctx.streams.add(queue)
    task = asyncio.create_task(pump(), name="web-sse-pump")
    try:
        await asyncio.sleep(0)  # let the pump subscribe before the first picture
        yield f"retry: {_RETRY_MS}\n\n".encode()
        for message in await render((), True):
            yield message.encode()
        next_full = loop.time() + refresh_s
        while not ctx.closing:
            batch: list[object] = []
            with suppress(TimeoutError):
                batch.append(await asyncio.wait_for(queue.get(), max(0.0, next_full - loop.time())))
            while not queue.empty():
                batch.append(queue.get_nowait())
            if any(item is _END or item is CLOSE_STREAM for item in batch):
                yield json_message("bye", {"reason": "server"}).encode()
                return
            if session is not None and ctx.sessions.get(session.token, ctx.now()) is None:
                yield json_message("signed_out", {}).encode()
                return
            full = not batch or lost
            lost = False
            if full:
                next_full = loop.time() + refresh_s
            events = [item for item in batch if isinstance(item, LiveEvent)]
            try:
                messages = await render(events, full)
            except StoreError as exc:  # the store hiccuped: skip this update, keep the page
                log.warning("sse_render_failed", error=str(exc))
                continue
            for message in messages:
                yield message.encode()
        yield json_message("bye", {"reason": "server"}).encode()
    finally:
        ctx.release_stream(account)
        ctx.streams.discard(queue)
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task


def event_stream(
    ctx: WebContext, session: Session | None, render: Renderer, *, refresh_s: float
) -> StreamingResponse:
    """A ``text/event-stream`` response fed by the live centre and a periodic refresh."""
    return StreamingResponse(
        _body(ctx, session, render, refresh_s),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
