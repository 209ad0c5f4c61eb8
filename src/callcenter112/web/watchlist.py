"""The supervisor's watch list and a caller's history on the web (issue 12).

Routes (registered by `routes()`):

- ``GET /watchlist`` — the page: numbers listed now, the system's suggestions
  (``callers.suggest_watch_list``: ``[callers] suggest_after_pranks_24h`` prank
  dispositions in 24 h) for a supervisor to confirm, a form to list a number
  and a button to take one off. The system never lists by itself.
- ``GET /api/v1/watchlist`` — the same as JSON (``?history=1``: every entry ever).
- ``POST /api/v1/watchlist`` (also the page's form) — ``number``, ``reason``,
  ``expiry`` (24h|7d|30d): list a number; audited with the supervisor's name.
- ``POST /api/v1/watchlist/{number}/remove`` (also the page's button) — take it off.
- ``GET /api/v1/callers/{number}/history`` — calls in the last 10 min, 24 h and
  30 days with their dispositions, whether the number is listed, any suggestion.

Withheld or anonymous caller ID is never listable and has no history.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Literal

from pydantic import BaseModel, ConfigDict
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..callers import (
    DAY_S,
    MONTH_S,
    CallerRules,
    WatchListSuggestion,
    caller_history,
    suggest_watch_list,
)
from ..incidents import Disposition, IncidentQuery, normalize_caller
from ..numerals import is_ascii_digits
from ..watchlist import EXPIRY_CHOICES, WatchListChange, WatchListError
from ..watchlist_cli import entry_to_json
from .bodies import WebError
from .context import Call, guarded
from .openapi import Operation, documented

__all__ = ["routes"]

MAX_PRANKS_SCANNED = 1000  # prank-disposed incidents of the last 24 h read for suggestions


class WatchListForm(BaseModel):
    model_config = ConfigDict(extra="forbid")
    number: str
    reason: str
    expiry: Literal["24h", "7d", "30d"]


class WatchListEntryDoc(BaseModel):
    model_config = ConfigDict(extra="forbid")
    number: str
    reason: str
    expires_at: str
    created_by: str
    created_at: str
    removed_by: str | None
    removed_at: str | None


class SuggestionDoc(BaseModel):
    model_config = ConfigDict(extra="forbid")
    number: str
    reason: str
    pranks_24h: int
    incidents: list[str]


class WatchListAnswer(BaseModel):
    model_config = ConfigDict(extra="forbid")
    entries: list[WatchListEntryDoc]
    suggestions: list[SuggestionDoc]


class RemovedAnswer(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ok: bool
    entry: WatchListEntryDoc


class CallerHistoryAnswer(BaseModel):
    model_config = ConfigDict(extra="forbid")
    number: str
    calls_10min: int
    calls_24h: int
    calls_30d: int
    dispositions_24h: dict[str, int]
    dispositions_30d: dict[str, int]
    incidents_10min: list[str]
    watch_listed: bool
    suggestion: SuggestionDoc | None


def _suggestion_json(s: WatchListSuggestion) -> dict[str, object]:
    return {
        "number": s.number,
        "reason": s.reason,
        "pranks_24h": s.pranks_24h,
        "incidents": list(s.incidents),
    }


async def _suggestions(call: Call) -> list[WatchListSuggestion]:
    """Numbers with enough prank dispositions in 24 h and not listed yet."""
    store, now = call.ctx.store, call.now()
    pranks = await store.list_incidents(
        IncidentQuery(since=now - DAY_S, disposition=Disposition.PRANK), limit=MAX_PRANKS_SCANNED
    )
    by_number: dict[str, int] = defaultdict(int)
    for incident in pranks:
        if incident.caller:
            by_number[incident.caller] += 1
    rules = CallerRules.from_config(call.ctx.config.callers)
    out: list[WatchListSuggestion] = []
    for number, count in sorted(by_number.items()):
        if count < rules.suggest_after_pranks_24h or await store.is_watch_listed(number, now):
            continue
        history = caller_history(
            number, await store.calls_from(number, since=now - DAY_S, until=now + 1), now + 1
        )
        suggestion = suggest_watch_list(history, rules)
        if suggestion is not None:
            out.append(suggestion)
    return out


@guarded("supervisor")
async def page(call: Call) -> Response:
    now = call.now()
    return call.page(
        "watchlist.html",
        entries=[entry_to_json(e) for e in await call.ctx.store.watch_list(now)],
        suggestions=await _suggestions(call),
        expiries=tuple(EXPIRY_CHOICES),
        max_extra_wait_s=call.ctx.config.queue.watch_list_max_extra_wait_s,
    )


@documented(
    Operation(
        summary="The watch list: numbers listed now (history=1: every entry ever) and the "
        "system's suggestions, which a supervisor confirms or ignores.",
        answer=WatchListAnswer,
        errors=(401, 403),
    )
)
@guarded("supervisor")
async def list_api(call: Call) -> Response:
    history = call.request.query_params.get("history") in ("1", "true", "yes")
    entries = await call.ctx.store.watch_list(call.now(), history=history)
    return JSONResponse(
        {
            "entries": [entry_to_json(e) for e in entries],
            "suggestions": [_suggestion_json(s) for s in await _suggestions(call)],
        }
    )


@guarded("supervisor")
async def add_form(call: Call) -> Response:
    """The page's form: as the API, then back to the page."""
    await _add(call)
    return call.done("/watchlist")


@guarded("supervisor")
async def remove_form(call: Call) -> Response:
    await _remove(call)
    return call.done("/watchlist")


@documented(
    Operation(
        summary="List a number (reason, expiry 24h|7d|30d); audited with the supervisor's name. "
        "A listed caller hears a warning and waits behind fresh callers, never longer than "
        "queue.watch_list_max_extra_wait_s beyond them; never refused.",
        body=WatchListForm,
        status=201,
        answer=WatchListEntryDoc,
        errors=(400, 401, 403, 422),
    )
)
@guarded("supervisor")
async def add(call: Call) -> Response:
    change = await _add(call)
    return JSONResponse(entry_to_json(change.entry), status_code=201)


async def _add(call: Call) -> WatchListChange:
    p = call.payload
    p.only({"number", "reason", "expiry"})
    try:
        change = await call.ctx.store.watch_list_add(
            p.text("number", required=True, max_len=64) or "",
            reason=p.text("reason", required=True, max_len=1000) or "",
            expiry=p.text("expiry", required=True, max_len=8) or "",
            created_by=call.who.user,
            now=call.now(),
        )
    except WatchListError as exc:
        raise WebError(exc.status_hint, str(exc)) from None
    return change


@documented(
    Operation(
        summary="Take a number off the watch list early; audited.",
        body_required=False,
        answer=RemovedAnswer,
        errors=(401, 403, 404),
    )
)
@guarded("supervisor")
async def remove(call: Call) -> Response:
    change = await _remove(call)
    return call.done("/watchlist", entry=entry_to_json(change.entry))


async def _remove(call: Call) -> WatchListChange:
    try:
        return await call.ctx.store.watch_list_remove(
            call.param("number"), removed_by=call.who.user, now=call.now()
        )
    except WatchListError as exc:
        raise WebError(exc.status_hint, str(exc)) from None


@documented(
    Operation(
        summary="A caller number's history: calls in the last 10 min, 24 h and 30 days with "
        "their dispositions, whether it is listed, and any watch-list suggestion. Withheld "
        "numbers have none.",
        answer=CallerHistoryAnswer,
        errors=(400, 401, 403),
    )
)
@guarded("operator", "supervisor", "auditor")
async def history_api(call: Call) -> Response:
    store, now = call.ctx.store, call.now()
    raw = call.param("number")
    digits = raw[1:] if raw.startswith("+") else raw
    if raw != "anonymous" and not (1 <= len(digits) <= 32 and is_ascii_digits(digits)):
        raise WebError(400, "number: digits 0-9 only, optionally after a leading +")
    number = normalize_caller(raw)
    calls = await store.calls_from(number, since=now - MONTH_S, until=now + 1)
    history = caller_history(number, calls, now + 1)
    suggestion = suggest_watch_list(history, CallerRules.from_config(call.ctx.config.callers))
    return JSONResponse(
        {
            **history.to_json(),
            "watch_listed": await store.is_watch_listed(number, now),
            "suggestion": None if suggestion is None else _suggestion_json(suggestion),
        }
    )


def routes() -> list[Route]:
    v1 = "/api/v1"
    return [
        Route("/watchlist", page, methods=["GET"]),
        Route("/watchlist", add_form, methods=["POST"]),
        Route("/watchlist/{number}/remove", remove_form, methods=["POST"]),
        Route(f"{v1}/watchlist", list_api, methods=["GET"]),
        Route(f"{v1}/watchlist", add, methods=["POST"]),
        Route(f"{v1}/watchlist/{{number}}/remove", remove, methods=["POST"]),
        Route(f"{v1}/callers/{{number}}/history", history_api, methods=["GET"]),
    ]
