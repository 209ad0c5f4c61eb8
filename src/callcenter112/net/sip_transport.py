"""SIP over UDP and TCP on `sip.listen`: the only place SIP touches sockets.

Receives datagrams and stream segments, frames and parses them, and hands
each message with the `Peer` it came from to one callback. Malformed input
never escapes: a message that parsed far enough to be answered gets its
`SipParseError.status_hint` response (400, 505, 513) straight from here,
statelessly; anything else is dropped and counted. A source that floods is
throttled per address before parsing (`SourceGuard`), so it cannot starve
the others; over TCP the same check applies to each framed message (a
stream cannot drop bytes and stay in sync).

A connection's loss is reported (`on_connection_lost`, so that the
transactions bound to it fail at once, RFC 3261 §17.1.4) only if a message
from it went up to the transaction layer or one was sent on it: the layer
scans its table to find them, work a flood of short connections that only
send garbage could otherwise make it do for nothing.

Buffers follow DESIGN §5: stock asyncio allocates `max_size` (256 KiB) for
every datagram it receives; SIP sockets get 65 535.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from ..logs import get_logger
from ..sip.errors import SipParseError
from ..sip.framing import KeepAlivePing, StreamFramer
from ..sip.message import MAX_MESSAGE_SIZE, Request, Response, parse_message
from ..sip.peer import Peer

__all__ = ["MAX_TCP_CONNECTIONS", "UDP_RECEIVE_BUFFER", "SipTransport", "TransportStats"]

log = get_logger("sip.transport")

MessageHandler = Callable[[Request | Response, Peer], None]
# TCP connections idle this long are closed (RFC 5626 keep-alives refresh it).
TCP_IDLE_TIMEOUT_S = 600.0
MAX_TCP_CONNECTIONS = 2048
# Kernel receive buffer asked for on the UDP socket. No RFC sets it: a burst
# of INVITEs from a carrier, or every phone retransmitting after a network
# blip, must wait in the kernel while the loop is busy, not be dropped
# (Linux's default rmem of ~208 KiB holds ~200 datagrams with their
# overhead; this holds thousands). The kernel caps it at net.core.rmem_max.
UDP_RECEIVE_BUFFER = 4 * 1024 * 1024


@dataclass(slots=True)
class TransportStats:
    datagrams: int = 0
    parse_errors: int = 0
    answered_400: int = 0
    dropped: int = 0
    throttled: int = 0
    tcp_connections: int = 0
    sent: int = 0
    send_errors: int = 0
    by_status: dict[int, int] = field(default_factory=dict)


def _error_response(exc: SipParseError) -> bytes | None:
    """The stateless answer to a request that failed to parse, if it can be
    answered: it needs the headers a matching response copies (§8.2.6.2)."""
    partial = exc.partial
    if not isinstance(partial, Request) or partial.method == "ACK":
        return None
    h = partial.headers
    for name in ("Via", "From", "To", "Call-ID", "CSeq"):
        if not h.get(name):
            return None
    try:
        partial.top_via  # noqa: B018 - must be routable
    except SipParseError:
        return None
    reason = exc.reason.replace("\r", " ").replace("\n", " ")[:120]
    resp = Response.for_request(
        partial, exc.status_hint, headers=[("Warning", f'399 callcenter112 "{_quote(reason)}"')]
    )
    return resp.serialize()


def _quote(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, owner: SipTransport) -> None:
        self.owner = owner
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.DatagramTransport, transport)  # uvloop's is not a subclass
        # DESIGN §5: asyncio's default 256 KiB receive buffer per datagram.
        if hasattr(transport, "max_size"):
            transport.max_size = MAX_MESSAGE_SIZE
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self.owner._on_datagram(data, Peer("udp", addr[0], addr[1]))

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable for a datagram we sent: the peer is gone.
        self.owner.stats.send_errors += 1


class _TcpProtocol(asyncio.Protocol):
    def __init__(self, owner: SipTransport) -> None:
        self.owner = owner
        self.framer = StreamFramer()
        self.transport: asyncio.Transport | None = None
        self.peer: Peer | None = None
        self.idle_handle: asyncio.TimerHandle | None = None
        # A message went up to the transaction layer, or one was sent here.
        self.carried_sip = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.transport = transport
        host, port = transport.get_extra_info("peername")[:2]
        if len(self.owner._tcp) >= MAX_TCP_CONNECTIONS:
            transport.abort()
            return
        conn_id = self.owner._register_tcp(self)
        self.peer = Peer("tcp", host, port, conn_id)
        self._arm_idle()

    def _arm_idle(self) -> None:
        if self.idle_handle is not None:
            self.idle_handle.cancel()
        loop = asyncio.get_running_loop()
        self.idle_handle = loop.call_later(TCP_IDLE_TIMEOUT_S, self._idle)

    def _idle(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        if self.transport is None or self.peer is None or self.transport.is_closing():
            return  # refused in connection_made, or already being closed
        self._arm_idle()
        try:
            items = self.framer.feed(data)
        except SipParseError as exc:
            self.owner.stats.parse_errors += 1
            answer = _error_response(exc)
            if answer is not None:
                self.transport.write(answer)
            log.info("tcp_stream_broken", peer=str(self.peer), reason=exc.reason)
            self.transport.close()
            return
        allow = self.owner.allow_source
        for item in items:
            if isinstance(item, KeepAlivePing):
                self.transport.write(KeepAlivePing.PONG)
            elif allow is not None and not allow(self.peer.host):
                self.owner.stats.throttled += 1
            elif isinstance(item, SipParseError):
                self.owner._on_parse_error(item, self.peer)
            else:
                self.carried_sip = True
                self.owner._deliver(item, self.peer)
        fault = self.framer.fault if self.framer.broken else None
        if fault is not None:
            # Messages before the fault were delivered; the stream cannot
            # be resynchronised after it.
            self.owner.stats.parse_errors += 1
            answer = _error_response(fault)
            if answer is not None:
                self.transport.write(answer)
            log.info("tcp_stream_broken", peer=str(self.peer), reason=fault.reason)
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.idle_handle is not None:
            self.idle_handle.cancel()
        if self.peer is not None and self.peer.conn_id is not None:
            self.owner._tcp.pop(self.peer.conn_id, None)
            if self.carried_sip and self.owner.on_connection_lost is not None:
                self.owner.on_connection_lost(self.peer)


class SipTransport:
    """UDP + TCP listener and sender for one `host:port`."""

    def __init__(
        self,
        host: str,
        port: int,
        on_message: MessageHandler,
        *,
        allow_source: Callable[[str], bool] | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.on_message = on_message
        self.allow_source = allow_source
        self.on_connection_lost: Callable[[Peer], None] | None = None
        self.trace = False
        self.stats = TransportStats()
        self._udp: _UdpProtocol | None = None
        self._server: asyncio.Server | None = None
        self._tcp: dict[int, _TcpProtocol] = {}
        self._next_conn = 1
        # Outgoing connections being opened: held so that they are neither
        # garbage-collected mid-flight nor left running after close().
        self._connecting: set[asyncio.Task[None]] = set()

    # -- lifecycle ------------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        _, proto = await loop.create_datagram_endpoint(
            lambda: _UdpProtocol(self), local_addr=(self.host, self.port), family=family
        )
        self._udp = proto
        sock = proto.transport.get_extra_info("socket") if proto.transport else None
        if sock is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_RECEIVE_BUFFER)
            except OSError as exc:  # pragma: no cover - refused by the kernel
                log.warning("udp_receive_buffer_refused", error=str(exc))
        if self.port == 0:  # tests: take the port the kernel gave UDP for TCP too
            assert proto.transport is not None
            self.port = proto.transport.get_extra_info("sockname")[1]
        self._server = await loop.create_server(
            lambda: _TcpProtocol(self),
            host=self.host,
            port=self.port,
            family=family,
            reuse_address=True,
        )

    async def close(self) -> None:
        for task in list(self._connecting):
            task.cancel()
        if self._server is not None:
            self._server.close()
        for conn in list(self._tcp.values()):
            if conn.transport is not None:
                conn.transport.close()
        if self._udp is not None and self._udp.transport is not None:
            self._udp.transport.close()
        if self._server is not None:
            await self._server.wait_closed()

    # -- receiving ------------------------------------------------------------

    def _register_tcp(self, conn: _TcpProtocol) -> int:
        conn_id = self._next_conn
        self._next_conn += 1
        self._tcp[conn_id] = conn
        self.stats.tcp_connections += 1
        return conn_id

    def _on_datagram(self, data: bytes, peer: Peer) -> None:
        self.stats.datagrams += 1
        if self.allow_source is not None and not self.allow_source(peer.host):
            self.stats.throttled += 1
            return
        if len(data) <= 4 and not data.strip(b"\r\n\x00 "):
            return  # RFC 5626 keep-alive or NAT pinhole packet
        try:
            message = parse_message(data)
        except SipParseError as exc:
            self._on_parse_error(exc, peer)
            return
        self._deliver(message, peer)

    def _on_parse_error(self, exc: SipParseError, peer: Peer) -> None:
        self.stats.parse_errors += 1
        answer = _error_response(exc)
        if answer is None:
            self.stats.dropped += 1
            return
        self.stats.answered_400 += 1
        partial = exc.partial
        assert isinstance(partial, Request)
        try:
            dest = response_peer(partial, peer)
        except SipParseError:
            self.stats.dropped += 1
            return
        self.send(answer, dest)

    def _deliver(self, message: Request | Response, peer: Peer) -> None:
        if self.trace:
            _trace("sip_in", message.serialize(), peer)
        try:
            self.on_message(message, peer)
        except Exception:
            # One message must never take the listener down; the endpoint
            # logs with its own context, this is the last line of defence.
            log.exception("message_handler_failed", peer=str(peer), message=repr(message))

    # -- sending --------------------------------------------------------------

    def send(self, data: bytes, peer: Peer) -> None:
        if self.trace:
            _trace("sip_out", data, peer)
        if peer.transport == "tcp":
            conn = self._tcp.get(peer.conn_id) if peer.conn_id is not None else None
            if conn is None:
                conn = self._find_tcp(peer)
            if conn is None or conn.transport is None or conn.transport.is_closing():
                # No connection to reuse: open one and send when it is up.
                task = asyncio.get_running_loop().create_task(self._connect_and_send(data, peer))
                self._connecting.add(task)
                task.add_done_callback(self._connecting.discard)
                return
            conn.carried_sip = True
            conn.transport.write(data)
        else:
            if self._udp is None or self._udp.transport is None:
                self.stats.send_errors += 1
                return
            try:
                self._udp.transport.sendto(data, (peer.host, peer.port))
            except OSError:
                self.stats.send_errors += 1
                return
        self.stats.sent += 1

    def _find_tcp(self, peer: Peer) -> _TcpProtocol | None:
        for conn in self._tcp.values():
            if conn.peer is not None and (conn.peer.host, conn.peer.port) == (peer.host, peer.port):
                return conn
        return None

    async def _connect_and_send(self, data: bytes, peer: Peer) -> None:
        loop = asyncio.get_running_loop()
        try:
            _, proto = await asyncio.wait_for(
                loop.create_connection(lambda: _TcpProtocol(self), peer.host, peer.port), 5.0
            )
        except (OSError, TimeoutError):
            self.stats.send_errors += 1
            log.info("tcp_connect_failed", peer=str(peer))
            # RFC 3261 §17.1.4: a transport failure ends the transaction
            # now, not at Timer B/F (the operator's phone is gone: offer the
            # call to the next one).
            if self.on_connection_lost is not None:
                self.on_connection_lost(peer)
            return
        if proto.transport is not None:
            proto.carried_sip = True
            proto.transport.write(data)
            self.stats.sent += 1

    @property
    def local_port(self) -> int:
        return self.port


def _trace(direction: str, data: bytes, peer: Peer) -> None:
    head, _, _ = data.partition(b"\r\n")
    call_id = b""
    for line in data.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
        if line[:8].lower() == b"call-id:" or line[:2].lower() == b"i:":
            call_id = line.split(b":", 1)[1].strip()
            break
    log.info(
        direction,
        peer=str(peer),
        first_line=head.decode("utf-8", "replace"),
        sip_call_id=call_id.decode("utf-8", "replace"),
        message=data.decode("utf-8", "replace") if len(data) < 4096 else None,
    )


def response_peer(request: Request, peer: Peer) -> Peer:
    """Where a response to `request` goes (RFC 3261 §18.2.2, RFC 3581 §4).

    Over TCP: back on the connection it came in on. Over UDP: to the source
    address, at the `rport` when the client asked for it (symmetric response
    routing through NAT), else at the Via's sent-by port.
    """
    if peer.transport == "tcp":
        return peer
    via = request.top_via
    if "rport" in via.parameters:
        return Peer("udp", peer.host, peer.port)
    # RFC 3261 §18.2.2: "received" is the source; port from sent-by or 5060.
    return Peer("udp", peer.host, via.port or 5060)
