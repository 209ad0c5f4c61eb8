"""The "Laporan" page and its exports over ASGI against a real SQLite store.

The figures themselves are tested in test_reports.py; here: who may open the
page, the period parameters (and their refusals), the numbers and charts on
the page for seeded incidents, and the CSV/PDF answers.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from callcenter112.incidents import Status
from test_web_support import T0, WebEnv, seed_incident, web_env


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[WebEnv]:
    async with web_env(tmp_path) as e:
        yield e


async def _seed(env: WebEnv) -> None:
    a = await seed_incident(env.store, env.recordings, at=T0 - 3600)  # 09:00 WIT, op1
    await seed_incident(env.store, env.recordings, at=T0 - 1800, operator="op2")
    await env.store.save_disposition(
        a.incident_id, {"disposition": "prank", "kecamatan": "Sirimau"}, actor="op1", at=T0
    )
    iid = await env.store.create_incident(caller="0813", arrived_at=T0 - 600, trunk="telkom")
    await env.store.close_incident(
        iid, status=Status.ABANDONED, at=T0 - 580, ended_at=T0 - 580, reason="hung up"
    )


async def test_only_supervisors_open_the_reports(env: WebEnv) -> None:
    r = await env.client.get("/reports")
    assert r.status_code == 303 and r.headers["location"].startswith("/login")
    await env.sign_in("op1")
    assert (await env.client.get("/reports")).status_code == 403
    assert (await env.client.get("/reports/export.pdf")).status_code == 403
    env.sign_out_locally()
    await env.sign_in("supervisor")
    page = await env.client.get("/reports")
    assert page.status_code == 200 and 'href="/reports"' in page.text  # in the navigation


async def test_day_page_shows_the_seeded_calls(env: WebEnv) -> None:
    await _seed(env)
    await env.sign_in("supervisor")
    r = await env.client.get("/reports?period=day&date=2026-11-28")
    assert r.status_code == 200, r.text
    html = r.text
    assert 'data-period="day"' in html and 'data-label="2026-11-28"' in html
    assert html.count("<svg") == 5  # SLA, dispositions, hour, category, kecamatan
    assert 'data-label="09: 3"' in html  # 09:00, 09:30 and 09:50 WIT
    assert 'data-label="Iseng (prank): 1"' in html
    assert 'data-testid="operator-op1"' in html and 'data-testid="operator-op2"' in html
    # The week and month around it hold the same three calls.
    for period in ("week", "month"):
        page = await env.client.get(f"/reports?period={period}&date=2026-11-28")
        assert '<span class="value">3</span>' in page.text, period
    # The day before has none.
    empty = await env.client.get("/reports?period=day&date=2026-11-27")
    assert '<span class="value">0</span>' in empty.text


@pytest.mark.parametrize(
    ("query", "status", "message"),
    [
        ("period=year", 422, "period"),
        ("date=28-11-2026", 400, "not a date"),
        ("colour=red", 400, "colour"),
    ],
)
async def test_bad_period_parameters_are_refused(
    env: WebEnv, query: str, status: int, message: str
) -> None:
    await env.sign_in("supervisor")
    r = await env.client.get(f"/reports?{query}", headers={"Accept": "application/json"})
    assert r.status_code == status and message in r.json()["error"]


async def test_csv_and_pdf_exports(env: WebEnv) -> None:
    await _seed(env)
    await env.sign_in("supervisor")
    r = await env.client.get("/reports/export.csv?period=month&date=2026-11")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert 'filename="laporan-2026-11.csv"' in r.headers["content-disposition"]
    table = {(s, k): v for s, k, v, _ in list(csv.reader(io.StringIO(r.text)))[1:]}
    assert table[("total", "calls")] == "3" and table[("total", "abandoned")] == "1"
    assert table[("kecamatan", "Sirimau")] == "1"
    pdf = await env.client.get("/reports/export.pdf?period=month&date=2026-11")
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF-") and b"/Count 2" in pdf.content  # two pages
