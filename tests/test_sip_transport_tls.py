"""Outbound SIP over TLS on real loopback sockets (issue 11).

The centre's endpoint (transaction layer + transport) sends requests to a
far end that is another `SipTransport` with a TLS listener, its certificate
signed by a throw-away CA (tests/tls_certs.py). Proven here: a request to a
TLS destination with no connection opens one, verified against the
configured CA and the dialled host name, and says TLS in its Via; requests
made while it opens share it; a certificate from another CA or for another
host fails the transaction at once (not at Timer F) with a logged reason,
and the endpoint goes on serving; connections the centre opens are not
counted against the inbound caps.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from callcenter112.net.admission import TlsSetupError, client_tls_context, server_tls_context
from callcenter112.net.sip_endpoint import SipEndpoint
from callcenter112.net.sip_transport import SipTransport, response_peer
from callcenter112.sip.admission import TCP_PER_ADDRESS, EdgePolicy, SourceClass
from callcenter112.sip.events import ResponseReceived, TransactionEvent, TransportFailed
from callcenter112.sip.message import Headers, Request, Response, new_call_id, new_tag
from callcenter112.sip.peer import Peer
from callcenter112.sip.ratelimit import SourceGuard
from test_admission_net import until
from tls_certs import Authority, new_authority


@dataclass
class FarEnd:
    """An agency's carrier listening on TLS: answers every request 200 on
    the connection it came on, and remembers what it got and from where."""

    transport: SipTransport
    got: list[tuple[Request, Peer]] = field(default_factory=list)

    @property
    def port(self) -> int:
        assert self.transport.tls_port is not None
        return self.transport.tls_port


async def far_end(authority: Authority, directory: Path, **names: tuple[str, ...]) -> FarEnd:
    leaf = authority.issue(directory, "far", **names)
    holder: list[FarEnd] = []

    def on_message(message: Request | Response, peer: Peer) -> None:
        if isinstance(message, Request):
            holder[0].got.append((message, peer))
            answer = Response.for_request(message, 200, to_tag=new_tag())
            holder[0].transport.send(answer.serialize(), response_peer(message, peer))

    transport = SipTransport("127.0.0.1", 0, on_message)
    transport.tls = server_tls_context(str(leaf.certificate), str(leaf.key))
    transport.tls_host, transport.tls_port = "127.0.0.1", 0
    end = FarEnd(transport)
    holder.append(end)
    await transport.start()
    return end


@dataclass
class Centre:
    endpoint: SipEndpoint
    events: list[TransactionEvent] = field(default_factory=list)

    def options(self, peer: Peer) -> None:
        e = self.endpoint
        h = Headers()
        h.add("Via", e.via(peer.transport))
        h.add("Max-Forwards", "70")
        h.add("From", f"<sip:112@{e.advertise}>;tag={new_tag()}")
        h.add("To", f"<sip:agency@{peer.host}>")
        h.add("Call-ID", new_call_id(e.advertise))
        h.add("CSeq", "1 OPTIONS")
        h.add("Contact", e.contact("112", peer.transport))
        e.request(Request("OPTIONS", f"sip:agency@{peer.host}", h), peer, self.events.append)

    def outcomes(self) -> list[str]:
        return [
            str(e.response.status) if isinstance(e, ResponseReceived) else type(e).__name__
            for e in self.events
        ]


@pytest.fixture
def ca(tmp_path: Path) -> Authority:
    return new_authority(tmp_path / "ca", "city-ca")


@pytest.fixture
async def centre(tmp_path: Path, ca: Authority) -> AsyncIterator[Centre]:
    endpoint = SipEndpoint(host="127.0.0.1", port=0, advertise="127.0.0.1", on_event=lambda e: None)
    own = ca.issue(tmp_path / "centre", "centre", ips=("127.0.0.1",))
    endpoint.transport.tls = server_tls_context(str(own.certificate), str(own.key))
    endpoint.transport.tls_host, endpoint.transport.tls_port = "127.0.0.1", 0
    endpoint.transport.client_tls_loader = lambda: client_tls_context(str(ca.certificate))
    await endpoint.start()
    try:
        yield Centre(endpoint)
    finally:
        await endpoint.close()


async def test_request_opens_a_verified_tls_connection_and_says_tls(
    centre: Centre, ca: Authority, tmp_path: Path
) -> None:
    far = await far_end(ca, tmp_path / "far", ips=("127.0.0.1",))
    try:
        peer = Peer("tls", "127.0.0.1", far.port)
        for _ in range(3):  # all three before the connection is up
            centre.options(peer)
        await until(lambda: len(centre.events) == 3, "three answers over TLS")
        assert centre.outcomes() == ["200", "200", "200"]
        (conn,) = {p.conn_id for _, p in far.got}  # one connection carried them all
        assert all(p.transport == "tls" for _, p in far.got)
        request = far.got[0][0]
        tls_port = centre.endpoint.transport.tls_port
        assert request.top_via.transport == "TLS" and request.top_via.port == tls_port
        assert request.headers.get("Contact") == f"<sips:112@127.0.0.1:{tls_port}>"
        # A later request reuses the open connection.
        centre.options(peer)
        await until(lambda: len(centre.events) == 4, "a fourth answer")
        assert far.got[-1][1].conn_id == conn
    finally:
        await far.transport.close()


async def test_the_certificate_is_checked_against_the_host_name_dialled(
    centre: Centre, ca: Authority, tmp_path: Path
) -> None:
    far = await far_end(ca, tmp_path / "far", dns=("localhost",))
    try:
        centre.options(Peer("tls", "localhost", far.port))  # a configured name
        await until(lambda: centre.events, "the answer to a request by name")
        assert centre.outcomes() == ["200"]
        with capture_logs() as logs:
            centre.options(Peer("tls", "127.0.0.1", far.port))  # not in the certificate
            await until(lambda: len(centre.events) == 2, "the failure", seconds=10)
        assert centre.outcomes()[1] == "TransportFailed"
        (failed,) = [entry for entry in logs if entry["event"] == "tls_connect_failed"]
        assert failed["log_level"] == "error"
        assert "certificate not accepted" in failed["reason"]
        assert "127.0.0.1" in failed["reason"] or "mismatch" in failed["reason"]
        assert far.got and all(r.cseq.method == "OPTIONS" for r, _ in far.got)
        assert len(far.got) == 1  # the unverified connection carried nothing
    finally:
        await far.transport.close()


async def test_a_certificate_from_another_ca_fails_the_transaction_not_the_endpoint(
    centre: Centre, ca: Authority, tmp_path: Path
) -> None:
    stranger = new_authority(tmp_path / "other", "other-ca")
    bad = await far_end(stranger, tmp_path / "bad", ips=("127.0.0.1",))
    good = await far_end(ca, tmp_path / "good", ips=("127.0.0.1",))
    try:
        with capture_logs() as logs:
            centre.options(Peer("tls", "127.0.0.1", bad.port))
            await until(lambda: centre.events, "the failure", seconds=10)
        # RFC 3261 §17.1.4: a transport failure, not Timer F's TransactionTimedOut.
        assert centre.outcomes() == ["TransportFailed"]
        event = centre.events[0]
        assert isinstance(event, TransportFailed) and event.peer.transport == "tls"
        (failed,) = [entry for entry in logs if entry["event"] == "tls_connect_failed"]
        assert "certificate not accepted" in failed["reason"], failed
        assert not bad.got
        # The endpoint keeps serving: the next TLS destination works.
        centre.options(Peer("tls", "127.0.0.1", good.port))
        await until(lambda: len(centre.events) == 2, "the good answer")
        assert centre.outcomes() == ["TransportFailed", "200"]
        assert centre.endpoint.transport.stats.send_errors == 1
    finally:
        await bad.transport.close()
        await good.transport.close()


async def test_outbound_tls_is_not_refused_when_inbound_connections_fill_the_cap(
    centre: Centre, ca: Authority, tmp_path: Path
) -> None:
    loop = asyncio.get_running_loop()
    policy = EdgePolicy(
        trunk_networks=[ipaddress.ip_network("192.0.2.0/24")],
        guard=SourceGuard(),
        now=loop.time(),
        max_transactions=1000,
        max_tcp=16,
        tcp_reserved=4,
    )
    centre.endpoint.transport.admission = policy
    cap = TCP_PER_ADDRESS[SourceClass.ANONYMOUS]
    held = [
        await asyncio.open_connection("127.0.0.1", centre.endpoint.port) for _ in range(cap + 2)
    ]
    await until(lambda: policy.tcp_connections == cap, "the stranger's cap reached")
    far = await far_end(ca, tmp_path / "far", ips=("127.0.0.1",))
    try:
        centre.options(Peer("tls", "127.0.0.1", far.port))
        await until(lambda: centre.events, "the answer")
        assert centre.outcomes() == ["200"]
        assert policy.tcp_connections == cap  # ours are not counted against strangers
    finally:
        for _, writer in held:
            writer.close()
        await far.transport.close()


def test_the_ca_file_is_named_when_it_cannot_be_used(tmp_path: Path) -> None:
    with pytest.raises(TlsSetupError, match=r"sip\.tls_ca: no such file .*none\.pem"):
        client_tls_context(str(tmp_path / "none.pem"))
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(TlsSetupError, match=r"sip\.tls_ca: .*junk\.pem"):
        client_tls_context(str(junk))
    leaf = new_authority(tmp_path / "ca").issue(tmp_path / "leaf", "leaf", ips=("127.0.0.1",))
    only_key = tmp_path / "key-only.pem"
    only_key.write_bytes(leaf.key.read_bytes())
    with pytest.raises(TlsSetupError, match=r"sip\.tls_ca: "):
        client_tls_context(str(only_key))
    # Unset: the system's CAs, verifying, TLS 1.2 at least.
    ctx = client_tls_context(None)
    assert ctx.check_hostname and ctx.minimum_version.name == "TLSv1_2"
