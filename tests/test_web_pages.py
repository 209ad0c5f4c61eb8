"""The pages: console, wallboard, audit search, telecom; the live streams over a real socket.

Page handlers run over ASGI against a real store and the fake centre. The
server-sent event streams run on a real uvicorn listener on 127.0.0.1 with
an ephemeral port, read by an httpx streaming client; every wait is bounded
and nothing asserts on elapsed time.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from callcenter112.incidents import Incident, Status, TimelineEntry
from callcenter112.web import WebServer, serve_web
from callcenter112.web.areas import AreaError, load_city_areas, parse_city_areas
from callcenter112.web.telecom import MASK, config_lines
from callcenter112.web.timeline import timeline_segments, timeline_svg, timeline_ticks
from callcenter112.web.wallboard import sections_for
from test_web_support import AREAS, T0, FakeClock, WebEnv, seed_incident, web_env


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[WebEnv]:
    async with web_env(tmp_path) as e:
        yield e


# --------------------------------------------------------------------------- city areas


def test_ambon_areas_file() -> None:
    areas = load_city_areas(AREAS)
    assert areas.city == "Kota Ambon"
    assert [k.name for k in areas.kecamatan] == [
        "Nusaniwe",
        "Sirimau",
        "Teluk Ambon Baguala",
        "Teluk Ambon",
        "Leitimur Selatan",
    ]
    # Perda Kota Ambon 2/2006: 20 kelurahan and 30 desa.
    assert sum(len(k.kelurahan) for k in areas.kecamatan) == 20
    assert sum(len(k.desa) for k in areas.kecamatan) == 30
    counts = {k.name: (len(k.desa), len(k.kelurahan)) for k in areas.kecamatan}
    assert counts == {
        "Nusaniwe": (5, 8),
        "Sirimau": (4, 10),
        "Teluk Ambon Baguala": (6, 1),
        "Teluk Ambon": (7, 1),
        "Leitimur Selatan": (8, 0),
    }
    assert areas.check("Sirimau", "Kelurahan Honipopu") is None
    assert areas.check("Nusaniwe", "Desa Nusaniwe") is None  # a desa and a kelurahan share it
    assert areas.check("Nusaniwe", "Kelurahan Nusaniwe") is None
    assert areas.check("Nusaniwe", "Kelurahan Honipopu") is not None
    assert areas.check("", "") is None


@pytest.mark.parametrize(
    ("data", "words"),
    [
        ({}, "city"),
        ({"city": "X"}, "kecamatan"),
        ({"city": "X", "kecamatan": [{"name": ""}]}, "name"),
        ({"city": "X", "kecamatan": [{"name": "A", "kelurahan": "B"}]}, "list"),
        ({"city": "X", "kecamatan": [{"name": "A"}, {"name": "A"}]}, "twice"),
        ({"city": "X", "kecamatan": [{"name": "A", "desa": ["B", "B"]}]}, "twice"),
    ],
)
def test_bad_areas_files(data: dict[str, object], words: str) -> None:
    with pytest.raises(AreaError, match=words):
        parse_city_areas(data)


def test_unreadable_areas_file(tmp_path: Path) -> None:
    with pytest.raises(AreaError, match="cannot read"):
        load_city_areas(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("city = ")
    with pytest.raises(AreaError):
        load_city_areas(bad)


# --------------------------------------------------------------------------- timeline


def _incident(**stamps: float | None) -> Incident:
    return Incident(id="20261128-0001", caller="0812", arrived_at=T0, updated_at=T0, **stamps)  # type: ignore[arg-type]


def test_timeline_of_a_transferred_call() -> None:
    inc = _incident(
        answered_at=T0 + 0.2,
        ivr_done_at=T0 + 5,
        queued_at=T0 + 5,
        offered_at=T0 + 9,
        operator_answered_at=T0 + 12,
        transferred_at=T0 + 70,
        ended_at=T0 + 100,
    )
    segs = timeline_segments(inc, now=T0 + 500)
    assert [(s.phase, round(s.start - T0, 3), round(s.end - T0, 3)) for s in segs] == [
        ("setup", 0, 0.2),
        ("ivr", 0.2, 5),
        ("queue", 5, 9),
        ("ringing", 9, 12),
        ("talk", 12, 70),
        ("transfer", 70, 100),
    ]


def test_timeline_of_an_abandoned_call_and_of_a_call_still_up() -> None:
    abandoned = _incident(answered_at=T0 + 0.2, queued_at=T0 + 4, ended_at=T0 + 30)
    assert [s.phase for s in timeline_segments(abandoned, now=T0 + 99)] == [
        "setup",
        "ivr",
        "queue",
    ]
    assert timeline_segments(abandoned, now=T0 + 99)[-1].end == T0 + 30
    live = _incident(answered_at=T0 + 0.2, ivr_done_at=T0 + 3)
    segs = timeline_segments(live, now=T0 + 20)
    assert segs[-1].phase == "queue" and segs[-1].end == T0 + 20  # queue from ivr_done


def test_timeline_svg_and_ticks() -> None:
    inc = _incident(answered_at=T0 + 1, operator_answered_at=T0 + 6, ended_at=T0 + 10)
    events = [
        TimelineEntry(at=T0, kind="arrived", detail={}),
        TimelineEntry(at=T0 + 6, kind="operator_answered", detail={}),
        TimelineEntry(at=T0 + 900, kind="disposition", detail={}),  # after the call: no tick
    ]
    ticks = timeline_ticks(inc, events, now=T0 + 1000)
    assert [t.kind for t in ticks] == ["arrived", "operator_answered"]
    svg = timeline_svg(timeline_segments(inc, now=T0 + 1000), ticks)
    assert svg.count("<rect") == 3 and "operator_answered +6.0 s" in svg
    assert 'data-phase="talk"' in svg
    assert "<rect" not in timeline_svg([])


# --------------------------------------------------------------------------- console


async def test_console_shows_the_incident_offered_to_me(env: WebEnv) -> None:
    earlier = await seed_incident(env.store, env.recordings, at=T0 - 86_400, caller="081299887766")
    iid = await env.store.create_incident(
        caller="+6281299887766", arrived_at=T0 - 9, trunk="telkom"
    )
    await env.store.update_incident(iid, at=T0 - 5, category=None, event="ivr_done")
    env.live.caller_waits(iid, "081299887766", "unknown", T0 - 9)
    env.live.offer(iid, "op1")
    await env.sign_in("op1")
    page = await env.client.get("/console")
    assert page.status_code == 200
    assert f'data-testid="incident-card" data-incident="{iid}"' in page.text
    assert 'data-testid="incident-caller">081299887766<' in page.text
    # Caller history: the call of yesterday from the same line in another spelling.
    assert f'data-testid="history-row" data-incident="{earlier.incident_id}"' in page.text
    card = await env.client.get(f"/console/incidents/{iid}")
    assert card.status_code == 200 and "disposition-form" in card.text
    assert 'data-testid="incident-wait"' in card.text
    # Kecamatan and villages of Ambon are offered.
    assert '<option value="Leitimur Selatan">' in card.text
    assert 'value="Desa Hutumuri" data-kecamatan="Leitimur Selatan"' in card.text
    state = await env.client.get("/console/state")
    assert state.json() == {"user": "op1", "state": "reserved", "incident_id": iid}


async def test_console_refuses_an_incident_that_is_not_mine(env: WebEnv) -> None:
    seeded = await seed_incident(env.store, env.recordings, operator="op2")
    await env.sign_in("op1")
    r = await env.client.get(f"/console/incidents/{seeded.incident_id}")
    assert r.status_code == 403
    assert (await env.client.get("/console/incidents/20991231-0001")).status_code == 404
    page = await env.client.get(f"/console?incident={seeded.incident_id}")
    assert 'data-testid="no-incident"' in page.text  # not shown, not an error


async def test_console_disposition_form(env: WebEnv) -> None:
    seeded = await seed_incident(env.store, env.recordings, operator="op1")
    csrf = await env.sign_in("op1")
    form = {
        "csrf_token": csrf,
        "location_text": "Pantai Natsepa, dekat warung",
        "kecamatan": "Teluk Ambon Baguala",
        "kelurahan": "Desa Passo",
        "description": "Perahu terbalik, dua orang di air",
        "category": "disaster",
        "disposition": "genuine",
        "agencies_notified": ["ambulans", "damkar"],
    }
    r = await env.client.post(f"/console/incidents/{seeded.incident_id}/disposition", data=form)
    assert (
        r.status_code == 303 and r.headers["location"] == f"/console?incident={seeded.incident_id}"
    )
    inc = (await env.store.get_incident(seeded.incident_id)).incident  # type: ignore[union-attr]
    assert (inc.kecamatan, inc.kelurahan, inc.category.value) == (
        "Teluk Ambon Baguala",
        "Desa Passo",
        "disaster",
    )
    assert inc.agencies_notified == ("ambulans", "damkar")
    # The browser's fetch() asks for JSON; unticking every agency clears them.
    form["agencies_notified"] = []
    r = await env.client.post(
        f"/console/incidents/{seeded.incident_id}/disposition",
        data=form,
        headers={"Accept": "application/json"},
    )
    assert r.json() == {"ok": True, "changed": ["agencies_notified"]}
    bad = dict(form, kelurahan="Desa Soya")  # Soya lies in Sirimau
    r = await env.client.post(
        f"/console/incidents/{seeded.incident_id}/disposition",
        data=bad,
        headers={"Accept": "application/json"},
    )
    assert r.status_code == 422 and "not a kelurahan or desa" in r.json()["error"]


async def test_console_transfer_leave_and_pause(env: WebEnv) -> None:
    seeded = await seed_incident(env.store, env.recordings, operator="op1")
    csrf = await env.sign_in("op1")
    url = f"/console/incidents/{seeded.incident_id}"
    r = await env.client.post(
        f"{url}/transfer", data={"csrf_token": csrf, "agency": "damkar", "mode": "conference"}
    )
    assert r.status_code == 303
    r = await env.client.post(f"{url}/leave", data={"csrf_token": csrf})
    assert r.status_code == 303
    bad = await env.client.post(
        f"{url}/transfer",
        data={"csrf_token": csrf, "agency": "pizza", "mode": "blind"},
        headers={"Accept": "application/json"},
    )
    assert bad.status_code == 422
    bad = await env.client.post(
        f"{url}/transfer",
        data={"csrf_token": csrf, "agency": "damkar", "mode": "teleport"},
        headers={"Accept": "application/json"},
    )
    assert bad.status_code == 422
    r = await env.client.post(
        "/console/status", data={"csrf_token": csrf, "state": "paused", "reason": "makan"}
    )
    assert r.status_code == 303
    assert [a[0] for a in env.live.actions] == [
        "transfer",
        "leave_conference",
        "set_operator_paused",
    ]
    assert env.live.actions[0][1] == {
        "incident_id": seeded.incident_id,
        "agency": "damkar",
        "mode": "conference",
        "actor": "op1",
    }
    bad = await env.client.post(
        "/console/status",
        data={"csrf_token": csrf, "state": "sleeping"},
        headers={"Accept": "application/json"},
    )
    assert bad.status_code == 422


async def test_console_callback_take_and_call(env: WebEnv) -> None:
    iid = await env.store.create_incident(caller="081277776666", arrived_at=T0 - 100)
    cb = await env.store.close_incident(
        iid, status=Status.ABANDONED, at=T0 - 80, ended_at=T0 - 80, reason="hung up"
    )
    csrf = await env.sign_in("op1")
    page = await env.client.get("/console")
    assert f'data-testid="callback-row" data-callback="{cb}"' in page.text
    r = await env.client.post(f"/console/callbacks/{cb}/call", data={"csrf_token": csrf})
    assert r.status_code == 303
    assert env.live.actions == [
        ("start_callback", {"callback_id": cb, "operator": "op1", "actor": "op1"})
    ]
    # The centre takes the task for the operator; then the incident is theirs to handle.
    assert (await env.client.get(f"/console/incidents/{iid}")).status_code == 403
    await env.store.callback_take(cb, actor="op1", at=T0)  # type: ignore[arg-type]
    assert (await env.client.get(f"/console/incidents/{iid}")).status_code == 200
    r = await env.client.post(
        "/console/callbacks/77/take",
        data={"csrf_token": csrf},
        headers={"Accept": "application/json"},
    )
    assert r.status_code == 404


async def test_supervision_needs_a_softphone(env: WebEnv) -> None:
    env.live.answer("20261128-0040", "op1", "0812", "medical")
    csrf = await env.sign_in("admin")  # the admin account has no sip_user
    r = await env.client.post(
        "/wallboard/calls/20261128-0040/supervise",
        data={"csrf_token": csrf, "mode": "listen"},
        headers={"Accept": "application/json"},
    )
    assert r.status_code == 409 and "sip_user" in r.json()["error"]
    assert env.live.actions == []


async def test_admin_without_a_softphone_cannot_pause(env: WebEnv) -> None:
    csrf = await env.sign_in("admin")
    page = await env.client.get("/console")
    assert 'data-state="none"' in page.text
    r = await env.client.post(
        "/console/status",
        data={"csrf_token": csrf, "state": "paused", "reason": "rapat"},
        headers={"Accept": "application/json"},
    )
    assert r.status_code == 409 and "no SIP user" in r.json()["error"]


# --------------------------------------------------------------------------- wallboard


async def test_wallboard_sections(env: WebEnv) -> None:
    await seed_incident(env.store, env.recordings, at=T0 - 600)
    env.live.caller_waits("20261128-0031", "081233334444", "fire", T0 - 25)
    env.live.answer("20261128-0030", "op2", "081255556666", "police")
    await env.sign_in("supervisor")
    page = await env.client.get("/wallboard")
    text = page.text
    assert 'data-testid="wb-waiting" data-total="1"' in text
    assert 'data-testid="waiting-row" data-incident="20261128-0031"' in text
    assert 'id="wait-alert"' in text and 'role="alert" data-testid="wait-alert">' in text  # shown
    assert 'class="card panel alert" id="wb-waiting"' in text
    assert 'data-testid="operator-row" data-user="op2" data-state="on_call"' in text
    assert 'data-testid="call-row" data-incident="20261128-0030" data-phase="talking"' in text
    assert 'data-testid="sla-10" data-ratio="1.0000"' in text
    assert 'data-testid="supervise-listen"' in text


async def test_wallboard_no_alert_under_the_threshold(env: WebEnv) -> None:
    env.live.caller_waits("20261128-0031", "0812", "fire", T0 - 5)
    await env.sign_in("supervisor")
    text = (await env.client.get("/wallboard")).text
    assert 'data-testid="wait-alert" hidden' in text


async def test_wallboard_callbacks_and_supervision(env: WebEnv) -> None:
    iid = await env.store.create_incident(caller="081277776666", arrived_at=T0 - 100)
    cb = await env.store.close_incident(
        iid, status=Status.ABANDONED, at=T0 - 80, ended_at=T0 - 80, reason="hung up"
    )
    await env.store.callback_take(cb, actor="op1", at=T0 - 70)  # type: ignore[arg-type]
    csrf = await env.sign_in("supervisor")
    base = f"/wallboard/callbacks/{cb}"
    assert (await env.client.post(f"{base}/take", data={"csrf_token": csrf})).status_code == 303
    r = await env.client.post(f"{base}/attempt", data={"csrf_token": csrf, "result": "busy"})
    assert r.status_code == 303
    r = await env.client.post(f"{base}/close", data={"csrf_token": csrf, "outcome": "handled"})
    assert r.status_code == 303
    [done] = await env.store.list_callbacks(open_only=False)
    assert (done.taken_by, done.closed_by, done.outcome) == ("supervisor", "supervisor", "handled")
    assert [a.result.value for a in done.attempts] == ["busy"]
    bad = await env.client.post(
        f"{base}/attempt",
        data={"csrf_token": csrf, "result": "maybe"},
        headers={"Accept": "application/json"},
    )
    assert bad.status_code == 422
    env.live.answer("20261128-0040", "op1", "0812", "medical")
    r = await env.client.post(
        "/wallboard/calls/20261128-0040/supervise", data={"csrf_token": csrf, "mode": "whisper"}
    )
    assert r.status_code == 303
    r = await env.client.post(
        "/wallboard/calls/20261128-0040/unsupervise", data={"csrf_token": csrf}
    )
    assert r.status_code == 303
    # The centre is told the supervisor's account name; it rings their softphone and audits.
    assert env.live.actions == [
        (
            "supervise",
            {
                "incident_id": "20261128-0040",
                "supervisor": "supervisor",
                "mode": "whisper",
                "actor": "supervisor",
            },
        ),
        (
            "stop_supervision",
            {"incident_id": "20261128-0040", "supervisor": "supervisor", "actor": "supervisor"},
        ),
    ]
    bad = await env.client.post(
        "/wallboard/calls/20261128-0040/supervise",
        data={"csrf_token": csrf, "mode": "shout"},
        headers={"Accept": "application/json"},
    )
    assert bad.status_code == 422


def test_sections_touched_by_events() -> None:
    from callcenter112.live import LiveEvent

    def ev(kind: str) -> LiveEvent:
        return LiveEvent(kind=kind, at=T0)

    assert sections_for([ev("queue_changed")]) == {"waiting", "calls"}
    assert sections_for([ev("callback_changed"), ev("operator_changed")]) == {
        "callbacks",
        "operators",
    }
    assert sections_for([ev("registration_changed")]) == {"operators"}
    assert sections_for([ev("something_new")]) == {
        "waiting",
        "operators",
        "calls",
        "sla",
        "callbacks",
    }
    assert sections_for([]) == set()


# --------------------------------------------------------------------------- audit search


async def test_audit_search(env: WebEnv) -> None:
    a = await seed_incident(env.store, env.recordings, at=T0 - 3600, caller="081200000001")
    b = await seed_incident(
        env.store, env.recordings, at=T0 - 60, caller="081200000002", operator="op2"
    )
    await env.sign_in("auditor")

    async def found(query: str) -> list[str]:
        r = await env.client.get(f"/audit?{query}")
        assert r.status_code == 200, r.text
        return [
            part.split('"')[0]
            for part in r.text.split('data-testid="result-row" data-incident="')[1:]
        ]

    assert await found("") == [b.incident_id, a.incident_id]
    assert await found("caller=%2B6281200000001") == [a.incident_id]
    assert await found("operator=op2") == [b.incident_id]
    assert await found("since=2026-11-28T09:30") == [b.incident_id]  # local time, WIT
    assert await found("until=2026-11-28T09:30") == [a.incident_id]
    assert await found("since=2026-11-28&until=2026-11-28") == [b.incident_id, a.incident_id]
    assert await found("status=completed&category=medical&disposition=") == [
        b.incident_id,
        a.incident_id,
    ]
    bad = await env.client.get("/audit?since=kemarin&category=ufo")
    assert bad.status_code == 400
    assert bad.text.count('data-testid="search-problem"') == 2


# --------------------------------------------------------------------------- telecom


async def test_telecom_page_hides_secrets(env: WebEnv) -> None:
    await env.sign_in("supervisor")
    page = await env.client.get("/telecom")
    assert page.status_code == 200
    assert 'data-testid="trunk-row" data-trunk="telkom"' in page.text
    assert 'data-testid="registration-row" data-user="op1" data-reachable="yes"' in page.text
    assert 'data-in-use="4" data-capacity="500"' in page.text
    for secret in ("ambon-op1", "ambon-op2", "super-visor-1", "audit-or-1", "admin-admin-1"):
        assert secret not in page.text
    lines = dict(config_lines(env.config))
    assert lines["operator[0].password"] == MASK
    assert lines["user[0].password"] == MASK and lines["user[0].password_hash"] == ""
    assert lines["sip.listen"] == "0.0.0.0:5060"
    assert lines["trunk[0].allow"] == "['127.0.0.0/8']"


# --------------------------------------------------------------------------- live streams


class SseReader:
    """Reads server-sent events from a streaming response, one event at a time."""

    def __init__(self, response: httpx.Response) -> None:
        self._lines = response.aiter_lines()

    async def next(self) -> tuple[str, str]:
        event, data = "message", []
        async for line in self._lines:
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].removeprefix(" "))
            elif line == "" and data:
                return event, "\n".join(data)
        raise EOFError("stream ended")

    async def until(self, event: str, contains: str = "", limit: int = 50) -> str:
        for _ in range(limit):
            name, data = await asyncio.wait_for(self.next(), 30)
            if name == event and contains in data:
                return data
        raise AssertionError(f"no {event} event containing {contains!r}")


@contextlib.asynccontextmanager
async def running(env: WebEnv) -> AsyncIterator[tuple[str, WebServer]]:
    server = WebServer(env.app, "127.0.0.1", 0)
    task = asyncio.create_task(server.serve_until_cancelled())
    await asyncio.wait_for(server.ready.wait(), 30)
    try:
        yield f"http://127.0.0.1:{server.bound_port}", server
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _http_client(env: WebEnv, base: str) -> httpx.AsyncClient:
    """A client on the real socket carrying the session signed in over ASGI."""
    session = env.client.cookies.get("cc112_session")
    assert session
    return httpx.AsyncClient(base_url=base, cookies={"cc112_session": session}, timeout=30)


async def test_wallboard_stream_shows_a_new_waiting_caller(env: WebEnv) -> None:
    await env.sign_in("supervisor")
    async with running(env) as (base, _server):
        client = await _http_client(env, base)
        async with client, client.stream("GET", "/wallboard/events") as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            reader = SseReader(response)
            first = await reader.until("waiting")
            assert 'data-total="0"' in first
            for _ in range(100):  # the stream subscribes right after it starts
                if env.live.subscribers:
                    break
                await asyncio.sleep(0.01)
            env.live.caller_waits("20261128-0077", "081311110000", "police", T0 - 2)
            html = await reader.until("waiting", "20261128-0077")
            assert 'data-testid="waiting-row" data-incident="20261128-0077"' in html
            env.live.publish("callback_changed")
            assert "Daftar telepon balik" in await reader.until("callbacks")
            env.live.stop()  # the centre stops: the stream says bye and ends
            await reader.until("bye")
    assert env.live.subscribers == 0


async def test_wallboard_shows_the_low_disk_alarm_while_it_is_raised(env: WebEnv) -> None:
    """Issue 11: the centre's live `low_disk` event raises a red banner on the
    board and clears it; a board opened while the alarm is up shows it at once."""
    await env.sign_in("supervisor")
    assert 'data-testid="low-disk"' not in (await env.client.get("/wallboard")).text
    async with running(env) as (base, _server):
        client = await _http_client(env, base)
        async with client, client.stream("GET", "/wallboard/events") as response:
            reader = SseReader(response)
            assert 'data-testid="low-disk"' not in await reader.until("waiting")
            for _ in range(100):
                if env.live.subscribers:
                    break
                await asyncio.sleep(0.01)
            env.live.disk_alarm("recordings", low=True)
            html = await reader.until("waiting", 'data-testid="low-disk"')
            assert 'class="alert-banner" role="alert" data-testid="low-disk"' in html
            assert 'data-folders="recordings"' in html and "Disk almost full" in html
            page = (await env.client.get("/wallboard")).text
            assert 'data-testid="low-disk" data-folders="recordings"' in page
            env.live.disk_alarm("recordings", low=False)
            for _ in range(20):  # the cleared alarm's re-render drops the banner
                html = await reader.until("waiting")
                if 'data-testid="low-disk"' not in html:
                    break
            else:
                raise AssertionError("the low-disk banner stayed after the alarm cleared")
    assert 'data-testid="low-disk"' not in (await env.client.get("/wallboard")).text


async def test_console_stream_pops_the_offered_incident(env: WebEnv) -> None:
    await env.sign_in("op1")
    async with running(env) as (base, _server):
        client = await _http_client(env, base)
        async with client, client.stream("GET", "/console/events") as response:
            reader = SseReader(response)
            status = await reader.until("status")
            assert 'data-state="available"' in status
            for _ in range(100):
                if env.live.subscribers:
                    break
                await asyncio.sleep(0.01)
            env.live.caller_waits("20261128-0088", "0812", "medical", T0)
            env.live.offer("20261128-0088", "op2")  # someone else's: nothing for op1
            env.live.offer("20261128-0088", "op1")
            data = await reader.until("incident")
            assert '"incident_id":"20261128-0088"' in data and '"kind":"call_offered"' in data
            env.live.publish("call_offer_cancelled", operator="op1", incident_id="20261128-0088")
            assert "20261128-0088" in await reader.until("incident_withdrawn")
            env.live.publish("call_ended", operator="op1", incident_id="20261128-0088")
            assert "20261128-0088" in await reader.until("incident_ended")


async def test_stream_ends_when_signed_out(env: WebEnv) -> None:
    await env.sign_in("supervisor")
    async with running(env) as (base, _server):
        client = await _http_client(env, base)
        async with client, client.stream("GET", "/telecom/events") as response:
            reader = SseReader(response)
            assert "telkom" in await reader.until("live")
            env.app.state.web.sessions._sessions.clear()
            env.live.publish("operator_changed", operator="op1")
            await reader.until("signed_out")


async def test_server_stop_ends_open_streams(env: WebEnv) -> None:
    await env.sign_in("supervisor")
    server = WebServer(env.app, "127.0.0.1", 0)
    task = asyncio.create_task(server.serve_until_cancelled())
    await asyncio.wait_for(server.ready.wait(), 30)
    client = await _http_client(env, f"http://127.0.0.1:{server.bound_port}")
    async with client, client.stream("GET", "/wallboard/events") as response:
        reader = SseReader(response)
        await reader.until("waiting")
        task.cancel()
        await reader.until("bye")
        with pytest.raises(asyncio.CancelledError):
            await task
    assert env.app.state.web.streams == set()
    assert env.live.subscribers == 0


async def test_serve_web_announces_start_and_stops_on_cancel(env: WebEnv) -> None:
    before = (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM))
    started = asyncio.Event()
    task = asyncio.create_task(serve_web(env.app, "127.0.0.1", 0, started=started))
    await asyncio.wait_for(started.wait(), 30)
    # The application owns SIGINT/SIGTERM: uvicorn must not have taken them.
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_port_in_use_is_an_error_not_an_exit(env: WebEnv) -> None:
    async with running(env) as (_base, server):
        second = WebServer(env.app, "127.0.0.1", server.bound_port)
        with pytest.raises(OSError, match="cannot listen"):
            await second.serve_until_cancelled()
        with pytest.raises(OSError, match="cannot listen"):
            await serve_web(env.app, "127.0.0.1", server.bound_port)


def test_fake_clock() -> None:
    clock = FakeClock()
    clock.advance(5)
    assert clock() == T0 + 5
