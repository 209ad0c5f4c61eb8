"""The evidence files: hashing, sealing, and verifying the recordings and audit chains.

Recordings are legal-grade (DESIGN §1): the original G.711 bits, sealed when
the call ends. Sealing (`seal_recording`) makes the file read-only (0o440),
hashes it with SHA-256 and appends an entry to the recordings hash chain
(rules in `records.chain`).

`verify_recordings` names every problem: a changed file, a missing file, an
edited chain entry, a removed entry (gap in `seq`), a broken link (reordered or
spliced entries), a file on disk the chain does not know, and a deletion
(tombstone) without its audit entry. `check_sealed_recording` is the same
judgement for one recording (the auditor's page). A chain cannot prove its own
tail was not cut off, so both reports carry the head (`head_seq`,
`head_hash`) for keeping elsewhere (a printed report, a supervisor's note).

This module does file IO (in worker threads) and talks to the database only
through the `Store` protocol.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..incidents import AuditEntry, IncidentError, Recording
from ..media.g711 import Codec
from .chain import (
    GENESIS_HASH,
    FileSeen,
    IntegrityProblem,
    ProblemKind,
    check_audit_entry,
    check_recording_entry,
)
from .protocol import MAX_CHUNK_BYTES, Store

__all__ = [
    "READ_ONLY_MODE",
    "RecordingShipper",
    "VerifyReport",
    "WavInfo",
    "check_sealed_recording",
    "look_at_file",
    "partial_wav",
    "restore_recording_file",
    "seal_recording",
    "sha256_file",
    "verify_audit",
    "verify_recordings",
    "wav_info",
]

READ_ONLY_MODE = 0o440  # issue 11: the owner and its group (the auditors) only
_CHUNK = 1 << 20  # hash files a MiB at a time
_PAGE = 500  # chain entries fetched per store read

Progress = Callable[[int, int], None]


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
    """Seal a closed recording: chmod 0o440, SHA-256, append to the hash chain.

    Call it after the recorder closed the file. `sealed_at` defaults to the
    wall clock. Returns the chain entry. Raises OSError if the file cannot be
    read, `IncidentError` if it lies outside `recordings_dir` or is already
    sealed, `StoreError` if the database write fails.
    """
    rel = _relative(path, recordings_dir)
    digest, size = await asyncio.to_thread(_protect_and_hash, path)
    entry = await store.add_recording(
        incident_id,
        rel,
        sha256=digest,
        size=size,
        channels=channels,
        duration_s=duration_s,
        codec=_codec_name(codec),
        sealed_at=time.time() if sealed_at is None else sealed_at,
    )
    if store.keeps_recording_copies:
        data = await asyncio.to_thread(path.read_bytes)
        await store.keep_recording_copy(entry.id, data)
    return entry


# --------------------------------------------------------------------------- verification


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


def _walk_files(root: Path) -> list[str]:
    found: list[str] = []
    if not root.is_dir():
        return found
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            found.append((Path(dirpath) / name).relative_to(root).as_posix())
    return sorted(found)


def _write_cache(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".restoring")
    tmp.write_bytes(data)
    os.chmod(tmp, READ_ONLY_MODE)
    tmp.replace(path)


async def restore_recording_file(store: Store, recordings_dir: Path, rec: Recording) -> bool:
    """Refill the recordings folder (a cache) from the database's copy if the file is gone.

    True if the file is there afterwards. A tombstoned recording is not restored.
    """
    path = recordings_dir / rec.path
    if await asyncio.to_thread(path.is_file):
        return True
    if rec.deleted_at is not None or not store.keeps_recording_copies:
        return False
    data = await store.recording_copy(rec.id)
    if data is None:
        return False
    await asyncio.to_thread(_write_cache, path, data)
    return True


def look_at_file(path: Path) -> FileSeen:
    """Hash a recording's file for the chain check (blocking)."""
    if not path.is_file():
        return FileSeen(missing=True)
    try:
        digest, size = sha256_file(path)
    except OSError as exc:
        return FileSeen(error=str(exc))
    return FileSeen(sha256=digest, size=size)


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
            await restore_recording_file(store, recordings_dir, rec)
            seen = await asyncio.to_thread(look_at_file, recordings_dir / rec.path)
            problems.extend(
                check_recording_entry(
                    rec,
                    prev_seq=prev_seq,
                    prev_hash=prev_hash,
                    deletion_audited=rec.seq in audited,
                    file=seen,
                )
            )
            tombstones += rec.deleted_at is not None
            files += seen.sha256 is not None
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


async def check_sealed_recording(
    store: Store, recordings_dir: Path, rec: Recording
) -> tuple[IntegrityProblem, ...]:
    """The chain walk's judgement on one sealed recording (the auditor's page).

    Reads the entry before it and the recording's `retention_delete` audit
    entries from the store, hashes the file, and applies the same
    `chain.check_recording_entry` as `verify_recordings`.
    """
    if rec.seq is None:
        raise ValueError(f"recording {rec.id} is not sealed: it has no chain entry")
    prev_seq, prev_hash = 0, GENESIS_HASH
    if rec.seq > 1:
        before = await store.recording_chain(after_seq=rec.seq - 2, limit=1)
        if before and before[0].seq == rec.seq - 1:
            prev_seq, prev_hash = rec.seq - 1, before[0].entry_hash or ""
        else:
            # Entry seq-1 is gone: the walk reports the gap before this entry.
            prev_seq, prev_hash = rec.seq - 2, ""
    audited = False
    if rec.deleted_at is not None:
        entries = await store.list_audit(target=rec.incident_id, action="retention_delete")
        audited = any(e.detail.get("seq") == rec.seq for e in entries)
    await restore_recording_file(store, recordings_dir, rec)
    seen = await asyncio.to_thread(look_at_file, recordings_dir / rec.path)
    return check_recording_entry(
        rec, prev_seq=prev_seq, prev_hash=prev_hash, deletion_audited=audited, file=seen
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
            problems.extend(check_audit_entry(entry, prev_seq=prev_seq, prev_hash=prev_hash))
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


def partial_wav(data: bytes) -> bytes:
    """A recording cut short (its chunks in the store), made a readable WAV (pure).

    The recorder writes the RIFF and data sizes only when it closes the file, so a
    recording whose node died has placeholders there: this sets both to what is
    present, dropping a torn last frame. Bytes of audio are never changed, so each
    chunk still matches the hash stored with it. Returns `data` unchanged if it does
    not start like a WAV.
    """
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return data
    out = bytearray(data)
    offset, align = 12, 1
    while offset + 8 <= len(out):
        chunk_id = bytes(out[offset : offset + 4])
        (size,) = struct.unpack_from("<I", out, offset + 4)
        body = offset + 8
        if chunk_id == b"fmt " and body + 14 <= len(out):
            (align,) = struct.unpack_from("<H", out, body + 12)
        if chunk_id == b"data":
            present = len(out) - body
            present -= present % max(align, 1)
            del out[body + present :]
            struct.pack_into("<I", out, offset + 4, present)
            struct.pack_into("<I", out, 4, len(out) - 8)
            return bytes(out)
        offset = body + size + (size & 1)
    return data


@dataclass(slots=True, kw_only=True)
class RecordingShipper:
    """Sends what a recorder appended to its file since the last time to the store, in chunks.

    The media engine flushes each recording about once a second; right after a flush,
    `ship(store, at=…)` reads the bytes beyond `shipped` and stores them with
    `Store.append_recording_chunk` (each ≤ `MAX_CHUNK_BYTES`, so ≤ 2 s of audio), so a
    node lost mid-call loses at most what it had not flushed and shipped. The header
    bytes the recorder rewrites later are not sent again: `partial_wav` sets the sizes
    when the recording is read back. A failed send is retried by the next `ship`
    (a chunk sent twice is accepted by the store).
    """

    recording_id: int
    path: Path
    shipped: int = 0  # bytes of the file already in the store
    seq: int = 0  # the next chunk's number

    def pending(self, limit: int) -> list[bytes]:
        """The bytes appended since the last ship, cut into chunks of ≤ `limit` (blocking)."""
        with self.path.open("rb") as f:
            f.seek(self.shipped)
            data = f.read()
        return [data[i : i + limit] for i in range(0, len(data), limit)]

    async def ship(self, store: Store, *, at: float) -> int:
        """Store every pending chunk in order; returns the bytes shipped now."""
        sent = 0
        for chunk in await asyncio.to_thread(self.pending, MAX_CHUNK_BYTES):
            await store.append_recording_chunk(self.recording_id, self.seq, chunk, at=at)
            self.seq += 1
            self.shipped += len(chunk)
            sent += len(chunk)
        return sent
