"""RTP data packets: the RFC 3550 §5.1 fixed header, CSRC list, header extension and padding.

This module owns the wire format of one RTP packet and nothing else: no session
state, no clock. Two ways in:

* `parse_header(data)` is the per-packet hot path of the relay and recorder. One
  `struct.unpack_from` of the 12-byte fixed header and a plain tuple out; packets
  with CSRCs, an extension or padding take a slower branch that validates them too.
* `RtpPacket.parse(data)` builds the full, immutable record (tests, tools, the
  rare packet that needs its extension); `RtpPacket.serialize()` is its inverse
  and reproduces captured bytes exactly (padding octets other than the count are
  written as zero, which is what every sender does).

Every malformed datagram raises `RtpError` and nothing else (the h11 fuzz
invariant, checked with hypothesis). RTP has no error response: the only answer
on the wire is silence, i.e. the transport drops the datagram and counts it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import TypeAlias

__all__ = [
    "FIXED_HEADER_SIZE",
    "MAX_CSRC_COUNT",
    "RTP_VERSION",
    "RtpError",
    "RtpExtension",
    "RtpHeader",
    "RtpPacket",
    "is_rtcp",
    "parse_header",
]

RTP_VERSION = 2  # RFC 3550 §5.1 "version (V): 2 bits ... The version defined by this spec is two"
FIXED_HEADER_SIZE = 12  # RFC 3550 §5.1: V/P/X/CC, M/PT, sequence number, timestamp, SSRC
MAX_CSRC_COUNT = 15  # RFC 3550 §5.1: CC is a 4-bit field
MAX_PAYLOAD_TYPE = 127  # RFC 3550 §5.1: PT is 7 bits

# First octet of the plain case: V=2, P=0, X=0, CC=0.
_PLAIN_FIRST_OCTET = RTP_VERSION << 6

_FIXED = struct.Struct("!BBHII")
_unpack_fixed = _FIXED.unpack_from
_EXTENSION_HEADER = struct.Struct("!HH")  # RFC 3550 §5.3.1: profile-defined 16 bits, length


class RtpError(ValueError):
    """A datagram that is not a well-formed RTP packet.

    Wire answer: none. RFC 3550 has no error response; the receiver discards
    the datagram (and the transport counts it), exactly as §A.1 does with
    packets that fail header validity checks.
    """


# (payload_type, marker, sequence_number, timestamp, ssrc, payload_start, payload_end):
# `data[payload_start:payload_end]` is the payload with CSRCs, extension and padding removed.
RtpHeader: TypeAlias = tuple[int, bool, int, int, int, int, int]


def parse_header(data: bytes) -> RtpHeader:
    """Validate `data` as RTP and return its header fields as a plain tuple.

    `(payload_type, marker, sequence_number, timestamp, ssrc, payload_start,
    payload_end)`. Costs one `unpack_from` for the usual packet (no CSRC,
    extension or padding). Raises `RtpError` for anything malformed.
    """
    try:
        first, second, sequence_number, timestamp, ssrc = _unpack_fixed(data)
    except struct.error:
        raise RtpError(f"shorter than the {FIXED_HEADER_SIZE}-octet fixed header") from None
    if first == _PLAIN_FIRST_OCTET:
        return (second & 0x7F, second > 0x7F, sequence_number, timestamp, ssrc, 12, len(data))
    start, end = _payload_bounds(data, first)
    return (second & 0x7F, second > 0x7F, sequence_number, timestamp, ssrc, start, end)


def _payload_bounds(data: bytes, first: int) -> tuple[int, int]:
    """Where the payload starts and ends once CSRCs, extension and padding are accounted for."""
    if first >> 6 != RTP_VERSION:
        raise RtpError(f"RTP version {first >> 6}, expected {RTP_VERSION}")
    start = FIXED_HEADER_SIZE + 4 * (first & 0x0F)
    size = len(data)
    if start > size:
        raise RtpError(f"CSRC count {first & 0x0F} runs past the end of a {size}-octet packet")
    if first & 0x10:  # X: one header extension follows the CSRC list (RFC 3550 §5.3.1)
        if start + 4 > size:
            raise RtpError("header extension flag set but no room for its header")
        words = _EXTENSION_HEADER.unpack_from(data, start)[1]
        start += 4 + 4 * words
        if start > size:
            raise RtpError(f"header extension of {words} words runs past the end of the packet")
    end = size
    if first & 0x20:  # P: the last octet counts the padding octets, itself included (§5.1)
        padding = data[-1]
        if padding == 0:
            raise RtpError("padding flag set but the padding count is zero")
        if padding > size - start:
            raise RtpError(f"padding of {padding} octets is longer than the packet body")
        end = size - padding
    return start, end


@dataclass(frozen=True, slots=True, kw_only=True)
class RtpExtension:
    """The one RFC 3550 §5.3.1 header extension: a 16-bit profile value and 32-bit words."""

    profile: int
    data: bytes = b""


@dataclass(frozen=True, slots=True, kw_only=True)
class RtpPacket:
    """One RTP packet (RFC 3550 §5.1).

    `padding` is the number of padding octets including the count octet
    (0 = the P bit is clear). `payload` excludes CSRCs, extension and padding.
    """

    payload_type: int
    sequence_number: int
    timestamp: int
    ssrc: int
    marker: bool = False
    csrc: tuple[int, ...] = ()
    extension: RtpExtension | None = None
    payload: bytes = b""
    padding: int = 0

    @classmethod
    def parse(cls, data: bytes) -> RtpPacket:
        """The packet in `data`, or `RtpError` if it is not well-formed RTP."""
        payload_type, marker, sequence_number, timestamp, ssrc, start, end = parse_header(data)
        first = data[0]
        count = first & 0x0F
        csrc = struct.unpack_from(f"!{count}I", data, FIXED_HEADER_SIZE) if count else ()
        extension = None
        if first & 0x10:
            offset = FIXED_HEADER_SIZE + 4 * count
            profile, words = _EXTENSION_HEADER.unpack_from(data, offset)
            extension = RtpExtension(
                profile=profile, data=bytes(data[offset + 4 : offset + 4 + 4 * words])
            )
        return cls(
            payload_type=payload_type,
            sequence_number=sequence_number,
            timestamp=timestamp,
            ssrc=ssrc,
            marker=marker,
            csrc=tuple(csrc),
            extension=extension,
            payload=bytes(data[start:end]),
            padding=len(data) - end,
        )

    def serialize(self) -> bytes:
        """The packet on the wire; `ValueError` if a field does not fit its width."""
        if not 0 <= self.payload_type <= MAX_PAYLOAD_TYPE:
            raise ValueError(f"payload type {self.payload_type} is not 0..127")
        if len(self.csrc) > MAX_CSRC_COUNT:
            raise ValueError(f"{len(self.csrc)} CSRCs, at most {MAX_CSRC_COUNT} fit")
        if not 0 <= self.padding <= 255:
            raise ValueError(f"padding of {self.padding} octets does not fit its count octet")
        first = RTP_VERSION << 6 | len(self.csrc)
        if self.padding:
            first |= 0x20
        if self.extension is not None:
            first |= 0x10
        second = self.payload_type | (0x80 if self.marker else 0)
        try:
            parts = [
                _FIXED.pack(first, second, self.sequence_number, self.timestamp, self.ssrc),
                struct.pack(f"!{len(self.csrc)}I", *self.csrc),
            ]
            if self.extension is not None:
                words, remainder = divmod(len(self.extension.data), 4)
                if remainder:
                    raise ValueError("header extension data must be whole 32-bit words")
                parts.append(_EXTENSION_HEADER.pack(self.extension.profile, words))
                parts.append(self.extension.data)
        except struct.error as exc:
            raise ValueError(f"RTP header field out of range: {exc}") from None
        parts.append(self.payload)
        if self.padding:
            parts.append(bytes(self.padding - 1) + bytes((self.padding,)))
        return b"".join(parts)


def is_rtcp(data: bytes) -> bool:
    """True if a datagram on a shared RTP/RTCP port is RTCP (RFC 5761 §4).

    RTCP packet types 192-223 sit where RTP has the marker bit and payload type,
    so RFC 5761 §4 reserves RTP payload types 64-95 and demultiplexes on the
    7-bit payload-type value of the second octet. We use separate ports (RFC
    3550 §11); this is for a peer that sends RTCP to the RTP port anyway.
    """
    return len(data) >= 2 and 64 <= (data[1] & 0x7F) <= 95
