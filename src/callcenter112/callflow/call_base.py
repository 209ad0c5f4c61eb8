"""The call's state and plumbing, shared by the parts of `EmergencyCall`.

`CallBase` holds what every part of a call reads and writes (the caller's
side, the legs, the journal, the timers, the phase) and the plumbing: the
inbox, `change_phase` through the phase table, the call's timers. The parts
(callflow/menu.py: IVR and queue; callflow/offers.py: outbound legs and
offers to operators; callflow/peers.py: requests from the peers and media
liveness) and callflow/call.py (the actor loop, arrival and answer, the end)
each add their own methods; what one part calls in another is declared here
for the type checker only. `CallT` is the concrete call (`EmergencyCall`),
the type the services and the hand-off take (`as_call()`).

Also the call flow's SIP constants and `outbound_request`.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import TYPE_CHECKING, Generic, TypeVar, cast

from .. import acd as acd_mod
from ..counters import Counted
from ..incidents import Status
from ..ivr import (
    DigitAccepted,
    DigitRejected,
    InputTimedOut,
    IvrFinished,
    IvrMenu,
)
from ..logs import get_logger
from ..media.player import Player
from ..offer_answer import Negotiated
from ..rtp.events import DigitReceived
from ..sdp import SessionDescription
from ..sip.events import (
    TransactionEvent,
)
from ..sip.message import Headers, Request, new_call_id, new_tag
from ..sip.peer import Peer
from ..sip.session import (
    InviteSession,
    ReinviteReceived,
    RequestArrived,
    SessionEvent,
)
from ..sip.transaction import TransactionKey
from .handoff_state import HandoffState
from .inbox import (
    CallerAckMissing,
    CallerCancelled,
    CallerEvent,
    CallerRequest,
    LegRequest,
    Message,
    OptionsResult,
    SessionTimer,
)
from .journal import Journal, OpenRecording
from .legs import (
    CallerSide,
    OutboundLeg,
    caller_identity,
    dialled_number,
)
from .location import CallLocation  # issue 13
from .phases import Happening, Phase, PhaseError, next_phase
from .screening import CallScreening  # issue 12
from .services import CallServices, Signalling

__all__ = [
    "ALLOW",
    "MEDIA_CHECK_S",
    "SDP",
    "CallBase",
    "CallT",
    "outbound_request",
]


log = get_logger("calls")

ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, REFER, NOTIFY, UPDATE"
SDP = "application/sdp"
MEDIA_CHECK_S = 2.0
_call_numbers = itertools.count(1)


# --------------------------------------------------------------------------- the call
CallT = TypeVar("CallT")


class CallBase(Generic[CallT]):
    """One caller's emergency, from INVITE to wrap-up (see the module docstring)."""

    def __init__(
        self,
        centre: CallServices[CallT],
        *,
        invite: Request,
        peer: Peer,
        server_key: TransactionKey,
        to_tag: str,
        trunk: str,
        arrived_mono: float,
        arrived_wall: float,
    ) -> None:
        self.centre = centre
        self.number = next(_call_numbers)
        self.caller = CallerSide(invite=invite, server_key=server_key, peer=peer, to_tag=to_tag)
        self.caller_session = InviteSession.incoming(
            transactions=centre.endpoint,
            local=centre.endpoint.local_party(peer.transport, user_agent=centre.user_agent),
            invite=invite,
            peer=peer,
            server_key=server_key,
            to_tag=to_tag,
            on_event=lambda event: self.post(CallerEvent(event)),
        )
        self.trunk = trunk
        self.arrived_mono = arrived_mono
        self.arrived_wall = arrived_wall
        self.caller_number, self.caller_name = caller_identity(invite)
        self.dialled = dialled_number(invite)
        self.ref = f"call-{self.number}"
        self.category = "unknown"
        self.language: str = centre.config.ivr.language
        self.phase = Phase.ARRIVING
        self.phase_since = arrived_mono
        self.inbox: asyncio.Queue[Message] = asyncio.Queue()
        self.log = log.bind(call_id=invite.call_id, call=self.ref)
        self.journal = Journal(
            store=centre.store,
            recorders=centre.media,
            recordings_dir=centre.recordings_dir,
            wall=centre.wall,
            counters=centre.metrics,
            log=self.log,
        )
        self.ivr: IvrMenu | None = None
        self._ivr_playbacks: dict[int, int] = {}  # player sequence → IVR playback
        self.player: Player | None = None
        self.recording: OpenRecording | None = None
        self.operator_leg: OutboundLeg | None = None
        self.offers: dict[str, OutboundLeg] = {}  # operator → ringing leg
        self.other_legs: list[OutboundLeg] = []  # agencies, supervisors
        self._legs: list[OutboundLeg] = []  # every leg this call opened
        self.operator: str | None = None
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self.status: Status | None = None
        self.end_reason = ""
        self.handoff = HandoffState()  # transfers, conference, supervision
        self._late_offer: SessionDescription | None = None
        self.ivr_outcome: IvrFinished | None = None
        self.location: CallLocation | None = None  # issue 13
        # Issue 12: repeat / watch-listed / silent callers (callflow/screening.py).
        self.screening = CallScreening(
            store=centre.store, config=centre.config, caller=self.caller_number, log=self.log
        )
        self._session_deadlines: dict[str, float] = {}  # timer name → armed at

    # -- plumbing ----------------------------------------------------------------

    @property
    def done(self) -> bool:
        return self.phase is Phase.ENDED

    def post(self, message: Message) -> None:
        """Queue `message` for the actor; once the call has ended, settle it at once."""
        if not self.done:
            self.inbox.put_nowait(message)
        else:
            self._after_end(message)

    def _now(self) -> float:
        return self.centre.loop.time()

    def _wall(self) -> float:
        return self.centre.wall()

    def change_phase(self, happening: Happening, *, publish: bool = True) -> None:
        """The one way a call changes phase: through `PHASE_TABLE`. A move the
        table lacks is logged (critical) and counted, and still made: the
        audio path has already been switched, and the caller stays served."""
        try:
            phase = next_phase(self.phase, happening)
        except PhaseError as exc:
            self.log.critical("phase_table_gap", error=str(exc))
            self.centre.metrics[Counted.PHASE_TABLE_GAPS] += 1
            phase = happening.target
        self.phase = phase
        self.phase_since = self._now()
        if publish:
            self.centre.publish(
                "call_changed", incident_id=self.incident_id, data={"phase": phase.value}
            )

    def _arm(self, name: str, at: float, message: Message) -> None:
        self._cancel_timer(name)
        self._timers[name] = self.centre.loop.call_at(at, self.post, message)

    def _drive_session_timers(self) -> None:
        """Keep one call timer armed at each live session's next deadline (its
        OPTIONS probe, its glare wait, RFC 3261 §14.1): the sessions are sans-IO
        and have no clock of their own. Run after every step of the actor."""
        sessions: list[tuple[OutboundLeg | None, InviteSession]] = [(None, self.caller_session)]
        sessions += [(leg, leg.session) for leg in self._legs if leg.session is not None]
        for leg, session in sessions:
            name = f"session:{id(session)}"
            at = None if session.ended else session.get_timer()
            if at is None:
                if self._session_deadlines.pop(name, None) is not None:
                    self._cancel_timer(name)
            elif self._session_deadlines.get(name) != at:
                self._session_deadlines[name] = at
                self._arm(name, at, SessionTimer(leg))

    def _cancel_timer(self, name: str) -> None:
        handle = self._timers.pop(name, None)
        if handle is not None:
            handle.cancel()

    @property
    def incident_id(self) -> str | None:
        return self.journal.incident_id

    def as_call(self) -> CallT:
        """This call as the concrete type its services and the hand-off take."""
        return cast("CallT", self)

    if TYPE_CHECKING:  # defined by the parts and by call.py; declared for the type checker

        def _after_end(self, m: Message) -> None: ...

        def _announce_position(self, position: int) -> None: ...

        def _apply_caller_session(self, negotiated: Negotiated) -> None: ...

        async def _cancel_offer(self, operator: str, reason: str) -> None: ...

        async def _end_leg_record(self, leg: OutboundLeg, why: str) -> None: ...

        async def _leg_hung_up(self, leg: OutboundLeg, bye: Request | None) -> None: ...

        async def _leg_reinvite(self, leg: OutboundLeg, m: ReinviteReceived) -> None: ...

        async def _leg_request(self, leg: OutboundLeg, event: RequestArrived) -> None: ...

        async def _offer_to(self, operator: str) -> None: ...

        async def _on_ack_missing(self, m: CallerAckMissing) -> None: ...

        def _on_caller_ack(self, ack: Request) -> None: ...

        async def _on_caller_cancelled(self, m: CallerCancelled) -> None: ...

        async def _on_caller_event(self, m: CallerEvent) -> None: ...

        async def _on_caller_request(self, m: CallerRequest) -> None: ...

        async def _on_digit(self, event: DigitReceived) -> None: ...

        async def _on_ivr_timer(self) -> None: ...

        async def _on_leg_event(self, leg: OutboundLeg, event: TransactionEvent) -> None: ...

        async def _on_leg_request(self, m: LegRequest) -> None: ...

        async def _on_leg_session_event(self, leg: OutboundLeg, event: SessionEvent) -> None: ...

        async def _on_media_check(self) -> None: ...

        async def _on_options_result(self, m: OptionsResult) -> None: ...

        async def _on_overflow(self) -> None: ...

        async def _on_prompt_done(self, sequence: int) -> None: ...

        async def _on_queued(self, position: int, requeued: bool) -> None: ...

        async def _start_ivr(self) -> None: ...

        async def end(self, status: Status, reason: str, *, bye_caller: bool) -> None: ...

        async def hangup_leg(self, leg: OutboundLeg, why: str) -> None: ...

    # -- views -------------------------------------------------------------------------


def outbound_request(
    centre: Signalling,
    method: str,
    *,
    request_uri: str,
    to_uri: str,
    from_user: str,
    display: str = "",
    peer: Peer,
    headers: list[tuple[str, str]] | tuple[()] = (),
    body: bytes = b"",
    content_type: str | None = None,
) -> Request:
    """A request the centre originates outside any dialog (INVITE to an
    operator, an agency, a supervisor or a citizen; OPTIONS to qualify a
    phone): our Via with a fresh branch and rport, a new Call-ID and From tag,
    our Contact, Allow and User-Agent, then `headers`."""
    advertise = centre.config.sip.advertise
    h = Headers()
    h.add("Via", centre.endpoint.via(peer.transport))
    h.add("Max-Forwards", "70")
    name = f'"{_quote(display)}" ' if display else ""
    h.add("From", f"{name}<sip:{from_user}@{advertise}>;tag={new_tag()}")
    h.add("To", to_uri)
    h.add("Call-ID", new_call_id(advertise))
    h.add("CSeq", f"1 {method}")
    if method == "INVITE":
        h.add("Contact", centre.endpoint.contact("112", peer.transport))
        h.add("Allow", ALLOW)
    h.add("User-Agent", centre.user_agent)
    for k, v in headers:
        h.add(k, v)
    if content_type is not None:
        h.add("Content-Type", content_type)
    return Request(method, request_uri, h, body)


def _offer_failure(status: int) -> acd_mod.OfferFailure:
    if status in (486, 600, 603):
        return acd_mod.OfferFailure.BUSY
    if status in (408, 480, 404, 410, 503):
        return acd_mod.OfferFailure.UNREACHABLE
    if 400 <= status < 500:
        return acd_mod.OfferFailure.REJECTED
    return acd_mod.OfferFailure.ERROR


def _abnormal_bye(request: Request) -> bool:
    """A BYE whose Reason says the phone failed, not that the operator hung up."""
    for value in request.headers.get_all("Reason"):
        text = value.lower().replace(" ", "")
        if text.startswith("q.850;cause="):
            cause = text.split("cause=", 1)[1].split(";", 1)[0]
            if cause.isdigit() and int(cause) not in (16, 31):
                return True
        if text.startswith("sip;cause="):
            cause = text.split("cause=", 1)[1].split(";", 1)[0]
            if cause.isdigit() and int(cause) >= 400:
                return True
    return False


def _ivr_event_kind(action: DigitAccepted | DigitRejected | InputTimedOut) -> str:
    if isinstance(action, DigitAccepted):
        return "ivr_digit"
    if isinstance(action, DigitRejected):
        return "ivr_invalid_digit"
    return "ivr_timeout"


def _ivr_detail(action: DigitAccepted | DigitRejected | InputTimedOut) -> dict[str, object]:
    if isinstance(action, DigitAccepted):
        return {"digit": action.digit, "meaning": action.meaning}
    if isinstance(action, DigitRejected):
        return {"digit": action.digit, "tries_used": action.tries_used}
    return {"tries_used": action.tries_used}


def _quote(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')
