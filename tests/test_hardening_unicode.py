"""Issue 11: Unicode digits in an API field, a form or a SIP header are a 400, never a 500.

`str.isdigit()` accepts superscripts, Arabic-Indic, full-width and mathematical digits;
`int()` then raises on some of them. The fuzz sends each to every API query parameter
and path parameter (from the OpenAPI document, so new routes are covered), to the
Content-Length and Range headers, and into every numeric SIP field.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from callcenter112.numerals import is_ascii_digits
from callcenter112.sip.errors import SipParseError
from callcenter112.sip.message import Request, parse_message
from callcenter112.web.openapi import OPENAPI
from test_web_support import API_TOKEN, WebEnv, web_env

DIGITS = [chr(0xB2), chr(0x663) * 2, chr(0xFF11) * 3, chr(0x1D7D9), "1" + chr(0xB9)]


def test_only_ascii_digits_are_digits() -> None:
    assert is_ascii_digits("0123456789")
    for text in [*DIGITS, "", "1 ", "-1", "+1"]:
        assert not is_ascii_digits(text), text


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[WebEnv]:
    async with web_env(tmp_path) as e:
        yield e


async def test_api_answers_unicode_digits_with_4xx(env: WebEnv) -> None:
    auth = {"Authorization": f"Bearer {API_TOKEN}"}
    checked = 0
    for path, ops in OPENAPI["paths"].items():
        for method, op in ops.items():
            for param in op.get("parameters", []):
                for digits in DIGITS:
                    url = path
                    query: dict[str, str] = {}
                    if param["in"] == "path":
                        url = path.replace("{" + param["name"] + "}", digits)
                    else:
                        query[param["name"]] = digits
                    for name in ("{incident_id}", "{user}", "{callback_id}"):
                        url = url.replace(name, "1")
                    r = await env.client.request(
                        method.upper(), url, params=query, headers=auth, json={}
                    )
                    assert r.status_code < 500, (method, url, query, r.status_code)
                    numeric = param.get("schema", {}).get("type") == "integer"
                    if numeric or param["in"] == "path":
                        assert r.status_code >= 400, (method, url, query, r.status_code)
                    assert "Traceback" not in r.text
                    checked += 1
    assert checked > 50


async def test_numeric_headers_with_unicode_digits_are_refused(env: WebEnv) -> None:
    auth = {"Authorization": f"Bearer {API_TOKEN}"}
    # Starlette reads headers as Latin-1: the superscripts are the ones that reach us.
    for digit in ("\xb2", "\xb3", "\xb9"):
        r = await env.client.post(
            "/api/v1/callbacks/1/close",
            content=b"{}",
            headers={
                **auth,
                "Content-Length": digit.encode("latin-1"),  # type: ignore[dict-item]
                "Content-Type": "application/json",
            },
        )
        assert r.status_code == 400, r.text


_SIP = (
    "INVITE sip:112@127.0.0.1 SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK1;rport={rport}\r\n"
    "From: <sip:0812@127.0.0.1>;tag=1\r\nTo: <sip:112@127.0.0.1>\r\n"
    "Call-ID: x\r\nCSeq: {cseq} INVITE\r\nMax-Forwards: {mf}\r\nExpires: {exp}\r\n"
    "Content-Length: {cl}\r\n\r\n"
)
_GOOD = {"port": "5060", "rport": "5060", "cseq": "1", "mf": "70", "exp": "60", "cl": "0"}


@pytest.mark.parametrize("field", list(_GOOD))
@pytest.mark.parametrize("digits", DIGITS)
def test_sip_numbers_in_unicode_digits_are_parse_errors(field: str, digits: str) -> None:
    data = _SIP.format(**{**_GOOD, field: digits}).encode()
    try:
        msg = parse_message(data)
    except SipParseError as exc:
        assert exc.status_hint == 400
        return
    assert isinstance(msg, Request)
    # Parsed lazily: the field itself must be refused, the same way.
    if field == "mf":
        assert msg.max_forwards is None  # RFC 4475 §3.1.2.4: as if absent
    elif field == "exp":
        with pytest.raises(SipParseError):
            _ = msg.expires
    elif field == "cseq":
        with pytest.raises(SipParseError):
            _ = msg.cseq
    elif field == "rport":
        via = msg.headers.get("Via") or ""
        assert digits in via  # kept as text; never turned into a port (transaction.py)
