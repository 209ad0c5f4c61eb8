"""The INVITE usage of a dialog: RFC 3261 §12-15, RFC 3264 hand-off, RFC 6141, sans-IO.

Theory of operation
-------------------
RFC 3261 §13.1: "the INVITE method is used to establish a session between
participants. A session is considered established if the INVITE has
received a success response (2xx) or an ACK has been sent." One
`InviteSession` is one such session, seen from our side, either as the UAS
(a caller's INVITE reached us, §13.3) or as the UAC (we call an operator,
an agency, a supervisor or a citizen, §13.2). It sits between the
transaction layer (`transaction.py`, which retransmits and matches) and the
call (`callflow/`), which decides *what* to answer; the session decides
*how* it goes on the wire:

* dialog creation (§12.1.1 from our 2xx, §12.1.2 from their 2xx), the ACK
  of a 2xx (§13.2.2.4) — again for every retransmission of it — and the
  wait for the ACK of ours (§13.3.1.4; the layer retransmits, we hear
  `AckNotReceived`);
* the RFC 3264 hand-off: the offer is the INVITE's body or, in a late
  offer (§13.2.1), the TU's 2xx body whose answer arrives in the ACK;
* re-INVITE (§14) for hold and resume, with glare: "a UAC that receives a
  491 response to a re-INVITE SHOULD start a timer with a value T chosen as
  follows: 1. If the UAC is the owner of the Call-ID ... T has a randomly
  chosen value between 2.1 and 4 seconds in units of 10 ms. 2. If the UAC
  is not the owner of the Call-ID, T has a randomly chosen value of between
  0 and 2 seconds" (§14.1); a re-INVITE that arrives while ours is pending
  is answered 491, one that arrives while we still owe an answer to the
  previous one 500 with Retry-After (§14.2); RFC 6141 §3.2: a re-INVITE
  that fails leaves the session as it was;
* CANCEL (§9.1) and the 2xx that crosses it: "the UAC MUST ... send an ACK
  ... and then a BYE" (§15; RFC 6026 §7.2);
* BYE (§15.1), answered 200 even when its To-tag is wrong (pyVoIP, matched
  by the dialog table), and the end of the session when our BYE is answered
  or times out (§15.1.1: "the UAC MUST consider the session terminated ...
  regardless of the response");
* one retry of the initial INVITE with digest credentials after a 401/407
  (§22.2), when the TU gave credentials (trunks towards carriers);
* the liveness probe: an in-dialog OPTIONS (§11) whose 481 means the dialog
  is gone (RFC 5057 §5.1), whereas no answer within `PROBE_TIMEOUT_S` only
  says the peer is silent; what silence means is the call's rule.

Every state change goes through `TABLE` (STYLE 2), `{(State, Input): State}`.
A TU verb the table does not allow raises `SessionError` and changes
nothing (a caller's 112 session is never torn down by a programming slip);
a network input the table does not list is answered as §12.2.2 says (481
for requests outside a live dialog) or absorbed (stray responses, ACKs).
The session reports what happened as frozen events (`Answered`,
`HoldChanged`, `HungUp`, `Failed` …); exactly one of `HungUp` or `Failed`
is emitted when it reaches TERMINATED.

Known departure: §15 says the callee "MUST NOT send a BYE on a confirmed
dialog until it has received an ACK for its 2xx response or until the
server transaction times out". An emergency call that must end (server
stopping, operator finished) sends its BYE at once, as the call flow always did;
peers accept it and the layer stops retransmitting the 2xx on the BYE.
"""

from __future__ import annotations

import random
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import Enum, auto
from typing import Final, Protocol

from ..sdp import Direction, SdpError, SessionDescription
from .auth import authorization_for, select_challenge
from .dialog import Dialog
from .errors import SipParseError
from .events import (
    AckNotReceived,
    AckReceived,
    CancelReceived,
    RequestReceived,
    ResponseReceived,
    TransactionEvent,
    TransactionTimedOut,
    TransportFailed,
)
from .message import Headers, Request, Response, new_branch
from .peer import Peer
from .refer import refer_notify
from .transaction import TransactionKey

__all__ = [
    "ALLOW",
    "PROBE_TIMEOUT_S",
    "SDP",
    "TABLE",
    "AckMissing",
    "Answered",
    "ChallengeAnswered",
    "Confirmed",
    "Credentials",
    "EndReason",
    "Failed",
    "HoldChanged",
    "HungUp",
    "Input",
    "InviteSession",
    "LocalParty",
    "ProbeAnswered",
    "ProbeUnanswered",
    "ReinviteFailed",
    "ReinviteReceived",
    "RequestArrived",
    "Ringing",
    "SessionError",
    "SessionEvent",
    "State",
    "Transactions",
    "advance",
    "offer_holds",
    "with_credentials",
]

ALLOW: Final = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, REFER, NOTIFY, UPDATE"
SDP: Final = "application/sdp"
# A silent leg is probed with an in-dialog OPTIONS. Its transaction would only
# time out after Timer F = 64*T1 = 32 s (RFC 3261 §17.1.2.2); a phone that has
# not answered four transmissions (0, 0.5, 1.5, 3.5 s with T1 = 0.5 s, Timer E)
# is taken as silent, so that a caller whose operator's phone died hears the
# "operator lost" prompt within seconds, not after half a minute.
PROBE_TIMEOUT_S: Final = 4.0
# §14.1 glare back-off, in seconds (units of 10 ms).
GLARE_OWNER: Final = (2.1, 4.0)
GLARE_OTHER: Final = (0.0, 2.0)
# §14.2: "a 500 (Server Internal Error) response ... MUST include a Retry-After
# header field with a randomly chosen value of between 0 and 10 seconds".
REINVITE_RETRY_AFTER: Final = 5
# Requests the TU answers itself (digits, transfers); OPTIONS and a body-less
# UPDATE/NOTIFY are answered here (keep-alives), anything else 501.
_TU_METHODS: Final = frozenset({"INFO", "REFER"})
_KEEPALIVE_METHODS: Final = frozenset({"OPTIONS", "UPDATE", "NOTIFY"})


class SessionError(Exception):
    """The TU asked for something the session's state does not allow.
    Nothing went on the wire and the state is unchanged."""


class State(Enum):
    IDLE = auto()  # UAC, INVITE not sent yet
    CALLING = auto()  # UAC, INVITE sent, nothing heard
    EARLY = auto()  # UAC, a provisional arrived
    CANCELLING = auto()  # UAC, CANCEL sent, the INVITE's final still due
    INCOMING = auto()  # UAS, INVITE received, not answered
    ANSWERED = auto()  # UAS, 2xx sent, ACK not yet here
    CONFIRMED = auto()  # the session is up, no INVITE transaction pending
    REINVITING = auto()  # our re-INVITE pending
    GLARE_WAIT = auto()  # our re-INVITE got 491; retry when the timer fires
    REINVITED = auto()  # the peer's re-INVITE waits for our answer
    TERMINATING = auto()  # our BYE sent
    TERMINATED = auto()


class Input(Enum):
    # from the TU
    TU_INVITE = auto()
    TU_RING = auto()
    TU_ANSWER = auto()
    TU_REJECT = auto()
    TU_HANGUP = auto()  # BYE when up, CANCEL when calling, 480 when incoming
    TU_REINVITE = auto()
    TU_ACCEPT_REINVITE = auto()
    TU_REJECT_REINVITE = auto()
    # from the network, for the initial INVITE
    PROVISIONAL = auto()
    SUCCESS = auto()  # a 2xx (first or retransmitted)
    CHALLENGED = auto()  # 401/407 answered with credentials
    FAILURE = auto()  # a 3xx-6xx final, Timer B/C, transport failure
    ACK = auto()
    CANCEL = auto()
    ACK_TIMEOUT = auto()  # Timer L without ACK (§13.3.1.4)
    # from the network, in the dialog
    BYE = auto()
    REINVITE = auto()
    REINVITE_SUCCESS = auto()
    REINVITE_GLARE = auto()  # 491
    REINVITE_FAILURE = auto()
    DIALOG_GONE = auto()  # 481 (RFC 5057), 408 to a re-INVITE (§14.1)
    BYE_DONE = auto()  # our BYE answered or timed out
    # timers
    GLARE_TIMER = auto()


S = State
I = Input  # noqa: E741 - table readability

TABLE: Final[dict[tuple[State, Input], State]] = {
    # UAC, §13.2
    (S.IDLE, I.TU_INVITE): S.CALLING,
    (S.IDLE, I.TU_HANGUP): S.TERMINATED,
    (S.CALLING, I.PROVISIONAL): S.EARLY,
    (S.CALLING, I.SUCCESS): S.CONFIRMED,  # ACK sent
    (S.CALLING, I.CHALLENGED): S.CALLING,  # INVITE again, with credentials
    (S.CALLING, I.FAILURE): S.TERMINATED,
    (S.CALLING, I.TU_HANGUP): S.CANCELLING,  # CANCEL waits for a 1xx in the layer
    (S.EARLY, I.PROVISIONAL): S.EARLY,
    (S.EARLY, I.SUCCESS): S.CONFIRMED,
    (S.EARLY, I.CHALLENGED): S.CALLING,
    (S.EARLY, I.FAILURE): S.TERMINATED,
    (S.EARLY, I.TU_HANGUP): S.CANCELLING,
    (S.CANCELLING, I.PROVISIONAL): S.CANCELLING,
    (S.CANCELLING, I.SUCCESS): S.TERMINATING,  # 2xx crossed our CANCEL: ACK + BYE
    (S.CANCELLING, I.FAILURE): S.TERMINATED,  # 487 (or any final)
    (S.CANCELLING, I.TU_HANGUP): S.CANCELLING,
    # UAS, §13.3
    (S.INCOMING, I.TU_RING): S.INCOMING,
    (S.INCOMING, I.TU_ANSWER): S.ANSWERED,
    (S.INCOMING, I.TU_REJECT): S.TERMINATED,
    (S.INCOMING, I.TU_HANGUP): S.TERMINATED,  # 480
    (S.INCOMING, I.CANCEL): S.TERMINATED,  # 487
    (S.INCOMING, I.FAILURE): S.TERMINATED,  # the layer's guard timer
    (S.ANSWERED, I.ACK): S.CONFIRMED,
    (S.ANSWERED, I.ACK_TIMEOUT): S.CONFIRMED,  # the TU decides (media may flow)
    (S.ANSWERED, I.CANCEL): S.ANSWERED,  # too late (§9.2)
    (S.ANSWERED, I.BYE): S.TERMINATED,
    (S.ANSWERED, I.REINVITE): S.ANSWERED,  # 491
    (S.ANSWERED, I.TU_HANGUP): S.TERMINATING,
    (S.ANSWERED, I.DIALOG_GONE): S.TERMINATED,
    # the session is up
    (S.CONFIRMED, I.SUCCESS): S.CONFIRMED,  # 2xx retransmitted: ACK again
    (S.CONFIRMED, I.ACK): S.CONFIRMED,  # ACK of a re-INVITE's 2xx, or again
    (S.CONFIRMED, I.ACK_TIMEOUT): S.CONFIRMED,  # of a re-INVITE's 2xx
    (S.CONFIRMED, I.CANCEL): S.CONFIRMED,
    (S.CONFIRMED, I.BYE): S.TERMINATED,
    (S.CONFIRMED, I.REINVITE): S.REINVITED,
    (S.CONFIRMED, I.TU_REINVITE): S.REINVITING,
    (S.CONFIRMED, I.GLARE_TIMER): S.REINVITING,  # our retry, after theirs
    (S.CONFIRMED, I.DIALOG_GONE): S.TERMINATED,
    (S.CONFIRMED, I.TU_HANGUP): S.TERMINATING,
    (S.REINVITING, I.PROVISIONAL): S.REINVITING,
    (S.REINVITING, I.SUCCESS): S.REINVITING,
    (S.REINVITING, I.ACK): S.REINVITING,
    (S.REINVITING, I.ACK_TIMEOUT): S.REINVITING,
    (S.REINVITING, I.CANCEL): S.REINVITING,
    (S.REINVITING, I.REINVITE_SUCCESS): S.CONFIRMED,
    (S.REINVITING, I.REINVITE_GLARE): S.GLARE_WAIT,
    (S.REINVITING, I.REINVITE_FAILURE): S.CONFIRMED,  # RFC 6141 §3.2: as before
    (S.REINVITING, I.REINVITE): S.REINVITING,  # 491 (§14.2)
    (S.REINVITING, I.DIALOG_GONE): S.TERMINATED,
    (S.REINVITING, I.BYE): S.TERMINATED,
    (S.REINVITING, I.TU_HANGUP): S.TERMINATING,
    (S.GLARE_WAIT, I.GLARE_TIMER): S.REINVITING,
    (S.GLARE_WAIT, I.TU_REINVITE): S.GLARE_WAIT,  # the newest wish is retried
    (S.GLARE_WAIT, I.REINVITE): S.REINVITED,  # theirs first; ours stays pending
    (S.GLARE_WAIT, I.SUCCESS): S.GLARE_WAIT,
    (S.GLARE_WAIT, I.ACK): S.GLARE_WAIT,
    (S.GLARE_WAIT, I.ACK_TIMEOUT): S.GLARE_WAIT,
    (S.GLARE_WAIT, I.CANCEL): S.GLARE_WAIT,
    (S.GLARE_WAIT, I.DIALOG_GONE): S.TERMINATED,
    (S.GLARE_WAIT, I.BYE): S.TERMINATED,
    (S.GLARE_WAIT, I.TU_HANGUP): S.TERMINATING,
    (S.REINVITED, I.TU_ACCEPT_REINVITE): S.CONFIRMED,
    (S.REINVITED, I.TU_REJECT_REINVITE): S.CONFIRMED,
    (S.REINVITED, I.REINVITE): S.REINVITED,  # 500 + Retry-After (§14.2)
    (S.REINVITED, I.CANCEL): S.CONFIRMED,  # 487 to the re-INVITE; session as before
    (S.REINVITED, I.FAILURE): S.CONFIRMED,  # the TU never answered (guard timer)
    (S.REINVITED, I.SUCCESS): S.REINVITED,
    (S.REINVITED, I.ACK): S.REINVITED,
    (S.REINVITED, I.ACK_TIMEOUT): S.REINVITED,
    (S.REINVITED, I.GLARE_TIMER): S.REINVITED,  # ours waits for theirs to end
    (S.REINVITED, I.DIALOG_GONE): S.TERMINATED,
    (S.REINVITED, I.BYE): S.TERMINATED,
    (S.REINVITED, I.TU_HANGUP): S.TERMINATING,
    # ending, §15
    (S.TERMINATING, I.BYE_DONE): S.TERMINATED,
    (S.TERMINATING, I.BYE): S.TERMINATING,  # BYEs crossed: 200, wait for ours
    (S.TERMINATING, I.SUCCESS): S.TERMINATING,  # ACK again
    (S.TERMINATING, I.PROVISIONAL): S.TERMINATING,
    (S.TERMINATING, I.FAILURE): S.TERMINATING,
    (S.TERMINATING, I.ACK): S.TERMINATING,
    (S.TERMINATING, I.ACK_TIMEOUT): S.TERMINATING,
    (S.TERMINATING, I.CANCEL): S.TERMINATING,
    (S.TERMINATING, I.REINVITE): S.TERMINATING,  # 481
    (S.TERMINATING, I.DIALOG_GONE): S.TERMINATED,
    (S.TERMINATING, I.TU_HANGUP): S.TERMINATING,
    (S.TERMINATED, I.TU_HANGUP): S.TERMINATED,
    (S.TERMINATED, I.SUCCESS): S.TERMINATED,  # a late 2xx: ACK + BYE
}
del S, I

TERMINAL_STATES: Final = frozenset({State.TERMINATED})


def advance(state: State, event: Input) -> State:
    """The next state, or SessionError when `TABLE` does not allow `event`."""
    try:
        return TABLE[(state, event)]
    except KeyError:
        raise SessionError(f"{event.name} not allowed in {state.name}") from None


# --------------------------------------------------------------------------- events


class EndReason(Enum):
    REMOTE_BYE = "remote_bye"
    LOCAL_BYE = "local_bye"
    REMOTE_CANCEL = "remote_cancel"
    LOCAL_CANCEL = "local_cancel"
    REJECTED = "rejected"  # we answered the INVITE with a failure
    DIALOG_GONE = "dialog_gone"  # 481/408 in the dialog
    TIMED_OUT = "timed_out"  # the caller's INVITE was never answered (layer guard)


@dataclass(frozen=True, slots=True, kw_only=True)
class Ringing:
    """UAC: a provisional response to our INVITE (180, 183 …)."""

    status: int
    response: Response


@dataclass(frozen=True, slots=True, kw_only=True)
class Answered:
    """UAC: the 2xx to our INVITE. The dialog exists, the ACK is sent;
    `body` is the peer's answer to our offer."""

    response: Response
    body: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class Confirmed:
    """UAS: the ACK of our 2xx arrived. `answer` is its body in a late offer
    (§13.2.1: our offer went in the 2xx), else None."""

    answer: bytes | None


@dataclass(frozen=True, slots=True, kw_only=True)
class AckMissing:
    """UAS: Timer L ran out without the ACK of our 2xx (§13.3.1.4). The
    session is taken as up; the TU ends it if no media flows either."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ReinviteReceived:
    """The peer offers anew (§14.2). `held` says the offer puts us on hold
    (sendonly/inactive, or the RFC 2543 0.0.0.0). Answer with
    `accept_reinvite(answer)` or `reject_reinvite(status)`."""

    request: Request
    offer: bytes
    held: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class HoldChanged:
    """Hold changed: by the peer's re-INVITE (`by_remote`) or by ours."""

    held: bool
    by_remote: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class ReinviteFailed:
    """Our re-INVITE failed with `status`; the session is as before (RFC 6141)."""

    status: int


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestArrived:
    """An in-dialog request for the TU to answer (`respond`): INFO, REFER."""

    request: Request
    server_key: TransactionKey


@dataclass(frozen=True, slots=True, kw_only=True)
class ProbeAnswered:
    """The peer answered our OPTIONS probe (any status but 481)."""

    status: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ProbeUnanswered:
    """No answer to our probe within PROBE_TIMEOUT_S (or the transaction failed)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ChallengeAnswered:
    """Our INVITE was challenged (`status` 401/407) and sent again with credentials."""

    status: int


@dataclass(frozen=True, slots=True, kw_only=True)
class HungUp:
    """The session ended after it was set up, or was cancelled before.
    `request` is the peer's BYE or CANCEL when they ended it (its Reason
    header tells a failing phone from a hang-up)."""

    reason: EndReason
    request: Request | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Failed:
    """UAC: the INVITE failed: a 3xx-6xx `status`, 408 for no answer
    (Timer B/C), 503 when the transport failed (§8.1.3.1, §17.1.4)."""

    status: int
    response: Response | None = None


SessionEvent = (
    Ringing
    | Answered
    | Confirmed
    | AckMissing
    | ReinviteReceived
    | HoldChanged
    | ReinviteFailed
    | RequestArrived
    | ProbeAnswered
    | ProbeUnanswered
    | ChallengeAnswered
    | HungUp
    | Failed
)


# --------------------------------------------------------------------------- the seams


class Transactions(Protocol):
    """What the session needs from below: `net.sip_endpoint.SipEndpoint`
    (or the transaction layer on a fake wire in tests)."""

    def request(
        self, request: Request, peer: Peer, handler: Callable[[TransactionEvent], None]
    ) -> TransactionKey: ...

    def respond(self, key: TransactionKey, response: Response) -> bool: ...

    def cancel(self, key: TransactionKey) -> TransactionKey | None: ...

    def send_stateless(self, message: Request | Response, peer: Peer) -> None: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class LocalParty:
    """Who we are on the wire: our Via sent-by, our Contact (a name-addr)
    and the headers every dialog-creating answer carries."""

    via_host: str
    via_port: int
    contact: str
    user_agent: str = "callcenter112"


@dataclass(frozen=True, slots=True, kw_only=True)
class Credentials:
    """Digest credentials for the one retry after a 401/407 (a trunk's)."""

    user: str
    password: str


def offer_holds(body: bytes) -> bool:
    """Whether an SDP offer puts its receiver on hold: every audio stream
    sendonly or inactive (RFC 3264 §8.4), or the RFC 2543 c=0.0.0.0."""
    try:
        sdp = SessionDescription.parse(body)
    except SdpError:
        return False
    audio = [m for m in sdp.media if m.media == "audio" and m.port != 0]
    if not audio:
        return False
    for media in audio:
        connection = sdp.connection_for(media)
        if connection is not None and connection.address == "0.0.0.0":
            continue
        if sdp.direction_for(media) in (Direction.SENDRECV, Direction.RECVONLY):
            return False
    return True


# --------------------------------------------------------------------------- the session


@dataclass(slots=True)
class _Pending:
    """Our pending re-INVITE's offer (sent, or waiting out glare)."""

    body: bytes
    hold: bool
    key: TransactionKey | None = None


@dataclass(slots=True)
class _ServerInvite:
    """An INVITE (initial or re-) we owe or gave an answer to."""

    request: Request
    key: TransactionKey
    held: bool = False


class InviteSession:
    """One INVITE session (see the module docstring). Build it with
    `incoming(...)` or `outgoing(...)`; every verb and input returns the
    events it caused. Time is only the `now` passed in; `get_timer()` is the
    session's earliest deadline (probe, glare)."""

    def __init__(
        self,
        *,
        transactions: Transactions,
        local: LocalParty,
        peer: Peer,
        invite: Request,
        on_event: Callable[[TransactionEvent], None],
        uac: bool,
        credentials: Credentials | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.transactions = transactions
        self.local = local
        self.peer = peer
        self.invite = invite  # the initial INVITE (ours: as last sent, with credentials)
        self.uac = uac
        self.state = State.IDLE
        self.dialog: Dialog | None = None
        self.held_by_remote = False
        self.held_locally = False
        self._on_event = on_event
        self._credentials = credentials
        self._auth_tried = False
        self._rng = rng or random.Random()
        self._invite_key: TransactionKey | None = None
        self._server: _ServerInvite | None = None  # UAS initial INVITE
        self._reinvite_in: _ServerInvite | None = None
        self._reinvite_out: _Pending | None = None
        self._late_offer = False
        self._bye_key: TransactionKey | None = None
        self._probe_key: TransactionKey | None = None
        self._timers: dict[Input | str, float] = {}
        self._last_now = 0.0  # the glare timer counts from the 491's arrival
        self.to_tag = ""  # UAS: our tag, the one the layer already used (§9.2)
        self.history: list[tuple[State, Input, State]] = []

    # -- constructors -------------------------------------------------------------

    @classmethod
    def incoming(
        cls,
        *,
        transactions: Transactions,
        local: LocalParty,
        invite: Request,
        peer: Peer,
        server_key: TransactionKey,
        to_tag: str,
        on_event: Callable[[TransactionEvent], None],
    ) -> InviteSession:
        """The UAS session of a caller's INVITE; `to_tag` is the one the
        layer already used (RFC 3261 §9.2, `RequestReceived.to_tag`)."""
        session = cls(
            transactions=transactions,
            local=local,
            peer=peer,
            invite=invite,
            on_event=on_event,
            uac=False,
        )
        session.state = State.INCOMING
        session.to_tag = to_tag
        session._server = _ServerInvite(invite, server_key)
        session._late_offer = not invite.body
        return session

    @classmethod
    def outgoing(
        cls,
        *,
        transactions: Transactions,
        local: LocalParty,
        invite: Request,
        peer: Peer,
        on_event: Callable[[TransactionEvent], None],
        credentials: Credentials | None = None,
        rng: random.Random | None = None,
    ) -> InviteSession:
        """The UAC session of `invite` (built by the TU, with its offer);
        `start()` sends it. `on_event` receives the transaction events of
        every request the session sends, for the TU to feed back in."""
        return cls(
            transactions=transactions,
            local=local,
            peer=peer,
            invite=invite,
            on_event=on_event,
            uac=True,
            credentials=credentials,
            rng=rng,
        )

    # -- plumbing ---------------------------------------------------------------------

    @property
    def ended(self) -> bool:
        return self.state is State.TERMINATED

    @property
    def call_id(self) -> str:
        return self.invite.call_id

    def allows(self, event: Input) -> bool:
        return (self.state, event) in TABLE

    def _go(self, event: Input) -> State:
        old = self.state
        self.state = advance(old, event)
        self.history.append((old, event, self.state))
        if self.state is State.TERMINATED:
            self._timers.clear()
        return old

    def get_timer(self) -> float | None:
        return min(self._timers.values(), default=None)

    def handle_timer(self, now: float) -> list[SessionEvent]:
        events: list[SessionEvent] = []
        for name, at in list(self._timers.items()):
            if at > now:
                continue
            del self._timers[name]
            if name == "probe":
                if self._probe_key is not None:
                    self._probe_key = None
                    events.append(ProbeUnanswered())
            elif name is Input.GLARE_TIMER and self._reinvite_out is not None:
                events += self._glare_retry(now)
        return events

    def _glare_retry(self, now: float) -> list[SessionEvent]:
        if self.state is State.REINVITED:
            # Theirs is still open: ours goes once it is answered (§14.1).
            self._go(Input.GLARE_TIMER)
            self._timers[Input.GLARE_TIMER] = now + GLARE_OTHER[1]
            return []
        if not self.allows(Input.GLARE_TIMER) or self.state is State.TERMINATING:
            self._reinvite_out = None
            return []
        self._go(Input.GLARE_TIMER)
        self._send_reinvite()
        return []

    def _send(self, request: Request) -> TransactionKey:
        return self.transactions.request(request, self.peer, self._on_event)

    def _response(
        self,
        request: Request,
        status: int,
        *,
        headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
        contact: bool = False,
    ) -> Response:
        extra = list(headers)
        if contact:
            extra = [("Contact", self.local.contact), ("Allow", ALLOW), *extra]
        if body:
            extra.append(("Content-Type", SDP))
        return Response.for_request(
            request, status, to_tag=self.to_tag or None, headers=extra, body=body
        )

    def respond(
        self,
        server_key: TransactionKey,
        request: Request,
        status: int,
        *,
        headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
    ) -> bool:
        """Answer an in-dialog request the TU was handed (`RequestArrived`)."""
        return self.transactions.respond(
            server_key, Response.for_request(request, status, headers=headers, body=body)
        )

    # -- TU verbs: UAC ---------------------------------------------------------------

    def start(self) -> list[SessionEvent]:
        """Send our INVITE."""
        self._go(Input.TU_INVITE)
        self._invite_key = self._send(self.invite)
        return []

    # -- TU verbs: UAS ---------------------------------------------------------------

    def ring(self, status: int = 180) -> list[SessionEvent]:
        """A provisional answer (180/183) to the caller's INVITE."""
        if not 100 < status < 200:
            raise SessionError(f"{status} is not a provisional status")
        self._go(Input.TU_RING)
        assert self._server is not None
        self.transactions.respond(self._server.key, self._response(self._server.request, status))
        return []

    def answer(self, body: bytes, *, headers: Iterable[tuple[str, str]] = ()) -> list[SessionEvent]:
        """2xx to the caller's INVITE with our SDP (the answer, or in a late
        offer our offer). Builds the dialog. When the INVITE's transaction is
        gone (a CANCEL crossed us) the session ends: `HungUp(REMOTE_CANCEL)`."""
        if not self.allows(Input.TU_ANSWER):
            raise SessionError(f"answer not allowed in {self.state.name}")
        assert self._server is not None
        ok = self._response(
            self._server.request,
            200,
            headers=[("Supported", "replaces"), ("Server", self.local.user_agent), *headers],
            body=body,
            contact=True,
        )
        dialog = Dialog.as_uas(
            self._server.request,
            ok,
            via_host=self.local.via_host,
            via_port=self.local.via_port,
            transport=self.peer.transport,
            local_contact=self.local.contact,
        )
        if not self.transactions.respond(self._server.key, ok):
            self._go(Input.TU_REJECT)
            return [HungUp(reason=EndReason.REMOTE_CANCEL)]
        self.dialog = dialog
        self._go(Input.TU_ANSWER)
        return []

    def reject(self, status: int, *, headers: Iterable[tuple[str, str]] = ()) -> list[SessionEvent]:
        """A failure answer (3xx-6xx) to the caller's INVITE."""
        if not 300 <= status < 700:
            raise SessionError(f"{status} is not a final failure status")
        self._go(Input.TU_REJECT)
        assert self._server is not None
        self.transactions.respond(
            self._server.key, self._response(self._server.request, status, headers=headers)
        )
        return [HungUp(reason=EndReason.REJECTED)]

    # -- TU verbs: both sides -----------------------------------------------------------

    def hangup(self, reason: str = "") -> list[SessionEvent]:
        """End the session however its state needs: BYE when the dialog is
        up (with a Reason header, RFC 3326), CANCEL while our INVITE rings,
        480 to an INVITE not yet answered. Idempotent."""
        state = self.state
        self._go(Input.TU_HANGUP)
        if state is State.IDLE:
            return [HungUp(reason=EndReason.LOCAL_CANCEL)]
        if state in (State.CALLING, State.EARLY):
            assert self._invite_key is not None
            self.transactions.cancel(self._invite_key)
            return []
        if state is State.INCOMING:
            assert self._server is not None
            self.transactions.respond(self._server.key, self._response(self._server.request, 480))
            return [HungUp(reason=EndReason.REJECTED)]
        if state in (State.CANCELLING, State.TERMINATING, State.TERMINATED):
            return []
        if self._reinvite_in is not None:
            self._answer_reinvite_failure(487)
        self._send_bye(reason)
        return []

    def _send_bye(self, reason: str) -> None:
        assert self.dialog is not None
        headers = [("Reason", f'SIP;cause=200;text="{_quote(reason)}"')] if reason else []
        self._bye_key = self._send(self.dialog.create_request("BYE", headers=headers))
        self._probe_key = None
        self._timers.pop("probe", None)

    def reinvite(self, body: bytes, *, hold: bool) -> list[SessionEvent]:
        """Offer anew in the dialog: hold (`body` sendonly/inactive) or
        resume. In glare the offer is sent again after the §14.1 wait."""
        self._go(Input.TU_REINVITE)
        self._reinvite_out = _Pending(body=body, hold=hold)
        if self.state is State.REINVITING:
            self._send_reinvite()
        return []

    def _send_reinvite(self) -> None:
        assert self.dialog is not None and self._reinvite_out is not None
        request = self.dialog.create_request(
            "INVITE", body=self._reinvite_out.body, content_type=SDP
        )
        self._reinvite_out.key = self._send(request)
        self._timers.pop(Input.GLARE_TIMER, None)

    def accept_reinvite(self, answer: bytes) -> list[SessionEvent]:
        """2xx to the peer's re-INVITE with our SDP answer."""
        if not self.allows(Input.TU_ACCEPT_REINVITE):
            raise SessionError(f"no re-INVITE to accept in {self.state.name}")
        pending = self._reinvite_in
        assert pending is not None
        self.transactions.respond(
            pending.key, self._response(pending.request, 200, body=answer, contact=True)
        )
        self._reinvite_in = None
        self._go(Input.TU_ACCEPT_REINVITE)
        events: list[SessionEvent] = []
        if pending.held != self.held_by_remote:
            self.held_by_remote = pending.held
            events.append(HoldChanged(held=pending.held, by_remote=True))
        return events

    def reject_reinvite(self, status: int) -> list[SessionEvent]:
        """A failure answer to the peer's re-INVITE (488 for an SDP we
        cannot take); the session stays as it was (RFC 6141 §3.2)."""
        self._go(Input.TU_REJECT_REINVITE)
        self._answer_reinvite_failure(status)
        return []

    def _answer_reinvite_failure(self, status: int) -> None:
        pending = self._reinvite_in
        if pending is None:
            return
        headers = [("Retry-After", str(REINVITE_RETRY_AFTER))] if status == 500 else []
        self.transactions.respond(
            pending.key, self._response(pending.request, status, headers=headers)
        )
        self._reinvite_in = None

    def probe(self, now: float) -> bool:
        """Send an in-dialog OPTIONS to see whether the peer is still there.
        False when a probe is pending already or the session is not up."""
        if self.dialog is None or self._probe_key is not None:
            return False
        if self.state in (State.TERMINATING, State.TERMINATED):
            return False
        self._probe_key = self._send(self.dialog.create_request("OPTIONS"))
        self._timers["probe"] = now + PROBE_TIMEOUT_S
        return True

    def notify_refer(self, *, refer_cseq: int, frag: str, active: bool) -> bool:
        """NOTIFY the implicit subscription of the peer's REFER (RFC 3515
        §2.4.4) with `frag`, a sipfrag status line; its answers are not
        needed. False when the session has no dialog or is ending."""
        if self.dialog is None or self.state in (State.TERMINATING, State.TERMINATED):
            return False
        notify = refer_notify(self.dialog, refer_cseq=refer_cseq, frag=frag, active=active)
        self.transactions.request(notify, self.peer, _ignore_answer)
        return True

    # -- network in: requests -------------------------------------------------------------

    def receive_request(
        self, request: Request, server_key: TransactionKey, now: float
    ) -> list[SessionEvent]:
        """A request of this session's dialog (the switchboard matched it)."""
        del now
        method = request.method
        if self.dialog is None or self.state is State.TERMINATED:
            status = 200 if method == "BYE" else 481  # a BYE that crossed ours
            self.transactions.respond(server_key, Response.for_request(request, status))
            return []
        refused = self.dialog.receive_request(request)
        if refused is not None:
            self.transactions.respond(server_key, Response.for_request(request, refused))
            return []
        if method == "BYE":
            return self._on_bye(request, server_key)
        if method == "INVITE":
            return self._on_reinvite(request, server_key)
        if method in _TU_METHODS:
            return [RequestArrived(request=request, server_key=server_key)]
        if method in _KEEPALIVE_METHODS and not request.body:
            self.transactions.respond(
                server_key, Response.for_request(request, 200, headers=[("Allow", ALLOW)])
            )
            return []
        self.transactions.respond(
            server_key, Response.for_request(request, 501, headers=[("Allow", ALLOW)])
        )
        return []

    def _on_bye(self, request: Request, server_key: TransactionKey) -> list[SessionEvent]:
        self.transactions.respond(server_key, Response.for_request(request, 200))
        self._go(Input.BYE)
        if self._reinvite_in is not None:
            # §15.1.2: requests still pending get 487.
            pending, self._reinvite_in = self._reinvite_in, None
            self.transactions.respond(pending.key, self._response(pending.request, 487))
        if self.state is State.TERMINATED:
            return [HungUp(reason=EndReason.REMOTE_BYE, request=request)]
        return []

    def _on_reinvite(self, request: Request, server_key: TransactionKey) -> list[SessionEvent]:
        state = self.state
        if state in (State.REINVITING, State.ANSWERED):
            self._go(Input.REINVITE)
            self.transactions.respond(server_key, self._response(request, 491))
            return []
        if state is State.REINVITED:
            self._go(Input.REINVITE)
            self.transactions.respond(
                server_key,
                self._response(request, 500, headers=[("Retry-After", str(REINVITE_RETRY_AFTER))]),
            )
            return []
        if state is State.TERMINATING:
            self._go(Input.REINVITE)
            self.transactions.respond(server_key, self._response(request, 481))
            return []
        if not self.allows(Input.REINVITE):  # early states: no confirmed dialog yet
            self.transactions.respond(server_key, self._response(request, 491))
            return []
        self._go(Input.REINVITE)
        held = offer_holds(request.body) if request.body else self.held_by_remote
        self._reinvite_in = _ServerInvite(request, server_key, held)
        return [ReinviteReceived(request=request, offer=request.body, held=held)]

    def receive_ack(self, ack: Request) -> list[SessionEvent]:
        """The ACK of our 2xx (initial INVITE or re-INVITE)."""
        if self.dialog is not None and ack.cseq.sequence != self.dialog.invite_cseq:
            return []  # an ACK of an older INVITE
        if not self.allows(Input.ACK):
            return []
        old = self._go(Input.ACK)
        if old is State.ANSWERED:
            return [Confirmed(answer=ack.body if self._late_offer and ack.body else None)]
        return []

    def receive_cancel(self, event: CancelReceived) -> list[SessionEvent]:
        """A CANCEL of our INVITE transaction (the layer answered it 200)."""
        if self._server is not None and event.server_key == self._server.key:
            if not self.allows(Input.CANCEL):
                return []
            old = self._go(Input.CANCEL)
            if old is State.INCOMING:
                self.transactions.respond(
                    event.server_key, self._response(self._server.request, 487)
                )
                return [HungUp(reason=EndReason.REMOTE_CANCEL, request=event.request)]
            return []
        pending = self._reinvite_in
        if pending is not None and event.server_key == pending.key:
            self._go(Input.CANCEL)
            self._answer_reinvite_failure(487)
        return []

    # -- network in: transaction events -----------------------------------------------

    def receive(self, event: TransactionEvent, now: float) -> list[SessionEvent]:
        """A transaction event of a request this session sent (from the
        `on_event` handler), or one about the caller's INVITE."""
        self._last_now = now
        if isinstance(event, ResponseReceived):
            return self._on_response(event, now)
        if isinstance(event, AckReceived):
            return self.receive_ack(event.request)
        if isinstance(event, CancelReceived):
            return self.receive_cancel(event)
        if isinstance(event, AckNotReceived):
            if not self.allows(Input.ACK_TIMEOUT):
                return []
            old = self._go(Input.ACK_TIMEOUT)
            return [AckMissing()] if old is State.ANSWERED else []
        if isinstance(event, TransactionTimedOut | TransportFailed):
            key = event.key
            status = 408 if isinstance(event, TransactionTimedOut) else 503
            return self._on_failure(key, event.request, status, None)
        if isinstance(event, RequestReceived):
            return self.receive_request(event.request, event.server_key, now)
        return []

    def _on_response(self, event: ResponseReceived, now: float) -> list[SessionEvent]:
        response = event.response
        status = response.status
        method = response.cseq.method
        if status < 200:
            if (
                status > 100  # 100 Trying is hop-by-hop (§21.1.1), not ringing
                and method == "INVITE"
                and event.client_key == self._invite_key
                and self.allows(Input.PROVISIONAL)
            ):
                self._go(Input.PROVISIONAL)
                if self.state is State.EARLY:
                    return [Ringing(status=status, response=response)]
            return []
        if status >= 300:
            return self._on_failure(event.client_key, event.request, status, response)
        if method == "INVITE":
            return self._on_invite_success(event)
        if event.client_key == self._probe_key:
            self._probe_key = None
            self._timers.pop("probe", None)
            return [ProbeAnswered(status=status)]
        if event.client_key == self._bye_key:
            return self._bye_done()
        del now
        return []

    def _on_invite_success(self, event: ResponseReceived) -> list[SessionEvent]:
        response = event.response
        request = event.request
        fresh = self.dialog is None
        if self.dialog is None:
            try:
                self.dialog = Dialog.as_uac(
                    request,
                    response,
                    via_host=self.local.via_host,
                    via_port=self.local.via_port,
                    transport=self.peer.transport,
                    local_contact=self.local.contact,
                )
            except SipParseError:
                # No usable Contact: ACK and BYE cannot be built. The INVITE
                # is over for us; the peer's 2xx times out on its side.
                if self.allows(Input.FAILURE):
                    self._go(Input.FAILURE)
                    return [Failed(status=502, response=response)]
                return []
        else:
            self.dialog.receive_response(response)
        # Every 2xx, retransmissions too, is ACKed (§13.2.2.4, RFC 6026 §7.2).
        self.transactions.send_stateless(self.dialog.create_ack(request, response), self.peer)
        pending = self._reinvite_out
        if pending is not None and event.client_key == pending.key:
            self._reinvite_out = None
            if self.state is not State.REINVITING:
                return []  # we hung up meanwhile: ACKed, nothing more
            self._go(Input.REINVITE_SUCCESS)
            if pending.hold != self.held_locally:
                self.held_locally = pending.hold
                return [HoldChanged(held=pending.hold, by_remote=False)]
            return []
        if event.client_key != self._invite_key:
            return []
        old = self.state
        if not self.allows(Input.SUCCESS):
            return []
        self._go(Input.SUCCESS)
        if old in (State.CALLING, State.EARLY):
            return [Answered(response=response, body=response.body)]
        if old is State.CANCELLING:
            self._send_bye("cancelled")  # the 2xx crossed our CANCEL
            return []
        if old is State.TERMINATED and fresh:
            self._send_bye("call ended")
        return []

    def _on_failure(
        self,
        key: TransactionKey,
        request: Request,
        status: int,
        response: Response | None,
    ) -> list[SessionEvent]:
        if key == self._invite_key:
            if (
                response is not None
                and status in (401, 407)
                and self.state in (State.CALLING, State.EARLY)
                and self._answer_challenge(response)
            ):
                self._go(Input.CHALLENGED)
                return [ChallengeAnswered(status=status)]
            if not self.allows(Input.FAILURE):
                return []
            old = self._go(Input.FAILURE)
            if old is State.CANCELLING:
                return [HungUp(reason=EndReason.LOCAL_CANCEL)]
            if self.state is State.TERMINATED:
                return [Failed(status=status, response=response)]
            return []
        if self._server is not None and key == self._server.key:
            if self.allows(Input.FAILURE):
                self._go(Input.FAILURE)
                if self.state is State.TERMINATED:
                    return [HungUp(reason=EndReason.TIMED_OUT)]
            return []
        pending_in = self._reinvite_in
        if pending_in is not None and key == pending_in.key:
            self._reinvite_in = None
            self._go(Input.FAILURE)
            return []
        pending = self._reinvite_out
        if pending is not None and key == pending.key and self.state is not State.REINVITING:
            self._reinvite_out = None  # we hung up meanwhile
            return []
        if pending is not None and key == pending.key:
            if status in (481, 408):
                self._reinvite_out = None
                return self._dialog_gone()
            if status == 491:
                self._go(Input.REINVITE_GLARE)
                pending.key = None
                low, high = GLARE_OWNER if self.uac else GLARE_OTHER
                wait = round(self._rng.uniform(low, high), 2)
                self._timers[Input.GLARE_TIMER] = self._last_now + wait
                return []
            self._reinvite_out = None
            self._go(Input.REINVITE_FAILURE)
            return [ReinviteFailed(status=status)]
        if key == self._bye_key:
            return self._bye_done()
        if key == self._probe_key:
            self._probe_key = None
            self._timers.pop("probe", None)
            if status == 481 and response is not None:
                return self._dialog_gone()
            if response is None:
                return [ProbeUnanswered()]
            return [ProbeAnswered(status=status)]
        return []

    def _dialog_gone(self) -> list[SessionEvent]:
        if not self.allows(Input.DIALOG_GONE):
            return []
        self._go(Input.DIALOG_GONE)
        return [HungUp(reason=EndReason.DIALOG_GONE)]

    def _bye_done(self) -> list[SessionEvent]:
        self._bye_key = None
        if not self.allows(Input.BYE_DONE):
            return []
        self._go(Input.BYE_DONE)
        return [HungUp(reason=EndReason.LOCAL_BYE)]

    def _answer_challenge(self, response: Response) -> bool:
        if self._credentials is None or self._auth_tried:
            return False
        retry = with_credentials(self.invite, response, self._credentials)
        if retry is None:
            return False
        self.invite = retry
        self._auth_tried = True
        self._invite_key = self._send(retry)
        return True

    # -- what is pending -----------------------------------------------------------------

    def pending(self) -> bool:
        """Whether something is under way that will move the session on by
        itself (a transaction of ours, an answer we owe, a timer)."""
        return bool(
            self._timers
            or self._bye_key is not None
            or self._reinvite_in is not None
            or (self._reinvite_out is not None and self._reinvite_out.key is not None)
            or self.state
            in (State.CALLING, State.EARLY, State.CANCELLING, State.INCOMING, State.ANSWERED)
        )


def with_credentials(
    invite: Request, response: Response, credentials: Credentials
) -> Request | None:
    """`invite` again after its 401/407 `response` (RFC 3261 §22.2): CSeq
    + 1, a new branch, the digest answer to the challenge. None when the
    challenge cannot be answered (unknown algorithm, no challenge)."""
    if response.status not in (401, 407):
        return None
    challenge_header = "WWW-Authenticate" if response.status == 401 else "Proxy-Authenticate"
    answer_header = "Authorization" if response.status == 401 else "Proxy-Authorization"
    try:
        challenge = select_challenge(response.headers.get_all(challenge_header))
        value = authorization_for(
            challenge,
            "INVITE",
            invite.uri,
            credentials.user,
            credentials.password,
            cnonce=secrets.token_hex(8),
            nc=1,
            body=invite.body,
        )
    except (SipParseError, ValueError):
        return None
    h = Headers()
    for name, header in invite.headers:
        if name in ("Authorization", "Proxy-Authorization"):
            continue
        if name == "Via":
            h.add(name, header.split(";branch=", 1)[0] + f";branch={new_branch()};rport")
        elif name == "CSeq":
            h.add(name, f"{invite.cseq.sequence + 1} INVITE")
        else:
            h.add(name, header)
    h.add(answer_header, value)
    return Request("INVITE", invite.uri, h, invite.body)


def _quote(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def _ignore_answer(event: TransactionEvent) -> None:
    del event  # a NOTIFY's answer changes nothing (RFC 3515 §2.4.4)
