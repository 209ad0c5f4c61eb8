"""RTP for simulated phones: many call legs on one loopback socket pair.

Owns the simulator's media. A `RtpBank` binds one even/odd UDP pair on
127.0.0.1 (RTP and an RTCP sink, RFC 3550 §11: RTCP on the next odd port)
and every simulated leg — callers and operators alike — offers that same
address in its SDP. The server sends each leg's RTP from a port of its own,
learnt from the SDP answer (or offer), so incoming packets are told apart by
their source address: one socket and one read loop for a thousand legs
instead of a thousand of each, which keeps the simulator light enough to
share the machine with the server it loads.

What a leg sends (`LegMedia`), on the one shared 20 ms `MediaClock` (DESIGN
§5: one absolute schedule for every outgoing stream, never a timer each):

* RFC 4733 telephone-events for the digits it presses (`rtp.dtmf.DtmfSender`
  owns the stream while it sends them);
* a voice — one constant G.711 frame of a two-tone chord whose period divides
  20 ms, so every frame is the same bytes — while it talks;
* nothing otherwise (a caller waiting in the queue is silent, as many are).

What a leg listens for: `listen_for(frames, on_heard)` reports the first
packet whose payload is one of `frames` — the caller recognising the
operator's voice among prompts and hold music, which is how the simulator
measures answer time where a caller would: when the operator is heard.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable
from typing import Any

from ..media import g711
from ..media.clock import MediaClock
from ..media.g711 import Codec
from ..media.tones import dual_tone
from ..offer_answer import Negotiated
from ..rtp.dtmf import DtmfSender
from ..rtp.packet import RtpError, parse_header
from ..rtp.session import FRAME_SAMPLES, OutgoingStream

__all__ = [
    "CALLER_VOICE",
    "OPERATOR_VOICE",
    "LegMedia",
    "RtpBank",
    "heard_as",
    "voice_frame",
]

# DESIGN §5: asyncio allocates `max_size` for every datagram it receives.
RTP_MAX_SIZE = 2048
# One socket carries every leg: a deep kernel buffer absorbs bursts while
# the loop is busy (the kernel caps it at net.core.rmem_max).
RECEIVE_BUFFER = 4 * 1024 * 1024
BIND_ATTEMPTS = 64

# Chords whose period divides 160 samples (20 ms at 8 kHz: 400 Hz + 1800 Hz
# repeat every 40 samples, 500 Hz + 2000 Hz every 16), so one frame sent over
# and over is a continuous tone; neither touches the DTMF band (697-1633 Hz,
# ITU-T Q.23), so a server listening for in-band digits never hears a key.
OPERATOR_VOICE = (400.0, 1800.0)
CALLER_VOICE = (500.0, 2000.0)


def voice_frame(chord: tuple[float, float], codec: Codec) -> bytes:
    """One 20 ms G.711 frame of `chord` (two sines at -16 dBm0 each)."""
    pcm = dual_tone(chord[0], chord[1], 20, low_dbm0=-16.0, high_dbm0=-16.0)
    return g711.encode(codec, pcm)


def heard_as(chord: tuple[float, float]) -> frozenset[bytes]:
    """Every form a voice frame of `chord` can reach a listener in: encoded in
    either law, and transcoded by the server when the two legs differ."""
    frames = set()
    for codec in Codec:
        frame = voice_frame(chord, codec)
        frames.add(frame)
        for other in Codec:
            frames.add(g711.transcode(codec, other, frame))
    return frozenset(frames)


class _BankProtocol(asyncio.DatagramProtocol):
    def __init__(self, bank: RtpBank) -> None:
        self.bank = bank

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if hasattr(transport, "max_size"):
            transport.max_size = RTP_MAX_SIZE

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        leg = self.bank._by_source.get(addr)  # IPv4 addr is (host, port): no tuple built
        if leg is None:
            self.bank.unmatched += 1
            return
        leg._on_rtp(data)

    def error_received(self, exc: Exception) -> None:
        self.bank.send_errors += 1


class _Sink(asyncio.DatagramProtocol):
    """RTCP from the server: received (so no ICMP goes back) and counted."""

    def __init__(self, bank: RtpBank) -> None:
        self.bank = bank

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self.bank.rtcp_received += 1


class LegMedia:
    """The RTP of one simulated leg (see the module docstring)."""

    __slots__ = (
        "_dtmf",
        "_heard",
        "_listen",
        "_on_heard",
        "_source",
        "_ticking",
        "_voice",
        "bank",
        "codec",
        "dtmf_pt",
        "label",
        "out",
        "payload_type",
        "received",
        "remote",
    )

    def __init__(self, bank: RtpBank, label: str) -> None:
        self.bank = bank
        self.label = label
        self.codec = Codec.PCMA
        self.payload_type = Codec.PCMA.payload_type
        self.dtmf_pt: int | None = None
        self.remote: tuple[str, int] | None = None
        self.out = OutgoingStream()
        self.received = 0
        self._dtmf: DtmfSender | None = None
        self._voice: bytes | None = None
        self._listen: frozenset[bytes] = frozenset()
        self._on_heard: Callable[[], None] | None = None
        self._heard = False
        self._ticking = False
        self._source: tuple[str, int] | None = None

    @property
    def local_port(self) -> int:
        return self.bank.port

    def connect(self, negotiated: Negotiated) -> None:
        """Send to (and accept packets from) the address the server negotiated."""
        self.codec = negotiated.codec
        self.payload_type = negotiated.payload_type
        self.dtmf_pt = negotiated.dtmf_pt
        source = (negotiated.remote_address, negotiated.remote_port)
        self._forget_source()
        self.remote = source if negotiated.should_send else None
        # Even on hold the server's packets come from this address.
        self._source = source
        self.bank._by_source[source] = self

    def press(self, digits: str) -> bool:
        """Send `digits` as RFC 4733 events; False if the server took no telephone-event."""
        if self.dtmf_pt is None or self.remote is None:
            return False
        if self._dtmf is None:
            self._dtmf = DtmfSender(payload_type=self.dtmf_pt)
        self._dtmf.send(digits)
        self._tick_on()
        return True

    def speak(self, frame: bytes | None) -> None:
        """Send `frame` every 20 ms from now on (None: fall silent)."""
        self._voice = frame
        if frame is not None:
            self._tick_on()

    def listen_for(self, frames: frozenset[bytes], on_heard: Callable[[], None]) -> None:
        """Call `on_heard` once, at the first packet carrying one of `frames`."""
        self._listen = frames
        self._on_heard = on_heard
        self._heard = False

    def close(self) -> None:
        self._voice = None
        self._dtmf = None
        if self._ticking:
            self.bank.clock.unsubscribe(self)
            self._ticking = False
        self._forget_source()

    def _forget_source(self) -> None:
        source = self._source
        if source is not None and self.bank._by_source.get(source) is self:
            del self.bank._by_source[source]
        self._source = None

    # -- the clock ---------------------------------------------------------------

    def _tick_on(self) -> None:
        if not self._ticking:
            self._ticking = True
            self.bank.clock.subscribe(self)

    def on_tick(self, tick_no: int) -> None:
        del tick_no
        out = self.out
        remote = self.remote
        dtmf = self._dtmf
        if dtmf is not None:
            packets = dtmf.tick(out)
            if packets is not None:
                if remote is not None:
                    for packet in packets:
                        self.bank._send(packet, remote)
                return
        voice = self._voice
        if voice is not None and remote is not None:
            self.bank._send(out.next_packet(voice, self.payload_type), remote)
            return
        out.advance(FRAME_SAMPLES)
        if dtmf is None or not dtmf.busy:
            self.bank.clock.unsubscribe(self)
            self._ticking = False

    # -- receiving -----------------------------------------------------------------

    def _on_rtp(self, data: bytes) -> None:
        self.received += 1
        if not self._listen or self._heard:
            return
        try:
            _, _, _, _, _, start, end = parse_header(data)
        except RtpError:
            return
        if data[start:end] in self._listen:
            self._heard = True
            if self._on_heard is not None:
                self._on_heard()


class RtpBank:
    """One RTP/RTCP socket pair on loopback shared by every simulated leg."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = 0
        self.clock = MediaClock(start=0.0)
        self.unmatched = 0
        self.sent = 0
        self.send_errors = 0
        self.rtcp_received = 0
        self._by_source: dict[tuple[str, int], LegMedia] = {}
        self._rtp: asyncio.DatagramTransport | None = None
        self._rtcp: asyncio.DatagramTransport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def open(self) -> None:
        """Bind an even port (from the kernel's ephemeral ones) and the odd one above it."""
        loop = asyncio.get_running_loop()
        self._loop = loop
        rtp_sock, rtcp_sock = _bind_pair(self.host)
        self.port = rtp_sock.getsockname()[1]
        rtp, _ = await loop.create_datagram_endpoint(lambda: _BankProtocol(self), sock=rtp_sock)
        rtcp, _ = await loop.create_datagram_endpoint(lambda: _Sink(self), sock=rtcp_sock)
        self._rtp = rtp
        self._rtcp = rtcp
        self.clock = MediaClock(start=loop.time())
        self._arm()

    def leg(self, label: str) -> LegMedia:
        return LegMedia(self, label)

    def now(self) -> float:
        assert self._loop is not None
        return self._loop.time()

    @property
    def legs(self) -> int:
        return len(self._by_source)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for transport in (self._rtp, self._rtcp):
            if transport is not None:
                transport.close()
        self._rtp = self._rtcp = None
        self._by_source.clear()

    def _send(self, packet: bytes, remote: tuple[str, int]) -> None:
        transport = self._rtp
        if transport is None:
            return
        try:
            transport.sendto(packet, remote)
        except OSError:
            self.send_errors += 1
            return
        self.sent += 1

    def _arm(self) -> None:
        assert self._loop is not None
        self._timer = self._loop.call_at(self.clock.next_deadline(), self._on_timer)

    def _on_timer(self) -> None:
        assert self._loop is not None
        try:
            self.clock.run_due(self._loop.time())
        finally:
            if self._rtp is not None:
                self._arm()


def _bind_pair(host: str) -> tuple[socket.socket, socket.socket]:
    """An even/odd UDP pair, both bound; ports come from the kernel (port 0)."""
    for _ in range(BIND_ATTEMPTS):
        rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        rtp.setblocking(False)
        with contextlib.suppress(OSError):
            rtp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
        rtp.bind((host, 0))
        port = rtp.getsockname()[1]
        if port % 2 == 0 and port < 65535:
            rtcp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            rtcp.setblocking(False)
            try:
                rtcp.bind((host, port + 1))
            except OSError:
                rtcp.close()
            else:
                return rtp, rtcp
        rtp.close()
    raise OSError(f"no free even/odd UDP port pair on {host} after {BIND_ATTEMPTS} tries")
