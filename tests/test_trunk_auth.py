"""Calls out through a trunk that challenges: the retried INVITE (RFC 3261 §22.2).

The end-to-end test (test_e2e_handoff.py) has SIPp verify a 401 answer; this one
checks the parts SIPp cannot: the 407 → Proxy-Authorization header, CSeq and
branch of the retry, one retry only, and the digest against our own verifier.
"""

from __future__ import annotations

from callcenter112.callflow.legs import trunk_credentials
from callcenter112.config import Config, parse_config
from callcenter112.sip.auth import DigestAuthenticator
from callcenter112.sip.events import ResponseReceived
from callcenter112.sip.message import Request, Response, parse_message
from callcenter112.sip.peer import Peer
from callcenter112.sip.session import (
    ChallengeAnswered,
    Failed,
    InviteSession,
    LocalParty,
    with_credentials,
)
from callcenter112.sip.transaction import TransactionKey

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


def _config(auth_user: str = "ambon112") -> Config:
    return parse_config(
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


class Transactions:
    """The endpoint's verbs, recording what the session sends."""

    def __init__(self) -> None:
        self.sent: list[Request] = []

    def request(self, request: Request, peer: Peer, handler: object) -> TransactionKey:
        self.sent.append(request)
        return TransactionKey(request.top_via.branch or "", request.method, client=True)

    def respond(self, key: TransactionKey, response: Response) -> bool:
        return True

    def cancel(self, key: TransactionKey) -> TransactionKey | None:
        return None

    def send_stateless(self, message: Request | Response, peer: Peer) -> None:
        pass


def _invite() -> Request:
    invite = parse_message(INVITE)
    assert isinstance(invite, Request)
    return invite


def _challenge(status: int) -> tuple[Response, DigestAuthenticator]:
    header = "WWW-Authenticate" if status == 401 else "Proxy-Authenticate"
    carrier = DigestAuthenticator("telkom.example", {"ambon112": "trunk-secret"}, secret=b"k" * 32)
    challenge = carrier.challenge(_invite(), 100.0)
    value = challenge.headers.get("WWW-Authenticate")
    assert value is not None
    return Response(status, headers=[(header, value), ("CSeq", "1 INVITE")]), carrier


def test_407_is_answered_with_proxy_authorization() -> None:
    credentials = trunk_credentials(_config(), "telkom")
    assert credentials is not None
    response, carrier = _challenge(407)
    retry = with_credentials(_invite(), response, credentials)
    assert retry is not None
    assert retry.cseq.sequence == 2 and retry.call_id == "out-1@192.0.2.10"
    assert retry.top_via.branch != "z9hG4bKfirst" and retry.from_tag == "abc"
    assert retry.headers.get("Proxy-Authorization") and not retry.headers.get("Authorization")
    # The carrier's own digest check accepts it (a proxy compares like a UAS).
    as_uas = parse_message(retry.serialize().replace(b"Proxy-Authorization:", b"Authorization:"))
    assert isinstance(as_uas, Request)
    assert carrier.verify(as_uas, 101.0).ok


def test_a_leg_answers_one_challenge_and_fails_on_the_second() -> None:
    wire = Transactions()
    session = InviteSession.outgoing(
        transactions=wire,
        local=LocalParty(via_host="192.0.2.10", via_port=5060, contact="<sip:112@192.0.2.10>"),
        invite=_invite(),
        peer=Peer("udp", "198.51.100.1", 5060),
        on_event=lambda event: None,
        credentials=trunk_credentials(_config(), "telkom"),
    )
    session.start()
    response, _ = _challenge(407)

    def challenge() -> list[object]:
        request = wire.sent[-1]
        key = TransactionKey(request.top_via.branch or "", "INVITE", client=True)
        answer = Response(407, headers=list(response.headers))
        event = ResponseReceived(
            response=answer, peer=session.peer, client_key=key, request=request
        )
        return list(session.receive(event, 100.0))

    assert challenge() == [ChallengeAnswered(status=407)]
    assert len(wire.sent) == 2 and wire.sent[1].headers.get("Proxy-Authorization")
    (failed,) = challenge()
    assert isinstance(failed, Failed) and failed.status == 407
    assert len(wire.sent) == 2  # a second challenge is a failure, not a loop


def test_no_credentials_or_no_trunk_means_the_failure_stands() -> None:
    assert trunk_credentials(_config(auth_user=""), "telkom") is None
    assert trunk_credentials(_config(), None) is None
    assert trunk_credentials(_config(), "nonesuch") is None
