"""Dereference a location URI (RFC 6442 by reference, RFC 6753 HELD dereference) off the call path.

An INVITE's ``Geolocation: <https://…>`` points at the caller's PIDF-LO on a
Location Information Server. The call is answered first; this fetch runs as
its own task afterwards and hands its fixes to the location sink. It is
bounded in every way a hostile or broken server could stretch it:

- ``https:`` only, certificate and host name verified (RFC 6753 §6: the
  dereference must be authenticated and confidential);
- one GET, ``Connection: close``, the whole exchange under `FETCH_TIMEOUT_S`;
- headers at most `MAX_HEADER_BYTES`, the body at most `pidf.MAX_PIDF_SIZE`
  (refused as soon as it is known to be larger);
- any failure (DNS, refused, TLS, timeout, status, size, content type, XML)
  is one ``valid=False`` fix whose reason names the URI and the cause — never
  an exception.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from typing import Final
from urllib.parse import urlsplit

from ..location.fix import Fix
from ..location.pidf import MAX_PIDF_SIZE, PIDF_CONTENT_TYPE, parse_pidf

__all__ = ["FETCH_TIMEOUT_S", "MAX_HEADER_BYTES", "fetch_location"]

# RFC 6753 sets no figure; the operator needs the fix within a second or two of
# the answer (DESIGN §7), and a LIS on the carrier's network answers in ms.
FETCH_TIMEOUT_S: Final = 2.0
MAX_HEADER_BYTES: Final = 8192
_ACCEPT: Final = f"{PIDF_CONTENT_TYPE}, application/held+xml;q=0.5"


class _Refused(Exception):
    pass


async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str], limit: int) -> bytes:
    if headers.get("transfer-encoding", "").lower() == "chunked":
        out = bytearray()
        while True:
            line = await reader.readuntil(b"\r\n")
            size = int(line.split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                return bytes(out)
            if len(out) + size > limit:
                raise _Refused(f"body larger than {limit} bytes")
            out += await reader.readexactly(size)
            await reader.readexactly(2)
    declared = headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise _Refused("Content-Length is not a number")
        if int(declared) > limit:
            raise _Refused(f"body of {declared} bytes is larger than {limit}")
        return await reader.readexactly(int(declared))
    data = await reader.read(limit + 1)
    if len(data) > limit:
        raise _Refused(f"body larger than {limit} bytes")
    return data


async def _get(uri: str, context: ssl.SSLContext, limit: int) -> tuple[str, bytes]:
    parts = urlsplit(uri)
    if parts.scheme != "https" or not parts.hostname:
        raise _Refused("only https: location URIs are dereferenced")
    host, port = parts.hostname, parts.port or 443
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    reader, writer = await asyncio.open_connection(
        host, port, ssl=context, server_hostname=host, limit=MAX_HEADER_BYTES
    )
    try:
        host_header = f"[{host}]" if ":" in host else host
        if parts.port:
            host_header += f":{port}"
        writer.write(
            (
                f"GET {target} HTTP/1.1\r\nHost: {host_header}\r\nAccept: {_ACCEPT}\r\n"
                "User-Agent: callcenter112\r\nConnection: close\r\n\r\n"
            ).encode("ascii")
        )
        await writer.drain()
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError:
            raise _Refused(f"response headers longer than {MAX_HEADER_BYTES} bytes") from None
        lines = head.decode("latin-1").split("\r\n")
        status = lines[0].split(" ", 2)
        if len(status) < 2 or not status[1].isdigit():
            raise _Refused("not an HTTP response")
        if status[1] != "200":
            raise _Refused(f"HTTP {status[1]}")
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, colon, value = line.partition(":")
            if colon:
                headers[name.strip().lower()] = value.strip()
        body = await _read_body(reader, headers, limit)
        return headers.get("content-type", ""), body
    finally:
        writer.close()


async def fetch_location(
    uri: str,
    *,
    clock: Callable[[], float],
    timeout_s: float = FETCH_TIMEOUT_S,
    ssl_context: ssl.SSLContext | None = None,
    limit: int = MAX_PIDF_SIZE,
) -> tuple[Fix, ...]:
    """The fixes behind `uri`, or one invalid fix saying why there are none."""
    context = ssl_context if ssl_context is not None else ssl.create_default_context()

    def failed(reason: str) -> tuple[Fix, ...]:
        return (Fix.invalid(source="pidf", at=clock(), reason=f"{uri[:120]}: {reason}"),)

    try:
        async with asyncio.timeout(timeout_s):
            content_type, body = await _get(uri, context, limit)
    except _Refused as exc:
        return failed(str(exc))
    except TimeoutError:
        return failed(f"no answer within {timeout_s:g} s")
    except ssl.SSLError as exc:
        return failed(f"TLS: {exc.reason or exc}")
    except (OSError, asyncio.IncompleteReadError, ValueError, UnicodeError) as exc:
        return failed(f"{type(exc).__name__}: {str(exc)[:100]}")
    return parse_pidf(body, content_type=content_type, now=clock())
