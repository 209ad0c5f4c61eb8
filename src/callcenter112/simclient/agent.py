"""A SIP user agent for simulated phones, on our own transaction layer.

Owns one SIP endpoint of the simulator: `net.sip_endpoint.SipEndpoint` (the
sans-IO `TransactionLayer` on a loopback UDP socket, one loop timer) plus the
routing a phone needs on top of it — every message of a call goes to the
sink that call attached under its Call-ID (RFC 3261 §12: a Call-ID names
the dialog here, since each simulated call makes exactly one), requests for
no call go to `on_request` (an offer to an operator), and what is left is
answered the way a phone would: OPTIONS 200 (the server's qualify pings),
in-dialog requests for a finished call 481, anything else 405.

It also builds the out-of-dialog requests the phones send (INVITE,
REGISTER) with a Via of this endpoint, and turns a non-INVITE transaction
into an awaitable final response (`transact`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable

from ..net.sip_endpoint import SipEndpoint
from ..sip.dialog import no_such_dialog
from ..sip.events import (
    AckNotReceived,
    AckReceived,
    CancelReceived,
    RequestReceived,
    ResponseReceived,
    TransactionEvent,
    TransactionTimedOut,
    TransportFailed,
)
from ..sip.message import Headers, Request, Response, new_branch
from ..sip.peer import Peer
from ..sip.transaction import TransactionKey

__all__ = ["ALLOW", "USER_AGENT", "EventSink", "SipAgent"]

ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE"
USER_AGENT = "callcenter112-simulate"
# Longer than any non-INVITE transaction can live (Timer F = 64*T1 = 32 s,
# RFC 3261 §17.1.2.2): a guard, should the layer ever fail to report.
TRANSACT_GUARD_S = 40.0

EventSink = Callable[[TransactionEvent], None]


class SipAgent:
    """One simulated SIP endpoint on `host` (loopback), on a port the kernel picks."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        on_request: Callable[[RequestReceived], None] | None = None,
    ) -> None:
        self.host = host
        self.on_request = on_request
        self.endpoint = SipEndpoint(host=host, port=0, advertise=host, on_event=self._on_event)
        self._calls: dict[str, EventSink] = {}
        self.unrouted = 0

    @property
    def port(self) -> int:
        return self.endpoint.port

    async def start(self) -> None:
        await self.endpoint.start()

    async def close(self) -> None:
        await self.endpoint.close()

    def now(self) -> float:
        return self.endpoint.now()

    # -- routing -------------------------------------------------------------------

    def attach(self, call_id: str, sink: EventSink) -> None:
        """Send every request, ACK and CANCEL of `call_id` to `sink`."""
        self._calls[call_id] = sink

    def detach(self, call_id: str) -> None:
        self._calls.pop(call_id, None)

    def _on_event(self, event: TransactionEvent) -> None:
        request = _request_of(event)
        if request is None:
            return  # a late response nobody waits for
        sink = self._calls.get(request.call_id)
        if sink is not None:
            sink(event)
            return
        if not isinstance(event, RequestReceived):
            return  # an ACK or CANCEL for a call that is over
        if self.on_request is not None and request.method == "INVITE" and not request.to_tag:
            self.on_request(event)
            return
        self.unrouted += 1
        if request.method == "OPTIONS":
            self.respond(
                event.server_key,
                Response.for_request(
                    request,
                    200,
                    to_tag=event.to_tag,
                    headers=[("Allow", ALLOW), ("Accept", "application/sdp")],
                ),
            )
        elif request.to_tag:
            self.respond(event.server_key, no_such_dialog(request))
        else:
            self.respond(
                event.server_key,
                Response.for_request(request, 405, to_tag=event.to_tag, headers=[("Allow", ALLOW)]),
            )

    # -- sending -------------------------------------------------------------------

    def via(self) -> str:
        return f"SIP/2.0/UDP {self.host}:{self.port};branch={new_branch()};rport"

    def contact(self, user: str) -> str:
        return f"<sip:{user}@{self.host}:{self.port}>"

    def build(
        self,
        method: str,
        uri: str,
        *,
        from_address: str,
        to_address: str,
        call_id: str,
        cseq: int,
        contact: str | None = None,
        headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
        content_type: str | None = None,
    ) -> Request:
        """An out-of-dialog request with this endpoint's Via (RFC 3261 §8.1.1)."""
        h = Headers()
        h.add("Via", self.via())
        h.add("Max-Forwards", "70")
        h.add("From", from_address)
        h.add("To", to_address)
        h.add("Call-ID", call_id)
        h.add("CSeq", f"{cseq} {method}")
        if contact is not None:
            h.add("Contact", contact)
        h.add("User-Agent", USER_AGENT)
        for name, value in headers:
            h.add(name, value)
        if body and content_type:
            h.add("Content-Type", content_type)
        return Request(method, uri, h, body)

    def request(self, request: Request, peer: Peer, sink: EventSink) -> TransactionKey:
        """Start a client transaction; `sink` gets its responses and failures."""
        return self.endpoint.request(request, peer, sink)

    def respond(self, key: TransactionKey, response: Response) -> bool:
        return self.endpoint.respond(key, response)

    def send_ack(self, ack: Request, peer: Peer) -> None:
        """The ACK of a 2xx is no transaction (RFC 3261 §17.1.1.3)."""
        self.endpoint.send_stateless(ack, peer)

    def cancel(self, key: TransactionKey) -> None:
        self.endpoint.cancel(key)

    async def transact(self, request: Request, peer: Peer) -> Response | None:
        """Send a non-INVITE request; its final response, or None if none came."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Response | None] = loop.create_future()

        def sink(event: TransactionEvent) -> None:
            if done.done():
                return
            if isinstance(event, ResponseReceived):
                if event.response.status >= 200:
                    done.set_result(event.response)
            elif isinstance(event, TransactionTimedOut | TransportFailed):
                done.set_result(None)

        self.request(request, peer, sink)
        try:
            async with asyncio.timeout(TRANSACT_GUARD_S):
                return await done
        except TimeoutError:
            return None
        finally:
            if not done.done():
                with contextlib.suppress(asyncio.InvalidStateError):
                    done.cancel()


def _request_of(event: TransactionEvent) -> Request | None:
    if isinstance(
        event,
        RequestReceived | AckReceived | CancelReceived | TransactionTimedOut | TransportFailed,
    ):
        return event.request
    if isinstance(event, AckNotReceived):
        return event.request
    return None
