"""The call actor's phase bookkeeping (callflow/call.py) over a fake clock.

`EmergencyCall` takes a `CallServices` (callflow/services.py), so it can be
built here without a centre, sockets or a database: the services below are
the few members phase changes touch, and the clock is a number.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from callcenter112.callflow.call import EmergencyCall
from callcenter112.callflow.phases import PHASE_TABLE, Happening, Phase
from callcenter112.callflow.services import CallServices
from callcenter112.counters import CoreCounters, Counted
from callcenter112.sip.message import Headers, Request, parse_message
from callcenter112.sip.peer import Peer
from callcenter112.sip.session import LocalParty
from callcenter112.sip.transaction import server_key


@dataclass
class Clock:
    now: float = 100.0

    def time(self) -> float:
        return self.now


@dataclass
class Ivr:
    language: str = "en"


@dataclass
class Sip:
    advertise: str = "192.0.2.10"


@dataclass
class Config:
    ivr: Ivr = field(default_factory=Ivr)
    sip: Sip = field(default_factory=Sip)


class Endpoint:
    """Nothing goes on a wire in these tests: phase bookkeeping sends nothing."""

    port = 5060

    def local_party(self, transport: str, *, user: str = "112", user_agent: str) -> LocalParty:
        return LocalParty(
            via_host="192.0.2.10", via_port=5060, contact=f"<sip:{user}@192.0.2.10:5060>"
        )


@dataclass
class Services:
    loop: Clock = field(default_factory=Clock)
    config: Config = field(default_factory=Config)
    metrics: CoreCounters = field(default_factory=CoreCounters)
    endpoint: Endpoint = field(default_factory=Endpoint)
    user_agent: str = "callcenter112/test"
    recordings_dir: Path = Path("/nonexistent")
    store: Any = None
    media: Any = None
    published: list[tuple[str, dict[str, Any] | None]] = field(default_factory=list)

    def wall(self) -> float:
        return 1_765_000_000.0 + self.loop.now

    def publish(self, kind: str, *, data: dict[str, Any] | None = None, **_: object) -> None:
        self.published.append((kind, data))


def make_call(services: Services) -> EmergencyCall:
    h = Headers()
    h.add("Via", "SIP/2.0/UDP 192.0.2.1:5062;branch=z9hG4bK-call-test;rport")
    h.add("From", "<sip:+4930123@192.0.2.1>;tag=a1")
    h.add("To", "<sip:112@192.0.2.10>")
    h.add("Call-ID", "call-test")
    h.add("CSeq", "1 INVITE")
    h.add("Contact", "<sip:+4930123@192.0.2.1:5062>")
    invite = parse_message(Request("INVITE", "sip:112@192.0.2.10", h).serialize())
    assert isinstance(invite, Request)
    return EmergencyCall(
        cast(CallServices, services),
        invite=invite,
        peer=Peer("udp", "192.0.2.1", 5062),
        server_key=server_key(invite),
        to_tag="t1",
        trunk="carrier",
        arrived_mono=services.loop.now,
        arrived_wall=services.wall(),
    )


def test_a_call_walks_its_phases_through_the_table() -> None:
    services = Services()
    call = make_call(services)
    assert call.phase is Phase.ARRIVING and not call.done
    walk = [
        (Happening.ANSWERED, Phase.IVR),
        (Happening.IVR_FINISHED, Phase.QUEUE),
        (Happening.OPERATOR_ANSWERED, Phase.TALKING),
        (Happening.OPERATOR_HELD, Phase.HOLD),
        (Happening.OPERATOR_RESUMED, Phase.TALKING),
        (Happening.TRANSFER_DIALLED, Phase.TRANSFER),
        (Happening.BACK_TO_OPERATOR, Phase.TALKING),
        (Happening.CONFERENCE_STARTED, Phase.CONFERENCE),
        (Happening.CONFERENCE_COLLAPSED, Phase.TALKING),
        (Happening.OPERATOR_LOST, Phase.QUEUE),
    ]
    for step, (happening, phase) in enumerate(walk, start=1):
        services.loop.now += 1
        call.change_phase(happening)
        assert call.phase is phase
        assert call.phase_since == services.loop.now
        assert services.published[-1] == ("call_changed", {"phase": phase.value})
        assert len(services.published) == step
    call.change_phase(Happening.ENDED, publish=False)
    assert call.done and call.phase is Phase.ENDED
    assert len(services.published) == len(walk)  # the end is published as call_ended
    assert services.metrics[Counted.PHASE_TABLE_GAPS] == 0


def test_a_gap_in_the_table_is_counted_and_the_caller_stays_served() -> None:
    services = Services()
    call = make_call(services)
    assert (Phase.ARRIVING, Happening.OPERATOR_HELD) not in PHASE_TABLE
    call.change_phase(Happening.OPERATOR_HELD)
    assert call.phase is Phase.HOLD  # where the happening leads: audio already switched
    assert services.metrics[Counted.PHASE_TABLE_GAPS] == 1


def test_refused_before_answer_ends_the_call() -> None:
    services = Services()
    call = make_call(services)
    call.change_phase(Happening.REFUSED, publish=False)
    assert call.done and services.published == []
