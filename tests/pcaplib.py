"""A small reader for classic libpcap capture files, for tests only.

It owns getting UDP datagrams (with their capture time and addresses) out of the
pcap files SIPp ships in /usr/share/sip-tester/ and similar captures, without
scapy or dpkt. Supported: the classic file format (magic 0xa1b2c3d4 with
microsecond or 0xa1b23c4d with nanosecond timestamps, either byte order) —
not pcapng — with link types Ethernet (1, including 802.1Q/802.1ad VLAN
tags), Linux cooked capture v1 (113) and v2 (276), BSD loopback (0) and raw
IP (101/228); network layer IPv4 only; transport UDP only. Everything else
in a file (TCP, ARP, IPv6, non-first IP fragments) is skipped, not an error;
a truncated or corrupt file raises `PcapError`.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = ["PcapError", "UdpDatagram", "iter_udp", "read_udp"]

# Link-layer header types (https://www.tcpdump.org/linktypes.html).
LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_LINUX_SLL2 = 276

ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_VLAN = (0x8100, 0x88A8, 0x9100)
IPPROTO_UDP = 17

_MAGIC = {
    b"\xd4\xc3\xb2\xa1": ("<", 1e-6),
    b"\xa1\xb2\xc3\xd4": (">", 1e-6),
    b"\x4d\x3c\xb2\xa1": ("<", 1e-9),
    b"\xa1\xb2\x3c\x4d": (">", 1e-9),
}


class PcapError(ValueError):
    """The file is not a classic pcap file or is cut short."""


@dataclass(frozen=True, slots=True, kw_only=True)
class UdpDatagram:
    """One UDP datagram as captured."""

    time: float
    src: tuple[str, int]
    dst: tuple[str, int]
    payload: bytes


def _ipv4_udp(packet: bytes, time: float) -> UdpDatagram | None:
    if len(packet) < 20 or packet[0] >> 4 != 4:
        return None
    ihl = (packet[0] & 0x0F) * 4
    total_length = struct.unpack_from("!H", packet, 2)[0]
    flags_fragment = struct.unpack_from("!H", packet, 6)[0]
    if packet[9] != IPPROTO_UDP or ihl < 20 or flags_fragment & 0x3FFF:
        return None  # not UDP, or a fragment (SIPp's captures have none)
    end = min(total_length, len(packet)) if total_length else len(packet)
    if end < ihl + 8:
        return None
    src_ip = ".".join(str(b) for b in packet[12:16])
    dst_ip = ".".join(str(b) for b in packet[16:20])
    sport, dport, udp_length = struct.unpack_from("!HHH", packet, ihl)
    payload_end = min(ihl + udp_length, end) if udp_length >= 8 else end
    return UdpDatagram(
        time=time,
        src=(src_ip, sport),
        dst=(dst_ip, dport),
        payload=bytes(packet[ihl + 8 : payload_end]),
    )


def _network_layer(linktype: int, frame: bytes) -> bytes | None:
    """The IPv4 packet inside a link-layer frame, or None if it carries something else."""
    if linktype == LINKTYPE_ETHERNET:
        offset = 12
        while True:
            if len(frame) < offset + 2:
                return None
            ethertype = struct.unpack_from("!H", frame, offset)[0]
            if ethertype in ETHERTYPE_VLAN:
                offset += 4
                continue
            return frame[offset + 2 :] if ethertype == ETHERTYPE_IPV4 else None
    if linktype == LINKTYPE_LINUX_SLL:
        if len(frame) < 16 or struct.unpack_from("!H", frame, 14)[0] != ETHERTYPE_IPV4:
            return None
        return frame[16:]
    if linktype == LINKTYPE_LINUX_SLL2:
        if len(frame) < 20 or struct.unpack_from("!H", frame, 0)[0] != ETHERTYPE_IPV4:
            return None
        return frame[20:]
    if linktype == LINKTYPE_NULL:
        # The address family is in the capturing host's byte order; AF_INET is 2 everywhere.
        if len(frame) < 4 or 2 not in (frame[0], frame[3]):
            return None
        return frame[4:]
    if linktype in (LINKTYPE_RAW, LINKTYPE_IPV4):
        return frame
    raise PcapError(f"unsupported link type {linktype}")


def iter_udp(data: bytes) -> Iterator[UdpDatagram]:
    """Every IPv4/UDP datagram in the pcap file contents `data`, in file order."""
    if len(data) < 24:
        raise PcapError("shorter than a pcap global header")
    try:
        order, resolution = _MAGIC[data[:4]]
    except KeyError:
        raise PcapError(f"not a classic pcap file (magic {data[:4].hex()})") from None
    linktype = struct.unpack_from(order + "I", data, 20)[0] & 0x0FFFFFFF
    record = struct.Struct(order + "IIII")
    offset = 24
    while offset < len(data):
        if offset + record.size > len(data):
            raise PcapError(f"record header cut short at byte {offset}")
        seconds, fraction, captured, _original = record.unpack_from(data, offset)
        offset += record.size
        if offset + captured > len(data):
            raise PcapError(f"record body cut short at byte {offset}")
        frame = data[offset : offset + captured]
        offset += captured
        packet = _network_layer(linktype, frame)
        if packet is None:
            continue
        datagram = _ipv4_udp(packet, seconds + fraction * resolution)
        if datagram is not None:
            yield datagram


def read_udp(path: str | Path) -> list[UdpDatagram]:
    """All IPv4/UDP datagrams of the capture file at `path`."""
    return list(iter_udp(Path(path).read_bytes()))
