"""Recording sealing, the hash chains, tamper detection and retention — real files."""

from __future__ import annotations

import hashlib
import stat
import struct
from datetime import UTC, datetime
from pathlib import Path

import pytest

from callcenter112.incidents import IncidentError, Status
from callcenter112.media.g711 import Codec
from callcenter112.records import (
    GENESIS_HASH,
    ProblemKind,
    SqliteStore,
    VerifyReport,
    apply_retention,
    audit_entry_hash,
    recording_entry_hash,
    seal_recording,
    sha256_file,
    verify_audit,
    verify_recordings,
    wav_info,
)
from store_engines import raw_for

pytest_plugins = ("pg_support", "store_engines")  # every test runs on both engines

T0 = datetime(2026, 11, 28, 10, 0, 0, tzinfo=UTC).timestamp()
DAY = 86_400.0


def g711_wav(frames: int, *, channels: int = 2, tag: int = 7, seed: int = 0) -> bytes:
    """A G.711 WAV as the recorder writes it: fmt (18 bytes), fact, data."""
    data = bytes((seed + i * 7) % 256 for i in range(frames * channels))
    fmt = struct.pack("<HHIIHHH", tag, channels, 8000, 8000 * channels, channels, 8, 0)
    fact = struct.pack("<I", frames)
    body = (
        b"WAVE"
        + b"fmt "
        + struct.pack("<I", len(fmt))
        + fmt
        + b"fact"
        + struct.pack("<I", 4)
        + fact
        + b"data"
        + struct.pack("<I", len(data))
        + data
    )
    return b"RIFF" + struct.pack("<I", len(body)) + body


@pytest.fixture
def recdir(tmp_path: Path) -> Path:
    d = tmp_path / "recordings"
    d.mkdir()
    return d


async def _call_with_recording(
    store: SqliteStore, recdir: Path, n: int, *, at: float = T0, seconds: int = 2
) -> tuple[str, Path]:
    iid = await store.create_incident(caller=f"08120000{n:04d}", arrived_at=at)
    rel = f"2026/11/28/{iid}.wav"
    await store.add_recording_open(iid, rel, started_at=at, codec="PCMU", channels=2)
    path = recdir / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(g711_wav(8000 * seconds, seed=n))
    await store.close_incident(
        iid, status=Status.COMPLETED, at=at + seconds, ended_at=at + seconds, reason="bye"
    )
    await seal_recording(
        store,
        iid,
        path,
        recordings_dir=recdir,
        channels=2,
        duration_s=float(seconds),
        codec=Codec.PCMU,
        sealed_at=at + seconds + 0.5,
    )
    return iid, path


def _kinds(report: VerifyReport) -> dict[ProblemKind, list[str]]:
    out: dict[ProblemKind, list[str]] = {}
    for p in report.problems:
        out.setdefault(p.kind, []).append(p.subject)
    return out


# --------------------------------------------------------------------------- sealing


async def test_seal_hashes_protects_and_chains(store: SqliteStore, recdir: Path) -> None:
    iid, path = await _call_with_recording(store, recdir, 1)
    assert stat.S_IMODE(path.stat().st_mode) == 0o440  # records.READ_ONLY_MODE (issue 11)
    rec = await store.get_incident(iid)
    assert rec is not None
    [r] = rec.recordings
    assert r.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert r.size == path.stat().st_size
    assert (r.seq, r.prev_hash, r.channels, r.codec, r.duration_s) == (
        1,
        GENESIS_HASH,
        2,
        "PCMU",
        2.0,
    )
    assert r.sealed_at is not None
    assert r.entry_hash == recording_entry_hash(
        prev_hash=GENESIS_HASH,
        seq=1,
        incident_id=iid,
        path=f"2026/11/28/{iid}.wav",
        sha256=r.sha256,
        size=r.size,
        sealed_at=r.sealed_at,
    )
    await _call_with_recording(store, recdir, 2)
    chain = await store.recording_chain()
    assert [c.seq for c in chain] == [1, 2]
    assert chain[1].prev_hash == chain[0].entry_hash
    assert await store.list_open_recordings() == []
    kinds = [e.kind for e in rec.events]
    assert "recording_started" in kinds and "recording_sealed" in kinds


async def test_sealing_a_recording_never_announced(store: SqliteStore, recdir: Path) -> None:
    iid = await store.create_incident(caller="0812", arrived_at=T0)
    path = recdir / "late.wav"
    path.write_bytes(g711_wav(800))
    r = await seal_recording(
        store,
        iid,
        path,
        recordings_dir=recdir,
        channels=2,
        duration_s=0.1,
        codec="PCMA",
        sealed_at=T0 + 1,
    )
    assert r.seq == 1 and r.path == "late.wav"
    with pytest.raises(IncidentError, match="already sealed"):
        await seal_recording(
            store, iid, path, recordings_dir=recdir, channels=2, duration_s=0.1, codec="PCMA"
        )
    outside = recdir.parent / "outside.wav"
    outside.write_bytes(b"x")
    with pytest.raises(IncidentError, match="not inside the recordings directory"):
        await seal_recording(
            store, iid, outside, recordings_dir=recdir, channels=1, duration_s=0, codec=None
        )


def test_wav_info_reads_the_recorder_format(tmp_path: Path) -> None:
    p = tmp_path / "a.wav"
    p.write_bytes(g711_wav(16_000, channels=2, tag=6))
    info = wav_info(p)
    assert info is not None
    assert (info.format_tag, info.channels, info.sample_rate, info.block_align) == (6, 2, 8000, 2)
    assert info.duration_s == 2.0
    p.write_bytes(b"not a wav at all")
    assert wav_info(p) is None
    # A data chunk that claims more than the file holds counts only what is there.
    whole = g711_wav(8000, channels=1)
    p.write_bytes(whole[:-4000])
    info = wav_info(p)
    assert info is not None and info.data_bytes == 4000


def test_sha256_file_streams(tmp_path: Path) -> None:
    p = tmp_path / "big"
    content = bytes(range(256)) * 10_000  # more than one read chunk
    p.write_bytes(content)
    assert sha256_file(p) == (hashlib.sha256(content).hexdigest(), len(content))


# --------------------------------------------------------------------------- verification


async def test_verify_passes_on_untouched_recordings(store: SqliteStore, recdir: Path) -> None:
    for n in range(3):
        await _call_with_recording(store, recdir, n)
    seen: list[tuple[int, int]] = []
    report = await verify_recordings(store, recdir, progress=lambda d, t: seen.append((d, t)))
    assert report.ok, report.problems
    assert (report.entries, report.files_checked, report.head_seq) == (3, 3, 3)
    assert report.head_hash == (await store.recording_chain())[-1].entry_hash
    assert seen == [(1, 3), (2, 3), (3, 3)]


async def test_tamper_flip_delete_and_edit_are_each_named(store: SqliteStore, recdir: Path) -> None:
    _, flipped = await _call_with_recording(store, recdir, 1)
    _, deleted = await _call_with_recording(store, recdir, 2)
    iid3, _ = await _call_with_recording(store, recdir, 3)
    await _call_with_recording(store, recdir, 4)

    # 1. flip one byte in the middle of a recording's audio
    flipped.chmod(0o644)
    data = bytearray(flipped.read_bytes())
    data[len(data) // 2] ^= 0x01
    flipped.write_bytes(bytes(data))
    # 2. delete another recording
    deleted.chmod(0o644)
    deleted.unlink()
    # 3. edit a chain row, as an attacker would: drop the trigger first (and the
    #    database's copies of the files, which would otherwise refill the folder)
    raw = raw_for(store)
    raw.forget_recording_copies()
    raw.drop_trigger("recordings_chain_immutable", "recordings")
    raw.execute("UPDATE recordings SET sealed_at = sealed_at + 1 WHERE incident_id = ?", (iid3,))
    raw.close()

    report = await verify_recordings(store, recdir)
    assert not report.ok
    kinds = _kinds(report)

    def rel(p: Path) -> str:
        return p.relative_to(recdir).as_posix()

    assert kinds[ProblemKind.CHANGED_FILE] == [rel(flipped)]
    assert kinds[ProblemKind.MISSING_FILE] == [rel(deleted)]
    assert kinds[ProblemKind.EDITED_ENTRY] == [f"2026/11/28/{iid3}.wav (#3)"]
    assert set(kinds) == {
        ProblemKind.CHANGED_FILE,
        ProblemKind.MISSING_FILE,
        ProblemKind.EDITED_ENTRY,
    }
    text = "\n".join(str(p) for p in report.problems)
    assert "changed file" in text and "missing file" in text and "chain entry edited" in text


async def test_removed_and_reordered_chain_entries(store: SqliteStore, recdir: Path) -> None:
    paths = [(await _call_with_recording(store, recdir, n))[1] for n in range(5)]
    raw = raw_for(store)
    raw.forget_recording_copies()
    raw.drop_trigger("recordings_chain_no_delete", "recordings")
    raw.drop_trigger("recordings_chain_immutable", "recordings")
    raw.execute("DELETE FROM recordings WHERE seq = 2")
    # swap the order of entries 4 and 5
    raw.execute("UPDATE recordings SET seq = -1 WHERE seq = 4")
    raw.execute("UPDATE recordings SET seq = 4 WHERE seq = 5")
    raw.execute("UPDATE recordings SET seq = 5 WHERE seq = -1")
    raw.close()
    report = await verify_recordings(store, recdir)
    kinds = _kinds(report)
    assert kinds[ProblemKind.REMOVED_ENTRY] == [f"{paths[2].relative_to(recdir).as_posix()} (#3)"]
    # The deleted entry's file is still on disk, now unknown to the chain.
    assert kinds[ProblemKind.UNKNOWN_FILE] == [paths[1].relative_to(recdir).as_posix()]
    assert len(kinds[ProblemKind.BROKEN_LINK]) == 2  # #4 and #5 no longer link
    assert len(kinds[ProblemKind.EDITED_ENTRY]) == 2  # their seq is part of their hash


async def test_files_unknown_to_the_chain(store: SqliteStore, recdir: Path) -> None:
    await _call_with_recording(store, recdir, 1)
    (recdir / "2026" / "planted.wav").write_bytes(g711_wav(80))
    # A recording still being written is known (open), not unknown.
    iid = await store.create_incident(caller="0812", arrived_at=T0)
    await store.add_recording_open(iid, "2026/11/28/live.wav", started_at=T0)
    (recdir / "2026" / "11" / "28" / "live.wav").write_bytes(g711_wav(80))
    report = await verify_recordings(store, recdir)
    assert [(p.kind, p.subject) for p in report.problems] == [
        (ProblemKind.UNKNOWN_FILE, "2026/planted.wav")
    ]


async def test_audit_chain_verifies_and_tampering_is_named(store: SqliteStore) -> None:
    for n in range(5):
        await store.audit(
            actor="auditor",
            action="replay",
            target=f"2026112{n}-0001",
            detail={"path": f"{n}.wav", "ms": 1.5},
            at=T0 + n,
        )
    report = await verify_audit(store)
    assert report.ok and report.entries == 5 and report.head_seq == 5
    entries = await store.list_audit()
    assert entries[0].prev_hash == GENESIS_HASH
    assert entries[1].prev_hash == entries[0].entry_hash
    assert entries[0].entry_hash == audit_entry_hash(
        prev_hash=GENESIS_HASH,
        seq=1,
        at=T0,
        actor="auditor",
        action="replay",
        target="20261120-0001",
        detail={"path": "0.wav", "ms": 1.5},
    )

    raw = raw_for(store)
    raw.drop_trigger("audit_log_no_update", "audit_log")
    raw.drop_trigger("audit_log_no_delete", "audit_log")
    raw.execute("UPDATE audit_log SET actor = 'someone_else' WHERE seq = 2")
    raw.execute("DELETE FROM audit_log WHERE seq = 4")
    raw.close()
    report = await verify_audit(store)
    kinds = _kinds(report)
    assert kinds[ProblemKind.EDITED_ENTRY] == ["audit #2 (replay 20261121-0001 by someone_else)"]
    assert kinds[ProblemKind.REMOVED_ENTRY] == ["audit #5 (replay 20261124-0001 by auditor)"]
    assert ProblemKind.BROKEN_LINK not in kinds  # the gap explains the link


async def test_audit_detail_edit_is_caught(store: SqliteStore) -> None:
    await store.audit(actor="op1", action="download", target="x", detail={"path": "a.wav"}, at=T0)
    raw = raw_for(store)
    raw.drop_trigger("audit_log_no_update", "audit_log")
    raw.execute("""UPDATE audit_log SET detail = '{"path":"b.wav"}'""")
    raw.close()
    assert [p.kind for p in (await verify_audit(store)).problems] == [ProblemKind.EDITED_ENTRY]


# --------------------------------------------------------------------------- retention


async def test_retention_keeps_held_incidents_and_leaves_tombstones(
    store: SqliteStore, recdir: Path
) -> None:
    old_iid, old_path = await _call_with_recording(store, recdir, 1, at=T0)
    held_iid, held_path = await _call_with_recording(store, recdir, 2, at=T0 + 10)
    _, new_path = await _call_with_recording(store, recdir, 3, at=T0 + 40 * DAY)
    await store.set_legal_hold(held_iid, on=True, actor="auditor", at=T0 + 20, reason="case 7")

    now = T0 + 45 * DAY
    report = await apply_retention(store, recdir, keep_days=30, now=now)
    assert [r.incident_id for r in report.deleted] == [old_iid]
    assert report.errors == ()
    assert not old_path.exists()
    assert held_path.exists() and new_path.exists()

    [tomb] = [r for r in await store.recording_chain() if r.incident_id == old_iid]
    assert (tomb.deleted_at, tomb.deleted_by) == (now, "retention")
    [entry] = await store.list_audit(action="retention_delete")
    assert entry.target == old_iid and entry.detail["seq"] == tomb.seq

    # The chain still verifies: a tombstoned entry may miss its file.
    vr = await verify_recordings(store, recdir)
    assert vr.ok, vr.problems
    assert (vr.entries, vr.files_checked, vr.tombstones) == (3, 2, 1)
    assert (await verify_audit(store)).ok

    # Running again deletes nothing more; lifting the hold lets the next sweep delete it.
    assert (await apply_retention(store, recdir, keep_days=30, now=now)).deleted == ()
    await store.set_legal_hold(held_iid, on=False, actor="auditor", at=now)
    again = await apply_retention(store, recdir, keep_days=30, now=now + 1)
    assert [r.incident_id for r in again.deleted] == [held_iid]
    assert not held_path.exists()
    assert (await verify_recordings(store, recdir)).ok
    rec = await store.get_incident(old_iid)
    assert rec is not None and "recording_deleted" in [e.kind for e in rec.events]


async def test_a_hold_set_at_the_last_moment_wins(store: SqliteStore, recdir: Path) -> None:
    iid, path = await _call_with_recording(store, recdir, 1, at=T0)
    due = await store.recordings_due_for_retention(before=T0 + 100 * DAY)
    assert [r.incident_id for r in due] == [iid]
    await store.set_legal_hold(iid, on=True, actor="auditor", at=T0 + 99 * DAY)
    assert await store.tombstone_recordings([r.id for r in due], actor="retention", at=T0) == []
    assert path.exists()


async def test_tombstone_without_audit_entry_is_named(store: SqliteStore, recdir: Path) -> None:
    _, path = await _call_with_recording(store, recdir, 1)
    raw = raw_for(store)
    raw.execute("UPDATE recordings SET deleted_at = 1, deleted_by = 'mallory'")  # allowed once
    raw.close()
    path.chmod(0o644)
    path.unlink()
    report = await verify_recordings(store, recdir)
    assert [p.kind for p in report.problems] == [ProblemKind.UNAUDITED_DELETION]
    assert "mallory" in str(report.problems[0])
