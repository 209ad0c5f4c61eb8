"""Trunk health: is the carrier answering, and what is it sending us?

Telecom staff need two things the SIP log cannot give at a glance:

- **Is the carrier there?** The centre sends OPTIONS to each trunk's proxy
  every `interval` seconds (continuous qualify, like Asterisk's
  `qualify_frequency` or Kamailio's dispatcher probing). A trunk is `down`
  after `down_after` consecutive probes without an answer and `up` again on
  the first answer; any final response counts as an answer (RFC 3261 §11.2:
  a 404 or 405 to OPTIONS still proves the carrier is alive). The round-trip
  time of each answered probe is kept.
- **What is happening on it?** Calls in, rejects by reason (403 source,
  404 number, 503 capacity …) and 4xx/5xx the carrier returned to our calls
  out, for today (the centre's local day) and the last hour.

Pure: time is passed in (`now` monotonic for the probes, `wall` for the
counters); the net glue sends the OPTIONS and reports the outcome.
"""

from __future__ import annotations

import enum
from collections import Counter, deque
from dataclasses import dataclass, field

__all__ = [
    "ProbeOutcome",
    "TrunkCounters",
    "TrunkHealth",
    "TrunkState",
    "TrunkStateChanged",
]

HOUR = 3600.0


class TrunkState(enum.Enum):
    UNKNOWN = "unknown"  # no probe answered or lost yet
    UP = "up"
    DOWN = "down"


class ProbeOutcome(enum.Enum):
    ANSWERED = "answered"
    TIMED_OUT = "timed_out"  # Timer F (RFC 3261 §17.1.2.2) or a transport error


@dataclass(frozen=True, slots=True, kw_only=True)
class TrunkStateChanged:
    trunk: str
    state: TrunkState
    previous: TrunkState
    at: float  # wall clock


@dataclass(slots=True)
class TrunkHealth:
    """The qualify state of one trunk."""

    trunk: str
    interval: float = 30.0
    down_after: int = 2
    state: TrunkState = TrunkState.UNKNOWN
    misses: int = 0
    last_rtt_ms: float | None = None
    last_status: int | None = None
    last_answer_at: float | None = None  # wall clock
    rtts_ms: deque[float] = field(default_factory=lambda: deque(maxlen=20))
    next_probe: float = 0.0  # monotonic
    in_flight_since: float | None = None

    def due(self, now: float) -> bool:
        return self.in_flight_since is None and now >= self.next_probe

    def probe_sent(self, now: float) -> None:
        self.in_flight_since = now
        self.next_probe = now + self.interval

    def probe_done(
        self, outcome: ProbeOutcome, *, now: float, wall: float, status: int | None = None
    ) -> TrunkStateChanged | None:
        """Record one probe's end; the state change it causes, if any."""
        sent = self.in_flight_since
        self.in_flight_since = None
        previous = self.state
        if outcome is ProbeOutcome.ANSWERED:
            self.misses = 0
            self.last_status = status
            self.last_answer_at = wall
            if sent is not None:
                self.last_rtt_ms = round((now - sent) * 1000.0, 1)
                self.rtts_ms.append(self.last_rtt_ms)
            self.state = TrunkState.UP
        else:
            self.misses += 1
            if self.misses >= self.down_after:
                self.state = TrunkState.DOWN
        if self.state is previous:
            return None
        return TrunkStateChanged(trunk=self.trunk, state=self.state, previous=previous, at=wall)

    def to_json(self) -> dict[str, object]:
        return {
            "state": self.state.value,
            "misses": self.misses,
            "last_rtt_ms": self.last_rtt_ms,
            "last_status": self.last_status,
            "last_answer_at": self.last_answer_at,
            "rtt_ms_recent": list(self.rtts_ms),
        }


@dataclass(slots=True)
class TrunkCounters:
    """Calls, rejects by reason and carrier errors, today and in the last hour.

    Events are kept with their wall time for the last hour (bounded by
    `max_recent`, a flood cannot grow it without limit: past the bound the
    oldest hour entries go first and `hour_complete` turns false); the day's
    totals are plain counters reset by `new_day()` at the local midnight."""

    max_recent: int = 100_000
    today: Counter[str] = field(default_factory=Counter)
    recent: deque[tuple[float, str]] = field(default_factory=deque)
    hour_complete: bool = True

    def count(self, what: str, *, wall: float) -> None:
        """`what`: "call", "reject:403", "reject:404", "reject:503",
        "carrier:486", "carrier:503" …"""
        self.today[what] += 1
        self.recent.append((wall, what))
        if len(self.recent) > self.max_recent:
            self.recent.popleft()
            self.hour_complete = False

    def new_day(self) -> None:
        self.today.clear()

    def last_hour(self, *, wall: float) -> Counter[str]:
        while self.recent and self.recent[0][0] < wall - HOUR:
            self.recent.popleft()
        return Counter(what for _, what in self.recent)

    def to_json(self, *, wall: float) -> dict[str, object]:
        hour = self.last_hour(wall=wall)

        def split(c: Counter[str]) -> dict[str, object]:
            return {
                "calls": c.get("call", 0),
                "rejects": {k.split(":", 1)[1]: v for k, v in c.items() if k.startswith("reject:")},
                "carrier_errors": {
                    k.split(":", 1)[1]: v for k, v in c.items() if k.startswith("carrier:")
                },
            }

        return {
            "today": split(self.today),
            "last_hour": split(hour),
            "hour_complete": self.hour_complete,
        }
