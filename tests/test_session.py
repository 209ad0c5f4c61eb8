"""The INVITE session (sip/session.py): two sessions over a fake wire.

Each side is a real `TransactionLayer` behind a small endpoint that keeps
the `Transactions` seam; datagrams go through the real parser on the way
across, and may be dropped, duplicated or rewritten (pyVoIP's To-tags). Time
is a fake clock that jumps from deadline to deadline; nothing sleeps.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from callcenter112.sip.auth import authorization_for, parse_credentials
from callcenter112.sip.events import (
    AckNotReceived,
    AckReceived,
    CancelReceived,
    RequestReceived,
    ResponseReceived,
    TransactionEvent,
    TransactionTimedOut,
    TransportFailed,
)
from callcenter112.sip.message import (
    Headers,
    Request,
    Response,
    new_branch,
    new_call_id,
    new_tag,
    parse_message,
)
from callcenter112.sip.peer import Peer
from callcenter112.sip.session import (
    TABLE,
    AckMissing,
    Answered,
    ChallengeAnswered,
    Confirmed,
    Credentials,
    EndReason,
    Failed,
    HoldChanged,
    HungUp,
    Input,
    InviteSession,
    LocalParty,
    ProbeAnswered,
    ProbeUnanswered,
    ReinviteFailed,
    ReinviteReceived,
    RequestArrived,
    Ringing,
    SessionError,
    SessionEvent,
    State,
    advance,
    offer_holds,
)
from callcenter112.sip.transaction import TransactionError, TransactionKey, TransactionLayer

SERVER = Peer("udp", "127.0.0.1", 5060)
PHONE = Peer("udp", "127.0.0.1", 5070)


def sdp(direction: str = "sendrecv", port: int = 40000) -> bytes:
    return (
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\na={direction}\r\n"
    ).encode()


class Endpoint:
    """One side: a transaction layer on the fake wire, and its sessions."""

    def __init__(self, wire: Wire, me: Peer) -> None:
        self.wire = wire
        self.me = me
        self.layer = TransactionLayer(t1=0.5)
        self.handlers: dict[TransactionKey, Callable[[TransactionEvent], None]] = {}
        self.sessions: dict[str, InviteSession] = {}
        self.events: list[SessionEvent] = []
        self.local = LocalParty(
            via_host=me.host, via_port=me.port, contact=f"<sip:u@{me.host}:{me.port}>"
        )
        self.auto_accept = False  # answer every re-INVITE with our SDP at once
        self.incoming: Callable[[Endpoint, InviteSession], None] | None = None
        self.challenge: str | None = None  # answer the first INVITE with 407 and this

    # the Transactions seam
    def request(
        self, request: Request, peer: Peer, handler: Callable[[TransactionEvent], None]
    ) -> TransactionKey:
        key = self.layer.request(request, peer, self.wire.now)
        self.handlers[key] = handler
        return key

    def respond(self, key: TransactionKey, response: Response) -> bool:
        try:
            self.layer.respond(key, response, self.wire.now)
        except TransactionError:
            return False
        return True

    def cancel(self, key: TransactionKey) -> TransactionKey | None:
        return self.layer.cancel(key, self.wire.now)

    def send_stateless(self, message: Request | Response, peer: Peer) -> None:
        self.layer.send_stateless(message, peer)

    # the switchboard
    def dispatch(self, events: list[TransactionEvent]) -> None:
        for event in events:
            if isinstance(event, ResponseReceived | TransactionTimedOut | TransportFailed):
                key = event.client_key if isinstance(event, ResponseReceived) else event.key
                if key.client:
                    handler = self.handlers.get(key)
                    if handler is not None:
                        handler(event)
                    continue
            self.switch(event)

    def switch(self, event: TransactionEvent) -> None:
        if isinstance(event, RequestReceived):
            request = event.request
            session = self.sessions.get(request.call_id)
            if request.method == "INVITE" and not request.to_tag:
                if self.challenge is not None:
                    self.challenge, value = None, self.challenge
                    self.respond(
                        event.server_key,
                        Response.for_request(
                            request,
                            407,
                            to_tag=event.to_tag,
                            headers=[("Proxy-Authenticate", value)],
                        ),
                    )
                    return
                assert event.to_tag is not None
                session = InviteSession.incoming(
                    transactions=self,
                    local=self.local,
                    invite=request,
                    peer=event.peer,
                    server_key=event.server_key,
                    to_tag=event.to_tag,
                    on_event=self.post,
                )
                self.sessions[request.call_id] = session
                if self.incoming is not None:
                    self.incoming(self, session)
                return
            if session is None:
                status = 200 if request.method == "BYE" else 481
                self.respond(event.server_key, Response.for_request(request, status))
                return
            self.take(session.receive_request(request, event.server_key, self.wire.now))
            return
        if isinstance(event, AckReceived | CancelReceived | AckNotReceived):
            call_id = event.request.call_id
            session = self.sessions.get(call_id)
            if session is not None:
                self.take(session.receive(event, self.wire.now))
            return
        if isinstance(event, TransactionTimedOut | TransportFailed):
            session = self.sessions.get(event.request.call_id)
            if session is not None:
                self.take(session.receive(event, self.wire.now))

    def post(self, event: TransactionEvent) -> None:
        self.wire.queue.append((self, event))

    def take(self, events: list[SessionEvent]) -> None:
        self.events.extend(events)
        for event in events:
            if isinstance(event, ReinviteReceived) and self.auto_accept:
                session = self.sessions[event.request.call_id]
                self.take(session.accept_reinvite(sdp("recvonly" if event.held else "sendrecv")))

    def call(
        self,
        to: Endpoint,
        *,
        body: bytes | None = None,
        credentials: Credentials | None = None,
        seed: int = 1,
    ) -> InviteSession:
        invite = make_invite(self.me, to.me, sdp() if body is None else body)
        session = InviteSession.outgoing(
            transactions=self,
            local=self.local,
            invite=invite,
            peer=to.me,
            on_event=self.post,
            credentials=credentials,
            rng=random.Random(seed),
        )
        self.sessions[invite.call_id] = session
        self.take(session.start())
        return session

    def of(self, kind: type[SessionEvent]) -> list[SessionEvent]:
        return [e for e in self.events if isinstance(e, kind)]

    def only(self) -> InviteSession:
        (session,) = self.sessions.values()
        return session


def make_invite(me: Peer, to: Peer, body: bytes) -> Request:
    h = Headers()
    h.add("Via", f"SIP/2.0/UDP {me.host}:{me.port};branch={new_branch()};rport")
    h.add("Max-Forwards", "70")
    h.add("From", f"<sip:phone@{me.host}>;tag={new_tag()}")
    h.add("To", f"<sip:112@{to.host}>")
    h.add("Call-ID", new_call_id(me.host))
    h.add("CSeq", "1 INVITE")
    h.add("Contact", f"<sip:phone@{me.host}:{me.port}>")
    if body:
        h.add("Content-Type", "application/sdp")
    return Request("INVITE", f"sip:112@{to.host}:{to.port}", h, body)


Rewrite = Callable[[bytes, Peer], bytes | None]


@dataclass
class Wire:
    """Two endpoints, one clock. `rewrite` may drop (None) or alter datagrams."""

    now: float = 1000.0
    queue: list[tuple[Endpoint, TransactionEvent]] = field(default_factory=list)
    log: list[tuple[Peer, bytes]] = field(default_factory=list)
    rewrite: Rewrite | None = None
    duplicate: bool = False

    def __post_init__(self) -> None:
        self.server = Endpoint(self, SERVER)
        self.phone = Endpoint(self, PHONE)

    def endpoint(self, peer: Peer) -> Endpoint:
        return self.server if peer.port == SERVER.port else self.phone

    def pump(self) -> None:
        for _ in range(10_000):
            moved = False
            for source in (self.server, self.phone):
                for sent, to in source.layer.datagrams_to_send():
                    moved = True
                    data: bytes | None = sent
                    if self.rewrite is not None:
                        data = self.rewrite(sent, to)
                    if data is None:
                        continue
                    self.log.append((to, data))
                    target = self.endpoint(to)
                    for _copy in range(2 if self.duplicate else 1):
                        message = parse_message(data)
                        target.dispatch(target.layer.receive(message, source.me, self.now))
            while self.queue:
                moved = True
                owner, event = self.queue.pop(0)
                session = owner.sessions.get(_call_id(event))
                if session is not None:
                    owner.take(session.receive(event, self.now))
            if not moved:
                return
        raise AssertionError("the wire never went quiet")

    def timers(self) -> list[float]:
        found = []
        for side in (self.server, self.phone):
            deadline = side.layer.get_timer()
            if deadline is not None:
                found.append(deadline)
            for session in side.sessions.values():
                at = session.get_timer()
                if at is not None:
                    found.append(at)
        return found

    def run(self, seconds: float) -> None:
        """Pump, then jump from deadline to deadline for `seconds`."""
        self.pump()
        end = self.now + seconds
        for _ in range(100_000):
            due = [t for t in self.timers() if t <= end]
            if not due:
                break
            self.now = max(self.now, min(due))
            for side in (self.server, self.phone):
                side.dispatch(side.layer.handle_timer(self.now))
                for session in list(side.sessions.values()):
                    side.take(session.handle_timer(self.now))
            self.pump()
        self.now = end


def _call_id(event: TransactionEvent) -> str:
    if isinstance(event, ResponseReceived):
        return event.response.call_id
    return event.request.call_id


def answered_call(wire: Wire) -> tuple[InviteSession, InviteSession]:
    wire.server.incoming = lambda ep, s: ep.take(s.answer(sdp()))
    phone = wire.phone.call(wire.server)
    wire.run(1)
    server = wire.server.only()
    assert phone.state is State.CONFIRMED and server.state is State.CONFIRMED
    return phone, server


def terminal(events: list[SessionEvent]) -> list[SessionEvent]:
    return [e for e in events if isinstance(e, HungUp | Failed)]


# --------------------------------------------------------------------------- the table


def test_every_state_can_reach_the_end() -> None:
    graph: dict[State, set[State]] = {}
    for (state, _input), target in TABLE.items():
        graph.setdefault(state, set()).add(target)
    for start in State:
        seen, todo = {start}, [start]
        while todo:
            for nxt in graph.get(todo.pop(), ()):
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        assert State.TERMINATED in seen, start


def test_every_input_is_used_and_terminated_is_final() -> None:
    used = {event for (_state, event) in TABLE}
    assert used == set(Input)
    assert {target for (state, _i), target in TABLE.items() if state is State.TERMINATED} == {
        State.TERMINATED
    }


@given(st.sampled_from(list(State)), st.sampled_from(list(Input)))
def test_advance_follows_the_table_or_refuses(state: State, event: Input) -> None:
    if (state, event) in TABLE:
        assert advance(state, event) is TABLE[(state, event)]
    else:
        with pytest.raises(SessionError):
            advance(state, event)


def test_offer_holds() -> None:
    assert offer_holds(sdp("sendonly"))
    assert offer_holds(sdp("inactive"))
    assert not offer_holds(sdp("sendrecv"))
    assert not offer_holds(sdp("recvonly"))
    assert offer_holds(sdp().replace(b"c=IN IP4 127.0.0.1", b"c=IN IP4 0.0.0.0"))
    assert not offer_holds(b"garbage")


# --------------------------------------------------------------------------- set-up and end


def test_call_answer_and_bye_from_the_phone() -> None:
    wire = Wire()
    wire.server.incoming = lambda ep, s: ep.take(s.ring())
    phone = wire.phone.call(wire.server)
    wire.run(0.1)
    server = wire.server.only()
    assert server.state is State.INCOMING
    assert [type(e) for e in wire.phone.events] == [Ringing]
    # RFC 3261 §17.2.1: 100 Trying goes out before anything else (pyVoIP waits for it).
    first = parse_message(next(d for to, d in wire.log if to == PHONE))
    assert isinstance(first, Response) and first.status == 100
    wire.server.take(server.answer(sdp()))
    wire.run(1)
    assert phone.state is State.CONFIRMED and server.state is State.CONFIRMED
    answered = wire.phone.of(Answered)
    assert len(answered) == 1 and b"m=audio" in answered[0].body  # type: ignore[union-attr]
    assert wire.server.of(Confirmed) == [Confirmed(answer=None)]
    assert server.dialog is not None and phone.dialog is not None
    assert server.dialog.remote_tag == phone.dialog.local_tag
    wire.phone.take(phone.hangup("done"))
    wire.run(1)
    assert server.state is State.TERMINATED and phone.state is State.TERMINATED
    (hung,) = terminal(wire.server.events)
    assert isinstance(hung, HungUp) and hung.reason is EndReason.REMOTE_BYE
    assert hung.request is not None and 'text="done"' in (hung.request.headers.get("Reason") or "")
    assert terminal(wire.phone.events) == [HungUp(reason=EndReason.LOCAL_BYE)]
    assert not server.pending() and not phone.pending()


def test_server_hangs_up_and_bye_crossing_is_answered() -> None:
    wire = Wire()
    phone, server = answered_call(wire)
    wire.server.take(server.hangup("operator finished"))
    wire.phone.take(phone.hangup("crossing"))
    wire.run(5)
    assert server.state is State.TERMINATED and phone.state is State.TERMINATED
    assert len(terminal(wire.server.events)) == 1
    assert len(terminal(wire.phone.events)) == 1
    # Both BYEs were answered 200: nobody waited for Timer F.
    statuses = [
        m.status
        for _to, d in wire.log
        if isinstance(m := parse_message(d), Response) and m.cseq.method == "BYE"
    ]
    assert statuses == [200, 200]


def test_rejected_call_fails_with_the_status() -> None:
    wire = Wire()
    wire.server.incoming = lambda ep, s: ep.take(s.reject(486))
    phone = wire.phone.call(wire.server)
    wire.run(1)
    assert phone.state is State.TERMINATED
    (failed,) = terminal(wire.phone.events)
    assert isinstance(failed, Failed) and failed.status == 486
    assert terminal(wire.server.events) == [HungUp(reason=EndReason.REJECTED)]


def test_no_answer_at_all_is_a_408() -> None:
    wire = Wire(rewrite=lambda data, to: None if to == PHONE else data)
    phone = wire.phone.call(wire.server)
    wire.run(40)
    assert phone.state is State.TERMINATED
    assert terminal(wire.phone.events) == [Failed(status=408)]


def test_late_offer_answer_arrives_in_the_ack() -> None:
    wire = Wire()
    wire.server.incoming = lambda ep, s: ep.take(s.answer(sdp(port=41000)))
    # The phone's side by hand: an INVITE without SDP, the ACK carrying the answer.
    invite = make_invite(PHONE, SERVER, b"")
    acks: list[Request] = []

    def on_event(event: TransactionEvent) -> None:
        if isinstance(event, ResponseReceived) and event.response.status == 200:
            from callcenter112.sip.dialog import Dialog

            dialog = Dialog.as_uac(invite, event.response, via_host="127.0.0.1", via_port=5070)
            ack = dialog.create_ack(invite, event.response, body=sdp(port=42000))
            ack.headers.add("Content-Type", "application/sdp")
            acks.append(ack)
            wire.phone.send_stateless(ack, SERVER)

    wire.phone.request(invite, SERVER, on_event)
    wire.run(1)
    server = wire.server.only()
    assert len(acks) == 1
    (confirmed,) = wire.server.of(Confirmed)
    assert isinstance(confirmed, Confirmed) and confirmed.answer == sdp(port=42000)
    assert server.state is State.CONFIRMED


def test_lost_ack_the_2xx_is_resent_and_acked_again() -> None:
    dropped: list[bytes] = []

    def drop_first_ack(data: bytes, to: Peer) -> bytes | None:
        if data.startswith(b"ACK ") and not dropped:
            dropped.append(data)
            return None
        return data

    wire = Wire(rewrite=drop_first_ack)
    wire.server.incoming = lambda ep, s: ep.take(s.answer(sdp()))
    phone = wire.phone.call(wire.server)
    wire.run(0.1)
    server = wire.server.only()
    assert server.state is State.ANSWERED and dropped
    wire.run(2)  # T1: the 2xx again, the phone ACKs it again
    assert server.state is State.CONFIRMED and phone.state is State.CONFIRMED
    assert wire.server.of(Confirmed) == [Confirmed(answer=None)]
    assert len(wire.phone.of(Answered)) == 1  # the retransmission is not a second answer
    oks = [
        d for to, d in wire.log if to == PHONE and d.startswith(b"SIP/2.0 200") and b"INVITE" in d
    ]
    assert len(oks) >= 2


def test_no_ack_at_all_is_reported_not_fatal() -> None:
    wire = Wire(rewrite=lambda data, to: None if data.startswith(b"ACK ") else data)
    wire.server.incoming = lambda ep, s: ep.take(s.answer(sdp()))
    wire.phone.call(wire.server)
    wire.run(40)
    server = wire.server.only()
    assert wire.server.of(AckMissing) == [AckMissing()]
    assert server.state is State.CONFIRMED  # the call decides (media may flow)


def test_pyvoip_random_to_tag_on_ack_and_on_200_to_bye() -> None:
    def pyvoip(data: bytes, to: Peer) -> bytes | None:
        message = parse_message(data)
        wrong = isinstance(message, Request) and message.method == "ACK"
        wrong |= isinstance(message, Response) and message.cseq.method == "BYE"
        if wrong and to == SERVER:
            tag = message.to_tag
            assert tag
            return data.replace(f"tag={tag}".encode(), b"tag=pyvoip0random")
        return data

    wire = Wire(rewrite=pyvoip)
    phone, server = answered_call(wire)
    assert wire.server.of(Confirmed) == [Confirmed(answer=None)]
    wire.server.take(server.hangup())
    wire.run(1)
    assert server.state is State.TERMINATED
    assert terminal(wire.server.events) == [HungUp(reason=EndReason.LOCAL_BYE)]
    assert phone.state is State.TERMINATED


# --------------------------------------------------------------------------- CANCEL


def test_cancel_while_ringing() -> None:
    wire = Wire()
    wire.server.incoming = lambda ep, s: ep.take(s.ring())
    phone = wire.phone.call(wire.server)
    wire.run(0.1)
    wire.phone.take(phone.hangup())
    wire.run(1)
    server = wire.server.only()
    assert server.state is State.TERMINATED and phone.state is State.TERMINATED
    (hung,) = terminal(wire.server.events)
    assert isinstance(hung, HungUp) and hung.reason is EndReason.REMOTE_CANCEL
    assert terminal(wire.phone.events) == [HungUp(reason=EndReason.LOCAL_CANCEL)]
    assert any(d.startswith(b"SIP/2.0 487") for _to, d in wire.log)


def test_200_crossing_the_cancel_is_acked_and_byed() -> None:
    wire = Wire()
    wire.server.incoming = lambda ep, s: ep.take(s.ring())
    phone = wire.phone.call(wire.server)
    wire.run(0.1)
    server = wire.server.only()
    # Both act before either message crosses the wire.
    wire.server.take(server.answer(sdp()))
    wire.phone.take(phone.hangup())
    wire.run(5)
    assert phone.state is State.TERMINATED and server.state is State.TERMINATED
    assert wire.phone.of(Answered) == []  # never "answered" for the TU
    assert terminal(wire.phone.events) == [HungUp(reason=EndReason.LOCAL_BYE)]
    (hung,) = terminal(wire.server.events)
    assert isinstance(hung, HungUp) and hung.reason is EndReason.REMOTE_BYE
    sent = [d.split(b" ", 1)[0] for to, d in wire.log if to == SERVER]
    assert sent.index(b"ACK") < sent.index(b"BYE")


def test_hangup_before_start_and_twice() -> None:
    wire = Wire()
    invite = make_invite(PHONE, SERVER, sdp())
    session = InviteSession.outgoing(
        transactions=wire.phone,
        local=wire.phone.local,
        invite=invite,
        peer=SERVER,
        on_event=wire.phone.post,
    )
    assert session.hangup() == [HungUp(reason=EndReason.LOCAL_CANCEL)]
    assert session.hangup() == []
    with pytest.raises(SessionError):
        session.start()


# --------------------------------------------------------------------------- re-INVITE


def test_hold_and_resume_by_the_phone() -> None:
    wire = Wire()
    phone, server = answered_call(wire)
    wire.phone.take(phone.reinvite(sdp("sendonly"), hold=True))
    wire.run(0.1)
    assert server.state is State.REINVITED
    (offer,) = wire.server.of(ReinviteReceived)
    assert isinstance(offer, ReinviteReceived) and offer.held
    wire.server.take(server.accept_reinvite(sdp("recvonly")))
    wire.run(1)
    assert wire.server.of(HoldChanged) == [HoldChanged(held=True, by_remote=True)]
    assert wire.phone.of(HoldChanged) == [HoldChanged(held=True, by_remote=False)]
    assert server.state is State.CONFIRMED and phone.state is State.CONFIRMED
    wire.server.auto_accept = True
    wire.phone.take(phone.reinvite(sdp(), hold=False))
    wire.run(1)
    assert wire.server.of(HoldChanged)[-1] == HoldChanged(held=False, by_remote=True)
    assert wire.phone.of(HoldChanged)[-1] == HoldChanged(held=False, by_remote=False)


def test_rejected_reinvite_keeps_the_session() -> None:
    wire = Wire()
    phone, server = answered_call(wire)
    wire.phone.take(phone.reinvite(sdp("sendonly"), hold=True))
    wire.run(0.1)
    wire.server.take(server.reject_reinvite(488))
    wire.run(1)
    assert wire.phone.of(ReinviteFailed) == [ReinviteFailed(status=488)]
    assert phone.state is State.CONFIRMED and server.state is State.CONFIRMED
    assert wire.phone.of(HoldChanged) == [] and wire.server.of(HoldChanged) == []


def test_glare_both_retry_and_both_end_up_done() -> None:
    wire = Wire()
    phone, server = answered_call(wire)
    wire.server.auto_accept = wire.phone.auto_accept = True
    wire.phone.take(phone.reinvite(sdp("sendonly"), hold=True))
    wire.server.take(server.reinvite(sdp("sendonly"), hold=True))
    wire.run(0.2)
    glare = [d for _to, d in wire.log if d.startswith(b"SIP/2.0 491")]
    assert len(glare) == 2
    assert {phone.state, server.state} == {State.GLARE_WAIT}
    wire.run(10)
    assert phone.state is State.CONFIRMED and server.state is State.CONFIRMED
    assert HoldChanged(held=True, by_remote=False) in wire.server.events
    assert HoldChanged(held=True, by_remote=False) in wire.phone.events
    assert HoldChanged(held=True, by_remote=False) in wire.server.events


def test_reinvite_while_one_is_unanswered_gets_500_with_retry_after() -> None:
    wire = Wire()
    phone, server = answered_call(wire)
    wire.phone.take(phone.reinvite(sdp("sendonly"), hold=True))
    wire.run(0.1)
    assert server.state is State.REINVITED
    # A second re-INVITE by hand, in the same dialog.
    assert phone.dialog is not None
    again = phone.dialog.create_request("INVITE", body=sdp(), content_type="application/sdp")
    got: list[TransactionEvent] = []
    wire.phone.request(again, SERVER, got.append)
    wire.run(0.1)
    (answer,) = [e for e in got if isinstance(e, ResponseReceived) and e.response.status >= 200]
    assert answer.response.status == 500
    assert answer.response.headers.get("Retry-After")
    assert server.state is State.REINVITED


def test_reinvite_481_ends_the_session() -> None:
    wire = Wire()
    phone, server = answered_call(wire)
    del wire.phone.sessions[phone.call_id]  # the phone forgot the call
    wire.server.take(server.reinvite(sdp("sendonly"), hold=True))
    wire.run(1)
    assert server.state is State.TERMINATED
    assert terminal(wire.server.events) == [HungUp(reason=EndReason.DIALOG_GONE)]


# --------------------------------------------------------------------------- probe


def test_probe_answered_unanswered_and_gone() -> None:
    wire = Wire()
    phone, server = answered_call(wire)
    assert server.probe(wire.now)
    assert not server.probe(wire.now)  # one at a time
    wire.run(1)
    assert wire.server.of(ProbeAnswered) == [ProbeAnswered(status=200)]
    wire.rewrite = lambda data, to: None if to == PHONE else data
    assert server.probe(wire.now)
    wire.run(5)
    assert wire.server.of(ProbeUnanswered) == [ProbeUnanswered()]
    assert server.state is State.CONFIRMED  # silence is the call's to judge
    wire.run(40)
    assert wire.server.of(ProbeUnanswered) == [ProbeUnanswered()]  # reported once
    wire.rewrite = None
    del wire.phone.sessions[phone.call_id]
    assert server.probe(wire.now)
    wire.run(1)
    assert server.state is State.TERMINATED
    assert terminal(wire.server.events) == [HungUp(reason=EndReason.DIALOG_GONE)]


def test_info_is_handed_to_the_tu() -> None:
    wire = Wire()
    phone, server = answered_call(wire)
    assert phone.dialog is not None
    info = phone.dialog.create_request(
        "INFO", body=b"Signal=5\r\nDuration=160\r\n", content_type="application/dtmf-relay"
    )
    got: list[TransactionEvent] = []
    wire.phone.request(info, SERVER, got.append)
    wire.run(0.1)
    (arrived,) = wire.server.of(RequestArrived)
    assert isinstance(arrived, RequestArrived) and arrived.request.body.startswith(b"Signal=5")
    assert server.respond(arrived.server_key, arrived.request, 200)
    wire.run(0.1)
    assert [e.response.status for e in got if isinstance(e, ResponseReceived)] == [200]


# --------------------------------------------------------------------------- auth


def test_challenge_is_answered_once_with_credentials() -> None:
    wire = Wire()
    wire.server.challenge = 'Digest realm="carrier", nonce="n0nce", algorithm=MD5, qop="auth"'
    wire.server.incoming = lambda ep, s: ep.take(s.answer(sdp()))
    phone = wire.phone.call(wire.server, credentials=Credentials(user="trunk", password="pw"))
    wire.run(1)
    assert wire.phone.of(ChallengeAnswered) == [ChallengeAnswered(status=407)]
    assert phone.state is State.CONFIRMED
    server = wire.server.only()
    header = server.invite.headers.get("Proxy-Authorization")
    assert header is not None
    params = parse_credentials(header)
    expected = authorization_for(
        'Digest realm="carrier", nonce="n0nce", algorithm=MD5, qop="auth"',
        "INVITE",
        server.invite.uri,
        "trunk",
        "pw",
        cnonce=params.params["cnonce"],
        nc=1,
    )
    assert parse_credentials(expected).params["response"] == params.params["response"]
    assert server.invite.cseq.sequence == 2


def test_challenge_without_credentials_fails() -> None:
    wire = Wire()
    wire.server.challenge = 'Digest realm="carrier", nonce="n0nce"'
    phone = wire.phone.call(wire.server)
    wire.run(1)
    assert phone.state is State.TERMINATED
    (failed,) = terminal(wire.phone.events)
    assert isinstance(failed, Failed) and failed.status == 407


# --------------------------------------------------------------------------- random orders

VERBS = [
    "phone_hangup",
    "server_hangup",
    "server_answer",
    "server_ring",
    "server_reject",
    "phone_hold",
    "server_hold",
    "phone_resume",
    "server_accept",
    "server_refuse",
    "phone_accept",
    "server_probe",
    "phone_probe",
    "tick",
    "wait",
    "drop_next",
    "duplicate",
]


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(st.lists(st.sampled_from(VERBS), max_size=14), st.integers(0, 2**16))
def test_random_orders_never_end_stuck(steps: list[str], seed: int) -> None:
    wire = Wire()
    drops = {"n": 0}
    lost = {"any": False}

    def lossy(data: bytes, to: Peer) -> bytes | None:
        if drops["n"] > 0:
            drops["n"] -= 1
            lost["any"] = True
            return None
        return data

    wire.rewrite = lossy
    phone = wire.phone.call(wire.server, seed=seed)
    wire.run(0.01)
    server = wire.server.only()
    for step in steps:
        side, _, verb = step.partition("_")
        ep = wire.server if side == "server" else wire.phone
        session = server if side == "server" else phone
        try:
            if verb == "hangup":
                ep.take(session.hangup())
            elif verb == "answer":
                ep.take(session.answer(sdp()))
            elif verb == "ring":
                ep.take(session.ring())
            elif verb == "reject":
                ep.take(session.reject(503))
            elif verb == "hold":
                ep.take(session.reinvite(sdp("sendonly"), hold=True))
            elif verb == "resume":
                ep.take(session.reinvite(sdp(), hold=False))
            elif verb == "accept":
                ep.take(session.accept_reinvite(sdp()))
            elif verb == "refuse":
                ep.take(session.reject_reinvite(488))
            elif verb == "probe":
                session.probe(wire.now)
            elif step == "tick":
                wire.run(0.3)
            elif step == "wait":
                wire.run(5)
            elif step == "drop":
                drops["n"] += 1
            elif step == "duplicate":
                wire.duplicate = not wire.duplicate
        except SessionError:
            pass
        wire.pump()
    # Whatever happened, the TUs answer what they owe and time runs out.
    wire.duplicate = False
    wire.server.auto_accept = wire.phone.auto_accept = True
    for side, session in ((wire.server, server), (wire.phone, phone)):
        if session.state is State.REINVITED:
            side.take(session.accept_reinvite(sdp()))
    wire.run(400)
    for side, session in ((wire.server, server), (wire.phone, phone)):
        assert session.state in (State.CONFIRMED, State.TERMINATED), session.history
        assert not session.pending() or session.state is State.CONFIRMED, session.history
        ends = terminal(side.events)
        assert len(ends) == (1 if session.state is State.TERMINATED else 0), (ends, session.history)
    if not lost["any"]:
        assert phone.state is server.state, (phone.history, server.history)


def test_our_retry_after_glare_waits_for_their_reinvite_to_be_answered() -> None:
    wire = Wire()
    phone, server = answered_call(wire)
    wire.server.auto_accept = True  # the server answers at once; the phone's TU is slow
    wire.phone.take(phone.reinvite(sdp("sendonly"), hold=True))
    wire.server.take(server.reinvite(sdp("sendonly"), hold=True))
    # The server (not the Call-ID's owner) retries within 2 s, the phone after 2.1-4 s:
    # the phone's timer fires while the server's re-INVITE still waits for its TU.
    wire.run(8)
    assert phone.state is State.REINVITED
    assert wire.server.of(HoldChanged) == []  # theirs waits for the phone's TU
    wire.phone.take(phone.accept_reinvite(sdp("recvonly")))
    wire.run(8)  # now the phone's own re-INVITE goes out
    assert phone.state is State.CONFIRMED and server.state is State.CONFIRMED
    assert HoldChanged(held=True, by_remote=False) in wire.server.events
    assert HoldChanged(held=True, by_remote=False) in wire.phone.events
