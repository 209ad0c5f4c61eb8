"""The one shared 20 ms media clock that drives every outgoing RTP stream.

This module owns the send schedule and the set of streams ticked by it. It is pure: the
asyncio glue (in `net/`) reads the loop clock, calls `MediaClock.run_due(now)` and re-arms
one `loop.call_at(clock.next_deadline(), ...)`; a timer or task per stream would cost three
times the CPU and drift past 1000 streams (DESIGN §5).

Theory of operation. Tick *n* is due at the absolute instant ``start + n * period``; deadlines
never accumulate the lateness of earlier ticks, so the schedule cannot drift. The tick number
is the stream's sample clock: a stream's RTP timestamp is ``base + n * 160`` (RFC 3550 §5.1:
the timestamp advances by the samples in each packet; RFC 3551 §4.5: 20 ms default
packetisation, 8000 Hz for G.711), so it stays continuous as long as every tick runs.

When the loop stalls (GC pause, a slow callback, the machine starved) several ticks are due at
once. Up to `max_catch_up` of them are run back to back, so a short stall costs the receiver
nothing: its jitter buffer absorbs the burst and the timestamps stay continuous. After a
longer stall the oldest missed ticks are *skipped* (counted in `skipped`) and only the newest
`max_catch_up` are run: sending seconds of stale audio in one burst would overflow the far
jitter buffers and add that much latency for the rest of the call. The skipped tick numbers
show up as a timestamp jump with contiguous sequence numbers, which receivers treat as a gap
(RFC 3550 §5.1), and the schedule is back on its absolute grid. Players do not lose audio on a
skip: a prompt resumes where it was, only later.

Who owns the subscribers: this clock keeps the set of `Ticking` objects and calls their
`on_tick(tick_no)` in subscription order; the glue only calls `run_due`. A subscriber that
raises is unsubscribed and reported as a `TickFailed`, so one broken call never silences the
others (STYLE §9); the glue logs it with the call's ids and tears that call down.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

__all__ = [
    "EARLY_TOLERANCE_S",
    "FRAME_S",
    "FRAME_SAMPLES",
    "MAX_CATCH_UP",
    "LatenessStats",
    "MediaClock",
    "TickFailed",
    "Ticking",
]

FRAME_S = 0.020  # RFC 3551 §4.5: default packetisation interval of G.711 audio
FRAME_SAMPLES = 160  # 20 ms at 8000 Hz (RFC 3551 §4.5.14)
# Ticks run back to back after a stall before the oldest are skipped: 60 ms is what a
# typical far-end jitter buffer (40-60 ms on phones and trunks) can absorb as a burst.
MAX_CATCH_UP = 3
# A wake-up this early still counts as on time. uvloop's `loop.time()` has 1 ms resolution
# (libuv's cached millisecond clock); without this the glue would spin through extra loop
# iterations for a deadline that is a fraction of a millisecond away.
EARLY_TOLERANCE_S = 0.001
STATS_WINDOW = 1 << 16  # lateness samples kept (≈ 22 minutes of ticks)


class Ticking(Protocol):
    """Anything the clock drives: an outgoing stream, a mixer, a recorder's right channel."""

    def on_tick(self, tick_no: int) -> None: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class TickFailed:
    """A subscriber raised in `on_tick`; it has been unsubscribed."""

    ticker: Ticking
    tick_no: int
    error: Exception


@dataclass(frozen=True, slots=True, kw_only=True)
class LatenessStats:
    """Send lateness (``now - scheduled``) of the ticks run, in seconds, for benchmarks."""

    count: int
    p50: float
    p99: float
    max: float
    skipped: int
    catch_ups: int  # run_due calls that found more than one tick due


class MediaClock:
    """The absolute 20 ms schedule and the streams it ticks."""

    __slots__ = (
        "_catch_ups",
        "_late",
        "_late_count",
        "_max_catch_up",
        "_next",
        "_period",
        "_skipped",
        "_snapshot",
        "_start",
        "_tickers",
        "_tolerance",
    )

    def __init__(
        self,
        *,
        start: float,
        period: float = FRAME_S,
        max_catch_up: int = MAX_CATCH_UP,
        early_tolerance: float = EARLY_TOLERANCE_S,
        stats_window: int = STATS_WINDOW,
    ) -> None:
        if period <= 0 or max_catch_up < 1 or early_tolerance < 0 or stats_window < 1:
            raise ValueError("period > 0, max_catch_up >= 1, early_tolerance >= 0 required")
        if early_tolerance >= period:
            raise ValueError("early_tolerance must be shorter than the period")
        self._start = start
        self._period = period
        self._max_catch_up = max_catch_up
        self._tolerance = early_tolerance
        self._next = 0  # the next tick number to run
        self._skipped = 0
        self._catch_ups = 0
        self._late = array("d", bytes(8 * stats_window))
        self._late_count = 0
        # Keyed by identity: streams need not be hashable, and two equal ones are still two.
        self._tickers: dict[int, Ticking] = {}
        self._snapshot: tuple[Ticking, ...] = ()

    # ---- schedule

    @property
    def start(self) -> float:
        return self._start

    @property
    def period(self) -> float:
        return self._period

    @property
    def tick_no(self) -> int:
        """The number of the next tick to run (ticks are numbered from 0 at `start`)."""
        return self._next

    @property
    def skipped(self) -> int:
        """Ticks skipped after stalls longer than `max_catch_up` periods."""
        return self._skipped

    def scheduled(self, tick_no: int) -> float:
        """The absolute instant tick `tick_no` is due."""
        return self._start + tick_no * self._period

    def next_deadline(self) -> float:
        """When the glue should call `run_due` next (absolute loop time)."""
        return self._start + self._next * self._period

    def tick_due(self, now: float) -> range:
        """Claim the ticks due at `now`: returns their numbers (empty if none is due).

        After a stall of more than `max_catch_up` periods the oldest due ticks are skipped.
        Each claimed tick's lateness is recorded for `lateness()`.
        """
        first = self._next
        last = math.floor((now + self._tolerance - self._start) / self._period)
        if last < first:
            return range(0)
        due = last - first + 1
        if due > 1:
            self._catch_ups += 1
            if due > self._max_catch_up:
                self._skipped += due - self._max_catch_up
                first = last - self._max_catch_up + 1
        self._next = last + 1
        late = self._late
        size = len(late)
        count = self._late_count
        for n in range(first, last + 1):
            late[count % size] = now - (self._start + n * self._period)
            count += 1
        self._late_count = count
        return range(first, last + 1)

    # ---- subscribers

    def subscribe(self, ticker: Ticking) -> None:
        """Tick `ticker` from the next due tick on (subscribing twice is a no-op)."""
        if id(ticker) not in self._tickers:
            self._tickers[id(ticker)] = ticker
            self._snapshot = tuple(self._tickers.values())

    def unsubscribe(self, ticker: Ticking) -> None:
        """Stop ticking `ticker`; safe to call from inside its own `on_tick`."""
        if self._tickers.pop(id(ticker), None) is not None:
            self._snapshot = tuple(self._tickers.values())

    def __len__(self) -> int:
        return len(self._tickers)

    def __contains__(self, ticker: object) -> bool:
        return id(ticker) in self._tickers

    def run_due(self, now: float) -> list[TickFailed]:
        """Run every due tick on every subscriber; returns the subscribers that failed.

        A subscriber that unsubscribes itself or another one during a tick is honoured
        from the next tick on (the current tick iterates a snapshot).
        """
        failures: list[TickFailed] = []
        for tick_no in self.tick_due(now):
            for ticker in self._snapshot:
                try:
                    ticker.on_tick(tick_no)
                except Exception as exc:  # noqa: BLE001 - one stream's fault stays its own
                    self.unsubscribe(ticker)
                    failures.append(TickFailed(ticker=ticker, tick_no=tick_no, error=exc))
        return failures

    # ---- statistics

    def lateness(self) -> LatenessStats:
        """p50/p99/max lateness over the last `stats_window` ticks run."""
        count = min(self._late_count, len(self._late))
        values = sorted(self._late[:count])
        return LatenessStats(
            count=count,
            p50=_percentile(values, 0.50),
            p99=_percentile(values, 0.99),
            max=values[-1] if values else 0.0,
            skipped=self._skipped,
            catch_ups=self._catch_ups,
        )

    def reset_stats(self) -> None:
        """Forget recorded lateness (e.g. after a benchmark's warm-up)."""
        self._late_count = 0
        self._skipped = 0
        self._catch_ups = 0


def _percentile(sorted_values: Iterable[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values (0.0 when there are none)."""
    values = list(sorted_values)
    if not values:
        return 0.0
    rank = max(1, math.ceil(q * len(values)))
    return values[rank - 1]
