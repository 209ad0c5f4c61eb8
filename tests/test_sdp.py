"""SDP parse/serialize (src/callcenter112/sdp.py): captured bodies, sloppy and broken
bodies, limits, and hypothesis for the two invariants — any bytes give a description or
SdpError(400), and parse(serialize(x)) == x."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from callcenter112.sdp import (
    MAX_FORMATS,
    MAX_LINES,
    MAX_MEDIA_DESCRIPTIONS,
    MAX_SDP_SIZE,
    Attribute,
    AttributeLine,
    Bandwidth,
    Connection,
    Direction,
    Fmtp,
    MaxPacketTime,
    MediaDescription,
    Origin,
    PacketTime,
    RtpMap,
    SdpError,
    SessionDescription,
    Timing,
)

DATA = Path(__file__).parent / "data" / "sdp"
CAPTURED = sorted(
    p.name
    for p in DATA.glob("*.sdp")
    if not p.name.startswith("broken-") and p.name != "sloppy-phone-offer.sdp"
)
BROKEN = sorted(p.name for p in DATA.glob("broken-*.sdp"))


def body(name: str) -> bytes:
    return (DATA / name).read_bytes()


def sdp(*lines: str) -> bytes:
    return ("\r\n".join(lines) + "\r\n").encode()


HEAD = ("v=0", "o=- 1 1 IN IP4 192.0.2.1", "s=-", "c=IN IP4 192.0.2.1", "t=0 0")


def parse_error(data: bytes | str) -> SdpError:
    with pytest.raises(SdpError) as caught:
        SessionDescription.parse(data)
    return caught.value


# --- Captured bodies -------------------------------------------------------------------------


def test_the_captures_are_there() -> None:
    # Guard against an empty glob silently passing every parametrized test below.
    assert {"baresip-offer.sdp", "pyvoip-offer.sdp", "sipp-uac-offer.sdp"} <= set(CAPTURED)
    assert len(BROKEN) >= 10


@pytest.mark.parametrize("name", CAPTURED)
def test_captured_body_round_trips_byte_for_byte(name: str) -> None:
    data = body(name)
    parsed = SessionDescription.parse(data)
    assert parsed.serialize() == data
    assert SessionDescription.parse(parsed.serialize()) == parsed


@pytest.mark.parametrize("name", CAPTURED)
def test_captured_body_parses_the_same_with_lf_and_as_text(name: str) -> None:
    data = body(name)
    parsed = SessionDescription.parse(data)
    assert SessionDescription.parse(data.replace(b"\r\n", b"\n")) == parsed
    assert SessionDescription.parse(data.decode()) == parsed


@pytest.mark.parametrize("name", CAPTURED)
def test_captured_body_fed_line_by_line_prefixes_never_crash(name: str) -> None:
    # Every prefix of a real body (a truncated UDP read, a cut TCP frame) gives a
    # description or SdpError(400), never another exception.
    data = body(name)
    for end in range(len(data) + 1):
        try:
            SessionDescription.parse(data[:end])
        except SdpError as error:
            assert error.status_hint == 400


def test_baresip_offer_fields() -> None:
    offer = SessionDescription.parse(body("baresip-offer.sdp"))
    assert offer.origin == Origin(
        username="-",
        session_id=477067113,
        session_version=2024076262,
        nettype="IN",
        addrtype="IP4",
        address="127.0.0.1",
    )
    assert offer.session_name == "-"
    assert offer.connection == Connection(address="127.0.0.1")
    assert offer.timings == (Timing(start=0, stop=0),)
    assert offer.attributes == (Attribute(name="tool", value="baresip 1.0.0"),)
    (audio,) = offer.media
    assert (audio.media, audio.port, audio.proto) == ("audio", 30040, "RTP/AVP")
    assert audio.formats == ("0", "8", "101")
    assert audio.payload_types == (0, 8, 101)
    assert audio.is_rtp
    assert audio.rtpmap(101) == RtpMap(
        payload_type=101, encoding_name="telephone-event", clock_rate=8000
    )
    assert audio.rtpmap(0) == RtpMap(payload_type=0, encoding_name="PCMU", clock_rate=8000)
    assert audio.rtpmap(9) is None
    assert audio.fmtp(101) == "0-15"
    assert audio.fmtp("0") is None
    assert audio.ptime == 20
    assert audio.maxptime is None
    assert audio.direction is Direction.SENDRECV
    assert audio.attribute_values("label") == ("1",)
    assert audio.attribute_values("rtcp-rsize") == (None,)
    assert audio.attribute_values("minptime") == ("20",)
    assert audio.attribute_values("ssrc") == ("780440940 cname:sip:op1@127.0.0.1:9",)
    # Wire order is kept: the direction sits between fmtp and the verbatim attributes.
    kinds = [type(a).__name__ for a in audio.attributes]
    assert kinds == [
        "RtpMap",
        "RtpMap",
        "RtpMap",
        "Fmtp",
        "Direction",
        "Attribute",
        "Attribute",
        "Attribute",
        "Attribute",
        "PacketTime",
    ]
    assert offer.connection_for(audio) == Connection(address="127.0.0.1")
    assert offer.direction_for(audio) is Direction.SENDRECV


def test_baresip_wideband_offer_keeps_every_codec_and_the_video_line() -> None:
    offer = SessionDescription.parse(body("baresip-offer-wideband-video.sdp"))
    audio, video = offer.media
    assert audio.payload_types == (0, 8, 9, 96, 3, 101)
    assert audio.rtpmap(96) == RtpMap(
        payload_type=96, encoding_name="opus", clock_rate=48000, encoding_parameters="2"
    )
    assert audio.fmtp(96) == "stereo=1;sprop-stereo=1"
    assert video.media == "video"
    assert video.payload_types == (96, 97, 34, 98, 99)
    assert video.rtpmap(34) == RtpMap(payload_type=34, encoding_name="H263", clock_rate=90000)
    assert video.attribute_values("rtcp-fb") == ("* nack pli",)
    assert video.attribute_values("framerate") == ("25.00",)


def test_baresip_reinvites_keep_the_session_id_and_count_versions_up() -> None:
    names = [
        "baresip-reinvite-1-initial.sdp",
        "baresip-reinvite-2-hold.sdp",
        "baresip-reinvite-3-resume.sdp",
    ]
    origins = [SessionDescription.parse(body(n)).origin for n in names]
    assert len({o.session_id for o in origins}) == 1
    versions = [o.session_version for o in origins]
    assert versions == [versions[0], versions[0] + 1, versions[0] + 2]
    hold = SessionDescription.parse(body("baresip-reinvite-2-hold.sdp"))
    assert hold.media[0].direction is Direction.SENDONLY


def test_pyvoip_offer_fields() -> None:
    offer = SessionDescription.parse(body("pyvoip-offer.sdp"))
    assert offer.origin.username == "pyVoIP"
    assert offer.session_name == "pyVoIP 1.6.8"
    (audio,) = offer.media
    assert audio.payload_types == (0, 101)
    assert audio.ptime == 20
    assert audio.maxptime == 150
    assert audio.direction is Direction.SENDRECV


def test_pyvoip_still_writes_the_captured_offer() -> None:
    # The capture is pyVoIP's own SDP code; regenerate it to show the file is genuine.
    pytest.importorskip("pyVoIP.VoIP")  # pyVoIP.SIP alone hits its own circular import
    sip = pytest.importorskip("pyVoIP.SIP")
    rtp = pytest.importorskip("pyVoIP.RTP")
    client = sip.SIPClient("127.0.0.1", 5060, "citizen", "x", phone=None, myIP="127.0.0.1")
    media = {31000: {0: rtp.PayloadType.PCMU, 101: rtp.PayloadType.EVENT}}
    invite = client.gen_invite("112", "1", media, rtp.TransmitType.SENDRECV, "z9hG4bK1", "c")
    assert invite.encode().split(b"\r\n\r\n", 1)[1] == body("pyvoip-offer.sdp")


def test_sipp_offers() -> None:
    uac = SessionDescription.parse(body("sipp-uac-offer.sdp"))
    assert uac.media[0].payload_types == (0,)
    pcap = SessionDescription.parse(body("sipp-uac_pcap-offer.sdp"))
    assert pcap.media[0].payload_types == (8, 101)
    assert pcap.media[0].fmtp(101) == "0-11,16"


def test_carrier_offer_fields() -> None:
    offer = SessionDescription.parse(body("carrier-offer.sdp"))
    audio, video, text = offer.media
    assert offer.connection == Connection(address="203.0.113.46")
    assert offer.bandwidths == (Bandwidth(bwtype="AS", bandwidth=192),)
    assert audio.connections == (Connection(address="203.0.113.47"),)
    assert offer.connection_for(audio) == Connection(address="203.0.113.47")
    assert offer.connection_for(video) == Connection(address="203.0.113.46")
    assert audio.bandwidths == (Bandwidth(bwtype="AS", bandwidth=84),)
    assert audio.payload_types == (18, 102, 104, 9, 8, 0, 96)
    assert audio.fmtp(18) == "annexb=no"
    assert audio.maxptime == 40
    assert audio.attribute_values("rtcp") == ("16385",)
    assert text.media == "text"
    assert text.fmtp(100) == "98/98/98"
    assert text.rtpmap(98) == RtpMap(payload_type=98, encoding_name="t140", clock_rate=1000)


def test_ipv6_offer() -> None:
    offer = SessionDescription.parse(body("ipv6-offer.sdp"))
    assert offer.connection == Connection(addrtype="IP6", address="2001:db8::5")
    assert offer.media[0].ptime == 30


# --- Tolerance -------------------------------------------------------------------------------


def test_sloppy_phone_offer_parses() -> None:
    offer = SessionDescription.parse(body("sloppy-phone-offer.sdp"))
    assert offer.session_name == "-"  # no s= line
    assert offer.timings == (Timing(),)  # no t= line
    assert offer.origin.address == "10.20.30.40"  # trailing blanks gone
    (audio,) = offer.media
    assert audio.formats == ("8", "0", "96")  # trailing tab gone
    assert audio.rtpmap(96) == RtpMap(
        payload_type=96, encoding_name="telephone-event", clock_rate=8000
    )
    assert audio.ptime == 20  # "20.0"
    assert audio.direction is Direction.SENDRECV  # "SENDRECV"
    # Once read, it is written back the canonical way, and that reads the same.
    canonical = offer.serialize()
    assert b"\r\ns=-\r\n" in canonical
    assert b"\r\nt=0 0\r\n" in canonical
    assert SessionDescription.parse(canonical) == offer


@pytest.mark.parametrize(
    "data",
    [
        "\ufeffv=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nt=0 0\n",  # byte-order mark
        "\r\n\r\nv=0\r\no=- 1 1 IN IP4 192.0.2.1\r\n\r\n",  # leading and inner blank lines
        "v=0\no=-  1\t1 IN  IP4 192.0.2.1\n",  # runs of blanks and tabs between fields
        "v=0 \r\no=- 1 1 IN IP4 192.0.2.1 \t\r\ns= \r\n",  # trailing blanks, s= blank
        "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nt=0 0",  # no final line end
    ],
)
def test_tolerated_layouts(data: str) -> None:
    parsed = SessionDescription.parse(data)
    assert parsed.origin.session_id == 1
    assert parsed.session_name == "-"
    assert parsed.timings == (Timing(),)


def test_session_lines_in_any_order_and_non_utf8_text() -> None:
    data = b"v=0\r\nc=IN IP4 192.0.2.1\r\ns=Caf\xe9\r\no=- 1 1 IN IP4 192.0.2.1\r\nt=0 0\r\n"
    parsed = SessionDescription.parse(data)
    assert parsed.connection == Connection(address="192.0.2.1")
    assert parsed.session_name == "Caf\udce9"  # Latin-1 byte kept losslessly
    assert SessionDescription.parse(parsed.serialize()) == parsed
    assert b"s=Caf\xe9\r\n" in parsed.serialize()


def test_declined_stream_needs_no_connection_and_may_list_no_format() -> None:
    parsed = SessionDescription.parse(
        sdp("v=0", "o=- 1 1 IN IP4 192.0.2.1", "s=-", "t=0 0", "m=video 0 RTP/AVP")
    )
    assert parsed.media[0].port == 0
    assert parsed.media[0].formats == ()
    assert parsed.serialize().endswith(b"m=video 0 RTP/AVP\r\n")


def test_identical_duplicates_are_tolerated() -> None:
    parsed = SessionDescription.parse(
        sdp(
            *HEAD,
            "m=audio 4000 RTP/AVP 0",
            "a=rtpmap:0 PCMU/8000",
            "a=rtpmap:0 PCMU/8000",
            "a=sendrecv",
            "a=sendrecv",
        )
    )
    assert parsed.media[0].direction is Direction.SENDRECV
    assert len(parsed.media[0].rtpmaps) == 2


def test_session_level_direction_and_precedence() -> None:
    parsed = SessionDescription.parse(
        sdp(
            *HEAD,
            "a=sendonly",
            "m=audio 4000 RTP/AVP 0",
            "m=audio 4002 RTP/AVP 0",
            "a=inactive",
        )
    )
    first, second = parsed.media
    assert parsed.direction is Direction.SENDONLY
    assert first.direction is None
    assert parsed.direction_for(first) is Direction.SENDONLY
    assert parsed.direction_for(second) is Direction.INACTIVE


def test_multicast_connections() -> None:
    parsed = SessionDescription.parse(
        sdp(
            "v=0",
            "o=- 1 1 IN IP4 192.0.2.1",
            "s=-",
            "c=IN IP4 224.2.1.1/127/3",
            "t=0 0",
            "m=audio 4000 RTP/AVP 0",
            "c=IN IP6 ff15::101/3",
        )
    )
    assert parsed.connection == Connection(address="224.2.1.1", ttl=127, count=3)
    assert parsed.connection.is_multicast
    assert parsed.media[0].connection == Connection(addrtype="IP6", address="ff15::101", count=3)
    assert parsed.serialize().count(b"c=IN IP4 224.2.1.1/127/3\r\n") == 1


def test_unspecified_and_host_name_addresses() -> None:
    assert Connection(address="0.0.0.0").is_unspecified
    assert Connection(addrtype="IP6", address="::").is_unspecified
    assert not Connection(address="192.0.2.1").is_unspecified
    parsed = SessionDescription.parse(
        sdp(
            "v=0",
            "o=- 1 1 IN IP4 pbx.example.net",
            "s=-",
            "c=IN IP4 media.example.net",
            "t=0 0",
        )
    )
    assert parsed.connection == Connection(address="media.example.net")
    assert not parsed.connection.is_unspecified
    assert not parsed.connection.is_multicast


def test_unknown_address_type_is_kept_verbatim() -> None:
    parsed = SessionDescription.parse(sdp("v=0", "o=- 1 1 IN IP4 x", "c=ATM NSAP 47.0005/x"))
    assert parsed.connection == Connection(nettype="ATM", addrtype="NSAP", address="47.0005/x")
    assert SessionDescription.parse(parsed.serialize()) == parsed


def test_every_text_field_round_trips() -> None:
    data = sdp(
        "v=0",
        "o=jdoe 2890844526 2890842807 IN IP4 10.47.16.5",
        "s=SDP Seminar",
        "i=A Seminar on the session description protocol",
        "u=http://www.example.com/seminars/sdp.pdf",
        "e=j.doe@example.com (Jane Doe)",
        "p=+1 617 555-6011",
        "c=IN IP4 224.2.17.12/127",
        "b=CT:1000",
        "t=2873397496 2873404696",
        "r=604800 3600 0 90000",
        "r=7d 1h 0 25h",
        "z=2882844526 -1h 2898848070 0",
        "k=clear:secret",
        "a=recvonly",
        "a=charset:UTF-8",
        "m=audio 49170 RTP/AVP 0",
        "i=voice",
        "c=IN IP4 224.2.17.12/127",
        "b=AS:64",
        "k=prompt",
        "a=fmtp:0",
        "m=video 51372/2 RTP/AVP 99",
        "a=rtpmap:99 h263-1998/90000",
        "a=maxptime:60",
        "m=application 32416 udp wb",
        "a=orient:portrait",
        "a=fmtp:wb x=y",
    )
    parsed = SessionDescription.parse(data)
    assert parsed.serialize() == data
    assert parsed.timings == (
        Timing(start=2873397496, stop=2873404696, repeats=("604800 3600 0 90000", "7d 1h 0 25h")),
    )
    assert parsed.media[1].port_count == 2
    assert parsed.media[0].fmtp(0) == ""
    assert parsed.media[2].formats == ("wb",)
    assert not parsed.media[2].is_rtp
    assert parsed.media[2].payload_types == ()
    assert parsed.media[2].fmtp("wb") == "x=y"
    assert parsed.media[1].maxptime == 60
    assert parsed.attribute_values("charset") == ("UTF-8",)


# --- Broken bodies → SdpError(400) ------------------------------------------------------------


@pytest.mark.parametrize("name", BROKEN)
def test_broken_capture_is_rejected_with_400(name: str) -> None:
    error = parse_error(body(name))
    assert error.status_hint == 400
    assert error.reason


BAD: dict[str, bytes | str] = {
    "empty": b"",
    "only blanks": b"\r\n \r\n\t\r\n",
    "not sdp at all": b"Hello, world!",
    "version 1": sdp("v=1", "o=- 1 1 IN IP4 192.0.2.1"),
    "second v=": sdp(*HEAD, "v=0"),
    "no o=": sdp("v=0", "s=-", "t=0 0"),
    "o= with 5 fields": sdp("v=0", "o=- 1 1 IN IP4"),
    "o= id not a number": sdp("v=0", "o=- abc 1 IN IP4 192.0.2.1"),
    "o= id with a sign": sdp("v=0", "o=- +1 1 IN IP4 192.0.2.1"),
    "o= id with underscore": sdp("v=0", "o=- 1_000 1 IN IP4 192.0.2.1"),
    "o= id in Arabic digits": "v=0\r\no=- \u0661 1 IN IP4 192.0.2.1\r\n",
    "o= id of 21 digits": sdp("v=0", "o=- 123456789012345678901 1 IN IP4 192.0.2.1"),
    "two o=": sdp(*HEAD, "o=- 2 2 IN IP4 192.0.2.1"),
    "two session c=": sdp(*HEAD, "c=IN IP4 192.0.2.2"),
    "space before =": sdp("v=0", "o =- 1 1 IN IP4 192.0.2.1"),
    "upper-case type": sdp("v=0", "O=- 1 1 IN IP4 192.0.2.1"),
    "line without =": sdp(*HEAD, "m"),
    "t= after m=": sdp(*HEAD, "m=audio 4000 RTP/AVP 0", "t=0 0"),
    "r= without t=": sdp("v=0", "o=- 1 1 IN IP4 192.0.2.1", "r=7d 1h 0 25h"),
    "t= with one field": sdp("v=0", "o=- 1 1 IN IP4 192.0.2.1", "t=0"),
    "c= with 2 fields": sdp("v=0", "o=- 1 1 IN IP4 192.0.2.1", "c=IN IP4"),
    "c= octet 256": sdp("v=0", "o=- 1 1 IN IP4 192.0.2.1", "c=IN IP4 192.0.2.256"),
    "c= three octets": sdp("v=0", "o=- 1 1 IN IP4 192.0.2.1", "c=IN IP4 192.0.2"),
    "c= leading zero": sdp("v=0", "o=- 1 1 IN IP4 192.0.2.1", "c=IN IP4 192.0.02.1"),
    "c= IPv6 in IP4": sdp("v=0", "o=- 1 1 IN IP4 192.0.2.1", "c=IN IP4 2001:db8::1"),
    "c= bad IPv6": sdp("v=0", "o=- 1 1 IN IP4 192.0.2.1", "c=IN IP6 2001:db8:::1"),
    "c= junk host": sdp("v=0", "o=- 1 1 IN IP4 192.0.2.1", "c=IN IP4 $(reboot)"),
    "c= ttl 256": sdp("v=0", "o=- 1 1 IN IP4 192.0.2.1", "c=IN IP4 224.2.1.1/256"),
    "c= count 0": sdp("v=0", "o=- 1 1 IN IP4 192.0.2.1", "c=IN IP4 224.2.1.1/127/0"),
    "c= IP4 four parts": sdp("v=0", "o=- 1 1 IN IP4 192.0.2.1", "c=IN IP4 224.2.1.1/1/2/3"),
    "c= IP6 with ttl": sdp("v=0", "o=- 1 1 IN IP4 192.0.2.1", "c=IN IP6 ff15::1/127/3"),
    "b= without colon": sdp(*HEAD, "b=AS64"),
    "b= not a number": sdp(*HEAD, "b=AS:lots"),
    "m= without port": sdp(*HEAD, "m=audio"),
    "m= port 65536": sdp(*HEAD, "m=audio 65536 RTP/AVP 0"),
    "m= port hex": sdp(*HEAD, "m=audio 0x10 RTP/AVP 0"),
    "m= port count 0": sdp(*HEAD, "m=audio 4000/0 RTP/AVP 0"),
    "m= no formats": sdp(*HEAD, "m=audio 4000 RTP/AVP"),
    "m= payload type word": sdp(*HEAD, "m=audio 4000 RTP/AVP PCMU"),
    "m= payload type -1": sdp(*HEAD, "m=audio 4000 RTP/AVP -1"),
    "m= bad proto": sdp(*HEAD, "m=audio 4000 RTP//AVP 0"),
    "m= bad format token": sdp(*HEAD, "m=application 4000 udp wb,x"),
    "rtpmap pt 128": sdp(*HEAD, "m=audio 4000 RTP/AVP 0", "a=rtpmap:128 PCMU/8000"),
    "rtpmap no rate": sdp(*HEAD, "m=audio 4000 RTP/AVP 0", "a=rtpmap:0 PCMU"),
    "rtpmap rate 0": sdp(*HEAD, "m=audio 4000 RTP/AVP 0", "a=rtpmap:0 PCMU/0"),
    "rtpmap too many parts": sdp(*HEAD, "m=audio 4000 RTP/AVP 0", "a=rtpmap:0 PCMU/8000/1/2"),
    "rtpmap no encoding": sdp(*HEAD, "m=audio 4000 RTP/AVP 0", "a=rtpmap:0"),
    "rtpmap pt remapped": sdp(
        *HEAD, "m=audio 4000 RTP/AVP 0", "a=rtpmap:0 PCMU/8000", "a=rtpmap:0 PCMA/8000"
    ),
    "fmtp empty": sdp(*HEAD, "m=audio 4000 RTP/AVP 101", "a=fmtp:"),
    "fmtp pt 300": sdp(*HEAD, "m=audio 4000 RTP/AVP 101", "a=fmtp:300 0-15"),
    "ptime word": sdp(*HEAD, "m=audio 4000 RTP/AVP 0", "a=ptime:twenty"),
    "ptime 0": sdp(*HEAD, "m=audio 4000 RTP/AVP 0", "a=ptime:0"),
    "ptime huge": sdp(*HEAD, "m=audio 4000 RTP/AVP 0", "a=ptime:99999"),
    "maxptime negative": sdp(*HEAD, "m=audio 4000 RTP/AVP 0", "a=maxptime:-20"),
    "two ptimes": sdp(*HEAD, "m=audio 4000 RTP/AVP 0", "a=ptime:20", "a=ptime:30"),
    "two directions": sdp(*HEAD, "m=audio 4000 RTP/AVP 0", "a=sendrecv", "a=inactive"),
    "two session directions": sdp(*HEAD, "a=sendonly", "a=recvonly"),
    "direction with value": sdp(*HEAD, "m=audio 4000 RTP/AVP 0", "a=sendonly:yes"),
    "attribute without name": sdp(*HEAD, "a=:value"),
    "attribute name with blank": sdp(*HEAD, "a=x y"),
    "media i= twice": sdp(*HEAD, "m=audio 4000 RTP/AVP 0", "i=a", "i=b"),
    "missing c= on second stream": sdp(
        "v=0",
        "o=- 1 1 IN IP4 192.0.2.1",
        "m=audio 4000 RTP/AVP 0",
        "c=IN IP4 192.0.2.1",
        "m=audio 4002 RTP/AVP 0",
    ),
    "NUL octet": sdp(*HEAD).replace(b"s=-", b"s=\x00"),
    "bare CR inside a line": sdp(*HEAD).replace(b"s=-", b"s=a\rb"),
    "lone surrogate text": "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=\ud800\r\n",
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_malformed_body_is_rejected_with_400(case: str) -> None:
    error = parse_error(BAD[case])
    assert error.status_hint == 400
    assert error.reason
    assert str(error).startswith("400 ")
    assert "SdpError(status_hint=400" in repr(error)


def test_limits() -> None:
    padding = "a=x-pad:" + "y" * 1000
    too_big = sdp(*HEAD, *[padding] * 70)
    assert len(too_big) > MAX_SDP_SIZE
    assert "exceeds" in parse_error(too_big).reason
    assert "lines" in parse_error(sdp(*HEAD, *["a=x"] * MAX_LINES)).reason
    many_media = [f"m=audio {4000 + 2 * i} RTP/AVP 0" for i in range(MAX_MEDIA_DESCRIPTIONS + 1)]
    assert "media descriptions" in parse_error(sdp(*HEAD, *many_media)).reason
    SessionDescription.parse(sdp(*HEAD, *many_media[:MAX_MEDIA_DESCRIPTIONS]))
    formats = " ".join(str(pt % 128) for pt in range(MAX_FORMATS + 1))
    assert "formats" in parse_error(sdp(*HEAD, f"m=audio 4000 RTP/AVP {formats}")).reason
    # At the limits themselves everything is accepted.
    SessionDescription.parse(
        sdp(*HEAD, "m=audio 65535 RTP/AVP 127", "a=ptime:1000", "a=maxptime:1")
    )
    SessionDescription.parse(sdp("v=0", "o=- 18446744073709551615 99999999999999999999 IN IP4 x"))


def test_ptime_fractions_round_to_whole_milliseconds() -> None:
    def ptime(text: str) -> int | None:
        data = sdp(*HEAD, "m=audio 4000 RTP/AVP 0", f"a=ptime:{text}")
        return SessionDescription.parse(data).media[0].ptime

    assert ptime("20") == 20
    assert ptime("20.0") == 20
    assert ptime("22.5") == 23
    assert ptime("0.5") == 1
    assert parse_error(sdp(*HEAD, "m=audio 4000 RTP/AVP 0", "a=ptime:0.4")).status_hint == 400


# --- Serialize -------------------------------------------------------------------------------


def test_serialize_refuses_to_inject_lines() -> None:
    origin = Origin(session_id=1, session_version=1, address="192.0.2.1")
    for bad in ("x\r\nm=audio 1 RTP/AVP 0", "x\ny", "x\x00"):
        with pytest.raises(ValueError, match="CR, LF or NUL"):
            SessionDescription(origin=origin, session_name=bad).serialize()
        with pytest.raises(ValueError, match="CR, LF or NUL"):
            SessionDescription(
                origin=origin, attributes=(Attribute(name="x", value=bad),)
            ).serialize()


def test_serialize_refuses_impossible_connections() -> None:
    origin = Origin(session_id=1, session_version=1, address="192.0.2.1")
    for connection in (
        Connection(address="224.2.1.1", count=2),
        Connection(addrtype="IP6", address="ff15::1", ttl=2),
    ):
        with pytest.raises(ValueError):
            SessionDescription(origin=origin, connection=connection).serialize()


def test_a_description_has_a_timing() -> None:
    with pytest.raises(ValueError):
        SessionDescription(origin=Origin(session_id=1, session_version=1, address="x"), timings=())


def test_direction_algebra() -> None:
    for direction in Direction:
        assert direction.reversed().reversed() is direction
        assert Direction.from_flags(sends=direction.sends, receives=direction.receives) is direction
    assert Direction.SENDONLY.reversed() is Direction.RECVONLY
    assert Direction.SENDRECV.reversed() is Direction.SENDRECV
    assert Direction.INACTIVE.reversed() is Direction.INACTIVE


def test_minimal_description_serializes_in_rfc_order() -> None:
    description = SessionDescription(
        origin=Origin(session_id=7, session_version=8, address="192.0.2.1"),
        connection=Connection(address="192.0.2.1"),
        media=(
            MediaDescription(
                media="audio",
                port=4000,
                formats=("8", "101"),
                attributes=(
                    RtpMap(payload_type=8, encoding_name="PCMA", clock_rate=8000),
                    RtpMap(payload_type=101, encoding_name="telephone-event", clock_rate=8000),
                    Fmtp(format="101", parameters="0-15"),
                    PacketTime(milliseconds=20),
                    MaxPacketTime(milliseconds=40),
                    Direction.SENDONLY,
                ),
            ),
        ),
    )
    assert description.serialize() == sdp(
        "v=0",
        "o=- 7 8 IN IP4 192.0.2.1",
        "s=-",
        "c=IN IP4 192.0.2.1",
        "t=0 0",
        "m=audio 4000 RTP/AVP 8 101",
        "a=rtpmap:8 PCMA/8000",
        "a=rtpmap:101 telephone-event/8000",
        "a=fmtp:101 0-15",
        "a=ptime:20",
        "a=maxptime:40",
        "a=sendonly",
    )


# --- Hypothesis ------------------------------------------------------------------------------

TOKEN_CHARS = "!#$%&'*+-.0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ^_`abcdefghijklmnopqrstuvwxyz{|}~"
TYPED_NAMES = {"rtpmap", "fmtp", "ptime", "maxptime", *(d.value for d in Direction)}

tokens = st.text(alphabet=TOKEN_CHARS, min_size=1, max_size=10)
names = tokens.filter(lambda name: name.lower() not in TYPED_NAMES)
# Free text: anything but CR, LF, NUL and surrogates, without trailing blanks (a parser
# strips those), and without leading blanks where a field separator would eat them.
texts = st.text(
    alphabet=st.characters(codec="utf-8", exclude_characters="\r\n\x00"),
    max_size=20,
).map(lambda text: text.rstrip(" \t"))
words = texts.filter(lambda text: text[:1] not in ("", " ", "\t"))
numbers = st.integers(min_value=0, max_value=10**20 - 1)
ipv4 = st.ip_addresses(v=4).map(str)
ipv6 = st.ip_addresses(v=6).map(str)
hostnames = st.from_regex(r"[a-z][a-z0-9-]{0,10}[a-z0-9](\.[a-z]{2,5}){0,2}", fullmatch=True)


@st.composite
def connections(draw: st.DrawFn) -> Connection:
    kind = draw(st.sampled_from(["IP4", "IP4-multicast", "IP6", "host"]))
    if kind == "IP4":
        return Connection(address=draw(ipv4))
    if kind == "IP4-multicast":
        address = str(ipaddress.IPv4Address(draw(st.integers(0xE0000000, 0xEFFFFFFF))))
        ttl = draw(st.integers(0, 255))
        count = draw(st.none() | st.integers(1, 255))
        return Connection(address=address, ttl=ttl, count=count)
    if kind == "IP6":
        count = draw(st.none() | st.integers(1, 255))
        return Connection(addrtype="IP6", address=draw(ipv6), count=count)
    return Connection(addrtype=draw(st.sampled_from(["IP4", "IP6"])), address=draw(hostnames))


bandwidths = st.builds(Bandwidth, bwtype=tokens, bandwidth=numbers)
generic_attributes = st.builds(Attribute, name=names, value=st.none() | texts)


@st.composite
def media_descriptions(draw: st.DrawFn) -> MediaDescription:
    proto = draw(st.sampled_from(["RTP/AVP", "RTP/AVPF", "RTP/SAVP", "udptl", "TCP/MSRP"]))
    rtp = "RTP/" in proto
    port = draw(st.integers(0, 65535))
    if rtp:
        payload_types = draw(st.lists(st.integers(0, 127), unique=True, max_size=8))
        formats = tuple(str(pt) for pt in payload_types)
    else:
        formats = tuple(draw(st.lists(tokens, max_size=4)))
    if not formats and port != 0:
        formats = ("0",) if rtp else ("*",)
    attributes: list[AttributeLine] = []
    if rtp:
        for pt in draw(st.lists(st.integers(0, 127), unique=True, max_size=5)):
            attributes.append(
                RtpMap(
                    payload_type=pt,
                    encoding_name=draw(tokens),
                    clock_rate=draw(st.integers(1, 10**9)),
                    encoding_parameters=draw(st.none() | tokens),
                )
            )
    fmtp_formats = st.integers(0, 127).map(str) if rtp else tokens
    attributes += draw(
        st.lists(st.builds(Fmtp, format=fmtp_formats, parameters=st.just("") | words), max_size=3)
    )
    attributes += draw(st.lists(generic_attributes, max_size=4))
    if draw(st.booleans()):
        attributes.append(PacketTime(milliseconds=draw(st.integers(1, 1000))))
    if draw(st.booleans()):
        attributes.append(MaxPacketTime(milliseconds=draw(st.integers(1, 1000))))
    if draw(st.booleans()):
        attributes.append(draw(st.sampled_from(list(Direction))))
    return MediaDescription(
        media=draw(st.sampled_from(["audio", "video", "text", "application"]) | tokens),
        port=port,
        port_count=draw(st.none() | st.integers(1, 65535)),
        proto=proto,
        formats=formats,
        information=draw(st.none() | texts),
        connections=tuple(draw(st.lists(connections(), max_size=2))),
        bandwidths=tuple(draw(st.lists(bandwidths, max_size=2))),
        key=draw(st.none() | texts),
        attributes=tuple(draw(st.permutations(attributes))),
    )


@st.composite
def session_descriptions(draw: st.DrawFn) -> SessionDescription:
    session_attributes: list[Direction | Attribute] = draw(st.lists(generic_attributes))
    if draw(st.booleans()):
        session_attributes.append(draw(st.sampled_from(list(Direction))))
    return SessionDescription(
        origin=Origin(
            username=draw(tokens),
            session_id=draw(numbers),
            session_version=draw(numbers),
            nettype=draw(st.just("IN") | tokens),
            addrtype=draw(st.sampled_from(["IP4", "IP6"]) | tokens),
            address=draw(ipv4 | ipv6 | tokens),
        ),
        session_name=draw(texts.filter(bool)),
        information=draw(st.none() | texts),
        uri=draw(st.none() | texts),
        emails=tuple(draw(st.lists(texts, max_size=2))),
        phones=tuple(draw(st.lists(texts, max_size=2))),
        # Always present, so every active stream has a connection (RFC 8866 §5.7).
        connection=draw(connections()),
        bandwidths=tuple(draw(st.lists(bandwidths, max_size=2))),
        timings=tuple(
            draw(
                st.lists(
                    st.builds(
                        Timing,
                        start=numbers,
                        stop=numbers,
                        repeats=st.lists(texts, max_size=2).map(tuple),
                    ),
                    min_size=1,
                    max_size=3,
                )
            )
        ),
        time_zones=draw(st.none() | texts),
        key=draw(st.none() | texts),
        attributes=tuple(draw(st.permutations(session_attributes))),
        media=tuple(draw(st.lists(media_descriptions(), max_size=4))),
    )


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(session_descriptions())
def test_parse_serialize_round_trip(description: SessionDescription) -> None:
    data = description.serialize()
    assert SessionDescription.parse(data) == description
    assert SessionDescription.parse(data).serialize() == data


def _outcome_of(data: bytes) -> None:
    try:
        parsed = SessionDescription.parse(data)
    except SdpError as error:
        assert error.status_hint == 400
        return
    # Whatever parses is written back canonically, and that reads the same again.
    assert SessionDescription.parse(parsed.serialize()) == parsed


@settings(max_examples=1000)
@given(st.binary(max_size=600))
def test_arbitrary_bytes_give_a_description_or_sdp_error(data: bytes) -> None:
    _outcome_of(data)


@settings(max_examples=500)
@given(st.text(max_size=300))
def test_arbitrary_text_gives_a_description_or_sdp_error(text: str) -> None:
    try:
        parsed = SessionDescription.parse(text)
    except SdpError as error:
        assert error.status_hint == 400
        return
    assert SessionDescription.parse(parsed.serialize()) == parsed


@settings(max_examples=500)
@given(st.binary(max_size=400))
def test_arbitrary_bytes_after_a_valid_head(data: bytes) -> None:
    _outcome_of(sdp(*HEAD) + data)


line_soup = st.lists(
    st.sampled_from(
        [
            "v=0",
            "o=- 1 1 IN IP4 192.0.2.1",
            "s=-",
            "c=IN IP4 192.0.2.1",
            "c=IN IP4 0.0.0.0",
            "c=IN IP6 ::1",
            "t=0 0",
            "r=1 2 3",
            "b=AS:64",
            "m=audio 4000 RTP/AVP 0 8 101",
            "m=audio 0 RTP/AVP 0",
            "m=video 4002 RTP/AVP 96",
            "m=application 4004 udp wb",
            "a=rtpmap:0 PCMU/8000",
            "a=rtpmap:101 telephone-event/8000",
            "a=rtpmap:96 H264/90000",
            "a=fmtp:101 0-15",
            "a=ptime:20",
            "a=maxptime:40",
            "a=sendonly",
            "a=sendrecv",
            "a=label:1",
            "i=info",
            "k=prompt",
            "",
        ]
    ),
    max_size=25,
)


@settings(max_examples=1000)
@given(line_soup, st.sampled_from(["\r\n", "\n"]))
def test_valid_lines_in_any_order(lines: list[str], eol: str) -> None:
    _outcome_of(eol.join(["v=0", *lines]).encode())


@settings(max_examples=500)
@given(
    st.sampled_from(CAPTURED),
    st.integers(min_value=0),
    st.binary(max_size=8),
    st.integers(0, 8),
)
def test_captured_bodies_with_damage(name: str, where: int, insert: bytes, cut: int) -> None:
    data = body(name)
    at = where % (len(data) + 1)
    _outcome_of(data[:at] + insert + data[at + cut :])
