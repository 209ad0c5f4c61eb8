"""Schema upgrades: a database at every earlier version opens with today's code, data intact.

Old databases are not fixture files: each test builds one by applying the
first k migrations, inserts rows the way that version's program would have,
then opens it with the current `SqliteStore`.
"""

from __future__ import annotations

import hashlib
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from callcenter112.incidents import CallbackResult, LegQuality, LegRole, Status
from callcenter112.records import (
    GENESIS_HASH,
    MIGRATIONS,
    SCHEMA_VERSION,
    Migration,
    audit_entry_hash,
    migrate,
    open_store,
    recording_entry_hash,
    verify_audit,
    verify_recordings,
)
from callcenter112.records.sqlite import schema as store_module

T0 = datetime(2026, 11, 28, 10, 0, 0, tzinfo=UTC).timestamp()
IID = "20261128-0001"
AUDIO = b"RIFF" + bytes(range(256)) * 4


def _version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def _insert_rows_for(conn: Any, version: int, recordings: Path) -> None:
    """Rows a program at `version` would have written (only tables it knew)."""
    conn.execute("BEGIN")
    if version >= 1:
        conn.execute("INSERT INTO incident_days (day, last_seq) VALUES ('20261128', 1)")
        conn.execute(
            "INSERT INTO incidents (id, caller, trunk, dialled, call_id, category, status,"
            " operator, disposition, location_text, arrived_at, answered_at,"
            " operator_answered_at, ended_at, updated_at)"
            " VALUES (?, '081234567890', 'telkom', '112', 'call-1', 'medical', 'completed',"
            " 'op1', 'genuine', 'Jl. Sultan Hairun', ?, ?, ?, ?, ?)",
            (IID, T0, T0 + 0.2, T0 + 11.5, T0 + 80, T0 + 80),
        )
        conn.execute(
            "INSERT INTO events (incident_id, at, kind, detail) VALUES (?, ?, 'arrived', ?)",
            (IID, T0, '{"trunk":"telkom"}'),
        )
    if version >= 2:
        conn.execute(
            "INSERT INTO call_legs (incident_id, role, call_id, peer, codec, started_at,"
            " ended_at, end_reason, packets, lost, jitter_ms)"
            " VALUES (?, 'caller', 'call-1', '192.0.2.7:5060', 'PCMA', ?, ?, 'bye', 4000, 7, 3.25)",
            (IID, T0, T0 + 80),
        )
    if version >= 3:
        recordings.mkdir(parents=True, exist_ok=True)
        (recordings / "r1.wav").write_bytes(AUDIO)
        digest = hashlib.sha256(AUDIO).hexdigest()
        entry = recording_entry_hash(
            prev_hash=GENESIS_HASH,
            seq=1,
            incident_id=IID,
            path="r1.wav",
            sha256=digest,
            size=len(AUDIO),
            sealed_at=T0 + 81,
        )
        conn.execute(
            "INSERT INTO recordings (incident_id, path, status, codec, channels, started_at,"
            " duration_s, size, sha256, sealed_at, seq, prev_hash, entry_hash)"
            " VALUES (?, 'r1.wav', 'sealed', 'PCMA', 2, ?, 80.0, ?, ?, ?, 1, ?, ?)",
            (IID, T0, len(AUDIO), digest, T0 + 81, GENESIS_HASH, entry),
        )
    if version >= 4:
        conn.execute(
            "INSERT INTO callbacks (incident_id, number, reason, status, created_at)"
            " VALUES (?, '081234567890', 'abandoned', 'open', ?)",
            (IID, T0 + 90),
        )
        conn.execute(
            "INSERT INTO callback_attempts (callback_id, at, actor, result)"
            " VALUES (1, ?, 'op2', 'no_answer')",
            (T0 + 95,),
        )
    if version >= 5:
        conn.execute(
            "INSERT INTO operator_states (operator, state, reason, at)"
            " VALUES ('op1', 'paused', 'break', ?)",
            (T0,),
        )
        detail: dict[str, object] = {"path": "r1.wav"}
        h = audit_entry_hash(
            prev_hash=GENESIS_HASH,
            seq=1,
            at=T0 + 100,
            actor="auditor",
            action="replay",
            target=IID,
            detail=detail,
        )
        conn.execute(
            "INSERT INTO audit_log VALUES (1, ?, 'auditor', 'replay', ?, ?, ?, ?)",
            (T0 + 100, IID, '{"path":"r1.wav"}', GENESIS_HASH, h),
        )
    conn.execute("COMMIT")


@pytest.mark.parametrize("start", range(SCHEMA_VERSION))
async def test_upgrade_from_every_earlier_version(tmp_path: Path, start: int) -> None:
    db = tmp_path / "db.sqlite3"
    recordings = tmp_path / "recordings"
    conn = sqlite3.connect(db, isolation_level=None)
    assert migrate(conn, target=start) == start
    assert _version(conn) == start
    _insert_rows_for(conn, start, recordings)
    conn.close()

    async with open_store(db) as store:
        await check_upgraded(store, start, recordings)


async def check_upgraded(store: Any, start: int, recordings: Path) -> None:
    """What a store opened on a database of version `start` (rows from `_insert_rows_for`) holds."""
    assert store.schema_version == SCHEMA_VERSION
    rec = await store.get_incident(IID)
    if start == 0:
        assert rec is None
        assert await store.create_incident(caller="0812", arrived_at=T0) == IID
        return
    assert rec is not None
    inc = rec.incident
    assert (inc.caller, inc.status, inc.operator, inc.location_text) == (
        "081234567890",
        Status.COMPLETED,
        "op1",
        "Jl. Sultan Hairun",
    )
    assert inc.sla_s == pytest.approx(11.5)
    assert inc.legal_hold is False and inc.agencies_notified == ()  # added by version 6
    assert rec.events[0].detail == {"trunk": "telkom"}
    if start >= 2:
        [leg] = rec.legs
        assert leg.role is LegRole.CALLER
        assert leg.quality == LegQuality(packets=4000, lost=7, jitter_ms=3.25)
    if start >= 3:
        [recording] = rec.recordings
        assert recording.seq == 1 and recording.duration_s == 80.0
    if start >= 4:
        [cb] = rec.callbacks
        assert [a.result for a in cb.attempts] == [CallbackResult.NO_ANSWER]
    if start >= 5:
        [entry] = await store.list_audit()
        assert entry.detail == {"path": "r1.wav"}
        assert (await store.operator_state_history())[0].reason == "break"

    # Chains written by the old version still verify, and new writes continue them.
    assert (await verify_recordings(store, recordings)).ok
    assert (await verify_audit(store)).ok
    assert await store.create_incident(caller="0812", arrived_at=T0 + 5) == "20261128-0002"
    assert await store.set_legal_hold(IID, on=True, actor="auditor", at=T0 + 200)
    report = await verify_audit(store)
    assert report.ok and report.head_seq == (2 if start >= 5 else 1)


def _schema(db: Path) -> dict[str, object]:
    conn = sqlite3.connect(db)
    objects = sorted(
        (row[0], row[1], row[2])
        for row in conn.execute("SELECT type, name, tbl_name FROM sqlite_master")
        if not row[1].startswith("sqlite_")
    )
    columns = {
        name: [tuple(c[1:]) for c in conn.execute(f"PRAGMA table_info({name})")]
        for kind, name, _ in objects
        if kind == "table"
    }
    conn.close()
    return {"objects": objects, "columns": columns}


def test_step_by_step_upgrade_builds_the_same_schema_as_a_fresh_database(tmp_path: Path) -> None:
    fresh = tmp_path / "fresh.sqlite3"
    conn = sqlite3.connect(fresh, isolation_level=None)
    migrate(conn)
    conn.close()
    stepped = tmp_path / "stepped.sqlite3"
    conn = sqlite3.connect(stepped, isolation_level=None)
    for k in range(1, SCHEMA_VERSION + 1):
        migrate(conn, target=k)
        conn.close()
        conn = sqlite3.connect(stepped, isolation_level=None)
    conn.close()
    assert _schema(fresh) == _schema(stepped)


def test_migrations_are_numbered_in_order() -> None:
    assert [m.version for m in MIGRATIONS] == list(range(1, SCHEMA_VERSION + 1))
    assert all(m.summary and m.statements for m in MIGRATIONS)


def test_a_failing_step_leaves_the_previous_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "db.sqlite3"
    conn = sqlite3.connect(db, isolation_level=None)
    migrate(conn)
    broken = Migration(
        version=SCHEMA_VERSION + 1,
        summary="broken",
        statements=("CREATE TABLE half_done (x INTEGER)", "THIS IS NOT SQL"),
    )
    monkeypatch.setattr(store_module, "MIGRATIONS", (*MIGRATIONS, broken))
    monkeypatch.setattr(store_module, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    with pytest.raises(sqlite3.OperationalError):
        store_module.migrate(conn)
    assert _version(conn) == SCHEMA_VERSION
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "half_done" not in tables
    conn.close()
