"""SDES crypto lines and SRTP contexts (rtp/srtp.py): wire records and bit-exact round trips."""

from __future__ import annotations

import base64
import os
import struct
from typing import Any

import pytest

from callcenter112.rtp.srtp import (
    KEY_AND_SALT_BYTES,
    CryptoAttribute,
    SrtpContext,
    SrtpError,
    answer_crypto,
)

# An offer line as baresip 1.0 writes it (mediaenc=srtp-mand), key made up.
BARESIP_LINE = "1 AES_CM_128_HMAC_SHA1_80 inline:" + base64.b64encode(bytes(range(30))).decode()


def rtp(seq: int, payload: bytes, ssrc: int = 0x1234ABCD) -> bytes:
    return struct.pack("!BBHII", 0x80, 8, seq, seq * 160, ssrc) + payload


def test_crypto_line_round_trips() -> None:
    attr = CryptoAttribute.parse(BARESIP_LINE)
    assert attr.tag == 1 and attr.suite == "AES_CM_128_HMAC_SHA1_80"
    assert attr.key_and_salt == bytes(range(30))
    assert attr.serialize() == BARESIP_LINE
    assert CryptoAttribute.parse(attr.serialize()) == attr


def test_lifetime_is_accepted() -> None:
    assert CryptoAttribute.parse(BARESIP_LINE + "|2^31").key_and_salt == bytes(range(30))


@pytest.mark.parametrize(
    ("value", "words"),
    [
        (BARESIP_LINE + "|1:4", "MKI"),
        ("1 AES_CM_128_HMAC_SHA1_80 inline:!!notbase64!!", "base64"),
        ("1 AES_CM_128_HMAC_SHA1_80 inline:" + base64.b64encode(b"short").decode(), "30 bytes"),
        ("1 F8_128_HMAC_SHA1_80 inline:" + base64.b64encode(bytes(30)).decode(), "suite"),
        ("x AES_CM_128_HMAC_SHA1_80 inline:" + base64.b64encode(bytes(30)).decode(), "tag"),
        ("1 AES_CM_128_HMAC_SHA1_80 uri:http://x", "inline"),
        ("1 AES_CM_128_HMAC_SHA1_80", "expected"),
        (BARESIP_LINE + " KDR=1", "expected"),
    ],
)
def test_unusable_crypto_lines_are_refused(value: str, words: str) -> None:
    with pytest.raises(SrtpError, match=words):
        CryptoAttribute.parse(value)


def test_answer_takes_the_first_usable_line_with_its_tag_and_suite() -> None:
    ours = os.urandom(KEY_AND_SALT_BYTES)
    offered = [
        "1 AEAD_AES_256_GCM inline:" + base64.b64encode(bytes(44)).decode(),
        None,
        "2 AES_CM_128_HMAC_SHA1_32 inline:" + base64.b64encode(bytes(30)).decode(),
        BARESIP_LINE,
    ]
    chosen = answer_crypto(offered, ours)
    assert chosen is not None
    theirs, answer = chosen
    assert (theirs.tag, theirs.suite) == (2, "AES_CM_128_HMAC_SHA1_32")
    assert (answer.tag, answer.suite, answer.key_and_salt) == (2, theirs.suite, ours)
    assert answer_crypto(["1 NONE inline:x"], ours) is None


@pytest.mark.parametrize("suite", ["AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_32"])
def test_both_directions_round_trip_bit_exact(suite: str) -> None:
    a_key = CryptoAttribute.generate(tag=1, suite=suite, key_and_salt=os.urandom(30))
    b_key = CryptoAttribute.generate(tag=1, suite=suite, key_and_salt=os.urandom(30))
    centre = SrtpContext(local=a_key, remote=b_key)
    phone = SrtpContext(local=b_key, remote=a_key)
    # A-law payloads, every byte value: what the recorder must get back unchanged.
    for seq in range(50):
        payload = bytes((seq + i) % 256 for i in range(160))
        packet = rtp(seq, payload)
        wire = centre.protect(packet)
        assert wire[12:172] != payload  # encrypted on the wire
        assert phone.unprotect(wire) == packet
        back = rtp(seq, payload[::-1], ssrc=0x5555)
        assert centre.unprotect(phone.protect(back)) == back


def test_forged_and_replayed_packets_are_refused() -> None:
    key = CryptoAttribute.parse(BARESIP_LINE)
    other = CryptoAttribute.generate(
        tag=1, suite="AES_CM_128_HMAC_SHA1_80", key_and_salt=os.urandom(30)
    )
    sender = SrtpContext(local=key, remote=other)
    receiver = SrtpContext(local=other, remote=key)
    wire = sender.protect(rtp(1, bytes(160)))
    assert receiver.unprotect(wire) == rtp(1, bytes(160))
    with pytest.raises(SrtpError):
        receiver.unprotect(wire)  # replayed (RFC 3711 §3.3.2)
    forged = bytearray(sender.protect(rtp(2, bytes(160))))
    forged[20] ^= 0x01
    with pytest.raises(SrtpError):
        receiver.unprotect(bytes(forged))  # authentication tag fails
    stranger = SrtpContext(local=other, remote=other)
    with pytest.raises(SrtpError):
        stranger.unprotect(sender.protect(rtp(3, bytes(160))))  # wrong key


def test_rtcp_round_trips() -> None:
    a = CryptoAttribute.parse(BARESIP_LINE)
    b = CryptoAttribute.generate(tag=1, suite=a.suite, key_and_salt=os.urandom(30))
    # An empty receiver report: V=2, RC=0, PT=201, length 1, SSRC.
    report = struct.pack("!BBHI", 0x80, 201, 1, 0x1234ABCD)
    assert (
        SrtpContext(local=b, remote=a).unprotect_rtcp(
            SrtpContext(local=a, remote=b).protect_rtcp(report)
        )
        == report
    )


def test_suites_must_match() -> None:
    a = CryptoAttribute.parse(BARESIP_LINE)
    b = CryptoAttribute.generate(tag=1, suite="AES_CM_128_HMAC_SHA1_32", key_and_salt=bytes(30))
    with pytest.raises(SrtpError, match="negotiated suite"):
        SrtpContext(local=a, remote=b)


# -- offer/answer (offer_answer.py) --------------------------------------------------


def _offer_and_key() -> tuple[Any, CryptoAttribute]:
    from callcenter112.offer_answer import make_offer, secure_offer

    ours = CryptoAttribute.generate(
        tag=1, suite="AES_CM_128_HMAC_SHA1_80", key_and_salt=os.urandom(30)
    )
    plain = make_offer(
        local_address="192.0.2.10", local_port=20000, session_id=1, session_version=1
    )
    return secure_offer(plain, ours), ours


def _answer(proto: str, crypto: str | None) -> Any:
    from callcenter112.sdp import SessionDescription

    lines = [
        "v=0", "o=- 1 1 IN IP4 198.51.100.20", "s=-", "c=IN IP4 198.51.100.20", "t=0 0",
        f"m=audio 30000 {proto} 8 101", "a=rtpmap:8 PCMA/8000",
        "a=rtpmap:101 telephone-event/8000", "a=fmtp:101 0-15", "a=sendrecv",
    ]  # fmt: skip
    if crypto is not None:
        lines.append(f"a=crypto:{crypto}")
    return SessionDescription.parse("\r\n".join(lines) + "\r\n")


def test_secure_offer_and_the_answer_key() -> None:
    from callcenter112.offer_answer import accept_answer, answered_crypto

    offer, ours = _offer_and_key()
    text = offer.serialize().decode()
    assert "m=audio 20000 RTP/SAVP 8 0 101\r\n" in text
    assert f"a=crypto:{ours.serialize()}\r\n" in text
    theirs_line = "1 AES_CM_128_HMAC_SHA1_80 inline:" + base64.b64encode(bytes(30)).decode()
    answer = _answer("RTP/SAVP", theirs_line)
    negotiated = accept_answer(offer, answer)
    assert (negotiated.remote_address, negotiated.remote_port) == ("198.51.100.20", 30000)
    theirs = answered_crypto(offer, answer)
    assert theirs.key_and_salt == bytes(30)
    SrtpContext(local=ours, remote=theirs)  # a usable pair: same suite


@pytest.mark.parametrize(
    "crypto",
    [None, "2 AES_CM_128_HMAC_SHA1_80 inline:" + base64.b64encode(bytes(30)).decode()],
)
def test_answer_without_our_key_is_488(crypto: str | None) -> None:
    from callcenter112.offer_answer import answered_crypto
    from callcenter112.sdp import SdpError

    offer, _ = _offer_and_key()
    with pytest.raises(SdpError) as err:
        answered_crypto(offer, _answer("RTP/SAVP", crypto))
    assert err.value.status_hint == 488


def test_plain_answer_to_a_secure_offer_and_savp_from_callers_are_refused() -> None:
    from callcenter112.offer_answer import accept_answer, answer_offer
    from callcenter112.sdp import SdpError

    offer, _ = _offer_and_key()
    with pytest.raises(SdpError):
        accept_answer(offer, _answer("RTP/AVP", None))  # downgrade: RFC 3264 §6
    # A caller's SAVP offer is not keyed by us: still not acceptable.
    line = "1 AES_CM_128_HMAC_SHA1_80 inline:" + base64.b64encode(bytes(30)).decode()
    with pytest.raises(SdpError):
        answer_offer(
            _answer("RTP/SAVP", line),
            local_address="192.0.2.10",
            local_port=20002,
            session_id=2,
            session_version=1,
        )
