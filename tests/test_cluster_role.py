"""The node role (cluster/role.py): every state x input, and what the edge sees."""

from __future__ import annotations

import itertools

import pytest

from callcenter112.cluster.role import TRANSITIONS, NodeRole, Role, RoleInput


@pytest.mark.parametrize(("role", "cause"), list(itertools.product(Role, RoleInput)))
def test_every_state_and_input(role: Role, cause: RoleInput) -> None:
    node = NodeRole(role, now=1.0)
    change = node.apply(cause, 2.0)
    expected = TRANSITIONS.get((role, cause))
    if expected is None:
        assert change is None
        assert node.role is role and node.changed_at == 1.0
    else:
        assert change is not None
        assert (change.before, change.after, change.cause, change.at) == (
            role,
            expected,
            cause,
            2.0,
        )
        assert node.role is expected and node.changed_at == 2.0


def test_only_the_leader_answers_probes_200() -> None:
    for role in Role:
        node = NodeRole(role)
        probe = node.probe_answer()
        if role is Role.LEADER:
            assert node.accepting_calls() and probe.status == 200
        else:
            assert not node.accepting_calls()
            assert probe.status == 503 and probe.reason


def test_who_refuses_an_invite_and_never_a_last_resort_one() -> None:
    for role in Role:
        node = NodeRole(role)
        assert node.refusal(last_resort=True) is None
        refusal = node.refusal()
        if role in (Role.LEADER, Role.DRAINING):
            assert refusal is None  # a draining node serves what still reaches it
        else:
            assert refusal is not None and refusal.status == 503
            assert ("Retry-After", "0") in refusal.headers


def test_failover_and_planned_switch_over_paths() -> None:
    a, b = NodeRole(Role.LEADER), NodeRole(Role.FOLLOWER)
    # Planned: a drains (keeps its calls, takes no new ones), b takes the lock.
    assert a.apply(RoleInput.DRAIN_REQUESTED, 1) is not None
    assert a.runs_acd() and not a.accepting_calls()
    assert b.apply(RoleInput.LEADERSHIP_ACQUIRED, 2) is not None and b.accepting_calls()
    assert a.apply(RoleInput.LEADERSHIP_RELEASED, 3) is not None and a.role is Role.FOLLOWER
    # Failure: b loses the database, fences itself; when it is back it must win again.
    b.apply(RoleInput.DATABASE_LOST, 4)
    assert b.role is Role.FENCED and not b.runs_acd()
    assert b.apply(RoleInput.LEADERSHIP_ACQUIRED, 5) is None  # not from fenced
    b.apply(RoleInput.DATABASE_BACK, 6)
    assert b.role is Role.FOLLOWER


def test_a_single_node_is_a_leader() -> None:
    assert NodeRole().role is Role.LEADER
