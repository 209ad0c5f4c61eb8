"""The telecom, people, prompt and SIP-ladder pages over ASGI, with in-memory seams.

The web application runs against a real SQLite store (audit entries are read
back), a real `LiveConfig` (every change goes through check-then-apply with
listeners), the real prompt directory code with ffmpeg, and the real capture
and pcap code. Only the carrier network (OPTIONS answers, test-call results)
is scripted.
"""

from __future__ import annotations

import html
import io
import math
import struct
import wave
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from callcenter112.admin import (
    DirectoryPromptAdmin,
    MemoryCaptureSource,
    MemoryConfigAdmin,
    MemoryTrunkTools,
    ProbeResult,
    TelecomServices,
    TestCallResult,
    config_document,
    ha1,
)
from callcenter112.config import Config, ConfigProblem, parse_config
from callcenter112.config_diff import ConfigDiff
from callcenter112.records import open_store
from callcenter112.runtime_config import LiveConfig
from callcenter112.sip.capture import CapturedMessage, mask_secrets, read_pcap
from callcenter112.web import create_app
from callcenter112.web.telecom_admin import WebConfigFollower
from test_web_support import PASSWORDS, FakeClock, FakeLiveCenter, WebEnv, make_config

TELECOM_PW = "tele-com-pass-1"


@dataclass
class Listener:
    """A part of the centre following the configuration (records what it was given)."""

    applied: list[Config] = field(default_factory=list)
    refuse: list[ConfigProblem] = field(default_factory=list)

    def check_config(self, new: Config, diff: ConfigDiff) -> list[ConfigProblem]:
        return list(self.refuse)

    def apply_config(self, new: Config, diff: ConfigDiff) -> None:
        self.applied.append(new)


@dataclass
class Carrier:
    """The scripted carrier: what OPTIONS and test calls get back."""

    probes: list[ProbeResult | None] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)

    async def probe(self, trunk: str) -> ProbeResult:
        answer = self.probes.pop(0) if self.probes else None
        return answer or ProbeResult(trunk=trunk, status=None, rtt_ms=None, reason="timeout")

    async def call(self, target: str) -> TestCallResult:
        self.calls.append(target)
        return TestCallResult(target=target, status=200, reason="OK", duration_s=3.2)


@dataclass
class Env:
    web: WebEnv
    admin: MemoryConfigAdmin
    live_config: LiveConfig
    listener: Listener
    carrier: Carrier
    tools: MemoryTrunkTools
    captures: MemoryCaptureSource
    prompts_dir: Path

    @property
    def client(self) -> httpx.AsyncClient:
        return self.web.client

    async def sign_in(self, user: str, password: str | None = None) -> str:
        return await self.web.sign_in(user, password or _password(user))

    async def audit(self, action: str) -> list[Any]:
        return await self.web.store.list_audit(action=action)


def _password(user: str) -> str:
    return TELECOM_PW if user == "telecom" else PASSWORDS[user]


def config_with_telecom(tmp_path: Path) -> Config:
    document = config_document(make_config(tmp_path))
    document["user"].append({"name": "telecom", "role": "telecom", "password": TELECOM_PW})
    return parse_config(document, source="test", base_dir=tmp_path)


def _tone_wav(seconds: float = 0.6, rate: int = 44_100) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        n = int(seconds * rate)
        w.writeframes(
            struct.pack(
                f"<{n}h", *(int(9000 * math.sin(2 * math.pi * 440 * i / rate)) for i in range(n))
            )
        )
    return buf.getvalue()


@asynccontextmanager
async def telecom_env(tmp_path: Path) -> AsyncIterator[Env]:
    clock = FakeClock()
    config = config_with_telecom(tmp_path)
    live_config = LiveConfig(config)
    listener = Listener()
    live_config.listen(listener)
    admin = MemoryConfigAdmin(live_config, clock=clock)
    carrier = Carrier()
    tools = MemoryTrunkTools(carrier_probe=carrier.probe, carrier_call=carrier.call, clock=clock)
    captures = MemoryCaptureSource()
    prompts_dir = tmp_path / "sounds"
    (prompts_dir / "id").mkdir(parents=True)
    (prompts_dir / "id" / "greeting.wav").write_bytes(_tone_wav(0.3, 8000))
    recordings = tmp_path / "recordings"
    recordings.mkdir()
    async with open_store(tmp_path / "db.sqlite3", id_utc_offset_s=9 * 3600) as store:
        app = create_app(
            config=config,
            store=store,
            live=FakeLiveCenter.standard(clock),
            recordings_dir=recordings,
            clock=clock,
            api_tokens=[],
            scrypt_n=16,
            telecom_services=TelecomServices(
                config=admin,
                trunks=tools,
                captures=captures,
                prompts=DirectoryPromptAdmin(prompts_dir),
            ),
        )
        live_config.listen(WebConfigFollower(app.state.web, scrypt_n=16))
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            web = WebEnv(
                app=app,
                client=client,
                store=store,
                live=FakeLiveCenter.standard(clock),
                clock=clock,
                config=config,
                recordings=recordings,
            )
            yield Env(
                web=web,
                admin=admin,
                live_config=live_config,
                listener=listener,
                carrier=carrier,
                tools=tools,
                captures=captures,
                prompts_dir=prompts_dir,
            )


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    async with telecom_env(tmp_path) as e:
        yield e


def trunk_form(csrf: str, **over: str) -> dict[str, str]:
    form = {
        "csrf_token": csrf,
        "original": "telkom",
        "name": "telkom",
        "allow": "127.0.0.0/8",
        "numbers": "112",
        "proxy": "127.0.0.1:5070",
        "transport": "udp",
        "caller_id": "112",
        "auth_user": "",
        "auth_password": "",
    }
    form.update(over)
    return form


# --------------------------------------------------------------------------- roles


@pytest.mark.parametrize(
    ("user", "path", "status"),
    [
        ("op1", "/telecom/config", 403),
        ("op1", "/telecom", 403),
        ("op1", "/people", 403),
        ("op1", "/prompts", 403),
        ("op1", "/telecom/incidents/20261128-0001/sip", 403),
        ("op1", "/api/v1/incidents/20261128-0001/sip.pcap", 403),
        ("supervisor", "/telecom/config", 403),
        ("supervisor", "/people", 200),
        ("supervisor", "/prompts", 403),
        ("supervisor", "/telecom", 200),
        ("auditor", "/telecom/config", 403),
        ("auditor", "/people", 403),
        ("telecom", "/telecom/config", 200),
        ("telecom", "/telecom", 200),
        ("telecom", "/people", 403),
        ("telecom", "/prompts", 403),
        ("admin", "/telecom/config", 200),
        ("admin", "/prompts", 200),
    ],
)
async def test_role_checks(env: Env, user: str, path: str, status: int) -> None:
    await env.sign_in(user)
    r = await env.client.get(path)
    assert r.status_code == status, r.text[:300]


async def test_telecom_signs_in_to_the_trunk_page(env: Env) -> None:
    await env.sign_in("telecom")
    r = await env.client.get("/")
    assert r.headers["location"] == "/telecom/config"
    page = await env.client.get("/telecom/config")
    assert 'data-testid="nav-telecom"' in page.text
    assert 'data-testid="nav-people"' not in page.text


async def test_operator_cannot_change_a_trunk(env: Env) -> None:
    csrf = await env.sign_in("op1")
    r = await env.client.post("/telecom/config/trunk", data=trunk_form(csrf, allow="10.0.0.0/8"))
    assert r.status_code == 403
    assert env.admin.current().trunk[0].allow == ["127.0.0.0/8"]


async def test_a_change_needs_the_csrf_token(env: Env) -> None:
    await env.sign_in("telecom")
    form = trunk_form("wrong", allow="10.0.0.0/8")
    r = await env.client.post("/telecom/config/trunk", data=form)
    assert r.status_code == 403 and "CSRF" in r.text
    del form["csrf_token"]
    r = await env.client.post("/telecom/config/trunk", data=form)
    assert r.status_code == 403
    assert env.admin.current().trunk[0].allow == ["127.0.0.0/8"]
    assert len(await env.admin.versions()) == 1


# --------------------------------------------------------------------------- trunks, agencies


async def test_edit_a_trunk_allow_list_then_roll_back(env: Env) -> None:
    csrf = await env.sign_in("telecom")
    r = await env.client.post(
        "/telecom/config/trunk", data=trunk_form(csrf, allow="127.0.0.1\n192.0.2.0/24")
    )
    assert r.status_code == 303 and r.headers["location"] == "/telecom/config"
    assert env.admin.current().trunk[0].allow == ["127.0.0.1", "192.0.2.0/24"]
    # Applied through LiveConfig: every listener got the new configuration.
    assert env.listener.applied[-1].trunk[0].allow == ["127.0.0.1", "192.0.2.0/24"]
    versions = await env.admin.versions()
    assert [(v.version, v.origin, v.actor) for v in versions] == [
        (2, "web", "telecom"),
        (1, "file", "system"),
    ]
    [entry] = await env.audit("trunk_changed")
    assert entry.actor == "telecom" and entry.target == "trunk:telkom"
    assert [c["path"] for c in entry.detail["changes"]] == ["trunk[telkom].allow"]
    page = await env.client.get("/telecom/config")
    assert "192.0.2.0/24" in page.text and 'data-version="2"' in page.text
    # Each version says what it changed from the one before.
    assert "~ trunk[telkom].allow: [&#39;127.0.0.0/8&#39;] -&gt; [&#39;127.0.0.1&#39;" in page.text

    r = await env.client.post(
        "/telecom/config/rollback",
        data={"csrf_token": csrf, "version": "1"},
        headers={"accept": "application/json"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["applied"] == ["trunk[telkom].allow"]
    assert env.admin.current().trunk[0].allow == ["127.0.0.0/8"]
    assert (await env.admin.versions())[0].version == 3
    assert len(await env.audit("config_rollback")) == 1


async def test_a_bad_trunk_form_names_the_key_and_changes_nothing(env: Env) -> None:
    csrf = await env.sign_in("telecom")
    before = env.admin.current()
    r = await env.client.post(
        "/telecom/config/trunk",
        data=trunk_form(csrf, allow="127.0.0.1\nnot-an-address"),
        headers={"accept": "application/json"},
    )
    assert r.status_code == 422
    error = r.json()["error"]
    assert "trunk[telkom].allow" in error and "not-an-address" in error
    assert env.admin.current() is before
    assert len(await env.admin.versions()) == 1 and env.listener.applied == []
    [refused] = await env.audit("trunk_changed_refused")
    assert "trunk[telkom].allow" in refused.detail["problems"][0]
    # A person gets the error page with the same message.
    page = await env.client.post("/telecom/config/trunk", data=trunk_form(csrf, proxy="x:99999"))
    assert page.status_code == 422 and "trunk[telkom].proxy" in page.text


async def test_a_listener_refusal_changes_nothing(env: Env) -> None:
    env.listener.refuse = [ConfigProblem("trunk[telkom].allow", "a dialog is being set up")]
    csrf = await env.sign_in("telecom")
    r = await env.client.post(
        "/telecom/config/trunk",
        data=trunk_form(csrf, allow="10.0.0.0/8"),
        headers={"accept": "application/json"},
    )
    assert r.status_code == 422 and "a dialog is being set up" in r.json()["error"]
    assert env.admin.current().trunk[0].allow == ["127.0.0.0/8"]


async def test_add_and_remove_an_agency(env: Env) -> None:
    csrf = await env.sign_in("telecom")
    form = {"csrf_token": csrf, "name": "sar", "label": "Basarnas", "number": "115"}
    bad = await env.client.post(
        "/telecom/config/agency",
        data={**form, "trunk": "nosuch"},
        headers={"accept": "application/json"},
    )
    assert bad.status_code == 422 and "agency[sar].trunk" in bad.json()["error"]
    r = await env.client.post("/telecom/config/agency", data={**form, "trunk": "telkom"})
    assert r.status_code == 303
    assert env.admin.current().agency_named("115") is not None
    r = await env.client.post("/telecom/config/agency/sar/delete", data={"csrf_token": csrf})
    assert r.status_code == 303
    assert env.admin.current().agency_named("sar") is None
    assert [e.target for e in await env.audit("agency_changed")] == ["agency:sar"]


async def test_renaming_a_trunk_carries_its_agencies(env: Env) -> None:
    csrf = await env.sign_in("telecom")
    r = await env.client.post("/telecom/config/trunk", data=trunk_form(csrf, name="telkom-2"))
    assert r.status_code == 303
    config = env.admin.current()
    assert [t.name for t in config.trunk] == ["telkom-2"]
    assert {a.trunk for a in config.agency} == {"telkom-2"}
    dup = await env.client.post(
        "/telecom/config/trunk",
        data=trunk_form(csrf, original="", name="telkom-2"),
        headers={"accept": "application/json"},
    )
    assert dup.status_code == 409


async def test_trunk_password_is_kept_when_blank_and_never_shown(env: Env) -> None:
    csrf = await env.sign_in("telecom")
    await env.client.post(
        "/telecom/config/trunk", data=trunk_form(csrf, auth_user="ambon", auth_password="s3cr3t!")
    )
    assert env.admin.current().trunk[0].auth_password == "s3cr3t!"
    await env.client.post("/telecom/config/trunk", data=trunk_form(csrf, auth_user="ambon"))
    assert env.admin.current().trunk[0].auth_password == "s3cr3t!"
    page = await env.client.get("/telecom/config")
    assert "s3cr3t!" not in page.text
    for entry in await env.audit("trunk_changed"):
        assert "s3cr3t!" not in str(entry.detail)


async def test_a_hand_edited_file_shows_the_conflict(env: Env) -> None:
    csrf = await env.sign_in("telecom")
    await env.client.post("/telecom/config/trunk", data=trunk_form(csrf, allow="10.0.0.0/8"))
    page = await env.client.get("/telecom/config")
    assert 'data-testid="config-conflict"' not in page.text
    env.admin.file_text = env.admin.file_text.replace('caller_id = "112"', 'caller_id = "0911"')
    page = await env.client.get("/telecom/config")
    assert 'data-testid="config-conflict"' in page.text
    assert "trunk[telkom].caller_id" in page.text


# --------------------------------------------------------------------------- trunk tools


async def test_probe_a_trunk_and_the_alarm_when_it_stops_answering(env: Env) -> None:
    csrf = await env.sign_in("telecom")
    env.carrier.probes = [ProbeResult(trunk="telkom", status=200, rtt_ms=12.5)]
    r = await env.client.post("/telecom/trunks/telkom/probe", data={"csrf_token": csrf})
    assert r.json() == {
        "trunk": "telkom",
        "status": 200,
        "rtt_ms": 12.5,
        "reason": "",
        "answered": True,
    }
    page = await env.client.get("/telecom/config")
    assert 'data-state="up"' in page.text and "12.5 ms" in page.text
    for _ in range(2):  # down_after = 2 probes without an answer
        r = await env.client.post("/telecom/trunks/telkom/probe", data={"csrf_token": csrf})
        assert r.json()["answered"] is False
    page = await env.client.get("/telecom/config")
    assert 'data-state="down"' in page.text and 'class="alarm"' in page.text
    health = (await env.client.get("/api/v1/trunks/health")).json()["trunks"]
    assert health["telkom"]["qualify"]["state"] == "down"
    missing = await env.client.post("/telecom/trunks/nosuch/probe", data={"csrf_token": csrf})
    assert missing.status_code == 404


async def test_counters_today_and_last_hour(env: Env) -> None:
    from callcenter112.trunk_health import TrunkCounters

    counters = env.tools.counters["telkom"] = TrunkCounters()
    now = env.web.clock.now
    counters.count("call", wall=now - 7200)
    counters.count("carrier:503", wall=now - 7000)
    counters.count("call", wall=now - 60)
    counters.count("reject:403", wall=now - 30)
    await env.sign_in("telecom")
    health = (await env.client.get("/api/v1/trunks/health")).json()["trunks"]["telkom"]
    assert health["counters"]["today"] == {
        "calls": 2,
        "rejects": {"403": 1},
        "carrier_errors": {"503": 1},
    }
    assert health["counters"]["last_hour"]["calls"] == 1
    assert health["counters"]["last_hour"]["carrier_errors"] == {}
    page = await env.client.get("/telecom/config")
    assert "503\u00d71" in page.text and "403\u00d71" in page.text


async def test_test_call_to_an_agency(env: Env) -> None:
    csrf = await env.sign_in("telecom")
    r = await env.client.post("/telecom/test-call", data={"csrf_token": csrf, "target": "damkar"})
    assert r.json() == {
        "target": "damkar",
        "status": 200,
        "reason": "OK",
        "duration_s": 3.2,
        "ok": True,
    }
    assert env.carrier.calls == ["damkar"]
    bad = await env.client.post("/telecom/test-call", data={"csrf_token": csrf, "target": "999"})
    assert bad.status_code == 404 and env.carrier.calls == ["damkar"]
    assert [e.target for e in await env.audit("trunk_test_call")] == ["damkar"]


# --------------------------------------------------------------------------- people


async def test_supervisor_adds_an_operator_who_signs_in_at_once(env: Env) -> None:
    csrf = await env.sign_in("supervisor")
    r = await env.client.post(
        "/people/operators",
        data={"csrf_token": csrf, "user": "op9", "name": "Operator Sembilan", "skills": "fire"},
    )
    assert r.status_code == 200 and 'data-testid="new-password"' in r.text
    start = r.text.index('data-testid="password-value">') + len('data-testid="password-value">')
    password = r.text[start : r.text.index("<", start)]
    assert len(password) == 16
    op = env.admin.current().operator_named("op9")
    assert op is not None and op.skills == ["fire"]
    # The softphone secret is kept as HA1 digests, the console's as scrypt.
    assert (
        not op.password
        and op.ha1_md5 == ha1("op9", env.admin.current().sip.realm, password)["ha1_md5"]
    )
    assert op.web_password_hash.startswith("scrypt$")
    # Shown once: the people page does not carry it, nor does the audit.
    assert password not in (await env.client.get("/people")).text
    [entry] = await env.audit("operator_added")
    assert password not in str(entry.detail) and entry.target == "operator:op9"
    env.web.sign_out_locally()
    await env.sign_in("op9", password)
    assert (await env.client.get("/console")).status_code == 200


async def test_reset_password_skills_and_disable(env: Env) -> None:
    csrf = await env.sign_in("supervisor")
    r = await env.client.post(
        "/people/operators/op1/password",
        data={"csrf_token": csrf},
        headers={"accept": "application/json"},
    )
    new = r.json()["password"]
    op1 = env.admin.current().operator_named("op1")
    assert (
        op1 is not None and op1.ha1_md5 == ha1("op1", env.admin.current().sip.realm, new)["ha1_md5"]
    )
    r = await env.client.post(
        "/people/operators/op1/skills", data={"csrf_token": csrf, "skills": ["medical", "police"]}
    )
    assert r.status_code == 303
    assert env.admin.current().operator_named("op1").skills == ["medical", "police"]  # type: ignore[union-attr]
    r = await env.client.post(
        "/people/operators/op1/skills",
        data={"csrf_token": csrf, "skills": "juggling"},
        headers={"accept": "application/json"},
    )
    assert r.status_code == 422 and "juggling" in r.json()["error"]
    r = await env.client.post("/people/operators/op1/disable", data={"csrf_token": csrf})
    assert r.status_code == 303
    assert env.admin.current().operator_named("op1") is None
    # The unknown skill was refused before any proposal: nothing to audit.
    assert [e.action for e in await env.web.store.list_audit(target="operator:op1")] == [
        "password_reset",
        "skills_set",
        "operator_disabled",
    ]
    env.web.sign_out_locally()
    page = await env.client.get("/login")
    assert page.status_code == 200
    from test_web_support import _field

    r = await env.client.post(
        "/login",
        data={"login_csrf": _field(page.text, "login_csrf"), "user": "op1", "password": new},
    )
    assert r.status_code != 303  # the account is gone


def test_ha1_digests() -> None:
    import hashlib

    # RFC 2617 §3.5: HA1 of Mufasa / testrealm@host.com / Circle Of Life.
    got = ha1("Mufasa", "testrealm@host.com", "Circle Of Life")
    assert got["ha1_md5"] == "939e7578ed9e3c518a452acee763bce9"
    a1 = b"Mufasa:testrealm@host.com:Circle Of Life"
    assert got["ha1_sha256"] == hashlib.sha256(a1).hexdigest()


# --------------------------------------------------------------------------- SIP ladder


def _call_messages(iid: str) -> list[CapturedMessage]:
    caller, centre, op = ("192.0.2.10", 5060), ("127.0.0.1", 5060), ("127.0.0.1", 40100)
    t = 1_795_830_000.0

    def msg(dt: float, direction: str, remote: tuple[str, int], text: str, leg: str) -> Any:
        data = mask_secrets(text.replace("\n", "\r\n").encode())
        return CapturedMessage(
            at=t + dt,
            direction=direction,  # type: ignore[arg-type]
            local=centre,
            remote=remote,
            transport="udp",
            data=data,
            leg=leg,
        )

    invite = (
        "INVITE sip:112@127.0.0.1 SIP/2.0\nVia: SIP/2.0/UDP 192.0.2.10\nCall-ID: a1\n"
        'CSeq: 1 INVITE\nProxy-Authorization: Digest username="t", response="deadbeef"\n\n'
    )
    return [
        msg(0.000, "in", caller, invite, "caller"),
        msg(0.002, "out", caller, "SIP/2.0 100 Trying\nCSeq: 1 INVITE\n\n", "caller"),
        msg(0.050, "out", caller, "SIP/2.0 200 OK\nCSeq: 1 INVITE\n\n", "caller"),
        msg(0.090, "in", caller, "ACK sip:112@127.0.0.1 SIP/2.0\nCSeq: 1 ACK\n\n", "caller"),
        msg(5.0, "out", op, "INVITE sip:op1@127.0.0.1 SIP/2.0\nCSeq: 1 INVITE\n\n", "operator:op1"),
        msg(5.400, "in", op, "SIP/2.0 180 Ringing\nCSeq: 1 INVITE\n\n", "operator:op1"),
        msg(7.500, "in", op, "SIP/2.0 200 OK\nCSeq: 1 INVITE\n\n", "operator:op1"),
        msg(7.510, "out", op, "ACK sip:op1@127.0.0.1 SIP/2.0\nCSeq: 1 ACK\n\n", "operator:op1"),
        msg(60.00, "in", caller, "BYE sip:112@127.0.0.1 SIP/2.0\nCSeq: 2 BYE\n\n", "caller"),
        msg(60.01, "out", caller, "SIP/2.0 200 OK\nCSeq: 2 BYE\n\n", "caller"),
    ]


async def test_ladder_renders_every_message_in_order_and_pcap_reads_back(env: Env) -> None:
    iid = "20261128-0042"
    messages = _call_messages(iid)
    # Kept out of order: the ladder sorts by time.
    for m in [*messages[4:], *messages[:4]]:
        env.captures.add(iid, m)
    await env.sign_in("auditor")
    page = await env.client.get(f"/telecom/incidents/{iid}/sip")
    assert page.status_code == 200, page.text[:300]
    text = page.text
    labels = [
        "INVITE",
        "100 Trying (INVITE)",
        "200 OK (INVITE)",
        "ACK",
        "INVITE",
        "180 Ringing (INVITE)",
        "200 OK (INVITE)",
        "ACK",
        "BYE",
        "200 OK (BYE)",
    ]
    rows = text.split('data-testid="ladder-row"')[1:]
    assert len(rows) == len(messages)
    assert [r.split("<title>", 1)[1].split("</title>", 1)[0] for r in rows] == labels
    listed = text.split('data-testid="sip-message"')[1:]
    assert len(listed) == len(messages)
    assert 'response="***"' in html.unescape(text) and "deadbeef" not in text
    for column in ("caller", "centre", "operator:op1"):
        assert f'data-testid="ladder-column">{column}<' in text
    pcap = await env.client.get(f"/api/v1/incidents/{iid}/sip.pcap")
    assert pcap.status_code == 200
    assert pcap.headers["content-type"] == "application/vnd.tcpdump.pcap"
    packets = read_pcap(pcap.content)
    assert len(packets) == len(messages)
    assert [p for _, p in packets] == [m.data for m in messages]
    [entry] = await env.audit("sip_pcap_download")
    assert entry.actor == "auditor" and entry.target == iid


async def test_ladder_of_an_unknown_incident(env: Env) -> None:
    await env.sign_in("telecom")
    assert (await env.client.get("/telecom/incidents/nosuch/sip")).status_code == 404
    assert (await env.client.get("/api/v1/incidents/nosuch/sip.pcap")).status_code == 404
    r = await env.client.get("/telecom/ladder?incident=20261128-0042")
    assert r.headers["location"] == "/telecom/incidents/20261128-0042/sip"


# --------------------------------------------------------------------------- prompts


async def test_upload_preview_apply_and_roll_back_a_prompt(env: Env) -> None:
    csrf = await env.sign_in("admin")
    original = (env.prompts_dir / "id" / "greeting.wav").read_bytes()
    page = await env.client.get("/prompts")
    assert 'data-name="id/greeting"' in page.text
    r = await env.client.put(
        "/prompts/upload?name=id/greeting&filename=take2.wav",
        content=_tone_wav(),
        headers={"x-csrf-token": csrf, "accept": "application/json"},
    )
    assert r.status_code == 200, r.text
    data = r.json()
    assert 0.4 < data["seconds"] < 0.7
    preview = await env.client.get(data["preview_url"])
    assert preview.status_code == 200 and preview.headers["content-type"] == "audio/wav"
    with wave.open(io.BytesIO(preview.content)) as w:
        assert (w.getframerate(), w.getsampwidth(), w.getnchannels()) == (8000, 2, 1)
    # Not applied yet.
    assert (env.prompts_dir / "id" / "greeting.wav").read_bytes() == original
    r = await env.client.post(
        "/prompts/apply", data={"csrf_token": csrf, "preview_id": data["preview_id"]}
    )
    assert r.status_code == 303
    applied = (env.prompts_dir / "id" / "greeting.wav").read_bytes()
    assert applied != original and applied[20:22] == b"\x06\x00"  # A-law
    r = await env.client.post("/prompts/rollback", data={"csrf_token": csrf, "name": "id/greeting"})
    assert r.status_code == 303
    assert (env.prompts_dir / "id" / "greeting.wav").read_bytes() == original
    actions = [e.action for e in await env.web.store.list_audit(target="id/greeting")]
    assert actions == ["prompt_uploaded", "prompt_applied", "prompt_rolled_back"]


async def test_prompt_upload_refusals(env: Env) -> None:
    csrf = await env.sign_in("admin")
    h = {"x-csrf-token": csrf, "accept": "application/json"}
    r = await env.client.put(
        "/prompts/upload?name=id/greeting&filename=x.wav", content=b"not audio", headers=h
    )
    assert r.status_code == 422 and "ffmpeg" in r.json()["error"]
    r = await env.client.put(
        "/prompts/upload?name=../etc/passwd&filename=x.wav", content=_tone_wav(), headers=h
    )
    assert r.status_code == 422
    r = await env.client.put(
        "/prompts/upload?name=id/greeting&filename=x.exe", content=_tone_wav(), headers=h
    )
    assert r.status_code == 422
    r = await env.client.put(
        "/prompts/upload?name=id/greeting&filename=x.wav",
        content=_tone_wav(),
        headers={"accept": "application/json"},
    )
    assert r.status_code == 403
    env.web.sign_out_locally()
    csrf = await env.sign_in("supervisor")
    r = await env.client.put(
        "/prompts/upload?name=id/greeting&filename=x.wav",
        content=_tone_wav(),
        headers={"x-csrf-token": csrf, "accept": "application/json"},
    )
    assert r.status_code == 403
