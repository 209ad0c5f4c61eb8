"""RTCP packets (RFC 3550 §6): SR, RR, SDES, BYE and compound packets.

This module owns the RTCP wire format: the per-packet records, their report
blocks, compound packets (§6.1) and the NTP timestamp arithmetic that sender
reports and LSR/DLSR need (§4, §6.4.1). It holds no session state; the
statistics that go into report blocks are computed by `session.IncomingStream`.

Parsing is RFC 3550 §A.2 minus one check: a compound packet need not start with
SR or RR, because reduced-size RTCP (RFC 5506) and some trunks send a lone BYE.
Still enforced: version 2 in every packet, lengths that tile the datagram
exactly, padding only in the last packet, and per-type body layout. Packet types
we do not interpret (APP, RTPFB/PSFB feedback, XR, …) are kept as
`UnknownRtcpPacket` so a compound packet round-trips. Anything malformed raises
`RtcpError` (a kind of `RtpError`) and nothing else; the answer on the wire is
none — the datagram is dropped and counted.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import TypeAlias, TypeVar

from .packet import RTP_VERSION, RtpError

__all__ = [
    "MAX_REPORT_BLOCKS",
    "NTP_UNIX_OFFSET",
    "Goodbye",
    "ReceiverReport",
    "ReportBlock",
    "RtcpCompound",
    "RtcpError",
    "RtcpPacket",
    "RtcpType",
    "SdesChunk",
    "SdesItem",
    "SenderReport",
    "SourceDescription",
    "UnknownRtcpPacket",
    "ntp_middle",
    "ntp_timestamp",
    "ntp_to_unix",
]

HEADER_SIZE = 4  # RFC 3550 §6.4.1: V/P/count, packet type, length
REPORT_BLOCK_SIZE = 24  # RFC 3550 §6.4.1: six 32-bit words
MAX_REPORT_BLOCKS = 31  # RFC 3550 §6.4.1: RC is 5 bits
MAX_SOURCES = 31  # RFC 3550 §6.5, §6.6: SC is 5 bits
NTP_UNIX_OFFSET = 2_208_988_800  # seconds from 1900-01-01 (NTP, RFC 5905) to 1970-01-01
MAX_LOST = 0x7FFFFF  # RFC 3550 §6.4.1: cumulative number of packets lost is signed 24-bit
MIN_LOST = -0x800000


class RtcpType:
    """RTCP packet type numbers (RFC 3550 §12.1, RFC 4585 §6.1, RFC 3611 §2)."""

    SR = 200
    RR = 201
    SDES = 202
    BYE = 203
    APP = 204
    RTPFB = 205
    PSFB = 206
    XR = 207


class SdesItem:
    """SDES item types (RFC 3550 §6.5)."""

    END = 0
    CNAME = 1
    NAME = 2
    EMAIL = 3
    PHONE = 4
    LOC = 5
    TOOL = 6
    NOTE = 7
    PRIV = 8


class RtcpError(RtpError):
    """A datagram that is not a well-formed RTCP compound packet (dropped, counted)."""


_HEADER = struct.Struct("!BBH")
_REPORT_BLOCK = struct.Struct("!IIIIII")
_SR_INFO = struct.Struct("!IQIII")
_SSRC = struct.Struct("!I")


def ntp_timestamp(unix_seconds: float) -> int:
    """64-bit NTP timestamp (32.32 fixed point since 1900) for a Unix time."""
    return round((unix_seconds + NTP_UNIX_OFFSET) * (1 << 32)) & 0xFFFF_FFFF_FFFF_FFFF


def ntp_to_unix(ntp: int) -> float:
    """Inverse of `ntp_timestamp` (to within 2**-32 s)."""
    return ntp / (1 << 32) - NTP_UNIX_OFFSET


def ntp_middle(ntp: int) -> int:
    """The middle 32 bits of an NTP timestamp: the LSR field of a report block (§6.4.1)."""
    return (ntp >> 16) & 0xFFFF_FFFF


def _header(packet_type: int, count: int, body_size: int) -> bytes:
    if body_size % 4:
        raise ValueError("RTCP body must be whole 32-bit words")
    return _HEADER.pack(RTP_VERSION << 6 | count, packet_type, (HEADER_SIZE + body_size) // 4 - 1)


@dataclass(frozen=True, slots=True, kw_only=True)
class ReportBlock:
    """Reception report about one source (RFC 3550 §6.4.1).

    `fraction_lost` is the 8-bit fixed-point fraction since the previous
    report; `packets_lost` the signed cumulative count; `jitter` in timestamp
    units; `last_sr` the middle 32 bits of the last SR's NTP time and
    `delay_since_last_sr` in units of 1/65536 s.
    """

    ssrc: int
    fraction_lost: int = 0
    packets_lost: int = 0
    highest_sequence: int = 0
    jitter: int = 0
    last_sr: int = 0
    delay_since_last_sr: int = 0

    @classmethod
    def parse(cls, data: bytes, offset: int = 0) -> ReportBlock:
        ssrc, lost_word, highest, jitter, lsr, dlsr = _REPORT_BLOCK.unpack_from(data, offset)
        lost = lost_word & 0xFFFFFF
        if lost & 0x800000:
            lost -= 0x1000000
        return cls(
            ssrc=ssrc,
            fraction_lost=lost_word >> 24,
            packets_lost=lost,
            highest_sequence=highest,
            jitter=jitter,
            last_sr=lsr,
            delay_since_last_sr=dlsr,
        )

    def serialize(self) -> bytes:
        if not 0 <= self.fraction_lost <= 255:
            raise ValueError(f"fraction lost {self.fraction_lost} is not 0..255")
        if not MIN_LOST <= self.packets_lost <= MAX_LOST:
            raise ValueError(f"cumulative loss {self.packets_lost} does not fit 24 bits")
        try:
            return _REPORT_BLOCK.pack(
                self.ssrc,
                self.fraction_lost << 24 | (self.packets_lost & 0xFFFFFF),
                self.highest_sequence,
                self.jitter,
                self.last_sr,
                self.delay_since_last_sr,
            )
        except struct.error as exc:
            raise ValueError(f"report block field out of range: {exc}") from None


def _parse_blocks(body: bytes, offset: int, count: int) -> tuple[tuple[ReportBlock, ...], bytes]:
    end = offset + count * REPORT_BLOCK_SIZE
    if end > len(body):
        raise RtcpError(f"{count} report blocks do not fit a {len(body)}-octet body")
    blocks = tuple(ReportBlock.parse(body, offset + i * REPORT_BLOCK_SIZE) for i in range(count))
    return blocks, bytes(body[end:])


def _check_blocks(reports: tuple[ReportBlock, ...]) -> None:
    if len(reports) > MAX_REPORT_BLOCKS:
        raise ValueError(f"{len(reports)} report blocks, at most {MAX_REPORT_BLOCKS} fit")


@dataclass(frozen=True, slots=True, kw_only=True)
class SenderReport:
    """SR (RFC 3550 §6.4.1). `extension` is the profile-specific tail, kept verbatim."""

    ssrc: int
    ntp_timestamp: int
    rtp_timestamp: int
    packet_count: int
    octet_count: int
    reports: tuple[ReportBlock, ...] = ()
    extension: bytes = b""

    @classmethod
    def parse(cls, data: bytes) -> SenderReport:
        return _parse_single(data, cls)

    @classmethod
    def _from_body(cls, count: int, body: bytes) -> SenderReport:
        if len(body) < _SR_INFO.size:
            raise RtcpError("SR shorter than its sender information")
        ssrc, ntp, rtp_ts, packets, octets = _SR_INFO.unpack_from(body)
        reports, extension = _parse_blocks(body, _SR_INFO.size, count)
        return cls(
            ssrc=ssrc,
            ntp_timestamp=ntp,
            rtp_timestamp=rtp_ts,
            packet_count=packets,
            octet_count=octets,
            reports=reports,
            extension=extension,
        )

    def serialize(self) -> bytes:
        _check_blocks(self.reports)
        try:
            info = _SR_INFO.pack(
                self.ssrc, self.ntp_timestamp, self.rtp_timestamp, self.packet_count,
                self.octet_count,
            )  # fmt: skip
        except struct.error as exc:
            raise ValueError(f"SR field out of range: {exc}") from None
        body = info + b"".join(r.serialize() for r in self.reports) + self.extension
        return _header(RtcpType.SR, len(self.reports), len(body)) + body


@dataclass(frozen=True, slots=True, kw_only=True)
class ReceiverReport:
    """RR (RFC 3550 §6.4.2)."""

    ssrc: int
    reports: tuple[ReportBlock, ...] = ()
    extension: bytes = b""

    @classmethod
    def parse(cls, data: bytes) -> ReceiverReport:
        return _parse_single(data, cls)

    @classmethod
    def _from_body(cls, count: int, body: bytes) -> ReceiverReport:
        if len(body) < 4:
            raise RtcpError("RR shorter than its SSRC")
        reports, extension = _parse_blocks(body, 4, count)
        return cls(ssrc=_SSRC.unpack_from(body)[0], reports=reports, extension=extension)

    def serialize(self) -> bytes:
        _check_blocks(self.reports)
        try:
            ssrc = _SSRC.pack(self.ssrc)
        except struct.error as exc:
            raise ValueError(f"RR SSRC out of range: {exc}") from None
        body = ssrc + b"".join(r.serialize() for r in self.reports) + self.extension
        return _header(RtcpType.RR, len(self.reports), len(body)) + body


@dataclass(frozen=True, slots=True, kw_only=True)
class SdesChunk:
    """The SDES items of one source (RFC 3550 §6.5): `(item type, value)` pairs."""

    ssrc: int
    items: tuple[tuple[int, bytes], ...] = ()

    @property
    def cname(self) -> str | None:
        """The CNAME item (§6.5.1), decoded as UTF-8, if present."""
        for kind, value in self.items:
            if kind == SdesItem.CNAME:
                return value.decode("utf-8", "replace")
        return None

    def serialize(self) -> bytes:
        parts = [_SSRC.pack(self.ssrc)]
        for kind, value in self.items:
            if not 1 <= kind <= 255:
                raise ValueError(f"SDES item type {kind} is not 1..255")
            if len(value) > 255:
                raise ValueError("SDES item longer than 255 octets")
            parts.append(bytes((kind, len(value))) + value)
        chunk = b"".join(parts)
        # At least one null octet ends the item list, then pad to 32 bits (§6.5).
        return chunk + bytes(4 - len(chunk) % 4)


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceDescription:
    """SDES (RFC 3550 §6.5)."""

    chunks: tuple[SdesChunk, ...] = ()

    @classmethod
    def parse(cls, data: bytes) -> SourceDescription:
        return _parse_single(data, cls)

    @classmethod
    def _from_body(cls, count: int, body: bytes) -> SourceDescription:
        chunks = []
        offset = 0
        for _ in range(count):
            if offset + 4 > len(body):
                raise RtcpError("SDES chunk count runs past the packet")
            ssrc = _SSRC.unpack_from(body, offset)[0]
            offset += 4
            items = []
            while True:
                if offset >= len(body):
                    raise RtcpError("SDES chunk without its terminating null item")
                kind = body[offset]
                if kind == SdesItem.END:
                    offset = (offset // 4 + 1) * 4  # skip the null octets up to 32 bits
                    break
                if offset + 2 > len(body):
                    raise RtcpError("SDES item header cut short")
                length = body[offset + 1]
                value = body[offset + 2 : offset + 2 + length]
                if len(value) != length:
                    raise RtcpError("SDES item longer than the packet")
                items.append((kind, bytes(value)))
                offset += 2 + length
            chunks.append(SdesChunk(ssrc=ssrc, items=tuple(items)))
        if offset > len(body) or any(body[offset:]):
            raise RtcpError("SDES packet has octets after its last chunk")
        return cls(chunks=tuple(chunks))

    def serialize(self) -> bytes:
        if len(self.chunks) > MAX_SOURCES:
            raise ValueError(f"{len(self.chunks)} SDES chunks, at most {MAX_SOURCES} fit")
        body = b"".join(chunk.serialize() for chunk in self.chunks)
        return _header(RtcpType.SDES, len(self.chunks), len(body)) + body


@dataclass(frozen=True, slots=True, kw_only=True)
class Goodbye:
    """BYE (RFC 3550 §6.6): the sources leaving and an optional reason (UTF-8 octets)."""

    sources: tuple[int, ...] = ()
    reason: bytes = b""

    @classmethod
    def parse(cls, data: bytes) -> Goodbye:
        return _parse_single(data, cls)

    @classmethod
    def _from_body(cls, count: int, body: bytes) -> Goodbye:
        end = 4 * count
        if end > len(body):
            raise RtcpError(f"BYE source count {count} runs past the packet")
        sources = struct.unpack_from(f"!{count}I", body)
        reason = b""
        if end < len(body):
            length = body[end]
            reason = bytes(body[end + 1 : end + 1 + length])
            if len(reason) != length:
                raise RtcpError("BYE reason longer than the packet")
            if any(body[end + 1 + length :]):
                raise RtcpError("BYE has octets after its reason")
        return cls(sources=tuple(sources), reason=reason)

    def serialize(self) -> bytes:
        if len(self.sources) > MAX_SOURCES:
            raise ValueError(f"{len(self.sources)} BYE sources, at most {MAX_SOURCES} fit")
        if len(self.reason) > 255:
            raise ValueError("BYE reason longer than 255 octets")
        try:
            body = struct.pack(f"!{len(self.sources)}I", *self.sources)
        except struct.error as exc:
            raise ValueError(f"BYE SSRC out of range: {exc}") from None
        if self.reason:
            reason = bytes((len(self.reason),)) + self.reason
            body += reason + bytes(-len(reason) % 4)
        return _header(RtcpType.BYE, len(self.sources), len(body)) + body


@dataclass(frozen=True, slots=True, kw_only=True)
class UnknownRtcpPacket:
    """A packet type this module does not interpret (APP, feedback, XR…), kept verbatim."""

    packet_type: int
    count: int = 0
    body: bytes = b""

    def serialize(self) -> bytes:
        if not 0 <= self.count <= 31 or not 0 <= self.packet_type <= 255:
            raise ValueError("RTCP count or packet type out of range")
        return _header(self.packet_type, self.count, len(self.body)) + self.body


RtcpPacket: TypeAlias = (
    SenderReport | ReceiverReport | SourceDescription | Goodbye | UnknownRtcpPacket
)

_PARSERS: dict[
    int,
    type[SenderReport] | type[ReceiverReport] | type[SourceDescription] | type[Goodbye],
] = {
    RtcpType.SR: SenderReport,
    RtcpType.RR: ReceiverReport,
    RtcpType.SDES: SourceDescription,
    RtcpType.BYE: Goodbye,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class RtcpCompound:
    """A compound RTCP packet (RFC 3550 §6.1), as one UDP datagram carries it.

    `padding` is the number of padding octets (count octet included) at the end
    of the last packet; only the last packet may be padded (§A.2).
    """

    packets: tuple[RtcpPacket, ...]
    padding: int = 0

    @classmethod
    def parse(cls, data: bytes) -> RtcpCompound:
        """All packets of the datagram `data`, or `RtcpError`."""
        packets: list[RtcpPacket] = []
        offset = 0
        size = len(data)
        padding = 0
        if size == 0:
            raise RtcpError("empty datagram")
        while offset < size:
            if offset + HEADER_SIZE > size:
                raise RtcpError(f"RTCP header cut short at octet {offset}")
            first, packet_type, words = _HEADER.unpack_from(data, offset)
            if first >> 6 != RTP_VERSION:
                raise RtcpError(f"RTCP version {first >> 6} at octet {offset}")
            end = offset + 4 * (words + 1)
            if end > size:
                raise RtcpError(f"RTCP length {words} runs past the datagram")
            body_end = end
            if first & 0x20:
                if end != size:
                    raise RtcpError("padding in an RTCP packet that is not the last")
                padding = data[end - 1]
                if padding == 0 or padding > end - offset - HEADER_SIZE:
                    raise RtcpError(f"RTCP padding count {padding} is invalid")
                body_end = end - padding
            count = first & 0x1F
            body = data[offset + HEADER_SIZE : body_end]
            parser = _PARSERS.get(packet_type)
            if parser is None:
                packets.append(
                    UnknownRtcpPacket(packet_type=packet_type, count=count, body=bytes(body))
                )
            else:
                packets.append(parser._from_body(count, body))
            offset = end
        return cls(packets=tuple(packets), padding=padding)

    def serialize(self) -> bytes:
        if not self.packets:
            raise ValueError("a compound RTCP packet needs at least one packet")
        wire = b"".join(packet.serialize() for packet in self.packets)
        if not self.padding:
            return wire
        if not 4 <= self.padding <= 255 or self.padding % 4:
            raise ValueError("RTCP padding must be a multiple of 4 octets, 4..252")
        last = self.packets[-1].serialize()
        first, packet_type, words = _HEADER.unpack_from(last)
        padded_header = _HEADER.pack(first | 0x20, packet_type, words + self.padding // 4)
        pad = bytes(self.padding - 1) + bytes((self.padding,))
        return wire[: len(wire) - len(last)] + padded_header + last[HEADER_SIZE:] + pad


_Parsed = TypeVar("_Parsed", SenderReport, ReceiverReport, SourceDescription, Goodbye)


def _parse_single(data: bytes, kind: type[_Parsed]) -> _Parsed:
    compound = RtcpCompound.parse(data)
    if len(compound.packets) != 1 or not isinstance(compound.packets[0], kind):
        raise RtcpError(f"not a single {kind.__name__} packet")
    return compound.packets[0]
