"""The supervisor wallboard (`/wallboard`): queue, operators, calls, today's SLA, callbacks.

The page is five server-rendered sections. Over server-sent events the
server re-renders only the sections an event touches (a `queue_changed`
re-renders the waiting list and the calls) and the browser swaps them in;
every few seconds everything is refreshed (the SLA comes from the store).
Waiting times and times in state tick in the page from ``data-since``
attributes; the waiting section turns to alert once the oldest caller has
waited `web.wait_alert_s`.

"Today" is the centre's local day (`centre.timezone`; Ambon is WIT, UTC+9):
the SLA is the share of calls that arrived since local midnight and reached
an operator within 10, 15 and 20 s of the INVITE reaching the trunk
(NENA-STA-020.1 asks 90 % within 15 s and 95 % within 20 s).

Supervisors work the callback list here (take — reassigning a task another
person holds —, note a call's outcome, close) and listen in, whisper or
barge into active calls from their configured softphone (`[[user]] sip_user`);
the centre is told the supervisor's account name and rings that softphone,
and it audit-logs the supervision.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from starlette.responses import Response
from starlette.routing import Route

from ..incidents import SLA_THRESHOLDS_S, CallbackResult
from ..live import LiveEvent, LiveSnapshot, SupervisionMode
from ..numerals import is_ascii_digits
from .bodies import WebError
from .cluster import no_sla, node_role, status_json
from .console import category_labels
from .context import Call, WebContext, guarded
from .live_stream import SseMessage, event_stream

__all__ = ["CALLBACK_OUTCOMES", "SECTIONS", "routes", "sections_for"]

SECTIONS = ("waiting", "operators", "calls", "sla", "callbacks")
_MAX_WAITING_ROWS = 100  # a surge of 1000 callers shows the first 100 and the count
_REFRESH_S = 5.0
_SECTIONS_OF: dict[str, tuple[str, ...]] = {
    "queue_changed": ("waiting", "calls"),
    "operator_changed": ("operators",),
    "call_arrived": ("calls", "sla"),  # "arrived today" counts it at once
    "call_changed": ("calls",),
    "call_offered": ("waiting", "operators", "calls"),
    "call_offer_cancelled": ("waiting", "operators", "calls"),
    "call_transferred": ("calls",),
    "registration_changed": ("operators",),
    "call_answered": ("waiting", "operators", "calls", "sla"),
    "call_ended": ("waiting", "operators", "calls", "sla"),
    "incident_updated": ("calls",),
    "callback_changed": ("callbacks",),
    "supervision_changed": ("calls",),
    "location_changed": (),  # issue 13: for the map; nothing on the wallboard changes
    "low_disk": ("waiting",),  # issue 11: the low-disk banner, raised or cleared
}
CALLBACK_OUTCOMES: dict[str, tuple[str, str]] = {
    "handled": ("Sudah ditangani", "Handled"),
    "not_emergency": ("Bukan darurat", "Not an emergency"),
    "unreachable": ("Tidak bisa dihubungi", "Unreachable"),
    "wrong_number": ("Salah sambung", "Wrong number"),
    "duplicate": ("Duplikat", "Duplicate"),
    "other": ("Lainnya", "Other"),
}
ATTEMPT_RESULTS: dict[str, tuple[str, str]] = {
    "answered": ("Diangkat", "Answered"),
    "no_answer": ("Tidak diangkat", "No answer"),
    "busy": ("Sibuk", "Busy"),
    "failed": ("Gagal", "Failed"),
}
assert set(ATTEMPT_RESULTS) == {r.value for r in CallbackResult}


def sections_for(events: Iterable[LiveEvent]) -> set[str]:
    """The sections a batch of live events makes stale (unknown kinds: all)."""
    out: set[str] = set()
    for e in events:
        out.update(_SECTIONS_OF.get(e.kind, SECTIONS))
    return out


async def _values(ctx: WebContext, snapshot: LiveSnapshot, wanted: set[str]) -> dict[str, Any]:
    now = ctx.now()
    values: dict[str, Any] = {
        "now": now,
        "alert_s": ctx.config.web.wait_alert_s,
        "categories": category_labels(ctx.config),  # issue 12: the city's categories
        "snapshot": snapshot,
        # Issues 14, 15: the outage banner (web/cluster.py).
        "cluster": status_json(ctx.store.health(), node_role(ctx.live)),
    }
    if "waiting" in wanted:
        waiting = sorted(snapshot.waiting, key=lambda w: w.position)
        oldest = min((w.arrived_at for w in waiting), default=None)
        values.update(
            waiting=waiting[:_MAX_WAITING_ROWS],
            waiting_total=len(waiting),
            oldest_arrival=oldest,
            alert=oldest is not None and now - oldest >= ctx.config.web.wait_alert_s,
        )
    # Issue 14: during a database outage the board shows the live sections and the banner.
    reads = values["cluster"]["store"]["available"]
    if "sla" in wanted:
        since = ctx.local_midnight(now)
        values["sla"] = await ctx.store.sla_summary(since=since) if reads else no_sla(since)
        values["thresholds"] = SLA_THRESHOLDS_S
    if "callbacks" in wanted:
        values["callbacks"] = (
            await ctx.store.list_callbacks(open_only=True, limit=100) if reads else []
        )
        values["outcomes"] = CALLBACK_OUTCOMES
        values["results"] = ATTEMPT_RESULTS
    return values


@guarded("supervisor")
async def wallboard_page(call: Call) -> Response:
    snapshot = call.ctx.live.snapshot()
    values = await _values(call.ctx, snapshot, set(SECTIONS))
    return call.page("wallboard.html", **values)


@guarded("supervisor")
async def wallboard_events(call: Call) -> Response:
    ctx = call.ctx

    async def render(events: Sequence[LiveEvent], full: bool) -> list[SseMessage]:
        wanted = set(SECTIONS) if full else sections_for(events)
        if not wanted:
            return []
        values = await _values(ctx, ctx.live.snapshot(), wanted)
        csrf = call.session.csrf if call.session else ""
        return [
            SseMessage(
                section,
                ctx.render(f"_wb_{section}.html", who=call.who, csrf=csrf, **values),
            )
            for section in SECTIONS
            if section in wanted
        ]

    return event_stream(ctx, call.session, render, refresh_s=_REFRESH_S)


def _callback_id(call: Call) -> int:
    text = call.param("callback_id")
    if not is_ascii_digits(text) or len(text) > 12:
        raise WebError(404, f"no callback {text!r}")
    return int(text)


@guarded("supervisor")
async def take_callback(call: Call) -> Response:
    taken = await call.ctx.store.callback_take(
        _callback_id(call), actor=call.who.user, at=call.now(), force=True
    )
    return call.done("/wallboard", callback_id=taken.id, taken_by=taken.taken_by)


@guarded("supervisor")
async def callback_attempt(call: Call) -> Response:
    call.payload.only({"result", "note"})
    result = call.payload.text("result", required=True, max_len=16)
    if result not in ATTEMPT_RESULTS:
        raise WebError(422, f"result: must be one of {'|'.join(ATTEMPT_RESULTS)}")
    attempt_id = await call.ctx.store.callback_attempt(
        _callback_id(call),
        actor=call.who.user,
        at=call.now(),
        result=CallbackResult(result),
        note=call.payload.text("note", max_len=500),
    )
    return call.done("/wallboard", attempt_id=attempt_id)


@guarded("supervisor")
async def close_callback(call: Call) -> Response:
    call.payload.only({"outcome", "note"})
    outcome = call.payload.text("outcome", required=True, max_len=200)
    assert outcome is not None
    closed = await call.ctx.store.callback_close(
        _callback_id(call),
        actor=call.who.user,
        at=call.now(),
        outcome=outcome,
        note=call.payload.text("note", max_len=500),
    )
    return call.done("/wallboard", callback_id=closed.id, status=closed.status.value)


def _supervisor_phone(call: Call) -> str:
    if not call.who.sip_user:
        raise WebError(
            409, "no softphone for this account: set sip_user on its [[user]] to listen in"
        )
    return call.who.sip_user


@guarded("supervisor")
async def supervise(call: Call) -> Response:
    incident_id = call.param("incident_id")
    call.payload.only({"mode"})
    mode = call.payload.text("mode", required=True, max_len=16)
    modes: dict[str, SupervisionMode] = {"listen": "listen", "whisper": "whisper", "barge": "barge"}
    if mode not in modes:
        raise WebError(422, "mode: must be listen, whisper or barge")
    _supervisor_phone(call)
    await call.ctx.live.supervise(
        incident_id, supervisor=call.who.user, mode=modes[mode], actor=call.who.user
    )
    return call.done("/wallboard", mode=mode)


@guarded("supervisor")
async def stop_supervision(call: Call) -> Response:
    incident_id = call.param("incident_id")
    await call.ctx.live.stop_supervision(incident_id, supervisor=call.who.user, actor=call.who.user)
    return call.done("/wallboard")


def routes() -> list[Route]:
    return [
        Route("/wallboard", wallboard_page, methods=["GET"]),
        Route("/wallboard/events", wallboard_events, methods=["GET"]),
        Route("/wallboard/callbacks/{callback_id}/take", take_callback, methods=["POST"]),
        Route("/wallboard/callbacks/{callback_id}/attempt", callback_attempt, methods=["POST"]),
        Route("/wallboard/callbacks/{callback_id}/close", close_callback, methods=["POST"]),
        Route("/wallboard/calls/{incident_id}/supervise", supervise, methods=["POST"]),
        Route("/wallboard/calls/{incident_id}/unsupervise", stop_supervision, methods=["POST"]),
    ]
