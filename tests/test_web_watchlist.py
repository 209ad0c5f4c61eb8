"""The watch list and caller history on the web (issue 12): a real app, a real
SQLite store, httpx through ASGI. Supervisors list and remove (audited with
their names); the system only suggests; withheld numbers are never listable."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from callcenter112.web.api import PATH_PARAMETERS
from callcenter112.web.openapi import openapi_document
from test_web_api import DocumentedAnswers
from test_web_support import API_TOKEN, T0, WebEnv, web_env

HTML = {"Accept": "text/html"}
BEARER = {"Authorization": f"Bearer {API_TOKEN}", "Accept": "application/json"}


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[WebEnv]:
    async with web_env(tmp_path) as e:
        e.client.event_hooks["response"].append(
            DocumentedAnswers(openapi_document(e.app.routes, PATH_PARAMETERS))
        )
        yield e


async def _prank(env: WebEnv, caller: str, at: float) -> str:
    iid = await env.store.create_incident(caller=caller, arrived_at=at, trunk="telkom")
    await env.store.save_disposition(iid, {"disposition": "prank"}, actor="op1", at=at + 30)
    return iid


async def test_three_pranks_suggest_a_supervisor_confirms_then_removes(env: WebEnv) -> None:
    ids = [await _prank(env, "081299990000", T0 - 3600 * h) for h in (5, 3, 1)]
    await _prank(env, "081288880000", T0 - 600)  # one prank: no suggestion
    r = await env.client.get("/api/v1/watchlist", headers=BEARER)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["entries"] == []
    (suggestion,) = body["suggestions"]
    assert suggestion["number"] == "081299990000"
    assert suggestion["pranks_24h"] == 3 and suggestion["incidents"] == list(reversed(ids))
    # Nothing is listed until a person confirms.
    assert not await env.store.is_watch_listed("081299990000", T0)

    r = await env.client.post(
        "/api/v1/watchlist",
        headers=BEARER,
        json={"number": "081299990000", "reason": suggestion["reason"], "expiry": "7d"},
    )
    assert r.status_code == 201, r.text
    assert r.json()["created_by"] == "token:cad"
    assert await env.store.is_watch_listed("081299990000", T0 + 6 * 86400)
    r = await env.client.get("/api/v1/watchlist", headers=BEARER)
    assert [e["number"] for e in r.json()["entries"]] == ["081299990000"]
    assert r.json()["suggestions"] == []  # listed: no longer suggested

    history = (await env.client.get("/api/v1/callers/081299990000/history", headers=BEARER)).json()
    assert history["watch_listed"] is True
    assert history["calls_24h"] == 3 and history["dispositions_24h"] == {"prank": 3}

    r = await env.client.post("/api/v1/watchlist/081299990000/remove", headers=BEARER)
    assert r.status_code == 200, r.text
    assert not await env.store.is_watch_listed("081299990000", T0 + 1)
    r = await env.client.post("/api/v1/watchlist/081299990000/remove", headers=BEARER)
    assert r.status_code == 404
    audit = [e.action for e in await env.store.list_audit(target="081299990000")]
    assert audit == ["watch_list_add", "watch_list_remove"]


async def test_bad_listings_get_clear_answers(env: WebEnv) -> None:
    for body, status, word in (
        ({"number": "anonymous", "reason": "x", "expiry": "24h"}, 422, "anonymous"),
        ({"number": "0812", "reason": "x", "expiry": "1y"}, 422, "expiry"),
        ({"number": "0812", "reason": "x"}, 400, "expiry"),
        ({"number": "0812", "reason": "x", "expiry": "24h", "block": True}, 400, "block"),
    ):
        r = await env.client.post("/api/v1/watchlist", headers=BEARER, json=body)
        assert r.status_code == status, (body, r.text)
        assert word in r.json()["error"]


async def test_operators_cannot_list_numbers_but_see_history(env: WebEnv) -> None:
    csrf = await env.sign_in("op1")
    r = await env.client.post(
        "/api/v1/watchlist",
        headers={"X-CSRF-Token": csrf, "Accept": "application/json"},
        json={"number": "0812", "reason": "x", "expiry": "24h"},
    )
    assert r.status_code == 403
    r = await env.client.get(
        "/api/v1/callers/anonymous/history", headers={"Accept": "application/json"}
    )
    assert r.status_code == 200 and r.json()["calls_30d"] == 0


async def test_the_supervisor_page_lists_and_removes(env: WebEnv) -> None:
    csrf = await env.sign_in("supervisor")
    r = await env.client.post(
        "/watchlist",
        data={"csrf_token": csrf, "number": "081277770000", "reason": "pranks", "expiry": "24h"},
        headers=HTML,
    )
    assert r.status_code == 303
    page = await env.client.get("/watchlist")
    assert page.status_code == 200
    assert 'data-testid="entry" data-number="081277770000"' in page.text
    r = await env.client.post(
        "/watchlist/081277770000/remove", data={"csrf_token": csrf}, headers=HTML
    )
    assert r.status_code == 303
    assert 'data-number="081277770000"' not in (await env.client.get("/watchlist")).text
