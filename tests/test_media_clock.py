"""MediaClock: absolute 20 ms schedule, stalls, lateness statistics, subscribers (fake `now`)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callcenter112.media.clock import FRAME_S, MediaClock, TickFailed

START = 1000.0


class Recorder:
    def __init__(self, name: str, log: list[tuple[str, int]]) -> None:
        self.name = name
        self.log = log

    def on_tick(self, tick_no: int) -> None:
        self.log.append((self.name, tick_no))


def test_first_tick_is_due_at_start_and_not_before() -> None:
    clock = MediaClock(start=START, early_tolerance=0.0)
    assert clock.next_deadline() == START
    assert list(clock.tick_due(START - 0.0001)) == []
    assert list(clock.tick_due(START)) == [0]
    assert clock.next_deadline() == pytest.approx(START + FRAME_S)
    assert list(clock.tick_due(START + 0.010)) == []
    assert list(clock.tick_due(START + 0.0201)) == [1]


def test_early_tolerance_counts_a_slightly_early_wakeup() -> None:
    clock = MediaClock(start=START, early_tolerance=0.001)
    assert list(clock.tick_due(START - 0.0009)) == [0]
    assert list(clock.tick_due(START + FRAME_S - 0.0011)) == []
    assert list(clock.tick_due(START + FRAME_S - 0.0009)) == [1]
    assert clock.lateness().p50 < 0  # early wake-ups show as negative lateness


def test_schedule_is_absolute_and_does_not_drift() -> None:
    clock = MediaClock(start=START)
    rng = random.Random(7)
    ran: list[int] = []
    for _ in range(50_000):
        # The glue wakes up 0-4 ms after each deadline, as a loaded loop would.
        now = clock.next_deadline() + rng.uniform(0, 0.004)
        ran.extend(clock.tick_due(now))
    assert ran == list(range(50_000))
    assert clock.next_deadline() == pytest.approx(START + 50_000 * FRAME_S, abs=1e-9)
    stats = clock.lateness()
    assert stats.count == 50_000
    assert 0 <= stats.p50 <= stats.p99 <= stats.max <= 0.004
    assert stats.skipped == 0


def test_short_stall_runs_the_missed_ticks_back_to_back() -> None:
    clock = MediaClock(start=START, max_catch_up=3, early_tolerance=0.0)
    assert list(clock.tick_due(START)) == [0]
    # Woke 25 ms late for tick 1: ticks 1 and 2 are due now, tick 3 only at +60 ms.
    assert list(clock.tick_due(START + 0.045)) == [1, 2]
    assert list(clock.tick_due(START + 0.061)) == [3]
    assert clock.skipped == 0
    stats = clock.lateness()
    assert stats.catch_ups == 1
    assert stats.max == pytest.approx(0.025)


def test_long_stall_skips_the_oldest_ticks_and_resynchronises() -> None:
    clock = MediaClock(start=START, max_catch_up=3, early_tolerance=0.0)
    clock.tick_due(START)
    # A 500 ms stall: ticks 1..25 are due; only the newest three run.
    due = clock.tick_due(START + 0.5)
    assert list(due) == [23, 24, 25]
    assert clock.skipped == 22
    assert clock.next_deadline() == pytest.approx(START + 26 * FRAME_S)
    assert list(clock.tick_due(START + 26 * FRAME_S + 0.0001)) == [26]
    assert clock.lateness().skipped == 22


def test_lateness_percentiles() -> None:
    clock = MediaClock(start=0.0, early_tolerance=0.0)
    # Lateness 1 ms for 98 ticks, 10 ms for one, 15 ms for one.
    for n in range(100):
        late = 0.015 if n == 50 else 0.010 if n == 70 else 0.001
        assert list(clock.tick_due(n * FRAME_S + late)) == [n]
    stats = clock.lateness()
    assert stats.count == 100
    assert stats.p50 == pytest.approx(0.001)
    assert stats.p99 == pytest.approx(0.010)
    assert stats.max == pytest.approx(0.015)
    clock.reset_stats()
    assert clock.lateness().count == 0
    assert clock.lateness().max == 0.0


def test_lateness_window_keeps_the_newest_samples() -> None:
    clock = MediaClock(start=0.0, early_tolerance=0.0, stats_window=10)
    for n in range(30):
        clock.tick_due(n * FRAME_S + (0.005 if n < 20 else 0.002))
    stats = clock.lateness()
    assert stats.count == 10
    assert stats.max == pytest.approx(0.002)


def test_subscribers_ticked_in_order_with_tick_numbers() -> None:
    log: list[tuple[str, int]] = []
    clock = MediaClock(start=START, early_tolerance=0.0)
    a, b = Recorder("a", log), Recorder("b", log)
    clock.subscribe(a)
    clock.subscribe(b)
    clock.subscribe(a)  # twice is a no-op
    assert len(clock) == 2
    assert clock.run_due(START) == []
    assert clock.run_due(START + 0.041) == []
    assert log == [("a", 0), ("b", 0), ("a", 1), ("b", 1), ("a", 2), ("b", 2)]
    clock.unsubscribe(a)
    clock.unsubscribe(a)  # unknown: no-op
    assert a not in clock
    log.clear()
    clock.run_due(START + 0.061)
    assert log == [("b", 3)]


def test_unsubscribe_inside_a_tick_takes_effect_next_tick() -> None:
    log: list[tuple[str, int]] = []
    clock = MediaClock(start=START, early_tolerance=0.0)

    class Quitter(Recorder):
        def on_tick(self, tick_no: int) -> None:
            super().on_tick(tick_no)
            clock.unsubscribe(self)
            clock.unsubscribe(other)

    other = Recorder("other", log)
    clock.subscribe(Quitter("q", log))
    clock.subscribe(other)
    clock.run_due(START + 0.021)
    assert log == [("q", 0), ("other", 0)]
    assert len(clock) == 0


def test_failing_subscriber_is_removed_and_reported_others_keep_ticking() -> None:
    log: list[tuple[str, int]] = []
    clock = MediaClock(start=START, early_tolerance=0.0)

    class Broken:
        def on_tick(self, tick_no: int) -> None:
            raise RuntimeError(f"boom at {tick_no}")

    broken = Broken()
    clock.subscribe(Recorder("a", log))
    clock.subscribe(broken)
    clock.subscribe(Recorder("b", log))
    failures = clock.run_due(START + 0.021)
    assert len(failures) == 1
    failure = failures[0]
    assert isinstance(failure, TickFailed)
    assert failure.ticker is broken
    assert failure.tick_no == 0
    assert str(failure.error) == "boom at 0"
    assert broken not in clock
    assert log == [("a", 0), ("b", 0), ("a", 1), ("b", 1)]


def test_unhashable_subscribers_are_fine() -> None:
    class Unhashable:
        __hash__ = None  # type: ignore[assignment]

        def __init__(self) -> None:
            self.ticks: list[int] = []

        def on_tick(self, tick_no: int) -> None:
            self.ticks.append(tick_no)

    clock = MediaClock(start=0.0)
    u = Unhashable()
    clock.subscribe(u)
    clock.run_due(0.0)
    assert u.ticks == [0]


def test_bad_parameters_rejected() -> None:
    with pytest.raises(ValueError):
        MediaClock(start=0.0, period=0)
    with pytest.raises(ValueError):
        MediaClock(start=0.0, max_catch_up=0)
    with pytest.raises(ValueError):
        MediaClock(start=0.0, early_tolerance=0.02)


@settings(deadline=None)  # no timing: the machine is shared
@given(
    steps=st.lists(st.floats(min_value=0.0, max_value=0.3), min_size=1, max_size=200),
    cap=st.integers(min_value=1, max_value=6),
)
def test_ticks_never_repeat_never_run_early_and_account_for_every_slot(
    steps: list[float], cap: int
) -> None:
    clock = MediaClock(start=START, max_catch_up=cap, early_tolerance=0.001)
    now = START
    seen: list[int] = []
    for step in steps:
        now += step
        due = clock.tick_due(now)
        assert len(due) <= cap
        for n in due:
            assert clock.scheduled(n) <= now + 0.001 + 1e-9
        seen.extend(due)
        assert clock.next_deadline() > now + 0.001 - 1e-9
    assert seen == sorted(set(seen))
    # Every slot up to the last one run was either run or counted as skipped.
    if seen:
        assert len(seen) + clock.skipped == seen[-1] + 1
