"""RTP/RTCP sockets: a pool of pre-opened even/odd port pairs from `rtp.ports`.

Opening and binding a socket costs ~100 µs (DESIGN §5), so `preopen` pairs
are bound at start and handed out by `acquire()` in O(1); more are opened on
demand up to the configured range. A pair is returned by `release()` at the
end of its call leg, its callbacks cleared so a late packet for the old call
goes nowhere. When every port of the range is taken, `acquire()` raises
`PortsExhausted` and the call gets a 503 — never a hang.

Receive buffers: asyncio allocates `max_size` bytes per datagram received
(256 KiB by default); RTP packets are < 200 bytes, so 2048 is plenty.

Sending: once a leg's symmetric-RTP latch has settled on its peer, the leg
`connect()`s the RTP socket to it and sends with plain `send()`: no address
to parse per packet and the kernel keeps the route, about 1.5 µs of the ~5 µs
a loopback `sendto` costs on these machines (`scripts/bench media`). A
connected UDP socket is delivered only its peer's datagrams — exactly what
the settled latch accepts anyway (RFC 4961 symmetric RTP; `rtp.session.Latch`);
a stranger's packets are dropped by the kernel (which answers ICMP port
unreachable) instead of being counted in the latch's `ignored`.
Before a leg re-opens its latch (re-INVITE) and before a port goes back to
the pool the association is dissolved (`connect` with AF_UNSPEC, POSIX;
Python has no call for it), so the next learning window hears everyone again.
"""

from __future__ import annotations

import asyncio
import ctypes
import socket
from collections import deque
from collections.abc import Callable
from typing import Any, cast

from ..logs import get_logger

__all__ = ["PortsExhausted", "RtpPort", "RtpSocketPool"]

log = get_logger("rtp.pool")

RTP_MAX_DATAGRAM = 2048
PacketHandler = Callable[[bytes, tuple[str, int]], None]


class PortsExhausted(Exception):
    """No RTP port pair is free in `rtp.ports`."""


_AF_UNSPEC_ADDRESS = bytes(16)  # a struct sockaddr whose sa_family is AF_UNSPEC (0)
try:
    _libc: ctypes.CDLL | None = ctypes.CDLL(None, use_errno=True)
except OSError:  # pragma: no cover - no C library to call: sockets are never connected
    _libc = None


def _dissolve(sock: socket.socket) -> bool:
    """connect(fd, AF_UNSPEC): forget a UDP socket's peer; True on success."""
    if _libc is None:
        return False
    return int(_libc.connect(sock.fileno(), _AF_UNSPEC_ADDRESS, len(_AF_UNSPEC_ADDRESS))) == 0


class _Endpoint(asyncio.DatagramProtocol):
    __slots__ = ("handler", "transport")

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.handler: PacketHandler | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.DatagramTransport, transport)  # uvloop's is not a subclass
        if hasattr(transport, "max_size"):
            transport.max_size = RTP_MAX_DATAGRAM
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        handler = self.handler
        if handler is not None:
            handler(data, addr)

    def error_received(self, exc: Exception) -> None:
        pass  # ICMP unreachable from a peer that went away: RTP carries on


class RtpPort:
    """One RTP socket (even port) and its RTCP socket (port + 1)."""

    __slots__ = ("_rtcp", "_rtp", "_send", "_sock", "connected", "in_use", "port")

    def __init__(self, port: int, rtp: _Endpoint, rtcp: _Endpoint, sock: socket.socket) -> None:
        self.port = port
        self._rtp = rtp
        self._rtcp = rtcp
        self._sock = sock  # the RTP socket itself (its transport reads it)
        self._send = sock.send
        self.connected: tuple[str, int] | None = None  # the peer `send_connected` sends to
        self.in_use = False

    def set_handlers(self, on_rtp: PacketHandler | None, on_rtcp: PacketHandler | None) -> None:
        self._rtp.handler = on_rtp
        self._rtcp.handler = on_rtcp

    def send_rtp(self, data: bytes, addr: tuple[str, int]) -> None:
        t = self._rtp.transport
        if t is not None:
            t.sendto(data, addr)

    def connect(self, peer: tuple[str, int]) -> bool:
        """Associate the RTP socket with `peer` (see the module docstring); False if the
        kernel refuses (then keep using `send_rtp`)."""
        if self.connected == peer:
            return True
        if self.connected is not None and not self.disconnect():
            return False
        try:
            self._sock.connect(peer)
        except OSError:
            return False
        self.connected = peer
        return True

    def disconnect(self) -> bool:
        """Dissolve the association: datagrams from anyone are delivered again."""
        if self.connected is None:
            return True
        if not _dissolve(self._sock):
            return False
        self.connected = None
        return True

    def send_connected(self, data: bytes) -> None:
        """Send to the `connected` peer. A full socket buffer drops the packet (it would be
        late anyway); an ICMP error from a peer that went away is not ours to raise."""
        try:  # noqa: SIM105 - per packet: cheaper than contextlib.suppress
            self._send(data)
        except OSError:
            pass

    def send_rtcp(self, data: bytes, addr: tuple[str, int]) -> None:
        t = self._rtcp.transport
        if t is not None:
            t.sendto(data, addr)

    def close(self) -> None:
        for ep in (self._rtp, self._rtcp):
            ep.handler = None
            if ep.transport is not None:
                ep.transport.close()


class RtpSocketPool:
    def __init__(self, host: str, port_range: tuple[int, int], preopen: int) -> None:
        self.host = host
        self.low, self.high = port_range
        self.preopen = preopen
        self._free: deque[RtpPort] = deque()
        self._all: dict[int, RtpPort] = {}
        # Even ports never tried yet (bound lazily, in order).
        self._next_candidate = self.low + (self.low % 2)
        self._lock = asyncio.Lock()
        # Set when the free list runs low: `run_replenisher` opens more in the
        # background, so a burst of calls does not open ports one by one on
        # its own critical path (measured: INVITE->200 p90 5 s at 50 calls/s).
        self._low_water = asyncio.Event()

    @property
    def capacity(self) -> int:
        return (self.high - self.low + 1) // 2

    @property
    def in_use(self) -> int:
        return sum(1 for p in self._all.values() if p.in_use)

    @property
    def opened(self) -> int:
        return len(self._all)

    async def start(self) -> None:
        while len(self._free) < self.preopen:
            port = await self._open_next()
            if port is None:
                break
            self._free.append(port)
        log.info("rtp_pool_ready", preopened=len(self._free), range=f"{self.low}-{self.high}")

    async def _open_next(self) -> RtpPort | None:
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        while self._next_candidate + 1 <= self.high:
            even = self._next_candidate
            self._next_candidate += 2
            socks: list[socket.socket] = []
            try:
                for p in (even, even + 1):
                    s = socket.socket(family, socket.SOCK_DGRAM)
                    socks.append(s)
                    s.setblocking(False)
                    s.bind((self.host, p))
            except OSError:
                for s in socks:
                    s.close()
                continue  # taken by another program: skip the pair
            _, rtp = await loop.create_datagram_endpoint(_Endpoint, sock=socks[0])
            _, rtcp = await loop.create_datagram_endpoint(_Endpoint, sock=socks[1])
            port = RtpPort(even, rtp, rtcp, socks[0])
            self._all[even] = port
            return port
        return None

    def try_acquire(self) -> RtpPort | None:
        """A free pre-opened pair, without waiting; None if none is open."""
        while self._free:
            port = self._free.popleft()
            if not port.in_use:
                port.in_use = True
                if len(self._free) < self.preopen // 2:
                    self._low_water.set()
                return port
        self._low_water.set()
        return None

    async def run_replenisher(self, stop: asyncio.Event) -> None:
        """Keep `preopen` pairs ready while the range allows; until `stop` is set."""
        stopping = asyncio.ensure_future(stop.wait())
        try:
            while not stop.is_set():
                waiting = asyncio.ensure_future(self._low_water.wait())
                await asyncio.wait({waiting, stopping}, return_when=asyncio.FIRST_COMPLETED)
                waiting.cancel()
                if stop.is_set():
                    return
                self._low_water.clear()
                async with self._lock:
                    while len(self._free) < self.preopen:
                        port = await self._open_next()
                        if port is None:
                            break  # the range is used up: acquire() answers 503 then
                        self._free.append(port)
                        await asyncio.sleep(0)  # let calls run between binds
        finally:
            stopping.cancel()

    async def acquire(self) -> RtpPort:
        port = self.try_acquire()
        if port is not None:
            return port
        async with self._lock:
            port = self.try_acquire()
            if port is None:
                port = await self._open_next()
            if port is None:
                raise PortsExhausted(f"all RTP ports {self.low}-{self.high} are in use")
            port.in_use = True
            return port

    def release(self, port: RtpPort) -> None:
        if not port.in_use:
            return
        port.set_handlers(None, None)
        port.in_use = False
        if not port.disconnect():
            # Still tied to the last call's peer: the next call could not latch. Retire it.
            log.error("rtp_port_retired", port=port.port, reason="cannot dissolve association")
            port.close()
            self._all.pop(port.port, None)
            return
        self._free.append(port)

    async def close(self) -> None:
        for port in self._all.values():
            port.close()
        self._all.clear()
        self._free.clear()
