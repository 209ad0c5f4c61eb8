"""Issue 2 against the running server: real SIP peers on loopback.

The SIP core's promises, checked with the peers a 112 centre meets: SIPp as
the carrier's trunk and as a scripted phone (scenarios in tests/sipp/),
baresip as an operator's softphone, pyVoIP as a buggy phone.

* OPTIONS → 200 with Allow / Accept / Supported, over UDP and TCP;
* REGISTER with a digest challenge → 200, the binding shows up as a
  `presence` event, and un-registering removes it;
* a wrong password N times → the source is locked out (403) while another
  source, and another user at a trusted source, are unaffected;
* a retransmitted INVITE is absorbed: one call, one incident;
* baresip registers with digest, re-registers, and de-registers on exit;
  pyVoIP registers and de-registers;
* a registered softphone that stops answering OPTIONS is marked unreachable
  (and reachable again when it answers);
* INVITE from a non-trunk address → 403, unknown number → 404, above
  `max_calls` → 503 with Retry-After. Only the call refused for capacity leaves an incident
  (interrupted, with a callback task): it was a real emergency call.

Servers are started once per group of tests that share a configuration.
Every wait is a bounded `wait_until` on the server's log or database; nothing
asserts on elapsed time.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness import (
    SCENARIOS,
    Baresip,
    Operator,
    Server,
    caller_scenario,
    free_port,
    free_range,
    need,
    run_sipp,
    sipp_command,
    sipp_logs,
    start_sipp_in,
    wait_until,
)

pytestmark = pytest.mark.peers

OPERATORS = [
    Operator("op1", "secret1"),
    Operator("op2", "secret2"),
    Operator("op3", "secret3"),
]
# The registration server: small lockout limit so that the lockout test is
# short; a long lockout so that it cannot end during the test.
AUTH_FAIL_LIMIT = 3
REGISTRATION_SIP = f"auth_fail_limit = {AUTH_FAIL_LIMIT}\nauth_lockout_s = 600\n"
# Re-registration fast enough for a test: 10 s is the smallest registration
# interval the configuration accepts. Qualify stays at its default there, so
# that a busy machine cannot make the phone look unreachable meanwhile.
REREGISTER_SIP = "min_expires_s = 10\n"
REGINT_S = 10
# The presence server: qualify every second (timeout 1 s, 2 misses).
# T1 of 100 ms: an unanswered qualify times out at 64*T1 = 6.4 s instead of 32 s.
PRESENCE_SIP = "qualify_every_s = 1\ntimer_t1_ms = 100\n"
# The refusal server: only 127.0.0.2 is a trunk, and one call fills it.
TRUNK_IP = "127.0.0.2"
RETRY_AFTER_S = 17
REFUSAL_SIP = f"max_calls = 1\nretry_after_s = {RETRY_AFTER_S}\n"
SHORT_IVR = "menu_tries = 1\ninput_timeout_s = 1\n[queue]\nring_timeout_s = 4\n"


# --------------------------------------------------------------------------- helpers


class TrunkServer(Server):
    """A server whose single trunk allows only `trunk_allow`."""

    trunk_allow: str = "127.0.0.0/8"

    def write_config(self) -> None:
        super().write_config()
        text = self.config_path.read_text()
        assert 'allow = ["127.0.0.0/8"]' in text
        self.config_path.write_text(
            text.replace('allow = ["127.0.0.0/8"]', f'allow = ["{self.trunk_allow}"]')
        )


def _serve(directory: Path, server: Server) -> Iterator[Server]:
    need("sipp")
    directory.mkdir(parents=True, exist_ok=True)
    server.start()
    try:
        yield server
    finally:
        try:
            server.stop()
        finally:
            server.kill()
        # The server must never have stumbled, whatever the peers sent.
        output = server.output()
        assert "Traceback" not in output, output[-4000:]
        assert "message_handler_failed" not in output, output[-4000:]


@pytest.fixture(scope="module")
def registration_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    directory = tmp_path_factory.mktemp("sip-registration")
    server = Server(directory, operators=OPERATORS, sip_extra=REGISTRATION_SIP, extra=SHORT_IVR)
    yield from _serve(directory, server)


@pytest.fixture(scope="module")
def reregister_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    directory = tmp_path_factory.mktemp("sip-reregister")
    server = Server(directory, operators=OPERATORS, sip_extra=REREGISTER_SIP, extra=SHORT_IVR)
    yield from _serve(directory, server)


@pytest.fixture(scope="module")
def presence_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    directory = tmp_path_factory.mktemp("sip-presence")
    server = Server(directory, operators=OPERATORS, sip_extra=PRESENCE_SIP, extra=SHORT_IVR)
    yield from _serve(directory, server)


@pytest.fixture(scope="module")
def refusal_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    directory = tmp_path_factory.mktemp("sip-refusal")
    server = TrunkServer(directory, sip_extra=REFUSAL_SIP, extra=SHORT_IVR)
    server.trunk_allow = f"{TRUNK_IP}/32"
    yield from _serve(directory, server)


def sipp(
    server: Server,
    directory: Path,
    scenario: str | Path,
    *,
    call_id: str,
    service: str = "112",
    ip: str = "127.0.0.1",
    transport: str = "u1",
    extra: list[str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run one SIPp call in its own directory; its Call-ID is `call_id`."""
    directory.mkdir(parents=True, exist_ok=True)
    cmd = sipp_command(
        server.sip_port,
        scenario=str(scenario),
        service=service,
        timeout_s=40,
        extra=["-t", transport, "-cid_str", call_id, *(extra or [])],
    )
    cmd[cmd.index("-i") + 1] = ip
    result = run_sipp(cmd, directory)
    result.stdout = f"{result.stdout[-1500:]}\n{sipp_logs(directory)}"
    return result


def trace(server: Server, call_id: str) -> list[tuple[str, str, str]]:
    """(sip_in|sip_out, first line, whole message) of every message of a Call-ID."""
    return [
        (e["event"], e["first_line"], e.get("message") or "")
        for e in server.events()
        if e.get("event") in ("sip_in", "sip_out") and e.get("sip_call_id") == call_id
    ]


def statuses(server: Server, call_id: str, method: str) -> list[int]:
    """Status codes the server sent for requests `method` of a Call-ID, in order."""
    out = []
    for direction, first, message in trace(server, call_id):
        if direction == "sip_out" and first.startswith("SIP/2.0 "):
            cseq = re.search(r"^CSeq:\s*\d+\s+(\S+)", message, re.M | re.I)
            if cseq and cseq.group(1) == method:
                out.append(int(first.split()[1]))
    return out


def requests_in(server: Server, call_id: str, method: str) -> list[str]:
    return [
        message
        for direction, first, message in trace(server, call_id)
        if direction == "sip_in" and first.startswith(method + " ")
    ]


def header(message: str, name: str) -> str | None:
    found = re.search(rf"^{re.escape(name)}:\s*(.*?)\s*$", message, re.M | re.I)
    return found.group(1) if found else None


def presence(server: Server, user: str, kind: str | None = None) -> list[dict[str, Any]]:
    return [
        e
        for e in server.events("presence")
        if e.get("user") == user and (kind is None or e.get("kind") == kind)
    ]


def render_refused(directory: Path, status: int, *, retry_after: bool = False) -> Path:
    """tests/sipp/invite_refused.xml.in expecting `status`."""
    checks, variables = "", ""
    if retry_after:
        checks = (
            '      <ereg regexp="^ *[0-9]+ *$" search_in="hdr" header="Retry-After:"'
            ' check_it="true" assign_to="retry"/>'
        )
        variables = ",retry"
    text = (
        (SCENARIOS / "invite_refused.xml.in")
        .read_text()
        .replace("@STATUS@", str(status))
        .replace("@CHECKS@", checks)
        .replace("@VARIABLES@", variables)
    )
    path = directory / f"invite_refused_{status}.xml"
    directory.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def softphone(
    directory: Path, server: Server, user: str, password: str, *, regint: int = 60
) -> Baresip:
    """baresip registering every `regint` seconds (the harness asks for 60)."""
    need("baresip")
    phone = Baresip(directory, user=user, password=password, server_port=server.sip_port)
    accounts = directory / "accounts"
    text = accounts.read_text()
    assert ";regint=60" in text
    accounts.write_text(text.replace(";regint=60", f";regint={regint}"))
    return phone


def register_200s(server: Server, port: int) -> list[dict[str, Any]]:
    """The server's 200 OK answers to REGISTERs from a phone's SIP port."""
    return [
        e
        for e in server.events("sip_out")
        if e["first_line"].startswith("SIP/2.0 200")
        and e.get("peer", "").endswith(f":{port}")
        and re.search(r"^CSeq:\s*\d+\s+REGISTER", e.get("message") or "", re.M)
    ]


# --------------------------------------------------------------------------- OPTIONS


@pytest.mark.parametrize("transport", ["u1", "t1"])
def test_options_answered_with_capabilities(
    registration_server: Server, tmp_path: Path, transport: str
) -> None:
    call_id = f"options-{transport}-%u"
    result = sipp(
        registration_server, tmp_path, "options.xml", call_id=call_id, transport=transport
    )
    assert result.returncode == 0, result.stdout
    # The server's side of the same exchange: one OPTIONS in, one 200 out.
    cid = call_id.replace("%u", "1")
    assert [d for d, _, _ in trace(registration_server, cid)] == ["sip_in", "sip_out"]
    assert statuses(registration_server, cid, "OPTIONS") == [200]
    peer = next(e["peer"] for e in registration_server.events("sip_in") if e["sip_call_id"] == cid)
    assert peer.startswith("tcp:" if transport == "t1" else "udp:")


# --------------------------------------------------------------------------- REGISTER


@pytest.mark.parametrize("transport", ["u1", "t1"])
def test_register_with_digest_then_unregister(
    registration_server: Server, tmp_path: Path, transport: str
) -> None:
    server = registration_server
    port = free_port()
    call_id = f"register-{transport}-%u"
    result = sipp(
        server,
        tmp_path,
        "register_digest.xml",
        call_id=call_id,
        service="op1",
        transport=transport,
        extra=["-ap", "secret1", "-p", str(port)],
    )
    assert result.returncode == 0, result.stdout
    cid = call_id.replace("%u", "1")
    # Challenge, accept, challenge, accept (§22.2: every request is challenged).
    assert statuses(server, cid, "REGISTER") == [401, 200, 401, 200]
    contact = f"sip:op1@127.0.0.1:{port}"
    bound = wait_until(
        # Both events: the second is logged just after the 200 SIPp exits on.
        lambda: (
            [e for e in presence(server, "op1") if e.get("contact") == contact][1:]
            and [e for e in presence(server, "op1") if e.get("contact") == contact]
        ),
        10,
        what="presence events for the SIPp binding",
    )
    assert [e["kind"] for e in bound][:2] == ["OperatorRegistered", "OperatorUnregistered"]
    assert bound[1]["reason"] == "removed"
    # The digest realm and the granted expiry are on the wire.
    messages = [m for d, _, m in trace(server, cid) if d == "sip_out"]
    challenge = header(messages[0], "WWW-Authenticate") or ""
    assert challenge.startswith("Digest ") and 'realm="callcenter112"' in challenge
    assert "qop=" in challenge and "nonce=" in challenge
    assert re.search(r";expires=120\b", header(messages[1], "Contact") or "")


def test_wrong_password_locks_out_that_source_only(
    registration_server: Server, tmp_path: Path
) -> None:
    server = registration_server
    # A scanner at 127.0.0.3 (never authenticated: the whole address is locked).
    result = sipp(
        server,
        tmp_path / "scanner",
        "register_lockout.xml",
        call_id="wrong-%u",
        service="op1",
        ip="127.0.0.3",
        extra=["-ap", "wrong-password"],
    )
    assert result.returncode == 0, result.stdout  # the scenario succeeds on its 403
    answers = statuses(server, "wrong-1", "REGISTER")
    with_credentials = [
        m for m in requests_in(server, "wrong-1", "REGISTER") if "Authorization:" in m
    ]
    # Exactly `auth_fail_limit` wrong answers, then the lockout.
    assert len(with_credentials) == AUTH_FAIL_LIMIT, answers
    # Each round: challenged without credentials, refused with the wrong ones.
    assert answers == [401] * (2 * AUTH_FAIL_LIMIT) + [403], answers
    lockouts = [e for e in server.events("auth_lockout") if e.get("source") == "127.0.0.3"]
    assert len(lockouts) == 1 and lockouts[0]["failures"] == AUTH_FAIL_LIMIT

    # The right password does not help the locked address: refused at once.
    result = sipp(
        server,
        tmp_path / "scanner-again",
        "register_lockout.xml",
        call_id="locked-%u",
        service="op1",
        ip="127.0.0.3",
        extra=["-ap", "secret1"],
    )
    assert result.returncode == 0, result.stdout
    assert statuses(server, "locked-1", "REGISTER") == [403]

    # Another source registers normally meanwhile.
    result = sipp(
        server,
        tmp_path / "other-source",
        "register_digest.xml",
        call_id="other-source-%u",
        service="op1",
        ip="127.0.0.4",
        extra=["-ap", "secret1"],
    )
    assert result.returncode == 0, result.stdout
    assert statuses(server, "other-source-1", "REGISTER") == [401, 200, 401, 200]


def test_wrong_password_at_a_trusted_source_locks_out_that_user_only(
    registration_server: Server, tmp_path: Path
) -> None:
    """Operators behind one NAT: a phone with a stale password must not take
    its colleagues offline (sip/ratelimit.py, "NAT")."""
    server = registration_server
    nat = "127.0.0.5"
    result = sipp(
        server,
        tmp_path / "op2-ok",
        "register_digest.xml",
        call_id="nat-op2-%u",
        service="op2",
        ip=nat,
        extra=["-ap", "secret2"],
    )
    assert result.returncode == 0, result.stdout
    result = sipp(
        server,
        tmp_path / "op3-wrong",
        "register_lockout.xml",
        call_id="nat-op3-%u",
        service="op3",
        ip=nat,
        extra=["-ap", "stale-password"],
    )
    assert result.returncode == 0, result.stdout
    assert statuses(server, "nat-op3-1", "REGISTER")[-1] == 403
    lockout = next(e for e in server.events("auth_lockout") if e.get("source") == nat)
    assert lockout["user"] == "op3"
    # op2 behind the same address still registers.
    result = sipp(
        server,
        tmp_path / "op2-again",
        "register_digest.xml",
        call_id="nat-op2-again-%u",
        service="op2",
        ip=nat,
        extra=["-ap", "secret2"],
    )
    assert result.returncode == 0, result.stdout
    assert statuses(server, "nat-op2-again-1", "REGISTER") == [401, 200, 401, 200]


# --------------------------------------------------------------------------- INVITE retransmission


def test_retransmitted_invite_is_one_call(registration_server: Server, tmp_path: Path) -> None:
    server = registration_server
    result = sipp(
        server,
        tmp_path,
        SCENARIOS / "invite_retransmit.xml",
        call_id="retrans-%u",
        extra=["-nr"],  # see the scenario: SIPp would ping-pong the 100 otherwise
    )
    assert result.returncode == 0, result.stdout
    cid = "retrans-1"
    wait_until(
        lambda: any(e.get("call_id") == cid for e in server.events("call_ended")),
        20,
        what="the call to end",
    )
    invites = requests_in(server, cid, "INVITE")
    assert len(invites) == 2 and invites[0] == invites[1]  # byte for byte
    answers = statuses(server, cid, "INVITE")
    # The first INVITE got 100 then 200; the retransmission got the last
    # response again (100 in Proceeding, 200 in Accepted), and 2xx
    # retransmissions before the ACK are 200s too. Never a second call.
    assert answers[0] == 100 and 200 in answers, answers
    assert set(answers) <= {100, 200} and answers.count(100) <= 2, answers
    assert answers.count(100) + answers.count(200) >= 3, answers
    oks = [
        m
        for d, first, m in trace(server, cid)
        if d == "sip_out"
        and first.startswith("SIP/2.0 200")
        and "INVITE" in (header(m, "CSeq") or "")
    ]
    assert len({header(m, "To") for m in oks}) == 1  # one dialog
    assert len({m.split("\r\n\r\n", 1)[1] for m in oks}) == 1  # one answer SDP
    assert statuses(server, cid, "BYE") == [200]
    # One incident for that caller, and exactly one call ran.
    rows = server.sql("SELECT id FROM incidents WHERE caller = ?", "081200000001")
    assert len(rows) == 1, rows
    assert [e["call_id"] for e in server.events("call_ended")].count(cid) == 1


# --------------------------------------------------------------------------- softphones


def test_baresip_registers_reregisters_and_unregisters_on_exit(
    reregister_server: Server, tmp_path: Path
) -> None:
    server = reregister_server
    phone = softphone(tmp_path / "op1", server, "op1", "secret1", regint=REGINT_S)
    phone.start()
    try:
        wait_until(lambda: presence(server, "op1", "OperatorRegistered"), 20, what="op1 registered")
        # Digest: the first REGISTER was challenged.
        first = [
            e for e in server.events("sip_out") if e.get("peer", "").endswith(f":{phone.sip_port}")
        ]
        assert first[0]["first_line"].startswith("SIP/2.0 401")
        granted = header(register_200s(server, phone.sip_port)[0]["message"], "Contact") or ""
        assert f";expires={REGINT_S}" in granted
        # baresip refreshes before the binding expires; the operator never drops.
        wait_until(
            lambda: len(register_200s(server, phone.sip_port)) >= 2,
            4 * REGINT_S,
            what="baresip to re-register",
        )
        assert not presence(server, "op1", "OperatorUnregistered")
    finally:
        phone.stop()  # SIGINT: baresip un-registers on the way out
    assert phone.proc is not None and phone.proc.returncode is not None
    gone = wait_until(
        lambda: presence(server, "op1", "OperatorUnregistered"), 20, what="op1 unregistered"
    )
    assert gone[0]["reason"] == "removed"  # a REGISTER with expires 0, not a timeout
    assert len(presence(server, "op1", "OperatorRegistered")) == 1


def test_unanswered_qualify_marks_softphone_unreachable(
    presence_server: Server, tmp_path: Path
) -> None:
    server = presence_server
    phone = softphone(tmp_path / "op2", server, "op2", "secret2")
    phone.start()
    try:
        wait_until(lambda: presence(server, "op2", "OperatorRegistered"), 20, what="op2 registered")
        port = f":{phone.sip_port}"

        def answered_pings() -> int:
            return sum(
                1
                for e in server.events("sip_in")
                if e.get("peer", "").endswith(port)
                and e["first_line"].startswith("SIP/2.0 200")
                and "OPTIONS" in (header(e.get("message") or "", "CSeq") or "")
            )

        wait_until(lambda: answered_pings() >= 1, 20, what="a qualify OPTIONS answered")
        assert phone.proc is not None

        # Under load a 1 s qualify may flap on its own: every check below
        # looks only at the events that follow the step it is about.
        def since(mark: int, kind: str, value: object) -> list[dict[str, Any]]:
            return [
                e
                for e in presence(server, "op2")[mark:]
                if e["kind"] == kind and e.get("reason", e.get("reachable")) == value
            ]

        # A frozen softphone (laptop lid closed): no more answers.
        mark = len(presence(server, "op2"))
        os.kill(phone.proc.pid, signal.SIGSTOP)
        try:
            wait_until(
                lambda: since(mark, "OperatorUnregistered", "unreachable"),
                30,
                what="op2 marked unreachable",
            )
            assert since(mark, "ContactReachabilityChanged", False)
            # Counted before the thaw: the phone answers its backlog of pings at once.
            mark = len(presence(server, "op2"))
            registers = len(register_200s(server, phone.sip_port))
        finally:
            os.kill(phone.proc.pid, signal.SIGCONT)
        # It answers again: back online without registering anew.
        wait_until(lambda: since(mark, "OperatorRegistered", None), 30, what="op2 reachable again")
        assert since(mark, "ContactReachabilityChanged", True)
        assert len(register_200s(server, phone.sip_port)) == registers

        # Killed outright: unreachable again.
        mark = len(presence(server, "op2"))
        phone.kill()
        wait_until(
            lambda: since(mark, "OperatorUnregistered", "unreachable"),
            30,
            what="op2 unreachable after kill -9",
        )
    finally:
        phone.stop()


def test_pyvoip_registers_and_unregisters(registration_server: Server) -> None:
    voip = pytest.importorskip("pyVoIP.VoIP")
    server = registration_server
    sip_port = free_port()
    rtp_low, rtp_high = free_range(4)
    phone = voip.VoIPPhone(
        "127.0.0.1",
        server.sip_port,
        "op3",
        "secret3",
        myIP="127.0.0.1",
        sipPort=sip_port,
        rtpPortLow=rtp_low,
        rtpPortHigh=rtp_high,
    )
    phone.start()  # registers synchronously (digest challenge included)
    try:
        wait_until(
            lambda: phone.get_status() == voip.PhoneStatus.REGISTERED,
            20,
            what="pyVoIP registered",
        )
        contact = f":{sip_port}"
        registered = wait_until(
            lambda: [
                e
                for e in presence(server, "op3", "OperatorRegistered")
                if e["contact"].endswith(contact) or contact + ";" in e["contact"]
            ],
            10,
            what="op3 presence",
        )
        assert registered
    finally:
        phone.stop()  # de-registers (Expires: 0 with credentials)
    wait_until(
        lambda: any(
            e["contact"].endswith(contact) or contact + ";" in e["contact"]
            for e in presence(server, "op3", "OperatorUnregistered")
        ),
        20,
        what="op3 unregistered",
    )


# --------------------------------------------------------------------------- refusals


def test_invite_from_unknown_source_is_forbidden(refusal_server: Server, tmp_path: Path) -> None:
    server = refusal_server
    result = sipp(server, tmp_path, render_refused(tmp_path, 403), call_id="stranger-%u")
    assert result.returncode == 0, result.stdout
    # Stateless (issue 11): no 100 Trying, no transaction held or retransmitted.
    assert statuses(server, "stranger-1", "INVITE") == [403]
    assert any(
        e.get("source", "").startswith("udp:127.0.0.1:") for e in server.events("invite_forbidden")
    )
    # the 403's ACK, absorbed
    wait_until(lambda: requests_in(server, "stranger-1", "ACK"), 10, what="the 403's ACK")
    assert not server.sql("SELECT id FROM incidents WHERE caller = ?", "081200000002")


def test_invite_for_unknown_number_is_not_found(refusal_server: Server, tmp_path: Path) -> None:
    server = refusal_server
    result = sipp(
        server,
        tmp_path,
        render_refused(tmp_path, 404),
        call_id="unknown-number-%u",
        service="999",
        ip=TRUNK_IP,
    )
    assert result.returncode == 0, result.stdout
    assert statuses(server, "unknown-number-1", "INVITE") == [100, 404]
    assert not server.sql("SELECT id FROM incidents WHERE caller = ?", "081200000002")


def test_invite_over_capacity_gets_503_with_retry_after(
    refusal_server: Server, tmp_path: Path
) -> None:
    server = refusal_server
    # One citizen fills the centre (max_calls = 1): on the line for a while.
    scenario = caller_scenario(
        tmp_path, caller="081200000003", pause_before_ms=5000, talk_ms=500, name="filler.xml"
    )
    cmd = sipp_command(
        server.sip_port,
        scenario=str(scenario),
        timeout_s=60,
        extra=["-cid_str", "filler-%u"],
    )
    cmd[cmd.index("-i") + 1] = TRUNK_IP
    filler = start_sipp_in(tmp_path / "filler", cmd, "filler")
    try:
        wait_until(lambda: 200 in statuses(server, "filler-1", "INVITE"), 30, what="the first call")
        result = sipp(
            server,
            tmp_path / "second",
            render_refused(tmp_path, 503, retry_after=True),
            call_id="overflow-%u",
            ip=TRUNK_IP,
        )
        assert result.returncode == 0, result.stdout
        assert filler.running(), "the first call must still be up"
    finally:
        rc = filler.wait(60)
    assert rc == 0, filler.logs()
    assert statuses(server, "overflow-1", "INVITE") == [100, 503]
    refusal = next(
        m
        for d, first, m in trace(server, "overflow-1")
        if d == "sip_out" and first.startswith("SIP/2.0 503")
    )
    assert header(refusal, "Retry-After") == str(RETRY_AFTER_S)
    refused = wait_until(
        lambda: server.sql("SELECT status FROM incidents WHERE call_id = ?", "overflow-1"),
        20,
        what="the refused call's incident",
    )
    assert refused == [("interrupted",)]
    assert len(server.sql("SELECT id FROM incidents WHERE caller = ?", "081200000003")) == 1


def test_capacity_frees_when_the_call_ends(refusal_server: Server, tmp_path: Path) -> None:
    """After the 503 test's call ended, the slot is free: the next call is taken."""
    server = refusal_server
    wait_until(
        lambda: any(e.get("call_id") == "filler-1" for e in server.events("call_ended")),
        30,
        what="the first call to end",
    )
    scenario = caller_scenario(
        tmp_path, caller="081200000004", pause_before_ms=300, talk_ms=300, name="next.xml"
    )
    result = sipp(server, tmp_path / "next", scenario, call_id="next-%u", ip=TRUNK_IP)
    assert result.returncode == 0, result.stdout
    assert statuses(server, "next-1", "INVITE")[-1] == 200


def test_register_burst_from_one_nat_is_answered(refusal_server: Server) -> None:
    """Operators' phones behind one NAT share a source address outside the
    trunks: a burst of REGISTERs within the per-source bucket
    (sip/ratelimit.py DEFAULT_BURST) is answered in full, each REGISTER
    taking one token, not one at the transport and another at the
    registrar."""
    server = refusal_server
    count = 150  # < DEFAULT_BURST (200), > DEFAULT_BURST / 2
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.7", 0))
        port = sock.getsockname()[1]
        for i in range(count):
            sock.sendto(
                (
                    f"REGISTER sip:127.0.0.1:{server.sip_port} SIP/2.0\r\n"
                    f"Via: SIP/2.0/UDP 127.0.0.7:{port};branch=z9hG4bK-nat-{i};rport\r\n"
                    "Max-Forwards: 70\r\n"
                    f"From: <sip:op1@127.0.0.1>;tag=nat{i}\r\nTo: <sip:op1@127.0.0.1>\r\n"
                    f"Call-ID: nat-{i}\r\nCSeq: 1 REGISTER\r\n"
                    f"Contact: <sip:op1@127.0.0.7:{port}>\r\nContent-Length: 0\r\n\r\n"
                ).encode(),
                ("127.0.0.1", server.sip_port),
            )
        answered: set[str] = set()
        sock.settimeout(5.0)
        with contextlib.suppress(TimeoutError):
            for _ in range(4 * count):  # bounded; retransmitted 401s come too
                data = sock.recv(65535).decode()
                assert data.startswith("SIP/2.0 401 "), data[:200]
                answered.add(header(data, "Call-ID") or "")
                if len(answered) == count:
                    break
    assert len(answered) == count
