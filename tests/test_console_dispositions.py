"""The console's categories, disposition keys and "dispose and end" (issue 12).

Real store (SQLite), real app over ASGI, the fake centre of test_web_support.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from callcenter112.web.console import CallEnder
from test_web_support import WebEnv, seed_incident, web_env

JSON = {"Accept": "application/json"}


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[WebEnv]:
    async with web_env(tmp_path) as e:
        yield e


async def test_card_offers_every_category_and_keyed_dispositions(env: WebEnv) -> None:
    seeded = await seed_incident(env.store, env.recordings, operator="op1")
    await env.sign_in("op1")
    card = (await env.client.get(f"/console/incidents/{seeded.incident_id}")).text
    for category in ("security", "hearse", "utility", "other", "unknown"):
        assert f'<option value="{category}"' in card
    assert "Mobil jenazah" in card
    for key, disposition in (
        ("g", "genuine"),
        ("s", "ghost"),
        ("p", "prank"),
        ("i", "information"),
    ):
        assert f'<option value="{disposition}" data-key="{key}"' in card
    assert 'data-testid="dispose-end-prank"' in card and 'data-testid="dispose-end-ghost"' in card


async def test_hearse_is_saved_and_an_unconfigured_category_is_refused(env: WebEnv) -> None:
    seeded = await seed_incident(env.store, env.recordings, operator="op1")
    csrf = await env.sign_in("op1")
    url = f"/console/incidents/{seeded.incident_id}/disposition"
    r = await env.client.post(
        url,
        json={"category": "hearse", "disposition": "information"},
        headers={**JSON, "X-CSRF-Token": csrf},
    )
    assert r.status_code == 200, r.text
    inc = (await env.store.get_incident(seeded.incident_id)).incident  # type: ignore[union-attr]
    assert (inc.category.value, inc.disposition.value) == ("hearse", "information")  # type: ignore[union-attr]
    r = await env.client.post(
        url, json={"category": "weather"}, headers={**JSON, "X-CSRF-Token": csrf}
    )
    assert r.status_code == 422 and "weather" in r.json()["error"]


async def test_dispose_and_end_needs_the_call_flow_hook(env: WebEnv) -> None:
    """Without ``end_call`` on the centre: 501, and nothing is saved (no half action)."""
    seeded = await seed_incident(env.store, env.recordings, operator="op1")
    csrf = await env.sign_in("op1")
    assert not isinstance(env.live, CallEnder)
    url = f"/console/incidents/{seeded.incident_id}/disposition"
    r = await env.client.post(
        url, data={"csrf_token": csrf, "disposition": "prank", "end_call": "1"}, headers=JSON
    )
    assert r.status_code == 501 and "end_call" in r.json()["error"]
    inc = (await env.store.get_incident(seeded.incident_id)).incident  # type: ignore[union-attr]
    assert inc.disposition is None


async def test_dispose_prank_and_end_in_one_action(env: WebEnv) -> None:
    seeded = await seed_incident(env.store, env.recordings, operator="op1")
    csrf = await env.sign_in("op1")
    ended: list[tuple[str, dict[str, Any]]] = []

    async def end_call(incident_id: str, *, actor: str, reason: str) -> None:
        ended.append((incident_id, {"actor": actor, "reason": reason}))

    env.live.end_call = end_call  # type: ignore[attr-defined]
    assert isinstance(env.live, CallEnder)
    url = f"/console/incidents/{seeded.incident_id}/disposition"
    r = await env.client.post(
        url, data={"csrf_token": csrf, "disposition": "prank", "end_call": "1"}, headers=JSON
    )
    assert r.status_code == 200 and r.json()["ended"] is True
    assert ended == [(seeded.incident_id, {"actor": "op1", "reason": "disposed prank"})]
    inc = (await env.store.get_incident(seeded.incident_id)).incident  # type: ignore[union-attr]
    assert inc.disposition is not None and inc.disposition.value == "prank"
    # A genuine call is never ended from the disposition form.
    r = await env.client.post(
        url, data={"csrf_token": csrf, "disposition": "genuine", "end_call": "1"}, headers=JSON
    )
    assert r.status_code == 422 and len(ended) == 1


async def test_card_shows_history_windows_repeat_flag_and_suggestion(env: WebEnv) -> None:
    """Three prank calls from one number in the last hours, then a fourth call:
    counts per window, the repeat badge (3 in 10 min needs two more recent ones),
    and the watch-list suggestion (for the supervisor to confirm)."""
    from test_web_support import T0

    number = "081299990000"
    earlier = [T0 - 5 * 3600, T0 - 300, T0 - 120, T0 - 40 * 86400]  # the last is > 30 d
    for at in earlier:
        seeded = await seed_incident(env.store, env.recordings, at=at, caller=number)
        await env.store.save_disposition(
            seeded.incident_id, {"disposition": "prank"}, actor="op1", at=at + 70
        )
    now = await seed_incident(env.store, env.recordings, at=T0, caller=number)
    await env.sign_in("op1")
    r = await env.client.get(f"/console/incidents/{now.incident_id}")
    card = r.text
    assert r.status_code == 200, card[-3000:]
    assert '<span data-window="10min">10' in card and ": 2</span>" in card
    assert 'data-window="30d">30' in card and ": 3</span>" in card
    assert 'data-disposition="prank"' in card and 'data-testid="repeat-caller"' in card
    assert 'data-testid="watch-list-suggestion"' in card and "3 prank calls in 24 h" in card
