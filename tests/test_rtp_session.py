"""RTP session state (rtp/session.py): outgoing header state, RFC 3550 receiver stats, latching."""

from __future__ import annotations

import itertools
import random
import socket
from pathlib import Path

import pytest

import pcaplib
from callcenter112.rtp.packet import RtpPacket, parse_header
from callcenter112.rtp.rtcp import ReceiverReport, RtcpCompound, ntp_middle
from callcenter112.rtp.session import (
    LATCH_CANDIDATES,
    LATCH_WINDOW_PACKETS,
    IncomingStream,
    Latch,
    LatchVerdict,
    OutgoingStream,
)

PCAPS = Path("/usr/share/sip-tester")

# --- OutgoingStream -------------------------------------------------------------------------


def test_seeded_stream_is_reproducible_and_random_fields_differ() -> None:
    a = OutgoingStream(rng=random.Random(112))
    b = OutgoingStream(rng=random.Random(112))
    assert (a.ssrc, a.sequence_number, a.timestamp) == (b.ssrc, b.sequence_number, b.timestamp)
    c = OutgoingStream(rng=random.Random(113))
    assert (a.ssrc, a.sequence_number, a.timestamp) != (c.ssrc, c.sequence_number, c.timestamp)
    unseeded = {OutgoingStream().ssrc for _ in range(8)}
    assert len(unseeded) == 8


def test_sequence_and_timestamp_continue_across_prompts_gaps_and_wrap() -> None:
    stream = OutgoingStream(ssrc=0xCAFE, sequence_number=65534, timestamp=0xFFFFFF00)
    frames = [RtpPacket.parse(stream.next_packet(b"\xd5" * 160, 8)) for _ in range(3)]
    assert [p.sequence_number for p in frames] == [65534, 65535, 0]
    assert [p.timestamp for p in frames] == [0xFFFFFF00, 0xFFFFFFA0, 0x40]
    assert [p.marker for p in frames] == [True, False, False]
    assert all(p.ssrc == 0xCAFE and p.payload_type == 8 for p in frames)
    # A prompt change is just more frames: no marker, no jump.
    nxt = RtpPacket.parse(stream.next_packet(b"\xff" * 160, 0))
    assert (nxt.sequence_number, nxt.timestamp, nxt.marker) == (1, 0xE0, False)
    # Hold: 50 frames (1 s) not sent. Sequence continues, timestamp jumps 8000, marker set.
    for _ in range(50):
        stream.advance()
    resumed = RtpPacket.parse(stream.next_packet(b"\xd5" * 160, 8))
    assert resumed.sequence_number == 2
    assert resumed.timestamp == (0xE0 + 160 + 8000) & 0xFFFFFFFF
    assert resumed.marker is True
    forced = RtpPacket.parse(stream.next_packet(b"\xd5" * 80, 8, marker=True, samples=80))
    assert forced.marker is True
    after = RtpPacket.parse(stream.next_packet(b"\xd5" * 160, 8, marker=False))
    assert after.timestamp == forced.timestamp + 80
    assert stream.packets_sent == 7
    assert stream.octets_sent == 6 * 160 + 80


def test_event_packets_keep_their_timestamp_and_the_clock_runs() -> None:
    stream = OutgoingStream(ssrc=1, sequence_number=10, timestamp=1000)
    start = stream.timestamp
    first = RtpPacket.parse(
        stream.event_packet(b"\x05\x0a\x00\xa0", 101, timestamp=start, marker=True)
    )
    stream.advance()
    second = RtpPacket.parse(
        stream.event_packet(b"\x05\x0a\x01\x40", 101, timestamp=start, marker=False)
    )
    stream.advance()
    assert (first.timestamp, second.timestamp) == (1000, 1000)
    assert (first.sequence_number, second.sequence_number) == (10, 11)
    assert (first.marker, second.marker) == (True, False)
    audio = RtpPacket.parse(stream.next_packet(b"\xd5" * 160, 8))
    assert (audio.sequence_number, audio.timestamp, audio.marker) == (12, 1320, True)


def test_sender_report_carries_the_stream_counters() -> None:
    stream = OutgoingStream(ssrc=77, sequence_number=0, timestamp=5000)
    for _ in range(10):
        stream.next_packet(bytes(160), 0)
    sr = stream.sender_report(now_unix=1_700_000_000.0)
    assert (sr.ssrc, sr.packet_count, sr.octet_count, sr.rtp_timestamp) == (77, 10, 1600, 6600)
    wire = RtcpCompound(packets=(sr,)).serialize()
    assert RtcpCompound.parse(wire).packets == (sr,)


# --- IncomingStream: RFC 3550 A.1, A.3, A.8 -------------------------------------------------


def test_interarrival_jitter_matches_hand_computation() -> None:
    rx = IncomingStream()
    arrivals = [0.000, 0.020, 0.045, 0.060]  # the third packet is 5 ms late
    for i, at in enumerate(arrivals):
        assert rx.receive(9, 100 + i, 160 * i, 160, at)
    # D2 = 160-160 = 0      -> J = 0
    # D3 = 200-160 = 40     -> J = 40/16 = 2.5
    # D4 = 120-160 = -40    -> J = 2.5 + (40 - 2.5)/16 = 4.84375 timestamp units
    assert rx.jitter == pytest.approx(4.84375)
    stats = rx.stats()
    assert stats.jitter_ms == pytest.approx(4.84375 / 8)
    assert stats.max_jitter_ms == pytest.approx(4.84375 / 8)
    assert (stats.packets, stats.octets) == (4, 640)


def test_jitter_ignores_repeated_timestamps_and_untimed_packets() -> None:
    rx = IncomingStream()
    rx.receive(9, 1, 0, 160, 0.0)
    rx.receive(9, 2, 160, 160, 0.02)
    # RFC 4733 event packets: the same timestamp, arriving 20 ms apart.
    rx.receive(9, 3, 320, 4, 0.04, timed=False)
    rx.receive(9, 4, 320, 4, 0.06, timed=False)
    rx.receive(9, 5, 480, 160, 0.06)
    rx.receive(9, 6, 480, 160, 0.08)  # same timestamp: no jitter update
    assert rx.jitter == pytest.approx(0.0, abs=1e-9)


def test_timestamp_wrap_does_not_disturb_jitter() -> None:
    rx = IncomingStream()
    base = 0xFFFFFF00
    for i in range(6):
        rx.receive(9, i, (base + 160 * i) & 0xFFFFFFFF, 160, 100.0 + 0.02 * i)
    assert rx.jitter == pytest.approx(0.0, abs=1e-6)


def test_loss_duplicates_and_report_block_by_hand() -> None:
    rx = IncomingStream()
    # 100 is the probation packet; 103 and 104 are lost; 105 arrives twice.
    for seq in (100, 101, 102, 105, 105, 106, 107, 108, 109):
        assert rx.receive(0xAB, seq, seq * 160, 160, seq * 0.02)
    block = rx.report_block(now=3.0)
    assert block is not None
    # base_seq = 101 (A.1 re-inits on leaving probation): expected = 109 - 101 + 1 = 9.
    # received = 8 (duplicate counted, as A.1 does), lost = 1, fraction = 1*256 // 9 = 28.
    assert block.ssrc == 0xAB
    assert block.highest_sequence == 109
    assert block.packets_lost == 1
    assert block.fraction_lost == 28
    stats = rx.stats()
    assert (stats.expected, stats.lost, stats.packets) == (9, 1, 9)
    # Next interval: 110..119 all arrive: fraction 0, cumulative unchanged.
    for seq in range(110, 120):
        rx.receive(0xAB, seq, seq * 160, 160, seq * 0.02)
    block = rx.report_block(now=4.0)
    assert block is not None
    assert (block.fraction_lost, block.packets_lost, block.highest_sequence) == (0, 1, 119)


def test_sequence_wraparound_counts_cycles() -> None:
    rx = IncomingStream()
    for i, seq in enumerate((65533, 65534, 65535, 0, 1, 3)):
        rx.receive(5, seq, i * 160, 160, i * 0.02)
    block = rx.report_block(now=1.0)
    assert block is not None
    assert block.highest_sequence == 65536 + 3
    # base 65534: expected = 65539 - 65534 + 1 = 6, received 5 (seq 2 lost)
    assert block.packets_lost == 1
    assert rx.stats().expected == 6


def test_large_jump_is_a_restart_only_when_the_next_packet_follows() -> None:
    rx = IncomingStream()
    for seq in range(200, 210):
        assert rx.receive(5, seq, seq * 160, 160, seq * 0.02)
    assert rx.receive(5, 40000, 0, 160, 5.0) is False  # a stray: dropped
    assert rx.receive(5, 210, 210 * 160, 160, 5.02) is True  # the stream goes on
    assert rx.restarts == 0
    assert rx.receive(5, 50000, 0, 160, 6.0) is False
    assert rx.receive(5, 50001, 160, 160, 6.02) is True  # restart: re-sync
    assert rx.restarts == 1
    for seq in range(50002, 50010):
        rx.receive(5, seq, (seq - 50000) * 160, 160, 6.0 + (seq - 50000) * 0.02)
    stats = rx.stats()
    # first epoch: base 201..210 = 10 expected, 10 received; second: 50001..50009 = 9/9.
    assert (stats.expected, stats.lost, stats.restarts) == (19, 0, 1)
    block = rx.report_block(now=7.0)
    assert block is not None
    assert block.highest_sequence == 50009


def test_new_ssrc_restarts_validation_but_keeps_leg_totals() -> None:
    rx = IncomingStream()
    for seq in range(10, 20):
        rx.receive(1, seq, seq * 160, 160, seq * 0.02)
    assert rx.report_block(now=1.0) is not None
    rx.receive(2, 500, 0, 160, 1.0)
    assert rx.ssrc == 2
    assert rx.report_block(now=1.0) is None  # the new source is on probation
    for seq in range(501, 505):
        rx.receive(2, seq, (seq - 500) * 160, 160, 1.0 + (seq - 500) * 0.02)
    stats = rx.stats()
    assert stats.restarts == 1
    assert stats.packets == 15
    assert stats.expected == 9 + 4  # 11..19 and 501..504
    assert stats.lost == 0


def test_lsr_and_dlsr_follow_the_last_sender_report() -> None:
    sender = OutgoingStream(ssrc=42, sequence_number=0, timestamp=0)
    rx = IncomingStream()
    for _ in range(5):
        data = sender.next_packet(bytes(160), 0)
        _pt, _m, seq, ts, ssrc, start, end = parse_header(data)
        rx.receive(ssrc, seq, ts, end - start, 10.0 + seq * 0.02)
    sr = sender.sender_report(now_unix=1_700_000_000.5)
    rx.on_sender_report(sr, now=10.1)
    block = rx.report_block(now=10.6)
    assert block is not None
    assert block.last_sr == ntp_middle(sr.ntp_timestamp)
    assert block.delay_since_last_sr == 32768  # 0.5 s in 1/65536 s
    rr = ReceiverReport(ssrc=7, reports=(block,))
    assert RtcpCompound.parse(rr.serialize()).packets == (rr,)


@pytest.mark.peers
@pytest.mark.skipif(not (PCAPS / "g711a.pcap").exists(), reason="sip-tester pcaps missing")
def test_stats_of_a_captured_call_leg() -> None:
    datagrams = pcaplib.read_udp(PCAPS / "g711a.pcap")
    rx = IncomingStream()
    t0 = datagrams[0].time
    for d in datagrams:
        _pt, _m, seq, ts, ssrc, start, end = parse_header(d.payload)
        rx.receive(ssrc, seq, ts, end - start, d.time - t0)
    stats = rx.stats()
    assert stats.packets == 236
    assert stats.octets == 236 * 240
    assert stats.lost == 0
    assert stats.expected == 235  # the probation packet is not counted (A.1)
    # Recompute A.8 independently, in floating point, from the capture.
    jitter = 0.0
    for a, b in itertools.pairwise(datagrams):
        ta = RtpPacket.parse(a.payload).timestamp
        tb = RtpPacket.parse(b.payload).timestamp
        transit_change = (b.time - a.time) * 8000 - (tb - ta)
        jitter += (abs(transit_change) - jitter) / 16
    assert stats.jitter_ms == pytest.approx(jitter / 8, rel=1e-6)
    assert 0 < stats.jitter_ms < 5


# --- Latch ------------------------------------------------------------------------------------

CALLER = ("198.51.100.20", 40000)
ATTACKER = ("203.0.113.66", 41000)
PTS = (8, 0, 101)


def test_signalled_address_is_accepted_and_hijack_is_ignored() -> None:
    latch = Latch(CALLER, payload_types=PTS, now=0.0)
    assert latch.check(CALLER, 0x1111, 1, 8, 0.00) is LatchVerdict.ACCEPTED
    assert latch.check(CALLER, 0x1111, 2, 8, 0.02) is LatchVerdict.ACCEPTED
    # RTP-bleed style: well-formed, sequential, negotiated pt, inside the window, other SSRC.
    for seq in range(100, 110):
        assert latch.check(ATTACKER, 0x6666, seq, 8, 0.03) is LatchVerdict.IGNORED
    assert latch.remote == CALLER
    assert latch.ignored == 10
    assert latch.latches == 0


def test_nat_rebinding_with_the_known_ssrc_latches() -> None:
    latch = Latch(CALLER, payload_types=PTS, now=0.0)
    latch.check(CALLER, 0x1111, 1, 8, 0.0)
    moved = ("198.51.100.20", 40002)
    assert latch.check(moved, 0x1111, 2, 8, 0.02) is LatchVerdict.LATCHED
    assert latch.remote == moved
    assert latch.check(moved, 0x1111, 3, 8, 0.04) is LatchVerdict.ACCEPTED
    # The old address now is "another address": ignored unless it's the signalled one...
    assert latch.check(CALLER, 0x1111, 4, 8, 0.06) is LatchVerdict.LATCHED  # signalled wins
    assert latch.remote == CALLER


def test_caller_behind_nat_latches_after_probation() -> None:
    private = ("10.0.0.5", 4000)
    public = ("198.51.100.20", 31000)
    latch = Latch(private, payload_types=PTS, now=10.0)
    assert latch.check(public, 0x2222, 500, 8, 10.1) is LatchVerdict.IGNORED
    assert latch.check(public, 0x2222, 501, 8, 10.12) is LatchVerdict.IGNORED
    assert latch.check(public, 0x2222, 502, 8, 10.14) is LatchVerdict.LATCHED
    assert latch.remote == public
    assert latch.known_ssrc == 0x2222
    assert latch.check(public, 0x2222, 503, 8, 10.16) is LatchVerdict.ACCEPTED
    # Too late to steal it now, even if the attacker guessed nothing wrong but the SSRC.
    assert latch.check(ATTACKER, 0x6666, 1, 8, 10.2) is LatchVerdict.IGNORED


def test_random_spray_before_the_caller_never_latches() -> None:
    private = ("10.0.0.5", 4000)
    latch = Latch(private, payload_types=PTS, now=0.0)
    rng = random.Random(4)
    for i in range(200):
        source = ("203.0.113.66", rng.randrange(1024, 65536))
        verdict = latch.check(source, rng.getrandbits(32), rng.getrandbits(16), 8, i * 0.005)
        assert verdict is LatchVerdict.IGNORED
    assert latch.remote == private


def test_window_closes_after_two_seconds_or_enough_packets() -> None:
    latch = Latch(CALLER, payload_types=PTS, now=0.0)
    latch.check(CALLER, 0x1111, 1, 8, 0.0)
    moved = ("198.51.100.20", 40002)
    assert latch.check(moved, 0x1111, 2, 8, 2.0) is LatchVerdict.IGNORED  # 2 s: closed
    latch = Latch(CALLER, payload_types=PTS, now=0.0)
    for seq in range(LATCH_WINDOW_PACKETS):
        latch.check(CALLER, 0x1111, seq, 8, seq * 0.02 / 10)
    assert latch.check(moved, 0x1111, 99, 8, 0.5) is LatchVerdict.IGNORED  # 50 packets: closed


def test_unexpected_payload_type_or_disabled_latch_is_ignored() -> None:
    latch = Latch(CALLER, payload_types=PTS, now=0.0)
    latch.check(CALLER, 0x1111, 1, 8, 0.0)
    moved = ("198.51.100.20", 40002)
    assert latch.check(moved, 0x1111, 2, 96, 0.02) is LatchVerdict.IGNORED
    fixed = Latch(CALLER, payload_types=PTS, now=0.0, enabled=False)
    fixed.check(CALLER, 0x1111, 1, 8, 0.0)
    assert fixed.check(moved, 0x1111, 2, 8, 0.02) is LatchVerdict.IGNORED
    assert fixed.check(CALLER, 0x1111, 3, 8, 0.04) is LatchVerdict.ACCEPTED


def test_retarget_opens_a_new_window() -> None:
    latch = Latch(CALLER, payload_types=PTS, now=0.0)
    latch.check(CALLER, 0x1111, 1, 8, 0.0)
    new = ("198.51.100.99", 50000)
    latch.retarget(new, now=60.0)
    assert latch.remote == new
    assert latch.check(CALLER, 0x1111, 2, 8, 60.01) is LatchVerdict.IGNORED  # probation
    assert latch.check(new, 0x3333, 1, 8, 60.02) is LatchVerdict.ACCEPTED


def test_latching_over_real_loopback_sockets() -> None:
    """Real datagrams: the latch and the receiver see the kernel's source address."""
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as server,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as phone,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as intruder,
    ):
        for s in (server, phone, intruder):
            s.bind(("127.0.0.1", 0))
            s.settimeout(5.0)
        signalled = ("127.0.0.1", 9)  # what the SDP said; the phone really sends from elsewhere
        latch = Latch(signalled, payload_types=PTS, now=0.0)
        rx = IncomingStream()
        sender = OutgoingStream(rng=random.Random(1))
        hijacker = OutgoingStream(rng=random.Random(2))
        verdicts = []
        for i in range(6):
            phone.sendto(sender.next_packet(b"\xd5" * 160, 8), server.getsockname())
            intruder.sendto(hijacker.next_packet(b"\x00" * 160, 8), server.getsockname())
            for _ in range(2):
                data, source = server.recvfrom(2048)
                pt, _m, seq, ts, ssrc, start, end = parse_header(data)
                verdict = latch.check(source, ssrc, seq, pt, i * 0.02)
                verdicts.append((source, verdict))
                if verdict is not LatchVerdict.IGNORED:
                    rx.receive(ssrc, seq, ts, end - start, i * 0.02)
        # Both raced from the start, interleaved; the phone's third packet came first,
        # so it completed probation and was latched; the intruder never got in.
        assert latch.remote == phone.getsockname()
        accepted = {src for src, v in verdicts if v is not LatchVerdict.IGNORED}
        assert accepted == {phone.getsockname()}
        assert latch.latches == 1
        assert latch.ignored == 2 + 6  # the phone's two probation packets, all the intruder's
        assert rx.stats().packets == 4  # packets 3..6 of the phone


def test_probation_survives_interleaving_and_a_spray_of_sources() -> None:
    private = ("10.0.0.5", 4000)
    public = ("198.51.100.20", 31000)
    latch = Latch(private, payload_types=PTS, now=0.0)
    rng = random.Random(9)
    verdicts = []
    for seq in range(3):
        verdicts.append(latch.check(public, 0x2222, 700 + seq, 8, seq * 0.02))
        for _ in range(20):  # 20 one-off sources (1000 packets/s) between the caller's
            source = ("203.0.113.66", rng.randrange(1024, 65536))
            assert latch.check(source, rng.getrandbits(32), 1, 8, seq * 0.02) is (
                LatchVerdict.IGNORED
            )
    assert verdicts == [LatchVerdict.IGNORED, LatchVerdict.IGNORED, LatchVerdict.LATCHED]
    assert latch.remote == public


def test_probation_restarts_on_out_of_order_and_stats_before_validation() -> None:
    rx = IncomingStream()
    rx.receive(3, 10, 0, 160, 0.0)
    assert rx.stats().expected == 0  # nothing validated yet
    assert rx.report_block(now=0.0) is None
    rx.receive(3, 20, 1600, 160, 0.2)  # not in sequence: probation starts over (A.1)
    assert rx.report_block(now=0.2) is None
    rx.receive(3, 21, 1760, 160, 0.22)  # in sequence with 20: valid from here
    block = rx.report_block(now=0.3)
    assert block is not None
    assert (block.highest_sequence, block.packets_lost) == (21, 0)


def test_start_talk_spurt_sets_the_next_marker() -> None:
    stream = OutgoingStream(ssrc=1, sequence_number=0, timestamp=0)
    stream.next_packet(b"\xd5", 8, samples=1)
    stream.start_talk_spurt()
    assert RtpPacket.parse(stream.next_packet(b"\xd5", 8, samples=1)).marker
    assert not RtpPacket.parse(stream.next_packet(b"\xd5", 8, samples=1)).marker


def test_full_candidate_table_ignores_new_sources_but_keeps_the_tracked_ones() -> None:
    latch = Latch(("10.0.0.5", 4000), payload_types=PTS, now=0.0)
    for port in range(LATCH_CANDIDATES):  # every slot halfway through probation
        for seq in (1, 2):
            source = ("203.0.113.1", 20000 + port)
            assert latch.check(source, port, seq, 8, 0.0) is LatchVerdict.IGNORED
    newcomer = ("198.51.100.20", 31000)
    for seq in (1, 2, 3):
        assert latch.check(newcomer, 77, seq, 8, 0.0) is LatchVerdict.IGNORED
    assert latch.check(("203.0.113.1", 20005), 5, 3, 8, 0.0) is LatchVerdict.LATCHED
