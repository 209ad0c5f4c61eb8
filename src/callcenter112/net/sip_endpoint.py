"""The SIP endpoint: the sans-IO transaction layer on real sockets and the loop clock.

Feeds every parsed message from `SipTransport` into `TransactionLayer` with
`loop.time()`, sends what the layer wants sent, and keeps exactly one
`loop.call_at` timer armed at the layer's earliest deadline (aioquic's
pattern, STYLE 1). Events for our own client transactions go to the
handler given when the request was sent; everything else goes to the one
`on_event` callback (the switchboard).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from ..logs import get_logger
from ..sip.events import (
    ResponseReceived,
    TransactionEvent,
    TransactionTimedOut,
    TransportFailed,
)
from ..sip.message import Request, Response, new_branch
from ..sip.peer import DEFAULT_PORTS, Peer, contact_uri, via_value
from ..sip.session import LocalParty
from ..sip.transaction import TransactionError, TransactionKey, TransactionLayer
from .sip_transport import SipTransport

__all__ = ["MAX_TRANSACTIONS", "ClientHandler", "SipEndpoint"]

log = get_logger("sip.endpoint")

# Live server transactions before new requests get a stateless 503. Over UDP
# a transaction outlives its answer by 64*T1 = 32 s (Timer J for non-INVITE,
# RFC 3261 §17.2.2; Timer L for an answered INVITE, RFC 6026 §8.7), so the
# table caps the *sustained* rate at MAX_TRANSACTIONS / 32 s. DESIGN §7's
# 300 calls/s alone hold 300 * 2 (INVITE + BYE) * 32 s = 19 200 of them: the
# layer's default of 20 000 left no room for registrations, qualify and
# bursts (`scripts/bench sip` hit its 503s). 50 000 allows ~1 560
# transactions/s sustained, at a few KB each (~3.5 KB measured with the
# request and its answer) ≈ 175 MB in the worst case.
MAX_TRANSACTIONS = 50_000

ClientHandler = Callable[[TransactionEvent], None]


class SipEndpoint:
    def __init__(
        self,
        *,
        host: str,
        port: int,
        advertise: str,
        on_event: Callable[[TransactionEvent], None],
        allow_source: Callable[[str], bool] | None = None,
        t1: float = 0.5,
        max_transactions: int = MAX_TRANSACTIONS,
    ) -> None:
        self.advertise = advertise
        self.on_event = on_event
        self.layer = TransactionLayer(t1=t1, max_transactions=max_transactions)
        self.transport = SipTransport(host, port, self._on_message, allow_source=allow_source)
        self.transport.on_connection_lost = self._on_connection_lost
        self._handlers: dict[TransactionKey, ClientHandler] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def port(self) -> int:
        return self.transport.port

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        await self.transport.start()

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        await self.transport.close()

    def now(self) -> float:
        assert self._loop is not None
        return self._loop.time()

    # -- network in --------------------------------------------------------------

    def _on_message(self, message: Request | Response, peer: Peer) -> None:
        events = self.layer.receive(message, peer, self.now())
        self._dispatch(events)
        self._flush()

    def _on_connection_lost(self, peer: Peer) -> None:
        events = self.layer.transport_failed(peer, self.now())
        self._dispatch(events)
        self._flush()

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        events = self.layer.handle_timer(self.now())
        self._dispatch(events)
        self._flush()

    def _dispatch(self, events: list[TransactionEvent]) -> None:
        for event in events:
            handler: ClientHandler | None = None
            if isinstance(event, ResponseReceived | TransportFailed | TransactionTimedOut):
                key = event.client_key if isinstance(event, ResponseReceived) else event.key
                if key.client:
                    handler = self._handlers.get(key)
                    if handler is None:
                        continue  # a late answer for a request nobody waits on
            try:
                if handler is not None:
                    handler(event)
                else:
                    self.on_event(event)
            except Exception:
                # One call's bug must not stop the endpoint; the call's own
                # context is logged by its handler where possible.
                log.exception("sip_event_handler_failed", event=type(event).__name__)
        self._forget_finished()

    def _forget_finished(self) -> None:
        if len(self._handlers) < 64:
            done = [k for k in self._handlers if self.layer.state(k) is None]
        else:
            done = [k for k in list(self._handlers)[:64] if self.layer.state(k) is None]
        for key in done:
            self._handlers.pop(key, None)

    # -- network out -------------------------------------------------------------

    def request(self, request: Request, peer: Peer, handler: ClientHandler) -> TransactionKey:
        """Start a client transaction; `handler` gets its responses and failures."""
        key = self.layer.request(request, peer, self.now())
        self._handlers[key] = handler
        self._flush()
        return key

    def respond(self, key: TransactionKey, response: Response) -> bool:
        """Answer a server transaction; False if it is gone (e.g. already timed out)."""
        try:
            self.layer.respond(key, response, self.now())
        except TransactionError as exc:
            log.info("respond_failed", status=response.status, reason=str(exc))
            self._flush()
            return False
        self._flush()
        return True

    def cancel(self, key: TransactionKey) -> TransactionKey | None:
        """CANCEL our INVITE; the CANCEL's own answers are not needed by callers."""
        cancel_key = self.layer.cancel(key, self.now())
        if cancel_key is not None:
            self._handlers.setdefault(cancel_key, _ignore)
        self._flush()
        return cancel_key

    def send_stateless(self, message: Request | Response, peer: Peer) -> None:
        self.layer.send_stateless(message, peer)
        self._flush()

    def _flush(self) -> None:
        send = self.transport.send
        for data, peer in self.layer.datagrams_to_send():
            send(data, peer)
        deadline = self.layer.get_timer()
        if deadline is None:
            return
        if self._timer is not None and self._timer_at is not None and self._timer_at <= deadline:
            return
        if self._timer is not None:
            self._timer.cancel()
        assert self._loop is not None
        self._timer_at = deadline
        self._timer = self._loop.call_at(max(deadline, self._loop.time()), self._on_timer)

    # -- who we are on the wire, per transport --------------------------------------

    def port_for(self, transport: str) -> int:
        """The port of our sent-by and Contact on a leg over `transport`:
        the TLS listener for TLS (where the far end opens a new connection
        if ours closes, RFC 3261 §18.2.2), else the UDP/TCP one."""
        if transport == "tls":
            return self.transport.tls_port or DEFAULT_PORTS["tls"]
        return self.port

    def via(self, transport: str = "udp") -> str:
        """Our top Via for a new request over `transport`, with a fresh branch."""
        return via_value(transport, self.advertise, self.port_for(transport), new_branch())

    def contact(self, user: str = "callcenter112", transport: str = "udp") -> str:
        return contact_uri(user, self.advertise, self.port_for(transport), transport)

    def local_party(self, transport: str, *, user: str = "112", user_agent: str) -> LocalParty:
        """Who we are to an INVITE session over `transport` (sip/session.py)."""
        return LocalParty(
            via_host=self.advertise,
            via_port=self.port_for(transport),
            contact=self.contact(user, transport),
            user_agent=user_agent,
        )


def _ignore(event: TransactionEvent) -> None:
    del event
