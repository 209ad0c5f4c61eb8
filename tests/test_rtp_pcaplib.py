"""The test helper tests/pcaplib.py, on hand-assembled capture files."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

import pcaplib


def ipv4_udp(src: str, sport: int, dst: str, dport: int, payload: bytes, proto: int = 17) -> bytes:
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    return (
        struct.pack("!BBHHHBBH", 0x45, 0, 20 + len(udp), 1, 0, 64, proto, 0)
        + bytes(int(x) for x in src.split("."))
        + bytes(int(x) for x in dst.split("."))
        + udp
    )


def capture(linktype: int, frames: list[bytes], *, order: str = "<", nano: bool = False) -> bytes:
    magic = 0xA1B23C4D if nano else 0xA1B2C3D4
    out = struct.pack(order + "IHHiIII", magic, 2, 4, 0, 0, 65535, linktype)
    for i, frame in enumerate(frames):
        out += struct.pack(order + "IIII", 1000 + i, 500, len(frame), len(frame)) + frame
    return out


def test_ethernet_with_vlan_and_non_udp_traffic() -> None:
    eth = bytes(12)
    vlan = b"\x81\x00\x00\x05"
    frames = [
        eth + b"\x08\x00" + ipv4_udp("10.0.0.1", 5000, "10.0.0.2", 6000, b"rtp!"),
        eth + vlan + b"\x08\x00" + ipv4_udp("10.0.0.3", 1, "10.0.0.4", 2, b"tagged"),
        eth + b"\x08\x00" + ipv4_udp("10.0.0.1", 5000, "10.0.0.2", 6000, b"tcp", proto=6),
        eth + b"\x08\x06" + bytes(28),  # ARP
    ]
    datagrams = list(pcaplib.iter_udp(capture(1, frames)))
    assert [(d.src, d.dst, d.payload) for d in datagrams] == [
        (("10.0.0.1", 5000), ("10.0.0.2", 6000), b"rtp!"),
        (("10.0.0.3", 1), ("10.0.0.4", 2), b"tagged"),
    ]
    assert datagrams[0].time == pytest.approx(1000.0005)


def test_linux_cooked_big_endian_nanoseconds(tmp_path: Path) -> None:
    sll = struct.pack("!HHH8sH", 0, 1, 6, bytes(8), 0x0800)
    path = tmp_path / "cooked.pcap"
    frame = sll + ipv4_udp("192.0.2.1", 40000, "192.0.2.2", 20000, b"\x80\x08")
    path.write_bytes(capture(113, [frame], order=">", nano=True))
    (datagram,) = pcaplib.read_udp(path)
    assert datagram.payload == b"\x80\x08"
    assert datagram.time == pytest.approx(1000.0000005)


def test_broken_files_raise_pcap_error() -> None:
    good = capture(1, [bytes(12) + b"\x08\x00" + ipv4_udp("1.1.1.1", 1, "2.2.2.2", 2, b"x")])
    with pytest.raises(pcaplib.PcapError, match="magic"):
        list(pcaplib.iter_udp(b"\x0a\x0d\x0d\x0a" + good[4:]))  # pcapng
    with pytest.raises(pcaplib.PcapError, match="cut short"):
        list(pcaplib.iter_udp(good[:-1]))
    with pytest.raises(pcaplib.PcapError, match="global header"):
        list(pcaplib.iter_udp(good[:10]))
    with pytest.raises(pcaplib.PcapError, match="link type"):
        list(pcaplib.iter_udp(capture(147, [b"x"])))
