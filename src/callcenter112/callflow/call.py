"""One emergency call from arrival to the end: the per-call coordinator.

An `EmergencyCall` joins the pieces for one caller — the caller's INVITE
session, the media legs, the IVR menu, the queue (through the centre's ACD
desk), the INVITEs to operators (and agencies, supervisors), the incident
record and its recording — following DESIGN §2:

1. **Arrival**: the incident is written and committed before the call is
   answered (the 100 Trying has already gone out from the transaction layer).
2. **Answer**: 200 OK with our SDP; the recording starts now, so the IVR and
   the queue are on it too.
3. **IVR**: `IvrMenu` decides, this class plays and times.
4. **Queue**: the ACD orders callers and picks operators; the caller hears
   "please hold", their position every N seconds and comfort audio.
5. **Offer**: an INVITE to the operator's registered contact carrying the
   incident id; ring timeout, busy, unreachable → the ACD tries the next one.
6. **Talk**: caller and operator relayed through the server, recorded stereo;
   hold by re-INVITE plays hold audio to the caller.
8. **End**: either side's BYE ends the other leg, closes and seals the
   recording and writes the final timestamps; the operator goes to wrap-up.

Layers: every leg's SIP (ACK, CANCEL, BYE, re-INVITE, the digest retry, the
OPTIONS probe) is an `InviteSession` (sip/session.py) — this module decides
what to answer, never how it goes on the wire. The call's phase changes only
through `callflow.phases.PHASE_TABLE` (`change_phase`), every incident and
recording write goes through `callflow.journal.Journal`, and what the call
may use of the centre is `callflow.services.CallServices`.

Concurrency: each call is an actor. Everything that happens to it — SIP
requests and responses, digits, prompt ends, timers, ACD decisions, console
commands — is posted to its inbox and handled one at a time by `run()`, so a
call never races itself and can await durable store writes between steps.
One call failing is logged with its ids and cleaned up; it never touches its
siblings. The system never hangs up on a caller except when the call really
ended (the caller hung up, the operator finished it, or the carrier side
failed); an operator whose phone dies sends the caller back to the head of
the queue.

The end (`end`) releases the queue place and every other leg first, then
seals the recording, then closes the incident — each step guarded, the
incident closed whatever failed before. Whatever still reaches the call
after that (a 200 OK that crossed our CANCEL, a BYE that crossed ours, a
console command) is settled at once by `post`: the late 2xx is ACKed and
BYEd (RFC 3261 §9.1, RFC 6026 §7.2) so no operator's phone is left in a
ghost call, requests are answered, commands fail.

An operator leg that goes silent while talking is probed with an in-dialog
OPTIONS; no RTP and no answer within `PROBE_TIMEOUT_S` means the phone is
gone (the caller goes back to the head of the queue and hears the
`operator_lost` prompt). A silent caller is probed too, but only a 481 (the
dialog is gone) ends their call: the system never hangs up on a caller
lightly.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Callable, Iterator

from .. import acd as acd_mod
from ..counters import Counted
from ..incidents import Category, LegRole, Status
from ..ivr import (
    DigitAccepted,
    DigitRejected,
    InputTimedOut,
    IvrAction,
    IvrFinished,
    IvrMenu,
    PlayPrompts,
    StopPlayback,
)
from ..logs import get_logger
from ..media.g711 import Codec
from ..media.player import Player, PromptFinished
from ..media.prompts import Prompt
from ..net.rtp_transport import PortsExhausted
from ..offer_answer import Negotiated, accept_answer, answer_offer, make_offer
from ..rtp.dtmf import digit_from_info
from ..rtp.events import DigitReceived
from ..sdp import SdpError, SessionDescription
from ..sip.dialog import no_such_dialog
from ..sip.events import (
    ResponseReceived,
    TransactionEvent,
)
from ..sip.message import Headers, Request, Response, new_branch, new_call_id, new_tag
from ..sip.peer import Peer
from ..sip.session import (
    Answered,
    ChallengeAnswered,
    EndReason,
    Failed,
    HungUp,
    InviteSession,
    LocalParty,
    ProbeAnswered,
    ProbeUnanswered,
    ReinviteReceived,
    RequestArrived,
    Ringing,
    SessionEvent,
    State,
)
from ..sip.transaction import TransactionKey
from .guards import (  # issue 11
    LegSrtp,
    hold_unverified_callbacks,
    leg_headers,
    operator_srtp,
    unrecorded_file,
)
from .handoff_state import HandoffState
from .inbox import (
    AcdAnnounce,
    AcdCancel,
    AcdOffer,
    AcdOverflow,
    AcdQueued,
    CallerAck,
    CallerAckMissing,
    CallerCancelled,
    CallerEvent,
    CallerRequest,
    Command,
    Digit,
    IvrTimer,
    LegEvent,
    LegRequest,
    MediaCheck,
    Message,
    OptionsResult,
    ProbeExpired,
    PromptDone,
    Shutdown,
)
from .journal import Journal, OpenRecording
from .legs import (
    CallerSide,
    OutboundLeg,
    caller_identity,
    dialled_number,
    quality,
    start_session,
    trunk_credentials,
)
from .phases import CONNECTED_PHASES, Happening, Phase, PhaseError, next_phase
from .services import CallServices

__all__ = ["EmergencyCall", "OutboundLeg"]

log = get_logger("calls")

ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, REFER, NOTIFY, UPDATE"
SDP = "application/sdp"
MEDIA_CHECK_S = 2.0
# A silent leg is probed with an in-dialog OPTIONS. Its transaction would only
# time out after Timer F = 64*T1 = 32 s (RFC 3261 §17.1.2.2); a phone that has
# not answered four transmissions (0, 0.5, 1.5, 3.5 s with T1 = 0.5 s, §17.1.2.2
# Timer E) is taken as gone, so a caller whose operator's phone died hears the
# "operator lost" prompt within seconds, not after half a minute of silence.
PROBE_TIMEOUT_S = 4.0
_call_numbers = itertools.count(1)


# --------------------------------------------------------------------------- the call


class EmergencyCall:
    """One caller's emergency, from INVITE to wrap-up (see the module docstring)."""

    def __init__(
        self,
        centre: CallServices,
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
            local=LocalParty(
                via_host=centre.config.sip.advertise,
                via_port=centre.endpoint.port,
                contact=centre.endpoint.contact("112", peer.transport),
                user_agent=centre.user_agent,
            ),
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

    def _cancel_timer(self, name: str) -> None:
        handle = self._timers.pop(name, None)
        if handle is not None:
            handle.cancel()

    @property
    def incident_id(self) -> str | None:
        return self.journal.incident_id

    # -- the actor loop ----------------------------------------------------------------

    async def run(self) -> None:
        try:
            await self._arrive()
            while not self.done:
                message = await self.inbox.get()
                try:
                    await self._handle(message)
                except Exception:
                    self.log.exception("call_step_failed", message=type(message).__name__)
        except asyncio.CancelledError:
            await self.end(Status.INTERRUPTED, "server_stopping", bye_caller=True)
            raise
        except Exception:
            self.log.exception("call_failed")
            with contextlib.suppress(Exception):
                await self.end(Status.INTERRUPTED, "internal_error", bye_caller=True)
        finally:
            if self.phase is not Phase.ENDED:
                self.change_phase(Happening.ENDED, publish=False)
            for name in list(self._timers):
                self._cancel_timer(name)
            while not self.inbox.empty():
                self._after_end(self.inbox.get_nowait())
            self.centre.call_finished(self)

    # -- after the end ---------------------------------------------------------------

    def _after_end(self, m: Message) -> None:
        """What still reaches an ended call is settled so that no peer is left hanging:
        a 2xx that crossed our CANCEL or BYE is ACKed and hung up (RFC 3261 §9.1,
        RFC 6026 §7.2), requests are answered, console commands fail."""
        try:
            if isinstance(m, LegEvent):
                self._late_leg_event(m.leg, m.event)
            elif isinstance(m, CallerRequest):
                self.caller_session.receive_request(m.request, m.server_key, self._now())
            elif isinstance(m, CallerEvent):
                self.caller_session.receive(m.event, self._now())
            elif isinstance(m, LegRequest):
                status = 200 if m.request.method == "BYE" else 481
                self.centre.endpoint.respond(m.server_key, Response.for_request(m.request, status))
            elif isinstance(m, Command) and not m.done.done():
                m.done.set_exception(RuntimeError("the call has ended"))
        except Exception:
            self.log.exception("after_end_failed", message=type(m).__name__)

    def _late_leg_event(self, leg: OutboundLeg, event: TransactionEvent) -> None:
        # The session settles it: a 2xx that crossed our CANCEL is ACKed and
        # hung up by the session itself (RFC 3261 §9.1, RFC 6026 §7.2); one
        # that answers a leg nobody cancelled yet is hung up here.
        session = leg.session
        if session is not None:
            was = session.state
            events = session.receive(event, self._now())
            answered = any(isinstance(e, Answered) for e in events)
            if answered:
                session.hangup("call ended")
            if answered or (was is State.CANCELLING and session.state is State.TERMINATING):
                self.log.info("late_answer_hung_up", to=leg.name)
                leg.state = "ended"
        if leg.media in self.centre.media.legs:
            leg.media.close()

    async def _handle(self, m: Message) -> None:
        if isinstance(m, Digit):
            await self._on_digit(m.event)
        elif isinstance(m, PromptDone):
            await self._on_prompt_done(m.sequence)
        elif isinstance(m, IvrTimer):
            await self._on_ivr_timer()
        elif isinstance(m, CallerRequest):
            await self._on_caller_request(m)
        elif isinstance(m, CallerEvent):
            await self._on_caller_event(m)
        elif isinstance(m, CallerAck):
            self._on_caller_ack(m.request)
        elif isinstance(m, CallerCancelled):
            await self._on_caller_cancelled(m)
        elif isinstance(m, CallerAckMissing):
            await self._on_ack_missing(m)
        elif isinstance(m, LegEvent):
            await self._on_leg_event(m.leg, m.event)
        elif isinstance(m, LegRequest):
            await self._on_leg_request(m)
        elif isinstance(m, AcdOffer):
            await self._offer_to(m.operator)
        elif isinstance(m, AcdCancel):
            await self._cancel_offer(m.operator, m.reason)
        elif isinstance(m, AcdQueued):
            await self._on_queued(m.position, m.requeued)
        elif isinstance(m, AcdAnnounce):
            self._announce_position(m.position)
        elif isinstance(m, AcdOverflow):
            await self._on_overflow()
        elif isinstance(m, MediaCheck):
            await self._on_media_check()
        elif isinstance(m, OptionsResult):
            await self._on_options_result(m)
        elif isinstance(m, ProbeExpired):
            await self._on_probe_expired(m)
        elif isinstance(m, Shutdown):
            await self.end(Status.INTERRUPTED, "server_stopping", bye_caller=True)
        elif isinstance(m, Command):
            await self._on_command(m)

    # -- 1-2: arrival and answer ---------------------------------------------------

    async def _arrive(self) -> None:
        centre = self.centre
        invite = self.caller.invite
        try:
            offer = SessionDescription.parse(invite.body) if invite.body else None
        except SdpError as exc:
            self._reject_invite(exc.status_hint, f"SDP: {exc.reason}")
            self.change_phase(Happening.REFUSED, publish=False)
            return
        try:
            media = await centre.media.open_leg(f"{self.ref}/caller")
        except PortsExhausted:
            centre.metrics[Counted.REJECTED_NO_PORTS] += 1
            self._reject_invite(503, "no RTP ports", retry_after=True)
            centre.spawn_write(centre.record_refused(invite, self.trunk, "no_rtp_ports"))
            self.change_phase(Happening.REFUSED, publish=False)
            return
        self.caller.media = media
        try:
            if offer is not None:
                negotiated = answer_offer(
                    offer,
                    local_address=centre.config.sip.advertise,
                    local_port=media.local_port,
                    session_id=self.number,
                    session_version=self.caller.session_version,
                )
            else:
                negotiated = None
        except SdpError as exc:
            media.close()
            self._reject_invite(exc.status_hint, exc.reason)
            self.change_phase(Happening.REFUSED, publish=False)
            return

        # The incident exists, durably, before the caller is answered.
        incident_id = await self.journal.create_incident(
            caller=self.caller_number,
            caller_name=self.caller_name,
            arrived_at=self.arrived_wall,
            trunk=self.trunk,
            dialled=self.dialled,
            call_id=invite.call_id,
            language=self.language,
        )
        if incident_id is not None:
            self.ref = incident_id
            self.log = self.journal.log
        centre.call_identified(self)

        if negotiated is not None:
            self._apply_caller_session(negotiated)
            answer = negotiated.answer
            assert answer is not None
            body = answer.serialize()
        else:
            # Late offer (RFC 3261 §13.2.1): we offer in the 200, they answer in the ACK.
            sdp = make_offer(
                local_address=centre.config.sip.advertise,
                local_port=media.local_port,
                session_id=self.number,
                session_version=self.caller.session_version,
            )
            self._late_offer = sdp
            body = sdp.serialize()
        if self.caller_session.answer(body):
            # The caller gave up (CANCEL crossed us): record it, nothing to answer.
            await self.end(Status.ABANDONED, "cancelled_before_answer", bye_caller=False)
            return
        self.caller.dialog = self.caller_session.dialog
        assert self.caller.dialog is not None
        centre.register_dialog(self.caller.dialog, self, None)
        self.caller.answered = True
        answered_wall = self._wall()
        await self._start_recording()
        self.caller.leg_id = await self.journal.add_leg(
            role=LegRole.CALLER,
            call_id=invite.call_id,
            peer=str(self.caller.peer),
            codec=media.codec.name,
            started_at=answered_wall,
        )
        await self.journal.stamp(answered_at=answered_wall)
        self._arm("media", self._now() + MEDIA_CHECK_S, MediaCheck())
        await self._start_ivr()

    def _reject_invite(self, status: int, why: str, *, retry_after: bool = False) -> None:
        headers = [("Warning", f'399 callcenter112 "{why}"')]
        if retry_after:
            headers.append(("Retry-After", str(self.centre.config.sip.retry_after_s)))
        if self.caller_session.state is State.INCOMING:
            self.caller_session.reject(status, headers=headers)
        self.log.warning("call_rejected", status=status, why=why)

    def _apply_caller_session(self, negotiated: Negotiated) -> None:
        media = self.caller.media
        assert media is not None
        self.caller.negotiated = negotiated
        remote = (
            (negotiated.remote_address, negotiated.remote_port) if negotiated.should_send else None
        )
        media.configure(
            codec=negotiated.codec,
            payload_type=negotiated.payload_type,
            dtmf_pt=negotiated.dtmf_pt,
            remote=remote,
        )
        media.on_digit = lambda ev: self.post(Digit(ev))
        # Trunks that send no RFC 4733 events: listen for tones in the audio.
        media.enable_inband_dtmf(negotiated.dtmf_pt is None)

    async def _start_recording(self) -> None:
        media = self.caller.media
        if media is None or not self.centre.config.recordings.enabled:
            return
        self.recording = await self.journal.open_recording(
            media.codec,
            unrecorded_name=unrecorded_file(self.caller.invite.call_id),  # issue 11
        )
        if self.recording is not None:
            media.attach_recorder(self.recording.recorder)

    # -- 3: IVR ----------------------------------------------------------------------

    async def _start_ivr(self) -> None:
        self.change_phase(Happening.ANSWERED)
        self.ivr = IvrMenu(self.centre.ivr_settings)
        await self._run_ivr(self.ivr.start(self._now()))

    async def _run_ivr(self, actions: list[IvrAction]) -> None:
        for action in actions:
            if isinstance(action, PlayPrompts):
                player = self._ensure_player()
                prompts = [
                    self.centre.prompts.get(name, action.language, player.codec)
                    for name in action.names
                ]
                seq = player.play(*prompts)
                self._ivr_playbacks[seq] = action.playback
            elif isinstance(action, StopPlayback):
                if self.player is not None:
                    self.player.barge_in()
            elif isinstance(action, DigitAccepted | DigitRejected | InputTimedOut):
                await self.journal.event(_ivr_event_kind(action), _ivr_detail(action))
            elif isinstance(action, IvrFinished):
                await self._ivr_finished(action)
        if self.ivr is not None and self.ivr.deadline is not None and not self.ivr.finished:
            self._arm("ivr", self.ivr.deadline, IvrTimer())
        else:
            self._cancel_timer("ivr")

    def _ensure_player(self) -> Player:
        media = self.caller.media
        assert media is not None
        if self.player is None or self.player.codec is not media.codec:
            self.player = Player(media.codec, on_finished=self._on_player_finished)
        if media.mode != "play" or media.player is not self.player:
            media.play(self.player)
        return self.player

    def _on_player_finished(self, event: PromptFinished) -> None:
        self.post(PromptDone(event.sequence))

    async def _on_digit(self, event: DigitReceived) -> None:
        self.log.info("digit", digit=event.digit, source=event.source)
        if self.ivr is not None and not self.ivr.finished and self.phase is Phase.IVR:
            try:
                actions = self.ivr.digit(event.digit, self._now())
            except Exception as exc:  # noqa: BLE001 - a digit must never break the call
                self.log.warning("ivr_digit_refused", digit=event.digit, error=str(exc))
                return
            await self._run_ivr(actions)
        elif self.phase in (Phase.QUEUE, Phase.TALKING):
            await self.journal.event("digit", {"digit": event.digit, "source": event.source})

    async def _on_prompt_done(self, sequence: int) -> None:
        playback = self._ivr_playbacks.pop(sequence, None)
        if playback is not None and self.ivr is not None and not self.ivr.finished:
            await self._run_ivr(self.ivr.prompt_finished(self._now(), playback))

    async def _on_ivr_timer(self) -> None:
        if self.ivr is not None and not self.ivr.finished:
            await self._run_ivr(self.ivr.timer_fired(self._now()))

    async def _ivr_finished(self, done: IvrFinished) -> None:
        self.category = done.category
        self.language = done.language
        await self.journal.stamp(
            ivr_done_at=self._wall(),
            category=Category(done.category),
            language=done.language,
            event="ivr_done",
            detail={"category": done.category, "reason": done.reason, "digits": done.digits},
        )
        if self.phase is not Phase.IVR:
            return
        self.ivr_outcome = done
        self.change_phase(Happening.IVR_FINISHED)
        self.centre.desk.enqueue(self.ref, self.category, self.arrived_mono)

    # -- 4: queue ------------------------------------------------------------------------

    async def _on_queued(self, position: int, requeued: bool) -> None:
        self.log.info("queued", category=self.category, position=position, requeued=requeued)
        if self.phase is not Phase.TALKING:
            self.change_phase(Happening.QUEUED)
        if not requeued:
            await self.journal.stamp(
                queued_at=self._wall(), event="queued", detail={"position": position}
            )
        else:
            await self.journal.event("requeued", {"position": position})
        if self.caller.media is None:
            return
        lang = self.language
        player = self._ensure_player()
        codec = player.codec
        prompts = []
        if requeued:
            prompts.append(self.centre.prompts.get("operator_lost", lang, codec))
        elif self.ivr_outcome is not None and self.ivr_outcome.reason == "no_input":
            prompts.append(self.centre.prompts.get("silent", lang, codec))
        if self.centre.desk.operators_free() == 0 and not requeued:
            prompts.append(self.centre.prompts.get("all_busy", lang, codec))
        else:
            prompts.append(self.centre.prompts.get("please_hold", lang, codec))
        prompts += self._position_prompts(position)
        player.play(*prompts)
        player.loop(self.centre.prompts.get("hold_music", lang, codec))

    def _position_prompts(self, position: int) -> list[Prompt]:
        player = self.player
        assert player is not None
        prompts = self.centre.prompts
        try:
            return [
                prompts.get("position", self.language, player.codec),
                prompts.number(position, self.language, player.codec),
            ]
        except Exception:  # noqa: BLE001 - a position beyond the number prompts: skip it
            return []

    def _announce_position(self, position: int) -> None:
        if self.phase is not Phase.QUEUE or self.player is None:
            return
        self.player.play(*self._position_prompts(position))

    async def _on_overflow(self) -> None:
        await self.journal.event("overflow", {"to": self.centre.config.queue.overflow_to})
        handoff = self.centre.handoff
        if handoff is not None:
            await handoff.overflow(self)
        else:
            # No overflow destination after all: keep the caller, back in the queue.
            self.centre.desk.enqueue(self.ref, self.category, self.arrived_mono, front=True)

    # -- 5: offers to operators ------------------------------------------------------

    async def _offer_to(self, operator: str) -> None:
        centre = self.centre
        if self.done or self.caller.media is None:
            centre.desk.offer_failed(self.ref, operator, acd_mod.OfferFailure.ERROR)
            return
        bindings = centre.registrar.contacts(operator, reachable_only=True)
        if not bindings:
            centre.desk.offer_failed(self.ref, operator, acd_mod.OfferFailure.UNREACHABLE)
            return
        binding = bindings[0]
        try:
            leg = await self.open_outbound(
                role=LegRole.OPERATOR,
                name=operator,
                request_uri=binding.contact,
                to_uri=f"<sip:{operator}@{centre.config.sip.advertise}>",
                from_user=self.caller_number if self.caller_number != "anonymous" else "anonymous",
                display=f"112 {self.category.upper()} {self.caller_number}",
                peer=binding.target,
                purpose="offer",
            )
        except Exception as exc:  # noqa: BLE001 - no ports, a send error: next operator
            self.log.error("offer_not_sent", operator=operator, error=repr(exc))
            centre.desk.offer_failed(self.ref, operator, acd_mod.OfferFailure.ERROR)
            return
        self.offers[operator] = leg
        await self.journal.stamp(
            offered_at=self._wall(), event="offered", detail={"operator": operator}
        )
        centre.publish("call_offered", operator=operator, incident_id=self.incident_id)

    async def open_outbound(
        self,
        *,
        role: LegRole,
        name: str,
        request_uri: str,
        to_uri: str,
        from_user: str,
        display: str,
        peer: Peer,
        purpose: str,
        extra_headers: list[tuple[str, str]] | None = None,
        trunk: str | None = None,
    ) -> OutboundLeg:
        centre = self.centre
        advertise = centre.config.sip.advertise
        media = await centre.media.open_leg(f"{self.ref}/{role.value}:{name}")
        prefer = self.caller.media.codec if self.caller.media is not None else Codec.PCMA
        codecs = (prefer, Codec.PCMU if prefer is Codec.PCMA else Codec.PCMA)
        offer = make_offer(
            local_address=advertise,
            local_port=media.local_port,
            codecs=codecs,
            session_id=self.number * 1000 + len(self.other_legs) + len(self.offers) + 1,
            session_version=1,
        )
        srtp = None  # issue 11: SRTP on operator legs, per [[operator]] srtp
        if role is LegRole.OPERATOR:
            srtp, offer = LegSrtp.for_offer(operator_srtp(centre.config, name), offer)
        headers = list(extra_headers or [])
        if self.incident_id is not None:
            headers += [
                ("X-Incident-ID", self.incident_id),
                (
                    "Call-Info",
                    f"<{centre.console_url}/console?incident={self.incident_id}>;purpose=info",
                ),
            ]
        headers.append(("Subject", f"112 {self.category}"))
        headers = leg_headers(role, headers)  # issue 11: nothing internal to outside parties
        invite = outbound_request(
            centre,
            "INVITE",
            request_uri=request_uri,
            to_uri=to_uri,
            from_user=from_user,
            display=display,
            peer=peer,
            headers=headers,
            body=offer.serialize(),
            content_type=SDP,
        )
        leg = OutboundLeg(
            role=role,
            name=name,
            invite=invite,
            peer=peer,
            media=media,
            offer=offer,
            purpose=purpose,
            trunk=trunk,
            srtp=srtp,
        )
        self._legs.append(leg)
        start_session(
            leg,
            centre.endpoint,
            advertise=advertise,
            user_agent=centre.user_agent,
            on_event=self._leg_handler(leg),
            credentials=trunk_credentials(centre.config, trunk),
        )
        self.log.info("invite_sent", role=role.value, to=name, purpose=purpose)
        return leg

    async def _cancel_offer(self, operator: str, reason: str) -> None:
        leg = self.offers.pop(operator, None)
        if leg is None:
            return
        leg.cancelled = True
        if leg.session is not None:
            leg.session.hangup()  # CANCEL (a 2xx crossing it is the session's)
        # A cancelled offer never carries media, even if a 200 crosses the CANCEL.
        if leg.media in self.centre.media.legs:
            leg.media.close()
        await self.journal.event("offer_cancelled", {"operator": operator, "reason": reason})
        self.centre.publish("call_offer_cancelled", operator=operator, incident_id=self.incident_id)

    async def _on_leg_event(self, leg: OutboundLeg, event: TransactionEvent) -> None:
        session = leg.session
        if session is None:
            return
        was = session.state
        events = session.receive(event, self._now())
        if was is State.CANCELLING and session.state is State.TERMINATING:
            # A 200 crossed our CANCEL: the session ACKs and hangs up. If the
            # ACD took that answer, the operator is free again.
            self.log.info("crossed_answer_hung_up", to=leg.name)
            if leg.role is LegRole.OPERATOR and leg.purpose == "offer" and leg.acd_answer:
                self.centre.desk.call_ended(leg.name, self.incident_id)
        for session_event in events:
            await self._on_leg_session_event(leg, session_event)

    async def _on_leg_session_event(self, leg: OutboundLeg, event: SessionEvent) -> None:
        if isinstance(event, Ringing):
            if leg.state == "calling":
                leg.state = "ringing"
                if leg.role is LegRole.OPERATOR and not leg.cancelled:
                    await self.journal.event("ringing", {"operator": leg.name})
        elif isinstance(event, Answered):
            await self._on_leg_answered(leg, event.response)
        elif isinstance(event, Failed):
            if leg.state != "answered":
                reason = event.response.reason if event.response else "no answer from the phone"
                await self._leg_failed(leg, event.status, reason)
        elif isinstance(event, ChallengeAnswered):
            self.log.info("trunk_challenge_answered", trunk=leg.trunk, status=event.status)
        elif isinstance(event, ProbeAnswered):
            self.post(OptionsResult(leg, alive=event.status not in (408, 481)))
        elif isinstance(event, ProbeUnanswered):
            self.post(OptionsResult(leg, alive=False))
        elif isinstance(event, HungUp):
            if event.reason is EndReason.REMOTE_BYE:
                await self._leg_hung_up(leg, event.request)
            elif event.reason is EndReason.DIALOG_GONE:
                self.post(OptionsResult(leg, alive=False))
            else:  # our BYE answered, or our CANCEL's 487
                leg.state = "ended"
                self._close_leg_media(leg)
        elif isinstance(event, ReinviteReceived):
            await self._leg_reinvite(leg, event)
        elif isinstance(event, RequestArrived):
            await self._leg_request(leg, event)

    async def _on_leg_answered(self, leg: OutboundLeg, response: Response) -> None:
        centre = self.centre
        assert leg.session is not None and leg.session.dialog is not None
        leg.dialog = leg.session.dialog
        centre.register_dialog(leg.dialog, self, leg)
        crossed = leg.state == "ended" or leg.cancelled
        leg.state = "answered"
        leg.answered_at = self._now()
        is_offer = leg.role is LegRole.OPERATOR and leg.purpose == "offer"
        if (
            crossed
            or self.done
            or (is_offer and (self.phase is not Phase.QUEUE or leg.acd_answer is False))
        ):
            # The 200 crossed our CANCEL (RFC 3261 §9.1) or the caller left: hang up.
            self.log.info("crossed_answer_hung_up", to=leg.name)
            await self.hangup_leg(leg, "crossed_cancel")
            if is_offer and leg.acd_answer:
                # The ACD took the answer; the call is gone after all: free the operator.
                self.centre.desk.call_ended(leg.name, self.incident_id)
            return
        try:
            answer = SessionDescription.parse(response.body)
            leg.negotiated = accept_answer(leg.offer, answer)
            if leg.srtp is not None:  # issue 11: SRTP keys from the answer
                leg.media.srtp = leg.srtp.for_answer(leg.offer, answer)
        except SdpError as exc:
            self.log.warning("bad_answer_sdp", to=leg.name, error=exc.reason)
            await self.hangup_leg(leg, "bad_sdp")
            await self._leg_failed(leg, 488, "bad SDP answer")
            return
        n = leg.negotiated
        leg.media.configure(
            codec=n.codec,
            payload_type=n.payload_type,
            dtmf_pt=n.dtmf_pt,
            remote=(n.remote_address, n.remote_port) if n.should_send else None,
        )
        if leg.role is LegRole.OPERATOR and leg.purpose == "offer":
            await self._operator_answered(leg)
        elif centre.handoff is not None:
            await centre.handoff.leg_answered(self, leg)

    def _leg_handler(self, leg: OutboundLeg) -> Callable[[TransactionEvent], None]:
        def handler(event: TransactionEvent) -> None:
            if (
                leg.acd_answer is None
                and leg.role is LegRole.OPERATOR
                and leg.purpose == "offer"
                and isinstance(event, ResponseReceived)
                and 200 <= event.response.status < 300
                and event.response.cseq.method == "INVITE"
            ):
                if leg.cancelled or self.done:
                    leg.acd_answer = False
                else:
                    try:
                        self.centre.desk.offer_answered(self.ref, leg.name)
                        leg.acd_answer = True
                    except acd_mod.AcdError:
                        leg.acd_answer = False  # the offer ended before this answer
            self.post(LegEvent(leg, event))

        return handler

    async def _operator_answered(self, leg: OutboundLeg) -> None:
        centre = self.centre
        operator = leg.name
        self.offers.pop(operator, None)
        if not leg.acd_answer:
            try:
                centre.desk.offer_answered(self.ref, operator)
            except acd_mod.AcdError:
                await self.hangup_leg(leg, "offer_over")
                return
        self.operator = operator
        self.operator_leg = leg
        caller_media = self.caller.media
        assert caller_media is not None
        self.change_phase(Happening.OPERATOR_ANSWERED)
        caller_media.relay_with(leg.media)
        self.player = None
        now_wall = self._wall()
        await self.journal.stamp(
            operator_answered_at=now_wall,
            operator=operator,
            event="operator_answered",
            detail={"operator": operator},
        )
        leg.leg_id = await self.journal.add_leg(
            role=LegRole.OPERATOR,
            call_id=leg.invite.call_id,
            peer=f"{operator} {leg.peer}",
            codec=leg.media.codec.name,
            started_at=now_wall,
        )
        centre.publish("call_answered", operator=operator, incident_id=self.incident_id)
        self.log.info("bridged", operator=operator)

    async def _leg_failed(self, leg: OutboundLeg, status: int, reason: str) -> None:
        if leg.state == "ended":
            return
        leg.state = "ended"
        self._close_leg_media(leg)
        if leg.role is LegRole.OPERATOR and leg.purpose == "offer":
            was_offer = self.offers.pop(leg.name, None) is leg
            if leg.cancelled or not was_offer:
                return
            failure = _offer_failure(status)
            await self.journal.event(
                "offer_failed", {"operator": leg.name, "status": status, "reason": reason}
            )
            self.centre.desk.offer_failed(self.ref, leg.name, failure)
        elif self.centre.handoff is not None:
            await self.centre.handoff.leg_failed(self, leg, status, reason)

    def _close_leg_media(self, leg: OutboundLeg) -> None:
        if leg.media is not None and leg.media in self.centre.media.legs:
            leg.media.close()
        if leg.dialog is not None and leg.state == "ended":
            self.centre.unregister_dialog(leg.dialog)

    async def hangup_leg(self, leg: OutboundLeg, why: str) -> None:
        """End an outbound leg: BYE if answered, CANCEL if still ringing."""
        if leg.state == "ended":
            return
        if leg.state != "answered":
            leg.cancelled = True
        if leg.session is not None:
            leg.session.hangup(why)  # BYE when answered, CANCEL while it rings
        leg.state = "ended"
        # Media is released now; late packets go nowhere.
        if leg.media in self.centre.media.legs:
            leg.media.close()
        if leg.dialog is not None:
            self.centre.unregister_dialog(leg.dialog)
        await self._end_leg_record(leg, why)

    async def _end_leg_record(self, leg: OutboundLeg, why: str) -> None:
        await self.journal.end_leg(leg.leg_id, reason=why, quality=quality(leg.media))

    # -- requests from the peers ---------------------------------------------------

    async def _on_caller_request(self, m: CallerRequest) -> None:
        events = self.caller_session.receive_request(m.request, m.server_key, self._now())
        for event in events:
            await self._on_caller_session_event(event)

    async def _on_caller_event(self, m: CallerEvent) -> None:
        for event in self.caller_session.receive(m.event, self._now()):
            await self._on_caller_session_event(event)

    async def _on_caller_session_event(self, event: SessionEvent) -> None:
        if isinstance(event, HungUp):
            if event.reason is EndReason.REMOTE_BYE:
                await self._caller_hung_up()
            elif event.reason is EndReason.DIALOG_GONE:
                self.post(OptionsResult(None, alive=False))
        elif isinstance(event, ReinviteReceived):
            await self._caller_reinvite(event)
        elif isinstance(event, RequestArrived):
            if event.request.method == "INFO":
                await self._caller_info(event)
            else:
                self.caller_session.respond(
                    event.server_key, event.request, 501, headers=[("Allow", ALLOW)]
                )
        elif isinstance(event, ProbeAnswered):
            self.post(OptionsResult(None, alive=True))
        elif isinstance(event, ProbeUnanswered):
            # The system never hangs up on a caller on a guess: only a 481 (the
            # carrier says the dialog is gone) ends the call. A silent caller whose
            # phone or trunk does not answer OPTIONS (pyVoIP does not; a loaded SBC
            # may not) stays on the line and is probed again later.
            self.log.warning("caller_probe_unanswered")
            self.post(OptionsResult(None, alive=True))

    async def _caller_info(self, m: RequestArrived) -> None:
        req = m.request
        event = digit_from_info(req.content_type or "", req.body, now=self._now())
        status = 200 if event is not None or not req.body else 415
        self.caller_session.respond(m.server_key, req, status)
        if event is not None:
            await self._on_digit(event)

    async def _caller_reinvite(self, m: ReinviteReceived) -> None:
        """Hold/resume or a media change from the caller's side."""
        session = self.caller_session
        media = self.caller.media
        if media is None:
            session.reject_reinvite(500)
            return
        try:
            offer = SessionDescription.parse(m.offer)
            self.caller.session_version += 1
            n = answer_offer(
                offer,
                local_address=self.centre.config.sip.advertise,
                local_port=media.local_port,
                session_id=self.number,
                session_version=self.caller.session_version,
                current=self.caller.negotiated.codec if self.caller.negotiated else None,
            )
        except SdpError as exc:
            session.reject_reinvite(exc.status_hint)
            return
        assert n.answer is not None
        was_hold = self.caller.negotiated is not None and self.caller.negotiated.on_hold
        self._apply_caller_session(n)
        session.accept_reinvite(n.answer.serialize())
        if n.on_hold != was_hold:
            await self.journal.event("caller_hold" if n.on_hold else "caller_resume")

    def _on_caller_ack(self, ack: Request) -> None:
        self.caller.acked = True
        self.caller_session.receive_ack(ack)
        if self._late_offer is not None and ack.body:
            media = self.caller.media
            try:
                answer = SessionDescription.parse(ack.body)
                n = accept_answer(self._late_offer, answer)
            except SdpError as exc:
                self.log.warning("late_offer_answer_bad", error=exc.reason)
                return
            self._late_offer = None
            if media is not None:
                self._apply_caller_session(n)

    async def _on_caller_cancelled(self, m: CallerCancelled) -> None:
        if self.caller.answered:
            return
        if self.caller_session.receive_cancel(m.event):  # 487 sent, the session is over
            await self.end(Status.ABANDONED, "caller_cancelled", bye_caller=False)

    async def _on_ack_missing(self, m: CallerAckMissing) -> None:
        if m.event is not None:
            self.caller_session.receive(m.event, self._now())  # the session is taken as up
        media = self.caller.media
        if media is not None and self._now() - media.last_rx < 5.0:
            self.log.warning("ack_missing_but_media_flows")
            return
        await self.end(Status.INTERRUPTED, "no_ack", bye_caller=True)
        # issue 11: never ACKed, no media: maybe spoofed, so a supervisor decides the callback
        await hold_unverified_callbacks(
            self.centre.store, self.incident_id, self.caller.media, at=self.centre.wall()
        )

    async def _caller_hung_up(self) -> None:
        self.caller.ended = True
        if self.phase in CONNECTED_PHASES:
            await self.end(Status.COMPLETED, "caller_hung_up", bye_caller=False)
        else:
            await self.end(Status.ABANDONED, f"caller_hung_up_in_{self.phase}", bye_caller=False)

    async def _on_leg_request(self, m: LegRequest) -> None:
        leg = m.leg
        if leg.session is None:
            self.centre.endpoint.respond(m.server_key, no_such_dialog(m.request))
            return
        for event in leg.session.receive_request(m.request, m.server_key, self._now()):
            await self._on_leg_session_event(leg, event)

    async def _leg_request(self, leg: OutboundLeg, event: RequestArrived) -> None:
        """INFO and REFER from a leg (the session answers keep-alives, BYE, re-INVITE)."""
        request = event.request
        handoff = self.centre.handoff
        if request.method == "REFER" and handoff is not None:
            await handoff.refer(self, leg, LegRequest(leg, request, event.server_key, leg.peer))
        elif request.method == "INFO":
            assert leg.session is not None
            leg.session.respond(event.server_key, request, 200)
        else:
            assert leg.session is not None
            leg.session.respond(event.server_key, request, 501, headers=[("Allow", ALLOW)])

    async def _leg_hung_up(self, leg: OutboundLeg, bye: Request | None) -> None:
        """The leg's phone sent BYE (the session answered it 200)."""
        leg.state = "ended"
        if leg.media in self.centre.media.legs:
            leg.media.close()
        if leg.dialog is not None:
            self.centre.unregister_dialog(leg.dialog)
        await self._end_leg_record(leg, "bye")
        if leg is self.operator_leg:
            handoff = self.centre.handoff
            if bye is not None and _abnormal_bye(bye):
                await self._operator_lost("bye_with_failure_reason")
            elif handoff is not None and await handoff.operator_left(self):
                pass  # a conference or a transfer keeps the caller connected
            else:
                await self.end(Status.COMPLETED, "operator_hung_up", bye_caller=True)
        elif self.centre.handoff is not None:
            await self.centre.handoff.leg_hung_up(self, leg)

    async def _leg_reinvite(self, leg: OutboundLeg, m: ReinviteReceived) -> None:
        """The operator puts the caller on hold (sendonly/inactive) or resumes."""
        session = leg.session
        assert session is not None
        try:
            offer = SessionDescription.parse(m.offer)
            n = answer_offer(
                offer,
                local_address=self.centre.config.sip.advertise,
                local_port=leg.media.local_port,
                session_id=self.number * 1000 + 500,
                session_version=2,
                current=leg.negotiated.codec if leg.negotiated else None,
            )
        except SdpError as exc:
            session.reject_reinvite(exc.status_hint)
            return
        assert n.answer is not None
        leg.negotiated = n
        leg.media.configure(
            codec=n.codec,
            payload_type=n.payload_type,
            dtmf_pt=n.dtmf_pt,
            remote=(n.remote_address, n.remote_port) if n.should_send else None,
        )
        session.accept_reinvite(n.answer.serialize())
        if leg is not self.operator_leg:
            return
        if n.on_hold and self.phase is Phase.TALKING:
            self.change_phase(Happening.OPERATOR_HELD)
            leg.media.idle()
            player = Player(self.caller.media.codec if self.caller.media else Codec.PCMA)
            player.loop(self.centre.prompts.get("hold_music", self.language, player.codec))
            self.player = player
            if self.caller.media is not None:
                self.caller.media.play(player)
            await self.journal.event("hold", {"by": leg.name})
        elif not n.on_hold and self.phase is Phase.HOLD:
            self.change_phase(Happening.OPERATOR_RESUMED)
            self.player = None
            if self.caller.media is not None:
                self.caller.media.relay_with(leg.media)
            await self.journal.event("resume", {"by": leg.name})

    # -- media liveness ---------------------------------------------------------------

    async def _on_media_check(self) -> None:
        if self.done:
            return
        now = self._now()
        timeout = self.centre.config.queue.media_timeout_s
        leg = self.operator_leg
        if (
            leg is not None
            and leg.state == "answered"
            and leg.session is not None
            and not leg.options_pending
            and (
                (self.phase is Phase.TALKING and now - leg.media.last_rx > timeout)
                # On hold a phone may rightly send no RTP: ask it now and then.
                or (self.phase is Phase.HOLD and now - leg.probed_at > timeout)
            )
            # Silence from the operator's phone: is it still there?
            and leg.session.probe(now)
        ):
            leg.options_pending = True
            leg.probe += 1
            leg.probed_at = now
            self._arm("probe", now + PROBE_TIMEOUT_S, ProbeExpired(leg, leg.probe))
        media = self.caller.media
        if (
            media is not None
            and self.caller.dialog is not None
            and not self.caller.options_pending
            and now - media.last_rx > 2 * timeout
            and self.caller_session.probe(now)
        ):
            self.caller.options_pending = True
        if self.caller.answered and not self.caller.acked and now - self.phase_since > 32:
            self.post(CallerAckMissing())
        self._arm("media", now + MEDIA_CHECK_S, MediaCheck())

    async def _on_options_result(self, m: OptionsResult) -> None:
        timeout = self.centre.config.queue.media_timeout_s
        if m.leg is None:
            if not self.caller.options_pending:
                return
            self.caller.options_pending = False
            media = self.caller.media
            if m.alive or (media is not None and self._now() - media.last_rx < timeout):
                if media is not None:
                    media.last_rx = self._now()
                return
            await self.end(Status.INTERRUPTED, "caller_leg_lost", bye_caller=True)
            return
        leg = m.leg
        if not leg.options_pending:
            return  # answered after the probe expired, or a stale answer
        leg.options_pending = False
        if leg is self.operator_leg:
            self._cancel_timer("probe")
        if m.alive or (self.phase is Phase.TALKING and self._now() - leg.media.last_rx < timeout):
            leg.media.last_rx = self._now()  # alive but quiet (muted): check again later
            return
        if leg is self.operator_leg and self.phase in (Phase.TALKING, Phase.HOLD):
            await self._operator_lost("no_rtp_no_options_answer")

    async def _on_probe_expired(self, m: ProbeExpired) -> None:
        leg = m.leg
        if leg is None or leg.probe != m.probe or not leg.options_pending:
            return
        self.log.warning("probe_unanswered", to=leg.name, after_s=PROBE_TIMEOUT_S)
        await self._on_options_result(OptionsResult(leg, alive=False))

    async def _operator_lost(self, why: str) -> None:
        """The operator's phone died mid-call: the caller goes back to the queue's head."""
        leg = self.operator_leg
        operator = self.operator
        self.log.warning("operator_leg_lost", operator=operator, why=why)
        if leg is not None:
            await self.hangup_leg(leg, why)
        self.operator_leg = None
        await self.journal.event("operator_lost", {"operator": operator, "why": why})
        self.change_phase(Happening.OPERATOR_LOST)
        self.player = None
        self.operator = None
        desk = self.centre.desk
        if operator is None or not desk.operator_leg_lost(self.ref, operator):
            # The ACD no longer had the operator on this call: queue the caller
            # at the head anyway, never leave them in silence.
            try:
                desk.enqueue(self.ref, self.category, self.arrived_mono, front=True)
            except acd_mod.AcdError as exc:
                self.log.error("requeue_failed", error=str(exc))

    # -- console commands (issue 7 hooks) ----------------------------------------------

    async def _on_command(self, m: Command) -> None:
        handoff = self.centre.handoff
        try:
            if handoff is None:
                raise RuntimeError("hand-off is not available")
            await handoff.command(self, m.name, m.args)
        except Exception as exc:  # noqa: BLE001 - reported to the console
            if not m.done.done():
                m.done.set_exception(exc)
            return
        if not m.done.done():
            m.done.set_result(None)

    # -- 8: the end -------------------------------------------------------------------

    async def end(self, status: Status, reason: str, *, bye_caller: bool) -> None:
        """The call is over: every leg hung up, the recording sealed, the incident closed.

        In that order (DESIGN §2.8): the other legs are released first so no
        phone keeps ringing or talking into a closed recording; the recording
        is sealed before the incident is closed so the closed incident lists
        it. Each step is guarded on its own, and closing the incident runs
        whatever happened before it: an incident never stays `active` after
        its call.
        """
        if self.phase is Phase.ENDED:
            return
        self.status = status
        self.end_reason = reason
        self.log.info("call_ended", status=status.value, reason=reason, phase=self.phase)
        # Off the wallboard and /metrics at once, not after the awaits below.
        self.change_phase(Happening.ENDED, publish=False)
        for name in list(self._timers):
            self._cancel_timer(name)
        operator = self.operator
        ended_wall = self._wall()
        try:
            await self._release_legs(reason, bye_caller=bye_caller, status=status)
            ended_wall = self._wall()
            with self._guard("seal_recording"):
                await self._finish_recording()
            with self._guard("end_caller_leg"):
                await self._end_caller_leg(ended_wall, reason)
        finally:
            await self.journal.close_incident(status, ended_at=ended_wall, reason=reason)
            self.centre.publish(
                "call_ended",
                operator=operator,
                incident_id=self.incident_id,
                data={"status": status.value, "reason": reason},
            )

    async def _release_legs(self, reason: str, *, bye_caller: bool, status: Status) -> None:
        """Leave the queue, hang up every other leg, BYE (or refuse) the caller;
        one failing step never keeps the next from running."""
        centre = self.centre
        # The queue first: a caller leaving the queue frees any ringing operator.
        # The ACD is asked: its CallerQueued may still be in the inbox.
        with self._guard("leave_queue"):
            if centre.desk.is_queued(self.ref):
                centre.desk.caller_left(self.ref)
        for name, leg in list(self.offers.items()):
            await self.journal.event("offer_cancelled", {"operator": name, "reason": "caller_left"})
            with self._guard("cancel_offer"):
                await self.hangup_leg(leg, "caller_left")
        self.offers.clear()
        if self.operator_leg is not None:
            with self._guard("hang_up_operator"):
                await self.hangup_leg(self.operator_leg, reason)
            if self.operator is not None:
                with self._guard("operator_wrap_up"):
                    centre.desk.call_ended(self.operator, self.incident_id)
        for leg in list(self.other_legs):
            with self._guard("hang_up_leg"):
                await self.hangup_leg(leg, reason)
        for leg in self._legs:
            # Cancelled offers still waiting for their 487, failed hand-offs: no
            # media port may outlive the call.
            if leg.media in centre.media.legs:
                leg.media.close()
        with self._guard("release_caller"):
            if bye_caller and self.caller.answered and not self.caller.ended:
                self.caller_session.hangup(reason)
            elif not self.caller.answered and not bye_caller and status is Status.INTERRUPTED:
                self._reject_invite(503, reason, retry_after=True)
        if self.caller.dialog is not None:
            centre.unregister_dialog(self.caller.dialog)

    @contextlib.contextmanager
    def _guard(self, step: str) -> Iterator[None]:
        """Log a failing clean-up step with the call's ids, and go on with the next."""
        try:
            yield
        except Exception:
            self.log.exception("call_step_failed", step=step)

    async def _end_caller_leg(self, ended_wall: float, reason: str) -> None:
        media = self.caller.media
        if media is None:
            return
        measured = quality(media)
        if media in self.centre.media.legs:
            media.close()
        await self.journal.end_leg(
            self.caller.leg_id, reason=reason, quality=measured, ended_at=ended_wall
        )

    async def _finish_recording(self) -> None:
        recording = self.recording
        if recording is None:
            return
        self.recording = None
        if self.caller.media is not None:
            self.caller.media.attach_recorder(None)
        await self.journal.seal_recording(recording)

    # -- views -------------------------------------------------------------------------


def outbound_request(
    centre: CallServices,
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
    h.add(
        "Via",
        f"SIP/2.0/{peer.transport.upper()} {advertise}:{centre.endpoint.port}"
        f";branch={new_branch()};rport",
    )
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
