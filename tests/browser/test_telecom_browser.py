"""The telecom pages in a real browser: edit a trunk's allow list, see it applied, roll it back.

Debian's chromium (headless, through Playwright) against the application on
127.0.0.1 with an ephemeral port, over the in-memory telecom seams of
tests/test_telecom_web.py (a real `LiveConfig`, a real store for the audit).
Each test also takes the screenshot of its page for docs/screenshots/.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from site_support import SCREENSHOTS

from callcenter112.web import WebServer
from test_telecom_web import Env, _call_messages, _password, telecom_env

pytestmark = pytest.mark.browser

VIEWPORT = {"width": 1366, "height": 768}


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[str, Env]]:
    async with telecom_env(tmp_path) as env:
        server = WebServer(env.web.app, "127.0.0.1", 0)
        task = asyncio.create_task(server.serve_until_cancelled(), name="test-telecom-web")
        try:
            await asyncio.wait_for(server.ready.wait(), 30)
            yield f"http://127.0.0.1:{server.bound_port}", env
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def _page(chromium: Any, base: str, user: str) -> Any:
    context = await chromium.new_context(viewport=VIEWPORT, locale="id-ID")
    page = await context.new_page()
    page.on("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
    await page.goto(f"{base}/login")
    await page.fill("[data-testid=login-user]", user)
    await page.fill("[data-testid=login-password]", _password(user))
    async with page.expect_navigation():
        await page.click("[data-testid=login-submit]")
    assert "/login" not in page.url
    return page


async def _shot(page: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SCREENSHOTS / name), full_page=True)


async def test_edit_a_trunk_allow_list_and_roll_back(
    chromium: Any, served: tuple[str, Env]
) -> None:
    base, env = served
    page = await _page(chromium, base, "telecom")
    assert page.url.endswith("/telecom/config")
    trunk = page.locator("[data-testid=trunk-edit][data-trunk=telkom]")
    await trunk.locator("summary").click()
    allow = trunk.locator("[data-testid=allow]")

    # A bad address: the key is named, what was typed stays, nothing changes.
    await allow.fill("127.0.0.0/8\n10.0.0.300")
    await trunk.locator("[data-testid=save-trunk]").click()
    problems = trunk.locator("[data-testid=form-problems]")
    await problems.wait_for(state="visible", timeout=10_000)
    assert "trunk[telkom].allow" in (await problems.inner_text())
    assert await allow.input_value() == "127.0.0.0/8\n10.0.0.300"
    assert env.admin.current().trunk[0].allow == ["127.0.0.0/8"]
    await _shot(page, "telecom-config-refused.png")

    await allow.fill("127.0.0.0/8\n198.51.100.7")
    async with page.expect_navigation():
        await trunk.locator("[data-testid=save-trunk]").click()
    assert env.admin.current().trunk[0].allow == ["127.0.0.0/8", "198.51.100.7"]
    assert await page.get_attribute("[data-testid=running-version]", "data-version") == "2"
    summary = await page.inner_text("[data-testid=trunk-edit][data-trunk=telkom] summary")
    assert "198.51.100.7" in summary
    await _shot(page, "telecom-config.png")

    async with page.expect_navigation():
        await page.click("[data-testid=rollback-previous]")
    assert env.admin.current().trunk[0].allow == ["127.0.0.0/8"]
    assert await page.get_attribute("[data-testid=running-version]", "data-version") == "3"
    summary = await page.inner_text("[data-testid=trunk-edit][data-trunk=telkom] summary")
    assert "198.51.100.7" not in summary
    actions = [e.action for e in await env.web.store.list_audit(target="trunk:telkom")]
    assert actions == ["trunk_changed_refused", "trunk_changed"]
    assert len(await env.web.store.list_audit(action="config_rollback")) == 1


async def test_ladder_and_people_pages(chromium: Any, served: tuple[str, Env]) -> None:
    base, env = served
    iid = "20261128-0042"
    for m in _call_messages(iid):
        env.captures.add(iid, m)
    page = await _page(chromium, base, "auditor")
    await page.goto(f"{base}/telecom/incidents/{iid}/sip")
    rows = page.locator("[data-testid=ladder-row]")
    assert await rows.count() == 10
    # Each arrow opens its message's full text (masked).
    await rows.nth(0).click()
    first = page.locator("[data-testid=sip-message]").nth(0)
    text = await first.locator("[data-testid=sip-text]").inner_text(timeout=10_000)
    assert text.startswith("INVITE sip:112@127.0.0.1") and 'response="***"' in text
    await _shot(page, "telecom-ladder.png")

    page = await _page(chromium, base, "supervisor")
    await page.goto(f"{base}/people")
    await page.fill("#op-user", "op9")
    await page.fill("#op-name", "Operator Sembilan")
    async with page.expect_navigation():
        await page.click("[data-testid=add-operator] button[type=submit]")
    password = await page.inner_text("[data-testid=password-value]")
    assert env.admin.current().operator_named("op9") is not None
    assert len(password) == 16
    await _shot(page, "people.png")


async def test_wallboard_alarm_when_a_carrier_stops_answering(
    chromium: Any, served: tuple[str, Env]
) -> None:
    base, env = served
    page = await _page(chromium, base, "supervisor")
    await page.goto(f"{base}/wallboard")
    banner = page.locator("[data-testid=trunk-alarm]")
    assert await banner.is_hidden()
    for _ in range(2):  # no answer twice: the trunk is down
        await env.tools.probe("telkom")
    await page.reload()
    await banner.wait_for(state="visible", timeout=10_000)
    assert "telkom" in await banner.inner_text()
    await _shot(page, "wallboard-trunk-alarm.png")


async def test_admin_uploads_hears_and_applies_a_prompt(
    chromium: Any, served: tuple[str, Env], tmp_path: Path
) -> None:
    from test_telecom_web import _tone_wav

    base, env = served
    target = env.prompts_dir / "id" / "greeting.wav"
    before = target.read_bytes()
    take = tmp_path / "greeting-take2.wav"
    take.write_bytes(_tone_wav(1.0))
    page = await _page(chromium, base, "admin")
    await page.goto(f"{base}/prompts")
    await page.set_input_files("#prompt-file", str(take))
    await page.click("#prompt-upload button[type=submit]")
    preview = page.locator("[data-testid=prompt-preview]")
    await preview.wait_for(state="visible", timeout=20_000)
    # The browser can decode the converted preview (8 kHz PCM WAV).
    duration = await page.eval_on_selector(
        "#preview-audio",
        "a => new Promise(ok => a.readyState >= 1 ? ok(a.duration)"
        " : a.addEventListener('loadedmetadata', () => ok(a.duration)))",
    )
    assert 0.5 < duration < 1.2
    assert target.read_bytes() == before
    await _shot(page, "prompts.png")
    async with page.expect_navigation():
        await page.click("[data-testid=apply-prompt]")
    assert target.read_bytes() != before
    assert await page.is_visible(
        "[data-testid=prompt-row][data-name='id/greeting'] [data-testid=rollback-prompt]"
    )
