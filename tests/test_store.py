"""The store contract: durability, group commit, rules, queries — on SQLite and PostgreSQL.

Every test taking `store` or `stores` runs on both engines (tests/store_engines.py);
the few that check one engine's own mechanics (WAL, PRAGMAs, a full disk) say so.
"""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from callcenter112.incidents import (
    CallbackResult,
    CallbackStatus,
    Category,
    Disposition,
    IncidentError,
    IncidentQuery,
    LegQuality,
    LegRole,
    Status,
)
from callcenter112.records import SCHEMA_VERSION, SqliteStore, StoreError, open_store
from store_engines import StoreFactory

pytest_plugins = ("pg_support", "store_engines")  # the engine fixtures

T0 = datetime(2026, 11, 28, 10, 0, 0, tzinfo=UTC).timestamp()


async def _new(
    store: SqliteStore, at: float = T0, caller: str | None = "081234567890", **kw: Any
) -> str:
    return await store.create_incident(
        caller=caller, arrived_at=at, trunk="telkom", dialled="112", **kw
    )


# --------------------------------------------------------------------------- durability


async def test_incident_survives_reopen(tmp_path: Path) -> None:
    db = tmp_path / "db.sqlite3"
    async with open_store(db) as s:
        iid = await s.create_incident(
            caller="+62 812 3456 7890",
            arrived_at=T0 + 0.123456,
            trunk="telkom",
            dialled="112",
            call_id="a84b4c76e66710@192.0.2.4",
        )
        await s.update_incident(iid, at=T0 + 1, stamps={"answered_at": T0 + 0.2501})
    # A different process-level connection sees it: the data is in the file.
    raw = sqlite3.connect(db)
    assert raw.execute("SELECT caller, call_id FROM incidents").fetchall() == [
        ("081234567890", "a84b4c76e66710@192.0.2.4")
    ]
    assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    raw.close()
    async with open_store(db) as s:
        rec = await s.get_incident(iid)
        assert rec is not None
        assert rec.incident.arrived_at == T0 + 0.123456  # sub-millisecond precision kept
        assert rec.incident.answered_at == T0 + 0.2501
        assert rec.incident.status is Status.ACTIVE
        assert rec.events[0].kind == "arrived"
        assert rec.events[0].detail == {
            "caller": "+62 812 3456 7890",
            "trunk": "telkom",
            "dialled": "112",
            "call_id": "a84b4c76e66710@192.0.2.4",
        }


async def test_sqlite_writer_runs_with_full_sync_and_foreign_keys(tmp_path: Path) -> None:
    async with open_store(tmp_path / "db.sqlite3") as store:
        await _writer_checks(store)


async def _writer_checks(store: SqliteStore) -> None:
    conn = store._writer
    assert conn is not None
    # synchronous=FULL is 2; it is per connection, so it must be read on the writer.
    assert (
        await asyncio.get_running_loop().run_in_executor(
            store._writer_pool, lambda: conn.execute("PRAGMA synchronous").fetchone()[0]
        )
        == 2
    )
    with pytest.raises(IncidentError) as err:
        await store.add_leg(
            "20990101-0001", role=LegRole.CALLER, call_id="x", peer=None, codec=None, started_at=T0
        )
    assert err.value.status_hint == 404


async def test_a_write_returns_only_after_commit(store: SqliteStore, stores: StoreFactory) -> None:
    before = store.commits
    iid = await _new(store)
    assert store.commits == before + 1
    # A fresh connection (another reader) sees it at once.
    raw = stores.raw()
    assert raw.execute("SELECT id FROM incidents") == [(iid,)]
    raw.close()


async def test_writes_after_close_fail_loudly(stores: StoreFactory) -> None:
    async with stores.open() as s:
        pass
    with pytest.raises(StoreError, match="closed"):
        await _new(s)
    with pytest.raises(StoreError, match="closed"):
        await s.get_incident("x")
    await s.close()  # idempotent


async def test_pg_database_newer_than_the_program_is_refused(pg_dsn: str) -> None:
    from callcenter112.records.postgres import open_pg_store

    async with open_pg_store(pg_dsn):
        pass
    raw = StoreFactory("postgresql", pg_dsn).raw()
    raw.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    raw.close()
    with pytest.raises(StoreError, match="newer than this program"):
        async with open_pg_store(pg_dsn):
            pass


async def test_database_newer_than_the_program_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "db.sqlite3"
    raw = sqlite3.connect(db)
    raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    raw.close()
    with pytest.raises(StoreError, match="newer than this program"):
        await SqliteStore(db).open()


# --------------------------------------------------------------------------- group commit


async def test_group_commit_batches_concurrent_arrivals(store: SqliteStore) -> None:
    before = store.commits
    ids = await asyncio.gather(*(_new(store, T0 + i * 0.01, f"0812000{i:05d}") for i in range(200)))
    assert len(set(ids)) == 200
    assert sorted(ids) == [f"20261128-{n:04d}" for n in range(1, 201)]
    commits = store.commits - before
    assert 1 <= commits <= 10, commits  # a handful of fsyncs, not 200
    assert store.largest_batch >= 20
    assert await store.count_incidents() == 200


async def test_one_commit_per_write_without_group_commit(stores: StoreFactory) -> None:
    async with stores.open(max_batch=1) as s:
        await asyncio.gather(*(_new(s, T0 + i) for i in range(30)))
        assert s.commits == 30
        assert s.largest_batch == 1


async def test_one_failing_write_does_not_fail_its_batch(store: SqliteStore) -> None:
    results = await asyncio.gather(
        _new(store, T0),
        store.add_event("nope", "note", "x", at=T0),
        _new(store, T0 + 1),
        return_exceptions=True,
    )
    assert isinstance(results[1], IncidentError)
    assert results[0] == "20261128-0001" and results[2] == "20261128-0002"
    assert store.largest_batch == 3
    assert await store.count_incidents() == 2


async def test_sqlite_full_disk_errors_reach_every_caller_and_lose_nothing_committed(
    tmp_path: Path,
) -> None:
    db = tmp_path / "db.sqlite3"
    async with open_store(db) as s:
        kept = await _new(s)
    raw = sqlite3.connect(db)
    pages = raw.execute("PRAGMA page_count").fetchone()[0]
    raw.close()
    # Cap the file at its current size: the database is "full".
    async with open_store(db, pragmas={"max_page_count": pages}) as s:
        big = "x" * 20_000
        results = await asyncio.gather(
            *(_new(s, T0 + i, caller_name=big) for i in range(1, 40)), return_exceptions=True
        )
        failures = [r for r in results if isinstance(r, BaseException)]
        assert failures, "the cap was never hit"
        for failure in failures:
            assert isinstance(failure, StoreError)
            assert failure.status_hint == 503
            assert "full" in str(failure)
        ok = [r for r in results if isinstance(r, str)]
        # Every write reported as done is really there; every other one is really absent.
        listed = {i.id for i in await s.list_incidents(limit=None)}
        assert listed == {kept, *ok}
        # The store keeps serving reads and small writes that fit.
        assert await s.get_incident(kept) is not None


async def test_bounded_queue_applies_backpressure(stores: StoreFactory) -> None:
    async with stores.open(queue_size=4) as s:
        ids = await asyncio.gather(*(_new(s, T0 + i) for i in range(50)))
        assert len(set(ids)) == 50
        assert s.largest_batch <= 5


# --------------------------------------------------------------------------- lifecycle rules


async def test_ids_restart_each_day(store: SqliteStore) -> None:
    a = await _new(store, T0)
    b = await _new(store, T0 + 1)
    c = await _new(store, T0 + 86_400)
    assert (a, b, c) == ("20261128-0001", "20261128-0002", "20261129-0001")


async def test_ids_use_the_configured_local_day(stores: StoreFactory) -> None:
    async with stores.open(id_utc_offset_s=9 * 3600) as s:
        late = datetime(2026, 11, 28, 16, 0, tzinfo=UTC).timestamp()  # 01:00 WIT next day
        assert await _new(s, late) == "20261129-0001"


async def test_timestamps_keep_the_first_time(store: SqliteStore) -> None:
    iid = await _new(store)
    assert await store.set_timestamps(iid, offered_at=T0 + 10) == {"offered_at"}
    assert await store.set_timestamps(iid, offered_at=T0 + 30, queued_at=T0 + 5) == {"queued_at"}
    rec = await store.get_incident(iid)
    assert rec is not None
    assert rec.incident.offered_at == T0 + 10
    assert rec.incident.queued_at == T0 + 5
    with pytest.raises(IncidentError) as err:
        await store.set_timestamps(iid, arrived_at=T0 + 1)
    assert err.value.status_hint == 422
    with pytest.raises(IncidentError):
        await store.update_incident(iid, at=T0, stamps={"lunch_at": T0})


async def test_call_flow_update_is_one_transaction(store: SqliteStore) -> None:
    iid = await _new(store)
    before = store.commits
    stamped = await store.update_incident(
        iid,
        at=T0 + 9,
        category=Category.FIRE,
        language="en",
        operator="op1",
        stamps={"operator_answered_at": T0 + 9, "offered_at": T0 + 8},
        notify_agency="damkar",
        event="operator_answered",
        detail={"operator": "op1"},
    )
    assert store.commits == before + 1
    assert stamped == {"operator_answered_at", "offered_at"}
    await store.update_incident(iid, at=T0 + 20, notify_agency="damkar")
    await store.update_incident(iid, at=T0 + 21, notify_agency="polisi")
    rec = await store.get_incident(iid)
    assert rec is not None
    inc = rec.incident
    assert (inc.category, inc.language, inc.operator) == (Category.FIRE, "en", "op1")
    assert inc.agencies_notified == ("damkar", "polisi")
    assert inc.sla_s == pytest.approx(9.0)
    assert [e.kind for e in rec.events] == ["arrived", "operator_answered"]


async def test_close_completed_and_nothing_leaves_a_final_state(store: SqliteStore) -> None:
    iid = await _new(store)
    leg = await store.add_leg(
        iid, role=LegRole.CALLER, call_id="c1", peer="192.0.2.9:5060", codec="PCMA", started_at=T0
    )
    assert (
        await store.close_incident(
            iid, status=Status.COMPLETED, at=T0 + 60, ended_at=T0 + 60, reason="caller hung up"
        )
        is None
    )
    for status in Status:
        with pytest.raises(IncidentError) as err:
            await store.close_incident(iid, status=status, at=T0 + 61, ended_at=T0 + 61, reason="x")
        assert err.value.status_hint == 409
    rec = await store.get_incident(iid)
    assert rec is not None
    assert rec.incident.status is Status.COMPLETED
    assert rec.incident.ended_at == T0 + 60
    # The leg still open at close was closed with the incident …
    assert rec.legs[0].end_reason == "incident_completed"
    # … and the late end_leg still records its statistics (idempotent, no second event).
    assert not await store.end_leg(
        leg,
        ended_at=T0 + 60.5,
        reason="bye",
        quality=LegQuality(packets=3000, lost=1, jitter_ms=2.5),
    )
    rec = await store.get_incident(iid)
    assert rec is not None
    assert rec.legs[0].quality == LegQuality(packets=3000, lost=1, jitter_ms=2.5)
    assert rec.legs[0].ended_at == T0 + 60
    assert [e.kind for e in rec.events].count("leg_ended") == 0
    assert await store.list_callbacks() == []


async def test_abandoned_call_becomes_a_callback_task(store: SqliteStore) -> None:
    iid = await _new(store, caller="+6281299990000")
    cb_id = await store.close_incident(
        iid, status=Status.ABANDONED, at=T0 + 30, ended_at=T0 + 30, reason="hung up in queue"
    )
    assert cb_id is not None
    [cb] = await store.list_callbacks()
    assert (cb.id, cb.incident_id, cb.number, cb.reason) == (
        cb_id,
        iid,
        "081299990000",
        "abandoned",
    )
    assert cb.status is CallbackStatus.OPEN and not cb.no_number


async def test_anonymous_caller_gets_a_no_number_task(store: SqliteStore) -> None:
    iid = await _new(store, caller=None)
    await store.close_incident(iid, status=Status.ABANDONED, at=T0 + 3, ended_at=T0 + 3, reason="x")
    [cb] = await store.list_callbacks()
    assert cb.number is None and cb.no_number
    rec = await store.get_incident(iid)
    assert rec is not None and rec.incident.caller == "anonymous"
    assert rec.callbacks == (cb,)


async def test_legs_rule_and_callback_legs(store: SqliteStore) -> None:
    iid = await _new(store)
    await store.close_incident(iid, status=Status.ABANDONED, at=T0 + 5, ended_at=T0 + 5, reason="x")
    with pytest.raises(IncidentError, match="only get a callback leg"):
        await store.add_leg(
            iid, role=LegRole.OPERATOR, call_id="o", peer="op1", codec="PCMU", started_at=T0 + 60
        )
    cb_leg = await store.add_leg(
        iid, role=LegRole.CALLBACK, call_id="cb", peer="0812", codec="PCMA", started_at=T0 + 60
    )
    # While the callback is up, the operator it is bridged to may join.
    op_leg = await store.add_leg(
        iid, role=LegRole.OPERATOR, call_id="o", peer="op1", codec="PCMU", started_at=T0 + 61
    )
    assert await store.end_leg(op_leg, ended_at=T0 + 90, reason="bye")
    assert await store.end_leg(cb_leg, ended_at=T0 + 90, reason="bye")
    with pytest.raises(IncidentError):
        await store.add_leg(
            iid, role=LegRole.AGENCY, call_id="a", peer="113", codec="PCMA", started_at=T0 + 95
        )
    rec = await store.get_incident(iid)
    assert rec is not None
    assert rec.incident.status is Status.ABANDONED  # a callback does not change the status
    assert [leg.role for leg in rec.legs] == [LegRole.CALLBACK, LegRole.OPERATOR]
    with pytest.raises(IncidentError) as err:
        await store.end_leg(999, ended_at=T0, reason="x")
    assert err.value.status_hint == 404


async def test_disposition_is_saved_and_audited(store: SqliteStore) -> None:
    iid = await _new(store)
    diff = await store.save_disposition(
        iid,
        {"disposition": "prank", "agencies_notified": ["polisi"], "kecamatan": "Sirimau"},
        actor="op1",
        at=T0 + 100,
    )
    assert diff == {
        "disposition": [None, "prank"],
        "agencies_notified": [[], ["polisi"]],
        "kecamatan": [None, "Sirimau"],
    }
    # Saving the same form again changes nothing and logs nothing.
    assert (
        await store.save_disposition(iid, {"disposition": "prank"}, actor="op1", at=T0 + 101) == {}
    )
    [entry] = await store.list_audit(target=iid)
    assert (entry.actor, entry.action, entry.detail) == (
        "op1",
        "disposition_change",
        {"changes": diff},
    )
    with pytest.raises(IncidentError) as err:
        await store.save_disposition(iid, {"disposition": "funny"}, actor="op1", at=T0)
    assert err.value.status_hint == 422
    rec = await store.get_incident(iid)
    assert rec is not None
    assert rec.incident.disposition is Disposition.PRANK
    assert rec.incident.kecamatan == "Sirimau"


async def test_legal_hold_is_audited(store: SqliteStore) -> None:
    iid = await _new(store)
    assert await store.set_legal_hold(
        iid, on=True, actor="auditor", at=T0 + 1, reason="court order 12"
    )
    assert not await store.set_legal_hold(iid, on=True, actor="auditor", at=T0 + 2)
    rec = await store.get_incident(iid)
    assert rec is not None and rec.incident.legal_hold
    [entry] = await store.list_audit(action="legal_hold")
    assert entry.detail == {"on": True, "reason": "court order 12"}


# ------------------------------------------------------------------ callbacks and operators


async def test_callback_take_attempt_close(store: SqliteStore) -> None:
    iid = await _new(store)
    cb_id = await store.close_incident(iid, status=Status.ABANDONED, at=T0, ended_at=T0, reason="x")
    assert cb_id is not None
    taken = await store.callback_take(cb_id, actor="supervisor", at=T0 + 10)
    assert taken.status is CallbackStatus.TAKEN and taken.taken_by == "supervisor"
    with pytest.raises(IncidentError, match="taken by supervisor"):
        await store.callback_take(cb_id, actor="op2", at=T0 + 11)
    await store.callback_take(cb_id, actor="op2", at=T0 + 12, force=True)
    await store.callback_attempt(cb_id, actor="op2", at=T0 + 20, result=CallbackResult.NO_ANSWER)
    await store.callback_attempt(
        cb_id, actor="op2", at=T0 + 80, result=CallbackResult.ANSWERED, note="caller safe"
    )
    closed = await store.callback_close(
        cb_id, actor="op2", at=T0 + 90, outcome="reached, no help needed"
    )
    assert closed.status is CallbackStatus.CLOSED
    assert [a.result for a in closed.attempts] == [
        CallbackResult.NO_ANSWER,
        CallbackResult.ANSWERED,
    ]
    assert await store.list_callbacks() == []
    assert [c.id for c in await store.list_callbacks(open_only=False)] == [cb_id]
    for call in (
        store.callback_close(cb_id, actor="op2", at=T0 + 91, outcome="again"),
        store.callback_take(cb_id, actor="op2", at=T0 + 91),
        store.callback_attempt(cb_id, actor="op2", at=T0 + 91, result=CallbackResult.BUSY),
    ):
        with pytest.raises(IncidentError) as err:
            await call
        assert err.value.status_hint == 409
    actions = [e.action for e in await store.list_audit(target=iid)]
    assert actions == ["callback_take", "callback_take", "callback_close"]


async def test_manual_callback_and_unknown_ids(store: SqliteStore) -> None:
    iid = await _new(store)
    cb = await store.create_callback(iid, number="+62 911 362202", reason="line dropped", at=T0)
    [task] = await store.list_callbacks(incident_id=iid)
    assert task.id == cb and task.number == "0911362202"
    with pytest.raises(IncidentError) as err:
        await store.create_callback("20000101-0001", number="1", reason="x", at=T0)
    assert err.value.status_hint == 404
    with pytest.raises(IncidentError) as err:
        await store.callback_take(12345, actor="x", at=T0)
    assert err.value.status_hint == 404


async def test_operator_state_history(store: SqliteStore) -> None:
    await store.record_operator_state("op1", "available", at=T0)
    await store.record_operator_state("op1", "paused", reason="missed 2 offers", at=T0 + 60)
    await store.record_operator_state("op2", "available", at=T0 + 30)
    hist = await store.operator_state_history(operator="op1")
    assert [(h.state, h.reason) for h in hist] == [
        ("available", None),
        ("paused", "missed 2 offers"),
    ]
    assert [h.operator for h in await store.operator_state_history(since=T0 + 10)] == ["op2", "op1"]


# --------------------------------------------------------------------------- queries


async def _populate(store: SqliteStore) -> dict[str, str]:
    """Five incidents with known answer times: 5 s, 12 s, 18 s, 25 s, abandoned."""
    ids: dict[str, str] = {}
    for name, offset, caller, answer, op, cat in [
        ("a", 0, "081111", 5.0, "op1", Category.MEDICAL),
        ("b", 100, "+6281111", 12.0, "op2", Category.FIRE),
        ("c", 200, "082222", 18.0, "op1", Category.POLICE),
        ("d", 300, "083333", 25.0, "op1", Category.MEDICAL),
        ("e", 400, "081111", None, None, Category.UNKNOWN),
    ]:
        at = T0 + offset
        iid = await store.create_incident(caller=caller, arrived_at=at, category=cat)
        if answer is not None:
            await store.update_incident(
                iid, at=at + answer, operator=op, stamps={"operator_answered_at": at + answer}
            )
            await store.close_incident(
                iid, status=Status.COMPLETED, at=at + 60, ended_at=at + 60, reason="bye"
            )
        else:
            await store.close_incident(
                iid, status=Status.ABANDONED, at=at + 9, ended_at=at + 9, reason="hangup"
            )
        ids[name] = iid
    await store.save_disposition(ids["b"], {"disposition": "prank"}, actor="op2", at=T0 + 1000)
    return ids


async def test_list_filters_and_order(store: SqliteStore) -> None:
    ids = await _populate(store)

    async def listed(**kw: object) -> list[str]:
        return [i.id for i in await store.list_incidents(IncidentQuery(**kw), limit=None)]  # type: ignore[arg-type]

    assert await listed() == [ids[k] for k in "edcba"]  # newest first
    assert await listed(since=T0 + 100, until=T0 + 300) == [ids["c"], ids["b"]]
    assert await listed(caller="0062 81111") == [ids["e"], ids["b"], ids["a"]]
    assert await listed(category=Category.MEDICAL) == [ids["d"], ids["a"]]
    assert await listed(status=Status.ABANDONED) == [ids["e"]]
    assert await listed(operator="op1") == [ids["d"], ids["c"], ids["a"]]
    assert await listed(disposition=Disposition.PRANK) == [ids["b"]]
    assert await listed(operator="op1", category=Category.POLICE) == [ids["c"]]
    page = await store.list_incidents(limit=2, offset=1)
    assert [i.id for i in page] == [ids["d"], ids["c"]]
    assert await store.count_incidents(IncidentQuery(operator="op1")) == 3
    streamed = [i.id async for i in store.iter_incidents(page=2)]
    assert streamed == [ids[k] for k in "edcba"]
    streamed = [i.id async for i in store.iter_incidents(IncidentQuery(operator="op1"), page=1)]
    assert streamed == [ids["d"], ids["c"], ids["a"]]


async def test_iter_incidents_with_equal_arrival_times(store: SqliteStore) -> None:
    ids = [await _new(store, T0) for _ in range(7)]
    streamed = [i.id async for i in store.iter_incidents(page=3)]
    assert streamed == sorted(ids, reverse=True)


async def test_caller_history(store: SqliteStore) -> None:
    ids = await _populate(store)
    history = await store.caller_history("+62 81111", exclude_id=ids["e"])
    assert [(i.id, i.disposition) for i in history] == [
        (ids["b"], Disposition.PRANK),
        (ids["a"], None),
    ]
    assert await store.caller_history("anonymous") == []


async def test_sla_summary_and_operator_counts(store: SqliteStore) -> None:
    await _populate(store)
    s = await store.sla_summary(T0)
    assert (s.arrived, s.answered, s.abandoned, s.interrupted, s.active) == (5, 4, 1, 0, 0)
    assert dict(s.within_s) == {10: 1, 15: 2, 20: 3}
    assert s.mean_answer_s == pytest.approx(15.0)
    assert s.max_answer_s == pytest.approx(25.0)
    assert (await store.sla_summary(T0 + 150, T0 + 350)).arrived == 2
    assert await store.operator_call_counts(T0) == {"op1": 3, "op2": 1}
    assert await store.operator_call_counts(T0 + 150) == {"op1": 2}
    empty = await store.sla_summary(T0 + 10_000)
    assert (empty.arrived, empty.mean_answer_s, empty.within_s[20]) == (0, None, 0)


# --------------------------------------------------------------------------- immutability triggers


async def test_audit_rows_cannot_be_changed_or_deleted(
    store: SqliteStore, stores: StoreFactory
) -> None:
    await store.audit(actor="auditor", action="replay", target="x", detail={"path": "a.wav"}, at=T0)
    raw = stores.raw()
    with pytest.raises(raw.integrity_error, match="append-only"):
        raw.execute("UPDATE audit_log SET actor = 'nobody'")
    with pytest.raises(raw.integrity_error, match="append-only"):
        raw.execute("DELETE FROM audit_log")
    if stores.engine == "postgresql":
        with pytest.raises(raw.integrity_error, match="append-only"):
            raw.execute("TRUNCATE audit_log")
    raw.close()


async def test_sealed_recording_rows_are_immutable(
    store: SqliteStore, stores: StoreFactory
) -> None:
    iid = await _new(store)
    await store.add_recording(
        iid,
        "a.wav",
        sha256="0" * 64,
        size=10,
        channels=2,
        duration_s=1.0,
        codec="PCMA",
        sealed_at=T0,
    )
    raw = stores.raw()
    for sql in (
        "UPDATE recordings SET sha256 = 'ff'",
        "UPDATE recordings SET path = 'b.wav'",
        "UPDATE recordings SET seq = 5",
        "UPDATE recordings SET entry_hash = 'x'",
        "DELETE FROM recordings",
    ):
        with pytest.raises(raw.integrity_error):
            raw.execute(sql)
    raw.execute(
        "UPDATE recordings SET deleted_at = 1, deleted_by = 'retention'"
    )  # a tombstone, once
    with pytest.raises(raw.integrity_error, match="final"):
        raw.execute("UPDATE recordings SET deleted_at = 2")
    raw.close()


async def test_recording_paths_must_be_relative(store: SqliteStore) -> None:
    iid = await _new(store)
    for bad in ("/etc/passwd", "../x.wav", ""):
        with pytest.raises(IncidentError) as err:
            await store.add_recording_open(iid, bad, started_at=T0)
        assert err.value.status_hint == 422
    rid = await store.add_recording_open(
        iid, "2026/11/28/a.wav", started_at=T0, codec="PCMU", channels=2
    )
    with pytest.raises(IncidentError, match="already exists"):
        await store.add_recording_open(iid, "2026/11/28/a.wav", started_at=T0)
    [rec] = await store.list_open_recordings()
    assert rec.id == rid and rec.path == "2026/11/28/a.wav"
    other = await _new(store)
    with pytest.raises(IncidentError, match="belongs to incident"):
        await store.add_recording(
            other,
            "2026/11/28/a.wav",
            sha256="0" * 64,
            size=1,
            channels=2,
            duration_s=0,
            codec="PCMU",
            sealed_at=T0,
        )


async def test_a_caller_that_stops_waiting_does_not_undo_its_write(store: SqliteStore) -> None:
    task = asyncio.create_task(_new(store))
    await asyncio.sleep(0)  # let it queue its write (a yield, not a wait)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await _new(store, T0 + 1) == "20261128-0002"  # the first one took -0001
    assert await store.count_incidents() == 2


async def test_a_broken_batch_runner_fails_its_callers_and_the_writer_goes_on(
    store: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode(runs: object) -> object:
        raise RuntimeError("bug")

    monkeypatch.setattr(store, "_run_batch", explode)
    with pytest.raises(StoreError, match="store writer failed"):
        await _new(store)
    monkeypatch.undo()
    assert await _new(store) == "20261128-0001"
