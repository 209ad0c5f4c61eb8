"""The records: incidents, the audit log and the recordings, and their integrity.

* `protocol` — the `Store` protocol every engine implements (and `StoreError`);
* `sqlite/` — the embedded engine (default); `postgres/` — PostgreSQL 15;
* `engines` — which engine ``[storage] database`` names;
* `chain` — the hash-chain rules, pure, used by every checker;
* `evidence` — sealing and verifying recordings and the audit chain;
* `retention` — deleting old recordings (tombstones, audit-logged);
* `recovery` — crash recovery at start;
* `cli` — the `incidents`, `recordings`, `callbacks` and `audit` commands.
"""

from .chain import (
    GENESIS_HASH,
    IntegrityProblem,
    ProblemKind,
    audit_entry_hash,
    recording_entry_hash,
)
from .engines import is_postgresql, new_store, open_database
from .evidence import (
    READ_ONLY_MODE,
    VerifyReport,
    WavInfo,
    seal_recording,
    sha256_file,
    verify_audit,
    verify_recordings,
    wav_info,
)
from .protocol import OPERATOR_OFFLINE, Store, StoreError, StoreHealth
from .recovery import RecoveryReport, recover_after_crash
from .retention import RetentionReport, apply_retention
from .sqlite import MIGRATIONS, SCHEMA_VERSION, Migration, SqliteStore, migrate, open_store

__all__ = [
    "GENESIS_HASH",
    "MIGRATIONS",
    "OPERATOR_OFFLINE",
    "READ_ONLY_MODE",
    "SCHEMA_VERSION",
    "IntegrityProblem",
    "Migration",
    "ProblemKind",
    "RecoveryReport",
    "RetentionReport",
    "SqliteStore",
    "Store",
    "StoreError",
    "StoreHealth",
    "VerifyReport",
    "WavInfo",
    "apply_retention",
    "audit_entry_hash",
    "is_postgresql",
    "migrate",
    "new_store",
    "open_database",
    "open_store",
    "recording_entry_hash",
    "recover_after_crash",
    "seal_recording",
    "sha256_file",
    "verify_audit",
    "verify_recordings",
    "wav_info",
]
