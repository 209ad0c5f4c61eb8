"""web/location.py against the real app and SQLite store: AML receiver, pin, location, EIDO, map."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from callcenter112.web.location import content_security_policy
from location_web_support import location_env
from test_web_support import API_TOKEN, T0, WebEnv, seed_incident

BEARER = {"Authorization": f"Bearer {API_TOKEN}"}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
VECTOR = (
    "v=1&device_number=%2B33611223344&location_latitude=0.85732&location_longitude=-4.26325"
    "&location_time=1604912121000&location_accuracy=10.4&location_source=GPS"
    "&location_certainty=83&hmac=f64c70eb238bb239e00e8ac8c023bf2b5d3c41dd"
)


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[WebEnv]:
    async with location_env(tmp_path, aml={"key": "AML", "allow": ["127.0.0.0/8"]}) as e:
        yield e


async def location(env: WebEnv, incident_id: str) -> dict[str, object]:
    r = await env.client.get(f"/api/v1/incidents/{incident_id}/location", headers=BEARER)
    assert r.status_code == 200, r.text
    body = r.json()
    assert isinstance(body, dict)
    return body


async def test_published_vector_reaches_the_callers_recent_incident(env: WebEnv) -> None:
    seeded = await seed_incident(env.store, env.recordings, at=T0 - 120, caller="+33611223344")
    r = await env.client.post("/api/v1/aml", content=VECTOR, headers=FORM)
    assert r.status_code == 200
    loc = (await location(env, seeded.incident_id))["location"]
    assert isinstance(loc, dict)
    assert (loc["lat"], loc["lon"], loc["radius_m"], loc["source"]) == (
        0.85732,
        -4.26325,
        10.4,
        "aml-https",
    )
    assert loc["valid"] is True and len(loc["fixes"]) == 1  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "body",
    [
        VECTOR.replace("0.85732", "0.85733"),  # tampered: HMAC fails
        VECTOR.split("&hmac=", maxsplit=1)[0],  # unsigned while a key is set
        "\u00ff",
        "x" * 10_000,
    ],
)
async def test_discarded_messages_still_get_200_and_record_nothing(env: WebEnv, body: str) -> None:
    seeded = await seed_incident(env.store, env.recordings, at=T0 - 120, caller="+33611223344")
    r = await env.client.post("/api/v1/aml", content=body.encode(), headers=FORM)
    assert r.status_code == 200
    assert (await location(env, seeded.incident_id))["location"]["fixes"] == []  # type: ignore[index]


async def test_source_outside_the_allow_list_is_discarded(tmp_path: Path) -> None:
    async with location_env(tmp_path, aml={"key": "AML", "allow": ["192.0.2.0/24"]}) as env:
        seeded = await seed_incident(env.store, env.recordings, at=T0 - 120, caller="+33611223344")
        r = await env.client.post("/api/v1/aml", content=VECTOR, headers=FORM)
        assert r.status_code == 200
        assert (await location(env, seeded.incident_id))["location"]["fixes"] == []  # type: ignore[index]


async def test_sms_v1_and_v2_match_the_live_call(env: WebEnv) -> None:
    seeded = await seed_incident(env.store, env.recordings, at=T0 - 5, caller="081234567890")
    env.live.caller_waits(seeded.incident_id, "081234567890", "medical", T0 - 5)
    v1 = 'A"ML=1;lt=-3.69581;lg=+128.18141;rd=50;top=20261128010000;lc=90;pm=G;ml=999'
    v2 = 'A"ML=2;en=112;et=20261128T010005Z;lo=-3.69590,128.18150,12;lc=68;ls=G'
    for text in (v1, v2):
        r = await env.client.post("/api/v1/aml/sms", data={"from": "6281234567890", "body": text})
        assert r.status_code == 200
    loc = (await location(env, seeded.incident_id))["location"]
    assert isinstance(loc, dict)
    fixes = loc["fixes"]
    assert isinstance(fixes, list) and [f["source"] for f in fixes] == ["aml-sms", "aml-sms"]
    assert (loc["lat"], loc["lon"]) == (-3.6959, 128.1815)  # the newer (v2) fix


async def test_unmatched_fix_waits_and_is_claimed(env: WebEnv) -> None:
    r = await env.client.post(
        "/api/v1/aml/sms", data={"from": "+6281299999999", "body": 'A"ML=1;lt=-3.7;lg=128.17;rd=9'}
    )
    assert r.status_code == 200
    # Pending in the store (no incident yet), claimed by the caller's next incident.
    seeded = await seed_incident(env.store, env.recordings, at=T0, caller="081299999999")
    sink = env.app.state.location.sink
    assert await sink.claim(seeded.incident_id, "+6281299999999", now=T0 + 1) == 1
    assert [f.lat for f in await env.store.fixes_for(seeded.incident_id)] == [-3.7]


async def test_operator_pin_is_an_operator_fix_and_audited(env: WebEnv) -> None:
    seeded = await seed_incident(env.store, env.recordings, caller="081234567890")
    url = f"/api/v1/incidents/{seeded.incident_id}/location"
    r = await env.client.post(
        url, json={"lat": -3.6955, "lon": 128.179, "radius_m": 25}, headers=BEARER
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["location"]["source"] == "operator"
    assert body["location"]["radius_m"] == 25.0
    assert body["suggestion"]["kecamatan"] == "Sirimau"
    assert body["suggestion"]["kelurahan"] == "Kelurahan Honipopu"
    trail = await env.store.list_audit(target=seeded.incident_id)
    assert [e.action for e in trail if e.action == "location_pin"] == ["location_pin"]


@pytest.mark.parametrize(
    ("payload", "status"),
    [
        ({"lat": 95, "lon": 128}, 422),
        ({"lon": 128}, 400),
        ({"lat": "north", "lon": 128}, 400),
        ({"lat": True, "lon": 128}, 400),
        ({"lat": -3.7, "lon": 128, "colour": "red"}, 400),
    ],
)
async def test_bad_pins_are_refused_with_a_message(
    env: WebEnv, payload: dict[str, object], status: int
) -> None:
    seeded = await seed_incident(env.store, env.recordings)
    r = await env.client.post(
        f"/api/v1/incidents/{seeded.incident_id}/location", json=payload, headers=BEARER
    )
    assert r.status_code == status and r.json()["error"]


async def test_location_needs_sign_in_and_a_known_incident(env: WebEnv) -> None:
    assert (await env.client.get("/api/v1/incidents/20261128-0001/location")).status_code == 401
    r = await env.client.get("/api/v1/incidents/20990101-0001/location", headers=BEARER)
    assert r.status_code == 404


async def test_eido_export(env: WebEnv) -> None:
    seeded = await seed_incident(env.store, env.recordings, caller="+33611223344", at=T0 - 60)
    await env.client.post("/api/v1/aml", content=VECTOR, headers=FORM)
    r = await env.client.get(f"/api/v1/incidents/{seeded.incident_id}/eido", headers=BEARER)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/emergency.eido+json")
    eido = r.json()
    assert eido["incidentComponent"]["incidentTrackingIdentifier"].endswith(
        f":{seeded.incident_id}:testserver"
    )
    assert eido["locationComponent"][0]["geo"]["coordinates"] == [-4.26325, 0.85732]
    assert eido["callComponent"][0]["callerNumber"] == "+33611223344"


async def test_map_settings_serve_the_shipped_vector_data(env: WebEnv) -> None:
    r = await env.client.get("/api/v1/map", headers=BEARER)
    assert r.status_code == 200
    body = r.json()
    assert body["tile_url"] is None
    names = {f["properties"]["name"] for f in body["areas"]["features"]}
    assert {"Sirimau", "Kelurahan Honipopu", "Desa Latuhalat"} <= names


async def test_tile_server_is_allowed_by_the_page_policy(tmp_path: Path) -> None:
    async with location_env(
        tmp_path, tile_url="https://tile.openstreetmap.org/{z}/{x}/{y}.png"
    ) as env:
        r = await env.client.get("/login")
        csp = r.headers["content-security-policy"]
        assert "img-src 'self' data: https://tile.openstreetmap.org;" in csp
        assert "script-src 'self';" in csp
        assert content_security_policy(env.config, "img-src 'self' data:") == (
            "img-src 'self' data: https://tile.openstreetmap.org"
        )
