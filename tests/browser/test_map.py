"""The map in a real chromium against the real server: an AML fix becomes a pin and a circle.

The server is the real web application (uvicorn on loopback, SQLite store)
with the fake live centre; no tile server is reachable here, so these tests
also prove the map draws Kota Ambon from the shipped vector data alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from site_support import SCREENSHOTS

from callcenter112.web import WebServer
from location_web_support import location_env
from test_web_support import PASSWORDS, T0, WebEnv, seed_incident

VECTOR = (
    "v=1&device_number=%2B33611223344&location_latitude=-3.69581&location_longitude=128.18141"
    "&location_time=1604912121000&location_accuracy=120&location_source=GPS&location_certainty=83"
)

pytestmark = pytest.mark.browser


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[str, WebEnv]]:
    async with location_env(tmp_path, aml={"allow": ["127.0.0.0/8"]}) as env:
        server = WebServer(env.app, "127.0.0.1", 0)
        task = asyncio.create_task(server.serve_until_cancelled(), name="map-web-server")
        try:
            await asyncio.wait_for(server.ready.wait(), 30)
            yield f"http://127.0.0.1:{server.bound_port}", env
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def _sign_in(chromium: Any, base: str, user: str) -> Any:
    context = await chromium.new_context(viewport={"width": 1280, "height": 900}, locale="id-ID")
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on(
        "console",
        lambda msg: (
            errors.append(msg.text)
            if msg.type == "error" and "Content Security" in msg.text
            else None
        ),
    )
    page.errors = errors
    await page.goto(f"{base}/login")
    await page.fill("[data-testid=login-user]", user)
    await page.fill("[data-testid=login-password]", PASSWORDS[user])
    async with page.expect_navigation():
        await page.click("[data-testid=login-submit]")
    return page


async def test_aml_fix_shows_a_pin_and_circle_on_the_auditor_page(
    chromium: Any, served: tuple[str, WebEnv]
) -> None:
    base, env = served
    seeded = await seed_incident(env.store, env.recordings, at=T0 - 120, caller="+33611223344")
    page = await _sign_in(chromium, base, "auditor")
    await page.goto(f"{base}/audit/incidents/{seeded.incident_id}")
    the_map = "[data-testid=incident-map]"
    await page.wait_for_selector(f"{the_map}.leaflet-container[data-tiles=none]", timeout=10_000)
    # No tiles here: the city is drawn from config/ambon-map.geojson.
    await page.wait_for_function("document.querySelectorAll('.cc112-area').length >= 50")
    assert await page.locator(".cc112-kec-label", has_text="Sirimau").count() == 1
    assert await page.locator("[data-testid=map-pin]").count() == 0
    async with httpx.AsyncClient() as client:
        r = await client.post(
            f"{base}/api/v1/aml",
            content=VECTOR,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
    assert r.status_code == 200
    loop = asyncio.get_running_loop()
    sent = loop.time()
    await page.wait_for_selector("[data-testid=map-pin]", state="visible", timeout=5_000)
    await page.wait_for_selector("[data-testid=map-circle]", state="visible", timeout=5_000)
    shown_after = loop.time() - sent
    assert await page.get_attribute(the_map, "data-lat") == "-3.69581"
    assert await page.get_attribute(the_map, "data-radius") == "120"
    assert await page.get_attribute(the_map, "data-source") == "aml-https"
    caption = await page.inner_text("[data-testid=map-caption]")
    assert "Kelurahan" in caption and "Sirimau" in caption
    # The circle's on-screen size follows the 120 m radius: Web Mercator at zoom 16 is
    # 156543.03 m·cos(lat)/2^16 per pixel, ~2.38 m here, so ~101 px across (+ stroke).
    box = await page.locator("[data-testid=map-circle]").bounding_box()
    per_px = 156_543.03392 * math.cos(math.radians(-3.69581)) / 2**16
    assert box is not None and box["width"] == pytest.approx(240 / per_px, rel=0.15)
    await page.screenshot(path=str(SCREENSHOTS / "map-audit.png"), full_page=False)
    assert page.errors == []
    print(f"fix on the map {shown_after:.2f} s after the POST answered")


async def test_operator_places_the_pin_and_takes_the_suggested_area(
    chromium: Any, served: tuple[str, WebEnv]
) -> None:
    base, env = served
    iid = await env.store.create_incident(caller="081234567890", arrived_at=T0 - 6, trunk="telkom")
    page = await _sign_in(chromium, base, "op1")
    env.live.caller_waits(iid, "081234567890", "medical", T0 - 6)
    env.live.offer(iid, "op1")
    await page.wait_for_selector(
        f"[data-testid=incident-card][data-incident='{iid}']", timeout=10_000
    )
    env.live.answer(iid, "op1", "081234567890", "medical")
    the_map = "[data-testid=incident-map]"
    await page.wait_for_selector(f"{the_map}.leaflet-container[data-tiles=none]", timeout=10_000)
    await page.click(the_map, position={"x": 200, "y": 140})
    await page.wait_for_selector("[data-testid=map-pin]", state="visible", timeout=5_000)
    fixes = await env.store.fixes_for(iid)  # the store keeps the pin (issue 13)
    assert [f.source for f in fixes] == ["operator"]
    assert await page.get_attribute(the_map, "data-source") == "operator"
    assert await page.is_visible("[data-testid=map-use-suggestion]")
    await page.click("[data-testid=map-use-suggestion]")
    assert await page.input_value("[data-testid=kecamatan]") != ""
    assert await page.input_value("[data-testid=kelurahan]") != ""
    await page.screenshot(path=str(SCREENSHOTS / "map-console.png"), full_page=False)
    trail = await env.store.list_audit(target=iid)
    assert any(e.action == "location_pin" and e.actor == "op1" for e in trail)
    assert page.errors == []
