"""The edge on real loopback sockets: stateless 403, TCP caps, first-message timeout, TLS.

`SipTransport` with an `EdgePolicy` installed, strangers sending from other
127.0.0.0/8 addresses than the trunk's 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from callcenter112.net import sip_transport
from callcenter112.net.admission import TlsSetupError, server_tls_context
from callcenter112.net.sip_transport import SipTransport
from callcenter112.sip.admission import REFUSALS_PER_S, TCP_PER_ADDRESS, EdgePolicy, SourceClass
from callcenter112.sip.message import Request, Response
from callcenter112.sip.peer import Peer
from callcenter112.sip.ratelimit import SourceGuard

TRUNK = "127.0.0.1"


def invite(port: int, call_id: str, transport: str = "UDP", to_tag: str = "") -> bytes:
    tag = f";tag={to_tag}" if to_tag else ""
    return (
        f"INVITE sip:112@127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/{transport} 127.0.0.1:{port};branch=z9hG4bK-{call_id};rport\r\n"
        f"From: <sip:0812@127.0.0.1>;tag=f-{call_id}\r\nTo: <sip:112@127.0.0.1>{tag}\r\n"
        f"Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    ).encode()


class Harness:
    def __init__(self) -> None:
        self.delivered: list[tuple[Request | Response, Peer]] = []
        self.transport = SipTransport("127.0.0.1", 0, lambda m, p: self.delivered.append((m, p)))

    def calls(self) -> list[str]:
        return [m.call_id for m, _ in self.delivered]


@pytest.fixture
async def edge() -> AsyncIterator[Harness]:
    h = Harness()
    loop = asyncio.get_running_loop()
    h.transport.admission = EdgePolicy(
        trunk_networks=[ipaddress.ip_network("127.0.0.1/32")],
        guard=SourceGuard(),
        now=loop.time(),
        max_transactions=50_000,
        max_tcp=64,
        tcp_reserved=16,
    )
    await h.transport.start()
    try:
        yield h
    finally:
        await h.transport.close()


async def until(condition: object, what: str, seconds: float = 5.0) -> None:
    assert callable(condition)
    for _ in range(int(seconds / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def udp_from(host: str) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((host, 0))
    s.settimeout(2.0)
    return s


async def test_stranger_invite_gets_a_stateless_403_and_the_trunk_a_call(edge: Harness) -> None:
    port = edge.transport.port
    stranger = udp_from("127.0.3.4")
    stranger.sendto(invite(stranger.getsockname()[1], "s-1"), ("127.0.0.1", port))
    answer = await asyncio.to_thread(stranger.recv, 4096)
    assert answer.startswith(b"SIP/2.0 403 ")
    assert b"Call-ID: s-1" in answer and b";tag=" in answer.split(b"To:", 1)[1].split(b"\r\n")[0]
    # Nothing went up to the transaction layer: nothing is held, nothing
    # will be retransmitted.
    assert edge.calls() == []
    stranger.settimeout(1.2)  # past T1 * 2: a stateful 403 would be retransmitted
    with pytest.raises(TimeoutError):
        await asyncio.to_thread(stranger.recv, 4096)
    trunk = udp_from(TRUNK)
    trunk.sendto(invite(trunk.getsockname()[1], "t-1"), ("127.0.0.1", port))
    await until(lambda: edge.calls() == ["t-1"], "the trunk's INVITE")
    # The kernel put the trunk's datagram on the trunk's own socket, the
    # stranger's on the other one.
    assert edge.transport.stats.trunk_lane == 1
    assert edge.transport.stats.datagrams == 2
    stranger.close()
    trunk.close()


async def test_in_dialog_invite_from_a_stranger_is_delivered(edge: Harness) -> None:
    """A re-INVITE carries a To tag: the dialog layer answers it (481 if it
    is no dialog of ours); only out-of-dialog INVITEs are refused here."""
    s = udp_from("127.0.3.5")
    s.sendto(invite(s.getsockname()[1], "r-1", to_tag="x1"), ("127.0.0.1", edge.transport.port))
    await until(lambda: edge.calls() == ["r-1"], "the re-INVITE")
    s.close()


async def test_flood_from_many_addresses_leaves_the_trunk_delivered(edge: Harness) -> None:
    port = edge.transport.port
    senders = [udp_from(f"127.0.{10 + i // 200}.{1 + i % 200}") for i in range(400)]
    trunk = udp_from(TRUNK)
    started = asyncio.get_running_loop().time()
    try:
        for round_ in range(10):
            for i, s in enumerate(senders):
                s.sendto(invite(9, f"f-{round_}-{i}"), ("127.0.0.1", port))
            trunk.sendto(invite(trunk.getsockname()[1], f"t-{round_}"), ("127.0.0.1", port))
            await asyncio.sleep(0)
        await until(
            lambda: sum(c.startswith("t-") for c in edge.calls()) == 10, "all trunk INVITEs"
        )
        policy = edge.transport.admission
        assert policy is not None
        await until(
            lambda: policy.stats.refused + policy.stats.dropped_refusals == 4000,
            "the whole flood judged",
        )
    finally:
        for s in senders:
            s.close()
        trunk.close()
    elapsed = asyncio.get_running_loop().time() - started
    assert not any(c.startswith("f-") for c in edge.calls())
    policy = edge.transport.admission
    assert policy is not None
    # The global budget: a burst of REFUSALS_PER_S, then that many a second.
    assert policy.stats.refused <= REFUSALS_PER_S * (1 + elapsed) + 1
    assert policy.stats.dropped_refusals > 0


async def test_tcp_connections_capped_per_address_trunk_still_accepted(edge: Harness) -> None:
    port = edge.transport.port
    cap = TCP_PER_ADDRESS[SourceClass.ANONYMOUS]
    held: list[socket.socket] = []
    try:
        for _ in range(cap + 4):
            s = socket.socket()
            s.bind(("127.0.4.4", 0))
            s.connect(("127.0.0.1", port))
            held.append(s)
        policy = edge.transport.admission
        assert policy is not None
        await until(lambda: policy.stats.tcp_refused == 4, "the refused connections")
        assert policy.tcp_connections == cap
        _, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(TRUNK, 0))
        writer.write(invite(writer.get_extra_info("sockname")[1], "t-tcp", "TCP"))
        await writer.drain()
        await until(lambda: edge.calls() == ["t-tcp"], "the trunk's INVITE over TCP")
        writer.close()
    finally:
        for s in held:
            s.close()


async def test_silent_connection_is_closed_after_the_first_message_timeout(
    edge: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sip_transport, "FIRST_MESSAGE_TIMEOUT_S", 0.3)
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", edge.transport.port, local_addr=("127.0.5.5", 0)
    )
    writer.write(b"\r\n\r\n")  # a keep-alive is not a message
    writer.write(b"OPTIONS sip:x SIP/2.0\r\n")  # half a message neither
    await writer.drain()
    assert await asyncio.wait_for(reader.read(), 3.0) in (b"", b"\r\n")
    policy = edge.transport.admission
    assert policy is not None
    assert policy.stats.tcp_first_message_timeouts == 1
    await until(lambda: policy.tcp_connections == 0, "the connection's place given back")
    # A trunk connection is not timed out (carriers keep idle connections).
    _, trunk = await asyncio.open_connection(
        "127.0.0.1", edge.transport.port, local_addr=(TRUNK, 0)
    )
    await asyncio.sleep(0.6)
    assert policy.tcp_connections == 1 and policy.stats.tcp_first_message_timeouts == 1
    trunk.close()
    writer.close()


# -- TLS -----------------------------------------------------------------------------------


def self_signed(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


async def test_sip_over_tls_delivers_and_answers_on_the_same_connection(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    h = Harness()
    h.transport.tls = server_tls_context(str(cert), str(key))
    h.transport.tls_port = 0
    await h.transport.start()
    try:
        client = ssl.create_default_context(cafile=str(cert))
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", h.transport.tls_port, ssl=client, server_hostname="127.0.0.1"
        )
        writer.write(invite(5061, "tls-1", "TLS"))
        await writer.drain()
        await until(lambda: h.calls() == ["tls-1"], "the INVITE over TLS")
        message, peer = h.delivered[0]
        assert isinstance(message, Request) and peer.conn_id is not None
        h.transport.send(Response.for_request(message, 100).serialize(), peer)
        line = await asyncio.wait_for(reader.readline(), 3.0)
        assert line == b"SIP/2.0 100 Trying\r\n"
        # Plain text on the TLS port is no SIP: the handshake fails, nothing delivered.
        plain_r, plain_w = await asyncio.open_connection("127.0.0.1", h.transport.tls_port)
        plain_w.write(invite(5061, "plain-1", "TCP"))
        await plain_w.drain()
        try:
            closed = await asyncio.wait_for(plain_r.read(), 5.0)
        except ConnectionResetError:
            closed = b""
        assert closed == b""  # refused by the handshake, never answered as SIP
        assert h.calls() == ["tls-1"]
        writer.close()
        plain_w.close()
    finally:
        await h.transport.close()


def test_tls_context_names_the_key_when_a_file_is_missing(tmp_path: Path) -> None:
    with pytest.raises(TlsSetupError, match=r"sip\.tls_certificate: no such file .*none\.pem"):
        server_tls_context(str(tmp_path / "none.pem"), str(tmp_path / "none.key"))
    (tmp_path / "bad.pem").write_text("not a certificate")
    with pytest.raises(TlsSetupError, match="cannot be used"):
        server_tls_context(str(tmp_path / "bad.pem"), str(tmp_path / "bad.pem"))


async def test_stranger_invite_over_tcp_gets_403_on_its_connection(edge: Harness) -> None:
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", edge.transport.port, local_addr=("127.0.6.6", 0)
    )
    writer.write(invite(writer.get_extra_info("sockname")[1], "s-tcp", "TCP"))
    await writer.drain()
    status = await asyncio.wait_for(reader.readline(), 3.0)
    assert status.startswith(b"SIP/2.0 403 ")
    assert edge.calls() == []
    assert edge.transport.stats.refused_403 == 1
    writer.close()
