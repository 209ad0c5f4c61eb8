"""SIP messages: parse bytes into requests and responses, serialize them back.

Owns the wire format of RFC 3261 §7 and its limits; the grammar of individual
header values (URIs, name-addr, Via, CSeq) comes from `sipmessage`, whose
`ValueError`s are wrapped here into `SipParseError`. The parser takes one
complete message (a UDP datagram, or one message cut out of a TCP stream by
`framing.py`) and returns a `Request` or `Response`, or raises `SipParseError`
— nothing else, whatever the bytes (tested with hypothesis and RFC 4475).

Liberal where RFC 3261 §7.3.1 asks for it: header names are case-insensitive
and may use compact forms, values may be folded over several lines, list
headers may be comma-separated or repeated, bare LF line ends are accepted.
Strict where safety or matching depends on it: the mandatory headers of
§8.1.1 must be present once, CSeq must agree with the method (§8.1.1.5),
Content-Length must be a single non-negative number that the body honours
(§18.3, §20.14).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable, Iterator
from typing import Final

from sipmessage import URI, Address, CSeq, Via

from .errors import SipParseError

__all__ = [
    "BRANCH_MAGIC",
    "COMPACT_FORMS",
    "MAX_BODY_SIZE",
    "MAX_HEADERS",
    "MAX_HEADER_LINE",
    "MAX_MESSAGE_SIZE",
    "SIP_VERSION",
    "Headers",
    "Request",
    "Response",
    "new_branch",
    "new_call_id",
    "new_tag",
    "parse_address",
    "parse_message",
    "parse_uri",
    "parse_via",
    "reason_phrase",
]

SIP_VERSION: Final = "SIP/2.0"

# RFC 3261 §18.1.1/§18.2: nothing limits a message but the transport; a UDP
# datagram carries at most 65 535 - 8 (UDP) - 20 (IPv4) octets, and we hold
# TCP messages to the same size (Kamailio's BUF_SIZE is the same 64 KiB).
MAX_MESSAGE_SIZE: Final = 65_535
MAX_BODY_SIZE: Final = MAX_MESSAGE_SIZE
# No RFC limit exists for these; they bound the work one message can cause.
# Real INVITEs from carriers carry 20-40 headers and lines under 1 KiB.
MAX_HEADERS: Final = 256
MAX_HEADER_LINE: Final = 16_384
MAX_LIST_ITEMS: Final = 64  # entries in one Via/Route/Contact list

# RFC 3261 §8.1.1.7: branch IDs of RFC 3261 transactions start with this.
BRANCH_MAGIC: Final = "z9hG4bK"

# RFC 3261 §7.3.3 and the IANA "Header Field Parameters" compact forms.
COMPACT_FORMS: Final = {
    "a": "Accept-Contact",
    "b": "Referred-By",
    "c": "Content-Type",
    "d": "Request-Disposition",
    "e": "Content-Encoding",
    "f": "From",
    "i": "Call-ID",
    "j": "Reject-Contact",
    "k": "Supported",
    "l": "Content-Length",
    "m": "Contact",
    "n": "Identity-Info",
    "o": "Event",
    "r": "Refer-To",
    "s": "Subject",
    "t": "To",
    "u": "Allow-Events",
    "v": "Via",
    "x": "Session-Expires",
    "y": "Identity",
}

_CANONICAL: Final = {
    name.lower(): name
    for name in (
        "Accept",
        "Accept-Contact",
        "Accept-Encoding",
        "Accept-Language",
        "Alert-Info",
        "Allow",
        "Allow-Events",
        "Authentication-Info",
        "Authorization",
        "Call-ID",
        "Call-Info",
        "Contact",
        "Content-Disposition",
        "Content-Encoding",
        "Content-Language",
        "Content-Length",
        "Content-Type",
        "CSeq",
        "Date",
        "Error-Info",
        "Event",
        "Expires",
        "From",
        "Identity",
        "Identity-Info",
        "In-Reply-To",
        "Max-Forwards",
        "Min-Expires",
        "MIME-Version",
        "Organization",
        "P-Asserted-Identity",
        "P-Preferred-Identity",
        "Path",
        "Priority",
        "Privacy",
        "Proxy-Authenticate",
        "Proxy-Authorization",
        "Proxy-Require",
        "Reason",
        "Record-Route",
        "Refer-To",
        "Referred-By",
        "Reject-Contact",
        "Remote-Party-ID",
        "Reply-To",
        "Request-Disposition",
        "Require",
        "Retry-After",
        "Route",
        "RSeq",
        "RAck",
        "Server",
        "Service-Route",
        "Session-Expires",
        "Subject",
        "Subscription-State",
        "Supported",
        "Timestamp",
        "To",
        "Unsupported",
        "User-Agent",
        "Via",
        "Warning",
        "WWW-Authenticate",
    )
}

# Headers whose grammar is `#element` (RFC 3261 §7.3.1): comma-separated lists
# that may also be repeated. Authorization-type headers are NOT lists (their
# parameters are comma-separated), nor are Date or Subject.
_LIST_HEADERS: Final = frozenset(
    {
        "accept",
        "accept-encoding",
        "accept-language",
        "allow",
        "allow-events",
        "call-info",
        "contact",
        "content-encoding",
        "content-language",
        "error-info",
        "in-reply-to",
        "p-asserted-identity",
        "path",
        "proxy-require",
        "record-route",
        "require",
        "route",
        "service-route",
        "supported",
        "unsupported",
        "via",
        "warning",
    }
)

# RFC 3261 §8.1.1: every request carries these (Max-Forwards is checked by
# the endpoint, which may accept its absence from old peers).
_MANDATORY_REQUEST: Final = ("Via", "From", "To", "Call-ID", "CSeq")
_SINGLETON: Final = frozenset({"from", "to", "call-id", "cseq", "max-forwards", "content-length"})

# RFC 3261 §25.1: token characters for method names and header names.
_TOKEN_RE: Final = re.compile(r"^[A-Za-z0-9\-.!%*_+`'~]+$")
_STATUS_RE: Final = re.compile(rb"^SIP/(\d+)\.(\d+) ([1-6]\d\d)(?: (.*))?$", re.DOTALL)
_LINE_SPLIT: Final = re.compile(rb"\r?\n")

_REASONS: Final = {
    100: "Trying",
    180: "Ringing",
    181: "Call Is Being Forwarded",
    182: "Queued",
    183: "Session Progress",
    200: "OK",
    202: "Accepted",
    204: "No Notification",
    300: "Multiple Choices",
    301: "Moved Permanently",
    302: "Moved Temporarily",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    407: "Proxy Authentication Required",
    408: "Request Timeout",
    410: "Gone",
    413: "Request Entity Too Large",
    414: "Request-URI Too Long",
    415: "Unsupported Media Type",
    416: "Unsupported URI Scheme",
    420: "Bad Extension",
    421: "Extension Required",
    423: "Interval Too Brief",
    429: "Too Many Requests",
    480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist",
    482: "Loop Detected",
    483: "Too Many Hops",
    484: "Address Incomplete",
    485: "Ambiguous",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    489: "Bad Event",
    491: "Request Pending",
    500: "Server Internal Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Server Time-out",
    505: "Version Not Supported",
    513: "Message Too Large",
    600: "Busy Everywhere",
    603: "Decline",
    604: "Does Not Exist Anywhere",
    606: "Not Acceptable",
}


def reason_phrase(status: int) -> str:
    """The RFC 3261 §21 reason phrase for a status code."""
    return _REASONS.get(status) or _REASONS.get(status // 100 * 100, "Unknown")


def canonical_name(name: str) -> str:
    """Header name in its usual spelling; compact forms expanded."""
    lower = name.lower()
    if len(lower) == 1:
        full = COMPACT_FORMS.get(lower)
        if full is not None:
            return full
    return _CANONICAL.get(lower, name)


def new_branch() -> str:
    """A fresh RFC 3261 branch parameter (magic cookie + 96 random bits)."""
    return BRANCH_MAGIC + secrets.token_hex(12)


def new_tag() -> str:
    """A From/To tag: RFC 3261 §19.3 asks for at least 32 random bits."""
    return secrets.token_hex(8)


def new_call_id(host: str) -> str:
    return f"{secrets.token_hex(16)}@{host}"


# ---------------------------------------------------------------------------
# Header value grammar (sipmessage), wrapped into SipParseError.


def parse_uri(value: str) -> URI:
    try:
        return URI.parse(value.strip())
    except ValueError:
        raise SipParseError(f"bad URI {_clip(value)!r}") from None


def parse_address(value: str, header: str = "address") -> Address:
    """A name-addr or addr-spec (From, To, Contact, Route, Refer-To …)."""
    text = value.strip()
    try:
        return Address.parse(text)
    except ValueError:
        pass
    # sipmessage refuses display names holding characters outside `token`
    # (UTF-8 names from RFC 4475 §3.1.1.2, "+", etc.) unless quoted; accept
    # any unquoted display name in front of <...> as RFC 3261 §25.1 allows
    # LWS-separated tokens and real phones send worse.
    lt = text.find("<")
    if lt > 0 and text.count("<") == 1 and '"' not in text[:lt]:
        name = text[:lt].strip()
        try:
            addr = Address.parse(text[lt:])
        except ValueError:
            pass
        else:
            return Address(uri=addr.uri, name=name, parameters=addr.parameters)
    raise SipParseError(f"bad {header} {_clip(value)!r}")


def parse_via(value: str) -> Via:
    try:
        return Via.parse(value)
    except ValueError:
        raise SipParseError(f"bad Via {_clip(value)!r}") from None


def _clip(value: str, n: int = 80) -> str:
    return value if len(value) <= n else value[:n] + "…"


def split_list(value: str) -> list[str]:
    """Split a `#element` header value on commas outside quotes and <...>."""
    if "," not in value:
        return [value.strip()] if value.strip() else []
    items: list[str] = []
    depth_angle = False
    in_quote = False
    escaped = False
    start = 0
    for i, ch in enumerate(value):
        if in_quote:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_quote = False
        elif ch == '"':
            in_quote = True
        elif ch == "<":
            depth_angle = True
        elif ch == ">":
            depth_angle = False
        elif ch == "," and not depth_angle:
            items.append(value[start:i].strip())
            start = i + 1
    items.append(value[start:].strip())
    if in_quote:
        raise SipParseError(f"unterminated quoted string in {_clip(value)!r}")
    if any(not item for item in items):
        raise SipParseError(f"empty element in list {_clip(value)!r}")
    return items


# ---------------------------------------------------------------------------
# Headers


class Headers:
    """Ordered, case-insensitive, multi-valued header fields.

    List headers are stored one element per entry, so `get_all("Via")`
    returns each Via in order whether they arrived comma-separated or on
    separate lines.
    """

    __slots__ = ("_items",)

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items: list[tuple[str, str]] = [(canonical_name(k), v) for k, v in items]

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        lower = canonical_name(name).lower()
        return any(k.lower() == lower for k, _ in self._items)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Headers) and self._items == other._items

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"

    def copy(self) -> Headers:
        h = Headers()
        h._items = list(self._items)
        return h

    def get(self, name: str) -> str | None:
        lower = canonical_name(name).lower()
        for k, v in self._items:
            if k.lower() == lower:
                return v
        return None

    def get_all(self, name: str) -> list[str]:
        lower = canonical_name(name).lower()
        return [v for k, v in self._items if k.lower() == lower]

    def add(self, name: str, value: str) -> None:
        self._items.append((canonical_name(name), value))

    def set(self, name: str, value: str) -> None:
        """Replace every value of `name` by one value, kept in place."""
        name = canonical_name(name)
        lower = name.lower()
        out: list[tuple[str, str]] = []
        placed = False
        for k, v in self._items:
            if k.lower() == lower:
                if not placed:
                    out.append((name, value))
                    placed = True
            else:
                out.append((k, v))
        if not placed:
            out.append((name, value))
        self._items = out

    def set_all(self, name: str, values: Iterable[str]) -> None:
        self.remove(name)
        for v in values:
            self.add(name, v)

    def remove(self, name: str) -> None:
        lower = canonical_name(name).lower()
        self._items = [(k, v) for k, v in self._items if k.lower() != lower]

    def prepend(self, name: str, value: str) -> None:
        self._items.insert(0, (canonical_name(name), value))


# ---------------------------------------------------------------------------
# Messages


class _Message:
    __slots__ = ("body", "headers")

    headers: Headers
    body: bytes

    # -- typed accessors; each raises SipParseError on a malformed value ----

    @property
    def call_id(self) -> str:
        value = self.headers.get("Call-ID")
        if not value:
            raise SipParseError("missing Call-ID")
        return value

    @property
    def cseq(self) -> CSeq:
        value = self.headers.get("CSeq")
        if value is None:
            raise SipParseError("missing CSeq")
        try:
            cseq = CSeq.parse(value)
        except ValueError:
            raise SipParseError(f"bad CSeq {_clip(value)!r}") from None
        # RFC 3261 §8.1.1.5: the sequence number MUST be less than 2**31.
        if cseq.sequence >= 2**31:
            raise SipParseError(f"CSeq number {cseq.sequence} is not below 2**31")
        return cseq

    @property
    def from_address(self) -> Address:
        value = self.headers.get("From")
        if value is None:
            raise SipParseError("missing From")
        return parse_address(value, "From")

    @property
    def to_address(self) -> Address:
        value = self.headers.get("To")
        if value is None:
            raise SipParseError("missing To")
        return parse_address(value, "To")

    @property
    def from_tag(self) -> str | None:
        return self.from_address.parameters.get("tag")

    @property
    def to_tag(self) -> str | None:
        return self.to_address.parameters.get("tag")

    @property
    def vias(self) -> list[Via]:
        return [parse_via(v) for v in self.headers.get_all("Via")]

    @property
    def top_via(self) -> Via:
        value = self.headers.get("Via")
        if value is None:
            raise SipParseError("missing Via")
        return parse_via(value)

    @property
    def contacts(self) -> list[Address]:
        """Contact addresses; empty for none. `*` is reported by `contact_star`."""
        return [parse_address(v, "Contact") for v in self.headers.get_all("Contact") if v != "*"]

    @property
    def contact_star(self) -> bool:
        return "*" in self.headers.get_all("Contact")

    @property
    def record_route(self) -> list[Address]:
        return [parse_address(v, "Record-Route") for v in self.headers.get_all("Record-Route")]

    @property
    def route(self) -> list[Address]:
        return [parse_address(v, "Route") for v in self.headers.get_all("Route")]

    def int_header(self, name: str) -> int | None:
        """A header holding one non-negative integer (Expires, Max-Forwards …)."""
        value = self.headers.get(name)
        if value is None:
            return None
        text = value.strip()
        # Retry-After and Expires may carry parameters or comments after the number.
        for sep in (";", "(", " "):
            text = text.split(sep, 1)[0]
        if not text.isdigit() or len(text) > 10:
            raise SipParseError(f"bad {name} {_clip(value)!r}")
        return int(text)

    @property
    def expires(self) -> int | None:
        return self.int_header("Expires")

    @property
    def max_forwards(self) -> int | None:
        return self.int_header("Max-Forwards")

    @property
    def content_type(self) -> str | None:
        """Media type without parameters, lower-cased (`application/sdp`)."""
        value = self.headers.get("Content-Type")
        if value is None:
            return None
        return value.split(";", 1)[0].strip().lower()

    def _serialize_headers(self, start_line: str) -> bytes:
        lines = [start_line]
        for name, value in self.headers:
            if name == "Content-Length":
                continue
            lines.append(f"{name}: {value}")
        lines.append(f"Content-Length: {len(self.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + self.body


class Request(_Message):
    """A SIP request. `uri` is kept as text: `urn:service:sos` (RFC 5031) is a
    valid emergency Request-URI that no SIP URI grammar accepts."""

    __slots__ = ("method", "uri")

    def __init__(
        self,
        method: str,
        uri: str,
        headers: Headers | Iterable[tuple[str, str]] = (),
        body: bytes = b"",
    ) -> None:
        self.method = method
        self.uri = uri
        self.headers = headers if isinstance(headers, Headers) else Headers(headers)
        self.body = body

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.uri}>"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Request)
            and (self.method, self.uri, self.headers, self.body)
            == (other.method, other.uri, other.headers, other.body)
        )

    __hash__ = None  # type: ignore[assignment]

    @property
    def sip_uri(self) -> URI | None:
        """The Request-URI parsed, or None for a scheme other than sip/sips/tel."""
        try:
            return URI.parse(self.uri)
        except ValueError:
            return None

    def serialize(self) -> bytes:
        return self._serialize_headers(f"{self.method} {self.uri} {SIP_VERSION}")


class Response(_Message):
    __slots__ = ("reason", "status")

    def __init__(
        self,
        status: int,
        reason: str | None = None,
        headers: Headers | Iterable[tuple[str, str]] = (),
        body: bytes = b"",
    ) -> None:
        self.status = status
        self.reason = reason_phrase(status) if reason is None else reason
        self.headers = headers if isinstance(headers, Headers) else Headers(headers)
        self.body = body

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.reason}>"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Response)
            and (self.status, self.reason, self.headers, self.body)
            == (other.status, other.reason, other.headers, other.body)
        )

    __hash__ = None  # type: ignore[assignment]

    def serialize(self) -> bytes:
        return self._serialize_headers(f"{SIP_VERSION} {self.status} {self.reason}")

    @classmethod
    def for_request(
        cls,
        request: Request,
        status: int,
        reason: str | None = None,
        *,
        to_tag: str | None = None,
        headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
    ) -> Response:
        """A response matching `request` (RFC 3261 §8.2.6.2): Via, From, To,
        Call-ID and CSeq copied; a To-tag added when given and absent;
        Record-Route copied for dialog-establishing responses (§12.1.1)."""
        h = Headers()
        for name, value in request.headers:
            if name in ("Via", "From", "Call-ID", "CSeq"):
                h.add(name, value)
            elif name == "To":
                if to_tag and ";tag=" not in value.replace(" ", "").lower():
                    value = f"{value};tag={to_tag}"
                h.add(name, value)
            elif name == "Record-Route" and 100 < status < 300:
                h.add(name, value)
        for name, value in headers:
            h.add(name, value)
        return cls(status, reason, h, body)


# ---------------------------------------------------------------------------
# Parsing


def parse_message(data: bytes, *, datagram: bool = True) -> Request | Response:
    """Parse one complete SIP message.

    With `datagram=True` (UDP) a body longer than Content-Length is cut to it
    and a missing Content-Length means "the rest of the datagram" (§18.3);
    with `datagram=False` (a message already framed out of a TCP stream) the
    body must match Content-Length exactly.
    """
    if len(data) > MAX_MESSAGE_SIZE:
        raise SipParseError(
            f"message of {len(data)} octets exceeds {MAX_MESSAGE_SIZE}", status_hint=513
        )
    # RFC 3261 §7.5: implementations SHOULD ignore CRLFs before the start line.
    data = data.lstrip(b"\r\n")
    if not data:
        raise SipParseError("empty message")
    head, body = _split_head(data)
    raw_lines = _LINE_SPLIT.split(head)
    start = raw_lines[0]
    message = _parse_start_line(start)
    _parse_headers(message, raw_lines[1:])
    message.body = _frame_body(message, body, datagram=datagram)
    _validate(message)
    return message


def _split_head(data: bytes) -> tuple[bytes, bytes]:
    end = data.find(b"\r\n\r\n")
    lf_end = data.find(b"\n\n")
    if end >= 0 and (lf_end < 0 or end < lf_end):
        return data[:end], data[end + 4 :]
    if lf_end >= 0:
        return data[:lf_end], data[lf_end + 2 :]
    # No empty line: a datagram whose header block is cut off.
    stripped = data.rstrip(b"\r\n")
    return stripped, b""


def _parse_start_line(line: bytes) -> Request | Response:
    if len(line) > MAX_HEADER_LINE:
        raise SipParseError("start line too long", status_hint=414)
    if line.startswith(b"SIP/"):
        m = _STATUS_RE.match(line)
        if m is None:
            raise SipParseError(f"bad status line {_clip(_text(line))!r}")
        if (m.group(1), m.group(2)) != (b"2", b"0"):
            raise SipParseError("unsupported SIP version", status_hint=505)
        reason = _text(m.group(4) or b"").strip()
        return Response(int(m.group(3)), reason)
    parts = line.split(b" ")
    if len(parts) != 3:
        raise SipParseError(f"bad request line {_clip(_text(line))!r}")
    method_b, uri_b, version_b = parts
    method = _text(method_b)
    if not _TOKEN_RE.match(method):
        raise SipParseError(f"bad method {_clip(method)!r}")
    uri = _text(uri_b)
    if not uri or ":" not in uri or any(ord(c) < 33 for c in uri):
        raise SipParseError(f"bad Request-URI {_clip(uri)!r}")
    if not version_b.upper().startswith(b"SIP/"):
        raise SipParseError(f"bad SIP version {_clip(_text(version_b))!r}")
    if version_b.upper() != b"SIP/2.0":
        raise SipParseError("unsupported SIP version", status_hint=505)
    return Request(method, uri)


def _text(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise SipParseError("message is not valid UTF-8") from None


def _parse_headers(message: Request | Response, raw_lines: list[bytes]) -> None:
    # Unfold first (RFC 3261 §7.3.1: a line starting with SP/HT continues
    # the previous one and is equivalent to a single SP).
    logical: list[bytes] = []
    for raw in raw_lines:
        if len(raw) > MAX_HEADER_LINE:
            raise SipParseError("header line too long", partial=message)
        if raw[:1] in (b" ", b"\t"):
            if not logical:
                raise SipParseError("continuation line before any header", partial=message)
            logical[-1] = logical[-1].rstrip() + b" " + raw.strip()
            if len(logical[-1]) > MAX_HEADER_LINE:
                raise SipParseError("folded header too long", partial=message)
        elif raw:
            logical.append(raw)
    if len(logical) > MAX_HEADERS:
        raise SipParseError(f"more than {MAX_HEADERS} header fields", partial=message)
    headers = message.headers
    for raw in logical:
        colon = raw.find(b":")
        if colon <= 0:
            raise SipParseError(f"header line without a name {_clip(_text(raw))!r}", partial=message)
        name = _text(raw[:colon]).rstrip(" \t")
        if not _TOKEN_RE.match(name):
            raise SipParseError(f"bad header name {_clip(name)!r}", partial=message)
        value = _text(raw[colon + 1 :]).strip(" \t")
        canonical = canonical_name(name)
        if canonical.lower() in _LIST_HEADERS:
            try:
                items = split_list(value)
            except SipParseError as exc:
                raise SipParseError(exc.reason, partial=message) from None
            for item in items:
                headers.add(canonical, item)
            if len(headers.get_all(canonical)) > MAX_LIST_ITEMS:
                raise SipParseError(f"more than {MAX_LIST_ITEMS} {canonical} entries", partial=message)
        else:
            headers.add(canonical, value)


def _frame_body(message: Request | Response, body: bytes, *, datagram: bool) -> bytes:
    lengths = message.headers.get_all("Content-Length")
    if not lengths:
        if not datagram and body:
            raise SipParseError("stream message without Content-Length", partial=message)
        return body
    if len({v.strip() for v in lengths}) != 1:
        raise SipParseError("conflicting Content-Length values", partial=message)
    text = lengths[0].strip()
    if not text.isdigit() or len(text) > 10:
        raise SipParseError(f"bad Content-Length {_clip(text)!r}", partial=message)
    length = int(text)
    if length > MAX_BODY_SIZE:
        raise SipParseError("Content-Length too large", status_hint=513, partial=message)
    if len(body) < length:
        # RFC 3261 §18.3: over UDP a body shorter than Content-Length is a 400.
        raise SipParseError(
            f"body of {len(body)} octets is shorter than Content-Length {length}",
            partial=message,
        )
    if len(body) > length and not datagram:
        raise SipParseError("body longer than Content-Length", partial=message)
    return body[:length]


def _validate(message: Request | Response) -> None:
    h = message.headers
    for name in _SINGLETON:
        if len(h.get_all(name)) > 1 and name != "content-length":
            raise SipParseError(f"{canonical_name(name)} appears more than once", partial=message)
    if isinstance(message, Request):
        for name in _MANDATORY_REQUEST:
            if name not in h:
                raise SipParseError(f"missing {name}", partial=message)
    try:
        cseq = message.cseq
        message.call_id  # noqa: B018 - presence check
        message.top_via  # noqa: B018
        from_ = message.from_address
        to = message.to_address
    except SipParseError as exc:
        raise SipParseError(exc.reason, status_hint=exc.status_hint, partial=message) from None
    del from_, to
    if isinstance(message, Request):
        if cseq.method != message.method:
            raise SipParseError(
                f"CSeq method {cseq.method} does not match {message.method}", partial=message
            )
        mf = h.get("Max-Forwards")
        if mf is not None:
            try:
                message.max_forwards  # noqa: B018
            except SipParseError as exc:
                raise SipParseError(exc.reason, partial=message) from None
