"""The ACD, rule by rule: queue order, assignment, offers, timers, pause and presence."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import TypeVar

import pytest

from callcenter112 import acd as acd_module
from callcenter112.acd import (
    Acd,
    AcdAction,
    AcdError,
    AcdSettings,
    AnnouncePosition,
    CallerLeftQueue,
    CallerQueued,
    CancelOffer,
    DuplicateCallError,
    OfferCall,
    OfferNotFoundError,
    OperatorProfile,
    OperatorState,
    OperatorStateChanged,
    OperatorTransitionError,
    OverflowCall,
    PauseRefusedError,
    QueueOutcome,
    UnknownCallError,
    UnknownCategoryError,
    UnknownOperatorError,
)
from callcenter112.config import load_config

ROOT = Path(__file__).resolve().parents[1]
ALL = frozenset({"medical", "fire", "disaster", "police"})
PRIORITY = {"medical": 1, "fire": 1, "disaster": 1, "police": 2, "unknown": 3}
S = OperatorState
A = TypeVar("A")


def make(
    ops: dict[str, frozenset[str]] | None = None,
    *,
    online: tuple[str, ...] = (),
    **kw: float,
) -> Acd:
    """An ACD with ``ops`` (default op1, op2 with every skill); ``online`` registered at
    t=0, 1, 2… in that order (so the first is the longest idle)."""
    settings = AcdSettings(
        priority=PRIORITY,
        ring_timeout_s=kw.pop("ring_timeout_s", 15.0),
        max_missed=int(kw.pop("max_missed", 2)),
        wrapup_s=kw.pop("wrapup_s", 10.0),
        position_every_s=kw.pop("position_every_s", 30.0),
        overflow_after_s=kw.pop("overflow_after_s", 0.0),
        decline_backoff_s=kw.pop("decline_backoff_s", 5.0),
    )
    assert not kw
    ops = ops if ops is not None else {"op1": ALL, "op2": ALL}
    acd = Acd(settings, [OperatorProfile(user=u, skills=s) for u, s in ops.items()])
    for i, user in enumerate(online):
        acd.operator_registered(user, float(i))
    return acd


def equal_priority(ops: dict[str, frozenset[str]]) -> Acd:
    """Every category in one priority class: only arrival and skills decide."""
    settings = AcdSettings(priority=dict.fromkeys(PRIORITY, 1))
    return Acd(settings, [OperatorProfile(user=u, skills=s) for u, s in ops.items()])


def of(kind: type[A], actions: list[AcdAction]) -> list[A]:
    return [a for a in actions if isinstance(a, kind)]


def offers(actions: list[AcdAction]) -> list[tuple[str, str]]:
    return [(o.call_ref, o.operator) for o in of(OfferCall, actions)]


def state(acd: Acd, op: str) -> OperatorState:
    return acd.operator_state(op)


def op_view(acd: Acd, user: str) -> acd_module.OperatorView:
    return next(o for o in acd.snapshot().operators if o.user == user)


def queue(acd: Acd) -> list[str]:
    return [c.call_ref for c in acd.snapshot().callers]


# --- registration and the first offer -------------------------------------------------------


def test_operators_start_offline_and_registering_makes_them_available() -> None:
    acd = make()
    assert state(acd, "op1") is S.OFFLINE
    out = acd.operator_registered("op1", 3.0)
    assert out == [
        OperatorStateChanged(
            operator="op1", old=S.OFFLINE, new=S.AVAILABLE, reason="registered", at=3.0
        )
    ]
    assert acd.operator_registered("op1", 4.0) == []  # a refresh changes nothing


def test_caller_without_operator_waits_and_hears_position() -> None:
    acd = make()
    out = acd.enqueue("c1", "medical", arrived_at=90.0, now=100.0)
    assert out == [
        CallerQueued(call_ref="c1", category="medical", position=1, requeued=False, at=100.0)
    ]
    assert acd.deadline() == 130.0  # first position announcement, one period after joining


def test_available_operator_gets_the_call_at_once() -> None:
    acd = make(online=("op1",))
    out = acd.enqueue("c1", "fire", arrived_at=90.0, now=100.0)
    assert out[1:] == [
        OfferCall(call_ref="c1", operator="op1", deadline=115.0),
        OperatorStateChanged(
            operator="op1", old=S.AVAILABLE, new=S.RESERVED, reason="offered", at=100.0
        ),
    ]
    assert acd.deadline() == 115.0
    view = acd.snapshot().callers[0]
    assert (view.offered_to, view.position, view.arrived_at, view.queued_at) == (
        "op1",
        1,
        90.0,
        100.0,
    )


def test_answer_puts_operator_on_call_and_caller_out_of_queue() -> None:
    acd = make(online=("op1",))
    acd.enqueue("c1", "fire", arrived_at=90.0, now=100.0)
    out = acd.offer_answered("c1", "op1", 104.0)
    assert out == [
        OperatorStateChanged(
            operator="op1", old=S.RESERVED, new=S.ON_CALL, reason="answered", at=104.0
        ),
        CallerLeftQueue(
            call_ref="c1", outcome=QueueOutcome.ANSWERED, waited_s=4.0, operator="op1", at=104.0
        ),
    ]
    assert queue(acd) == [] and op_view(acd, "op1").calls_today == 1
    assert op_view(acd, "op1").call_ref == "c1"
    assert acd.deadline() is None


# --- order ----------------------------------------------------------------------------------


def test_priority_then_arrival_not_enqueue_order() -> None:
    acd = make()
    acd.enqueue("police", "police", arrived_at=0.0, now=1.0)
    acd.enqueue("unknown", "unknown", arrived_at=0.5, now=2.0)
    acd.enqueue("late-ivr", "medical", arrived_at=2.0, now=40.0)  # long IVR, arrived earlier
    acd.enqueue("fire", "fire", arrived_at=3.0, now=5.0)
    assert queue(acd) == ["late-ivr", "fire", "police", "unknown"]
    out = acd.operator_registered("op1", 41.0)
    assert offers(out) == [("late-ivr", "op1")]
    out = acd.operator_registered("op2", 42.0)
    assert offers(out) == [("fire", "op2")]


def test_longest_idle_operator_first() -> None:
    acd = make({"op1": ALL, "op2": ALL, "op3": ALL})
    acd.operator_registered("op2", 1.0)
    acd.operator_registered("op3", 2.0)
    acd.operator_registered("op1", 3.0)
    out = acd.enqueue("a", "medical", 10.0, 10.0) + acd.enqueue("b", "medical", 11.0, 11.0)
    assert offers(out) == [("a", "op2"), ("b", "op3")]


def test_skills_route_the_call() -> None:
    acd = make({"medic": frozenset({"medical"}), "firefighter": frozenset({"fire"})})
    acd.operator_registered("medic", 0.0)
    acd.operator_registered("firefighter", 1.0)
    assert offers(acd.enqueue("f", "fire", 5.0, 5.0)) == [("f", "firefighter")]
    assert offers(acd.enqueue("m", "medical", 6.0, 6.0)) == [("m", "medic")]


def test_caller_nobody_free_can_serve_does_not_block_the_next() -> None:
    ops = {"police": frozenset({"police"}), "medic": frozenset({"medical"})}
    acd = equal_priority(ops)
    acd.operator_registered("police", 0.0)
    acd.operator_registered("medic", 0.5)
    acd.pause("medic", "break", 0.6)
    acd.enqueue("busy-police", "police", 0.0, 1.0)  # police op takes this one
    acd.offer_answered("busy-police", "police", 2.0)
    acd.enqueue("p2", "police", 3.0, 3.0)  # first in line, police op on a call
    acd.enqueue("m2", "medical", 4.0, 4.0)  # behind p2
    out = acd.unpause("medic", 5.0)
    assert queue(acd)[0] == "p2"
    assert offers(out) == [("m2", "medic")]


def test_order_holds_among_callers_the_same_operator_can_serve() -> None:
    acd = equal_priority({"medic": frozenset({"medical"}), "all": ALL})
    acd.enqueue("m-early", "medical", 0.0, 5.0)
    acd.enqueue("f", "fire", 1.0, 5.0)
    acd.enqueue("m-late", "medical", 2.0, 5.0)
    out = acd.operator_registered("all", 6.0)
    assert offers(out) == [("m-early", "all")]
    out = acd.operator_registered("medic", 7.0)
    assert offers(out) == [("m-late", "medic")]  # f waits: medic cannot serve fire


def test_category_nobody_on_duty_can_serve_goes_to_anyone() -> None:
    acd = make({"medic": frozenset({"medical"}), "fire": frozenset({"fire"})}, online=("medic",))
    # No fire-skilled operator is working: the fire call is not left waiting.
    assert offers(acd.enqueue("f1", "fire", 0.0, 0.0)) == [("f1", "medic")]
    acd.offer_answered("f1", "medic", 1.0)
    acd.operator_registered("fire", 2.0)
    acd.call_ended("medic", 3.0)
    acd.tick(13.0)  # medic available again
    acd.pause("fire", "break", 14.0)
    assert offers(acd.enqueue("f2", "fire", 15.0, 15.0)) == [("f2", "medic")]  # paused ≠ on duty
    acd.offer_answered("f2", "medic", 16.0)
    acd.unpause("fire", 17.0)
    assert offers(acd.enqueue("f3", "fire", 18.0, 18.0)) == [("f3", "fire")]


def test_unknown_category_goes_to_any_operator() -> None:
    acd = make({"medic": frozenset({"medical"})}, online=("medic",))
    assert offers(acd.enqueue("u", "unknown", 0.0, 0.0)) == [("u", "medic")]


# --- caller hang-up -------------------------------------------------------------------------


def test_hang_up_while_waiting_is_abandoned() -> None:
    acd = make()
    acd.enqueue("c1", "police", 0.0, 10.0)
    out = acd.caller_left("c1", 25.0)
    assert out == [
        CallerLeftQueue(
            call_ref="c1", outcome=QueueOutcome.ABANDONED, waited_s=15.0, operator=None, at=25.0
        )
    ]
    assert queue(acd) == [] and acd.deadline() is None
    with pytest.raises(UnknownCallError):
        acd.caller_left("c1", 26.0)


def test_hang_up_while_ringing_cancels_without_a_missed_mark() -> None:
    acd = make(online=("op1", "op2"))
    acd.enqueue("c1", "fire", 10.0, 10.0)
    out = acd.caller_left("c1", 12.0)
    assert out == [
        CancelOffer(call_ref="c1", operator="op1", reason="caller_left"),
        OperatorStateChanged(
            operator="op1", old=S.RESERVED, new=S.AVAILABLE, reason="caller_left", at=12.0
        ),
        CallerLeftQueue(
            call_ref="c1", outcome=QueueOutcome.ABANDONED, waited_s=2.0, operator=None, at=12.0
        ),
    ]
    assert op_view(acd, "op1").missed == 0
    # op1 keeps its place as the longest idle.
    assert offers(acd.enqueue("c2", "fire", 13.0, 13.0)) == [("c2", "op1")]


# --- ring timeout and misses ----------------------------------------------------------------


def test_ring_timeout_cancels_marks_missed_and_tries_the_next_operator() -> None:
    acd = make(online=("op1", "op2"))
    acd.enqueue("c1", "medical", 10.0, 10.0)
    assert acd.tick(24.9) == []
    out = acd.tick(25.0)
    assert out == [
        CancelOffer(call_ref="c1", operator="op1", reason="no_answer"),
        OperatorStateChanged(
            operator="op1", old=S.RESERVED, new=S.AVAILABLE, reason="no_answer", at=25.0
        ),
        OfferCall(call_ref="c1", operator="op2", deadline=40.0),
        OperatorStateChanged(
            operator="op2", old=S.AVAILABLE, new=S.RESERVED, reason="offered", at=25.0
        ),
    ]
    assert op_view(acd, "op1").missed == 1
    assert acd.snapshot().callers[0].offered_to == "op2"


def test_max_missed_in_a_row_auto_pauses() -> None:
    acd = make({"op1": ALL}, online=("op1",))
    acd.enqueue("c1", "medical", 10.0, 10.0)
    out = acd.tick(25.0)
    assert offers(out) == [("c1", "op1")]  # the only operator: offered again
    out = acd.tick(40.0)
    assert of(CancelOffer, out) == [CancelOffer(call_ref="c1", operator="op1", reason="no_answer")]
    assert of(OperatorStateChanged, out) == [
        OperatorStateChanged(
            operator="op1", old=S.RESERVED, new=S.PAUSED, reason="missed_calls", at=40.0
        )
    ]
    view = op_view(acd, "op1")
    assert (view.state, view.pause_reason, view.missed, view.missed_today) == (
        S.PAUSED,
        "missed_calls",
        0,
        2,
    )
    assert acd.is_queued("c1") and acd.snapshot().callers[0].offered_to is None


def test_an_answer_resets_the_consecutive_misses() -> None:
    acd = make({"op1": ALL}, online=("op1",), wrapup_s=0.0)
    acd.enqueue("c1", "medical", 10.0, 10.0)
    acd.tick(25.0)  # miss 1, offered again
    acd.offer_answered("c1", "op1", 26.0)
    assert op_view(acd, "op1").missed == 0
    acd.call_ended("op1", 30.0)
    acd.enqueue("c2", "medical", 31.0, 31.0)
    acd.tick(46.0)  # one miss only: not paused
    assert state(acd, "op1") is S.RESERVED


# --- offer failures -------------------------------------------------------------------------


@pytest.mark.parametrize("reason", ["busy", "rejected", "error"])
def test_decline_tries_the_next_operator_at_once(reason: str) -> None:
    acd = make(online=("op1", "op2"))
    acd.enqueue("c1", "medical", 10.0, 10.0)
    out = acd.offer_failed("c1", "op1", reason, 11.0)
    assert out[0] == OperatorStateChanged(
        operator="op1", old=S.RESERVED, new=S.AVAILABLE, reason=reason, at=11.0
    )
    assert offers(out) == [("c1", "op2")]
    assert op_view(acd, "op1").missed == 0


def test_decline_back_off_keeps_a_lone_busy_phone_from_spinning() -> None:
    acd = make({"op1": ALL}, online=("op1",))
    acd.enqueue("c1", "medical", 10.0, 10.0)
    out = acd.offer_failed("c1", "op1", "busy", 11.0)
    assert offers(out) == []  # not re-offered to the phone that just said busy
    assert acd.deadline() == 16.0
    assert acd.tick(15.9) == []
    assert offers(acd.tick(16.0)) == [("c1", "op1")]


def test_unreachable_takes_the_operator_offline_until_it_registers() -> None:
    acd = make(online=("op1", "op2"))
    acd.enqueue("c1", "medical", 10.0, 10.0)
    out = acd.offer_failed("c1", "op1", "unreachable", 11.0)
    assert out[0] == OperatorStateChanged(
        operator="op1", old=S.RESERVED, new=S.OFFLINE, reason="unreachable", at=11.0
    )
    assert offers(out) == [("c1", "op2")]
    assert acd.operator_reachable("op1", True, 20.0)[0].new is S.AVAILABLE  # type: ignore[union-attr]


def test_bad_failure_reason_is_refused() -> None:
    acd = make(online=("op1",))
    acd.enqueue("c1", "medical", 10.0, 10.0)
    with pytest.raises(AcdError):
        acd.offer_failed("c1", "op1", "declined", 11.0)
    assert state(acd, "op1") is S.RESERVED


def test_late_answer_after_cancel_is_not_an_offer() -> None:
    acd = make({"op1": ALL}, online=("op1",), max_missed=1)
    acd.enqueue("c1", "medical", 10.0, 10.0)
    acd.tick(25.0)  # cancelled, op1 paused
    with pytest.raises(OfferNotFoundError):
        acd.offer_answered("c1", "op1", 25.1)  # 200 OK crossed our CANCEL
    with pytest.raises(OfferNotFoundError):
        acd.offer_failed("c1", "op1", "busy", 25.1)
    with pytest.raises(OfferNotFoundError):
        acd.offer_answered("nope", "op1", 25.1)
    assert state(acd, "op1") is S.PAUSED and acd.is_queued("c1")


def test_answer_from_the_wrong_operator_is_refused() -> None:
    acd = make(online=("op1", "op2"))
    acd.enqueue("c1", "medical", 10.0, 10.0)
    with pytest.raises(OfferNotFoundError):
        acd.offer_answered("c1", "op2", 11.0)


# --- end of call, wrap-up, leg loss ---------------------------------------------------------


def test_call_end_wrap_up_then_available() -> None:
    acd = make({"op1": ALL}, online=("op1",))
    acd.enqueue("c1", "medical", 10.0, 10.0)
    acd.offer_answered("c1", "op1", 11.0)
    out = acd.call_ended("op1", 100.0)
    assert out == [
        OperatorStateChanged(
            operator="op1", old=S.ON_CALL, new=S.WRAP_UP, reason="call_ended", at=100.0
        )
    ]
    assert acd.deadline() == 110.0
    acd.enqueue("c2", "medical", 105.0, 105.0)
    assert state(acd, "op1") is S.WRAP_UP
    out = acd.tick(110.0)
    assert out[0] == OperatorStateChanged(
        operator="op1", old=S.WRAP_UP, new=S.AVAILABLE, reason="wrap_up_ended", at=110.0
    )
    assert offers(out) == [("c2", "op1")]


def test_zero_wrap_up_is_available_at_once() -> None:
    acd = make({"op1": ALL}, online=("op1",), wrapup_s=0.0)
    acd.enqueue("c1", "medical", 10.0, 10.0)
    acd.offer_answered("c1", "op1", 11.0)
    out = acd.call_ended("op1", 20.0)
    assert [(c.old, c.new) for c in of(OperatorStateChanged, out)] == [
        (S.ON_CALL, S.WRAP_UP),
        (S.WRAP_UP, S.AVAILABLE),
    ]


def test_call_ended_when_not_on_call_is_a_transition_error() -> None:
    acd = make(online=("op1",))
    with pytest.raises(OperatorTransitionError) as err:
        acd.call_ended("op1", 1.0)
    assert err.value.state is S.AVAILABLE


def test_leg_lost_puts_caller_back_at_the_head_of_their_class() -> None:
    acd = make({"op1": ALL, "op2": ALL}, online=("op1",))
    acd.enqueue("c1", "fire", arrived_at=5.0, now=10.0)
    acd.offer_answered("c1", "op1", 12.0)
    acd.enqueue("early-medical", "medical", arrived_at=1.0, now=20.0)  # arrived before c1
    acd.enqueue("medical", "medical", arrived_at=21.0, now=21.0)
    acd.enqueue("prio", "police", arrived_at=0.0, now=22.0)
    out = acd.operator_leg_lost("c1", "op1", 30.0)
    assert out == [
        OperatorStateChanged(
            operator="op1", old=S.ON_CALL, new=S.OFFLINE, reason="leg_lost", at=30.0
        ),
        CallerQueued(call_ref="c1", category="fire", position=1, requeued=True, at=30.0),
    ]
    assert queue(acd) == ["c1", "early-medical", "medical", "prio"]
    view = acd.snapshot().callers[0]
    assert (view.arrived_at, view.queued_at, view.requeued) == (5.0, 30.0, True)
    assert not op_view(acd, "op1").reachable
    out = acd.operator_registered("op2", 31.0)
    assert offers(out) == [("c1", "op2")]
    # The dead phone comes back when it registers again.
    assert acd.operator_registered("op1", 40.0)[0].new is S.AVAILABLE  # type: ignore[union-attr]


def test_requeued_caller_stays_behind_a_higher_priority_class() -> None:
    acd = make({"op1": ALL}, online=("op1",))
    acd.enqueue("police", "police", 0.0, 0.0)
    acd.offer_answered("police", "op1", 1.0)
    acd.enqueue("medical", "medical", 5.0, 5.0)
    acd.operator_leg_lost("police", "op1", 6.0)
    assert queue(acd) == ["medical", "police"]


def test_leg_lost_for_another_call_is_refused() -> None:
    acd = make(online=("op1",))
    acd.enqueue("c1", "fire", 0.0, 0.0)
    acd.offer_answered("c1", "op1", 1.0)
    with pytest.raises(UnknownCallError):
        acd.operator_leg_lost("c2", "op1", 2.0)
    with pytest.raises(UnknownCallError):
        acd.operator_leg_lost("c1", "op2", 2.0)
    with pytest.raises(UnknownCallError, match="call_ended"):
        acd.caller_left("c1", 2.0)  # talking: the coordinator reports call_ended instead


# --- announcements and overflow -------------------------------------------------------------


def test_position_announcements_every_period() -> None:
    acd = make()
    acd.enqueue("a", "police", 0.0, 0.0)
    acd.enqueue("b", "medical", 5.0, 5.0)  # goes ahead of a
    assert acd.tick(29.9) == []
    assert acd.tick(30.0) == [AnnouncePosition(call_ref="a", position=2)]
    assert acd.deadline() == 35.0
    assert acd.tick(35.0) == [AnnouncePosition(call_ref="b", position=1)]
    acd.caller_left("b", 40.0)
    assert acd.tick(60.0) == [AnnouncePosition(call_ref="a", position=1)]
    # A late tick gives one announcement and keeps the grid.
    assert acd.tick(151.0) == [AnnouncePosition(call_ref="a", position=1)]
    assert acd.deadline() == 180.0


def test_overflow_after_waiting_from_arrival() -> None:
    acd = make(overflow_after_s=60.0)
    acd.enqueue("c1", "medical", arrived_at=10.0, now=25.0)  # 15 s in the IVR count
    assert acd.deadline() == 55.0  # the announcement comes first
    acd.tick(55.0)
    assert acd.deadline() == 70.0
    out = acd.tick(70.0)
    assert out == [
        OverflowCall(call_ref="c1"),
        CallerLeftQueue(
            call_ref="c1", outcome=QueueOutcome.OVERFLOWED, waited_s=45.0, operator=None, at=70.0
        ),
    ]
    assert acd.deadline() is None


def test_no_overflow_while_an_offer_rings_then_at_once() -> None:
    acd = make({"op1": ALL}, online=("op1",), overflow_after_s=60.0)
    acd.enqueue("c1", "medical", 0.0, 0.0)
    acd.tick(15.0)
    acd.tick(30.0)  # the second miss in a row: op1 auto-paused
    assert state(acd, "op1") is S.PAUSED
    acd.unpause("op1", 55.0)  # offered again at 55, rings past the overflow time
    assert acd.tick(60.0) == [AnnouncePosition(call_ref="c1", position=1)]
    assert acd.is_queued("c1")
    assert acd.deadline() == 70.0
    out = acd.offer_failed("c1", "op1", "busy", 65.0)  # op1 backs off: nobody to offer to
    assert of(OverflowCall, out) == [OverflowCall(call_ref="c1")]
    assert of(CallerLeftQueue, out)[0].outcome is QueueOutcome.OVERFLOWED


def test_free_operator_beats_overflow_at_the_same_instant() -> None:
    acd = make({"op1": ALL}, online=("op1",), overflow_after_s=60.0, wrapup_s=10.0)
    acd.enqueue("busy", "medical", 0.0, 0.0)
    acd.offer_answered("busy", "op1", 1.0)
    acd.call_ended("op1", 50.0)  # wrap-up ends at 60
    acd.enqueue("c1", "medical", 0.0, 0.0)
    out = acd.tick(60.0)
    assert offers(out) == [("c1", "op1")] and of(OverflowCall, out) == []


def test_requeued_caller_overflow_counts_from_requeue() -> None:
    acd = make(overflow_after_s=60.0, online=("op1",))
    acd.enqueue("c1", "medical", 0.0, 0.0)
    acd.offer_answered("c1", "op1", 1.0)
    acd.operator_leg_lost("c1", "op1", 300.0)
    assert acd.is_queued("c1")
    assert of(OverflowCall, acd.tick(359.0)) == []
    assert of(OverflowCall, acd.tick(360.0)) == [OverflowCall(call_ref="c1")]


# --- pause ----------------------------------------------------------------------------------


def test_pause_and_unpause_from_available() -> None:
    acd = make(online=("op1",))
    assert acd.pause("op1", "break", 5.0) == [
        OperatorStateChanged(operator="op1", old=S.AVAILABLE, new=S.PAUSED, reason="break", at=5.0)
    ]
    assert offers(acd.enqueue("c1", "fire", 6.0, 6.0)) == []
    out = acd.unpause("op1", 7.0)
    assert out[0] == OperatorStateChanged(
        operator="op1", old=S.PAUSED, new=S.AVAILABLE, reason="unpaused", at=7.0
    )
    assert offers(out) == [("c1", "op1")]


def test_pause_from_wrap_up_is_immediate() -> None:
    acd = make(online=("op1",))
    acd.enqueue("c1", "fire", 0.0, 0.0)
    acd.offer_answered("c1", "op1", 1.0)
    acd.call_ended("op1", 2.0)
    assert acd.pause("op1", "break", 3.0)[0].new is S.PAUSED  # type: ignore[union-attr]
    assert acd.deadline() is None  # the wrap-up timer went with it


def test_pause_while_on_call_applies_after_wrap_up() -> None:
    acd = make(online=("op1",))
    acd.enqueue("c1", "fire", 0.0, 0.0)
    acd.offer_answered("c1", "op1", 1.0)
    assert acd.pause("op1", "meal", 2.0) == []
    assert op_view(acd, "op1").pause_reason == "meal" and state(acd, "op1") is S.ON_CALL
    with pytest.raises(PauseRefusedError, match="already paused"):
        acd.pause("op1", "again", 2.5)
    assert acd.call_ended("op1", 3.0)[0].new is S.WRAP_UP  # type: ignore[union-attr]
    out = acd.tick(13.0)
    assert out == [
        OperatorStateChanged(operator="op1", old=S.WRAP_UP, new=S.PAUSED, reason="meal", at=13.0)
    ]


def test_deferred_pause_can_be_withdrawn() -> None:
    acd = make(online=("op1",))
    acd.enqueue("c1", "fire", 0.0, 0.0)
    acd.offer_answered("c1", "op1", 1.0)
    acd.pause("op1", "meal", 2.0)
    assert acd.unpause("op1", 3.0) == []
    acd.call_ended("op1", 4.0)
    assert acd.tick(14.0)[0].new is S.AVAILABLE  # type: ignore[union-attr]


@pytest.mark.parametrize("where", ["reserved", "offline", "paused"])
def test_pause_refused_where_it_makes_no_sense(where: str) -> None:
    acd = make(online=("op1",))
    if where == "reserved":
        acd.enqueue("c1", "fire", 0.0, 0.0)
    elif where == "offline":
        acd.operator_unregistered("op1", 0.0)
    else:
        acd.pause("op1", "break", 0.0)
    before = state(acd, "op1")
    with pytest.raises(PauseRefusedError, match="op1"):
        acd.pause("op1", "break", 1.0)
    assert state(acd, "op1") is before


def test_pause_needs_a_reason_and_unpause_needs_a_pause() -> None:
    acd = make(online=("op1",))
    with pytest.raises(PauseRefusedError, match="reason"):
        acd.pause("op1", "", 1.0)
    with pytest.raises(PauseRefusedError, match="not paused"):
        acd.unpause("op1", 1.0)


def test_pause_survives_going_offline_and_coming_back() -> None:
    acd = make(online=("op1",))
    acd.pause("op1", "break", 1.0)
    assert acd.operator_unregistered("op1", 2.0)[0].new is S.OFFLINE  # type: ignore[union-attr]
    assert op_view(acd, "op1").pause_reason == "break"
    out = acd.operator_registered("op1", 3.0)
    assert out == [
        OperatorStateChanged(operator="op1", old=S.OFFLINE, new=S.PAUSED, reason="break", at=3.0)
    ]


def test_unpause_while_offline_clears_the_kept_pause() -> None:
    acd = make({"op1": ALL}, online=("op1",), max_missed=1)
    acd.enqueue("c1", "fire", 0.0, 0.0)
    acd.tick(15.0)  # auto-paused
    acd.operator_reachable("op1", False, 16.0)
    assert acd.unpause("op1", 17.0) == []
    out = acd.operator_reachable("op1", True, 18.0)
    assert out[0].new is S.AVAILABLE  # type: ignore[union-attr]
    assert offers(out) == [("c1", "op1")]


# --- presence -------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["unregistered", "unreachable"])
def test_operator_going_offline_while_ringing_cancels_and_reoffers(how: str) -> None:
    acd = make(online=("op1", "op2"))
    acd.enqueue("c1", "fire", 0.0, 0.0)
    if how == "unregistered":
        out = acd.operator_unregistered("op1", 3.0)
    else:
        out = acd.operator_reachable("op1", False, 3.0)
    assert out[:2] == [
        CancelOffer(call_ref="c1", operator="op1", reason="operator_offline"),
        OperatorStateChanged(operator="op1", old=S.RESERVED, new=S.OFFLINE, reason=how, at=3.0),
    ]
    assert offers(out) == [("c1", "op2")]
    assert op_view(acd, "op1").missed == 0


def test_reachable_without_registration_stays_offline() -> None:
    acd = make()
    assert acd.operator_reachable("op1", True, 1.0) == []
    assert state(acd, "op1") is S.OFFLINE


def test_going_offline_during_a_call_ends_offline_after_wrap_up() -> None:
    acd = make({"op1": ALL}, online=("op1",))
    acd.enqueue("c1", "fire", 0.0, 0.0)
    acd.offer_answered("c1", "op1", 1.0)
    assert acd.operator_unregistered("op1", 2.0) == []  # the call carries on
    assert state(acd, "op1") is S.ON_CALL
    acd.call_ended("op1", 3.0)
    assert acd.tick(13.0) == [
        OperatorStateChanged(
            operator="op1", old=S.WRAP_UP, new=S.OFFLINE, reason="wrap_up_ended", at=13.0
        )
    ]


def test_pause_in_wrap_up_with_the_phone_gone_is_offline_and_kept() -> None:
    acd = make({"op1": ALL}, online=("op1",))
    acd.enqueue("c1", "fire", 0.0, 0.0)
    acd.offer_answered("c1", "op1", 1.0)
    acd.call_ended("op1", 2.0)
    acd.operator_unregistered("op1", 3.0)
    assert acd.pause("op1", "home", 4.0)[0].new is S.OFFLINE  # type: ignore[union-attr]
    assert acd.operator_registered("op1", 5.0)[0].new is S.PAUSED  # type: ignore[union-attr]


# --- errors, config, snapshot ---------------------------------------------------------------


def test_bad_references_raise_specific_errors() -> None:
    acd = make(online=("op1",))
    with pytest.raises(UnknownOperatorError):
        acd.operator_registered("nobody", 1.0)
    with pytest.raises(UnknownCategoryError):
        acd.enqueue("c1", "traffic", 0.0, 0.0)
    acd.enqueue("c1", "fire", 0.0, 0.0)
    with pytest.raises(DuplicateCallError):
        acd.enqueue("c1", "fire", 0.0, 1.0)
    acd.offer_answered("c1", "op1", 2.0)
    with pytest.raises(DuplicateCallError):
        acd.enqueue("c1", "fire", 0.0, 3.0)  # still talking
    with pytest.raises(ValueError):
        Acd(acd.settings, [OperatorProfile(user="x", skills=ALL)] * 2)


@pytest.mark.parametrize(
    "kw",
    [
        {"priority": {"medical": 1}},
        {"priority": PRIORITY, "max_missed": 0},
        {"priority": PRIORITY, "ring_timeout_s": 0.0},
        {"priority": PRIORITY, "wrapup_s": -1.0},
    ],
)
def test_settings_are_validated(kw: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        AcdSettings(**kw)  # type: ignore[arg-type]


def test_from_shipped_config() -> None:
    cfg = load_config(ROOT / "config" / "callcenter112.toml")
    settings = AcdSettings.from_config(cfg.queue)
    assert (settings.ring_timeout_s, settings.max_missed, settings.wrapup_s) == (15.0, 2, 10.0)
    assert settings.priority["police"] == 2
    profiles = [OperatorProfile.from_config(o) for o in cfg.operator]
    every = frozenset(cfg.category_ids) - {"unknown"}  # skills not set: every category
    assert [p.user for p in profiles] == ["op1", "op2"] and profiles[0].skills == every
    assert {"security", "hearse", "utility", "other"} <= every and every >= ALL
    acd = Acd(settings, profiles)
    assert [o.state for o in acd.snapshot().operators] == [S.OFFLINE, S.OFFLINE]


def test_snapshot_and_daily_counts() -> None:
    acd = make(online=("op1",))
    acd.enqueue("c1", "fire", 0.0, 0.0)
    acd.enqueue("c2", "police", 1.0, 1.0)
    acd.offer_answered("c1", "op1", 2.0)
    snap = acd.snapshot()
    assert snap.at == 2.0
    assert [(c.call_ref, c.position, c.offered_to) for c in snap.callers] == [("c2", 1, None)]
    view = snap.operators[0]
    assert (view.user, view.state, view.since, view.reason, view.calls_today) == (
        "op1",
        S.ON_CALL,
        2.0,
        "answered",
        1,
    )
    assert (view.registered, view.reachable, view.call_ref) == (True, True, "c1")
    assert acd.reset_daily_counts() == []
    assert op_view(acd, "op1").calls_today == 0


def test_module_is_pure() -> None:
    tree = ast.parse(Path(acd_module.__file__).read_text())
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            imported.add(node.module.split(".")[0])
    assert not imported & {"asyncio", "socket", "time", "aiosqlite", "starlette", "uvicorn"}
