"""Browser tests: Debian's chromium driven by Playwright against the real app on loopback.

Fixtures:

* `chromium` — a headless Debian chromium (never `playwright install`). Without
  /usr/bin/chromium the test is skipped, unless CI=true: there a missing
  browser fails the test, so the suite cannot go green by skipping.
* `site` — the real application served by uvicorn on 127.0.0.1 with an
  ephemeral port, over a real SQLite store (seeded with a completed incident
  and a sealed G.711 recording) and the fake live centre.

The web tests' support module lives one directory up.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from site_support import CHROMIUM, CHROMIUM_ARGS, Site

from callcenter112.web import WebServer
from test_web_support import seed_incident, web_env


@pytest.fixture
async def chromium() -> AsyncIterator[object]:
    if not CHROMIUM.exists():
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true but /usr/bin/chromium is missing")
        pytest.skip("/usr/bin/chromium is not installed")
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            await browser.close()


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[Site]:
    async with web_env(tmp_path) as env:
        seeded = await seed_incident(env.store, env.recordings, seconds=6.0, speech=True)
        server = WebServer(env.app, "127.0.0.1", 0)
        task = asyncio.create_task(server.serve_until_cancelled(), name="test-web-server")
        try:
            await asyncio.wait_for(server.ready.wait(), 30)
            yield Site(base=f"http://127.0.0.1:{server.bound_port}", env=env, seeded=seeded)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
