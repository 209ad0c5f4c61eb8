"""Caller history and the repeat-caller rule (issue 12), pure.

Owns what one caller number's earlier calls mean: how many in the last
10 minutes, 24 hours and 30 days, with their dispositions; whether this call
is a ``repeat_caller`` (``[callers] repeat_calls_10min`` calls within 10 min,
this one included), with the earlier incidents to link; and whether a
supervisor should be *suggested* to put the number on the watch list
(``suggest_after_pranks_24h`` prank dispositions within 24 h). Nothing here
refuses, delays or ends a call: a flag informs the operator, a suggestion
waits for a supervisor (``watchlist.py``).

Withheld or anonymous caller ID is never a reason for anything
(``identifiable``): it gets no history, no flag and no suggestion — many
genuine callers cannot show a number (prepaid without a SIM, a borrowed
phone, a carrier that drops it).

The history comes from the store through ``CallerHistorySource`` (one query
by number and time); ``InMemoryCallerHistory`` is the test and simulator
implementation. Time is passed in as UNIX seconds.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from .incidents import ANONYMOUS, Disposition, Incident, normalize_caller

if TYPE_CHECKING:
    from .config import CallersConfig

__all__ = [
    "DAY_S",
    "MONTH_S",
    "TEN_MIN_S",
    "CallerHistory",
    "CallerHistorySource",
    "CallerRules",
    "InMemoryCallerHistory",
    "PastCall",
    "RepeatVerdict",
    "WatchListSuggestion",
    "caller_history",
    "identifiable",
    "past_calls",
    "repeat_verdict",
    "suggest_watch_list",
]

TEN_MIN_S = 10 * 60.0
DAY_S = 24 * 3600.0
MONTH_S = 30 * DAY_S  # "the last 30 days" of issue 12


@dataclass(frozen=True, slots=True, kw_only=True)
class PastCall:
    """One earlier incident of the number, as the history needs it."""

    incident_id: str
    arrived_at: float
    disposition: Disposition | None = None


def past_calls(incidents: Iterable[Incident]) -> list[PastCall]:
    """The store's incident rows (``Store.caller_history``) as history entries."""
    return [
        PastCall(incident_id=i.id, arrived_at=i.arrived_at, disposition=i.disposition)
        for i in incidents
    ]


@dataclass(frozen=True, slots=True, kw_only=True)
class CallerRules:
    """``[callers]`` (``callcenter112.config.CallersConfig``)."""

    repeat_calls_10min: int = 3
    suggest_after_pranks_24h: int = 3

    def __post_init__(self) -> None:
        if self.repeat_calls_10min < 2 or self.suggest_after_pranks_24h < 1:
            raise ValueError("repeat_calls_10min must be >= 2, suggest_after_pranks_24h >= 1")

    @classmethod
    def from_config(cls, cfg: CallersConfig) -> CallerRules:
        return cls(
            repeat_calls_10min=cfg.repeat_calls_10min,
            suggest_after_pranks_24h=cfg.suggest_after_pranks_24h,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class CallerHistory:
    """A number's earlier calls (newest first) in the three windows of issue 12."""

    number: str
    at: float
    last_10min: tuple[PastCall, ...] = ()
    last_24h: tuple[PastCall, ...] = ()
    last_30d: tuple[PastCall, ...] = ()
    dispositions_24h: Mapping[str, int] = field(default_factory=dict)
    dispositions_30d: Mapping[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        """The API/console shape: counts, dispositions and the incidents to link."""
        return {
            "number": self.number,
            "calls_10min": len(self.last_10min),
            "calls_24h": len(self.last_24h),
            "calls_30d": len(self.last_30d),
            "dispositions_24h": dict(self.dispositions_24h),
            "dispositions_30d": dict(self.dispositions_30d),
            "incidents_10min": [c.incident_id for c in self.last_10min],
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class RepeatVerdict:
    repeat_caller: bool
    calls_10min: int  # this call included
    earlier: tuple[str, ...]  # incident ids to link, newest first


@dataclass(frozen=True, slots=True, kw_only=True)
class WatchListSuggestion:
    """Shown to a supervisor, who confirms or ignores it; never acted on by itself."""

    number: str
    reason: str
    pranks_24h: int
    incidents: tuple[str, ...]


class CallerHistorySource(Protocol):
    """The store's side: earlier incidents of ``number`` that arrived in
    ``[since, until)``, any order. ``number`` is already normalised."""

    def calls_from(self, number: str, *, since: float, until: float) -> Sequence[PastCall]: ...


def identifiable(number: str) -> bool:
    """Whether a caller ID names a line; withheld/anonymous ones never count."""
    return normalize_caller(number) != ANONYMOUS


def caller_history(number: str, calls: Iterable[PastCall], now: float) -> CallerHistory:
    """Bucket earlier calls (strictly before ``now``, within 30 days) by window."""
    number = normalize_caller(number)
    if number == ANONYMOUS:
        return CallerHistory(number=number, at=now)
    recent = sorted(
        (c for c in calls if now - MONTH_S <= c.arrived_at < now),
        key=lambda c: (c.arrived_at, c.incident_id),
        reverse=True,
    )
    day = tuple(c for c in recent if c.arrived_at >= now - DAY_S)

    def tally(xs: Iterable[PastCall]) -> dict[str, int]:
        return dict(Counter(c.disposition.value for c in xs if c.disposition is not None))

    return CallerHistory(
        number=number,
        at=now,
        last_10min=tuple(c for c in day if c.arrived_at >= now - TEN_MIN_S),
        last_24h=day,
        last_30d=tuple(recent),
        dispositions_24h=tally(day),
        dispositions_30d=tally(recent),
    )


def repeat_verdict(history: CallerHistory, rules: CallerRules) -> RepeatVerdict:
    """``repeat_caller`` when this call makes ``repeat_calls_10min`` within 10 min."""
    calls = len(history.last_10min) + 1
    earlier = tuple(c.incident_id for c in history.last_10min)
    repeat = history.number != ANONYMOUS and calls >= rules.repeat_calls_10min
    return RepeatVerdict(repeat_caller=repeat, calls_10min=calls, earlier=earlier)


def suggest_watch_list(history: CallerHistory, rules: CallerRules) -> WatchListSuggestion | None:
    """A suggestion after ``suggest_after_pranks_24h`` prank dispositions in 24 h."""
    if history.number == ANONYMOUS:
        return None
    pranks = [c for c in history.last_24h if c.disposition is Disposition.PRANK]
    if len(pranks) < rules.suggest_after_pranks_24h:
        return None
    return WatchListSuggestion(
        number=history.number,
        reason=f"{len(pranks)} prank calls in 24 h",
        pranks_24h=len(pranks),
        incidents=tuple(c.incident_id for c in pranks),
    )


@dataclass(slots=True)
class InMemoryCallerHistory:
    """``CallerHistorySource`` over a list: for tests and the surge simulator."""

    calls: dict[str, list[PastCall]] = field(default_factory=dict)

    def add(self, number: str, call: PastCall) -> None:
        number = normalize_caller(number)
        if number != ANONYMOUS:
            self.calls.setdefault(number, []).append(call)

    def dispose(self, number: str, incident_id: str, disposition: Disposition) -> None:
        rows = self.calls.get(normalize_caller(number), [])
        for i, c in enumerate(rows):
            if c.incident_id == incident_id:
                rows[i] = PastCall(
                    incident_id=c.incident_id, arrived_at=c.arrived_at, disposition=disposition
                )

    def calls_from(self, number: str, *, since: float, until: float) -> Sequence[PastCall]:
        return [c for c in self.calls.get(number, []) if since <= c.arrived_at < until]
