"""Outbound legs and offers to operators: dialling, ringing, answer, failure
and hang-up of every leg the call opens (a part of `EmergencyCall`, see callflow/call_base.py).
"""

from __future__ import annotations

from collections.abc import Callable

from .. import acd as acd_mod
from ..incidents import LegRole
from ..media.g711 import Codec
from ..offer_answer import accept_answer, make_offer
from ..sdp import SdpError, SessionDescription
from ..sip.events import (
    ResponseReceived,
    TransactionEvent,
)
from ..sip.message import Response
from ..sip.peer import Peer
from ..sip.session import (
    Answered,
    ChallengeAnswered,
    EndReason,
    Failed,
    HungUp,
    ProbeAnswered,
    ProbeUnanswered,
    ReinviteReceived,
    RequestArrived,
    Ringing,
    SessionEvent,
    State,
)
from .call_base import (
    SDP,
    CallBase,
    CallT,
    _offer_failure,
    outbound_request,
)
from .guards import leg_headers, softphone_offer  # issue 11
from .inbox import (
    LegEvent,
    OptionsResult,
)
from .legs import (
    OutboundLeg,
    quality,
    start_session,
    trunk_credentials,
)
from .phases import Happening, Phase

__all__ = ["OfferPart"]


class OfferPart(CallBase[CallT]):
    """Outbound legs and offers to operators: dialling, ringing, answer, failure"""

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
                extra_headers=[("Route", v) for v in binding.route_set],  # issue 15: Path
                softphone=operator,
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
        softphone: str | None = None,
    ) -> OutboundLeg:
        """An INVITE leg of this call; `softphone` is the [[operator]] SIP user
        it rings (an operator's or a supervisor's phone), whose `srtp` applies."""
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
        srtp = None  # issue 11: SRTP on legs to centre phones, per [[operator]] srtp
        if softphone is not None:
            srtp, offer = softphone_offer(centre.config, softphone, offer)
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
        body, content_type = offer.serialize(), SDP
        if role is LegRole.AGENCY and self.location is not None:  # issue 13: PIDF-LO by value
            body, content_type = await self.location.agency_body(body, headers, self.incident_id)
        invite = outbound_request(
            centre,
            "INVITE",
            request_uri=request_uri,
            to_uri=to_uri,
            from_user=from_user,
            display=display,
            peer=peer,
            headers=headers,
            body=body,
            content_type=content_type,
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
            leg.secure_media(answer)  # issue 11: SRTP keys from the answer
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
            await centre.handoff.leg_answered(self.as_call(), leg)

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
            await self.centre.handoff.leg_failed(self.as_call(), leg, status, reason)

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
