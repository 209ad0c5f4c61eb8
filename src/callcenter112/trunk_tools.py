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
- `test_call` is not wired yet: it answers "not available" (see the report).
"""

from __future__ import annotations

import asyncio
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
        return TestCallResult(
            target=target, status=None, reason="test calls are not available yet", duration_s=0.0
        )
