"""Request bodies and the web layer's one error type.

`WebError` carries its HTTP answer (status and message), like the SIP
layer's parse errors: handlers raise it, the app turns it into a JSON
``{"error": ...}`` for API clients or an error page for browsers.

`Payload.read` takes a request body under a size limit — refused with 413 as
soon as the Content-Length header or the bytes received pass it, before the
rest is read — and parses it as a JSON object or an urlencoded form (the two
things the console's pages and API clients send). Its typed getters turn a
wrong type into a 400 naming the field, so handlers never see a surprise.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from typing import Literal
from urllib.parse import parse_qs

from starlette.requests import Request

from ..numerals import is_ascii_digits

__all__ = ["MAX_BODY", "Payload", "WebError", "read_body"]

# Longest request body accepted (a disposition form is a few KiB of text).
MAX_BODY = 64 * 1024
_MAX_FIELDS = 200
_TRUE = frozenset({"1", "true", "on", "yes"})
_FALSE = frozenset({"", "0", "false", "off", "no"})


class WebError(Exception):
    """A request refused by the web layer; `status` is the HTTP answer."""

    def __init__(
        self, status: int, message: str, *, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})


async def read_body(request: Request, *, limit: int = MAX_BODY) -> bytes:
    """The whole body, or `WebError` 413 once it is known to pass `limit`."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not is_ascii_digits(declared.strip()):
            raise WebError(400, "Content-Length is not a number")
        if int(declared) > limit:
            raise WebError(413, f"request body larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise WebError(413, f"request body larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


class Payload:
    """A parsed request body: a JSON object, a form, or nothing."""

    __slots__ = ("_data", "kind")

    def __init__(
        self,
        kind: Literal["json", "form", "empty"],
        data: Mapping[str, object] | None = None,
    ) -> None:
        self.kind = kind
        self._data: dict[str, object] = dict(data or {})

    @classmethod
    async def read(cls, request: Request, *, limit: int = MAX_BODY) -> Payload:
        body = await read_body(request, limit=limit)
        if not body:
            return cls("empty")
        media = _media_type(request)
        if media == "application/json":
            try:
                value = json.loads(body)
            except (ValueError, RecursionError) as exc:
                raise WebError(400, f"body is not valid JSON: {exc}") from None
            if not isinstance(value, dict):
                raise WebError(400, "body must be a JSON object")
            return cls("json", value)
        if media == "application/x-www-form-urlencoded":
            try:
                fields = parse_qs(
                    body.decode("utf-8"),
                    keep_blank_values=True,
                    max_num_fields=_MAX_FIELDS,
                    errors="strict",
                )
            except (UnicodeDecodeError, ValueError) as exc:
                raise WebError(400, f"form is not valid: {exc}") from None
            return cls("form", fields)
        raise WebError(
            415, "send application/json or application/x-www-form-urlencoded, not " + repr(media)
        )

    def __contains__(self, name: str) -> bool:
        return name in self._data

    def keys(self) -> list[str]:
        return list(self._data)

    def only(self, allowed: Collection[str]) -> None:
        """Refuse fields this endpoint does not know (typos must not pass silently)."""
        extra = sorted(k for k in self._data if k not in allowed and k != "csrf_token")
        if extra:
            raise WebError(400, f"unknown field(s): {', '.join(extra)}")

    def _raw(self, name: str) -> object:
        value = self._data.get(name)
        if self.kind == "form" and isinstance(value, list):
            if len(value) > 1:
                raise WebError(400, f"{name}: given more than once")
            return value[0] if value else None
        return value

    def text(self, name: str, *, required: bool = False, max_len: int = 10_000) -> str | None:
        """A string field, stripped; None (or 400 if `required`) when absent or empty."""
        value = self._raw(name)
        if value is None:
            if required:
                raise WebError(400, f"{name}: required")
            return None
        if not isinstance(value, str):
            raise WebError(400, f"{name}: expected a string, got {type(value).__name__}")
        value = value.strip()
        if len(value) > max_len:
            raise WebError(400, f"{name}: longer than {max_len} characters")
        if not value:
            if required:
                raise WebError(400, f"{name}: required")
            return None
        return value

    def secret(self, name: str, *, max_len: int = 1024) -> str:
        """A string taken as typed (a password: no stripping); empty when absent."""
        value = self._raw(name)
        if value is None:
            return ""
        if not isinstance(value, str):
            raise WebError(400, f"{name}: expected a string")
        if len(value) > max_len:
            raise WebError(400, f"{name}: longer than {max_len} characters")
        return value

    def number(self, name: str, *, low: float, high: float) -> float | None:
        """A finite number (JSON number or form text) in [low, high]; None when absent.

        400 for a non-number, 422 outside the range.
        """
        value = self._raw(name)
        if value is None or value == "":
            return None
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise WebError(400, f"{name}: expected a number")
        try:
            number = float(value)
        except ValueError:
            raise WebError(400, f"{name}: expected a number, got {value!r}"[:100]) from None
        if not low <= number <= high:  # also refuses NaN
            raise WebError(422, f"{name}: must lie in {low:g}..{high:g}")
        return number

    def flag(self, name: str, *, default: bool = False) -> bool:
        value = self._raw(name)
        if value is None:
            return default
        if isinstance(value, bool):
            return value
        if self.kind == "form" and isinstance(value, str) and value.lower() in _TRUE | _FALSE:
            return value.lower() in _TRUE
        raise WebError(400, f"{name}: expected true or false, got {value!r}"[:200])

    def texts(self, name: str, *, max_items: int = 50, max_len: int = 200) -> list[str]:
        """A list of strings (repeated form field, or a JSON array of strings)."""
        value = self._data.get(name)
        if value is None:
            return []
        if not isinstance(value, list):
            raise WebError(400, f"{name}: expected a list of strings")
        if len(value) > max_items:
            raise WebError(400, f"{name}: more than {max_items} items")
        out: list[str] = []
        for item in value:
            if not isinstance(item, str):
                raise WebError(400, f"{name}: expected a list of strings")
            text = item.strip()
            if len(text) > max_len:
                raise WebError(400, f"{name}: an item is longer than {max_len} characters")
            if text and text not in out:
                out.append(text)
        return out

    def csrf_token(self) -> str | None:
        if self.kind != "form":
            return None
        value = self._data.get("csrf_token")
        if isinstance(value, list) and len(value) == 1 and isinstance(value[0], str):
            return value[0]
        return None
