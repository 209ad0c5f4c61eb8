"""The incident store: schema, migrations, durable writes with group commit, queries.

This is the only module that talks to a database (DESIGN §3). Everything else
sees the `Store` protocol — async methods taking and returning the plain
records of `incidents.py` — so a PostgreSQL implementation can sit behind the
same interface later (DESIGN §8). `SqliteStore` is the embedded default.

Durability. An emergency call is answered only after its incident row is on
disk (DESIGN §2, phase 1), so every write method returns only after its
transaction has committed with ``journal_mode=WAL`` and ``synchronous=FULL``
(an fsync of the WAL per commit). To keep that affordable during a surge the
store does **group commit**: callers put write operations on one bounded
queue; a single writer task takes the first operation and every other one
already waiting (up to `max_batch`), runs them in one transaction — each
inside its own SAVEPOINT, so one operation breaking a rule fails alone — and
commits once, then resolves each caller's future. 200 simultaneous arrivals
cost a handful of fsyncs, not 200. If the database itself fails (disk full,
I/O error) every operation of that batch fails with `StoreError` — never a
silent drop.

Threads. sqlite3 blocks, so the writer connection lives on one dedicated
thread (a whole batch is one hop to it, not one per statement) and read
queries run on a small pool of read-only connections (WAL lets readers run
beside the writer). `aiosqlite` is therefore not used: it hops threads per
statement, which defeats running a batch as one unit.

Integrity. Recordings and the audit log are hash chains (the canonical hash
forms live in `recordings.py`); SQLite triggers RAISE on UPDATE/DELETE of the
audit log and of the immutable columns of sealed recordings, so nothing in the
product can rewrite history, and an attacker who drops the triggers is caught
by `recordings.verify_*`.

Time. Every timestamp is a float of UNIX epoch seconds (UTC), stored as REAL
(sub-microsecond precision for current dates) and passed in by the caller
(`at=`), never read from a clock here.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Protocol, TypeVar, cast

from .incidents import (
    CALL_FLOW_FIELDS,
    SLA_THRESHOLDS_S,
    TIMESTAMP_FIELDS,
    AuditEntry,
    Callback,
    CallbackAttempt,
    CallbackResult,
    CallbackStatus,
    CallLeg,
    Category,
    Disposition,
    Incident,
    IncidentError,
    IncidentQuery,
    IncidentRecord,
    LegQuality,
    LegRole,
    OperatorStateChange,
    Recording,
    RecordingStatus,
    SlaSummary,
    Status,
    TimelineEntry,
    callback_number,
    canonical_json,
    check_leg_allowed,
    check_transition,
    format_incident_id,
    incident_day,
    needs_callback,
    normalize_caller,
    validate_disposition_changes,
)
from .recordings import GENESIS_HASH, audit_entry_hash, recording_entry_hash

__all__ = [
    "MIGRATIONS",
    "OPERATOR_OFFLINE",
    "SCHEMA_VERSION",
    "Migration",
    "SqliteStore",
    "Store",
    "StoreError",
    "migrate",
    "open_store",
]

T = TypeVar("T")

# The operator state that ends a session in the history; `acd.OperatorState.OFFLINE`'s value
# (the store keeps states as text and does not depend on the ACD).
OPERATOR_OFFLINE = "offline"


class StoreError(Exception):
    """The database failed (disk full, I/O error, locked, closed, too new).

    `status_hint` is the HTTP answer (503: the store is unavailable). Rule
    violations are `incidents.IncidentError` instead, raised unchanged.
    """

    def __init__(self, message: str, *, status_hint: int = 503) -> None:
        super().__init__(message)
        self.status_hint = status_hint


# --------------------------------------------------------------------------- the interface


class Store(Protocol):
    """What the rest of the program may ask of the incident store.

    Every write returns after its transaction committed. Times are epoch
    seconds passed in by the caller. Unknown ids and rule violations raise
    `IncidentError`; database failures raise `StoreError`.
    """

    # -- incidents
    async def create_incident(
        self,
        *,
        caller: str | None,
        arrived_at: float,
        trunk: str | None = None,
        dialled: str | None = None,
        call_id: str | None = None,
        caller_name: str | None = None,
        category: Category = Category.UNKNOWN,
        language: str | None = None,
    ) -> str: ...

    async def update_incident(
        self,
        incident_id: str,
        *,
        at: float,
        category: Category | None = None,
        language: str | None = None,
        operator: str | None = None,
        caller_name: str | None = None,
        stamps: Mapping[str, float] | None = None,
        notify_agency: str | None = None,
        event: str | None = None,
        detail: Mapping[str, object] | str | None = None,
    ) -> frozenset[str]: ...

    async def add_event(
        self,
        incident_id: str,
        kind: str,
        detail: Mapping[str, object] | str | None = None,
        *,
        at: float,
    ) -> None: ...

    async def set_timestamps(self, incident_id: str, **stamps: float) -> frozenset[str]: ...

    async def close_incident(
        self,
        incident_id: str,
        *,
        status: Status,
        at: float,
        ended_at: float | None,
        reason: str,
    ) -> int | None: ...

    async def save_disposition(
        self, incident_id: str, changes: Mapping[str, object], *, actor: str, at: float
    ) -> dict[str, list[object]]: ...

    async def set_legal_hold(
        self, incident_id: str, *, on: bool, actor: str, at: float, reason: str | None = None
    ) -> bool: ...

    # -- legs
    async def add_leg(
        self,
        incident_id: str,
        *,
        role: LegRole,
        call_id: str | None,
        peer: str | None,
        codec: str | None,
        started_at: float,
    ) -> int: ...

    async def end_leg(
        self, leg_id: int, *, ended_at: float, reason: str, quality: LegQuality | None = None
    ) -> bool: ...

    async def close_stray_legs(self, *, reason: str) -> int: ...

    # -- recordings
    async def add_recording_open(
        self,
        incident_id: str,
        path: str,
        *,
        started_at: float,
        codec: str | None = None,
        channels: int | None = None,
    ) -> int: ...

    async def add_recording(
        self,
        incident_id: str,
        path: str,
        *,
        sha256: str,
        size: int,
        channels: int | None,
        duration_s: float | None,
        codec: str | None,
        sealed_at: float,
    ) -> Recording: ...

    async def mark_recording_lost(self, recording_id: int, *, at: float, reason: str) -> bool: ...

    async def tombstone_recordings(
        self, recording_ids: Sequence[int], *, actor: str, at: float
    ) -> list[Recording]: ...

    async def list_open_recordings(self) -> list[Recording]: ...

    async def recording_chain(
        self, *, after_seq: int = 0, limit: int = 1000
    ) -> list[Recording]: ...

    async def count_recording_chain(self) -> int: ...

    async def recording_paths(self) -> frozenset[str]: ...

    async def recordings_due_for_retention(
        self, *, before: float, limit: int = 1000
    ) -> list[Recording]: ...

    # -- callbacks
    async def create_callback(
        self, incident_id: str, *, number: str | None, reason: str, at: float
    ) -> int: ...

    async def callback_take(
        self, callback_id: int, *, actor: str, at: float, force: bool = False
    ) -> Callback: ...

    async def callback_attempt(
        self,
        callback_id: int,
        *,
        actor: str,
        at: float,
        result: CallbackResult,
        note: str | None = None,
        leg_id: int | None = None,
    ) -> int: ...

    async def callback_close(
        self, callback_id: int, *, actor: str, at: float, outcome: str, note: str | None = None
    ) -> Callback: ...

    async def list_callbacks(
        self, *, open_only: bool = True, incident_id: str | None = None, limit: int | None = None
    ) -> list[Callback]: ...

    # -- operators and audit
    async def record_operator_state(
        self, operator: str, state: str, *, reason: str | None = None, at: float
    ) -> None: ...

    async def operator_state_history(
        self, *, operator: str | None = None, since: float | None = None, limit: int = 1000
    ) -> list[OperatorStateChange]: ...

    async def close_operator_states(self, *, reason: str, at: float) -> tuple[str, ...]: ...

    async def save_registrations(self, rows: Sequence[tuple[str, str, str, float]]) -> None: ...

    async def load_registrations(self, *, now: float) -> list[tuple[str, str, str, float]]: ...

    async def audit(
        self,
        *,
        actor: str,
        action: str,
        target: str,
        detail: Mapping[str, object] | None = None,
        at: float,
    ) -> AuditEntry: ...

    async def list_audit(
        self,
        *,
        target: str | None = None,
        action: str | None = None,
        after_seq: int = 0,
        limit: int | None = None,
    ) -> list[AuditEntry]: ...

    async def count_audit(self) -> int: ...

    # -- reads
    async def get_incident(self, incident_id: str) -> IncidentRecord | None: ...

    async def list_incidents(
        self, query: IncidentQuery = ..., *, limit: int | None = 100, offset: int = 0
    ) -> list[Incident]: ...

    async def count_incidents(self, query: IncidentQuery = ...) -> int: ...

    def iter_incidents(
        self, query: IncidentQuery = ..., *, page: int = 500
    ) -> AsyncIterator[Incident]: ...

    async def caller_history(
        self, number: str, *, exclude_id: str | None = None, limit: int = 10
    ) -> list[Incident]: ...

    async def sla_summary(self, since: float, until: float | None = None) -> SlaSummary: ...

    async def operator_call_counts(
        self, since: float, until: float | None = None
    ) -> dict[str, int]: ...

    async def close(self) -> None: ...


# --------------------------------------------------------------------------- schema


@dataclass(frozen=True, slots=True, kw_only=True)
class Migration:
    """One schema step; `PRAGMA user_version` is the number of steps applied."""

    version: int
    summary: str
    statements: tuple[str, ...]


_AUDIT_TRIGGERS = (
    """CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
       BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END""",
    """CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
       BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END""",
)

# A sealed recording's chain columns never change; only the tombstone columns
# (deleted_at, deleted_by) may be set, once, by retention.
_RECORDING_TRIGGERS = (
    """CREATE TRIGGER recordings_chain_immutable BEFORE UPDATE ON recordings
       WHEN OLD.seq IS NOT NULL AND (
            NEW.seq IS NOT OLD.seq OR NEW.incident_id IS NOT OLD.incident_id
         OR NEW.path IS NOT OLD.path OR NEW.status IS NOT OLD.status
         OR NEW.sha256 IS NOT OLD.sha256 OR NEW.size IS NOT OLD.size
         OR NEW.sealed_at IS NOT OLD.sealed_at OR NEW.prev_hash IS NOT OLD.prev_hash
         OR NEW.entry_hash IS NOT OLD.entry_hash OR NEW.codec IS NOT OLD.codec
         OR NEW.channels IS NOT OLD.channels OR NEW.duration_s IS NOT OLD.duration_s
         OR NEW.started_at IS NOT OLD.started_at)
       BEGIN SELECT RAISE(ABORT, 'sealed recording entries are immutable'); END""",
    """CREATE TRIGGER recordings_tombstone_final BEFORE UPDATE OF deleted_at, deleted_by
       ON recordings WHEN OLD.deleted_at IS NOT NULL
       BEGIN SELECT RAISE(ABORT, 'a recording tombstone is final'); END""",
    """CREATE TRIGGER recordings_tombstone_sealed_only BEFORE UPDATE OF deleted_at ON recordings
       WHEN NEW.deleted_at IS NOT NULL AND OLD.seq IS NULL
       BEGIN SELECT RAISE(ABORT, 'only sealed recordings can be tombstoned'); END""",
    """CREATE TRIGGER recordings_chain_no_delete BEFORE DELETE ON recordings
       WHEN OLD.seq IS NOT NULL
       BEGIN SELECT RAISE(ABORT, 'sealed recording entries are never deleted'); END""",
)

MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        version=1,
        summary="incidents, per-day id counters and the incident timeline",
        statements=(
            """CREATE TABLE incident_days (
                 day TEXT PRIMARY KEY,
                 last_seq INTEGER NOT NULL)""",
            """CREATE TABLE incidents (
                 id TEXT PRIMARY KEY,
                 caller TEXT NOT NULL,
                 caller_name TEXT,
                 trunk TEXT,
                 dialled TEXT,
                 call_id TEXT,
                 category TEXT NOT NULL DEFAULT 'unknown',
                 language TEXT,
                 status TEXT NOT NULL DEFAULT 'active',
                 operator TEXT,
                 disposition TEXT,
                 location_text TEXT,
                 kecamatan TEXT,
                 kelurahan TEXT,
                 description TEXT,
                 arrived_at REAL NOT NULL,
                 answered_at REAL,
                 ivr_done_at REAL,
                 queued_at REAL,
                 offered_at REAL,
                 operator_answered_at REAL,
                 transferred_at REAL,
                 ended_at REAL,
                 wrapped_up_at REAL,
                 updated_at REAL NOT NULL)""",
            "CREATE INDEX incidents_arrived ON incidents(arrived_at)",
            "CREATE INDEX incidents_caller ON incidents(caller, arrived_at)",
            "CREATE INDEX incidents_category ON incidents(category, arrived_at)",
            "CREATE INDEX incidents_operator ON incidents(operator, arrived_at)",
            "CREATE INDEX incidents_status ON incidents(status, arrived_at)",
            "CREATE INDEX incidents_disposition ON incidents(disposition, arrived_at)",
            """CREATE TABLE events (
                 id INTEGER PRIMARY KEY,
                 incident_id TEXT NOT NULL REFERENCES incidents(id),
                 at REAL NOT NULL,
                 kind TEXT NOT NULL,
                 detail TEXT NOT NULL DEFAULT '{}')""",
            "CREATE INDEX events_incident ON events(incident_id, at)",
        ),
    ),
    Migration(
        version=2,
        summary="call legs with their RTP quality statistics",
        statements=(
            """CREATE TABLE call_legs (
                 id INTEGER PRIMARY KEY,
                 incident_id TEXT NOT NULL REFERENCES incidents(id),
                 role TEXT NOT NULL,
                 call_id TEXT,
                 peer TEXT,
                 codec TEXT,
                 started_at REAL NOT NULL,
                 ended_at REAL,
                 end_reason TEXT,
                 packets INTEGER,
                 lost INTEGER,
                 jitter_ms REAL)""",
            "CREATE INDEX call_legs_incident ON call_legs(incident_id)",
            "CREATE INDEX call_legs_open ON call_legs(incident_id) WHERE end_reason IS NULL",
        ),
    ),
    Migration(
        version=3,
        summary="recordings and their hash chain, immutable once sealed",
        statements=(
            """CREATE TABLE recordings (
                 id INTEGER PRIMARY KEY,
                 incident_id TEXT NOT NULL REFERENCES incidents(id),
                 path TEXT NOT NULL UNIQUE,
                 status TEXT NOT NULL DEFAULT 'open',
                 codec TEXT,
                 channels INTEGER,
                 started_at REAL NOT NULL,
                 duration_s REAL,
                 size INTEGER,
                 sha256 TEXT,
                 sealed_at REAL,
                 seq INTEGER UNIQUE,
                 prev_hash TEXT,
                 entry_hash TEXT,
                 deleted_at REAL,
                 deleted_by TEXT)""",
            "CREATE INDEX recordings_incident ON recordings(incident_id)",
            "CREATE INDEX recordings_open ON recordings(status) WHERE status = 'open'",
            *_RECORDING_TRIGGERS,
        ),
    ),
    Migration(
        version=4,
        summary="callback tasks and their attempts",
        statements=(
            """CREATE TABLE callbacks (
                 id INTEGER PRIMARY KEY,
                 incident_id TEXT NOT NULL REFERENCES incidents(id),
                 number TEXT,
                 reason TEXT NOT NULL,
                 status TEXT NOT NULL DEFAULT 'open',
                 created_at REAL NOT NULL,
                 taken_by TEXT,
                 taken_at REAL,
                 closed_by TEXT,
                 closed_at REAL,
                 outcome TEXT,
                 note TEXT)""",
            "CREATE INDEX callbacks_status ON callbacks(status, created_at)",
            "CREATE INDEX callbacks_incident ON callbacks(incident_id)",
            """CREATE TABLE callback_attempts (
                 id INTEGER PRIMARY KEY,
                 callback_id INTEGER NOT NULL REFERENCES callbacks(id),
                 at REAL NOT NULL,
                 actor TEXT NOT NULL,
                 result TEXT NOT NULL,
                 note TEXT,
                 leg_id INTEGER REFERENCES call_legs(id))""",
            "CREATE INDEX callback_attempts_callback ON callback_attempts(callback_id)",
        ),
    ),
    Migration(
        version=5,
        summary="operator state history and the hash-chained audit log",
        statements=(
            """CREATE TABLE operator_states (
                 id INTEGER PRIMARY KEY,
                 operator TEXT NOT NULL,
                 state TEXT NOT NULL,
                 reason TEXT,
                 at REAL NOT NULL)""",
            "CREATE INDEX operator_states_operator ON operator_states(operator, at)",
            "CREATE INDEX operator_states_at ON operator_states(at)",
            """CREATE TABLE audit_log (
                 seq INTEGER PRIMARY KEY,
                 at REAL NOT NULL,
                 actor TEXT NOT NULL,
                 action TEXT NOT NULL,
                 target TEXT NOT NULL,
                 detail TEXT NOT NULL,
                 prev_hash TEXT NOT NULL,
                 entry_hash TEXT NOT NULL)""",
            "CREATE INDEX audit_log_target ON audit_log(target, seq)",
            "CREATE INDEX audit_log_action ON audit_log(action, seq)",
            *_AUDIT_TRIGGERS,
        ),
    ),
    Migration(
        version=6,
        summary="legal hold, agencies notified, retention index",
        statements=(
            "ALTER TABLE incidents ADD COLUMN legal_hold INTEGER NOT NULL DEFAULT 0",
            "ALTER TABLE incidents ADD COLUMN agencies_notified TEXT NOT NULL DEFAULT '[]'",
            """CREATE INDEX recordings_retention ON recordings(sealed_at)
                 WHERE seq IS NOT NULL AND deleted_at IS NULL""",
        ),
    ),
    Migration(
        version=7,
        summary="softphone registrations survive a restart",
        statements=(
            """CREATE TABLE registrations (
                 operator TEXT NOT NULL,
                 binding_key TEXT NOT NULL,
                 binding TEXT NOT NULL,          -- JSON, see Centre._save_registrations
                 expires_at REAL NOT NULL,       -- wall clock
                 PRIMARY KEY (operator, binding_key)
               )""",
        ),
    ),
)

SCHEMA_VERSION = len(MIGRATIONS)


def migrate(conn: sqlite3.Connection, *, target: int | None = None) -> int:
    """Bring an autocommit connection's database up to `target` (default: latest).

    Each step runs in its own transaction together with its `user_version`
    bump, so a crash mid-upgrade leaves the file at the previous version.
    Returns the version reached. Refuses a database newer than this program.
    """
    goal = SCHEMA_VERSION if target is None else target
    current = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if current > SCHEMA_VERSION:
        raise StoreError(
            f"database schema version {current} is newer than this program's "
            f"({SCHEMA_VERSION}); upgrade callcenter112"
        )
    for step in MIGRATIONS[current:goal]:
        conn.execute("BEGIN IMMEDIATE")
        try:
            for sql in step.statements:
                conn.execute(sql)
            conn.execute(f"PRAGMA user_version = {step.version}")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        current = step.version
    return current


# --------------------------------------------------------------------------- row mapping

_INCIDENT_COLUMNS = (
    "id",
    "caller",
    "caller_name",
    "trunk",
    "dialled",
    "call_id",
    "category",
    "language",
    "status",
    "operator",
    "disposition",
    "location_text",
    "kecamatan",
    "kelurahan",
    "description",
    "agencies_notified",
    "legal_hold",
    *TIMESTAMP_FIELDS,
    "updated_at",
)
_EVERY_INCIDENT = IncidentQuery()
_INCIDENT_SELECT = "SELECT " + ", ".join(_INCIDENT_COLUMNS) + " FROM incidents"

Row = sqlite3.Row


def _opt_float(value: object) -> float | None:
    return None if value is None else float(cast(float, value))


def _opt_int(value: object) -> int | None:
    return None if value is None else int(cast(int, value))


def _detail(text: str) -> dict[str, object] | str:
    value = json.loads(text)
    if isinstance(value, dict | str):
        return value
    return {"value": value}


def _incident(row: Row) -> Incident:
    stamps = {name: _opt_float(row[name]) for name in TIMESTAMP_FIELDS[1:]}
    return Incident(
        id=row["id"],
        caller=row["caller"],
        caller_name=row["caller_name"],
        trunk=row["trunk"],
        dialled=row["dialled"],
        call_id=row["call_id"],
        category=Category(row["category"]),
        language=row["language"],
        status=Status(row["status"]),
        operator=row["operator"],
        disposition=None if row["disposition"] is None else Disposition(row["disposition"]),
        location_text=row["location_text"],
        kecamatan=row["kecamatan"],
        kelurahan=row["kelurahan"],
        description=row["description"],
        agencies_notified=tuple(json.loads(row["agencies_notified"])),
        legal_hold=bool(row["legal_hold"]),
        arrived_at=float(row["arrived_at"]),
        updated_at=float(row["updated_at"]),
        **stamps,
    )


def _leg(row: Row) -> CallLeg:
    quality = None
    if row["packets"] is not None:
        quality = LegQuality(
            packets=int(row["packets"]),
            lost=int(row["lost"] or 0),
            jitter_ms=float(row["jitter_ms"] or 0.0),
        )
    return CallLeg(
        id=int(row["id"]),
        incident_id=row["incident_id"],
        role=LegRole(row["role"]),
        call_id=row["call_id"],
        peer=row["peer"],
        codec=row["codec"],
        started_at=float(row["started_at"]),
        ended_at=_opt_float(row["ended_at"]),
        end_reason=row["end_reason"],
        quality=quality,
    )


def _recording(row: Row) -> Recording:
    return Recording(
        id=int(row["id"]),
        incident_id=row["incident_id"],
        path=row["path"],
        status=RecordingStatus(row["status"]),
        codec=row["codec"],
        channels=_opt_int(row["channels"]),
        started_at=float(row["started_at"]),
        duration_s=_opt_float(row["duration_s"]),
        size=_opt_int(row["size"]),
        sha256=row["sha256"],
        sealed_at=_opt_float(row["sealed_at"]),
        seq=_opt_int(row["seq"]),
        prev_hash=row["prev_hash"],
        entry_hash=row["entry_hash"],
        deleted_at=_opt_float(row["deleted_at"]),
        deleted_by=row["deleted_by"],
    )


def _attempt(row: Row) -> CallbackAttempt:
    return CallbackAttempt(
        id=int(row["id"]),
        callback_id=int(row["callback_id"]),
        at=float(row["at"]),
        actor=row["actor"],
        result=CallbackResult(row["result"]),
        note=row["note"],
        leg_id=_opt_int(row["leg_id"]),
    )


def _callback(row: Row, attempts: Iterable[CallbackAttempt] = ()) -> Callback:
    return Callback(
        id=int(row["id"]),
        incident_id=row["incident_id"],
        number=row["number"],
        reason=row["reason"],
        status=CallbackStatus(row["status"]),
        created_at=float(row["created_at"]),
        taken_by=row["taken_by"],
        taken_at=_opt_float(row["taken_at"]),
        closed_by=row["closed_by"],
        closed_at=_opt_float(row["closed_at"]),
        outcome=row["outcome"],
        note=row["note"],
        attempts=tuple(attempts),
    )


def _audit_entry(row: Row) -> AuditEntry:
    detail = json.loads(row["detail"])
    return AuditEntry(
        seq=int(row["seq"]),
        at=float(row["at"]),
        actor=row["actor"],
        action=row["action"],
        target=row["target"],
        detail=detail if isinstance(detail, dict) else {"value": detail},
        prev_hash=row["prev_hash"],
        entry_hash=row["entry_hash"],
    )


# --------------------------------------------------------------------------- inside write ops


def _incident_row(conn: sqlite3.Connection, incident_id: str) -> Row:
    row: Row | None = conn.execute(_INCIDENT_SELECT + " WHERE id = ?", (incident_id,)).fetchone()
    if row is None:
        raise IncidentError(f"no incident {incident_id!r}", status_hint=404)
    return row


def _insert_event(
    conn: sqlite3.Connection,
    incident_id: str,
    at: float,
    kind: str,
    detail: Mapping[str, object] | str | None,
) -> None:
    payload: object = {} if detail is None else detail if isinstance(detail, str) else dict(detail)
    conn.execute(
        "INSERT INTO events (incident_id, at, kind, detail) VALUES (?, ?, ?, ?)",
        (incident_id, at, kind, canonical_json(payload)),
    )


def _insert_audit(
    conn: sqlite3.Connection,
    *,
    at: float,
    actor: str,
    action: str,
    target: str,
    detail: Mapping[str, object] | None,
) -> AuditEntry:
    last: Row | None = conn.execute(
        "SELECT seq, entry_hash FROM audit_log ORDER BY seq DESC LIMIT 1"
    ).fetchone()
    seq = 1 if last is None else int(last["seq"]) + 1
    prev_hash = GENESIS_HASH if last is None else str(last["entry_hash"])
    detail_text = canonical_json(dict(detail or {}))
    stored_detail: dict[str, object] = json.loads(detail_text)
    entry_hash = audit_entry_hash(
        prev_hash=prev_hash,
        seq=seq,
        at=at,
        actor=actor,
        action=action,
        target=target,
        detail=stored_detail,
    )
    conn.execute(
        "INSERT INTO audit_log (seq, at, actor, action, target, detail, prev_hash, entry_hash)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (seq, at, actor, action, target, detail_text, prev_hash, entry_hash),
    )
    return AuditEntry(
        seq=seq,
        at=at,
        actor=actor,
        action=action,
        target=target,
        detail=stored_detail,
        prev_hash=prev_hash,
        entry_hash=entry_hash,
    )


def _insert_callback(
    conn: sqlite3.Connection, incident_id: str, number: str | None, reason: str, at: float
) -> int:
    cur = conn.execute(
        "INSERT INTO callbacks (incident_id, number, reason, status, created_at)"
        " VALUES (?, ?, ?, 'open', ?)",
        (incident_id, number, reason, at),
    )
    callback_id = int(cast(int, cur.lastrowid))
    _insert_event(
        conn,
        incident_id,
        at,
        "callback_created",
        {"callback_id": callback_id, "number": number, "no_number": number is None},
    )
    return callback_id


def _callback_row(conn: sqlite3.Connection, callback_id: int) -> Row:
    row: Row | None = conn.execute(
        "SELECT * FROM callbacks WHERE id = ?", (callback_id,)
    ).fetchone()
    if row is None:
        raise IncidentError(f"no callback {callback_id}", status_hint=404)
    return row


def _load_callback(conn: sqlite3.Connection, callback_id: int) -> Callback:
    row = _callback_row(conn, callback_id)
    attempts = [
        _attempt(r)
        for r in conn.execute(
            "SELECT * FROM callback_attempts WHERE callback_id = ? ORDER BY at, id",
            (callback_id,),
        )
    ]
    return _callback(row, attempts)


def _check_word(name: str, value: str, *, limit: int = 64) -> None:
    if not value or len(value) > limit:
        raise IncidentError(f"{name}: must be 1-{limit} characters", status_hint=422)


def _relative_path(path: str) -> str:
    """Recording paths are stored relative to the recordings directory, '/'-separated."""
    p = PurePosixPath(path.replace("\\", "/"))
    if p.is_absolute() or ".." in p.parts or not p.parts or str(p) == ".":
        raise IncidentError(
            f"recording path {path!r} must be relative to the recordings directory",
            status_hint=422,
        )
    return str(p)


def _query_where(query: IncidentQuery) -> tuple[str, list[object]]:
    clauses: list[str] = []
    params: list[object] = []
    if query.since is not None:
        clauses.append("arrived_at >= ?")
        params.append(query.since)
    if query.until is not None:
        clauses.append("arrived_at < ?")
        params.append(query.until)
    if query.caller is not None:
        clauses.append("caller = ?")
        params.append(normalize_caller(query.caller))
    for column, value in (
        ("category", query.category),
        ("status", query.status),
        ("operator", query.operator),
        ("disposition", query.disposition),
    ):
        if value is not None:
            clauses.append(f"{column} = ?")
            params.append(str(value))
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


# --------------------------------------------------------------------------- the SQLite store


@dataclass(slots=True)
class _WriteOp:
    run: Callable[[sqlite3.Connection], object]
    future: asyncio.Future[object]


_STOP = object()
_Outcome = tuple[bool, object]


def _failure(exc: BaseException) -> BaseException:
    if isinstance(exc, sqlite3.Error):
        err = StoreError(f"database write failed: {exc}")
        err.__cause__ = exc
        return err
    return exc


class SqliteStore:
    """The embedded `Store`: one SQLite file in WAL mode.

    Use ``async with open_store(path) as store:`` (or `open()`/`close()`); the
    writer task lives between the two. Parameters:

    * `max_batch` — most write operations per transaction (1 = one commit per
      operation, used by the benchmark as the baseline);
    * `queue_size` — bound of the write queue; a full queue makes writers wait;
    * `readers` — read-only connections for queries;
    * `id_utc_offset_s` — offset of the local day used in incident ids
      (0 = UTC days; Kota Ambon's WIT would be 9 * 3600);
    * `pragmas` — extra ``PRAGMA name = value`` for the writer (e.g. a
      `max_page_count` cap).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        max_batch: int = 512,
        queue_size: int = 10_000,
        readers: int = 2,
        id_utc_offset_s: float = 0.0,
        busy_timeout_s: float = 10.0,
        pragmas: Mapping[str, int | str] | None = None,
    ) -> None:
        if max_batch < 1 or queue_size < 1 or readers < 1:
            raise ValueError("max_batch, queue_size and readers must be at least 1")
        self.path = Path(path)
        self._max_batch = max_batch
        self._queue_size = queue_size
        self._readers = readers
        self._id_utc_offset_s = id_utc_offset_s
        self._busy_timeout_s = busy_timeout_s
        self._pragmas = dict(pragmas or {})
        self._writer: sqlite3.Connection | None = None
        self._writer_pool: ThreadPoolExecutor | None = None
        self._reader_pool: ThreadPoolExecutor | None = None
        self._reader_conns: list[sqlite3.Connection] = []
        self._reader_lock = threading.Lock()
        self._local = threading.local()
        self._queue: asyncio.Queue[_WriteOp | object] | None = None
        self._writer_task: asyncio.Task[None] | None = None
        self._closing = False
        self.schema_version = 0
        # Counters for tests, metrics and the benchmark.
        self.commits = 0
        self.write_ops = 0
        self.largest_batch = 0

    # -- lifecycle

    async def open(self) -> None:
        """Create or upgrade the database and start the writer task."""
        if self._writer_task is not None:
            raise StoreError("store is already open", status_hint=500)
        loop = asyncio.get_running_loop()
        self._writer_pool = ThreadPoolExecutor(1, thread_name_prefix="store-writer")
        self._reader_pool = ThreadPoolExecutor(self._readers, thread_name_prefix="store-reader")
        try:
            self.schema_version = await loop.run_in_executor(self._writer_pool, self._open_writer)
        except BaseException:
            self._shutdown_pools()
            raise
        self._queue = asyncio.Queue(self._queue_size)
        self._closing = False
        self._writer_task = asyncio.create_task(self._write_loop(), name="store-writer")

    async def close(self) -> None:
        """Finish every queued write, stop the writer, close the connections."""
        task = self._writer_task
        if task is None:
            return
        self._closing = True
        assert self._queue is not None
        try:
            if not task.done():
                await self._queue.put(_STOP)
            await task
        finally:
            self._writer_task = None
            self._fail_queued(StoreError("store closed before the write ran"))
            await asyncio.get_running_loop().run_in_executor(self._writer_pool, self._close_writer)
            self._shutdown_pools()

    async def __aenter__(self) -> SqliteStore:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def _open_writer(self) -> int:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                self.path,
                isolation_level=None,
                check_same_thread=False,
                timeout=self._busy_timeout_s,
            )
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open database {self.path}: {exc}") from exc
        try:
            conn.row_factory = sqlite3.Row
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StoreError(f"{self.path}: cannot switch to WAL mode (got {mode})")
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA foreign_keys = ON")
            for name, value in self._pragmas.items():
                if not name.isidentifier():
                    raise StoreError(f"bad pragma name {name!r}", status_hint=500)
                conn.execute(f"PRAGMA {name} = {int(value) if isinstance(value, int) else value}")
            version = migrate(conn)
        except sqlite3.Error as exc:
            conn.close()
            raise StoreError(f"cannot prepare database {self.path}: {exc}") from exc
        except BaseException:
            conn.close()
            raise
        self._writer = conn
        return version

    def _close_writer(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def _shutdown_pools(self) -> None:
        if self._reader_pool is not None:
            self._reader_pool.shutdown(wait=True)
            self._reader_pool = None
        with self._reader_lock:
            for conn in self._reader_conns:
                conn.close()
            self._reader_conns.clear()
        self._local = threading.local()
        if self._writer_pool is not None:
            self._writer_pool.shutdown(wait=True)
            self._writer_pool = None

    def _fail_queued(self, error: StoreError) -> None:
        if self._queue is None:
            return
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if isinstance(item, _WriteOp) and not item.future.done():
                item.future.set_exception(error)

    # -- the writer

    async def _write(self, run: Callable[[sqlite3.Connection], T]) -> T:
        task = self._writer_task
        if task is None or task.done() or self._closing or self._queue is None:
            raise StoreError("store is closed")
        future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        await self._queue.put(_WriteOp(run, future))
        return cast(T, await future)

    async def _write_loop(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        stop = False
        while not stop:
            first = await self._queue.get()
            if first is _STOP:
                break
            batch = [cast(_WriteOp, first)]
            while len(batch) < self._max_batch:
                try:
                    item = self._queue.get_nowait()
                except asyncio.QueueEmpty:
                    break
                if item is _STOP:
                    stop = True
                    break
                batch.append(cast(_WriteOp, item))
            runs = [op.run for op in batch]
            pending = loop.run_in_executor(self._writer_pool, self._run_batch, runs)
            try:
                outcomes = await asyncio.shield(pending)
            except asyncio.CancelledError:
                # The batch is already in the writer thread: let it finish so
                # every caller learns whether its write is on disk.
                self._resolve(batch, await self._settle(pending, len(batch)))
                raise
            except Exception as exc:  # noqa: BLE001 - a runner bug: fail the batch, keep writing
                outcomes = [(False, StoreError(f"store writer failed: {exc!r}"))] * len(batch)
            self._resolve(batch, outcomes)

    @staticmethod
    async def _settle(pending: asyncio.Future[list[_Outcome]], n: int) -> list[_Outcome]:
        try:
            return await pending
        except Exception as exc:  # noqa: BLE001 - every caller must learn its write failed
            return [(False, StoreError(f"store writer failed: {exc!r}"))] * n

    @staticmethod
    def _resolve(batch: list[_WriteOp], outcomes: list[_Outcome]) -> None:
        for op, (ok, value) in zip(batch, outcomes, strict=True):
            if op.future.done():
                continue  # the caller gave up waiting; the write still happened
            if ok:
                op.future.set_result(value)
            else:
                op.future.set_exception(cast(BaseException, value))

    def _run_batch(self, runs: list[Callable[[sqlite3.Connection], object]]) -> list[_Outcome]:
        """One transaction for the whole batch; runs on the writer thread."""
        conn = self._writer
        if conn is None:
            return [(False, StoreError("store is closed"))] * len(runs)

        def all_failed(exc: BaseException) -> list[_Outcome]:
            if conn.in_transaction:
                with suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            return [(False, _failure(exc))] * len(runs)

        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            return all_failed(exc)
        outcomes: list[_Outcome] = []
        for run in runs:
            try:
                conn.execute("SAVEPOINT op")
            except sqlite3.Error as exc:
                return all_failed(exc)
            try:
                value = run(conn)
            except Exception as exc:  # noqa: BLE001 - one operation fails alone, batch goes on
                if not conn.in_transaction:
                    # SQLite rolled back the whole transaction (e.g. disk full):
                    # nothing of this batch is on disk.
                    return all_failed(exc)
                try:
                    conn.execute("ROLLBACK TO op")
                    conn.execute("RELEASE op")
                except sqlite3.Error as exc2:
                    return all_failed(exc2)
                outcomes.append((False, _failure(exc)))
            else:
                try:
                    conn.execute("RELEASE op")
                except sqlite3.Error as exc:
                    return all_failed(exc)
                outcomes.append((True, value))
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            return all_failed(exc)
        self.commits += 1
        self.write_ops += len(runs)
        self.largest_batch = max(self.largest_batch, len(runs))
        return outcomes

    # -- readers

    async def _read(self, run: Callable[[sqlite3.Connection], T]) -> T:
        if self._reader_pool is None:
            raise StoreError("store is closed")
        return await asyncio.get_running_loop().run_in_executor(
            self._reader_pool, self._run_read, run
        )

    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            uri = self.path.resolve().as_uri() + "?mode=ro"
            conn = sqlite3.connect(
                uri,
                uri=True,
                isolation_level=None,
                check_same_thread=False,
                timeout=self._busy_timeout_s,
            )
            conn.row_factory = sqlite3.Row
            self._local.conn = conn
            with self._reader_lock:
                self._reader_conns.append(conn)
        return conn

    def _run_read(self, run: Callable[[sqlite3.Connection], T]) -> T:
        try:
            conn = self._reader()
            conn.execute("BEGIN")  # one snapshot for every query of this read
            try:
                return run(conn)
            finally:
                conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StoreError(f"database read failed: {exc}") from exc

    # ======================================================================= writes

    async def create_incident(
        self,
        *,
        caller: str | None,
        arrived_at: float,
        trunk: str | None = None,
        dialled: str | None = None,
        call_id: str | None = None,
        caller_name: str | None = None,
        category: Category = Category.UNKNOWN,
        language: str | None = None,
    ) -> str:
        """Write a new `active` incident; returns its id (``YYYYMMDD-NNNN``) after commit.

        The caller number is normalised (`incidents.normalize_caller`); the
        number as presented is kept in the `arrived` timeline event.
        """
        number = normalize_caller(caller)
        category = Category(category)
        day = incident_day(arrived_at, utc_offset_s=self._id_utc_offset_s)

        def run(conn: sqlite3.Connection) -> str:
            seq = int(
                conn.execute(
                    "INSERT INTO incident_days (day, last_seq) VALUES (?, 1)"
                    " ON CONFLICT(day) DO UPDATE SET last_seq = last_seq + 1"
                    " RETURNING last_seq",
                    (day,),
                ).fetchone()[0]
            )
            incident_id = format_incident_id(day, seq)
            conn.execute(
                "INSERT INTO incidents (id, caller, caller_name, trunk, dialled, call_id,"
                " category, language, status, arrived_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'active', ?, ?)",
                (
                    incident_id,
                    number,
                    caller_name,
                    trunk,
                    dialled,
                    call_id,
                    category.value,
                    language,
                    arrived_at,
                    arrived_at,
                ),
            )
            _insert_event(
                conn,
                incident_id,
                arrived_at,
                "arrived",
                {"caller": caller, "trunk": trunk, "dialled": dialled, "call_id": call_id},
            )
            return incident_id

        return await self._write(run)

    async def update_incident(
        self,
        incident_id: str,
        *,
        at: float,
        category: Category | None = None,
        language: str | None = None,
        operator: str | None = None,
        caller_name: str | None = None,
        stamps: Mapping[str, float] | None = None,
        notify_agency: str | None = None,
        event: str | None = None,
        detail: Mapping[str, object] | str | None = None,
    ) -> frozenset[str]:
        """Record call-flow progress in one transaction.

        Sets the given call-flow fields (None = leave as is), fills in the
        given timestamps that are still empty (a timestamp keeps the *first*
        time a phase happened, so a later re-offer cannot spoil the SLA;
        repeated phases belong in events), adds `notify_agency` to
        `agencies_notified`, and appends an `event` with `detail`. Returns the
        names of the timestamps actually set.
        """
        fields: dict[str, object] = {}
        if category is not None:
            fields["category"] = Category(category).value
        for name, value in (
            ("language", language),
            ("operator", operator),
            ("caller_name", caller_name),
        ):
            if value is not None:
                fields[name] = value
        assert set(fields) <= set(CALL_FLOW_FIELDS)
        stamp_values = dict(stamps or {})
        for name in stamp_values:
            if name not in TIMESTAMP_FIELDS or name == "arrived_at":
                raise IncidentError(f"{name}: not a settable incident timestamp", status_hint=422)
        if event is not None:
            _check_word("event", event)

        def run(conn: sqlite3.Connection) -> frozenset[str]:
            row = _incident_row(conn, incident_id)
            sets = dict(fields)
            stamped = [name for name in stamp_values if row[name] is None]
            for name in stamped:
                sets[name] = stamp_values[name]
            if notify_agency:
                agencies = list(json.loads(row["agencies_notified"]))
                if notify_agency not in agencies:
                    agencies.append(notify_agency)
                    sets["agencies_notified"] = json.dumps(agencies)
            sets["updated_at"] = max(float(row["updated_at"]), at)
            assignments = ", ".join(f"{name} = ?" for name in sets)
            conn.execute(
                f"UPDATE incidents SET {assignments} WHERE id = ?", (*sets.values(), incident_id)
            )
            if event is not None:
                _insert_event(conn, incident_id, at, event, detail)
            return frozenset(stamped)

        return await self._write(run)

    async def add_event(
        self,
        incident_id: str,
        kind: str,
        detail: Mapping[str, object] | str | None = None,
        *,
        at: float,
    ) -> None:
        """Append one timeline entry (allowed in every status)."""
        await self.update_incident(incident_id, at=at, event=kind, detail=detail)

    async def set_timestamps(self, incident_id: str, **stamps: float) -> frozenset[str]:
        """Fill in still-empty phase timestamps, e.g. ``queued_at=t``; returns those set."""
        if not stamps:
            return frozenset()
        return await self.update_incident(incident_id, at=max(stamps.values()), stamps=stamps)

    async def close_incident(
        self,
        incident_id: str,
        *,
        status: Status,
        at: float,
        ended_at: float | None,
        reason: str,
    ) -> int | None:
        """Move an active incident to its final `status`, atomically with its consequences.

        Sets `ended_at` (None when unknown, as after a crash), closes legs
        still open, adds a `status` event, and for `abandoned`/`interrupted`
        creates the callback task (flagged "no number" for anonymous callers).
        Returns the callback id, or None. Raises `IncidentError` (409) if the
        incident is not active.
        """
        status = Status(status)

        def run(conn: sqlite3.Connection) -> int | None:
            row = _incident_row(conn, incident_id)
            current = Status(row["status"])
            check_transition(current, status)
            end = ended_at if row["ended_at"] is None else float(row["ended_at"])
            conn.execute(
                "UPDATE incidents SET status = ?, ended_at = ?, updated_at = ? WHERE id = ?",
                (status.value, end, max(float(row["updated_at"]), at), incident_id),
            )
            conn.execute(
                "UPDATE call_legs SET end_reason = ?, ended_at = COALESCE(ended_at, ?)"
                " WHERE incident_id = ? AND end_reason IS NULL",
                (f"incident_{status.value}", end, incident_id),
            )
            _insert_event(
                conn,
                incident_id,
                at,
                "status",
                {"from": current.value, "to": status.value, "reason": reason},
            )
            if not needs_callback(status):
                return None
            return _insert_callback(
                conn, incident_id, callback_number(row["caller"]), status.value, at
            )

        return await self._write(run)

    async def save_disposition(
        self, incident_id: str, changes: Mapping[str, object], *, actor: str, at: float
    ) -> dict[str, list[object]]:
        """Apply the operator's after-call form; audit-logged as `disposition_change`.

        Returns ``{field: [old, new]}`` for the fields that actually changed
        (nothing is written or logged when nothing changed).
        """
        clean = validate_disposition_changes(changes)
        _check_word("actor", actor)

        def stored(name: str, value: object) -> object:
            if name == "agencies_notified":
                return json.dumps(list(cast(Sequence[str], value)))
            return None if value is None else str(value)

        def shown(name: str, value: object) -> object:
            if name == "agencies_notified":
                return list(json.loads(cast(str, value)))
            return value

        def run(conn: sqlite3.Connection) -> dict[str, list[object]]:
            row = _incident_row(conn, incident_id)
            sets: dict[str, object] = {}
            diff: dict[str, list[object]] = {}
            for name, value in clean.items():
                new = stored(name, value)
                if new != row[name]:
                    sets[name] = new
                    diff[name] = [shown(name, row[name]), shown(name, new)]
            if not diff:
                return diff
            sets["updated_at"] = max(float(row["updated_at"]), at)
            assignments = ", ".join(f"{name} = ?" for name in sets)
            conn.execute(
                f"UPDATE incidents SET {assignments} WHERE id = ?", (*sets.values(), incident_id)
            )
            _insert_event(conn, incident_id, at, "disposition", {"by": actor, "changes": diff})
            _insert_audit(
                conn,
                at=at,
                actor=actor,
                action="disposition_change",
                target=incident_id,
                detail={"changes": diff},
            )
            return diff

        return await self._write(run)

    async def set_legal_hold(
        self, incident_id: str, *, on: bool, actor: str, at: float, reason: str | None = None
    ) -> bool:
        """Put an incident on (or take it off) legal hold; audit-logged. True if it changed."""
        _check_word("actor", actor)

        def run(conn: sqlite3.Connection) -> bool:
            row = _incident_row(conn, incident_id)
            if bool(row["legal_hold"]) == on:
                return False
            conn.execute(
                "UPDATE incidents SET legal_hold = ?, updated_at = ? WHERE id = ?",
                (int(on), max(float(row["updated_at"]), at), incident_id),
            )
            detail: dict[str, object] = {"on": on, "reason": reason}
            _insert_event(conn, incident_id, at, "legal_hold", {"by": actor, **detail})
            _insert_audit(
                conn, at=at, actor=actor, action="legal_hold", target=incident_id, detail=detail
            )
            return True

        return await self._write(run)

    # -- legs

    async def add_leg(
        self,
        incident_id: str,
        *,
        role: LegRole,
        call_id: str | None,
        peer: str | None,
        codec: str | None,
        started_at: float,
    ) -> int:
        """Attach a call leg; returns its id. See `incidents.check_leg_allowed` for the rule."""
        role = LegRole(role)

        def run(conn: sqlite3.Connection) -> int:
            row = _incident_row(conn, incident_id)
            callback_open = (
                conn.execute(
                    "SELECT 1 FROM call_legs WHERE incident_id = ? AND role = 'callback'"
                    " AND end_reason IS NULL LIMIT 1",
                    (incident_id,),
                ).fetchone()
                is not None
            )
            check_leg_allowed(Status(row["status"]), role, callback_leg_open=callback_open)
            cur = conn.execute(
                "INSERT INTO call_legs (incident_id, role, call_id, peer, codec, started_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (incident_id, role.value, call_id, peer, codec, started_at),
            )
            leg_id = int(cast(int, cur.lastrowid))
            _insert_event(
                conn,
                incident_id,
                started_at,
                "leg_started",
                {"leg": leg_id, "role": role.value, "peer": peer, "call_id": call_id},
            )
            return leg_id

        return await self._write(run)

    async def end_leg(
        self, leg_id: int, *, ended_at: float, reason: str, quality: LegQuality | None = None
    ) -> bool:
        """Close a leg with its RTP statistics; True if this call closed it.

        Idempotent: a leg already closed (e.g. by `close_incident`) keeps its
        reason but still gets missing `ended_at`/`quality` filled in.
        """

        def run(conn: sqlite3.Connection) -> bool:
            row: Row | None = conn.execute(
                "SELECT * FROM call_legs WHERE id = ?", (leg_id,)
            ).fetchone()
            if row is None:
                raise IncidentError(f"no call leg {leg_id}", status_hint=404)
            was_open = row["end_reason"] is None
            q = quality
            conn.execute(
                "UPDATE call_legs SET ended_at = COALESCE(ended_at, ?),"
                " end_reason = COALESCE(end_reason, ?),"
                " packets = COALESCE(packets, ?), lost = COALESCE(lost, ?),"
                " jitter_ms = COALESCE(jitter_ms, ?) WHERE id = ?",
                (
                    ended_at,
                    reason,
                    None if q is None else q.packets,
                    None if q is None else q.lost,
                    None if q is None else q.jitter_ms,
                    leg_id,
                ),
            )
            if was_open:
                detail: dict[str, object] = {"leg": leg_id, "role": row["role"], "reason": reason}
                if q is not None:
                    detail.update(packets=q.packets, lost=q.lost, jitter_ms=q.jitter_ms)
                _insert_event(conn, row["incident_id"], ended_at, "leg_ended", detail)
            return was_open

        return await self._write(run)

    async def close_stray_legs(self, *, reason: str) -> int:
        """Close legs left open on incidents that are no longer active (crash recovery).

        Their `ended_at` stays unknown (NULL). Returns how many were closed.
        """

        def run(conn: sqlite3.Connection) -> int:
            cur = conn.execute(
                "UPDATE call_legs SET end_reason = ? WHERE end_reason IS NULL AND incident_id IN"
                " (SELECT id FROM incidents WHERE status != 'active')",
                (reason,),
            )
            return int(cur.rowcount)

        return await self._write(run)

    # -- recordings

    async def add_recording_open(
        self,
        incident_id: str,
        path: str,
        *,
        started_at: float,
        codec: str | None = None,
        channels: int | None = None,
    ) -> int:
        """Note a recording being written (so crash recovery can find it); returns its id."""
        rel = _relative_path(path)

        def run(conn: sqlite3.Connection) -> int:
            _incident_row(conn, incident_id)
            try:
                cur = conn.execute(
                    "INSERT INTO recordings (incident_id, path, status, codec, channels,"
                    " started_at) VALUES (?, ?, 'open', ?, ?, ?)",
                    (incident_id, rel, codec, channels, started_at),
                )
            except sqlite3.IntegrityError:
                raise IncidentError(f"recording {rel} already exists", status_hint=409) from None
            recording_id = int(cast(int, cur.lastrowid))
            _insert_event(conn, incident_id, started_at, "recording_started", {"path": rel})
            return recording_id

        return await self._write(run)

    async def add_recording(
        self,
        incident_id: str,
        path: str,
        *,
        sha256: str,
        size: int,
        channels: int | None,
        duration_s: float | None,
        codec: str | None,
        sealed_at: float,
    ) -> Recording:
        """Append a sealed recording to the hash chain (use `recordings.seal_recording`).

        Seals the open row of that path, or adds the recording if it was never
        announced with `add_recording_open`.
        """
        rel = _relative_path(path)

        def run(conn: sqlite3.Connection) -> Recording:
            _incident_row(conn, incident_id)
            existing: Row | None = conn.execute(
                "SELECT * FROM recordings WHERE path = ?", (rel,)
            ).fetchone()
            if existing is not None and existing["incident_id"] != incident_id:
                raise IncidentError(
                    f"recording {rel} belongs to incident {existing['incident_id']}",
                    status_hint=409,
                )
            if existing is not None and existing["seq"] is not None:
                raise IncidentError(f"recording {rel} is already sealed", status_hint=409)
            last: Row | None = conn.execute(
                "SELECT seq, entry_hash FROM recordings WHERE seq IS NOT NULL"
                " ORDER BY seq DESC LIMIT 1"
            ).fetchone()
            seq = 1 if last is None else int(last["seq"]) + 1
            prev_hash = GENESIS_HASH if last is None else str(last["entry_hash"])
            entry_hash = recording_entry_hash(
                prev_hash=prev_hash,
                seq=seq,
                incident_id=incident_id,
                path=rel,
                sha256=sha256,
                size=size,
                sealed_at=sealed_at,
            )
            values = (
                codec,
                channels,
                duration_s,
                size,
                sha256,
                sealed_at,
                seq,
                prev_hash,
                entry_hash,
            )
            if existing is not None:
                conn.execute(
                    "UPDATE recordings SET status = 'sealed', codec = COALESCE(?, codec),"
                    " channels = COALESCE(?, channels), duration_s = ?, size = ?, sha256 = ?,"
                    " sealed_at = ?, seq = ?, prev_hash = ?, entry_hash = ? WHERE id = ?",
                    (*values, existing["id"]),
                )
                recording_id = int(existing["id"])
            else:
                started_at = sealed_at - (duration_s or 0.0)
                cur = conn.execute(
                    "INSERT INTO recordings (incident_id, path, status, started_at, codec,"
                    " channels, duration_s, size, sha256, sealed_at, seq, prev_hash, entry_hash)"
                    " VALUES (?, ?, 'sealed', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (incident_id, rel, started_at, *values),
                )
                recording_id = int(cast(int, cur.lastrowid))
            _insert_event(
                conn,
                incident_id,
                sealed_at,
                "recording_sealed",
                {"path": rel, "sha256": sha256, "seq": seq, "duration_s": duration_s},
            )
            return _recording(
                conn.execute("SELECT * FROM recordings WHERE id = ?", (recording_id,)).fetchone()
            )

        return await self._write(run)

    async def mark_recording_lost(self, recording_id: int, *, at: float, reason: str) -> bool:
        """An open recording whose file never appeared; True if it was still open."""

        def run(conn: sqlite3.Connection) -> bool:
            row: Row | None = conn.execute(
                "SELECT * FROM recordings WHERE id = ?", (recording_id,)
            ).fetchone()
            if row is None:
                raise IncidentError(f"no recording {recording_id}", status_hint=404)
            if row["status"] != RecordingStatus.OPEN.value:
                return False
            conn.execute("UPDATE recordings SET status = 'lost' WHERE id = ?", (recording_id,))
            _insert_event(
                conn,
                row["incident_id"],
                at,
                "recording_lost",
                {"path": row["path"], "reason": reason},
            )
            return True

        return await self._write(run)

    async def tombstone_recordings(
        self, recording_ids: Sequence[int], *, actor: str, at: float
    ) -> list[Recording]:
        """Mark sealed recordings deleted by retention; each one audit-logged.

        Skips (silently) ids that are unknown, unsealed, already tombstoned, or
        whose incident is on legal hold — checked inside the transaction, so a
        hold set a moment earlier always wins. Returns the tombstoned entries;
        the caller deletes their files afterwards.
        """
        _check_word("actor", actor)
        ids = list(recording_ids)

        def run(conn: sqlite3.Connection) -> list[Recording]:
            done: list[Recording] = []
            for recording_id in ids:
                row: Row | None = conn.execute(
                    "SELECT r.*, i.legal_hold AS hold FROM recordings r"
                    " JOIN incidents i ON i.id = r.incident_id WHERE r.id = ?",
                    (recording_id,),
                ).fetchone()
                if row is None or row["seq"] is None or row["deleted_at"] is not None:
                    continue
                if row["hold"]:
                    continue
                conn.execute(
                    "UPDATE recordings SET deleted_at = ?, deleted_by = ? WHERE id = ?",
                    (at, actor, recording_id),
                )
                detail: dict[str, object] = {
                    "path": row["path"],
                    "seq": row["seq"],
                    "sha256": row["sha256"],
                }
                _insert_event(conn, row["incident_id"], at, "recording_deleted", detail)
                _insert_audit(
                    conn,
                    at=at,
                    actor=actor,
                    action="retention_delete",
                    target=row["incident_id"],
                    detail=detail,
                )
                done.append(
                    _recording(
                        conn.execute(
                            "SELECT * FROM recordings WHERE id = ?", (recording_id,)
                        ).fetchone()
                    )
                )
            return done

        return await self._write(run)

    # -- callbacks

    async def create_callback(
        self, incident_id: str, *, number: str | None, reason: str, at: float
    ) -> int:
        """Open a callback task (number None: caller withheld, task flagged "no number")."""
        target = None if number is None else normalize_caller(number)
        if target == "anonymous":
            target = None

        def run(conn: sqlite3.Connection) -> int:
            _incident_row(conn, incident_id)
            return _insert_callback(conn, incident_id, target, reason, at)

        return await self._write(run)

    async def callback_take(
        self, callback_id: int, *, actor: str, at: float, force: bool = False
    ) -> Callback:
        """Claim a callback task so two people do not call the same person.

        Taking a task someone else holds needs `force` (a supervisor
        reassigning it); a closed task cannot be taken. Audit-logged.
        """
        _check_word("actor", actor)

        def run(conn: sqlite3.Connection) -> Callback:
            row = _callback_row(conn, callback_id)
            status = CallbackStatus(row["status"])
            if status is CallbackStatus.CLOSED:
                raise IncidentError(f"callback {callback_id} is closed", status_hint=409)
            holder = row["taken_by"]
            if status is CallbackStatus.TAKEN and holder != actor and not force:
                raise IncidentError(f"callback {callback_id} is taken by {holder}", status_hint=409)
            conn.execute(
                "UPDATE callbacks SET status = 'taken', taken_by = ?, taken_at = ? WHERE id = ?",
                (actor, at, callback_id),
            )
            _insert_event(
                conn,
                row["incident_id"],
                at,
                "callback_taken",
                {"callback_id": callback_id, "by": actor, "from": holder},
            )
            _insert_audit(
                conn,
                at=at,
                actor=actor,
                action="callback_take",
                target=row["incident_id"],
                detail={"callback_id": callback_id, "previous": holder},
            )
            return _load_callback(conn, callback_id)

        return await self._write(run)

    async def callback_attempt(
        self,
        callback_id: int,
        *,
        actor: str,
        at: float,
        result: CallbackResult,
        note: str | None = None,
        leg_id: int | None = None,
    ) -> int:
        """Record one try at calling back; returns the attempt id."""
        result = CallbackResult(result)
        _check_word("actor", actor)

        def run(conn: sqlite3.Connection) -> int:
            row = _callback_row(conn, callback_id)
            if row["status"] == CallbackStatus.CLOSED.value:
                raise IncidentError(f"callback {callback_id} is closed", status_hint=409)
            cur = conn.execute(
                "INSERT INTO callback_attempts (callback_id, at, actor, result, note, leg_id)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (callback_id, at, actor, result.value, note, leg_id),
            )
            _insert_event(
                conn,
                row["incident_id"],
                at,
                "callback_attempt",
                {"callback_id": callback_id, "by": actor, "result": result.value, "note": note},
            )
            return int(cast(int, cur.lastrowid))

        return await self._write(run)

    async def callback_close(
        self, callback_id: int, *, actor: str, at: float, outcome: str, note: str | None = None
    ) -> Callback:
        """Close a callback task with its outcome; audit-logged."""
        _check_word("actor", actor)
        _check_word("outcome", outcome, limit=200)

        def run(conn: sqlite3.Connection) -> Callback:
            row = _callback_row(conn, callback_id)
            if row["status"] == CallbackStatus.CLOSED.value:
                raise IncidentError(f"callback {callback_id} is already closed", status_hint=409)
            conn.execute(
                "UPDATE callbacks SET status = 'closed', closed_by = ?, closed_at = ?,"
                " outcome = ?, note = ? WHERE id = ?",
                (actor, at, outcome, note, callback_id),
            )
            detail: dict[str, object] = {"callback_id": callback_id, "outcome": outcome}
            _insert_event(conn, row["incident_id"], at, "callback_closed", {**detail, "by": actor})
            _insert_audit(
                conn,
                at=at,
                actor=actor,
                action="callback_close",
                target=row["incident_id"],
                detail=detail,
            )
            return _load_callback(conn, callback_id)

        return await self._write(run)

    # -- operators and audit

    async def record_operator_state(
        self, operator: str, state: str, *, reason: str | None = None, at: float
    ) -> None:
        """Append to an operator's state history (available, paused, wrap-up, …)."""
        _check_word("operator", operator)
        _check_word("state", state)

        def run(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO operator_states (operator, state, reason, at) VALUES (?, ?, ?, ?)",
                (operator, state, reason, at),
            )

        await self._write(run)

    async def save_registrations(self, rows: Sequence[tuple[str, str, str, float]]) -> None:
        """Replace the saved softphone registrations: (operator, binding key,
        binding JSON, expires_at wall clock). After a restart the centre takes
        them back and checks each phone with OPTIONS, so operators are not
        offline until their phones happen to re-register."""

        def run(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM registrations")
            conn.executemany(
                "INSERT OR REPLACE INTO registrations (operator, binding_key, binding, expires_at)"
                " VALUES (?, ?, ?, ?)",
                list(rows),
            )

        await self._write(run)

    async def load_registrations(self, *, now: float) -> list[tuple[str, str, str, float]]:
        """Saved registrations that have not expired by `now` (wall clock)."""

        def run(conn: sqlite3.Connection) -> list[tuple[str, str, str, float]]:
            rows = conn.execute(
                "SELECT operator, binding_key, binding, expires_at FROM registrations"
                " WHERE expires_at > ? ORDER BY operator, binding_key",
                (now,),
            ).fetchall()
            return [(str(a), str(b), str(c), float(d)) for a, b, c, d in rows]

        return await self._read(run)

    async def close_operator_states(self, *, reason: str, at: float) -> tuple[str, ...]:
        """Record `offline` for every operator whose history ends in another state.

        At start nobody is registered yet, so a history that ends in
        `available`, `on_call`, … was cut off by a crash or an unclean stop;
        this closes it (crash recovery) so occupancy reports do not count a
        dead server's operators as busy forever. Returns the operators
        closed, sorted.
        """
        _check_word("reason", reason)

        def run(conn: sqlite3.Connection) -> tuple[str, ...]:
            closed: list[str] = []
            operators = [
                str(r[0])
                for r in conn.execute("SELECT DISTINCT operator FROM operator_states ORDER BY 1")
            ]
            for operator in operators:
                (last,) = conn.execute(
                    "SELECT state FROM operator_states WHERE operator = ?"
                    " ORDER BY at DESC, id DESC LIMIT 1",
                    (operator,),
                ).fetchone()
                if last != OPERATOR_OFFLINE:
                    conn.execute(
                        "INSERT INTO operator_states (operator, state, reason, at)"
                        " VALUES (?, ?, ?, ?)",
                        (operator, OPERATOR_OFFLINE, reason, at),
                    )
                    closed.append(operator)
            return tuple(closed)

        return await self._write(run)

    async def audit(
        self,
        *,
        actor: str,
        action: str,
        target: str,
        detail: Mapping[str, object] | None = None,
        at: float,
    ) -> AuditEntry:
        """Append one hash-chained audit entry (replay, download, export, login, …)."""
        _check_word("actor", actor, limit=200)
        _check_word("action", action)

        def run(conn: sqlite3.Connection) -> AuditEntry:
            return _insert_audit(
                conn, at=at, actor=actor, action=action, target=target, detail=detail
            )

        return await self._write(run)

    # ======================================================================= reads

    async def get_incident(self, incident_id: str) -> IncidentRecord | None:
        """One incident with its legs, timeline, recordings and callbacks; None if unknown."""

        def run(conn: sqlite3.Connection) -> IncidentRecord | None:
            row = conn.execute(_INCIDENT_SELECT + " WHERE id = ?", (incident_id,)).fetchone()
            if row is None:
                return None
            legs = tuple(
                _leg(r)
                for r in conn.execute(
                    "SELECT * FROM call_legs WHERE incident_id = ? ORDER BY started_at, id",
                    (incident_id,),
                )
            )
            events = tuple(
                TimelineEntry(at=float(r["at"]), kind=r["kind"], detail=_detail(r["detail"]))
                for r in conn.execute(
                    "SELECT at, kind, detail FROM events WHERE incident_id = ? ORDER BY at, id",
                    (incident_id,),
                )
            )
            recordings = tuple(
                _recording(r)
                for r in conn.execute(
                    "SELECT * FROM recordings WHERE incident_id = ? ORDER BY started_at, id",
                    (incident_id,),
                )
            )
            attempts: dict[int, list[CallbackAttempt]] = {}
            for r in conn.execute(
                "SELECT a.* FROM callback_attempts a JOIN callbacks c ON c.id = a.callback_id"
                " WHERE c.incident_id = ? ORDER BY a.at, a.id",
                (incident_id,),
            ):
                attempts.setdefault(int(r["callback_id"]), []).append(_attempt(r))
            callbacks = tuple(
                _callback(r, attempts.get(int(r["id"]), ()))
                for r in conn.execute(
                    "SELECT * FROM callbacks WHERE incident_id = ? ORDER BY created_at, id",
                    (incident_id,),
                )
            )
            return IncidentRecord(
                incident=_incident(row),
                legs=legs,
                events=events,
                recordings=recordings,
                callbacks=callbacks,
            )

        return await self._read(run)

    async def list_incidents(
        self, query: IncidentQuery = _EVERY_INCIDENT, *, limit: int | None = 100, offset: int = 0
    ) -> list[Incident]:
        """Incidents matching `query`, newest arrival first."""
        where, params = _query_where(query)
        sql = f"{_INCIDENT_SELECT}{where} ORDER BY arrived_at DESC, id DESC LIMIT ? OFFSET ?"
        params += [-1 if limit is None else limit, offset]

        def run(conn: sqlite3.Connection) -> list[Incident]:
            return [_incident(r) for r in conn.execute(sql, params)]

        return await self._read(run)

    async def count_incidents(self, query: IncidentQuery = _EVERY_INCIDENT) -> int:
        where, params = _query_where(query)

        def run(conn: sqlite3.Connection) -> int:
            return int(conn.execute(f"SELECT COUNT(*) FROM incidents{where}", params).fetchone()[0])

        return await self._read(run)

    async def iter_incidents(
        self, query: IncidentQuery = _EVERY_INCIDENT, *, page: int = 500
    ) -> AsyncIterator[Incident]:
        """Every incident matching `query`, newest first, fetched `page` at a time.

        Keyset pagination: rows arriving meanwhile do not shift the pages.
        """
        where, params = _query_where(query)
        after: tuple[float, str] | None = None
        while True:
            clause, extra = where, list(params)
            if after is not None:
                clause += " AND " if clause else " WHERE "
                clause += "(arrived_at < ? OR (arrived_at = ? AND id < ?))"
                extra += [after[0], after[0], after[1]]
            sql = f"{_INCIDENT_SELECT}{clause} ORDER BY arrived_at DESC, id DESC LIMIT ?"
            extra.append(page)

            def run(conn: sqlite3.Connection, sql: str = sql, args: list[object] = extra) -> Any:
                return [_incident(r) for r in conn.execute(sql, args)]

            rows: list[Incident] = await self._read(run)
            for inc in rows:
                yield inc
            if len(rows) < page:
                return
            after = (rows[-1].arrived_at, rows[-1].id)

    async def caller_history(
        self, number: str, *, exclude_id: str | None = None, limit: int = 10
    ) -> list[Incident]:
        """Earlier incidents from the same line, newest first (none for anonymous callers)."""
        caller = normalize_caller(number)
        if caller == "anonymous":
            return []

        def run(conn: sqlite3.Connection) -> list[Incident]:
            return [
                _incident(r)
                for r in conn.execute(
                    f"{_INCIDENT_SELECT} WHERE caller = ? AND id != ?"
                    " ORDER BY arrived_at DESC, id DESC LIMIT ?",
                    (caller, exclude_id or "", limit),
                )
            ]

        return await self._read(run)

    async def list_callbacks(
        self, *, open_only: bool = True, incident_id: str | None = None, limit: int | None = None
    ) -> list[Callback]:
        """Callback tasks, oldest first (the one waiting longest on top)."""
        clauses: list[str] = []
        params: list[object] = []
        if open_only:
            clauses.append("status != 'closed'")
        if incident_id is not None:
            clauses.append("incident_id = ?")
            params.append(incident_id)
        where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
        params.append(-1 if limit is None else limit)

        def run(conn: sqlite3.Connection) -> list[Callback]:
            rows = conn.execute(
                f"SELECT * FROM callbacks{where} ORDER BY created_at, id LIMIT ?", params
            ).fetchall()
            out: list[Callback] = []
            for r in rows:
                attempts = [
                    _attempt(a)
                    for a in conn.execute(
                        "SELECT * FROM callback_attempts WHERE callback_id = ? ORDER BY at, id",
                        (r["id"],),
                    )
                ]
                out.append(_callback(r, attempts))
            return out

        return await self._read(run)

    async def operator_state_history(
        self, *, operator: str | None = None, since: float | None = None, limit: int = 1000
    ) -> list[OperatorStateChange]:
        """Operator state changes, oldest first."""
        clauses: list[str] = []
        params: list[object] = []
        if operator is not None:
            clauses.append("operator = ?")
            params.append(operator)
        if since is not None:
            clauses.append("at >= ?")
            params.append(since)
        where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
        params.append(limit)

        def run(conn: sqlite3.Connection) -> list[OperatorStateChange]:
            return [
                OperatorStateChange(
                    operator=r["operator"], state=r["state"], reason=r["reason"], at=r["at"]
                )
                for r in conn.execute(
                    f"SELECT * FROM operator_states{where} ORDER BY at, id LIMIT ?", params
                )
            ]

        return await self._read(run)

    async def list_audit(
        self,
        *,
        target: str | None = None,
        action: str | None = None,
        after_seq: int = 0,
        limit: int | None = None,
    ) -> list[AuditEntry]:
        """Audit entries in chain order (seq ascending)."""
        clauses = ["seq > ?"]
        params: list[object] = [after_seq]
        if target is not None:
            clauses.append("target = ?")
            params.append(target)
        if action is not None:
            clauses.append("action = ?")
            params.append(action)
        params.append(-1 if limit is None else limit)
        sql = f"SELECT * FROM audit_log WHERE {' AND '.join(clauses)} ORDER BY seq LIMIT ?"

        def run(conn: sqlite3.Connection) -> list[AuditEntry]:
            return [_audit_entry(r) for r in conn.execute(sql, params)]

        return await self._read(run)

    async def count_audit(self) -> int:
        def run(conn: sqlite3.Connection) -> int:
            return int(conn.execute("SELECT COUNT(*) FROM audit_log").fetchone()[0])

        return await self._read(run)

    async def list_open_recordings(self) -> list[Recording]:
        def run(conn: sqlite3.Connection) -> list[Recording]:
            return [
                _recording(r)
                for r in conn.execute(
                    "SELECT * FROM recordings WHERE status = 'open' ORDER BY started_at, id"
                )
            ]

        return await self._read(run)

    async def recording_chain(self, *, after_seq: int = 0, limit: int = 1000) -> list[Recording]:
        """Sealed recordings in chain order (seq ascending), tombstones included."""

        def run(conn: sqlite3.Connection) -> list[Recording]:
            return [
                _recording(r)
                for r in conn.execute(
                    "SELECT * FROM recordings WHERE seq IS NOT NULL AND seq > ?"
                    " ORDER BY seq LIMIT ?",
                    (after_seq, limit),
                )
            ]

        return await self._read(run)

    async def count_recording_chain(self) -> int:
        def run(conn: sqlite3.Connection) -> int:
            return int(
                conn.execute("SELECT COUNT(*) FROM recordings WHERE seq IS NOT NULL").fetchone()[0]
            )

        return await self._read(run)

    async def recording_paths(self) -> frozenset[str]:
        """Every recording path the store knows, whatever its status."""

        def run(conn: sqlite3.Connection) -> frozenset[str]:
            return frozenset(r[0] for r in conn.execute("SELECT path FROM recordings"))

        return await self._read(run)

    async def recordings_due_for_retention(
        self, *, before: float, limit: int = 1000
    ) -> list[Recording]:
        """Sealed, not yet deleted recordings sealed before `before`, not on legal hold."""

        def run(conn: sqlite3.Connection) -> list[Recording]:
            return [
                _recording(r)
                for r in conn.execute(
                    "SELECT r.* FROM recordings r JOIN incidents i ON i.id = r.incident_id"
                    " WHERE r.seq IS NOT NULL AND r.deleted_at IS NULL AND r.sealed_at < ?"
                    " AND i.legal_hold = 0 ORDER BY r.seq LIMIT ?",
                    (before, limit),
                )
            ]

        return await self._read(run)

    async def sla_summary(self, since: float, until: float | None = None) -> SlaSummary:
        """Wallboard figures for incidents that arrived in [since, until)."""
        bands = ", ".join(
            f"COALESCE(SUM(CASE WHEN operator_answered_at - arrived_at <= {s} THEN 1 END), 0)"
            for s in SLA_THRESHOLDS_S
        )
        sql = (
            "SELECT COUNT(*), COUNT(operator_answered_at),"
            " COALESCE(SUM(status = 'abandoned'), 0), COALESCE(SUM(status = 'interrupted'), 0),"
            " COALESCE(SUM(status = 'active'), 0),"
            " AVG(operator_answered_at - arrived_at), MAX(operator_answered_at - arrived_at),"
            f" {bands} FROM incidents WHERE arrived_at >= ? AND arrived_at < ?"
        )
        end = float("inf") if until is None else until

        def run(conn: sqlite3.Connection) -> SlaSummary:
            r = conn.execute(sql, (since, end)).fetchone()
            within = {s: int(r[7 + i]) for i, s in enumerate(SLA_THRESHOLDS_S)}
            return SlaSummary(
                since=since,
                until=until,
                arrived=int(r[0]),
                answered=int(r[1]),
                abandoned=int(r[2]),
                interrupted=int(r[3]),
                active=int(r[4]),
                mean_answer_s=_opt_float(r[5]),
                max_answer_s=_opt_float(r[6]),
                within_s=within,
            )

        return await self._read(run)

    async def operator_call_counts(
        self, since: float, until: float | None = None
    ) -> dict[str, int]:
        """Calls each operator answered in [since, until) (by operator_answered_at)."""
        end = float("inf") if until is None else until

        def run(conn: sqlite3.Connection) -> dict[str, int]:
            return {
                str(r[0]): int(r[1])
                for r in conn.execute(
                    "SELECT operator, COUNT(*) FROM incidents WHERE operator IS NOT NULL"
                    " AND operator_answered_at >= ? AND operator_answered_at < ?"
                    " GROUP BY operator ORDER BY operator",
                    (since, end),
                )
            }

        return await self._read(run)


@asynccontextmanager
async def open_store(path: str | Path, **options: Any) -> AsyncIterator[SqliteStore]:
    """``async with open_store(path) as store:`` — open, yield, always close."""
    store = SqliteStore(path, **options)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


def _conforms(store: SqliteStore) -> Store:
    return store  # mypy checks here that SqliteStore implements the protocol
