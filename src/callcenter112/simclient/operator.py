"""A simulated operator's softphone: registers, rings, answers, talks, hangs up.

Owns one simulated operator. It registers its user (from the server's
configuration) with digest authentication (RFC 3261 §22.2, answered with
`sip.auth.authorization_for`), keeps the binding fresh and removes it at
the end (Expires: 0, so the centre sees it offline at once rather than at
expiry). An offer from the centre — an INVITE naming the incident in
`X-Incident-ID` and the caller in From — rings (180) for a random moment,
is answered 200 with an SDP answer, and the operator then talks (its voice
is a tone the caller recognises) and hangs up after `talk_s`; unless the
simulation scripted that caller to end the conversation, in which case the
operator waits for the centre's BYE (bounded). An offer while on a call is
answered 486 Busy Here, a CANCEL while ringing 487 (RFC 3261 §9.2).

Each answered offer is an actor task like a caller's: one inbox, every wait
with a deadline, `OperatorCallRecord` filled in as it goes.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
from collections.abc import Callable, Coroutine
from typing import Any

from ..offer_answer import answer_offer
from ..sdp import SdpError, SessionDescription
from ..sip.auth import authorization_for, select_challenge
from ..sip.dialog import Dialog
from ..sip.errors import SipParseError
from ..sip.events import (
    AckNotReceived,
    AckReceived,
    CancelReceived,
    RequestReceived,
    TransactionEvent,
)
from ..sip.message import Response, new_call_id, new_tag
from ..sip.peer import Peer
from .agent import ALLOW, SipAgent
from .media import OPERATOR_VOICE, LegMedia, RtpBank, voice_frame
from .records import OperatorCallRecord

__all__ = ["RegistrationFailed", "SimulatedOperator"]

SDP = "application/sdp"
REGISTER_EXPIRES_S = 600
# Waiting for the centre's BYE when the caller was scripted to hang up first.
BYE_GRACE_S = 30.0


class RegistrationFailed(Exception):
    """The centre did not accept this operator's REGISTER; `reason` says why."""

    def __init__(self, user: str, reason: str) -> None:
        super().__init__(f"{user}: {reason}")
        self.user = user
        self.reason = reason


class SimulatedOperator:
    """One operator's simulated softphone (see the module docstring)."""

    def __init__(
        self,
        user: str,
        password: str,
        *,
        agent: SipAgent,
        bank: RtpBank,
        server: Peer,
        ring_s: tuple[float, float],
        talk_s: float,
        rng: random.Random,
        caller_hangs_up: Callable[[str], bool],
        spawn: Callable[[Coroutine[Any, Any, None]], Any],
        records: list[OperatorCallRecord],
    ) -> None:
        self.user = user
        self.password = password
        self.agent = agent
        self.bank = bank
        self.server = server
        self.ring_s = ring_s
        self.talk_s = talk_s
        self.rng = rng
        self.caller_hangs_up = caller_hangs_up
        self.spawn = spawn
        self.records = records
        self.registered = False
        self.expires = REGISTER_EXPIRES_S
        self.on_call: str | None = None  # Call-ID of the offer being handled
        self.accepting = True
        self._register_call_id = new_call_id(agent.host)
        self._register_tag = new_tag()
        self._cseq = 0

    def _now(self) -> float:
        return self.agent.now()

    # -- registration --------------------------------------------------------------------

    async def register(self, expires: int = REGISTER_EXPIRES_S) -> None:
        """REGISTER (and answer the challenge); raises `RegistrationFailed`."""
        response = await self._register(expires)
        if response is None:
            raise RegistrationFailed(self.user, "no answer to REGISTER")
        if response.status != 200:
            raise RegistrationFailed(self.user, f"{response.status} {response.reason}")
        self.registered = expires > 0
        if expires > 0:
            self.expires = self._granted(response, expires)

    async def unregister(self) -> None:
        """Remove the binding (Expires: 0); best effort, bounded by the transaction."""
        self.accepting = False
        if not self.registered:
            return
        with contextlib.suppress(RegistrationFailed):
            await self.register(0)
        self.registered = False

    async def _register(self, expires: int) -> Response | None:
        uri = f"sip:{self.server.host}:{self.server.port}"
        response = await self._send_register(uri, expires, None)
        if response is None or response.status not in (401, 407):
            return response
        header = "WWW-Authenticate" if response.status == 401 else "Proxy-Authenticate"
        try:
            challenge = select_challenge(response.headers.get_all(header))
            credentials = authorization_for(
                challenge,
                "REGISTER",
                uri,
                self.user,
                self.password,
                cnonce=secrets.token_hex(8),
                nc=1,
            )
        except SipParseError as exc:
            raise RegistrationFailed(self.user, f"unusable challenge: {exc.reason}") from None
        answer = "Authorization" if response.status == 401 else "Proxy-Authorization"
        return await self._send_register(uri, expires, (answer, credentials))

    async def _send_register(
        self, uri: str, expires: int, credentials: tuple[str, str] | None
    ) -> Response | None:
        self._cseq += 1  # RFC 3261 §10.2.4: one Call-ID, CSeq rising, for every refresh
        aor = f"<sip:{self.user}@{self.server.host}:{self.server.port}>"
        headers = [("Expires", str(expires))]
        if credentials is not None:
            headers.append(credentials)
        request = self.agent.build(
            "REGISTER",
            uri,
            from_address=f"{aor};tag={self._register_tag}",
            to_address=aor,
            call_id=self._register_call_id,
            cseq=self._cseq,
            contact=self.agent.contact(self.user),
            headers=headers,
        )
        return await self.agent.transact(request, self.server)

    def _granted(self, response: Response, asked: int) -> int:
        """The expiry the registrar granted our contact (§10.3 step 8)."""
        for contact in response.contacts:
            uri = contact.uri
            if uri.user == self.user and uri.port == self.agent.port:
                value = contact.parameters.get("expires")
                if value is not None and value.isdigit():
                    return int(value)
        header = response.expires
        return header if header is not None else asked

    # -- offers ------------------------------------------------------------------------------

    def offer(self, event: RequestReceived) -> None:
        """An INVITE from the centre for this operator (called by the agent)."""
        invite = event.request
        if self.on_call is not None or not self.accepting:
            self.agent.respond(
                event.server_key, Response.for_request(invite, 486, to_tag=event.to_tag)
            )
            return
        self.on_call = invite.call_id
        try:
            caller = invite.from_address.uri.user or "anonymous"
        except SipParseError:
            caller = "anonymous"
        record = OperatorCallRecord(
            operator=self.user,
            caller=caller,
            incident_id=invite.headers.get("X-Incident-ID"),
            call_id=invite.call_id,
            offered=self._now(),
        )
        self.records.append(record)
        inbox: asyncio.Queue[TransactionEvent] = asyncio.Queue()
        self.agent.attach(invite.call_id, inbox.put_nowait)
        self.spawn(self._take_call(event, inbox, record))

    async def _take_call(
        self,
        event: RequestReceived,
        inbox: asyncio.Queue[TransactionEvent],
        record: OperatorCallRecord,
    ) -> None:
        try:
            await self._ring_and_talk(event, inbox, record)
        except asyncio.CancelledError:
            record.result = "failed" if record.result == "ringing" else record.result
            raise
        except Exception:  # noqa: BLE001 - this call's failure is its own
            record.result = "failed"
        finally:
            if record.ended is None:
                record.ended = self._now()
            self.agent.detach(event.request.call_id)
            self._free(event.request.call_id)

    def _free(self, call_id: str) -> None:
        if self.on_call == call_id:
            self.on_call = None

    async def _ring_and_talk(
        self,
        event: RequestReceived,
        inbox: asyncio.Queue[TransactionEvent],
        record: OperatorCallRecord,
    ) -> None:
        invite = event.request
        to_tag = event.to_tag or new_tag()
        contact = self.agent.contact(self.user)
        media = self.bank.leg(f"operator {self.user}")
        try:
            try:
                negotiated = answer_offer(
                    SessionDescription.parse(invite.body),
                    local_address=self.bank.host,
                    local_port=media.local_port,
                    session_id=20_000 + len(self.records),
                    session_version=1,
                )
            except SdpError as exc:
                self.agent.respond(
                    event.server_key,
                    Response.for_request(invite, exc.status_hint, to_tag=to_tag),
                )
                record.result = "failed"
                return
            self.agent.respond(
                event.server_key,
                Response.for_request(invite, 180, to_tag=to_tag, headers=[("Contact", contact)]),
            )

            # Ringing: a CANCEL from the centre ends it (RFC 3261 §9.2: 487 to the INVITE).
            answer_at = self._now() + self.rng.uniform(*self.ring_s)
            while (message := await _next(inbox, answer_at)) is not None:
                if isinstance(message, CancelReceived):
                    self.agent.respond(
                        event.server_key, Response.for_request(invite, 487, to_tag=message.to_tag)
                    )
                    record.result = "cancelled"
                    return
            assert negotiated.answer is not None
            ok = Response.for_request(
                invite,
                200,
                to_tag=to_tag,
                headers=[("Contact", contact), ("Allow", ALLOW), ("Content-Type", SDP)],
                body=negotiated.answer.serialize(),
            )
            if not self.agent.respond(event.server_key, ok):
                record.result = "cancelled"  # the CANCEL crossed our 200
                return
            record.answered = self._now()
            record.result = "talked"
            dialog = Dialog.as_uas(
                invite,
                ok,
                via_host=self.agent.host,
                via_port=self.agent.port,
                local_contact=contact,
            )
            media.connect(negotiated)
            media.speak(voice_frame(OPERATOR_VOICE, media.codec))

            # Talking until our hang-up time or the centre's BYE.
            waits_for_caller = self.caller_hangs_up(record.caller)
            hang_up_at = record.answered + self.talk_s
            if waits_for_caller:
                hang_up_at += BYE_GRACE_S
            while True:
                message = await _next(inbox, hang_up_at)
                if message is None:
                    media.speak(None)
                    bye = dialog.create_request(
                        "BYE", headers=[("Reason", 'SIP;cause=200;text="operator done"')]
                    )
                    record.ended_by = "operator"
                    record.ended = self._now()
                    self._free(invite.call_id)  # ready for the next offer (after wrap-up)
                    await self.agent.transact(bye, self.server)
                    return
                if isinstance(message, AckNotReceived):
                    record.result = "failed"  # the centre never confirmed our 200
                    return
                if isinstance(message, AckReceived | CancelReceived):
                    continue
                if isinstance(message, RequestReceived) and self._in_dialog(message, dialog, media):
                    record.ended_by = "centre"
                    record.ended = self._now()
                    self._free(invite.call_id)
                    return
        finally:
            media.close()

    def _in_dialog(self, event: RequestReceived, dialog: Dialog, media: LegMedia) -> bool:
        """Answer a request of the call; True when it was the centre's BYE."""
        request = event.request
        status = dialog.receive_request(request)
        if status is not None:
            self.agent.respond(event.server_key, Response.for_request(request, status))
            return False
        if request.method == "BYE":
            self.agent.respond(event.server_key, Response.for_request(request, 200))
            return True
        if request.method == "INVITE":
            try:
                negotiated = answer_offer(
                    SessionDescription.parse(request.body),
                    local_address=self.bank.host,
                    local_port=media.local_port,
                    session_id=20_000 + len(self.records),
                    session_version=1 + (dialog.remote_cseq or 1),
                    current=media.codec,
                )
            except SdpError as exc:
                self.agent.respond(event.server_key, Response.for_request(request, exc.status_hint))
                return False
            assert negotiated.answer is not None
            media.connect(negotiated)
            self.agent.respond(
                event.server_key,
                Response.for_request(
                    request,
                    200,
                    headers=[("Contact", self.agent.contact(self.user)), ("Content-Type", SDP)],
                    body=negotiated.answer.serialize(),
                ),
            )
            return False
        status = 200 if request.method in ("OPTIONS", "INFO", "UPDATE") else 501
        self.agent.respond(
            event.server_key, Response.for_request(request, status, headers=[("Allow", ALLOW)])
        )
        return False


async def _next(inbox: asyncio.Queue[TransactionEvent], deadline: float) -> TransactionEvent | None:
    try:
        async with asyncio.timeout_at(deadline):
            return await inbox.get()
    except TimeoutError:
        return None
