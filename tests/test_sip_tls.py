"""TLS as a transport of its own (issue 11), without sockets: what our Via and
Contact say on a TLS leg, which transport a URI asks for, where answers go,
and who the endpoint says it is per transport. The timers are in
tests/test_transaction.py (`test_reliable_transport_…[tls]`); real TLS
connections in tests/test_sip_transport_tls.py."""

from __future__ import annotations

import pytest

from callcenter112.net.sip_endpoint import SipEndpoint
from callcenter112.sip.dialog import Dialog
from callcenter112.sip.message import Headers, Request, parse_address, parse_message
from callcenter112.sip.peer import Peer, contact_uri, uri_transport, via_value
from callcenter112.sip.registrar import Registrar
from callcenter112.sip.transaction import response_destination
from test_kamailio_path import EDGE, T0, register


@pytest.mark.parametrize(
    ("transport", "via"),
    [
        ("udp", "SIP/2.0/UDP 192.0.2.5:5060;branch=z9hG4bK1;rport"),
        ("tcp", "SIP/2.0/TCP 192.0.2.5:5060;branch=z9hG4bK1;rport"),
        ("tls", "SIP/2.0/TLS 192.0.2.5:5060;branch=z9hG4bK1;rport"),
    ],
)
def test_via_names_the_transport(transport: str, via: str) -> None:
    assert via_value(transport, "192.0.2.5", 5060, "z9hG4bK1") == via


@pytest.mark.parametrize(
    ("transport", "host", "port", "contact"),
    [
        ("udp", "192.0.2.5", 5060, "<sip:112@192.0.2.5:5060>"),
        ("tcp", "192.0.2.5", 5060, "<sip:112@192.0.2.5:5060;transport=tcp>"),
        # RFC 3261 §26.2.2, RFC 5630 §3.1.3: sips:, never the deprecated transport=tls.
        ("tls", "192.0.2.5", 5061, "<sips:112@192.0.2.5:5061>"),
        ("tls", "2001:db8::5", 5061, "<sips:112@[2001:db8::5]:5061>"),
    ],
)
def test_contact_on_a_tls_leg_is_sips(transport: str, host: str, port: int, contact: str) -> None:
    assert contact_uri("112", host, port, transport) == contact
    uri = parse_address(contact).uri  # well-formed for our own parser
    assert uri_transport(uri.scheme, uri.parameters.get("transport")) == transport


@pytest.mark.parametrize(
    ("scheme", "param", "transport"),
    [
        ("sip", None, "udp"),
        ("sip", "UDP", "udp"),
        ("sip", "tcp", "tcp"),
        ("sip", "TLS", "tls"),
        ("sips", None, "tls"),
        ("SIPS", "tcp", "tls"),  # §26.2.2: sips over TCP is TLS
        ("sips", "tls", "tls"),
        ("sip", "sctp", None),
        ("sips", "udp", None),
        ("sip", "ws", None),
    ],
)
def test_transport_a_uri_asks_for(scheme: str, param: str | None, transport: str | None) -> None:
    assert uri_transport(scheme, param) == transport


def _request(via: str) -> Request:
    h = Headers()
    h.add("Via", via)
    h.add("From", "<sip:agency@192.0.2.9>;tag=a")
    h.add("To", "<sip:112@192.0.2.5>")
    h.add("Call-ID", "tls-1")
    h.add("CSeq", "1 OPTIONS")
    h.add("Max-Forwards", "70")
    message = parse_message(Request("OPTIONS", "sip:112@192.0.2.5", h).serialize())
    assert isinstance(message, Request)
    return message


def test_answers_go_back_on_the_tls_connection_else_to_the_tls_sent_by() -> None:
    request = _request("SIP/2.0/TLS 192.0.2.9;branch=z9hG4bK-x")
    on_connection = Peer("tls", "192.0.2.9", 40123, conn_id=4)
    assert response_destination(request, on_connection) == on_connection
    # The connection is gone (§18.2.2): a new TLS one to sent-by, 5061 by default.
    assert response_destination(request, Peer("tls", "192.0.2.9", 40123)) == Peer(
        "tls", "192.0.2.9", 5061
    )


def test_in_dialog_requests_of_a_tls_dialog_say_tls() -> None:
    dialog = Dialog(
        call_id="c",
        local_tag="l",
        remote_tag="r",
        local_uri="<sip:112@192.0.2.5>",
        remote_uri="<sip:op1@192.0.2.9>",
        local_cseq=1,
        remote_cseq=None,
        remote_target="sip:op1@192.0.2.9:5063;transport=tls",
        via_host="192.0.2.5",
        via_port=5061,
        transport="tls",
        local_contact="<sips:112@192.0.2.5:5061>",
    )
    bye = dialog.create_request("BYE")
    assert bye.top_via.transport == "TLS" and bye.top_via.port == 5061
    reinvite = dialog.create_request("INVITE")
    assert reinvite.headers.get("Contact") == "<sips:112@192.0.2.5:5061>"


def test_endpoint_names_its_tls_listener_on_tls_legs() -> None:
    endpoint = SipEndpoint(host="127.0.0.1", port=5070, advertise="192.0.2.5", on_event=print)
    endpoint.transport.tls_port = 5071
    tls = endpoint.local_party("tls", user_agent="ua")
    assert (tls.via_host, tls.via_port, tls.contact) == (
        "192.0.2.5",
        5071,
        "<sips:112@192.0.2.5:5071>",
    )
    udp = endpoint.local_party("udp", user_agent="ua")
    assert (udp.via_port, udp.contact) == (5070, "<sip:112@192.0.2.5:5070>")
    assert endpoint.via("tls").startswith("SIP/2.0/TLS 192.0.2.5:5071;branch=z9hG4bK")
    # Without a TLS listener configured: RFC 3263 §4.2's 5061.
    endpoint.transport.tls_port = None
    assert endpoint.port_for("tls") == 5061


@pytest.mark.parametrize(
    ("first_hop", "target"),
    [
        ("<sips:10.10.0.2;lr>", Peer("tls", "10.10.0.2", 5061)),
        ("<sip:10.10.0.2:5071;transport=tls;lr>", Peer("tls", "10.10.0.2", 5071)),
        ("<sip:10.10.0.2;transport=tcp;lr>", Peer("tcp", "10.10.0.2", 5060)),
    ],
)
def test_a_binding_behind_a_tls_edge_is_reached_over_tls(first_hop: str, target: Peer) -> None:
    """RFC 3327 Path: the first hop's URI picks the transport to the edge."""
    reg = Registrar(path_proxies=[EDGE.host])
    assert reg.handle_register(register(f"Path: {first_hop}"), "op1", T0, source=EDGE).status == 200
    (binding,) = reg.contacts("op1")
    assert binding.target == target and binding.route_set == (first_hop,)
