"""The store's side of issue 12 on both engines: caller history (`calls_from`),
the audited watch list, and priority callbacks for silent callers."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from callcenter112.callers import MONTH_S, CallerRules, caller_history, repeat_verdict
from callcenter112.incidents import Disposition, Status, flag_event_detail
from callcenter112.records import Store
from callcenter112.watchlist import WatchListError

pytest_plugins = ("pg_support", "store_engines")

T0 = datetime(2026, 11, 28, 10, 0, 0, tzinfo=UTC).timestamp()


async def _call(store: Store, caller: str | None, at: float) -> str:
    return await store.create_incident(caller=caller, arrived_at=at, trunk="t", dialled="112")


async def test_calls_from_is_the_numbers_window_with_dispositions(store: Store) -> None:
    old = await _call(store, "0812000001", T0 - MONTH_S - 1)  # outside 30 days
    a = await _call(store, "0812000001", T0 - 500)
    b = await _call(store, "+62812000001", T0 - 100)  # the same line, written otherwise
    await _call(store, "0812000002", T0 - 50)  # another line
    now_id = await _call(store, "0812000001", T0)  # this call: until is exclusive
    await store.save_disposition(a, {"disposition": "prank"}, actor="op1", at=T0 - 400)
    calls = await store.calls_from("0812000001", since=T0 - MONTH_S, until=T0)
    assert [c.incident_id for c in calls] == [b, a]
    assert [c.disposition for c in calls] == [None, Disposition.PRANK]
    assert old not in {c.incident_id for c in calls} and now_id not in {
        c.incident_id for c in calls
    }
    verdict = repeat_verdict(
        caller_history("0812000001", calls, T0), CallerRules(repeat_calls_10min=3)
    )
    assert verdict.repeat_caller and verdict.earlier == (b, a)


async def test_withheld_numbers_have_no_history_and_cannot_be_listed(store: Store) -> None:
    await _call(store, None, T0 - 10)
    await _call(store, "anonymous", T0 - 5)
    assert await store.calls_from("anonymous", since=0, until=T0 + 1) == []
    with pytest.raises(WatchListError):
        await store.watch_list_add(
            "anonymous", reason="pranks", expiry="24h", created_by="sup1", now=T0
        )
    assert not await store.is_watch_listed("anonymous", T0)


async def test_watch_list_add_expire_remove_each_audited(store: Store) -> None:
    change = await store.watch_list_add(
        "0812 000 003", reason="3 pranks today", expiry="24h", created_by="sup1", now=T0
    )
    assert change.entry.number == "0812000003"
    assert await store.is_watch_listed("+62812000003", T0 + 10)
    assert not await store.is_watch_listed("0812000003", T0 + 24 * 3600 + 1)  # expired
    # Listing again replaces the active entry (new reason and expiry), never doubles it.
    await store.watch_list_add(
        "0812000003", reason="still pranking", expiry="7d", created_by="sup2", now=T0 + 60
    )
    (active,) = await store.watch_list(T0 + 120)
    assert (active.reason, active.created_by) == ("still pranking", "sup2")
    assert active.expires_at == T0 + 60 + 7 * 86400
    with pytest.raises(WatchListError, match="expiry"):
        await store.watch_list_add("0812000004", reason="x", expiry="1y", created_by="s", now=T0)
    await store.watch_list_remove("0812000003", removed_by="sup1", now=T0 + 200)
    assert not await store.is_watch_listed("0812000003", T0 + 201)
    with pytest.raises(WatchListError) as missing:
        await store.watch_list_remove("0812000003", removed_by="sup1", now=T0 + 300)
    assert missing.value.status_hint == 404
    history = await store.watch_list(T0, history=True)
    assert [(e.reason, e.removed_by) for e in history] == [
        ("still pranking", "sup1"),
        ("3 pranks today", "sup2"),
    ]
    audit = [(e.action, e.actor, e.target) for e in await store.list_audit(target="0812000003")]
    assert audit == [
        ("watch_list_add", "sup1", "0812000003"),
        ("watch_list_add", "sup2", "0812000003"),
        ("watch_list_remove", "sup1", "0812000003"),
    ]


async def test_a_silent_caller_who_hangs_up_gets_a_priority_callback_listed_first(
    store: Store,
) -> None:
    plain = await _call(store, "0812000010", T0)
    silent = await _call(store, "0812000011", T0 + 10)
    await store.add_event(silent, "flag", flag_event_detail("silent"), at=T0 + 20)
    for iid in (plain, silent):
        await store.close_incident(
            iid, status=Status.ABANDONED, at=T0 + 30, ended_at=T0 + 30, reason="hung up"
        )
    callbacks = await store.list_callbacks()
    assert [(c.incident_id, c.priority) for c in callbacks] == [(silent, True), (plain, False)]
