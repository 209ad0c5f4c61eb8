"""Crash recovery: active incidents, open legs and half-written recordings after a crash.

One test kills a real writer process with SIGKILL in the middle of a call and
recovers its database and recording; the others build the crashed state
in-process (every write of the store is committed, so a closed store holds
exactly what a killed one would).
"""

from __future__ import annotations

import os
import signal
import stat
import struct
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path

from callcenter112.incidents import (
    CallbackStatus,
    LegRole,
    RecordingStatus,
    Status,
)
from callcenter112.media.recorder import repair_wav
from callcenter112.records import (
    SqliteStore,
    open_store,
    recover_after_crash,
    verify_audit,
    verify_recordings,
    wav_info,
)

T0 = datetime(2026, 11, 28, 10, 0, 0, tzinfo=UTC).timestamp()
NOW = T0 + 3600


def wav_header_placeholder(channels: int = 2, tag: int = 7) -> bytes:
    """The header a recorder writes at start: RIFF/data/fact sizes still 0."""
    fmt = struct.pack("<HHIIHHH", tag, channels, 8000, 8000 * channels, channels, 8, 0)
    return (
        b"RIFF"
        + struct.pack("<I", 0)
        + b"WAVE"
        + b"fmt "
        + struct.pack("<I", len(fmt))
        + fmt
        + b"fact"
        + struct.pack("<I", 4)
        + struct.pack("<I", 0)
        + b"data"
        + struct.pack("<I", 0)
    )


def fix_wav_sizes(path: Path) -> str:
    """Test stand-in for media.recorder.repair_wav: sizes from the file length."""
    raw = bytearray(path.read_bytes())
    offset, align, fact_at, data_at = 12, 1, None, None
    while offset + 8 <= len(raw):
        chunk = bytes(raw[offset : offset + 4])
        (size,) = struct.unpack_from("<I", raw, offset + 4)
        if chunk == b"fmt ":
            (align,) = struct.unpack_from("<H", raw, offset + 8 + 12)
        elif chunk == b"fact":
            fact_at = offset + 8
        elif chunk == b"data":
            data_at = offset + 8
            break
        offset += 8 + size + (size & 1)
    assert data_at is not None
    payload = len(raw) - data_at
    payload -= payload % align
    del raw[data_at + payload :]
    struct.pack_into("<I", raw, data_at - 4, payload)
    struct.pack_into("<I", raw, 4, len(raw) - 8)
    if fact_at is not None:
        struct.pack_into("<I", raw, fact_at, payload // align)
    path.write_bytes(bytes(raw))
    return f"kept {payload // align} frames"


def _partial_recording(path: Path, frames: int, *, extra: int = 1) -> None:
    """Header with placeholder sizes, `frames` stereo frames and a torn last frame."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(
        wav_header_placeholder() + bytes(range(256)) * (frames * 2 // 256) + b"\x7f" * extra
    )


async def _crashed_call(store: SqliteStore, recdir: Path, caller: str | None, n: int) -> str:
    at = T0 + n
    iid = await store.create_incident(caller=caller, arrived_at=at, trunk="telkom", dialled="112")
    await store.add_leg(
        iid,
        role=LegRole.CALLER,
        call_id=f"c{n}",
        peer="192.0.2.5:5060",
        codec="PCMU",
        started_at=at,
    )
    await store.add_leg(
        iid, role=LegRole.OPERATOR, call_id=f"o{n}", peer="op1", codec="PCMU", started_at=at + 9
    )
    rel = f"2026/11/28/{iid}.wav"
    await store.add_recording_open(iid, rel, started_at=at, codec="PCMU", channels=2)
    _partial_recording(recdir / rel, frames=8192)
    return iid


async def test_recovery_after_crash(tmp_path: Path) -> None:
    db, recdir = tmp_path / "db.sqlite3", tmp_path / "recordings"
    async with open_store(db) as store:
        known = await _crashed_call(store, recdir, "+6281234567890", 0)
        anon = await _crashed_call(store, recdir, None, 1)
        # A callback that was ringing when the server died: a leg open on a final incident.
        dropped = await store.create_incident(caller="0813", arrived_at=T0 + 2)
        await store.close_incident(
            dropped, status=Status.ABANDONED, at=T0 + 5, ended_at=T0 + 5, reason="x"
        )
        await store.add_leg(
            dropped,
            role=LegRole.CALLBACK,
            call_id="cb",
            peer="0813",
            codec="PCMA",
            started_at=T0 + 50,
        )
        # A recording announced but whose file was never created.
        await store.add_recording_open(dropped, "2026/11/28/ghost.wav", started_at=T0 + 50)

    async with open_store(db) as store:
        report = await recover_after_crash(store, recdir, NOW, repair=fix_wav_sizes)
        assert report.interrupted == (known, anon)
        assert len(report.callbacks) == 2
        assert report.stray_legs_closed == 1
        assert report.lost == ("2026/11/28/ghost.wav",)
        assert report.problems == ()
        assert sorted(r.incident_id for r in report.sealed) == [known, anon]

        for iid in (known, anon):
            rec = await store.get_incident(iid)
            assert rec is not None
            assert rec.incident.status is Status.INTERRUPTED
            assert rec.incident.ended_at is None  # unknown: the server was down
            assert all(not leg.is_open for leg in rec.legs)
            assert {leg.end_reason for leg in rec.legs} == {"incident_interrupted"}
            [recording] = rec.recordings
            assert recording.status is RecordingStatus.SEALED and recording.seq is not None
            path = recdir / recording.path
            assert stat.S_IMODE(path.stat().st_mode) == 0o440  # records.READ_ONLY_MODE (issue 11)
            info = wav_info(path)
            assert info is not None
            assert info.data_bytes == 8192 * 2  # the torn last frame was cut
            assert recording.duration_s == info.duration_s == 8192 / 8000
            assert recording.channels == 2 and recording.codec == "PCMU"
            kinds = [e.kind for e in rec.events]
            assert "recording_recovered" in kinds
            status_events = [e.detail for e in rec.events if e.kind == "status"]
            assert status_events == [
                {
                    "from": "active",
                    "to": "interrupted",
                    "reason": "server restarted while the call was up",
                }
            ]

        tasks = {cb.incident_id: cb for cb in await store.list_callbacks()}
        assert tasks[known].number == "081234567890" and not tasks[known].no_number
        assert tasks[anon].number is None and tasks[anon].no_number
        assert tasks[known].reason == "interrupted"
        assert all(cb.status is CallbackStatus.OPEN for cb in tasks.values())

        dropped_rec = await store.get_incident(dropped)
        assert dropped_rec is not None
        assert [leg.end_reason for leg in dropped_rec.legs] == ["server_restart"]
        assert dropped_rec.recordings[0].status is RecordingStatus.LOST

        assert (await verify_recordings(store, recdir)).ok
        assert (await verify_audit(store)).ok
        [entry] = await store.list_audit(action="crash_recovery")
        assert entry.actor == "system" and entry.detail["interrupted"] == [known, anon]

        # Running it again finds nothing to do and creates nothing twice.
        again = await recover_after_crash(store, recdir, NOW + 1, repair=fix_wav_sizes)
        assert again.clean and again.problems == ()
        assert len(await store.list_callbacks()) == 2 + 1  # + the abandoned call's own task


async def test_a_failed_repair_still_seals_the_evidence(tmp_path: Path) -> None:
    db, recdir = tmp_path / "db.sqlite3", tmp_path / "recordings"
    async with open_store(db) as store:
        iid = await _crashed_call(store, recdir, "0812", 0)
        rel = f"2026/11/28/{iid}.wav"
        before = (recdir / rel).read_bytes()

        def broken_repair(path: Path) -> object:
            raise ValueError("header unreadable")

        report = await recover_after_crash(store, recdir, NOW, repair=broken_repair)
        assert report.problems == (f"{rel}: repair failed (header unreadable); sealed as found",)
        [sealed] = report.sealed
        assert sealed.size == len(before)
        assert (recdir / rel).read_bytes() == before
        assert (await verify_recordings(store, recdir)).ok


async def test_nothing_to_recover_is_clean(tmp_path: Path) -> None:
    async with open_store(tmp_path / "db.sqlite3") as store:
        iid = await store.create_incident(caller="0812", arrived_at=T0)
        await store.close_incident(
            iid, status=Status.COMPLETED, at=T0 + 9, ended_at=T0 + 9, reason="bye"
        )
        report = await recover_after_crash(store, tmp_path / "rec", NOW, repair=fix_wav_sizes)
        assert report.clean
        assert await store.list_audit() == []


CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from callcenter112.incidents import LegRole
    from callcenter112.records import open_store

    async def main(db, recdir, header_hex):
        async with open_store(db) as store:
            iid = await store.create_incident(caller="081299", arrived_at=1795860000.0)
            await store.add_leg(iid, role=LegRole.CALLER, call_id="k", peer="p", codec="PCMA",
                                started_at=1795860000.0)
            rel = f"{iid}.wav"
            await store.add_recording_open(iid, rel, started_at=1795860000.0, codec="PCMA",
                                           channels=2)
            f = open(Path(recdir) / rel, "wb")
            f.write(bytes.fromhex(header_hex))
            f.write(b"\\xd5" * 16001)  # 8000 stereo frames and one torn byte
            f.flush()
            print(iid, flush=True)
            sys.stdin.readline()  # killed here, mid-call

    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3]))
    """
)


async def test_recovery_after_sigkill_of_a_real_writer_process(tmp_path: Path) -> None:
    db, recdir = tmp_path / "db.sqlite3", tmp_path / "recordings"
    recdir.mkdir()
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    child = subprocess.Popen(
        [sys.executable, str(script), str(db), str(recdir), wav_header_placeholder(tag=6).hex()],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        iid = child.stdout.readline().strip()
        assert iid.endswith("-0001"), iid
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait(timeout=60)
    assert child.returncode == -signal.SIGKILL

    async with open_store(db) as store:
        report = await recover_after_crash(store, recdir, NOW, repair=fix_wav_sizes)
        assert report.interrupted == (iid,)
        rec = await store.get_incident(iid)
        assert rec is not None
        assert rec.incident.status is Status.INTERRUPTED
        [recording] = rec.recordings
        assert recording.status is RecordingStatus.SEALED
        assert recording.duration_s == 1.0
        assert recording.codec == "PCMA"
        assert (await verify_recordings(store, recdir)).ok
        [cb] = await store.list_callbacks()
        assert cb.incident_id == iid and cb.number == "081299"


async def test_recovery_with_the_recorders_own_repair(tmp_path: Path) -> None:
    """Recovery with the recorder's own repair (the one app.py passes) seals a torn file."""
    db, recdir = tmp_path / "db.sqlite3", tmp_path / "recordings"
    async with open_store(db) as store:
        iid = await _crashed_call(store, recdir, "0812", 0)
        report = await recover_after_crash(store, recdir, NOW, repair=repair_wav)
        assert report.problems == ()
        [sealed] = report.sealed
        assert sealed.incident_id == iid
        assert sealed.channels == 2 and sealed.duration_s == 8192 / 8000
        assert (await verify_recordings(store, recdir)).ok
