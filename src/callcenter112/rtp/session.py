"""RTP session state for one call leg: what we send, what we receive, and where to send it.

This module owns the per-leg RTP state that outlives a single packet:

* `OutgoingStream` — our SSRC, sequence number and timestamp clock (RFC 3550
  §5.1). The timestamp is a sample clock: it advances by 160 per 20 ms frame
  whether or not a packet goes out, so a silence or hold gap on the wire is a
  gap in timestamps, and prompts switching mid-call never jump it. The marker
  bit goes on the first packet of each talk spurt (RFC 3551 §4.1).
* `IncomingStream` — the receiver side of RFC 3550 Appendix A: A.1 sequence
  validation (probation, wrap-around, re-sync after a large jump), A.3
  expected/lost and fraction lost, A.8 interarrival jitter; it turns these into
  report blocks for RR/SR and `StreamStats` for the incident record.
* `Latch` — symmetric RTP (RFC 4961): which address our media goes to, and
  which source addresses we accept media from. The rule is spelled out on the
  class; it is the defence against "RTP bleed" style injection.

Theory of operation (sequence validation, quoting RFC 3550 §A.1): "a source is
declared valid only after MIN_SEQUENTIAL packets have been received in
sequence"; "a jump of more than MAX_DROPOUT ahead or MAX_MISORDER behind" is
taken as a restart of the sender only when the very next packet continues from
it (`bad_seq`). Packets are not discarded during probation here (see
`IncomingStream.receive`): probation gates the statistics, not the audio — the
first words of a 112 caller are not thrown away.

Pure: no clock reads, no sockets. Time comes in as `now` (seconds, the loop
clock) and randomness from `secrets` or a caller-supplied `random.Random`.
"""

from __future__ import annotations

import enum
import random
import secrets
import struct
from collections.abc import Collection
from dataclasses import dataclass
from typing import TypeAlias

from .packet import RTP_VERSION
from .rtcp import MAX_LOST, MIN_LOST, ReportBlock, SenderReport, ntp_middle, ntp_timestamp

__all__ = [
    "LATCH_CANDIDATES",
    "LATCH_PROBATION",
    "LATCH_WINDOW_PACKETS",
    "LATCH_WINDOW_SECONDS",
    "MAX_DROPOUT",
    "MAX_MISORDER",
    "MIN_SEQUENTIAL",
    "Address",
    "IncomingStream",
    "Latch",
    "LatchVerdict",
    "OutgoingStream",
    "StreamStats",
]

Address: TypeAlias = tuple[str, int]

RTP_SEQ_MOD = 1 << 16  # RFC 3550 §A.1
RTP_TS_MOD = 1 << 32  # RFC 3550 §5.1: 32-bit timestamp
MAX_DROPOUT = 3000  # RFC 3550 §A.1
MAX_MISORDER = 100  # RFC 3550 §A.1
MIN_SEQUENTIAL = 2  # RFC 3550 §A.1
FRAME_SAMPLES = 160  # 20 ms at 8000 Hz: the G.711 packetization we send (RFC 3551 §4.5)
DEFAULT_CLOCK_RATE = 8000  # RFC 3551 §6, Table 4: PCMU/PCMA and telephone-event (RFC 4733)

# Symmetric-RTP latching window (see `Latch`). Two seconds covers a NAT binding being
# created by the caller's first packets even on a slow mobile uplink; 50 packets is
# one second of 20 ms audio from the signalled address, after which the flow is settled.
LATCH_WINDOW_SECONDS = 2.0
LATCH_WINDOW_PACKETS = 50
# A never-seen source must send this many consecutive packets (one SSRC, sequence +1)
# before we latch onto it; as Asterisk's strictrtp "probation" (CVE-2017-14099 fix).
LATCH_PROBATION = 3
LATCH_CANDIDATES = 32  # sources tracked at once during probation (bounded memory)

_FIXED = struct.Struct("!BBHII")


def _random_bits(rng: random.Random | None, bits: int) -> int:
    return rng.getrandbits(bits) if rng is not None else secrets.randbits(bits)


def _signed32(delta: int) -> int:
    """A 32-bit timestamp difference taken modulo 2**32 into -2**31..2**31-1."""
    delta &= 0xFFFF_FFFF
    return delta - RTP_TS_MOD if delta & 0x8000_0000 else delta


class OutgoingStream:
    """Header state of one RTP stream we send (RFC 3550 §5.1).

    SSRC, first sequence number and first timestamp are random (§5.1: "SHOULD
    be random"); pass `rng` (a seeded `random.Random`) for reproducible tests,
    or fixed values. `sequence_number` and `timestamp` are those of the *next*
    packet. Counters feed the sender report (§6.4.1).
    """

    __slots__ = (
        "_talk_spurt",
        "octets_sent",
        "packets_sent",
        "sequence_number",
        "ssrc",
        "timestamp",
    )

    def __init__(
        self,
        *,
        ssrc: int | None = None,
        sequence_number: int | None = None,
        timestamp: int | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.ssrc = _random_bits(rng, 32) if ssrc is None else ssrc & 0xFFFF_FFFF
        self.sequence_number = (
            _random_bits(rng, 16) if sequence_number is None else sequence_number & 0xFFFF
        )
        self.timestamp = _random_bits(rng, 32) if timestamp is None else timestamp & 0xFFFF_FFFF
        self.packets_sent = 0
        self.octets_sent = 0  # payload octets, as the SR counts them (§6.4.1)
        self._talk_spurt = True

    def next_packet(
        self, payload: bytes, pt: int, *, marker: bool | None = None, samples: int = FRAME_SAMPLES
    ) -> bytes:
        """The wire bytes of the next packet carrying `payload`; the clock then moves `samples`.

        `marker=None` sets the marker bit on the first packet of a talk spurt:
        the stream's first packet and the first one after `advance()` skipped
        time (RFC 3551 §4.1). Pass True/False to override.
        """
        if marker is None:
            marker = self._talk_spurt
        self._talk_spurt = False
        sequence_number = self.sequence_number
        timestamp = self.timestamp
        self.sequence_number = (sequence_number + 1) & 0xFFFF
        self.timestamp = (timestamp + samples) & 0xFFFF_FFFF
        self.packets_sent += 1
        self.octets_sent += len(payload)
        return (
            _FIXED.pack(0x80, pt | 0x80 if marker else pt, sequence_number, timestamp, self.ssrc)
            + payload
        )

    def event_packet(self, payload: bytes, pt: int, *, timestamp: int, marker: bool) -> bytes:
        """A packet stamped with an explicit `timestamp`; the clock does not move.

        For RFC 4733 telephone-events, whose every packet carries the event's
        start time (§2.3.1) while the stream clock keeps running via `advance()`.
        """
        sequence_number = self.sequence_number
        self.sequence_number = (sequence_number + 1) & 0xFFFF
        self.packets_sent += 1
        self.octets_sent += len(payload)
        return (
            _FIXED.pack(
                RTP_VERSION << 6,
                pt | 0x80 if marker else pt,
                sequence_number,
                timestamp & 0xFFFF_FFFF,
                self.ssrc,
            )
            + payload
        )

    def advance(self, samples: int = FRAME_SAMPLES) -> None:
        """Let `samples` of time pass without sending (silence, hold, a DTMF event).

        The next `next_packet()` then starts a new talk spurt (marker bit).
        """
        self.timestamp = (self.timestamp + samples) & 0xFFFF_FFFF
        self._talk_spurt = True

    def start_talk_spurt(self) -> None:
        """Mark the next packet as the start of a talk spurt."""
        self._talk_spurt = True

    def sender_report(
        self, *, now_unix: float, reports: tuple[ReportBlock, ...] = ()
    ) -> SenderReport:
        """An SR (§6.4.1) pairing wall-clock `now_unix` with the stream's clock now."""
        return SenderReport(
            ssrc=self.ssrc,
            ntp_timestamp=ntp_timestamp(now_unix),
            rtp_timestamp=self.timestamp,
            packet_count=self.packets_sent & 0xFFFF_FFFF,
            octet_count=self.octets_sent & 0xFFFF_FFFF,
            reports=reports,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamStats:
    """Reception statistics of one leg, for the incident record.

    `packets`/`octets` count every datagram handed to `IncomingStream.receive`
    (octets = payload octets); `expected` and `lost` follow RFC 3550 §A.3
    summed over every source/restart the leg saw (as there, a duplicate
    offsets a loss; `lost` is clamped at 0); jitter is the §A.8 estimate in ms.
    """

    packets: int
    octets: int
    expected: int
    lost: int
    jitter_ms: float
    max_jitter_ms: float
    restarts: int


class IncomingStream:
    """Receiver state for the media arriving on one leg (RFC 3550 §A.1, §A.3, §A.8).

    One instance per leg, not per SSRC: a new SSRC (a carrier switching
    sources, a re-INVITE) restarts validation and the per-source counters,
    while the leg totals in `stats()` keep accumulating.
    """

    __slots__ = (
        "_arrival",
        "_bad_seq",
        "_base_seq",
        "_clock_rate",
        "_cycles",
        "_expected_before",
        "_expected_prior",
        "_last_sr",
        "_last_sr_at",
        "_max_seq",
        "_probation",
        "_received",
        "_received_before",
        "_received_prior",
        "_rtp_ts",
        "jitter",
        "max_jitter",
        "octets",
        "packets",
        "restarts",
        "ssrc",
    )

    def __init__(self, *, clock_rate: int = DEFAULT_CLOCK_RATE) -> None:
        self._clock_rate = clock_rate
        self.ssrc: int | None = None
        self.packets = 0
        self.octets = 0
        self.restarts = 0
        self.jitter = 0.0  # §A.8 estimate, in timestamp units
        self.max_jitter = 0.0
        self._expected_before = 0  # totals of earlier sources/epochs on this leg
        self._received_before = 0
        self._arrival: float | None = None  # arrival (timestamp units) of the last timed packet
        self._rtp_ts = 0
        self._last_sr = 0
        self._last_sr_at: float | None = None
        self._init_seq(0)
        self._probation = MIN_SEQUENTIAL

    def _init_seq(self, seq: int) -> None:  # RFC 3550 §A.1 init_seq()
        self._base_seq = seq
        self._max_seq = seq
        self._bad_seq = RTP_SEQ_MOD + 1  # so seq == bad_seq is false
        self._cycles = 0
        self._received = 0
        self._received_prior = 0
        self._expected_prior = 0
        self._probation = 0

    def _fold_epoch(self) -> None:
        """Carry the current source's counts into the leg totals before starting over."""
        self._expected_before += self._expected()
        self._received_before += self._received

    def _new_source(self, ssrc: int, seq: int) -> None:
        if self.ssrc is not None:
            self._fold_epoch()
            self.restarts += 1
        self.ssrc = ssrc
        self._init_seq(seq)
        self._max_seq = (seq - 1) & 0xFFFF
        self._probation = MIN_SEQUENTIAL
        self._last_sr_at = None
        self._arrival = None

    def _expected(self) -> int:
        if self._probation:
            return 0
        return self._cycles + self._max_seq - self._base_seq + 1

    def receive(
        self, ssrc: int, seq: int, timestamp: int, size: int, now: float, *, timed: bool = True
    ) -> bool:
        """Account for one received packet; False if RFC 3550 §A.1 says it is not (yet) valid.

        False only for the first packet after a jump too large to be loss or
        reordering: the caller drops it; if the next packet continues from it,
        the sender restarted and the stream re-syncs. Probation and duplicate
        packets return True (play them; the jitter buffer drops duplicates).
        `size` is the payload length. `timed=False` leaves the packet out of
        the jitter estimate: RFC 4733 event packets repeat the event's start
        timestamp, so their timestamp is not their sampling instant.
        """
        self.packets += 1
        self.octets += size
        if ssrc != self.ssrc:
            self._new_source(ssrc, seq)
        valid = self._update_seq(seq)
        if timed:
            arrival = now * self._clock_rate
            if self._arrival is not None and timestamp != self._rtp_ts:
                # §A.8: D(i-1,i) = (Rj - Ri) - (Sj - Si), the timestamp difference taken mod 2**32.
                d = arrival - self._arrival - _signed32(timestamp - self._rtp_ts)
                jitter = self.jitter + (abs(d) - self.jitter) / 16.0
                self.jitter = jitter
                if jitter > self.max_jitter:  # noqa: PLR1730 - hot path: cheaper than max()
                    self.max_jitter = jitter
            self._arrival = arrival
            self._rtp_ts = timestamp
        return valid

    def _update_seq(self, seq: int) -> bool:  # RFC 3550 §A.1 update_seq(), transcribed
        udelta = (seq - self._max_seq) & 0xFFFF
        if self._probation:
            if seq == (self._max_seq + 1) & 0xFFFF:
                self._probation -= 1
                self._max_seq = seq
                if self._probation == 0:
                    self._init_seq(seq)
                    self._received += 1
                return True
            self._probation = MIN_SEQUENTIAL - 1
            self._max_seq = seq
            return True
        if udelta < MAX_DROPOUT:
            if seq < self._max_seq:
                self._cycles += RTP_SEQ_MOD  # wrapped: another 64K cycle
            self._max_seq = seq
        elif udelta <= RTP_SEQ_MOD - MAX_MISORDER:
            if seq != self._bad_seq:
                self._bad_seq = (seq + 1) & 0xFFFF
                return False
            # Two sequential packets after a big jump: the sender restarted; re-sync.
            self._fold_epoch()
            self.restarts += 1
            self._init_seq(seq)
        # else: duplicate or reordered packet, counted as received (§A.1)
        self._received += 1
        return True

    def on_sender_report(self, report: SenderReport, now: float) -> None:
        """Remember an SR from our source for the LSR/DLSR fields (§6.4.1)."""
        if report.ssrc == self.ssrc:
            self._last_sr = ntp_middle(report.ntp_timestamp)
            self._last_sr_at = now

    def report_block(self, now: float) -> ReportBlock | None:
        """The §6.4.1 reception report for our current source, None before one is valid.

        Advances the "prior" counters, so the next block's fraction lost
        covers only the interval since this one (§A.3).
        """
        if self.ssrc is None or self._probation:
            return None
        expected = self._expected()
        lost = max(MIN_LOST, min(MAX_LOST, expected - self._received))
        expected_interval = expected - self._expected_prior
        self._expected_prior = expected
        received_interval = self._received - self._received_prior
        self._received_prior = self._received
        lost_interval = expected_interval - received_interval
        fraction = 0
        if expected_interval and lost_interval > 0:
            fraction = (lost_interval << 8) // expected_interval
        dlsr = 0
        if self._last_sr_at is not None:
            dlsr = max(0, min(0xFFFF_FFFF, int((now - self._last_sr_at) * 65536)))
        return ReportBlock(
            ssrc=self.ssrc,
            fraction_lost=fraction,
            packets_lost=lost,
            highest_sequence=(self._cycles + self._max_seq) & 0xFFFF_FFFF,
            jitter=min(int(self.jitter), 0xFFFF_FFFF),
            last_sr=self._last_sr if self._last_sr_at is not None else 0,
            delay_since_last_sr=dlsr,
        )

    def stats(self) -> StreamStats:
        """Leg totals so far (all sources and restarts)."""
        expected = self._expected_before + self._expected()
        received = self._received_before + self._received
        per_ms = self._clock_rate / 1000.0
        return StreamStats(
            packets=self.packets,
            octets=self.octets,
            expected=expected,
            lost=max(0, expected - received),
            jitter_ms=self.jitter / per_ms,
            max_jitter_ms=self.max_jitter / per_ms,
            restarts=self.restarts,
        )


class LatchVerdict(enum.Enum):
    """What to do with a received packet, by its source address."""

    ACCEPTED = "accepted"  # from the address we send to: use it
    LATCHED = "latched"  # use it; our send address has just moved to its source (log this)
    IGNORED = "ignored"  # not our peer's media: drop it (already counted in `Latch.ignored`)


class Latch:
    """Symmetric RTP (RFC 4961) with a narrow learning window: where our media goes.

    The rule, in order, for a packet from `source` carrying `ssrc`, `seq`, `pt`:

    1. From the current send address (initially the SDP-signalled one):
       accepted. Its SSRC becomes the *known SSRC* of the flow.
    2. Otherwise it is ignored (and counted) unless the *learning window* is
       open: latching is enabled, fewer than `window_packets` packets have been
       accepted, and less than `window_seconds` have passed since the media
       address was signalled (`now` at construction or `retarget`). It must
       also carry one of the negotiated payload types.
    3. From the signalled address while we had latched elsewhere: the signalled
       address wins, the send address moves back (LATCHED).
    4. From any other address, with a known SSRC: it latches only if its SSRC
       is the known one (the same phone behind a NAT that re-bound) — an
       off-path attacker spraying our port cannot know the SSRC, so a hijack
       with any other SSRC is ignored.
    5. From any other address before any SSRC is known (the caller is behind
       a NAT and its SDP address is private): the source must send
       `probation` consecutive packets (same SSRC, sequence +1 each) before we
       latch onto it; its earlier packets are ignored. Each source is counted
       on its own (up to `LATCH_CANDIDATES` at once), so an attacker's packets
       interleaved with the caller's cannot reset the caller's count; a flood
       from more fresh sources than that per 20 ms can delay latching while it
       lasts, never redirect it. This stops stray packets and scanners from
       capturing the call, but not an attacker who wins the race with
       well-formed RTP before the caller's first packet — no rule without SRTP
       or ICE can; the window bounds the exposure.

    After the window closes only the current send address is accepted.
    """

    __slots__ = (
        "_accepted",
        "_candidates",
        "_payload_types",
        "_probation",
        "_since",
        "_window_packets",
        "_window_seconds",
        "enabled",
        "ignored",
        "known_ssrc",
        "latches",
        "remote",
        "signalled",
    )

    def __init__(
        self,
        signalled: Address,
        *,
        payload_types: Collection[int],
        now: float,
        enabled: bool = True,
        window_packets: int = LATCH_WINDOW_PACKETS,
        window_seconds: float = LATCH_WINDOW_SECONDS,
        probation: int = LATCH_PROBATION,
    ) -> None:
        self.enabled = enabled
        self.ignored = 0
        self.latches = 0
        self._window_packets = window_packets
        self._window_seconds = window_seconds
        self._probation = max(1, probation)
        self.retarget(signalled, now=now, payload_types=payload_types)

    def retarget(
        self, signalled: Address, *, now: float, payload_types: Collection[int] | None = None
    ) -> None:
        """A new SDP address (re-INVITE): send there and open a fresh learning window."""
        self.signalled = signalled
        self.remote = signalled
        if payload_types is not None:
            self._payload_types = frozenset(payload_types)
        self._since = now
        self._accepted = 0
        self.known_ssrc: int | None = None
        # source -> (ssrc, last sequence number, consecutive packets) during probation
        self._candidates: dict[Address, tuple[int, int, int]] = {}

    def window_open(self, now: float) -> bool:
        return (
            self.enabled
            and self._accepted < self._window_packets
            and now - self._since < self._window_seconds
        )

    def check(self, source: Address, ssrc: int, seq: int, pt: int, now: float) -> LatchVerdict:
        """Judge one packet by its source address (the rule is on the class)."""
        if source == self.remote:
            self._accepted += 1
            self.known_ssrc = ssrc
            return LatchVerdict.ACCEPTED
        if not self.window_open(now) or pt not in self._payload_types:
            self.ignored += 1
            return LatchVerdict.IGNORED
        if source != self.signalled:
            if self.known_ssrc is None:
                if not self._passes_probation(source, ssrc, seq):
                    self.ignored += 1
                    return LatchVerdict.IGNORED
            elif ssrc != self.known_ssrc:
                self.ignored += 1
                return LatchVerdict.IGNORED
        self.remote = source
        self.known_ssrc = ssrc
        self._accepted += 1
        self.latches += 1
        self._candidates.clear()
        return LatchVerdict.LATCHED

    def _passes_probation(self, source: Address, ssrc: int, seq: int) -> bool:
        """Count consecutive packets per candidate source, so interleaved sources
        (an attacker racing the caller) cannot reset each other's probation."""
        candidates = self._candidates
        entry = candidates.get(source)
        if entry is not None and entry[0] == ssrc and seq == (entry[1] + 1) & 0xFFFF:
            count = entry[2] + 1
        else:
            count = 1
            if entry is None and len(candidates) >= LATCH_CANDIDATES:
                # Full: evict the oldest one-packet candidate; a spray of one-off
                # sources must not push out a caller that is halfway through.
                victim = next((k for k, v in candidates.items() if v[2] == 1), None)
                if victim is None:
                    return False
                del candidates[victim]
        candidates[source] = (ssrc, seq, count)
        return count >= self._probation
