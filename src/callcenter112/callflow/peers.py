"""Requests from the peers and media liveness: the caller's and the legs'
in-dialog requests, re-INVITEs (hold), ACK, CANCEL, BYE, and the OPTIONS probe of
silent legs (a part of `EmergencyCall`, see callflow/call_base.py).
"""

from __future__ import annotations

from .. import acd as acd_mod
from ..incidents import Status
from ..media.g711 import Codec
from ..media.player import Player
from ..offer_answer import accept_answer, answer_offer
from ..rtp.dtmf import digit_from_info
from ..sdp import SdpError, SessionDescription
from ..sip.dialog import no_such_dialog
from ..sip.message import Request
from ..sip.session import (
    EndReason,
    HungUp,
    ProbeAnswered,
    ProbeUnanswered,
    ReinviteReceived,
    RequestArrived,
    SessionEvent,
)
from .call_base import (
    ALLOW,
    MEDIA_CHECK_S,
    CallBase,
    CallT,
    _abnormal_bye,
)
from .guards import hold_unverified_callbacks  # issue 11
from .inbox import (
    CallerAckMissing,
    CallerCancelled,
    CallerEvent,
    CallerRequest,
    LegRequest,
    MediaCheck,
    OptionsResult,
)
from .legs import (
    OutboundLeg,
)
from .phases import CONNECTED_PHASES, Happening, Phase

__all__ = ["PeerPart"]


class PeerPart(CallBase[CallT]):
    """Requests from the peers and media liveness: the caller's and the legs'"""

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
            await handoff.refer(
                self.as_call(), leg, LegRequest(leg, request, event.server_key, leg.peer)
            )
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
            elif handoff is not None and await handoff.operator_left(self.as_call()):
                pass  # a conference or a transfer keeps the caller connected
            else:
                await self.end(Status.COMPLETED, "operator_hung_up", bye_caller=True)
        elif self.centre.handoff is not None:
            await self.centre.handoff.leg_hung_up(self.as_call(), leg)

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
            leg.probed_at = now  # the session says when it went unanswered (ProbeUnanswered)
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
        if m.alive or (self.phase is Phase.TALKING and self._now() - leg.media.last_rx < timeout):
            leg.media.last_rx = self._now()  # alive but quiet (muted): check again later
            return
        if leg is self.operator_leg and self.phase in (Phase.TALKING, Phase.HOLD):
            await self._operator_lost("no_rtp_no_options_answer")

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
