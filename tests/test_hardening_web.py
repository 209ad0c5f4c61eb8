"""Issue 11, web console: TLS, trusted proxies, Secure cookies, /metrics token, caps."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from callcenter112.web import WebServer
from callcenter112.web.auth import new_api_token
from test_web_pages import SseReader
from test_web_support import PASSWORDS, T0, WebEnv, web_env


def _cert(folder: Path) -> tuple[Path, Path]:
    cert, key = folder / "console.crt", folder / "console.key"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-nodes", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
            "-days", "2", "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


@contextlib.asynccontextmanager
async def serving(env: WebEnv) -> AsyncIterator[int]:
    server = WebServer(env.app, "127.0.0.1", 0)
    task = asyncio.create_task(server.serve_until_cancelled())
    await asyncio.wait_for(server.ready.wait(), 30)
    try:
        yield server.bound_port
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _sign_in(client: httpx.AsyncClient, user: str) -> httpx.Response:
    page = await client.get("/login")
    token = page.text.split('name="login_csrf" value="', 1)[1].split('"', 1)[0]
    return await client.post(
        "/login", data={"login_csrf": token, "user": user, "password": PASSWORDS[user]}
    )


async def test_console_over_tls_sets_a_secure_cookie(tmp_path: Path) -> None:
    cert, key = _cert(tmp_path)
    async with (
        web_env(tmp_path, tls_certificate=str(cert), tls_key=str(key)) as env,
        serving(env) as port,
    ):
        trust = ssl.create_default_context(cafile=str(cert))
        async with httpx.AsyncClient(base_url=f"https://127.0.0.1:{port}", verify=trust) as client:
            r = await _sign_in(client, "supervisor")
            assert r.status_code == 303
            cookie = r.headers["set-cookie"]
            assert "cc112_session=" in cookie and "Secure" in cookie and "HttpOnly" in cookie
        # Plain HTTP on the TLS port is not served.
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as plain:
            with pytest.raises(httpx.HTTPError):
                await plain.get("/login")


async def _proxied(tmp_path: Path, client_ip: str) -> AsyncIterator[WebEnv]:
    tmp_path.mkdir()
    async with web_env(tmp_path, trusted_proxies=["10.9.0.0/16"]) as env:
        transport = httpx.ASGITransport(app=env.app, client=(client_ip, 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            env.client = c
            yield env


async def _login_via(env: WebEnv, headers: dict[str, str]) -> tuple[str, str]:
    """GET and POST /login with `headers`; (the login page's Set-Cookie, the audited ip)."""
    page = await env.client.get("/login", headers=headers)
    set_cookie = page.headers["set-cookie"]
    login_cookie = set_cookie.split(";", 1)[0]
    token = page.text.split('name="login_csrf" value="', 1)[1].split('"', 1)[0]
    await env.client.post(
        "/login",
        data={"login_csrf": token, "user": "supervisor", "password": "wrong-password"},
        headers={**headers, "Cookie": login_cookie},
    )
    [failed] = await env.store.list_audit(action="login_failed")
    return set_cookie, str(failed.detail["ip"])


async def test_forwarded_headers_only_from_trusted_proxies(tmp_path: Path) -> None:
    spoof = {"X-Forwarded-For": "192.0.2.99, 198.51.100.1", "X-Forwarded-Proto": "https"}
    # From the proxy: the client's address (the rightmost hop) and scheme are believed.
    async for env in _proxied(tmp_path / "a", "10.9.0.5"):
        cookie, ip = await _login_via(env, spoof)
        assert "Secure" in cookie and ip == "198.51.100.1"
    # From anyone else: the headers are ignored.
    async for env in _proxied(tmp_path / "b", "203.0.113.7"):
        cookie, ip = await _login_via(env, spoof)
        assert "Secure" not in cookie and ip == "203.0.113.7"


async def test_metrics_can_require_a_token(tmp_path: Path) -> None:
    token, digest = new_api_token()
    async with web_env(tmp_path, metrics_token=digest) as env:
        assert (await env.client.get("/metrics")).status_code == 401
        wrong = await env.client.get("/metrics", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        ok = await env.client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
        assert ok.status_code == 200 and ok.text
    (tmp_path / "open").mkdir()
    async with web_env(tmp_path / "open") as env:
        assert (await env.client.get("/metrics")).status_code == 200


async def test_live_streams_are_capped_per_account(tmp_path: Path) -> None:
    async with web_env(tmp_path, max_streams_per_account=1) as env, serving(env) as port:
        await env.sign_in("supervisor")
        session = env.client.cookies.get("cc112_session")
        base = f"http://127.0.0.1:{port}"
        async with (
            httpx.AsyncClient(base_url=base, cookies={"cc112_session": session}) as one,
            httpx.AsyncClient(base_url=base, cookies={"cc112_session": session}) as two,
            one.stream("GET", "/wallboard/events") as first,
        ):
            await SseReader(first).until("waiting")
            async with two.stream("GET", "/wallboard/events") as second:
                assert "too_many_streams" in await SseReader(second).until("bye")
        for _ in range(100):
            if not env.app.state.web.stream_counts:
                break
            await asyncio.sleep(0.01)
        assert env.app.state.web.stream_counts == {}


async def test_only_the_holder_or_a_supervisor_closes_a_callback_by_api(tmp_path: Path) -> None:
    from test_web_api import BEARER, _abandoned

    async with web_env(tmp_path) as env:
        _, cb = await _abandoned(env)
        csrf = await env.sign_in("op1")
        h = {"X-CSRF-Token": csrf}
        url = f"/api/v1/callbacks/{cb}/close"
        untaken = await env.client.post(url, headers=h, json={"outcome": "handled"})
        assert untaken.status_code == 403 and "take it first" in untaken.json()["error"]
        await env.store.callback_take(cb, actor="op2", at=T0)
        theirs = await env.client.post(url, headers=h, json={"outcome": "handled"})
        assert theirs.status_code == 403 and "held by op2" in theirs.json()["error"]
        free_text = await env.client.post(url, headers=BEARER, json={"outcome": "whatever"})
        assert free_text.status_code == 422
        sup = await env.client.post(url, headers=BEARER, json={"outcome": "handled"})
        assert sup.status_code == 200 and sup.json()["status"] == "closed"
