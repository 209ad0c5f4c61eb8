"""Registrations in a cluster: the node that runs the ACD knows every operator (issue 15).

At a cold start no node is leader yet for a few seconds, so the edge sends a
phone's REGISTER to a follower as a last resort (deploy/kamailio/kamailio.cfg,
route TONODE). The follower answers it and writes the binding to the shared
store; the leader merges it within seconds (cluster/glue.py) and offers that
operator the next call, without waiting up to an hour for the phone to
re-register. Neither node's writes erase the other's rows.

Two real nodes on one PostgreSQL the suite starts; baresip registers directly
to the follower's port (what the edge does as a last resort), SIPp calls the
leader.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

from harness import Baresip, need, operator_online, start_caller, talking_to, wait_until
from kamailio_edge import sip_options
from pg_support import pg_dsn, pg_server  # noqa: F401 - fixtures
from test_cluster_failover import OPERATORS, node

pytestmark = [pytest.mark.peers, pytest.mark.slow]

CALLER = "0812200000"


def _bindings(n: object) -> set[str]:
    return {str(r[0]) for r in n.sql("SELECT operator FROM registrations")}  # type: ignore[attr-defined]


def test_a_registration_a_follower_took_reaches_the_leaders_acd(
    tmp_path: Path,
    pg_dsn: str,  # noqa: F811
) -> None:
    need("sipp", "baresip")
    with node(tmp_path / "a", pg_dsn) as a, contextlib.ExitStack() as stack:
        wait_until(lambda: a.role() == "leader", 20, what="node a leader")
        b = stack.enter_context(node(tmp_path / "b", pg_dsn))
        assert b.role() in (None, "follower")  # a node starts as a follower
        assert sip_options(b.sip_port) == "SIP/2.0 503 Standby"
        op1, op2 = OPERATORS
        # op2 registers at the leader, op1 at the follower (the edge's last resort).
        at_a = Baresip(tmp_path / "op2", user=op2.user, password=op2.password,
                       server_port=a.sip_port)  # fmt: skip
        stack.callback(at_a.stop)
        at_a.start()
        wait_until(lambda: op2.user in _bindings(a), 20, what="op2's binding saved by a")
        at_b = Baresip(tmp_path / "op1", user=op1.user, password=op1.password,
                       server_port=b.sip_port)  # fmt: skip
        stack.callback(at_b.stop)
        at_b.start()
        wait_until(lambda: operator_online(b, op1.user), 20, what="op1 registered at b")
        # b wrote op1's binding without erasing the one a wrote.
        wait_until(lambda: _bindings(a) == {op1.user, op2.user}, 10, what="both bindings")
        # The leader merges it: op1 is online on a without a REGISTER reaching a.
        wait_until(lambda: operator_online(a, op1.user), 15, what="op1 online on the leader")
        assert not [
            e
            for e in a.events("sip_in")
            if e["first_line"].startswith("REGISTER ") and f"sip:{op1.user}@" in e["first_line"]
        ]
        # a's own saves since then kept b's row.
        assert _bindings(a) == {op1.user, op2.user}
        # Two callers at once on a: one goes to each operator, so a's ACD offers op1 too.
        first = start_caller(a, tmp_path / "c1", caller=CALLER, digits="1", talk_ms=15_000)
        stack.callback(first.kill)
        wait_until(lambda: talking_to(a, CALLER, op1.user) or talking_to(a, CALLER, op2.user),
                   40, what="the first caller bridged on a")  # fmt: skip
        second = start_caller(a, tmp_path / "c2", caller=CALLER + "1", digits="1", talk_ms=3000)
        stack.callback(second.kill)
        wait_until(
            lambda: (
                {op1.user, op2.user}
                == {
                    r[0]
                    for r in a.sql(
                        "SELECT operator FROM incidents WHERE caller IN (?, ?)"
                        " AND operator_answered_at IS NOT NULL",
                        CALLER,
                        CALLER + "1",
                    )
                }
            ),
            40,
            what="both operators took a call on the leader",
        )
        assert second.wait(60) == 0, second.logs()
