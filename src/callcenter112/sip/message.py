"""SIP messages: parse bytes into requests and responses, serialize them back.

Owns the wire format of RFC 3261 §7, its limits, and the grammar of the header
values the stack relies on (SIP/SIPS/tel URIs, name-addr/addr-spec, Via,
CSeq, parameters). The parser takes one complete message (a UDP datagram, or
one message cut out of a TCP stream by `framing.py`) and returns a `Request`
or `Response`, or raises `SipParseError` — nothing else, whatever the bytes
(tested with hypothesis and the RFC 4475 torture messages).

Why our own value grammar and not `sipmessage`'s regexes (which this module
used first): its quoted-string pattern `"(?:[^"]|\\")*"` matches across
closing quotes, so `"a" <sip:x>;p="b"` is read as one display name, and it
backtracks quadratically (a 16 KiB To value of `"<"<"<…` costs 0.7 s of CPU,
four of them fit in a datagram); its parameter parser splits inside quoted
strings and URL-decodes header parameters (a tag containing `%` changes when
written back); and its URIs have no `?headers`, so the valid RFC 4475
`regescrt` REGISTER could not be read. The scanners below are single passes
over the text: linear time whatever the input. The value types keep
`sipmessage`'s attribute names (`uri.user`, `address.parameters`,
`via.transport` …) so code written against either reads the same.

Liberal where RFC 3261 §7.3.1 and RFC 4475 ask for it (and where a caller
dialling 112 through odd equipment must still get through): header names are
case-insensitive and may use compact forms, values may be folded, list headers
may be comma-separated or repeated, bare LF line ends are accepted, extra SP
in the start line is ignored (RFC 4475 §3.1.2.9/10), unquoted display names
may hold any character but `"<>` (§3.1.2.15), spaces just inside `<...>` are
dropped (§3.1.2.14), header lines that are not UTF-8 are read as Latin-1.
Strict where safety or matching depends on it: the mandatory headers of
§8.1.1 must be present once, CSeq must agree with the method (§8.1.1.5),
Content-Length must be a single non-negative number that the body honours
(§18.3, §20.14), and every URI, Via and address the stack reads must parse.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Final

from ..numerals import is_ascii_digits
from .errors import SipParseError

__all__ = [
    "BRANCH_MAGIC",
    "COMPACT_FORMS",
    "KNOWN_METHODS",
    "MAX_BODY_SIZE",
    "MAX_HEADERS",
    "MAX_HEADER_LINE",
    "MAX_LIST_ITEMS",
    "MAX_MESSAGE_SIZE",
    "SIP_VERSION",
    "URI",
    "Address",
    "CSeq",
    "Headers",
    "Parameters",
    "Request",
    "Response",
    "Via",
    "canonical_name",
    "find_head_end",
    "new_branch",
    "new_call_id",
    "new_tag",
    "parse_address",
    "parse_message",
    "parse_uri",
    "parse_via",
    "quote_string",
    "reason_phrase",
    "split_list",
    "unquote_string",
]

SIP_VERSION: Final = "SIP/2.0"

# RFC 3261 §18.1.1/§18.2: nothing limits a message but the transport; a UDP
# datagram carries at most 65 535 - 8 (UDP) - 20 (IPv4) octets, and we hold
# TCP messages to the same size (Kamailio's BUF_SIZE is the same 64 KiB).
MAX_MESSAGE_SIZE: Final = 65_535
# Parsed header values are immutable, so the same text (the From, To, Via and
# CSeq a message carries, read many times per transaction, and the same values
# on every retransmission and in-dialog request) is parsed once. Bounded: a
# flood of distinct values only evicts; errors are never cached.
_PARSE_CACHE: Final = 1024
MAX_BODY_SIZE: Final = MAX_MESSAGE_SIZE
# No RFC limit exists for these; they bound the work one message can cause.
# Real INVITEs from carriers carry 20-40 headers and lines under 1 KiB;
# RFC 4475 `longreq` needs 34 Via entries and lines of about 700 octets.
MAX_HEADERS: Final = 256
MAX_HEADER_LINE: Final = 16_384
MAX_LIST_ITEMS: Final = 64  # entries in one Via/Route/Contact list

# RFC 3261 §8.1.1.7: branch IDs of RFC 3261 transactions start with this.
BRANCH_MAGIC: Final = "z9hG4bK"

# RFC 3261 §8.1.1.5: "expressible as a 32-bit unsigned integer".
_CSEQ_MAX: Final = 2**32 - 1

# Methods of RFC 3261 and its extensions (RFC 3262, 3265/6665, 3311, 3428,
# 3515, 3903, 6086). A request whose CSeq disagrees with an unknown method
# is answered 501 rather than 400 (RFC 4475 §3.1.2.18).
KNOWN_METHODS: Final = frozenset(
    {
        "ACK",
        "BYE",
        "CANCEL",
        "INFO",
        "INVITE",
        "MESSAGE",
        "NOTIFY",
        "OPTIONS",
        "PRACK",
        "PUBLISH",
        "REFER",
        "REGISTER",
        "SUBSCRIBE",
        "UPDATE",
    }
)

# RFC 3261 §7.3.3 and the IANA "Header Fields" registry's compact forms.
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
# Lists of addresses and Vias: an empty element there is a syntax error
# (RFC 4475 §3.1.2.1). Token lists (Supported, Allow …) skip empty elements.
_STRICT_LISTS: Final = frozenset(
    {"via", "contact", "route", "record-route", "path", "service-route", "p-asserted-identity"}
)

# RFC 3261 §8.1.1: every request carries these (Max-Forwards is checked by
# the endpoint, which may accept its absence from RFC 2543 peers, RFC 4475
# §3.4.1). Responses need the same five to be matched to a transaction.
_MANDATORY: Final = ("Via", "From", "To", "Call-ID", "CSeq")
_SINGLETON: Final = ("from", "to", "call-id", "cseq", "max-forwards")

# RFC 3261 §25.1 character classes.
_TOKEN_CHARS: Final = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~"
)
_TOKEN_RE: Final = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")
_UNRESERVED: Final = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.!~*'()"
)
_USER_SAFE: Final = _UNRESERVED | frozenset("&=+$,;?/")
_PASSWORD_SAFE: Final = _UNRESERVED | frozenset("&=+$,")
_HEX: Final = frozenset("0123456789abcdefABCDEF")
_PARAM_SAFE: Final = _UNRESERVED | frozenset("[]/:&+$")
_SCHEME_RE: Final = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*\Z")
# Characters no URI may carry unescaped (RFC 3986 §2, RFC 2396 "delims" and
# "unwise"); `#` is tolerated because phones dial `*31#112` unescaped.
_URI_FORBIDDEN: Final = frozenset(' \t"<>{}|\\^`') | frozenset(map(chr, range(33))) | {"\x7f"}
_HOST_CHARS: Final = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._")
_IPV6_RE: Final = re.compile(r"\[[0-9A-Fa-f:.]{2,45}\]\Z")
_TEL_RE: Final = re.compile(r"[0-9A-Fa-f*#+\-.()pPwW]+\Z")
_STATUS_RE: Final = re.compile(
    rb"SIP/(\d{1,4})\.(\d{1,4})[ \t]+(\d{3})(?:[ \t](.*))?\Z", re.IGNORECASE | re.DOTALL
)
_VERSION_RE: Final = re.compile(rb"SIP/(\d{1,4})\.(\d{1,4})\Z", re.I)
_LINE_SPLIT: Final = re.compile(rb"\r?\n")
_HEAD_END: Final = re.compile(rb"\r?\n\r?\n")

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


@lru_cache(maxsize=1024)
def _lookup_key(name: str) -> str:
    return canonical_name(name).lower()


def new_branch() -> str:
    """A fresh RFC 3261 branch parameter (magic cookie + 96 random bits)."""
    return BRANCH_MAGIC + secrets.token_hex(12)


def new_tag() -> str:
    """A From/To tag: RFC 3261 §19.3 asks for at least 32 random bits."""
    return secrets.token_hex(8)


def new_call_id(host: str) -> str:
    """A globally unique Call-ID (RFC 3261 §8.1.1.4): 128 random bits @ host."""
    return f"{secrets.token_hex(16)}@{host}"


def _clip(value: str, n: int = 80) -> str:
    return value if len(value) <= n else value[:n] + "…"


# ---------------------------------------------------------------------------
# Quoted strings and escapes


def quote_string(value: str) -> str:
    """`value` as an RFC 3261 §25.1 quoted-string (quoted-pair for `"` and `\\`)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def unquote_string(value: str) -> str:
    """Undo `quote_string`; a value that is not quoted is returned as is."""
    if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
        text, _ = _scan_quoted(value, 0)
        return text
    return value


def _scan_quoted(text: str, start: int) -> tuple[str, int]:
    """Read the quoted-string opening at `text[start]`; return its content
    (quoted-pairs resolved) and the index after the closing quote."""
    out: list[str] = []
    i = start + 1
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == "\\":
            if i + 1 >= n:
                break
            out.append(text[i + 1])
            i += 2
        elif ch == '"':
            return "".join(out), i + 1
        else:
            out.append(ch)
            i += 1
    raise SipParseError(f"unterminated quoted string in {_clip(text)!r}")


def _unescape(text: str) -> str:
    """Resolve %HH escapes (RFC 3261 §19.1.4: compared unescaped). Octets are
    taken as UTF-8 where they form it and as Latin-1 otherwise; a `%` not
    followed by two hex digits stays literal (RFC 4475 §3.1.1.5)."""
    if "%" not in text:
        return text
    out = bytearray()
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == "%" and i + 2 < n and text[i + 1] in _HEX and text[i + 2] in _HEX:
            out.append(int(text[i + 1 : i + 3], 16))
            i += 3
        else:
            out += ch.encode("utf-8")
            i += 1
    try:
        return out.decode("utf-8")
    except UnicodeDecodeError:
        return out.decode("latin-1")


def _escape(text: str, safe: frozenset[str]) -> str:
    if all(ch in safe for ch in text):
        return text
    out: list[str] = []
    for ch in text:
        if ch in safe:
            out.append(ch)
        else:
            out.extend(f"%{b:02X}" for b in ch.encode("utf-8"))
    return "".join(out)


# ---------------------------------------------------------------------------
# Parameters


class Parameters(Mapping[str, str | None]):
    """Ordered `;name[=value]` parameters; names compared case-insensitively
    (RFC 3261 §7.3.1, §19.1.4), values kept as received (quotes included:
    use `unquote_string` for a quoted-string value). A name without a value
    maps to None (`;lr`, `;rport`)."""

    __slots__ = ("_items",)

    def __init__(self, items: Iterable[tuple[str, str | None]] = (), **kwargs: str | None) -> None:
        self._items: tuple[tuple[str, str | None], ...] = (*items, *kwargs.items())

    def _find(self, key: str) -> int:
        lower = key.lower()
        for i, (name, _) in enumerate(self._items):
            if name.lower() == lower:
                return i
        return -1

    def __getitem__(self, key: str) -> str | None:
        i = self._find(key)
        if i < 0:
            raise KeyError(key)
        return self._items[i][1]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self._find(key) >= 0

    def __iter__(self) -> Iterator[str]:
        return (name for name, _ in self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Parameters):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def _key(self) -> frozenset[tuple[str, str | None]]:
        return frozenset((name.lower(), value) for name, value in self._items)

    def __repr__(self) -> str:
        return f"Parameters({list(self._items)!r})"

    def replace(self, **changes: str | None) -> Parameters:
        """A copy with `changes` set (kept in place) or appended."""
        out = self
        for name, value in changes.items():
            out = out.with_param(name, value)
        return out

    def with_param(self, name: str, value: str | None) -> Parameters:
        """A copy with `name` set to `value`, in place if present, else appended."""
        i = self._find(name)
        items = list(self._items)
        if i >= 0:
            items[i] = (items[i][0], value)
        else:
            items.append((name, value))
        return Parameters(items)

    def without(self, name: str) -> Parameters:
        lower = name.lower()
        return Parameters(item for item in self._items if item[0].lower() != lower)

    def __str__(self) -> str:
        return "".join(f";{n}" if v is None else f";{n}={v}" for n, v in self._items)

    def to_uri_string(self) -> str:
        """URI form: names and values %-escaped outside `paramchar` (§25.1)."""
        return "".join(
            f";{_escape(n, _PARAM_SAFE)}"
            if v is None
            else f";{_escape(n, _PARAM_SAFE)}={_escape(v, _PARAM_SAFE)}"
            for n, v in self._items
        )


def _skip_ws(text: str, i: int) -> int:
    n = len(text)
    while i < n and text[i] in " \t":
        i += 1
    return i


def _parse_header_params(text: str, i: int, what: str) -> Parameters:
    """`*( SEMI generic-param )` from `text[i:]` to its end (RFC 3261 §25.1),
    LWS allowed around `;` and `=`; a value is a token, a host (IPv6 kept) or
    a quoted-string (kept quoted)."""
    items: list[tuple[str, str | None]] = []
    n = len(text)
    while True:
        i = _skip_ws(text, i)
        if i >= n:
            return Parameters(items)
        if text[i] != ";":
            raise SipParseError(f"bad parameters in {what} {_clip(text)!r}")
        i = _skip_ws(text, i + 1)
        start = i
        while i < n and text[i] in _TOKEN_CHARS:
            i += 1
        if i == start:
            raise SipParseError(f"empty parameter in {what} {_clip(text)!r}")
        name = text[start:i]
        i = _skip_ws(text, i)
        value: str | None = None
        if i < n and text[i] == "=":
            i = _skip_ws(text, i + 1)
            if i < n and text[i] == '"':
                _, end = _scan_quoted(text, i)
                value = text[i:end]
                i = end
            else:
                start = i
                while i < n and text[i] not in ' \t;,"<>':
                    i += 1
                if i == start:
                    raise SipParseError(f"parameter {name} without value in {what}")
                value = text[start:i]
        items.append((name, value))
        if len(items) > MAX_LIST_ITEMS:
            raise SipParseError(f"too many parameters in {what}")


# ---------------------------------------------------------------------------
# URIs


@dataclass(frozen=True, slots=True)
class URI:
    """A SIP/SIPS URI (RFC 3261 §19.1), a tel URI (RFC 3966), or any other
    absolute URI kept opaque (`urn:service:sos`, RFC 5031). `user`,
    `password` and parameter names/values are stored unescaped; `headers` is
    the raw text after `?` (RFC 3261 §19.1.1)."""

    scheme: str
    host: str
    user: str | None = None
    password: str | None = None
    port: int | None = None
    parameters: Parameters = field(default_factory=Parameters)
    headers: str | None = None
    opaque: str | None = None

    @property
    def is_sip(self) -> bool:
        return self.scheme in ("sip", "sips")

    def __str__(self) -> str:
        if self.opaque is not None:
            return f"{self.scheme}:{self.opaque}"
        if self.scheme == "tel":
            return f"tel:{self.user or ''}{self.parameters.to_uri_string()}"
        out = [self.scheme, ":"]
        if self.user is not None:
            out.append(_escape(self.user, _USER_SAFE))
            if self.password is not None:
                out += [":", _escape(self.password, _PASSWORD_SAFE)]
            out.append("@")
        out.append(self.host)
        if self.port is not None:
            out.append(f":{self.port}")
        out.append(self.parameters.to_uri_string())
        if self.headers is not None:
            out += ["?", self.headers]
        return "".join(out)


@lru_cache(maxsize=_PARSE_CACHE)
def parse_uri(value: str) -> URI:
    """Parse any absolute URI; SIP, SIPS and tel are broken into parts."""
    text = value.strip()
    colon = text.find(":")
    if colon <= 0 or not _SCHEME_RE.match(text[:colon]):
        raise SipParseError(f"bad URI {_clip(text)!r}")
    if not text.isascii() or any(ch in _URI_FORBIDDEN for ch in text):
        raise SipParseError(f"bad character in URI {_clip(text)!r}")
    scheme = text[:colon].lower()
    rest = text[colon + 1 :]
    if not rest:
        raise SipParseError(f"empty URI {_clip(text)!r}")
    if scheme in ("sip", "sips"):
        return _parse_sip_uri(scheme, rest, text)
    if scheme == "tel":
        number, _, params = rest.partition(";")
        if not _TEL_RE.match(number):
            raise SipParseError(f"bad tel URI {_clip(text)!r}")
        return URI(scheme="tel", host="", user=number, parameters=_uri_params(params, text))
    return URI(scheme=scheme, host="", opaque=rest)


def _parse_sip_uri(scheme: str, rest: str, text: str) -> URI:
    # `@` never appears unescaped in userinfo, host, params or headers, so the
    # first one ends the userinfo, which itself may hold `;` `?` `/` (§25.1).
    user: str | None = None
    password: str | None = None
    at = rest.find("@")
    if at >= 0:
        userinfo, rest = rest[:at], rest[at + 1 :]
        user_raw, sep, password_raw = userinfo.partition(":")
        user = _unescape(user_raw)
        password = _unescape(password_raw) if sep else None
    rest, qmark, headers = rest.partition("?")
    hostport, _, params = rest.partition(";")
    if hostport.startswith("["):
        close = hostport.find("]")
        host, portpart = hostport[: close + 1], hostport[close + 1 :]
        if close < 0 or not _valid_host(host):
            raise SipParseError(f"bad host in URI {_clip(text)!r}")
        if portpart and not portpart.startswith(":"):
            raise SipParseError(f"bad host in URI {_clip(text)!r}")
        port_text = portpart[1:] if portpart else None
    else:
        host, sep, port_raw = hostport.partition(":")
        port_text = port_raw if sep else None
        if not _valid_host(host):
            raise SipParseError(f"bad host in URI {_clip(text)!r}")
    port = _parse_port(port_text, text) if port_text is not None else None
    return URI(
        scheme=scheme,
        host=host,
        user=user,
        password=password,
        port=port,
        parameters=_uri_params(params, text),
        headers=headers if qmark else None,
    )


def _valid_host(host: str) -> bool:
    """hostname / IPv4address / IPv6reference (RFC 3261 §25.1), without a
    regex: `_` is tolerated in labels (seen on private networks)."""
    if host.startswith("["):
        return _IPV6_RE.match(host) is not None
    return (
        0 < len(host) <= 255
        and all(ch in _HOST_CHARS for ch in host)
        and all(label and label[0] != "-" for label in host.removesuffix(".").split("."))
    )


def _parse_port(text: str, context: str) -> int:
    if not is_ascii_digits(text) or len(text) > 5 or int(text) > 65_535:
        raise SipParseError(f"bad port in {_clip(context)!r}")
    return int(text)


def _uri_params(text: str, context: str) -> Parameters:
    if not text:
        return Parameters()
    items: list[tuple[str, str | None]] = []
    for part in text.split(";"):
        if not part:
            continue  # `;;` in a URI: harmless, skipped (liberal)
        name, sep, value = part.partition("=")
        if not name:
            raise SipParseError(f"empty URI parameter in {_clip(context)!r}")
        items.append((_unescape(name), _unescape(value) if sep else None))
    if len(items) > MAX_LIST_ITEMS:
        raise SipParseError(f"too many URI parameters in {_clip(context)!r}")
    return Parameters(items)


# ---------------------------------------------------------------------------
# Addresses: name-addr / addr-spec (From, To, Contact, Route, Refer-To …)


@dataclass(frozen=True, slots=True)
class Address:
    uri: URI
    name: str = ""
    parameters: Parameters = field(default_factory=Parameters)

    @property
    def tag(self) -> str | None:
        return self.parameters.get("tag")

    def __str__(self) -> str:
        out = ""
        if self.name:
            plain = all(ch in _TOKEN_CHARS or ch == " " for ch in self.name)
            out = (self.name if plain else quote_string(self.name)) + " "
        return f"{out}<{self.uri}>{self.parameters}"


@lru_cache(maxsize=_PARSE_CACHE)
def parse_address(value: str, header: str = "address") -> Address:
    """A name-addr or addr-spec with header parameters (RFC 3261 §20.10)."""
    text = value.strip(" \t")
    if not text:
        raise SipParseError(f"empty {header}")
    name = ""
    i = 0
    lt = -1
    if text[0] == '"':
        name, i = _scan_quoted(text, 0)
        i = _skip_ws(text, i)
        if i >= len(text) or text[i] != "<":
            raise SipParseError(f"bad {header} {_clip(text)!r}: no <URI> after display name")
        lt = i
    else:
        lt = text.find("<")
        if lt >= 0:
            # An unquoted display name: RFC 3261 wants tokens; anything but
            # quotes is accepted (RFC 4475 §3.1.1.6, §3.1.2.15).
            name = " ".join(text[:lt].split())
            if '"' in text[:lt] or ">" in text[:lt]:
                raise SipParseError(f"bad display name in {header} {_clip(text)!r}")
    if lt >= 0:
        gt = text.find(">", lt)
        if gt < 0:
            raise SipParseError(f"unterminated <URI> in {header} {_clip(text)!r}")
        uri = parse_uri(text[lt + 1 : gt])
        return Address(uri=uri, name=name, parameters=_parse_header_params(text, gt + 1, header))
    # addr-spec: RFC 3261 §20.10 — parameters after the URI belong to the
    # header, and a URI with `,` `;` or `?` must have been put in <...>.
    semi = text.find(";")
    spec = text if semi < 0 else text[:semi]
    spec = spec.rstrip(" \t")
    uri = parse_uri(spec)
    if uri.headers is not None or "," in spec:
        raise SipParseError(f"{header} URI with headers must be enclosed in <>")
    params = _parse_header_params(text, semi, header) if semi >= 0 else Parameters()
    return Address(uri=uri, parameters=params)


# ---------------------------------------------------------------------------
# Via


@dataclass(frozen=True, slots=True)
class Via:
    """One Via entry (RFC 3261 §20.42): `SIP/2.0/transport host[:port];params`."""

    transport: str
    host: str
    port: int | None = None
    parameters: Parameters = field(default_factory=Parameters)

    @property
    def branch(self) -> str | None:
        return self.parameters.get("branch")

    @property
    def sent_by(self) -> tuple[str, int | None]:
        """The sent-by (host lowercased, port or None) that §17.2.3 compares."""
        return (self.host.lower(), self.port)

    def __str__(self) -> str:
        port = f":{self.port}" if self.port is not None else ""
        return f"SIP/2.0/{self.transport} {self.host}{port}{self.parameters}"


@lru_cache(maxsize=_PARSE_CACHE)
def parse_via(value: str) -> Via:
    text = value.strip(" \t")
    parts: list[str] = []
    i = 0
    n = len(text)
    # sent-protocol = protocol-name SLASH protocol-version SLASH transport,
    # LWS allowed around each SLASH (RFC 4475 wsinv).
    for k in range(3):
        i = _skip_ws(text, i)
        start = i
        while i < n and text[i] in _TOKEN_CHARS:
            i += 1
        if i == start:
            raise SipParseError(f"bad Via {_clip(text)!r}")
        parts.append(text[start:i])
        i = _skip_ws(text, i)
        if k < 2:
            if i >= n or text[i] != "/":
                raise SipParseError(f"bad Via {_clip(text)!r}")
            i += 1
    if parts[0].upper() != "SIP":
        raise SipParseError(f"bad Via protocol {_clip(text)!r}")
    start = i
    if i < n and text[i] == "[":
        close = text.find("]", i)
        if close < 0:
            raise SipParseError(f"bad Via host {_clip(text)!r}")
        i = close + 1
    else:
        while i < n and text[i] not in " \t;:":
            i += 1
    host = text[start:i]
    if not _valid_host(host):
        raise SipParseError(f"bad Via host {_clip(text)!r}")
    i = _skip_ws(text, i)
    port: int | None = None
    if i < n and text[i] == ":":
        i = _skip_ws(text, i + 1)
        start = i
        while i < n and is_ascii_digits(text[i]):
            i += 1
        port = _parse_port(text[start:i], text)
    return Via(
        transport=parts[2].upper(),
        host=host,
        port=port,
        parameters=_parse_header_params(text, i, "Via"),
    )


# ---------------------------------------------------------------------------
# CSeq


@dataclass(frozen=True, slots=True)
class CSeq:
    sequence: int
    method: str

    def __str__(self) -> str:
        return f"{self.sequence} {self.method}"


@lru_cache(maxsize=_PARSE_CACHE)
def _parse_cseq(value: str) -> CSeq:
    parts = value.split()
    if (
        len(parts) != 2
        or not is_ascii_digits(parts[0])
        or len(parts[0]) > 12
        or not _TOKEN_RE.fullmatch(parts[1])
    ):
        raise SipParseError(f"bad CSeq {_clip(value)!r}")
    sequence = int(parts[0])
    if sequence > _CSEQ_MAX:
        raise SipParseError(f"CSeq number {_clip(parts[0])} is not a 32-bit number")
    return CSeq(sequence, parts[1])


def split_list(value: str, *, strict: bool = True) -> list[str]:
    """Split a `#element` header value on commas outside quotes and <...>.
    Empty elements raise (`strict`, for address and Via lists) or are dropped."""
    if "," not in value:
        item = value.strip(" \t")
        return [item] if item else []
    items: list[str] = []
    in_angle = False
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
            in_angle = True
        elif ch == ">":
            in_angle = False
        elif ch == "," and not in_angle:
            items.append(value[start:i].strip(" \t"))
            start = i + 1
    items.append(value[start:].strip(" \t"))
    if in_quote:
        raise SipParseError(f"unterminated quoted string in {_clip(value)!r}")
    if any(not item for item in items):
        if strict:
            raise SipParseError(f"empty element in list {_clip(value)!r}")
        items = [item for item in items if item]
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
        lower = _lookup_key(name)
        return any(k.lower() == lower for k, _ in self._items)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Headers) and self._items == other._items

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"

    def copy(self) -> Headers:
        h = Headers()
        h._items = list(self._items)
        return h

    def get(self, name: str) -> str | None:
        lower = _lookup_key(name)
        for k, v in self._items:
            if k.lower() == lower:
                return v
        return None

    def get_all(self, name: str) -> list[str]:
        lower = _lookup_key(name)
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

    def set_first(self, name: str, value: str) -> None:
        """Replace only the first value of `name` (the top Via, §18.2.1)."""
        lower = _lookup_key(name)
        for i, (k, _) in enumerate(self._items):
            if k.lower() == lower:
                self._items[i] = (k, value)
                return
        self.add(name, value)

    def set_all(self, name: str, values: Iterable[str]) -> None:
        self.remove(name)
        for v in values:
            self.add(name, v)

    def remove(self, name: str) -> None:
        lower = _lookup_key(name)
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
        return _parse_cseq(value)

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
        if not is_ascii_digits(text) or len(text) > 10:
            raise SipParseError(f"bad {name} {_clip(value)!r}")
        return int(text)

    @property
    def expires(self) -> int | None:
        return self.int_header("Expires")

    @property
    def max_forwards(self) -> int | None:
        """Max-Forwards, or None when absent or not a number in 0..255: RFC
        4475 §3.1.2.4 lets an endpoint act as if a bad value were absent."""
        try:
            value = self.int_header("Max-Forwards")
        except SipParseError:
            return None
        return value if value is not None and value <= 255 else None

    @property
    def content_type(self) -> str | None:
        """Media type without parameters, lower-cased (`application/sdp`)."""
        value = self.headers.get("Content-Type")
        if value is None:
            return None
        return value.split(";", 1)[0].strip().lower()

    def _serialize(self, start_line: str) -> bytes:
        # Content-Length is written where it stood, with the real body size,
        # so that parse(serialize(m)) == m for every parsed message. A line
        # break inside a value (a display name taken from somewhere) would
        # inject headers: it is written as the SP it is equivalent to (§7.3.1).
        lines = [start_line]
        placed = False
        for name, value in self.headers:
            if name == "Content-Length":
                if not placed:
                    lines.append(f"Content-Length: {len(self.body)}")
                    placed = True
                continue
            if "\r" in value or "\n" in value:
                value = value.replace("\r", " ").replace("\n", " ")  # noqa: PLW2901
            lines.append(f"{name}: {value}")
        if not placed:
            lines.append(f"Content-Length: {len(self.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + self.body


class Request(_Message):
    """A SIP request. `uri` is kept as text: `urn:service:sos` (RFC 5031) is a
    valid emergency Request-URI that is not a SIP URI."""

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
        return isinstance(other, Request) and (self.method, self.uri, self.headers, self.body) == (
            other.method,
            other.uri,
            other.headers,
            other.body,
        )

    __hash__ = None  # type: ignore[assignment]

    @property
    def sip_uri(self) -> URI | None:
        """The Request-URI parsed, or None for a scheme other than sip/sips/tel."""
        try:
            uri = parse_uri(self.uri)
        except SipParseError:
            return None
        return None if uri.opaque is not None else uri

    def serialize(self) -> bytes:
        return self._serialize(f"{self.method} {self.uri} {SIP_VERSION}")


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
        return isinstance(other, Response) and (
            self.status,
            self.reason,
            self.headers,
            self.body,
        ) == (other.status, other.reason, other.headers, other.body)

    __hash__ = None  # type: ignore[assignment]

    def serialize(self) -> bytes:
        return self._serialize(f"{SIP_VERSION} {self.status} {self.reason}")

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
        Record-Route copied for dialog-establishing responses (§12.1.1);
        Timestamp echoed in 100 Trying (§8.2.6.1)."""
        h = Headers()
        for name, value in request.headers:
            if name in ("Via", "From", "Call-ID", "CSeq"):
                h.add(name, value)
            elif name == "To":
                tagged = f"{value};tag={to_tag}" if to_tag and not _has_tag(value) else value
                h.add(name, tagged)
            elif (name == "Record-Route" and 100 < status < 300) or (
                name == "Timestamp" and status == 100
            ):
                h.add(name, value)
        for name, value in headers:
            h.add(name, value)
        return cls(status, reason, h, body)


def _has_tag(value: str) -> bool:
    try:
        return "tag" in parse_address(value).parameters
    except SipParseError:
        return ";tag=" in value.replace(" ", "").lower()


# ---------------------------------------------------------------------------
# Parsing


def find_head_end(data: bytes | bytearray, start: int = 0) -> tuple[int, int] | None:
    """Where the header block ends: (index of the empty line's first line
    end, index where the body starts), or None while no empty line has come.
    CRLF and bare LF line ends are both accepted (§7.5 tolerance); the parser
    and the TCP framer share this so they always agree on the split."""
    m = _HEAD_END.search(data, start)
    if m is None:
        return None
    return m.start(), m.end()


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
    split = find_head_end(data)
    if split is None:
        # No empty line: a datagram whose header block is cut off.
        head, body = data.rstrip(b"\r\n"), b""
    else:
        head, body = data[: split[0]], data[split[1] :]
    raw_lines = _LINE_SPLIT.split(head)
    try:
        message = _parse_start_line(raw_lines[0])
    except SipParseError as exc:
        raise _with_partial_request(exc, raw_lines) from None
    _parse_headers(message, raw_lines[1:])
    message.body = _frame_body(message, body, datagram=datagram)
    _validate(message)
    return message


def _with_partial_request(exc: SipParseError, raw_lines: list[bytes]) -> SipParseError:
    """A request whose start line is bad (RFC 4475 `ltgtruri`, `lwsruri`,
    `badvers`) still deserves its 400 or 505 when its headers say where to send
    one: parse them into a stand-in request kept as `partial`."""
    first = raw_lines[0].split(None, 1)
    if not first or first[0][:4].upper() == b"SIP/":
        return exc
    method = _text(first[0])
    if not _TOKEN_RE.fullmatch(method) or method == "ACK":
        return exc  # an ACK is never answered (RFC 3261 §17.2.3)
    stand_in = Request(method, "sip:invalid.invalid")
    try:
        _parse_headers(stand_in, raw_lines[1:])
    except SipParseError:
        return exc
    return SipParseError(exc.reason, status_hint=exc.status_hint, partial=stand_in)


def _parse_start_line(line: bytes) -> Request | Response:
    if len(line) > MAX_HEADER_LINE:
        raise SipParseError("start line too long", status_hint=414)
    if b"\r" in line:
        raise SipParseError("bare CR in the start line")
    line = line.rstrip(b" \t")  # RFC 4475 §3.1.2.10: trailing SP tolerated
    if line[:4].upper() == b"SIP/":
        m = _STATUS_RE.match(line)
        if m is None:
            raise SipParseError(f"bad status line {_clip(_text(line))!r}")
        if (int(m.group(1)), int(m.group(2))) != (2, 0):
            raise SipParseError("unsupported SIP version", status_hint=505)
        status = int(m.group(3))
        if not 100 <= status <= 699:
            raise SipParseError(f"status code {status} out of range")
        return Response(status, _text(m.group(4) or b"").strip(" \t"))
    # RFC 4475 §3.1.2.9: extra SP between the elements is tolerated.
    parts = line.split()
    if len(parts) != 3:
        raise SipParseError(f"bad request line {_clip(_text(line))!r}")
    method_b, uri_b, version_b = parts
    method = _text(method_b)
    if not _TOKEN_RE.fullmatch(method):
        raise SipParseError(f"bad method {_clip(method)!r}")
    version = _VERSION_RE.match(version_b)
    if version is None:
        raise SipParseError(f"bad SIP version {_clip(_text(version_b))!r}")
    if (int(version.group(1)), int(version.group(2))) != (2, 0):
        raise SipParseError("unsupported SIP version", status_hint=505)
    uri = _text(uri_b)
    try:
        parse_uri(uri)  # sip/sips/tel must be well-formed; other schemes opaque
    except SipParseError as exc:
        raise SipParseError(f"bad Request-URI: {exc.reason}") from None
    return Request(method, uri)


def _text(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        # RFC 3261 text is UTF-8; equipment that sends Latin-1 display names
        # still gets its call through. Latin-1 maps every octet, losslessly.
        return raw.decode("latin-1")


def _parse_headers(message: Request | Response, raw_lines: list[bytes]) -> None:
    # Unfold first (RFC 3261 §7.3.1: a line starting with SP/HT continues
    # the previous one and is equivalent to a single SP).
    logical: list[bytes] = []
    for raw in raw_lines:
        if len(raw) > MAX_HEADER_LINE:
            raise SipParseError("header line too long", partial=message)
        if b"\r" in raw:
            raise SipParseError("bare CR in a header line", partial=message)
        if raw[:1] in (b" ", b"\t"):
            if not logical:
                raise SipParseError("continuation line before any header", partial=message)
            logical[-1] = logical[-1].rstrip(b" \t") + b" " + raw.strip(b" \t")
            if len(logical[-1]) > MAX_HEADER_LINE:
                raise SipParseError("folded header too long", partial=message)
        elif raw:
            logical.append(raw)
            if len(logical) > MAX_HEADERS:
                raise SipParseError(f"more than {MAX_HEADERS} header fields", partial=message)
    headers = message.headers
    counts: dict[str, int] = {}
    for raw in logical:
        colon = raw.find(b":")
        if colon <= 0:
            raise SipParseError(
                f"header line without a name {_clip(_text(raw))!r}", partial=message
            )
        name = _text(raw[:colon]).rstrip(" \t")
        if not _TOKEN_RE.fullmatch(name):
            raise SipParseError(f"bad header name {_clip(name)!r}", partial=message)
        value = _text(raw[colon + 1 :]).strip(" \t")
        canonical = canonical_name(name)
        lower = canonical.lower()
        if lower in _LIST_HEADERS:
            try:
                items = split_list(value, strict=lower in _STRICT_LISTS)
            except SipParseError as exc:
                raise SipParseError(exc.reason, partial=message) from None
            if not items:
                if lower in _STRICT_LISTS:
                    raise SipParseError(f"empty {canonical}", partial=message)
                items = [""]  # `Accept:` empty means "no body", not absent
            for item in items:
                headers.add(canonical, item)
            counts[lower] = counts.get(lower, 0) + len(items)
            if counts[lower] > MAX_LIST_ITEMS:
                raise SipParseError(
                    f"more than {MAX_LIST_ITEMS} {canonical} entries", partial=message
                )
        else:
            headers.add(canonical, value)
        if len(headers) > MAX_HEADERS:
            raise SipParseError(f"more than {MAX_HEADERS} header fields", partial=message)


def content_length_of(values: list[str]) -> int | None:
    """The one Content-Length of a header block (None if absent); raises on
    a bad, negative or conflicting value (RFC 4475 §3.1.2.3, §3.3.9)."""
    if not values:
        return None
    texts = {v.strip(" \t") for v in values}
    if len(texts) != 1:
        raise SipParseError("conflicting Content-Length values")
    text = texts.pop()
    if not is_ascii_digits(text) or len(text) > 10:
        raise SipParseError(f"bad Content-Length {_clip(text)!r}")
    length = int(text)
    if length > MAX_BODY_SIZE:
        raise SipParseError("Content-Length too large", status_hint=513)
    return length


def _frame_body(message: Request | Response, body: bytes, *, datagram: bool) -> bytes:
    try:
        length = content_length_of(message.headers.get_all("Content-Length"))
    except SipParseError as exc:
        raise SipParseError(exc.reason, status_hint=exc.status_hint, partial=message) from None
    if len(message.headers.get_all("Content-Length")) > 1:
        # Equal duplicates are harmless; keep one so the message reads as sent.
        message.headers.set("Content-Length", str(length))
    if length is None:
        if not datagram and body:
            raise SipParseError("stream message without Content-Length", partial=message)
        return body
    if len(body) < length:
        # RFC 3261 §18.3: over UDP a body shorter than Content-Length is a 400.
        raise SipParseError(
            f"body of {len(body)} octets is shorter than Content-Length {length}",
            partial=message,
        )
    if len(body) > length and not datagram:
        raise SipParseError("body longer than Content-Length", partial=message)
    # §18.3: octets after Content-Length in a datagram are discarded (RFC
    # 4475 §3.1.1.8 `dblreq`: they may even look like another request).
    return body[:length]


def _validate(message: Request | Response) -> None:
    h = message.headers
    for name in _MANDATORY:
        if name not in h:
            raise SipParseError(f"missing {name}", partial=message)
    for name in _SINGLETON:
        if len(h.get_all(name)) > 1:
            raise SipParseError(f"{canonical_name(name)} appears more than once", partial=message)
    try:
        cseq = message.cseq
        message.call_id  # noqa: B018 - presence check
        message.top_via  # noqa: B018 - the transaction layer needs it
        message.from_address  # noqa: B018 - dialog matching needs both
        message.to_address  # noqa: B018
    except SipParseError as exc:
        raise SipParseError(exc.reason, status_hint=exc.status_hint, partial=message) from None
    if isinstance(message, Request) and cseq.method != message.method:
        # RFC 4475 §3.1.2.18: an unknown method is better answered 501.
        status = 400 if message.method in KNOWN_METHODS else 501
        raise SipParseError(
            f"CSeq method {cseq.method} does not match {message.method}",
            status_hint=status,
            partial=message,
        )
