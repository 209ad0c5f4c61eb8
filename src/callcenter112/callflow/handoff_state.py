"""What one call's hand-offs are doing: the typed state `callflow.handoff` keeps
on the call (`EmergencyCall.handoff`), readable by the switchboard's views."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from ..live import SupervisionMode
from ..media.player import Player
from ..net.media import Conference
from .legs import OutboundLeg

__all__ = ["HandoffState", "ReferSubscription"]


@dataclass(slots=True)
class ReferSubscription:
    """The implicit subscription a REFER created (RFC 3515 §2.4.4): where NOTIFYs go."""

    leg: OutboundLeg
    cseq: int


@dataclass(slots=True)
class HandoffState:
    """What one call's hand-offs are doing (`EmergencyCall.handoff`)."""

    agency: str | None = None  # connected agency (for the wallboard)
    pending: OutboundLeg | None = None  # agency leg being dialled
    mode: str | None = None  # blind | conference | overflow
    refer: ReferSubscription | None = None
    agency_leg: OutboundLeg | None = None
    conference: Conference | None = None
    ring_timer: asyncio.TimerHandle | None = None
    supervisors: list[tuple[str, SupervisionMode]] = field(default_factory=list)  # (user, mode)
    supervisor_legs: dict[str, tuple[OutboundLeg, SupervisionMode]] = field(default_factory=dict)
    actor: str = "system"
    prompt_player: Player | None = None
