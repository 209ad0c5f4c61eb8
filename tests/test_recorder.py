"""Stereo G.711 recording: timeline placement, WAV files, crash repair."""

from __future__ import annotations

import random
import shutil
import struct
import subprocess
import threading
from pathlib import Path

import pytest

from callcenter112.media import g711
from callcenter112.media.g711 import Codec
from callcenter112.media.recorder import (
    WAV_HEADER_SIZE,
    Channel,
    IncidentRecorder,
    RecordingFile,
    RecordingTimeline,
    WavError,
    read_wav,
    repair_wav,
    wav_header,
    wav_info,
    write_wav,
)

A, U = Codec.PCMA, Codec.PCMU
START = 500.0
FRAME = 160
CALLER, CENTRE = Channel.CALLER, Channel.CENTRE


def frames(rng: random.Random, count: int, codec: Codec) -> list[bytes]:
    """Random code words that are never the law's silence, so gaps are visible."""
    quiet = codec.silence_byte
    return [
        bytes(b if b != quiet else quiet ^ 1 for b in rng.randbytes(FRAME)) for _ in range(count)
    ]


class Feed:
    """Packets of one RTP stream: payload, timestamp, ssrc, arrival time."""

    def __init__(self, payloads: list[bytes], *, ts0: int, ssrc: int, t0: float) -> None:
        self.packets = [
            (p, (ts0 + k * FRAME) % (1 << 32), ssrc, t0 + k * 0.020) for k, p in enumerate(payloads)
        ]


def feed(
    tl: RecordingTimeline,
    channel: Channel,
    packets: list[tuple[bytes, int, int, float]],
    codec: Codec,
) -> None:
    for payload, ts, ssrc, arrival in packets:
        tl.add(channel, payload, codec=codec, rtp_timestamp=ts, ssrc=ssrc, arrival=arrival)


def split(data: bytes) -> tuple[bytes, bytes]:
    return data[0::2], data[1::2]


# ---------------------------------------------------------------- timeline


def test_in_order_both_channels_bit_exact_and_transcoded() -> None:
    rng = random.Random(1)
    caller = frames(rng, 100, A)
    centre = frames(rng, 100, U)
    tl = RecordingTimeline(codec=A, start=START)
    feed(tl, CALLER, Feed(caller, ts0=123_456, ssrc=1, t0=START).packets, A)
    feed(tl, CENTRE, Feed(centre, ts0=9, ssrc=2, t0=START).packets, U)
    data = tl.drain(START + 1.0) + tl.finish(START + 3.0)
    left, right = split(data)
    assert left[: 100 * FRAME] == b"".join(caller)
    assert right[: 100 * FRAME] == g711.ulaw_to_alaw(b"".join(centre))
    # Through `now` (3 s): the last second is silence on both channels.
    assert len(left) == len(right) == 3 * 8000
    assert set(left[100 * FRAME :]) == set(right[100 * FRAME :]) == {A.silence_byte}
    assert tl.late_dropped == 0
    assert tl.reanchors == 0


def test_drain_keeps_the_reorder_window_open() -> None:
    rng = random.Random(2)
    caller = frames(rng, 50, U)
    tl = RecordingTimeline(codec=U, start=START, reorder_window_s=0.2)
    feed(tl, CALLER, Feed(caller, ts0=0, ssrc=1, t0=START).packets, U)
    first = tl.drain(START + 1.0)
    assert len(first) == 2 * 8000 * 8 // 10  # 0.8 s committed, 0.2 s still open
    assert tl.committed_frames == 6400
    assert tl.drain(START + 1.0) == b""  # nothing new yet
    rest = tl.finish(START + 1.0)
    assert split(first + rest)[0] == b"".join(caller)


def test_reordered_packets_land_in_place() -> None:
    rng = random.Random(3)
    caller = frames(rng, 200, A)
    packets = Feed(caller, ts0=4_000_000_000, ssrc=7, t0=START).packets  # wraps at 2^32
    shuffled = packets[:1]  # the first packet anchors the stream
    rest = packets[1:]
    for i in range(0, len(rest), 4):  # reverse every group of 4 (up to 60 ms late)
        shuffled.extend(reversed(rest[i : i + 4]))
    tl = RecordingTimeline(codec=A, start=START)
    out = b""
    for k, (payload, ts, ssrc, arrival) in enumerate(shuffled):
        tl.add(CALLER, payload, codec=A, rtp_timestamp=ts, ssrc=ssrc, arrival=arrival)
        if k % 50 == 49:
            out += tl.drain(arrival)
    out += tl.finish(START + 4.0)
    assert split(out)[0] == b"".join(caller)
    assert tl.late_dropped == 0


def test_loss_becomes_silence_at_the_right_place() -> None:
    rng = random.Random(4)
    caller = frames(rng, 100, A)
    packets = Feed(caller, ts0=1000, ssrc=3, t0=START).packets
    lost = {5, 6, 7, 50, 99}
    tl = RecordingTimeline(codec=A, start=START)
    feed(tl, CALLER, [p for k, p in enumerate(packets) if k not in lost], A)
    left = split(tl.finish(START + 2.0))[0]  # 2.0 s: through the lost last packet
    quiet = g711.silence(A)
    expected = b"".join(quiet if k in lost else f for k, f in enumerate(caller))
    assert left == expected


def test_ssrc_change_is_reanchored_by_arrival_time() -> None:
    rng = random.Random(5)
    before = frames(rng, 50, U)
    after = frames(rng, 50, U)
    tl = RecordingTimeline(codec=U, start=START)
    feed(tl, CALLER, Feed(before, ts0=10_000, ssrc=111, t0=START).packets, U)
    # The trunk restarts the stream 0.5 s after the first one ended: new SSRC, new base.
    t1 = START + 50 * 0.020 + 0.5
    feed(tl, CALLER, Feed(after, ts0=3_000_000_000, ssrc=222, t0=t1).packets, U)
    left = split(tl.finish(START))[0]
    assert tl.reanchors == 1
    gap = g711.silence(U, 4000)
    assert left == b"".join(before) + gap + b"".join(after)


def test_centre_channel_changes_source_without_reopening() -> None:
    rng = random.Random(6)
    prompts = frames(rng, 25, A)
    operator = frames(rng, 25, U)
    agency = frames(rng, 25, A)
    tl = RecordingTimeline(codec=A, start=START)
    feed(tl, CENTRE, Feed(prompts, ts0=0, ssrc=1, t0=START).packets, A)
    feed(tl, CENTRE, Feed(operator, ts0=777, ssrc=2, t0=START + 0.5).packets, U)
    feed(tl, CENTRE, Feed(agency, ts0=5, ssrc=3, t0=START + 1.0).packets, A)
    right = split(tl.finish(START))[1]
    assert right == b"".join(prompts) + g711.ulaw_to_alaw(b"".join(operator)) + b"".join(agency)
    assert tl.reanchors == 2


def test_timestamp_jump_is_reanchored() -> None:
    rng = random.Random(7)
    payloads = frames(rng, 20, A)
    tl = RecordingTimeline(codec=A, start=START)
    packets = Feed(payloads, ts0=0, ssrc=9, t0=START).packets
    # Packet 10 onwards: the sender's timestamp jumps by an hour; arrival stays continuous.
    packets = [
        (p, ts + (3600 * 8000 if k >= 10 else 0), s, t) for k, (p, ts, s, t) in enumerate(packets)
    ]
    feed(tl, CALLER, packets, A)
    assert tl.reanchors == 1
    assert split(tl.finish(START))[0] == b"".join(payloads)


def test_silence_suppression_gap_is_kept_by_timestamp() -> None:
    rng = random.Random(8)
    a, b = frames(rng, 10, A), frames(rng, 10, A)
    tl = RecordingTimeline(codec=A, start=START)
    feed(tl, CALLER, Feed(a, ts0=0, ssrc=1, t0=START).packets, A)
    # DTX: 300 ms without packets, timestamps continue accordingly (arrival 5 ms jittered).
    feed(tl, CALLER, Feed(b, ts0=10 * FRAME + 2400, ssrc=1, t0=START + 0.5 + 0.005).packets, A)
    left = split(tl.finish(START))[0]
    assert left == b"".join(a) + g711.silence(A, 2400) + b"".join(b)
    assert tl.reanchors == 0


def test_packet_after_its_window_is_dropped_partial_overlap_kept() -> None:
    rng = random.Random(9)
    payloads = frames(rng, 30, A)
    packets = Feed(payloads, ts0=0, ssrc=1, t0=START).packets
    tl = RecordingTimeline(codec=A, start=START, reorder_window_s=0.1)
    feed(tl, CALLER, packets[:20], A)
    committed = tl.drain(START + 0.5)  # commits up to 0.4 s = 3200 samples = 20 frames
    assert tl.committed_frames == 3200
    feed(tl, CALLER, [packets[19]], A)  # entirely late
    assert tl.late_dropped == 1
    # A 30 ms packet straddling the commit point keeps its open tail.
    late = b"\x11" * 240
    tl.add(CALLER, late, codec=A, rtp_timestamp=19 * FRAME, ssrc=1, arrival=START + 0.38)
    feed(tl, CALLER, packets[21:], A)
    left = split(committed + tl.finish(START))[0]
    assert left[: 20 * FRAME] == b"".join(payloads[:20])
    assert left[20 * FRAME : 20 * FRAME + 80] == b"\x11" * 80
    assert left[20 * FRAME + 80 : 21 * FRAME] == g711.silence(A, 80)
    assert left[21 * FRAME :] == b"".join(payloads[21:])


def test_finish_includes_audio_mapped_past_now_and_then_stops() -> None:
    tl = RecordingTimeline(codec=U, start=START)
    tl.add(CALLER, b"\x01" * FRAME, codec=U, rtp_timestamp=0, ssrc=1, arrival=START + 1.0)
    data = tl.finish(START + 0.5)
    assert len(data) == 2 * (8000 + FRAME)
    assert tl.finish(START + 9) == b""
    assert tl.drain(START + 9) == b""
    tl.add(CALLER, b"\x01" * FRAME, codec=U, rtp_timestamp=160, ssrc=1, arrival=START + 1.02)
    assert tl.committed_frames == 8000 + FRAME


def test_caller_channel_bit_exact_under_random_jitter_and_loss() -> None:
    rng = random.Random(10)
    caller = frames(rng, 500, A)
    packets = Feed(caller, ts0=rng.randrange(1 << 32), ssrc=42, t0=START).packets
    # Jitter up to 60 ms (first packet on time), 3 % loss.
    kept = [packets[0]] + [
        (p, ts, s, t + rng.uniform(0, 0.06)) for p, ts, s, t in packets[1:] if rng.random() > 0.03
    ]
    lost = {k for k, p in enumerate(packets) if p[1] not in {q[1] for q in kept}}
    arrival_order = sorted(kept, key=lambda p: p[3])
    tl = RecordingTimeline(codec=A, start=START)
    out = b""
    for k, (payload, ts, ssrc, arrival) in enumerate(arrival_order):
        tl.add(CALLER, payload, codec=A, rtp_timestamp=ts, ssrc=ssrc, arrival=arrival)
        if k % 25 == 0:
            out += tl.drain(arrival)
    out += tl.finish(START + 10)
    left = split(out)[0]
    expected = b"".join(g711.silence(A) if k in lost else f for k, f in enumerate(caller))
    assert left[: len(expected)] == expected
    assert tl.late_dropped == 0


# ---------------------------------------------------------------- files


def test_incident_recording_file_round_trip(tmp_path: Path) -> None:
    rng = random.Random(11)
    caller = frames(rng, 150, U)
    centre = frames(rng, 150, A)
    path = tmp_path / "incident-1.wav"
    rec = IncidentRecorder(path, codec=U, start=START, fsync=False)
    for k in range(150):
        t = START + k * 0.020
        rec.add(CALLER, caller[k], codec=U, rtp_timestamp=k * FRAME, ssrc=1, arrival=t)
        rec.add(CENTRE, centre[k], codec=A, rtp_timestamp=k * FRAME, ssrc=2, arrival=t)
        if k % 50 == 49:
            rec.flush(t)
            # Complete and readable after every flush.
            assert read_wav(path).frames == rec.file.frames
    info = rec.close(START + 3.0)
    assert rec.close(START + 3.0) == info  # idempotent
    audio = read_wav(path)
    assert audio.codec is U
    assert audio.channels == 2
    assert audio.info.sample_rate == 8000
    assert audio.info.bits_per_sample == 8
    assert audio.frames == info.frames == 3 * 8000
    assert info.duration_s == 3.0
    assert info.size_bytes == path.stat().st_size == WAV_HEADER_SIZE + 2 * 3 * 8000
    assert audio.channel(0)[: 150 * FRAME] == b"".join(caller)
    assert audio.channel(1)[: 150 * FRAME] == g711.alaw_to_ulaw(b"".join(centre))
    raw = path.read_bytes()
    assert raw[38:42] == b"fact"
    assert struct.unpack_from("<I", raw, 46)[0] == info.frames
    assert struct.unpack_from("<H", raw, 20)[0] == 7  # WAVE_FORMAT_MULAW


def test_flush_from_a_worker_thread(tmp_path: Path) -> None:
    rng = random.Random(12)
    caller = frames(rng, 100, A)
    rec = IncidentRecorder(tmp_path / "r.wav", codec=A, start=START, fsync=False)
    for k in range(50):
        rec.add(CALLER, caller[k], codec=A, rtp_timestamp=k * FRAME, ssrc=1,
                arrival=START + k * 0.02)  # fmt: skip
    worker = threading.Thread(target=rec.flush, args=(START + 1.0,))
    worker.start()
    for k in range(50, 100):
        rec.add(CALLER, caller[k], codec=A, rtp_timestamp=k * FRAME, ssrc=1,
                arrival=START + k * 0.02)  # fmt: skip
    worker.join()
    rec.close(START + 2.0)
    assert read_wav(rec.path).channel(0) == b"".join(caller)


def test_existing_recording_is_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "r.wav"
    path.write_bytes(b"evidence")
    with pytest.raises(FileExistsError):
        RecordingFile(path, codec=A)
    assert path.read_bytes() == b"evidence"


def test_append_after_close_and_odd_sizes_rejected(tmp_path: Path) -> None:
    f = RecordingFile(tmp_path / "r.wav", codec=A, fsync=False)
    with pytest.raises(ValueError):
        f.append(b"\x00" * 3)
    f.close()
    with pytest.raises(ValueError):
        f.append(b"\x00\x00")


def test_mono_odd_length_is_padded_and_reads_back(tmp_path: Path) -> None:
    path = tmp_path / "m.wav"
    write_wav(path, A, 1, b"\x01\x02\x03")
    assert path.stat().st_size == WAV_HEADER_SIZE + 4
    audio = read_wav(path)
    assert audio.data == b"\x01\x02\x03"
    assert audio.channels == 1
    assert repair_wav(path).changed is False
    f = RecordingFile(tmp_path / "m2.wav", codec=U, channels=1, fsync=False)
    f.append(b"\x05" * 5)
    f.close()
    assert read_wav(tmp_path / "m2.wav").data == b"\x05" * 5


def test_read_wav_errors_name_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.wav"
    with pytest.raises(WavError, match=r"missing\.wav"):
        read_wav(missing)
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"not a wav at all")
    with pytest.raises(WavError, match="not a RIFF/WAVE"):
        read_wav(junk)
    cut = tmp_path / "cut.wav"
    cut.write_bytes(wav_header(A, 2, 1000) + b"\0" * 100)
    with pytest.raises(WavError, match="repair"):
        read_wav(cut)
    gsm = tmp_path / "gsm.wav"
    header = bytearray(wav_header(A, 1, 0))
    struct.pack_into("<H", header, 20, 49)  # GSM 6.10
    gsm.write_bytes(bytes(header))
    with pytest.raises(WavError, match="format tag 49"):
        read_wav(gsm)


def test_reads_16_bit_pcm_wav(tmp_path: Path) -> None:
    import wave

    path = tmp_path / "pcm.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(struct.pack("<4h", 1, -1, 1000, -1000))
    info = wav_info(path)
    assert (info.codec, info.bits_per_sample, info.frames) == (None, 16, 4)
    assert read_wav(path).data == struct.pack("<4h", 1, -1, 1000, -1000)
    with pytest.raises(WavError):
        read_wav(path).channel(0)


# ---------------------------------------------------------------- repair


def crashed_recording(tmp_path: Path) -> tuple[bytes, bytes]:
    """A recording's bytes as a crash leaves them: the last append is only half written
    and the header claims less than the file holds. Returns (file bytes, all audio)."""
    path = tmp_path / "crash.wav"
    rng = random.Random(13)
    f = RecordingFile(path, codec=A, fsync=False)
    first = rng.randbytes(2 * 300)
    f.append(first)  # header now says 300 frames
    torn = rng.randbytes(2 * 200)
    raw = path.read_bytes() + torn  # the next append reached the disk, its header update not
    f.close()
    return raw, first + torn


def test_repair_at_every_cut_offset_leaves_a_readable_prefix(tmp_path: Path) -> None:
    raw, audio = crashed_recording(tmp_path)
    target = tmp_path / "victim.wav"
    for cut in range(len(raw) + 1):
        target.write_bytes(raw[:cut])
        result = repair_wav(target)
        wav = read_wav(target)
        expected_frames = max(0, cut - WAV_HEADER_SIZE) // 2
        assert result.frames == wav.frames == expected_frames, cut
        assert wav.data == audio[: 2 * expected_frames], cut
        assert wav.channels == 2
        assert result.header_rebuilt == (cut < WAV_HEADER_SIZE)
        if cut >= 22:
            assert wav.codec is A, cut  # the law survives whenever its field did
        assert repair_wav(target).changed is False  # repairing twice changes nothing


def test_repair_of_a_placeholder_header(tmp_path: Path) -> None:
    path = tmp_path / "p.wav"
    path.write_bytes(wav_header(U, 2, 0) + b"\x01\x02" * 1000 + b"\x03")
    result = repair_wav(path)
    assert result.changed
    assert result.frames == 1000
    assert result.dropped_bytes == 1
    assert read_wav(path).data == b"\x01\x02" * 1000


def test_repair_refuses_what_is_not_a_wav(tmp_path: Path) -> None:
    path = tmp_path / "x.wav"
    path.write_bytes(b"MThd not audio")
    with pytest.raises(WavError, match="not a RIFF/WAVE"):
        repair_wav(path)
    assert path.read_bytes() == b"MThd not audio"
    big = tmp_path / "big.wav"
    big.write_bytes(b"RIFF\0\0\0\0WAVEjunk" + b"\0" * 100)
    with pytest.raises(WavError, match="no fmt and data chunk"):
        repair_wav(big)


@pytest.mark.peers
def test_sox_and_ffmpeg_read_a_recording(tmp_path: Path) -> None:
    import os

    tools = [t for t in ("sox", "ffprobe") if shutil.which(t)]
    if len(tools) < 2:
        if os.environ.get("CI") == "true":
            pytest.fail("sox/ffprobe missing on CI")
        pytest.skip("sox/ffprobe not installed")
    path = tmp_path / "r.wav"
    rec = IncidentRecorder(path, codec=A, start=START, fsync=False)
    rec.add(CALLER, b"\x55" * 8000, codec=A, rtp_timestamp=0, ssrc=1, arrival=START)
    rec.close(START + 1.0)
    probe = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "stream=codec_name,channels,sample_rate",
         "-of", "default=nw=1", str(path)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert "codec_name=pcm_alaw" in probe.stdout
    assert "channels=2" in probe.stdout
    assert "sample_rate=8000" in probe.stdout
    soxi = subprocess.run(["soxi", "-s", str(path)], capture_output=True, text=True, check=True)
    assert soxi.stdout.strip() == "8000"
