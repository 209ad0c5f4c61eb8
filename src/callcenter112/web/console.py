"""The operator console (`/console`): status, the incident on screen, the after-call form.

An operator signs in with their SIP user. The page follows the live centre
over server-sent events: when a call is offered to or answered by this
operator (`call_offered`, `call_answered`) the browser loads the incident card
(`/console/incidents/{id}`: caller, IVR category, wait, caller history) with
the disposition form — location (free text, kecamatan, kelurahan/desa of the
city), description, category correction, disposition, agencies notified —
saved through `Store.save_disposition` (which audit-logs it), and the
transfer buttons (blind transfer, add to conference, leave conference) that
call the live centre. The callback list lets the operator take a dropped
call and call back. An offer the centre withdraws (ring timeout, caller
gone) is taken off the screen again (`call_offer_cancelled`).

Audit: the store logs what it writes (disposition, callback take/close);
the live centre logs what it is asked to do, with the `actor` it is given
(pause, supervision, …); this module adds nothing of its own.

An operator may open and edit only incidents that are theirs: answered by
them, offered to them now, or a callback they hold. Supervisors and admins
may edit any (through the API).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..callers import (
    CallerRules,
    caller_history,
    past_calls,
    repeat_verdict,
    suggest_watch_list,
)
from ..callflow.guards import may_dial  # issue 11
from ..config import DISPOSITIONS, Config
from ..incidents import CallbackStatus, IncidentRecord, incident_flags
from ..live import LiveEvent, LiveSnapshot, OperatorView
from ..numerals import is_ascii_digits
from .auth import Principal
from .bodies import Payload, WebError
from .context import Call, WebContext, guarded
from .live_stream import SseMessage, event_stream, json_message

__all__ = [
    "CATEGORY_LABELS",
    "DISPOSITION_LABELS",
    "END_CALL_DISPOSITIONS",
    "PAUSE_REASONS",
    "CallEnder",
    "category_labels",
    "disposition_changes",
    "may_handle",
    "pause_operator",
    "routes",
]


def category_labels(config: Config) -> dict[str, tuple[str, str]]:
    """The configured categories as id → (Bahasa Indonesia, English), file order."""
    return {c.id: (c.label, c.label_en or c.label) for c in config.categories}


# The shipped set, for pages that have not moved to ``category_labels(config)``.
CATEGORY_LABELS: dict[str, tuple[str, str]] = category_labels(Config())
DISPOSITION_LABELS: dict[str, tuple[str, str]] = {
    "genuine": ("Darurat nyata", "Genuine"),
    "ghost": ("Diam / tanpa respons", "Ghost (no response)"),
    "prank": ("Iseng", "Prank"),
    "information": ("Permintaan informasi", "Information request"),
    "wrong_number": ("Salah sambung", "Wrong number"),
    "test": ("Uji", "Test"),
    "duplicate": ("Duplikat", "Duplicate"),
}
# Dispositions the operator may save and end the call with in one action.
END_CALL_DISPOSITIONS = ("prank", "ghost")


@runtime_checkable
class CallEnder(Protocol):
    """The call-flow hook behind "dispose and end" (issue 12): the operator — a
    person, never the system — ends a prank or ghost call. The centre hangs up
    every leg of the incident (BYE caller, operator, agency), logs ``actor`` and
    ``reason`` on the timeline, and raises ``LiveError(404)`` if no call of the
    incident is up any more."""

    async def end_call(self, incident_id: str, *, actor: str, reason: str) -> None: ...


PAUSE_REASONS: dict[str, tuple[str, str]] = {
    "istirahat": ("Istirahat", "Break"),
    "makan": ("Makan", "Meal"),
    "toilet": ("Toilet", "Restroom"),
    "rapat": ("Rapat", "Meeting"),
    "pelatihan": ("Pelatihan", "Training"),
    "tugas_lain": ("Tugas lain", "Other duty"),
}
assert set(DISPOSITION_LABELS) == set(DISPOSITIONS)

_REFRESH_S = 5.0
_FORM_FIELDS = (
    "location_text",
    "kecamatan",
    "kelurahan",
    "description",
    "category",
    "disposition",
    "agencies_notified",
)


def _operator(snapshot: LiveSnapshot, user: str | None) -> OperatorView | None:
    return next((o for o in snapshot.operators if o.user == user), None)


def may_handle(who: Principal, record: IncidentRecord, snapshot: LiveSnapshot) -> bool:
    """Whether `who` may see and edit this incident from the console."""
    if who.role in ("admin", "supervisor"):
        return True
    if who.role != "operator":
        return False
    user = who.sip_user or who.user
    incident_id = record.incident.id
    if record.incident.operator == user:
        return True
    me = _operator(snapshot, user)
    if me is not None and me.incident_id == incident_id:
        return True
    if any(w.incident_id == incident_id and w.offered_to == user for w in snapshot.waiting):
        return True
    if any(c.incident_id == incident_id and c.operator == user for c in snapshot.calls):
        return True
    return any(
        cb.taken_by == who.user and cb.status is not CallbackStatus.CLOSED
        for cb in record.callbacks
    )


async def load_for(call: Call, incident_id: str) -> tuple[IncidentRecord, LiveSnapshot]:
    record = await call.ctx.store.get_incident(incident_id)
    if record is None:
        raise WebError(404, f"no incident {incident_id!r}")
    snapshot = call.ctx.live.snapshot()
    if not may_handle(call.who, record, snapshot):
        raise WebError(403, f"incident {incident_id} is not yours to handle")
    return record, snapshot


def disposition_changes(ctx: WebContext, payload: Payload) -> dict[str, Any]:
    """The disposition form (or API body) as `save_disposition` changes, checked.

    A form sends every field (absent = cleared, no agency ticked = none); a
    JSON body changes only the fields it names.
    """
    payload.only({*_FORM_FIELDS, "end_call"})
    is_form = payload.kind == "form"
    changes: dict[str, object] = {}
    for name in ("location_text", "description"):
        if is_form or name in payload:
            changes[name] = payload.text(name, max_len=10_000)
    for name, vocabulary in (
        ("category", ctx.config.category_ids),
        ("disposition", DISPOSITIONS),
    ):
        if is_form or name in payload:
            value = payload.text(name, max_len=32)
            if value is not None and value not in vocabulary:
                raise WebError(422, f"{name}: {value!r} is not one of {'|'.join(vocabulary)}")
            changes[name] = value
    if is_form or "kecamatan" in payload or "kelurahan" in payload:
        kecamatan = payload.text("kecamatan", max_len=100)
        village = payload.text("kelurahan", max_len=100)
        problem = ctx.areas.check(kecamatan, village)
        if problem is not None:
            raise WebError(422, problem)
        changes["kecamatan"] = kecamatan
        changes["kelurahan"] = village
    if is_form or "agencies_notified" in payload:
        names = payload.texts("agencies_notified", max_items=len(ctx.config.agency) or 1)
        unknown = [n for n in names if ctx.config.agency_named(n) is None]
        if unknown:
            raise WebError(422, f"agencies_notified: no agency named {', '.join(unknown)}")
        changes["agencies_notified"] = names
    return changes


async def _card_values(
    call: Call, record: IncidentRecord, snapshot: LiveSnapshot
) -> dict[str, Any]:
    inc = record.incident
    # Enough rows for the 30-day counts of issue 12; the table shows the newest ten.
    earlier = await call.ctx.store.caller_history(inc.caller, exclude_id=inc.id, limit=500)
    history = earlier[:10]
    windows = caller_history(inc.caller, past_calls(earlier), inc.arrived_at)
    rules = CallerRules.from_config(call.ctx.config.callers)
    live_call = next((c for c in snapshot.calls if c.incident_id == inc.id), None)
    waiting = next((w for w in snapshot.waiting if w.incident_id == inc.id), None)
    return {
        "incident": inc,
        "record": record,
        "history": history,
        "windows": windows,
        "repeat": repeat_verdict(windows, rules),
        # Shown so the operator can tell the supervisor, who alone may confirm it.
        "suggestion": suggest_watch_list(windows, rules),
        "live_call": live_call,
        "waiting": waiting,
        "areas": call.ctx.areas,
        "agencies": call.ctx.config.agency,
        "categories": category_labels(call.ctx.config),
        "dispositions": DISPOSITION_LABELS,
        "flags": incident_flags(record.events),
        "disposition_keys": dict(call.ctx.config.dispositions.keys),
        "end_call_dispositions": END_CALL_DISPOSITIONS,
    }


def _status_values(call_ctx: WebContext, who: Principal, snapshot: LiveSnapshot) -> dict[str, Any]:
    return {
        "me": _operator(snapshot, who.sip_user),
        "pause_reasons": PAUSE_REASONS,
    }


async def _callback_values(ctx: WebContext) -> dict[str, Any]:
    return {"callbacks": await ctx.store.list_callbacks(open_only=True, limit=50)}


@guarded("operator")
async def console_page(call: Call) -> Response:
    """The console page; the incident on screen comes from the live snapshot."""
    ctx = call.ctx
    snapshot = ctx.live.snapshot()
    me = _operator(snapshot, call.who.sip_user)
    card: dict[str, object] | None = None
    wanted = call.request.query_params.get("incident") or (me.incident_id if me else None)
    if wanted:
        record = await ctx.store.get_incident(wanted)
        if record is not None and may_handle(call.who, record, snapshot):
            card = await _card_values(call, record, snapshot)
    return call.page(
        "console.html",
        card=card,
        **_status_values(ctx, call.who, snapshot),
        **await _callback_values(ctx),
    )


@guarded("operator")
async def incident_card(call: Call) -> Response:
    """The incident card with its form, loaded into the console when a call arrives."""
    record, snapshot = await load_for(call, call.param("incident_id"))
    return call.fragment("_incident_card.html", card=await _card_values(call, record, snapshot))


@guarded("operator")
async def save_disposition(call: Call) -> Response:
    incident_id = call.param("incident_id")
    await load_for(call, incident_id)
    changes = disposition_changes(call.ctx, call.payload)
    end_call = call.payload.text("end_call", max_len=8) in ("1", "yes", "true", "on")
    ender: CallEnder | None = None
    if end_call:  # checked before saving: a refused end leaves nothing half done
        if changes.get("disposition") not in END_CALL_DISPOSITIONS:
            raise WebError(422, f"end_call: only with {' or '.join(END_CALL_DISPOSITIONS)}")
        live = call.ctx.live
        if not isinstance(live, CallEnder):
            raise WebError(501, "end_call: the call flow does not offer end_call yet")
        ender = live
    diff = await call.ctx.store.save_disposition(
        incident_id,
        changes,
        actor=call.who.user,
        at=call.now(),
        categories=call.ctx.config.category_ids,  # issue 12: the city's categories
    )
    if ender is not None:
        await ender.end_call(
            incident_id, actor=call.who.user, reason=f"disposed {changes['disposition']}"
        )
    if end_call:
        return call.done(f"/console?incident={incident_id}", changed=sorted(diff), ended=True)
    return call.done(f"/console?incident={incident_id}", changed=sorted(diff))


def _sip_user(who: Principal) -> str:
    if not who.sip_user:
        raise WebError(409, "this account has no SIP user (operators and [[user]] sip_user only)")
    return who.sip_user


@guarded("operator")
async def transfer(call: Call) -> Response:
    incident_id = call.param("incident_id")
    await load_for(call, incident_id)
    call.payload.only({"agency", "mode"})
    agency = call.payload.text("agency", required=True, max_len=64)
    mode = call.payload.text("mode", max_len=16) or "blind"
    assert agency is not None
    if call.ctx.config.agency_named(agency) is None:
        raise WebError(422, f"agency: no agency named {agency!r}")
    if mode not in ("blind", "conference"):
        raise WebError(422, "mode: must be blind or conference")
    await call.ctx.live.transfer(
        incident_id, agency, mode="blind" if mode == "blind" else "conference", actor=call.who.user
    )
    return call.done(f"/console?incident={incident_id}", agency=agency, mode=mode)


@guarded("operator")
async def leave_conference(call: Call) -> Response:
    incident_id = call.param("incident_id")
    await load_for(call, incident_id)
    await call.ctx.live.leave_conference(incident_id, actor=call.who.user)
    return call.done(f"/console?incident={incident_id}")


async def pause_operator(call: Call, user: str, *, paused: bool) -> str | None:
    """Pause (with a reason from the body) or resume `user`; returns the reason.

    The live centre audit-logs the change with `actor` (it owns the operator's state).
    """
    call.payload.only({"state", "reason", "note"})
    reason = call.payload.text("reason", max_len=64)
    note = call.payload.text("note", max_len=200)
    if paused and reason is None:
        raise WebError(422, "reason: a pause needs a reason")
    full_reason = None if not paused else (f"{reason}: {note}" if note else reason)
    await call.ctx.live.set_operator_paused(
        user, paused=paused, reason=full_reason, actor=call.who.user
    )
    return full_reason


@guarded("operator")
async def set_status(call: Call) -> Response:
    state = call.payload.text("state", required=True, max_len=16)
    if state not in ("available", "paused"):
        raise WebError(422, "state: must be available or paused")
    paused = state == "paused"
    reason = await pause_operator(call, _sip_user(call.who), paused=paused)
    return call.done("/console", paused=paused, reason=reason)


@guarded("operator")
async def take_callback(call: Call) -> Response:
    callback_id = _callback_id(call)
    taken = await call.ctx.store.callback_take(callback_id, actor=call.who.user, at=call.now())
    return call.done("/console", callback_id=taken.id, taken_by=taken.taken_by)


@guarded("operator")
async def call_back(call: Call) -> Response:
    """Have the centre take the callback task for this operator and ring them, then the caller."""
    callback_id = _callback_id(call)
    held = await call.ctx.store.list_callbacks(open_only=True)  # issue 11: held for review
    cb = next((c for c in held if c.id == callback_id), None)
    if cb is not None and not may_dial(cb, supervisor=call.who.may(("supervisor",))):
        raise WebError(403, f"callback {callback_id} waits for a supervisor ({cb.review})")
    await call.ctx.live.start_callback(
        callback_id, operator=_sip_user(call.who), actor=call.who.user
    )
    return call.done("/console", callback_id=callback_id)


def _callback_id(call: Call) -> int:
    text = call.param("callback_id")
    if not is_ascii_digits(text) or len(text) > 12:
        raise WebError(404, f"no callback {text!r}")
    return int(text)


@guarded("operator")
async def console_events(call: Call) -> Response:
    """Server-sent events for one operator's console."""
    ctx, who = call.ctx, call.who
    user = who.sip_user

    async def render(events: Sequence[LiveEvent], full: bool) -> list[SseMessage]:
        out: list[SseMessage] = []
        mine = [e for e in events if e.operator is not None and e.operator == user]
        snapshot = ctx.live.snapshot()
        if full or mine:  # an offer, an answer or a state change of mine
            html = ctx.render(
                "_console_status.html",
                now=ctx.now(),
                csrf=call.session.csrf if call.session else "",
                **_status_values(ctx, who, snapshot),
            )
            out.append(SseMessage("status", html))
        for e in mine:
            if e.kind in ("call_offered", "call_answered") and e.incident_id:
                out.append(json_message("incident", {"incident_id": e.incident_id, "kind": e.kind}))
        for e in mine:
            if e.kind == "call_offer_cancelled" and e.incident_id:
                out.append(json_message("incident_withdrawn", {"incident_id": e.incident_id}))
        for e in events:
            if e.kind == "call_ended" and e.incident_id and e.operator in (None, user):
                out.append(json_message("incident_ended", {"incident_id": e.incident_id}))
        if full:
            me = _operator(snapshot, user)
            if me is not None and me.incident_id:
                out.append(
                    json_message("incident", {"incident_id": me.incident_id, "kind": "current"})
                )
        if full or any(e.kind == "callback_changed" for e in events):
            html = ctx.render(
                "_console_callbacks.html",
                now=ctx.now(),
                csrf=call.session.csrf if call.session else "",
                **await _callback_values(ctx),
            )
            out.append(SseMessage("callbacks", html))
        return out

    return event_stream(ctx, call.session, render, refresh_s=_REFRESH_S)


@guarded("operator")
async def console_state(call: Call) -> Response:
    """This operator's live state as JSON (for scripts and tests)."""
    snapshot = call.ctx.live.snapshot()
    me = _operator(snapshot, call.who.sip_user)
    return JSONResponse(
        {
            "user": call.who.user,
            "state": None if me is None else me.state,
            "incident_id": None if me is None else me.incident_id,
        }
    )


def routes() -> list[Route]:
    return [
        Route("/console", console_page, methods=["GET"]),
        Route("/console/state", console_state, methods=["GET"]),
        Route("/console/events", console_events, methods=["GET"]),
        Route("/console/status", set_status, methods=["POST"]),
        Route("/console/incidents/{incident_id}", incident_card, methods=["GET"]),
        Route("/console/incidents/{incident_id}/disposition", save_disposition, methods=["POST"]),
        Route("/console/incidents/{incident_id}/transfer", transfer, methods=["POST"]),
        Route("/console/incidents/{incident_id}/leave", leave_conference, methods=["POST"]),
        Route("/console/callbacks/{callback_id}/take", take_callback, methods=["POST"]),
        Route("/console/callbacks/{callback_id}/call", call_back, methods=["POST"]),
    ]
