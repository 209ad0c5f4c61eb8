"""Media glue: RTP legs on real sockets, driven by the one shared 20 ms clock.

A `MediaLeg` is the server's end of one call leg's RTP: an `RtpPort` from the
pool, the negotiated codec and payload types, an outgoing stream with
continuous sequence numbers and timestamps, RFC 3550 receive statistics, the
symmetric-RTP latch, and DTMF detection (RFC 4733 always; in-band tones on
request for trunks that send none).

What a leg sends depends on its mode:

* **play** — the leg's `Player` supplies a frame on every clock tick (prompts,
  comfort audio, hold music; silence when it has nothing), so callers in the
  IVR and the queue hear a steady stream;
* **relay** — every packet received on the partner leg is forwarded at once
  (lowest added delay), table-transcoded PCMA⇄PCMU only when the two legs
  differ (timing: see below);
* **mix** — the leg is a party of a `Conference`, whose tick mixes and sends.

Recording follows the caller, not the legs: the caller's leg owns the
incident's `IncidentRecorder`, writes what it *receives* to the left channel
and what it *sends* (prompts, the operator, an agency, a conference mix) to
the right channel — so the right channel is exactly what the caller heard,
across transfers, without reopening the file.

Sending: while the leg's symmetric-RTP latch may still move (its learning
window), packets go out with `sendto` to the latch's current address; once
the window has closed the leg connects its RTP socket to the settled peer
and sends with plain `send` (see `rtp_transport`: the same filtering, a
cheaper packet). A re-INVITE that re-opens the latch dissolves it first.

The engine drives every playing leg and conference from one `loop.call_at`
timer on the `MediaClock`'s absolute schedule (DESIGN §5). (Cutting the
20 ms grid into phases, each with a quarter of the streams, was measured:
the last stream of a 2000-stream tick went out three times sooner, but the
process used ~20 points more CPU on these VMs, whose wake-ups are dear; one
tick it is.) The engine also flushes recorders to disk from a worker thread
once a second and sends each leg's RTCP report at a randomised interval
around 5 s (RFC 3550 §6.3.1), so reports are spread over time instead of
going out for every leg at once (800 legs' reports in one go cost ~15 ms of
CPU during which no packet was relayed).

Relay timing: a packet keeps its source's timing. Within one source (SSRC)
our timestamp advances by the source's own timestamp steps, so its gaps
(loss, silence suppression) stay gaps; when the source changes (a new
SSRC, the first packet after a mode change) our timestamp is advanced by
the wall-clock time since we last sent, so the receiver's jitter buffer and
the recording's right channel see the silence that really passed.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from ..logs import get_logger
from ..media import g711
from ..media.bridge import Mixer
from ..media.clock import LatenessStats, MediaClock
from ..media.g711 import Codec
from ..media.player import Player
from ..media.recorder import (
    Channel,
    IncidentRecorder,
    RecordingDegraded,
    RecordingHealth,
    RecordingInfo,
)
from ..media.tones import InbandDtmfDetector
from ..rtp.dtmf import DtmfReceiver
from ..rtp.events import DigitReceived
from ..rtp.packet import RtpError, parse_header
from ..rtp.rtcp import (
    RtcpCompound,
    RtcpError,
    SdesChunk,
    SdesItem,
    SenderReport,
    SourceDescription,
)
from ..rtp.session import IncomingStream, Latch, LatchVerdict, OutgoingStream, StreamStats
from ..rtp.srtp import SrtpContext, SrtpError
from .rtp_transport import RtpPort, RtpSocketPool

if TYPE_CHECKING:
    from ..callflow.failover import ChunkShipping

__all__ = ["Conference", "MediaEngine", "MediaLeg"]

log = get_logger("media")

FRAME_SAMPLES = 160
SAMPLE_RATE = 8000  # RFC 3551 §4.5.14: G.711
RTCP_INTERVAL_S = 5.0  # RFC 3550 §6.2 minimum for a two-party session
# RFC 3550 §6.3.1: each interval is randomised to 0.5-1.5 times the computed one, so that
# reports of many sessions started together do not stay synchronised.
RTCP_SPREAD = (0.5, 1.5)
RTCP_SCAN_S = 0.25  # how often the housekeeper looks for legs whose report is due
FLUSH_SLICES = 4  # recordings are flushed a quarter at a time, each about once a second
# How a leg's RTP leaves (see rtp_transport: connected sockets).
_LEARNING = 0  # latch window open: sendto the latch's current address
_CONNECTED = 1  # latch settled: the socket is connected to the peer, plain send()
_UNCONNECTED = 2  # the kernel refused the association: sendto until the next re-INVITE
FSYNC_EVERY_FLUSHES = 5  # recordings reach the disk at least every 5 s
# Relay: a timestamp step within this is a gap to preserve; beyond it (a new
# stream, a peer's clock jump) the packet continues our timeline.
MAX_RELAY_GAP_SAMPLES = 8000 * 5

Mode = Literal["idle", "play", "relay", "mix"]
DigitHandler = Callable[[DigitReceived], None]


class MediaLeg:
    """One RTP leg of a call (see the module docstring)."""

    __slots__ = (
        "_inband",
        "_inband_samples",
        "_last_src",
        "_route",
        "_send_ok",
        "_sent_at",
        "_sent_samples",
        "_time",
        "bad_packets",
        "codec",
        "conference",
        "dtmf",
        "dtmf_pt",
        "engine",
        "incoming",
        "label",
        "last_rx",
        "latch",
        "mode",
        "on_audio",
        "on_digit",
        "out",
        "partner",
        "payload_type",
        "player",
        "port",
        "rec_in",
        "rec_out",
        "receive_pts",
        "recorder",
        "rtcp_due",
        "rtcp_remote",
        "srtp",
        "ssrc_seen",
    )

    def __init__(self, engine: MediaEngine, port: RtpPort, label: str) -> None:
        self.engine = engine
        self.port = port
        self.label = label
        self.codec = Codec.PCMA
        self.payload_type = 8
        self.dtmf_pt: int | None = None
        self.receive_pts: dict[int, Codec] = {0: Codec.PCMU, 8: Codec.PCMA}
        self.out = OutgoingStream()
        self.incoming = IncomingStream()
        self.latch: Latch | None = None
        self.rtcp_remote: tuple[str, int] | None = None
        self.dtmf = DtmfReceiver()
        self._inband: InbandDtmfDetector | None = None
        self._inband_samples = 0
        self.on_digit: DigitHandler | None = None
        # Issue 12: every received caller frame, to the IVR's voice-activity detector.
        self.on_audio: Callable[[bytes, Codec], None] | None = None
        self.mode: Mode = "idle"
        self.player: Player | None = None
        self.partner: MediaLeg | None = None
        self.conference: Conference | None = None
        self.recorder: IncidentRecorder | None = None
        self.rec_in = Channel.CALLER
        self.rec_out = Channel.CENTRE
        self.last_rx = 0.0
        # (ssrc, timestamp, samples) of the last packet relayed from the partner
        self._last_src: tuple[int, int, int] | None = None
        self._send_ok = False
        self._route = _LEARNING
        self._sent_at = 0.0  # loop time of the last frame sent (or skipped while not sending)
        self._sent_samples = 0
        self.rtcp_due = 0.0  # loop time of the next RTCP report (0: not scheduled yet)
        self._time = engine.loop.time
        self.bad_packets = 0
        self.ssrc_seen = 0
        # -- SRTP (issue 11, `edge`): set by the call flow once SDES is
        # negotiated (rtp/srtp.py). Packets are unprotected on arrival, before
        # the latch, the recorder or the partner see them (recordings stay the
        # original G.711 bits), and protected last thing before sending.
        self.srtp: SrtpContext | None = None
        port.set_handlers(self._on_rtp, self._on_rtcp)

    # -- set-up ------------------------------------------------------------------

    @property
    def local_port(self) -> int:
        return self.port.port

    def configure(
        self,
        *,
        codec: Codec,
        payload_type: int,
        dtmf_pt: int | None,
        remote: tuple[str, int] | None,
        extra_receive_pts: dict[int, Codec] | None = None,
    ) -> None:
        """Apply a negotiated session (initial or after a re-INVITE)."""
        self.codec = codec
        self.payload_type = payload_type
        self.dtmf_pt = dtmf_pt
        pts = {0: Codec.PCMU, 8: Codec.PCMA, payload_type: codec}
        if extra_receive_pts:
            pts.update(extra_receive_pts)
        self.receive_pts = pts
        now = self._time()
        allowed = set(pts) | ({dtmf_pt} if dtmf_pt is not None else set())
        if remote is None or remote[1] == 0 or remote[0] in ("0.0.0.0", "::"):
            self._send_ok = False
            if self.latch is None:
                self.latch = Latch(("0.0.0.0", 0), payload_types=allowed, now=now)
            return
        self._unsettle()  # a new learning window must hear every source
        if self.latch is None:
            self.latch = Latch(remote, payload_types=allowed, now=now)
        else:
            self.latch.retarget(remote, now=now, payload_types=allowed)
        self.rtcp_remote = (remote[0], remote[1] + 1)
        self._send_ok = True
        if self.last_rx == 0.0:
            self.last_rx = now

    def enable_inband_dtmf(self, on: bool = True) -> None:
        self._inband = InbandDtmfDetector() if on else None

    def attach_recorder(self, recorder: IncidentRecorder | None) -> None:
        self.recorder = recorder

    # -- modes -------------------------------------------------------------------

    def play(self, player: Player) -> None:
        """Send `player`'s frames on every tick (and silence when it is idle)."""
        self._leave_mode()
        self.player = player
        self.mode = "play"
        self.engine._subscribe(self)

    def relay_with(self, other: MediaLeg) -> None:
        """Bridge two legs: each forwards what it receives to the other."""
        for leg in (self, other):
            leg._leave_mode()
            leg.mode = "relay"
        self.partner = other
        other.partner = self
        self._last_src = other._last_src = None

    def idle(self) -> None:
        """Send nothing (and forward nothing)."""
        self._leave_mode()
        self.mode = "idle"

    def _leave_mode(self) -> None:
        if self.mode == "play":
            self.engine._unsubscribe(self)
            self.player = None
        elif self.mode == "relay" and self.partner is not None:
            partner = self.partner
            self.partner = None
            if partner.partner is self:
                partner.partner = None
                partner.mode = "idle"
        elif self.mode == "mix" and self.conference is not None:
            self.conference.remove(self)
        self.mode = "idle"

    # -- the clock ---------------------------------------------------------------

    def on_tick(self, tick_no: int) -> None:
        player = self.player
        if player is None:
            return
        frame = player.next_frame()
        if frame is None:
            frame = g711.silence(self.codec)
        self.send_frame(frame)

    def send_frame(self, payload: bytes, *, samples: int = FRAME_SAMPLES) -> None:
        now = self._time()
        self._sent_at = now
        self._sent_samples = samples
        if not self._send_ok:
            self.out.advance(samples)
            return
        out = self.out
        ts = out.timestamp
        packet = out.next_packet(payload, self.payload_type, samples=samples)
        if self.srtp is not None:
            packet = self.srtp.protect(packet)
        if self._route == _CONNECTED:
            self.port.send_connected(packet)
        else:
            latch = self.latch
            assert latch is not None
            self.port.send_rtp(packet, latch.remote)
            if self._route == _LEARNING and not latch.window_open(now):
                self._settle(latch)
        rec = self.recorder
        if rec is not None:
            rec.add(
                self.rec_out,
                payload,
                codec=self.codec,
                rtp_timestamp=ts,
                ssrc=out.ssrc,
                arrival=now,
            )

    def _settle(self, latch: Latch) -> None:
        """The learning window closed: from now on only `latch.remote` is our peer, so
        let the kernel keep the association (cheaper sends, same filtering)."""
        self._route = _CONNECTED if self.port.connect(latch.remote) else _UNCONNECTED

    def _unsettle(self) -> None:
        if self._route == _CONNECTED and not self.port.disconnect():
            log.error("rtp_disconnect_failed", leg=self.label)
        self._route = _LEARNING

    def _relay_in(self, payload: bytes, codec: Codec, src_ssrc: int, src_ts: int) -> None:
        """A packet from the partner leg, to be sent on this one at once."""
        last = self._last_src
        samples = len(payload)
        if last is not None and last[0] == src_ssrc:
            # One source: a timestamp step longer than its previous packet is a gap
            # (loss, silence suppression) to keep; a larger jump is a new timeline.
            gap = ((src_ts - last[1]) & 0xFFFF_FFFF) - last[2]
            if 0 < gap <= MAX_RELAY_GAP_SAMPLES:
                self.out.advance(gap)
        elif self._sent_at:
            # A new source: its timestamps say nothing about ours, the wall clock does.
            idle = round((self._time() - self._sent_at) * SAMPLE_RATE) - self._sent_samples
            if idle >= FRAME_SAMPLES:  # less is arrival jitter, not silence
                self.out.advance(idle)
        self._last_src = (src_ssrc, src_ts, samples)
        if codec is not self.codec:
            payload = g711.transcode(codec, self.codec, payload)
        self.send_frame(payload, samples=samples)

    # -- receiving ---------------------------------------------------------------

    def _on_rtp(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.srtp is not None:
            try:
                data = self.srtp.unprotect(data)
            except SrtpError:  # forged, replayed, or not ours: as a bad packet
                self.bad_packets += 1
                return
        try:
            pt, marker, seq, ts, ssrc, start, end = parse_header(data)
        except RtpError:
            self.bad_packets += 1
            return
        latch = self.latch
        if latch is None:
            return  # not negotiated yet
        now = self._time()
        source = (addr[0], addr[1])
        verdict = latch.check(source, ssrc, seq, pt, now)
        if verdict is LatchVerdict.IGNORED:
            return
        if verdict is LatchVerdict.LATCHED:
            self.rtcp_remote = (source[0], source[1] + 1)
            if latch.remote[1] != 0:
                self._send_ok = True
            log.info("rtp_latched", leg=self.label, source=f"{source[0]}:{source[1]}")
        self.last_rx = now
        payload = data[start:end]
        if pt == self.dtmf_pt:
            self.incoming.receive(ssrc, seq, ts, end - start, now, timed=False)
            event = self.dtmf.receive(payload, ssrc=ssrc, timestamp=ts, marker=marker, now=now)
            if event is not None and self.on_digit is not None:
                self.on_digit(event)
            return
        codec = self.receive_pts.get(pt)
        if codec is None:
            self.bad_packets += 1
            return
        self.incoming.receive(ssrc, seq, ts, end - start, now)
        rec = self.recorder
        if rec is not None:
            rec.add(self.rec_in, payload, codec=codec, rtp_timestamp=ts, ssrc=ssrc, arrival=now)
        if self._inband is not None:
            self._detect_inband(payload, codec)
        if self.on_audio is not None:  # issue 12: speech detection during the IVR
            self.on_audio(payload, codec)
        mode = self.mode
        if mode == "relay":
            partner = self.partner
            if partner is not None:
                partner._relay_in(payload, codec, ssrc, ts)
        elif mode == "mix":
            conf = self.conference
            if conf is not None:
                if codec is not self.codec:
                    payload = g711.transcode(codec, self.codec, payload)
                conf.mixer.push(self.label, payload)

    def _detect_inband(self, payload: bytes, codec: Codec) -> None:
        assert self._inband is not None
        pcm = g711.decode(codec, payload)
        self._inband_samples += len(payload)
        for digit in self._inband.feed(pcm, self._inband_samples):
            if self.on_digit is not None:
                self.on_digit(
                    DigitReceived(digit=digit, source="inband", at=self._time(), duration_ms=None)
                )

    def _on_rtcp(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.srtp is not None:
            try:
                data = self.srtp.unprotect_rtcp(data)
            except SrtpError:
                return
        try:
            compound = RtcpCompound.parse(data)
        except RtcpError:
            return
        now = self._time()
        for packet in compound.packets:
            if isinstance(packet, SenderReport):
                self.incoming.on_sender_report(packet, now)

    def rtcp_report(self, wall_now: float) -> bytes | None:
        """An SR + SDES compound for this leg (RFC 3550 §6.1), or None if nothing to say."""
        now = self._time()
        block = self.incoming.report_block(now)
        report = self.out.sender_report(now_unix=wall_now, reports=(block,) if block else ())
        cname = f"callcenter112@{self.engine.cname_host}".encode()
        sdes = SourceDescription(
            chunks=(SdesChunk(ssrc=self.out.ssrc, items=((SdesItem.CNAME, cname),)),)
        )
        compound = RtcpCompound(packets=(report, sdes)).serialize()
        return compound if self.srtp is None else self.srtp.protect_rtcp(compound)

    def stats(self) -> StreamStats:
        return self.incoming.stats()

    def close(self) -> None:
        """Stop everything and give the port back to the pool."""
        self._leave_mode()
        self.recorder = None
        self.on_digit = None
        self.on_audio = None
        # The port may serve another call next: this leg must never send on it again.
        self._send_ok = False
        self._route = _LEARNING
        self.engine._release(self)


class Conference:
    """Three or more parties mixed by the server (conference, supervision).

    Each party is a `MediaLeg` in mode "mix"; who hears whom is the
    `Mixer`'s hearing matrix. Ticks on the shared clock: mix, then send.
    """

    __slots__ = ("engine", "legs", "mixer")

    def __init__(self, engine: MediaEngine) -> None:
        self.engine = engine
        self.mixer = Mixer()
        self.legs: dict[str, MediaLeg] = {}

    def add(self, leg: MediaLeg, *, speaks: bool = True, listens: bool = True) -> None:
        leg._leave_mode()
        leg.mode = "mix"
        leg.conference = self
        self.legs[leg.label] = leg
        self.mixer.add(leg.label, leg.codec, speaks=speaks, listens=listens)
        if len(self.legs) == 1:
            self.engine._subscribe(self)

    def remove(self, leg: MediaLeg) -> None:
        if self.legs.pop(leg.label, None) is None:
            return
        self.mixer.remove(leg.label)
        leg.conference = None
        leg.mode = "idle"
        if not self.legs:
            self.engine._unsubscribe(self)

    def on_tick(self, tick_no: int) -> None:
        frames = self.mixer.mix()
        for name, frame in frames.items():
            leg = self.legs.get(name)
            if leg is not None:
                leg.send_frame(frame)


class MediaEngine:
    """Owns the RTP port pool, the media clock timer, the recorder flusher and RTCP."""

    def __init__(self, pool: RtpSocketPool, *, cname_host: str) -> None:
        self.pool = pool
        self.cname_host = cname_host
        self.loop = asyncio.get_running_loop()
        self.clock = MediaClock(start=self.loop.time())
        self.legs: set[MediaLeg] = set()
        self.recorders: set[IncidentRecorder] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._running = False
        self._flushes = 0
        self._random = random.Random()
        # Issue 11: a recording the disk refuses is held and retried by the recorder; its
        # degraded/recovered changes reach the call flow here, on the loop.
        self.on_recording_health: Callable[[IncidentRecorder, RecordingHealth], None] | None = None
        # Issue 14: each flush's new bytes go to the replicated store (callflow/failover.py).
        self.chunk_shipping: ChunkShipping | None = None

    # -- clock -------------------------------------------------------------------

    def start(self) -> None:
        self._running = True
        self.clock = MediaClock(start=self.loop.time())
        self._arm()

    def stop(self) -> None:
        self._running = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _arm(self) -> None:
        if self._running:
            self._timer = self.loop.call_at(self.clock.next_deadline(), self._on_timer)

    def _on_timer(self) -> None:
        try:
            failures = self.clock.run_due(self.loop.time())
            for failure in failures:
                log.error(
                    "media_tick_failed", ticker=repr(failure.ticker), error=repr(failure.error)
                )
        finally:
            self._arm()

    def _subscribe(self, ticker: MediaLeg | Conference) -> None:
        self.clock.subscribe(ticker)

    def _unsubscribe(self, ticker: MediaLeg | Conference) -> None:
        self.clock.unsubscribe(ticker)

    def lateness(self) -> LatenessStats:
        """The clock's send lateness (for `scripts/bench media` and the live view)."""
        return self.clock.lateness()

    def reset_stats(self) -> None:
        self.clock.reset_stats()

    # -- legs --------------------------------------------------------------------

    async def open_leg(self, label: str) -> MediaLeg:
        """A new leg on a free port pair; raises `PortsExhausted`."""
        port = await self.pool.acquire()
        leg = MediaLeg(self, port, label)
        self.legs.add(leg)
        return leg

    def _release(self, leg: MediaLeg) -> None:
        if leg in self.legs:
            self.legs.discard(leg)
            self.pool.release(leg.port)

    # -- recorders ---------------------------------------------------------------

    def open_recorder(self, path: Path, codec: Codec) -> IncidentRecorder:
        path.parent.mkdir(parents=True, exist_ok=True)
        rec = IncidentRecorder(path, codec=codec, start=self.loop.time(), fsync=False)
        self.recorders.add(rec)
        return rec

    def watch_recording(self, rec: IncidentRecorder, recording_id: int | None) -> None:
        """Issue 14: ship `rec` to the store in chunks (when the store keeps copies)."""
        if self.chunk_shipping is not None:
            self.chunk_shipping.watch(rec, recording_id, rec.path)

    async def close_recorder(self, rec: IncidentRecorder) -> RecordingInfo:
        self.recorders.discard(rec)
        now = self.loop.time()
        rec.file.fsync = True
        return await asyncio.to_thread(rec.close, now)

    async def run_housekeeping(self, stop: asyncio.Event) -> None:
        """Flush recordings and send RTCP reports when due; until `stop` is set.

        Every `RTCP_SCAN_S` one of `FLUSH_SLICES` slices of the recorders is flushed, so
        each recording is written about once a second but the worker thread never holds
        the interpreter for all of them at once (measured: flushing 400 recordings in one
        go stalled the loop 15-40 ms while it waited for the GIL).
        """
        step = 0
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), RTCP_SCAN_S)
            self._send_rtcp(self.loop.time())
            await self._flush_recorders(step % FLUSH_SLICES)
            step += 1
        await self._flush_recorders(None)

    async def _flush_recorders(self, part: int | None) -> None:
        """Write slice `part` of the recordings (all of them for None) from a worker."""
        if not self.recorders:
            return
        recorders = list(self.recorders)
        if part is not None:
            recorders = recorders[part::FLUSH_SLICES]
            if part == 0:
                self._flushes += 1
        sync = part is None or self._flushes % FSYNC_EVERY_FLUSHES == 0
        now = self.loop.time()

        def flush_all() -> None:
            for rec in recorders:
                try:
                    rec.file.fsync = sync
                    rec.flush(now)
                except (OSError, ValueError) as exc:
                    log.error("recording_flush_failed", path=str(rec.path), error=str(exc))

        if recorders:
            await asyncio.to_thread(flush_all)
            if self.chunk_shipping is not None:  # issue 14: ≤ 2 s lost with the node
                self.chunk_shipping.after_flush(recorders, self.recorders)
        for rec in recorders:
            for change in rec.take_health():
                if isinstance(change, RecordingDegraded):
                    log.error(
                        "recording_degraded",
                        path=str(rec.path),
                        error=change.error,
                        pending_bytes=change.pending_bytes,
                    )
                else:
                    log.warning(
                        "recording_recovered", path=str(rec.path), dropped=change.dropped_bytes
                    )
                if self.on_recording_health is not None:
                    self.on_recording_health(rec, change)

    def _rtcp_interval(self) -> float:
        return RTCP_INTERVAL_S * self._random.uniform(*RTCP_SPREAD)

    def _send_rtcp(self, now: float) -> None:
        """Send the reports that are due (each leg on its own randomised schedule)."""
        wall = time.time()
        for leg in list(self.legs):
            if leg.rtcp_remote is None or not leg._send_ok:
                continue
            due = leg.rtcp_due
            if due == 0.0:  # the leg's first report: somewhere in the next interval
                leg.rtcp_due = now + self._rtcp_interval()
                continue
            if now < due:
                continue
            leg.rtcp_due = now + self._rtcp_interval()
            try:
                data = leg.rtcp_report(wall)
            except (RtpError, ValueError):
                continue
            if data:
                leg.port.send_rtcp(data, leg.rtcp_remote)
