"""RFC 3264 offer/answer (src/callcenter112/offer_answer.py): real offers from baresip,
pyVoIP and SIPp, a carrier's many-codec offer, hold and re-INVITEs, every 488, the two
ends of a call over a fake wire, and baresip itself on loopback (marker `peers`)."""

from __future__ import annotations

import math
import shutil
import socket
import struct
import subprocess
import wave
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callcenter112.media.g711 import Codec
from callcenter112.offer_answer import (
    MAX_SESSION_NUMBER,
    Negotiated,
    accept_answer,
    answer_offer,
    make_offer,
)
from callcenter112.sdp import (
    Connection,
    Direction,
    Fmtp,
    MediaDescription,
    Origin,
    PacketTime,
    RtpMap,
    SdpError,
    SessionDescription,
    Timing,
)

DATA = Path(__file__).parent / "data" / "sdp"
HERE = "192.0.2.10"  # our advertised address (DESIGN §4 example)
PORT = 20000


def load(name: str) -> SessionDescription:
    return SessionDescription.parse((DATA / name).read_bytes())


def sdp(*lines: str) -> SessionDescription:
    return SessionDescription.parse("\r\n".join(lines) + "\r\n")


def answer(offer: SessionDescription, **options: object) -> Negotiated:
    settings_: dict[str, object] = {
        "local_address": HERE,
        "local_port": PORT,
        "session_id": 4242,
        "session_version": 1,
    }
    settings_.update(options)
    return answer_offer(offer, **settings_)  # type: ignore[arg-type]


def offer_with(*media_lines: str, connection: str = "IN IP4 198.51.100.7") -> SessionDescription:
    return sdp(
        "v=0", "o=- 1 1 IN IP4 198.51.100.7", "s=-", f"c={connection}", "t=0 0", *media_lines
    )


def rejected(offer: SessionDescription, **options: object) -> SdpError:
    with pytest.raises(SdpError) as caught:
        answer(offer, **options)
    assert caught.value.status_hint == 488
    return caught.value


def audio_of(negotiated: Negotiated) -> MediaDescription:
    assert negotiated.answer is not None
    return negotiated.answer.media[negotiated.media_index]


# --- Answering real offers -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "codec", "dtmf_pt", "address", "port", "ptime"),
    [
        ("baresip-offer.sdp", Codec.PCMU, 101, "127.0.0.1", 30040, 20),
        ("baresip-offer-wideband-video.sdp", Codec.PCMU, 101, "127.0.0.1", 30002, 20),
        ("pyvoip-offer.sdp", Codec.PCMU, 101, "127.0.0.1", 31000, 20),
        ("sipp-uac-offer.sdp", Codec.PCMU, None, "127.0.0.1", 32000, 20),
        ("sipp-uac_pcap-offer.sdp", Codec.PCMA, 101, "127.0.0.1", 32010, 20),
        ("carrier-offer.sdp", Codec.PCMA, 96, "203.0.113.47", 16384, 20),
        ("sloppy-phone-offer.sdp", Codec.PCMA, 96, "10.20.30.40", 5004, 20),
        ("ipv6-offer.sdp", Codec.PCMU, 97, "2001:db8::5", 49170, 30),
    ],
)
def test_real_offer_is_answered(
    name: str, codec: Codec, dtmf_pt: int | None, address: str, port: int, ptime: int
) -> None:
    offer = load(name)
    negotiated = answer(offer)
    assert negotiated.codec is codec
    assert negotiated.payload_type == codec.payload_type
    assert negotiated.dtmf_pt == dtmf_pt
    assert (negotiated.remote_address, negotiated.remote_port) == (address, port)
    assert negotiated.ptime == ptime
    assert negotiated.local_direction is Direction.SENDRECV
    assert negotiated.remote_direction is Direction.SENDRECV
    assert not negotiated.on_hold
    assert negotiated.should_send and negotiated.should_receive

    reply = negotiated.answer
    assert reply is not None
    # RFC 3264 §6: one m= line per offered m= line, same order, same media and proto.
    assert [m.media for m in reply.media] == [m.media for m in offer.media]
    assert [m.proto for m in reply.media] == [m.proto for m in offer.media]
    assert reply.timings == offer.timings
    assert reply.origin == Origin(session_id=4242, session_version=1, address=HERE)
    assert reply.connection == Connection(address=HERE)
    # Exactly one codec, plus telephone-event if the offer had it.
    audio = audio_of(negotiated)
    expected_formats = [str(codec.payload_type)] + ([str(dtmf_pt)] if dtmf_pt else [])
    assert list(audio.formats) == expected_formats
    assert audio.port == PORT
    assert audio.rtpmap(codec.payload_type) == RtpMap(
        payload_type=codec.payload_type, encoding_name=codec.name, clock_rate=8000
    )
    if dtmf_pt is not None:
        assert audio.rtpmap(dtmf_pt) == RtpMap(
            payload_type=dtmf_pt, encoding_name="telephone-event", clock_rate=8000
        )
        assert audio.fmtp(dtmf_pt) == "0-15"
    assert audio.ptime == 20
    assert audio.direction is Direction.SENDRECV
    # Every other stream is declined with port 0.
    for index, media in enumerate(reply.media):
        if index != negotiated.media_index:
            assert media.port == 0
            assert media.formats == offer.media[index].formats
    # What we send parses back to the same thing.
    assert SessionDescription.parse(reply.serialize()) == reply


def test_answer_bytes_for_the_baresip_offer() -> None:
    negotiated = answer(load("baresip-offer.sdp"))
    assert negotiated.answer is not None
    assert negotiated.answer.serialize() == (
        b"v=0\r\n"
        b"o=- 4242 1 IN IP4 192.0.2.10\r\n"
        b"s=callcenter112\r\n"
        b"c=IN IP4 192.0.2.10\r\n"
        b"t=0 0\r\n"
        b"m=audio 20000 RTP/AVP 0 101\r\n"
        b"a=rtpmap:0 PCMU/8000\r\n"
        b"a=rtpmap:101 telephone-event/8000\r\n"
        b"a=fmtp:101 0-15\r\n"
        b"a=ptime:20\r\n"
        b"a=sendrecv\r\n"
    )


def test_carrier_offer_declines_video_and_text() -> None:
    negotiated = answer(load("carrier-offer.sdp"))
    assert negotiated.answer is not None
    audio, video, text = negotiated.answer.media
    assert (audio.port, video.port, text.port) == (PORT, 0, 0)
    assert (video.media, video.proto, video.formats) == ("video", "RTP/AVP", ("97",))
    assert (text.media, text.proto, text.formats) == ("text", "RTP/AVP", ("100", "98"))
    assert video.attributes == () and text.attributes == ()
    # G.729, AMR, AMR-WB and G.722 come first in the offer but are not ours; PCMA is next.
    assert negotiated.codec is Codec.PCMA
    # maxptime 40 does not cut ptime 20.
    assert negotiated.ptime == 20


def test_best_effort_srtp_lands_on_the_rtp_avp_stream() -> None:
    negotiated = answer(load("best-effort-srtp-offer.sdp"))
    assert negotiated.media_index == 1
    assert negotiated.codec is Codec.PCMU
    assert negotiated.answer is not None
    srtp, avp = negotiated.answer.media
    assert (srtp.port, srtp.proto) == (0, "RTP/SAVP")
    assert (avp.port, avp.proto) == (PORT, "RTP/AVP")


def test_two_usable_audio_streams_only_the_first_is_taken() -> None:
    offer = offer_with("m=audio 4000 RTP/AVP 8", "m=audio 4002 RTP/AVP 0")
    negotiated = answer(offer)
    assert negotiated.media_index == 0
    assert negotiated.answer is not None
    assert [m.port for m in negotiated.answer.media] == [PORT, 0]


def test_avpf_is_answered_in_kind() -> None:
    negotiated = answer(offer_with("m=audio 4000 RTP/AVPF 0", "a=rtcp-fb:* nack"))
    assert audio_of(negotiated).proto == "RTP/AVPF"


# --- Codec choice ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("formats", "prefer", "current", "expected"),
    [
        ("0 8", (Codec.PCMA, Codec.PCMU), None, Codec.PCMU),  # offerer's order wins
        ("8 0", (Codec.PCMA, Codec.PCMU), None, Codec.PCMA),
        ("8 0", (Codec.PCMU, Codec.PCMA), None, Codec.PCMA),  # prefer is a set here
        ("0 8", (Codec.PCMA,), None, Codec.PCMA),  # only what we accept
        ("0 8", (Codec.PCMU,), None, Codec.PCMU),
        ("0 8", (Codec.PCMA, Codec.PCMU), Codec.PCMA, Codec.PCMA),  # re-INVITE keeps the law
        ("0", (Codec.PCMA, Codec.PCMU), Codec.PCMA, Codec.PCMU),  # ... unless it is gone
        ("18 3 8", (Codec.PCMA, Codec.PCMU, Codec.PCMU), None, Codec.PCMA),
    ],
)
def test_codec_choice(
    formats: str, prefer: tuple[Codec, ...], current: Codec | None, expected: Codec
) -> None:
    negotiated = answer(
        offer_with(f"m=audio 4000 RTP/AVP {formats}"), prefer=prefer, current=current
    )
    assert negotiated.codec is expected
    assert audio_of(negotiated).formats == (str(expected.payload_type),)


def test_g711_on_a_dynamic_payload_type_is_sent_with_that_number() -> None:
    offer = offer_with(
        "m=audio 4000 RTP/AVP 97 101", "a=rtpmap:97 pcmu/8000", "a=rtpmap:101 telephone-event/8000"
    )
    negotiated = answer(offer)
    assert (negotiated.codec, negotiated.payload_type) == (Codec.PCMU, 97)
    assert audio_of(negotiated).rtpmap(97) == RtpMap(
        payload_type=97, encoding_name="PCMU", clock_rate=8000
    )


@pytest.mark.parametrize(
    "rtpmap",
    [
        "a=rtpmap:8 PCMA/16000",  # wrong clock rate
        "a=rtpmap:8 PCMA/8000/2",  # stereo
        "a=rtpmap:8 G729/8000",  # a static number redefined
    ],
)
def test_g711_lookalikes_are_not_g711(rtpmap: str) -> None:
    error = rejected(offer_with("m=audio 4000 RTP/AVP 8", rtpmap))
    assert "no common codec" in error.reason


def test_only_8khz_telephone_event_is_taken() -> None:
    offer = offer_with(
        "m=audio 4000 RTP/AVP 0 110 96",
        "a=rtpmap:110 telephone-event/48000",
        "a=rtpmap:96 telephone-event/8000",
    )
    assert answer(offer).dtmf_pt == 96
    wideband_only = offer_with("m=audio 4000 RTP/AVP 0 110", "a=rtpmap:110 telephone-event/16000")
    negotiated = answer(wideband_only)
    assert negotiated.dtmf_pt is None
    assert audio_of(negotiated).formats == ("0",)


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        ((), 20),
        (("a=ptime:30",), 30),
        (("a=ptime:10",), 10),
        (("a=ptime:30", "a=maxptime:20"), 20),
        (("a=maxptime:10",), 10),
        (("a=maxptime:150",), 20),
    ],
)
def test_remote_ptime(lines: tuple[str, ...], expected: int) -> None:
    assert answer(offer_with("m=audio 4000 RTP/AVP 0", *lines)).ptime == expected


def test_session_level_ptime_is_read_as_a_fallback() -> None:
    offer = sdp(
        "v=0",
        "o=- 1 1 IN IP4 192.0.2.1",
        "s=-",
        "c=IN IP4 192.0.2.1",
        "t=0 0",
        "a=ptime:40",
        "m=audio 4000 RTP/AVP 0",
    )
    assert answer(offer).ptime == 40
    junk = sdp(
        "v=0",
        "o=- 1 1 IN IP4 192.0.2.1",
        "s=-",
        "c=IN IP4 192.0.2.1",
        "t=0 0",
        "a=ptime:" + "9" * 5000,
        "m=audio 4000 RTP/AVP 0",
    )
    assert answer(junk).ptime == 20


# --- Hold, direction, re-INVITE --------------------------------------------------------------


@pytest.mark.parametrize(
    ("offered", "override", "local", "on_hold"),
    [
        (Direction.SENDRECV, None, Direction.SENDRECV, False),
        (Direction.SENDONLY, None, Direction.RECVONLY, True),  # remote holds us
        (Direction.INACTIVE, None, Direction.INACTIVE, True),
        (Direction.RECVONLY, None, Direction.SENDONLY, False),  # e.g. a listen-only party
        (Direction.SENDRECV, Direction.SENDONLY, Direction.SENDONLY, False),  # we hold them
        (Direction.SENDRECV, Direction.RECVONLY, Direction.RECVONLY, False),
        (Direction.SENDRECV, Direction.INACTIVE, Direction.INACTIVE, False),
        (Direction.SENDONLY, Direction.SENDONLY, Direction.INACTIVE, True),  # both hold
        (Direction.RECVONLY, Direction.RECVONLY, Direction.INACTIVE, False),
    ],
)
def test_direction_table(
    offered: Direction, override: Direction | None, local: Direction, on_hold: bool
) -> None:
    offer = offer_with("m=audio 4000 RTP/AVP 0", f"a={offered.value}")
    negotiated = answer(offer, direction_override=override)
    assert negotiated.remote_direction is offered
    assert negotiated.local_direction is local
    assert audio_of(negotiated).direction is local
    assert negotiated.on_hold is on_hold
    assert negotiated.should_send is local.sends
    assert negotiated.should_receive is local.receives


def test_baresip_hold_and_resume_reinvites() -> None:
    session_id = 777
    initial = answer(
        load("baresip-reinvite-1-initial.sdp"), session_id=session_id, session_version=1
    )
    assert initial.codec is Codec.PCMU
    hold = answer(
        load("baresip-reinvite-2-hold.sdp"),
        session_id=session_id,
        session_version=2,
        current=initial.codec,
    )
    # The hold re-INVITE offers PCMA only (baresip kept what the far end answered).
    assert hold.codec is Codec.PCMA
    assert hold.on_hold
    assert hold.remote_direction is Direction.SENDONLY
    assert hold.local_direction is Direction.RECVONLY  # not held-for-held (RFC 3264 §8.4)
    assert not hold.should_send and hold.should_receive
    resume = answer(
        load("baresip-reinvite-3-resume.sdp"),
        session_id=session_id,
        session_version=3,
        current=hold.codec,
    )
    assert not resume.on_hold
    assert resume.local_direction is Direction.SENDRECV
    origins = [n.answer.origin for n in (initial, hold, resume) if n.answer is not None]
    assert {o.session_id for o in origins} == {session_id}
    assert [o.session_version for o in origins] == [1, 2, 3]
    # Media stays where it was across the re-INVITEs.
    assert {n.remote_port for n in (initial, hold, resume)} == {30004}
    assert {audio_of(n).port for n in (initial, hold, resume)} == {PORT}


def test_legacy_hold_with_0000() -> None:
    negotiated = answer(load("legacy-hold-offer.sdp"))
    assert negotiated.remote_address == "0.0.0.0"
    assert negotiated.on_hold
    assert negotiated.remote_direction is Direction.SENDONLY
    assert negotiated.local_direction is Direction.RECVONLY
    assert not negotiated.should_send
    # 0.0.0.0 together with recvonly leaves nothing to do in either direction.
    offer = offer_with("m=audio 4000 RTP/AVP 0", "a=recvonly", connection="IN IP4 0.0.0.0")
    assert answer(offer).local_direction is Direction.INACTIVE


def test_unspecified_ipv6_is_hold_too() -> None:
    negotiated = answer(offer_with("m=audio 4000 RTP/AVP 0", connection="IN IP6 ::"))
    assert negotiated.on_hold
    assert not negotiated.should_send


def test_host_name_connection_is_passed_on() -> None:
    negotiated = answer(offer_with("m=audio 4000 RTP/AVP 0", connection="IN IP4 gw.example.net"))
    assert negotiated.remote_address == "gw.example.net"
    assert negotiated.should_send


def test_ipv6_local_address() -> None:
    negotiated = answer(load("baresip-offer.sdp"), local_address="2001:db8::10")
    assert negotiated.answer is not None
    assert negotiated.answer.connection == Connection(addrtype="IP6", address="2001:db8::10")
    assert negotiated.answer.origin.addrtype == "IP6"


# --- 488 -------------------------------------------------------------------------------------


def test_no_common_codec_is_488() -> None:
    error = rejected(load("no-common-codec-offer.sdp"))
    assert "no common codec" in error.reason
    assert str(error).startswith("488 ")


def test_no_audio_is_488() -> None:
    assert "no audio stream" in rejected(load("no-audio-offer.sdp")).reason
    assert "no audio stream" in rejected(sdp("v=0", "o=- 1 1 IN IP4 192.0.2.1")).reason


@pytest.mark.parametrize(
    ("media", "connection", "reason"),
    [
        (("m=audio 0 RTP/AVP 0",), "IN IP4 198.51.100.7", "port 0"),
        (
            ("m=audio 4000 RTP/SAVP 0", "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:x"),
            "IN IP4 198.51.100.7",
            "RTP/SAVP",
        ),
        (("m=audio 4000 UDP/TLS/RTP/SAVPF 0",), "IN IP4 198.51.100.7", "UDP/TLS/RTP/SAVPF"),
        (("m=audio 4000 RTP/AVP 0",), "IN IP4 224.2.1.1/127", "multicast"),
        (("m=audio 4000 RTP/AVP 0",), "IN IP4 255.255.255.255", "broadcast"),
        (("m=audio 4000 RTP/AVP 0",), "ATM NSAP 47.0005", "address type"),
        (
            ("m=audio 4000 RTP/AVP 101", "a=rtpmap:101 telephone-event/8000"),
            "IN IP4 198.51.100.7",
            "no common codec",
        ),
        (("m=audio 4000 udp 0",), "IN IP4 198.51.100.7", "transport"),
        (("m=audio 4000 RTP/AVP 0",), "IN IP4 198.51.100.7", "we accept PCMA"),
    ],
)
def test_unusable_audio_is_488(media: tuple[str, ...], connection: str, reason: str) -> None:
    prefer = (Codec.PCMA,) if reason == "we accept PCMA" else (Codec.PCMA, Codec.PCMU)
    error = rejected(offer_with(*media, connection=connection), prefer=prefer)
    assert reason in error.reason


def test_488_names_every_audio_stream_that_failed() -> None:
    offer = offer_with(
        "m=audio 4000 RTP/SAVP 0", "m=video 4002 RTP/AVP 96", "m=audio 4004 RTP/AVP 18"
    )
    reason = rejected(offer).reason
    assert "m= #1" in reason and "m= #3" in reason and "m= #2" not in reason


# --- Our own parameters are checked ----------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        {"local_address": "callcenter.example"},
        {"local_address": "0.0.0.0"},
        {"local_address": "239.1.1.1"},
        {"local_port": 0},
        {"local_port": 65536},
        {"session_id": -1},
        {"session_version": MAX_SESSION_NUMBER + 1},
        {"prefer": ()},
    ],
)
def test_bad_local_parameters_raise_value_error(options: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        answer(load("baresip-offer.sdp"), **options)
    make_options = {k: v for k, v in options.items() if k != "prefer"} or {"codecs": ()}
    base: dict[str, object] = {
        "local_address": HERE,
        "local_port": PORT,
        "session_id": 1,
        "session_version": 1,
    }
    with pytest.raises(ValueError):
        make_offer(**{**base, **make_options})  # type: ignore[arg-type]


def test_largest_session_numbers_are_fine() -> None:
    negotiated = answer(
        load("baresip-offer.sdp"),
        session_id=MAX_SESSION_NUMBER,
        session_version=MAX_SESSION_NUMBER,
    )
    assert negotiated.answer is not None
    assert negotiated.answer.origin.session_version == 2**63 - 1


# --- make_offer / accept_answer --------------------------------------------------------------


def our_offer(**options: object) -> SessionDescription:
    base: dict[str, object] = {
        "local_address": "127.0.0.1",
        "local_port": 40000,
        "session_id": 4242,
        "session_version": 1,
    }
    base.update(options)
    return make_offer(**base)  # type: ignore[arg-type]


def test_make_offer_bytes() -> None:
    assert our_offer().serialize() == (
        b"v=0\r\n"
        b"o=- 4242 1 IN IP4 127.0.0.1\r\n"
        b"s=callcenter112\r\n"
        b"c=IN IP4 127.0.0.1\r\n"
        b"t=0 0\r\n"
        b"m=audio 40000 RTP/AVP 8 0 101\r\n"
        b"a=rtpmap:8 PCMA/8000\r\n"
        b"a=rtpmap:0 PCMU/8000\r\n"
        b"a=rtpmap:101 telephone-event/8000\r\n"
        b"a=fmtp:101 0-15\r\n"
        b"a=ptime:20\r\n"
        b"a=sendrecv\r\n"
    )


def test_the_offers_we_sent_to_baresip_are_what_make_offer_writes() -> None:
    # tests/data/sdp/our-offer*.sdp were sent to baresip to capture its answers; apart
    # from the session name they are make_offer's output.
    for name, direction, version in (
        ("our-offer.sdp", Direction.SENDRECV, 1),
        ("our-offer-sendonly.sdp", Direction.SENDONLY, 2),
    ):
        sent = load(name)
        ours = our_offer(direction=direction, session_version=version)
        assert replace(sent, session_name="callcenter112") == ours


def test_make_offer_variants() -> None:
    offer = our_offer(codecs=(Codec.PCMU,), dtmf_pt=None, direction=Direction.SENDONLY)
    (audio,) = offer.media
    assert audio.formats == ("0",)
    assert audio.direction is Direction.SENDONLY
    assert SessionDescription.parse(offer.serialize()) == offer
    assert our_offer(dtmf_pt=96).media[0].formats == ("8", "0", "96")
    for bad in (95, 128, 8, 0):
        with pytest.raises(ValueError):
            our_offer(dtmf_pt=bad)


def test_accept_baresip_answer() -> None:
    negotiated = accept_answer(load("our-offer.sdp"), load("baresip-answer.sdp"))
    assert negotiated.codec is Codec.PCMA  # baresip kept our order "8 0 101"
    assert negotiated.payload_type == 8
    assert negotiated.dtmf_pt == 101
    assert (negotiated.remote_address, negotiated.remote_port) == ("127.0.0.1", 30040)
    assert negotiated.local_direction is Direction.SENDRECV
    assert not negotiated.on_hold
    assert negotiated.answer is None
    assert negotiated.media_index == 0


def test_accept_baresip_answer_to_our_hold() -> None:
    negotiated = accept_answer(
        load("our-offer-sendonly.sdp"), load("baresip-answer-to-sendonly.sdp")
    )
    assert negotiated.remote_direction is Direction.RECVONLY
    assert negotiated.local_direction is Direction.SENDONLY
    assert not negotiated.on_hold  # we hold them; they did not hold us
    assert negotiated.should_send and not negotiated.should_receive


def reply_to(*media_lines: str, connection: str = "IN IP4 198.51.100.8") -> SessionDescription:
    return sdp(
        "v=0", "o=- 9 9 IN IP4 198.51.100.8", "s=-", f"c={connection}", "t=0 0", *media_lines
    )


@pytest.mark.parametrize(
    ("media_lines", "connection", "reason"),
    [
        (("m=audio 0 RTP/AVP 8",), "IN IP4 198.51.100.8", "port 0"),
        (
            ("m=audio 5000 RTP/AVP 18", "a=rtpmap:18 G729/8000"),
            "IN IP4 198.51.100.8",
            "no common codec",
        ),
        (("m=audio 5000 RTP/SAVP 8",), "IN IP4 198.51.100.8", "transport"),
        (("m=video 5000 RTP/AVP 8",), "IN IP4 198.51.100.8", "is video"),
        (("m=audio 5000 RTP/AVP 8", "m=video 0 RTP/AVP 96"), "IN IP4 198.51.100.8", "2 m= lines"),
        ((), "IN IP4 198.51.100.8", "0 m= lines"),
        (("m=audio 5000 RTP/AVP 8",), "IN IP4 239.0.0.1", "multicast"),
    ],
)
def test_unusable_answer_is_488(media_lines: tuple[str, ...], connection: str, reason: str) -> None:
    offer = our_offer()
    with pytest.raises(SdpError) as caught:
        accept_answer(offer, reply_to(*media_lines, connection=connection))
    assert caught.value.status_hint == 488
    assert reason in caught.value.reason


def test_answer_with_a_codec_we_did_not_offer_is_488() -> None:
    offer = our_offer(codecs=(Codec.PCMA,))
    with pytest.raises(SdpError) as caught:
        accept_answer(offer, reply_to("m=audio 5000 RTP/AVP 0 101"))
    assert caught.value.status_hint == 488


def test_answer_details() -> None:
    offer = our_offer()
    # The answerer may list formats we did not offer first; we take the first we did.
    negotiated = accept_answer(offer, reply_to("m=audio 5000 RTP/AVP 18 0 8", "a=ptime:30"))
    assert (negotiated.codec, negotiated.payload_type) == (Codec.PCMU, 0)
    assert negotiated.dtmf_pt is None  # not in the answer
    assert negotiated.ptime == 30
    # A different number for telephone-event in the answer is what we send with.
    negotiated = accept_answer(
        offer, reply_to("m=audio 5000 RTP/AVP 8 96", "a=rtpmap:96 telephone-event/8000")
    )
    assert negotiated.dtmf_pt == 96
    # If we did not offer telephone-event, an answer with it does not enable it.
    no_dtmf = our_offer(dtmf_pt=None)
    negotiated = accept_answer(
        no_dtmf, reply_to("m=audio 5000 RTP/AVP 8 101", "a=rtpmap:101 telephone-event/8000")
    )
    assert negotiated.dtmf_pt is None
    # The answerer holding us.
    negotiated = accept_answer(offer, reply_to("m=audio 5000 RTP/AVP 8", "a=sendonly"))
    assert negotiated.on_hold and negotiated.local_direction is Direction.RECVONLY
    negotiated = accept_answer(
        offer, reply_to("m=audio 5000 RTP/AVP 8", connection="IN IP4 0.0.0.0")
    )
    assert negotiated.on_hold and not negotiated.should_send


def test_accept_answer_needs_an_offer_with_g711_audio() -> None:
    empty = sdp("v=0", "o=- 1 1 IN IP4 192.0.2.1")
    with pytest.raises(ValueError, match="no active audio"):
        accept_answer(empty, empty)
    g729 = offer_with("m=audio 4000 RTP/AVP 18")
    with pytest.raises(ValueError, match=r"no G\.711"):
        accept_answer(g729, reply_to("m=audio 5000 RTP/AVP 18"))


def test_description_built_in_code_without_connection_is_488() -> None:
    # parse() refuses an active stream without c=; a description built in code can lack it.
    offer = SessionDescription(
        origin=Origin(session_id=1, session_version=1, address="192.0.2.1"),
        media=(MediaDescription(media="audio", port=4000, formats=("0",)),),
    )
    assert "no c= line" in rejected(offer).reason


# --- Both ends of a call over a fake wire ----------------------------------------------------

codec_lists = st.lists(
    st.sampled_from([Codec.PCMA, Codec.PCMU]), min_size=1, max_size=2, unique=True
)


@settings(max_examples=200)
@given(
    offered=codec_lists,
    accepted=codec_lists,
    dtmf_pt=st.none() | st.integers(96, 127),
    offer_direction=st.sampled_from(list(Direction)),
    override=st.none() | st.sampled_from(list(Direction)),
    version=st.integers(0, MAX_SESSION_NUMBER),
)
def test_two_ends_agree(
    offered: list[Codec],
    accepted: list[Codec],
    dtmf_pt: int | None,
    offer_direction: Direction,
    override: Direction | None,
    version: int,
) -> None:
    offer_bytes = make_offer(
        local_address="127.0.0.1",
        local_port=40000,
        codecs=offered,
        dtmf_pt=dtmf_pt,
        session_id=1,
        session_version=version,
        direction=offer_direction,
    ).serialize()
    offer = SessionDescription.parse(offer_bytes)
    try:
        answerer = answer_offer(
            offer,
            local_address="127.0.0.2",
            local_port=50000,
            prefer=accepted,
            session_id=2,
            session_version=version,
            direction_override=override,
        )
    except SdpError as error:
        assert error.status_hint == 488
        assert not set(offered) & set(accepted)
        return
    assert answerer.answer is not None
    reply = SessionDescription.parse(answerer.answer.serialize())
    offerer = accept_answer(offer, reply)
    assert offerer.codec is answerer.codec is offered[[c in accepted for c in offered].index(True)]
    assert offerer.payload_type == answerer.payload_type == answerer.codec.payload_type
    assert offerer.dtmf_pt == answerer.dtmf_pt == dtmf_pt
    assert (offerer.remote_address, offerer.remote_port) == ("127.0.0.2", 50000)
    assert (answerer.remote_address, answerer.remote_port) == ("127.0.0.1", 40000)
    # Each side's direction is the other's, seen from the other end.
    assert offerer.local_direction is answerer.local_direction.reversed()
    assert offerer.remote_direction is answerer.local_direction
    assert answerer.remote_direction is offer_direction
    assert offerer.local_direction.sends <= offer_direction.sends
    assert offerer.local_direction.receives <= offer_direction.receives


offer_soup = st.lists(
    st.sampled_from(
        [
            "m=audio 4000 RTP/AVP 0 8 101",
            "m=audio 4000 RTP/AVP 18",
            "m=audio 0 RTP/AVP 8",
            "m=audio 4002 RTP/SAVP 8",
            "m=video 4004 RTP/AVP 96",
            "m=text 4006 RTP/AVP 98",
            "m=application 4008 udp wb",
            "m=image 4010 udptl t38",
            "c=IN IP4 0.0.0.0",
            "c=IN IP4 224.0.0.1/1",
            "a=rtpmap:8 PCMA/16000",
            "a=rtpmap:101 telephone-event/8000",
            "a=rtpmap:96 PCMU/8000",
            "a=sendonly",
            "a=inactive",
            "a=ptime:30",
            "a=maxptime:10",
        ]
    ),
    max_size=12,
)


@settings(max_examples=500)
@given(offer_soup)
def test_any_offer_gets_an_answer_or_488(lines: list[str]) -> None:
    try:
        offer = offer_with(*lines)
    except SdpError:
        return
    try:
        negotiated = answer(offer)
    except SdpError as error:
        assert error.status_hint == 488
        return
    assert negotiated.answer is not None
    assert len(negotiated.answer.media) == len(offer.media)
    assert sum(m.port != 0 for m in negotiated.answer.media) == 1
    assert SessionDescription.parse(negotiated.answer.serialize()) == negotiated.answer
    assert 1 <= negotiated.ptime <= 1000


# --- baresip on loopback ---------------------------------------------------------------------

BARESIP = shutil.which("baresip")
peers = pytest.mark.skipif(BARESIP is None, reason="baresip (Debian package) not installed")


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _udp() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(15)
    return sock


@contextmanager
def _baresip(tmp_path: Path, *extra: str) -> Iterator[tuple[int, Path]]:
    """Run baresip as an operator softphone (DESIGN §6); yield its SIP port and log."""
    assert BARESIP is not None
    wav = tmp_path / "voice.wav"
    with wave.open(str(wav), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(
            b"".join(
                struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * n / 8000)))
                for n in range(8000 * 20)
            )
        )
    sip_port = _free_udp_port()
    (tmp_path / "config").write_text(
        f"sip_listen 127.0.0.1:{sip_port}\n"
        "net_interface 127.0.0.1\n"
        f"audio_source aufile,{wav}\n"
        "audio_player aubridge,nil\n"
        "module_path /usr/lib/baresip/modules\n"
        + "".join(f"module {m}.so\n" for m in ("g711", "aufile", "aubridge", "account", "menu"))
    )
    (tmp_path / "accounts").write_text(
        f"<sip:op1@127.0.0.1:{sip_port}>;answermode=auto;regint=0;audio_codecs=PCMU,PCMA\n"
    )
    (tmp_path / "contacts").write_text("")
    log = tmp_path / "baresip.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [BARESIP, "-f", str(tmp_path), "-t", "25", *extra],
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
        try:
            yield sip_port, log
        finally:
            # SIGTERM makes baresip BYE its call and wait for a 200 nobody sends; after a
            # short grace period it is killed (our own child, by its pid).
            process.terminate()
            try:
                process.wait(timeout=2)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


def _headers(message: bytes) -> tuple[str, dict[str, str], bytes]:
    head, _, body = message.partition(b"\r\n\r\n")
    first, *lines = head.decode().split("\r\n")
    headers: dict[str, str] = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers.setdefault(name.strip().lower(), value.strip())
    return first, headers, body


def _first_rtp(sock: socket.socket) -> tuple[int, int]:
    """(payload type, source port) of the first RTP packet (RFC 3550 §5.1) on `sock`."""
    for _ in range(200):
        packet, source = sock.recvfrom(2048)
        if len(packet) >= 12 and packet[0] >> 6 == 2:
            return packet[1] & 0x7F, source[1]
    raise AssertionError("no RTP packet among 200 datagrams")


@pytest.mark.peers
@peers
def test_baresip_uses_our_answer(tmp_path: Path) -> None:
    sip, rtp = _udp(), _udp()
    rtp_port = rtp.getsockname()[1]
    uas_port = sip.getsockname()[1]
    with sip, rtp, _baresip(tmp_path, "-e", f"/dial sip:112@127.0.0.1:{uas_port}") as (_, log):
        for _ in range(20):
            message, peer = sip.recvfrom(65535)
            first, headers, body = _headers(message)
            if first.startswith("INVITE"):
                break
        else:
            raise AssertionError("no INVITE from baresip")
        offer = SessionDescription.parse(body)
        # baresip offers PCMU first; accepting only PCMA proves it follows our answer.
        negotiated = answer_offer(
            offer,
            local_address="127.0.0.1",
            local_port=rtp_port,
            prefer=(Codec.PCMA,),
            session_id=1,
            session_version=1,
        )
        assert negotiated.codec is Codec.PCMA
        assert negotiated.answer is not None
        reply = negotiated.answer.serialize()
        response = (
            f"SIP/2.0 200 OK\r\nVia: {headers['via']}\r\nFrom: {headers['from']}\r\n"
            f"To: {headers['to']};tag=cc112\r\nCall-ID: {headers['call-id']}\r\n"
            f"CSeq: {headers['cseq']}\r\nContact: <sip:112@127.0.0.1:{uas_port}>\r\n"
            f"Content-Type: application/sdp\r\nContent-Length: {len(reply)}\r\n\r\n"
        ).encode() + reply
        sip.sendto(response, peer)
        payload_type, source_port = _first_rtp(rtp)
        assert payload_type == negotiated.payload_type == 8, log.read_text(errors="replace")
        assert source_port == negotiated.remote_port


@pytest.mark.peers
@peers
def test_baresip_answers_our_offer(tmp_path: Path) -> None:
    sip, rtp = _udp(), _udp()
    rtp_port = rtp.getsockname()[1]
    me = sip.getsockname()[1]
    with sip, rtp, _baresip(tmp_path) as (baresip_port, log):
        offer = make_offer(
            local_address="127.0.0.1", local_port=rtp_port, session_id=5, session_version=1
        )
        body = offer.serialize()
        target = f"sip:op1@127.0.0.1:{baresip_port}"

        def request(method: str, cseq: int, to_tag: str = "", payload: bytes = b"") -> bytes:
            kind = "Content-Type: application/sdp\r\n" if payload else ""
            return (
                f"{method} {target} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP 127.0.0.1:{me};branch=z9hG4bK-{method}-{cseq}\r\n"
                f"Max-Forwards: 70\r\nFrom: <sip:112@127.0.0.1:{me}>;tag=cc112\r\n"
                f"To: <{target}>{to_tag}\r\nCall-ID: offer-test@127.0.0.1\r\n"
                f"CSeq: {cseq} {method}\r\nContact: <sip:112@127.0.0.1:{me}>\r\n"
                f"{kind}Content-Length: {len(payload)}\r\n\r\n"
            ).encode() + payload

        # baresip may still be starting: resend the INVITE until it answers at all.
        for _ in range(30):
            sip.sendto(request("INVITE", 1, payload=body), ("127.0.0.1", baresip_port))
            sip.settimeout(1)
            try:
                message, _ = sip.recvfrom(65535)
                break
            except TimeoutError:
                continue
        else:
            raise AssertionError("baresip never answered: " + log.read_text(errors="replace"))
        sip.settimeout(15)
        for _ in range(20):
            first, headers, reply = _headers(message)
            if first.startswith("SIP/2.0 200"):
                break
            assert first.startswith("SIP/2.0 1"), first
            message, _ = sip.recvfrom(65535)
        else:
            raise AssertionError("no 200 OK from baresip")
        to_tag = ";tag=" + headers["to"].split(";tag=", 1)[1]
        sip.sendto(request("ACK", 1, to_tag), ("127.0.0.1", baresip_port))
        negotiated = accept_answer(offer, SessionDescription.parse(reply))
        assert negotiated.codec in (Codec.PCMA, Codec.PCMU)
        payload_type, source_port = _first_rtp(rtp)
        assert payload_type == negotiated.payload_type, log.read_text(errors="replace")
        assert source_port == negotiated.remote_port
        sip.sendto(request("BYE", 2, to_tag), ("127.0.0.1", baresip_port))


def test_answer_echoes_the_offer_timing() -> None:
    # A timing other than t=0 0 is echoed, as RFC 3264 §6 requires.
    offer = replace(load("baresip-offer.sdp"), timings=(Timing(start=3000000000, stop=0),))
    negotiated = answer(offer)
    assert negotiated.answer is not None
    assert negotiated.answer.timings == (Timing(start=3000000000, stop=0),)
    # The typed records used by the answer are the public ones.
    audio = audio_of(negotiated)
    assert Fmtp(format="101", parameters="0-15") in audio.attributes
    assert PacketTime(milliseconds=20) in audio.attributes
