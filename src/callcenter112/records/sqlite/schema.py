"""The SQLite schema and its migrations (`PRAGMA user_version` counts the steps applied)."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from ..protocol import StoreError

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "Migration", "migrate"]


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

# Audio that reached the database stays as it arrived.
_CHUNK_TRIGGERS = (
    """CREATE TRIGGER recording_chunks_no_update BEFORE UPDATE ON recording_chunks
       BEGIN SELECT RAISE(ABORT, 'recording chunks are append-only'); END""",
    """CREATE TRIGGER recording_chunks_no_delete BEFORE DELETE ON recording_chunks
       WHEN (SELECT deleted_at FROM recordings WHERE id = OLD.recording_id) IS NULL
       BEGIN SELECT RAISE(ABORT, 'recording chunks are append-only'); END""",
)

# A sealed copy is never changed; it goes only with its recording's retention tombstone.
_COPY_TRIGGERS = (
    """CREATE TRIGGER recording_copies_no_update BEFORE UPDATE ON recording_copies
       BEGIN SELECT RAISE(ABORT, 'recording copies are immutable'); END""",
    """CREATE TRIGGER recording_copies_no_delete BEFORE DELETE ON recording_copies
       WHEN (SELECT deleted_at FROM recordings WHERE id = OLD.recording_id) IS NULL
       BEGIN SELECT RAISE(ABORT, 'recording copies are immutable'); END""",
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
    Migration(
        version=8,
        summary="recording audio in the database, in chunks of at most 2 s, while recording",
        statements=(
            """CREATE TABLE recording_chunks (
                 recording_id INTEGER NOT NULL REFERENCES recordings(id),
                 seq INTEGER NOT NULL,          -- 0, 1, 2, … in file order
                 at REAL NOT NULL,
                 sha256 TEXT NOT NULL,          -- of data
                 data BLOB NOT NULL,            -- the next bytes of the recording's file
                 PRIMARY KEY (recording_id, seq))""",
            *_CHUNK_TRIGGERS,
        ),
    ),
    Migration(
        version=9,
        summary="a copy of each sealed recording in the database (replicated with it)",
        statements=(
            """CREATE TABLE recording_copies (
                 recording_id INTEGER PRIMARY KEY REFERENCES recordings(id),
                 sha256 TEXT NOT NULL,          -- equal to the chain entry's
                 data BLOB NOT NULL)""",
            *_COPY_TRIGGERS,
        ),
    ),
    # Issue 13 (caller location): every position report, valid or not, kept for the auditor.
    Migration(
        version=10,
        summary="caller location fixes (PIDF-LO, AML, operator pin); pending ones by caller",
        statements=(
            """CREATE TABLE fixes (
                 id INTEGER PRIMARY KEY,
                 incident_id TEXT REFERENCES incidents(id),  -- NULL: pending for its caller
                 caller TEXT,                    -- E.164 the report speaks for
                 received_at REAL NOT NULL,      -- wall clock when it reached us
                 at REAL NOT NULL,               -- when measured, if the report says
                 lat REAL,
                 lon REAL,
                 radius_m REAL,
                 source TEXT NOT NULL,           -- pidf, aml-https, aml-sms, operator
                 confidence INTEGER,
                 valid INTEGER NOT NULL,         -- 0/1
                 reason TEXT,
                 shape TEXT,
                 altitude_m REAL,
                 raw TEXT NOT NULL               -- <= 4 KiB of what arrived
               )""",
            "CREATE INDEX fixes_incident ON fixes (incident_id, at)",
            "CREATE INDEX fixes_pending ON fixes (caller, received_at) WHERE incident_id IS NULL",
        ),
    ),
    Migration(
        version=11,
        summary="configuration versions (file, web, cli) and the SIP messages of each incident",
        statements=(
            """CREATE TABLE config_versions (
                 version INTEGER PRIMARY KEY,   -- 1, 2, 3 … (config_source.ConfigVersion)
                 text TEXT NOT NULL,            -- the whole TOML document
                 origin TEXT NOT NULL CHECK (origin IN ('file', 'web', 'cli')),
                 file_sha256 TEXT NOT NULL,     -- the file this version was based on
                 actor TEXT NOT NULL,
                 at REAL NOT NULL)""",
            """CREATE TABLE sip_messages (
                 incident_id TEXT NOT NULL,
                 seq INTEGER NOT NULL,          -- 0, 1, 2 … in capture order
                 at REAL NOT NULL,
                 direction TEXT NOT NULL CHECK (direction IN ('in', 'out')),
                 local TEXT NOT NULL,           -- host:port
                 remote TEXT NOT NULL,
                 transport TEXT NOT NULL,
                 leg TEXT NOT NULL,             -- caller, operator:<user>, agency:<name>
                 data BLOB NOT NULL,            -- secrets masked (sip.capture.mask_secrets)
                 PRIMARY KEY (incident_id, seq))""",
        ),
    ),
    Migration(
        version=12,
        summary="issue 12: the supervisor's watch list; priority callbacks for silent callers",
        statements=(
            """CREATE TABLE watch_list (
                 id INTEGER PRIMARY KEY,
                 number TEXT NOT NULL,          -- normalised (incidents.normalize_caller)
                 reason TEXT NOT NULL,
                 expires_at REAL NOT NULL,
                 created_by TEXT NOT NULL,
                 created_at REAL NOT NULL,
                 removed_by TEXT,
                 removed_at REAL)""",
            "CREATE INDEX watch_list_number ON watch_list(number, expires_at)",
            "ALTER TABLE callbacks ADD COLUMN priority INTEGER NOT NULL DEFAULT 0",
        ),
    ),
    Migration(
        version=13,
        summary="issue 11: callbacks held for a supervisor; a one-row table /healthz writes",
        statements=(
            # Why a task waits for a supervisor instead of being dialled (e.g.
            # "unverified_caller": a trunk INVITE never ACKed, no media).
            "ALTER TABLE callbacks ADD COLUMN review TEXT",
            """CREATE TABLE health (
                 id INTEGER PRIMARY KEY CHECK (id = 1),
                 probed_at REAL NOT NULL)""",
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
