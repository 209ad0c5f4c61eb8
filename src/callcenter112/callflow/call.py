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
may use of the centre is `callflow.services.CallServices[EmergencyCall]`.

Layout: `EmergencyCall` is this module's actor loop, arrival and answer,
console commands and the end, on top of `call_base.CallBase` (the call's
state and plumbing) and three parts of the same call: `menu.MenuPart` (IVR
and queue), `offers.OfferPart` (outbound legs, offers to operators) and
`peers.PeerPart` (the peers' requests, hold, media liveness). Method names
are the call's own; a part calls another only through `self`.

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
OPTIONS; no RTP and no answer within `sip.session.PROBE_TIMEOUT_S` (the session
reports `ProbeUnanswered` on the timer the call keeps for it) means the phone is
gone (the caller goes back to the head of the queue and hears the
`operator_lost` prompt). A silent caller is probed too, but only a 481 (the
dialog is gone) ends their call: the system never hangs up on a caller
lightly.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

from ..counters import Counted
from ..incidents import LegRole, Status
from ..net.rtp_transport import PortsExhausted
from ..offer_answer import Negotiated, answer_offer, make_offer
from ..sdp import SdpError, SessionDescription
from ..sip.events import (
    TransactionEvent,
)
from ..sip.message import Response
from ..sip.session import (
    Answered,
    State,
)
from .call_base import (
    ALLOW,
    MEDIA_CHECK_S,
    SDP,
    outbound_request,
)
from .guards import unrecorded_file  # issue 11
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
    CallerSpeech,
    Command,
    Digit,
    IvrTimer,
    LegEvent,
    LegRequest,
    MediaCheck,
    Message,
    OptionsResult,
    PromptDone,
    SessionTimer,
    Shutdown,
)
from .legs import (
    OutboundLeg,
    quality,
)
from .location import CallLocation  # issue 13
from .menu import MenuPart
from .offers import OfferPart
from .peers import PeerPart
from .phases import Happening, Phase
from .screening import END_CALL, ended_by_operator

__all__ = ["ALLOW", "SDP", "EmergencyCall", "OutboundLeg", "outbound_request"]


class EmergencyCall(
    MenuPart["EmergencyCall"], OfferPart["EmergencyCall"], PeerPart["EmergencyCall"]
):
    """One caller's emergency, from INVITE to wrap-up (see the module docstring).

    The state and plumbing are `CallBase`'s; the IVR and queue, the offers and
    legs, and the peers' requests are the parts' (menu.py, offers.py, peers.py)."""

    # -- the actor loop ----------------------------------------------------------------

    async def run(self) -> None:
        try:
            await self._arrive()
            self._drive_session_timers()
            while not self.done:
                message = await self.inbox.get()
                try:
                    await self._handle(message)
                except Exception:
                    self.log.exception("call_step_failed", message=type(message).__name__)
                self._drive_session_timers()
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
        elif isinstance(m, SessionTimer):
            await self._on_session_timer(m)
        elif isinstance(m, Shutdown):
            await self.end(Status.INTERRUPTED, "server_stopping", bye_caller=True)
        elif isinstance(m, Command) and m.name == END_CALL:  # issue 12: dispose and end
            await ended_by_operator(self, m)
        elif isinstance(m, Command):
            await self._on_command(m)
        elif isinstance(m, CallerSpeech) and self.ivr is not None and self.phase is Phase.IVR:
            await self._run_ivr(self.ivr.speech(self._now()))  # issue 12: not silent

    async def _on_session_timer(self, m: SessionTimer) -> None:
        session = self.caller_session if m.leg is None else m.leg.session
        if session is None:
            return
        self._session_deadlines.pop(f"session:{id(session)}", None)
        for event in session.handle_timer(self._now()):
            if m.leg is None:
                await self._on_caller_session_event(event)
            else:
                await self._on_leg_session_event(m.leg, event)

    # -- 1-2: arrival and answer ---------------------------------------------------

    async def _arrive(self) -> None:
        centre = self.centre
        invite = self.caller.invite
        # Issue 13: the SDP out of a multipart body (PIDF-LO beside it); never a 415.
        sdp_body, self.location = CallLocation.arrive(invite, self.caller_number, centre)
        try:
            offer = SessionDescription.parse(sdp_body) if sdp_body else None
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
        if incident_id is not None and self.location is not None:  # issue 13: fixes, references
            centre.spawn_write(self.location.attach(incident_id, self.journal, now=answered_wall))
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
