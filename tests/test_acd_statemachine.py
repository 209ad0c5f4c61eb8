"""The ACD against a reference model, driven by hypothesis through random histories.

Random arrivals of every category, hang-ups, answers, failures of each kind, ring
timeouts (time jumps, including exactly onto deadlines), registrations,
unregistrations, reachability flaps, pauses, call ends and lost operator legs.
The model is written from the rules, not from the code: an operator's shown state
is *derived* from (registered, reachable, pause, activity), the assignment is
checked against "first caller in order, longest-idle eligible operator", and every
action must be justified by the model. After every step:

* an operator has at most one offer or call, a caller at most one offer;
* nothing is RESERVED, in WRAP_UP, due an announcement or due an overflow past
  ``now`` — and ``deadline()`` is exactly the model's next timer, later than now;
* every queue stay ends exactly once (answered | abandoned | overflowed);
* among callers one operator could serve, the offer goes in queue order;
* no caller waits while an operator eligible for them is AVAILABLE;
* the states equal the model's, and the reported state changes chain up.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from callcenter112.acd import (
    Acd,
    AcdAction,
    AcdSettings,
    AnnouncePosition,
    CallerLeftQueue,
    CallerQueued,
    CancelOffer,
    OfferCall,
    OfferNotFoundError,
    OperatorProfile,
    OperatorState,
    OperatorStateChanged,
    OperatorTransitionError,
    OverflowCall,
    PauseRefusedError,
    QueueOutcome,
)

S = OperatorState
PRIORITY = {"medical": 1, "fire": 1, "disaster": 1, "police": 2, "unknown": 3}
CATEGORIES = sorted(PRIORITY)
SKILLS = {
    "op0": frozenset({"medical", "fire", "disaster", "police"}),
    "op1": frozenset({"medical", "fire"}),
    "op2": frozenset({"police"}),
    "op3": frozenset[str](),
}
ON_DUTY = {S.AVAILABLE, S.RESERVED, S.ON_CALL, S.WRAP_UP}
RING = 15.0
MAX_MISSED = 2
PERIOD = 30.0


@dataclass
class ModelOperator:
    user: str
    order: int
    skills: frozenset[str]
    registered: bool = False
    reachable: bool = False
    pause: str | None = None
    activity: str = "idle"  # idle | reserved | talking | wrap
    call: str | None = None
    offer_deadline: float | None = None
    wrap_until: float | None = None
    blocked_until: float | None = None
    missed: int = 0
    idle_since: float = 0.0
    shown: OperatorState = S.OFFLINE  # last reported by OperatorStateChanged

    @property
    def online(self) -> bool:
        return self.registered and self.reachable

    def derived(self) -> OperatorState:
        if self.activity == "reserved":
            return S.RESERVED
        if self.activity == "talking":
            return S.ON_CALL
        if self.activity == "wrap":
            return S.WRAP_UP
        if not self.online:
            return S.OFFLINE
        return S.PAUSED if self.pause else S.AVAILABLE


@dataclass
class ModelCaller:
    ref: str
    category: str
    arrived: float
    queued_at: float
    front: bool
    seq: int
    next_announce: float
    overflow_at: float | None
    offered_to: str | None = None

    @property
    def key(self) -> tuple[int, int, float, int]:
        return (PRIORITY[self.category], 0 if self.front else 1, self.arrived, self.seq)


class AcdMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.now = 100.0
        self.ops = {
            u: ModelOperator(user=u, order=i, skills=s) for i, (u, s) in enumerate(SKILLS.items())
        }
        self.queue: dict[str, ModelCaller] = {}
        self.talks: dict[str, tuple[str, float]] = {}
        self.n_calls = 0
        self.seq = 0
        self.exits: dict[str, list[QueueOutcome]] = {}
        self.entries: dict[str, int] = {}
        # What the current input entitles the ACD to do.
        self.hanging_up: str | None = None
        self.answering: str | None = None
        self.overflowing: set[str] = set()

    @initialize(
        wrapup=st.sampled_from([0.0, 10.0]),
        overflow=st.sampled_from([0.0, 100.0]),
        backoff=st.sampled_from([0.0, 5.0]),
        online=st.sets(st.sampled_from(sorted(SKILLS))),
    )
    def setup(self, wrapup: float, overflow: float, backoff: float, online: set[str]) -> None:
        self.wrapup, self.overflow, self.backoff = wrapup, overflow, backoff
        self.acd = Acd(
            AcdSettings(
                priority=PRIORITY,
                ring_timeout_s=RING,
                max_missed=MAX_MISSED,
                wrapup_s=wrapup,
                position_every_s=PERIOD,
                overflow_after_s=overflow,
                decline_backoff_s=backoff,
            ),
            [OperatorProfile(user=u, skills=s) for u, s in SKILLS.items()],
            now=self.now,
        )
        for user in sorted(online):
            op = self.ops[user]
            op.registered = op.reachable = True
            self.run(self.acd.operator_registered(user, self.now))

    # --- model helpers ------------------------------------------------------------------

    def staffed(self) -> frozenset[str]:
        return frozenset().union(*(o.skills for o in self.ops.values() if o.shown in ON_DUTY))

    def can_serve(self, op: ModelOperator, category: str) -> bool:
        return category == "unknown" or category in op.skills or category not in self.staffed()

    def free(self, op: ModelOperator) -> bool:
        blocked = op.blocked_until is not None and op.blocked_until > self.now
        return op.shown is S.AVAILABLE and not blocked

    def ordered(self) -> list[ModelCaller]:
        return sorted(self.queue.values(), key=lambda c: c.key)

    def rank(self, caller: ModelCaller) -> int:
        return 1 + sum(1 for c in self.queue.values() if c.key < caller.key)

    def add_caller(self, ref: str, category: str, arrived: float, front: bool) -> None:
        self.seq += 1
        overflow_at = None
        if self.overflow > 0:
            overflow_at = (self.now if front else arrived) + self.overflow
        self.queue[ref] = ModelCaller(
            ref=ref,
            category=category,
            arrived=arrived,
            queued_at=self.now,
            front=front,
            seq=self.seq,
            next_announce=self.now + PERIOD,
            overflow_at=overflow_at,
        )
        self.entries[ref] = self.entries.get(ref, 0) + 1

    def pick(self, items: list[str], index: int) -> str:
        return items[index % len(items)]

    def with_activity(self, activity: str) -> list[str]:
        return [u for u, o in self.ops.items() if o.activity == activity]

    # --- applying the ACD's actions to the model ---------------------------------------

    def apply(self, actions: list[AcdAction]) -> None:
        for action in actions:
            if isinstance(action, CallerQueued):
                caller = self.queue[action.call_ref]
                assert action.at == self.now and action.category == caller.category
                assert action.requeued == caller.front
                assert action.position == self.rank(caller)
            elif isinstance(action, OfferCall):
                self.check_offer(action)
            elif isinstance(action, CancelOffer):
                self.apply_cancel(action)
            elif isinstance(action, OverflowCall):
                caller = self.queue[action.call_ref]
                assert caller.overflow_at is not None and caller.overflow_at <= self.now
                assert caller.offered_to is None
                self.overflowing.add(action.call_ref)
            elif isinstance(action, AnnouncePosition):
                caller = self.queue[action.call_ref]
                assert caller.next_announce <= self.now
                assert action.position == self.rank(caller)
                while caller.next_announce <= self.now:
                    caller.next_announce += PERIOD
            elif isinstance(action, CallerLeftQueue):
                self.apply_exit(action)
            else:
                assert isinstance(action, OperatorStateChanged)
                self.apply_state_change(action)
        self.hanging_up = self.answering = None
        assert not self.overflowing, "OverflowCall without its CallerLeftQueue"

    def check_offer(self, offer: OfferCall) -> None:
        caller = self.queue[offer.call_ref]
        op = self.ops[offer.operator]
        assert caller.offered_to is None, "a second offer for one caller"
        assert op.activity == "idle" and self.free(op), f"{op.user} is not free"
        assert self.can_serve(op, caller.category)
        assert offer.deadline == self.now + RING
        for other in self.queue.values():
            if other.offered_to is None and other.key < caller.key:
                assert not self.can_serve(op, other.category), (
                    f"{other.ref} is ahead of {caller.ref} and {op.user} can serve it"
                )
        for rival in self.ops.values():
            if (
                rival is not op
                and self.free(rival)
                and rival.activity == "idle"
                and self.can_serve(rival, caller.category)
            ):
                assert (op.idle_since, op.order) < (rival.idle_since, rival.order), (
                    f"{rival.user} has been idle longer than {op.user}"
                )
        caller.offered_to = op.user
        op.activity, op.call, op.offer_deadline = "reserved", caller.ref, offer.deadline

    def apply_cancel(self, cancel: CancelOffer) -> None:
        op = self.ops[cancel.operator]
        assert op.activity == "reserved" and op.call == cancel.call_ref
        if cancel.reason == "no_answer":
            assert op.offer_deadline is not None and op.offer_deadline <= self.now
            op.missed += 1
            if op.missed >= MAX_MISSED:
                op.missed, op.pause = 0, "missed_calls"
        elif cancel.reason == "caller_left":
            assert self.hanging_up == cancel.call_ref
        else:
            assert cancel.reason == "operator_offline" and not op.online
        op.activity, op.call, op.offer_deadline = "idle", None, None
        self.queue[cancel.call_ref].offered_to = None

    def apply_exit(self, left: CallerLeftQueue) -> None:
        caller = self.queue.pop(left.call_ref)
        assert left.at == self.now and left.waited_s == self.now - caller.queued_at
        if left.outcome is QueueOutcome.ABANDONED:
            assert self.hanging_up == left.call_ref
        elif left.outcome is QueueOutcome.ANSWERED:
            assert self.answering == left.call_ref and left.operator == caller.offered_to
        else:
            assert left.outcome is QueueOutcome.OVERFLOWED
            self.overflowing.remove(left.call_ref)
        self.exits.setdefault(left.call_ref, []).append(left.outcome)
        assert len(self.exits[left.call_ref]) == self.entries[left.call_ref]

    def apply_state_change(self, change: OperatorStateChanged) -> None:
        op = self.ops[change.operator]
        assert change.at == self.now and change.old is op.shown and change.new is not op.shown
        if change.old is S.WRAP_UP and op.activity == "wrap":  # not ended by a pause
            assert op.wrap_until is not None and op.wrap_until <= self.now
            op.activity, op.wrap_until = "idle", None
        if change.new is S.AVAILABLE and change.reason != "caller_left":
            op.idle_since = self.now
        if change.new is S.PAUSED:
            assert change.reason == op.pause
        op.shown = change.new

    def run(self, actions: list[AcdAction]) -> None:
        for op in self.ops.values():
            if op.blocked_until is not None and op.blocked_until <= self.now:
                op.blocked_until = None
        self.apply(actions)

    # --- rules: callers -----------------------------------------------------------------

    @rule(category=st.sampled_from(CATEGORIES), ivr_s=st.sampled_from([0.0, 3.0, 20.0, 150.0]))
    def arrive(self, category: str, ivr_s: float) -> None:
        self.n_calls += 1
        ref = f"c{self.n_calls}"
        arrived = self.now - ivr_s
        self.add_caller(ref, category, arrived, front=False)
        self.run(self.acd.enqueue(ref, category, arrived, self.now))

    @precondition(lambda self: bool(self.queue))
    @rule(index=st.integers(0, 99))
    def hang_up(self, index: int) -> None:
        ref = self.pick(sorted(self.queue), index)
        self.hanging_up = ref
        self.run(self.acd.caller_left(ref, self.now))
        assert ref not in self.queue

    @precondition(lambda self: bool(self.with_activity("reserved")))
    @rule(index=st.integers(0, 99))
    def answer(self, index: int) -> None:
        op = self.ops[self.pick(self.with_activity("reserved"), index)]
        ref = op.call
        assert ref is not None
        self.answering = ref
        self.talks[ref] = (self.queue[ref].category, self.queue[ref].arrived)
        op.activity, op.offer_deadline, op.missed = "talking", None, 0
        self.run(self.acd.offer_answered(ref, op.user, self.now))
        assert ref not in self.queue

    @precondition(lambda self: bool(self.with_activity("reserved")))
    @rule(
        index=st.integers(0, 99),
        reason=st.sampled_from(["busy", "rejected", "unreachable", "error"]),
    )
    def fail(self, index: int, reason: str) -> None:
        op = self.ops[self.pick(self.with_activity("reserved"), index)]
        ref = op.call
        assert ref is not None
        if reason == "unreachable":
            op.reachable = False
        elif self.backoff > 0:
            op.blocked_until = self.now + self.backoff
        op.activity, op.call, op.offer_deadline = "idle", None, None
        self.queue[ref].offered_to = None
        self.run(self.acd.offer_failed(ref, op.user, reason, self.now))

    @rule(index=st.integers(0, 99), who=st.integers(0, 3))
    def stale_answer_is_refused(self, index: int, who: int) -> None:
        user = f"op{who}"
        refs = sorted(self.queue) or ["nobody"]
        ref = self.pick(refs, index)
        if self.ops[user].call == ref and self.ops[user].activity == "reserved":
            return
        before = self.acd.snapshot()
        with pytest.raises(OfferNotFoundError):
            self.acd.offer_answered(ref, user, self.now)
        assert self.acd.snapshot() == before

    # --- rules: time --------------------------------------------------------------------

    @rule(dt=st.sampled_from([0.0, 0.5, 1.0, 4.0, 5.0, 10.0, 14.9, 15.0, 31.0, 60.0]))
    def advance(self, dt: float) -> None:
        self.now += dt
        self.run(self.acd.tick(self.now))

    @precondition(lambda self: self.acd.deadline() is not None)
    @rule()
    def jump_to_deadline(self) -> None:
        deadline = self.acd.deadline()
        assert deadline is not None
        self.now = deadline
        self.run(self.acd.tick(self.now))

    # --- rules: operators ---------------------------------------------------------------

    @rule(who=st.integers(0, 3))
    def register(self, who: int) -> None:
        op = self.ops[f"op{who}"]
        op.registered = op.reachable = True
        self.run(self.acd.operator_registered(op.user, self.now))

    @rule(who=st.integers(0, 3))
    def unregister(self, who: int) -> None:
        op = self.ops[f"op{who}"]
        op.registered = False
        self.run(self.acd.operator_unregistered(op.user, self.now))

    @rule(who=st.integers(0, 3), reachable=st.booleans())
    def qualify(self, who: int, reachable: bool) -> None:
        op = self.ops[f"op{who}"]
        op.reachable = reachable
        self.run(self.acd.operator_reachable(op.user, reachable, self.now))

    @rule(who=st.integers(0, 3), reason=st.sampled_from(["break", "meal"]))
    def pause(self, who: int, reason: str) -> None:
        op = self.ops[f"op{who}"]
        shown = op.derived()
        if op.pause is not None or shown not in {S.AVAILABLE, S.WRAP_UP, S.ON_CALL}:
            before = self.acd.snapshot()
            with pytest.raises(PauseRefusedError):
                self.acd.pause(op.user, reason, self.now)
            assert self.acd.snapshot() == before
            return
        op.pause = reason
        if shown is S.WRAP_UP:
            op.activity, op.wrap_until = "idle", None
        self.run(self.acd.pause(op.user, reason, self.now))

    @rule(who=st.integers(0, 3))
    def unpause(self, who: int) -> None:
        op = self.ops[f"op{who}"]
        if op.pause is None:
            with pytest.raises(PauseRefusedError):
                self.acd.unpause(op.user, self.now)
            return
        op.pause = None
        self.run(self.acd.unpause(op.user, self.now))

    @precondition(lambda self: bool(self.with_activity("talking")))
    @rule(index=st.integers(0, 99))
    def call_end(self, index: int) -> None:
        op = self.ops[self.pick(self.with_activity("talking"), index)]
        assert op.call is not None
        del self.talks[op.call]
        op.activity, op.call, op.wrap_until = "wrap", None, self.now + self.wrapup
        self.run(self.acd.call_ended(op.user, self.now))

    @rule(who=st.integers(0, 3))
    def call_end_without_a_call_is_refused(self, who: int) -> None:
        op = self.ops[f"op{who}"]
        if op.activity == "talking":
            return
        before = self.acd.snapshot()
        with pytest.raises(OperatorTransitionError):
            self.acd.call_ended(op.user, self.now)
        assert self.acd.snapshot() == before

    @precondition(lambda self: bool(self.with_activity("talking")))
    @rule(index=st.integers(0, 99))
    def leg_lost(self, index: int) -> None:
        op = self.ops[self.pick(self.with_activity("talking"), index)]
        ref = op.call
        assert ref is not None
        category, arrived = self.talks.pop(ref)
        op.reachable, op.activity, op.call = False, "idle", None
        self.add_caller(ref, category, arrived, front=True)
        self.run(self.acd.operator_leg_lost(ref, op.user, self.now))

    # --- invariants -----------------------------------------------------------------------

    @invariant()
    def states_match_the_model(self) -> None:
        if not hasattr(self, "acd"):
            return
        snap = self.acd.snapshot()
        for view in snap.operators:
            op = self.ops[view.user]
            assert view.state is op.shown is op.derived(), (view, op)
            assert view.pause_reason == op.pause
            assert view.call_ref == op.call
            assert view.missed == op.missed
            assert (view.registered, view.reachable) == (op.registered, op.reachable)

    @invariant()
    def queue_matches_the_model(self) -> None:
        if not hasattr(self, "acd"):
            return
        snap = self.acd.snapshot()
        assert [c.call_ref for c in snap.callers] == [c.ref for c in self.ordered()]
        offered = [c.offered_to for c in snap.callers if c.offered_to is not None]
        assert len(offered) == len(set(offered)), "an operator with two offers"
        for view in snap.callers:
            assert view.offered_to == self.queue[view.call_ref].offered_to
            if view.offered_to is not None:
                assert self.ops[view.offered_to].call == view.call_ref
        talking = {o.call for o in self.ops.values() if o.activity == "talking"}
        assert talking == set(self.talks) and not talking & set(self.queue)

    @invariant()
    def no_timer_left_behind(self) -> None:
        if not hasattr(self, "acd"):
            return
        timers: list[float] = []
        for op in self.ops.values():
            if op.activity == "reserved":
                assert op.offer_deadline is not None and op.offer_deadline > self.now
                timers.append(op.offer_deadline)
            if op.activity == "wrap":
                assert op.wrap_until is not None and op.wrap_until > self.now
                timers.append(op.wrap_until)
            if op.blocked_until is not None:
                timers.append(op.blocked_until)
        for caller in self.queue.values():
            assert caller.next_announce > self.now
            timers.append(caller.next_announce)
            if caller.overflow_at is not None and caller.offered_to is None:
                assert caller.overflow_at > self.now
                timers.append(caller.overflow_at)
        deadline = self.acd.deadline()
        assert deadline == min(timers, default=None)
        assert deadline is None or deadline > self.now

    @invariant()
    def work_conserving(self) -> None:
        if not hasattr(self, "acd"):
            return
        for caller in self.queue.values():
            if caller.offered_to is None:
                for op in self.ops.values():
                    assert not (self.free(op) and self.can_serve(op, caller.category)), (
                        f"{caller.ref} waits while {op.user} is free for it"
                    )

    def teardown(self) -> None:
        if not hasattr(self, "acd"):
            return
        # Everyone still queued hangs up: each stay must then have ended exactly once.
        for ref in sorted(self.queue):
            self.hanging_up = ref
            self.run(self.acd.caller_left(ref, self.now))
        assert not self.queue and self.acd.snapshot().callers == ()
        for ref, outcomes in self.exits.items():
            assert len(outcomes) == self.entries[ref]
        assert set(self.entries) == set(self.exits) | set(self.talks)


AcdMachine.TestCase.settings = settings(
    max_examples=400,
    stateful_step_count=80,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestAcdStateMachine = AcdMachine.TestCase
