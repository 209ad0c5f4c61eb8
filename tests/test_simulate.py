"""`callcenter112 simulate` and its simulated phones, against the real server.

Peers-free: the callers and operators are our own stack (`simclient`), the
server is the real one as a child process on free loopback ports. Also the
pieces that need no server: the caller plan, the shared RTP bank on real
sockets (RFC 4733 digits out, the operator's voice recognised in), and the
command's refusals.
"""

from __future__ import annotations

import asyncio
import json
import random
import socket
import subprocess
from pathlib import Path

from callcenter112.media.g711 import Codec, transcode
from callcenter112.offer_answer import accept_answer, answer_offer, make_offer
from callcenter112.rtp.dtmf import DtmfReceiver
from callcenter112.rtp.packet import parse_header
from callcenter112.sdp import SessionDescription
from callcenter112.simclient import (
    CallRecord,
    IncidentView,
    Outcome,
    format_summary,
    plan_callers,
    summarize,
)
from callcenter112.simclient.agent import SipAgent
from callcenter112.simclient.caller import SimulatedCaller
from callcenter112.simclient.media import (
    CALLER_VOICE,
    OPERATOR_VOICE,
    RtpBank,
    heard_as,
    voice_frame,
)
from callcenter112.sip.events import AckReceived, CancelReceived, RequestReceived, TransactionEvent
from callcenter112.sip.message import Response
from callcenter112.sip.peer import Peer
from harness import PYTHON, Operator, Server, running_server

FAST = "menu_tries = 1\ninput_timeout_s = 1\n[queue]\nring_timeout_s = 4\nwrapup_s = 1\n"
MENU = {"1": "medical", "2": "fire", "3": "disaster", "4": "police"}


def simulate(server: Server, *args: str, timeout: float = 150) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-m", "callcenter112", "simulate", "--config", str(server.config_path), *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_three_callers_two_operators_end_to_end(tmp_path: Path) -> None:
    operators = [Operator("op1", "secret1"), Operator("op2", "secret2")]
    with running_server(tmp_path, operators=operators, extra=FAST) as server:
        report = tmp_path / "simulate.json"
        result = simulate(
            server,
            *("--callers", "3", "--operators", "2", "--talk-s", "1", "--digits", "123"),
            *("--rate", "2", "--seed", "7", "--json", str(report)),
        )
        assert result.returncode == 0, result.stdout + result.stderr + server.output()[-4000:]
        assert "outcomes     answered 3" in result.stdout
        assert "as pressed   3/3" in result.stdout
        calls = json.loads(report.read_text())["calls"]
        incidents = {inc["caller"]: inc for inc in server.incidents()}
        assert len(incidents) == 3
        for call in calls:
            incident = incidents[call["number"]]
            assert incident["status"] == "completed", incident
            assert incident["operator"] in ("op1", "op2")
            assert incident["operator"] == call["operator"]
            assert incident["operator_answered_at"] is not None
            assert incident["category"] == MENU[call["digit"]]
            assert incident["id"] == call["incident_id"]  # the X-Incident-ID the operator saw
            assert call["answer_time_s"] > 0

        # One impatient caller who hangs up while the operator's phone still rings:
        # abandoned, with a callback task; still exit 0 (the script asked for it).
        result = simulate(
            server,
            *("--callers", "1", "--operators", "1", "--digits", "4", "--abandon", "1"),
            *("--patience-s", "1.5", "--ring-s", "5", "--digit-after-s", "0.3"),
        )
        assert result.returncode == 0, result.stdout + result.stderr + server.output()[-4000:]
        assert "outcomes     abandoned 1" in result.stdout
        assert "abandoned    1 (callback tasks: 1)" in result.stdout
        abandoned = [i for i in server.incidents() if i["status"] == "abandoned"]
        assert len(abandoned) == 1 and abandoned[0]["category"] == "police"


def test_refuses_more_operators_than_configured_and_remote_servers(tmp_path: Path) -> None:
    server = Server(tmp_path, operators=[Operator("op1", "secret1")])
    server.write_config()  # not started: these are refused before any packet is sent
    result = simulate(server, "--operators", "2", timeout=60)
    assert result.returncode == 2
    assert "op1..op2" in result.stderr and "no op2" in result.stderr
    result = simulate(server, "--operators", "1", "--server", "192.0.2.7:5060", timeout=60)
    assert result.returncode == 2
    assert "loopback" in result.stderr


def test_plan_cycles_given_digits_and_marks_silent_callers() -> None:
    scripts = plan_callers(
        callers=5,
        rate_per_s=2.0,
        menu=MENU,
        talk_s=3.0,
        digits="2_9",
        abandon_ratio=1.0,
        patience_s=(4.0, 4.0),
        rng=random.Random(1),
    )
    assert [s.digit for s in scripts] == ["2", None, "9", "2", None]
    expected = ["fire", "unknown", "unknown", "fire", "unknown"]
    assert [s.expected_category for s in scripts] == expected
    assert [s.starts_after_s for s in scripts] == [0.0, 0.5, 1.0, 1.5, 2.0]
    assert all(s.patience_s == 4.0 for s in scripts)
    assert len({s.number for s in scripts}) == 5


async def test_rtp_bank_sends_rfc4733_digits_and_voice_and_hears_the_operator() -> None:
    """One leg of the shared bank against a plain UDP socket standing in for the server."""
    bank = RtpBank()
    await bank.open()
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 0))
    server.setblocking(False)
    loop = asyncio.get_running_loop()
    try:
        server_port = server.getsockname()[1]
        leg = bank.leg("caller")
        offer = make_offer(
            local_address="127.0.0.1", local_port=bank.port, session_id=1, session_version=1
        )
        answer = answer_offer(
            offer,
            local_address="127.0.0.1",
            local_port=server_port,
            session_id=2,
            session_version=1,
        )
        assert answer.answer is not None
        leg.connect(accept_answer(offer, answer.answer))
        assert leg.codec is Codec.PCMA and leg.dtmf_pt == 101

        assert leg.press("7")
        receiver = DtmfReceiver()
        digits = []
        for _ in range(40):  # a digit is ~10 packets; bounded
            data, source = await asyncio.wait_for(loop.sock_recvfrom(server, 2048), 10)
            assert source == ("127.0.0.1", bank.port)
            pt, marker, _, ts, ssrc, start, end = parse_header(data)
            assert pt == 101
            event = receiver.receive(data[start:end], ssrc=ssrc, timestamp=ts, marker=marker, now=0)
            if event is not None:
                digits.append(event.digit)
            if data[start + 1] & 0x80:  # the end bit (RFC 4733 §2.3.3)
                break
        assert digits == ["7"]

        leg.speak(voice_frame(CALLER_VOICE, leg.codec))
        for _ in range(200):  # past any trailing end-of-event packets; bounded
            data, _ = await asyncio.wait_for(loop.sock_recvfrom(server, 2048), 10)
            pt, _, _, _, _, start, end = parse_header(data)
            if pt == Codec.PCMA.payload_type:
                break
        assert data[start:end] == voice_frame(CALLER_VOICE, Codec.PCMA)
        leg.speak(None)

        heard = asyncio.Event()
        leg.listen_for(heard_as(OPERATOR_VOICE), heard.set)
        header = bytes([0x80, 8, 0, 1, 0, 0, 0, 160, 1, 2, 3, 4])
        # A prompt frame is not the operator; from an unknown port it is not even ours.
        stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        stranger.bind(("127.0.0.1", 0))
        try:
            stranger.sendto(
                header + voice_frame(OPERATOR_VOICE, Codec.PCMA), ("127.0.0.1", bank.port)
            )
        finally:
            stranger.close()
        server.sendto(header + bytes([0xD5]) * 160, ("127.0.0.1", bank.port))
        # The operator's voice, sent as µ-law and transcoded by the centre to A-law.
        frame = transcode(Codec.PCMU, Codec.PCMA, voice_frame(OPERATOR_VOICE, Codec.PCMU))
        server.sendto(header + frame, ("127.0.0.1", bank.port))
        await asyncio.wait_for(heard.wait(), 10)
        assert leg.received == 2
        assert bank.unmatched == 1
        leg.close()
        assert bank.legs == 0
    finally:
        server.close()
        bank.close()


def test_summary_flags_every_disagreement_with_the_store() -> None:
    scripts = plan_callers(
        callers=3, rate_per_s=1.0, menu=MENU, talk_s=1.0, digits="12_", rng=random.Random(2)
    )
    records = [CallRecord(script=s, call_id=f"c{s.index}") for s in scripts]
    outcomes = (Outcome.ANSWERED, Outcome.ABANDONED, Outcome.ANSWERED)
    for r, outcome in zip(records, outcomes, strict=True):
        r.invite_sent, r.connected = 10.0, 10.1
        if outcome is Outcome.ANSWERED:
            r.operator_heard = 12.5
        r.finish(outcome, "scripted", 20.0)

    def incident(i: int, status: str, category: str, *, callback: bool = False) -> IncidentView:
        answered = 1002.0 if status == "completed" else None
        return IncidentView(
            id=f"20261128-{i:04d}",
            call_id=f"c{i}",
            status=status,
            category=category,
            operator="op1" if answered else None,
            arrived_at=1000.0,
            ivr_done_at=1001.0,
            queued_at=1001.0,
            offered_at=1001.5 if answered else None,
            operator_answered_at=answered,
            ended_at=1010.0,
            sla_s=None if answered is None else answered - 1000.0,
            callback=callback,
        )

    agreeing = {
        "c0": incident(0, "completed", "medical"),
        "c1": incident(1, "abandoned", "fire", callback=True),
        "c2": incident(2, "completed", "unknown"),
    }
    summary = summarize(records, agreeing)
    assert summary.ok, summary.problems
    assert summary.categories_as_pressed == summary.categories_checked == 3
    assert summary.callbacks == 1 and summary.system_drops == 0
    assert summary.sla_s.p50 == 2.0 and summary.answer_time_s.n == 2
    assert summary.answer_time_s.max == 2.5

    disagreeing = {
        "c0": incident(0, "abandoned", "medical"),  # answered at the caller
        "c1": incident(1, "abandoned", "police"),  # no callback, wrong category
    }  # c2: no incident at all
    summary = summarize(records, disagreeing)
    assert not summary.ok
    text = "\n".join(summary.problems)
    assert "answered at the caller, but the incident is abandoned" in text
    assert "abandoned without a callback task" in text
    assert "pressed 2, expected fire" in text
    assert "no incident for Call-ID c2" in text
    assert "FAILED" in format_summary(summary)


async def test_caller_ends_a_200_that_crossed_its_cancel() -> None:
    """RFC 3261 §9.1/§15: a caller that gave up (CANCEL) and then gets a 200 anyway ACKs
    it and sends BYE, so the centre is not left holding a call nobody is on."""
    bank = RtpBank()
    await bank.open()
    seen: list[str] = []
    ended = asyncio.Event()
    centre: SipAgent

    def on_invite(event: RequestReceived) -> None:
        invite = event.request
        seen.append("INVITE")

        def call_events(ev: TransactionEvent) -> None:
            if isinstance(ev, CancelReceived):
                seen.append("CANCEL")
                offer = SessionDescription.parse(invite.body)
                n = answer_offer(
                    offer,
                    local_address="127.0.0.1",
                    local_port=40000,
                    session_id=3,
                    session_version=1,
                )
                assert n.answer is not None
                ok = Response.for_request(
                    invite,
                    200,
                    to_tag=ev.to_tag,
                    headers=[
                        ("Contact", centre.contact("112")),
                        ("Content-Type", "application/sdp"),
                    ],
                    body=n.answer.serialize(),
                )
                centre.respond(event.server_key, ok)  # crosses the CANCEL
            elif isinstance(ev, AckReceived):
                seen.append("ACK")
            elif isinstance(ev, RequestReceived) and ev.request.method == "BYE":
                seen.append("BYE")
                centre.respond(ev.server_key, Response.for_request(ev.request, 200))
                ended.set()

        centre.attach(invite.call_id, call_events)

    centre = SipAgent(on_request=on_invite)
    trunk = SipAgent()
    await centre.start()
    await trunk.start()
    try:
        (script,) = plan_callers(
            callers=1, rate_per_s=1.0, menu=MENU, talk_s=1.0, digits="1", rng=random.Random(3)
        )
        caller = SimulatedCaller(
            CallRecord(script=script),
            agent=trunk,
            bank=bank,
            server=Peer("udp", "127.0.0.1", centre.port),
            invite_guard_s=0.3,
        )
        record = await caller.run()
        assert record.outcome is Outcome.UNANSWERED
        await asyncio.wait_for(ended.wait(), 20)
        assert seen == ["INVITE", "CANCEL", "ACK", "BYE"]
    finally:
        await trunk.close()
        await centre.close()
        bank.close()
