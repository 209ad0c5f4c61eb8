"""RTP packet parsing/serialising (rtp/packet.py) on captured and hand-built bytes."""

from __future__ import annotations

import itertools
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import pcaplib
from callcenter112.rtp.packet import (
    RtpError,
    RtpExtension,
    RtpPacket,
    is_rtcp,
    parse_header,
)

PCAPS = Path("/usr/share/sip-tester")
needs_pcaps = pytest.mark.skipif(
    not (PCAPS / "g711a.pcap").exists(), reason="sip-tester pcaps not installed"
)


def _captured() -> list[bytes]:
    datagrams: list[bytes] = []
    for path in sorted(PCAPS.glob("*.pcap")):
        datagrams.extend(d.payload for d in pcaplib.read_udp(path))
    return datagrams


@pytest.mark.peers
@needs_pcaps
def test_every_captured_packet_round_trips() -> None:
    datagrams = _captured()
    assert len(datagrams) == 236 + 12 * 10
    for data in datagrams:
        packet = RtpPacket.parse(data)
        assert packet.serialize() == data
        pt, marker, seq, ts, ssrc, start, end = parse_header(data)
        assert (pt, marker, seq, ts, ssrc) == (
            packet.payload_type,
            packet.marker,
            packet.sequence_number,
            packet.timestamp,
            packet.ssrc,
        )
        assert data[start:end] == packet.payload
        assert not is_rtcp(data)


@pytest.mark.peers
@needs_pcaps
def test_g711a_capture_fields() -> None:
    packets = [RtpPacket.parse(d.payload) for d in pcaplib.read_udp(PCAPS / "g711a.pcap")]
    first = packets[0]
    # 80 88 e6fd 000000f0 dee0ee8f: V=2, marker, PCMA, seq 0xe6fd, ts 240.
    assert first.payload_type == 8
    assert first.marker is True
    assert first.sequence_number == 0xE6FD
    assert first.timestamp == 0xF0
    assert first.ssrc == 0xDEE0EE8F
    assert len(first.payload) == 240  # 30 ms packets
    assert not any(p.marker for p in packets[1:])
    assert {p.payload_type for p in packets} == {8}
    seqs = [p.sequence_number for p in packets]
    assert all((b - a) & 0xFFFF == 1 for a, b in itertools.pairwise(seqs))


def test_full_header_round_trip() -> None:
    payload = bytes(range(20))
    packet = RtpPacket(
        payload_type=101,
        sequence_number=65535,
        timestamp=0xFFFFFFFF,
        ssrc=0x01020304,
        marker=True,
        csrc=(1, 0xFFFFFFFF),
        extension=RtpExtension(profile=0xBEDE, data=b"\x10\xaa\x00\x00"),
        payload=payload,
        padding=4,
    )
    wire = packet.serialize()
    expected = (
        bytes([0x80 | 0x20 | 0x10 | 2, 0x80 | 101])
        + struct.pack("!HII", 65535, 0xFFFFFFFF, 0x01020304)
        + struct.pack("!II", 1, 0xFFFFFFFF)
        + struct.pack("!HH", 0xBEDE, 1)
        + b"\x10\xaa\x00\x00"
        + payload
        + b"\x00\x00\x00\x04"
    )
    assert wire == expected
    assert RtpPacket.parse(wire) == packet
    pt, marker, seq, ts, ssrc, start, end = parse_header(wire)
    assert (pt, marker, seq, ts, ssrc) == (101, True, 65535, 0xFFFFFFFF, 0x01020304)
    assert wire[start:end] == payload


def test_empty_payload_is_valid() -> None:
    wire = RtpPacket(payload_type=0, sequence_number=1, timestamp=2, ssrc=3).serialize()
    assert len(wire) == 12
    assert RtpPacket.parse(wire).payload == b""


def _header(first: int = 0x80) -> bytes:
    return bytes([first, 0]) + struct.pack("!HII", 1, 2, 3)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "shorter"),
        (b"\x80\x00\x00\x01\x00\x00\x00\x02\x00\x00\x00", "shorter"),
        (_header(0x40) + b"x", "version"),  # version 1
        (_header(0x00), "version"),
        (_header(0xC0), "version"),  # version 3
        (_header(0x81), "CSRC"),  # one CSRC announced, none present
        (_header(0x8F) + bytes(56), "CSRC"),  # 15 announced, 14 present
        (_header(0x90), "extension"),  # X set, no extension header
        (_header(0x90) + b"\xbe\xde\x00\x02" + bytes(4), "extension"),  # 2 words, 1 present
        (_header(0xA0) + b"abc\x00", "zero"),  # padding count 0
        (_header(0xA0) + b"ab\x05", "longer"),  # padding longer than the body
        (_header(0xA0), "longer"),  # P set: the count octet is the SSRC's last (3), no body
    ],
)
def test_malformed_packets_raise_rtp_error(data: bytes, reason: str) -> None:
    with pytest.raises(RtpError, match=reason):
        parse_header(data)
    with pytest.raises(RtpError):
        RtpPacket.parse(data)


def test_padding_may_fill_the_whole_body() -> None:
    wire = _header(0xA0) + b"\x00\x00\x00\x04"
    packet = RtpPacket.parse(wire)
    assert packet.payload == b""
    assert packet.padding == 4
    assert packet.serialize() == wire


def test_serialize_rejects_out_of_range_fields() -> None:
    with pytest.raises(ValueError, match="payload type"):
        RtpPacket(payload_type=128, sequence_number=0, timestamp=0, ssrc=0).serialize()
    with pytest.raises(ValueError, match="out of range"):
        RtpPacket(payload_type=0, sequence_number=65536, timestamp=0, ssrc=0).serialize()
    with pytest.raises(ValueError, match="CSRC"):
        RtpPacket(
            payload_type=0, sequence_number=0, timestamp=0, ssrc=0, csrc=(0,) * 16
        ).serialize()
    with pytest.raises(ValueError, match="32-bit words"):
        RtpPacket(
            payload_type=0,
            sequence_number=0,
            timestamp=0,
            ssrc=0,
            extension=RtpExtension(profile=1, data=b"abc"),
        ).serialize()


def test_is_rtcp_demultiplexes_on_the_second_octet() -> None:
    assert is_rtcp(b"\x80\xc8\x00\x06")  # SR, 200
    assert is_rtcp(b"\x81\xc9\x00\x07")  # RR, 201
    assert is_rtcp(b"\x80\xcb\x00\x01")  # BYE, 203
    assert not is_rtcp(b"\x80\x08")  # PCMA
    assert not is_rtcp(b"\x80\x88")  # PCMA with marker
    assert not is_rtcp(b"\x80\xe5")  # telephone-event 101 with marker
    assert not is_rtcp(b"\x80")


@settings(max_examples=2000)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_parse_or_raise_rtp_error(data: bytes) -> None:
    try:
        header = parse_header(data)
    except RtpError:
        with pytest.raises(RtpError):
            RtpPacket.parse(data)
        return
    packet = RtpPacket.parse(data)
    assert header[5] <= header[6] <= len(data)
    assert packet.serialize()[: header[5]] == data[: header[5]]


@settings(max_examples=500)
@given(
    st.integers(0, 127),
    st.integers(0, 0xFFFF),
    st.integers(0, 0xFFFFFFFF),
    st.integers(0, 0xFFFFFFFF),
    st.booleans(),
    st.lists(st.integers(0, 0xFFFFFFFF), max_size=15),
    st.one_of(
        st.none(),
        st.builds(
            RtpExtension,
            profile=st.integers(0, 0xFFFF),
            data=st.integers(0, 8).map(lambda n: bytes(range(4 * n))),
        ),
    ),
    st.binary(max_size=64),
    st.integers(0, 255),
)
def test_generated_packets_round_trip(
    pt: int,
    seq: int,
    ts: int,
    ssrc: int,
    marker: bool,
    csrc: list[int],
    extension: RtpExtension | None,
    payload: bytes,
    padding: int,
) -> None:
    packet = RtpPacket(
        payload_type=pt,
        sequence_number=seq,
        timestamp=ts,
        ssrc=ssrc,
        marker=marker,
        csrc=tuple(csrc),
        extension=extension,
        payload=payload,
        padding=padding,
    )
    assert RtpPacket.parse(packet.serialize()) == packet
