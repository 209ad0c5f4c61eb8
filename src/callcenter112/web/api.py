"""The JSON API under `/api/v1/` for CAD and agency systems and national reporting.

Incidents (list with filters, one with everything), the queue, operators
(list, pause, resume), callbacks (list, take, note an attempt, close) and the
answer-time SLA. Each endpoint carries its `openapi.Operation`; the document
at `/api/v1/openapi.json` is generated from these routes and the models of
`schemas.py` (a route without one cannot be served).

Authentication: the console's session cookie (then writes need the
``X-CSRF-Token`` header), or ``Authorization: Bearer <token>`` with a token
configured for a role. Every answer is JSON; every refusal is a 4xx with
``{"error": "..."}`` naming the problem: unknown query parameters and body
fields, wrong types (400), values outside their vocabulary (422), unknown
ids (404), bodies over 64 KiB (413), a missing CSRF token (403).
"""

from __future__ import annotations

from collections.abc import Collection

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..config import DISPOSITIONS
from ..incidents import (
    CallbackResult,
    Category,
    Disposition,
    IncidentQuery,
    Status,
    callback_to_json,
    format_timestamp,
    incident_to_json,
    parse_timestamp,
)
from ..numerals import is_ascii_digits
from . import schemas
from .auth import may_close_callback
from .bodies import WebError
from .console import disposition_changes, load_for, pause_operator
from .context import Call, guarded
from .openapi import Operation, PathParameter, documented, openapi_document
from .views import call_json, operator_json, sla_json, waiting_json
from .wallboard import CALLBACK_OUTCOMES

__all__ = ["MAX_LIMIT", "PATH_PARAMETERS", "routes"]

MAX_LIMIT = 500
_STATUSES = tuple(s.value for s in Status)
_RESULTS = tuple(r.value for r in CallbackResult)
_READERS = "Roles: supervisor, auditor, admin (or an API token of those roles)."
_DESK = "Roles: operator, supervisor, admin."

PATH_PARAMETERS = {
    "incident_id": PathParameter(
        description="Incident id, `YYYYMMDD-NNNN`.", schema={"type": "string"}
    ),
    "callback_id": PathParameter(
        description="Callback task id.", schema={"type": "integer", "minimum": 1}
    ),
    "user": PathParameter(description="Operator SIP user.", schema={"type": "string"}),
    "number": PathParameter(  # issue 12: web/watchlist.py
        description="A caller's telephone number (normalised as stored).",
        schema={"type": "string"},
    ),
}


def _params(call: Call, allowed: Collection[str]) -> dict[str, str]:
    params = call.request.query_params
    unknown = sorted({k for k in params if k not in allowed})
    if unknown:
        raise WebError(400, f"unknown query parameter(s): {', '.join(unknown)}")
    out: dict[str, str] = {}
    for key in params:
        values = params.getlist(key)
        if len(values) > 1:
            raise WebError(400, f"{key}: given more than once")
        out[key] = values[0].strip()
    return out


def _int(params: dict[str, str], name: str, *, default: int, low: int, high: int) -> int:
    text = params.get(name)
    if text is None or text == "":
        return default
    if not is_ascii_digits(text) or len(text) > 9:
        raise WebError(400, f"{name}: expected a whole number, got {text!r}"[:200])
    value = int(text)
    if not low <= value <= high:
        raise WebError(422, f"{name}: must lie in {low}-{high}")
    return value


def _time(params: dict[str, str], name: str) -> float | None:
    text = params.get(name)
    if not text:
        return None
    try:
        return parse_timestamp(text, end_of_day=name == "until")
    except ValueError as exc:
        raise WebError(400, f"{name}: {exc}") from None


def _choice(params: dict[str, str], name: str, vocabulary: Collection[str]) -> str | None:
    value = params.get(name) or None
    if value is not None and value not in vocabulary:
        raise WebError(422, f"{name}: {value!r} is not one of {'|'.join(vocabulary)}"[:300])
    return value


def _callback_id(call: Call) -> int:
    text = call.param("callback_id")
    if not is_ascii_digits(text) or len(text) > 12:
        raise WebError(404, f"no callback {text!r}"[:100])
    return int(text)


@documented(
    Operation(
        summary="Incidents matching the filters, newest arrival first.",
        description=_READERS,
        query=schemas.IncidentQueryParams,
        answer=schemas.IncidentList,
        answer_description="A page of incidents.",
        errors=(400, 401, 403, 422),
    )
)
@guarded("supervisor", "auditor")
async def list_incidents(call: Call) -> Response:
    p = _params(
        call,
        (
            "since",
            "until",
            "caller",
            "category",
            "status",
            "operator",
            "disposition",
            "limit",
            "offset",
        ),
    )
    category = _choice(p, "category", call.ctx.config.category_ids)
    status = _choice(p, "status", _STATUSES)
    disposition = _choice(p, "disposition", DISPOSITIONS)
    query = IncidentQuery(
        since=_time(p, "since"),
        until=_time(p, "until"),
        caller=p.get("caller") or None,
        category=None if category is None else Category(category),
        status=None if status is None else Status(status),
        operator=p.get("operator") or None,
        disposition=None if disposition is None else Disposition(disposition),
    )
    limit = _int(p, "limit", default=100, low=1, high=MAX_LIMIT)
    offset = _int(p, "offset", default=0, low=0, high=10**9)
    store = call.ctx.store
    rows = await store.list_incidents(query, limit=limit, offset=offset)
    total = await store.count_incidents(query)
    return JSONResponse(
        {
            "incidents": [incident_to_json(i) for i in rows],
            "total": total,
            "limit": limit,
            "offset": offset,
        }
    )


@documented(
    Operation(
        summary="One incident with its legs, timeline, recordings and callbacks.",
        description=_READERS,
        answer=schemas.Incident,
        answer_description="The incident.",
        errors=(400, 401, 403, 404),
    )
)
@guarded("supervisor", "auditor")
async def get_incident(call: Call) -> Response:
    _params(call, ())
    incident_id = call.param("incident_id")
    record = await call.ctx.store.get_incident(incident_id)
    if record is None:
        raise WebError(404, f"no incident {incident_id!r}"[:120])
    return JSONResponse(incident_to_json(record))


@documented(
    Operation(
        summary="Save the after-call form (audit-logged as disposition_change).",
        description="Roles: operator (their own incidents), supervisor, admin.",
        body=schemas.Disposition,
        answer=schemas.DispositionSaved,
        answer_description="What changed.",
        errors=(400, 401, 403, 404, 413, 415, 422),
    )
)
@guarded("operator", "supervisor")
async def save_disposition(call: Call) -> Response:
    incident_id = call.param("incident_id")
    await load_for(call, incident_id)
    if call.payload.kind == "empty":
        raise WebError(400, "send a JSON object with the fields to change")
    changes = disposition_changes(call.ctx, call.payload)
    diff = await call.ctx.store.save_disposition(
        incident_id,
        changes,
        actor=call.who.user,
        at=call.now(),
        categories=call.ctx.config.category_ids,  # issue 12: the city's categories
    )
    return JSONResponse({"incident_id": incident_id, "changed": diff})


@documented(
    Operation(
        summary="Callers waiting (in offer order) and calls up now.",
        description=_DESK,
        answer=schemas.Queue,
        answer_description="The live queue.",
        errors=(400, 401, 403),
    )
)
@guarded("operator", "supervisor")
async def queue(call: Call) -> Response:
    _params(call, ())
    snap = call.ctx.live.snapshot()
    now = call.now()
    return JSONResponse(
        {
            "at": format_timestamp(snap.at),
            "waiting": [
                waiting_json(w, now) for w in sorted(snap.waiting, key=lambda w: w.position)
            ],
            "calls": [call_json(c, now) for c in snap.calls],
            "max_calls": snap.max_calls,
        }
    )


@documented(
    Operation(
        summary="Every configured operator with live state.",
        description=_DESK,
        answer=schemas.OperatorList,
        answer_description="Operators.",
        errors=(400, 401, 403),
    )
)
@guarded("operator", "supervisor")
async def operators(call: Call) -> Response:
    _params(call, ())
    snap = call.ctx.live.snapshot()
    now = call.now()
    return JSONResponse({"operators": [operator_json(o, now) for o in snap.operators]})


def _operator_target(call: Call) -> str:
    user = call.param("user")
    if call.ctx.config.operator_named(user) is None:
        raise WebError(404, f"no operator {user!r}"[:100])
    if call.who.role == "operator" and call.who.sip_user != user:
        raise WebError(403, "operators may pause and resume only themselves")
    return user


@documented(
    Operation(
        summary="Pause an operator (no calls offered); audit-logged.",
        description="Operators pause themselves; supervisors and admins anyone.",
        body=schemas.PauseBody,
        answer=schemas.PauseResult,
        answer_description="Paused.",
        errors=(400, 401, 403, 404, 409, 413, 415, 422),
    )
)
@guarded("operator", "supervisor")
async def pause(call: Call) -> Response:
    user = _operator_target(call)
    reason = await pause_operator(call, user, paused=True)
    return JSONResponse({"ok": True, "user": user, "paused": True, "reason": reason})


@documented(
    Operation(
        summary="Make a paused operator available again; audit-logged.",
        description="Operators resume themselves; supervisors and admins anyone.",
        body=schemas.UnpauseBody,
        body_required=False,
        answer=schemas.PauseResult,
        answer_description="Available.",
        errors=(400, 401, 403, 404, 409),
    )
)
@guarded("operator", "supervisor")
async def unpause(call: Call) -> Response:
    user = _operator_target(call)
    await pause_operator(call, user, paused=False)
    return JSONResponse({"ok": True, "user": user, "paused": False, "reason": None})


@documented(
    Operation(
        summary="Callback tasks of dropped calls, oldest first.",
        description=_DESK,
        query=schemas.CallbackQueryParams,
        answer=schemas.CallbackList,
        answer_description="Callback tasks.",
        errors=(400, 401, 403, 422),
    )
)
@guarded("operator", "supervisor")
async def list_callbacks(call: Call) -> Response:
    p = _params(call, ("status", "incident_id", "limit"))
    status = _choice(p, "status", ("open", "all")) or "open"
    limit = _int(p, "limit", default=100, low=1, high=MAX_LIMIT)
    rows = await call.ctx.store.list_callbacks(
        open_only=status == "open", incident_id=p.get("incident_id") or None, limit=limit
    )
    return JSONResponse({"callbacks": [callback_to_json(c) for c in rows]})


@documented(
    Operation(
        summary="Claim a callback task (audit-logged).",
        description="force=true takes a task someone else holds (supervisors).",
        body=schemas.CallbackTakeBody,
        body_required=False,
        answer=schemas.Callback,
        answer_description="The task, now taken.",
        errors=(400, 401, 403, 404, 409),
    )
)
@guarded("operator", "supervisor")
async def take_callback(call: Call) -> Response:
    call.payload.only({"force"})
    force = call.payload.flag("force")
    if force and not call.who.may(("supervisor",)):
        raise WebError(403, "only supervisors may take a callback someone else holds")
    taken = await call.ctx.store.callback_take(
        _callback_id(call), actor=call.who.user, at=call.now(), force=force
    )
    return JSONResponse(callback_to_json(taken))


@documented(
    Operation(
        summary="Note one try at calling back.",
        description=_DESK,
        body=schemas.CallbackAttemptBody,
        status=201,
        answer=schemas.AttemptRecorded,
        answer_description="Attempt recorded.",
        errors=(400, 401, 403, 404, 409, 422),
    )
)
@guarded("operator", "supervisor")
async def callback_attempt(call: Call) -> Response:
    call.payload.only({"result", "note"})
    result = call.payload.text("result", required=True, max_len=16)
    if result not in _RESULTS:
        raise WebError(422, f"result: must be one of {'|'.join(_RESULTS)}")
    callback_id = _callback_id(call)
    attempt_id = await call.ctx.store.callback_attempt(
        callback_id,
        actor=call.who.user,
        at=call.now(),
        result=CallbackResult(result),
        note=call.payload.text("note", max_len=500),
    )
    return JSONResponse({"callback_id": callback_id, "attempt_id": attempt_id}, status_code=201)


@documented(
    Operation(
        summary="Close a callback task with its outcome (audit-logged).",
        description=_DESK,
        body=schemas.CallbackCloseBody,
        answer=schemas.Callback,
        answer_description="The closed task.",
        errors=(400, 401, 403, 404, 409, 422),
    )
)
@guarded("operator", "supervisor")
async def close_callback(call: Call) -> Response:
    call.payload.only({"outcome", "note"})
    outcome = call.payload.text("outcome", required=True, max_len=200)
    assert outcome is not None
    if outcome not in CALLBACK_OUTCOMES:
        raise WebError(422, f"outcome: must be one of {'|'.join(CALLBACK_OUTCOMES)}")
    callback_id = _callback_id(call)
    # Issue 11: only the holder or a supervisor closes (web/auth.py); a closed or unknown
    # callback is left to the store's own answer.
    open_now = await call.ctx.store.list_callbacks(open_only=True)
    held = next((c for c in open_now if c.id == callback_id), None)
    if held is not None and not may_close_callback(call.who, held.taken_by):
        whose = f"held by {held.taken_by}" if held.taken_by else "not taken: take it first"
        raise WebError(403, f"callback {callback_id} is {whose}; a supervisor may close it")
    closed = await call.ctx.store.callback_close(
        callback_id,
        actor=call.who.user,
        at=call.now(),
        outcome=outcome,
        note=call.payload.text("note", max_len=500),
        # issue 11: the holder check again, in the store's own transaction
        holder=None if call.who.may(("supervisor",)) else call.who.user,
    )
    return JSONResponse(callback_to_json(closed))


@documented(
    Operation(
        summary="Answer-time figures for calls that arrived in [since, until).",
        description=_READERS + " since defaults to the centre's local midnight.",
        query=schemas.SlaParams,
        answer=schemas.Sla,
        answer_description="SLA figures.",
        errors=(400, 401, 403),
    )
)
@guarded("supervisor", "auditor")
async def sla(call: Call) -> Response:
    p = _params(call, ("since", "until"))
    since = _time(p, "since")
    if since is None:
        since = call.ctx.local_midnight(call.now())
    summary = await call.ctx.store.sla_summary(since=since, until=_time(p, "until"))
    return JSONResponse(sla_json(summary))


@documented(
    Operation(summary="This document.", answer_description="OpenAPI 3.1 document.", public=True)
)
async def openapi(request: Request) -> Response:
    # Built once per application from its own routes (they never change after start).
    document = getattr(request.app.state, "openapi", None)
    if document is None:
        document = openapi_document(request.app.routes, PATH_PARAMETERS)
        request.app.state.openapi = document
    return JSONResponse(document)


def routes() -> list[Route]:
    v1 = "/api/v1"
    return [
        Route(f"{v1}/openapi.json", openapi, methods=["GET"]),
        Route(f"{v1}/incidents", list_incidents, methods=["GET"]),
        Route(f"{v1}/incidents/{{incident_id}}", get_incident, methods=["GET"]),
        Route(f"{v1}/incidents/{{incident_id}}/disposition", save_disposition, methods=["POST"]),
        Route(f"{v1}/queue", queue, methods=["GET"]),
        Route(f"{v1}/operators", operators, methods=["GET"]),
        Route(f"{v1}/operators/{{user}}/pause", pause, methods=["POST"]),
        Route(f"{v1}/operators/{{user}}/unpause", unpause, methods=["POST"]),
        Route(f"{v1}/callbacks", list_callbacks, methods=["GET"]),
        Route(f"{v1}/callbacks/{{callback_id}}/take", take_callback, methods=["POST"]),
        Route(f"{v1}/callbacks/{{callback_id}}/attempts", callback_attempt, methods=["POST"]),
        Route(f"{v1}/callbacks/{{callback_id}}/close", close_callback, methods=["POST"]),
        Route(f"{v1}/sla", sla, methods=["GET"]),
    ]
