"""What the call flow may use of the centre: small typed protocols, one per need.

`EmergencyCall` is handed a `CallServices[EmergencyCall]`, the hand-off and
callbacks a `HandoffHost`; `centre.Centre` satisfies both structurally (mypy
checks it where centre.py builds the call and app.py the hand-off). Nothing
here imports the call, the hand-off or the centre, so the call flow has no
import cycle with the centre, not even a type-only one; what a protocol says
about "a call" is the type parameter `CallT_contra`.

The needs, each a protocol of its own:

- `Clock`: the loop's monotonic clock and timers, and wall time;
- `Signalling`: the SIP endpoint, the dialogs the switchboard routes, and the
  configuration and identity the messages carry;
- `Evidence`: the store, the recordings folder and background writes;
- `Audio`: the media engine, the prompts and the IVR settings;
- `Live`: counters, the console's address and live events;
- `Queueing`: the desk (ACD) and the registrar;
- `CallLifecycle[CallT_contra]`: a call telling the switchboard it has an incident,
  has finished, or was refused;
- `HandoffPort[CallT_contra]`: what the call asks of the hand-off.

To give calls a new service (a location resolver for PIDF-LO, a watch-list,
a failover loader): add one read-only member to the protocol of its need (or a
new small protocol, added to `CallServices`), provide it on `Centre` (or pass
it from app.py), and the call uses `self.centre.<member>`. Never `Any`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Coroutine
from pathlib import Path
from typing import Protocol, TypeVar

from ..config import Config
from ..counters import CoreCounters
from ..ivr import IvrSettings
from ..media.prompts import PromptLibrary
from ..net.media import MediaEngine
from ..net.sip_endpoint import SipEndpoint
from ..records import Store
from ..sip.dialog import Dialog
from ..sip.message import Request
from ..sip.registrar import Registrar
from .desk import Desk
from .inbox import LegRequest, Mailbox
from .legs import OutboundLeg

__all__ = [
    "Audio",
    "CallLifecycle",
    "CallServices",
    "Clock",
    "Evidence",
    "HandoffHost",
    "HandoffPort",
    "Live",
    "Queueing",
    "Signalling",
]

CallT_contra = TypeVar("CallT_contra", contravariant=True)


class Clock(Protocol):
    @property
    def loop(self) -> asyncio.AbstractEventLoop: ...

    def wall(self) -> float: ...


class Signalling(Protocol):
    @property
    def endpoint(self) -> SipEndpoint: ...

    @property
    def config(self) -> Config: ...

    @property
    def user_agent(self) -> str: ...

    def register_dialog(self, dialog: Dialog, call: Mailbox, leg: OutboundLeg | None) -> None: ...

    def unregister_dialog(self, dialog: Dialog) -> None: ...


class Evidence(Protocol):
    @property
    def store(self) -> Store: ...

    @property
    def recordings_dir(self) -> Path: ...

    def spawn_write(self, aw: Awaitable[object]) -> None: ...


class Audio(Protocol):
    @property
    def media(self) -> MediaEngine: ...

    @property
    def prompts(self) -> PromptLibrary: ...

    @property
    def ivr_settings(self) -> IvrSettings: ...


class Live(Protocol):
    @property
    def metrics(self) -> CoreCounters: ...

    @property
    def console_url(self) -> str: ...

    def publish(
        self,
        kind: str,
        *,
        operator: str | None = None,
        incident_id: str | None = None,
        data: dict[str, object] | None = None,
    ) -> None: ...


class Queueing(Protocol):
    @property
    def desk(self) -> Desk: ...

    @property
    def registrar(self) -> Registrar: ...


class CallLifecycle(Protocol[CallT_contra]):
    def call_identified(self, call: CallT_contra) -> None: ...

    def call_finished(self, call: CallT_contra) -> None: ...

    async def record_refused(self, invite: Request, trunk: str, reason: str) -> None: ...


class HandoffPort(Protocol[CallT_contra]):
    """What the call asks of the hand-off (callflow/handoff.py)."""

    async def refer(self, call: CallT_contra, leg: OutboundLeg, m: LegRequest) -> None: ...

    async def command(self, call: CallT_contra, name: str, args: dict[str, object]) -> None: ...

    async def leg_answered(self, call: CallT_contra, leg: OutboundLeg) -> None: ...

    async def leg_failed(
        self, call: CallT_contra, leg: OutboundLeg, status: int, reason: str
    ) -> None: ...

    async def leg_hung_up(self, call: CallT_contra, leg: OutboundLeg) -> None: ...

    async def operator_left(self, call: CallT_contra) -> bool: ...

    async def overflow(self, call: CallT_contra) -> None: ...


class CallServices(
    Clock,
    Signalling,
    Evidence,
    Audio,
    Live,
    Queueing,
    CallLifecycle[CallT_contra],
    Protocol[CallT_contra],
):
    """Everything one emergency call uses; `CallT_contra` is the call's own type."""

    @property
    def handoff(self) -> HandoffPort[CallT_contra] | None: ...


class HandoffHost(Clock, Signalling, Evidence, Audio, Live, Queueing, Protocol):
    """What the hand-off and the callbacks use of the centre."""

    @property
    def operator_users(self) -> set[str]: ...

    @property
    def trunk_stats(self) -> dict[str, dict[str, object]]: ...

    def spawn(self, coro: Coroutine[object, object, None]) -> None: ...
