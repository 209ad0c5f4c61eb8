"""SDES-SRTP interop with a real softphone: Debian's baresip with `mediaenc=srtp-mand`.

The test is the caller here (raw SIP on a loopback socket, the package's own
`make_offer` + `secure_offer`, `accept_answer` + `answered_crypto`, and
`SrtpContext`): baresip auto-answers an RTP/SAVP offer only if the `a=crypto`
line is right, and the SRTP it sends must authenticate and decrypt with the
key from its answer, into G.711 A-law frames. This proves the wire side the
call flow will use for operator legs (docs/security.md).
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest

from callcenter112.offer_answer import accept_answer, answered_crypto, make_offer, secure_offer
from callcenter112.rtp.packet import parse_header
from callcenter112.rtp.srtp import CryptoAttribute, SrtpContext, SrtpError
from callcenter112.sdp import SessionDescription
from callcenter112.sip.message import Response, parse_message
from harness import Baresip, free_port, need

pytestmark = pytest.mark.peers


def _request(method: str, uri: str, port: int, call_id: str, cseq: int, extra: str = "") -> str:
    return (
        f"{method} {uri} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK-{method}-{time.monotonic_ns()};rport\r\n"
        f"From: <sip:112@127.0.0.1:{port}>;tag=srtp-test\r\n"
        f"Call-ID: {call_id}\r\nCSeq: {cseq} {method}\r\nMax-Forwards: 70\r\n"
        f"Contact: <sip:112@127.0.0.1:{port}>\r\n{extra}"
    )


def test_baresip_answers_our_sdes_offer_and_its_srtp_decrypts(tmp_path: Path) -> None:
    need("baresip")
    phone = Baresip(tmp_path / "op1", user="op1", password="unused", server_port=free_port())
    config = phone.directory / "config"
    # Before account.so: accounts name their media encryption when they load.
    config.write_text(
        config.read_text().replace("module account.so", "module srtp.so\nmodule account.so")
    )
    accounts = phone.directory / "accounts"
    accounts.write_text(
        accounts.read_text()
        .replace(";regint=60", ";regint=0")
        .replace(";audio_codecs=PCMU,PCMA", ";audio_codecs=PCMA;mediaenc=srtp-mand")
    )
    sip = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sip.bind(("127.0.0.1", 0))
    sip.settimeout(10)
    media = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    media.bind(("127.0.0.1", 0))
    media.settimeout(5)
    port, rtp_port = sip.getsockname()[1], media.getsockname()[1]
    ours = CryptoAttribute.generate(
        tag=1, suite="AES_CM_128_HMAC_SHA1_80", key_and_salt=os.urandom(30)
    )
    offer = secure_offer(
        make_offer(local_address="127.0.0.1", local_port=rtp_port, session_id=7, session_version=1),
        ours,
    )
    body = offer.serialize()
    target = ("127.0.0.1", phone.sip_port)
    uri = f"sip:op1@127.0.0.1:{phone.sip_port}"
    phone.start()
    try:
        sip.sendto(
            (
                _request("INVITE", uri, port, "srtp-1", 1, f"To: <{uri}>\r\n")
                + f"Content-Type: application/sdp\r\nContent-Length: {len(body)}\r\n\r\n"
            ).encode()
            + body,
            target,
        )
        final: Response | None = None
        while final is None:
            message = parse_message(sip.recv(65535))
            if isinstance(message, Response) and message.status >= 200:
                final = message
        assert final.status == 200, final.status
        answer = SessionDescription.parse(final.body)
        assert answer.media[0].proto == "RTP/SAVP"
        negotiated = accept_answer(offer, answer)
        theirs = answered_crypto(offer, answer)
        to = final.headers.get("To")
        sip.sendto(
            (_request("ACK", uri, port, "srtp-1", 1, f"To: {to}\r\n") + "Content-Length: 0\r\n\r\n")
            .encode(),
            target,
        )  # fmt: skip
        srtp = SrtpContext(local=ours, remote=theirs)
        frames = 0
        for _ in range(40):
            data, _ = media.recvfrom(2048)
            with pytest.raises(SrtpError):
                # Without the key it is not RTP we could use: our own key fails.
                SrtpContext(local=theirs, remote=ours).unprotect(data)
            packet = srtp.unprotect(data)  # authenticates, or raises
            pt, _, _, _, _, start, end = parse_header(packet)
            if pt == negotiated.payload_type:
                assert end - start == 160  # 20 ms of A-law
                frames += 1
        assert frames >= 30
        sip.sendto(
            (_request("BYE", uri, port, "srtp-1", 2, f"To: {to}\r\n") + "Content-Length: 0\r\n\r\n")
            .encode(),
            target,
        )  # fmt: skip
    finally:
        phone.stop()
        sip.close()
        media.close()
    assert "srtp" in phone.output().lower()
