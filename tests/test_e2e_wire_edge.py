"""Issue 11 wired into the running centre, proved against the real server.

* Password guessing spread over many addresses: the account's guessing guard
  (`guessing.AccountGuard`, fed with the REGISTER's source) backs the account
  off everywhere except at the operator's usual address, where the real
  phone keeps registering.
"""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from callcenter112.guessing import DEFAULT_FREE_FAILURES
from callcenter112.sip.auth import authorization_for
from callcenter112.sip.message import Response, parse_message
from harness import Server

pytestmark = pytest.mark.peers

OPERATOR_IP = "127.0.0.3"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    s = Server(tmp_path / "server")
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
