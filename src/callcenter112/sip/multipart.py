"""Multipart message bodies (RFC 2046 §5.1) as SIP carries them (RFC 5621).

An emergency INVITE from a carrier or an NG112 network may carry its SDP
offer together with the caller's location (``application/pidf+xml``, RFC
6442) and additional emergency data (RFC 7852) in one ``multipart/mixed``
body. `split_body` takes the request's Content-Type and body and returns the
SDP (or None) with every other part, and notes about what it could not read;
it never raises, so no body can cost a call. `parse_multipart` is the strict
parser underneath: it raises `MultipartError` with the reason.

Each part keeps its ``Content-ID`` (RFC 2392: the target of a ``cid:`` URI in
a Geolocation or Call-Info header), its media type and parameters, and its
bytes. Nested multiparts are kept as a part, not descended into.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final
from urllib.parse import unquote

from .message import MAX_BODY_SIZE

__all__ = [
    "MAX_BOUNDARY",
    "MAX_PARTS",
    "MAX_PART_HEADERS",
    "BodyPart",
    "MultipartError",
    "SplitBody",
    "cid_matches",
    "parse_content_type",
    "parse_multipart",
    "serialize_multipart",
    "split_body",
]

MAX_BOUNDARY: Final = 70  # RFC 2046 §5.1.1: "boundary := 0*69<bchars> bcharsnospace"
# An emergency INVITE carries SDP, PIDF-LO and a few RFC 7852 blocks (ProviderInfo,
# DeviceInfo, SubscriberInfo, Comment): 16 leaves room; more is not a real phone.
MAX_PARTS: Final = 16
MAX_PART_HEADERS: Final = 16  # per part: Content-Type/-ID/-Disposition/-Transfer-Encoding…
# The whole body already fits in one SIP message (message.MAX_BODY_SIZE, RFC 3261 §18.1.1).
MAX_MULTIPART_BODY: Final = MAX_BODY_SIZE

_SDP = "application/sdp"


class MultipartError(ValueError):
    """A multipart body that cannot be split; `reason` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True, kw_only=True)
class BodyPart:
    media_type: str  # lower-case "type/subtype"; "text/plain" when absent (RFC 2046 §5.1)
    params: tuple[tuple[str, str], ...]
    content_id: str | None  # without the angle brackets
    disposition: str | None
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def param(self, name: str) -> str | None:
        return next((v for k, v in self.params if k == name.lower()), None)


@dataclass(frozen=True, slots=True, kw_only=True)
class SplitBody:
    sdp: bytes | None
    parts: tuple[BodyPart, ...]  # every part but the SDP that was taken
    notes: tuple[str, ...]  # what was not understood, for the incident


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        out, i, inner = [], 0, value[1:-1]
        while i < len(inner):
            if inner[i] == "\\" and i + 1 < len(inner):
                i += 1
            out.append(inner[i])
            i += 1
        return "".join(out)
    return value


def _split_params(text: str) -> list[str]:
    items, buf, quoted, escaped = [], [], False, False
    for ch in text:
        if escaped:
            buf.append(ch)
            escaped = False
        elif ch == "\\" and quoted:
            buf.append(ch)
            escaped = True
        elif ch == '"':
            buf.append(ch)
            quoted = not quoted
        elif ch == ";" and not quoted:
            items.append("".join(buf))
            buf = []
        else:
            buf.append(ch)
    items.append("".join(buf))
    return items


def parse_content_type(value: str | None) -> tuple[str, tuple[tuple[str, str], ...]]:
    """("type/subtype" lower-case, ((param, value), ...)); ("", ()) when absent.

    Raises `MultipartError` for a value that is not ``type/subtype *(; p=v)``.
    """
    if value is None or not value.strip():
        return "", ()
    head, *rest = _split_params(value)
    media = head.strip().lower()
    kind, slash, sub = media.partition("/")
    if not slash or not kind or not sub or any(c.isspace() for c in media):
        raise MultipartError(f"Content-Type {value[:60]!r} is not type/subtype")
    params: list[tuple[str, str]] = []
    for item in rest:
        if not item.strip():
            continue
        name, eq, val = item.partition("=")
        if not eq or not name.strip():
            raise MultipartError(f"Content-Type parameter {item[:40]!r} has no value")
        params.append((name.strip().lower(), _unquote(val)))
    return media, tuple(params)


def _headers(block: bytes) -> list[tuple[str, str]]:
    try:
        text = block.decode("utf-8")
    except UnicodeDecodeError:
        raise MultipartError("a part's headers are not UTF-8") from None
    lines: list[str] = []
    for line in text.replace("\r\n", "\n").split("\n"):
        if line[:1] in (" ", "\t") and lines:
            lines[-1] += " " + line.strip()  # folded (RFC 5322 §2.2.3)
        elif line:
            lines.append(line)
    if len(lines) > MAX_PART_HEADERS:
        raise MultipartError(f"a part has more than {MAX_PART_HEADERS} headers")
    out = []
    for line in lines:
        name, colon, value = line.partition(":")
        if not colon or not name.strip() or any(c.isspace() for c in name.strip()):
            raise MultipartError(f"part header {line[:40]!r} is not 'Name: value'")
        out.append((name.strip().lower(), value.strip()))
    return out


def _part(raw: bytes) -> BodyPart:
    # Headers end at the first empty line; a part may have none (then it starts with CRLF).
    if raw.startswith(b"\r\n"):
        head, body = b"", raw[2:]
    elif raw.startswith(b"\n"):
        head, body = b"", raw[1:]
    else:
        cut = raw.find(b"\r\n\r\n")
        sep = 4
        lf = raw.find(b"\n\n")
        if lf != -1 and (cut == -1 or lf < cut):
            cut, sep = lf, 2
        if cut == -1:
            raise MultipartError("a part has no empty line after its headers")
        head, body = raw[:cut], raw[cut + sep :]
    headers = _headers(head)
    found = dict(headers)
    media, params = parse_content_type(found.get("content-type") or "text/plain")
    cid = found.get("content-id")
    if cid is not None:
        cid = cid.strip()
        if cid.startswith("<") and cid.endswith(">"):
            cid = cid[1:-1]
        cid = cid.strip() or None
    encoding = found.get("content-transfer-encoding", "binary").lower()
    if encoding not in ("binary", "8bit", "7bit"):
        # RFC 5621 §3.1: SIP is 8-bit clean, so parts travel as binary.
        raise MultipartError(f"Content-Transfer-Encoding {encoding[:20]!r} is not supported")
    disposition = found.get("content-disposition")
    return BodyPart(
        media_type=media,
        params=params,
        content_id=cid,
        disposition=None if disposition is None else disposition.split(";", 1)[0].strip().lower(),
        headers=tuple(headers),
        body=body,
    )


def parse_multipart(body: bytes, boundary: str) -> tuple[BodyPart, ...]:
    """The parts of a multipart body (RFC 2046 §5.1.1); `MultipartError` when malformed."""
    if len(body) > MAX_MULTIPART_BODY:
        raise MultipartError(f"multipart body larger than {MAX_MULTIPART_BODY} bytes")
    if not boundary or len(boundary) > MAX_BOUNDARY or boundary.endswith(" "):
        raise MultipartError(f"boundary must be 1-{MAX_BOUNDARY} characters, not ending in space")
    try:
        boundary.encode("ascii")
    except UnicodeEncodeError:
        raise MultipartError("boundary is not ASCII") from None
    delim = b"--" + boundary.encode("ascii")
    # A delimiter line starts the body or follows a line break (RFC 2046 §5.1.1).
    if body.startswith(delim):
        pos = 0
    else:
        pos = body.find(b"\n" + delim)
        if pos == -1:
            raise MultipartError("the boundary does not occur in the body")
        pos += 1
    parts: list[BodyPart] = []
    while True:
        after = pos + len(delim)
        if body[after : after + 2] == b"--":
            return tuple(parts)  # close-delimiter; the epilogue is ignored
        eol = body.find(b"\n", after)
        if eol == -1:
            raise MultipartError("the body ends inside a delimiter line")
        if body[after:eol].strip(b" \t\r"):
            raise MultipartError("text after a boundary on its line")
        start = eol + 1
        nxt = body.find(b"\n" + delim, start - 1)
        if nxt == -1:
            raise MultipartError("no closing boundary")
        end = nxt - 1 if nxt > 0 and body[nxt - 1 : nxt] == b"\r" else nxt
        if len(parts) >= MAX_PARTS:
            raise MultipartError(f"more than {MAX_PARTS} parts")
        parts.append(_part(body[start:end] if end >= start else b""))
        pos = nxt + 1


def split_body(content_type: str | None, body: bytes) -> SplitBody:
    """The SDP offer of an INVITE and its other parts; never raises.

    No body, or ``application/sdp`` (also an absent Content-Type with a body,
    as sloppy phones send): the body is the SDP. ``multipart/mixed`` (or
    ``multipart/related``/``alternative``): the first ``application/sdp``
    part is the SDP, the rest are returned. Anything else: no SDP and a note —
    the caller decides to answer without an offer, never to refuse.
    """
    if not body:
        return SplitBody(sdp=None, parts=(), notes=())
    try:
        media, params = parse_content_type(content_type)
    except MultipartError as exc:
        return SplitBody(sdp=None, parts=(), notes=(f"body not read: {exc.reason}",))
    if media in ("", _SDP):
        return SplitBody(sdp=body, parts=(), notes=())
    if not media.startswith("multipart/"):
        return SplitBody(sdp=None, parts=(), notes=(f"body of type {media} ignored",))
    boundary = dict(params).get("boundary")
    if boundary is None:
        return SplitBody(sdp=None, parts=(), notes=(f"{media} without a boundary ignored",))
    try:
        parts = parse_multipart(body, boundary)
    except MultipartError as exc:
        return SplitBody(sdp=None, parts=(), notes=(f"{media} body not read: {exc.reason}",))
    sdp: bytes | None = None
    rest: list[BodyPart] = []
    for part in parts:
        if sdp is None and part.media_type == _SDP:
            sdp = part.body
        else:
            rest.append(part)
    notes = () if sdp is not None else (f"{media} body has no application/sdp part",)
    return SplitBody(sdp=sdp, parts=tuple(rest), notes=notes)


def cid_matches(uri: str, part: BodyPart) -> bool:
    """Whether a ``cid:`` URI (RFC 2392 §2: %-encoded, no brackets) names this part."""
    if uri[:4].lower() != "cid:" or part.content_id is None:
        return False
    return unquote(uri[4:]) == part.content_id


def serialize_multipart(parts: list[BodyPart] | tuple[BodyPart, ...], boundary: str) -> bytes:
    """A ``multipart/mixed`` body of these parts (RFC 2046 §5.1.1), CRLF line ends.

    Raises `MultipartError` if the boundary is not allowed or occurs in a part
    (the caller picks another).
    """
    if not boundary or len(boundary) > MAX_BOUNDARY or boundary.endswith(" "):
        raise MultipartError(f"boundary must be 1-{MAX_BOUNDARY} characters, not ending in space")
    delim = b"--" + boundary.encode("ascii")
    out = bytearray()
    for part in parts:
        if delim in part.body:
            raise MultipartError("the boundary occurs inside a part")
        out += delim + b"\r\n"
        params = "".join(f";{k}={v}" for k, v in part.params)
        out += f"Content-Type: {part.media_type}{params}\r\n".encode()
        if part.content_id:
            out += f"Content-ID: <{part.content_id}>\r\n".encode()
        if part.disposition:
            out += f"Content-Disposition: {part.disposition}\r\n".encode()
        out += b"\r\n" + part.body + b"\r\n"
    out += delim + b"--\r\n"
    return bytes(out)
