"""The adversarial suite against the real server on loopback (issue 11).

The server's only trunk is 127.0.0.2/32 here; the operator's phone (SIPp
with digest) registers from 127.0.0.1, its usual address; attackers send
from other 127.0.0.0/8 addresses:

* a flood of INVITEs to 112 from 400 addresses while SIPp places trunk
  calls: every trunk call is answered (slow);
* Debian's SIPVicious (svmap, svwar, svcrack) against registrar and trunk:
  the server answers throughout, svcrack does not find the password, the
  cracking source is locked out, and the operator at its usual address is
  not;
* TCP connection exhaustion from one address: the trunk's TCP connection is
  still accepted and answered.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from callcenter112.bench.sip import INVITE_XML
from callcenter112.sip.admission import REFUSALS_PER_S, TCP_PER_ADDRESS, SourceClass
from harness import (
    Server,
    free_port,
    need,
    run_sipp,
    sipp_command,
    sipp_logs,
    wait_until,
)

pytestmark = pytest.mark.peers

TRUNK_IP = "127.0.0.2"
OPERATOR_IP = "127.0.0.3"
# Debian's SIPVicious 0.3 ignores its -b (bind address) option (svcrack.py
# never passes it on): its packets leave from 127.0.0.1, the attacker here.
ATTACKER_IP = "127.0.0.1"


class EdgeServer(Server):
    """The harness's server with one trunk address instead of all of 127/8."""

    def write_config(self) -> None:
        super().write_config()
        text = self.config_path.read_text()
        assert 'allow = ["127.0.0.0/8"]' in text
        self.config_path.write_text(
            text.replace('allow = ["127.0.0.0/8"]', f'allow = ["{TRUNK_IP}/32"]')
        )


@pytest.fixture
def server(tmp_path: Path) -> Iterator[EdgeServer]:
    s = EdgeServer(tmp_path / "server")
    s.start()
    try:
        yield s
    finally:
        try:
            s.stop()
        finally:
            s.kill()
    assert "Traceback" not in s.output()


def trunk_calls(
    server: Server, directory: Path, *, calls: int, rate: int
) -> tuple[Path, list[str]]:
    """SIPp from the trunk: INVITE 112, 200, ACK, BYE; returns its directory."""
    directory.mkdir(parents=True, exist_ok=True)
    scenario = directory / "trunk.xml"
    scenario.write_text(INVITE_XML)
    cmd = sipp_command(
        server.sip_port,
        calls=calls,
        timeout_s=120,
        extra=["-sf", str(scenario), "-r", str(rate), "-trace_stat", "-stf", "stat.csv"],
    )
    cmd[cmd.index("-i") + 1] = TRUNK_IP
    return directory, cmd


def sipp_counts(directory: Path) -> tuple[int, int]:
    rows = (directory / "stat.csv").read_text().splitlines()
    header, last = rows[0].split(";"), rows[-1].split(";")
    row = dict(zip(header, last, strict=False))
    return int(row["SuccessfulCall(C)"]), int(row["FailedCall(C)"])


@pytest.mark.slow
def test_every_trunk_call_answered_during_a_flood(server: EdgeServer, tmp_path: Path) -> None:
    need("sipp")
    flood_seconds = 10.0
    flooder = subprocess.Popen(
        [
            *(sys.executable, "-m", "callcenter112.bench.edge", "--flood", str(server.sip_port)),
            *("--flood-rate", "10000", "--flood-seconds", str(flood_seconds)),
            *("--addresses", "400"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(1.0)
        directory, cmd = trunk_calls(server, tmp_path / "trunk", calls=30, rate=5)
        result = run_sipp(cmd, directory, timeout=150)
        out, _ = flooder.communicate(timeout=60)
    finally:
        if flooder.poll() is None:
            flooder.kill()
            flooder.wait()
    sent = json.loads(out.strip().splitlines()[-1])
    assert sent["sent"] >= 50_000, sent  # the flood really ran
    ok, failed = sipp_counts(directory)
    assert (ok, failed) == (30, 0), f"{result.stdout[-1500:]}\n{sipp_logs(directory)}"
    # The flood got stateless 403s within the global budget, never calls.
    refused = server.events("invite_forbidden")
    assert refused and all(e.get("stateless") for e in refused)
    assert len(refused) <= REFUSALS_PER_S * (sent["seconds"] + 2)
    assert not server.sql("SELECT id FROM incidents WHERE caller LIKE '0812000%'")
    incidents = server.sql("SELECT COUNT(*) FROM incidents")[0][0]
    assert incidents == 30


def register(server: Server, directory: Path, password: str, port: int) -> int:
    """op1 registers from its usual address with SIPp; SIPp's exit code."""
    directory.mkdir(parents=True, exist_ok=True)
    cmd = sipp_command(
        server.sip_port,
        scenario="register_digest.xml",
        service="op1",
        local_port=port,
        timeout_s=20,
        extra=["-ap", password, "-cid_str", f"reg-{time.monotonic_ns()}-%u"],
    )
    cmd[cmd.index("-i") + 1] = OPERATOR_IP
    return run_sipp(cmd, directory, timeout=60).returncode


def sipvicious(tool: str, *args: str, seconds: float = 60) -> str:
    """Run a SIPVicious tool for at most `seconds`; what it printed. (svcrack
    retries for ever once every answer is the lockout's 403, so it is
    stopped by time.)"""
    need(tool)
    try:
        done = subprocess.run(
            [tool, *args],
            capture_output=True,
            text=True,
            timeout=seconds,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout or b""
        err = exc.stderr or b""
        text = out.decode() if isinstance(out, bytes) else out
        return text + (err.decode() if isinstance(err, bytes) else err)
    return done.stdout + done.stderr


def test_sipvicious_finds_no_password_and_locks_out_nobody_but_itself(
    server: EdgeServer, tmp_path: Path
) -> None:
    need("sipp")
    op_port = free_port()
    assert register(server, tmp_path / "reg-1", "secret1", op_port) == 0
    svmap = sipvicious("svmap", "-p", str(server.sip_port), "127.0.0.1")
    assert "callcenter112" in svmap, svmap  # it was answered
    words = tmp_path / "words.txt"
    words.write_text("".join(f"guess{i}\n" for i in range(60)) + "password\n123456\n")
    users = tmp_path / "users.txt"
    users.write_text("op1\nop2\n100\n101\nadmin\nsupervisor\n")
    svwar = sipvicious(
        "svwar", "-d", str(users), "-m", "REGISTER", "-p",
        str(server.sip_port), "127.0.0.1",
    )  # fmt: skip
    # No user name is told apart: every one gets the same challenge.
    assert "found nothing" in svwar or "|" in svwar, svwar  # it ran and reported
    assert not [line for line in svwar.splitlines() if "|" in line and "op1" in line], svwar
    svcrack = sipvicious(
        "svcrack", "-u", "op1", "-d", str(words), "-p",
        str(server.sip_port), "--maximumtime", "10", "127.0.0.1", seconds=25,
    )  # fmt: skip
    found = svcrack
    assert "secret1" not in found
    assert "| op1" not in found or "Password" not in found.split("| op1", 1)[1][:40]
    # The guesser is locked out, the operator at its usual address is not.
    lockouts = server.events("auth_lockout")
    assert any(e.get("source") == ATTACKER_IP for e in lockouts), found[-2000:]
    assert not any(e.get("source") == OPERATOR_IP for e in lockouts)
    assert register(server, tmp_path / "reg-2", "secret1", op_port) == 0
    # Spoofing the operator's user from yet another address changes nothing.
    assert register(server, tmp_path / "reg-3", "secret1", op_port) == 0
    # The trunk still places a call.
    directory, cmd = trunk_calls(server, tmp_path / "trunk", calls=1, rate=1)
    result = run_sipp(cmd, directory, timeout=60)
    assert sipp_counts(directory) == (1, 0), result.stdout[-1500:]


def test_tcp_exhaustion_from_one_address_leaves_the_trunk_accepted(
    server: EdgeServer,
) -> None:
    held: list[socket.socket] = []
    try:
        for _ in range(200):
            s = socket.socket()
            s.bind(("127.0.30.1", 0))
            s.settimeout(2.0)
            s.connect(("127.0.0.1", server.sip_port))
            held.append(s)

        # The server closes all but its per-address cap.
        def closed() -> int:
            n = 0
            for s in held:
                s.setblocking(False)
                try:
                    if s.recv(1) == b"":
                        n += 1
                except BlockingIOError:
                    pass
                except OSError:
                    n += 1
            return n

        cap = TCP_PER_ADDRESS[SourceClass.ANONYMOUS]
        wait_until(lambda: closed() >= 200 - cap, 10, what="connections past the cap closed")
        trunk = socket.create_connection(
            ("127.0.0.1", server.sip_port), timeout=5, source_address=(TRUNK_IP, 0)
        )
        port = trunk.getsockname()[1]
        trunk.sendall(
            (
                f"OPTIONS sip:112@127.0.0.1 SIP/2.0\r\n"
                f"Via: SIP/2.0/TCP {TRUNK_IP}:{port};branch=z9hG4bK-tcp-1\r\n"
                f"From: <sip:carrier@{TRUNK_IP}>;tag=c1\r\nTo: <sip:112@127.0.0.1>\r\n"
                f"Call-ID: tcp-exhaust-1\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n"
                f"Content-Length: 0\r\n\r\n"
            ).encode()
        )
        answer = trunk.recv(4096)
        assert answer.startswith(b"SIP/2.0 200 "), answer
        trunk.close()
    finally:
        for s in held:
            s.close()
