"""net/geoloc_fetch.py against a real HTTPS server on loopback with a self-signed certificate."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from callcenter112.net.geoloc_fetch import fetch_location
from location_samples import HOSTILE, SHAPES, pidf

NOW = 1_796_000_000.0

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@dataclass
class Lis:
    """A Location Information Server on loopback; `respond` decides each answer."""

    port: int
    client_ctx: ssl.SSLContext
    respond: list[Handler]
    requests: list[bytes]

    def url(self, path: str = "/loc/1") -> str:
        return f"https://localhost:{self.port}{path}"


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("tls")
    key, crt = d / "key.pem", d / "cert.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-keyout", str(key), "-out", str(crt), "-subj", "/CN=localhost",
            "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return key, crt


def answer(status: str, content_type: str, body: bytes, *, extra: str = "") -> Handler:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(
            f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n{extra}Connection: close\r\n\r\n".encode()
            + body
        )
        await writer.drain()

    return handle


@pytest.fixture
async def lis(cert: tuple[Path, Path]) -> AsyncIterator[Lis]:
    key, crt = cert
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(crt, key)
    client_ctx = ssl.create_default_context(cafile=str(crt))
    state = Lis(port=0, client_ctx=client_ctx, respond=[], requests=[])

    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            state.requests.append(await reader.readuntil(b"\r\n\r\n"))
            await state.respond.pop(0)(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(on_client, "127.0.0.1", 0, ssl=server_ctx)
    state.port = server.sockets[0].getsockname()[1]
    try:
        yield state
    finally:
        server.close()
        await server.wait_closed()


async def fetch(lis: Lis, **kw: object) -> tuple:  # type: ignore[type-arg]
    return await fetch_location(lis.url(), clock=lambda: NOW, ssl_context=lis.client_ctx, **kw)  # type: ignore[arg-type]


async def test_fetches_a_pidf_lo_by_reference(lis: Lis) -> None:
    lis.respond.append(answer("200 OK", "application/pidf+xml", pidf(SHAPES["Circle"])))
    (fix,) = await fetch(lis)
    assert fix.valid and fix.radius_m == 850.0 and fix.shape == "Circle"
    request = lis.requests[0].decode()
    assert request.startswith("GET /loc/1 HTTP/1.1\r\n")
    assert f"Host: localhost:{lis.port}" in request and "application/pidf+xml" in request


async def test_chunked_answer(lis: Lis) -> None:
    doc = pidf(SHAPES["Point"])

    async def chunked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        half = len(doc) // 2
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/pidf+xml\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
            + f"{half:x}\r\n".encode() + doc[:half] + b"\r\n"
            + f"{len(doc) - half:x}\r\n".encode() + doc[half:] + b"\r\n0\r\n\r\n"
        )  # fmt: skip
        await writer.drain()

    lis.respond.append(chunked)
    (fix,) = await fetch(lis)
    assert fix.valid and fix.shape == "Point"


@pytest.mark.parametrize(
    ("handler", "why"),
    [
        (answer("404 Not Found", "text/plain", b"gone"), "HTTP 404"),
        (answer("200 OK", "text/html", b"<html/>"), "not application/pidf+xml"),
        (answer("200 OK", "application/pidf+xml", HOSTILE["billion-laughs"]), "DTDForbidden"),
        (answer("200 OK", "application/pidf+xml", b"x" * 70_000), "larger than"),
    ],
)
async def test_failures_are_invalid_fixes_naming_the_cause(
    lis: Lis, handler: Handler, why: str
) -> None:
    lis.respond.append(handler)
    (fix,) = await fetch(lis)
    assert not fix.valid and fix.reason is not None and why in fix.reason, fix.reason


async def test_a_server_that_stalls_is_cut_off(lis: Lis) -> None:
    async def stall(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(5)

    lis.respond.append(stall)
    start = asyncio.get_running_loop().time()
    (fix,) = await fetch(lis, timeout_s=0.3)
    assert asyncio.get_running_loop().time() - start < 2.0
    assert not fix.valid and "no answer within 0.3 s" in (fix.reason or "")


async def test_an_untrusted_certificate_is_refused(lis: Lis) -> None:
    lis.respond.append(answer("200 OK", "application/pidf+xml", pidf(SHAPES["Circle"])))
    (fix,) = await fetch_location(lis.url(), clock=lambda: NOW)  # the system's trust store
    assert (
        not fix.valid
        and "TLS" in (fix.reason or "")
        and "CERTIFICATE_VERIFY_FAILED" in (fix.reason or "")
    )


async def test_only_https_is_dereferenced() -> None:
    (fix,) = await fetch_location("http://127.0.0.1:9/loc", clock=lambda: NOW)
    assert not fix.valid and "only https" in (fix.reason or "")


async def test_nobody_listening(lis: Lis) -> None:
    (fix,) = await fetch_location(
        "https://127.0.0.1:1/x", clock=lambda: NOW, ssl_context=lis.client_ctx
    )
    assert not fix.valid and "ConnectionRefusedError" in (fix.reason or "")
