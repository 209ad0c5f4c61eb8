"""Integrity of the evidence: recording files, their hash chain, the audit chain,
retention and crash recovery.

Recordings are legal-grade (DESIGN §1): the original G.711 bits, sealed when
the call ends. Sealing (`seal_recording`) makes the file read-only (0o444),
hashes it with SHA-256 and appends an entry to the recordings hash chain:

    entry_hash = sha256(prev_entry_hash + canonical_json({seq, incident_id, path,
                                                          sha256, size, sealed_at}))

The audit log is chained the same way over ``{seq, at, actor, action, target,
detail}``. Both canonical forms are defined here, once: the store computes
them inside its write transaction, the verifiers recompute them from what the
store returns, so a row edited behind the product's back (even with the
database's triggers dropped) no longer matches.

`verify_recordings` names every problem: a changed file, a missing file, an
edited chain entry, a removed entry (gap in `seq`), a broken link (reordered or
spliced entries), a file on disk the chain does not know, and a deletion
(tombstone) without its audit entry. A chain cannot prove its own tail was not
cut off, so both reports carry the head (`head_seq`, `head_hash`) for keeping
elsewhere (a printed report, a supervisor's note).

Retention (`apply_retention`) deletes files older than the configured days
unless their incident is on legal hold; the chain entry stays as a tombstone
and each deletion is audit-logged. Recovery (`recover_after_crash`) runs at
start, before calls are accepted: calls that were up become `interrupted`
incidents with a callback task, open legs are closed, and partial recordings
are repaired and sealed.

This module does file IO (in worker threads) and talks to the database only
through the `store.Store` interface.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import os
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

from .incidents import (
    AuditEntry,
    IncidentError,
    IncidentQuery,
    Recording,
    Status,
    canonical_json,
    format_timestamp_us,
)
from .media.g711 import Codec

if TYPE_CHECKING:
    from .store import Store

__all__ = [
    "GENESIS_HASH",
    "READ_ONLY_MODE",
    "IntegrityProblem",
    "ProblemKind",
    "RecoveryReport",
    "RetentionReport",
    "VerifyReport",
    "WavInfo",
    "apply_retention",
    "audit_entry_hash",
    "recording_entry_hash",
    "recover_after_crash",
    "seal_recording",
    "sha256_file",
    "verify_audit",
    "verify_recordings",
    "wav_info",
]

GENESIS_HASH = "0" * 64  # prev_hash of the first entry of a chain
READ_ONLY_MODE = 0o444
_CHUNK = 1 << 20  # hash files a MiB at a time
_PAGE = 500  # chain entries fetched per store read
_DAY_S = 86_400

Progress = Callable[[int, int], None]


# --------------------------------------------------------------------------- canonical hashes


def recording_entry_hash(
    *,
    prev_hash: str,
    seq: int,
    incident_id: str,
    path: str,
    sha256: str,
    size: int,
    sealed_at: float,
) -> str:
    """The hash of one recordings-chain entry (its canonical form is part of the file format)."""
    body = canonical_json(
        {
            "seq": seq,
            "incident_id": incident_id,
            "path": path,
            "sha256": sha256,
            "size": size,
            "sealed_at": format_timestamp_us(sealed_at),
        }
    )
    return hashlib.sha256((prev_hash + body).encode("utf-8")).hexdigest()


def audit_entry_hash(
    *,
    prev_hash: str,
    seq: int,
    at: float,
    actor: str,
    action: str,
    target: str,
    detail: dict[str, object],
) -> str:
    """The hash of one audit-log entry."""
    body = canonical_json(
        {
            "seq": seq,
            "at": format_timestamp_us(at),
            "actor": actor,
            "action": action,
            "target": target,
            "detail": detail,
        }
    )
    return hashlib.sha256((prev_hash + body).encode("utf-8")).hexdigest()


# --------------------------------------------------------------------------- files


def sha256_file(path: Path) -> tuple[str, int]:
    """SHA-256 hex digest and size of a file, read a MiB at a time (blocking)."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def _protect_and_hash(path: Path) -> tuple[str, int]:
    # Read-only first, then hash: nothing in the product writes after the hash.
    os.chmod(path, READ_ONLY_MODE)
    return sha256_file(path)


@dataclass(frozen=True, slots=True, kw_only=True)
class WavInfo:
    format_tag: int  # 6 A-law, 7 µ-law, 1 PCM
    channels: int
    sample_rate: int
    block_align: int
    data_bytes: int  # as present in the file (never beyond its end)

    @property
    def duration_s(self) -> float:
        if not self.sample_rate or not self.block_align:
            return 0.0
        return self.data_bytes / (self.sample_rate * self.block_align)


_MAX_CHUNKS = 64  # a recording has fmt, fact, data; anything more is damage


def wav_info(path: Path) -> WavInfo | None:
    """Format and length of a RIFF/WAVE file, or None if it is not one (blocking)."""
    file_size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        fmt: tuple[int, int, int, int] | None = None
        offset = 12
        for _ in range(_MAX_CHUNKS):
            f.seek(offset)
            header = f.read(8)
            if len(header) < 8:
                return None
            chunk_id = header[:4]
            (chunk_size,) = struct.unpack("<I", header[4:])
            body_at = offset + 8
            if chunk_id == b"fmt ":
                raw = f.read(16)
                if len(raw) < 16:
                    return None
                tag, channels, rate, _byte_rate, align, _bits = struct.unpack("<HHIIHH", raw)
                fmt = (tag, channels, rate, align)
            elif chunk_id == b"data":
                if fmt is None:
                    return None
                available = max(0, file_size - body_at)
                data = min(chunk_size, available) if chunk_size else available
                tag, channels, rate, align = fmt
                if align:
                    data -= data % align
                return WavInfo(
                    format_tag=tag,
                    channels=channels,
                    sample_rate=rate,
                    block_align=align,
                    data_bytes=data,
                )
            offset = body_at + chunk_size + (chunk_size & 1)
            if offset >= file_size:
                return None
    return None


def _relative(path: Path, recordings_dir: Path) -> str:
    try:
        return path.resolve().relative_to(recordings_dir.resolve()).as_posix()
    except ValueError:
        raise IncidentError(
            f"{path} is not inside the recordings directory {recordings_dir}", status_hint=422
        ) from None


def _codec_name(codec: Codec | str | None) -> str | None:
    return codec.name if isinstance(codec, Codec) else codec


async def seal_recording(
    store: Store,
    incident_id: str,
    path: Path,
    *,
    recordings_dir: Path,
    channels: int | None,
    duration_s: float | None,
    codec: Codec | str | None,
    sealed_at: float | None = None,
) -> Recording:
    """Seal a closed recording: chmod 0o444, SHA-256, append to the hash chain.

    Call it after the recorder closed the file. `sealed_at` defaults to the
    wall clock. Returns the chain entry. Raises OSError if the file cannot be
    read, `IncidentError` if it lies outside `recordings_dir` or is already
    sealed, `StoreError` if the database write fails.
    """
    rel = _relative(path, recordings_dir)
    digest, size = await asyncio.to_thread(_protect_and_hash, path)
    return await store.add_recording(
        incident_id,
        rel,
        sha256=digest,
        size=size,
        channels=channels,
        duration_s=duration_s,
        codec=_codec_name(codec),
        sealed_at=time.time() if sealed_at is None else sealed_at,
    )


# --------------------------------------------------------------------------- verification


class ProblemKind(StrEnum):
    CHANGED_FILE = "changed_file"  # file hash or size differs from its chain entry
    MISSING_FILE = "missing_file"  # file gone and its entry is not a tombstone
    UNREADABLE_FILE = "unreadable_file"
    EDITED_ENTRY = "edited_entry"  # the entry's own hash no longer matches its fields
    REMOVED_ENTRY = "removed_entry"  # a gap in seq: entries deleted
    BROKEN_LINK = "broken_link"  # prev_hash is not the previous entry's hash: reordered/spliced
    UNKNOWN_FILE = "unknown_file"  # file on disk the chain does not know
    UNAUDITED_DELETION = "unaudited_deletion"  # tombstone without a retention_delete audit entry


_LABELS = {
    ProblemKind.CHANGED_FILE: "changed file",
    ProblemKind.MISSING_FILE: "missing file",
    ProblemKind.UNREADABLE_FILE: "unreadable file",
    ProblemKind.EDITED_ENTRY: "chain entry edited",
    ProblemKind.REMOVED_ENTRY: "chain entry removed",
    ProblemKind.BROKEN_LINK: "chain entries reordered or spliced",
    ProblemKind.UNKNOWN_FILE: "file unknown to the chain",
    ProblemKind.UNAUDITED_DELETION: "deletion without audit entry",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class IntegrityProblem:
    kind: ProblemKind
    subject: str  # a recording path or "audit #seq" / "recording chain #seq"
    detail: str

    def __str__(self) -> str:
        return f"{_LABELS[self.kind]}: {self.subject}: {self.detail}"


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifyReport:
    entries: int  # chain entries walked
    files_checked: int  # files re-hashed
    tombstones: int
    head_seq: int  # last entry: keep (seq, hash) elsewhere to detect a cut-off tail
    head_hash: str
    problems: tuple[IntegrityProblem, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems


def _check_link(
    problems: list[IntegrityProblem],
    subject: str,
    *,
    seq: int,
    prev_seq: int,
    prev_hash_stored: str,
    prev_hash_expected: str,
) -> None:
    if seq > prev_seq + 1:
        missing = f"#{prev_seq + 1}" if seq == prev_seq + 2 else f"#{prev_seq + 1}..#{seq - 1}"
        problems.append(
            IntegrityProblem(
                kind=ProblemKind.REMOVED_ENTRY,
                subject=subject,
                detail=f"entries {missing} are missing before #{seq}",
            )
        )
    elif seq <= prev_seq:
        problems.append(
            IntegrityProblem(
                kind=ProblemKind.BROKEN_LINK,
                subject=subject,
                detail=f"#{seq} comes after #{prev_seq}",
            )
        )
    elif prev_hash_stored != prev_hash_expected:
        problems.append(
            IntegrityProblem(
                kind=ProblemKind.BROKEN_LINK,
                subject=subject,
                detail=f"prev_hash {prev_hash_stored[:16]}… is not the hash of entry #{prev_seq}",
            )
        )


def _walk_files(root: Path) -> list[str]:
    found: list[str] = []
    if not root.is_dir():
        return found
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            found.append((Path(dirpath) / name).relative_to(root).as_posix())
    return sorted(found)


async def verify_recordings(
    store: Store, recordings_dir: Path, *, progress: Progress | None = None
) -> VerifyReport:
    """Re-hash every recording and walk the chain; name every problem found.

    `progress(done, total)` is called after each chain entry.
    """
    problems: list[IntegrityProblem] = []
    total = await store.count_recording_chain()
    audited: set[int] = set()
    for entry in await store.list_audit(action="retention_delete"):
        seq = entry.detail.get("seq")
        if isinstance(seq, int):
            audited.add(seq)
    prev_seq, prev_hash = 0, GENESIS_HASH
    done = files = tombstones = 0
    while True:
        page = await store.recording_chain(after_seq=prev_seq, limit=_PAGE)
        if not page:
            break
        for rec in page:
            assert rec.seq is not None
            subject = rec.path
            _check_link(
                problems,
                f"{subject} (#{rec.seq})",
                seq=rec.seq,
                prev_seq=prev_seq,
                prev_hash_stored=rec.prev_hash or "",
                prev_hash_expected=prev_hash,
            )
            expected = recording_entry_hash(
                prev_hash=rec.prev_hash or "",
                seq=rec.seq,
                incident_id=rec.incident_id,
                path=rec.path,
                sha256=rec.sha256 or "",
                size=rec.size or 0,
                sealed_at=rec.sealed_at or 0.0,
            )
            if expected != rec.entry_hash:
                problems.append(
                    IntegrityProblem(
                        kind=ProblemKind.EDITED_ENTRY,
                        subject=f"{subject} (#{rec.seq})",
                        detail="the entry's fields no longer match its hash",
                    )
                )
            file_path = recordings_dir / rec.path
            if rec.deleted_at is not None:
                tombstones += 1
                if rec.seq not in audited:
                    problems.append(
                        IntegrityProblem(
                            kind=ProblemKind.UNAUDITED_DELETION,
                            subject=subject,
                            detail=f"tombstone by {rec.deleted_by} has no retention_delete entry",
                        )
                    )
            if not file_path.is_file():
                if rec.deleted_at is None:
                    problems.append(
                        IntegrityProblem(
                            kind=ProblemKind.MISSING_FILE,
                            subject=subject,
                            detail=f"sealed as {rec.sha256}, not on disk",
                        )
                    )
            else:
                try:
                    digest, size = await asyncio.to_thread(sha256_file, file_path)
                except OSError as exc:
                    problems.append(
                        IntegrityProblem(
                            kind=ProblemKind.UNREADABLE_FILE, subject=subject, detail=str(exc)
                        )
                    )
                else:
                    files += 1
                    if digest != rec.sha256 or size != rec.size:
                        problems.append(
                            IntegrityProblem(
                                kind=ProblemKind.CHANGED_FILE,
                                subject=subject,
                                detail=f"sha256 {digest} ({size} bytes), sealed as "
                                f"{rec.sha256} ({rec.size} bytes)",
                            )
                        )
            prev_seq, prev_hash = rec.seq, rec.entry_hash or ""
            done += 1
            if progress is not None:
                progress(done, total)
    # Files first, then the paths the store knows: a call writes its row before it
    # creates its file, so a recording started during the walk is never "unknown".
    on_disk = await asyncio.to_thread(_walk_files, recordings_dir)
    known = await store.recording_paths()
    for rel in on_disk:
        if rel not in known:
            problems.append(
                IntegrityProblem(
                    kind=ProblemKind.UNKNOWN_FILE,
                    subject=rel,
                    detail="on disk but not in the recordings chain",
                )
            )
    return VerifyReport(
        entries=done,
        files_checked=files,
        tombstones=tombstones,
        head_seq=prev_seq,
        head_hash=prev_hash,
        problems=tuple(problems),
    )


async def verify_audit(store: Store, *, progress: Progress | None = None) -> VerifyReport:
    """Walk the audit chain; name every edited, removed or reordered entry."""
    problems: list[IntegrityProblem] = []
    total = await store.count_audit()
    prev_seq, prev_hash = 0, GENESIS_HASH
    done = 0
    while True:
        page: list[AuditEntry] = await store.list_audit(after_seq=prev_seq, limit=_PAGE)
        if not page:
            break
        for entry in page:
            subject = f"audit #{entry.seq} ({entry.action} {entry.target} by {entry.actor})"
            _check_link(
                problems,
                subject,
                seq=entry.seq,
                prev_seq=prev_seq,
                prev_hash_stored=entry.prev_hash,
                prev_hash_expected=prev_hash,
            )
            expected = audit_entry_hash(
                prev_hash=entry.prev_hash,
                seq=entry.seq,
                at=entry.at,
                actor=entry.actor,
                action=entry.action,
                target=entry.target,
                detail=entry.detail,
            )
            if expected != entry.entry_hash:
                problems.append(
                    IntegrityProblem(
                        kind=ProblemKind.EDITED_ENTRY,
                        subject=subject,
                        detail="the entry's fields no longer match its hash",
                    )
                )
            prev_seq, prev_hash = entry.seq, entry.entry_hash
            done += 1
            if progress is not None:
                progress(done, total)
    return VerifyReport(
        entries=done,
        files_checked=0,
        tombstones=0,
        head_seq=prev_seq,
        head_hash=prev_hash,
        problems=tuple(problems),
    )


# --------------------------------------------------------------------------- retention


@dataclass(frozen=True, slots=True, kw_only=True)
class RetentionReport:
    deleted: tuple[Recording, ...] = ()
    errors: tuple[str, ...] = ()  # files that could not be removed (entry is tombstoned)


_RETENTION_BATCH = 200
_RETENTION_MAX_ROUNDS = 10_000


async def apply_retention(
    store: Store,
    recordings_dir: Path,
    keep_days: float,
    now: float,
    *,
    actor: str = "retention",
) -> RetentionReport:
    """Delete recordings sealed more than `keep_days` ago, unless on legal hold.

    Each entry becomes a tombstone (audit-logged as `retention_delete`) in
    the same transaction that re-checks the hold; then its file is removed.
    A file already gone counts as removed.
    """
    cutoff = now - keep_days * _DAY_S
    deleted: list[Recording] = []
    errors: list[str] = []
    for _ in range(_RETENTION_MAX_ROUNDS):
        due = await store.recordings_due_for_retention(before=cutoff, limit=_RETENTION_BATCH)
        if not due:
            break
        done = await store.tombstone_recordings([r.id for r in due], actor=actor, at=now)
        for rec in done:
            try:
                await asyncio.to_thread((recordings_dir / rec.path).unlink, missing_ok=True)
            except OSError as exc:
                errors.append(f"{rec.path}: {exc}")
        deleted.extend(done)
        if len(done) < len(due):
            break  # some were put on hold meanwhile; the next sweep sees the rest
    return RetentionReport(deleted=tuple(deleted), errors=tuple(errors))


# --------------------------------------------------------------------------- crash recovery


@dataclass(frozen=True, slots=True, kw_only=True)
class RecoveryReport:
    interrupted: tuple[str, ...] = ()  # incident ids
    callbacks: tuple[int, ...] = ()  # callback task ids created
    stray_legs_closed: int = 0
    # Operators whose state history ended in something other than `offline`: closed
    # with `offline` (reason "server_restart"). Not part of `clean`: a graceful stop
    # leaves the history open too, and that is not a crash.
    operators_offline: tuple[str, ...] = ()
    sealed: tuple[Recording, ...] = ()  # partial recordings repaired and sealed
    lost: tuple[str, ...] = ()  # open recordings whose file never appeared
    problems: tuple[str, ...] = ()  # repairs that failed (the file was sealed as found)

    @property
    def clean(self) -> bool:
        """True when there was nothing to recover."""
        return not (self.interrupted or self.stray_legs_closed or self.sealed or self.lost)


def _repair_detail(result: object) -> object:
    """What a repair reported, as plain JSON for the incident's timeline.

    `media.recorder.repair_wav` returns a dataclass (`changed`, `frames`,
    `dropped_bytes`, `header_rebuilt`, and the absolute `path`, left out: the
    event names the recording by its path in the recordings directory).
    """
    if result is None:
        return None
    if dataclasses.is_dataclass(result) and not isinstance(result, type):
        return {
            name: value
            for name, value in dataclasses.asdict(result).items()
            if name != "path" and isinstance(value, bool | int | float | str)
        }
    return str(result)


async def recover_after_crash(
    store: Store,
    recordings_dir: Path,
    now: float,
    *,
    repair: Callable[[Path], object],
) -> RecoveryReport:
    """Bring the store back to a consistent state after an unclean stop.

    Run at start, before any call is accepted. Every still-`active` incident
    becomes `interrupted` (its `ended_at` stays unknown) with an event, its
    open legs closed and a callback task created (flagged "no number" for an
    anonymous caller); legs left open elsewhere are closed; operators whose
    state history was cut off (last state `on_call`, `available`, …) get an
    `offline` entry, since nobody is registered to a server that just
    started; every open recording is repaired with `repair(path)` (the lead
    passes `media.recorder.repair_wav`) and sealed. A repair that fails is reported
    and the file is sealed as found — evidence is never dropped. Safe to run
    again if it is itself interrupted.
    """
    interrupted: list[str] = []
    callbacks: list[int] = []
    sealed: list[Recording] = []
    lost: list[str] = []
    problems: list[str] = []

    active = [inc.id async for inc in store.iter_incidents(IncidentQuery(status=Status.ACTIVE))]
    active.reverse()  # oldest first: callback tasks are then listed in arrival order
    for incident_id in active:
        try:
            callback_id = await store.close_incident(
                incident_id,
                status=Status.INTERRUPTED,
                at=now,
                ended_at=None,
                reason="server restarted while the call was up",
            )
        except IncidentError as exc:
            problems.append(f"{incident_id}: {exc}")
            continue
        interrupted.append(incident_id)
        if callback_id is not None:
            callbacks.append(callback_id)
    stray = await store.close_stray_legs(reason="server_restart")
    operators = await store.close_operator_states(reason="server_restart", at=now)

    for rec in await store.list_open_recordings():
        path = recordings_dir / rec.path
        if not await asyncio.to_thread(path.is_file):
            await store.mark_recording_lost(rec.id, at=now, reason="file missing after restart")
            lost.append(rec.path)
            continue
        repaired: object = None
        try:
            repaired = await asyncio.to_thread(repair, path)
        except Exception as exc:  # noqa: BLE001 - evidence is sealed as found, never dropped
            problems.append(f"{rec.path}: repair failed ({exc}); sealed as found")
        try:
            info = await asyncio.to_thread(wav_info, path)
        except OSError:
            info = None
        entry = await seal_recording(
            store,
            rec.incident_id,
            path,
            recordings_dir=recordings_dir,
            channels=info.channels if info else rec.channels,
            duration_s=info.duration_s if info else None,
            codec=rec.codec,
            sealed_at=now,
        )
        await store.add_event(
            rec.incident_id,
            "recording_recovered",
            {"path": rec.path, "repair": _repair_detail(repaired)},
            at=now,
        )
        sealed.append(entry)

    report = RecoveryReport(
        interrupted=tuple(interrupted),
        callbacks=tuple(callbacks),
        stray_legs_closed=stray,
        operators_offline=operators,
        sealed=tuple(sealed),
        lost=tuple(lost),
        problems=tuple(problems),
    )
    if not report.clean or problems:
        await store.audit(
            actor="system",
            action="crash_recovery",
            target="store",
            detail={
                "interrupted": list(interrupted),
                "callbacks": list(callbacks),
                "stray_legs_closed": stray,
                "operators_offline": list(operators),
                "sealed": [r.path for r in sealed],
                "lost": lost,
                "problems": problems,
            },
            at=now,
        )
    return report
