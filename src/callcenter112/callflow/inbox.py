"""What reaches a call's inbox: one message type per kind of input.

The call is an actor (calls.EmergencyCall): SIP requests and transaction
events, digits, prompt ends, timers, ACD decisions and console commands are
posted here and handled one at a time.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Protocol

from ..rtp.events import DigitReceived
from ..sip.events import AckNotReceived, CancelReceived, TransactionEvent
from ..sip.message import Request
from ..sip.peer import Peer
from ..sip.transaction import TransactionKey
from .legs import OutboundLeg

__all__ = [
    "AcdAnnounce",
    "AcdCancel",
    "AcdOffer",
    "AcdOverflow",
    "AcdQueued",
    "CallerAck",
    "CallerAckMissing",
    "CallerCancelled",
    "CallerEvent",
    "CallerRequest",
    "CallerSpeech",
    "Command",
    "Digit",
    "IvrTimer",
    "LegEvent",
    "LegRequest",
    "Mailbox",
    "MediaCheck",
    "Message",
    "OptionsResult",
    "PromptDone",
    "RingTimedOut",
    "SessionTimer",
    "Shutdown",
]


@dataclass(frozen=True, slots=True)
class CallerRequest:
    request: Request
    server_key: TransactionKey
    peer: Peer


@dataclass(frozen=True, slots=True)
class CallerAck:
    request: Request


@dataclass(frozen=True, slots=True)
class CallerCancelled:
    event: CancelReceived


@dataclass(frozen=True, slots=True)
class CallerEvent:
    """A transaction event of a request we sent the caller (BYE, OPTIONS)."""

    event: TransactionEvent


@dataclass(frozen=True, slots=True)
class CallerAckMissing:
    """No ACK for our 2xx: Timer L ran out (`event`), or 32 s passed (None)."""

    event: AckNotReceived | None = None


@dataclass(frozen=True, slots=True)
class Digit:
    event: DigitReceived


@dataclass(frozen=True, slots=True)
class PromptDone:
    sequence: int


@dataclass(frozen=True, slots=True)
class IvrTimer:
    pass


@dataclass(frozen=True, slots=True)
class MediaCheck:
    pass


@dataclass(frozen=True, slots=True)
class LegEvent:
    leg: OutboundLeg
    event: TransactionEvent


@dataclass(frozen=True, slots=True)
class LegRequest:
    leg: OutboundLeg
    request: Request
    server_key: TransactionKey
    peer: Peer


@dataclass(frozen=True, slots=True)
class OptionsResult:
    leg: OutboundLeg | None  # None: the caller leg
    alive: bool


@dataclass(frozen=True, slots=True)
class SessionTimer:
    """A leg's `InviteSession` deadline is due (its OPTIONS probe, its glare
    wait): the session is sans-IO, the call keeps its timer."""

    leg: OutboundLeg | None  # None: the caller's session


@dataclass(frozen=True, slots=True)
class AcdOffer:
    operator: str
    deadline: float


@dataclass(frozen=True, slots=True)
class AcdCancel:
    operator: str
    reason: str


@dataclass(frozen=True, slots=True)
class AcdQueued:
    position: int
    requeued: bool


@dataclass(frozen=True, slots=True)
class AcdAnnounce:
    position: int


@dataclass(frozen=True, slots=True)
class AcdOverflow:
    pass


@dataclass(frozen=True, slots=True)
class RingTimedOut:
    """An outbound leg rang for its whole ring timeout."""

    leg: OutboundLeg


@dataclass(frozen=True, slots=True)
class Shutdown:
    pass


@dataclass(slots=True)
class Command:
    """A console request; `done` gets None or the exception to raise there."""

    name: str
    args: dict[str, Any]
    done: asyncio.Future[None]


@dataclass(frozen=True, slots=True)
class CallerSpeech:
    """The caller started speaking (media.vad, issue 12): they are not silent."""


Message = (
    CallerRequest
    | CallerSpeech
    | CallerAck
    | CallerCancelled
    | CallerEvent
    | CallerAckMissing
    | Digit
    | PromptDone
    | IvrTimer
    | MediaCheck
    | LegEvent
    | LegRequest
    | OptionsResult
    | SessionTimer
    | AcdOffer
    | AcdCancel
    | AcdQueued
    | AcdAnnounce
    | AcdOverflow
    | RingTimedOut
    | Shutdown
    | Command
)


class Mailbox(Protocol):
    """Whatever owns a dialog and takes its messages (a call, a callback)."""

    def post(self, message: Message) -> None: ...
