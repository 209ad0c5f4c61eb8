"""Issue 11's store methods, on both engines (SQLite and a real PostgreSQL):
callbacks held for a supervisor, the holder-only close, the /healthz write
probe, and the figures the retention sweep checks."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from callcenter112.incidents import CallbackStatus, IncidentError, Status
from store_engines import raw_for

pytest_plugins = ("pg_support", "store_engines")  # the engine fixtures

T0 = datetime(2026, 11, 28, 10, 0, 0, tzinfo=UTC).timestamp()


async def _callback(store: Any, caller: str = "081234567890") -> tuple[str, int]:
    iid = await store.create_incident(caller=caller, arrived_at=T0, trunk="t", dialled="112")
    cb_id = await store.close_incident(
        iid, status=Status.INTERRUPTED, at=T0, ended_at=T0, reason="no_ack"
    )
    assert cb_id is not None
    return iid, cb_id


async def test_only_the_holder_closes_and_the_check_is_in_the_write(store: Any) -> None:
    _, cb_id = await _callback(store)
    with pytest.raises(IncidentError) as err:  # not taken: an operator may not close it
        await store.callback_close(cb_id, actor="op2", at=T0 + 1, outcome="x", holder="op2")
    assert err.value.status_hint == 403
    await store.callback_take(cb_id, actor="op1", at=T0 + 2)
    with pytest.raises(IncidentError) as err:
        await store.callback_close(cb_id, actor="op2", at=T0 + 3, outcome="x", holder="op2")
    assert err.value.status_hint == 403 and "held by op1" in str(err.value)
    assert (await store.list_callbacks())[0].status is CallbackStatus.TAKEN  # untouched
    closed = await store.callback_close(
        cb_id, actor="op1", at=T0 + 4, outcome="reached", holder="op1"
    )
    assert closed.status is CallbackStatus.CLOSED and closed.closed_by == "op1"


async def test_a_supervisor_closes_anyones(store: Any) -> None:
    _, cb_id = await _callback(store)
    await store.callback_take(cb_id, actor="op1", at=T0 + 1)
    closed = await store.callback_close(cb_id, actor="sup", at=T0 + 2, outcome="duplicate")
    assert closed.status is CallbackStatus.CLOSED


async def test_callbacks_held_for_review(store: Any) -> None:
    iid, cb_id = await _callback(store)
    other, other_cb = await _callback(store, caller="081299990000")
    assert await store.callback_review(iid, reason="unverified_caller", at=T0 + 1) == 1
    by_id = {c.id: c for c in await store.list_callbacks()}
    assert by_id[cb_id].review == "unverified_caller"
    assert by_id[other_cb].review is None
    record = await store.get_incident(iid)
    assert any(e.kind == "callback_review" for e in record.events)
    # Closed tasks are not marked again.
    await store.callback_close(cb_id, actor="sup", at=T0 + 2, outcome="spoofed")
    assert await store.callback_review(iid, reason="unverified_caller", at=T0 + 3) == 0
    with pytest.raises(IncidentError):
        await store.callback_review("no-such-incident", reason="x", at=T0)
    assert other


async def test_probe_writes(store: Any) -> None:
    await store.probe(T0)
    await store.probe(T0 + 5)
    raw = raw_for(store)
    try:
        rows = raw.execute("SELECT id, probed_at FROM health")
    finally:
        raw.close()
    assert [(int(a), float(b)) for a, b in rows] == [(1, T0 + 5)]


async def test_retention_figures(store: Any) -> None:
    assert await store.newest_seal_at() is None
    assert await store.count_recordings() == 0
    iid, _ = await _callback(store)
    await store.add_recording_open(iid, f"{iid}.wav", started_at=T0, codec="PCMA", channels=2)
    assert await store.count_recordings() == 1
    assert await store.newest_seal_at() is None  # open, not sealed
