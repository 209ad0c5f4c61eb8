"""The journal of one call: every incident and recording write, and what a failure means.

A 112 call is served whatever the database does (DESIGN §2, failure rules):
no write may raise into the call flow. But a failed write is not one thing,
and each kind has its rule here, in one place, instead of a blind
`except Exception: log` at every call site:

* **create** (the incident before the 200 OK): critical, counted
  (`INCIDENT_CREATE_FAILED`); the caller is answered without a record.
* **event / stamp / leg** (timeline entries, timestamps, legs): error with
  the call and incident ids, counted (`JOURNAL_WRITE_FAILED`); the call goes
  on. Crash recovery cannot restore them, so the log line is the evidence.
* **close** (the incident's end): error, counted; the incident stays
  `active` until the next start's recovery marks it `interrupted`.
* **recording open**: a file that cannot be opened is marked lost at once
  (its open row must not wait for a file that never comes), and the call goes
  on unrecorded. The open row failing still records to disk: recovery seals
  files it finds.
* **recording seal**: the file is closed, hashed and chained; a close that
  fails marks the recording lost, a seal that fails leaves the open row for
  recovery. Either way the result says so (`RecordingEnd`).

Every failure is also kept as a `WriteFailed` in `failures`, so tests and
the call can see what happened without parsing logs. This is the one home
for opening and sealing a recording: the call and the callback use it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Protocol

from ..counters import CoreCounters, Counted
from ..incidents import LegQuality, LegRole, Status
from ..media.g711 import Codec
from ..media.recorder import IncidentRecorder, RecordingInfo
from ..records import Store, seal_recording
from .failover import before_deadline, close_later
from .guards import settle_recorder  # issue 11

__all__ = [
    "Journal",
    "OpenRecording",
    "Recorders",
    "RecordingEnd",
    "WriteFailed",
    "WriteKind",
    "recording_path",
]


class WriteKind(Enum):
    """What failed; the value is the log event (the names logs always had)."""

    CREATE = "incident_create_failed"
    EVENT = "incident_event_failed"
    STAMP = "incident_update_failed"
    LEG = "leg_write_failed"
    CLOSE = "incident_close_failed"
    RECORDING_OPEN = "recording_open_failed"
    RECORDING_SEAL = "recording_seal_failed"


@dataclass(frozen=True, slots=True, kw_only=True)
class WriteFailed:
    """One write that did not happen, with what it was about."""

    kind: WriteKind
    what: str
    error: str
    incident_id: str | None


class RecordingEnd(Enum):
    SEALED = "sealed"
    LOST = "lost"  # marked lost in the store (or it could not even be opened)
    LEFT_FOR_RECOVERY = "left_for_recovery"  # closed, but the seal write failed
    UNRECORDED = "unrecorded"  # no incident to chain it to


@dataclass(slots=True)
class OpenRecording:
    """A recording being written: its file, recorder and store row."""

    path: Path
    recorder: IncidentRecorder
    recording_id: int | None


class Recorders(Protocol):
    """What the journal needs from the media engine (`net.media.MediaEngine`)."""

    def open_recorder(self, path: Path, codec: Codec) -> IncidentRecorder: ...

    async def close_recorder(self, rec: IncidentRecorder) -> RecordingInfo: ...

    def watch_recording(self, rec: IncidentRecorder, recording_id: int | None) -> None: ...


def recording_path(
    recordings_dir: Path, incident_id: str | None, name: str, *, first_suffix: int | None = None
) -> Path:
    """Where a new recording goes: under the incident's day, a free name
    (`name.wav`, else `name-2.wav`, …; a callback's starts at -2)."""
    day = incident_id.split("-")[0] if incident_id else "unknown"
    base = recordings_dir / day[:4] / day[4:6] / day[6:8]
    n = first_suffix
    path = base / (f"{name}-{n}.wav" if n is not None else f"{name}.wav")
    n = n or 1
    while path.exists():
        n += 1
        path = base / f"{name}-{n}.wav"
    return path


@dataclass(slots=True)
class Journal:
    """The writes of one call (or callback), each with its failure rule."""

    store: Store
    recorders: Recorders
    recordings_dir: Path
    wall: Callable[[], float]
    counters: CoreCounters
    log: Any  # a bound structlog logger (call and incident ids)
    incident_id: str | None = None
    failures: list[WriteFailed] = field(default_factory=list)
    # Issue 14: the create still waits for the database; its close is applied when it lands.
    create_pending: bool = False
    pending_close: tuple[Status, float, str] | None = None

    def _failed(self, kind: WriteKind, what: str, exc: BaseException) -> None:
        failure = WriteFailed(kind=kind, what=what, error=str(exc), incident_id=self.incident_id)
        self.failures.append(failure)
        self.counters[
            Counted.INCIDENT_CREATE_FAILED
            if kind is WriteKind.CREATE
            else Counted.JOURNAL_WRITE_FAILED
        ] += 1
        level = self.log.critical if kind is WriteKind.CREATE else self.log.error
        level(kind.value, what=what, error=str(exc))

    # -- the incident ------------------------------------------------------------

    async def create_incident(self, **fields: Any) -> str | None:
        """The incident, durably, before the caller is answered; None if the
        store failed (the caller is answered anyway)."""
        try:
            # Issue 14: answered after a short deadline while the database is away.
            self.incident_id = await before_deadline(
                self.store.create_incident(**fields), late=self._created_late
            )
        except Exception as exc:  # noqa: BLE001 - the rule: answer without a record
            self._failed(WriteKind.CREATE, "incident", exc)
            return None
        if self.incident_id is None:
            self.create_pending = True
            self.log.critical("incident_create_pending", store=str(self.store.health()))
            return None
        self.log = self.log.bind(incident_id=self.incident_id)
        return self.incident_id

    def _created_late(self, incident_id: str) -> None:
        """Issue 14: the create landed after the answer; later writes carry it."""
        self.incident_id = incident_id
        self.log = self.log.bind(incident_id=incident_id)
        self.log.warning("incident_created_late")
        self.create_pending = False
        if self.pending_close is not None:  # the call ended first
            status, ended_at, reason = self.pending_close
            close_later(self.close_incident(status, ended_at=ended_at, reason=reason))

    async def event(self, kind: str, detail: Mapping[str, Any] | str | None = None) -> bool:
        if self.incident_id is None:
            return False
        try:
            await self.store.add_event(self.incident_id, kind, detail, at=self.wall())
        except Exception as exc:  # noqa: BLE001 - the rule: the call goes on, logged
            self._failed(WriteKind.EVENT, kind, exc)
            return False
        return True

    async def stamp(self, **fields: Any) -> bool:
        """Timestamps (`*_at`) and fields of the incident, with an optional
        `event=`/`detail=` written in the same transaction."""
        if self.incident_id is None:
            return False
        stamps = {k: v for k, v in fields.items() if k.endswith("_at")}
        other = {k: v for k, v in fields.items() if not k.endswith("_at")}
        try:
            await self.store.update_incident(
                self.incident_id, at=self.wall(), stamps=stamps or None, **other
            )
        except Exception as exc:  # noqa: BLE001 - the rule: the call goes on, logged
            self._failed(WriteKind.STAMP, ",".join(fields), exc)
            return False
        return True

    async def add_leg(
        self,
        *,
        role: LegRole,
        call_id: str | None,
        peer: str | None,
        codec: str | None,
        started_at: float,
    ) -> int | None:
        if self.incident_id is None:
            return None
        try:
            return await self.store.add_leg(
                self.incident_id,
                role=role,
                call_id=call_id,
                peer=peer,
                codec=codec,
                started_at=started_at,
            )
        except Exception as exc:  # noqa: BLE001 - the rule: the call goes on, logged
            self._failed(WriteKind.LEG, f"add {role.value}", exc)
            return None

    async def end_leg(
        self,
        leg_id: int | None,
        *,
        reason: str,
        quality: LegQuality,
        ended_at: float | None = None,
    ) -> bool:
        if leg_id is None:
            return False
        at = self.wall() if ended_at is None else ended_at
        try:
            await self.store.end_leg(leg_id, ended_at=at, reason=reason, quality=quality)
        except Exception as exc:  # noqa: BLE001 - the rule: the call goes on, logged
            self._failed(WriteKind.LEG, f"end {leg_id}", exc)
            return False
        return True

    async def close_incident(self, status: Status, *, ended_at: float, reason: str) -> bool:
        if self.incident_id is None:
            if self.create_pending:  # issue 14: closed once the create lands
                self.pending_close = (status, ended_at, reason)
            return False
        try:
            await self.store.close_incident(
                self.incident_id, status=status, at=self.wall(), ended_at=ended_at, reason=reason
            )
        except Exception as exc:  # noqa: BLE001 - the rule: recovery closes it at next start
            self._failed(WriteKind.CLOSE, status.value, exc)
            return False
        return True

    # -- recordings ------------------------------------------------------------------

    async def open_recording(
        self, codec: Codec, *, unrecorded_name: str, first_suffix: int | None = None
    ) -> OpenRecording | None:
        """Open a stereo recording: the store row, then the file. None when the
        file cannot be opened (then the row is marked lost at once).
        `unrecorded_name` names the file of a call without an incident."""
        name = self.incident_id or unrecorded_name
        path = recording_path(
            self.recordings_dir, self.incident_id, name, first_suffix=first_suffix
        )
        recording_id: int | None = None
        if self.incident_id is not None:
            try:
                recording_id = await self.store.add_recording_open(
                    self.incident_id,
                    str(path.relative_to(self.recordings_dir)),
                    started_at=self.wall(),
                    codec=codec.name,
                    channels=2,
                )
            except Exception as exc:  # noqa: BLE001 - the rule: record anyway, recovery seals
                self._failed(WriteKind.RECORDING_OPEN, str(path.name), exc)
        try:
            recorder = self.recorders.open_recorder(path, codec)
        except OSError as exc:
            self._failed(WriteKind.RECORDING_OPEN, f"file {path.name}", exc)
            await self._mark_lost(recording_id, f"open failed: {exc}")
            return None
        self.recorders.watch_recording(recorder, recording_id)  # issue 14: chunks to the store
        return OpenRecording(path=path, recorder=recorder, recording_id=recording_id)

    async def seal_recording(self, recording: OpenRecording) -> RecordingEnd:
        """Close the file (the rest written, header fixed) and seal it into the
        incident's hash chain."""
        await settle_recorder(recording.recorder)  # issue 11: held audio first reaches the disk
        try:
            info = await self.recorders.close_recorder(recording.recorder)
        except (OSError, ValueError) as exc:
            self._failed(WriteKind.RECORDING_SEAL, f"close {recording.path.name}", exc)
            lost = await self._mark_lost(recording.recording_id, f"close failed: {exc}")
            return RecordingEnd.LOST if lost else RecordingEnd.LEFT_FOR_RECOVERY
        if self.incident_id is None:
            return RecordingEnd.UNRECORDED
        try:
            await seal_recording(
                self.store,
                self.incident_id,
                info.path,
                recordings_dir=self.recordings_dir,
                channels=info.channels,
                duration_s=info.duration_s,
                codec=info.codec,
            )
        except Exception as exc:  # noqa: BLE001 - the rule: the open row waits for recovery
            self._failed(WriteKind.RECORDING_SEAL, f"seal {recording.path.name}", exc)
            return RecordingEnd.LEFT_FOR_RECOVERY
        return RecordingEnd.SEALED

    async def _mark_lost(self, recording_id: int | None, reason: str) -> bool:
        if recording_id is None:
            return False
        try:
            await self.store.mark_recording_lost(recording_id, at=self.wall(), reason=reason)
        except Exception as exc:  # noqa: BLE001 - the rule: recovery finds the open row
            self._failed(WriteKind.RECORDING_SEAL, f"mark lost {recording_id}", exc)
            return False
        return True
