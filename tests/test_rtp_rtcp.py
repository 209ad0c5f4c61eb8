"""RTCP packets (rtp/rtcp.py): hand-assembled wire bytes, round trips, malformed input."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callcenter112.rtp.packet import RtpError
from callcenter112.rtp.rtcp import (
    NTP_UNIX_OFFSET,
    Goodbye,
    ReceiverReport,
    ReportBlock,
    RtcpCompound,
    RtcpError,
    SdesChunk,
    SdesItem,
    SenderReport,
    SourceDescription,
    UnknownRtcpPacket,
    ntp_middle,
    ntp_timestamp,
    ntp_to_unix,
)

# An SR with one report block, assembled field by field from RFC 3550 §6.4.1.
SR_WIRE = (
    bytes([0x81, 200])
    + struct.pack("!H", 12)  # 13 words - 1
    + struct.pack("!I", 0x11223344)  # sender SSRC
    + struct.pack("!II", 0xE8A1B2C3, 0x80000000)  # NTP: seconds, fraction (.5)
    + struct.pack("!III", 160_000, 50, 8000)  # RTP ts, packets, octets
    + struct.pack("!I", 0xAABBCCDD)  # report block: source
    + bytes([26]) + (0xFFFFFE).to_bytes(3, "big")  # fraction 26/256, cumulative lost -2
    + struct.pack("!IIII", 0x0001_0005, 37, 0x12345678, 0x00018000)
)  # fmt: skip


def test_sender_report_parses_field_by_field() -> None:
    sr = SenderReport.parse(SR_WIRE)
    assert sr.ssrc == 0x11223344
    assert sr.ntp_timestamp == 0xE8A1B2C3_80000000
    assert sr.rtp_timestamp == 160_000
    assert sr.packet_count == 50
    assert sr.octet_count == 8000
    assert sr.reports == (
        ReportBlock(
            ssrc=0xAABBCCDD,
            fraction_lost=26,
            packets_lost=-2,
            highest_sequence=0x0001_0005,
            jitter=37,
            last_sr=0x12345678,
            delay_since_last_sr=0x00018000,
        ),
    )
    assert sr.serialize() == SR_WIRE


def test_compound_sr_sdes_bye_round_trip() -> None:
    sr = SenderReport.parse(SR_WIRE)
    sdes = SourceDescription(
        chunks=(
            SdesChunk(ssrc=0x11223344, items=((SdesItem.CNAME, b"112@ambon.example"),)),
            SdesChunk(ssrc=5, items=((SdesItem.CNAME, b"op1"), (SdesItem.TOOL, b"cc112"))),
        )
    )
    bye = Goodbye(sources=(0x11223344,), reason=b"call ended")
    wire = RtcpCompound(packets=(sr, sdes, bye)).serialize()
    assert len(wire) % 4 == 0
    assert wire.startswith(SR_WIRE)
    parsed = RtcpCompound.parse(wire)
    assert parsed.packets == (sr, sdes, bye)
    parsed_sdes = parsed.packets[1]
    assert isinstance(parsed_sdes, SourceDescription)
    assert parsed_sdes.chunks[0].cname == "112@ambon.example"
    assert parsed_sdes.chunks[1].cname == "op1"
    assert parsed.serialize() == wire


def test_sdes_chunk_layout() -> None:
    chunk = SdesChunk(ssrc=1, items=((SdesItem.CNAME, b"ab"),))
    # SSRC, CNAME item (1, 2, 'ab'), then null octets to the 32-bit boundary.
    assert chunk.serialize() == b"\x00\x00\x00\x01\x01\x02ab" + b"\x00" * 4
    wire = SourceDescription(chunks=(chunk,)).serialize()
    assert wire[:4] == bytes([0x81, 202, 0, 3])
    assert SourceDescription.parse(wire).chunks == (chunk,)


def test_goodbye_layout() -> None:
    wire = Goodbye(sources=(7, 8), reason=b"bye").serialize()
    assert wire == bytes([0x82, 203, 0, 3]) + struct.pack("!II", 7, 8) + b"\x03bye"
    assert Goodbye.parse(wire) == Goodbye(sources=(7, 8), reason=b"bye")
    assert Goodbye.parse(Goodbye(sources=(9,)).serialize()).reason == b""


def test_receiver_report_and_padding() -> None:
    block = ReportBlock(ssrc=9, fraction_lost=255, packets_lost=0x7FFFFF, highest_sequence=1)
    rr = ReceiverReport(ssrc=1, reports=(block,))
    padded = RtcpCompound(packets=(rr,), padding=8).serialize()
    plain = rr.serialize()
    assert len(padded) == len(plain) + 8
    assert padded[0] & 0x20
    assert padded[-1] == 8
    parsed = RtcpCompound.parse(padded)
    assert parsed.packets == (rr,)
    assert parsed.padding == 8
    assert parsed.serialize() == padded


def test_unknown_packet_types_are_kept_verbatim() -> None:
    app = UnknownRtcpPacket(packet_type=204, count=3, body=struct.pack("!I", 1) + b"NAME")
    fb = UnknownRtcpPacket(packet_type=206, count=1, body=bytes(8))
    rr = ReceiverReport(ssrc=2)
    wire = RtcpCompound(packets=(rr, app, fb)).serialize()
    assert RtcpCompound.parse(wire).packets == (rr, app, fb)


def test_ntp_helpers() -> None:
    assert ntp_timestamp(0.0) == NTP_UNIX_OFFSET << 32
    assert ntp_timestamp(1.5) == (NTP_UNIX_OFFSET + 1) << 32 | 0x80000000
    assert ntp_to_unix(ntp_timestamp(1_700_000_000.25)) == pytest.approx(1_700_000_000.25)
    assert ntp_middle(0xE8A1B2C3_80000000) == 0xB2C38000


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty"),
        (b"\x80\xc9\x00", "cut short"),
        (b"\x40\xc9\x00\x01" + bytes(4), "version"),
        (b"\x80\xc9\x00\x05" + bytes(4), "runs past"),
        (b"\x81\xc9\x00\x01" + bytes(4), "report blocks"),
        (b"\x80\xc8\x00\x01" + bytes(4), "sender information"),
        (b"\x80\xc9\x00\x00", "SSRC"),
        (b"\xa0\xc9\x00\x01" + bytes(4), "padding count"),  # pad count 0
        (b"\xa0\xc9\x00\x01\x00\x00\x00\x09", "padding count"),  # pad 9 > body 4
        (b"\xa0\xc9\x00\x01\x00\x00\x00\x04" + b"\x80\xc9\x00\x01" + bytes(4), "not the last"),
        (b"\x81\xca\x00\x01\x00\x00\x00\x01", "terminating"),
        (b"\x81\xca\x00\x02\x00\x00\x00\x01\x01\x09abcd", "longer than the packet"),
        (b"\x82\xca\x00\x02\x00\x00\x00\x01\x00\x00\x00\x00", "chunk count"),
        (b"\x80\xca\x00\x01\x00\x00\x00\x01", "after its last chunk"),
        (b"\x82\xcb\x00\x01\x00\x00\x00\x01", "source count"),
        (b"\x81\xcb\x00\x02\x00\x00\x00\x01\x09abc", "reason longer"),
        (b"\x81\xcb\x00\x03\x00\x00\x00\x01\x01ab\x00\x00\x00\x00\x01", "after its reason"),
    ],
)
def test_malformed_compounds_raise_rtcp_error(data: bytes, reason: str) -> None:
    with pytest.raises(RtcpError, match=reason):
        RtcpCompound.parse(data)


def test_rtcp_error_is_an_rtp_error() -> None:
    assert issubclass(RtcpError, RtpError)
    with pytest.raises(RtcpError, match="single"):
        SenderReport.parse(ReceiverReport(ssrc=1).serialize())


def test_serialize_rejects_values_that_do_not_fit() -> None:
    with pytest.raises(ValueError, match="24 bits"):
        ReportBlock(ssrc=1, packets_lost=0x800000).serialize()
    with pytest.raises(ValueError, match=r"0\.\.255"):
        ReportBlock(ssrc=1, fraction_lost=256).serialize()
    with pytest.raises(ValueError, match="at most 31"):
        ReceiverReport(ssrc=1, reports=(ReportBlock(ssrc=1),) * 32).serialize()
    with pytest.raises(ValueError, match="255"):
        Goodbye(reason=b"x" * 256).serialize()
    with pytest.raises(ValueError, match="at least one"):
        RtcpCompound(packets=()).serialize()


@settings(max_examples=3000)
@given(st.binary(max_size=160))
def test_arbitrary_bytes_parse_or_raise_rtcp_error(data: bytes) -> None:
    try:
        compound = RtcpCompound.parse(data)
    except RtcpError:
        return
    assert compound.packets


@settings(max_examples=3000)
@given(
    st.lists(
        st.tuples(st.integers(0, 31), st.sampled_from([200, 201, 202, 203, 204, 207])),
        min_size=1,
        max_size=4,
    ),
    st.lists(st.binary(max_size=40), min_size=4, max_size=4),
)
def test_structured_noise_parses_or_raises(
    headers: list[tuple[int, int]], bodies: list[bytes]
) -> None:
    """Well-framed packets with random bodies: more of the per-type parsers are reached."""
    wire = b""
    for (count, packet_type), noise in zip(headers, bodies, strict=False):
        body = noise + bytes(-len(noise) % 4)
        wire += bytes([0x80 | count, packet_type]) + struct.pack("!H", len(body) // 4) + body
    try:
        compound = RtcpCompound.parse(wire)
    except RtcpError:
        return
    assert len(compound.packets) == len(headers)


report_blocks = st.builds(
    ReportBlock,
    ssrc=st.integers(0, 0xFFFFFFFF),
    fraction_lost=st.integers(0, 255),
    packets_lost=st.integers(-0x800000, 0x7FFFFF),
    highest_sequence=st.integers(0, 0xFFFFFFFF),
    jitter=st.integers(0, 0xFFFFFFFF),
    last_sr=st.integers(0, 0xFFFFFFFF),
    delay_since_last_sr=st.integers(0, 0xFFFFFFFF),
)
words = st.integers(0, 4).map(lambda n: bytes(range(4 * n)))
rtcp_packets = st.one_of(
    st.builds(
        SenderReport,
        ssrc=st.integers(0, 0xFFFFFFFF),
        ntp_timestamp=st.integers(0, 2**64 - 1),
        rtp_timestamp=st.integers(0, 0xFFFFFFFF),
        packet_count=st.integers(0, 0xFFFFFFFF),
        octet_count=st.integers(0, 0xFFFFFFFF),
        reports=st.lists(report_blocks, max_size=3).map(tuple),
        extension=words,
    ),
    st.builds(
        ReceiverReport,
        ssrc=st.integers(0, 0xFFFFFFFF),
        reports=st.lists(report_blocks, max_size=3).map(tuple),
        extension=words,
    ),
    st.builds(
        SourceDescription,
        chunks=st.lists(
            st.builds(
                SdesChunk,
                ssrc=st.integers(0, 0xFFFFFFFF),
                items=st.lists(
                    st.tuples(st.integers(1, 8), st.binary(max_size=30)), max_size=3
                ).map(tuple),
            ),
            max_size=3,
        ).map(tuple),
    ),
    st.builds(
        Goodbye,
        sources=st.lists(st.integers(0, 0xFFFFFFFF), max_size=4).map(tuple),
        reason=st.binary(max_size=40),
    ),
)


@settings(max_examples=500)
@given(st.lists(rtcp_packets, min_size=1, max_size=4), st.sampled_from([0, 4, 8, 252]))
def test_generated_compounds_round_trip(packets: list[object], padding: int) -> None:
    compound = RtcpCompound(packets=tuple(packets), padding=padding)  # type: ignore[arg-type]
    wire = compound.serialize()
    assert RtcpCompound.parse(wire) == compound
