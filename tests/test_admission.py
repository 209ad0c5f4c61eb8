"""Admission before parse (sip/admission.py) and the guard's held table (issue 11).

Pure: time is a number passed in. The transport-level behaviour on real
sockets is in tests/test_admission_net.py.
"""

from __future__ import annotations

import ipaddress

import pytest

from callcenter112.sip.admission import (
    REFUSALS_PER_S,
    SHARES,
    TCP_PER_ADDRESS,
    EdgePolicy,
    SourceClass,
    Verdict,
    message_kind,
)
from callcenter112.sip.ratelimit import Admission, SourceGuard

T0 = 1000.0
TRUNK = "192.0.2.1"
OPERATOR = "198.51.100.20"
MAX_TX = 50_000


def policy(**kwargs: object) -> EdgePolicy:
    guard = SourceGuard(fail_limit=3, lockout_s=300.0)
    guard.record_success(OPERATOR, T0, user="op1")
    return EdgePolicy(
        trunk_networks=[ipaddress.ip_network("192.0.2.0/28")],
        guard=guard,
        now=T0,
        max_transactions=MAX_TX,
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (b"INVITE sip:112@x SIP/2.0\r\n", b"INVITE"),
        (b"ACK sip:112@x SIP/2.0\r\n", b"ACK"),
        (b"SIP/2.0 200 OK\r\n", b""),
        (b"garbage-without-a-space" * 3, b"?"),
        (b"", b"?"),
    ],
)
def test_message_kind_reads_the_first_bytes(data: bytes, kind: bytes) -> None:
    assert message_kind(data) == kind


def test_classes_by_source() -> None:
    p = policy()
    assert p.classify(TRUNK, T0) is SourceClass.TRUNK
    assert p.classify("192.0.2.99", T0) is SourceClass.ANONYMOUS  # outside the /28
    assert p.classify(OPERATOR, T0) is SourceClass.OPERATOR
    assert p.classify("not-an-ip", T0) is SourceClass.ANONYMOUS
    # Trust ends: the operator's address becomes a stranger's again.
    assert p.classify(OPERATOR, T0 + 1e6) is SourceClass.ANONYMOUS


def test_decision_table() -> None:
    p = policy()
    assert p.admit(b"INVITE", TRUNK, T0) is Verdict.DELIVER
    assert p.admit(b"INVITE", OPERATOR, T0) is Verdict.DELIVER
    assert p.admit(b"INVITE", "203.0.113.5", T0) is Verdict.REFUSE
    assert p.admit(b"REGISTER", "203.0.113.5", T0) is Verdict.DELIVER
    assert p.admit(b"ACK", "203.0.113.5", T0) is Verdict.DELIVER
    assert p.admit(b"", "203.0.113.5", T0) is Verdict.DELIVER  # a response


def test_trunk_is_never_throttled() -> None:
    p = policy()
    verdicts = {p.admit(b"INVITE", TRUNK, T0) for _ in range(100_000)}
    assert verdicts == {Verdict.DELIVER}


def test_one_flooding_source_is_cut_off_by_its_bucket_others_are_not() -> None:
    p = policy()
    flood = [p.admit(b"OPTIONS", "203.0.113.5", T0) for _ in range(1000)]
    assert flood.count(Verdict.DELIVER) == 200  # the guard's burst
    assert flood.count(Verdict.DROP) == 800
    assert p.admit(b"OPTIONS", "203.0.113.6", T0) is Verdict.DELIVER
    assert p.admit(b"REGISTER", OPERATOR, T0) is Verdict.DELIVER


def test_refusals_are_bounded_globally() -> None:
    p = policy()
    sources = [f"10.0.{i // 250}.{i % 250}" for i in range(1000)]
    verdicts = [p.admit(b"INVITE", s, T0) for s in sources]
    assert verdicts.count(Verdict.REFUSE) == int(REFUSALS_PER_S)
    assert verdicts.count(Verdict.DROP) == 1000 - int(REFUSALS_PER_S)
    # One second later the budget is back.
    assert p.admit(b"INVITE", "10.9.9.9", T0 + 1.0) is Verdict.REFUSE


def test_strangers_cannot_take_more_than_their_share_of_transactions() -> None:
    """A flood from many addresses, each inside its own bucket, still ends at
    the anonymous share: the rest of the table stays for trunk and operators."""
    p = policy()
    share = int(SHARES[SourceClass.ANONYMOUS] * MAX_TX)
    delivered = 0
    for i in range(share + 5000):
        source = f"10.{i // 60_000}.{i // 200 % 250}.{i % 200}"
        if p.admit(b"REGISTER", source, T0) is Verdict.DELIVER:
            delivered += 1
    assert delivered == share
    assert p.stats.dropped_share == 5000
    # Operators' own share is untouched, the trunk unlimited.
    assert p.admit(b"REGISTER", OPERATOR, T0) is Verdict.DELIVER
    assert p.admit(b"INVITE", TRUNK, T0) is Verdict.DELIVER
    # The share refills at share / 32 s (a transaction's lifetime).
    assert p.admit(b"REGISTER", "10.200.0.1", T0 + 1.0) is Verdict.DELIVER


def test_tcp_per_address_cap_and_reserve() -> None:
    p = policy(max_tcp=40, tcp_reserved=10)
    cap = TCP_PER_ADDRESS[SourceClass.ANONYMOUS]
    held = [p.open_connection("203.0.113.5", T0) for _ in range(cap + 3)]
    assert held.count(SourceClass.ANONYMOUS) == cap and held.count(None) == 3
    # Strangers from many addresses fill up to the reserve, not past it.
    for i in range(100):
        p.open_connection(f"10.0.0.{i}", T0)
    assert p.tcp_connections == 30
    assert p.open_connection("10.0.1.1", T0) is None
    # The reserve is the trunk's and operators'.
    assert p.open_connection(TRUNK, T0) is SourceClass.TRUNK
    assert p.open_connection(OPERATOR, T0) is SourceClass.OPERATOR
    # Closing gives the place back.
    p.close_connection("203.0.113.5", SourceClass.ANONYMOUS)
    assert p.open_connection("203.0.113.5", T0) is SourceClass.ANONYMOUS
    assert p.stats.tcp_refused >= 4


def test_trunk_connections_bounded_only_by_the_global_cap() -> None:
    p = policy(max_tcp=20, tcp_reserved=5)
    assert [p.open_connection(TRUNK, T0) for _ in range(21)].count(None) == 1


# -- the guard's tables (sip/ratelimit.py) --------------------------------------


def test_spoofed_flood_cannot_evict_a_lockout_or_an_operator() -> None:
    guard = SourceGuard(fail_limit=2, lockout_s=300.0, max_entries=100)
    guard.record_success(OPERATOR, T0, user="op1")
    guard.record_failure("203.0.113.9", T0)
    assert guard.record_failure("203.0.113.9", T0) is not None
    for i in range(10_000):  # 100x the table, every address new
        guard.check(f"10.{i // 250 // 250}.{i // 250 % 250}.{i % 250}", T0 + 1)
    assert guard.check("203.0.113.9", T0 + 2) is Admission.LOCKED_OUT
    assert guard.trusted(OPERATOR, T0 + 2)
    assert len(guard._sources) <= 100


def test_held_table_is_bounded_and_sheds_expired_entries_first() -> None:
    guard = SourceGuard(fail_limit=1, lockout_s=10.0, max_entries=4, trust_s=10.0)
    guard.record_success("198.51.100.1", T0, user="op1")  # expires at T0 + 10
    for i in range(2, 5):
        guard.record_success(f"198.51.100.{i}", T0 + 20, user=f"op{i}")
    guard.record_failure("203.0.113.1", T0 + 20)  # a lockout: the 5th held entry
    assert len(guard._held) == 4
    assert not guard.trusted("198.51.100.1", T0 + 20)  # the expired one went
    assert all(guard.trusted(f"198.51.100.{i}", T0 + 20) for i in range(2, 5))
    assert guard.check("203.0.113.1", T0 + 20) is Admission.LOCKED_OUT


def test_someone_elses_guessing_does_not_lock_out_the_operator_address() -> None:
    guard = SourceGuard(fail_limit=3, lockout_s=300.0)
    guard.record_success(OPERATOR, T0, user="op1")
    for i in range(50):
        guard.record_failure("203.0.113.7", T0 + i, user="op1")
    assert guard.check(OPERATOR, T0 + 60, user="op1") is Admission.ADMITTED
    assert guard.check("203.0.113.7", T0 + 60, user="op1") is Admission.LOCKED_OUT


def test_a_thawed_phone_answering_a_backlog_is_not_throttled() -> None:
    # A softphone that was frozen (laptop lid) answers every queued qualify
    # OPTIONS at once; the answer that proves it is back must get through,
    # while its requests stay bucketed and a stranger's answers too.
    p = policy()
    answers = [p.admit(b"", OPERATOR, T0) for _ in range(500)]
    assert answers == [Verdict.DELIVER] * 500
    requests = [p.admit(b"OPTIONS", OPERATOR, T0) for _ in range(500)]
    assert Verdict.DROP in requests
    stranger = [p.admit(b"", "203.0.113.7", T0) for _ in range(500)]
    assert Verdict.DROP in stranger
