"""SIP over UDP, TCP and TLS on `sip.listen` / `sip.tls_listen`: the only place SIP touches sockets.

Receives datagrams and stream segments, frames and parses them, and hands
each message with the `Peer` it came from to one callback. Malformed input
never escapes: a message that parsed far enough to be answered gets its
`SipParseError.status_hint` response (400, 505, 513) straight from here,
statelessly; anything else is dropped and counted.

Admission before parse (issue 11; the table is `sip/admission.py`): with an
`EdgePolicy` installed, every datagram's fate is decided from its source
address and its first bytes before it is parsed: trunk traffic always goes
through; a non-trunk out-of-dialog INVITE gets a *stateless* 403 from here
(no server transaction, nothing retransmitted), within a global budget;
everything else from non-trunk sources takes a token from its source's
bucket and, if it would create a server transaction, from its class's share
of the transaction table. TCP and TLS connections are admitted by class with
a per-address cap and a global reserve for the trunk and operators; a
non-trunk connection that sends no complete message within
`FIRST_MESSAGE_TIMEOUT_S` is closed. Without a policy the older
`allow_source` callback is used (tests and tools).

Over UDP (IPv4, Linux) the trunk's datagrams are steered by the kernel into
a socket of their own (`_trunk_lane`): a flood cannot fill the queue they
wait in.

TLS (RFC 3261 §26.2, `sips:`): connections accepted on the TLS listener are
streams like TCP ones and carry `Peer("tls", …, conn_id)`: answers and
requests to a phone registered over TLS go back on its connection. A request
to a TLS destination with no open connection opens one (`client_tls`: the
system's CAs or `sip.tls_ca`, the peer's certificate checked against the
host name we were given, RFC 5922 §7.2); a handshake that fails is logged
(`tls_connect_failed`, with the reason) and fails the transactions waiting
on it at once, like a refused TCP connection (RFC 3261 §17.1.4). Requests
to one destination while its connection is being opened wait for it rather
than open more. Connections the centre opens are its own legs: they are
not counted against the admission policy's caps (issue 11's reserve for
the centre's outbound legs), so a flood of inbound connections cannot stop
an outbound call.

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
import ctypes
import ipaddress
import socket
import ssl
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from ..logs import get_logger
from ..sip.admission import (
    FIRST_MESSAGE_TIMEOUT_S,
    MAX_TCP_CONNECTIONS,
    EdgePolicy,
    SourceClass,
    Verdict,
    message_kind,
)
from ..sip.errors import SipParseError
from ..sip.framing import KeepAlivePing, StreamFramer
from ..sip.message import MAX_MESSAGE_SIZE, Request, Response, new_tag, parse_message
from ..sip.peer import Peer

__all__ = ["MAX_TCP_CONNECTIONS", "UDP_RECEIVE_BUFFER", "SipTransport", "TransportStats"]

log = get_logger("sip.transport")

MessageHandler = Callable[[Request | Response, Peer], None]
# TCP connections idle this long are closed (RFC 5626 keep-alives refresh it).
TCP_IDLE_TIMEOUT_S = 600.0
# An outgoing TCP connect, and TLS handshake, must be done within this: no
# RFC sets it; a leg's INVITE would otherwise wait for Timer B (32 s) before
# the call tries the next operator or reports the agency unreachable.
CONNECT_TIMEOUT_S = 5.0
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
    refused_403: int = 0
    trunk_lane: int = 0  # datagrams that came in on the trunk's own socket
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
    def __init__(self, owner: SipTransport, *, trunk_lane: bool = False) -> None:
        self.owner = owner
        self.transport: asyncio.DatagramTransport | None = None
        self.trunk_lane = trunk_lane

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.DatagramTransport, transport)  # uvloop's is not a subclass
        # DESIGN §5: asyncio's default 256 KiB receive buffer per datagram.
        if hasattr(transport, "max_size"):
            transport.max_size = MAX_MESSAGE_SIZE
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        if self.trunk_lane:
            self.owner.stats.trunk_lane += 1
        self.owner._on_datagram(data, addr[0], addr[1])

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable for a datagram we sent: the peer is gone.
        self.owner.stats.send_errors += 1


class _TcpProtocol(asyncio.Protocol):
    def __init__(
        self,
        owner: SipTransport,
        *,
        outgoing: bool = False,
        tls: bool = False,
        dest: Peer | None = None,
    ) -> None:
        self.owner = owner
        self.tls = tls
        # The destination an outgoing connection was opened for, as asked
        # (a host name stays a name): later requests to it reuse this one.
        self.dest = dest
        self.framer = StreamFramer()
        self.transport: asyncio.Transport | None = None
        self.peer: Peer | None = None
        self.idle_handle: asyncio.TimerHandle | None = None
        # Armed until the first complete message (module doc).
        self.first_handle: asyncio.TimerHandle | None = None
        # A message went up to the transaction layer, or one was sent here.
        self.carried_sip = False
        self.outgoing = outgoing
        self.source_class: SourceClass | None = None  # admitted by the policy

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.transport = transport
        host, port = transport.get_extra_info("peername")[:2]
        policy = self.owner.admission
        loop = asyncio.get_running_loop()
        if self.outgoing:
            pass  # ours: the centre's own legs are never refused
        elif policy is not None:
            self.source_class = policy.open_connection(host, loop.time())
            if self.source_class is None:
                transport.abort()
                return
            if self.source_class is not SourceClass.TRUNK:
                self.first_handle = loop.call_later(FIRST_MESSAGE_TIMEOUT_S, self._no_message)
        elif len(self.owner._tcp) >= MAX_TCP_CONNECTIONS:
            transport.abort()
            return
        conn_id = self.owner._register_tcp(self)
        self.peer = Peer("tls" if self.tls else "tcp", host, port, conn_id)
        self._arm_idle()

    def _no_message(self) -> None:
        self.first_handle = None
        policy = self.owner.admission
        if policy is not None:
            policy.stats.tcp_first_message_timeouts += 1
        if self.transport is not None:
            log.info("tcp_first_message_timeout", peer=str(self.peer))
            self.transport.abort()

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
        owner = self.owner
        for item in items:
            if isinstance(item, KeepAlivePing):
                self.transport.write(KeepAlivePing.PONG)
                continue
            if self.first_handle is not None:
                self.first_handle.cancel()
                self.first_handle = None
            if isinstance(item, SipParseError):
                kind = b"?"
            elif isinstance(item, Request):
                kind = item.method.encode("ascii", "replace")
            else:
                kind = b""
            verdict = owner._admit(kind, self.peer.host)
            if verdict is Verdict.DROP:
                owner.stats.throttled += 1
            elif isinstance(item, SipParseError):
                owner._on_parse_error(item, self.peer)
            elif verdict is Verdict.REFUSE and owner._refuse(item, self.peer):
                pass
            else:
                self.carried_sip = True
                owner._deliver(item, self.peer)
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
        if self.first_handle is not None:
            self.first_handle.cancel()
        policy = self.owner.admission
        if policy is not None and self.source_class is not None and self.peer is not None:
            policy.close_connection(self.peer.host, self.source_class)
            self.source_class = None
        if self.peer is not None and self.peer.conn_id is not None:
            self.owner._tcp.pop(self.peer.conn_id, None)
            if self.carried_sip and self.owner.on_connection_lost is not None:
                self.owner.on_connection_lost(self.peer)
                if self.dest is not None:  # requests sent to it by name
                    self.owner.on_connection_lost(self.dest)


class SipTransport:
    """UDP + TCP listener and sender for one `host:port`, plus TLS on `tls_port`."""

    def __init__(
        self,
        host: str,
        port: int,
        on_message: MessageHandler,
        *,
        allow_source: Callable[[str], bool] | None = None,
        admission: EdgePolicy | None = None,
        tls: ssl.SSLContext | None = None,
        tls_host: str | None = None,
        tls_port: int | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.on_message = on_message
        self.allow_source = allow_source
        # Set before start() (net/admission.py `install_edge`).
        self.admission = admission
        self.tls = tls
        self.tls_loader: Callable[[], ssl.SSLContext] | None = None
        self.tls_host = tls_host
        self.tls_port = tls_port
        # Outgoing TLS (module doc): built by start() from the loader.
        self.client_tls: ssl.SSLContext | None = None
        self.client_tls_loader: Callable[[], ssl.SSLContext] | None = None
        self._tls_server: asyncio.Server | None = None
        self._trunk_udp: _UdpProtocol | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.on_connection_lost: Callable[[Peer], None] | None = None
        self.trace = False
        # Issue 16: every message in and out, for the per-incident SIP capture.
        self.tap: Callable[[str, bytes, Peer], None] | None = None
        self.stats = TransportStats()
        self._udp: _UdpProtocol | None = None
        self._server: asyncio.Server | None = None
        self._tcp: dict[int, _TcpProtocol] = {}
        self._next_conn = 1
        # Outgoing connections being opened: held so that they are neither
        # garbage-collected mid-flight nor left running after close().
        self._connecting: set[asyncio.Task[None]] = set()
        # What waits for each of them: (transport, host, port) → the
        # messages, in order, and every Peer they were addressed to.
        self._opening: dict[tuple[str, str, int], tuple[list[bytes], set[Peer]]] = {}

    # -- lifecycle ------------------------------------------------------------

    async def start(self) -> None:
        loop = self._loop = asyncio.get_running_loop()
        if self.tls is None and self.tls_loader is not None:
            self.tls = self.tls_loader()  # raises before any socket is opened
        if self.client_tls is None and self.client_tls_loader is not None:
            self.client_tls = self.client_tls_loader()
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        trunk_nets = (
            [n for n in self.admission.networks if n.version == 4]
            if self.admission is not None and family == socket.AF_INET
            else []
        )
        lane: tuple[socket.socket, socket.socket] | None = None
        if trunk_nets:
            try:
                lane = _trunk_lane(self.host, self.port, trunk_nets)
            except OSError as exc:  # pragma: no cover - not Linux, or refused
                log.warning("trunk_lane_unavailable", error=str(exc))
        if lane is not None:
            # The trunk's own kernel queue (see `_trunk_lane`).
            _, proto = await loop.create_datagram_endpoint(lambda: _UdpProtocol(self), sock=lane[0])
            _, self._trunk_udp = await loop.create_datagram_endpoint(
                lambda: _UdpProtocol(self, trunk_lane=True), sock=lane[1]
            )
        else:
            _, proto = await loop.create_datagram_endpoint(
                lambda: _UdpProtocol(self), local_addr=(self.host, self.port), family=family
            )
        self._udp = proto
        for udp in (proto, self._trunk_udp):
            sock = udp.transport.get_extra_info("socket") if udp and udp.transport else None
            if sock is None:
                continue
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
        if self.tls is not None and self.tls_port is not None:
            tls_host = self.tls_host or self.host
            self._tls_server = await loop.create_server(
                lambda: _TcpProtocol(self, tls=True),
                host=tls_host,
                port=self.tls_port,
                family=socket.AF_INET6 if ":" in tls_host else socket.AF_INET,
                reuse_address=True,
                ssl=self.tls,
                # A handshake is part of the first message's time budget.
                ssl_handshake_timeout=FIRST_MESSAGE_TIMEOUT_S,
            )
            if self.tls_port == 0:  # tests
                self.tls_port = self._tls_server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        for task in list(self._connecting):
            task.cancel()
        if self._server is not None:
            self._server.close()
        if self._tls_server is not None:
            self._tls_server.close()
        for conn in list(self._tcp.values()):
            if conn.transport is not None:
                conn.transport.close()
        for udp in (self._udp, self._trunk_udp):
            if udp is not None and udp.transport is not None:
                udp.transport.close()
        if self._server is not None:
            await self._server.wait_closed()
        if self._tls_server is not None:
            await self._tls_server.wait_closed()

    # -- receiving ------------------------------------------------------------

    def _register_tcp(self, conn: _TcpProtocol) -> int:
        conn_id = self._next_conn
        self._next_conn += 1
        self._tcp[conn_id] = conn
        self.stats.tcp_connections += 1
        return conn_id

    def _admit(self, kind: bytes, host: str) -> Verdict:
        policy = self.admission
        if policy is not None:
            assert self._loop is not None
            return policy.admit(kind, host, self._loop.time())
        if self.allow_source is not None and not self.allow_source(host):
            return Verdict.DROP
        return Verdict.DELIVER

    def _on_datagram(self, data: bytes, host: str, port: int) -> None:
        self.stats.datagrams += 1
        if len(data) <= 4 and not data.strip(b"\r\n\x00 "):
            return  # RFC 5626 keep-alive or NAT pinhole packet
        verdict = self._admit(message_kind(data), host)
        if verdict is Verdict.DROP:
            self.stats.throttled += 1
            return
        peer = Peer("udp", host, port)
        try:
            message = parse_message(data)
        except SipParseError as exc:
            self._on_parse_error(exc, peer)
            return
        if verdict is Verdict.REFUSE and self._refuse(message, peer):
            return
        self._deliver(message, peer)

    def _refuse(self, message: Request | Response, peer: Peer) -> bool:
        """A non-trunk INVITE (admission said REFUSE): an out-of-dialog one
        gets a stateless 403 here and True; an in-dialog one must still
        take a transaction from its class's share (False: deliver it), or
        is dropped (True)."""
        policy = self.admission
        assert policy is not None and self._loop is not None
        now = self._loop.time()
        if not isinstance(message, Request) or message.to_tag:
            if policy.admit_transaction(policy.classify(peer.host, now), now) is Verdict.DROP:
                self.stats.throttled += 1
                return True
            return False
        # DESIGN §2: "Anything else: 403 (unknown source)". Stateless (RFC
        # 3261 §8.2.6): nothing is held or retransmitted for a stranger.
        answer = Response.for_request(
            message, 403, to_tag=new_tag(), headers=[("Warning", '399 callcenter112 "not a trunk"')]
        )
        try:
            dest = response_peer(message, peer)
        except SipParseError:
            self.stats.dropped += 1
            return True
        self.stats.refused_403 += 1
        # At most REFUSALS_PER_S of these a second (sip/admission.py).
        log.info("invite_forbidden", source=str(peer), uri=message.uri, stateless=True)
        self.send(answer.serialize(), dest)
        return True

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
        if self.tap is not None:  # issue 16: SIP capture
            self.tap("in", message.serialize(), peer)
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
        if self.tap is not None:  # issue 16: SIP capture
            self.tap("out", data, peer)
        if peer.reliable:
            conn = self._tcp.get(peer.conn_id) if peer.conn_id is not None else None
            if conn is None or conn.peer is None or conn.peer.transport != peer.transport:
                conn = self._find_tcp(peer)
            if conn is None or conn.transport is None or conn.transport.is_closing():
                # No connection to reuse: open one and send when it is up.
                self._send_when_open(data, peer)
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
        """A live connection of `peer`'s transport to its address: one that
        came from there, or one we opened to that same destination. A
        connection we opened is matched only by the name it was opened (and
        its certificate verified) for, never by the address it resolved to."""
        want = (peer.transport, peer.host, peer.port)
        for conn in self._tcp.values():
            seen = conn.dest or conn.peer
            if seen is not None and (seen.transport, seen.host, seen.port) == want:
                return conn
        return None

    def _send_when_open(self, data: bytes, peer: Peer) -> None:
        key = (peer.transport, peer.host, peer.port)
        waiting = self._opening.get(key)
        if waiting is not None:
            waiting[0].append(data)
            waiting[1].add(peer)
            return
        self._opening[key] = ([data], {peer})
        task = asyncio.get_running_loop().create_task(self._connect_and_send(key))
        self._connecting.add(task)
        task.add_done_callback(self._connecting.discard)

    async def _connect_and_send(self, key: tuple[str, str, int]) -> None:
        transport, host, port = key
        loop = asyncio.get_running_loop()
        dest = Peer("tls" if transport == "tls" else "tcp", host, port)
        tls = transport == "tls"
        try:
            if tls and self.client_tls is None:
                raise ssl.SSLError("no client TLS context (transport not started)")
            _, proto = await asyncio.wait_for(
                loop.create_connection(
                    lambda: _TcpProtocol(self, outgoing=True, tls=tls, dest=dest),
                    host,
                    port,
                    ssl=self.client_tls if tls else None,
                    # RFC 5922 §7.2 / RFC 6125: the certificate must name
                    # the host we were told to reach (a configured name or
                    # address), checked by the context (check_hostname).
                    server_hostname=host if tls else None,
                    ssl_handshake_timeout=CONNECT_TIMEOUT_S if tls else None,
                ),
                CONNECT_TIMEOUT_S,
            )
        except Exception as exc:  # noqa: BLE001 - whatever it is, the waiting messages must fail now
            _, peers = self._opening.pop(key, ([], set()))
            self.stats.send_errors += 1
            if tls:
                # An operator and a deployment must see why: a wrong CA or
                # host name is a configuration error, not a flaky network.
                log.error("tls_connect_failed", peer=str(dest), reason=_tls_reason(exc))
            else:
                log.info("tcp_connect_failed", peer=str(dest))
            # RFC 3261 §17.1.4: a transport failure ends the transaction
            # now, not at Timer B/F (the operator's phone is gone: offer the
            # call to the next one; an agency call fails with 503).
            if self.on_connection_lost is not None:
                for peer in peers:
                    self.on_connection_lost(peer)
            return
        messages, _ = self._opening.pop(key, ([], set()))
        if proto.transport is not None:
            proto.carried_sip = True
            for data in messages:
                proto.transport.write(data)
                self.stats.sent += 1

    @property
    def local_port(self) -> int:
        return self.port


# Linux socket options and classic-BPF opcodes (linux/filter.h, asm/socket.h).
_SO_ATTACH_REUSEPORT_CBPF = 51
_SKF_NET_OFF = -0x100000
_LD_W_ABS, _ALU_AND_K, _JMP_JEQ_K, _RET_K = 0x20, 0x54, 0x15, 0x06


def _trunk_lane(
    host: str, port: int, networks: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network]
) -> tuple[socket.socket, socket.socket]:
    """Two UDP sockets on one `host:port` (SO_REUSEPORT); a classic BPF
    program on the group sends datagrams whose IPv4 source is in `networks`
    to the second one, everything else to the first.

    Why: a flood fills the socket's kernel queue faster than the loop drains
    it, and the trunk's INVITEs would wait behind it (or be dropped with it
    when the queue is full) before admission could ever see them. With its
    own queue, the trunk's datagrams are read on the next loop turn whatever
    the flood does (uvloop reads a bounded batch per socket per turn).
    Measured in `scripts/bench edge`. Linux only; elsewhere, and for IPv6,
    one socket as before.
    """
    if not hasattr(socket, "SO_REUSEPORT"):  # pragma: no cover - not Linux
        raise OSError("SO_REUSEPORT unavailable")
    socks = []
    for _ in range(2):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        s.setblocking(False)
        s.bind((host, port))
        port = s.getsockname()[1]  # the second joins the port the first got
        socks.append(s)
    # A = source address (IPv4 header offset 12); for each network: if
    # (A & mask) == net return 1 (the trunk's socket); finally return 0.
    program: list[tuple[int, int, int, int]] = []
    for net in networks:
        program += [
            (_LD_W_ABS, 0, 0, _SKF_NET_OFF + 12),
            (_ALU_AND_K, 0, 0, int(net.netmask)),
            (_JMP_JEQ_K, 0, 1, int(net.network_address)),
            (_RET_K, 0, 0, 1),
        ]
    program.append((_RET_K, 0, 0, 0))
    code = b"".join(struct.pack("HBBI", c, jt, jf, k & 0xFFFFFFFF) for c, jt, jf, k in program)
    buf = ctypes.create_string_buffer(code)
    fprog = struct.pack("HL", len(program), ctypes.addressof(buf))
    try:
        socks[0].setsockopt(socket.SOL_SOCKET, _SO_ATTACH_REUSEPORT_CBPF, fprog)
    except OSError:
        for s in socks:
            s.close()
        raise
    return socks[0], socks[1]


def _tls_reason(exc: BaseException) -> str:
    """Why a TLS connection could not be opened, in words for the log."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate not accepted: {exc.verify_message or exc.reason}"
    if isinstance(exc, TimeoutError):
        return f"no TLS handshake within {CONNECT_TIMEOUT_S:g} s"
    if isinstance(exc, ssl.SSLError):
        return f"TLS handshake failed: {exc.reason or exc}"
    return f"cannot connect: {exc.strerror or exc}" if isinstance(exc, OSError) else str(exc)


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

    Over TCP and TLS: back on the connection it came in on. Over UDP: to the source
    address, at the `rport` when the client asked for it (symmetric response
    routing through NAT), else at the Via's sent-by port.
    """
    if peer.reliable:
        return peer
    via = request.top_via
    if "rport" in via.parameters:
        return Peer("udp", peer.host, peer.port)
    # RFC 3261 §18.2.2: "received" is the source; port from sent-by or 5060.
    return Peer("udp", peer.host, via.port or 5060)
