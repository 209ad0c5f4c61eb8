"""`callcenter112 report`: the monthly (weekly, daily) report as CSV or PDF.

    callcenter112 report --month 2026-11 --format pdf --output laporan-2026-11.pdf
    callcenter112 report --day 2026-11-28 --format csv

The figures are `reports.compute_report` over the incidents that arrived in
the period (local time, `centre.timezone`) and the callback tasks; reading a
large month shows a progress bar on stderr. Exit 0, or 2 for a bad argument
or configuration, 1 if the store cannot be read.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from .config import Config, ConfigError, load_config
from .incidents import Callback, Incident, IncidentQuery
from .net.loop import run as run_on_server_loop
from .progress import ProgressBar, ProgressLine
from .records import Store, StoreError, open_database
from .reports import PeriodKind, Report, ReportPeriod, compute_report, period_of

if TYPE_CHECKING:
    SubParsers = argparse._SubParsersAction[argparse.ArgumentParser]

__all__ = ["add_commands", "configured_categories", "load_report"]


def configured_categories(config: Config) -> tuple[list[str], dict[str, str]]:
    """The configured category ids in order, and their labels.

    A `[[category]]` list (id, label) is the authority when the configuration
    has one; before it, the queue priorities name every category.
    """
    listed = getattr(config, "category", None)
    if listed:
        return [c.id for c in listed], {c.id: c.label for c in listed}
    return list(config.queue.priority), {}


async def load_report(
    store: Store,
    period: ReportPeriod,
    categories: list[str],
    *,
    on_progress: Callable[[int, int], None] | None = None,
) -> Report:
    """Read the period's incidents and the callback tasks, then compute the figures."""
    query = IncidentQuery(since=period.since, until=period.until)
    total = await store.count_incidents(query)
    calls: list[Incident] = []
    async for incident in store.iter_incidents(query):
        calls.append(incident)
        if on_progress is not None:
            on_progress(len(calls), total)
    callbacks: list[Callback] = await store.list_callbacks(open_only=False)
    return compute_report(calls, callbacks, period, categories=categories)


def _period(args: argparse.Namespace, zone: ZoneInfo) -> ReportPeriod:
    kind: PeriodKind
    try:
        if args.month:
            kind, day = "month", dt.date.fromisoformat(args.month + "-01")
        elif args.week:
            kind, day = "week", dt.date.fromisoformat(args.week)
        else:
            kind, day = "day", dt.date.fromisoformat(args.day)
    except ValueError as exc:
        raise ValueError(f"not a date: {exc}") from None
    return period_of(kind, day, zone)


def _report(args: argparse.Namespace) -> int:
    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        print(exc.explain(), file=sys.stderr)
        return 2
    zone = ZoneInfo(cfg.centre.timezone)
    try:
        period = _period(args, zone)
    except ValueError as exc:
        print(f"callcenter112 report: {exc}", file=sys.stderr)
        return 2
    categories, labels = configured_categories(cfg)
    line = ProgressLine(sys.stderr, enabled=not args.quiet)
    bar: ProgressBar | None = None

    def progress(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = ProgressBar(line, f"Membaca insiden {period.label}", total)
        bar.update(done)

    async def read() -> Report:
        async with open_database(cfg.storage.database, resolve=cfg.path) as store:
            return await load_report(store, period, categories, on_progress=progress)

    try:
        report = run_on_server_loop(read())
    except (StoreError, OSError) as exc:
        line.finish()
        print(f"callcenter112 report: cannot read the incidents: {exc}", file=sys.stderr)
        return 1
    if bar is not None:
        bar.finish()
    # The PDF library (fpdf2 and its font tools) loads only when a report is written.
    from .report_output import category_labels, report_csv, report_pdf

    label = category_labels(labels)
    if args.format == "csv":
        data = report_csv(report, label).encode()
    else:
        data = report_pdf(
            report,
            centre=cfg.centre.name,
            generated_at=dt.datetime.now(zone),
            category_label=label,
        )
    if args.output in (None, "-"):
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    else:
        Path(args.output).write_bytes(data)
        print(f"{args.output}: {report.calls} panggilan, {period.label}", file=sys.stderr)
    return 0


def add_commands(sub: SubParsers, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "report",
        parents=[common],
        help="the centre's report for a day, week or month (CSV or PDF)",
        description="Calls by hour, category, disposition and kecamatan; answer time against "
        "NENA and NFPA; abandoned calls and callbacks; per operator; time lost to prank and "
        "ghost calls. Periods are local days in centre.timezone.",
    )
    when = p.add_mutually_exclusive_group(required=True)
    when.add_argument("--month", metavar="YYYY-MM", help="a calendar month")
    when.add_argument("--week", metavar="YYYY-MM-DD", help="the ISO week (Mon-Sun) of this day")
    when.add_argument("--day", metavar="YYYY-MM-DD", help="one day")
    p.add_argument("--format", choices=("pdf", "csv"), default="pdf")
    p.add_argument("--output", "-o", metavar="FILE", help="write here (default: stdout)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=_report)
