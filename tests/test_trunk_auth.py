"""Calls out through a trunk that challenges: the retried INVITE (RFC 3261 §22.2).

The end-to-end test (test_e2e_handoff.py) has SIPp verify a 401 answer; this one
checks the parts SIPp cannot: the 407 → Proxy-Authorization header, CSeq and
branch of the retry, one retry only, and the digest against our own verifier.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from callcenter112.callflow.call import retry_with_credentials
from callcenter112.callflow.legs import OutboundLeg
from callcenter112.config import parse_config
from callcenter112.incidents import LegRole
from callcenter112.sip.auth import DigestAuthenticator
from callcenter112.sip.message import Request, Response, parse_message
from callcenter112.sip.peer import Peer

INVITE = (
    b"INVITE sip:113@198.51.100.1:5060 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKfirst;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b'From: "112 Ambon" <sip:112@192.0.2.10>;tag=abc\r\n'
    b"To: <sip:113@198.51.100.1>\r\n"
    b"Call-ID: out-1@192.0.2.10\r\n"
    b"CSeq: 1 INVITE\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: 4\r\n\r\nv=0\n"
)


def _centre(auth_user: str = "ambon112") -> tuple[Any, list[Request]]:
    cfg = parse_config(
        {
            "trunk": [
                {
                    "name": "telkom",
                    "allow": ["198.51.100.0/24"],
                    "proxy": "198.51.100.1:5060",
                    "auth_user": auth_user,
                    "auth_password": "trunk-secret",
                }
            ]
        }
    )
    sent: list[Request] = []

    def request(req: Request, peer: Peer, handler: Any) -> str:
        sent.append(req)
        return "key-2"

    return SimpleNamespace(config=cfg, endpoint=SimpleNamespace(request=request)), sent


def _leg() -> OutboundLeg:
    invite = parse_message(INVITE)
    assert isinstance(invite, Request)
    return OutboundLeg(
        role=LegRole.AGENCY,
        name="damkar",
        invite=invite,
        peer=Peer("udp", "198.51.100.1", 5060),
        media=None,  # type: ignore[arg-type]
        offer=None,  # type: ignore[arg-type]
        trunk="telkom",
    )


def _challenge(status: int) -> tuple[Response, DigestAuthenticator]:
    header = "WWW-Authenticate" if status == 401 else "Proxy-Authenticate"
    carrier = DigestAuthenticator("telkom.example", {"ambon112": "trunk-secret"}, secret=b"k" * 32)
    challenge = carrier.challenge(parse_message(INVITE), 100.0)  # type: ignore[arg-type]
    value = challenge.headers.get("WWW-Authenticate")
    assert value is not None
    return Response(status, headers=[(header, value), ("CSeq", "1 INVITE")]), carrier


def test_407_is_answered_with_proxy_authorization_once() -> None:
    centre, sent = _centre()
    leg = _leg()
    response, carrier = _challenge(407)
    assert retry_with_credentials(centre, leg, response, lambda e: None)
    (retry,) = sent
    assert retry.cseq.sequence == 2 and retry.call_id == "out-1@192.0.2.10"
    assert retry.top_via.branch != "z9hG4bKfirst" and retry.from_tag == "abc"
    assert retry.headers.get("Proxy-Authorization") and not retry.headers.get("Authorization")
    # The carrier's own digest check accepts it (a proxy compares like a UAS).
    as_uas = parse_message(retry.serialize().replace(b"Proxy-Authorization:", b"Authorization:"))
    assert carrier.verify(as_uas, 101.0).ok  # type: ignore[arg-type]
    assert leg.invite is retry and leg.auth_tried
    # A second challenge is a failure, not a loop.
    assert not retry_with_credentials(centre, leg, response, lambda e: None)
    assert len(sent) == 1


def test_no_credentials_or_no_trunk_means_the_failure_stands() -> None:
    centre, sent = _centre(auth_user="")
    response, _ = _challenge(401)
    assert not retry_with_credentials(centre, _leg(), response, lambda e: None)
    leg = _leg()
    leg.trunk = None
    assert not retry_with_credentials(_centre()[0], leg, response, lambda e: None)
    assert sent == []
