"""A batch sent in pipeline mode (PostgreSQL) keeps the group commit's guarantees.

The writer sends a batch's statements without waiting for each answer; a
database error then reaches it late, possibly inside a later write, so the
batch is rolled back and run again one statement at a time. These tests run on
both engines (SQLite has no pipeline and always runs one statement at a time)
and check what a caller sees: every write of the batch but the failing one is
committed, the failing one fails with `StoreError`, results read back in the
batch (ids, row counts) are right. On PostgreSQL they also check which path ran.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from callcenter112.incidents import IncidentError, Status
from callcenter112.location.fix import Fix
from callcenter112.records import StoreError
from callcenter112.records.postgres import open_pg_store
from callcenter112.records.sql import SqlConnection

pytest_plugins = ("pg_support", "store_engines")

T0 = datetime(2026, 11, 28, 10, 0, 0, tzinfo=UTC).timestamp()


async def _new(store: Any, at: float = T0) -> str:
    return str(
        await store.create_incident(caller="081234567890", arrived_at=at, trunk="t", dialled="112")
    )


def _refused(conn: SqlConnection) -> object:
    # A write the database itself refuses (not a rule of ours), after one it accepted.
    conn.execute("UPDATE incident_days SET last_seq = last_seq")
    conn.execute("UPDATE no_such_table SET x = 1")
    return "never"


async def _mixed_batch(store: Any) -> list[object]:
    return await asyncio.gather(
        _new(store, T0),
        store._write(_refused),
        _new(store, T0 + 1),
        store.add_event("nope", "note", "x", at=T0),
        _new(store, T0 + 2),
        return_exceptions=True,
    )


def _check_mixed(results: list[object]) -> None:
    assert results[0] == "20261128-0001"
    assert isinstance(results[1], StoreError), results[1]
    assert results[2] == "20261128-0002"
    assert isinstance(results[3], IncidentError), results[3]
    assert results[4] == "20261128-0003"


async def test_a_database_error_in_a_batch_fails_that_write_alone(store: Any) -> None:
    results = await _mixed_batch(store)
    _check_mixed(results)
    assert store.largest_batch == 5  # one batch: the failure really shared it
    assert await store.count_incidents() == 3
    if store.engine == "postgresql":
        # The pipelined run saw the error, rolled back, and ran the batch once more.
        assert store.pipeline_replays == 1
        # The write after the replay is pipelined again and numbered on.
        assert await _new(store, T0 + 3) == "20261128-0004"
        assert store.pipeline_replays == 1


async def test_a_batch_without_database_errors_commits_in_pipeline(store: Any) -> None:
    ids = await asyncio.gather(*(_new(store, T0 + i) for i in range(40)))
    assert sorted(ids) == [f"20261128-{n:04d}" for n in range(1, 41)]
    # A rule broken inside a pipelined batch rolls back to its savepoint, no replay.
    results = await asyncio.gather(
        store.close_incident(
            ids[0], status=Status.COMPLETED, at=T0 + 9, ended_at=T0 + 9, reason="x"
        ),
        store.close_incident(
            ids[0], status=Status.COMPLETED, at=T0 + 9, ended_at=T0 + 9, reason="x"
        ),
        store.add_event(ids[1], "note", "kept", at=T0 + 9),
        return_exceptions=True,
    )
    assert results[0] is None and isinstance(results[1], IncidentError) and results[2] is None
    assert store.commits <= 10
    if store.engine == "postgresql":
        assert store.pipeline_replays == 0
    incident = await store.get_incident(ids[1])
    assert [e.kind for e in incident.events][-1] == "note"


async def test_row_counts_read_inside_a_pipelined_batch_are_right(store: Any) -> None:
    callers = ["+6281234567890", "+6281111111111"]
    for n in range(5):  # three fixes of the first caller, two of the second
        fix = Fix.position(
            lat=-3.7, lon=128.2, radius_m=10.0, source="aml-sms", at=T0, caller=callers[n % 2]
        )
        await store.add_fix(fix, incident_id=None, received_at=T0 + n)
    first, second = await _new(store, T0 + 10), await _new(store, T0 + 11)
    claimed = await asyncio.gather(
        store.claim_fixes(callers[0], first, since=T0),
        store.add_event(first, "note", "same batch", at=T0 + 12),
        store.claim_fixes(callers[1], second, since=T0),
        store.claim_fixes(callers[0], second, since=T0),  # already taken by the first
    )
    assert claimed == [3, None, 2, 0]
    assert store.largest_batch == 4
    assert len(await store.fixes_for(first)) == 3


def _prepared_on_writer(conn: SqlConnection) -> int:
    return int(conn.execute("SELECT count(*) FROM pg_prepared_statements").fetchone()[0])


async def test_the_writer_before_pipelines_keeps_the_same_results(pg_dsn: str) -> None:
    async with open_pg_store(pg_dsn, pipeline=False, prepared=False) as store:
        _check_mixed(await _mixed_batch(store))
        assert store.largest_batch == 5
        assert store.pipeline_replays == 0
        assert await store.count_incidents() == 3
        for i in range(10):
            await _new(store, T0 + 10 + i)
        assert await store._write(_prepared_on_writer) == 0  # values merged into the SQL


async def test_statements_the_writer_repeats_are_prepared_on_the_server(pg_dsn: str) -> None:
    async with open_pg_store(pg_dsn) as store:
        for i in range(10):
            await _new(store, T0 + i)
        # SAVEPOINT, RELEASE, the day counter, the incident, its event (psycopg
        # prepares a statement on its 5th run).
        assert await store._write(_prepared_on_writer) >= 5
