"""Issue 11 wired into the running centre, proved against the real server.

* Password guessing spread over many addresses: the account's guessing guard
  (`guessing.AccountGuard`, fed with the REGISTER's source) backs the account
  off everywhere except at the operator's usual address, where the real
  phone keeps registering.
* An RTP range filled by waiting callers: callers beyond the operators'
  reserve get 503 (and a refused incident); an operator who comes online is
  still offered a waiting caller.
"""

from __future__ import annotations

import contextlib
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from callcenter112.callflow.guards import caller_pairs
from callcenter112.guessing import DEFAULT_FREE_FAILURES
from callcenter112.sip.auth import authorization_for
from callcenter112.sip.message import Response, parse_message
from harness import (
    Server,
    baresip_operator,
    free_port,
    free_range,
    need,
    operator_online,
    start_caller,
    talking_to,
    wait_until,
)
from test_e2e_media import incident_id_of

pytestmark = pytest.mark.peers

OPERATOR_IP = "127.0.0.3"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    with _server(tmp_path) as s:
        yield s


@contextlib.contextmanager
def _server(tmp_path: Path, **kwargs: Any) -> Iterator[Server]:
    s = Server(tmp_path / "server", **kwargs)
    s.start()
    try:
        yield s
    finally:
        try:
            s.stop()
        finally:
            s.kill()
    assert "Traceback" not in s.output()


class Phone:
    """A bare UDP SIP client on one loopback address: REGISTER with digest."""

    def __init__(self, host: str, server_port: int) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.sock.settimeout(3.0)
        self.host, self.port = self.sock.getsockname()
        self.server = ("127.0.0.1", server_port)
        self.call_id = f"{uuid.uuid4().hex}@{host}"
        self.cseq = 0

    def close(self) -> None:
        self.sock.close()

    def _request(self, user: str, authorization: str | None) -> Response:
        self.cseq += 1
        uri = f"sip:127.0.0.1:{self.server[1]}"
        lines = [
            f"REGISTER {uri} SIP/2.0",
            f"Via: SIP/2.0/UDP {self.host}:{self.port};branch=z9hG4bK{uuid.uuid4().hex}",
            "Max-Forwards: 70",
            f"From: <sip:{user}@127.0.0.1>;tag={uuid.uuid4().hex[:8]}",
            f"To: <sip:{user}@127.0.0.1>",
            f"Call-ID: {self.call_id}",
            f"CSeq: {self.cseq} REGISTER",
            f"Contact: <sip:{user}@{self.host}:{self.port}>",
            "Expires: 60",
        ]
        if authorization is not None:
            lines.append(f"Authorization: {authorization}")
        lines += ["Content-Length: 0", "", ""]
        self.sock.sendto("\r\n".join(lines).encode(), self.server)
        while True:
            data, _ = self.sock.recvfrom(65535)
            msg = parse_message(data)
            if isinstance(msg, Response) and msg.status >= 200:
                return msg

    def register(self, user: str, password: str) -> int:
        """The final status of one REGISTER answered with `password`."""
        first = self._request(user, None)
        if first.status != 401:
            return first.status
        challenge = first.headers.get_all("WWW-Authenticate")[0]
        uri = f"sip:127.0.0.1:{self.server[1]}"
        auth = authorization_for(
            challenge, "REGISTER", uri, user, password, cnonce=uuid.uuid4().hex[:16], nc=1
        )
        return self._request(user, auth).status


def test_guessing_from_many_addresses_never_locks_out_the_usual_address(
    server: Server,
) -> None:
    phone = Phone(OPERATOR_IP, server.sip_port)
    try:
        assert phone.register("op1", "secret1") == 200  # its usual address from now on
        # Guessers on 3 * free-failures addresses, three wrong guesses each:
        # no one address reaches its own lockout, the account's budget is
        # spent many times over.
        statuses: list[int] = []
        for i in range(DEFAULT_FREE_FAILURES * 3):
            guesser = Phone(f"127.0.9.{i + 1}", server.sip_port)
            try:
                statuses += [guesser.register("op1", f"guess{i}-{k}") for k in range(3)]
            finally:
                guesser.close()
        assert 403 in statuses, statuses  # the account backed off the guessers
        # Even the right password from yet another address is refused unchecked
        # while the account is backed off ...
        late = Phone("127.0.9.250", server.sip_port)
        try:
            assert late.register("op1", "secret1") == 403
        finally:
            late.close()
        # ... and the operator at its usual address is never locked out.
        for _ in range(3):
            assert phone.register("op1", "secret1") == 200
            time.sleep(0.1)
    finally:
        phone.close()
    assert not [e for e in server.events("auth_lockout") if e.get("source") == OPERATOR_IP]


@pytest.mark.slow
def test_a_full_rtp_range_of_waiting_callers_still_lets_an_operator_take_one(
    tmp_path: Path,
) -> None:
    """Eight RTP pairs, one operator: at most six callers are admitted (two pairs
    stay for op1's operator and agency legs), the others get 503 and a refused
    incident. When op1's baresip comes online, it is offered a waiting caller and
    talks to it: no offer fails for want of an RTP pair."""
    need("sipp", "baresip")
    pairs, takers = 8, 1
    admitted = caller_pairs(pairs, takers)
    assert admitted == 6
    server = Server(
        tmp_path / "server",
        sip_port=free_port(),
        web_port=free_port(),
        rtp=free_range(pairs),
        extra="menu_tries = 1\ninput_timeout_s = 1\n[queue]\nring_timeout_s = 4\nwrapup_s = 0\n",
    )
    server.start()
    callers = []
    try:
        numbers = [f"08130000{n:02d}" for n in range(1, pairs + 1)]
        for number in numbers:
            callers.append(start_caller(server, tmp_path / number, caller=number, talk_ms=60_000))
            time.sleep(0.3)
        refused = wait_until(
            lambda: (
                server.events("capacity_reached")
                if len(server.events("capacity_reached")) >= pairs - admitted
                else None
            ),
            30,
            what="the callers beyond the reserve refused",
        )
        assert len(refused) == pairs - admitted, refused
        interrupted = server.sql("SELECT COUNT(*) FROM incidents WHERE status = 'interrupted'")[0][
            0
        ]
        assert interrupted == pairs - admitted
        waiting = [
            n
            for n in numbers
            if (incident_id_of(server, n) or "")
            and server.sql("SELECT status FROM incidents WHERE caller = ?", n)[0][0] == "active"
        ]
        assert len(waiting) == admitted, waiting
        with baresip_operator(
            tmp_path / "op1", user="op1", password="secret1", server_port=server.sip_port
        ):
            wait_until(lambda: operator_online(server, "op1"), 30, what="op1 registered")
            talking = wait_until(
                lambda: [n for n in waiting if talking_to(server, n, "op1")],
                30,
                what="op1 offered a waiting caller and talking",
            )
            assert len(talking) == 1
        assert not server.events("offer_not_sent")
    finally:
        for run in callers:
            run.kill()
        try:
            server.stop()
        finally:
            server.kill()
    assert "Traceback" not in server.output()


def spoofed_invite(server_port: int, caller: str) -> socket.socket:
    """A trunk INVITE to 112 from a socket that then never ACKs and never
    sends a packet of media (what a forged source address looks like)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    host, port = sock.getsockname()
    sdp = (
        f"v=0\r\no=- 1 1 IN IP4 {host}\r\ns=-\r\nc=IN IP4 {host}\r\nt=0 0\r\n"
        f"m=audio {port + 2} RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\n"
    )
    invite = (
        f"INVITE sip:112@127.0.0.1:{server_port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {host}:{port};branch=z9hG4bK{uuid.uuid4().hex}\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:{caller}@{host}>;tag={uuid.uuid4().hex[:8]}\r\n"
        f"To: <sip:112@127.0.0.1:{server_port}>\r\n"
        f"Call-ID: {uuid.uuid4().hex}@{host}\r\nCSeq: 1 INVITE\r\n"
        f"Contact: <sip:{caller}@{host}:{port}>\r\n"
        f"Content-Type: application/sdp\r\nContent-Length: {len(sdp)}\r\n\r\n{sdp}"
    )
    sock.sendto(invite.encode(), ("127.0.0.1", server_port))
    return sock


@pytest.mark.slow
def test_a_trunk_invite_never_acked_leaves_its_callback_to_a_supervisor(
    tmp_path: Path,
) -> None:
    """The 200 OK is never ACKed and no RTP ever comes: when the centre gives
    the call up (RFC 3261 Timer H, 64*T1: 32 s by default, 6.4 s with the
    T1 of 100 ms this server runs with), its callback task is open but held
    for a supervisor (`review`), not offered for dialling."""
    with _server(tmp_path, sip_extra="timer_t1_ms = 100") as server:
        _never_acked(server)


def _never_acked(server: Server) -> None:
    caller = "081355500001"
    sock = spoofed_invite(server.sip_port, caller)
    try:
        sock.settimeout(5)
        data, _ = sock.recvfrom(65535)  # 100 Trying / 200 OK: it was taken
        assert data.startswith(b"SIP/2.0 ")
        incident = wait_until(lambda: incident_id_of(server, caller), 20, what="incident")
        wait_until(
            lambda: (
                server.sql("SELECT status FROM incidents WHERE id = ?", incident)[0][0]
                == "interrupted"
            ),
            90,
            what="the unacknowledged call given up",
        )
        rows = wait_until(
            lambda: server.sql(
                "SELECT status, review FROM callbacks WHERE incident_id = ? AND review IS NOT NULL",
                incident,
            ),
            20,
            what="the callback held for review",
        )
        assert rows == [("open", "unverified_caller")]
        events = server.sql(
            "SELECT kind FROM events WHERE incident_id = ? AND kind = 'callback_review'", incident
        )
        assert len(events) == 1
    finally:
        sock.close()
