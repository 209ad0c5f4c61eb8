"""The city's report (issue 12): figures equal those computed independently, CSV, PDF, CLI.

The expected figures are computed here from the same incidents by a different
route: local time is UTC+9 by arithmetic (Asia/Jayapura keeps no daylight
saving), not zoneinfo; shares are plain counts. The PDF is rendered to images
by poppler's pdftoppm and its text read back with pdftotext.
"""

from __future__ import annotations

import asyncio
import calendar
import csv
import datetime as dt
import io
import random
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from callcenter112.incidents import Category, Incident, Status
from callcenter112.records import open_store
from callcenter112.report_output import charts, report_csv, report_pdf
from callcenter112.reports import compute_report, period_of

WIT = ZoneInfo("Asia/Jayapura")
UTC9 = 9 * 3600
NOV_START = calendar.timegm((2026, 11, 1, 0, 0, 0)) - UTC9  # 2026-11-01 00:00 WIT
NOV_END = calendar.timegm((2026, 12, 1, 0, 0, 0)) - UTC9
CATEGORIES = ["medical", "fire", "disaster", "police", "unknown"]
KECAMATAN = ["Sirimau", "Nusaniwe", "Baguala", "Teluk Ambon", "Leitimur Selatan", None]
DISPOSITIONS = ["genuine", "prank", "silent", "ghost", "information", "test", None]


@dataclass(frozen=True)
class Closed:
    closed_at: float | None


def _month(rng: random.Random, n: int) -> list[Incident]:
    out = []
    for i in range(n):
        # Mostly November, a few just outside it on either side.
        arrived = rng.uniform(NOV_START - 7200, NOV_END + 7200)
        answered = rng.random() < 0.8
        answer_s = rng.choice([3.0, 8.0, 10.0, 12.0, 15.0, 18.0, 20.0, 26.0, 70.0])
        op_at = arrived + answer_s if answered else None
        ended = (op_at or arrived) + rng.uniform(5, 400)
        wrapped = ended + 10 if answered and rng.random() < 0.7 else None
        out.append(
            Incident(
                id=f"x-{i}",
                caller="0812",
                arrived_at=arrived,
                updated_at=ended,
                category=rng.choice(CATEGORIES),  # type: ignore[arg-type]
                disposition=rng.choice(DISPOSITIONS),  # type: ignore[arg-type]
                kecamatan=rng.choice(KECAMATAN),
                status=Status.COMPLETED if answered else Status.ABANDONED,
                operator=rng.choice(["op1", "op2", "op3"]) if answered else None,
                operator_answered_at=op_at,
                ended_at=ended,
                wrapped_up_at=wrapped,
            )
        )
    return out


def _expected(incidents: list[Incident], callbacks: list[Closed]) -> dict[str, object]:
    nov = [i for i in incidents if NOV_START <= i.arrived_at < NOV_END]
    hours = [0] * 24
    days = [0] * 30
    for i in nov:
        local = i.arrived_at + UTC9
        hours[int(local % 86400 // 3600)] += 1
        days[int((i.arrived_at - NOV_START) // 86400)] += 1
    disp: dict[str, int] = {}
    for i in nov:
        d = i.disposition or ""
        d = "ghost" if d == "silent" else d
        disp[d] = disp.get(d, 0) + 1
    answered = [i for i in nov if i.operator_answered_at is not None]
    waits = [i.operator_answered_at - i.arrived_at for i in answered]  # type: ignore[operator]

    def handling(i: Incident) -> float:
        end = i.wrapped_up_at if i.wrapped_up_at is not None else i.ended_at
        return end - i.operator_answered_at  # type: ignore[operator]

    ops: dict[str, tuple[int, float]] = {}
    for i in answered:
        n, t = ops.get(i.operator or "", (0, 0.0))
        ops[i.operator or ""] = (n + 1, t + handling(i))
    wasted = [i for i in nov if (i.disposition or "") in ("prank", "ghost", "silent")]
    return {
        "calls": len(nov),
        "hours": hours,
        "days": days,
        "category": {c: sum(1 for i in nov if i.category == c) for c in CATEGORIES},
        "disposition": disp,
        "kecamatan": {(k or ""): sum(1 for i in nov if i.kecamatan == k) for k in KECAMATAN},
        "abandoned": sum(1 for i in nov if i.status == Status.ABANDONED),
        "answered": len(answered),
        "nena15": sum(1 for w in waits if w <= 15) / len(waits),
        "nena20": sum(1 for w in waits if w <= 20) / len(waits),
        "nfpa10": sum(1 for w in waits if w <= 10) / len(waits),
        "operators": ops,
        "wasted_calls": len(wasted),
        "wasted_s": sum(handling(i) for i in wasted if i.operator_answered_at is not None),
        "callbacks_done": sum(
            1 for c in callbacks if c.closed_at is not None and NOV_START <= c.closed_at < NOV_END
        ),
    }


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_month_figures_equal_an_independent_count(seed: int) -> None:
    rng = random.Random(seed)
    incidents = _month(rng, 600)
    callbacks = [Closed(rng.uniform(NOV_START - 86400, NOV_END + 86400)) for _ in range(40)]
    callbacks.append(Closed(None))
    period = period_of("month", dt.date(2026, 11, 17), WIT)
    assert period.label == "2026-11" and len(period.days) == 30
    r = compute_report(incidents, callbacks, period, categories=CATEGORIES)
    want = _expected(incidents, callbacks)
    assert r.calls == want["calls"] and r.calls > 500
    assert list(r.by_hour) == want["hours"]
    assert [n for _, n in r.by_day] == want["days"]
    assert dict(r.by_category) == want["category"]
    assert {d: n for d, n in r.by_disposition if n} == want["disposition"]
    assert [d for d, _ in r.by_disposition][:3] == ["genuine", "ghost", "prank"]  # SOP order
    assert "silent" not in dict(r.by_disposition)
    assert r.legacy_silent == sum(
        1 for i in incidents if NOV_START <= i.arrived_at < NOV_END and i.disposition == "silent"
    )
    assert dict(r.by_kecamatan) == want["kecamatan"]
    assert r.abandoned == want["abandoned"] and r.answered == want["answered"]
    by_name = {(s.standard.body, s.standard.seconds): s for s in r.standards}
    assert by_name[("NENA", 15)].share == pytest.approx(want["nena15"])
    assert by_name[("NENA", 20)].share == pytest.approx(want["nena20"])
    assert by_name[("NFPA", 10)].share == pytest.approx(want["nfpa10"])
    assert by_name[("NENA", 15)].met == (want["nena15"] >= 0.90)  # type: ignore[operator]
    ops = {o.operator: (o.calls, o.handling_s) for o in r.operators}
    assert set(ops) == set(want["operators"])  # type: ignore[arg-type]
    for user, (n, t) in want["operators"].items():  # type: ignore[attr-defined]
        assert ops[user][0] == n and ops[user][1] == pytest.approx(t, abs=0.01)
    assert r.wasted_calls == want["wasted_calls"]
    assert r.wasted_s == pytest.approx(want["wasted_s"], abs=0.01)
    assert r.callbacks_done == want["callbacks_done"]
    genuine = want["disposition"]["genuine"]  # type: ignore[index]
    disposed = sum(n for d, n in want["disposition"].items() if d)  # type: ignore[attr-defined]
    assert r.share("genuine") == pytest.approx(genuine / disposed)


def test_day_and_week_periods_follow_local_time() -> None:
    day = period_of("day", dt.date(2026, 11, 28), WIT)
    assert day.since == calendar.timegm((2026, 11, 27, 15, 0, 0))  # 00:00 WIT
    assert day.until - day.since == 86400
    week = period_of("week", dt.date(2026, 11, 28), WIT)  # a Saturday
    assert week.first_day == dt.date(2026, 11, 23) and week.label == "2026-W48"
    # 23:59 WIT on the 28th belongs to the 28th; 00:00 WIT on the 29th does not.
    late = Incident(id="a", caller="1", arrived_at=day.until - 60, updated_at=0)
    next_day = Incident(id="b", caller="1", arrived_at=day.until, updated_at=0)
    r = compute_report([late, next_day], [], day)
    assert r.calls == 1 and r.by_hour[23] == 1


def test_categories_are_the_stored_strings_configured_first() -> None:
    period = period_of("day", dt.date(2026, 11, 28), WIT)
    at = period.since + 3600
    calls = [
        Incident(id="a", caller="1", arrived_at=at, updated_at=0, category="hearse"),  # type: ignore[arg-type]
        Incident(id="b", caller="1", arrived_at=at, updated_at=0, category=Category.MEDICAL),
    ]
    r = compute_report(calls, [], period, categories=["medical", "fire"])
    assert r.by_category == (("medical", 1), ("fire", 0), ("hearse", 1))


def test_csv_carries_every_figure() -> None:
    rng = random.Random(7)
    incidents = _month(rng, 200)
    r = compute_report(incidents, [], period_of("month", dt.date(2026, 11, 1), WIT))
    rows = list(csv.reader(io.StringIO(report_csv(r))))
    assert rows[0] == ["section", "key", "value", "share"]
    table = {(s, k): v for s, k, v, _ in rows[1:]}
    assert int(table[("total", "calls")]) == r.calls
    assert sum(int(v) for (s, _), v in table.items() if s == "hour") == r.calls
    assert sum(int(v) for (s, _), v in table.items() if s == "day") == r.calls
    assert int(table[("disposition", "ghost")]) == dict(r.by_disposition)["ghost"]
    assert float(table[("sla", "NENA_15s_target_0.90")]) == r.standards[0].within


def test_charts_are_svg_with_one_bar_per_figure() -> None:
    rng = random.Random(9)
    r = compute_report(_month(rng, 300), [], period_of("month", dt.date(2026, 11, 1), WIT))
    c = charts(r)
    assert c.by_hour.startswith("<svg") and c.by_hour.count("<rect") == 24
    assert c.by_day.count("<rect") == 30
    assert "style=" not in "".join(svg for _, svg in c.items())  # the CSP allows no inline style
    assert f'data-label="00: {r.by_hour[0]}"' in c.by_hour
    assert "NENA 90 % &lt;= 15 s" in c.sla


def _pixels(ppm: Path) -> tuple[int, int, bytes]:
    data = ppm.read_bytes()
    parts = data.split(maxsplit=4)
    assert parts[0] == b"P6"
    return int(parts[1]), int(parts[2]), parts[4]


def _count_colour(rgb: bytes, colour: tuple[int, int, int], tol: int = 12) -> int:
    n = 0
    for i in range(0, len(rgb) - 2, 3):
        if all(abs(rgb[i + k] - colour[k]) <= tol for k in range(3)):
            n += 1
    return n


@pytest.mark.skipif(shutil.which("pdftoppm") is None, reason="poppler-utils not installed")
def test_pdf_renders_with_its_figures_and_charts(tmp_path: Path) -> None:
    incidents = _month(random.Random(11), 400)
    r = compute_report(incidents, [], period_of("month", dt.date(2026, 11, 1), WIT))
    pdf = report_pdf(
        r, centre="Call Center 112 Kota Ambon", generated_at=dt.datetime(2026, 12, 1, tzinfo=WIT)
    )
    path = tmp_path / "r.pdf"
    path.write_bytes(pdf)
    text = subprocess.run(
        ["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True, check=True
    ).stdout
    assert "Laporan Bulanan 2026-11" in text
    assert f"Panggilan masuk {r.calls}" in " ".join(text.split())
    assert "NENA 90 % <= 15 s" in text and "NFPA 90 % <= 10 s" in text
    for o in r.operators:
        assert o.operator in text
    subprocess.run(
        ["pdftoppm", "-r", "40", str(path), str(tmp_path / "page")], check=True, timeout=60
    )
    pages = sorted(tmp_path.glob("page-*.ppm"))
    assert 1 <= len(pages) <= 4
    rgb = b"".join(_pixels(p)[2] for p in pages)
    # The disposition bar's genuine green and prank red, and the chart blue, are on paper.
    assert _count_colour(rgb, (0x2E, 0x7D, 0x32)) > 50
    assert _count_colour(rgb, (0xC6, 0x28, 0x28)) > 50
    assert _count_colour(rgb, (0x15, 0x65, 0xC0)) > 200


async def _seed(db: Path) -> list[tuple[str, str | None, float | None]]:
    """Incidents through the real store: (category, disposition, answer seconds)."""
    plan = [
        ("medical", "genuine", 6.0),
        ("fire", "genuine", 14.0),
        ("police", "prank", 9.0),
        ("unknown", "silent", 19.0),
        ("medical", None, 25.0),
        ("disaster", "genuine", None),  # abandoned
    ]
    async with open_store(db, id_utc_offset_s=UTC9) as s:
        for n, (category, disposition, answer) in enumerate(plan):
            at = NOV_START + 86400 * (3 + n) + 3600 * 10  # 10:00 WIT on the 4th..9th
            iid = await s.create_incident(
                caller=f"08120000{n}", arrived_at=at, trunk="telkom", category=Category(category)
            )
            if answer is None:
                cb = await s.close_incident(
                    iid, status=Status.ABANDONED, at=at + 30, ended_at=at + 30, reason="hung up"
                )
                assert cb is not None
                await s.callback_close(cb, actor="op1", at=at + 600, outcome="handled")
                continue
            await s.update_incident(
                iid,
                at=at + answer,
                operator="op1" if n % 2 else "op2",
                stamps={"operator_answered_at": at + answer},
            )
            await s.close_incident(
                iid, status=Status.COMPLETED, at=at + 100, ended_at=at + 100, reason="bye"
            )
            changes: dict[str, object] = {"kecamatan": "Sirimau"}
            if disposition:
                changes["disposition"] = disposition
            await s.save_disposition(iid, changes, actor="op1", at=at + 120)
    return plan


def test_cli_month_csv_and_pdf_from_a_real_store(tmp_path: Path) -> None:
    cfg = tmp_path / "cc.toml"
    cfg.write_text('[storage]\ndatabase = "data/db.sqlite3"\nrecordings = "data/rec"\n')
    (tmp_path / "data").mkdir()
    plan = asyncio.run(_seed(tmp_path / "data" / "db.sqlite3"))
    run = [sys.executable, "-m", "callcenter112", "report", "--config", str(cfg)]
    r = subprocess.run(
        [*run, "--month", "2026-11", "--format", "csv"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert "6/6 (100 %)" in r.stderr  # the progress bar reached the end
    table = {(s, k): v for s, k, v, _ in list(csv.reader(io.StringIO(r.stdout)))[1:]}
    assert int(table[("total", "calls")]) == len(plan)
    assert int(table[("total", "abandoned")]) == 1
    assert int(table[("total", "callbacks_done")]) == 1
    assert int(table[("hour", "10")]) == len(plan)
    # The stored `silent` of older data: the store reads it as ghost (incidents.py,
    # one rule), so the report counts it there.
    assert int(table[("disposition", "ghost")]) == 1
    # Undisposed: the one left empty, and the abandoned call nobody disposed.
    assert int(table[("disposition", "none")]) == sum(
        1 for _, d, a in plan if d is None or a is None
    )
    answered = [a for _, _, a in plan if a is not None]
    assert int(table[("sla", "NENA_15s_target_0.90")]) == sum(1 for a in answered if a <= 15)
    assert int(table[("sla", "NFPA_10s_target_0.90")]) == sum(1 for a in answered if a <= 10)
    assert int(table[("kecamatan", "Sirimau")]) == len(answered)
    # Time lost to prank and ghost: operator answer to the end of the call.
    assert float(table[("total", "prank_ghost_handling_s")]) == pytest.approx(
        (100 - 9.0) + (100 - 19.0)
    )
    out = tmp_path / "laporan.pdf"
    r = subprocess.run(
        [*run, "--month", "2026-11", "--format", "pdf", "-o", str(out), "--quiet"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert out.read_bytes().startswith(b"%PDF-")
    bad = subprocess.run(
        [*run, "--month", "2026-13"], capture_output=True, text=True, check=False, timeout=60
    )
    assert bad.returncode == 2 and "not a date" in bad.stderr
