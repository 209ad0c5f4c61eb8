"""What a simulation proved: the callers' view checked against the incident store.

Owns reading back the run's incidents (matched to the simulated calls by
their Call-ID, through `store.SqliteStore` — the only database importer)
and the summary the `simulate` command prints and the surge benchmark
builds on: outcomes, categories (and whether each caller landed in the
category it pressed), answer-time percentiles as the callers measured them
(INVITE → operator heard) and as the centre recorded them (`sla_s =
operator_answered_at - arrived_at`, DESIGN §2), abandoned calls and their
callback tasks, system-caused drops, and every disagreement between what a
caller lived and what the incident says.

A run is *ok* when every call ended the way its script asked (answered, or
abandoned by an impatient caller) and, when the store was read, every
incident agrees: answered ⇒ `completed` with an operator; abandoned ⇒
`abandoned` with a callback task; categories as pressed; nothing left
`active`.
"""

from __future__ import annotations

import asyncio
import getpass
import os
import time
from collections import Counter
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..incidents import AuditAction, IncidentQuery
from ..records import open_store
from .records import CallRecord, Outcome, percentile

__all__ = [
    "IncidentView",
    "Quantiles",
    "Summary",
    "format_summary",
    "read_incidents",
    "summarize",
]

# The centre writes an incident's end right after the last BYE: poll this long.
SETTLE_S = 15.0
SETTLE_POLL_S = 0.5
MAX_PROBLEMS_SHOWN = 20


@dataclass(frozen=True, slots=True, kw_only=True)
class Quantiles:
    """Nearest-rank percentiles of some durations in seconds (None: no values)."""

    n: int
    p50: float | None
    p90: float | None
    p99: float | None
    max: float | None

    @classmethod
    def of(cls, values: Iterable[float]) -> Quantiles:
        ordered = sorted(values)
        return cls(
            n=len(ordered),
            p50=percentile(ordered, 0.50),
            p90=percentile(ordered, 0.90),
            p99=percentile(ordered, 0.99),
            max=ordered[-1] if ordered else None,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class IncidentView:
    """The parts of one incident a simulation checks."""

    id: str
    call_id: str
    status: str
    category: str
    operator: str | None
    arrived_at: float
    ivr_done_at: float | None
    queued_at: float | None
    offered_at: float | None
    operator_answered_at: float | None
    ended_at: float | None
    sla_s: float | None
    callback: bool = False

    @property
    def ivr_s(self) -> float | None:
        """Arrival → IVR done: the time the caller spent in the menu."""
        return None if self.ivr_done_at is None else self.ivr_done_at - self.arrived_at


async def read_incidents(
    database: Path,
    call_ids: Collection[str],
    *,
    since: float,
    settle_s: float = SETTLE_S,
) -> dict[str, IncidentView]:
    """The incidents of `call_ids` (by Call-ID) that arrived from `since` on.

    Polls until none of them is still `active` or `settle_s` passes. Reading
    incident records is audited like `incidents list` (actor
    ``simulate:<OS user>``).
    """
    wanted = set(call_ids)
    found: dict[str, IncidentView] = {}
    async with open_store(database) as store:
        deadline = time.monotonic() + settle_s
        while True:
            incidents = await store.list_incidents(IncidentQuery(since=since - 5.0), limit=None)
            found = {}
            for inc in incidents:
                if inc.call_id in wanted and inc.call_id is not None:
                    found[inc.call_id] = IncidentView(
                        id=inc.id,
                        call_id=inc.call_id,
                        status=str(inc.status),
                        category=str(inc.category),
                        operator=inc.operator,
                        arrived_at=inc.arrived_at,
                        ivr_done_at=inc.ivr_done_at,
                        queued_at=inc.queued_at,
                        offered_at=inc.offered_at,
                        operator_answered_at=inc.operator_answered_at,
                        ended_at=inc.ended_at,
                        sla_s=inc.sla_s,
                    )
            settled = all(v.status != "active" for v in found.values())
            if settled or time.monotonic() >= deadline:
                break
            await asyncio.sleep(SETTLE_POLL_S)
        for call_id, view in list(found.items()):
            if view.status in ("abandoned", "interrupted"):
                callbacks = await store.list_callbacks(open_only=False, incident_id=view.id)
                if callbacks:
                    found[call_id] = replace(view, callback=True)
        await store.audit(
            actor=f"simulate:{_os_user()}",
            action=AuditAction.LIST,
            target="incidents",
            detail={"simulated_calls": len(wanted), "found": len(found)},
            at=time.time(),
        )
    return found


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid{os.getuid()}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Summary:
    """What a run shows (see the module docstring)."""

    calls: int
    outcomes: dict[str, int]
    categories: dict[str, int]
    categories_checked: int
    categories_as_pressed: int
    answer_time_s: Quantiles  # at the caller: INVITE → operator heard
    sla_s: Quantiles  # the store's operator_answered_at - arrived_at
    abandoned: int
    callbacks: int
    system_drops: int
    store_checked: bool
    problems: tuple[str, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        expected = self.outcomes.get("answered", 0) + self.outcomes.get("abandoned", 0)
        return expected == self.calls and not self.problems


def summarize(records: Sequence[CallRecord], incidents: dict[str, IncidentView] | None) -> Summary:
    """The summary of a run; `incidents` None when the store was not read."""
    outcomes = Counter(str(r.outcome) for r in records if r.outcome is not None)
    problems: list[str] = []
    for r in records:
        if r.outcome is not None and not r.outcome.expected:
            problems.append(f"{r.script.number}: {r.outcome} ({r.detail})")
    categories: Counter[str] = Counter()
    checked = as_pressed = callbacks = interrupted = 0
    sla: list[float] = []
    if incidents is not None:
        for r in records:
            inc = incidents.get(r.call_id)
            if inc is None:
                if r.connected is not None:
                    problems.append(f"{r.script.number}: no incident for Call-ID {r.call_id}")
                continue
            categories[inc.category] += 1
            if inc.sla_s is not None:
                sla.append(inc.sla_s)
            callbacks += inc.callback
            interrupted += inc.status == "interrupted"
            problems += _disagreements(r, inc)
            if r.outcome is Outcome.ANSWERED or (
                r.outcome is Outcome.ABANDONED and inc.ivr_done_at is not None
            ):
                checked += 1
                if inc.category == r.script.expected_category:
                    as_pressed += 1
                else:
                    problems.append(
                        f"{r.script.number}: pressed {r.script.digit or 'nothing'}, expected "
                        f"{r.script.expected_category}, incident {inc.id} is {inc.category}"
                    )
    else:
        categories.update(r.script.expected_category for r in records)
    drops = interrupted + sum(
        outcomes.get(str(o), 0) for o in (Outcome.REJECTED, Outcome.UNANSWERED, Outcome.DROPPED)
    )
    return Summary(
        calls=len(records),
        outcomes=dict(outcomes.most_common()),
        categories=dict(categories.most_common()),
        categories_checked=checked,
        categories_as_pressed=as_pressed,
        answer_time_s=Quantiles.of(t for r in records if (t := r.answer_time_s) is not None),
        sla_s=Quantiles.of(sla),
        abandoned=outcomes.get(str(Outcome.ABANDONED), 0),
        callbacks=callbacks,
        system_drops=drops,
        store_checked=incidents is not None,
        problems=tuple(problems),
    )


def _disagreements(r: CallRecord, inc: IncidentView) -> list[str]:
    where = f"{r.script.number} (incident {inc.id})"
    if inc.status == "active":
        return [f"{where}: still active after the run"]
    if r.outcome is Outcome.ANSWERED:
        if inc.status != "completed" or inc.operator_answered_at is None:
            return [f"{where}: answered at the caller, but the incident is {inc.status}"]
    elif r.outcome is Outcome.ABANDONED:
        if inc.status != "abandoned":
            return [f"{where}: the caller abandoned, but the incident is {inc.status}"]
        if not inc.callback:
            return [f"{where}: abandoned without a callback task"]
    return []


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


def format_summary(summary: Summary) -> str:
    """The summary as the `simulate` command prints it."""
    s = summary
    lines = [f"calls        {s.calls}"]
    lines.append("outcomes     " + (", ".join(f"{k} {v}" for k, v in s.outcomes.items()) or "none"))
    source = "incidents" if s.store_checked else "as pressed (store not read)"
    lines.append(
        f"categories   {', '.join(f'{k} {v}' for k, v in s.categories.items()) or 'none'}"
        f"  [{source}]"
    )
    if s.store_checked and s.categories_checked:
        lines.append(
            f"as pressed   {s.categories_as_pressed}/{s.categories_checked} callers landed "
            "in the category they pressed"
        )
    for label, q in (
        ("answer time  (caller: INVITE → operator heard)", s.answer_time_s),
        ("SLA          (store: operator answered - arrived)", s.sla_s),
    ):
        if not q.n:
            continue
        lines.append(
            f"{label}: p50 {_seconds(q.p50)}, p90 {_seconds(q.p90)}, "
            f"p99 {_seconds(q.p99)}, max {_seconds(q.max)}  (n={q.n})"
        )
    if s.store_checked:
        lines.append(f"abandoned    {s.abandoned} (callback tasks: {s.callbacks})")
    else:
        lines.append(f"abandoned    {s.abandoned}")
    lines.append(
        f"system drops {s.system_drops} (rejected, unanswered, dropped by the centre, interrupted)"
    )
    if s.problems:
        lines.append(f"problems     {len(s.problems)}:")
        lines += [f"  - {p}" for p in s.problems[:MAX_PROBLEMS_SHOWN]]
        if len(s.problems) > MAX_PROBLEMS_SHOWN:
            lines.append(f"  … and {len(s.problems) - MAX_PROBLEMS_SHOWN} more")
    lines.append("result       " + ("OK: every call got its outcome" if s.ok else "FAILED"))
    return "\n".join(lines)
