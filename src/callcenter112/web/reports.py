"""The supervisor's report page, "Laporan" (`/reports`), and its CSV and PDF exports.

One page per local day, ISO week or month (`?period=day|week|month&date=YYYY-MM-DD`,
default: this month): the headline numbers, answer time against NENA and NFPA,
the genuine / prank / ghost share, calls by hour and by day, by category and
kecamatan, and per operator. The figures are `reports.compute_report`; the
charts are the server's SVG (`report_output`), the same ones the PDF carries.
`/reports/export.csv` and `/reports/export.pdf` take the same parameters.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from markupsafe import Markup
from starlette.responses import Response
from starlette.routing import Route

from ..report_cli import configured_categories, load_report
from ..report_output import (
    DISPOSITION_COLOURS,
    DISPOSITION_LABELS,
    category_labels,
    charts,
    duration_text,
    headline,
    report_csv,
    report_pdf,
    title_of,
)
from ..reports import PeriodKind, Report, ReportPeriod, period_of
from .bodies import WebError
from .console import CATEGORY_LABELS
from .context import Call, guarded

__all__ = ["routes"]

_KINDS: dict[str, PeriodKind] = {"day": "day", "week": "week", "month": "month"}
_MAX_PARAM = 32


def _period(call: Call) -> tuple[ReportPeriod, dt.date]:
    """The period asked for, and the day it was asked by (kept when the kind changes)."""
    params = call.request.query_params
    unknown = sorted(k for k in params if k not in ("period", "date"))
    if unknown:
        raise WebError(400, f"unknown query parameter(s): {', '.join(unknown)}")
    kind = _KINDS.get(params.get("period", "month")[:_MAX_PARAM])
    if kind is None:
        raise WebError(422, f"period: must be one of {'|'.join(_KINDS)}")
    text = params.get("date", "")[:_MAX_PARAM]
    if text:
        try:
            day = dt.date.fromisoformat(text if len(text) > 7 else text + "-01")
        except ValueError:
            raise WebError(400, f"date: {text!r} is not a date (YYYY-MM-DD)") from None
    else:
        day = dt.datetime.fromtimestamp(call.now(), call.ctx.zone).date()
    return period_of(kind, day, call.ctx.zone), day


async def _report(call: Call) -> tuple[Report, Callable[[str], str], dt.date]:
    period, day = _period(call)
    categories, configured = configured_categories(call.ctx.config)
    labels = {c: id_en[0] for c, id_en in CATEGORY_LABELS.items()} | configured
    report = await load_report(call.ctx.store, period, categories)
    return report, category_labels(labels), day


def _shift(period: ReportPeriod, step: int) -> str:
    """The `date` of the period before (-1) or after (+1)."""
    if period.kind == "month":
        month = period.first_day.month - 1 + step
        day = dt.date(period.first_day.year + month // 12, month % 12 + 1, 1)
    else:
        span = 1 if period.kind == "day" else 7
        day = period.first_day + dt.timedelta(days=span * step)
    return day.isoformat()


@guarded("supervisor")
async def report_page(call: Call) -> Response:
    report, label, day = await _report(call)
    p = report.period
    drawn = charts(report, label)
    query = f"period={p.kind}&date={p.first_day.isoformat()}"
    return call.page(
        "reports.html",
        report=report,
        title=title_of(report, call.ctx.config.centre.name),
        headline=headline(report),
        # Our own SVG: every text in it went through html.escape.
        charts=[(title, Markup(svg)) for title, svg in drawn.items()],
        kinds=[
            ("day", "Harian", "Day"),
            ("week", "Mingguan", "Week"),
            ("month", "Bulanan", "Month"),
        ],
        day=day.isoformat(),
        previous=_shift(p, -1),
        following=_shift(p, +1),
        last_day=(p.end_day - dt.timedelta(days=1)).isoformat(),
        query=query,
        duration=duration_text,
        disposition_labels=DISPOSITION_LABELS,
        disposition_colours=DISPOSITION_COLOURS,
    )


@guarded("supervisor")
async def report_csv_export(call: Call) -> Response:
    report, label, _ = await _report(call)
    name = f"laporan-{report.period.label}.csv"
    return Response(
        report_csv(report, label),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


@guarded("supervisor")
async def report_pdf_export(call: Call) -> Response:
    report, label, _ = await _report(call)
    name = f"laporan-{report.period.label}.pdf"
    data = report_pdf(
        report,
        centre=call.ctx.config.centre.name,
        generated_at=dt.datetime.fromtimestamp(call.now(), call.ctx.zone),
        category_label=label,
    )
    return Response(
        data,
        media_type="application/pdf",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


def routes() -> list[Route]:
    return [
        Route("/reports", report_page, methods=["GET"]),
        Route("/reports/export.csv", report_csv_export, methods=["GET"]),
        Route("/reports/export.pdf", report_pdf_export, methods=["GET"]),
    ]
