"""The `Store` protocol: what the rest of the program may ask of the incident store.

app.py, the call flow, the web console and the records CLI are typed against
this protocol, never against an engine. Two engines implement it: the
embedded SQLite store (`records.sqlite`, the default) and PostgreSQL
(`records.postgres`). Both keep the same rules: every write returns after its
transaction committed, group commit with one failing write failing alone, the
audit log and sealed recordings append-only, the same hash chains
(`records.chain`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from ..callers import PastCall
from ..config_source import ConfigVersion, Origin
from ..incidents import (
    AuditEntry,
    Callback,
    CallbackResult,
    Category,
    Incident,
    IncidentQuery,
    IncidentRecord,
    LegQuality,
    LegRole,
    OperatorStateChange,
    Recording,
    SlaSummary,
    Status,
)
from ..location.fix import Fix
from ..sip.capture import CapturedMessage
from ..watchlist import WatchListChange, WatchListEntry

__all__ = ["MAX_CHUNK_BYTES", "OPERATOR_OFFLINE", "Store", "StoreError", "StoreHealth"]

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


# Most bytes in one `append_recording_chunk`: 2 s of the largest recording this server
# writes (stereo G.711, 2 x 8000 B/s = 32 000 B) with room for the WAV header in the first
# chunk and a flush that ran late (issue 14: audio reaches the store in chunks of <= 2 s).
MAX_CHUNK_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreHealth:
    """The store's view of its database, for the wallboard and /metrics.

    `available` is False while the engine rides out an outage (PostgreSQL
    unreachable): writes then wait in memory, `queued_writes` of them, since
    `outage_since` (epoch seconds), and are written when it returns (bounds:
    docs/deployment.md).
    """

    engine: str  # "sqlite" | "postgresql"
    available: bool
    outage_since: float | None = None
    reason: str | None = None
    queued_writes: int = 0


# --------------------------------------------------------------------------- the interface


class Store(Protocol):
    """What the rest of the program may ask of the incident store.

    Every write returns after its transaction committed. Times are epoch
    seconds passed in by the caller. Unknown ids and rule violations raise
    `IncidentError`; database failures raise `StoreError`.
    """

    # -- lifecycle and health
    # True when sealed recordings are kept in the database too (PostgreSQL: the standby
    # has them); the recordings folder is then a cache that `evidence` refills.
    keeps_recording_copies: bool

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    def health(self) -> StoreHealth: ...

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
        self,
        incident_id: str,
        changes: Mapping[str, object],
        *,
        actor: str,
        at: float,
        categories: Sequence[str] | None = None,  # Config.category_ids; None: shipped set
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

    async def append_recording_chunk(
        self, recording_id: int, seq: int, data: bytes, *, at: float
    ) -> None: ...

    async def recording_bytes(self, recording_id: int) -> bytes: ...

    async def keep_recording_copy(self, recording_id: int, data: bytes) -> None: ...

    async def recording_copy(self, recording_id: int) -> bytes | None: ...

    async def list_open_recordings(self) -> list[Recording]: ...

    async def recording_chain(
        self, *, after_seq: int = 0, limit: int = 1000
    ) -> list[Recording]: ...

    async def count_recording_chain(self) -> int: ...

    async def recording_paths(self) -> frozenset[str]: ...

    async def recordings_due_for_retention(
        self, *, before: float, limit: int = 1000
    ) -> list[Recording]: ...

    # -- caller location (issue 13)
    async def add_fix(self, fix: Fix, *, incident_id: str | None, received_at: float) -> int: ...

    async def fixes_for(self, incident_id: str) -> list[Fix]: ...

    async def claim_fixes(self, caller: str | None, incident_id: str, *, since: float) -> int: ...

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
        self,
        callback_id: int,
        *,
        actor: str,
        at: float,
        outcome: str,
        note: str | None = None,
        holder: str | None = None,
    ) -> Callback: ...

    # issue 11: callbacks held for a supervisor; the /healthz write; retention's checks
    async def callback_review(self, incident_id: str, *, reason: str, at: float) -> int: ...

    async def probe(self, now: float) -> None: ...

    async def newest_seal_at(self) -> float | None: ...

    async def count_recordings(self) -> int: ...

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

    # -- issue 16: configuration versions and SIP captures ------------------------------

    async def add_config_version(
        self, *, text: str, origin: Origin, file_sha256: str, actor: str, at: float
    ) -> ConfigVersion:
        """Store the next configuration version (newest + 1) and return it."""
        ...

    async def list_config_versions(self, *, limit: int = 50) -> list[ConfigVersion]:
        """Newest first."""
        ...

    async def get_config_version(self, version: int) -> ConfigVersion | None: ...

    async def add_sip_messages(self, incident_id: str, messages: Sequence[CapturedMessage]) -> None:
        """Append captured messages to the incident's (seq continues)."""
        ...

    async def sip_messages(self, incident_id: str) -> list[CapturedMessage]:
        """The incident's captured messages in capture order; [] if none."""
        ...

    async def save_registrations(
        self,
        rows: Sequence[tuple[str, str, str, float]],
        *,
        gone: Sequence[tuple[str, str, float]] = (),
        now: float,
    ) -> None:
        """Upsert `rows`, delete `gone` bindings no fresher than saved, drop expired rows."""
        ...

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

    # -- issue 12: caller history and the supervisor's watch list
    async def calls_from(self, number: str, *, since: float, until: float) -> list[PastCall]: ...

    async def watch_list_add(
        self, number: str, *, reason: str, expiry: str, created_by: str, now: float
    ) -> WatchListChange: ...

    async def watch_list_remove(
        self, number: str, *, removed_by: str, now: float
    ) -> WatchListChange: ...

    async def watch_list(self, now: float, *, history: bool = False) -> list[WatchListEntry]: ...

    async def is_watch_listed(self, number: str, now: float) -> bool: ...
