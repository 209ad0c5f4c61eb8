"""RFC 4733 telephone-events and SIP INFO digits (rtp/dtmf.py)."""

from __future__ import annotations

import itertools
import random
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import pcaplib
from callcenter112.rtp.dtmf import (
    END_REPEATS,
    DtmfReceiver,
    DtmfSender,
    TelephoneEvent,
    digit_from_info,
    event_for_digit,
    plan_digit,
)
from callcenter112.rtp.events import DigitReceived
from callcenter112.rtp.packet import RtpError, RtpPacket
from callcenter112.rtp.session import OutgoingStream

PCAPS = Path("/usr/share/sip-tester")
PCAP_DIGITS = {**{str(n): str(n) for n in range(10)}, "star": "*", "pound": "#"}


def receive_all(packets: list[RtpPacket], receiver: DtmfReceiver | None = None) -> list[str]:
    receiver = receiver or DtmfReceiver()
    digits = []
    for i, p in enumerate(packets):
        event = receiver.receive(
            p.payload, ssrc=p.ssrc, timestamp=p.timestamp, marker=p.marker, now=i * 0.02
        )
        if event is not None:
            digits.append(event.digit)
    return digits


def pcap_packets(name: str) -> list[RtpPacket]:
    return [RtpPacket.parse(d.payload) for d in pcaplib.read_udp(PCAPS / f"dtmf_2833_{name}.pcap")]


needs_pcaps = pytest.mark.skipif(
    not (PCAPS / "dtmf_2833_0.pcap").exists(), reason="sip-tester pcaps missing"
)


@pytest.mark.peers
@needs_pcaps
@pytest.mark.parametrize("name", sorted(PCAP_DIGITS))
def test_each_sipp_capture_yields_its_digit_exactly_once(name: str) -> None:
    packets = pcap_packets(name)
    assert {p.payload_type for p in packets} == {101}
    assert receive_all(packets) == [PCAP_DIGITS[name]]


@pytest.mark.peers
@needs_pcaps
def test_capture_details_and_event_fields() -> None:
    packets = pcap_packets("5")
    events = [TelephoneEvent.parse(p.payload) for p in packets]
    assert packets[0].marker and not any(p.marker for p in packets[1:])
    assert {p.timestamp for p in packets} == {packets[0].timestamp}
    assert [e.duration for e in events[:3]] == [0, 320, 640]
    assert [e.end for e in events] == [False] * 7 + [True] * 3
    assert all(e.event == 5 and e.volume == 10 for e in events)
    assert events[-1].serialize() == packets[-1].payload
    first = DtmfReceiver().receive(
        packets[0].payload,
        ssrc=packets[0].ssrc,
        timestamp=packets[0].timestamp,
        marker=True,
        now=12.5,
    )
    assert first == DigitReceived(
        digit="5", source="rfc4733", at=12.5, rtp_timestamp=packets[0].timestamp, duration_ms=0
    )


@pytest.mark.peers
@needs_pcaps
def test_captures_back_to_back_and_lossy() -> None:
    receiver = DtmfReceiver()
    digits: list[str] = []
    rng = random.Random(2)
    for k, name in enumerate(("1", "1", "2", "star", "pound", "0")):
        # Each capture has its own clock; put the presses one second apart on ours,
        # so the same capture twice is two presses.
        packets = [
            RtpPacket(
                payload_type=p.payload_type,
                sequence_number=p.sequence_number,
                timestamp=8000 * (k + 1),
                ssrc=p.ssrc,
                marker=p.marker,
                payload=p.payload,
            )
            for p in pcap_packets(name)
        ]
        lost_start = packets[rng.randrange(1, 4) :]  # the start packet (and more) lost
        digits += receive_all(lost_start, receiver)
    assert digits == ["1", "1", "2", "*", "#", "0"]


def packets_for(digit: str, timestamp: int, *, start_seq: int = 0) -> list[RtpPacket]:
    plan = [e for e in plan_digit(digit) if e is not None]
    return [
        RtpPacket(
            payload_type=101,
            sequence_number=start_seq + i,
            timestamp=timestamp,
            ssrc=7,
            marker=i == 0,
            payload=e.serialize(),
        )
        for i, e in enumerate(plan)
    ]


def test_late_end_packets_of_a_previous_press_do_not_repeat_it() -> None:
    first = packets_for("4", 1000)
    second = packets_for("4", 9000, start_seq=20)
    stream = first[:-2] + second[:2] + first[-2:] + second[2:]  # reordered across presses
    assert receive_all(stream) == ["4", "4"]


def test_flash_and_unknown_events_are_ignored() -> None:
    receiver = DtmfReceiver()
    flash = TelephoneEvent(event=16, duration=800).serialize()
    assert receiver.receive(flash, ssrc=1, timestamp=0, marker=True, now=0) is None
    other = TelephoneEvent(event=70).serialize()
    assert receiver.receive(other, ssrc=1, timestamp=800, marker=True, now=0) is None
    star = TelephoneEvent(event=10).serialize()
    result = receiver.receive(star, ssrc=1, timestamp=1600, marker=True, now=0)
    assert result is not None and result.digit == "*"


def test_long_press_is_one_digit_even_across_segments() -> None:
    """RFC 4733 §2.5.1.3: a press beyond 0xFFFF samples continues with a new timestamp."""
    receiver = DtmfReceiver()
    ts = 50_000
    events = []
    for duration in range(160, 0xFFFF, 1600):  # first segment
        events.append((ts, TelephoneEvent(event=9, duration=duration)))
    events.append((ts, TelephoneEvent(event=9, duration=0xFFFF)))
    ts2 = ts + 0xFFFF
    for duration in range(160, 8000, 1600):  # continuation: new timestamp, no marker
        events.append((ts2, TelephoneEvent(event=9, duration=duration)))
    events += [(ts2, TelephoneEvent(event=9, end=True, duration=8000))] * END_REPEATS
    results = [
        receiver.receive(e.serialize(), ssrc=3, timestamp=t, marker=i == 0, now=0.0)
        for i, (t, e) in enumerate(events)
    ]
    assert [r.digit for r in results if r is not None] == ["9"]


def test_new_ssrc_starts_a_new_timestamp_space() -> None:
    receiver = DtmfReceiver()
    payload = TelephoneEvent(event=1).serialize()
    assert receiver.receive(payload, ssrc=1, timestamp=90_000, marker=True, now=0) is not None
    # Another source whose clock happens to be "behind" ours: still a new press.
    assert receiver.receive(payload, ssrc=2, timestamp=10, marker=True, now=0) is not None


def test_short_payload_raises_rtp_error() -> None:
    with pytest.raises(RtpError):
        DtmfReceiver().receive(b"\x05\x0a\x00", ssrc=1, timestamp=0, marker=True, now=0)


def test_plan_of_one_digit() -> None:
    plan = plan_digit("#", duration_ms=100, volume=12)
    # 100 ms = 5 ticks of 20 ms: start, updates ~every 50 ms, end on the last tone tick + 2.
    assert len(plan) == 5 + 2
    sent = [e for e in plan if e is not None]
    assert sent[0] == TelephoneEvent(event=11, volume=12, duration=160)
    assert [e.duration for e in sent] == [160, 640, 800, 800, 800]
    assert plan[1] is None and plan[2] is None  # no update before 50 ms have passed
    assert [e.end for e in sent] == [False, False, True, True, True]
    with pytest.raises(ValueError, match="not a DTMF digit"):
        plan_digit("x")
    with pytest.raises(ValueError, match="segment"):
        plan_digit("1", duration_ms=9000)


def test_sender_to_receiver_round_trip_with_audio_around_it() -> None:
    stream = OutgoingStream(ssrc=0xD7, sequence_number=65530, timestamp=0xFFFFF000)
    sender = DtmfSender(payload_type=101)
    wire: list[bytes] = [stream.next_packet(b"\xd5" * 160, 8) for _ in range(3)]
    sender.send("112*#")
    ticks = 0
    while True:
        packets = sender.tick(stream)
        if packets is None:
            break
        wire.extend(packets)
        ticks += 1
        assert ticks < 500
    wire.append(stream.next_packet(b"\xd5" * 160, 8))
    parsed = [RtpPacket.parse(w) for w in wire]
    seqs = [p.sequence_number for p in parsed]
    assert all((b - a) & 0xFFFF == 1 for a, b in itertools.pairwise(seqs))
    events = [p for p in parsed if p.payload_type == 101]
    assert sum(p.marker for p in events) == 5  # one start per digit
    receiver = DtmfReceiver()
    digits = [
        r.digit
        for p in events
        if (
            r := receiver.receive(
                p.payload, ssrc=p.ssrc, timestamp=p.timestamp, marker=p.marker, now=0.0
            )
        )
        is not None
    ]
    assert digits == ["1", "1", "2", "*", "#"]
    # Digit timestamps sit on the stream clock; audio after them continues it.
    starts = sorted({p.timestamp for p in events}, key=lambda t: (t - 0xFFFFF000) & 0xFFFFFFFF)
    first_start = (0xFFFFF000 + 3 * 160) & 0xFFFFFFFF
    assert starts[0] == first_start
    per_digit = (5 + 2) * 160 + 5 * 160  # tone + end repeats, then the 100 ms pause
    assert [(s - first_start) & 0xFFFFFFFF for s in starts] == [per_digit * i for i in range(5)]
    last_audio = parsed[-1]
    assert last_audio.marker  # a new talk spurt after the digits
    assert last_audio.timestamp == (first_start + 4 * per_digit + 7 * 160) & 0xFFFFFFFF
    assert not sender.busy


def test_sender_is_idle_without_digits_and_rejects_bad_ones() -> None:
    stream = OutgoingStream(rng=random.Random(1))
    sender = DtmfSender()
    assert sender.tick(stream) is None
    with pytest.raises(ValueError, match="not a DTMF digit"):
        sender.send("12x")
    assert not sender.busy
    assert event_for_digit("d") == 15


@pytest.mark.parametrize(
    ("content_type", "body", "digit", "duration"),
    [
        ("application/dtmf-relay", "Signal=5\r\nDuration=160\r\n", "5", 160),
        ("Application/DTMF-Relay; charset=utf-8", "signal= *\nduration=250", "*", 250),
        ("application/dtmf-relay", b"Signal=#\r\nDuration=100", "#", 100),
        ("application/dtmf-relay", "Signal=11\r\nDuration=100", "#", 100),
        ("application/dtmf-relay", "Signal=d\r\n", "D", None),
        ("application/dtmf-relay", "Signal=3\r\nDuration=abc", "3", None),
        ("application/dtmf", "5", "5", None),
        ("application/dtmf", " 10\r\n", "*", None),
    ],
)
def test_sip_info_bodies(content_type: str, body: str, digit: str, duration: int | None) -> None:
    assert digit_from_info(content_type, body, now=3.0) == DigitReceived(
        digit=digit, source="info", at=3.0, duration_ms=duration
    )


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/dtmf-relay", "Duration=160"),
        ("application/dtmf-relay", "Signal=16\r\nDuration=160"),  # flash
        ("application/dtmf-relay", "Signal=55"),
        ("application/dtmf", ""),
        ("application/dtmf", "12"),
        ("text/plain", "Signal=5"),
        ("application/sdp", "v=0"),
    ],
)
def test_sip_info_without_a_digit(content_type: str, body: str) -> None:
    assert digit_from_info(content_type, body, now=0.0) is None


@settings(max_examples=1000)
@given(st.lists(st.tuples(st.binary(max_size=8), st.integers(0, 2**32 - 1), st.booleans())))
def test_arbitrary_event_packets_never_crash(packets: list[tuple[bytes, int, bool]]) -> None:
    receiver = DtmfReceiver()
    for payload, ts, marker in packets:
        try:
            result = receiver.receive(payload, ssrc=1, timestamp=ts, marker=marker, now=0.0)
        except RtpError:
            assert len(payload) < 4
            continue
        assert result is None or result.digit in "0123456789*#ABCD"


@settings(max_examples=1000)
@given(st.text(max_size=40), st.sampled_from(["application/dtmf-relay", "application/dtmf"]))
def test_arbitrary_info_bodies_never_crash(body: str, content_type: str) -> None:
    result = digit_from_info(content_type, body, now=0.0)
    assert result is None or result.digit in "0123456789*#ABCD"


def test_event_payload_layout() -> None:
    assert TelephoneEvent(event=11, end=True, volume=63, duration=0xFFFF).serialize() == (
        struct.pack("!BBH", 11, 0x80 | 63, 0xFFFF)
    )
    with pytest.raises(ValueError, match="16 bits"):
        TelephoneEvent(event=1, duration=0x10000).serialize()
