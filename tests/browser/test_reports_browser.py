"""The supervisor's "Laporan" page against the REAL server, real calls and Debian's chromium.

One `callcenter112 serve` process (tests/harness.py). Two SIPp citizens call
112: the first presses 2 (fire) while no operator is on duty and hangs up in
the queue (abandoned); then op1's baresip softphone registers and answers the
second, who pressed 1 (medical). The supervisor disposes the answered call as
prank through the server's own API. Chromium then opens /reports for today and
checks that the page's numbers and SVG charts show exactly those two calls,
and that the PDF and CSV exports download from the same server.

Writes docs/screenshots/reports.png.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from site_support import SCREENSHOTS

from harness import (
    Baresip,
    Server,
    WebSession,
    incident_of,
    need,
    operator_online,
    running_server,
    start_caller,
    talking_to,
)

pytestmark = [pytest.mark.browser, pytest.mark.peers, pytest.mark.slow]

ABANDONING = "081211110001"
ANSWERED = "081211110002"
FAST = """
menu_tries = 1
input_timeout_s = 1
[queue]
ring_timeout_s = 6
wrapup_s = 0
"""


@pytest.fixture(scope="module")
def centre(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    need("sipp", "baresip")
    with running_server(tmp_path_factory.mktemp("reports"), extra=FAST) as server:
        yield server


async def _until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = await asyncio.to_thread(check)
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.2)


def _status(server: Server, caller: str) -> str | None:
    incident = incident_of(server, caller)
    return None if incident is None else str(incident["status"])


async def test_report_page_shows_real_calls_with_charts(
    chromium: Any, centre: Server, tmp_path: Path
) -> None:
    server = centre
    # -- 1. A caller nobody can answer hangs up in the queue: abandoned.
    first = start_caller(
        server, tmp_path / "abandoning", caller=ABANDONING, digits="2", talk_ms=3000
    )
    await _until(lambda: _status(server, ABANDONING) == "abandoned", 60, "abandoned call")
    first.wait(30)
    # -- 2. op1 comes on duty; the next caller is answered.
    phone = Baresip(tmp_path / "op1", user="op1", password="secret1", server_port=server.sip_port)
    await asyncio.to_thread(phone.start)
    try:
        await _until(lambda: operator_online(server, "op1"), 30, "op1 registered")
        second = start_caller(
            server, tmp_path / "answered", caller=ANSWERED, digits="1", talk_ms=9000
        )
        await _until(lambda: talking_to(server, ANSWERED, "op1"), 45, "op1 answered")
        await _until(lambda: _status(server, ANSWERED) == "completed", 60, "call ended")
        second.wait(30)
    finally:
        await asyncio.to_thread(phone.stop)
    answered = incident_of(server, ANSWERED)
    assert answered is not None and answered["operator"] == "op1"
    # -- 3. The supervisor disposes it as prank through the server's API.
    web = WebSession(server, "supervisor", "super-secret")
    try:
        r = web.post(
            f"/api/v1/incidents/{answered['id']}/disposition",
            {"disposition": "prank"},
        )
        assert r.status_code == 200, r.text
    finally:
        web.close()

    # -- 4. The report page for today.
    base = f"http://127.0.0.1:{server.web_port}"
    context = await chromium.new_context(viewport={"width": 1366, "height": 900}, locale="id-ID")
    page = await context.new_page()
    try:
        await page.goto(f"{base}/login")
        await page.fill("[data-testid=login-user]", "supervisor")
        await page.fill("[data-testid=login-password]", "super-secret")
        async with page.expect_navigation():
            await page.click("[data-testid=login-submit]")
        await page.click("[data-testid=nav-reports]")
        await page.wait_for_selector("[data-testid=reports]")
        assert await page.get_attribute("[data-testid=reports]", "data-period") == "month"
        await page.select_option("[data-testid=period]", "day")
        async with page.expect_navigation():
            await page.click("form.period-form button[type=submit]")
        reports = "[data-testid=reports]"
        assert await page.get_attribute(reports, "data-period") == "day"
        zone = ZoneInfo("Asia/Jayapura")
        arrived = dt.datetime.fromisoformat(answered["arrived_at"].replace("Z", "+00:00"))
        local = arrived.astimezone(zone)
        assert await page.get_attribute(reports, "data-label") == local.date().isoformat()

        kpis = [t.strip() for t in await page.locator(".report-kpi").all_inner_texts()]
        assert kpis[0].startswith("2") and "Panggilan masuk" in kpis[0]  # two calls
        assert kpis[1].startswith("1")  # answered by op1
        assert kpis[2].startswith("1")  # abandoned
        assert kpis[4].startswith("1 (100 %)")  # prank + ghost: the one disposed call
        # The charts are SVG in the page, one bar per figure.
        charts = page.locator(".report-chart svg")
        assert await charts.count() == 5  # SLA, dispositions, hour, category, kecamatan
        hour = page.locator(f'svg rect[data-label="{local.hour:02d}: 2"]')
        assert await hour.count() == 1, "both calls in the hour they arrived"
        assert await page.locator('svg rect[data-label="Iseng (prank): 1"]').count() == 1
        box = await hour.bounding_box()
        assert box is not None and box["height"] > 20  # drawn, visible
        sla = page.locator('[data-testid=chart-1] svg rect[data-label^="NENA 15 s"]')
        assert await sla.count() == 1
        assert await page.inner_text("[data-testid=operator-op1]") != ""
        row = (await page.inner_text("[data-testid=operator-op1]")).split()
        assert row[:2] == ["op1", "1"]

        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(SCREENSHOTS / "reports.png"), full_page=True)

        # -- 5. The exports, through the signed-in session.
        query = f"period=day&date={local.date().isoformat()}"
        pdf = await page.request.get(f"{base}/reports/export.pdf?{query}")
        assert pdf.status == 200 and (await pdf.body()).startswith(b"%PDF-")
        csv_text = await (await page.request.get(f"{base}/reports/export.csv?{query}")).text()
        assert "total,calls,2," in csv_text and "disposition,prank,1," in csv_text
    finally:
        await context.close()
