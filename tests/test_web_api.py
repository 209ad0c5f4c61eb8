"""The JSON API: every endpoint, with good and bad input, and its OpenAPI document.

Runs the real application over ASGI against a real SQLite store; the live
centre is the fake of `test_web_support`. Every refusal must be a 4xx with a
JSON ``{"error": ...}`` that names the problem.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator
from starlette.routing import Route

from callcenter112.config import CATEGORY_ID, DISPOSITIONS
from callcenter112.incidents import Status
from callcenter112.live import ControlError
from callcenter112.web.api import PATH_PARAMETERS
from callcenter112.web.openapi import openapi_document
from location_web_support import location_env
from test_location_web import FORM, VECTOR
from test_web_support import API_TOKEN, T0, WebEnv, seed_incident, web_env

BEARER = {"Authorization": f"Bearer {API_TOKEN}"}


class DocumentedAnswers:
    """Checks every /api/ answer a test receives against the generated document:
    a 2xx must validate against the documented schema (which forbids keys it does
    not name), a 4xx must be a documented refusal with the Error schema."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self.routes = [
            (Route(path, lambda r: None), ops) for path, ops in document["paths"].items()
        ]
        self.checked: set[tuple[str, str, int]] = set()

    def _schema(self, ref: dict[str, Any]) -> Draft202012Validator:
        schema = {**ref, "components": self.document["components"]}
        return Draft202012Validator(schema)

    async def __call__(self, response: httpx.Response) -> None:
        request = response.request
        path = request.url.path
        if not path.startswith("/api/") or path.endswith("/openapi.json"):
            return
        await response.aread()
        scope = {"type": "http", "path": path, "method": request.method}
        matches = [(r, ops) for r, ops in self.routes if r.matches(scope)[0].name != "NONE"]
        if not matches:
            assert response.status_code == 404, f"{request.method} {path}: no documented path"
            return
        assert len(matches) == 1, f"{request.method} {path}: {len(matches)} documented paths"
        route, ops = matches[0]
        op = ops.get(request.method.lower())
        if op is None:
            assert response.status_code == 405, (request.method, path)
            return
        status = str(response.status_code)
        assert status in op["responses"], f"{request.method} {route.path}: {status} undocumented"
        answer = op["responses"][status]
        if "$ref" in answer:  # a refusal
            schema = {"$ref": "#/components/schemas/Error"}
        elif "content" not in answer:  # documented as carrying nothing
            assert response.content == b"", f"{request.method} {route.path}: a body"
            self.checked.add((route.path, request.method.lower(), response.status_code))
            return
        else:
            (media, content), *_ = answer["content"].items()
            assert response.headers["content-type"].startswith(media), (route.path, media)
            schema = content["schema"]
        errors = sorted(
            self._schema(schema).iter_errors(response.json()), key=lambda e: list(e.path)
        )
        assert not errors, f"{request.method} {route.path} {status}: {errors[0].message}"
        self.checked.add((route.path, request.method.lower(), response.status_code))


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[WebEnv]:
    async with web_env(tmp_path) as e:
        e.client.event_hooks["response"].append(
            DocumentedAnswers(openapi_document(e.app.routes, PATH_PARAMETERS))
        )
        yield e


def _error(r: Any, status: int) -> str:
    assert r.status_code == status, (r.status_code, r.text)
    body = r.json()
    assert set(body) == {"error"} and body["error"]
    return str(body["error"])


async def _abandoned(
    env: WebEnv, caller: str = "081311112222", at: float = T0 - 300
) -> tuple[str, int]:
    iid = await env.store.create_incident(caller=caller, arrived_at=at, trunk="telkom")
    callback_id = await env.store.close_incident(
        iid, status=Status.ABANDONED, at=at + 20, ended_at=at + 20, reason="caller hung up"
    )
    assert callback_id is not None
    return iid, callback_id


def _state(env: WebEnv, user: str) -> str:
    return env.live.operators[user].state


# --------------------------------------------------------------------------- OpenAPI


async def test_openapi_document_is_openapi_3(env: WebEnv) -> None:
    document = openapi_document(env.app.routes, PATH_PARAMETERS)
    assert document["openapi"].startswith("3.")
    json.dumps(document)  # serialisable as is
    Draft202012Validator.check_schema(
        {"$defs": document["components"]["schemas"]}
    )  # every component is a valid JSON Schema
    for path, methods in document["paths"].items():
        for method, op in methods.items():
            assert op["summary"], (path, method)
            assert "responses" in op and any(c.startswith("2") for c in op["responses"])
    refs = set(json.dumps(document).split('"$ref": "')[1:])
    for ref in refs:
        name = ref.split('"')[0].rsplit("/", 1)[1]
        assert name in document["components"]["schemas"] or name == "Error", ref


async def test_openapi_matches_the_routes_both_ways(env: WebEnv) -> None:
    document = openapi_document(env.app.routes, PATH_PARAMETERS)
    served = await env.client.get("/api/v1/openapi.json")
    assert served.status_code == 200 and served.json() == document
    routes: set[tuple[str, str]] = set()
    for route in env.app.routes:
        if isinstance(route, Route) and route.path.startswith("/api/"):
            for method in route.methods or ():
                if method != "HEAD":
                    routes.add((route.path, method.lower()))
    documented = {(p, m) for p, ops in document["paths"].items() for m in ops}
    assert documented == routes
    # with the telecom trunk health and SIP pcap, the watch list (issue 12) and
    # /api/v1/cluster (issues 14, 15)
    assert len(routes) == 26
    # Every path parameter in a template is declared.
    for path, ops in document["paths"].items():
        names = {part[1:-1] for part in path.split("/") if part.startswith("{")}
        for op in ops.values():
            declared = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert declared == names, path


async def test_openapi_documents_what_the_handlers_accept(env: WebEnv) -> None:
    document = openapi_document(env.app.routes, PATH_PARAMETERS)
    incidents = document["paths"]["/api/v1/incidents"]["get"]
    params = {p["name"]: p for p in incidents["parameters"]}
    assert set(params) == {
        "since", "until", "caller", "category", "status", "operator", "disposition", "limit",
        "offset",
    }  # fmt: skip
    # Categories are the centre's own ([[category]]): their form is documented.
    assert params["category"]["schema"]["pattern"] == CATEGORY_ID
    assert params["disposition"]["schema"]["enum"] == list(DISPOSITIONS)
    assert params["limit"]["schema"] == {"type": "integer", "minimum": 1, "maximum": 500}
    # A query parameter the document does not name is refused by the handler.
    r = await env.client.get("/api/v1/incidents?colour=red", headers=BEARER)
    assert "colour" in _error(r, 400)
    body = document["components"]["schemas"]["Disposition"]
    assert body["additionalProperties"] is False


def test_an_undocumented_api_route_cannot_be_published() -> None:
    async def endpoint(request: Any) -> None:
        return None

    with pytest.raises(LookupError, match="/api/v1/secret"):
        openapi_document([Route("/api/v1/secret", endpoint)], PATH_PARAMETERS)


async def test_every_documented_answer_was_seen_valid(tmp_path: Path) -> None:
    """The answers of a tour of the API validate against the document (the
    `env` fixture checks every test's answers the same way)."""
    async with location_env(tmp_path, aml={"key": "AML", "allow": ["127.0.0.0/8"]}) as e:
        checker = DocumentedAnswers(openapi_document(e.app.routes, PATH_PARAMETERS))
        e.client.event_hooks["response"].append(checker)
        rec = await seed_incident(e.store, e.recordings, at=T0 - 600, caller="+33611223344")
        aml = await e.client.post("/api/v1/aml", content=VECTOR, headers=FORM)
        assert aml.status_code == 200
        sms = await e.client.post("/api/v1/aml/sms", content="from=1&body=x", headers=FORM)
        assert sms.status_code == 200
        _, callback_id = await _abandoned(e)
        e.live.caller_waits("20261128-0050", "0812", "fire", T0 - 42)
        e.live.answer("20261128-0051", "op2", "0813", "medical")
        get = [
            "/api/v1/incidents",
            f"/api/v1/incidents/{rec.incident_id}",
            "/api/v1/queue",
            "/api/v1/operators",
            "/api/v1/callbacks?status=all",
            "/api/v1/sla",
            f"/api/v1/incidents/{rec.incident_id}/location",
            f"/api/v1/incidents/{rec.incident_id}/eido",
            "/api/v1/map",
        ]
        for url in get:
            assert (await e.client.get(url, headers=BEARER)).status_code == 200, url
        cb = f"/api/v1/callbacks/{callback_id}"
        for url, body in (
            (f"/api/v1/incidents/{rec.incident_id}/disposition", {"disposition": "prank"}),
            ("/api/v1/operators/op1/pause", {"reason": "break"}),
            ("/api/v1/operators/op1/unpause", {}),
            (f"{cb}/take", {}),
            (f"{cb}/attempts", {"result": "no_answer"}),
            (f"{cb}/close", {"outcome": "handled"}),
            (f"/api/v1/incidents/{rec.incident_id}/location", {"lat": -3.7, "lon": 128.2}),
        ):
            r = await e.client.post(url, json=body, headers=BEARER)
            assert r.status_code in (200, 201), (url, r.text)
        await e.client.get("/api/v1/incidents/nope", headers=BEARER)
        seen = {(p, m) for p, m, status in checker.checked if status < 300}
        assert len(seen) == 18, sorted(seen)
        location = await e.client.get(
            f"/api/v1/incidents/{rec.incident_id}/location", headers=BEARER
        )
        assert len(location.json()["location"]["fixes"]) == 2  # the AML fix and the pin
        assert ("/api/v1/incidents/{incident_id}", "get", 404) in checker.checked


# --------------------------------------------------------------------------- incidents


async def test_incident_list_filters_and_pages(env: WebEnv) -> None:
    a = await seed_incident(env.store, env.recordings, at=T0 - 3600, caller="081234567890")
    b = await seed_incident(
        env.store, env.recordings, at=T0 - 1800, caller="+62 811 0000 111", operator="op2"
    )
    c, _ = await _abandoned(env, at=T0 - 60)
    await env.store.save_disposition(b.incident_id, {"disposition": "prank"}, actor="op2", at=T0)
    r = await env.client.get("/api/v1/incidents", headers=BEARER)
    assert r.status_code == 200
    body = r.json()
    assert body["total"] == 3 and [i["id"] for i in body["incidents"]] == [
        c,
        b.incident_id,
        a.incident_id,
    ]
    assert "events" not in body["incidents"][0]  # list rows are bare incidents

    async def ids(query: str) -> list[str]:
        r = await env.client.get(f"/api/v1/incidents?{query}", headers=BEARER)
        assert r.status_code == 200, r.text
        return [i["id"] for i in r.json()["incidents"]]

    assert await ids("caller=08110000111") == [b.incident_id]
    assert await ids("caller=%2B628110000111") == [b.incident_id]
    assert await ids("status=abandoned") == [c]
    assert await ids("operator=op2") == [b.incident_id]
    assert await ids("disposition=prank") == [b.incident_id]
    assert await ids("category=medical") == [b.incident_id, a.incident_id]
    since = "2026-11-28T00:15:00Z"  # 09:15 WIT: after a (09:00), before b (09:30)
    assert await ids(f"since={since}") == [c, b.incident_id]
    assert await ids(f"until={since}") == [a.incident_id]
    assert await ids("limit=1&offset=1") == [b.incident_id]
    paged = await env.client.get("/api/v1/incidents?limit=1", headers=BEARER)
    assert paged.json()["total"] == 3 and paged.json()["limit"] == 1


@pytest.mark.parametrize(
    ("query", "status", "words"),
    [
        ("colour=red", 400, "unknown query parameter"),
        ("limit=abc", 400, "whole number"),
        ("limit=0", 422, "1-500"),
        ("limit=501", 422, "1-500"),
        ("offset=-1", 400, "whole number"),
        ("category=ambulance", 422, "not one of"),
        ("status=open", 422, "not one of"),
        ("disposition=joke", 422, "not one of"),
        ("since=yesterday", 400, "not a date"),
        ("limit=1&limit=2", 400, "more than once"),
    ],
)
async def test_incident_list_bad_input(env: WebEnv, query: str, status: int, words: str) -> None:
    r = await env.client.get(f"/api/v1/incidents?{query}", headers=BEARER)
    assert words in _error(r, status)


async def test_get_incident_and_unknown_id(env: WebEnv) -> None:
    seeded = await seed_incident(env.store, env.recordings)
    r = await env.client.get(f"/api/v1/incidents/{seeded.incident_id}", headers=BEARER)
    assert r.status_code == 200
    body = r.json()
    assert body["id"] == seeded.incident_id and body["sla_s"] == 7.5
    assert body["recordings"][0]["channels"] == 2 and body["recordings"][0]["sha256"]
    assert body["events"][0]["kind"] == "arrived"
    assert "no incident" in _error(
        await env.client.get("/api/v1/incidents/20991231-9999", headers=BEARER), 404
    )
    assert _error(await env.client.get("/api/v1/nothing-here", headers=BEARER), 404)


async def test_incident_reads_need_the_right_role(env: WebEnv) -> None:
    await env.sign_in("op1")
    assert "may not" in _error(await env.client.get("/api/v1/incidents"), 403)
    env.sign_out_locally()
    await env.sign_in("auditor")
    assert (await env.client.get("/api/v1/incidents")).status_code == 200
    assert "may not" in _error(await env.client.get("/api/v1/queue"), 403)


# --------------------------------------------------------------------------- disposition


async def test_disposition_by_the_operator_who_answered(env: WebEnv) -> None:
    seeded = await seed_incident(env.store, env.recordings, operator="op1")
    csrf = await env.sign_in("op1")
    r = await env.client.post(
        f"/api/v1/incidents/{seeded.incident_id}/disposition",
        headers={"X-CSRF-Token": csrf},
        json={
            "disposition": "genuine",
            "category": "fire",
            "location_text": "Jl. Pattimura, depan Gereja Maranatha",
            "kecamatan": "Sirimau",
            "kelurahan": "Kelurahan Honipopu",
            "agencies_notified": ["damkar"],
        },
    )
    assert r.status_code == 200, r.text
    changed = r.json()["changed"]
    assert changed["disposition"] == [None, "genuine"]
    assert changed["category"] == ["medical", "fire"]
    assert changed["agencies_notified"] == [[], ["damkar"]]
    record = await env.store.get_incident(seeded.incident_id)
    assert record is not None and record.incident.kelurahan == "Kelurahan Honipopu"
    audit = await env.store.list_audit(action="disposition_change", target=seeded.incident_id)
    assert audit[0].actor == "op1"
    # Only the fields sent change.
    r = await env.client.post(
        f"/api/v1/incidents/{seeded.incident_id}/disposition",
        headers={"X-CSRF-Token": csrf},
        json={"description": "kebakaran rumah"},
    )
    assert set(r.json()["changed"]) == {"description"}


async def test_disposition_of_someone_elses_incident_is_refused(env: WebEnv) -> None:
    seeded = await seed_incident(env.store, env.recordings, operator="op2")
    csrf = await env.sign_in("op1")
    r = await env.client.post(
        f"/api/v1/incidents/{seeded.incident_id}/disposition",
        headers={"X-CSRF-Token": csrf},
        json={"disposition": "prank"},
    )
    assert "not yours" in _error(r, 403)
    # ...unless it is being offered to op1 right now.
    env.live.caller_waits(seeded.incident_id, "0812", "medical", T0)
    env.live.offer(seeded.incident_id, "op1")
    r = await env.client.post(
        f"/api/v1/incidents/{seeded.incident_id}/disposition",
        headers={"X-CSRF-Token": csrf},
        json={"disposition": "prank"},
    )
    assert r.status_code == 200


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"location_text": 5}, 400, "expected a string"),
        ({"agencies_notified": "damkar"}, 400, "list of strings"),
        ({"agencies_notified": [1]}, 400, "list of strings"),
        ({"colour": "red"}, 400, "unknown field"),
        ({"category": "ambulance"}, 422, "not one of"),
        ({"disposition": "maybe"}, 422, "not one of"),
        ({"kecamatan": "Jakarta Pusat"}, 422, "not a kecamatan"),
        ({"kecamatan": "Nusaniwe", "kelurahan": "Kelurahan Honipopu"}, 422, "not a kelurahan"),
        ({"kelurahan": "Desa Soya"}, 422, "without its kecamatan"),
        ({"agencies_notified": ["pemadam"]}, 422, "no agency"),
        ({"description": "x" * 10_001}, 400, "longer than"),
        ({}, 200, ""),
    ],
)
async def test_disposition_bad_input(
    env: WebEnv, body: dict[str, object], status: int, words: str
) -> None:
    seeded = await seed_incident(env.store, env.recordings)
    r = await env.client.post(
        f"/api/v1/incidents/{seeded.incident_id}/disposition", headers=BEARER, json=body
    )
    if status == 200:
        assert r.status_code == 200 and r.json()["changed"] == {}
    else:
        assert words in _error(r, status)


async def test_request_body_limits_and_formats(env: WebEnv) -> None:
    seeded = await seed_incident(env.store, env.recordings)
    url = f"/api/v1/incidents/{seeded.incident_id}/disposition"
    big = json.dumps({"description": "x" * 70_000}).encode()
    assert "larger than" in _error(
        await env.client.post(
            url, headers={**BEARER, "Content-Type": "application/json"}, content=big
        ),
        413,
    )

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it arrives
        for _ in range(100):
            yield b"x" * 1024

    r = await env.client.post(
        url, headers={**BEARER, "Content-Type": "application/json"}, content=chunks()
    )
    assert "larger than" in _error(r, 413)
    bad = await env.client.post(
        url, headers={**BEARER, "Content-Type": "application/json"}, content=b'{"description": '
    )
    assert "not valid JSON" in _error(bad, 400)
    arr = await env.client.post(url, headers=BEARER, json=["genuine"])
    assert "JSON object" in _error(arr, 400)
    deep = await env.client.post(
        url, headers={**BEARER, "Content-Type": "application/json"}, content=b"[" * 50_000
    )
    assert _error(deep, 400)
    xml = await env.client.post(
        url, headers={**BEARER, "Content-Type": "application/xml"}, content=b"<a/>"
    )
    assert "application/json" in _error(xml, 415)
    empty = await env.client.post(url, headers=BEARER)
    assert "JSON object" in _error(empty, 400)
    missing = await env.client.post(
        "/api/v1/incidents/20991231-0001/disposition", headers=BEARER, json={}
    )
    assert _error(missing, 404)


async def test_api_write_without_csrf_header_is_refused(env: WebEnv) -> None:
    seeded = await seed_incident(env.store, env.recordings)
    await env.sign_in("supervisor")
    r = await env.client.post(
        f"/api/v1/incidents/{seeded.incident_id}/disposition", json={"disposition": "test"}
    )
    assert "CSRF" in _error(r, 403)
    assert await env.store.list_audit(action="disposition_change") == []


# --------------------------------------------------------------------------- queue, operators


async def test_queue_snapshot(env: WebEnv) -> None:
    env.live.caller_waits("20261128-0007", "081200000007", "police", T0 - 12)
    env.live.caller_waits("20261128-0008", "081200000008", "fire", T0 - 3)
    env.live.answer("20261128-0006", "op2", "081200000006", "medical")
    r = await env.client.get("/api/v1/queue", headers=BEARER)
    body = r.json()
    assert [w["incident_id"] for w in body["waiting"]] == ["20261128-0007", "20261128-0008"]
    assert body["waiting"][0]["wait_s"] == 12.0 and body["waiting"][0]["position"] == 1
    assert body["calls"][0]["operator"] == "op2" and body["calls"][0]["phase"] == "talking"
    assert body["max_calls"] == 500
    assert "unknown query" in _error(await env.client.get("/api/v1/queue?x=1", headers=BEARER), 400)


async def test_operators_list(env: WebEnv) -> None:
    r = await env.client.get("/api/v1/operators", headers=BEARER)
    ops = {o["user"]: o for o in r.json()["operators"]}
    assert set(ops) == {"op1", "op2"}
    assert ops["op1"]["state"] == "available" and ops["op1"]["state_s"] == 120.0


async def test_operator_pauses_and_resumes_only_themselves(env: WebEnv) -> None:
    csrf = await env.sign_in("op1")
    h = {"X-CSRF-Token": csrf}
    r = await env.client.post(
        "/api/v1/operators/op1/pause", headers=h, json={"reason": "istirahat", "note": "10 menit"}
    )
    assert r.status_code == 200 and r.json()["reason"] == "istirahat: 10 menit"
    assert _state(env, "op1") == "paused"
    assert "only themselves" in _error(
        await env.client.post("/api/v1/operators/op2/pause", headers=h, json={"reason": "x"}), 403
    )
    r = await env.client.post("/api/v1/operators/op1/unpause", headers=h)
    assert r.status_code == 200 and _state(env, "op1") == "available"
    # The centre audit-logs pauses; it is told who asked.
    assert [(a[0], a[1]["paused"], a[1]["actor"]) for a in env.live.actions] == [
        ("set_operator_paused", True, "op1"),
        ("set_operator_paused", False, "op1"),
    ]


@pytest.mark.parametrize(
    ("path", "body", "status", "words"),
    [
        ("/api/v1/operators/op9/pause", {"reason": "x"}, 404, "no operator"),
        ("/api/v1/operators/op1/pause", {}, 422, "needs a reason"),
        ("/api/v1/operators/op1/pause", {"reason": 3}, 400, "expected a string"),
        ("/api/v1/operators/op1/pause", {"reason": "x", "why": "y"}, 400, "unknown field"),
    ],
)
async def test_pause_bad_input(
    env: WebEnv, path: str, body: dict[str, object], status: int, words: str
) -> None:
    assert words in _error(await env.client.post(path, headers=BEARER, json=body), status)
    assert env.live.actions == []


async def test_centre_refusal_comes_back_with_its_status(env: WebEnv) -> None:
    env.live.refuse = ControlError(409, "op1 is on a call; pause after wrap-up")
    r = await env.client.post("/api/v1/operators/op1/pause", headers=BEARER, json={"reason": "x"})
    assert "on a call" in _error(r, 409)
    assert env.live.actions == []


# --------------------------------------------------------------------------- callbacks


async def test_callback_lifecycle(env: WebEnv) -> None:
    iid, cb = await _abandoned(env)
    r = await env.client.get("/api/v1/callbacks", headers=BEARER)
    rows = r.json()["callbacks"]
    assert [(c["id"], c["incident_id"], c["status"]) for c in rows] == [(cb, iid, "open")]
    csrf = await env.sign_in("op1")
    h = {"X-CSRF-Token": csrf}
    taken = await env.client.post(f"/api/v1/callbacks/{cb}/take", headers=h)
    assert taken.status_code == 200 and taken.json()["taken_by"] == "op1"
    attempt = await env.client.post(
        f"/api/v1/callbacks/{cb}/attempts",
        headers=h,
        json={"result": "no_answer", "note": "mailbox"},
    )
    assert attempt.status_code == 201 and attempt.json()["callback_id"] == cb
    closed = await env.client.post(
        f"/api/v1/callbacks/{cb}/close", headers=h, json={"outcome": "unreachable"}
    )
    assert closed.status_code == 200 and closed.json()["status"] == "closed"
    assert closed.json()["attempts"][0]["result"] == "no_answer"
    assert (await env.client.get("/api/v1/callbacks", headers=BEARER)).json()["callbacks"] == []
    every = await env.client.get("/api/v1/callbacks?status=all", headers=BEARER)
    assert len(every.json()["callbacks"]) == 1
    again = await env.client.post(
        f"/api/v1/callbacks/{cb}/close", headers=h, json={"outcome": "handled"}
    )
    assert "already closed" in _error(again, 409)
    actions = [e.action for e in await env.store.list_audit(target=iid)]
    assert actions == ["callback_take", "callback_close"]


async def test_callback_taken_by_someone_else(env: WebEnv) -> None:
    _, cb = await _abandoned(env)
    await env.store.callback_take(cb, actor="op2", at=T0)
    csrf = await env.sign_in("op1")
    h = {"X-CSRF-Token": csrf}
    assert "taken by op2" in _error(
        await env.client.post(f"/api/v1/callbacks/{cb}/take", headers=h), 409
    )
    force = await env.client.post(f"/api/v1/callbacks/{cb}/take", headers=h, json={"force": True})
    assert "only supervisors" in _error(force, 403)
    sup = await env.client.post(
        f"/api/v1/callbacks/{cb}/take", headers=BEARER, json={"force": True}
    )
    assert sup.status_code == 200 and sup.json()["taken_by"] == "token:cad"


@pytest.mark.parametrize(
    ("path", "body", "status", "words"),
    [
        ("/api/v1/callbacks/999/take", None, 404, "no callback"),
        ("/api/v1/callbacks/abc/take", None, 404, "no callback"),
        ("/api/v1/callbacks/{cb}/take", {"force": "yes"}, 400, "true or false"),
        ("/api/v1/callbacks/{cb}/attempts", {"result": "voicemail"}, 422, "must be one of"),
        ("/api/v1/callbacks/{cb}/attempts", {}, 400, "required"),
        (
            "/api/v1/callbacks/{cb}/attempts",
            {"result": "busy", "note": 1},
            400,
            "expected a string",
        ),
        ("/api/v1/callbacks/{cb}/close", {}, 400, "required"),
        ("/api/v1/callbacks/{cb}/close", {"outcome": "x" * 201}, 400, "longer than"),
    ],
)
async def test_callback_bad_input(
    env: WebEnv, path: str, body: dict[str, object] | None, status: int, words: str
) -> None:
    _, cb = await _abandoned(env)
    r = await env.client.post(path.format(cb=cb), headers=BEARER, json=body)
    assert words in _error(r, status)


async def test_callback_list_bad_input(env: WebEnv) -> None:
    assert "not one of" in _error(
        await env.client.get("/api/v1/callbacks?status=closed", headers=BEARER), 422
    )
    assert _error(await env.client.get("/api/v1/callbacks?limit=x", headers=BEARER), 400)


# --------------------------------------------------------------------------- SLA, metrics, health


async def test_sla_today_and_for_a_range(env: WebEnv) -> None:
    await seed_incident(env.store, env.recordings, at=T0 - 600)  # answered in 7.5 s
    await _abandoned(env, at=T0 - 300)
    await seed_incident(env.store, env.recordings, at=T0 - 86_400)  # yesterday
    r = await env.client.get("/api/v1/sla", headers=BEARER)
    body = r.json()
    assert body["since"] == "2026-11-27T15:00:00.000Z"  # 00:00 WIT
    assert (body["arrived"], body["answered"], body["abandoned"]) == (2, 1, 1)
    assert body["answered_within"]["10"] == {"count": 1, "ratio": 1.0}
    wide = await env.client.get("/api/v1/sla?since=2026-11-01&until=2026-12-01", headers=BEARER)
    assert wide.json()["arrived"] == 3
    assert "not a date" in _error(await env.client.get("/api/v1/sla?since=x", headers=BEARER), 400)


async def test_metrics_exposition(env: WebEnv) -> None:
    await seed_incident(env.store, env.recordings, at=T0 - 600)
    await _abandoned(env, at=T0 - 300)
    env.live.caller_waits("20261128-0050", "0812", "fire", T0 - 42)
    env.live.answer("20261128-0051", "op2", "0813", "medical")
    r = await env.client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    lines = r.text.splitlines()
    samples = {
        ln.rsplit(" ", 1)[0]: float(ln.rsplit(" ", 1)[1]) for ln in lines if not ln.startswith("#")
    }
    assert samples["callcenter112_calls_queued"] == 1
    assert samples["callcenter112_queue_oldest_wait_seconds"] == 42
    assert samples["callcenter112_calls_active"] == 1
    assert samples['callcenter112_calls{phase="talking"}'] == 1
    assert samples['callcenter112_operators{state="on_call"}'] == 1
    assert samples["callcenter112_calls_abandoned_today"] == 1
    assert samples['callcenter112_answer_time_seconds_bucket{le="5"}'] == 0
    assert samples['callcenter112_answer_time_seconds_bucket{le="10"}'] == 1
    assert samples['callcenter112_answer_time_seconds_bucket{le="+Inf"}'] == 1
    assert samples["callcenter112_answer_time_seconds_count"] == 1
    assert samples["callcenter112_answer_time_seconds_sum"] == 7.5
    assert samples['callcenter112_answered_within_ratio{seconds="15"}'] == 1
    assert samples['callcenter112_trunk_rejected_today{trunk="telkom"}'] == 2
    assert samples["callcenter112_store_up"] == 1 and samples["callcenter112_live_up"] == 1
    # Every sample belongs to a family announced with HELP and TYPE.
    families = {ln.split()[2] for ln in lines if ln.startswith("# TYPE")}
    for name in samples:
        base = name.split("{")[0]
        assert any(base == f or base.startswith(f + "_") for f in families), name


async def test_metrics_include_rtp_quality_when_the_centre_offers_it(env: WebEnv) -> None:
    from callcenter112.web.metrics import RtpQuality

    env.live.rtp_quality = lambda: RtpQuality(  # type: ignore[attr-defined]
        streams=2, packets_received=1000, packets_lost=7, jitter_ms=(2.0, 6.0)
    )
    text = (await env.client.get("/metrics")).text
    assert "callcenter112_rtp_packets_lost_total 7.0" in text
    assert "callcenter112_rtp_packets_received_total 1000.0" in text
    assert 'callcenter112_rtp_jitter_milliseconds{stat="max"} 6.0' in text
    assert 'callcenter112_rtp_jitter_milliseconds{stat="mean"} 4.0' in text
    # The metric names of the hand-written exposition, kept for existing dashboards.
    names = {ln.split()[0].split("{")[0] for ln in text.splitlines() if not ln.startswith("#")}
    names |= {ln.split()[2] for ln in text.splitlines() if ln.startswith("# TYPE")}
    assert names >= {
        f"callcenter112_{n}"
        for n in [
            "answer_time_seconds_bucket",
            "answer_time_seconds_sum",
            "answer_time_seconds_count",
            "answered_within_ratio",
            "calls",
            "calls_abandoned_today",
            "calls_active",
            "calls_max",
            "calls_queued",
            "incidents_today",
            "live_up",
            "operators",
            "queue_oldest_wait_seconds",
            "registrations",
            "registrations_reachable",
            "rtp_jitter_milliseconds",
            "rtp_packets_lost_total",
            "rtp_packets_received_total",
            "rtp_ports_capacity",
            "rtp_ports_in_use",
            "rtp_ports_open",
            "rtp_streams",
            "store_up",
            "trunk_calls_active",
            "trunk_calls_today",
            "trunk_last_inbound_timestamp_seconds",
            "trunk_rejected_today",
            "web_event_streams",
            "web_sessions",
        ]
    }


async def test_metrics_read_plain_counters_of_any_class(env: WebEnv) -> None:
    """The call flow offers its own counters (no import of web/): any object with
    the four fields will do."""
    from dataclasses import dataclass

    @dataclass
    class Counters:
        streams: int = 1
        packets_received: int = 50
        packets_lost: int = 2
        jitter_ms: tuple[float, ...] = (3.0,)

    env.live.rtp_quality = Counters  # type: ignore[attr-defined]
    text = (await env.client.get("/metrics")).text
    assert "callcenter112_rtp_packets_received_total 50.0" in text
    assert "callcenter112_rtp_streams 1.0" in text


async def test_healthz(env: WebEnv) -> None:
    r = await env.client.get("/healthz")
    assert r.status_code == 200 and r.json()["status"] == "ok"
    env.live.broken = True
    r = await env.client.get("/healthz")
    assert r.status_code == 503
    assert r.json()["sip"] == "fail" and r.json()["store"] == "ok"  # no exception text (issue 11)
    metrics = await env.client.get("/metrics")
    assert "callcenter112_live_up 0.0" in metrics.text


async def test_healthz_reports_a_closed_store(tmp_path: Path) -> None:
    async with web_env(tmp_path) as env:
        await env.store.close()
        r = await env.client.get("/healthz")
        assert r.status_code == 503 and r.json()["store"] == "fail"
        assert "callcenter112_store_up 0.0" in (await env.client.get("/metrics")).text
        r = await env.client.get("/api/v1/incidents", headers=BEARER)
        assert "store is unavailable" in _error(r, 503)
