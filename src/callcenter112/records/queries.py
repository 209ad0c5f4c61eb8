"""The store's operations: every `Store` write and read, as SQL both engines run.

The SQL is the dialect SQLite 3.35+ and PostgreSQL 15 share (see `sql`), so
the rules of each operation (transitions, legs, the recordings and audit
chains, callbacks) have one home whatever the engine.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any, TypeVar, cast

from ..callers import PastCall
from ..config_source import ConfigVersion, Origin
from ..incidents import (
    ANONYMOUS,
    CALL_FLOW_FIELDS,
    SLA_THRESHOLDS_S,
    TIMESTAMP_FIELDS,
    AuditEntry,
    Callback,
    CallbackAttempt,
    CallbackResult,
    CallbackStatus,
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
    callback_is_priority,
    callback_number,
    check_leg_allowed,
    check_transition,
    format_incident_id,
    incident_day,
    needs_callback,
    normalize_caller,
    validate_disposition_changes,
)
from ..location.fix import FIX_SOURCES, MAX_RAW, Fix, FixSource
from ..sip.capture import CapturedMessage
from ..watchlist import WatchList, WatchListChange, WatchListEntry
from .chain import GENESIS_HASH, recording_entry_hash
from .protocol import MAX_CHUNK_BYTES, OPERATOR_OFFLINE, StoreError
from .rows import (
    _EVERY_INCIDENT,
    _INCIDENT_SELECT,
    Row,
    _attempt,
    _audit_entry,
    _callback,
    _callback_row,
    _check_word,
    _detail,
    _incident,
    _incident_row,
    _insert_audit,
    _insert_callback,
    _insert_event,
    _leg,
    _load_callback,
    _opt_float,
    _query_where,
    _recording,
    _relative_path,
)
from .sql import SqlConnection

__all__ = ["StoreQueries"]


def _check_fix_source(source: str) -> FixSource:
    for known in FIX_SOURCES:
        if source == known:
            return known
    raise IncidentError(f"fix source {source!r} unknown", status_hint=422)


def _fixes_of(conn: SqlConnection, incident_id: str) -> tuple[Fix, ...]:
    return tuple(
        Fix(
            lat=_opt_float(r["lat"]),
            lon=_opt_float(r["lon"]),
            radius_m=_opt_float(r["radius_m"]),
            source=_check_fix_source(str(r["source"])),
            at=float(r["at"]),
            confidence=None if r["confidence"] is None else int(r["confidence"]),
            valid=bool(r["valid"]),
            reason=r["reason"],
            shape=r["shape"],
            altitude_m=_opt_float(r["altitude_m"]),
            caller=r["caller"],
            raw=str(r["raw"]),
        )
        for r in conn.execute(
            "SELECT * FROM fixes WHERE incident_id = ? ORDER BY at, id", (incident_id,)
        )
    )


T = TypeVar("T")
_NO_LIMIT = 1 << 62  # "no LIMIT" for both engines (PostgreSQL refuses SQLite's -1)
# A saved binding's expires_at is recomputed from two clocks at each save and
# drifts by microseconds; a phone that re-registered moved it by at least
# the registrar's minimum expiry (60 s), so 1 s tells "the row I wrote" from
# "a fresher row another node wrote".
FRESHER_BY_S = 1.0


class StoreQueries:
    """Every `Store` operation, once, for both engines (mixed into an engine's writer).

    A write is a function of the connection run by the writer inside the batch
    transaction (`_write`); a read, one run on a reader connection in one
    snapshot (`_read`).
    """

    _id_utc_offset_s: float

    async def _write(self, run: Callable[[SqlConnection], T]) -> T:
        raise NotImplementedError

    async def _read(self, run: Callable[[SqlConnection], T]) -> T:
        raise NotImplementedError

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

        def run(conn: SqlConnection) -> str:
            seq = int(
                conn.execute(
                    "INSERT INTO incident_days (day, last_seq) VALUES (?, 1)"
                    " ON CONFLICT(day) DO UPDATE SET last_seq = incident_days.last_seq + 1"
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

        def run(conn: SqlConnection) -> frozenset[str]:
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

        def run(conn: SqlConnection) -> int | None:
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
                conn,
                incident_id,
                callback_number(row["caller"]),
                status.value,
                at,
                # A call the system cut (crash, lost node, capacity: `interrupted`)
                # or a silent caller who hung up (issue 12) is called back first.
                priority=status is Status.INTERRUPTED or _silent_incident(conn, incident_id),
            )

        return await self._write(run)

    async def save_disposition(
        self,
        incident_id: str,
        changes: Mapping[str, object],
        *,
        actor: str,
        at: float,
        categories: Sequence[str] | None = None,
    ) -> dict[str, list[object]]:
        """Apply the operator's after-call form; audit-logged as `disposition_change`.

        Returns ``{field: [old, new]}`` for the fields that actually changed
        (nothing is written or logged when nothing changed). ``categories``: the
        city's (``Config.category_ids``, issue 12); None: the shipped set.
        """
        clean = (
            validate_disposition_changes(changes)
            if categories is None
            else validate_disposition_changes(changes, categories=categories)
        )
        _check_word("actor", actor)

        def stored(name: str, value: object) -> object:
            if name == "agencies_notified":
                return json.dumps(list(cast(Sequence[str], value)))
            return None if value is None else str(value)

        def shown(name: str, value: object) -> object:
            if name == "agencies_notified":
                return list(json.loads(cast(str, value)))
            return value

        def run(conn: SqlConnection) -> dict[str, list[object]]:
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

        def run(conn: SqlConnection) -> bool:
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

        def run(conn: SqlConnection) -> int:
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
                " VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
                (incident_id, role.value, call_id, peer, codec, started_at),
            )
            leg_id = int(cur.fetchone()[0])
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

        def run(conn: SqlConnection) -> bool:
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

        def run(conn: SqlConnection) -> int:
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

        def run(conn: SqlConnection) -> int:
            _incident_row(conn, incident_id)
            # One writer runs one operation at a time: the check cannot race the insert.
            if conn.execute("SELECT 1 FROM recordings WHERE path = ?", (rel,)).fetchone():
                raise IncidentError(f"recording {rel} already exists", status_hint=409)
            cur = conn.execute(
                "INSERT INTO recordings (incident_id, path, status, codec, channels,"
                " started_at) VALUES (?, ?, 'open', ?, ?, ?) RETURNING id",
                (incident_id, rel, codec, channels, started_at),
            )
            recording_id = int(cur.fetchone()[0])
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

        def run(conn: SqlConnection) -> Recording:
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
                    " VALUES (?, ?, 'sealed', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                    (incident_id, rel, started_at, *values),
                )
                recording_id = int(cur.fetchone()[0])
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

        def run(conn: SqlConnection) -> bool:
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

        def run(conn: SqlConnection) -> list[Recording]:
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

    # -- caller location (issue 13) ------------------------------------------------

    async def add_fix(self, fix: Fix, *, incident_id: str | None, received_at: float) -> int:
        """Keep one position report (valid or not); `incident_id` None: pending for
        `fix.caller` until `claim_fixes`. Returns the row id."""
        source = _check_fix_source(fix.source)

        def run(conn: SqlConnection) -> int:
            return int(
                conn.execute(
                    "INSERT INTO fixes (incident_id, caller, received_at, at, lat, lon, radius_m,"
                    " source, confidence, valid, reason, shape, altitude_m, raw)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                    (
                        incident_id,
                        fix.caller,
                        received_at,
                        fix.at,
                        fix.lat,
                        fix.lon,
                        fix.radius_m,
                        source,
                        fix.confidence,
                        1 if fix.valid else 0,
                        fix.reason,
                        fix.shape,
                        fix.altitude_m,
                        fix.raw[:MAX_RAW],
                    ),
                ).fetchone()[0]
            )

        return await self._write(run)

    async def fixes_for(self, incident_id: str) -> list[Fix]:
        """The incident's fixes, oldest (`at`) first."""
        return list(await self._read(lambda conn: _fixes_of(conn, incident_id)))

    async def claim_fixes(self, caller: str | None, incident_id: str, *, since: float) -> int:
        """Attach `caller`'s pending fixes received at or after `since` to the incident
        (an AML message that beat the call). Returns how many were attached."""
        if not caller:
            return 0

        def run(conn: SqlConnection) -> int:
            return conn.execute(
                "UPDATE fixes SET incident_id = ?"
                " WHERE incident_id IS NULL AND caller = ? AND received_at >= ?",
                (incident_id, caller, since),
            ).rowcount

        return await self._write(run)

    async def create_callback(
        self, incident_id: str, *, number: str | None, reason: str, at: float
    ) -> int:
        """Open a callback task (number None: caller withheld, task flagged "no number")."""
        target = None if number is None else normalize_caller(number)
        if target == "anonymous":
            target = None

        def run(conn: SqlConnection) -> int:
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

        def run(conn: SqlConnection) -> Callback:
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

        def run(conn: SqlConnection) -> int:
            row = _callback_row(conn, callback_id)
            if row["status"] == CallbackStatus.CLOSED.value:
                raise IncidentError(f"callback {callback_id} is closed", status_hint=409)
            cur = conn.execute(
                "INSERT INTO callback_attempts (callback_id, at, actor, result, note, leg_id)"
                " VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
                (callback_id, at, actor, result.value, note, leg_id),
            )
            attempt_id = int(cur.fetchone()[0])
            _insert_event(
                conn,
                row["incident_id"],
                at,
                "callback_attempt",
                {"callback_id": callback_id, "by": actor, "result": result.value, "note": note},
            )
            return attempt_id

        return await self._write(run)

    async def callback_close(
        self,
        callback_id: int,
        *,
        actor: str,
        at: float,
        outcome: str,
        note: str | None = None,
        holder: str | None = None,
    ) -> Callback:
        """Close a callback task with its outcome; audit-logged. With `holder`
        (an operator, not a supervisor) the task must be held by `holder`,
        checked in the same transaction (issue 11): else 403."""
        _check_word("actor", actor)
        _check_word("outcome", outcome, limit=200)

        def run(conn: SqlConnection) -> Callback:
            row = _callback_row(conn, callback_id)
            if row["status"] == CallbackStatus.CLOSED.value:
                raise IncidentError(f"callback {callback_id} is already closed", status_hint=409)
            if holder is not None and row["taken_by"] != holder:
                whose = f"held by {row['taken_by']}" if row["taken_by"] else "not taken"
                raise IncidentError(
                    f"callback {callback_id} is {whose}; a supervisor may close it",
                    status_hint=403,
                )
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

    async def callback_review(self, incident_id: str, *, reason: str, at: float) -> int:
        """Hold the incident's open callback tasks for a supervisor (issue 11:
        e.g. a trunk INVITE that never ACKed nor sent media may be spoofed);
        returns how many were marked. A `callback_review` event on the incident."""
        _check_word("reason", reason)

        def run(conn: SqlConnection) -> int:
            _incident_row(conn, incident_id)
            ids = [
                int(r[0])
                for r in conn.execute(
                    "SELECT id FROM callbacks WHERE incident_id = ? AND status = 'open'",
                    (incident_id,),
                )
            ]
            for callback_id in ids:
                conn.execute("UPDATE callbacks SET review = ? WHERE id = ?", (reason, callback_id))
                _insert_event(
                    conn,
                    incident_id,
                    at,
                    "callback_review",
                    {"callback_id": callback_id, "reason": reason},
                )
            return len(ids)

        return await self._write(run)

    # -- health (issue 11)

    async def probe(self, now: float) -> None:
        """A real write for /healthz: upsert the one-row `health` table."""

        def run(conn: SqlConnection) -> None:
            conn.execute(
                "INSERT INTO health (id, probed_at) VALUES (1, ?)"
                " ON CONFLICT (id) DO UPDATE SET probed_at = excluded.probed_at",
                (now,),
            )

        await self._write(run)

    async def newest_seal_at(self) -> float | None:
        """When the newest recording was sealed (the retention clock check)."""

        def run(conn: SqlConnection) -> float | None:
            value = conn.execute("SELECT MAX(sealed_at) FROM recordings").fetchone()[0]
            return None if value is None else float(value)

        return await self._read(run)

    async def count_recordings(self) -> int:
        """Recordings not yet deleted by retention (the share a sweep may take)."""

        def run(conn: SqlConnection) -> int:
            return int(
                conn.execute("SELECT COUNT(*) FROM recordings WHERE deleted_at IS NULL").fetchone()[
                    0
                ]
            )

        return await self._read(run)

    # -- operators and audit

    async def record_operator_state(
        self, operator: str, state: str, *, reason: str | None = None, at: float
    ) -> None:
        """Append to an operator's state history (available, paused, wrap-up, …)."""
        _check_word("operator", operator)
        _check_word("state", state)

        def run(conn: SqlConnection) -> None:
            conn.execute(
                "INSERT INTO operator_states (operator, state, reason, at) VALUES (?, ?, ?, ?)",
                (operator, state, reason, at),
            )

        await self._write(run)

    async def save_registrations(
        self,
        rows: Sequence[tuple[str, str, str, float]],
        *,
        gone: Sequence[tuple[str, str, float]] = (),
        now: float,
    ) -> None:
        """Save softphone registrations: upsert `rows` (operator, binding key,
        binding JSON, expires_at wall clock), delete the `gone` bindings
        (operator, binding key, the expires_at this node last saved) unless
        the row is fresher than that, and drop rows expired by `now`.

        Never a wholesale replace: in a cluster both nodes write this table (a
        follower takes a REGISTER the edge sent as a last resort while no node
        was leader) and the leader merges what it did not write itself
        (`Centre._restore_registrations`); a replace by one node would erase
        the other's. After a restart the centre takes the rows back and checks
        each phone with OPTIONS, so operators are not offline until their
        phones happen to re-register."""

        def run(conn: SqlConnection) -> None:
            for operator, key, saved_expiry in gone:
                conn.execute(
                    "DELETE FROM registrations WHERE operator = ? AND binding_key = ?"
                    " AND expires_at <= ?",
                    (operator, key, saved_expiry + FRESHER_BY_S),
                )
            conn.execute("DELETE FROM registrations WHERE expires_at <= ?", (now,))
            conn.executemany(
                "INSERT INTO registrations (operator, binding_key, binding, expires_at)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (operator, binding_key) DO UPDATE"
                " SET binding = excluded.binding, expires_at = excluded.expires_at",
                list(rows),
            )

        await self._write(run)

    # -- issue 16: configuration versions and SIP captures ------------------------------

    async def add_config_version(
        self, *, text: str, origin: Origin, file_sha256: str, actor: str, at: float
    ) -> ConfigVersion:
        """Store the next configuration version (newest + 1) and return it."""

        def run(conn: SqlConnection) -> ConfigVersion:
            row = conn.execute("SELECT MAX(version) FROM config_versions").fetchone()
            version = int(row[0] or 0) + 1
            conn.execute(
                "INSERT INTO config_versions (version, text, origin, file_sha256, actor, at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (version, text, origin, file_sha256, actor, at),
            )
            return ConfigVersion(
                version=version,
                text=text,
                origin=origin,
                file_sha256=file_sha256,
                actor=actor,
                at=at,
            )

        return await self._write(run)

    async def list_config_versions(self, *, limit: int = 50) -> list[ConfigVersion]:
        def run(conn: SqlConnection) -> list[ConfigVersion]:
            rows = conn.execute(
                "SELECT version, text, origin, file_sha256, actor, at FROM config_versions"
                " ORDER BY version DESC LIMIT ?",
                (limit,),
            ).fetchall()
            return [_config_version(r) for r in rows]

        return await self._read(run)

    async def get_config_version(self, version: int) -> ConfigVersion | None:
        def run(conn: SqlConnection) -> ConfigVersion | None:
            row = conn.execute(
                "SELECT version, text, origin, file_sha256, actor, at FROM config_versions"
                " WHERE version = ?",
                (version,),
            ).fetchone()
            return _config_version(row) if row is not None else None

        return await self._read(run)

    async def add_sip_messages(self, incident_id: str, messages: Sequence[CapturedMessage]) -> None:
        if not messages:
            return

        def run(conn: SqlConnection) -> None:
            row = conn.execute(
                "SELECT MAX(seq) FROM sip_messages WHERE incident_id = ?", (incident_id,)
            ).fetchone()
            first = 0 if row[0] is None else int(row[0]) + 1
            conn.executemany(
                "INSERT INTO sip_messages (incident_id, seq, at, direction, local, remote,"
                " transport, leg, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        incident_id,
                        first + i,
                        m.at,
                        m.direction,
                        _host_port(m.local),
                        _host_port(m.remote),
                        m.transport,
                        m.leg,
                        m.data,
                    )
                    for i, m in enumerate(messages)
                ],
            )

        await self._write(run)

    async def sip_messages(self, incident_id: str) -> list[CapturedMessage]:
        def run(conn: SqlConnection) -> list[CapturedMessage]:
            rows = conn.execute(
                "SELECT at, direction, local, remote, transport, leg, data FROM sip_messages"
                " WHERE incident_id = ? ORDER BY seq",
                (incident_id,),
            ).fetchall()
            return [
                CapturedMessage(
                    at=float(at),
                    direction="in" if direction == "in" else "out",
                    local=_split_host_port(str(local)),
                    remote=_split_host_port(str(remote)),
                    transport=str(transport),
                    leg=str(leg),
                    data=bytes(data),
                )
                for at, direction, local, remote, transport, leg, data in rows
            ]

        return await self._read(run)

    async def load_registrations(self, *, now: float) -> list[tuple[str, str, str, float]]:
        """Saved registrations that have not expired by `now` (wall clock)."""

        def run(conn: SqlConnection) -> list[tuple[str, str, str, float]]:
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

        def run(conn: SqlConnection) -> tuple[str, ...]:
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

        def run(conn: SqlConnection) -> AuditEntry:
            return _insert_audit(
                conn, at=at, actor=actor, action=action, target=target, detail=detail
            )

        return await self._write(run)

    # ======================================================================= reads

    async def get_incident(self, incident_id: str) -> IncidentRecord | None:
        """One incident with its legs, timeline, recordings and callbacks; None if unknown."""

        def run(conn: SqlConnection) -> IncidentRecord | None:
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
                fixes=_fixes_of(conn, incident_id),
            )

        return await self._read(run)

    async def list_incidents(
        self, query: IncidentQuery = _EVERY_INCIDENT, *, limit: int | None = 100, offset: int = 0
    ) -> list[Incident]:
        """Incidents matching `query`, newest arrival first."""
        where, params = _query_where(query)
        sql = f"{_INCIDENT_SELECT}{where} ORDER BY arrived_at DESC, id DESC LIMIT ? OFFSET ?"
        params += [_NO_LIMIT if limit is None else limit, offset]

        def run(conn: SqlConnection) -> list[Incident]:
            return [_incident(r) for r in conn.execute(sql, params)]

        return await self._read(run)

    async def count_incidents(self, query: IncidentQuery = _EVERY_INCIDENT) -> int:
        where, params = _query_where(query)

        def run(conn: SqlConnection) -> int:
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

            def run(conn: SqlConnection, sql: str = sql, args: list[object] = extra) -> Any:
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

        def run(conn: SqlConnection) -> list[Incident]:
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
        """Callback tasks, priority ones (silent callers, issue 12) first, then oldest first."""
        clauses: list[str] = []
        params: list[object] = []
        if open_only:
            clauses.append("status != 'closed'")
        if incident_id is not None:
            clauses.append("incident_id = ?")
            params.append(incident_id)
        where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
        params.append(_NO_LIMIT if limit is None else limit)

        def run(conn: SqlConnection) -> list[Callback]:
            rows = conn.execute(
                f"SELECT * FROM callbacks{where} ORDER BY priority DESC, created_at, id LIMIT ?",
                params,
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

        def run(conn: SqlConnection) -> list[OperatorStateChange]:
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
        params.append(_NO_LIMIT if limit is None else limit)
        sql = f"SELECT * FROM audit_log WHERE {' AND '.join(clauses)} ORDER BY seq LIMIT ?"

        def run(conn: SqlConnection) -> list[AuditEntry]:
            return [_audit_entry(r) for r in conn.execute(sql, params)]

        return await self._read(run)

    async def count_audit(self) -> int:
        def run(conn: SqlConnection) -> int:
            return int(conn.execute("SELECT COUNT(*) FROM audit_log").fetchone()[0])

        return await self._read(run)

    async def append_recording_chunk(
        self, recording_id: int, seq: int, data: bytes, *, at: float
    ) -> None:
        """Store the next bytes of an open recording's file (chunk `seq`, from 0, in order).

        Called by the recorder's periodic flush (at most `MAX_CHUNK_BYTES`, ≤ 2 s of
        audio), so a node lost mid-call loses at most the last chunk. Sending the same
        chunk again (a retried flush) is accepted; a different one under the same seq,
        a gap, or a chunk for a sealed recording is refused (409).
        """
        if not 0 < len(data) <= MAX_CHUNK_BYTES:
            raise IncidentError(
                f"a recording chunk is 1..{MAX_CHUNK_BYTES} bytes, not {len(data)}",
                status_hint=422,
            )
        digest = hashlib.sha256(data).hexdigest()

        def run(conn: SqlConnection) -> None:
            rec = conn.execute(
                "SELECT status FROM recordings WHERE id = ?", (recording_id,)
            ).fetchone()
            if rec is None:
                raise IncidentError(f"no recording {recording_id}", status_hint=404)
            same = conn.execute(
                "SELECT sha256 FROM recording_chunks WHERE recording_id = ? AND seq = ?",
                (recording_id, seq),
            ).fetchone()
            if same is not None:
                if same[0] == digest:
                    return  # the same flush, sent again
                raise IncidentError(
                    f"recording {recording_id} already has a different chunk {seq}",
                    status_hint=409,
                )
            if rec[0] != "open":
                raise IncidentError(f"recording {recording_id} is {rec[0]}", status_hint=409)
            last = conn.execute(
                "SELECT MAX(seq) FROM recording_chunks WHERE recording_id = ?", (recording_id,)
            ).fetchone()[0]
            expected = 0 if last is None else int(last) + 1
            if seq != expected:
                raise IncidentError(
                    f"recording {recording_id}: chunk {seq} out of order (next is {expected})",
                    status_hint=409,
                )
            conn.execute(
                "INSERT INTO recording_chunks (recording_id, seq, at, sha256, data)"
                " VALUES (?, ?, ?, ?, ?)",
                (recording_id, seq, at, digest, data),
            )

        await self._write(run)

    async def recording_bytes(self, recording_id: int) -> bytes:
        """The recording's file as far as it reached the database (its chunks, in order).

        Raises `StoreError` if a stored chunk no longer matches its hash.
        """

        def run(conn: SqlConnection) -> bytes:
            parts: list[bytes] = []
            for row in conn.execute(
                "SELECT seq, sha256, data FROM recording_chunks WHERE recording_id = ?"
                " ORDER BY seq",
                (recording_id,),
            ):
                data = bytes(row[2])
                if hashlib.sha256(data).hexdigest() != row[1] or int(row[0]) != len(parts):
                    raise StoreError(f"recording {recording_id}: chunk {row[0]} is damaged")
                parts.append(data)
            return b"".join(parts)

        return await self._read(run)

    async def keep_recording_copy(self, recording_id: int, data: bytes) -> None:
        """Keep the sealed recording's bytes in the database (replicated with it).

        `data` must be what was sealed (its SHA-256 and size are the chain entry's);
        keeping the same copy again is accepted.
        """
        digest = hashlib.sha256(data).hexdigest()

        def run(conn: SqlConnection) -> None:
            rec = conn.execute(
                "SELECT sha256, size, seq FROM recordings WHERE id = ?", (recording_id,)
            ).fetchone()
            if rec is None:
                raise IncidentError(f"no recording {recording_id}", status_hint=404)
            if rec["seq"] is None:
                raise IncidentError(f"recording {recording_id} is not sealed", status_hint=409)
            if rec["sha256"] != digest or rec["size"] != len(data):
                raise IncidentError(
                    f"recording {recording_id}: these bytes are not what was sealed",
                    status_hint=409,
                )
            conn.execute(
                "INSERT INTO recording_copies (recording_id, sha256, data) VALUES (?, ?, ?)"
                " ON CONFLICT (recording_id) DO NOTHING",
                (recording_id, digest, data),
            )

        await self._write(run)

    async def recording_copy(self, recording_id: int) -> bytes | None:
        """The sealed recording's bytes kept in the database, or None if none are."""

        def run(conn: SqlConnection) -> bytes | None:
            row = conn.execute(
                "SELECT data FROM recording_copies WHERE recording_id = ?", (recording_id,)
            ).fetchone()
            return None if row is None else bytes(row[0])

        return await self._read(run)

    async def list_open_recordings(self) -> list[Recording]:
        def run(conn: SqlConnection) -> list[Recording]:
            return [
                _recording(r)
                for r in conn.execute(
                    "SELECT * FROM recordings WHERE status = 'open' ORDER BY started_at, id"
                )
            ]

        return await self._read(run)

    async def recording_chain(self, *, after_seq: int = 0, limit: int = 1000) -> list[Recording]:
        """Sealed recordings in chain order (seq ascending), tombstones included."""

        def run(conn: SqlConnection) -> list[Recording]:
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
        def run(conn: SqlConnection) -> int:
            return int(
                conn.execute("SELECT COUNT(*) FROM recordings WHERE seq IS NOT NULL").fetchone()[0]
            )

        return await self._read(run)

    async def recording_paths(self) -> frozenset[str]:
        """Every recording path the store knows, whatever its status."""

        def run(conn: SqlConnection) -> frozenset[str]:
            return frozenset(r[0] for r in conn.execute("SELECT path FROM recordings"))

        return await self._read(run)

    async def recordings_due_for_retention(
        self, *, before: float, limit: int = 1000
    ) -> list[Recording]:
        """Sealed, not yet deleted recordings sealed before `before`, not on legal hold."""

        def run(conn: SqlConnection) -> list[Recording]:
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
            " COALESCE(SUM(CASE WHEN status = 'abandoned' THEN 1 ELSE 0 END), 0),"
            " COALESCE(SUM(CASE WHEN status = 'interrupted' THEN 1 ELSE 0 END), 0),"
            " COALESCE(SUM(CASE WHEN status = 'active' THEN 1 ELSE 0 END), 0),"
            " AVG(operator_answered_at - arrived_at), MAX(operator_answered_at - arrived_at),"
            f" {bands} FROM incidents WHERE arrived_at >= ? AND arrived_at < ?"
        )
        end = float("inf") if until is None else until

        def run(conn: SqlConnection) -> SlaSummary:
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

        def run(conn: SqlConnection) -> dict[str, int]:
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

    # -- issue 12: caller history and the supervisor's watch list

    async def calls_from(self, number: str, *, since: float, until: float) -> list[PastCall]:
        """Incidents from `number` that arrived in [since, until), newest first, with
        their dispositions (`callers.CallerHistorySource`). Anonymous: none, ever."""
        caller = normalize_caller(number)
        if caller == ANONYMOUS:
            return []

        def run(conn: SqlConnection) -> list[PastCall]:
            return [
                PastCall(
                    incident_id=str(r["id"]),
                    arrived_at=float(r["arrived_at"]),
                    disposition=None if r["disposition"] is None else Disposition(r["disposition"]),
                )
                for r in conn.execute(
                    "SELECT id, arrived_at, disposition FROM incidents WHERE caller = ?"
                    " AND arrived_at >= ? AND arrived_at < ? ORDER BY arrived_at DESC, id DESC",
                    (caller, since, until),
                )
            ]

        return await self._read(run)

    async def watch_list_add(
        self, number: str, *, reason: str, expiry: str, created_by: str, now: float
    ) -> WatchListChange:
        """A supervisor lists `number` (the rules are `watchlist.WatchList`'s: a reason,
        an expiry of 24h/7d/30d, never a withheld number); an active entry is replaced.
        Every change is an audit row in the same transaction."""

        def run(conn: SqlConnection) -> WatchListChange:
            listed = WatchList(_active_watch_entries(conn, normalize_caller(number), now))
            change = listed.add(
                number, reason=reason, expiry=expiry, created_by=created_by, now=now
            )
            for old in listed.history():
                if old.removed_at is not None:
                    _end_watch_entries(conn, old.number, old.removed_by or created_by, now)
            e = change.entry
            conn.execute(
                "INSERT INTO watch_list (number, reason, expires_at, created_by, created_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (e.number, e.reason, e.expires_at, e.created_by, e.created_at),
            )
            _insert_audit(
                conn,
                at=now,
                actor=created_by,
                action="watch_list_add",
                target=e.number,
                detail={"reason": e.reason, "expiry": expiry, "expires_at": e.expires_at},
            )
            return change

        return await self._write(run)

    async def watch_list_remove(
        self, number: str, *, removed_by: str, now: float
    ) -> WatchListChange:
        """A supervisor takes `number` off early; 404 (`WatchListError`) if not listed."""

        def run(conn: SqlConnection) -> WatchListChange:
            line = normalize_caller(number)
            change = WatchList(_active_watch_entries(conn, line, now)).remove(
                line, removed_by=removed_by, now=now
            )
            _end_watch_entries(conn, line, removed_by, now)
            _insert_audit(
                conn,
                at=now,
                actor=removed_by,
                action="watch_list_remove",
                target=line,
                detail={"reason": change.entry.reason},
            )
            return change

        return await self._write(run)

    async def watch_list(self, now: float, *, history: bool = False) -> list[WatchListEntry]:
        """Entries active at `now` (or every entry ever, with `history`), newest first."""
        where = "" if history else " WHERE removed_at IS NULL AND expires_at > ?"
        args: tuple[object, ...] = () if history else (now,)

        def run(conn: SqlConnection) -> list[WatchListEntry]:
            return [
                _watch_entry(r)
                for r in conn.execute(
                    f"SELECT * FROM watch_list{where} ORDER BY created_at DESC, id DESC", args
                )
            ]

        return await self._read(run)

    async def is_watch_listed(self, number: str, now: float) -> bool:
        """The call flow's question at arrival; a withheld number: always False."""
        line = normalize_caller(number)
        if line == ANONYMOUS:
            return False

        def run(conn: SqlConnection) -> bool:
            return bool(_active_watch_entries(conn, line, now))

        return await self._read(run)


def _config_version(row: Row) -> ConfigVersion:
    origins: dict[str, Origin] = {"file": "file", "web": "web", "cli": "cli"}
    return ConfigVersion(
        version=int(row[0]),
        text=str(row[1]),
        origin=origins[str(row[2])],
        file_sha256=str(row[3]),
        actor=str(row[4]),
        at=float(row[5]),
    )


def _host_port(addr: tuple[str, int]) -> str:
    host, port = addr
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _split_host_port(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port or 0)


def _watch_entry(r: Row) -> WatchListEntry:
    return WatchListEntry(
        number=str(r["number"]),
        reason=str(r["reason"]),
        expires_at=float(r["expires_at"]),
        created_by=str(r["created_by"]),
        created_at=float(r["created_at"]),
        removed_by=r["removed_by"],
        removed_at=_opt_float(r["removed_at"]),
    )


def _active_watch_entries(conn: SqlConnection, number: str, now: float) -> list[WatchListEntry]:
    return [
        _watch_entry(r)
        for r in conn.execute(
            "SELECT * FROM watch_list WHERE number = ? AND expires_at > ? AND removed_at IS NULL",
            (number, now),
        )
    ]


def _end_watch_entries(conn: SqlConnection, number: str, by: str, now: float) -> None:
    conn.execute(
        "UPDATE watch_list SET removed_by = ?, removed_at = ?"
        " WHERE number = ? AND expires_at > ? AND removed_at IS NULL",
        (by, now, number, now),
    )


def _silent_incident(conn: SqlConnection, incident_id: str) -> bool:
    """Whether the incident carries a silent flag: its callback is a priority one."""
    details = [
        _detail(r["detail"])
        for r in conn.execute(
            "SELECT detail FROM events WHERE incident_id = ? AND kind = 'flag'", (incident_id,)
        )
    ]
    return callback_is_priority(str(d.get("flag")) for d in details if isinstance(d, dict))
