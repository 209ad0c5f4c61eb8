"""Trunk qualify state and per-trunk counters, on a fake clock."""

from __future__ import annotations

from callcenter112.trunk_health import ProbeOutcome, TrunkCounters, TrunkHealth, TrunkState


def test_down_after_consecutive_misses_and_up_on_first_answer() -> None:
    h = TrunkHealth("telkom", interval=5.0, down_after=2)
    assert h.due(0.0)
    h.probe_sent(0.0)
    assert not h.due(1.0)  # one probe at a time
    change = h.probe_done(ProbeOutcome.ANSWERED, now=0.012, wall=1000.0, status=200)
    assert change is not None and change.state is TrunkState.UP
    assert h.last_rtt_ms == 12.0
    assert not h.due(4.9) and h.due(5.0)
    h.probe_sent(5.0)
    assert h.probe_done(ProbeOutcome.TIMED_OUT, now=37.0, wall=1037.0) is None  # one miss
    assert h.state is TrunkState.UP
    h.probe_sent(37.0)
    change = h.probe_done(ProbeOutcome.TIMED_OUT, now=69.0, wall=1069.0)
    assert change is not None and change.state is TrunkState.DOWN
    assert change.previous is TrunkState.UP
    h.probe_sent(74.0)
    change = h.probe_done(ProbeOutcome.ANSWERED, now=74.5, wall=1074.5, status=404)
    # Any final answer proves the carrier is alive (RFC 3261 §11.2).
    assert change is not None and change.state is TrunkState.UP and h.last_status == 404


def test_counters_today_and_last_hour() -> None:
    c = TrunkCounters()
    c.count("call", wall=0.0)
    c.count("reject:403", wall=10.0)
    c.count("call", wall=4000.0)
    c.count("carrier:503", wall=4001.0)
    j = c.to_json(wall=4002.0)
    assert j["today"] == {"calls": 2, "rejects": {"403": 1}, "carrier_errors": {"503": 1}}
    assert j["last_hour"] == {"calls": 1, "rejects": {}, "carrier_errors": {"503": 1}}
    c.new_day()
    assert c.to_json(wall=4002.0)["today"] == {"calls": 0, "rejects": {}, "carrier_errors": {}}


def test_a_flood_cannot_grow_the_recent_list_without_bound() -> None:
    c = TrunkCounters(max_recent=100)
    for i in range(1000):
        c.count("reject:403", wall=float(i) / 1000)
    assert len(c.recent) == 100
    assert c.today["reject:403"] == 1000
    assert c.to_json(wall=1.0)["hour_complete"] is False
