"""Issue 11, end to end: the recordings disk fills in the middle of a real SIPp call.

The recordings folder of a real server is a 1 MiB tmpfs the test mounts (as root, like CI)
and removes. A SIPp citizen calls 112 and sends ~8 s of G.711 speech; while the call is
up the disk is filled with a ballast file, then freed. The call must stay up, the
recorder must say it is degraded (the alarm) and recovered, and the WAV must stay
readable throughout and end up holding the whole call: nothing that reached the disk is
lost, and what the disk refused for a while was held and written afterwards.
"""

from __future__ import annotations

import os
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from callcenter112.media.recorder import read_wav, wav_info
from harness import Server, need, start_caller, wait_until

pytestmark = [pytest.mark.peers, pytest.mark.slow]


@pytest.fixture
def server_on_tiny_disk(tmp_path: Path) -> Iterator[Server]:
    need("sipp")
    server = Server(tmp_path / "centre")
    server.write_config()
    server.recordings.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", str(server.recordings)],
        check=True,
    )
    try:
        server.start()
        try:
            yield server
        finally:
            try:
                server.stop()
            finally:
                server.kill()
    finally:
        subprocess.run(["umount", str(server.recordings)], check=True)


def _fill(folder: Path) -> Path:
    ballast = folder / "ballast"
    st = os.statvfs(folder)
    with ballast.open("wb") as f:
        f.write(b"\0" * (st.f_bavail * st.f_frsize))
    return ballast


def _recording(folder: Path) -> Path | None:
    found = list(folder.rglob("*.wav"))
    return found[0] if found else None


def test_a_disk_that_fills_mid_call_loses_no_recorded_audio(
    server_on_tiny_disk: Server, tmp_path: Path
) -> None:
    server = server_on_tiny_disk
    caller = start_caller(server, tmp_path / "caller", audio=True, talk_ms=12000)
    wav = wait_until(lambda: _recording(server.recordings), timeout=20, what="the recording")
    wait_until(lambda: wav_info(wav).frames > 8000, timeout=20, what="a second on disk")
    ballast = _fill(server.recordings)
    wait_until(lambda: server.events("recording_degraded"), timeout=20, what="the alarm")
    at_fill = wav_info(wav).frames  # readable while the disk is full
    assert at_fill > 8000
    time.sleep(2.0)
    assert wav_info(wav).frames == at_fill  # nothing more fitted; nothing was lost
    assert caller.running  # the call is still up
    ballast.unlink()
    wait_until(lambda: server.events("recording_recovered"), timeout=20, what="recovery")
    assert wav_info(wav).frames > at_fill
    assert caller.wait(120) == 0, caller.logs()
    [recovered] = server.events("recording_recovered")
    assert recovered["dropped"] == 0
    [degraded] = server.events("recording_degraded")
    assert degraded["error"] == "No space left on device"
    # Issue 11: both changes are on the incident's timeline too.
    timeline = server.sql(
        "SELECT kind, detail FROM events WHERE kind IN ('recording_degraded',"
        " 'recording_recovered') ORDER BY at, id"
    )
    assert [k for k, _ in timeline] == ["recording_degraded", "recording_recovered"], timeline
    assert '"pending_bytes"' in timeline[0][1] and '"dropped_bytes":0' in timeline[1][1]
    # Closed and sealed (read-only): the whole call is there, ~13 s (8 s of speech + talk).
    wait_until(lambda: not os.access(wav, os.W_OK) or wav.stat().st_mode & 0o222 == 0, 20)
    audio = read_wav(wav)
    assert audio.frames >= 10 * 8000
    # The audio the disk refused for a while is the caller's speech, not filler.
    held = audio.channel(0)[at_fill : at_fill + 8000]
    assert len(set(held)) > 20
    # umask 077 at start: folders 0700, database and configuration 0600.
    assert stat.S_IMODE(server.database.stat().st_mode) == 0o600
    assert stat.S_IMODE(server.config_path.stat().st_mode) == 0o600
    assert stat.S_IMODE((server.directory / "data").stat().st_mode) == 0o700
    assert stat.S_IMODE(wav.parent.stat().st_mode) == 0o700
