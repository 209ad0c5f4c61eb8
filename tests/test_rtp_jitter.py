"""The play-out jitter buffer (rtp/jitter.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import pcaplib
from callcenter112.rtp.jitter import LATE_RESYNC, JitterBuffer
from callcenter112.rtp.packet import RtpPacket

PCAPS = Path("/usr/share/sip-tester")


def frame(n: int, size: int = 160) -> bytes:
    """A recognisable payload: every octet is n (mod 256)."""
    return bytes([n % 256]) * size


def test_in_order_stream_comes_out_after_the_delay() -> None:
    jb = JitterBuffer(delay=480)  # 3 frames
    out = []
    for i in range(10):
        jb.put(1000 + 160 * i, frame(i))
        out.append(jb.pop())
    assert out[:3] == [None, None, None]
    assert out[3:] == [frame(i) for i in range(7)]
    assert (jb.played, jb.concealed, jb.late) == (7, 3, 0)


def test_reordering_within_the_delay_is_repaired() -> None:
    jb = JitterBuffer(delay=480)
    order = [0, 2, 1, 3, 5, 4, 6, 7, 9, 8, 10, 11, 12, 13]
    out = []
    for i in order:
        assert jb.put(160 * i, frame(i))
        out.append(jb.pop())
    played = [f for f in out if f is not None]
    assert played == [frame(i) for i in range(len(played))]
    assert jb.late == 0


def test_late_packet_is_dropped_and_its_slot_is_concealed() -> None:
    jb = JitterBuffer(delay=160)
    jb.put(0, frame(0))
    assert jb.pop() is None  # cursor -160..0
    assert jb.pop() == frame(0)  # 0..160
    assert jb.pop() is None  # 160..320: packet 1 missing
    assert jb.put(160, frame(1)) is False  # arrives after its play-out time
    assert jb.late == 1
    jb.put(320, frame(2))
    assert jb.pop() == frame(2)


def test_duplicates_are_dropped() -> None:
    jb = JitterBuffer()
    assert jb.put(0, frame(0))
    assert jb.put(160, frame(1))
    assert jb.put(160, frame(1)) is False
    assert jb.put(0, frame(0)) is False
    assert jb.duplicates == 2
    assert len(jb) == 2


def test_timestamp_wraparound_is_seamless() -> None:
    jb = JitterBuffer(delay=160)
    start = 0xFFFFFFFF - 160 * 3 + 1
    out = []
    for i in range(8):
        jb.put((start + 160 * i) & 0xFFFFFFFF, frame(i))
        out.append(jb.pop())
    assert out == [None, *[frame(i) for i in range(7)]]


def test_explicit_play_out_timestamp() -> None:
    jb = JitterBuffer(delay=320)
    for i in range(4):
        jb.put(8000 + 160 * i, frame(i))
    assert jb.pop(8000 + 160) == frame(1)  # frame 0 is skipped (discarded as overtaken)
    assert jb.pop() == frame(2)  # the cursor continues from there


@pytest.mark.peers
@pytest.mark.skipif(not (PCAPS / "g711a.pcap").exists(), reason="sip-tester pcaps missing")
def test_30ms_captured_packets_come_out_as_exact_20ms_frames() -> None:
    packets = [RtpPacket.parse(d.payload) for d in pcaplib.read_udp(PCAPS / "g711a.pcap")]
    jb = JitterBuffer(delay=480, fill=0xD5)
    frames: list[bytes | None] = []
    # The media clock pops every 20 ms; packets come every 30 ms: 2 packets per 3 pops.
    for i, packet in enumerate(packets):
        assert jb.put(packet.timestamp, packet.payload)
        pops = 2 if i % 2 else 1
        frames.extend(jb.pop() for _ in range(pops))
    frames.extend(jb.pop() for _ in range(6))
    audio = b"".join(f for f in frames if f is not None)
    source = b"".join(p.payload for p in packets)
    assert all(f is None or len(f) == 160 for f in frames)
    assert audio.startswith(source)  # every sample, in order, none lost or repeated
    assert jb.late == 0
    assert jb.overflow == 0


def test_sender_jump_forward_resyncs() -> None:
    jb = JitterBuffer(delay=320, max_delay=1600)
    for i in range(5):
        jb.put(160 * i, frame(i))
        jb.pop()
    assert jb.put(10_000_000, frame(99))  # the sender restarted its clock
    out = [jb.pop() for _ in range(3)]
    assert out == [None, None, frame(99)]  # after the same delay as at the start
    assert jb.resyncs == 1


def test_run_of_late_packets_resyncs_backwards() -> None:
    jb = JitterBuffer(delay=320)
    for i in range(20):
        jb.put(100_000 + 160 * i, frame(i))
        jb.pop()
    # The sender's timestamps move back 1 s (non-compliant silence handling).
    results = [jb.put(92_000 + 160 * i, frame(50 + i)) for i in range(LATE_RESYNC)]
    assert results == [False] * (LATE_RESYNC - 1) + [True]
    assert jb.resyncs == 1
    assert jb.pop() is None
    assert jb.pop() is None
    assert jb.pop() == frame(50 + LATE_RESYNC - 1)


def test_fast_sender_is_bounded_by_max_delay() -> None:
    jb = JitterBuffer(delay=320, max_delay=960, capacity=100)
    for i in range(30):  # 30 frames arrive at once (burst after a stall)
        jb.put(160 * i, frame(i))
    first = jb.pop()
    # The cursor skipped to newest start - delay = 4640 - 320: frame 27.
    assert first == frame(27)
    assert jb.resyncs == 1
    assert jb.level <= 960


def test_capacity_bounds_memory() -> None:
    jb = JitterBuffer(delay=160, max_delay=10_000_000, capacity=8)
    for i in range(50):
        jb.put(160 * i, frame(i))
    assert len(jb) == 8
    assert jb.overflow == 42


def test_partial_overlap_fills_gaps_with_silence() -> None:
    jb = JitterBuffer(delay=0, max_delay=1600, fill=0xFF)
    jb.put(0, b"\x01" * 80)  # 10 ms packet, then a 10 ms hole
    jb.put(160, b"\x02" * 160)
    assert jb.pop() == b"\x01" * 80 + b"\xff" * 80
    assert jb.pop() == b"\x02" * 160


def test_invalid_configuration() -> None:
    with pytest.raises(ValueError, match="delay"):
        JitterBuffer(delay=2000, max_delay=1000)


@settings(max_examples=300)
@given(
    st.lists(
        st.one_of(
            st.tuples(st.just("put"), st.integers(0, 0xFFFFFFFF), st.integers(1, 400)),
            st.tuples(st.just("near"), st.integers(-2000, 4000), st.integers(1, 400)),
            st.tuples(st.just("pop"), st.just(0), st.just(0)),
        ),
        max_size=120,
    )
)
def test_random_traffic_keeps_the_invariants(ops: list[tuple[str, int, int]]) -> None:
    jb = JitterBuffer(capacity=16)
    base = 123_456
    for kind, value, size in ops:
        if kind == "put":
            jb.put(value, bytes(size))
        elif kind == "near":
            jb.put((base + value) & 0xFFFFFFFF, bytes(size))
        else:
            out = jb.pop()
            assert out is None or len(out) == 160
            base += 160
        assert len(jb) <= 16


def test_empty_buffer_and_empty_payload() -> None:
    jb = JitterBuffer()
    assert jb.level == 0
    assert jb.pop() is None
    assert jb.put(0, b"") is False
    assert jb.put(0, frame(0))
    assert jb.level == 160 + 480
