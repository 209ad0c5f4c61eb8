"""The report drawn: SVG charts, the CSV export and the PDF for the Wali Kota / Komdigi.

Everything here is a pure function of a `reports.Report`. The charts are SVG
drawn by the server — the web page embeds them as they are, and the PDF
embeds the very same pictures (fpdf2 draws SVG), so the page and the paper
never disagree. SVG uses presentation attributes only (no `style`), which the
console's Content-Security-Policy allows.

Labels are in Bahasa Indonesia, the language of the report's readers.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from collections.abc import Callable, Mapping, Sequence
from html import escape

from fpdf import FPDF

from .reports import GHOST, NO_DISPOSITION, Report, StandardResult

__all__ = [
    "DISPOSITION_COLOURS",
    "DISPOSITION_LABELS",
    "ReportCharts",
    "category_labels",
    "charts",
    "duration_text",
    "headline",
    "report_csv",
    "report_pdf",
    "title_of",
]

DISPOSITION_LABELS: dict[str, str] = {
    "genuine": "Darurat nyata",
    GHOST: "Ghost (tanpa respons)",
    "prank": "Iseng (prank)",
    "information": "Permintaan informasi",
    "wrong_number": "Salah sambung",
    "test": "Uji coba",
    "duplicate": "Duplikat",
    NO_DISPOSITION: "Belum diisi",
}
DISPOSITION_COLOURS: dict[str, str] = {
    "genuine": "#2e7d32",
    GHOST: "#757575",
    "prank": "#c62828",
    "information": "#1565c0",
    "wrong_number": "#ef6c00",
    "test": "#6a1b9a",
    "duplicate": "#8d6e63",
    NO_DISPOSITION: "#cfd8dc",
}
_BAR = "#1565c0"
_OK = "#2e7d32"
_BAD = "#c62828"
_INK = "#212121"
_MUTED = "#616161"
_GRID = "#e0e0e0"
_FONT = 'font-family="Helvetica, Arial, sans-serif"'
_PERIOD_NAMES = {"day": "Harian", "week": "Mingguan", "month": "Bulanan"}


def duration_text(seconds: float) -> str:
    """`1 j 05 m` / `4 m 10 s` / `12 s` (jam, menit, seconds as everywhere in the console)."""
    s = round(seconds)
    hours, rest = divmod(s, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} j {minutes:02d} m"
    if minutes:
        return f"{minutes} m {secs:02d} s"
    return f"{secs} s"


def _percent(share: float | None) -> str:
    return "-" if share is None else f"{share * 100:.0f} %"


def _svg(width: int, height: int, title: str, body: list[str]) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">'
        f"<title>{escape(title)}</title>{''.join(body)}</svg>"
    )


def _text(
    x: float,
    y: float,
    text: str,
    *,
    size: int = 12,
    anchor: str = "start",
    fill: str = _INK,
    bold: bool = False,
) -> str:
    weight = ' font-weight="bold"' if bold else ""
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" {_FONT} text-anchor="{anchor}" '
        f'fill="{fill}"{weight}>{escape(text)}</text>'
    )


def _rect(x: float, y: float, w: float, h: float, fill: str, *, label: str = "") -> str:
    data = f' data-label="{escape(label)}"' if label else ""
    size = f'width="{max(w, 0):.1f}" height="{h:.1f}"'
    return f'<rect x="{x:.1f}" y="{y:.1f}" {size} fill="{fill}"{data}/>'


def column_chart(
    title: str,
    labels: Sequence[str],
    values: Sequence[int],
    *,
    every: int = 1,
    width: int = 720,
    height: int = 220,
) -> str:
    """Vertical bars with the count over each non-empty bar; a label every `every`."""
    top, bottom, left, right = 16, 28, 8, 8
    plot_h = height - top - bottom
    n = max(len(values), 1)
    slot = (width - left - right) / n
    peak = max(values, default=0) or 1
    body = [
        f'<line x1="{left}" y1="{top + plot_h}" x2="{width - right}" y2="{top + plot_h}" '
        f'stroke="{_GRID}"/>'
    ]
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        h = plot_h * value / peak
        x = left + i * slot + slot * 0.12
        body.append(_rect(x, top + plot_h - h, slot * 0.76, h, _BAR, label=f"{label}: {value}"))
        if value:
            body.append(
                _text(x + slot * 0.38, top + plot_h - h - 3, str(value), size=10, anchor="middle")
            )
        if i % every == 0:
            body.append(
                _text(x + slot * 0.38, height - 10, label, size=10, anchor="middle", fill=_MUTED)
            )
    return _svg(width, height, title, body)


def bar_chart(
    title: str, rows: Sequence[tuple[str, int, str]], *, total: int, width: int = 720
) -> str:
    """Horizontal bars: label, bar, `count (share)`; rows are (label, count, colour)."""
    row_h, label_w, value_w = 24, 220, 110
    height = max(len(rows), 1) * row_h + 8
    peak = max((n for _, n, _ in rows), default=0) or 1
    span = width - label_w - value_w
    body: list[str] = []
    for i, (label, count, colour) in enumerate(rows):
        y = 4 + i * row_h
        body.append(_text(label_w - 8, y + 16, label, anchor="end"))
        body.append(
            _rect(label_w, y + 4, span * count / peak, row_h - 8, colour, label=f"{label}: {count}")
        )
        share = f" ({count * 100 / total:.0f} %)" if total else ""
        body.append(_text(label_w + span * count / peak + 6, y + 16, f"{count}{share}"))
    return _svg(width, height, title, body)


def share_bar(title: str, rows: Sequence[tuple[str, int, str]], *, width: int = 720) -> str:
    """One bar split by share (dispositions), with a legend under it."""
    total = sum(n for _, n, _ in rows)
    body: list[str] = []
    x = 0.0
    for label, count, colour in rows:
        w = width * count / total if total else 0
        if w:
            body.append(_rect(x, 0, w, 36, colour, label=f"{label}: {count}"))
            if w > 44:
                body.append(
                    _text(
                        x + w / 2,
                        23,
                        f"{count * 100 / total:.0f} %",
                        size=13,
                        anchor="middle",
                        fill="#ffffff",
                        bold=True,
                    )
                )
        x += w
    legend = [(label, count, colour) for label, count, colour in rows if count]
    per_row = 3
    for i, (label, count, colour) in enumerate(legend):
        lx = (i % per_row) * (width / per_row)
        ly = 52 + (i // per_row) * 22
        body.append(_rect(lx, ly - 11, 12, 12, colour))
        body.append(_text(lx + 18, ly, f"{label}: {count}", size=12))
    height = 52 + ((len(legend) + per_row - 1) // per_row) * 22
    if not total:
        body.append(_text(0, 23, "Belum ada panggilan yang diberi disposisi", fill=_MUTED))
    return _svg(width, max(height, 60), title, body)


def sla_chart(title: str, results: Sequence[StandardResult], *, width: int = 720) -> str:
    """A bullet bar per standard: the share reached, the target as a line, green or red."""
    row_h, label_w, value_w = 34, 220, 150
    span = width - label_w - value_w
    body: list[str] = []
    for i, r in enumerate(results):
        y = 4 + i * row_h
        s = r.standard
        body.append(
            _text(
                label_w - 8,
                y + 20,
                f"{s.body} {s.target * 100:.0f} % <= {s.seconds} s",
                anchor="end",
            )
        )
        body.append(_rect(label_w, y + 6, span, row_h - 12, "#eeeeee"))
        colour = _MUTED if r.met is None else (_OK if r.met else _BAD)
        body.append(
            _rect(
                label_w,
                y + 6,
                span * (r.share or 0),
                row_h - 12,
                colour,
                label=f"{s.body} {s.seconds} s: {_percent(r.share)}",
            )
        )
        tx = label_w + span * s.target
        body.append(
            f'<line x1="{tx:.1f}" y1="{y + 2}" x2="{tx:.1f}" y2="{y + row_h - 2}" '
            f'stroke="{_INK}" stroke-width="2"/>'
        )
        verdict = "-" if r.met is None else ("tercapai" if r.met else "TIDAK tercapai")
        body.append(
            _text(
                label_w + span + 8,
                y + 20,
                f"{_percent(r.share)}  {verdict}",
                fill=colour,
                bold=True,
            )
        )
    return _svg(width, len(results) * row_h + 8, title, body)


class ReportCharts:
    """The report's pictures, by name, as SVG text."""

    def __init__(self, report: Report, category_label: Callable[[str], str]) -> None:
        r = report
        self.by_hour = column_chart(
            "Panggilan per jam", [f"{h:02d}" for h in range(24)], r.by_hour, every=2
        )
        self.by_day = (
            column_chart(
                "Panggilan per hari",
                [d.strftime("%d") for d, _ in r.by_day],
                [n for _, n in r.by_day],
                every=1 if len(r.by_day) <= 10 else 2,
            )
            if len(r.by_day) > 1
            else ""
        )
        self.dispositions = share_bar(
            "Disposisi panggilan",
            [
                (DISPOSITION_LABELS.get(d, d), n, DISPOSITION_COLOURS.get(d, _MUTED))
                for d, n in r.by_disposition
            ],
        )
        self.categories = bar_chart(
            "Panggilan per kategori",
            [(category_label(c), n, _BAR) for c, n in r.by_category],
            total=r.calls,
        )
        self.kecamatan = bar_chart(
            "Panggilan per kecamatan",
            [(k or "Tidak diketahui", n, _BAR) for k, n in r.by_kecamatan],
            total=r.calls,
        )
        self.sla = sla_chart("Waktu jawab", r.standards)

    def items(self) -> list[tuple[str, str]]:
        named = [
            ("Waktu jawab (SLA)", self.sla),
            ("Disposisi: nyata, iseng, ghost", self.dispositions),
            ("Panggilan per jam", self.by_hour),
            ("Panggilan per hari", self.by_day),
            ("Per kategori", self.categories),
            ("Per kecamatan", self.kecamatan),
        ]
        return [(title, svg) for title, svg in named if svg]


def charts(report: Report, category_label: Callable[[str], str] = str) -> ReportCharts:
    return ReportCharts(report, category_label)


def headline(report: Report) -> list[tuple[str, str]]:
    """The few numbers a reader wants first."""
    r = report
    return [
        ("Panggilan masuk", str(r.calls)),
        ("Dijawab operator", str(r.answered)),
        ("Ditinggal (abandoned)", str(r.abandoned)),
        ("Panggilan balik selesai", str(r.callbacks_done)),
        ("Iseng + ghost (% yang didisposisi)", f"{r.wasted_calls} ({_percent(_wasted_share(r))})"),
        ("Waktu operator terbuang", duration_text(r.wasted_s)),
        (
            "Rata-rata waktu jawab",
            "-" if r.mean_answer_s is None else f"{r.mean_answer_s:.1f} s",
        ),
    ]


def _wasted_share(r: Report) -> float | None:
    prank, ghost = r.share("prank"), r.share(GHOST)
    return None if prank is None or ghost is None else prank + ghost


def title_of(report: Report, centre: str) -> str:
    p = report.period
    return f"Laporan {_PERIOD_NAMES[p.kind]} {p.label} - {centre}"


# --------------------------------------------------------------------------- CSV


def report_csv(report: Report, category_label: Callable[[str], str] = str) -> str:
    """One table of `section,key,value[,share]` rows: every figure, machine-readable."""
    r = report
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["section", "key", "value", "share"])
    p = r.period
    w.writerow(["period", p.kind, p.label, ""])
    w.writerow(["period", "since_local", p.first_day.isoformat(), ""])
    w.writerow(["period", "until_local", p.end_day.isoformat(), ""])
    w.writerow(["period", "timezone", p.zone, ""])
    for key, value in (
        ("calls", r.calls),
        ("answered", r.answered),
        ("abandoned", r.abandoned),
        ("callbacks_done", r.callbacks_done),
        ("prank_ghost_calls", r.wasted_calls),
        ("prank_ghost_handling_s", r.wasted_s),
        ("legacy_silent_counted_as_ghost", r.legacy_silent),
    ):
        w.writerow(["total", key, value, ""])
    for hour, n in enumerate(r.by_hour):
        w.writerow(["hour", f"{hour:02d}", n, ""])
    for day, n in r.by_day:
        w.writerow(["day", day.isoformat(), n, ""])

    def share(n: int, total: int) -> str:
        return f"{n / total:.4f}" if total else ""

    for c, n in r.by_category:
        w.writerow(["category", c, n, share(n, r.calls)])
    disposed = sum(n for d, n in r.by_disposition if d != NO_DISPOSITION)
    for d, n in r.by_disposition:
        w.writerow(["disposition", d or "none", n, share(n, disposed) if d else ""])
    for k, n in r.by_kecamatan:
        w.writerow(["kecamatan", k or "unknown", n, share(n, r.calls)])
    for s in r.standards:
        key = f"{s.standard.body}_{s.standard.seconds}s_target_{s.standard.target:.2f}"
        w.writerow(["sla", key, s.within, "" if s.share is None else f"{s.share:.4f}"])
    for o in r.operators:
        w.writerow(["operator_calls", o.operator, o.calls, ""])
        w.writerow(["operator_handling_s", o.operator, o.handling_s, ""])
    return out.getvalue()


# --------------------------------------------------------------------------- PDF


def _latin(text: str) -> str:
    # The PDF's core font is Latin-1; anything else is replaced, never dropped silently.
    return text.encode("latin-1", "replace").decode("latin-1")


def report_pdf(
    report: Report,
    *,
    centre: str,
    generated_at: dt.datetime,
    category_label: Callable[[str], str] = str,
) -> bytes:
    """A4 pages: headline figures, the charts of the page, the operator table."""
    r = report
    pdf = FPDF(format="A4")
    pdf.set_title(_latin(title_of(r, centre)))
    pdf.set_author(_latin(centre))
    pdf.set_creator("callcenter112")
    pdf.set_creation_date(generated_at)
    pdf.set_auto_page_break(auto=True, margin=15)
    pdf.add_page()
    pdf.set_font("helvetica", "B", 16)
    pdf.multi_cell(0, 8, _latin(title_of(r, centre)), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("helvetica", size=9)
    p = r.period
    pdf.multi_cell(
        0,
        5,
        _latin(
            f"Periode {p.first_day.isoformat()} s.d. "
            f"{(p.end_day - dt.timedelta(days=1)).isoformat()}"
            f" ({p.zone}). Dibuat {generated_at.strftime('%Y-%m-%d %H:%M %Z')}."
        ),
        new_x="LMARGIN",
        new_y="NEXT",
    )
    pdf.ln(2)
    pdf.set_font("helvetica", size=11)
    for label, value in headline(r):
        pdf.cell(70, 7, _latin(label), border="B")
        pdf.set_font("helvetica", "B", 11)
        pdf.cell(0, 7, _latin(value), border="B", new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("helvetica", size=11)
    if r.legacy_silent:
        pdf.set_font("helvetica", "I", 9)
        pdf.multi_cell(
            0,
            5,
            f"Catatan: {r.legacy_silent} panggilan berdisposisi lama 'silent' "
            "dihitung sebagai ghost.",
            new_x="LMARGIN",
            new_y="NEXT",
        )
    width_mm = pdf.w - pdf.l_margin - pdf.r_margin
    for title, svg in charts(r, category_label).items():
        pdf.set_font("helvetica", "B", 12)
        # Keep a chart with its heading: a new page when less than ~70 mm remain.
        if pdf.get_y() > pdf.h - 80:
            pdf.add_page()
        pdf.ln(3)
        pdf.cell(0, 7, _latin(title), new_x="LMARGIN", new_y="NEXT")
        # fpdf2 draws the SVG itself; it has no use for the accessible <title>.
        drawable = re.sub(r"<title>.*?</title>", "", svg, count=1)
        pdf.image(io.BytesIO(drawable.encode()), w=width_mm)
    _operator_table(pdf, r)
    return bytes(pdf.output())


def _operator_table(pdf: FPDF, r: Report) -> None:
    if pdf.get_y() > pdf.h - 60:
        pdf.add_page()
    pdf.ln(4)
    pdf.set_font("helvetica", "B", 12)
    pdf.cell(0, 7, "Per operator", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("helvetica", "B", 10)
    for text, w in (("Operator", 60), ("Panggilan", 30), ("Waktu tangani", 40), ("Rata-rata", 40)):
        pdf.cell(w, 7, text, border="B")
    pdf.ln()
    pdf.set_font("helvetica", size=10)
    for o in r.operators:
        pdf.cell(60, 6, _latin(o.operator), border="B")
        pdf.cell(30, 6, str(o.calls), border="B")
        pdf.cell(40, 6, duration_text(o.handling_s), border="B")
        mean = o.mean_handling_s
        pdf.cell(40, 6, "-" if mean is None else duration_text(mean), border="B")
        pdf.ln()
    if not r.operators:
        pdf.cell(0, 6, "Tidak ada panggilan yang dijawab operator.", new_x="LMARGIN", new_y="NEXT")


def category_labels(configured: Mapping[str, str]) -> Callable[[str], str]:
    """A label function: the configured label, else the stored id as it is."""
    return lambda c: configured.get(c, c)
