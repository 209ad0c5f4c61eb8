"""SIP message capture per incident: the ladder diagram and the pcap export.

Telecom staff read SIP as ladder diagrams (sngrep, Wireshark), not as log
lines. Every message of an incident's legs is kept with the incident, as the
bytes that crossed the wire, up to a size cap per incident, so the telecom and
auditor pages can draw caller ↔ centre ↔ operator/agency with times, methods
and codes, open each message to its full text, and export a pcap Wireshark
opens.

Pure: messages come in with their wall-clock time, addresses go out as
columns; no sockets, no clock reads.

Secrets are masked before a message is stored, so neither the page nor the
pcap can leak them: the digest `response` (an offline-guessable function of
the password), and SDES keys (`a=crypto:… inline:KEY`, RFC 4568 §6.1) that
would let anyone with the pcap decrypt the SRTP.
"""

from __future__ import annotations

import ipaddress
import re
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

__all__ = [
    "MAX_CAPTURE_BYTES",
    "CaptureBook",
    "CapturedMessage",
    "Ladder",
    "LadderRow",
    "first_line",
    "ladder",
    "mask_secrets",
    "read_pcap",
    "to_pcap",
]

# Per incident. A typical call (INVITE, 100, 200, ACK, a re-INVITE, an
# operator leg, BYEs) is ~10-20 KB; a transfer or callback a few more legs.
# 512 KiB keeps the whole history of a busy incident and bounds a hostile one.
MAX_CAPTURE_BYTES = 512 * 1024

Direction = Literal["in", "out"]


@dataclass(frozen=True, slots=True, kw_only=True)
class CapturedMessage:
    """One SIP message as it crossed the wire (secrets already masked)."""

    at: float  # wall clock, UTC seconds
    direction: Direction  # as seen by the centre
    local: tuple[str, int]
    remote: tuple[str, int]
    transport: str  # "udp" | "tcp" | "tls"
    data: bytes
    leg: str = ""  # "caller", "operator:op1", "agency:damkar", …

    @property
    def source(self) -> tuple[str, int]:
        return self.remote if self.direction == "in" else self.local

    @property
    def destination(self) -> tuple[str, int]:
        return self.local if self.direction == "in" else self.remote

    def to_json(self) -> dict[str, object]:
        return {
            "at": self.at,
            "direction": self.direction,
            "local": f"{_hp(self.local)}",
            "remote": f"{_hp(self.remote)}",
            "transport": self.transport,
            "leg": self.leg,
            "first_line": first_line(self.data),
            "text": self.data.decode("utf-8", "replace"),
        }


def _hp(addr: tuple[str, int]) -> str:
    host, port = addr
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


_RESPONSE_PARAM = re.compile(rb'(?i)(\bresponse\s*=\s*)("[^"]*"|[^,\s\r\n]*)')
_CRYPTO_KEY = re.compile(rb"(?i)(inline:)([A-Za-z0-9+/=]+)")
_AUTH_HEADER = re.compile(rb"(?im)^((?:proxy-)?authorization\s*:)(.*)$")


def mask_secrets(data: bytes) -> bytes:
    """The message with digest responses and SDES keys replaced by `***`."""

    def auth_line(m: re.Match[bytes]) -> bytes:
        return m.group(1) + _RESPONSE_PARAM.sub(rb'\1"***"', m.group(2))

    data = _AUTH_HEADER.sub(auth_line, data)
    return _CRYPTO_KEY.sub(rb"\1***", data)


def first_line(data: bytes) -> str:
    end = data.find(b"\r\n")
    line = data if end < 0 else data[:end]
    return line[:200].decode("utf-8", "replace")


def _label(data: bytes) -> str:
    """`INVITE`, `200 OK (INVITE)`: what a ladder arrow says."""
    line = first_line(data)
    if line.startswith("SIP/2.0 "):
        parts = line.split(" ", 2)
        code = parts[1] if len(parts) > 1 else "?"
        reason = parts[2] if len(parts) > 2 else ""
        m = re.search(rb"(?im)^(?:cseq|CSeq)\s*:\s*\d+\s+(\S+)", data)
        method = m.group(1).decode("ascii", "replace") if m else ""
        return f"{code} {reason}".strip() + (f" ({method})" if method else "")
    return line.split(" ", 1)[0]


@dataclass(slots=True)
class CaptureBook:
    """The messages of one incident, bounded by `cap` bytes.

    Once the cap is reached later messages are counted, not kept: the start of
    an incident (the INVITE, the answer, the operator's leg) is what telecom
    staff and auditors need first."""

    cap: int = MAX_CAPTURE_BYTES
    messages: list[CapturedMessage] = field(default_factory=list)
    size: int = 0
    dropped: int = 0

    def add(self, message: CapturedMessage) -> bool:
        if self.size + len(message.data) > self.cap:
            self.dropped += 1
            return False
        self.messages.append(message)
        self.size += len(message.data)
        return True


@dataclass(frozen=True, slots=True, kw_only=True)
class LadderRow:
    at: float
    source: int  # column index
    destination: int
    label: str
    index: int  # position in the capture, to open the full text


@dataclass(frozen=True, slots=True, kw_only=True)
class Ladder:
    columns: tuple[str, ...]  # "caller 192.0.2.1:5060", "centre 127.0.0.1:5060", …
    rows: tuple[LadderRow, ...]


def ladder(messages: Sequence[CapturedMessage]) -> Ladder:
    """Columns in the order a reader expects: the far ends of inbound legs
    (the caller's side) on the left, the centre in the middle, the far ends
    of outbound legs (operators, agencies) on the right; rows in time order."""
    ordered = sorted(enumerate(messages), key=lambda im: (im[1].at, im[0]))
    left: list[str] = []
    centre: list[str] = []
    right: list[str] = []
    leg_side: dict[tuple[str, int], str] = {}
    for _, m in ordered:
        local = f"centre {_hp(m.local)}"
        if local not in centre:
            centre.append(local)
        if m.remote not in leg_side:
            # The first message with a peer says who started: a request in
            # from it is a caller-side leg; our request out is an outbound leg.
            leg_side[m.remote] = "left" if m.direction == "in" else "right"
        name = f"{m.leg or 'peer'} {_hp(m.remote)}"
        side = left if leg_side[m.remote] == "left" else right
        if name not in side:
            side.append(name)
    columns = (*left, *centre, *right)
    index = {c: i for i, c in enumerate(columns)}
    rows = []
    for i, m in ordered:
        here = index[f"centre {_hp(m.local)}"]
        there = index[f"{m.leg or 'peer'} {_hp(m.remote)}"]
        src, dst = (there, here) if m.direction == "in" else (here, there)
        rows.append(LadderRow(at=m.at, source=src, destination=dst, label=_label(m.data), index=i))
    return Ladder(columns=columns, rows=tuple(rows))


# --- pcap ------------------------------------------------------------------
# libpcap file format (https://wiki.wireshark.org/Development/LibpcapFileFormat):
# a 24-byte global header, then per packet a 16-byte record header and the
# packet. LINKTYPE_RAW (101): the packet starts with the IP header, v4 or v6.
_PCAP_MAGIC = 0xA1B2C3D4
_LINKTYPE_RAW = 101
_SNAPLEN = 262_144
# Every message is written as one UDP datagram (TCP and TLS legs too: the
# decrypted text is what telecom staff want to read, and a synthetic TCP
# stream would need sequence numbers Wireshark would only complain about).
_MAX_UDP_PAYLOAD = 65_507  # 65 535 - 8 (UDP) - 20 (IPv4), RFC 768 / RFC 791


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _ip_udp(src: tuple[str, int], dst: tuple[str, int], payload: bytes) -> bytes:
    payload = payload[:_MAX_UDP_PAYLOAD]
    s_ip = ipaddress.ip_address(src[0])
    d_ip = ipaddress.ip_address(dst[0])
    if s_ip.version != d_ip.version:
        # A v4 peer seen through a v6 socket: write both as v6-mapped.
        s_ip = ipaddress.IPv6Address(f"::ffff:{s_ip}") if s_ip.version == 4 else s_ip
        d_ip = ipaddress.IPv6Address(f"::ffff:{d_ip}") if d_ip.version == 4 else d_ip
    length = 8 + len(payload)
    udp_wo = struct.pack("!HHHH", src[1], dst[1], length, 0)
    if s_ip.version == 4:
        # UDP checksum 0 = none, allowed over IPv4 (RFC 768).
        header = struct.pack(
            "!BBHHHBBH4s4s", 0x45, 0, 20 + length, 0, 0x4000, 64, 17, 0,
            s_ip.packed, d_ip.packed,
        )  # fmt: skip
        header = header[:10] + struct.pack("!H", _checksum(header)) + header[12:]
        return header + udp_wo + payload
    pseudo = s_ip.packed + d_ip.packed + struct.pack("!I3xB", length, 17)
    csum = _checksum(pseudo + udp_wo + payload) or 0xFFFF  # RFC 8200 §8.1
    udp = struct.pack("!HHHH", src[1], dst[1], length, csum)
    header = struct.pack("!IHBB16s16s", 6 << 28, length, 17, 64, s_ip.packed, d_ip.packed)
    return header + udp + payload


def to_pcap(messages: Iterable[CapturedMessage]) -> bytes:
    """A libpcap file of the messages in time order."""
    out = [struct.pack("!IHHiIII", _PCAP_MAGIC, 2, 4, 0, 0, _SNAPLEN, _LINKTYPE_RAW)]
    for m in sorted(messages, key=lambda m: m.at):
        packet = _ip_udp(m.source, m.destination, m.data)
        secs = int(m.at)
        usecs = min(999_999, round((m.at - secs) * 1_000_000))
        out.append(struct.pack("!IIII", secs, usecs, len(packet), len(packet)))
        out.append(packet)
    return b"".join(out)


def read_pcap(data: bytes) -> list[tuple[float, bytes]]:
    """(time, UDP payload) of each packet of a file written by `to_pcap`:
    a round-trip check for the tests and the CLI, not a general reader."""
    magic, _, _, _, _, _, linktype = struct.unpack_from("!IHHiIII", data, 0)
    if magic != _PCAP_MAGIC or linktype != _LINKTYPE_RAW:
        raise ValueError("not a raw-IP pcap written by callcenter112")
    pos = 24
    out = []
    while pos + 16 <= len(data):
        secs, usecs, incl, _ = struct.unpack_from("!IIII", data, pos)
        pos += 16
        packet = data[pos : pos + incl]
        pos += incl
        ip_header = 20 if packet[0] >> 4 == 4 else 40
        out.append((secs + usecs / 1e6, packet[ip_header + 8 :]))
    return out
