"""A simulated citizen dialling 112 from the trunk's address.

Owns one simulated caller's call, start to end, following its
`CallerScript`: INVITE to the trunk number with a G.711 + telephone-event
offer (as a carrier's gateway sends it), ACK of the 200, the menu digit as
RFC 4733 events a moment later (barge-in: during the greeting), then waiting
— silent, as most callers in a queue are — until the operator's voice is
heard (answer time, measured where the caller would measure it), talking
(its own voice, a tone) and hanging up, or waiting for the operator's BYE.
A scripted impatient caller hangs up in the queue instead (the centre
should record `abandoned` and a callback task).

The call is an actor: SIP events and media signals are posted to its inbox
and handled one at a time; every wait has a deadline (INVITE: the
transaction's own Timer B; waiting: `max_wait_s`; talking: `talk_s` plus a
grace), so a call always ends by itself. The server's requests are answered
as a phone does: BYE 200, OPTIONS 200, a re-INVITE with a fresh answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass

from ..offer_answer import accept_answer, answer_offer, make_offer
from ..sdp import SdpError, SessionDescription
from ..sip.dialog import Dialog
from ..sip.errors import SipParseError
from ..sip.events import (
    RequestReceived,
    ResponseReceived,
    TransactionEvent,
    TransactionTimedOut,
    TransportFailed,
)
from ..sip.message import Request, Response, new_call_id, new_tag
from ..sip.peer import Peer
from ..sip.transaction import TransactionKey
from .agent import ALLOW, SipAgent
from .media import CALLER_VOICE, OPERATOR_VOICE, LegMedia, RtpBank, heard_as, voice_frame
from .records import CallRecord, Outcome

__all__ = ["SimulatedCaller"]

SDP = "application/sdp"
# After its talk the caller waits this long for the operator's BYE, then ends it.
HANGUP_GRACE_S = 15.0
# RFC 3261 §17.1.1.2: Timer B (64*T1) ends an unanswered INVITE; a guard above it.
INVITE_GUARD_S = 40.0
_OPERATOR_HEARD = heard_as(OPERATOR_VOICE)


@dataclass(frozen=True, slots=True)
class _OperatorHeard:
    """The operator's voice reached the caller."""


_HEARD = _OperatorHeard()
_Message = TransactionEvent | _OperatorHeard


class SimulatedCaller:
    """One scripted caller (see the module docstring); `run()` never raises."""

    def __init__(
        self,
        record: CallRecord,
        *,
        agent: SipAgent,
        bank: RtpBank,
        server: Peer,
        dialled: str = "112",
        invite_guard_s: float = INVITE_GUARD_S,
    ) -> None:
        self.record = record
        self.invite_guard_s = invite_guard_s
        self.script = record.script
        self.agent = agent
        self.bank = bank
        self.server = server
        self.dialled = dialled
        self.inbox: asyncio.Queue[_Message] = asyncio.Queue()
        self.media: LegMedia | None = None
        self.dialog: Dialog | None = None
        self.invite: Request | None = None
        self.invite_key: TransactionKey | None = None
        self._session_version = 1
        self._bye_exchanged = False  # a BYE went out or came in: nothing left to end
        self._heard_at = 0.0
        self._over = False  # run() has returned

    def _now(self) -> float:
        return self.agent.now()

    def _post(self, message: _Message) -> None:
        self.inbox.put_nowait(message)

    async def _next(self, deadline: float) -> _Message | None:
        """The next inbox message, or None when `deadline` (loop time) passes."""
        try:
            async with asyncio.timeout_at(deadline):
                return await self.inbox.get()
        except TimeoutError:
            return None

    # -- the call --------------------------------------------------------------------

    async def run(self) -> CallRecord:
        record = self.record
        try:
            await self._call()
        except asyncio.CancelledError:
            record.finish(Outcome.FAILED, "simulation stopped", self._now())
            self._abort()
            raise
        except Exception as exc:  # noqa: BLE001 - one call's failure is its own
            record.finish(Outcome.FAILED, f"simulator error: {exc!r}", self._now())
            with contextlib.suppress(Exception):
                self._abort()
        finally:
            if record.outcome is None:
                record.finish(Outcome.FAILED, "no outcome", self._now())
            self._over = True
            self.agent.detach(record.call_id)
            if self.media is not None:
                self.media.close()
        return record

    def _on_invite_event(self, event: TransactionEvent) -> None:
        """The INVITE's responses: to the inbox while the call runs; afterwards a 2xx
        that crossed our CANCEL (or came after we gave up) is ACKed and ended with a
        BYE at once (RFC 3261 §9.1, §15), so the centre is not left holding the call."""
        if not self._over:
            self._post(event)
            return
        if (
            not isinstance(event, ResponseReceived)
            or not 200 <= event.response.status < 300
            or self.invite is None
        ):
            return
        response = event.response
        try:
            dialog = self.dialog or Dialog.as_uac(
                self.invite,
                response,
                via_host=self.agent.host,
                via_port=self.agent.port,
                local_contact=self.agent.contact(self.script.number),
            )
        except SipParseError:
            return
        self.agent.send_ack(dialog.create_ack(self.invite, response), self.server)
        if self.dialog is None:
            self.dialog = dialog
            self._bye_now("caller gone")

    async def _call(self) -> None:
        record = self.record
        script = self.script
        host = self.server.host
        media = self.media = self.bank.leg(f"caller {script.number}")
        offer = make_offer(
            local_address=self.bank.host,
            local_port=media.local_port,
            session_id=10_000 + script.index,
            session_version=self._session_version,
        )
        call_id = new_call_id(self.agent.host)
        record.call_id = call_id
        invite = self.agent.build(
            "INVITE",
            f"sip:{self.dialled}@{host}:{self.server.port}",
            from_address=f"<sip:{script.number}@{self.agent.host}>;tag={new_tag()}",
            to_address=f"<sip:{self.dialled}@{host}>",
            call_id=call_id,
            cseq=1,
            contact=self.agent.contact(script.number),
            headers=[("P-Asserted-Identity", f"<sip:{script.number}@{self.agent.host}>")],
            body=offer.serialize(),
            content_type=SDP,
        )
        self.invite = invite
        self.agent.attach(call_id, self._post)
        record.wall_started = time.time()
        record.invite_sent = self._now()
        record.phase = "calling"
        self.invite_key = self.agent.request(invite, self.server, self._on_invite_event)

        # 1. The INVITE's final response.
        deadline = self._now() + self.invite_guard_s
        while True:
            message = await self._next(deadline)
            if message is None:
                record.finish(
                    Outcome.UNANSWERED,
                    f"no final response in {self.invite_guard_s:g} s",
                    self._now(),
                )
                self._cancel_invite()
                return
            if isinstance(message, ResponseReceived) and message.response.cseq.method == "INVITE":
                response = message.response
                if response.status < 200:
                    continue
                record.final_status = response.status
                if response.status >= 300:
                    warning = response.headers.get("Warning")
                    detail = f"{response.status} {response.reason}"
                    record.finish(
                        Outcome.REJECTED,
                        f"{detail}: {warning}" if warning else detail,
                        self._now(),
                    )
                    return
                if not self._connected(response, offer):
                    return
                break
            if isinstance(message, TransactionTimedOut | TransportFailed):
                if message.request.method == "INVITE":
                    record.finish(Outcome.UNANSWERED, "INVITE timed out", self._now())
                    return
            elif isinstance(message, RequestReceived):
                self._answer_request(message)

        # 2. The menu digit, then waiting for an operator (or giving up).
        connected = self._now()
        record.connected = connected
        record.phase = "ivr"
        media.listen_for(_OPERATOR_HEARD, self._on_operator_heard)
        press_at: float | None = connected + script.digit_after_s
        if script.digit is None:
            press_at = None
            record.phase = "queue"
        give_up_at = connected + script.max_wait_s
        abandon_at: float | None = None
        if script.patience_s is not None:
            abandon_at = connected + script.digit_after_s + script.patience_s
        while record.operator_heard is None:
            now = self._now()
            if press_at is not None and now >= press_at:
                assert script.digit is not None
                if not media.press(script.digit):
                    self._press_by_info(script.digit)
                record.digit_sent = now
                record.phase = "queue"
                press_at = None
            if abandon_at is not None and now >= abandon_at:
                await self._hang_up("abandoned in the queue")
                record.finish(Outcome.ABANDONED, "hung up while waiting", self._now())
                return
            if now >= give_up_at:
                await self._hang_up("no operator")
                record.finish(
                    Outcome.FAILED, f"no operator within {script.max_wait_s:.0f} s", self._now()
                )
                return
            deadline = min(t for t in (press_at, abandon_at, give_up_at) if t is not None)
            message = await self._next(deadline)
            if message is _HEARD:
                record.operator_heard = self._heard_at
            elif message is not None and not self._handle(message):
                # The centre hung up on a caller no operator had answered.
                record.finish(Outcome.DROPPED, f"server BYE in {record.phase}", self._now())
                return

        # 3. Talking to the operator.
        record.phase = "talking"
        media.speak(voice_frame(CALLER_VOICE, media.codec))
        talk_until = self._heard_at + script.talk_s
        end_at = talk_until if script.hangs_up_first else talk_until + HANGUP_GRACE_S
        while True:
            message = await self._next(end_at)
            if message is None:
                media.speak(None)
                await self._hang_up("caller done")
                detail = "caller hung up" if script.hangs_up_first else "operator never hung up"
                record.finish(Outcome.ANSWERED, detail, self._now())
                return
            if message is not _HEARD and not self._handle(message):
                record.finish(Outcome.ANSWERED, "operator hung up", self._now())
                return

    def _on_operator_heard(self) -> None:
        # Stamped on the packet's arrival, not when the inbox gets to it.
        self._heard_at = self._now()
        self._post(_HEARD)

    def _connected(self, response: Response, offer: SessionDescription) -> bool:
        """ACK the 200 and start media; False (outcome recorded) if it is unusable."""
        record = self.record
        invite = self.invite
        media = self.media
        assert invite is not None and media is not None
        try:
            self.dialog = Dialog.as_uac(
                invite,
                response,
                via_host=self.agent.host,
                via_port=self.agent.port,
                local_contact=self.agent.contact(self.script.number),
            )
        except SipParseError as exc:
            record.finish(Outcome.FAILED, f"bad 200 OK: {exc.reason}", self._now())
            return False
        self.agent.send_ack(self.dialog.create_ack(invite, response), self.server)
        try:
            negotiated = accept_answer(offer, SessionDescription.parse(response.body))
        except SdpError as exc:
            record.finish(Outcome.FAILED, f"bad SDP answer: {exc}", self._now())
            self._bye_now("bad SDP")
            return False
        media.connect(negotiated)
        return True

    # -- requests and retransmissions while connected ------------------------------------

    def _handle(self, message: _Message) -> bool:
        """Handle one message while connected; False when the server ended the call."""
        if isinstance(message, ResponseReceived):
            response = message.response
            if (
                response.cseq.method == "INVITE"
                and 200 <= response.status < 300
                and self.dialog is not None
                and self.invite is not None
            ):
                # A retransmitted 2xx: our ACK was lost; ACK again (RFC 3261 §13.2.2.4).
                self.agent.send_ack(self.dialog.create_ack(self.invite, response), self.server)
            return True
        if isinstance(message, RequestReceived):
            return self._answer_request(message)
        return True

    def _answer_request(self, event: RequestReceived) -> bool:
        request = event.request
        dialog = self.dialog
        if dialog is not None:
            status = dialog.receive_request(request)
            if status is not None:
                self.agent.respond(event.server_key, Response.for_request(request, status))
                return True
        method = request.method
        if method == "BYE":
            self._bye_exchanged = True
            self.agent.respond(event.server_key, Response.for_request(request, 200))
            if self.media is not None:
                self.media.speak(None)
            return False
        if method == "INVITE" and self.media is not None:
            self._reinvite(event)
        elif method in ("OPTIONS", "INFO", "UPDATE"):
            self.agent.respond(
                event.server_key,
                Response.for_request(request, 200, headers=[("Allow", ALLOW)]),
            )
        else:
            self.agent.respond(
                event.server_key,
                Response.for_request(request, 501, headers=[("Allow", ALLOW)]),
            )
        return True

    def _reinvite(self, event: RequestReceived) -> None:
        request = event.request
        media = self.media
        assert media is not None
        self._session_version += 1
        try:
            negotiated = answer_offer(
                SessionDescription.parse(request.body),
                local_address=self.bank.host,
                local_port=media.local_port,
                session_id=10_000 + self.script.index,
                session_version=self._session_version,
                current=media.codec,
            )
        except SdpError as exc:
            self.agent.respond(event.server_key, Response.for_request(request, exc.status_hint))
            return
        assert negotiated.answer is not None
        media.connect(negotiated)
        self.agent.respond(
            event.server_key,
            Response.for_request(
                request,
                200,
                headers=[
                    ("Contact", self.agent.contact(self.script.number)),
                    ("Content-Type", SDP),
                ],
                body=negotiated.answer.serialize(),
            ),
        )

    def _press_by_info(self, digit: str) -> None:
        """SIP INFO (application/dtmf-relay) for a server that took no telephone-event."""
        if self.dialog is None:
            return
        info = self.dialog.create_request(
            "INFO",
            body=f"Signal={digit}\r\nDuration=160\r\n".encode(),
            content_type="application/dtmf-relay",
        )
        self.agent.request(info, self.server, self._post)

    # -- ending ------------------------------------------------------------------------

    async def _hang_up(self, why: str) -> None:
        """BYE, and wait (bounded by the transaction) for its answer."""
        if self.media is not None:
            self.media.speak(None)
        if self.dialog is None or self._bye_exchanged:
            return
        self._bye_exchanged = True
        bye = self.dialog.create_request("BYE", headers=[("Reason", f'SIP;cause=200;text="{why}"')])
        await self.agent.transact(bye, self.server)

    def _bye_now(self, why: str) -> None:
        if self.dialog is None or self._bye_exchanged:
            return
        self._bye_exchanged = True
        bye = self.dialog.create_request("BYE", headers=[("Reason", f'SIP;cause=200;text="{why}"')])
        self.agent.request(bye, self.server, lambda event: None)

    def _cancel_invite(self) -> None:
        if self.invite_key is not None:
            self.agent.cancel(self.invite_key)

    def _abort(self) -> None:
        """The simulation is stopping under this call: end it on the wire too."""
        if self.dialog is not None:
            self._bye_now("simulation stopped")
        else:
            self._cancel_invite()
