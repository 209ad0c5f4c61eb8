"""Caller history, the repeat-caller rule and the supervisor's watch list (issue 12)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callcenter112.callers import (
    DAY_S,
    TEN_MIN_S,
    CallerRules,
    InMemoryCallerHistory,
    PastCall,
    caller_history,
    identifiable,
    repeat_verdict,
    suggest_watch_list,
)
from callcenter112.config import parse_config
from callcenter112.incidents import Disposition
from callcenter112.watchlist import EXPIRY_CHOICES, WatchList, WatchListError

T0 = 1_780_000_000.0
NUMBER = "081234567890"
RULES = CallerRules(repeat_calls_10min=3, suggest_after_pranks_24h=3)


def call(i: int, at: float, disposition: Disposition | None = None) -> PastCall:
    return PastCall(incident_id=f"AMB-{i:04d}", arrived_at=at, disposition=disposition)


def history_of(calls: list[PastCall], now: float, number: str = NUMBER):  # type: ignore[no-untyped-def]
    source = InMemoryCallerHistory()
    for c in calls:
        source.add(number, c)
    return caller_history(number, source.calls_from(NUMBER, since=now - 40 * DAY_S, until=now), now)


def test_six_calls_in_ten_minutes_flag_repeat_caller_with_links() -> None:
    earlier = [call(i, T0 + i * 100.0) for i in range(5)]  # 5 calls within 400 s
    now = T0 + 550.0  # the 6th
    verdict = repeat_verdict(history_of(earlier, now), RULES)
    assert verdict.repeat_caller and verdict.calls_10min == 6
    assert verdict.earlier == tuple(f"AMB-{i:04d}" for i in reversed(range(5)))


def test_threshold_counts_this_call_and_is_configurable() -> None:
    two = [call(0, T0), call(1, T0 + 60)]
    assert repeat_verdict(history_of(two, T0 + 120), RULES).repeat_caller  # 3rd call
    assert not repeat_verdict(history_of(two[:1], T0 + 120), RULES).repeat_caller
    six = CallerRules(repeat_calls_10min=6)
    assert not repeat_verdict(history_of(two, T0 + 120), six).repeat_caller


def test_windows_and_dispositions() -> None:
    calls = [
        call(1, T0 - 29 * DAY_S, Disposition.PRANK),
        call(2, T0 - 31 * DAY_S, Disposition.PRANK),  # outside 30 d
        call(3, T0 - 3 * 3600, Disposition.GHOST),
        call(4, T0 - 5 * 60, Disposition.PRANK),
        call(5, T0 - 60),
        call(6, T0 + 5),  # later than "now": not history
    ]
    h = history_of(calls, T0)
    assert [c.incident_id for c in h.last_10min] == ["AMB-0005", "AMB-0004"]
    assert [c.incident_id for c in h.last_24h] == ["AMB-0005", "AMB-0004", "AMB-0003"]
    assert len(h.last_30d) == 4
    assert h.dispositions_24h == {"ghost": 1, "prank": 1}
    assert h.dispositions_30d == {"ghost": 1, "prank": 2}
    assert h.to_json()["incidents_10min"] == ["AMB-0005", "AMB-0004"]


@pytest.mark.parametrize("withheld", ["anonymous", "", "Restricted", "private", "withheld"])
def test_withheld_caller_id_is_never_a_reason(withheld: str) -> None:
    assert not identifiable(withheld)
    pranks = [call(i, T0 - i * 60, Disposition.PRANK) for i in range(10)]
    source = InMemoryCallerHistory()
    for c in pranks:
        source.add(withheld, c)
    assert source.calls == {}  # nothing is even collected under "anonymous"
    h = caller_history(withheld, pranks, T0)  # even if a store handed some back
    assert h.last_30d == () and not repeat_verdict(h, RULES).repeat_caller
    assert suggest_watch_list(h, RULES) is None
    with pytest.raises(WatchListError, match="anonymous"):
        WatchList().add(withheld, reason="pranks", expiry="24h", created_by="spv", now=T0)
    assert not WatchList().is_listed(withheld, T0)


def test_three_pranks_in_24h_suggest_but_do_not_list() -> None:
    calls = [call(i, T0 - i * 3600, Disposition.PRANK) for i in range(1, 3)]
    assert suggest_watch_list(history_of(calls, T0), RULES) is None
    calls.append(call(3, T0 - 20 * 3600, Disposition.PRANK))
    calls.append(call(4, T0 - 25 * 3600, Disposition.PRANK))  # older than 24 h
    s = suggest_watch_list(history_of(calls, T0), RULES)
    assert s is not None and s.pranks_24h == 3 and s.number == NUMBER
    assert set(s.incidents) == {"AMB-0001", "AMB-0002", "AMB-0003"}


def test_later_disposition_changes_the_history() -> None:
    source = InMemoryCallerHistory()
    source.add("+6281234567890", call(1, T0 - 60))  # same line, international form
    source.dispose(NUMBER, "AMB-0001", Disposition.PRANK)
    (only,) = source.calls_from(NUMBER, since=T0 - DAY_S, until=T0)
    assert only.disposition is Disposition.PRANK


@pytest.mark.parametrize(("expiry", "seconds"), sorted(EXPIRY_CHOICES.items()))
def test_watch_list_entry_expires(expiry: str, seconds: float) -> None:
    wl = WatchList()
    change = wl.add("+62 812-3456-7890", reason="5 pranks", expiry=expiry, created_by="spv", now=T0)
    assert change.action == "listed" and change.entry.number == NUMBER
    assert wl.is_listed(NUMBER, T0 + seconds - 1)
    assert not wl.is_listed(NUMBER, T0 + seconds)


def test_watch_list_changes_are_audited_and_relisting_replaces() -> None:
    wl = WatchList()
    wl.add(NUMBER, reason="pranks", expiry="24h", created_by="spv1", now=T0)
    wl.add(NUMBER, reason="more pranks", expiry="7d", created_by="spv2", now=T0 + 10)
    assert len(wl.active(T0 + 20)) == 1 and wl.active(T0 + 20)[0].created_by == "spv2"
    first = wl.history()[0]
    assert (first.removed_by, first.removed_at) == ("spv2", T0 + 10)
    removed = wl.remove(NUMBER, removed_by="spv1", now=T0 + 30)
    assert removed.action == "removed" and removed.entry.removed_by == "spv1"
    assert not wl.is_listed(NUMBER, T0 + 31)
    with pytest.raises(WatchListError) as err:
        wl.remove(NUMBER, removed_by="spv1", now=T0 + 40)
    assert err.value.status_hint == 404


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"expiry": "1y"}, "expiry"),
        ({"reason": "  "}, "reason"),
        ({"created_by": ""}, "created_by"),
    ],
)
def test_watch_list_bad_input_is_named(kw: dict[str, str], match: str) -> None:
    args = {"reason": "pranks", "expiry": "24h", "created_by": "spv"} | kw
    with pytest.raises(WatchListError, match=match):
        WatchList().add(NUMBER, now=T0, **args)  # type: ignore[arg-type]


def test_rules_from_config() -> None:
    cfg = parse_config({"callers": {"repeat_calls_10min": 6, "suggest_after_pranks_24h": 2}})
    rules = CallerRules(
        repeat_calls_10min=cfg.callers.repeat_calls_10min,
        suggest_after_pranks_24h=cfg.callers.suggest_after_pranks_24h,
    )
    assert rules.repeat_calls_10min == 6
    with pytest.raises(ValueError):
        CallerRules(repeat_calls_10min=1)


@settings(max_examples=200, deadline=None)
@given(offsets=st.lists(st.floats(0, 2 * DAY_S), max_size=30), n=st.integers(2, 8))
def test_repeat_rule_matches_a_direct_count(offsets: list[float], n: int) -> None:
    now = T0 + 2 * DAY_S
    calls = [call(i, T0 + o) for i, o in enumerate(offsets)]
    v = repeat_verdict(history_of(calls, now), CallerRules(repeat_calls_10min=n))
    direct = sum(1 for o in offsets if now - TEN_MIN_S <= T0 + o < now) + 1
    assert v.calls_10min == direct and v.repeat_caller == (direct >= n)
