"""Registrar Path support (RFC 3327): a phone registered through the Kamailio
edge is reached through it. Pure: requests as bytes, `now` passed in."""

from __future__ import annotations

import json

from callcenter112.sip.message import Request, parse_message
from callcenter112.sip.peer import Peer
from callcenter112.sip.registrar import Registrar, binding_from_dict, binding_to_dict

T0 = 1000.0
EDGE = Peer("udp", "10.10.0.2", 5060)  # the REGISTER arrives from the edge
PATH = "<sip:10.10.0.2;lr;received=sip:203.0.113.9:40123>"


def register(*extra: str, contact: str = "<sip:op1@192.168.1.20:5062>") -> Request:
    lines = [
        "REGISTER sip:10.10.0.2 SIP/2.0",
        "Via: SIP/2.0/UDP 10.10.0.2;branch=z9hG4bKedge1",
        "Via: SIP/2.0/UDP 192.168.1.20:5062;branch=z9hG4bKphone1;rport=40123;received=203.0.113.9",
        "From: <sip:op1@10.10.0.2>;tag=a1",
        "To: <sip:op1@10.10.0.2>",
        "Call-ID: reg-path-1",
        "CSeq: 1 REGISTER",
        "Max-Forwards: 69",
        f"Contact: {contact}",
        "Expires: 600",
        *extra,
    ]
    msg = parse_message(("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode())
    assert isinstance(msg, Request)
    return msg


def test_binding_keeps_path_and_is_reached_through_its_first_hop() -> None:
    reg = Registrar(path_proxies=[EDGE.host])
    out = reg.handle_register(register(f"Path: {PATH}"), "op1", T0, source=EDGE)
    assert out.status == 200
    (b,) = reg.contacts("op1")
    assert b.path == (PATH,)
    assert b.route_set == (PATH,)
    # The INVITE goes to the edge (first Path hop, default port), Request-URI the contact.
    assert b.target == Peer("udp", "10.10.0.2", 5060)
    assert b.contact == "sip:op1@192.168.1.20:5062"
    assert not b.behind_nat


def test_path_order_is_kept_and_port_transport_of_first_hop_used() -> None:
    reg = Registrar(path_proxies=[EDGE.host])
    first = "<sip:10.10.0.2:5070;transport=tcp;lr>"
    second = "<sip:198.51.100.1;lr>"
    out = reg.handle_register(register(f"Path: {first}, {second}"), "op1", T0, source=EDGE)
    assert out.status == 200
    (b,) = reg.contacts("op1")
    assert b.route_set == (first, second)
    assert (b.target.transport, b.target.host, b.target.port) == ("tcp", "10.10.0.2", 5070)


def test_without_path_the_nat_rules_still_apply() -> None:
    # A private Contact from a public source: the documented NAT exception.
    reg = Registrar(path_proxies=[EDGE.host], contact_must_match_source=False)
    reg.handle_register(register(), "op1", T0, source=Peer("udp", "203.0.113.9", 40123))
    (b,) = reg.contacts("op1")
    assert b.path == ()
    assert b.target == Peer("udp", "203.0.113.9", 40123)
    assert b.behind_nat


def test_path_echoed_only_to_a_phone_that_supports_it() -> None:
    reg = Registrar(path_proxies=[EDGE.host])
    plain = reg.handle_register(register(f"Path: {PATH}"), "op1", T0, source=EDGE)
    assert plain.response.headers.get_all("Path") == []
    req = register(f"Path: {PATH}", "Supported: outbound, path")
    req.headers.set("CSeq", "2 REGISTER")
    aware = reg.handle_register(req, "op1", T0, source=EDGE)
    assert aware.status == 200
    assert aware.response.headers.get_all("Path") == [PATH]


def test_refresh_through_another_edge_replaces_the_path() -> None:
    reg = Registrar(path_proxies=["10.10.0.0/24"])  # both edges of a pair
    reg.handle_register(register(f"Path: {PATH}"), "op1", T0, source=EDGE)
    other = "<sip:10.10.0.3;lr;received=sip:203.0.113.9:40123>"
    req = register(f"Path: {other}")
    req.headers.set("CSeq", "2 REGISTER")
    reg.handle_register(req, "op1", T0 + 10, source=Peer("udp", "10.10.0.3", 5060))
    (b,) = reg.contacts("op1")
    assert b.route_set == (other,)
    assert b.target.host == "10.10.0.3"


def test_bad_path_is_a_400_and_binds_nothing() -> None:
    reg = Registrar(path_proxies=[EDGE.host])
    out = reg.handle_register(register("Path: <tel:+6212345>"), "op1", T0, source=EDGE)
    assert out.status == 400
    assert reg.contacts("op1") == []
    out = reg.handle_register(register("Path: <sip:>"), "op1", T0, source=EDGE)
    assert out.status == 400
    assert reg.contacts("op1") == []


def test_path_survives_a_restart_and_old_rows_have_none() -> None:
    reg = Registrar(path_proxies=[EDGE.host])
    reg.handle_register(register(f"Path: {PATH}"), "op1", T0, source=EDGE)
    (b,) = reg.contacts("op1")
    row = json.loads(json.dumps(binding_to_dict(b, mono_now=T0, wall_now=1.7e9)))
    back = binding_from_dict(row, mono_now=T0 + 5, wall_now=1.7e9 + 5)
    assert back.path == (PATH,)
    del row["path"]  # saved by a version without Path support
    assert binding_from_dict(row, mono_now=T0, wall_now=1.7e9).path == ()


def test_path_from_an_untrusted_source_is_refused() -> None:
    # Only the centre's own edge proxies may steer offers through a Path.
    reg = Registrar(path_proxies=["10.99.0.0/16"])
    out = reg.handle_register(register(f"Path: {PATH}"), "op1", T0, source=EDGE)
    assert out.status == 403
    assert "Path" in str(out.response.reason)
    assert reg.contacts("op1") == []
