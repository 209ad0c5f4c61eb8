"""SIP transactions: RFC 3261 §17 with the RFC 6026 corrections, sans-IO.

Theory of operation
-------------------
RFC 3261 §17: "SIP is a transactional protocol: interactions between
components take place in a series of independent message exchanges.
Specifically, a SIP transaction consists of a single request and any
responses to that request, which include zero or more provisional responses
and one or more final responses." There are four machines: client INVITE
(§17.1.1, timers A, B, D), client non-INVITE (§17.1.2, E, F, K), server
INVITE (§17.2.1, G, H, I) and server non-INVITE (§17.2.2, J). Each is one
transition table `{(State, Input): State}` below; an input missing from its
table is a protocol error that terminates the transaction (STYLE 2).

RFC 6026 (§7 explains, §8 gives the new text) replaces "destroy the
INVITE server transaction on 2xx" with a state of its own, §8.5: "If,
while in the 'Proceeding' state, the TU passes a 2xx response to the server
transaction, the server transaction MUST pass this response to the
transport layer for transmission. It is not retransmitted by the server
transaction; retransmissions of 2xx responses are handled by the TU. The
server transaction MUST then transition to the 'Accepted' state." — where
INVITE retransmissions are absorbed until Timer L (64*T1). On the client
side, §8.4: "If a 2xx response is received while the client INVITE state
machine is in the 'Calling' or 'Proceeding' states, it MUST transition to
the 'Accepted' state, pass the 2xx response to the TU, and set Timer M to
64*T1"; every further 2xx is passed up too, so that the TU re-sends its ACK.

Design choices
--------------
* One `TransactionLayer` owns every transaction of an endpoint (aioquic's
  shape): `receive(message, peer, now)` and `handle_timer(now)` return
  events, `request`/`respond`/`cancel` are the TU's verbs, and the bytes to
  send come out of `datagrams_to_send()`. Time is only ever the `now` passed
  in; `get_timer()` is the earliest deadline to re-arm one loop timer on.
* 2xx retransmission ("handled by the TU" says RFC 6026 §8.5; the UAS core
  in RFC 3261 §13.3.1.4; pjsip's invite layer) is done here on the TU's
  behalf, by the INVITE server transaction in Accepted: T1 doubling to T2
  until the ACK arrives or Timer L fires, in which case `AckNotReceived`
  tells the TU to send BYE (§13.3.1.4). It is independent of the transport
  ("This is independent of whatever transport protocols are used"), so it
  runs over TCP too. The 2xx ACK has a
  branch of its own (§17.1.1.3), so it is matched to the Accepted
  transaction by Call-ID, CSeq number and From tag — not the To tag, which
  pyVoIP gets wrong — or by the INVITE's branch, which pyVoIP reuses. A
  BYE from the peer before any ACK also stops the retransmission.
* Matching per §17.1.3 (branch + CSeq method) and §17.2.3 (branch +
  sent-by + method, ACK mapped to INVITE), with the RFC 2543 fallback of
  §17.2.3 for branches without the magic cookie — or with nothing after it
  (RFC 4475 §3.2.1 `badbranch`).
* §18.2.1 / RFC 3581 §4: `received` and `rport` are written into the top
  Via of every request on arrival, so a response built with
  `Response.for_request` carries them; `response_destination` applies
  §18.2.2 (same TCP or TLS connection while it lives; rport; received; maddr).
* A CANCEL is answered by the layer itself (200 with the INVITE's To-tag,
  or 481 when no INVITE matches, §9.2); `CancelReceived` asks the TU for
  the 487. With `auto_trying` (default) an INVITE is answered 100 Trying
  the moment it arrives (§17.2.1: within 200 ms), before the TU writes its
  incident to the database.
* Bounded: at most `max_transactions` server transactions; past that a new
  request is answered 503 with Retry-After statelessly and reported
  (`TransactionLimitReached`, `stats["limit_reached"]`). A non-INVITE
  server transaction the TU never answers is dropped after 64*T1 (its
  client gave up at Timer F anyway), an INVITE server transaction left in
  Proceeding without a provisional for Timer C (181 s) likewise, and a
  client INVITE nobody cancels ends at Timer C. No state can get stuck.
"""

from __future__ import annotations

import heapq
import itertools
from collections import Counter
from dataclasses import dataclass, replace
from enum import Enum, auto
from typing import Final

from ..numerals import is_ascii_digits
from .errors import SipParseError
from .events import (
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
from .message import BRANCH_MAGIC, Headers, Request, Response, Via, new_tag
from .peer import Peer
from .timers import TimerValues

__all__ = [
    "CLIENT_INVITE_TABLE",
    "CLIENT_NON_INVITE_TABLE",
    "SERVER_INVITE_TABLE",
    "SERVER_NON_INVITE_TABLE",
    "TABLES",
    "Input",
    "Kind",
    "State",
    "TransactionError",
    "TransactionKey",
    "TransactionLayer",
    "advance",
    "build_ack",
    "build_cancel",
    "response_destination",
    "server_key",
]

# Retry-After of the stateless 503 sent when the layer is full (RFC 3261
# §21.5.4); short: emergency callers must retry soon.
OVERLOAD_RETRY_AFTER: Final = 5
DEFAULT_MAX_TRANSACTIONS: Final = 20_000
_DEFAULT_PORTS: Final = {"UDP": 5060, "TCP": 5060, "SCTP": 5060, "TLS": 5061, "WS": 80, "WSS": 443}


class TransactionError(Exception):
    """The TU asked for something its transaction cannot do (respond in a
    state that does not allow it, or to a transaction that is gone), or an
    input arrived that a state table does not allow. Nothing goes on the
    wire; the transaction involved is terminated."""


class Kind(Enum):
    CLIENT_INVITE = auto()
    CLIENT_NON_INVITE = auto()
    SERVER_INVITE = auto()
    SERVER_NON_INVITE = auto()


class State(Enum):
    CALLING = auto()
    TRYING = auto()
    PROCEEDING = auto()
    ACCEPTED = auto()  # RFC 6026
    COMPLETED = auto()
    CONFIRMED = auto()
    TERMINATED = auto()


class Input(Enum):
    # from the network
    REQUEST_RETRANSMITTED = auto()
    ACK_RECEIVED = auto()
    RESPONSE_1XX = auto()
    RESPONSE_2XX = auto()
    RESPONSE_300_699 = auto()
    # from the TU
    TU_SENT_1XX = auto()
    TU_SENT_2XX = auto()
    TU_SENT_300_699 = auto()
    TU_CANCELLED = auto()
    # timers
    TIMER_A = auto()
    TIMER_B = auto()
    TIMER_C = auto()
    TIMER_D = auto()
    TIMER_E = auto()
    TIMER_F = auto()
    TIMER_G = auto()
    TIMER_H = auto()
    TIMER_I = auto()
    TIMER_J = auto()
    TIMER_K = auto()
    TIMER_L = auto()
    TIMER_M = auto()
    TIMER_2XX = auto()  # §13.3.1.4 2xx retransmission, owned by Accepted
    TIMER_GUARD = auto()  # server transaction the TU leaves unanswered
    # from the transport
    TRANSPORT_FAILED = auto()


S = State
I = Input  # noqa: E741 - table readability

# RFC 3261 Figure 5 + RFC 6026 Figure 5 (client INVITE).
CLIENT_INVITE_TABLE: Final[dict[tuple[State, Input], State]] = {
    (S.CALLING, I.TIMER_A): S.CALLING,  # retransmit, A doubles
    (S.CALLING, I.TIMER_B): S.TERMINATED,  # timeout → TU
    (S.CALLING, I.RESPONSE_1XX): S.PROCEEDING,
    (S.CALLING, I.RESPONSE_2XX): S.ACCEPTED,
    (S.CALLING, I.RESPONSE_300_699): S.COMPLETED,  # send ACK
    (S.CALLING, I.TU_CANCELLED): S.CALLING,  # CANCEL waits for a 1xx (§9.1)
    (S.CALLING, I.TRANSPORT_FAILED): S.TERMINATED,
    (S.PROCEEDING, I.RESPONSE_1XX): S.PROCEEDING,
    (S.PROCEEDING, I.RESPONSE_2XX): S.ACCEPTED,
    (S.PROCEEDING, I.RESPONSE_300_699): S.COMPLETED,
    (S.PROCEEDING, I.TU_CANCELLED): S.PROCEEDING,  # arms the §9.1 64*T1 guard (B)
    (S.PROCEEDING, I.TIMER_B): S.TERMINATED,  # CANCEL sent, no final in 64*T1
    (S.PROCEEDING, I.TIMER_C): S.TERMINATED,
    (S.PROCEEDING, I.TRANSPORT_FAILED): S.TERMINATED,
    (S.ACCEPTED, I.RESPONSE_1XX): S.ACCEPTED,  # absorbed
    (S.ACCEPTED, I.RESPONSE_2XX): S.ACCEPTED,  # passed up: the TU re-ACKs
    (S.ACCEPTED, I.RESPONSE_300_699): S.ACCEPTED,  # absorbed
    (S.ACCEPTED, I.TU_CANCELLED): S.ACCEPTED,  # too late, nothing sent
    (S.ACCEPTED, I.TIMER_M): S.TERMINATED,
    (S.ACCEPTED, I.TRANSPORT_FAILED): S.TERMINATED,
    (S.COMPLETED, I.RESPONSE_1XX): S.COMPLETED,  # absorbed
    (S.COMPLETED, I.RESPONSE_2XX): S.COMPLETED,  # absorbed
    (S.COMPLETED, I.RESPONSE_300_699): S.COMPLETED,  # ACK re-sent
    (S.COMPLETED, I.TU_CANCELLED): S.COMPLETED,
    (S.COMPLETED, I.TIMER_D): S.TERMINATED,
    (S.COMPLETED, I.TRANSPORT_FAILED): S.TERMINATED,
}

# RFC 3261 Figure 6 (client non-INVITE).
CLIENT_NON_INVITE_TABLE: Final[dict[tuple[State, Input], State]] = {
    (S.TRYING, I.TIMER_E): S.TRYING,  # retransmit, E doubles up to T2
    (S.TRYING, I.TIMER_F): S.TERMINATED,  # timeout → TU
    (S.TRYING, I.RESPONSE_1XX): S.PROCEEDING,
    (S.TRYING, I.RESPONSE_2XX): S.COMPLETED,
    (S.TRYING, I.RESPONSE_300_699): S.COMPLETED,
    (S.TRYING, I.TRANSPORT_FAILED): S.TERMINATED,
    (S.PROCEEDING, I.TIMER_E): S.PROCEEDING,  # retransmit every T2
    (S.PROCEEDING, I.TIMER_F): S.TERMINATED,
    (S.PROCEEDING, I.RESPONSE_1XX): S.PROCEEDING,
    (S.PROCEEDING, I.RESPONSE_2XX): S.COMPLETED,
    (S.PROCEEDING, I.RESPONSE_300_699): S.COMPLETED,
    (S.PROCEEDING, I.TRANSPORT_FAILED): S.TERMINATED,
    (S.COMPLETED, I.RESPONSE_1XX): S.COMPLETED,  # absorbed
    (S.COMPLETED, I.RESPONSE_2XX): S.COMPLETED,  # absorbed
    (S.COMPLETED, I.RESPONSE_300_699): S.COMPLETED,  # absorbed
    (S.COMPLETED, I.TIMER_K): S.TERMINATED,
    (S.COMPLETED, I.TRANSPORT_FAILED): S.TERMINATED,
}

# RFC 3261 Figure 7 + RFC 6026 Figure 7 (server INVITE).
SERVER_INVITE_TABLE: Final[dict[tuple[State, Input], State]] = {
    (S.PROCEEDING, I.REQUEST_RETRANSMITTED): S.PROCEEDING,  # last 1xx re-sent
    (S.PROCEEDING, I.ACK_RECEIVED): S.PROCEEDING,  # nothing to ACK: absorbed
    (S.PROCEEDING, I.TU_SENT_1XX): S.PROCEEDING,
    (S.PROCEEDING, I.TU_SENT_2XX): S.ACCEPTED,  # RFC 6026 §7.1
    (S.PROCEEDING, I.TU_SENT_300_699): S.COMPLETED,
    (S.PROCEEDING, I.TIMER_GUARD): S.TERMINATED,  # TU silent for Timer C
    (S.PROCEEDING, I.TRANSPORT_FAILED): S.TERMINATED,
    (S.ACCEPTED, I.REQUEST_RETRANSMITTED): S.ACCEPTED,  # 2xx re-sent
    (S.ACCEPTED, I.ACK_RECEIVED): S.ACCEPTED,  # → TU, 2xx retransmission stops
    (S.ACCEPTED, I.TU_SENT_2XX): S.ACCEPTED,
    (S.ACCEPTED, I.TIMER_2XX): S.ACCEPTED,
    (S.ACCEPTED, I.TIMER_L): S.TERMINATED,
    (S.ACCEPTED, I.TRANSPORT_FAILED): S.TERMINATED,
    (S.COMPLETED, I.REQUEST_RETRANSMITTED): S.COMPLETED,  # final re-sent
    (S.COMPLETED, I.ACK_RECEIVED): S.CONFIRMED,
    (S.COMPLETED, I.TIMER_G): S.COMPLETED,  # final re-sent, G doubles up to T2
    (S.COMPLETED, I.TIMER_H): S.TERMINATED,  # no ACK → TU
    (S.COMPLETED, I.TRANSPORT_FAILED): S.TERMINATED,
    (S.CONFIRMED, I.REQUEST_RETRANSMITTED): S.CONFIRMED,  # absorbed
    (S.CONFIRMED, I.ACK_RECEIVED): S.CONFIRMED,  # absorbed
    (S.CONFIRMED, I.TIMER_I): S.TERMINATED,
    (S.CONFIRMED, I.TRANSPORT_FAILED): S.TERMINATED,
}

# RFC 3261 Figure 8 (server non-INVITE).
SERVER_NON_INVITE_TABLE: Final[dict[tuple[State, Input], State]] = {
    (S.TRYING, I.REQUEST_RETRANSMITTED): S.TRYING,  # absorbed, nothing to re-send
    (S.TRYING, I.TU_SENT_1XX): S.PROCEEDING,
    (S.TRYING, I.TU_SENT_2XX): S.COMPLETED,
    (S.TRYING, I.TU_SENT_300_699): S.COMPLETED,
    (S.TRYING, I.TIMER_GUARD): S.TERMINATED,
    (S.TRYING, I.TRANSPORT_FAILED): S.TERMINATED,
    (S.PROCEEDING, I.REQUEST_RETRANSMITTED): S.PROCEEDING,  # last 1xx re-sent
    (S.PROCEEDING, I.TU_SENT_1XX): S.PROCEEDING,
    (S.PROCEEDING, I.TU_SENT_2XX): S.COMPLETED,
    (S.PROCEEDING, I.TU_SENT_300_699): S.COMPLETED,
    (S.PROCEEDING, I.TIMER_GUARD): S.TERMINATED,
    (S.PROCEEDING, I.TRANSPORT_FAILED): S.TERMINATED,
    (S.COMPLETED, I.REQUEST_RETRANSMITTED): S.COMPLETED,  # final re-sent
    (S.COMPLETED, I.TIMER_J): S.TERMINATED,
    (S.COMPLETED, I.TRANSPORT_FAILED): S.TERMINATED,
}

del S, I

TABLES: Final[dict[Kind, dict[tuple[State, Input], State]]] = {
    Kind.CLIENT_INVITE: CLIENT_INVITE_TABLE,
    Kind.CLIENT_NON_INVITE: CLIENT_NON_INVITE_TABLE,
    Kind.SERVER_INVITE: SERVER_INVITE_TABLE,
    Kind.SERVER_NON_INVITE: SERVER_NON_INVITE_TABLE,
}

_INITIAL: Final = {
    Kind.CLIENT_INVITE: State.CALLING,
    Kind.CLIENT_NON_INVITE: State.TRYING,
    Kind.SERVER_INVITE: State.PROCEEDING,
    Kind.SERVER_NON_INVITE: State.TRYING,
}


def advance(kind: Kind, state: State, event: Input) -> State:
    """The next state, or TransactionError for an input the table lacks."""
    try:
        return TABLES[kind][(state, event)]
    except KeyError:
        raise TransactionError(f"{event.name} not allowed in {kind.name} {state.name}") from None


# ---------------------------------------------------------------------------
# Keys and matching


@dataclass(frozen=True, slots=True)
class TransactionKey:
    """Identifies a transaction (§17.1.3, §17.2.3). `client` keys are
    (branch, CSeq method); server keys add the top Via's sent-by. For an
    RFC 2543 peer (no magic cookie) `legacy` holds the fields §17.2.3 falls
    back to and `branch` is empty."""

    branch: str
    method: str
    sent_by: str = ""
    client: bool = False
    legacy: tuple[str, ...] = ()


def _is_rfc3261_branch(branch: str | None) -> bool:
    return (
        branch is not None and branch.startswith(BRANCH_MAGIC) and len(branch) > len(BRANCH_MAGIC)
    )


def _sent_by(via: Via) -> str:
    host, port = via.sent_by
    return f"{host}:{port if port is not None else _DEFAULT_PORTS.get(via.transport, 5060)}"


def server_key(request: Request) -> TransactionKey:
    """The server transaction a request belongs to (§17.2.3); ACK maps to
    its INVITE. Raises SipParseError only for a message the parser would
    have refused."""
    via = request.top_via
    method = "INVITE" if request.method == "ACK" else request.method
    if _is_rfc3261_branch(via.branch):
        return TransactionKey(branch=via.branch or "", method=method, sent_by=_sent_by(via))
    # RFC 2543 (§17.2.3): Request-URI, From tag, Call-ID, CSeq number and the
    # top Via; the To tag is checked separately for an ACK.
    legacy = (
        request.uri,
        request.from_tag or "",
        request.call_id,
        str(request.cseq.sequence),
        str(via).lower(),
    )
    return TransactionKey(branch="", method=method, sent_by=_sent_by(via), legacy=legacy)


def _client_key(branch: str, method: str) -> TransactionKey:
    return TransactionKey(branch=branch, method=method, client=True)


def _strip_brackets(host: str) -> str:
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def response_destination(request: Request, peer: Peer) -> Peer:
    """Where responses to `request` go (RFC 3261 §18.2.2, RFC 3581 §4):
    back on the TCP or TLS connection it came on while that lives; else to
    maddr, or to the source address and port when the client asked for
    rport, else to `received` (or sent-by) and the Via port."""
    via = request.top_via
    if peer.reliable and peer.conn_id is not None:
        return peer
    default_port = _DEFAULT_PORTS.get(via.transport, 5060)
    maddr = via.parameters.get("maddr")
    if maddr:
        return Peer(peer.transport, _strip_brackets(maddr), via.port or default_port)
    host = _strip_brackets(via.parameters.get("received") or via.host)
    rport = via.parameters.get("rport")
    if rport and is_ascii_digits(rport):
        return Peer(peer.transport, host, int(rport))
    return Peer(peer.transport, host, via.port or default_port)


def _stamp_via(request: Request, peer: Peer) -> None:
    """§18.2.1: add `received` when the sent-by host is not the source
    address; RFC 3581 §4: fill `rport` (and always `received`) when asked."""
    value = request.headers.get("Via")
    if value is None:
        return
    via = request.top_via
    params = via.parameters
    wants_rport = "rport" in params
    if wants_rport:
        params = params.with_param("rport", str(peer.port))
    if wants_rport or _strip_brackets(via.host).lower() != peer.host.lower():
        host = f"[{peer.host}]" if ":" in peer.host else peer.host
        params = params.with_param("received", host)
    if params is not via.parameters:
        request.headers.set_first("Via", str(replace(via, parameters=params)))


def build_ack(request: Request, response: Response) -> Request:
    """The ACK a client INVITE transaction sends for a 300-699 (§17.1.1.3):
    same Request-URI, Call-ID, From, CSeq number and top Via as the INVITE,
    the To of the response, the INVITE's Route set."""
    h = Headers()
    h.add("Via", request.headers.get("Via") or "")
    for route in request.headers.get_all("Route"):
        h.add("Route", route)
    h.add("Max-Forwards", "70")
    h.add("From", request.headers.get("From") or "")
    h.add("To", response.headers.get("To") or "")
    h.add("Call-ID", request.call_id)
    h.add("CSeq", f"{request.cseq.sequence} ACK")
    return Request("ACK", request.uri, h)


def build_cancel(invite: Request) -> Request:
    """The CANCEL of a pending INVITE (§9.1): same Request-URI, Call-ID,
    From, To, CSeq number and top Via (so the same branch), Route copied."""
    h = Headers()
    h.add("Via", invite.headers.get("Via") or "")
    for route in invite.headers.get_all("Route"):
        h.add("Route", route)
    h.add("Max-Forwards", "70")
    h.add("From", invite.headers.get("From") or "")
    h.add("To", invite.headers.get("To") or "")
    h.add("Call-ID", invite.call_id)
    h.add("CSeq", f"{invite.cseq.sequence} CANCEL")
    return Request("CANCEL", invite.uri, h)


# ---------------------------------------------------------------------------
# The layer


class _Transaction:
    __slots__ = (
        "ack_bytes",
        "acked",
        "cancel_pending",
        "index_key",
        "interval",
        "key",
        "kind",
        "last_response",
        "last_response_bytes",
        "local_tag",
        "peer",
        "reliable",
        "reply_to",
        "request",
        "request_bytes",
        "state",
        "timers",
    )

    def __init__(self, key: TransactionKey, kind: Kind, request: Request, peer: Peer) -> None:
        self.key = key
        self.kind = kind
        self.state = _INITIAL[kind]
        self.request = request
        self.peer = peer
        self.reply_to = peer
        self.reliable = peer.reliable  # TCP and TLS: no retransmission timers
        self.request_bytes = b""
        self.last_response: Response | None = None
        self.last_response_bytes = b""
        self.ack_bytes = b""
        self.interval = 0.0
        self.timers: dict[Input, int] = {}
        self.acked = False
        self.cancel_pending = False
        self.local_tag: str | None = None
        self.index_key: tuple[str, int, str] | None = None


_STATUS_INPUT: Final = {1: Input.RESPONSE_1XX, 2: Input.RESPONSE_2XX}
_TU_INPUT: Final = {1: Input.TU_SENT_1XX, 2: Input.TU_SENT_2XX}


class TransactionLayer:
    """All SIP transactions of one endpoint, sans-IO.

    ```
    layer = TransactionLayer(t1=0.5, t2=4.0, t4=5.0)
    events = layer.receive(message, peer, now)   # parsed message from the transport
    key = layer.request(request, peer, now)      # start a client transaction
    layer.respond(server_key, response, now)     # answer a server transaction
    for data, peer in layer.datagrams_to_send(): ...
    deadline = layer.get_timer()                 # earliest timer, or None
    events = layer.handle_timer(now)
    ```
    """

    def __init__(
        self,
        *,
        t1: float = 0.5,
        t2: float = 4.0,
        t4: float = 5.0,
        timer_c: float = 181.0,
        auto_trying: bool = True,
        max_transactions: int = DEFAULT_MAX_TRANSACTIONS,
    ) -> None:
        self.timers = TimerValues(t1=t1, t2=t2, t4=t4, timer_c=timer_c)
        self.auto_trying = auto_trying
        self.max_transactions = max_transactions
        self.stats: Counter[str] = Counter()
        self._transactions: dict[TransactionKey, _Transaction] = {}
        self._servers = 0
        # 2xx ACKs carry a new branch: (Call-ID, CSeq number, From tag) → INVITE.
        self._accepted: dict[tuple[str, int, str], TransactionKey] = {}
        # (Call-ID, From tag) → INVITE in Accepted: a BYE there implies the ACK.
        self._accepted_calls: dict[tuple[str, str], TransactionKey] = {}
        self._heap: list[tuple[float, int, TransactionKey, Input, int]] = []
        self._seq = itertools.count()
        self._outbox: list[tuple[bytes, Peer]] = []
        self._pending: list[TransactionEvent] = []

    # -- introspection ------------------------------------------------------

    def __len__(self) -> int:
        return len(self._transactions)

    def state(self, key: TransactionKey) -> State | None:
        """The state of a live transaction; None once it is gone."""
        tx = self._transactions.get(key)
        return tx.state if tx is not None else None

    # -- output ---------------------------------------------------------------

    def datagrams_to_send(self) -> list[tuple[bytes, Peer]]:
        """Bytes to send and where (for TCP: the connection in `peer.conn_id`,
        or a new connection to host:port when it is None)."""
        out, self._outbox = self._outbox, []
        return out

    def get_timer(self) -> float | None:
        """The earliest deadline to call `handle_timer` at, or None. Events
        produced by a TU call are delivered by the next `handle_timer` (the
        deadline is then already due)."""
        if self._pending:
            return 0.0  # already due: deliver the events at once
        heap = self._heap
        while heap:
            deadline, _, key, timer, generation = heap[0]
            tx = self._transactions.get(key)
            if tx is not None and tx.timers.get(timer) == generation:
                return deadline
            heapq.heappop(heap)
        return None

    def send_stateless(self, message: Request | Response, peer: Peer) -> None:
        """Send outside any transaction: the ACK of a 2xx (§13.2.2.4), a
        stateless error answer (use `response_destination` for its peer)."""
        self._outbox.append((message.serialize(), peer))

    # -- input from the network ------------------------------------------------

    def receive(
        self, message: Request | Response, peer: Peer, now: float
    ) -> list[TransactionEvent]:
        events: list[TransactionEvent] = []
        try:
            if isinstance(message, Request):
                self._receive_request(message, peer, now, events)
            else:
                self._receive_response(message, peer, now, events)
        except SipParseError:
            # A header the parser validated lazily (e.g. a malformed second
            # Via): not ours to answer from here; the message is dropped.
            self.stats["dropped_malformed"] += 1
        self._run_due(now, events)
        return events

    def handle_timer(self, now: float) -> list[TransactionEvent]:
        events: list[TransactionEvent] = []
        self._run_due(now, events)
        return events

    def transport_failed(self, peer: Peer, now: float) -> list[TransactionEvent]:
        """The transport lost `peer` (TCP connection closed or reset, ICMP
        unreachable): every transaction sending there is terminated."""
        events: list[TransactionEvent] = []
        for tx in list(self._transactions.values()):
            target = tx.reply_to if not tx.key.client else tx.peer
            if target == peer or (peer.conn_id is not None and target.conn_id == peer.conn_id):
                try:
                    self._input(tx, Input.TRANSPORT_FAILED, now, events)
                except TransactionError:
                    self.stats["protocol_errors"] += 1
        self._run_due(now, events)
        return events

    # -- the TU's verbs ---------------------------------------------------------

    def request(self, request: Request, peer: Peer, now: float) -> TransactionKey:
        """Start a client transaction for `request` (not ACK: a 2xx ACK goes
        out with `send_stateless`). Its top Via must carry a fresh RFC 3261
        branch (`new_branch()`)."""
        if request.method == "ACK":
            raise TransactionError("ACK is not a transaction: use send_stateless")
        branch = request.top_via.branch
        if not _is_rfc3261_branch(branch):
            raise TransactionError("a client request needs an RFC 3261 branch (new_branch())")
        key = _client_key(branch or "", request.method)
        if key in self._transactions:
            raise TransactionError(f"branch {branch} already in use for {request.method}")
        self._start_client(key, request, peer, now)
        self._run_due(now, self._pending)
        return key

    def _start_client(self, key: TransactionKey, request: Request, peer: Peer, now: float) -> None:
        kind = Kind.CLIENT_INVITE if request.method == "INVITE" else Kind.CLIENT_NON_INVITE
        tx = _Transaction(key, kind, request, peer)
        tx.request_bytes = request.serialize()
        self._transactions[key] = tx
        self._send(tx.request_bytes, peer)
        t = self.timers
        first = (
            t.a(reliable=tx.reliable) if kind is Kind.CLIENT_INVITE else t.e(reliable=tx.reliable)
        )
        if first is not None:
            tx.interval = first
            self._arm(
                tx, Input.TIMER_A if kind is Kind.CLIENT_INVITE else Input.TIMER_E, now + first
            )
        self._arm(
            tx, Input.TIMER_B if kind is Kind.CLIENT_INVITE else Input.TIMER_F, now + t.timeout
        )

    def respond(self, key: TransactionKey, response: Response, now: float) -> None:
        """Send `response` in server transaction `key` and run its machine.
        Raises TransactionError when the transaction is gone or its state does
        not allow this response (then it is terminated)."""
        tx = self._transactions.get(key)
        if tx is None or key.client:
            raise TransactionError(f"no server transaction {key}")
        event = _TU_INPUT.get(response.status // 100, Input.TU_SENT_300_699)
        self._input(tx, event, now, self._pending, response=response)
        self._run_due(now, self._pending)

    def cancel(self, key: TransactionKey, now: float) -> TransactionKey | None:
        """Cancel our pending INVITE (§9.1): the CANCEL goes out now if a
        provisional response came, else as soon as one comes. Returns the
        CANCEL's client key, or None when the INVITE already has its final
        response (the TU then ends the call with BYE)."""
        tx = self._transactions.get(key)
        if tx is None or tx.kind is not Kind.CLIENT_INVITE:
            return None
        if tx.state not in (State.CALLING, State.PROCEEDING):
            return None
        cancel_key = _client_key(key.branch, "CANCEL")
        if tx.cancel_pending or cancel_key in self._transactions:
            return cancel_key
        self._input(tx, Input.TU_CANCELLED, now, self._pending)
        self._run_due(now, self._pending)
        return cancel_key

    # -- requests ----------------------------------------------------------------

    def _receive_request(
        self, request: Request, peer: Peer, now: float, events: list[TransactionEvent]
    ) -> None:
        key = server_key(request)
        _stamp_via(request, peer)
        if request.method == "ACK":
            self._receive_ack(request, key, peer, now, events)
            return
        tx = self._transactions.get(key)
        if tx is not None:
            self.stats["retransmissions_absorbed"] += 1
            self._input(tx, Input.REQUEST_RETRANSMITTED, now, events)
            return
        if self._servers >= self.max_transactions:
            self.stats["limit_reached"] += 1
            overload = Response.for_request(
                request,
                503,
                to_tag=new_tag(),
                headers=[("Retry-After", str(OVERLOAD_RETRY_AFTER))],
            )
            self.send_stateless(overload, response_destination(request, peer))
            events.append(TransactionLimitReached(request=request, peer=peer))
            return
        if request.method == "BYE":
            self._bye_implies_ack(request)
        kind = Kind.SERVER_INVITE if request.method == "INVITE" else Kind.SERVER_NON_INVITE
        tx = self._new_server(key, kind, request, peer)
        if request.method == "CANCEL":
            self._receive_cancel(tx, now, events)
            return
        if kind is Kind.SERVER_INVITE:
            # A re-INVITE already names our tag; a new INVITE gets one now.
            tx.local_tag = request.to_tag or new_tag()
            self._arm(tx, Input.TIMER_GUARD, now + self.timers.timer_c)
            if self.auto_trying:
                self._input(
                    tx, Input.TU_SENT_1XX, now, events, response=Response.for_request(request, 100)
                )
        else:
            self._arm(tx, Input.TIMER_GUARD, now + self.timers.timeout)
        events.append(
            RequestReceived(request=request, peer=peer, server_key=key, to_tag=tx.local_tag)
        )

    def _bye_implies_ack(self, bye: Request) -> None:
        """A BYE from the peer proves it got our 2xx even if its ACK is lost
        (or comes later): stop retransmitting; Timer L ends the transaction
        quietly (no `AckNotReceived` for a call the peer already ended)."""
        invite_key = self._accepted_calls.get((bye.call_id, bye.from_tag or ""))
        tx = self._transactions.get(invite_key) if invite_key is not None else None
        if tx is not None and tx.state is State.ACCEPTED and not tx.acked:
            tx.acked = True
            self._disarm(tx, Input.TIMER_2XX)
            self.stats["acks_implied_by_bye"] += 1

    def _new_server(
        self, key: TransactionKey, kind: Kind, request: Request, peer: Peer
    ) -> _Transaction:
        tx = _Transaction(key, kind, request, peer)
        tx.reply_to = response_destination(request, peer)
        self._transactions[key] = tx
        self._servers += 1
        return tx

    def _receive_ack(
        self,
        ack: Request,
        key: TransactionKey,
        peer: Peer,
        now: float,
        events: list[TransactionEvent],
    ) -> None:
        tx = self._transactions.get(key)
        # RFC 2543 matching also needs the To tag of our response.
        if (
            tx is not None
            and key.legacy
            and tx.last_response is not None
            and ack.to_tag != tx.last_response.to_tag
        ):
            tx = None
        if tx is not None and tx.kind is Kind.SERVER_INVITE:
            if tx.state is State.ACCEPTED:
                self._accept_ack(tx, ack, peer, now, events)  # pyVoIP reuses the branch
            else:
                self._input(tx, Input.ACK_RECEIVED, now, events)
            return
        index = (ack.call_id, ack.cseq.sequence, ack.from_tag or "")
        invite_key = self._accepted.get(index)
        accepted = self._transactions.get(invite_key) if invite_key is not None else None
        if accepted is not None and accepted.state is State.ACCEPTED:
            self._accept_ack(accepted, ack, peer, now, events)
            return
        self.stats["stray_acks"] += 1
        events.append(AckReceived(request=ack, peer=peer, server_key=None))

    def _accept_ack(
        self,
        tx: _Transaction,
        ack: Request,
        peer: Peer,
        now: float,
        events: list[TransactionEvent],
    ) -> None:
        first = not tx.acked
        self._input(tx, Input.ACK_RECEIVED, now, events)
        if first:
            events.append(AckReceived(request=ack, peer=peer, server_key=tx.key))
        else:
            self.stats["ack_retransmissions"] += 1

    def _receive_cancel(
        self, cancel: _Transaction, now: float, events: list[TransactionEvent]
    ) -> None:
        request = cancel.request
        invite_key = replace(cancel.key, method="INVITE")
        invite = self._transactions.get(invite_key)
        if invite is None or invite.kind is not Kind.SERVER_INVITE:
            # §9.2: no matching transaction → 481.
            self.stats["cancel_unmatched"] += 1
            answer = Response.for_request(request, 481, to_tag=new_tag())
            self._input(cancel, Input.TU_SENT_300_699, now, events, response=answer)
            return
        tag = invite.local_tag or new_tag()
        ok = Response.for_request(request, 200, to_tag=tag)
        self._input(cancel, Input.TU_SENT_2XX, now, events, response=ok)
        if invite.state is State.PROCEEDING:
            events.append(
                CancelReceived(request=request, peer=cancel.peer, server_key=invite_key, to_tag=tag)
            )

    # -- responses ---------------------------------------------------------------

    def _receive_response(
        self, response: Response, peer: Peer, now: float, events: list[TransactionEvent]
    ) -> None:
        vias = response.headers.get_all("Via")
        if len(vias) != 1:
            # §8.1.3.3: a UAC discards a response with more than one Via
            # (RFC 4475 §3.3.10 `bcast`).
            self.stats["responses_with_extra_via"] += 1
            return
        branch = response.top_via.branch
        tx = self._transactions.get(_client_key(branch or "", response.cseq.method))
        if tx is None:
            self.stats["stray_responses"] += 1
            return
        event = _STATUS_INPUT.get(response.status // 100, Input.RESPONSE_300_699)
        self._input(tx, event, now, events, response=response, peer=peer)

    # -- the machine ---------------------------------------------------------------

    def _input(
        self,
        tx: _Transaction,
        event: Input,
        now: float,
        events: list[TransactionEvent],
        *,
        response: Response | None = None,
        peer: Peer | None = None,
    ) -> None:
        before = tx.state
        try:
            tx.state = advance(tx.kind, before, event)
        except TransactionError:
            self._remove(tx)
            tx.state = State.TERMINATED
            raise
        if tx.kind is Kind.SERVER_INVITE:
            self._server_invite(tx, event, before, now, events, response=response)
        elif tx.kind is Kind.SERVER_NON_INVITE:
            self._server_non_invite(tx, event, now, events, response=response)
        elif tx.kind is Kind.CLIENT_INVITE:
            self._client_invite(
                tx, event, before, now, events, response=response, peer=peer or tx.peer
            )
        else:
            self._client_non_invite(
                tx, event, before, now, events, response=response, peer=peer or tx.peer
            )
        if tx.state is State.TERMINATED:
            self._remove(tx)

    def _server_invite(
        self,
        tx: _Transaction,
        event: Input,
        before: State,
        now: float,
        events: list[TransactionEvent],
        *,
        response: Response | None,
    ) -> None:
        t = self.timers
        if response is not None:
            self._send_response(tx, response)
            if response.status < 200:
                # Each provisional shows the TU is alive (§13.3.1.1 sends one a minute).
                self._arm(tx, Input.TIMER_GUARD, now + t.timer_c)
            else:
                self._disarm(tx, Input.TIMER_GUARD)
        if event is Input.TU_SENT_2XX and before is State.PROCEEDING:
            assert response is not None
            tx.interval = t.t1
            self._arm(tx, Input.TIMER_2XX, now + t.t1)
            self._arm(tx, Input.TIMER_L, now + t.timeout)
            request = tx.request
            tx.index_key = (request.call_id, request.cseq.sequence, request.from_tag or "")
            self._accepted[tx.index_key] = tx.key
            self._accepted_calls[(tx.index_key[0], tx.index_key[2])] = tx.key
        elif event is Input.TU_SENT_300_699:
            g = t.g(reliable=tx.reliable)
            if g is not None:
                tx.interval = g
                self._arm(tx, Input.TIMER_G, now + g)
            self._arm(tx, Input.TIMER_H, now + t.timeout)
        elif event is Input.REQUEST_RETRANSMITTED:
            if before is not State.CONFIRMED:  # Confirmed absorbs (§17.2.1)
                self._resend_response(tx)
        elif event is Input.ACK_RECEIVED:
            if before is State.COMPLETED:
                self._disarm(tx, Input.TIMER_G, Input.TIMER_H)
                self._arm(tx, Input.TIMER_I, now + t.i(reliable=tx.reliable))
            elif before is State.ACCEPTED:
                tx.acked = True
                self._disarm(tx, Input.TIMER_2XX)
        elif event in (Input.TIMER_G, Input.TIMER_2XX):
            self._resend_response(tx)
            tx.interval = t.backoff(tx.interval)
            self._arm(tx, event, now + tx.interval)
        elif event is Input.TIMER_H:
            events.append(TransactionTimedOut(key=tx.key, request=tx.request, timer="H"))
        elif event is Input.TIMER_GUARD:
            self.stats["unanswered_requests"] += 1
            events.append(TransactionTimedOut(key=tx.key, request=tx.request, timer="guard"))
        elif event is Input.TIMER_L and not tx.acked:
            assert tx.last_response is not None
            events.append(
                AckNotReceived(server_key=tx.key, request=tx.request, response=tx.last_response)
            )
        elif event is Input.TRANSPORT_FAILED:
            events.append(TransportFailed(key=tx.key, request=tx.request, peer=tx.reply_to))

    def _server_non_invite(
        self,
        tx: _Transaction,
        event: Input,
        now: float,
        events: list[TransactionEvent],
        *,
        response: Response | None,
    ) -> None:
        if response is not None:
            self._send_response(tx, response)
            if response.status >= 200:
                self._disarm(tx, Input.TIMER_GUARD)
                self._arm(tx, Input.TIMER_J, now + self.timers.j(reliable=tx.reliable))
        elif event is Input.REQUEST_RETRANSMITTED:
            self._resend_response(tx)
        elif event is Input.TIMER_GUARD:
            self.stats["unanswered_requests"] += 1
            events.append(TransactionTimedOut(key=tx.key, request=tx.request, timer="guard"))
        elif event is Input.TRANSPORT_FAILED:
            events.append(TransportFailed(key=tx.key, request=tx.request, peer=tx.reply_to))

    def _client_invite(
        self,
        tx: _Transaction,
        event: Input,
        before: State,
        now: float,
        events: list[TransactionEvent],
        *,
        response: Response | None,
        peer: Peer,
    ) -> None:
        t = self.timers
        if event is Input.TIMER_A:
            self._send(tx.request_bytes, tx.peer)
            tx.interval *= 2  # §17.1.1.2: A doubles, bounded by Timer B
            self._arm(tx, Input.TIMER_A, now + tx.interval)
        elif event in (Input.TIMER_B, Input.TIMER_C):
            timer = "B" if event is Input.TIMER_B else "C"
            events.append(TransactionTimedOut(key=tx.key, request=tx.request, timer=timer))
        elif event is Input.TU_CANCELLED:
            if before is State.CALLING:
                tx.cancel_pending = True
            elif before is State.PROCEEDING:
                self._send_cancel(tx, now)
        elif event is Input.RESPONSE_1XX:
            assert response is not None
            if before is State.CALLING:
                self._disarm(tx, Input.TIMER_A, Input.TIMER_B)
            if before is not State.ACCEPTED and before is not State.COMPLETED:
                self._arm(tx, Input.TIMER_C, now + t.timer_c)
                events.append(
                    ResponseReceived(
                        response=response, peer=peer, client_key=tx.key, request=tx.request
                    )
                )
                if tx.cancel_pending:
                    tx.cancel_pending = False
                    self._send_cancel(tx, now)
        elif event is Input.RESPONSE_2XX:
            assert response is not None
            if before in (State.CALLING, State.PROCEEDING):
                self._disarm(tx, Input.TIMER_A, Input.TIMER_B, Input.TIMER_C)
                self._arm(tx, Input.TIMER_M, now + t.timeout)
            if before is not State.COMPLETED:
                events.append(
                    ResponseReceived(
                        response=response, peer=peer, client_key=tx.key, request=tx.request
                    )
                )
        elif event is Input.RESPONSE_300_699:
            assert response is not None
            if before in (State.CALLING, State.PROCEEDING):
                self._disarm(tx, Input.TIMER_A, Input.TIMER_B, Input.TIMER_C)
                tx.cancel_pending = False
                tx.ack_bytes = build_ack(tx.request, response).serialize()
                self._send(tx.ack_bytes, tx.peer)
                self._arm(tx, Input.TIMER_D, now + t.d(reliable=tx.reliable))
                events.append(
                    ResponseReceived(
                        response=response, peer=peer, client_key=tx.key, request=tx.request
                    )
                )
            elif before is State.COMPLETED:
                self._send(tx.ack_bytes, tx.peer)
        elif event is Input.TRANSPORT_FAILED:
            events.append(TransportFailed(key=tx.key, request=tx.request, peer=tx.peer))

    def _client_non_invite(
        self,
        tx: _Transaction,
        event: Input,
        before: State,
        now: float,
        events: list[TransactionEvent],
        *,
        response: Response | None,
        peer: Peer,
    ) -> None:
        t = self.timers
        if event is Input.TIMER_E:
            self._send(tx.request_bytes, tx.peer)
            tx.interval = t.t2 if before is State.PROCEEDING else t.backoff(tx.interval)
            self._arm(tx, Input.TIMER_E, now + tx.interval)
        elif event is Input.TIMER_F:
            events.append(TransactionTimedOut(key=tx.key, request=tx.request, timer="F"))
        elif response is not None and before is not State.COMPLETED:
            events.append(
                ResponseReceived(
                    response=response, peer=peer, client_key=tx.key, request=tx.request
                )
            )
            if tx.state is State.COMPLETED:
                self._disarm(tx, Input.TIMER_E, Input.TIMER_F)
                self._arm(tx, Input.TIMER_K, now + t.k(reliable=tx.reliable))
        elif event is Input.TRANSPORT_FAILED:
            events.append(TransportFailed(key=tx.key, request=tx.request, peer=tx.peer))

    # -- helpers ---------------------------------------------------------------

    def _send(self, data: bytes, peer: Peer) -> None:
        self._outbox.append((data, peer))

    def _send_response(self, tx: _Transaction, response: Response) -> None:
        tx.last_response = response
        tx.last_response_bytes = response.serialize()
        tag = response.to_tag
        if tag and tx.kind is Kind.SERVER_INVITE:
            tx.local_tag = tag  # a later CANCEL is answered with this tag (§9.2)
        self._send(tx.last_response_bytes, tx.reply_to)

    def _resend_response(self, tx: _Transaction) -> None:
        if tx.last_response_bytes:
            self._send(tx.last_response_bytes, tx.reply_to)

    def _send_cancel(self, tx: _Transaction, now: float) -> None:
        cancel_key = _client_key(tx.key.branch, "CANCEL")
        if cancel_key not in self._transactions:
            self._start_client(cancel_key, build_cancel(tx.request), tx.peer, now)
        # §9.1: no final response within 64*T1 of the CANCEL ends the INVITE.
        self._arm(tx, Input.TIMER_B, now + self.timers.timeout)

    def _arm(self, tx: _Transaction, timer: Input, deadline: float) -> None:
        generation = next(self._seq)
        tx.timers[timer] = generation
        heapq.heappush(self._heap, (deadline, generation, tx.key, timer, generation))

    def _disarm(self, tx: _Transaction, *timers: Input) -> None:
        for timer in timers:
            tx.timers.pop(timer, None)

    def _remove(self, tx: _Transaction) -> None:
        if self._transactions.get(tx.key) is tx:
            del self._transactions[tx.key]
            if not tx.key.client:
                self._servers -= 1
        tx.timers.clear()
        if tx.index_key is not None:
            if self._accepted.get(tx.index_key) == tx.key:
                del self._accepted[tx.index_key]
            call = (tx.index_key[0], tx.index_key[2])
            if self._accepted_calls.get(call) == tx.key:
                del self._accepted_calls[call]
        if len(self._heap) > 64 and len(self._heap) > 4 * (len(self._transactions) + 16):
            self._compact()

    def _compact(self) -> None:
        live = [
            entry
            for entry in self._heap
            if (tx := self._transactions.get(entry[2])) is not None
            and tx.timers.get(entry[3]) == entry[4]
        ]
        heapq.heapify(live)
        self._heap = live

    def _run_due(self, now: float, events: list[TransactionEvent]) -> None:
        if self._pending and events is not self._pending:
            events[:0] = self._pending
            self._pending = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            _, _, key, timer, generation = heapq.heappop(heap)
            tx = self._transactions.get(key)
            if tx is None or tx.timers.get(timer) != generation:
                continue
            del tx.timers[timer]
            try:
                self._input(tx, timer, now, events)
            except TransactionError:
                self.stats["protocol_errors"] += 1
