"""The ACD's roster changed live (issue 16): an operator added takes calls once
online, new skills serve a waiting caller, and a removal waits for the call."""

from __future__ import annotations

import pytest

from callcenter112.acd import (
    Acd,
    AcdSettings,
    OfferCall,
    OperatorProfile,
    OperatorTransitionError,
    UnknownOperatorError,
)

PRIORITY = {"medical": 1, "fire": 1, "police": 2, "unknown": 3}


def _acd() -> Acd:
    return Acd(
        AcdSettings(priority=PRIORITY, wrapup_s=1.0),
        [OperatorProfile(user="op1", skills=frozenset({"police"}))],
    )


def test_added_operator_is_offline_until_registered_then_offered() -> None:
    acd = _acd()
    assert acd.set_operator(OperatorProfile(user="op2", skills=frozenset({"medical"})), 1.0) == []
    acd.enqueue("c1", "medical", 2.0, 2.0)
    actions = acd.operator_registered("op2", 3.0)
    assert OfferCall(call_ref="c1", operator="op2", deadline=18.0) in actions


def test_new_skills_serve_a_waiting_caller_at_once() -> None:
    acd = _acd()
    acd.set_operator(OperatorProfile(user="op2", skills=frozenset({"medical"})), 0.0)
    acd.operator_registered("op1", 0.0)
    acd.operator_registered("op2", 0.1)
    acd.enqueue("c0", "medical", 1.0, 1.0)
    acd.offer_answered("c0", "op2", 1.5)
    # op2 (medical) is on duty and busy; op1 (police only) may not take c1.
    assert not any(isinstance(a, OfferCall) for a in acd.enqueue("c1", "medical", 2.0, 2.0))
    actions = acd.set_operator(
        OperatorProfile(user="op1", skills=frozenset({"police", "medical"})), 3.0
    )
    assert [a for a in actions if isinstance(a, OfferCall)] == [
        OfferCall(call_ref="c1", operator="op1", deadline=18.0)
    ]


def test_removal_waits_for_the_call_then_forgets() -> None:
    acd = _acd()
    acd.operator_registered("op1", 0.0)
    acd.enqueue("c1", "police", 1.0, 1.0)
    acd.offer_answered("c1", "op1", 2.0)
    with pytest.raises(OperatorTransitionError):
        acd.remove_operator("op1", 3.0)
    acd.call_ended("op1", 10.0)
    assert acd.remove_operator("op1", 10.5) == []
    assert [o.user for o in acd.snapshot().operators] == []
    with pytest.raises(UnknownOperatorError):
        acd.remove_operator("op1", 11.0)
