"""Random event orders against the whole call flow (issue 10).

A hypothesis state machine drives the real centre over the fake wire and
clock of tests/callflow_harness.py: callers dial, press digits, hang up and
cancel; the operator's phone rings, answers, refuses, hangs up or goes
silent; agencies answer or refuse transfers; and any SIP message already
delivered may arrive again later (a retransmission, a duplicate, a request
out of its order). After every step no live call may sit in a phase with
nothing pending; once everyone has hung up, every call must have ended with
no RTP leg or port held, every recording sealed or marked lost, and every
incident closed with its timestamps in order.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from callcenter112.callflow.call import EmergencyCall
from callcenter112.callflow.phases import Phase
from callcenter112.counters import Counted
from callcenter112.sip.message import Request, Response
from callcenter112.sip.peer import Peer
from callflow_harness import PROXY, Caller, CallflowHarness, Phone
from harness import Operator

pytestmark = pytest.mark.slow

MAX_CALLERS = 3


class CallFlowMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.directory = Path(tempfile.mkdtemp(prefix="callflow-machine-"))
        self.h = self.run(
            CallflowHarness.open(
                self.directory,
                operators=[Operator("op1", "secret1")],
                agencies=[("fire", "113")],
            )
        )
        self.op = Phone(self.h, "op1", "secret1")
        self.run(self.op.register())
        self.agency = Phone(self.h, "fire", port=PROXY.port, rtp_port=42000)
        self.callers: list[Caller] = []
        self.delivered: list[tuple[Request | Response, Peer]] = []
        self.commands: list[asyncio.Task[None]] = []
        self.op_cseq = 100

    def run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return self.loop.run_until_complete(coro)

    def deliver(self, message: Request | Response, peer: Peer) -> None:
        self.delivered.append((message, peer))
        self.run(self.h.deliver(message, peer))

    def live(self) -> list[EmergencyCall]:
        return [c for c in self.h.centre.active if not c.done]

    # -- callers ------------------------------------------------------------------

    @precondition(lambda self: len(self.callers) < MAX_CALLERS)
    @rule()
    def dial(self) -> None:
        caller = Caller(
            self.h, number=f"+49301{len(self.callers):04d}", port=5070 + len(self.callers)
        )
        self.callers.append(caller)
        self.run(caller.dial())
        assert caller.invite is not None
        self.delivered.append((caller.invite, caller.peer))
        if caller.final() is not None:
            self.run(caller.ack())

    @precondition(lambda self: self.callers)
    @rule(data=st.data(), digit=st.sampled_from("1234590*#"))
    def press(self, data: st.DataObject, digit: str) -> None:
        caller = data.draw(st.sampled_from(self.callers))
        if caller.remote_tag:
            self.run(caller.digit(digit))

    @precondition(lambda self: self.callers)
    @rule(data=st.data())
    def caller_hangs_up(self, data: st.DataObject) -> None:
        caller = data.draw(st.sampled_from(self.callers))
        if caller.remote_tag:
            request = self.run(caller.bye())
            self.delivered.append((request, caller.peer))

    @precondition(lambda self: self.callers)
    @rule(data=st.data())
    def caller_cancels(self, data: st.DataObject) -> None:
        caller = data.draw(st.sampled_from(self.callers))
        self.run(caller.cancel())  # after the 200 already: must change nothing

    @precondition(lambda self: self.callers)
    @rule(data=st.data())
    def caller_answers_what_it_was_sent(self, data: st.DataObject) -> None:
        caller = data.draw(st.sampled_from(self.callers))
        self.run(caller.answer_requests(data.draw(st.sampled_from([200, 200, 481]))))

    # -- the operator's phone and the agency --------------------------------------------

    @precondition(lambda self: self.op.ringing() is not None)
    @rule(status=st.sampled_from([180, 200, 200, 486, 603]))
    def operator_answers(self, status: int) -> None:
        invite = self.op.ringing()
        assert invite is not None
        self.run(self.op.answer(invite, status))

    @precondition(lambda self: self.op.invites())
    @rule(data=st.data())
    def operator_hangs_up(self, data: st.DataObject) -> None:
        invite = data.draw(st.sampled_from(self.op.invites()))
        self.op_cseq += 1
        request = self.run(self.op.request_in(invite, "BYE", self.op_cseq))
        self.delivered.append((request, self.op.peer))

    @rule(status=st.sampled_from([200, 481]))
    def operator_answers_requests(self, status: int) -> None:
        self.run(self.op.answer_requests(status))

    @precondition(lambda self: any(c.phase is Phase.TALKING for c in self.live()))
    @rule(mode=st.sampled_from(["blind", "conference"]))
    def operator_transfers(self, mode: str) -> None:
        call = next(c for c in self.live() if c.phase is Phase.TALKING)
        if call.incident_id is None:
            return
        task = self.loop.create_task(
            self.h.centre.transfer(call.incident_id, "fire", mode=mode, actor="op1")
        )
        self.commands.append(task)
        self.run(self.h.settle())

    @precondition(lambda self: self.agency.ringing() is not None)
    @rule(status=st.sampled_from([200, 486, 503]))
    def agency_answers(self, status: int) -> None:
        invite = self.agency.ringing()
        assert invite is not None
        self.run(self.agency.answer(invite, status))

    @rule()
    def agency_answers_requests(self) -> None:
        self.run(self.agency.answer_requests())

    # -- the wire and the clock -------------------------------------------------------

    @precondition(lambda self: self.delivered)
    @rule(data=st.data())
    def old_message_arrives_again(self, data: st.DataObject) -> None:
        """A retransmission, a duplicate or a request out of its order."""
        message, peer = data.draw(st.sampled_from(self.delivered))
        self.run(self.h.deliver(message, peer))

    @rule(seconds=st.sampled_from([0.1, 1.0, 4.0, 20.0]))
    def time_passes(self, seconds: float) -> None:
        self.run(self.h.advance(seconds))

    # -- what must hold -----------------------------------------------------------------

    @invariant()
    def no_call_waits_on_nothing(self) -> None:
        pending = self.h.clock.pending()
        for call in self.live():
            timers = [t for t in pending if getattr(t.callback, "__self__", None) is call]
            assert timers or call.phase is Phase.ARRIVING, (
                f"{call.ref} in {call.phase} with no timer armed"
            )
            if call.phase is Phase.TALKING:
                assert call.operator_leg is not None, f"{call.ref} talking to nobody"
            if call.phase is Phase.QUEUE:
                assert self.h.centre.desk.acd.is_queued(call.ref) or call.offers, (
                    f"{call.ref} queued but neither waiting nor offered"
                )

    @invariant()
    def every_phase_change_is_in_the_table(self) -> None:
        assert self.h.centre.metrics[Counted.PHASE_TABLE_GAPS] == 0

    def teardown(self) -> None:
        try:
            self.run(self.finish())
        finally:
            self.run(self.h.close())
            self.loop.close()
            shutil.rmtree(self.directory, ignore_errors=True)

    async def finish(self) -> None:
        h = self.h
        for _ in range(40):
            if not h.centre.active and all(t.done() for t in self.commands):
                break
            for caller in self.callers:
                if caller.remote_tag and caller.byes() == [] and caller.invite is not None:
                    await caller.bye()
                await caller.answer_requests()
            await self.op.answer_requests()
            await self.agency.answer_requests()
            await h.advance(2.0)
        await asyncio.gather(*self.commands, return_exceptions=True)
        assert not h.centre.active, [(c.ref, c.phase) for c in h.centre.active]
        assert await h.check_ended() == []


CallFlowMachine.TestCase.settings = settings(
    max_examples=12,
    stateful_step_count=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_call_flow_under_random_event_orders = CallFlowMachine.TestCase
