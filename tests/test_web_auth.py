"""Sign-in, roles, sessions, CSRF and lockout of the web console.

The rules (`web.auth`) are tested with a passed-in `now`; the HTTP behaviour
through the real application over ASGI with a real store, whose audit log
must record every sign-in, failure and lockout.
"""

from __future__ import annotations

import io
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from callcenter112.cli import main as cli_main
from callcenter112.web.auth import (
    SCRYPT_N,
    Account,
    Directory,
    LoginGuard,
    PasswordFormatError,
    SessionStore,
    TokenRing,
    csrf_matches,
    hash_password,
    new_api_token,
    verify_password,
)
from test_web_support import API_TOKEN, PASSWORDS, T0, WebEnv, csrf_of, web_env


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[WebEnv]:
    async with web_env(tmp_path) as e:
        yield e


# --------------------------------------------------------------------------- rules


def test_scrypt_hash_round_trip_with_the_real_cost() -> None:
    encoded = hash_password("Ambon-112!")
    kind, n, r, p, salt, key = encoded.split("$")
    assert (kind, int(n), int(r), int(p)) == ("scrypt", SCRYPT_N, 8, 1)
    assert len(bytes.fromhex(salt)) == 16 and len(bytes.fromhex(key)) == 32
    assert verify_password("Ambon-112!", encoded)
    assert not verify_password("ambon-112!", encoded)
    # A fresh salt each time: the same password never hashes the same.
    assert hash_password("Ambon-112!", n=16) != hash_password("Ambon-112!", n=16)


@pytest.mark.parametrize(
    "bad",
    [
        "md5$abc",
        "scrypt$16384$8$1$zz$00",
        "scrypt$1000$8$1$" + "00" * 16 + "$" + "00" * 32,  # N not a power of two
        "scrypt$" + str(2**20) + "$8$1$" + "00" * 16 + "$" + "00" * 32,  # too costly
        "scrypt$16$8$1$00$" + "00" * 32,  # salt too short
    ],
)
def test_malformed_hashes_are_refused(bad: str) -> None:
    with pytest.raises(PasswordFormatError):
        verify_password("x", bad)


def test_directory_accounts_and_verification() -> None:
    class User:
        def __init__(self, name: str, role: str, password: str = "", password_hash: str = ""):
            self.name, self.role = name, role
            self.password, self.password_hash, self.sip_user = password, password_hash, ""

    class Op:
        def __init__(self, user: str, password: str) -> None:
            self.user, self.password, self.name = user, password, ""

    directory = Directory(
        users=[
            User("sup", "supervisor", password="plain-pass"),
            User("aud", "auditor", password_hash=hash_password("hashed-pass", n=16)),
        ],
        operators=[Op("op1", "sip-secret")],
        scrypt_n=16,
    )
    assert directory.verify("sup", "plain-pass") == Account(
        name="sup", role="supervisor", display="sup", sip_user=None
    )
    assert directory.verify("aud", "hashed-pass") is not None
    op = directory.verify("op1", "sip-secret")
    assert op is not None and op.role == "operator" and op.sip_user == "op1"
    assert directory.verify("op1", "sip-secreT") is None
    assert directory.verify("ghost", "anything") is None
    assert directory.verify("sup", "x" * 5000) is None
    with pytest.raises(PasswordFormatError):
        Directory(users=[User("bad", "admin", password_hash="scrypt$oops")])


def test_lockout_per_key_within_the_window() -> None:
    guard = LoginGuard(limit=3, lockout_s=60, address_limit=3)
    keys = guard.keys("op1", "10.0.0.5")
    assert guard.failed(keys, T0) == []
    assert guard.failed(keys, T0 + 1) == []
    # The third failure within 60 s locks both the user and the address.
    assert guard.failed(keys, T0 + 2) == ["user:op1", "ip:10.0.0.5"]
    assert guard.locked_until(keys, T0 + 30) == T0 + 62
    assert guard.locked_until(["user:op1"], T0 + 62) is None  # lock over
    # Failures spread wider than the window never add up to a lockout.
    spread = LoginGuard(limit=3, lockout_s=60)
    for i in range(10):
        assert spread.failed(["user:x"], T0 + i * 31) == []


def test_success_clears_the_user_not_the_address() -> None:
    guard = LoginGuard(limit=2, lockout_s=60, address_limit=2)
    guard.failed(["user:a", "ip:1.2.3.4"], T0)
    guard.succeeded("a")
    assert guard.failed(["user:b", "ip:1.2.3.4"], T0 + 1) == ["ip:1.2.3.4"]
    assert guard.locked_until(["user:a"], T0 + 2) is None


def test_a_shared_address_gets_more_room_than_one_user() -> None:
    """A control room behind one NAT: five operators mistyping once or twice each
    must not lock the room out, while one user is locked at the user limit."""
    guard = LoginGuard(limit=3, lockout_s=60)  # address limit defaults to 4x
    locked: list[str] = []
    for i, op in enumerate(["op1", "op2", "op3", "op4", "op5"]):
        for j in range(2):
            locked += guard.failed(guard.keys(op, "10.0.0.9"), T0 + i * 2 + j)
    assert "ip:10.0.0.9" not in locked
    assert guard.locked_until(["ip:10.0.0.9"], T0 + 11) is None
    locked += guard.failed(guard.keys("op1", "10.0.0.9"), T0 + 12)
    assert "user:op1" in locked
    for k in range(2):
        locked += guard.failed(guard.keys("op6", "10.0.0.9"), T0 + 13 + k)
    assert "ip:10.0.0.9" in locked  # the 12th failure from one address


def test_lockout_memory_is_bounded() -> None:
    guard = LoginGuard(limit=3, lockout_s=60, max_keys=100)
    for i in range(1000):
        guard.failed([f"user:u{i}"], T0)
    assert len(guard._keys) == 100


def test_sessions_expire_and_are_bounded() -> None:
    account = Account(name="op1", role="operator", display="Op", sip_user="op1")
    store = SessionStore(ttl_s=3600, max_sessions=3)
    s = store.create(account, T0)
    assert store.get(s.token, T0 + 3599) is s
    assert store.get(s.token, T0 + 3600) is None  # expired, and gone
    tokens = [store.create(account, T0).token for _ in range(5)]
    assert len(store) == 3 and store.get(tokens[0], T0) is None
    assert store.get(tokens[-1], T0) is not None
    assert store.drop(tokens[-1]) is not None and store.get(tokens[-1], T0) is None


def test_csrf_comparison() -> None:
    assert csrf_matches("abc", "abc")
    assert not csrf_matches("abc", "abd")
    assert not csrf_matches("abc", None)
    assert not csrf_matches("abc", "")


def test_api_tokens() -> None:
    token, digest = new_api_token()
    ring = TokenRing(
        [
            __import__("callcenter112.web.auth", fromlist=["ApiToken"]).ApiToken(
                name="cad", role="supervisor", token_hash=digest
            )
        ]
    )
    found = ring.verify(token)
    assert found is not None and found.principal().user == "token:cad"
    assert ring.verify(token + "x") is None
    with pytest.raises(ValueError):
        TokenRing(
            [
                __import__("callcenter112.web.auth", fromlist=["ApiToken"]).ApiToken(
                    name="x", role="auditor", token_hash="md5$00"
                )
            ]
        )


def test_hash_password_command(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("Ambon-Manise-112\n"))
    assert cli_main(["hash-password", "--stdin"]) == 0
    printed = capsys.readouterr().out.strip()
    assert printed.startswith("scrypt$") and verify_password("Ambon-Manise-112", printed)
    monkeypatch.setattr(sys, "stdin", io.StringIO("short\n"))
    assert cli_main(["hash-password", "--stdin"]) == 2
    assert cli_main(["new-api-token"]) == 0
    out = capsys.readouterr().out
    assert "token_hash: sha256$" in out


# --------------------------------------------------------------------------- over HTTP


async def test_sign_in_sets_a_strict_http_only_cookie_and_audits(env: WebEnv) -> None:
    page = await env.client.get("/login")
    assert "SameSite=strict" in page.headers["set-cookie"]
    token = page.text.split('name="login_csrf" value="')[1].split('"')[0]
    r = await env.client.post(
        "/login", data={"login_csrf": token, "user": "op1", "password": PASSWORDS["op1"]}
    )
    assert r.status_code == 303 and r.headers["location"] == "/console"
    cookie = r.headers["set-cookie"]
    assert "cc112_session=" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert "Max-Age=43200" in cookie  # web.session_hours = 12
    entries = await env.store.list_audit(action="login")
    assert [(e.actor, e.detail["role"]) for e in entries] == [("op1", "operator")]


async def test_each_role_lands_on_its_page(env: WebEnv) -> None:
    for user, home in (
        ("op1", "/console"),
        ("supervisor", "/wallboard"),
        ("auditor", "/audit"),
        ("admin", "/telecom"),
    ):
        env.sign_out_locally()
        await env.sign_in(user)
        r = await env.client.get("/")
        assert r.headers["location"] == home


@pytest.mark.parametrize(
    ("user", "allowed", "refused"),
    [
        ("op1", ["/console"], ["/wallboard", "/audit", "/telecom", "/api/v1/incidents"]),
        ("supervisor", ["/wallboard", "/telecom"], ["/console", "/audit"]),
        ("auditor", ["/audit", "/api/v1/incidents"], ["/console", "/wallboard", "/telecom"]),
        ("admin", ["/console", "/wallboard", "/audit", "/telecom", "/api/v1/incidents"], []),
    ],
)
async def test_roles_see_only_their_pages(
    env: WebEnv, user: str, allowed: list[str], refused: list[str]
) -> None:
    await env.sign_in(user)
    for path in allowed:
        assert (await env.client.get(path)).status_code == 200, path
    for path in refused:
        r = await env.client.get(path)
        assert r.status_code == 403, path
        if path.startswith("/api/"):
            assert "may not" in r.json()["error"]
        else:
            assert 'data-testid="error" data-status="403"' in r.text


async def test_operator_on_an_auditor_url_gets_403_page(env: WebEnv) -> None:
    await env.sign_in("op1")
    r = await env.client.get("/audit/incidents/20261128-0001")
    assert r.status_code == 403
    assert "Akses ditolak" in r.text and "Forbidden" in r.text


async def test_not_signed_in_goes_to_the_sign_in_page(env: WebEnv) -> None:
    r = await env.client.get("/audit?caller=0812")
    assert r.status_code == 303
    assert r.headers["location"] == "/login?next=%2Faudit%3Fcaller%3D0812"
    api = await env.client.get("/api/v1/incidents")
    assert api.status_code == 401 and "sign in" in api.json()["error"]
    post = await env.client.post("/console/status", data={"state": "available"})
    assert post.status_code == 401


async def test_next_is_followed_only_to_local_paths(env: WebEnv) -> None:
    for target, expected in (("/audit?x=1", "/audit?x=1"), ("//evil.example/", "/audit")):
        env.sign_out_locally()
        page = await env.client.get("/login")
        token = page.text.split('name="login_csrf" value="')[1].split('"')[0]
        r = await env.client.post(
            "/login",
            data={
                "login_csrf": token,
                "user": "auditor",
                "password": PASSWORDS["auditor"],
                "next": target,
            },
        )
        assert r.headers["location"] == expected


async def test_wrong_password_is_refused_and_audited(env: WebEnv) -> None:
    page = await env.client.get("/login")
    token = page.text.split('name="login_csrf" value="')[1].split('"')[0]
    r = await env.client.post(
        "/login", data={"login_csrf": token, "user": "op1", "password": "nope"}
    )
    assert r.status_code == 401
    assert "Wrong user name or password" in r.text
    assert "cc112_session" not in r.headers.get("set-cookie", "")
    failed = await env.store.list_audit(action="login_failed")
    assert failed[0].actor == "op1" and failed[0].detail["reason"] == "bad_credentials"


async def _attempt(env: WebEnv, user: str, password: str) -> int:
    page = await env.client.get("/login")
    token = page.text.split('name="login_csrf" value="')[1].split('"')[0]
    r = await env.client.post(
        "/login", data={"login_csrf": token, "user": user, "password": password}
    )
    return r.status_code


async def test_lockout_after_repeated_failures_per_user(env: WebEnv) -> None:
    for _ in range(3):  # web.login_fail_limit = 3 in the test config
        assert await _attempt(env, "op1", "wrong") == 401
    # Locked now, even with the right password.
    assert await _attempt(env, "op1", PASSWORDS["op1"]) == 429
    lock = await env.store.list_audit(action="login_lockout")
    keys = lock[0].detail["keys"]
    assert isinstance(keys, list) and "user:op1" in keys and "ip:127.0.0.1" in keys
    refused = await env.store.list_audit(action="login_failed")
    assert refused[-1].detail["reason"] == "locked_out"
    # The lock ends after web.login_lockout_s (60 s).
    env.clock.advance(61)
    assert await _attempt(env, "op1", PASSWORDS["op1"]) == 303


async def test_lockout_per_source_address_across_user_names(env: WebEnv) -> None:
    for name in ("ghost1", "ghost2", "ghost3"):
        assert await _attempt(env, name, "guess") == 401
    # The address is locked: a fourth name, even a real one, is refused.
    assert await _attempt(env, "auditor", PASSWORDS["auditor"]) == 429
    failed = await env.store.list_audit(action="login_failed")
    assert [e.actor for e in failed[:3]] == ["ghost1", "ghost2", "ghost3"]
    assert failed[0].detail["known_user"] is False


async def test_login_form_without_its_csrf_cookie_is_refused(env: WebEnv) -> None:
    r = await env.client.post(
        "/login", data={"login_csrf": "forged", "user": "op1", "password": PASSWORDS["op1"]}
    )
    assert r.status_code == 403


async def test_form_post_without_csrf_token_is_refused(env: WebEnv) -> None:
    csrf = await env.sign_in("op1")
    r = await env.client.post("/console/status", data={"state": "paused", "reason": "istirahat"})
    assert r.status_code == 403
    assert "CSRF" in r.text
    r = await env.client.post(
        "/console/status", data={"state": "paused", "reason": "istirahat", "csrf_token": "x" * 43}
    )
    assert r.status_code == 403
    assert env.live.actions == []  # nothing reached the centre
    ok = await env.client.post(
        "/console/status", data={"state": "paused", "reason": "istirahat", "csrf_token": csrf}
    )
    assert ok.status_code == 303
    assert env.live.actions[0][0] == "set_operator_paused"


async def test_session_expires_after_session_hours(env: WebEnv) -> None:
    await env.sign_in("supervisor")
    env.clock.advance(12 * 3600 - 1)
    assert (await env.client.get("/wallboard")).status_code == 200
    env.clock.advance(2)
    assert (await env.client.get("/wallboard")).status_code == 303


async def test_logout_ends_the_session(env: WebEnv) -> None:
    csrf = await env.sign_in("auditor")
    cookie = env.client.cookies.get("cc112_session")
    r = await env.client.post("/logout", data={"csrf_token": csrf})
    assert r.status_code == 303
    env.client.cookies.set("cc112_session", cookie or "")
    assert (await env.client.get("/audit")).status_code == 303
    assert [e.actor for e in await env.store.list_audit(action="logout")] == ["auditor"]


async def test_bearer_token_authenticates_without_csrf(env: WebEnv) -> None:
    headers = {"Authorization": f"Bearer {API_TOKEN}"}
    r = await env.client.get("/api/v1/queue", headers=headers)
    assert r.status_code == 200
    r = await env.client.post(
        "/api/v1/operators/op1/pause", headers=headers, json={"reason": "rapat"}
    )
    assert r.status_code == 200
    assert env.live.actions[-1][1]["actor"] == "token:cad"
    bad = await env.client.get("/api/v1/queue", headers={"Authorization": "Bearer nope"})
    assert bad.status_code == 401 and bad.headers["www-authenticate"] == "Bearer"
    odd = await env.client.get("/api/v1/queue", headers={"Authorization": "Basic eDp5"})
    assert odd.status_code == 401


async def test_security_headers_on_every_page(env: WebEnv) -> None:
    for path in ("/login", "/api/v1/openapi.json", "/healthz"):
        r = await env.client.get(path)
        assert "script-src 'self'" in r.headers["content-security-policy"]
        assert "'unsafe-inline'" not in r.headers["content-security-policy"]
        assert r.headers["x-frame-options"] == "DENY"
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["cache-control"] == "no-store"
    page = await env.client.get("/login")
    assert "<script>" not in page.text  # no inline script anywhere


async def test_session_page_carries_its_csrf_token(env: WebEnv) -> None:
    csrf = await env.sign_in("op1")
    page = await env.client.get("/console")
    assert csrf_of(page.text) == csrf and len(csrf) >= 40
    assert f'name="csrf_token" value="{csrf}"' in page.text
