"""A callback to a citizen (RFC 7090 `Priority: psap-callback`): the operator's
phone first, then the citizen over the trunk, relayed and recorded into a new
file of the original incident.

Both legs run on `sip.session.InviteSession`: this module decides what to do
when a leg rings, answers, fails or hangs up, and keeps no SIP mechanics of
its own (the ACK of every 2xx, CANCEL and the 2xx crossing it, the digest
retry over the trunk, BYE and its answer are the session's).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from ..acd import AcdError
from ..incidents import CallbackResult, LegRole
from ..logs import get_logger
from ..media.g711 import Codec
from ..offer_answer import accept_answer, make_offer
from ..sdp import SdpError, SessionDescription
from ..sip.events import TransactionEvent
from ..sip.peer import Peer
from ..sip.session import (
    Answered,
    ChallengeAnswered,
    EndReason,
    Failed,
    HungUp,
    ReinviteReceived,
    RequestArrived,
    Ringing,
    SessionEvent,
    State,
)
from .call import ALLOW, SDP, outbound_request
from .guards import callback_target, leg_headers, not_callable, softphone_offer  # issue 11
from .inbox import LegEvent, LegRequest, Message, RingTimedOut
from .journal import Journal, OpenRecording
from .legs import OutboundLeg, quality, start_session, trunk_credentials
from .services import HandoffHost

__all__ = ["CallbackCall"]

log = get_logger("handoff")


class CallbackCall:
    """A callback to a citizen: operator first, then the citizen over the trunk.

    A small actor of its own (there is no inbound INVITE): it rings the
    operator's softphone, and when the operator answers dials the citizen
    with `Priority: psap-callback` (RFC 7090). Answered: the two are relayed
    and recorded into a new file of the original incident. Every attempt and
    its result is written to the callback task; the operator is paused for
    the duration and unpaused at the end.
    """

    def __init__(
        self,
        centre: HandoffHost,
        *,
        callback_id: int,
        incident_id: str,
        number: str,
        operator: str,
        binding_contact: str,
        binding_target: Peer,
        trunk_caller_id: str,
        proxy: Peer,
        trunk: str,
        actor: str,
    ) -> None:
        self.centre = centre
        self.callback_id = callback_id
        self.incident_id = incident_id
        self.number = number
        self.operator = operator
        self.binding_contact = binding_contact
        self.binding_target = binding_target
        self.trunk_caller_id = trunk_caller_id
        self.trunk = trunk
        self.proxy = proxy
        self.actor = actor
        self.inbox: asyncio.Queue[Message] = asyncio.Queue()
        self.done = False
        self.op_leg: OutboundLeg | None = None
        self.citizen_leg: OutboundLeg | None = None
        self.recording: OpenRecording | None = None
        self.result: CallbackResult | None = None
        self.log = log.bind(incident_id=incident_id, callback=callback_id)
        self.journal = Journal(
            store=centre.store,
            recorders=centre.media,
            recordings_dir=centre.recordings_dir,
            wall=centre.wall,
            counters=centre.metrics,
            log=self.log,
            incident_id=incident_id,
        )
        self._ring_timer: asyncio.TimerHandle | None = None

    def post(self, message: Message) -> None:
        if not self.done:
            self.inbox.put_nowait(message)
        elif isinstance(message, LegEvent | LegRequest):
            # Over: the session still settles what reaches it (a 2xx that
            # crossed our CANCEL is ACKed and hung up, a BYE answered); a leg
            # that answers after the end is hung up at once.
            events = self._to_session(message)
            if message.leg.session is not None and any(isinstance(e, Answered) for e in events):
                message.leg.session.hangup("callback over")

    def _to_session(self, message: LegEvent | LegRequest) -> list[SessionEvent]:
        session = message.leg.session
        if session is None:
            return []
        now = self.centre.loop.time()
        if isinstance(message, LegEvent):
            return session.receive(message.event, now)
        return session.receive_request(message.request, message.server_key, now)

    async def run(self) -> None:
        try:
            target = callback_target(self.number)  # issue 11: only valid Indonesian numbers
            if target is None:
                self.result = await not_callable(
                    self.centre.store, self.callback_id, self.actor, at=self.centre.wall()
                )
                return
            await self._dial("operator")
            while not self.done:
                message = await self.inbox.get()
                try:
                    await self._handle(message)
                except Exception:
                    self.log.exception("callback_step_failed")
        except Exception:
            self.log.exception("callback_failed")
        finally:
            await self._finish()

    async def _dial(self, who: str) -> None:
        centre = self.centre
        advertise = centre.config.sip.advertise
        if who == "operator":
            role, name, uri, to, peer = (
                LegRole.OPERATOR,
                self.operator,
                self.binding_contact,
                f"<sip:{self.operator}@{advertise}>",
                self.binding_target,
            )
            from_user, display = self.number, f"CALLBACK 112 {self.number}"
            extra = [("X-Incident-ID", self.incident_id)]
        else:
            role, name, uri, to, peer = (
                LegRole.CALLBACK,
                self.number,
                f"sip:{self.number}@{self.proxy.host}:{self.proxy.port}",
                f"<sip:{self.number}@{self.proxy.host}>",
                self.proxy,
            )
            from_user, display = self.trunk_caller_id, centre.config.centre.name
            extra = [
                ("Priority", "psap-callback"),  # RFC 7090 §5: a PSAP callback
                ("P-Asserted-Identity", f"<sip:{self.trunk_caller_id}@{advertise}>"),
                ("X-Incident-ID", self.incident_id),
            ]
        extra = leg_headers(role, extra)  # issue 11: nothing internal to outside parties
        media = await centre.media.open_leg(f"callback-{self.callback_id}/{role.value}")
        codec = (
            self.op_leg.media.codec if who == "citizen" and self.op_leg is not None else Codec.PCMA
        )
        offer = make_offer(
            local_address=advertise,
            local_port=media.local_port,
            codecs=(codec, Codec.PCMU if codec is Codec.PCMA else Codec.PCMA),
            session_id=900_000 + self.callback_id,
            session_version=1,
        )
        srtp = None  # issue 11: the operator's phone gets its [[operator]] srtp
        if who == "operator":
            srtp, offer = softphone_offer(centre.config, self.operator, offer)
        invite = outbound_request(
            centre,
            "INVITE",
            request_uri=uri,
            to_uri=to,
            from_user=from_user,
            display=display,
            peer=peer,
            headers=extra,
            body=offer.serialize(),
            content_type=SDP,
        )
        leg = OutboundLeg(
            role=role, name=name, invite=invite, peer=peer, media=media, offer=offer,
            purpose="callback", srtp=srtp,
        )  # fmt: skip
        if who == "operator":
            self.op_leg = leg
        else:
            self.citizen_leg = leg
            leg.trunk = self.trunk
        start_session(
            leg,
            centre.endpoint,
            advertise=advertise,
            user_agent=centre.user_agent,
            on_event=self._handler(leg),
            credentials=trunk_credentials(centre.config, leg.trunk),
        )
        timeout = centre.config.queue.ring_timeout_s if who == "operator" else 45.0
        if self._ring_timer is not None:
            self._ring_timer.cancel()
        self._ring_timer = centre.loop.call_later(timeout, self.post, RingTimedOut(leg))
        self.log.info("callback_dial", who=who)

    def _handler(self, leg: OutboundLeg) -> Callable[[TransactionEvent], None]:
        def handler(event: TransactionEvent) -> None:
            self.post(LegEvent(leg, event))

        return handler

    async def _handle(self, message: Message) -> None:
        if isinstance(message, LegEvent | LegRequest):
            leg = message.leg
            for event in self._to_session(message):
                await self._on_session_event(leg, event)
        elif isinstance(message, RingTimedOut):
            leg = message.leg
            session = leg.session
            if session is not None and session.state in (State.CALLING, State.EARLY):
                session.hangup()  # CANCEL; its 487 (or a crossing 2xx) is the session's
                await self._failed(leg, 408)

    async def _on_session_event(self, leg: OutboundLeg, event: SessionEvent) -> None:
        if isinstance(event, Ringing):
            leg.state = "ringing"
        elif isinstance(event, Answered):
            await self._answered(leg, event.body)
        elif isinstance(event, Failed):
            await self._failed(leg, event.status)
        elif isinstance(event, ChallengeAnswered):
            self.log.info("trunk_challenge_answered", trunk=self.trunk, status=event.status)
        elif isinstance(event, HungUp) and event.reason is EndReason.REMOTE_BYE:
            leg.state = "ended"
            who = "citizen" if leg is self.citizen_leg else "operator"
            await self._event("callback_ended", {"hung_up": who})
            self.done = True
        elif isinstance(event, ReinviteReceived) and leg.session is not None:
            leg.session.reject_reinvite(501)  # no media changes in a callback
        elif isinstance(event, RequestArrived) and leg.session is not None:
            request = event.request
            ok = request.method == "INFO" and not request.body
            leg.session.respond(
                event.server_key,
                request,
                200 if ok else 501,
                headers=[] if ok else [("Allow", ALLOW)],
            )

    async def _answered(self, leg: OutboundLeg, body: bytes) -> None:
        centre = self.centre
        session = leg.session
        assert session is not None and session.dialog is not None
        centre.register_dialog(session.dialog, self, leg)
        leg.state = "answered"
        if self.done:
            self._bye(leg)
            return
        try:
            answer = SessionDescription.parse(body)
            n = accept_answer(leg.offer, answer)
            leg.secure_media(answer)  # issue 11: SRTP keys from the answer
        except SdpError:
            self._bye(leg)
            await self._failed(leg, 488)
            return
        leg.negotiated = n
        leg.media.configure(
            codec=n.codec,
            payload_type=n.payload_type,
            dtmf_pt=n.dtmf_pt,
            remote=(n.remote_address, n.remote_port) if n.should_send else None,
        )
        if self._ring_timer is not None:
            self._ring_timer.cancel()
            self._ring_timer = None
        if leg is self.op_leg:
            await self._event("callback_operator_answered", {"operator": self.operator})
            await self._dial("citizen")
            return
        # The citizen answered: bridge and record into the original incident.
        assert self.op_leg is not None
        self.result = CallbackResult.ANSWERED
        wall = centre.wall()
        store = centre.store
        leg.leg_id = await self.journal.add_leg(
            role=LegRole.CALLBACK,
            call_id=leg.invite.call_id,
            peer=f"{self.number} {leg.peer}",
            codec=leg.media.codec.name,
            started_at=wall,
        )
        self.op_leg.leg_id = await self.journal.add_leg(
            role=LegRole.OPERATOR,
            call_id=self.op_leg.invite.call_id,
            peer=f"{self.operator} {self.op_leg.peer}",
            codec=self.op_leg.media.codec.name,
            started_at=wall,
        )
        try:
            await store.callback_attempt(
                self.callback_id,
                actor=self.actor,
                at=wall,
                result=CallbackResult.ANSWERED,
                leg_id=leg.leg_id,
            )
        except Exception as exc:  # noqa: BLE001
            self.log.error("callback_write_failed", error=str(exc))
        await self._start_recording(leg)
        leg.media.relay_with(self.op_leg.media)
        await self._event("callback_answered", {"number": self.number, "operator": self.operator})

    async def _start_recording(self, citizen: OutboundLeg) -> None:
        # A new file of the original incident (its first is the 112 call's).
        self.recording = await self.journal.open_recording(
            citizen.media.codec, unrecorded_name=self.incident_id, first_suffix=2
        )
        if self.recording is not None:
            citizen.media.attach_recorder(self.recording.recorder)

    async def _failed(self, leg: OutboundLeg, status: int) -> None:
        if leg.state == "ended":
            return
        leg.state = "ended"
        if leg is self.citizen_leg:
            result = (
                CallbackResult.BUSY
                if status in (486, 600, 603)
                else CallbackResult.NO_ANSWER
                if status in (408, 480, 487)
                else CallbackResult.FAILED
            )
            self.result = result
            try:
                await self.centre.store.callback_attempt(
                    self.callback_id,
                    actor=self.actor,
                    at=self.centre.wall(),
                    result=result,
                    note=f"SIP {status}",
                )
            except Exception as exc:  # noqa: BLE001
                self.log.error("callback_attempt_write_failed", error=str(exc))
            await self._event("callback_failed", {"number": self.number, "status": status})
        else:
            await self._event("callback_operator_unavailable", {"status": status})
        self.done = True

    def _bye(self, leg: OutboundLeg) -> None:
        if leg.session is not None:
            leg.session.hangup()
        leg.state = "ended"

    async def _event(self, kind: str, detail: dict[str, Any]) -> None:
        await self.journal.event(kind, detail)

    async def _finish(self) -> None:
        self.done = True
        centre = self.centre
        if self._ring_timer is not None:
            self._ring_timer.cancel()
        for leg in (self.citizen_leg, self.op_leg):
            if leg is None:
                continue
            self._bye(leg)  # BYE if up, CANCEL if ringing: the session knows which
            if leg.session is not None and leg.session.dialog is not None:
                centre.unregister_dialog(leg.session.dialog)
            await self.journal.end_leg(
                leg.leg_id, reason="callback_ended", quality=quality(leg.media)
            )
            if leg.media in centre.media.legs:
                leg.media.close()
        if self.recording is not None:
            recording, self.recording = self.recording, None
            await self.journal.seal_recording(recording)
        if self.result is None and self.citizen_leg is None:
            with contextlib.suppress(Exception):
                await centre.store.callback_attempt(
                    self.callback_id,
                    actor=self.actor,
                    at=centre.wall(),
                    result=CallbackResult.FAILED,
                    note="operator did not answer",
                )
        with contextlib.suppress(AcdError):
            centre.desk.unpause(self.operator)
        centre.publish(
            "callback_changed",
            operator=self.operator,
            incident_id=self.incident_id,
            data={"callback": self.callback_id, "result": str(self.result)},
        )
