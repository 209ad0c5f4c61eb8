"""`TrunkTools` on the running centre's SIP endpoint (issue 16).

- `probe(trunk)`: OPTIONS to the trunk's proxy; its final status and the
  round-trip time (no answer by Timer F: status None). Recorded in the
  trunk's `TrunkHealth` exactly as the continuous qualify is.
- Continuous qualify: every `[[trunk]] qualify_s` (0 = off) per trunk with a
  proxy. A trunk that stops answering goes `down` after
  `TrunkHealth.down_after` misses: a `trunk_alarm` on the live stream (the
  wallboard and console subscribe to it) and a warning in the log; `up`
  again on the first answer.
- Counters per trunk (`TrunkCounters`), read off the wire by `observe`
  (the transport's tap, beside the SIP capture): our final answer to each
  new INVITE from a trunk ("call" for 2xx, "reject:<code>" otherwise) and
  the carrier's 4xx-6xx to our INVITEs through it ("carrier:<code>").
- `test_call(target)`: an INVITE (no media: a=inactive) to an agency's
  number over its trunk, or to a trunk's number through its proxy; the final
  answer and how long it took; then BYE after a 2xx, CANCEL if nothing final
  came within the agency's ring timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
from collections import OrderedDict
from typing import TYPE_CHECKING

from .admin import ProbeResult, TestCallResult, trunk_health_report
from .config import TrunkConfig
from .logs import get_logger
from .sip.events import ResponseReceived, TransactionEvent
from .sip.peer import Peer
from .trunk_health import ProbeOutcome, TrunkCounters, TrunkHealth, TrunkState

if TYPE_CHECKING:
    from .centre import Centre

__all__ = ["QUALIFY_TICK_S", "QUALIFY_TIMEOUT_S", "EndpointTrunkTools"]

log = get_logger("trunks")

QUALIFY_TICK_S = 1.0
# A probe unanswered after this long counts as missed, whatever Timer F
# (32 s) says: pjsip's `qualify_timeout` default is 3.0 s (res_pjsip,
# pjsip.conf.sample). The transaction itself still runs to its end.
QUALIFY_TIMEOUT_S = 3.0
TEST_RING_S = 30.0  # a test call to a number (agencies use their ring_timeout_s)
HANGUP_WAIT_S = 5.0  # for the BYE's or CANCEL's answer before the result is shown
_COUNTED_MAX = 10_000  # Call-IDs whose first final answer was counted


def _first_line(data: bytes) -> bytes:
    return data.split(b"\r\n", 1)[0]


def _header(data: bytes, *names: bytes) -> bytes | None:
    head = data.split(b"\r\n\r\n", 1)[0]
    for line in head.split(b"\r\n")[1:]:
        name, sep, value = line.partition(b":")
        if sep and name.strip().lower() in names:
            return value.strip()
    return None


class EndpointTrunkTools:
    """Probe, qualify and count the centre's trunks."""

    def __init__(self, centre: Centre) -> None:
        self.centre = centre
        self.qualify: dict[str, TrunkHealth] = {}
        self.counters: dict[str, TrunkCounters] = {}
        self._counted: OrderedDict[str, None] = OrderedDict()
        self._timer: asyncio.TimerHandle | None = None
        self._pending: set[asyncio.Future[int | None]] = set()

    # -- trunks by address ------------------------------------------------------------

    def _trunk_at(self, host: str) -> TrunkConfig | None:
        try:
            addr = ipaddress.ip_address(host)
        except ValueError:
            return None
        for trunk in self.centre.config.trunk:
            if trunk.proxy is not None and trunk.proxy.host == host:
                return trunk
            if any(addr.version == n.version and addr in n for n in trunk.networks):
                return trunk
        return None

    def _health(self, trunk: TrunkConfig) -> TrunkHealth:
        health = self.qualify.get(trunk.name)
        if health is None:
            health = self.qualify[trunk.name] = TrunkHealth(trunk=trunk.name)
        if trunk.qualify_s > 0:
            health.interval = trunk.qualify_s
        return health

    # -- probe ----------------------------------------------------------------------------

    async def probe(self, trunk: str) -> ProbeResult:
        config = self.centre.config.trunk_named(trunk)
        if config is None:
            return ProbeResult(trunk=trunk, status=None, rtt_ms=None, reason="no such trunk")
        if config.proxy is None:
            return ProbeResult(trunk=trunk, status=None, rtt_ms=None, reason="no proxy to probe")
        return await self._probe(config)

    async def _probe(self, trunk: TrunkConfig) -> ProbeResult:
        from .callflow.call import outbound_request

        assert trunk.proxy is not None
        centre = self.centre
        loop = centre.loop
        peer = Peer(trunk.transport, trunk.proxy.host, trunk.proxy.port)
        uri = f"sip:{trunk.proxy}"
        options = outbound_request(
            centre, "OPTIONS", request_uri=uri, to_uri=f"<{uri}>", from_user="qualify", peer=peer
        )
        health = self._health(trunk)
        sent = loop.time()
        health.probe_sent(sent)
        done: asyncio.Future[int | None] = loop.create_future()

        def handler(event: TransactionEvent) -> None:
            if done.done():
                return
            if isinstance(event, ResponseReceived):
                if event.response.status >= 200:
                    done.set_result(event.response.status)
            else:
                done.set_result(None)  # Timer F or a transport error

        try:
            centre.endpoint.request(options, peer, handler)
            self._pending.add(done)
            status = await asyncio.wait_for(asyncio.shield(done), QUALIFY_TIMEOUT_S)
        except TimeoutError:
            status = None
        except Exception as exc:  # noqa: BLE001 - a probe reports, it never raises
            status = None
            log.warning("trunk_probe_failed", trunk=trunk.name, error=str(exc))
        self._pending.discard(done)
        now = loop.time()
        outcome = ProbeOutcome.ANSWERED if status is not None else ProbeOutcome.TIMED_OUT
        changed = health.probe_done(outcome, now=now, wall=centre.wall(), status=status)
        if changed is not None:
            self._alarm(changed.trunk, changed.state, changed.previous)
        rtt = round((now - sent) * 1000.0, 1) if status is not None else None
        return ProbeResult(
            trunk=trunk.name,
            status=status,
            rtt_ms=rtt,
            reason="" if status is not None else "no answer",
        )

    def _alarm(self, trunk: str, state: TrunkState, previous: TrunkState) -> None:
        data = {"trunk": trunk, "state": state.value, "previous": previous.value}
        if state is TrunkState.DOWN:
            log.warning("trunk_down", **data)
        else:
            log.info("trunk_state", **data)
        self.centre.publish("trunk_alarm", data=data)

    # -- continuous qualify ----------------------------------------------------------

    def start(self) -> None:
        self._tick()

    def _tick(self) -> None:
        now = self.centre.loop.time()
        for trunk in self.centre.config.trunk:
            if trunk.proxy is None or trunk.qualify_s <= 0:
                continue
            health = self._health(trunk)
            if health.due(now):
                self.centre.spawn(self._qualify(trunk))
        self._timer = self.centre.loop.call_later(QUALIFY_TICK_S, self._tick)

    async def _qualify(self, trunk: TrunkConfig) -> None:
        await self._probe(trunk)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        for pending in self._pending:
            pending.cancel()  # a stopping centre does not wait for carriers

    # -- counters ----------------------------------------------------------------------------

    def observe(self, direction: str, data: bytes, peer: Peer) -> None:
        """The transport's tap: count final answers to INVITEs on trunks."""
        line = _first_line(data)
        if not line.startswith(b"SIP/2.0 "):
            return
        cseq = _header(data, b"cseq") or b""
        if not cseq.endswith(b"INVITE"):
            return
        try:
            code = int(line.split(b" ", 2)[1])
        except (IndexError, ValueError):
            return
        if code < 200:
            return
        trunk = self._trunk_at(peer.host)
        if trunk is None:
            return
        counters = self.counters.setdefault(trunk.name, TrunkCounters())
        wall = self.centre.wall()
        if direction == "in":
            if code >= 400:
                counters.count(f"carrier:{code}", wall=wall)
            return
        call_id = (_header(data, b"call-id", b"i") or b"").decode("utf-8", "replace")
        if call_id in self._counted:
            return  # a re-INVITE's answer or a retransmission
        self._counted[call_id] = None
        while len(self._counted) > _COUNTED_MAX:
            self._counted.popitem(last=False)
        counters.count("call" if code < 300 else f"reject:{code}", wall=wall)

    def new_day(self) -> None:
        for counters in self.counters.values():
            counters.new_day()

    def health(self) -> dict[str, dict[str, object]]:
        names = [t.name for t in self.centre.config.trunk]
        return trunk_health_report(names, self.qualify, self.counters, wall=self.centre.wall())

    async def test_call(self, target: str) -> TestCallResult:
        """INVITE an agency's number (or a trunk's number) over its trunk, wait for
        the final answer, then hang up at once (BYE after a 2xx, CANCEL while it
        rings past the agency's ring timeout). No media flows (a=inactive)."""
        from .callflow.call import outbound_request
        from .callflow.legs import trunk_credentials
        from .sip.session import Answered, Failed, HungUp, InviteSession

        centre = self.centre
        config = centre.config
        loop = centre.loop
        agency = config.agency_named(target)
        if agency is not None:
            number, trunk = agency.number, config.trunk_named(agency.trunk)
            ring_s = agency.ring_timeout_s
        else:
            number, ring_s = target, TEST_RING_S
            trunk = next((t for t in config.trunk if target in t.numbers and t.proxy), None)
        if trunk is None or trunk.proxy is None:
            return TestCallResult(
                target=target, status=None, reason="no trunk with a proxy to call it", duration_s=0
            )
        proxy = trunk.proxy
        peer = Peer(trunk.transport, proxy.host, proxy.port)
        advertise = config.sip.advertise
        offer = (
            f"v=0\r\no=callcenter112 1 1 IN IP4 {advertise}\r\ns=test call\r\n"
            f"c=IN IP4 {advertise}\r\nt=0 0\r\nm=audio 9 RTP/AVP 8 0\r\na=inactive\r\n"
        ).encode()
        invite = outbound_request(
            centre,
            "INVITE",
            request_uri=f"sip:{number}@{proxy.host}:{proxy.port}",
            to_uri=f"<sip:{number}@{proxy.host}>",
            from_user=trunk.caller_id,
            display=config.centre.name,
            peer=peer,
            headers=[("Subject", "callcenter112 test call")],
            body=offer,
            content_type="application/sdp",
        )
        final: asyncio.Future[tuple[int, str]] = loop.create_future()
        ended: asyncio.Future[None] = loop.create_future()

        def on_event(event: TransactionEvent) -> None:
            for happened in session.receive(event, loop.time()):
                if isinstance(happened, Answered) and not final.done():
                    final.set_result((happened.response.status, happened.response.reason))
                    session.hangup("test call")
                elif isinstance(happened, Failed) and not final.done():
                    reason = happened.response.reason if happened.response else "no answer"
                    final.set_result((happened.status, reason))
                if isinstance(happened, HungUp | Failed) and not ended.done():
                    ended.set_result(None)

        session = InviteSession.outgoing(
            transactions=centre.endpoint,
            local=centre.endpoint.local_party(peer.transport, user_agent=centre.user_agent),
            invite=invite,
            peer=peer,
            on_event=on_event,
            credentials=trunk_credentials(config, trunk.name),
        )
        started = loop.time()
        session.start()
        try:
            status, reason = await asyncio.wait_for(asyncio.shield(final), ring_s)
        except TimeoutError:
            session.hangup("test call")  # CANCEL
            status, reason = 0, f"no final answer in {ring_s:g} s (cancelled)"
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(ended), HANGUP_WAIT_S)
        log.info("trunk_test_call", target=target, trunk=trunk.name, status=status or None)
        return TestCallResult(
            target=target,
            status=status or None,
            reason=reason,
            duration_s=loop.time() - started,
        )
