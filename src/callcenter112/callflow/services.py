"""What a call may use of the centre: one typed protocol instead of `Centre`.

`EmergencyCall` is handed a `CallServices`; `centre.Centre` satisfies it
structurally (mypy checks it where app.py builds the call). The call module
no longer imports the centre, so calls↔centre is no longer a cycle, and a
unit test can hand a call a small fake of exactly these members.

To give calls a new service (a location resolver for PIDF-LO, a watch-list,
a failover loader): add one typed member here, provide it on `Centre` (or
pass it from app.py), and the call uses `self.services.<member>`. Keep each
member a narrow, typed object of its own, never `Any`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

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
from .inbox import Mailbox
from .legs import OutboundLeg

if TYPE_CHECKING:
    from .call import EmergencyCall
    from .handoff import Handoff

__all__ = ["CallServices"]


class CallServices(Protocol):
    loop: asyncio.AbstractEventLoop
    config: Config
    endpoint: SipEndpoint
    store: Store
    media: MediaEngine
    desk: Desk
    registrar: Registrar
    prompts: PromptLibrary
    ivr_settings: IvrSettings
    recordings_dir: Path
    metrics: CoreCounters
    user_agent: str
    console_url: str
    handoff: Handoff | None

    def wall(self) -> float: ...

    def spawn_write(self, aw: Awaitable[Any]) -> None: ...

    def publish(
        self,
        kind: str,
        *,
        operator: str | None = None,
        incident_id: str | None = None,
        data: dict[str, Any] | None = None,
    ) -> None: ...

    def register_dialog(self, dialog: Dialog, call: Mailbox, leg: OutboundLeg | None) -> None: ...

    def unregister_dialog(self, dialog: Dialog) -> None: ...

    def call_identified(self, call: EmergencyCall) -> None: ...

    def call_finished(self, call: EmergencyCall) -> None: ...

    async def record_refused(self, invite: Request, trunk: str, reason: str) -> None: ...
