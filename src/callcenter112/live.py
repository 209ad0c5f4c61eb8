"""What the web console sees of the running centre, and what it may ask of it.

The call flow (`callflow/`, the ACD, the registrar) is the only owner of live
state; the web layer reads it through `LiveCenter.snapshot()`, follows it
through `LiveCenter.subscribe()` (a bounded stream of `LiveEvent`s for
server-sent events), and acts on it only through the `LiveCenter` methods,
which validate and raise `ControlError` with an HTTP status and a message.
The incident record itself is read from and written to the `Store`.

Keeping this seam narrow lets the web tests run against a fake centre and
lets a multi-node deployment (DESIGN §8) put a network hop here later.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from .callflow.phases import Phase

__all__ = [
    "ActiveCall",
    "ControlError",
    "LiveCenter",
    "LiveEvent",
    "LiveSnapshot",
    "OperatorView",
    "RegistrationView",
    "RtpUsage",
    "TrunkView",
    "WaitingCaller",
]

OperatorStateName = Literal["offline", "available", "reserved", "on_call", "wrap_up", "paused"]
CallPhase = Phase  # where a call is: callflow/phases.py owns the list
TransferMode = Literal["blind", "conference"]
SupervisionMode = Literal["listen", "whisper", "barge"]


class ControlError(Exception):
    """A console request the centre refuses; `status` is the HTTP answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True, slots=True, kw_only=True)
class WaitingCaller:
    incident_id: str
    caller: str
    category: str
    language: str
    arrived_at: float  # epoch seconds (wall clock), for display and SLA
    position: int  # 1 = next to be offered
    offered_to: str | None  # operator currently ringing for this caller


@dataclass(frozen=True, slots=True, kw_only=True)
class OperatorView:
    user: str
    name: str
    skills: tuple[str, ...]
    state: OperatorStateName
    since: float  # epoch seconds
    reason: str | None  # pause reason, or why offline
    calls_today: int
    missed: int
    incident_id: str | None  # call being offered or talked
    registered: bool
    reachable: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class ActiveCall:
    incident_id: str
    caller: str
    category: str
    phase: CallPhase
    operator: str | None
    agency: str | None
    arrived_at: float
    phase_since: float
    supervisors: tuple[tuple[str, SupervisionMode], ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class TrunkView:
    name: str
    allow: tuple[str, ...]
    numbers: tuple[str, ...]
    proxy: str | None
    last_inbound_at: float | None
    last_outbound_at: float | None
    calls_today: int
    active_calls: int
    rejected_today: int


@dataclass(frozen=True, slots=True, kw_only=True)
class RegistrationView:
    user: str
    contact: str
    source: str  # transport:host:port the REGISTER came from
    expires_at: float  # epoch seconds
    reachable: bool
    rtt_ms: float | None
    user_agent: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class RtpUsage:
    in_use: int
    opened: int
    capacity: int


@dataclass(frozen=True, slots=True, kw_only=True)
class LiveSnapshot:
    at: float  # epoch seconds
    waiting: tuple[WaitingCaller, ...]
    operators: tuple[OperatorView, ...]
    calls: tuple[ActiveCall, ...]
    trunks: tuple[TrunkView, ...]
    registrations: tuple[RegistrationView, ...]
    rtp: RtpUsage
    max_calls: int
    low_disk: tuple[str, ...] = ()  # issue 11: evidence folders under storage.low_disk_mb


@dataclass(frozen=True, slots=True, kw_only=True)
class LiveEvent:
    """A change worth pushing to browsers.

    kinds: `queue_changed`, `operator_changed`, `call_offered`, `call_answered`,
    `call_ended`, `incident_updated`, `callback_changed`, `supervision_changed`.
    `operator` names the operator a console should react (`call_offered` pops
    the incident on that operator's screen).
    """

    kind: str
    at: float
    operator: str | None = None
    incident_id: str | None = None
    data: dict[str, Any] = field(default_factory=dict)


class LiveCenter(Protocol):
    def snapshot(self) -> LiveSnapshot: ...

    def subscribe(self) -> AsyncIterator[LiveEvent]:
        """Events from now on; the iterator ends when the centre stops.
        A slow reader loses the oldest events (bounded), never blocks calls."""
        ...

    async def set_operator_paused(
        self, user: str, *, paused: bool, reason: str | None, actor: str
    ) -> None: ...

    async def transfer(
        self, incident_id: str, agency: str, *, mode: TransferMode, actor: str
    ) -> None: ...

    async def leave_conference(self, incident_id: str, *, actor: str) -> None: ...

    async def supervise(
        self, incident_id: str, *, supervisor: str, mode: SupervisionMode, actor: str
    ) -> None: ...

    async def stop_supervision(self, incident_id: str, *, supervisor: str, actor: str) -> None: ...

    async def start_callback(self, callback_id: int, *, operator: str, actor: str) -> None: ...
