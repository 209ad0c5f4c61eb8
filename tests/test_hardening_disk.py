"""Issue 11: a recording on a disk that fills keeps its audio and says so.

A real tmpfs of 256 KiB is mounted by the test (it runs as root in CI, like the other
peers), filled by a ballast file, then freed again. Nothing is simulated: the ENOSPC comes
from the kernel.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from callcenter112.media.g711 import Codec
from callcenter112.media.recorder import (
    Channel,
    IncidentRecorder,
    RecordingDegraded,
    RecordingRecovered,
    read_wav,
    unrecorded_name,
)

FRAME = 160  # 20 ms of G.711 at 8000 Hz


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "tiny"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def _fill(folder: Path, leave: int) -> Path:
    """A ballast file that leaves about `leave` bytes free."""
    ballast = folder / "ballast"
    st = os.statvfs(folder)
    free = st.f_bavail * st.f_frsize
    with ballast.open("wb") as f:
        f.write(b"\0" * max(0, free - leave))
    return ballast


def _feed(rec: IncidentRecorder, first: int, count: int) -> None:
    for i in range(first, first + count):
        payload = bytes([i % 256]) * FRAME
        for ch in Channel:
            rec.add(
                ch,
                payload,
                codec=Codec.PCMU,
                rtp_timestamp=i * FRAME,
                ssrc=1 + ch,
                arrival=i * 0.02,
            )


def test_a_full_disk_holds_the_audio_and_a_freed_one_gets_all_of_it(tiny_disk: Path) -> None:
    rec = IncidentRecorder(tiny_disk / "r.wav", codec=Codec.PCMU, start=0.0, fsync=False)
    _feed(rec, 0, 50)  # 1 s
    assert rec.flush(1.0) > 0
    before = read_wav(rec.path)
    ballast = _fill(tiny_disk, leave=0)
    _feed(rec, 50, 100)  # 2 s more, while the disk is full
    assert rec.flush(3.0) == 0
    assert rec.degraded and rec.pending_bytes > 0
    [event] = rec.take_health()
    assert isinstance(event, RecordingDegraded) and event.error
    # What reached the disk is intact and readable up to the fill point.
    assert read_wav(rec.path).frames == before.frames
    ballast.unlink()
    _feed(rec, 150, 25)
    assert rec.flush(4.0) > 0
    assert not rec.degraded and rec.pending_bytes == 0
    assert isinstance(rec.take_health()[0], RecordingRecovered)
    info = rec.close(3.5)
    audio = read_wav(rec.path)
    assert info.frames == audio.frames >= 175 * FRAME
    left = audio.channel(0)
    # Every frame is where its RTP timestamp put it: none lost, none shifted.
    assert all(left[i * FRAME] == i % 256 for i in range(175))


def test_call_id_never_reaches_a_path() -> None:
    for hostile in ["../../etc/passwd", "a/b\0c", "x" * 5000, "نداء@host"]:
        name = unrecorded_name(hostile)
        assert name.startswith("unrecorded-") and len(name) == 35
        assert all(c.isalnum() or c == "-" for c in name) and name.isascii()
    assert unrecorded_name("a@b") == unrecorded_name("a@b") != unrecorded_name("a@c")


# --------------------------------------------------------------------------- faults.py


def test_probe_write_proves_the_disk_takes_writes(tiny_disk: Path) -> None:
    from callcenter112.faults import probe_write

    assert probe_write(tiny_disk).ok
    ballast = _fill(tiny_disk, leave=0)
    failed = probe_write(tiny_disk)
    assert not failed.ok and failed.reason == "write_failed"  # fixed words, no exception text
    assert sorted(p.name for p in tiny_disk.iterdir()) == ["ballast"]  # no probe left behind
    ballast.unlink()
    assert probe_write(tiny_disk).ok


def test_low_disk_alarm_is_raised_and_cleared_once(tiny_disk: Path, tmp_path: Path) -> None:
    from callcenter112.faults import DiskWatch

    watch = DiskWatch([tiny_disk, tmp_path / "gone"], threshold_bytes=64 * 1024)
    first = {a.folder: a.low for a in watch.check()}
    assert first == {tmp_path / "gone": True}  # cannot be measured: low
    assert watch.check() == []
    ballast = _fill(tiny_disk, leave=16 * 1024)
    [alarm] = watch.check()
    assert alarm.folder == tiny_disk and alarm.low and alarm.free_bytes < 64 * 1024
    assert watch.check() == []
    ballast.unlink()
    [cleared] = watch.check()
    assert cleared.folder == tiny_disk and not cleared.low


async def test_start_step_retries_then_alarms_and_goes_on() -> None:
    from callcenter112.faults import start_step

    calls: list[int] = []
    alarms: list[tuple[str, str]] = []

    async def flaky() -> str:
        calls.append(1)
        if len(calls) < 2:
            raise OSError(28, "No space left on device")
        return "done"

    assert await start_step("recovery", flaky, retry_s=0.01) == "done"
    assert len(calls) == 2

    async def broken() -> str:
        raise OSError(5, "Input/output error")

    got = await start_step(
        "config_audit", broken, attempts=3, retry_s=0.01, on_alarm=lambda *a: alarms.append(a)
    )
    assert got is None and alarms == [("config_audit", "OSError")]


def test_secure_files_sets_umask_and_modes(tmp_path: Path) -> None:
    import stat

    from callcenter112.faults import secure_files

    folder = tmp_path / "data"
    folder.mkdir(mode=0o755)
    db = folder / "db.sqlite3"
    db.write_text("x")
    db.chmod(0o644)
    old = os.umask(0o022)
    try:
        assert secure_files(folders=[folder, tmp_path / "missing"], private_files=[db]) == []
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
        assert stat.S_IMODE(db.stat().st_mode) == 0o600
        new = folder / "later"
        new.mkdir()
        assert stat.S_IMODE(new.stat().st_mode) == 0o700  # umask 077 from now on
    finally:
        os.umask(old)


async def test_disk_checks_report_fixed_words(tiny_disk: Path, tmp_path: Path) -> None:
    from callcenter112.faults import disk_checks

    ok = await disk_checks([tiny_disk, tmp_path], threshold_bytes=1)
    assert ok == {"disk:tiny": "ok", f"disk:{tmp_path.name}": "ok"}
    assert (await disk_checks([tiny_disk], threshold_bytes=10**12)) == {"disk:tiny": "low_disk"}
    ballast = _fill(tiny_disk, leave=0)
    assert (await disk_checks([tiny_disk], threshold_bytes=1)) == {"disk:tiny": "write_failed"}
    ballast.unlink()
