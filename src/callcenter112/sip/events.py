"""Events of the SIP transaction and dialog layers.

What the sans-IO layers report to their user (the call coordinator): frozen,
slotted, keyword-only dataclasses with past-tense names (STYLE 3). The
transaction layer (`transaction.py`) returns them from `receive`,
`handle_timer` and `transport_failed`; the dialog table (`dialog.py`)
returns `PeerDefectTolerated`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .message import Request, Response
    from .peer import Peer
    from .transaction import TransactionKey

__all__ = [
    "AckNotReceived",
    "AckReceived",
    "CancelReceived",
    "PeerDefectTolerated",
    "RequestReceived",
    "ResponseReceived",
    "TransactionEvent",
    "TransactionLimitReached",
    "TransactionTimedOut",
    "TransportFailed",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestReceived:
    """A new request (not ACK, not CANCEL) created a server transaction.

    Answer it with `TransactionLayer.respond(server_key, …)`. For an INVITE,
    `to_tag` is the tag the layer will use in its own answer to a CANCEL of
    this INVITE: put the same tag in every response (RFC 3261 §9.2). A
    100 Trying may already have gone out (`auto_trying`).
    """

    request: Request
    peer: Peer
    server_key: TransactionKey
    to_tag: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class AckReceived:
    """An ACK the TU must see: the ACK of a 2xx that our INVITE server
    transaction sent (`server_key` is that INVITE's; 2xx retransmission has
    stopped), or an ACK matching no transaction (`server_key` None) for the
    dialog layer to judge. ACKs of non-2xx answers never reach the TU."""

    request: Request
    peer: Peer
    server_key: TransactionKey | None


@dataclass(frozen=True, slots=True, kw_only=True)
class CancelReceived:
    """A CANCEL matched an INVITE server transaction still in Proceeding.
    The layer already answered the CANCEL 200 with `to_tag`; the TU now
    answers the INVITE (`server_key`) with 487, using the same tag."""

    request: Request
    peer: Peer
    server_key: TransactionKey
    to_tag: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ResponseReceived:
    """A response for our client transaction `client_key` (sent `request`).
    Every 2xx to an INVITE is passed up, retransmissions included, so that
    the TU re-sends its ACK (RFC 6026 §7.2)."""

    response: Response
    peer: Peer
    client_key: TransactionKey
    request: Request


@dataclass(frozen=True, slots=True, kw_only=True)
class TransactionTimedOut:
    """No answer in time. `timer` says which: "B"/"F" (client: no final
    response, treat as 408), "C" (client INVITE stuck in Proceeding), "H"
    (server: no ACK for our non-2xx final), "guard" (a server transaction the
    TU left unanswered: non-INVITE for 64*T1, INVITE in Proceeding for Timer C
    since its last provisional)."""

    key: TransactionKey
    request: Request
    timer: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AckNotReceived:
    """Our 2xx to an INVITE was retransmitted for 64*T1 (Timer L) without an
    ACK: RFC 3261 §13.3.1.4 says the session SHOULD be ended with a BYE."""

    server_key: TransactionKey
    request: Request
    response: Response


@dataclass(frozen=True, slots=True, kw_only=True)
class TransportFailed:
    """The transport could not deliver for this transaction (TCP connection
    lost, ICMP unreachable): the transaction is terminated (§17.1.4, §17.2.4)."""

    key: TransactionKey
    request: Request
    peer: Peer


@dataclass(frozen=True, slots=True, kw_only=True)
class TransactionLimitReached:
    """A new request arrived while the layer held its maximum number of
    transactions. The layer answered it 503 (Retry-After) statelessly."""

    request: Request
    peer: Peer


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerDefectTolerated:
    """A peer broke a dialog rule in a way we know and tolerate (pyVoIP puts
    a random To-tag on its ACK and on its 200 to BYE). Reported once per peer
    and kind, so that it is logged, not lost."""

    peer: Peer | None
    kind: str
    call_id: str


TransactionEvent = (
    RequestReceived
    | AckReceived
    | CancelReceived
    | ResponseReceived
    | TransactionTimedOut
    | AckNotReceived
    | TransportFailed
    | TransactionLimitReached
)
