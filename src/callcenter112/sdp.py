"""SDP, the Session Description Protocol (RFC 8866, formerly RFC 4566): parse and serialize.

This module owns the wire format of `application/sdp` bodies and nothing else: it turns
bytes into a frozen `SessionDescription` and back. Deciding what to answer is the job of
`offer_answer` (RFC 3264), as in sofia-sip and pjsip where the parser and the negotiation
engine are separate.

Theory of operation
-------------------
RFC 8866 §5: an SDP body is a sequence of `<type>=<value>` lines. Session-level lines come
first (`v o s i u e p c b t r z k a`), then zero or more media descriptions, each opened
by an `m=` line and followed by its own `i c b k a` lines. The parser walks the lines with
a two-state machine, `_Level.SESSION` → `_Level.MEDIA`; the letters accepted in each state
are the table `_LETTERS_AT`. A letter outside that table, an unknown letter (RFC 8866 §5:
a parser MUST reject a description with a type letter it does not understand) or a
malformed field raises `SdpError` with `status_hint=400`. Nothing else is ever raised for
any input (hypothesis checks it on arbitrary bytes).

Tolerance, where it costs nothing in safety — callers dial 112 from sloppy phones:
  * CRLF or bare LF line ends, trailing whitespace, blank lines, a UTF-8 byte-order mark;
  * missing `s=` (read as `s=-`) and missing `t=` (read as `t=0 0`);
  * session-level lines in any order after `v=`; runs of spaces or tabs between fields;
  * the `o=` address is not checked (nothing is ever sent to it);
  * attribute names of the typed attributes are matched case-insensitively;
  * a declined stream (`port 0`) may list no formats and need not have a `c=`;
  * bytes that are not UTF-8 are kept losslessly (`surrogateescape`).
Strict where it matters, because the remote's `c=` and `m=` decide where we send RTP:
  * ports 0-65535, payload types 0-127, digits only (no signs, no underscores, no
    non-ASCII digits), every number bounded in length, addresses that really are IPv4 /
    IPv6 literals or host names, every active stream covered by a `c=` (RFC 8866 §5.7);
  * a payload type mapped twice to different encodings, or two different `ptime`,
    `maxptime` or direction attributes at one level, is ambiguous and rejected.

Attributes keep their wire order. `rtpmap`, `fmtp`, `ptime`, `maxptime` and the four
direction attributes become typed records (`RtpMap`, `Fmtp`, `PacketTime`,
`MaxPacketTime`, `Direction`); every other attribute is kept verbatim as `Attribute`.
Because order and text are kept, `serialize(parse(b)) == b` for any body already written
the canonical way (CRLF, single spaces, RFC 8866 line order) — captured offers from
baresip, pyVoIP and SIPp round-trip byte for byte — and `parse(serialize(x)) == x` for
every description this module can represent.
"""

from __future__ import annotations

import enum
import ipaddress
import re
from dataclasses import dataclass, field, replace
from typing import Self, TypeAlias, TypeVar

__all__ = [
    "MAX_FORMATS",
    "MAX_LINES",
    "MAX_MEDIA_DESCRIPTIONS",
    "MAX_NUMBER_DIGITS",
    "MAX_PACKET_TIME_MS",
    "MAX_PAYLOAD_TYPE",
    "MAX_PORT",
    "MAX_SDP_SIZE",
    "Attribute",
    "AttributeLine",
    "Bandwidth",
    "Connection",
    "Direction",
    "Fmtp",
    "MaxPacketTime",
    "MediaDescription",
    "Origin",
    "PacketTime",
    "RtpMap",
    "SdpError",
    "SessionAttributeLine",
    "SessionDescription",
    "Timing",
]

# --- Limits (one place, with their source) -------------------------------------------------

# An SDP body travels inside one SIP message; RFC 3261 §18.1.1 bounds messages over UDP by
# the datagram, whose payload cannot exceed 65,535 octets (RFC 768 length field).
MAX_SDP_SIZE = 65_535
# Local policy: RFC 8866 sets no line limit. 2048 lines is ten times a rich WebRTC offer
# with ICE candidates, and bounds the work done on hostile input.
MAX_LINES = 2_048
# Local policy: RFC 8866 sets no limit; RFC 3264 §6 makes the answer mirror every m= line,
# so this also bounds what we write back. A telephone call needs one.
MAX_MEDIA_DESCRIPTIONS = 32
# RFC 3550 §5.1: the RTP payload type is a 7-bit field.
MAX_PAYLOAD_TYPE = 127
# An RTP m= line cannot name more than the 128 distinct payload types; the same bound is
# applied to the formats of non-RTP m= lines.
MAX_FORMATS = MAX_PAYLOAD_TYPE + 1
# RFC 768: UDP ports are 16 bits; RFC 8866 §5.14 `port = 1*DIGIT` in that range.
MAX_PORT = 65_535
# RFC 3264 §5: o= session id and version fit a 64-bit integer; 2**64 has 20 digits. The
# same bound caps NTP times in t= (RFC 8866 §5.9) and b= values.
MAX_NUMBER_DIGITS = 20
# Local policy: RFC 8866 §6.4 gives ptime no upper bound. One second of G.711 is 8000
# octets, already far beyond any telephone's packetization.
MAX_PACKET_TIME_MS = 1_000
# RFC 8866 §5.7: the multicast TTL is 0-255.
_MAX_TTL = 255
# RFC 1035 §2.3.4: a host name is at most 253 characters in text form.
_MAX_HOSTNAME = 253


class SdpError(Exception):
    """Malformed or unacceptable SDP. `status_hint` is the SIP status to answer with.

    400 (Bad Request) for bodies that do not parse; 488 (Not Acceptable Here, RFC 3261
    §21.4.26) for well-formed descriptions that cannot be negotiated (`offer_answer`).
    """

    def __init__(self, reason: str, *, status_hint: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status_hint = status_hint

    def __str__(self) -> str:
        return f"{self.status_hint} {self.reason}"

    def __repr__(self) -> str:
        return f"SdpError(status_hint={self.status_hint!r}, reason={self.reason!r})"


# --- Records -------------------------------------------------------------------------------


class Direction(enum.Enum):
    """The media direction attributes (RFC 8866 §6.7, RFC 3264 §5.1); default sendrecv."""

    SENDRECV = "sendrecv"
    SENDONLY = "sendonly"
    RECVONLY = "recvonly"
    INACTIVE = "inactive"

    @property
    def sends(self) -> bool:
        """The side that wrote this attribute sends media."""
        return self is Direction.SENDRECV or self is Direction.SENDONLY

    @property
    def receives(self) -> bool:
        """The side that wrote this attribute receives media."""
        return self is Direction.SENDRECV or self is Direction.RECVONLY

    @classmethod
    def from_flags(cls, *, sends: bool, receives: bool) -> Direction:
        if sends:
            return cls.SENDRECV if receives else cls.SENDONLY
        return cls.RECVONLY if receives else cls.INACTIVE

    def reversed(self) -> Direction:
        """The same stream seen from the other end (sendonly ⇄ recvonly)."""
        return Direction.from_flags(sends=self.receives, receives=self.sends)


@dataclass(frozen=True, slots=True, kw_only=True)
class Origin:
    """`o=<username> <sess-id> <sess-version> <nettype> <addrtype> <unicast-address>`."""

    username: str = "-"
    session_id: int
    session_version: int
    nettype: str = "IN"
    addrtype: str = "IP4"
    address: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Connection:
    """`c=<nettype> <addrtype> <connection-address>` (RFC 8866 §5.7).

    For IP4 the address may carry `/ttl[/count]`, for IP6 `/count` (multicast only); for
    other address types the address is kept verbatim.
    """

    nettype: str = "IN"
    addrtype: str = "IP4"
    address: str
    ttl: int | None = None
    count: int | None = None

    @property
    def is_unspecified(self) -> bool:
        """0.0.0.0 (or ::): RFC 3264 §8.4, "neither RTP nor RTCP should be sent"."""
        return _ip(self.address) in _UNSPECIFIED

    @property
    def is_multicast(self) -> bool:
        address = _ip(self.address)
        return address is not None and address.is_multicast


@dataclass(frozen=True, slots=True, kw_only=True)
class Bandwidth:
    """`b=<bwtype>:<bandwidth>` (RFC 8866 §5.8), e.g. AS in kbit/s, TIAS in bit/s."""

    bwtype: str
    bandwidth: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Timing:
    """`t=<start-time> <stop-time>` (NTP seconds, 0 = unbounded) and its `r=` lines."""

    start: int = 0
    stop: int = 0
    repeats: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class RtpMap:
    """`a=rtpmap:<payload type> <encoding name>/<clock rate>[/<encoding parameters>]`."""

    payload_type: int
    encoding_name: str
    clock_rate: int
    encoding_parameters: str | None = None  # for audio: the channel count, absent = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class Fmtp:
    """`a=fmtp:<format> <format specific parameters>` (RFC 8866 §6.15), parameters verbatim."""

    format: str
    parameters: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class PacketTime:
    """`a=ptime:<ms>` (RFC 8866 §6.4): the packet duration the writer wants to receive."""

    milliseconds: int


@dataclass(frozen=True, slots=True, kw_only=True)
class MaxPacketTime:
    """`a=maxptime:<ms>` (RFC 8866 §6.5): the longest packet the writer can receive."""

    milliseconds: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Attribute:
    """Any other `a=<name>[:<value>]`, kept verbatim; `value` None for a property attribute."""

    name: str
    value: str | None = None


AttributeLine: TypeAlias = RtpMap | Fmtp | PacketTime | MaxPacketTime | Direction | Attribute
SessionAttributeLine: TypeAlias = Direction | Attribute


@dataclass(frozen=True, slots=True, kw_only=True)
class MediaDescription:
    """One `m=` section: `m=<media> <port>[/<number of ports>] <proto> <fmt> ...`."""

    media: str
    port: int
    port_count: int | None = None
    proto: str = "RTP/AVP"
    formats: tuple[str, ...] = ()
    information: str | None = None
    connections: tuple[Connection, ...] = ()
    bandwidths: tuple[Bandwidth, ...] = ()
    key: str | None = None
    attributes: tuple[AttributeLine, ...] = ()

    @property
    def is_rtp(self) -> bool:
        """RTP-based transport (RTP/AVP, RTP/SAVPF, UDP/TLS/RTP/SAVPF ...): formats are PTs."""
        return _is_rtp_proto(self.proto)

    @property
    def payload_types(self) -> tuple[int, ...]:
        """The formats as RTP payload types, in the writer's order of preference."""
        if not self.is_rtp:
            return ()
        return tuple(int(fmt) for fmt in self.formats if _PAYLOAD_TYPE.fullmatch(fmt))

    @property
    def connection(self) -> Connection | None:
        """The first media-level `c=` (several only occur for layered multicast)."""
        return self.connections[0] if self.connections else None

    @property
    def rtpmaps(self) -> tuple[RtpMap, ...]:
        return tuple(a for a in self.attributes if isinstance(a, RtpMap))

    def rtpmap(self, payload_type: int) -> RtpMap | None:
        for attribute in self.attributes:
            if isinstance(attribute, RtpMap) and attribute.payload_type == payload_type:
                return attribute
        return None

    def fmtp(self, fmt: int | str) -> str | None:
        """The parameters of the first `a=fmtp` for this format, or None."""
        wanted = str(fmt)
        for attribute in self.attributes:
            if isinstance(attribute, Fmtp) and attribute.format == wanted:
                return attribute.parameters
        return None

    @property
    def ptime(self) -> int | None:
        for attribute in self.attributes:
            if isinstance(attribute, PacketTime):
                return attribute.milliseconds
        return None

    @property
    def maxptime(self) -> int | None:
        for attribute in self.attributes:
            if isinstance(attribute, MaxPacketTime):
                return attribute.milliseconds
        return None

    @property
    def direction(self) -> Direction | None:
        """The media-level direction attribute, None when absent (see `direction_for`)."""
        for attribute in self.attributes:
            if isinstance(attribute, Direction):
                return attribute
        return None

    def attribute_values(self, name: str) -> tuple[str | None, ...]:
        """Values of the verbatim attributes called `name` (case-sensitive), in order."""
        return tuple(
            a.value for a in self.attributes if isinstance(a, Attribute) and a.name == name
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionDescription:
    """A whole SDP body. `parse(data)` and `serialize()` are inverse of each other."""

    origin: Origin
    session_name: str = "-"
    information: str | None = None
    uri: str | None = None
    emails: tuple[str, ...] = ()
    phones: tuple[str, ...] = ()
    connection: Connection | None = None
    bandwidths: tuple[Bandwidth, ...] = ()
    timings: tuple[Timing, ...] = (Timing(),)
    time_zones: str | None = None
    key: str | None = None
    attributes: tuple[SessionAttributeLine, ...] = ()
    media: tuple[MediaDescription, ...] = ()

    def __post_init__(self) -> None:
        if not self.timings:
            raise ValueError("RFC 8866 §5.9: a session description has at least one t= line")

    @classmethod
    def parse(cls, data: bytes | str) -> Self:
        """Parse an SDP body; raise `SdpError(status_hint=400)` for anything malformed."""
        return _parse(cls, data)

    def serialize(self) -> bytes:
        """The body as bytes with CRLF line ends (RFC 8866 §5), lines in RFC order."""
        return _serialize(self)

    @property
    def direction(self) -> Direction | None:
        """The session-level direction attribute, None when absent."""
        for attribute in self.attributes:
            if isinstance(attribute, Direction):
                return attribute
        return None

    def connection_for(self, media: MediaDescription) -> Connection | None:
        """The `c=` that applies to `media`: media-level over session-level (RFC 8866 §5.7)."""
        return media.connection or self.connection

    def direction_for(self, media: MediaDescription) -> Direction:
        """Media-level over session-level direction, sendrecv if neither (RFC 3264 §5.1)."""
        return media.direction or self.direction or Direction.SENDRECV

    def attribute_values(self, name: str) -> tuple[str | None, ...]:
        """Values of the verbatim session-level attributes called `name`, in order."""
        return tuple(
            a.value for a in self.attributes if isinstance(a, Attribute) and a.name == name
        )


_Session = TypeVar("_Session", bound=SessionDescription)

# --- Grammar -------------------------------------------------------------------------------

# RFC 8866 §9: token-char = %x21 / %x23-27 / %x2A-2B / %x2D-2E / %x30-39 / %x41-5A / %x5E-7E
_TOKEN = re.compile(r"[!#$%&'*+\-.0-9A-Z^_`a-z{|}~]+")
_PROTO = re.compile(r"[!#$%&'*+\-.0-9A-Z^_`a-z{|}~]+(?:/[!#$%&'*+\-.0-9A-Z^_`a-z{|}~]+)*")
_DIGITS = re.compile(r"[0-9]+")
_PAYLOAD_TYPE = re.compile(r"[0-9]{1,3}")
_DOTTED = re.compile(r"[0-9.]+")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"  # RFC 1123 §2.1
_HOSTNAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*\.?")
_DECIMAL_MS = re.compile(r"([0-9]{1,5})(?:\.([0-9]{1,6}))?")
_FIELD_SEPARATOR = re.compile(r"[ \t]+")
_FMTP = re.compile(r"([^ \t]+)(?:[ \t]+(.*))?")

_UNSPECIFIED = (ipaddress.IPv4Address("0.0.0.0"), ipaddress.IPv6Address("::"))
_DIRECTIONS = {d.value: d for d in Direction}
_KNOWN_LETTERS = frozenset("vosiuepcbtrzkam")


class _Level(enum.Enum):
    SESSION = "session"
    MEDIA = "media"


# The state table: which line types each level accepts (RFC 8866 §9 grammar). `m=` moves
# SESSION → MEDIA and MEDIA → MEDIA (next media description); nothing moves back.
_LETTERS_AT: dict[_Level, frozenset[str]] = {
    _Level.SESSION: frozenset("osiuepcbtrzkam"),
    _Level.MEDIA: frozenset("icbkam"),
}
# Lines that may appear at most once per level.
_SINGLE_AT: dict[_Level, frozenset[str]] = {
    _Level.SESSION: frozenset("osiuczk"),
    _Level.MEDIA: frozenset("ik"),
}


def _ip(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(address)
    except ValueError:
        return None


def _is_rtp_proto(proto: str) -> bool:
    # RFC 8866 §5.14 and the IANA "proto" registry: every RTP profile has RTP/ in its name.
    return "RTP/" in proto.upper()


def _fail(reason: str) -> SdpError:
    return SdpError(reason, status_hint=400)


def _number(text: str, what: str, *, low: int = 0, high: int | None = None) -> int:
    if not _DIGITS.fullmatch(text) or len(text) > MAX_NUMBER_DIGITS:
        raise _fail(f"{what} is not a number: {text[:40]!r}")
    value = int(text)
    if value < low or (high is not None and value > high):
        bound = f"{low}-{high}" if high is not None else f">= {low}"
        raise _fail(f"{what} {value} out of range {bound}")
    return value


def _token(text: str, what: str) -> str:
    if not _TOKEN.fullmatch(text):
        raise _fail(f"{what} is not a token: {text[:40]!r}")
    return text


def _fields(value: str) -> list[str]:
    return [part for part in _FIELD_SEPARATOR.split(value) if part]


# --- Field parsers -------------------------------------------------------------------------


def _parse_origin(value: str) -> Origin:
    parts = _fields(value)
    if len(parts) != 6:
        raise _fail("o= needs 6 fields: username sess-id sess-version nettype addrtype address")
    username, session_id, session_version, nettype, addrtype, address = parts
    return Origin(
        username=username,
        session_id=_number(session_id, "o= sess-id"),
        session_version=_number(session_version, "o= sess-version"),
        nettype=_token(nettype, "o= nettype"),
        addrtype=_token(addrtype, "o= addrtype"),
        # Not validated further: nothing is ever sent to the origin address.
        address=address,
    )


def _check_host(addrtype: str, address: str) -> None:
    if addrtype == "IP4":
        if _DOTTED.fullmatch(address):
            try:
                ipaddress.IPv4Address(address)
            except ValueError:
                raise _fail(f"c= bad IPv4 address {address[:40]!r}") from None
            return
    elif addrtype == "IP6" and ":" in address:
        try:
            ipaddress.IPv6Address(address)
        except ValueError:
            raise _fail(f"c= bad IPv6 address {address[:60]!r}") from None
        return
    if len(address) > _MAX_HOSTNAME or not _HOSTNAME.fullmatch(address):
        raise _fail(f"c= address is neither an {addrtype} literal nor a host name")


def _parse_connection(value: str) -> Connection:
    parts = _fields(value)
    if len(parts) != 3:
        raise _fail("c= needs 3 fields: nettype addrtype connection-address")
    nettype = _token(parts[0], "c= nettype")
    addrtype = _token(parts[1], "c= addrtype")
    address, *suffix = parts[2].split("/")
    ttl: int | None = None
    count: int | None = None
    if nettype != "IN" or addrtype not in ("IP4", "IP6"):
        # An address type we do not know: keep it verbatim; offer_answer will not use it.
        return Connection(nettype=nettype, addrtype=addrtype, address=parts[2])
    if addrtype == "IP4":
        if len(suffix) > 2:
            raise _fail("c= IP4 address takes at most /ttl/count")
        if suffix:
            ttl = _number(suffix[0], "c= ttl", high=_MAX_TTL)
        if len(suffix) == 2:
            count = _number(suffix[1], "c= address count", low=1, high=MAX_PORT)
    else:
        if len(suffix) > 1:
            raise _fail("c= IP6 address takes at most /count")
        if suffix:
            count = _number(suffix[0], "c= address count", low=1, high=MAX_PORT)
    _check_host(addrtype, address)
    return Connection(nettype=nettype, addrtype=addrtype, address=address, ttl=ttl, count=count)


def _parse_bandwidth(value: str) -> Bandwidth:
    bwtype, colon, amount = value.partition(":")
    if not colon:
        raise _fail("b= needs <bwtype>:<bandwidth>")
    return Bandwidth(
        bwtype=_token(bwtype, "b= bwtype"), bandwidth=_number(amount.strip(), "b= bandwidth")
    )


def _parse_timing(value: str) -> Timing:
    parts = _fields(value)
    if len(parts) != 2:
        raise _fail("t= needs 2 fields: start-time stop-time")
    return Timing(start=_number(parts[0], "t= start"), stop=_number(parts[1], "t= stop"))


def _parse_media(value: str) -> MediaDescription:
    parts = _fields(value)
    if len(parts) < 3:
        raise _fail("m= needs <media> <port> <proto> <fmt> ...")
    media = _token(parts[0], "m= media")
    port_text, slash, count_text = parts[1].partition("/")
    port = _number(port_text, "m= port", high=MAX_PORT)
    port_count = _number(count_text, "m= port count", low=1, high=MAX_PORT) if slash else None
    proto = parts[2]
    if not _PROTO.fullmatch(proto):
        raise _fail(f"m= proto is not a token: {proto[:40]!r}")
    formats = tuple(parts[3:])
    if len(formats) > MAX_FORMATS:
        raise _fail(f"m= lists {len(formats)} formats, more than {MAX_FORMATS}")
    if not formats and port != 0:
        raise _fail("m= lists no formats")
    rtp = _is_rtp_proto(proto)
    for fmt in formats:
        if rtp:
            _number(fmt, "m= payload type", high=MAX_PAYLOAD_TYPE)
        else:
            _token(fmt, "m= format")
    return MediaDescription(
        media=media, port=port, port_count=port_count, proto=proto, formats=formats
    )


def _parse_milliseconds(value: str, what: str) -> int:
    # RFC 8866 §6.4 gives no grammar; some phones write "20.0". Whole milliseconds are kept.
    match = _DECIMAL_MS.fullmatch(value.strip())
    if match is None:
        raise _fail(f"a={what} is not a duration: {value[:40]!r}")
    whole, fraction = match.groups()
    milliseconds = int(whole) + (1 if fraction and fraction[0] >= "5" else 0)
    if not 1 <= milliseconds <= MAX_PACKET_TIME_MS:
        raise _fail(f"a={what} {value!r} out of range 1-{MAX_PACKET_TIME_MS} ms")
    return milliseconds


def _parse_rtpmap(value: str) -> RtpMap:
    parts = _fields(value)
    if len(parts) != 2:
        raise _fail("a=rtpmap needs <payload type> <encoding name>/<clock rate>")
    payload_type = _number(parts[0], "a=rtpmap payload type", high=MAX_PAYLOAD_TYPE)
    encoding = parts[1].split("/")
    if len(encoding) not in (2, 3):
        raise _fail("a=rtpmap needs <encoding name>/<clock rate>[/<parameters>]")
    return RtpMap(
        payload_type=payload_type,
        encoding_name=_token(encoding[0], "a=rtpmap encoding name"),
        clock_rate=_number(encoding[1], "a=rtpmap clock rate", low=1),
        encoding_parameters=(
            _token(encoding[2], "a=rtpmap encoding parameters") if len(encoding) == 3 else None
        ),
    )


def _parse_fmtp(value: str, *, rtp: bool) -> Fmtp:
    match = _FMTP.fullmatch(value)
    if match is None:
        raise _fail("a=fmtp needs <format> <parameters>")
    fmt, parameters = match.groups()
    if rtp:
        _number(fmt, "a=fmtp payload type", high=MAX_PAYLOAD_TYPE)
    else:
        _token(fmt, "a=fmtp format")
    return Fmtp(format=fmt, parameters=parameters or "")


def _parse_session_attribute(value: str) -> SessionAttributeLine:
    name, colon, rest = value.partition(":")
    _token(name, "a= attribute name")
    # Typed attribute names are matched case-insensitively: phones write "a=SendRecv";
    # RFC 8866 §6 registers them in lower case.
    lowered = name.lower()
    direction = _DIRECTIONS.get(lowered)
    if direction is not None:
        if colon:
            raise _fail(f"a={lowered} takes no value")
        return direction
    return Attribute(name=name, value=rest if colon else None)


def _parse_media_attribute(value: str, *, rtp: bool) -> AttributeLine:
    name, _, rest = value.partition(":")
    lowered = name.lower()
    if lowered == "rtpmap":
        return _parse_rtpmap(rest)
    if lowered == "fmtp":
        return _parse_fmtp(rest, rtp=rtp)
    if lowered == "ptime":
        return PacketTime(milliseconds=_parse_milliseconds(rest, "ptime"))
    if lowered == "maxptime":
        return MaxPacketTime(milliseconds=_parse_milliseconds(rest, "maxptime"))
    return _parse_session_attribute(value)


def _check_unambiguous(attributes: tuple[AttributeLine, ...], where: str) -> None:
    """Reject two different meanings for one thing (a payload type, the ptime, ...)."""
    rtpmaps: dict[int, RtpMap] = {}
    singles: dict[str, AttributeLine] = {}
    for attribute in attributes:
        if isinstance(attribute, RtpMap):
            seen = rtpmaps.setdefault(attribute.payload_type, attribute)
            if seen != attribute:
                raise _fail(f"{where}: payload type {attribute.payload_type} mapped twice")
        elif isinstance(attribute, PacketTime | MaxPacketTime | Direction):
            kind = "direction" if isinstance(attribute, Direction) else type(attribute).__name__
            first = singles.setdefault(kind, attribute)
            if first != attribute:
                raise _fail(f"{where}: conflicting {kind} attributes")


# --- The parser ----------------------------------------------------------------------------


@dataclass(slots=True)
class _MediaBuilder:
    line: MediaDescription
    information: str | None = None
    key: str | None = None
    connections: list[Connection] = field(default_factory=list)
    bandwidths: list[Bandwidth] = field(default_factory=list)
    attributes: list[AttributeLine] = field(default_factory=list)

    def build(self) -> MediaDescription:
        return replace(
            self.line,
            information=self.information,
            connections=tuple(self.connections),
            bandwidths=tuple(self.bandwidths),
            key=self.key,
            attributes=tuple(self.attributes),
        )


def _lines(data: bytes | str) -> list[str]:
    if isinstance(data, str):
        try:
            raw = data.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:
            raise _fail("text is not encodable") from None
    else:
        raw = bytes(data)
    if len(raw) > MAX_SDP_SIZE:
        raise _fail(f"body of {len(raw)} octets exceeds {MAX_SDP_SIZE}")
    if b"\x00" in raw:
        raise _fail("NUL octet in body")  # RFC 8866 §9: byte-string excludes NUL
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    chunks = raw.split(b"\n")
    if len(chunks) > MAX_LINES + 1:
        raise _fail(f"more than {MAX_LINES} lines")
    lines = []
    for chunk in chunks:
        line = chunk.strip(b" \t\r")
        if not line:
            continue
        if b"\r" in line:
            raise _fail("bare CR inside a line")
        lines.append(line.decode("utf-8", "surrogateescape"))
    return lines


def _parse(cls: type[_Session], data: bytes | str) -> _Session:
    lines = _lines(data)
    if not lines:
        raise _fail("empty session description")
    if lines[0] != "v=0":
        raise _fail("first line must be v=0 (RFC 8866 §5.1)")

    level = _Level.SESSION
    seen: set[str] = set()
    origin: Origin | None = None
    values: dict[str, str] = {}
    emails: list[str] = []
    phones: list[str] = []
    connection: Connection | None = None
    bandwidths: list[Bandwidth] = []
    timings: list[Timing] = []
    session_attributes: list[SessionAttributeLine] = []
    media: list[_MediaBuilder] = []
    current: _MediaBuilder | None = None

    for text in lines[1:]:
        letter = text[0]
        if len(text) < 2 or text[1] != "=":
            raise _fail(f"not a <type>=<value> line: {text[:40]!r}")
        value = text[2:]
        if letter not in _KNOWN_LETTERS:
            raise _fail(f"unknown line type {letter!r} (RFC 8866 §5)")
        if letter not in _LETTERS_AT[level]:
            raise _fail(f"{letter}= line not allowed at {level.value} level")
        if letter in _SINGLE_AT[level]:
            if letter in seen:
                raise _fail(f"{letter}= line repeated at {level.value} level")
            seen.add(letter)

        if letter == "m":
            if len(media) >= MAX_MEDIA_DESCRIPTIONS:
                raise _fail(f"more than {MAX_MEDIA_DESCRIPTIONS} media descriptions")
            current = _MediaBuilder(line=_parse_media(value))
            media.append(current)
            level = _Level.MEDIA
            seen = set()
        elif current is not None:  # _Level.MEDIA: i c b k a
            if letter == "i":
                current.information = value
            elif letter == "k":
                current.key = value
            elif letter == "c":
                current.connections.append(_parse_connection(value))
            elif letter == "b":
                current.bandwidths.append(_parse_bandwidth(value))
            else:
                current.attributes.append(_parse_media_attribute(value, rtp=current.line.is_rtp))
        elif letter == "o":
            origin = _parse_origin(value)
        elif letter == "c":
            connection = _parse_connection(value)
        elif letter == "b":
            bandwidths.append(_parse_bandwidth(value))
        elif letter == "t":
            timings.append(_parse_timing(value))
        elif letter == "r":
            if not timings:
                raise _fail("r= line without a preceding t= line")
            last = timings[-1]
            timings[-1] = Timing(start=last.start, stop=last.stop, repeats=(*last.repeats, value))
        elif letter == "e":
            emails.append(value)
        elif letter == "p":
            phones.append(value)
        elif letter == "a":
            session_attributes.append(_parse_session_attribute(value))
        else:  # s i u z k
            values[letter] = value

    if origin is None:
        raise _fail("missing o= line (RFC 8866 §5.2)")
    session_attrs = tuple(session_attributes)
    _check_unambiguous(session_attrs, "session")
    built = []
    for index, builder in enumerate(media):
        description = builder.build()
        _check_unambiguous(description.attributes, f"m= #{index + 1}")
        if description.port != 0 and connection is None and not description.connections:
            raise _fail(f"m= #{index + 1} has no c= and there is no session-level c=")
        built.append(description)
    return cls(
        origin=origin,
        # RFC 8866 §5.3 recommends "s= " or "s=-" for no name; both read as "-".
        session_name=values.get("s") or "-",
        information=values.get("i"),
        uri=values.get("u"),
        emails=tuple(emails),
        phones=tuple(phones),
        connection=connection,
        bandwidths=tuple(bandwidths),
        timings=tuple(timings) or (Timing(),),
        time_zones=values.get("z"),
        key=values.get("k"),
        attributes=session_attrs,
        media=tuple(built),
    )


# --- The serializer ------------------------------------------------------------------------


def _line(letter: str, value: str) -> str:
    if "\r" in value or "\n" in value or "\x00" in value:
        # A value with a line break would inject lines into the body.
        raise ValueError(f"{letter}= value contains CR, LF or NUL: {value[:40]!r}")
    return f"{letter}={value}"


def _connection_text(connection: Connection) -> str:
    address = connection.address
    if connection.ttl is not None and connection.addrtype != "IP4":
        raise ValueError("only an IP4 connection address has a ttl (RFC 8866 §5.7)")
    if connection.ttl is not None:
        address += f"/{connection.ttl}"
    if connection.count is not None:
        if connection.addrtype == "IP4" and connection.ttl is None:
            raise ValueError("an IP4 address count needs a ttl (RFC 8866 §5.7)")
        address += f"/{connection.count}"
    return f"{connection.nettype} {connection.addrtype} {address}"


def _attribute_text(attribute: AttributeLine) -> str:
    if isinstance(attribute, Direction):
        return attribute.value
    if isinstance(attribute, RtpMap):
        text = f"rtpmap:{attribute.payload_type} {attribute.encoding_name}/{attribute.clock_rate}"
        if attribute.encoding_parameters is not None:
            text += f"/{attribute.encoding_parameters}"
        return text
    if isinstance(attribute, Fmtp):
        if attribute.parameters:
            return f"fmtp:{attribute.format} {attribute.parameters}"
        return f"fmtp:{attribute.format}"
    if isinstance(attribute, PacketTime):
        return f"ptime:{attribute.milliseconds}"
    if isinstance(attribute, MaxPacketTime):
        return f"maxptime:{attribute.milliseconds}"
    if attribute.value is None:
        return attribute.name
    return f"{attribute.name}:{attribute.value}"


def _serialize(session: SessionDescription) -> bytes:
    o = session.origin
    origin = f"{o.username} {o.session_id} {o.session_version} {o.nettype} {o.addrtype} {o.address}"
    out = ["v=0", _line("o", origin), _line("s", session.session_name or "-")]
    if session.information is not None:
        out.append(_line("i", session.information))
    if session.uri is not None:
        out.append(_line("u", session.uri))
    out.extend(_line("e", email) for email in session.emails)
    out.extend(_line("p", phone) for phone in session.phones)
    if session.connection is not None:
        out.append(_line("c", _connection_text(session.connection)))
    out.extend(_line("b", f"{b.bwtype}:{b.bandwidth}") for b in session.bandwidths)
    for timing in session.timings:
        out.append(_line("t", f"{timing.start} {timing.stop}"))
        out.extend(_line("r", repeat) for repeat in timing.repeats)
    if session.time_zones is not None:
        out.append(_line("z", session.time_zones))
    if session.key is not None:
        out.append(_line("k", session.key))
    out.extend(_line("a", _attribute_text(a)) for a in session.attributes)
    for m in session.media:
        port = f"{m.port}/{m.port_count}" if m.port_count is not None else str(m.port)
        out.append(_line("m", " ".join((m.media, port, m.proto, *m.formats))))
        if m.information is not None:
            out.append(_line("i", m.information))
        out.extend(_line("c", _connection_text(c)) for c in m.connections)
        out.extend(_line("b", f"{b.bwtype}:{b.bandwidth}") for b in m.bandwidths)
        if m.key is not None:
            out.append(_line("k", m.key))
        out.extend(_line("a", _attribute_text(a)) for a in m.attributes)
    out.append("")
    return "\r\n".join(out).encode("utf-8", "surrogateescape")
