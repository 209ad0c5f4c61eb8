"""Disposition keys on the console in a real browser (issue 12).

A key picks the disposition; Shift+P saves "prank" and ends the call in one
action through the live centre's ``end_call`` hook (the fake centre's, here).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from site_support import Site
from test_web_browser import _page, _sign_in, _until_subscribed

pytestmark = pytest.mark.browser


async def test_keys_pick_a_disposition_and_shift_p_disposes_and_ends(
    chromium: Any, site: Site
) -> None:
    env = site.env
    ended: list[tuple[str, str, str]] = []

    async def end_call(incident_id: str, *, actor: str, reason: str) -> None:
        ended.append((incident_id, actor, reason))

    env.live.end_call = end_call  # type: ignore[attr-defined]
    iid = await env.store.create_incident(
        caller="081277770000", arrived_at=env.clock.now - 6, trunk="telkom"
    )
    page = await _page(chromium)
    await _sign_in(page, site, "op1")
    await _until_subscribed(site)
    env.live.caller_waits(iid, "081277770000", "medical", env.clock.now - 6)
    env.live.offer(iid, "op1")
    await page.wait_for_selector(f"[data-testid=incident-card][data-incident='{iid}']")
    env.live.answer(iid, "op1", "081277770000", "medical")
    # The option labels carry their key.
    label = await page.inner_text("#disposition option[value=information]")
    assert label.startswith("[I]")
    await page.locator("body").click(position={"x": 5, "y": 5})
    await page.keyboard.press("i")
    assert await page.eval_on_selector("#disposition", "e => e.value") == "information"
    # Typing in a field never picks a disposition.
    await page.fill("[data-testid=description]", "")
    await page.focus("[data-testid=description]")
    await page.keyboard.type("pg")
    assert await page.eval_on_selector("#disposition", "e => e.value") == "information"
    await page.locator("body").click(position={"x": 5, "y": 5})
    await page.keyboard.press("Shift+P")
    for _ in range(300):
        record = await env.store.get_incident(iid)
        if ended and record is not None and record.incident.disposition is not None:
            break
        await asyncio.sleep(0.02)
    assert ended == [(iid, "op1", "disposed prank")]
    record = await env.store.get_incident(iid)
    assert record is not None and record.incident.disposition is not None
    assert record.incident.disposition.value == "prank"
    assert record.incident.description == "pg"
