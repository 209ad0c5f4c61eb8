"""SIP transactions (RFC 3261 §17, RFC 6026): tables, timers, two layers on a
fake wire. Time is a number passed in; the fake clock jumps from deadline to
deadline (`get_timer`), never sleeps."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callcenter112.sip.events import (
    AckNotReceived,
    AckReceived,
    CancelReceived,
    RequestReceived,
    ResponseReceived,
    TransactionEvent,
    TransactionLimitReached,
    TransactionTimedOut,
    TransportFailed,
)
from callcenter112.sip.message import Headers, Request, Response, new_branch, new_tag, parse_message
from callcenter112.sip.peer import Peer, TransportName
from callcenter112.sip.transaction import (
    TABLES,
    Input,
    Kind,
    State,
    TransactionError,
    TransactionLayer,
    advance,
    build_ack,
    build_cancel,
    response_destination,
    server_key,
)

UAC = Peer("udp", "192.0.2.1", 5062)
UAS = Peer("udp", "192.0.2.10", 5060)
TIMER_INPUTS = {i for i in Input if i.name.startswith("TIMER_")}


def make_request(
    method: str = "INVITE",
    *,
    branch: str | None = None,
    via: str | None = None,
    cseq: int = 1,
    call_id: str = "call-1",
    from_tag: str = "ft1",
    to_tag: str | None = None,
    extra: tuple[tuple[str, str], ...] = (),
) -> Request:
    h = Headers()
    h.add("Via", via or f"SIP/2.0/UDP 192.0.2.1:5062;branch={branch or new_branch()};rport")
    h.add("Max-Forwards", "70")
    h.add("From", "<sip:caller@192.0.2.1>" + (f";tag={from_tag}" if from_tag else ""))
    h.add("To", "<sip:112@192.0.2.10>" + (f";tag={to_tag}" if to_tag else ""))
    h.add("Call-ID", call_id)
    h.add("CSeq", f"{cseq} {method}")
    h.add("Contact", "<sip:caller@192.0.2.1:5062>")
    for name, value in extra:
        h.add(name, value)
    # Through the wire format, as the transport would deliver it.
    message = parse_message(Request(method, "sip:112@192.0.2.10", h).serialize())
    assert isinstance(message, Request)
    return message


E = TypeVar("E")


def one(events: list[TransactionEvent], kind: type[E]) -> E:
    """The single event of `events`, which must be a `kind`."""
    assert len(events) == 1, events
    event = events[0]
    assert isinstance(event, kind), event
    return event


def wire(data: bytes) -> Request | Response:
    return parse_message(data)


def sent(layer: TransactionLayer) -> list[tuple[Request | Response, Peer]]:
    return [(wire(data), peer) for data, peer in layer.datagrams_to_send()]


def statuses(layer: TransactionLayer) -> list[int]:
    return [m.status for m, _ in sent(layer) if isinstance(m, Response)]


@dataclass
class Clock:
    """Jumps to the layer's next deadline; bounded so a bug cannot spin."""

    layer: TransactionLayer
    now: float = 0.0
    fired: list[tuple[float, TransactionEvent]] = field(default_factory=list)

    def run_until(self, until: float, on_tick: Callable[[float], None] | None = None) -> None:
        for _ in range(10_000):
            deadline = self.layer.get_timer()
            if deadline is None or deadline > until:
                break
            self.now = max(self.now, deadline)
            for event in self.layer.handle_timer(self.now):
                self.fired.append((self.now, event))
            if on_tick is not None:
                on_tick(self.now)
        else:
            raise AssertionError("timer loop did not settle")
        self.now = max(self.now, until)


def send_times(layer: TransactionLayer, until: float) -> list[float]:
    """When the layer transmits, driving its timers up to `until`."""
    clock = Clock(layer)
    times: list[float] = []
    layer.datagrams_to_send()

    def tick(now: float) -> None:
        times.extend(now for _ in layer.datagrams_to_send())

    clock.run_until(until, tick)
    return times


# ---------------------------------------------------------------------------
# The tables


@given(st.sampled_from(Kind), st.sampled_from(State), st.sampled_from(Input))
@settings(max_examples=600)
def test_every_state_input_pair(kind: Kind, state: State, event: Input) -> None:
    table = TABLES[kind]
    if (state, event) in table:
        assert advance(kind, state, event) is table[(state, event)]
    else:
        with pytest.raises(TransactionError):
            advance(kind, state, event)


@pytest.mark.parametrize("kind", list(Kind))
def test_tables_never_hang(kind: Kind) -> None:
    table = TABLES[kind]
    assert not any(state is State.TERMINATED for state, _ in table)
    states = {s for s, _ in table} | set(table.values())
    # From every live state, timers alone lead to Terminated.
    for start in states - {State.TERMINATED}:
        seen, frontier = {start}, [start]
        while frontier:
            current = frontier.pop()
            for (state, event), nxt in table.items():
                if state is current and event in TIMER_INPUTS and nxt not in seen:
                    seen.add(nxt)
                    frontier.append(nxt)
        assert State.TERMINATED in seen, (kind, start)
        # And a transport failure ends it at once.
        assert table.get((start, Input.TRANSPORT_FAILED)) is State.TERMINATED


# ---------------------------------------------------------------------------
# Server INVITE


def test_server_invite_non_2xx_with_retransmissions_and_ack() -> None:
    layer = TransactionLayer()
    invite = make_request()
    event = one(layer.receive(invite, UAC, 0.0), RequestReceived)
    assert isinstance(event, RequestReceived) and event.to_tag
    assert statuses(layer) == [100]  # auto_trying
    assert layer.receive(make_request(branch=invite.top_via.branch), UAC, 0.1) == []
    assert statuses(layer) == [100]  # retransmission answered with the last provisional
    layer.respond(event.server_key, Response.for_request(invite, 180, to_tag=event.to_tag), 0.2)
    assert statuses(layer) == [180]
    layer.respond(event.server_key, Response.for_request(invite, 486, to_tag=event.to_tag), 1.0)
    assert statuses(layer) == [486]
    assert layer.state(event.server_key) is State.COMPLETED
    # Timer G: T1 doubling, capped at T2.
    layer2 = TransactionLayer()
    e2 = one(layer2.receive(make_request(), UAC, 0.0), RequestReceived)
    layer2.respond(e2.server_key, Response.for_request(e2.request, 486, to_tag="x"), 0.0)
    layer2.datagrams_to_send()
    assert send_times(layer2, 16.0) == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5]
    # ACK → Confirmed; Timer I (T4) → gone. The ACK is not passed to the TU.
    ack = build_ack(invite, Response.for_request(invite, 486, to_tag=event.to_tag))
    assert layer.receive(wire(ack.serialize()), UAC, 2.0) == []
    assert layer.state(event.server_key) is State.CONFIRMED
    assert layer.receive(make_request(branch=invite.top_via.branch), UAC, 2.1) == []
    assert statuses(layer) == []  # absorbed in Confirmed
    clock = Clock(layer, now=2.0)
    clock.run_until(6.9)
    assert layer.state(event.server_key) is State.CONFIRMED
    clock.run_until(7.0)
    assert layer.state(event.server_key) is None and len(layer) == 0


def test_server_invite_timer_h_without_ack() -> None:
    layer = TransactionLayer()
    event = one(layer.receive(make_request(), UAC, 0.0), RequestReceived)
    layer.respond(event.server_key, Response.for_request(event.request, 480, to_tag="t"), 0.0)
    clock = Clock(layer)
    clock.run_until(100.0)
    timeouts = [(t, e) for t, e in clock.fired if isinstance(e, TransactionTimedOut)]
    assert [(t, e.timer) for t, e in timeouts] == [(32.0, "H")]
    assert len(layer) == 0


def test_server_invite_2xx_accepted_retransmits_until_ack() -> None:
    layer = TransactionLayer()
    invite = make_request()
    event = one(layer.receive(invite, UAC, 0.0), RequestReceived)
    ok = Response.for_request(invite, 200, to_tag=event.to_tag)
    layer.respond(event.server_key, ok, 0.0)
    assert statuses(layer) == [100, 200]
    assert layer.state(event.server_key) is State.ACCEPTED
    # §13.3.1.4: T1, 2T1, 4T1 … capped at T2.
    probe = TransactionLayer()
    pe = one(probe.receive(make_request(), UAC, 0.0), RequestReceived)
    probe.respond(pe.server_key, Response.for_request(pe.request, 200, to_tag="a"), 0.0)
    probe.datagrams_to_send()
    assert send_times(probe, 12.0) == [0.5, 1.5, 3.5, 7.5, 11.5]
    # A retransmitted INVITE gets the 2xx again (RFC 6026: absorbed, not a new call).
    assert layer.receive(make_request(branch=invite.top_via.branch), UAC, 0.2) == []
    assert statuses(layer) == [200]
    # The 2xx ACK is its own transaction (new branch): matched by dialog.
    ack = make_request("ACK", to_tag=event.to_tag)
    acked = one(layer.receive(ack, UAC, 0.3), AckReceived)
    assert isinstance(acked, AckReceived) and acked.server_key == event.server_key
    assert layer.receive(make_request("ACK", to_tag=event.to_tag), UAC, 0.4) == []  # re-ACK
    assert send_times(layer, 30.0) == []  # retransmission stopped
    clock = Clock(layer, now=30.0)
    clock.run_until(40.0)
    assert clock.fired == [] and len(layer) == 0  # Timer L, ACK seen: no AckNotReceived


def test_server_invite_2xx_never_acked() -> None:
    layer = TransactionLayer()
    event = one(layer.receive(make_request(), UAC, 0.0), RequestReceived)
    ok = Response.for_request(event.request, 200, to_tag=event.to_tag)
    layer.respond(event.server_key, ok, 0.0)
    clock = Clock(layer)
    clock.run_until(100.0)
    assert [(t, type(e)) for t, e in clock.fired] == [(32.0, AckNotReceived)]
    _, lost = clock.fired[0]
    assert isinstance(lost, AckNotReceived) and lost.response.status == 200
    assert len(layer) == 0


def test_pyvoip_ack_reusing_the_invite_branch_with_a_random_to_tag() -> None:
    layer = TransactionLayer()
    invite = make_request()
    event = one(layer.receive(invite, UAC, 0.0), RequestReceived)
    layer.respond(event.server_key, Response.for_request(invite, 200, to_tag=event.to_tag), 0.0)
    ack = make_request("ACK", branch=invite.top_via.branch, to_tag=new_tag())
    acked = one(layer.receive(ack, UAC, 0.1), AckReceived)
    assert isinstance(acked, AckReceived) and acked.server_key == event.server_key
    assert send_times(layer, 10.0) == []


def test_stray_ack_goes_to_the_tu() -> None:
    layer = TransactionLayer()
    event = one(layer.receive(make_request("ACK", to_tag="zz"), UAC, 0.0), AckReceived)
    assert isinstance(event, AckReceived) and event.server_key is None
    assert layer.stats["stray_acks"] == 1 and len(layer) == 0


def test_server_invite_guard_when_the_tu_never_answers() -> None:
    layer = TransactionLayer(timer_c=181.0)
    event = one(layer.receive(make_request(), UAC, 0.0), RequestReceived)
    layer.respond(event.server_key, Response.for_request(event.request, 180, to_tag="t"), 100.0)
    clock = Clock(layer)
    clock.run_until(280.0)
    assert clock.fired == []  # the 180 at t=100 re-armed the guard
    clock.run_until(281.0)
    assert [(t, e.timer) for t, e in clock.fired if isinstance(e, TransactionTimedOut)] == [
        (281.0, "guard")
    ]
    with pytest.raises(TransactionError):
        layer.respond(event.server_key, Response.for_request(event.request, 200), 282.0)


def test_tu_misuse_raises_and_terminates() -> None:
    layer = TransactionLayer()
    event = one(layer.receive(make_request(), UAC, 0.0), RequestReceived)
    layer.respond(event.server_key, Response.for_request(event.request, 200, to_tag="t"), 0.0)
    with pytest.raises(TransactionError):
        layer.respond(event.server_key, Response.for_request(event.request, 180, to_tag="t"), 0.1)
    assert layer.state(event.server_key) is None
    with pytest.raises(TransactionError):
        layer.request(make_request("ACK"), UAS, 0.0)
    with pytest.raises(TransactionError):
        layer.request(make_request(via="SIP/2.0/UDP 192.0.2.1;branch=1234"), UAS, 0.0)
    key = layer.request(make_request("OPTIONS", branch="z9hG4bKsame"), UAS, 0.0)
    with pytest.raises(TransactionError):
        layer.request(make_request("OPTIONS", branch="z9hG4bKsame"), UAS, 0.0)
    assert layer.state(key) is State.TRYING


# ---------------------------------------------------------------------------
# Server non-INVITE


def test_server_non_invite() -> None:
    layer = TransactionLayer()
    options = make_request("OPTIONS")
    event = one(layer.receive(options, UAC, 0.0), RequestReceived)
    assert isinstance(event, RequestReceived) and event.to_tag is None
    assert layer.receive(make_request("OPTIONS", branch=options.top_via.branch), UAC, 0.1) == []
    assert sent(layer) == []  # Trying: absorbed, nothing to re-send
    layer.respond(event.server_key, Response.for_request(options, 200, to_tag="t"), 0.2)
    assert statuses(layer) == [200]
    layer.receive(make_request("OPTIONS", branch=options.top_via.branch), UAC, 1.0)
    assert statuses(layer) == [200]
    clock = Clock(layer)
    clock.run_until(32.1)
    assert layer.state(event.server_key) is State.COMPLETED
    clock.run_until(32.2)
    assert len(layer) == 0


def test_server_non_invite_guard() -> None:
    layer = TransactionLayer()
    one(layer.receive(make_request("REGISTER"), UAC, 0.0), RequestReceived)
    clock = Clock(layer)
    clock.run_until(40.0)
    assert [(t, e.timer) for t, e in clock.fired if isinstance(e, TransactionTimedOut)] == [
        (32.0, "guard")
    ]
    assert layer.stats["unanswered_requests"] == 1


@pytest.mark.parametrize("transport", ["tcp", "tls"])
def test_reliable_transport_has_no_retransmissions_and_zero_wait_timers(
    transport: TransportName,
) -> None:
    peer = Peer(transport, "192.0.2.1", 40000, conn_id=7)
    layer = TransactionLayer()
    via = f"SIP/2.0/{transport.upper()} 192.0.2.1:5062;branch={new_branch()}"
    event = one(layer.receive(make_request("OPTIONS", via=via), peer, 0.0), RequestReceived)
    layer.respond(event.server_key, Response.for_request(event.request, 200, to_tag="t"), 0.0)
    ((_, where),) = sent(layer)
    assert where == peer  # §18.2.2: back on the same connection
    assert len(layer) == 0  # Timer J = 0 on TCP
    via2 = f"SIP/2.0/{transport.upper()} 192.0.2.1:5062;branch={new_branch()}"
    inv = one(layer.receive(make_request(via=via2), peer, 0.0), RequestReceived)
    layer.respond(inv.server_key, Response.for_request(inv.request, 486, to_tag="t"), 0.0)
    assert send_times(layer, 20.0) == []  # no Timer G on TCP
    ack = make_request("ACK", via=via2, to_tag="t")
    layer.receive(ack, peer, 21.0)
    assert len(layer) == 0  # Timer I = 0 on TCP
    # Client side: no Timer A/E, Timer B/F still 64*T1.
    key = layer.request(make_request("OPTIONS"), peer, 0.0)
    assert send_times(layer, 31.0) == []
    clock = Clock(layer)
    clock.run_until(40.0)
    assert [(t, e.timer) for t, e in clock.fired if isinstance(e, TransactionTimedOut)] == [
        (32.0, "F")
    ]
    assert layer.state(key) is None


# ---------------------------------------------------------------------------
# CANCEL


def test_cancel_of_a_ringing_invite() -> None:
    layer = TransactionLayer()
    invite = make_request()
    event = one(layer.receive(invite, UAC, 0.0), RequestReceived)
    assert isinstance(event, RequestReceived)
    layer.respond(event.server_key, Response.for_request(invite, 180, to_tag=event.to_tag), 0.0)
    layer.datagrams_to_send()
    cancel = wire(build_cancel(invite).serialize())
    assert isinstance(cancel, Request)
    cancelled = one(layer.receive(cancel, UAC, 1.0), CancelReceived)
    assert isinstance(cancelled, CancelReceived)
    assert cancelled.server_key == event.server_key and cancelled.to_tag == event.to_tag
    ((ok, _),) = sent(layer)
    assert isinstance(ok, Response) and ok.status == 200 and ok.cseq.method == "CANCEL"
    assert ok.to_tag == event.to_tag  # §9.2: same tag as the INVITE's answers
    # A retransmitted CANCEL gets the same 200, and no second event.
    assert layer.receive(cancel, UAC, 1.1) == []
    assert statuses(layer) == [200]
    layer.respond(event.server_key, Response.for_request(invite, 487, to_tag=event.to_tag), 1.2)
    assert statuses(layer) == [487]


def test_cancel_without_invite_gets_481_and_after_answer_gets_200_only() -> None:
    layer = TransactionLayer()
    assert layer.receive(make_request("CANCEL"), UAC, 0.0) == []
    assert statuses(layer) == [481]
    assert layer.stats["cancel_unmatched"] == 1
    invite = make_request()
    event = one(layer.receive(invite, UAC, 0.0), RequestReceived)
    layer.respond(event.server_key, Response.for_request(invite, 200, to_tag=event.to_tag), 0.0)
    layer.datagrams_to_send()
    assert layer.receive(wire(build_cancel(invite).serialize()), UAC, 0.4) == []
    assert [(m.status, m.cseq.method) for m, _ in sent(layer) if isinstance(m, Response)] == [
        (200, "CANCEL")
    ]
    assert layer.state(event.server_key) is State.ACCEPTED


def test_build_cancel_and_ack_fields() -> None:
    invite = make_request(
        extra=(("Route", "<sip:p1.example;lr>"), ("Route", "<sip:p2.example;lr>"))
    )
    cancel = build_cancel(invite)
    assert cancel.method == "CANCEL" and cancel.uri == invite.uri
    assert cancel.headers.get_all("Via") == invite.headers.get_all("Via")[:1]
    assert cancel.headers.get_all("Route") == invite.headers.get_all("Route")
    assert (cancel.cseq.sequence, cancel.cseq.method) == (1, "CANCEL")
    assert cancel.headers.get("To") == invite.headers.get("To")
    busy = Response.for_request(invite, 486, to_tag="tt")
    ack = build_ack(invite, busy)
    assert (ack.method, ack.cseq.method, ack.to_tag) == ("ACK", "ACK", "tt")
    assert ack.top_via.branch == invite.top_via.branch
    ack_on_wire = wire(ack.serialize())
    assert isinstance(ack_on_wire, Request)
    assert server_key(ack_on_wire) == server_key(invite)


# ---------------------------------------------------------------------------
# Matching, stray traffic, Via handling, limits


def test_stray_and_multi_via_responses_are_dropped() -> None:
    layer = TransactionLayer()
    request = make_request("OPTIONS")
    assert layer.receive(Response.for_request(request, 200), UAS, 0.0) == []
    assert layer.stats["stray_responses"] == 1
    key = layer.request(make_request("OPTIONS"), UAS, 0.0)
    tx_request = wire(layer.datagrams_to_send()[0][0])
    assert isinstance(tx_request, Request)
    extra = Response.for_request(tx_request, 200)
    extra.headers.add("Via", "SIP/2.0/UDP 255.255.255.255;branch=z9hG4bK1saber23")
    assert layer.receive(wire(extra.serialize()), UAS, 0.1) == []
    assert layer.stats["responses_with_extra_via"] == 1
    assert layer.state(key) is State.TRYING


def test_received_and_rport_and_response_destination() -> None:
    layer = TransactionLayer()
    nat = Peer("udp", "203.0.113.7", 40123)
    request = make_request(
        "OPTIONS", via=f"SIP/2.0/UDP phone.local:5062;branch={new_branch()};rport"
    )
    event = one(layer.receive(request, nat, 0.0), RequestReceived)
    top = event.request.top_via
    assert top.parameters["received"] == "203.0.113.7" and top.parameters["rport"] == "40123"
    layer.respond(event.server_key, Response.for_request(event.request, 200, to_tag="t"), 0.0)
    ((response, where),) = sent(layer)
    assert where == nat
    assert response.top_via.parameters["rport"] == "40123"
    # No rport: to `received` and the Via port (§18.2.2).
    r2 = make_request("OPTIONS", via=f"SIP/2.0/UDP phone.local:5070;branch={new_branch()}")
    e2 = one(layer.receive(r2, nat, 0.0), RequestReceived)
    assert response_destination(e2.request, nat) == Peer("udp", "203.0.113.7", 5070)
    # Same address: nothing added.
    r3 = make_request("OPTIONS", via=f"SIP/2.0/UDP 203.0.113.7;branch={new_branch()}")
    e3 = one(layer.receive(r3, nat, 0.0), RequestReceived)
    assert "received" not in e3.request.top_via.parameters
    assert response_destination(e3.request, nat) == Peer("udp", "203.0.113.7", 5060)
    # maddr, IPv6, TCP without a live connection.
    r4 = make_request(
        "OPTIONS", via="SIP/2.0/UDP [2001:db8::1]:5080;branch=z9hG4bKm;maddr=192.0.2.99"
    )
    assert response_destination(r4, Peer("udp", "2001:db8::1", 5080)) == Peer(
        "udp", "192.0.2.99", 5080
    )
    r5 = make_request("OPTIONS", via="SIP/2.0/TCP [2001:db8::1];branch=z9hG4bKt")
    layer.receive(r5, Peer("tcp", "2001:db8::2", 50000), 0.0)
    assert r5.top_via.parameters["received"] == "[2001:db8::2]"
    assert response_destination(r5, Peer("tcp", "2001:db8::2", 50000)) == Peer(
        "tcp", "2001:db8::2", 5060
    )


def test_transaction_limit_answers_503() -> None:
    layer = TransactionLayer(max_transactions=2)
    first = make_request(call_id="a")
    layer.receive(first, UAC, 0.0)
    layer.receive(make_request(call_id="b"), UAC, 0.0)
    layer.datagrams_to_send()
    event = one(layer.receive(make_request(call_id="c"), UAC, 0.0), TransactionLimitReached)
    assert isinstance(event, TransactionLimitReached)
    ((busy, _),) = sent(layer)
    assert isinstance(busy, Response) and busy.status == 503
    assert busy.headers.get("Retry-After") == "5"
    assert len(layer) == 2 and layer.stats["limit_reached"] == 1
    # Retransmissions of admitted transactions are still absorbed.
    assert layer.receive(make_request(branch=first.top_via.branch, call_id="a"), UAC, 0.1) == []
    assert statuses(layer) == [100]


def test_rfc2543_matching_without_branch() -> None:
    layer = TransactionLayer()
    via = "SIP/2.0/UDP iftgw.example.com"
    invite = make_request(via=via, from_tag="")
    event = one(layer.receive(invite, UAC, 0.0), RequestReceived)
    assert event.server_key.legacy and event.server_key.branch == ""
    assert layer.receive(make_request(via=via, from_tag=""), UAC, 0.1) == []  # retransmission
    layer.respond(event.server_key, Response.for_request(invite, 404, to_tag="t404"), 0.2)
    # The ACK matches only with the To tag of our response.
    assert isinstance(
        layer.receive(make_request("ACK", via=via, from_tag="", to_tag="bad"), UAC, 0.3)[0],
        AckReceived,
    )
    assert layer.state(event.server_key) is State.COMPLETED
    assert layer.receive(make_request("ACK", via=via, from_tag="", to_tag="t404"), UAC, 0.4) == []
    assert layer.state(event.server_key) is State.CONFIRMED
    # RFC 4475 badbranch: the bare magic cookie is no RFC 3261 branch.
    badbranch = make_request("OPTIONS", via="SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK")
    assert server_key(badbranch).legacy


# ---------------------------------------------------------------------------
# Client transactions


def test_client_invite_timer_a_and_b() -> None:
    layer = TransactionLayer()
    key = layer.request(make_request(), UAS, 0.0)
    layer.datagrams_to_send()
    clock = Clock(layer)
    times: list[float] = []
    clock.run_until(40.0, lambda now: times.extend(now for _ in layer.datagrams_to_send()))
    assert times == [0.5, 1.5, 3.5, 7.5, 15.5, 31.5]  # A doubles, no cap
    assert [(t, e.timer) for t, e in clock.fired if isinstance(e, TransactionTimedOut)] == [
        (32.0, "B")
    ]
    assert layer.state(key) is None


def test_client_invite_non_2xx_acks_itself() -> None:
    layer = TransactionLayer()
    invite = make_request()
    key = layer.request(invite, UAS, 0.0)
    layer.datagrams_to_send()
    ringing = Response.for_request(invite, 180, to_tag="r")
    event = one(layer.receive(ringing, UAS, 0.2), ResponseReceived)
    assert isinstance(event, ResponseReceived) and event.client_key == key
    assert send_times(layer, 10.0) == []  # Timer A stopped by the 1xx
    busy = Response.for_request(invite, 486, to_tag="r")
    final = one(layer.receive(busy, UAS, 10.0), ResponseReceived)
    assert isinstance(final, ResponseReceived) and final.response.status == 486
    ((ack, where),) = sent(layer)
    assert isinstance(ack, Request) and ack.method == "ACK" and where == UAS
    assert ack.to_tag == "r" and ack.top_via.branch == invite.top_via.branch
    assert layer.receive(busy, UAS, 11.0) == []  # retransmitted final: ACK again, TU not told
    assert [m.method for m, _ in sent(layer) if isinstance(m, Request)] == ["ACK"]
    clock = Clock(layer, now=11.0)
    clock.run_until(41.9)
    assert layer.state(key) is State.COMPLETED
    clock.run_until(42.0)  # Timer D = 32 s
    assert layer.state(key) is None


def test_client_invite_2xx_accepted_passes_every_2xx() -> None:
    layer = TransactionLayer()
    invite = make_request()
    key = layer.request(invite, UAS, 0.0)
    ok = Response.for_request(invite, 200, to_tag="o")
    assert [type(e) for e in layer.receive(ok, UAS, 1.0)] == [ResponseReceived]
    assert layer.state(key) is State.ACCEPTED
    assert [type(e) for e in layer.receive(ok, UAS, 1.5)] == [ResponseReceived]
    assert layer.receive(Response.for_request(invite, 180, to_tag="o"), UAS, 1.6) == []
    clock = Clock(layer, now=1.0)
    clock.run_until(32.9)
    assert layer.state(key) is State.ACCEPTED
    clock.run_until(33.0)  # Timer M
    assert layer.state(key) is None


def test_client_invite_timer_c_backstop() -> None:
    layer = TransactionLayer(timer_c=181.0)
    invite = make_request()
    key = layer.request(invite, UAS, 0.0)
    layer.receive(Response.for_request(invite, 180, to_tag="r"), UAS, 1.0)
    clock = Clock(layer)
    clock.run_until(500.0)
    assert [(t, e.timer) for t, e in clock.fired if isinstance(e, TransactionTimedOut)] == [
        (182.0, "C")
    ]
    assert layer.state(key) is None


def test_client_non_invite_timer_e_f_and_k() -> None:
    layer = TransactionLayer()
    request = make_request("OPTIONS")
    key = layer.request(request, UAS, 0.0)
    layer.datagrams_to_send()
    assert send_times(layer, 20.0) == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5]
    layer2 = TransactionLayer()
    key2 = layer2.request(make_request("OPTIONS"), UAS, 0.0)
    clock = Clock(layer2)
    clock.run_until(40.0)
    assert [(t, e.timer) for t, e in clock.fired if isinstance(e, TransactionTimedOut)] == [
        (32.0, "F")
    ]
    assert layer2.state(key2) is None
    # 1xx: E continues at T2; final: K = T4.
    e1 = one(layer.receive(Response.for_request(request, 100), UAS, 20.0), ResponseReceived)
    assert isinstance(e1, ResponseReceived) and layer.state(key) is State.PROCEEDING
    layer.datagrams_to_send()
    clock = Clock(layer, now=20.0)
    times: list[float] = []
    clock.run_until(28.0, lambda now: times.extend(now for _ in layer.datagrams_to_send()))
    assert times == [23.5, 27.5]
    e2 = one(
        layer.receive(Response.for_request(request, 200, to_tag="t"), UAS, 28.0), ResponseReceived
    )
    assert isinstance(e2, ResponseReceived) and layer.state(key) is State.COMPLETED
    assert layer.receive(Response.for_request(request, 200, to_tag="t"), UAS, 29.0) == []
    clock.run_until(32.9)
    assert layer.state(key) is State.COMPLETED
    clock.run_until(33.0)
    assert layer.state(key) is None


def test_cancel_waits_for_a_provisional_and_guards_64t1() -> None:
    layer = TransactionLayer()
    invite = make_request()
    key = layer.request(invite, UAS, 0.0)
    layer.datagrams_to_send()
    cancel_key = layer.cancel(key, 0.1)
    assert cancel_key is not None and layer.state(cancel_key) is None  # pending
    assert layer.cancel(key, 0.15) == cancel_key
    layer.receive(Response.for_request(invite, 180, to_tag="r"), UAS, 0.2)
    cancels = [m for m, _ in sent(layer) if isinstance(m, Request) and m.method == "CANCEL"]
    assert len(cancels) == 1 and cancels[0].top_via.branch == invite.top_via.branch
    assert layer.state(cancel_key) is State.TRYING
    clock = Clock(layer, now=0.2)
    clock.run_until(100.0)
    timed_out = {(e.key, e.timer) for _, e in clock.fired if isinstance(e, TransactionTimedOut)}
    assert (key, "B") in timed_out and (cancel_key, "F") in timed_out
    assert len(layer) == 0
    # Once answered, there is nothing to cancel.
    invite2 = make_request()
    key2 = layer.request(invite2, UAS, 200.0)
    layer.receive(Response.for_request(invite2, 486, to_tag="x"), UAS, 200.1)
    assert layer.cancel(key2, 200.2) is None
    assert layer.cancel(cancel_key, 200.2) is None  # not an INVITE


def test_transport_failure_terminates() -> None:
    peer = Peer("tcp", "192.0.2.1", 40000, conn_id=3)
    layer = TransactionLayer()
    via = f"SIP/2.0/TCP 192.0.2.1;branch={new_branch()}"
    event = one(layer.receive(make_request(via=via), peer, 0.0), RequestReceived)
    client = layer.request(make_request("OPTIONS"), Peer("tcp", "192.0.2.1", 5060, conn_id=3), 0.0)
    failures = layer.transport_failed(Peer("tcp", "192.0.2.1", 5060, conn_id=3), 1.0)
    assert {type(e) for e in failures} == {TransportFailed}
    assert {e.key for e in failures if isinstance(e, TransportFailed)} == {event.server_key, client}
    assert len(layer) == 0


# ---------------------------------------------------------------------------
# Two layers on a fake wire (h11 ConnectionPair / aioquic roundtrip)


class Pair:
    def __init__(self) -> None:
        self.uac = TransactionLayer()
        self.uas = TransactionLayer()
        self.now = 0.0
        self.events: dict[str, list[TransactionEvent]] = {"uac": [], "uas": []}
        self.log: list[str] = []

    def flush(self, drop: Callable[[str, Request | Response], bool] = lambda s, m: False) -> None:
        for _ in range(50):
            moved = False
            for side, layer, other, source in (
                ("uac", self.uac, self.uas, UAC),
                ("uas", self.uas, self.uac, UAS),
            ):
                target = "uas" if side == "uac" else "uac"
                for data, _ in layer.datagrams_to_send():
                    moved = True
                    message = parse_message(data)
                    label = message.method if isinstance(message, Request) else str(message.status)
                    if drop(side, message):
                        self.log.append(f"{side}->x {label}")
                        continue
                    self.log.append(f"{side}-> {label}")
                    self.events[target] += other.receive(message, source, self.now)
            if not moved:
                return
        raise AssertionError("wire did not settle")

    def tick(
        self, until: float, drop: Callable[[str, Request | Response], bool] = lambda s, m: False
    ) -> None:
        for _ in range(1000):
            deadlines = [d for d in (self.uac.get_timer(), self.uas.get_timer()) if d is not None]
            if not deadlines or min(deadlines) > until:
                break
            self.now = max(self.now, min(deadlines))
            self.events["uac"] += self.uac.handle_timer(self.now)
            self.events["uas"] += self.uas.handle_timer(self.now)
            self.flush(drop)
        self.now = max(self.now, until)

    def take(self, side: str) -> list[TransactionEvent]:
        out, self.events[side] = self.events[side], []
        return out


def ack_for_2xx(invite: Request, ok: Response) -> Request:
    h = Headers()
    h.add("Via", f"SIP/2.0/UDP 192.0.2.1:5062;branch={new_branch()}")
    h.add("Max-Forwards", "70")
    h.add("From", invite.headers.get("From") or "")
    h.add("To", ok.headers.get("To") or "")
    h.add("Call-ID", invite.call_id)
    h.add("CSeq", f"{invite.cseq.sequence} ACK")
    return Request("ACK", invite.uri, h)


def test_pair_invite_to_ack() -> None:
    pair = Pair()
    invite = make_request()
    key = pair.uac.request(invite, UAS, 0.0)
    pair.flush()
    received = one(pair.take("uas"), RequestReceived)
    assert isinstance(received, RequestReceived)
    trying = one(pair.take("uac"), ResponseReceived)
    assert isinstance(trying, ResponseReceived) and trying.response.status == 100
    skey, tag = received.server_key, received.to_tag
    pair.uas.respond(skey, Response.for_request(received.request, 180, to_tag=tag), 0.1)
    pair.uas.respond(skey, Response.for_request(received.request, 200, to_tag=tag), 0.2)
    pair.flush()
    got = [e.response.status for e in pair.take("uac") if isinstance(e, ResponseReceived)]
    assert got == [180, 200]
    assert pair.uac.state(key) is State.ACCEPTED and pair.uas.state(skey) is State.ACCEPTED
    ok = Response.for_request(received.request, 200, to_tag=tag)
    pair.uac.send_stateless(ack_for_2xx(invite, ok), UAS)
    pair.flush()
    acked = one(pair.take("uas"), AckReceived)
    assert isinstance(acked, AckReceived) and acked.server_key == skey
    pair.tick(100.0)
    assert len(pair.uac) == 0 and len(pair.uas) == 0
    assert pair.take("uac") == [] and pair.take("uas") == []


def test_pair_lost_2xx_is_retransmitted_and_reacked() -> None:
    pair = Pair()
    invite = make_request()
    pair.uac.request(invite, UAS, 0.0)
    pair.flush()
    received = one(pair.take("uas"), RequestReceived)
    pair.take("uac")
    lost = {"n": 0}

    def drop_first_200(side: str, m: Request | Response) -> bool:
        if side == "uas" and isinstance(m, Response) and m.status == 200 and lost["n"] == 0:
            lost["n"] = 1
            return True
        return False

    ok = Response.for_request(received.request, 200, to_tag=received.to_tag)
    pair.uas.respond(received.server_key, ok, 0.1)
    pair.flush(drop_first_200)
    assert pair.take("uac") == []
    pair.tick(0.6, drop_first_200)  # 2xx retransmitted at T1
    got = one(pair.take("uac"), ResponseReceived)
    assert isinstance(got, ResponseReceived) and got.response.status == 200
    pair.uac.send_stateless(ack_for_2xx(invite, ok), UAS)
    pair.flush()
    assert [type(e) for e in pair.take("uas")] == [AckReceived]


def test_pair_non_invite_with_losses() -> None:
    pair = Pair()
    dropped = {"OPTIONS": 2, "200": 1}

    def lossy(side: str, m: Request | Response) -> bool:
        label = m.method if isinstance(m, Request) else str(m.status)
        if dropped.get(label, 0) > 0:
            dropped[label] -= 1
            return True
        return False

    key = pair.uac.request(make_request("OPTIONS"), UAS, 0.0)
    pair.flush(lossy)
    assert pair.take("uas") == []
    pair.tick(2.0, lossy)  # third transmission (t=1.5) arrives
    received = one(pair.take("uas"), RequestReceived)
    assert isinstance(received, RequestReceived)
    pair.uas.respond(
        received.server_key, Response.for_request(received.request, 200, to_tag="t"), pair.now
    )
    pair.flush(lossy)  # this 200 is lost
    pair.tick(4.0, lossy)  # the retransmitted OPTIONS makes the UAS re-send its 200
    answer = one(pair.take("uac"), ResponseReceived)
    assert isinstance(answer, ResponseReceived) and answer.response.status == 200
    assert pair.uac.state(key) is State.COMPLETED
    assert pair.log.count("uac->x OPTIONS") == 2 and pair.log.count("uas->x 200") == 1
    pair.tick(100.0)
    assert len(pair.uac) == 0 and len(pair.uas) == 0


def test_pair_cancel_then_487() -> None:
    pair = Pair()
    invite = make_request()
    key = pair.uac.request(invite, UAS, 0.0)
    pair.flush()
    received = one(pair.take("uas"), RequestReceived)
    pair.uas.respond(
        received.server_key,
        Response.for_request(received.request, 180, to_tag=received.to_tag),
        0.1,
    )
    pair.flush()
    pair.take("uac")
    cancel_key = pair.uac.cancel(key, 1.0)
    assert cancel_key is not None
    pair.flush()
    cancelled = one(pair.take("uas"), CancelReceived)
    assert isinstance(cancelled, CancelReceived)
    pair.uas.respond(
        cancelled.server_key,
        Response.for_request(received.request, 487, to_tag=cancelled.to_tag),
        1.1,
    )
    pair.flush()
    got = {
        (e.client_key.method, e.response.status)
        for e in pair.take("uac")
        if isinstance(e, ResponseReceived)
    }
    assert got == {("CANCEL", 200), ("INVITE", 487)}
    assert pair.uas.state(received.server_key) is State.CONFIRMED  # our automatic ACK arrived
    pair.tick(100.0)
    assert len(pair.uac) == 0 and len(pair.uas) == 0
    assert not [
        e for e in pair.take("uac") + pair.take("uas") if isinstance(e, TransactionTimedOut)
    ]


def test_pair_cancel_races_with_200() -> None:
    pair = Pair()
    invite = make_request()
    key = pair.uac.request(invite, UAS, 0.0)
    pair.flush()
    received = one(pair.take("uas"), RequestReceived)
    pair.take("uac")
    # Both leave at the same moment: the UAS answers, the UAC cancels.
    pair.uas.respond(
        received.server_key,
        Response.for_request(received.request, 200, to_tag=received.to_tag),
        1.0,
    )
    pair.uac.cancel(key, 1.0)
    pair.flush()
    uas_events = pair.take("uas")
    assert not [e for e in uas_events if isinstance(e, CancelReceived)]  # too late to cancel
    got = {
        (e.client_key.method, e.response.status)
        for e in pair.take("uac")
        if isinstance(e, ResponseReceived)
    }
    assert got == {("INVITE", 200), ("CANCEL", 200)}
    assert pair.uac.state(key) is State.ACCEPTED  # the TU now ACKs, then sends BYE
    ok = Response.for_request(received.request, 200, to_tag=received.to_tag)
    pair.uac.send_stateless(ack_for_2xx(invite, ok), UAS)
    pair.flush()
    assert [type(e) for e in pair.take("uas")] == [AckReceived]


# ---------------------------------------------------------------------------
# Hypothesis: any sequence of arrivals, answers and time ends with nothing left


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["invite", "options", "retransmit", "ack", "cancel", "answer", "time"]),
            st.integers(0, 3),
            st.sampled_from([100, 180, 200, 404, 487]),
            st.floats(0, 40),
        ),
        max_size=30,
    ),
    st.booleans(),
)
@settings(max_examples=150, deadline=None)
def test_any_sequence_drains(ops: list[tuple[str, int, int, float]], tcp: bool) -> None:
    layer = TransactionLayer()
    peer = Peer("tcp", "192.0.2.1", 40000, conn_id=1) if tcp else UAC
    transport = "TCP" if tcp else "UDP"
    branches = [new_branch() for _ in range(4)]
    requests: dict[int, Request] = {}
    keys: dict[int, RequestReceived] = {}
    now = 0.0
    for op, slot, status, dt in ops:
        via = f"SIP/2.0/{transport} 192.0.2.1:5062;branch={branches[slot]}"
        if op in ("invite", "options"):
            method = "INVITE" if op == "invite" else "OPTIONS"
            requests[slot] = make_request(method, via=via, call_id=f"c{slot}")
            events = layer.receive(requests[slot], peer, now)
        elif op == "retransmit" and slot in requests:
            events = layer.receive(wire(requests[slot].serialize()), peer, now)
        elif op == "ack":
            events = layer.receive(
                make_request("ACK", via=via, call_id=f"c{slot}", to_tag="t"), peer, now
            )
        elif op == "cancel" and slot in requests:
            events = layer.receive(wire(build_cancel(requests[slot]).serialize()), peer, now)
        elif op == "answer" and slot in keys:
            with contextlib.suppress(TransactionError):
                layer.respond(
                    keys[slot].server_key,
                    Response.for_request(keys[slot].request, status, to_tag="t"),
                    now,
                )
            events = []
        else:
            now += dt
            events = layer.handle_timer(now)
        for event in events:
            if isinstance(event, RequestReceived):
                keys[int(event.request.call_id[1:])] = event
        layer.datagrams_to_send()
        assert layer.stats["protocol_errors"] == 0
    clock = Clock(layer, now=now)
    clock.run_until(now + 1000.0)
    assert len(layer) == 0 and layer.get_timer() is None


def test_events_of_timers_due_during_a_tu_call_are_not_lost() -> None:
    layer = TransactionLayer()
    layer.request(make_request("OPTIONS"), UAS, 0.0)  # Timer F due at 32
    # The loop is late: the TU starts another transaction at t=40 first.
    layer.request(make_request("OPTIONS"), UAS, 40.0)
    assert layer.get_timer() == 0.0  # something is already due
    (late,) = layer.handle_timer(40.0)
    assert isinstance(late, TransactionTimedOut) and late.timer == "F"
    assert layer.get_timer() == 40.5  # the new transaction's Timer E


def test_auto_trying_off_leaves_the_100_to_the_tu() -> None:
    layer = TransactionLayer(auto_trying=False)
    event = one(layer.receive(make_request(), UAC, 0.0), RequestReceived)
    assert sent(layer) == []
    layer.respond(event.server_key, Response.for_request(event.request, 100), 0.01)
    assert statuses(layer) == [100]


def test_many_short_transactions_keep_the_timer_heap_small() -> None:
    layer = TransactionLayer()
    for i in range(300):
        event = one(
            layer.receive(make_request("OPTIONS", call_id=f"m{i}"), UAC, 0.0), RequestReceived
        )
        layer.respond(event.server_key, Response.for_request(event.request, 200, to_tag="t"), 0.0)
        via = f"SIP/2.0/TCP 192.0.2.1;branch={new_branch()}"
        tcp = one(
            layer.receive(make_request("OPTIONS", via=via), Peer("tcp", "192.0.2.1", 1, 1), 0.0),
            RequestReceived,
        )
        layer.respond(tcp.server_key, Response.for_request(tcp.request, 200, to_tag="t"), 0.0)
    assert len(layer) == 300  # the TCP ones ended at once (Timer J = 0)
    assert len(layer._heap) <= 4 * (len(layer) + 16) + 2
    assert layer.get_timer() == 32.0
    Clock(layer).run_until(33.0)
    assert len(layer) == 0 and layer.get_timer() is None


def test_reinvite_keeps_the_dialog_tag_for_cancel() -> None:
    layer = TransactionLayer()
    reinvite = make_request(to_tag="dialog-tag", cseq=2)
    event = one(layer.receive(reinvite, UAC, 0.0), RequestReceived)
    assert event.to_tag == "dialog-tag"
    cancelled = one(
        layer.receive(wire(build_cancel(reinvite).serialize()), UAC, 0.1), CancelReceived
    )
    assert cancelled.to_tag == "dialog-tag"


def test_bye_before_ack_stops_2xx_retransmission_quietly() -> None:
    layer = TransactionLayer()
    invite = make_request()
    event = one(layer.receive(invite, UAC, 0.0), RequestReceived)
    layer.respond(event.server_key, Response.for_request(invite, 200, to_tag=event.to_tag), 0.0)
    layer.datagrams_to_send()
    bye = one(
        layer.receive(make_request("BYE", cseq=2, to_tag=event.to_tag), UAC, 0.2), RequestReceived
    )
    layer.respond(bye.server_key, Response.for_request(bye.request, 200), 0.2)
    layer.datagrams_to_send()
    assert send_times(layer, 40.0) == []  # no more 2xx
    clock = Clock(layer, now=0.2)
    clock.run_until(40.0)
    assert clock.fired == [] and len(layer) == 0  # and no AckNotReceived
    assert layer.stats["acks_implied_by_bye"] == 1
