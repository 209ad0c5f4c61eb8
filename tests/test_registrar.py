"""Registrar (RFC 3261 §10.3), NAT target choice, qualify scheduling — driven
by `now` — and real peers (SIPp, pyVoIP, baresip) registering through a tiny
loopback UDP harness built from DigestAuthenticator + SourceGuard +
Registrar, so the SIPp scenario is proven before the server exists."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import shutil
import signal
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callcenter112.sip.auth import AuthFailure, DigestAuthenticator
from callcenter112.sip.errors import SipParseError
from callcenter112.sip.message import Request, Response, parse_message
from callcenter112.sip.peer import Peer
from callcenter112.sip.ratelimit import Admission, SourceGuard, lockout_response
from callcenter112.sip.registrar import (
    Binding,
    ContactReachabilityChanged,
    OperatorRegistered,
    OperatorUnregistered,
    Qualifier,
    RegisterOutcome,
    Registrar,
    RegistrarEvent,
    UnregisterReason,
    binding_from_dict,
    binding_to_dict,
)

T0 = 5000.0
PHONE = Peer("udp", "198.51.100.7", 5062)
SCENARIOS = Path(__file__).resolve().parent / "sipp"


def register(
    *contacts: str,
    expires: str | None = None,
    call_id: str = "reg-1@phone",
    cseq: int = 1,
    to: str = "<sip:op1@192.0.2.10>",
    extra: tuple[str, ...] = (),
) -> Request:
    lines = [
        "REGISTER sip:192.0.2.10 SIP/2.0",
        "Via: SIP/2.0/UDP 198.51.100.7:5062;branch=z9hG4bKnashds7;rport",
        "From: <sip:op1@192.0.2.10>;tag=a73kszlfl",
        f"To: {to}",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} REGISTER",
        "Max-Forwards: 70",
        "User-Agent: TestPhone/1.0",
    ]
    lines += [f"Contact: {c}" for c in contacts]
    if expires is not None:
        lines.append(f"Expires: {expires}")
    lines += extra
    msg = parse_message(("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode())
    assert isinstance(msg, Request)
    return msg


def registrar(**kw: int | bool) -> Registrar:
    return Registrar(**{"min_expires": 60, "max_expires": 3600, **kw})


def listed(resp: Response) -> list[str]:
    return resp.headers.get_all("Contact")


C1 = "<sip:op1@198.51.100.7:5062>"
C2 = "<sip:op1@198.51.100.7:5064;transport=tcp>"


# ---------------------------------------------------------------------------
# Adding, refreshing, removing


def test_first_register_binds_and_puts_the_operator_online() -> None:
    reg = registrar()
    out = reg.handle_register(register(C1, expires="600"), "op1", T0, source=PHONE)
    assert out.status == 200
    assert out.response.to_tag
    assert listed(out.response) == ["<sip:op1@198.51.100.7:5062>;expires=600"]
    assert out.events == (
        OperatorRegistered(user="op1", contact="sip:op1@198.51.100.7:5062", source=PHONE),
    )
    (b,) = reg.contacts("op1")
    assert b.expires_at == T0 + 600 and b.registered_at == T0 and b.user_agent == "TestPhone/1.0"
    assert b.target == Peer("udp", "198.51.100.7", 5062) and not b.behind_nat
    assert reg.is_online("op1")
    assert reg.deadline() == T0 + 600


def test_refresh_extends_without_new_events() -> None:
    reg = registrar()
    reg.handle_register(register(C1, expires="600"), "op1", T0, source=PHONE)
    out = reg.handle_register(register(C1, expires="600", cseq=2), "op1", T0 + 300, source=PHONE)
    assert out.status == 200 and out.events == ()
    (b,) = reg.contacts("op1")
    assert b.expires_at == T0 + 900 and b.registered_at == T0 and b.cseq == 2
    # The first expiry time passes harmlessly.
    assert reg.deadline() == T0 + 900
    assert reg.expire(T0 + 600) == []
    assert reg.contacts("op1") == [b]


@pytest.mark.parametrize("cseq", [1, 0])
def test_same_call_id_with_old_cseq_is_refused_and_changes_nothing(cseq: int) -> None:
    reg = registrar()
    reg.handle_register(register(C1, expires="600", cseq=1), "op1", T0, source=PHONE)
    before = reg.snapshot()
    out = reg.handle_register(register(C1, expires="0", cseq=cseq), "op1", T0 + 1, source=PHONE)
    assert out.status == 500 and out.events == ()
    assert reg.snapshot() == before


def test_new_call_id_may_restart_cseq() -> None:
    reg = registrar()
    reg.handle_register(register(C1, expires="600", cseq=9), "op1", T0, source=PHONE)
    out = reg.handle_register(
        register(C1, expires="600", call_id="reboot@phone", cseq=1), "op1", T0 + 1, source=PHONE
    )
    assert out.status == 200
    assert reg.contacts("op1")[0].call_id == "reboot@phone"


def test_expires_zero_removes_and_takes_the_operator_offline() -> None:
    reg = registrar()
    reg.handle_register(register(C1, C2, expires="600"), "op1", T0, source=PHONE)
    out = reg.handle_register(register(f"{C1};expires=0", cseq=2), "op1", T0 + 1, source=PHONE)
    assert out.status == 200 and out.events == ()
    assert [b.contact for b in reg.contacts("op1")] == ["sip:op1@198.51.100.7:5064;transport=tcp"]
    out = reg.handle_register(register(C2, expires="0", cseq=3), "op1", T0 + 2, source=PHONE)
    assert listed(out.response) == []
    assert out.events == (
        OperatorUnregistered(
            user="op1",
            reason=UnregisterReason.REMOVED,
            contact="sip:op1@198.51.100.7:5064;transport=tcp",
        ),
    )
    assert not reg.is_online("op1") and reg.deadline() is None


def test_removing_an_unknown_contact_is_harmless() -> None:
    out = registrar().handle_register(register(C1, expires="0"), "op1", T0, source=PHONE)
    assert out.status == 200 and out.events == ()


def test_star_removes_every_binding() -> None:
    reg = registrar()
    reg.handle_register(register(C1, C2, expires="600"), "op1", T0, source=PHONE)
    out = reg.handle_register(register("*", expires="0", cseq=2), "op1", T0 + 1, source=PHONE)
    assert out.status == 200 and listed(out.response) == []
    assert [type(e) for e in out.events] == [OperatorUnregistered]
    assert reg.contacts("op1") == []


@pytest.mark.parametrize(
    ("contacts", "expires"),
    [(("*",), "60"), (("*",), None), (("*", C1), "0"), (("*",), "junk")],
)
def test_star_needs_expires_zero_and_nothing_else(
    contacts: tuple[str, ...], expires: str | None
) -> None:
    reg = registrar()
    reg.handle_register(register(C1, expires="600"), "op1", T0, source=PHONE)
    out = reg.handle_register(register(*contacts, expires=expires, cseq=2), "op1", T0, source=PHONE)
    assert out.status == 400 and out.events == ()
    assert len(reg.contacts("op1")) == 1


def test_star_with_an_old_cseq_is_refused() -> None:
    reg = registrar()
    reg.handle_register(register(C1, expires="600", cseq=5), "op1", T0, source=PHONE)
    out = reg.handle_register(register("*", expires="0", cseq=4), "op1", T0, source=PHONE)
    assert out.status == 500 and len(reg.contacts("op1")) == 1


def test_too_brief_is_423_with_min_expires_and_binds_nothing() -> None:
    reg = registrar(min_expires=60)
    out = reg.handle_register(
        register(C1, f"{C2};expires=30", expires="600"), "op1", T0, source=PHONE
    )
    assert out.status == 423
    assert out.response.headers.get("Min-Expires") == "60"
    assert reg.contacts("op1") == [] and out.events == ()


def test_too_long_is_clamped_and_absent_is_the_default() -> None:
    reg = registrar(max_expires=1800)
    out = reg.handle_register(register(C1, expires="100000"), "op1", T0, source=PHONE)
    assert listed(out.response) == ["<sip:op1@198.51.100.7:5062>;expires=1800"]
    reg2 = registrar(max_expires=3600, default_expires=900)
    out = reg2.handle_register(register(C1), "op1", T0, source=PHONE)
    assert listed(out.response) == ["<sip:op1@198.51.100.7:5062>;expires=900"]


@pytest.mark.parametrize("bad", ["soon", "-5", "1e3", ""])
def test_malformed_expiry_counts_as_3600(bad: str) -> None:
    # RFC 3261 §20.19 / §20.10: malformed values SHOULD be treated as 3600.
    reg = registrar(max_expires=7200)
    out = reg.handle_register(register(C1, expires=bad), "op1", T0, source=PHONE)
    assert listed(out.response) == ["<sip:op1@198.51.100.7:5062>;expires=3600"]
    if not bad:
        return  # `;expires=` with no value breaks the parameter grammar: 400
    out = reg.handle_register(register(f"{C2};expires={bad}", cseq=2), "op1", T0, source=PHONE)
    assert out.status == 200
    assert {b.expires_at for b in reg.contacts("op1")} == {T0 + 3600}


def test_several_contacts_with_their_own_expiry() -> None:
    reg = registrar()
    req = register(f"{C1};expires=120, {C2}", expires="600")
    out = reg.handle_register(req, "op1", T0, source=PHONE)
    assert sorted(listed(out.response)) == [
        "<sip:op1@198.51.100.7:5062>;expires=120",
        "<sip:op1@198.51.100.7:5064;transport=tcp>;expires=600",
    ]
    assert [type(e) for e in out.events] == [OperatorRegistered, OperatorRegistered]


def test_query_lists_bindings_with_remaining_time() -> None:
    reg = registrar()
    reg.handle_register(register(C1, expires="600"), "op1", T0, source=PHONE)
    out = reg.handle_register(register(cseq=2), "op1", T0 + 100.5, source=PHONE)
    assert out.status == 200 and out.events == ()
    assert listed(out.response) == ["<sip:op1@198.51.100.7:5062>;expires=500"]


def test_contact_text_and_parameters_are_echoed_as_sent() -> None:
    reg = registrar()
    contact = (
        '"Op One" <sip:op1-0x7f@198.51.100.7:5062;transport=UDP;ob>'
        ';+sip.instance="<urn:uuid:00000000-0000-1000-8000-AABBCCDDEEFF>";reg-id=1;q=0.7'
    )
    out = reg.handle_register(register(contact, expires="300"), "op1", T0, source=PHONE)
    assert listed(out.response) == [
        "<sip:op1-0x7f@198.51.100.7:5062;transport=UDP;ob>"
        ';+sip.instance="<urn:uuid:00000000-0000-1000-8000-AABBCCDDEEFF>";reg-id=1;q=0.7'
        ";expires=300"
    ]
    (b,) = reg.contacts("op1")
    assert b.q == 0.7
    assert b.key == "instance:urn:uuid:00000000-0000-1000-8000-aabbccddeeff;reg-id=1"


def test_same_instance_on_a_new_port_replaces_the_old_binding() -> None:
    reg = registrar()
    inst = ';+sip.instance="<urn:uuid:1>"'
    reg.handle_register(register(C1 + inst, expires="600"), "op1", T0, source=PHONE)
    moved = Peer("udp", "198.51.100.7", 6000)
    out = reg.handle_register(
        register("<sip:op1@198.51.100.7:6000>" + inst, expires="600", call_id="boot2"),
        "op1",
        T0 + 5,
        source=moved,
    )
    assert out.status == 200 and out.events == ()
    (b,) = reg.contacts("op1")
    assert b.contact == "sip:op1@198.51.100.7:6000" and b.source == moved


def test_same_uri_with_a_new_instance_is_the_same_binding() -> None:
    # pyVoIP draws a fresh +sip.instance at every start on the same port.
    reg = registrar()
    reg.handle_register(register(C1 + ';+sip.instance="<urn:uuid:1>"'), "op1", T0, source=PHONE)
    out = reg.handle_register(
        register(C1 + ';+sip.instance="<urn:uuid:2>"', call_id="boot2"), "op1", T0, source=PHONE
    )
    assert out.status == 200 and len(reg.contacts("op1")) == 1
    assert reg.contacts("op1")[0].key == "instance:urn:uuid:2"
    # ... and with the same Call-ID the CSeq rule applies across the change.
    out = reg.handle_register(
        register(C1 + ';+sip.instance="<urn:uuid:3>"', call_id="boot2"), "op1", T0, source=PHONE
    )
    assert out.status == 500


def test_contact_cap_evicts_the_stalest_binding() -> None:
    reg = registrar(max_contacts_per_user=2)
    for i, port in enumerate((7001, 7002, 7003)):
        out = reg.handle_register(
            register(f"<sip:op1@198.51.100.7:{port}>", call_id=f"c{i}"), "op1", T0 + i, source=PHONE
        )
        assert out.status == 200
    assert sorted(b.contact for b in reg.contacts("op1")) == [
        "sip:op1@198.51.100.7:7002",
        "sip:op1@198.51.100.7:7003",
    ]
    many = register(*(f"<sip:op1@198.51.100.7:{p}>" for p in (8001, 8002, 8003)), call_id="x")
    assert reg.handle_register(many, "op1", T0 + 9, source=PHONE).status == 403
    assert len(reg.contacts("op1")) == 2


@pytest.mark.parametrize(
    "to", ["<sip:op2@192.0.2.10>", "<sip:192.0.2.10>", "<tel:+62911112>", "<sip:OP1@192.0.2.10>"]
)
def test_to_must_be_the_authenticated_operator(to: str) -> None:
    reg = registrar()
    out = reg.handle_register(register(C1, to=to), "op1", T0, source=PHONE)
    assert out.status == 403 and reg.contacts("op1") == [] and out.events == ()


@pytest.mark.parametrize(
    "contact", ["<mailto:op1@example.com>", "<sip:op1@bad host>", "<sip:op1@[::1>", '"x" sip:a@b']
)
def test_bad_contacts_are_400_never_an_exception(contact: str) -> None:
    out = registrar().handle_register(register(C1, contact), "op1", T0, source=PHONE)
    assert out.status == 400
    assert out.response.headers.get("Warning")


@given(
    contact=st.text(max_size=80),
    expires=st.one_of(st.none(), st.text(max_size=12)),
    param=st.text(max_size=20),
)
@settings(max_examples=300)
def test_handle_register_never_raises(contact: str, expires: str | None, param: str) -> None:
    try:
        req = register(f"{contact};expires={param}", expires=expires)
    except SipParseError:
        return  # the message layer refused it first
    out = registrar().handle_register(req, "op1", T0, source=PHONE)
    assert out.status in (200, 400, 403, 423)


# ---------------------------------------------------------------------------
# Expiry


def test_expiry_events_only_when_the_last_binding_goes() -> None:
    reg = registrar()
    reg.handle_register(register(f"{C1};expires=100", f"{C2};expires=200"), "op1", T0, source=PHONE)
    assert reg.deadline() == T0 + 100
    assert reg.expire(T0 + 99.9) == []
    assert reg.expire(T0 + 100) == []
    assert len(reg.contacts("op1")) == 1 and reg.deadline() == T0 + 200
    assert reg.expire(T0 + 250) == [
        OperatorUnregistered(
            user="op1",
            reason=UnregisterReason.EXPIRED,
            contact="sip:op1@198.51.100.7:5064;transport=tcp",
        )
    ]
    assert reg.deadline() is None and not reg.is_online("op1")


def test_register_after_a_late_timer_does_not_list_or_flap_dead_bindings() -> None:
    reg = registrar()
    reg.handle_register(register(C1, expires="100"), "op1", T0, source=PHONE)
    # expire() was not called in time; the phone re-registers late.
    out = reg.handle_register(register(C2, expires="100", cseq=2), "op1", T0 + 150, source=PHONE)
    assert listed(out.response) == ["<sip:op1@198.51.100.7:5064;transport=tcp>;expires=100"]
    # Still online throughout: no Unregistered between the two.
    assert [type(e) for e in out.events] == [OperatorRegistered]


def test_unbind_user_on_configuration_removal() -> None:
    reg = registrar()
    reg.handle_register(register(C1), "op1", T0, source=PHONE)
    assert reg.unbind_user("op1") == [
        OperatorUnregistered(
            user="op1", reason=UnregisterReason.REMOVED, contact="sip:op1@198.51.100.7:5062"
        )
    ]
    assert reg.unbind_user("op1") == []
    assert reg.deadline() is None


def test_heap_stays_bounded_under_many_refreshes() -> None:
    reg = registrar()
    for i in range(1, 2000):
        reg.handle_register(register(C1, expires="600", cseq=i), "op1", T0 + i, source=PHONE)
    assert len(reg._heap) < 100  # internal, but the bound is the point
    assert reg.deadline() == T0 + 1999 + 600


# ---------------------------------------------------------------------------
# Where to send: NAT


@pytest.mark.parametrize(
    ("contact", "source", "target", "nat"),
    [
        # Same host as the source: the contact (no NAT).
        (
            "sip:op1@198.51.100.7:5062",
            Peer("udp", "198.51.100.7", 5062),
            ("udp", "198.51.100.7", 5062),
            False,
        ),
        (
            "sip:op1@198.51.100.7",
            Peer("udp", "198.51.100.7", 40000),
            ("udp", "198.51.100.7", 5060),
            False,
        ),
        # Private contact, public source: behind NAT → the source.
        (
            "sip:op1@192.168.1.20:5060",
            Peer("udp", "203.0.113.5", 40123),
            ("udp", "203.0.113.5", 40123),
            True,
        ),
        ("sip:op1@10.1.2.3:5060", Peer("udp", "10.9.9.9", 5060), ("udp", "10.9.9.9", 5060), True),
        (
            "sip:op1@100.64.0.9:5060",
            Peer("udp", "203.0.113.5", 1024),
            ("udp", "203.0.113.5", 1024),
            True,
        ),
        (
            "sip:op1@127.0.0.1:5060",
            Peer("udp", "203.0.113.5", 1024),
            ("udp", "203.0.113.5", 1024),
            True,
        ),
        # A host name is not resolved here: the source.
        (
            "sip:op1@phone.local:5060",
            Peer("udp", "203.0.113.5", 1024),
            ("udp", "203.0.113.5", 1024),
            True,
        ),
        # Documentation ranges (TEST-NET) are not global either.
        (
            "sip:op1@198.51.100.99:5070",
            Peer("udp", "203.0.113.5", 1024),
            ("udp", "203.0.113.5", 1024),
            True,
        ),
        # TLS (issue 11): the contact over TLS, on 5061 unless given.
        (
            "sip:op1@198.51.100.7:5061;transport=tls",
            Peer("tls", "198.51.100.7", 50000, 7),
            ("tls", "198.51.100.7", 5061),
            False,
        ),
        (
            "sips:op1@198.51.100.7",
            Peer("tls", "198.51.100.7", 50000, 7),
            ("tls", "198.51.100.7", 5061),
            False,
        ),
        # A transport we do not speak: the source.
        (
            "sip:op1@198.51.100.7:5061;transport=sctp",
            Peer("tcp", "198.51.100.7", 50000, 7),
            ("tcp", "198.51.100.7", 50000),
            True,
        ),
        # IPv6.
        (
            "sip:op1@[2001:db8::5]:5062",
            Peer("udp", "2001:db8::5", 5062),
            ("udp", "2001:db8::5", 5062),
            False,
        ),
        (
            "sip:op1@[fd00::5]:5062",
            Peer("udp", "2a00:1450:4001::5", 999),
            ("udp", "2a00:1450:4001::5", 999),
            True,
        ),
    ],
)
def test_target_for_nat(
    contact: str, source: Peer, target: tuple[str, str, int], nat: bool
) -> None:
    # The NAT exception (sip.contact_must_match_source = false) routes by these rules.
    reg = registrar(contact_must_match_source=False)
    assert reg.handle_register(register(f"<{contact}>"), "op1", T0, source=source).status == 200
    (b,) = reg.contacts("op1")
    assert (b.target.transport, b.target.host, b.target.port) == target
    assert b.behind_nat is nat
    assert b.contact == contact  # the INVITE's Request-URI stays the contact


def test_tcp_contact_keeps_the_connection() -> None:
    reg = registrar(contact_must_match_source=False)
    src = Peer("tcp", "198.51.100.7", 50000, 42)
    reg.handle_register(
        register("<sip:op1@198.51.100.7:5062;transport=tcp>"), "op1", T0, source=src
    )
    (b,) = reg.contacts("op1")
    assert b.target == Peer("tcp", "198.51.100.7", 5062, 42) and not b.behind_nat
    reg.handle_register(
        register("<sip:op1@192.168.0.2:5062;transport=tcp>", call_id="x"),
        "op1",
        T0,
        source=Peer("tcp", "203.0.113.5", 61000, 43),
    )
    natted = next(b for b in reg.contacts("op1") if b.behind_nat)
    assert natted.target == Peer("tcp", "203.0.113.5", 61000, 43)


def test_tls_contact_keeps_its_connection_and_its_transport() -> None:
    reg = registrar()
    src = Peer("tls", "198.51.100.7", 50000, 42)
    reg.handle_register(
        register("<sip:op1@198.51.100.7:5063;transport=tls>"), "op1", T0, source=src
    )
    (b,) = reg.contacts("op1")
    assert b.target == Peer("tls", "198.51.100.7", 5063, 42) and not b.behind_nat
    # Saved and restored across a restart: still TLS, on a new connection.
    saved = binding_to_dict(b, mono_now=T0, wall_now=1_000_000.0)
    restored = binding_from_dict(saved, mono_now=T0, wall_now=1_000_000.0)
    assert restored.target == Peer("tls", "198.51.100.7", 5063)
    assert restored.source == Peer("tls", "198.51.100.7", 50000)
    # A TLS contact from a plain TCP connection does not reuse that connection.
    reg.handle_register(
        register("<sips:op1@198.51.100.7:5065>", call_id="y"),
        "op1",
        T0,
        source=Peer("tcp", "198.51.100.7", 50001, 43),
    )
    sips = next(b for b in reg.contacts("op1") if b.contact.startswith("sips:"))
    assert sips.target == Peer("tls", "198.51.100.7", 5065)


def test_contacts_are_ordered_by_q_then_freshness() -> None:
    reg = registrar()
    reg.handle_register(register(f"{C1};q=0.5"), "op1", T0, source=PHONE)
    reg.handle_register(register(C2, call_id="b"), "op1", T0 + 1, source=PHONE)
    reg.handle_register(
        register("<sip:op1@198.51.100.7:7000>", call_id="c"), "op1", T0 + 2, source=PHONE
    )
    assert [b.contact.rsplit(":", 1)[-1] for b in reg.contacts("op1")] == [
        "7000",
        "5064;transport=tcp",
        "5062",
    ]


# ---------------------------------------------------------------------------
# Qualify


def qualified(
    every: float = 30.0, timeout: float = 5.0, n: int = 2, contacts: tuple[str, ...] = (C1,)
) -> tuple[Registrar, Qualifier]:
    reg = registrar()
    out = reg.handle_register(register(*contacts, expires="3600"), "op1", T0, source=PHONE)
    assert out.status == 200
    return reg, Qualifier(reg, every_s=every, timeout_s=timeout, failures_to_unreachable=n)


def test_pings_are_due_every_interval_after_registration() -> None:
    _, q = qualified()
    assert q.deadline() == T0 + 30
    assert q.due(T0 + 29) == []
    (b,) = q.due(T0 + 30)
    assert b.contact == "sip:op1@198.51.100.7:5062"
    assert q.due(T0 + 31) == []  # in flight
    assert q.deadline() == T0 + 35  # its timeout
    assert q.answered(b, 0.012, T0 + 30.1) == []
    assert q.rtt(b) == 0.012
    assert q.deadline() == T0 + 60
    assert [x.key for x in q.due(T0 + 60)] == [b.key]


def test_silence_marks_unreachable_and_any_answer_recovers() -> None:
    reg, q = qualified()
    contact = "sip:op1@198.51.100.7:5062"
    (b,) = q.due(T0 + 30)
    assert q.expire(T0 + 35) == []  # one failure: not yet
    (b,) = q.due(T0 + 60)
    assert q.failed(b, T0 + 61) == [
        ContactReachabilityChanged(user="op1", contact=contact, reachable=False),
        OperatorUnregistered(user="op1", reason=UnregisterReason.UNREACHABLE, contact=contact),
    ]
    assert not reg.is_online("op1") and reg.contacts("op1", reachable_only=True) == []
    assert q.expire(T0 + 70) == []  # that ping was already counted
    assert q.failed(b, T0 + 70) == []
    # Still pinged while unreachable; a 404/405/501 is an answer too (RFC 3261 §11).
    (b,) = q.due(T0 + 90)
    assert q.answered(b, 0.2, T0 + 90.2) == [
        ContactReachabilityChanged(user="op1", contact=contact, reachable=True),
        OperatorRegistered(user="op1", contact=contact, source=PHONE),
    ]
    assert reg.is_online("op1")


def test_operator_offline_only_when_every_contact_is_unreachable() -> None:
    reg, q = qualified(n=1, contacts=(C1, C2))
    pings = {b.contact: b for b in q.due(T0 + 30)}
    assert len(pings) == 2
    first = q.failed(pings["sip:op1@198.51.100.7:5062"], T0 + 31)
    assert [type(e) for e in first] == [ContactReachabilityChanged]
    assert reg.is_online("op1")
    second = q.expire(T0 + 40)
    assert [type(e) for e in second] == [ContactReachabilityChanged, OperatorUnregistered]
    assert not reg.is_online("op1")


def test_re_register_of_an_unreachable_phone_brings_it_back() -> None:
    reg, q = qualified(n=1)
    (b,) = q.due(T0 + 30)
    q.failed(b, T0 + 31)
    assert not reg.is_online("op1")
    out = reg.handle_register(register(C1, cseq=2), "op1", T0 + 40, source=PHONE)
    assert [type(e) for e in out.events] == [ContactReachabilityChanged, OperatorRegistered]
    assert reg.is_online("op1")


def test_results_for_removed_bindings_are_ignored() -> None:
    reg, q = qualified()
    (b,) = q.due(T0 + 30)
    reg.handle_register(register(C1, expires="0", cseq=2), "op1", T0 + 31, source=PHONE)
    assert q.answered(b, 0.1, T0 + 32) == [] and q.failed(b, T0 + 32) == []
    assert q.due(T0 + 100) == [] and q.deadline() is None


def test_qualifier_refuses_nonsense() -> None:
    with pytest.raises(ValueError):
        Qualifier(registrar(), every_s=0)
    with pytest.raises(ValueError):
        Registrar(min_expires=100, max_expires=10)


# A random walk over every operation: the online/offline events must always
# agree with the bindings (the ACD relies on that).
_ops = st.lists(
    st.tuples(
        st.sampled_from(["register", "remove", "star", "expire", "due", "ok", "fail", "timeout"]),
        st.integers(min_value=0, max_value=3),
        st.integers(min_value=0, max_value=400),
    ),
    max_size=60,
)


@given(_ops)
@settings(max_examples=200, deadline=None)
def test_events_always_match_the_bindings(ops: list[tuple[str, int, int]]) -> None:
    reg = Registrar(min_expires=60, max_expires=600, max_contacts_per_user=3)
    q = Qualifier(reg, every_s=30, timeout_s=5, failures_to_unreachable=2)
    online: dict[str, bool] = {}
    now = T0
    in_flight: list[Binding] = []

    def apply(events: list[RegistrarEvent] | tuple[RegistrarEvent, ...]) -> None:
        for e in events:
            if isinstance(e, OperatorRegistered):
                online[e.user] = True
            elif isinstance(e, OperatorUnregistered):
                assert online.get(e.user), "offline event for an operator not online"
                online[e.user] = False

    for cseq, (op, n, dt) in enumerate(ops, start=1):
        now += dt
        contact = f"<sip:op1@198.51.100.7:{7000 + n}>"
        if op == "register":
            out = reg.handle_register(
                register(contact, expires="120", cseq=cseq), "op1", now, source=PHONE
            )
            apply(out.events)
        elif op == "remove":
            apply(
                reg.handle_register(
                    register(contact, expires="0", cseq=cseq), "op1", now, source=PHONE
                ).events
            )
        elif op == "star":
            apply(
                reg.handle_register(
                    register("*", expires="0", cseq=cseq), "op1", now, source=PHONE
                ).events
            )
        elif op == "expire":
            apply(reg.expire(now))
        elif op == "due":
            in_flight += q.due(now)
        elif op in ("ok", "fail") and in_flight:
            b = in_flight.pop(n % len(in_flight))
            apply(q.answered(b, 0.01, now) if op == "ok" else q.failed(b, now))
        elif op == "timeout":
            apply(q.expire(now))
        assert len(reg.contacts("op1")) <= 3
        assert online.get("op1", False) == reg.is_online("op1")
        live = [b for b in reg.contacts("op1") if b.expires_at > now]
        if reg.deadline() is None or reg.deadline() > now:  # type: ignore[operator]
            assert reg.is_online("op1") == any(b.reachable for b in live)


# ---------------------------------------------------------------------------
# Real peers through a loopback harness


class RegistrarHarness(asyncio.DatagramProtocol):
    """What the server's registration path will do, minus the transaction
    layer: guard → authenticate → register, answered from the source."""

    def __init__(self, *, algorithms: tuple[str, ...] = ("MD5",)) -> None:
        self.auth = DigestAuthenticator(
            "callcenter112",
            {"op1": "secret1"},
            secret=secrets.token_bytes(32),
            algorithms=algorithms,
        )
        self.guard = SourceGuard(fail_limit=5, lockout_s=60.0)
        self.registrar = Registrar(min_expires=60, max_expires=3600)
        self.events: list[RegistrarEvent] = []
        self.failures: list[AuthFailure] = []
        self.statuses: list[int] = []
        self.authorizations: list[str] = []
        self.changed = asyncio.Event()
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # CPython's _SelectorDatagramTransport does not subclass DatagramTransport.
        self.transport = cast(asyncio.DatagramTransport, transport)

    @property
    def port(self) -> int:
        assert self.transport is not None
        port: int = self.transport.get_extra_info("sockname")[1]
        return port

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        now = asyncio.get_running_loop().time()
        try:
            msg = parse_message(data)
        except SipParseError:
            return
        if not isinstance(msg, Request) or msg.method == "ACK":
            return
        if msg.method == "OPTIONS":
            self._send(Response.for_request(msg, 200), addr)
            return
        if msg.method != "REGISTER":
            self._send(
                Response.for_request(msg, 405, headers=[("Allow", "REGISTER, OPTIONS")]), addr
            )
            return
        user = msg.to_address.uri.user
        verdict = self.guard.check(addr[0], now, user=user)
        if verdict is Admission.THROTTLED:
            return
        if verdict is Admission.LOCKED_OUT:
            self._send(lockout_response(msg), addr)
            return
        self.authorizations += msg.headers.get_all("Authorization")
        result = self.auth.verify(msg, now)
        if not result.ok:
            assert result.failure is not None and result.response is not None
            self.failures.append(result.failure)
            if result.counts_as_failure:
                self.guard.record_failure(addr[0], now, user=user)
            self._send(result.response, addr)
            return
        assert result.user is not None
        self.guard.record_success(addr[0], now, user=user)
        out: RegisterOutcome = self.registrar.handle_register(
            msg, result.user, now, source=Peer("udp", addr[0], addr[1])
        )
        self.events += out.events
        self._send(out.response, addr)
        self.changed.set()

    def _send(self, response: Response, addr: tuple[str, int]) -> None:
        self.statuses.append(response.status)
        assert self.transport is not None
        self.transport.sendto(response.serialize(), addr)

    async def wait_for(self, condition: Callable[[], bool], timeout: float = 60.0) -> None:
        """Until `condition()` holds; the timeout only guards against a hang."""
        async with asyncio.timeout(timeout):
            while not condition():
                self.changed.clear()
                await self.changed.wait()


@contextlib.asynccontextmanager
async def harness(**kw: tuple[str, ...]):  # type: ignore[no-untyped-def]
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(
        lambda: RegistrarHarness(**kw), local_addr=("127.0.0.1", 0)
    )
    try:
        yield proto
    finally:
        transport.close()


def free_udp_port() -> int:
    """A port no one holds right now (never 5060-5070: port 0 picks ephemeral)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


@pytest.fixture
def work_dir(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path


needs_sipp = pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp not installed")
needs_baresip = pytest.mark.skipif(shutil.which("baresip") is None, reason="baresip not installed")


async def run_sipp(
    scenario: str, server_port: int, work_dir: Path, password: str
) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        "sipp",
        "-sf", str(SCENARIOS / scenario),
        "-s", "op1",
        "-ap", password,
        "-i", "127.0.0.1",
        "-p", str(free_udp_port()),  # SIPp's -p 0 means 5060, not "any"
        "-mp", str(free_udp_port()),
        "-m", "1",
        "-timeout", "60s",
        "-timeout_error",
        "-nostdin",
        "-trace_err",
        f"127.0.0.1:{server_port}",
        cwd=work_dir,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await proc.communicate()
    errors = "\n".join(p.read_text() for p in work_dir.glob("*errors.log"))
    assert proc.returncode is not None
    return proc.returncode, output.decode(errors="replace")[-3000:] + errors


@pytest.mark.peers
@needs_sipp
async def test_sipp_register_digest_scenario(work_dir: Path) -> None:
    async with harness() as server:
        rc, log = await run_sipp("register_digest.xml", server.port, work_dir, "secret1")
        assert rc == 0, log
    assert server.statuses == [401, 200, 401, 200]
    assert server.failures == [AuthFailure.MISSING, AuthFailure.MISSING]
    assert [type(e) for e in server.events] == [OperatorRegistered, OperatorUnregistered]
    assert isinstance(server.events[1], OperatorUnregistered)
    assert server.events[1].reason is UnregisterReason.REMOVED
    # SIPp answers with qop=auth and a nonce count: the full RFC 7616 form.
    assert all("qop=auth" in a and "nc=00000001" in a for a in server.authorizations)


@pytest.mark.peers
@needs_sipp
async def test_sipp_wrong_password_is_locked_out(work_dir: Path) -> None:
    async with harness() as server:
        rc, log = await run_sipp("register_wrong_password.xml", server.port, work_dir, "wrong")
        assert rc == 0, log
    assert server.failures.count(AuthFailure.BAD_RESPONSE) == server.guard.fail_limit
    assert server.statuses[-1] == 403 and server.statuses.count(403) == 1
    assert [lk.source for lk in server.guard.lockouts(asyncio.get_running_loop().time())] == [
        "127.0.0.1"
    ]
    assert server.events == []


@pytest.mark.peers
@needs_sipp
async def test_sipp_wrong_password_scenario_fails_with_the_right_password(work_dir: Path) -> None:
    async with harness() as server:
        rc, _ = await run_sipp("register_wrong_password.xml", server.port, work_dir, "secret1")
    assert rc != 0  # the scenario can fail: a 200 is not what it waits for
    assert 200 in server.statuses


@pytest.mark.peers
async def test_pyvoip_registers_and_unregisters() -> None:
    from pyVoIP.VoIP import PhoneStatus, VoIPPhone

    # pyVoIP reads only the last WWW-Authenticate and always answers MD5 in
    # RFC 2069 form; offering SHA-256 first must still work for it.
    async with harness(algorithms=("SHA-256", "MD5")) as server:
        phone = VoIPPhone(
            "127.0.0.1", server.port, "op1", "secret1", myIP="127.0.0.1", sipPort=free_udp_port()
        )
        try:
            await asyncio.to_thread(phone.start)
            assert phone.get_status() is PhoneStatus.REGISTERED
            (b,) = server.registrar.contacts("op1")
            assert b.key.startswith("instance:urn:uuid:")
            assert b.contact.endswith(";transport=UDP")
        finally:
            await asyncio.to_thread(phone.stop)
        assert phone.get_status() is PhoneStatus.INACTIVE
    assert server.registrar.contacts("op1") == []
    assert [type(e) for e in server.events] == [OperatorRegistered, OperatorUnregistered]
    # The quirks tolerated: no qop/nc/cnonce, no opaque, digest uri with
    # ";transport=UDP" that the Request-URI lacks.
    assert server.authorizations
    for a in server.authorizations:
        assert "qop" not in a and "opaque" not in a
        assert 'uri="sip:127.0.0.1;transport=UDP"' in a


@pytest.mark.peers
async def test_pyvoip_restart_after_a_crash_recovers() -> None:
    """pyVoIP's Call-IDs are a per-process counter: restarted on the same
    port it re-sends the dead process's Call-ID with a lower CSeq. §10.3
    step 7 refuses that (500); pyVoIP retries 5 s later with the next
    Call-ID and gets in."""
    from pyVoIP.VoIP import PhoneStatus, VoIPPhone

    async with harness() as server:
        port = free_udp_port()
        first = VoIPPhone(
            "127.0.0.1", server.port, "op1", "secret1", myIP="127.0.0.1", sipPort=port
        )
        await asyncio.to_thread(first.start)
        assert first.get_status() is PhoneStatus.REGISTERED
        # Crash: threads and socket gone, no unregistration.
        first.sip.NSD = False
        if first.sip.registerThread is not None:
            first.sip.registerThread.cancel()
        first.sip._close_sockets()
        second = VoIPPhone(
            "127.0.0.1", server.port, "op1", "secret1", myIP="127.0.0.1", sipPort=port
        )
        try:
            await asyncio.to_thread(second.start)
            assert second.get_status() is PhoneStatus.REGISTERED
        finally:
            await asyncio.to_thread(second.stop)
    assert server.statuses.count(500) == 1
    # One binding throughout (same URI, new instance ID), then unregistered.
    assert [type(e) for e in server.events] == [OperatorRegistered, OperatorUnregistered]


def _baresip_config(directory: Path, server_port: int) -> None:
    directory.mkdir()
    (directory / "config").write_text(
        f"sip_listen 127.0.0.1:{free_udp_port()}\n"
        "net_interface 127.0.0.1\n"
        "module_path /usr/lib/baresip/modules\n"
        "module g711.so\n"
        "module account.so\n"
        "audio_player aubridge,nil\n"
    )
    (directory / "accounts").write_text(
        f"<sip:op1@127.0.0.1:{server_port}>;auth_pass=secret1;regint=60\n"
    )


@pytest.mark.peers
@needs_baresip
async def test_baresip_registers_with_the_default_md5_challenge(work_dir: Path) -> None:
    """Debian's baresip 1.0.0 refuses the whole 401 if any challenge names
    SHA-256; the default MD5-only challenge is what keeps it working."""
    async with harness() as server:
        _baresip_config(work_dir / "baresip", server.port)
        proc = await asyncio.create_subprocess_exec(
            "baresip", "-f", str(work_dir / "baresip"), "-t", "60",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        try:
            await server.wait_for(lambda: server.registrar.is_online("op1"))
            (b,) = server.registrar.contacts("op1")
            assert b.expires_in(asyncio.get_running_loop().time()) > 0
            # SIGINT: baresip unregisters on its way out.
            proc.send_signal(signal.SIGINT)
            await server.wait_for(lambda: not server.registrar.is_online("op1"))
        finally:
            if proc.returncode is None:
                proc.terminate()
            await proc.communicate()
    assert [type(e) for e in server.events] == [OperatorRegistered, OperatorUnregistered]
    assert all("qop=auth" in a for a in server.authorizations)


# ---------------------------------------------------------------------------
# Bindings survive a restart


def test_bindings_round_trip_through_the_wall_clock_and_are_restored() -> None:
    from callcenter112.sip.registrar import binding_from_dict, binding_to_dict

    r = registrar()
    outcome = r.handle_register(register(C1, expires="600"), "op1", 100.0, source=PHONE)
    assert outcome.status == 200
    (b,) = r.contacts("op1")
    # Saved at mono 100 / wall 1_000_000; restored in a process whose mono clock is 5.
    saved = json.loads(json.dumps(binding_to_dict(b, mono_now=100.0, wall_now=1_000_000.0)))
    back = binding_from_dict(saved, mono_now=5.0, wall_now=1_000_030.0)  # 30 s later
    assert back.contact == b.contact and back.target == b.target and back.key == b.key
    assert back.expires_at == pytest.approx(b.expires_at - 100.0 + 5.0 - 30.0)
    fresh = registrar()
    events = fresh.restore([back], now=5.0)
    assert [type(e) for e in events] == [OperatorRegistered]
    assert fresh.is_online("op1") and fresh.contacts("op1")[0].contact == b.contact
    # It expires on the original schedule, not a new one.
    assert fresh.deadline() == pytest.approx(back.expires_at)
    assert [type(e) for e in fresh.expire(back.expires_at)] == [OperatorUnregistered]


def test_restore_skips_expired_bindings_and_keeps_fresher_registrations() -> None:
    from callcenter112.sip.registrar import binding_from_dict, binding_to_dict

    old = registrar()
    old.handle_register(register(C1, expires="600"), "op1", 0.0, source=PHONE)
    (b,) = old.contacts("op1")
    saved = binding_to_dict(b, mono_now=0.0, wall_now=0.0)
    expired = binding_from_dict(saved, mono_now=0.0, wall_now=b.expires_at + 1)
    fresh = registrar()
    assert fresh.restore([expired], now=0.0) == []
    assert not fresh.is_online("op1")
    # The phone re-registered before the restore ran: its binding wins.
    fresh.handle_register(
        register(C1, expires="600", call_id="new@phone"), "op1", 10.0, source=PHONE
    )
    before = fresh.contacts("op1")[0]
    again = binding_from_dict(saved, mono_now=10.0, wall_now=0.0)
    assert fresh.restore([again], now=10.0) == []
    assert fresh.contacts("op1")[0] == before


def test_contact_must_be_the_source_address() -> None:
    """Issue 11: a Contact naming another host would steer 112 offers anywhere."""
    src = Peer("udp", "198.51.100.7", 5062)
    strict = registrar()
    for contact in (
        "<sip:op1@81.2.69.160:5070>",  # another public address
        "<sip:op1@192.168.1.20:5060>",  # a private one
        "<sip:op1@phone.example:5060>",  # a name
    ):
        out = strict.handle_register(register(contact), "op1", T0, source=src)
        assert out.status == 403, contact
        assert "source address" in (out.response.headers.get("Warning") or "")
    assert strict.contacts("op1") == []
    assert strict.handle_register(register(C1), "op1", T0, source=PHONE).status == 200
    # The NAT exception still refuses another public address, and unbinding is allowed.
    lax = registrar(contact_must_match_source=False)
    other = lax.handle_register(register("<sip:op1@81.2.69.160:5070>"), "op1", T0, source=src)
    assert other.status == 403
    natted = lax.handle_register(register("<sip:op1@192.168.1.20:5060>"), "op1", T0, source=src)
    assert natted.status == 200
    bye = register("<sip:op1@81.2.69.160:5070>;expires=0", call_id="z")
    assert strict.handle_register(bye, "op1", T0, source=src).status == 200
