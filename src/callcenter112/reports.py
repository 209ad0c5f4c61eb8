"""The figures of the city's and the ministry's reports (issue 12), computed from incidents.

Pure: it takes the incidents and callback tasks of a period (as the store
returns them) and the centre's time zone, and returns a `Report` of plain
numbers; the web page, the CSV, the PDF and the CLI only draw them. Nothing
here reads a clock, a file or the store.

What is counted, and how:

* **Period** — a local day, ISO week (Monday first) or calendar month in the
  centre's time zone (`centre.timezone`; Ambon: WIT). A call belongs to the
  period its INVITE *arrived* in.
* **Categories and dispositions** are the strings stored on the incidents; no
  list is built in. The configured categories come first (in their order) so
  empty ones still show, then any other value found. Dispositions follow the
  local SOP order (`SOP_DISPOSITIONS`); older data's ``silent`` is counted as
  ``ghost`` (no response) and the report says how many were mapped.
* **Answer-time SLA** — `operator_answered_at - arrived_at` (incidents.sla_seconds,
  the NENA way: from the INVITE reaching the trunk), over calls an operator
  answered, against NENA-STA-020.1 (90 % within 15 s, 95 % within 20 s) and
  NFPA 1225 §7.4 / 1221 (90 % within 10 s). The same share the wallboard and
  `/api/v1/sla` show.
* **Abandoned** — incidents with status ``abandoned``. **Callbacks done** —
  callback tasks closed within the period.
* **Handling time** of a call — from the operator answering to the end of
  wrap-up (to the call's end when there was no wrap-up): talk, hold and wrap-up,
  the usual average-handling-time definition.
* **Time lost to prank and ghost calls** — the handling time of calls disposed
  ``prank`` or ``ghost``.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol
from zoneinfo import ZoneInfo

from .incidents import sla_seconds

__all__ = [
    "ANSWER_STANDARDS",
    "GHOST",
    "NO_DISPOSITION",
    "NO_KECAMATAN",
    "SOP_DISPOSITIONS",
    "AnswerStandard",
    "ClosedCallback",
    "OperatorFigures",
    "PeriodKind",
    "Report",
    "ReportCall",
    "ReportPeriod",
    "StandardResult",
    "compute_report",
    "handling_seconds",
    "period_of",
    "report_disposition",
]

PeriodKind = Literal["day", "week", "month"]

# The local SOP's dispositions (Cilegon and others: normal/genuine, ghost, prank,
# information), in the order a report lists them.
SOP_DISPOSITIONS: tuple[str, ...] = (
    "genuine",
    "ghost",
    "prank",
    "information",
    "wrong_number",
    "test",
    "duplicate",
)
GHOST = "ghost"
LEGACY_GHOST = "silent"  # what dispositions said before the SOP vocabulary
NO_DISPOSITION = ""  # not yet disposed by the operator
NO_KECAMATAN = ""  # location not recorded
WASTED = frozenset({"prank", GHOST})


@dataclass(frozen=True, slots=True, kw_only=True)
class AnswerStandard:
    body: str  # who sets it
    seconds: int
    target: float  # share of answered calls that must be answered within `seconds`


# NENA-STA-020.1-2020 §2.2 (call answering standard) and NFPA 1221/1225 §7.4.
ANSWER_STANDARDS: tuple[AnswerStandard, ...] = (
    AnswerStandard(body="NENA", seconds=15, target=0.90),
    AnswerStandard(body="NENA", seconds=20, target=0.95),
    AnswerStandard(body="NFPA", seconds=10, target=0.90),
)


class ReportCall(Protocol):
    """What the report reads of an incident (`incidents.Incident` fits)."""

    @property
    def id(self) -> str: ...
    @property
    def arrived_at(self) -> float: ...
    @property
    def category(self) -> str: ...
    @property
    def disposition(self) -> str | None: ...
    @property
    def kecamatan(self) -> str | None: ...
    @property
    def status(self) -> str: ...
    @property
    def operator(self) -> str | None: ...
    @property
    def operator_answered_at(self) -> float | None: ...
    @property
    def ended_at(self) -> float | None: ...
    @property
    def wrapped_up_at(self) -> float | None: ...


class ClosedCallback(Protocol):
    """What the report reads of a callback task (`incidents.Callback` fits)."""

    @property
    def closed_at(self) -> float | None: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class ReportPeriod:
    kind: PeriodKind
    first_day: dt.date  # local
    end_day: dt.date  # local, exclusive
    since: float  # epoch seconds of first_day 00:00 local
    until: float  # epoch seconds of end_day 00:00 local
    zone: str

    @property
    def days(self) -> tuple[dt.date, ...]:
        n = (self.end_day - self.first_day).days
        return tuple(self.first_day + dt.timedelta(days=i) for i in range(n))

    @property
    def label(self) -> str:
        if self.kind == "day":
            return self.first_day.isoformat()
        if self.kind == "week":
            year, week, _ = self.first_day.isocalendar()
            return f"{year}-W{week:02d}"
        return self.first_day.strftime("%Y-%m")


def period_of(kind: PeriodKind, day: dt.date, zone: ZoneInfo) -> ReportPeriod:
    """The local day, ISO week or month that contains `day`."""
    if kind == "day":
        first, end = day, day + dt.timedelta(days=1)
    elif kind == "week":
        first = day - dt.timedelta(days=day.weekday())
        end = first + dt.timedelta(days=7)
    elif kind == "month":
        first = day.replace(day=1)
        end = (first + dt.timedelta(days=32)).replace(day=1)
    else:
        raise ValueError(f"period must be day, week or month, not {kind!r}")

    def midnight(d: dt.date) -> float:
        return dt.datetime.combine(d, dt.time(), tzinfo=zone).timestamp()

    return ReportPeriod(
        kind=kind,
        first_day=first,
        end_day=end,
        since=midnight(first),
        until=midnight(end),
        zone=zone.key,
    )


def report_disposition(value: str | None) -> str:
    """The disposition as the report counts it (`silent` of older data is ghost)."""
    if not value:
        return NO_DISPOSITION
    return GHOST if value == LEGACY_GHOST else value


def handling_seconds(call: ReportCall) -> float | None:
    """Operator answer → end of wrap-up (or of the call); None if no operator answered."""
    end = call.wrapped_up_at if call.wrapped_up_at is not None else call.ended_at
    if call.operator_answered_at is None or end is None:
        return None
    return max(0.0, end - call.operator_answered_at)


@dataclass(frozen=True, slots=True, kw_only=True)
class StandardResult:
    standard: AnswerStandard
    within: int
    share: float | None  # None: no answered calls

    @property
    def met(self) -> bool | None:
        return None if self.share is None else self.share >= self.standard.target


@dataclass(frozen=True, slots=True, kw_only=True)
class OperatorFigures:
    operator: str
    calls: int  # calls this operator answered
    handling_s: float  # total handling time

    @property
    def mean_handling_s(self) -> float | None:
        return self.handling_s / self.calls if self.calls else None


@dataclass(frozen=True, slots=True, kw_only=True)
class Report:
    period: ReportPeriod
    calls: int
    answered: int  # an operator answered
    abandoned: int
    callbacks_done: int
    by_hour: tuple[int, ...]  # 24 counts, local hour of arrival
    by_day: tuple[tuple[dt.date, int], ...]  # every local day of the period
    by_category: tuple[tuple[str, int], ...]
    by_disposition: tuple[tuple[str, int], ...]  # NO_DISPOSITION last
    by_kecamatan: tuple[tuple[str, int], ...]  # most calls first; NO_KECAMATAN last
    answer_times_s: tuple[float, ...]  # sorted
    standards: tuple[StandardResult, ...]
    operators: tuple[OperatorFigures, ...]  # by user
    wasted_calls: int  # disposed prank or ghost
    wasted_s: float  # their handling time
    legacy_silent: int  # dispositions `silent` counted as ghost

    def share(self, disposition: str) -> float | None:
        """The share of disposed calls with this disposition."""
        disposed = sum(n for d, n in self.by_disposition if d != NO_DISPOSITION)
        count = dict(self.by_disposition).get(disposition, 0)
        return count / disposed if disposed else None

    @property
    def mean_answer_s(self) -> float | None:
        t = self.answer_times_s
        return sum(t) / len(t) if t else None


def _ordered(counts: Counter[str], first: Sequence[str], last: str | None) -> list[tuple[str, int]]:
    out = [(k, counts.get(k, 0)) for k in first]
    others = sorted(
        (k for k in counts if k not in first and k != last), key=lambda k: (-counts[k], k)
    )
    out += [(k, counts[k]) for k in others]
    if last is not None and counts.get(last):
        out.append((last, counts[last]))
    return out


def compute_report(
    calls: Iterable[ReportCall],
    callbacks: Iterable[ClosedCallback],
    period: ReportPeriod,
    *,
    categories: Sequence[str] = (),
) -> Report:
    """Every figure of the report. Calls that did not arrive within the period and
    callbacks not closed within it are ignored, so callers may pass a superset."""
    zone = ZoneInfo(period.zone)
    total = answered = abandoned = wasted_calls = legacy = 0
    wasted_s = 0.0
    hours = [0] * 24
    days: Counter[dt.date] = Counter()
    by_category: Counter[str] = Counter()
    by_disposition: Counter[str] = Counter()
    by_kecamatan: Counter[str] = Counter()
    answer_times: list[float] = []
    op_calls: Counter[str] = Counter()
    op_time: dict[str, float] = {}
    for call in calls:
        if not period.since <= call.arrived_at < period.until:
            continue
        total += 1
        local = dt.datetime.fromtimestamp(call.arrived_at, zone)
        hours[local.hour] += 1
        days[local.date()] += 1
        by_category[str(call.category)] += 1
        raw = None if call.disposition is None else str(call.disposition)
        disposition = report_disposition(raw)
        legacy += raw == LEGACY_GHOST
        by_disposition[disposition] += 1
        by_kecamatan[call.kecamatan or NO_KECAMATAN] += 1
        if str(call.status) == "abandoned":
            abandoned += 1
        sla = sla_seconds(call.arrived_at, call.operator_answered_at)
        if sla is not None:
            answered += 1
            answer_times.append(sla)
        handling = handling_seconds(call)
        if call.operator and call.operator_answered_at is not None:
            op_calls[call.operator] += 1
            op_time[call.operator] = op_time.get(call.operator, 0.0) + (handling or 0.0)
        if disposition in WASTED:
            wasted_calls += 1
            wasted_s += handling or 0.0
    answer_times.sort()
    standards = tuple(
        StandardResult(
            standard=s,
            within=(n := sum(1 for t in answer_times if t <= s.seconds)),
            share=n / len(answer_times) if answer_times else None,
        )
        for s in ANSWER_STANDARDS
    )
    done = sum(
        1
        for cb in callbacks
        if cb.closed_at is not None and period.since <= cb.closed_at < period.until
    )
    kecamatan = sorted(
        ((k, n) for k, n in by_kecamatan.items() if k != NO_KECAMATAN),
        key=lambda kn: (-kn[1], kn[0]),
    )
    if by_kecamatan.get(NO_KECAMATAN):
        kecamatan.append((NO_KECAMATAN, by_kecamatan[NO_KECAMATAN]))
    return Report(
        period=period,
        calls=total,
        answered=answered,
        abandoned=abandoned,
        callbacks_done=done,
        by_hour=tuple(hours),
        by_day=tuple((d, days.get(d, 0)) for d in period.days),
        by_category=tuple(_ordered(by_category, list(categories), None)),
        by_disposition=tuple(_ordered(by_disposition, SOP_DISPOSITIONS, NO_DISPOSITION)),
        by_kecamatan=tuple(kecamatan),
        answer_times_s=tuple(answer_times),
        standards=standards,
        operators=tuple(
            OperatorFigures(operator=u, calls=op_calls[u], handling_s=round(op_time[u], 3))
            for u in sorted(op_calls)
        ),
        wasted_calls=wasted_calls,
        wasted_s=round(wasted_s, 3),
        legacy_silent=legacy,
    )
