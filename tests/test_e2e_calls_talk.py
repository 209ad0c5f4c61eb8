"""End-to-end: bridged talk with real phones - recording, hold, a dying
operator phone, and a pyVoIP citizen.

SIPp and pyVoIP citizens, baresip operators, the running server (DESIGN §2
phases 2, 6 and 8; issue 4). The recordings are checked by content: the
caller's G.711 bytes are found verbatim on the left channel, prompts and
hold music verbatim on the right (what the caller heard), and the
operator's voice on the right by its loudness envelope. Nothing asserts how
long anything took.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import pytest

from harness import (
    PCAPS,
    Operator,
    Server,
    baresip_operator,
    best_correlation,
    check_incident_json,
    envelope,
    event_kinds,
    events_of,
    free_port,
    free_range,
    incident_of,
    incident_status,
    iso_seconds,
    linear,
    need,
    operator_online,
    operator_states,
    operator_voice,
    prompt_frames,
    quick_prompts,
    recording_channels,
    rms_per_second,
    running_server,
    sip_trace,
    start_caller,
    talking_to,
    wait_until,
)

pytestmark = pytest.mark.peers

TALK = """
menu_tries = 1
input_timeout_s = 1
[queue]
ring_timeout_s = 8
wrapup_s = 1
media_timeout_s = 3
"""
SILENCE_RMS = 50.0  # G.711 silence decodes to |x| <= 8; speech is in the thousands


def _recording(server: Server, incident: dict[str, Any]) -> tuple[bytes, bytes, Any]:
    (rec,) = incident["recordings"]
    assert rec["channels"] == 2
    return recording_channels(server.recordings / rec["path"])


def _window(channel: bytes, start_s: float, end_s: float) -> bytes:
    return channel[max(0, int(start_s * 8000)) : max(0, int(end_s * 8000))]


def _pcap_audio() -> bytes:
    """The G.711 A-law payloads SIPp sends from g711a.pcap, in order."""
    from pcaplib import read_udp

    return b"".join(d.payload[12:] for d in read_udp(PCAPS / "g711a.pcap") if len(d.payload) > 12)


def _operator_voice_match(pcm: bytes, seconds: float = 2.0) -> float:
    """How well the first `seconds` of `pcm` match some stretch of the operator's
    audio file (what baresip sends; where in the file it was at the answer is
    baresip's business), by the Pearson correlation of 20 ms envelopes."""
    from callcenter112.media.recorder import read_wav

    audio = read_wav(operator_voice())
    assert audio.info.bits_per_sample == 16 and audio.channels == 1
    chunk = envelope(pcm)[: int(seconds * 50)]
    assert len(chunk) == int(seconds * 50), "not enough audio to compare"
    return best_correlation(envelope(audio.data), chunk)


def test_bridged_call_recorded_caller_left_operator_right(tmp_path: Path) -> None:
    """A SIPp caller speaks (g711a.pcap) to a baresip operator speaking its
    audio file; the stereo recording holds the caller on the left (bit-exact)
    and the operator on the right, both audible through the talk."""
    need("sipp", "baresip", "sox")
    number = "0821000001"
    with (
        running_server(tmp_path, extra=TALK) as server,
        baresip_operator(
            tmp_path / "op1", user="op1", password="secret1", server_port=server.sip_port
        ) as op1,
    ):
        wait_until(lambda: operator_online(server, "op1"), 20, what="op1 online")
        caller = start_caller(
            server, tmp_path / "caller", caller=number, digits="1", audio=True, talk_ms=8000
        )
        assert caller.wait(90) == 0, caller.logs()
        wait_until(lambda: incident_status(server, number) == "completed", 20)
        assert op1.proc is not None and op1.proc.poll() is None
    incident = incident_of(server, number)
    assert incident is not None
    check_incident_json(incident)
    assert incident["operator"] == "op1"
    assert events_of(incident, "status")[-1]["detail"]["reason"] == "caller_hung_up"
    (rec,) = incident["recordings"]
    left, right, codec = _recording(server, incident)
    assert codec.name == "PCMA"  # the caller's law: the left channel is kept bit-exact
    assert rec["duration_s"] == pytest.approx(len(left) / 8000, abs=0.05)
    start = iso_seconds(incident["answered_at"])
    talk_from = iso_seconds(incident["operator_answered_at"]) - start
    talk_to = iso_seconds(incident["ended_at"]) - start
    assert talk_to - talk_from > 4

    # Left: the caller's own bytes, verbatim (a 1 s run of the pcap's speech).
    speech = _pcap_audio()
    assert len(speech) > 8000 * 5
    assert speech[8000:16000] in left, "the caller's G.711 is not on the left channel as sent"

    # Both audible through the talk.
    talk_left = linear(codec, _window(left, talk_from + 0.5, talk_to - 0.5))
    talk_right = linear(codec, _window(right, talk_from + 0.5, talk_to - 0.5))
    rms_left = rms_per_second(talk_left)
    rms_right = rms_per_second(talk_right)
    assert len(rms_left) >= 3
    assert sum(r > SILENCE_RMS * 10 for r in rms_left) >= len(rms_left) * 0.6, rms_left
    assert sum(r > SILENCE_RMS * 10 for r in rms_right) >= len(rms_right) * 0.6, rms_right

    # Right: the operator's voice file, by its envelope (baresip re-encodes it);
    # the caller's speech on the left is no match for it.
    on_right = _operator_voice_match(talk_right[16000:])
    on_left = _operator_voice_match(talk_left[16000:])
    assert on_right > 0.85, (on_right, on_left)
    assert on_left < on_right - 0.25, (on_right, on_left)


def test_hold_plays_hold_music_and_resume_bridges_again(tmp_path: Path) -> None:
    """The operator holds (re-INVITE sendonly): the caller hears the hold
    music; resume (sendrecv) bridges the operator back."""
    need("sipp", "baresip", "sox")
    number = "0822000001"
    with (
        running_server(tmp_path, extra=TALK) as server,
        baresip_operator(
            tmp_path / "op1", user="op1", password="secret1", server_port=server.sip_port
        ) as op1,
    ):
        wait_until(lambda: operator_online(server, "op1"), 20, what="op1 online")
        caller = start_caller(
            server, tmp_path / "caller", caller=number, digits="1", talk_ms=90_000
        )
        wait_until(lambda: talking_to(server, number, "op1"), 30, what="op1 answers")
        time.sleep(1.5)
        op1.command("hold")
        wait_until(
            lambda: "hold" in event_kinds(incident_of(server, number) or {"events": []}),
            10,
            what="hold",
        )
        # The caller listens to the hold music; longer than media_timeout_s, so
        # the held phone (which may send no RTP) is probed and must stay.
        time.sleep(4.5)
        op1.command("resume")
        wait_until(
            lambda: "resume" in event_kinds(incident_of(server, number) or {"events": []}),
            10,
            what="resume",
        )
        time.sleep(2.5)
        op1.command("hangup")
        assert caller.wait(60) == 0, caller.logs()
        wait_until(lambda: incident_status(server, number) == "completed", 20)
    incident = incident_of(server, number)
    assert incident is not None
    check_incident_json(incident)
    assert "operator_lost" not in event_kinds(incident)
    (hold,) = events_of(incident, "hold")
    (resume,) = events_of(incident, "resume")
    assert hold["detail"]["by"] == "op1" and resume["detail"]["by"] == "op1"
    _left, right, codec = _recording(server, incident)
    start = iso_seconds(incident["answered_at"])
    held_from = iso_seconds(hold["at"]) - start
    held_to = iso_seconds(resume["at"]) - start
    talk_to = iso_seconds(incident["ended_at"]) - start
    # What the caller heard while held: the hold music, verbatim, from its start.
    music = prompt_frames("hold_music", None, codec)
    held = _window(right, held_from, held_to)
    assert music[800:8800] in held, "no hold music on the right channel during the hold"
    # After the resume: the operator's voice again, not music.
    after = linear(codec, _window(right, held_to + 0.3, talk_to - 0.2))
    assert music[800:4800] not in _window(right, held_to + 0.3, talk_to)
    assert min(rms_per_second(after)) > SILENCE_RMS * 10
    assert _operator_voice_match(after, 1.5) > 0.85


def test_operator_phone_dies_caller_requeued_to_next_operator(tmp_path: Path) -> None:
    """kill -9 the operator's softphone mid-call: no RTP, no answer to the
    in-dialog OPTIONS → the caller is not dropped: back at the head of the
    queue, hears the operator_lost prompt, and the next operator answers."""
    need("sipp", "baresip", "sox")
    number = "0823000001"
    ops = [Operator("op1", "secret1"), Operator("op2", "secret2")]
    with running_server(tmp_path, operators=ops, extra=TALK) as server:
        with baresip_operator(
            tmp_path / "op1", user="op1", password="secret1", server_port=server.sip_port
        ) as op1:
            wait_until(lambda: operator_online(server, "op1"), 20, what="op1 online")
            with baresip_operator(
                tmp_path / "op2",
                user="op2",
                password="secret2",
                server_port=server.sip_port,
                answermode="manual",
            ) as op2:
                wait_until(lambda: operator_online(server, "op2"), 20, what="op2 online")
                caller = start_caller(
                    server, tmp_path / "caller", caller=number, digits="1", talk_ms=90_000
                )
                wait_until(lambda: talking_to(server, number, "op1"), 30, what="op1 answers")
                time.sleep(1)
                op1.kill()  # SIGKILL: no BYE, no REGISTER expires=0, RTP just stops
                wait_until(
                    lambda: sip_trace(server, "sip_out", "INVITE", op2.sip_port),
                    60,
                    what="the caller offered to op2",
                )
                time.sleep(3)  # let the caller hear the operator_lost prompt
                op2.command("accept")
                wait_until(lambda: talking_to(server, number, "op2"), 30, what="op2 answers")
                time.sleep(1.5)
                op2.command("hangup")
                assert caller.wait(60) == 0, caller.logs()
                wait_until(lambda: incident_status(server, number) == "completed", 20)
    incident = incident_of(server, number)
    assert incident is not None
    check_incident_json(incident)
    assert incident["operator"] == "op2"
    kinds = [
        (e["kind"], e["detail"].get("operator"))
        for e in incident["events"]
        if e["kind"] in ("operator_answered", "operator_lost", "requeued", "offered")
    ]
    assert kinds == [
        ("offered", "op1"),
        ("operator_answered", "op1"),
        ("operator_lost", "op1"),
        ("requeued", None),
        ("offered", "op2"),
        ("operator_answered", "op2"),
    ], kinds
    (lost,) = events_of(incident, "operator_lost")
    assert lost["detail"]["why"] == "no_rtp_no_options_answer"
    (requeued,) = events_of(incident, "requeued")
    assert requeued["detail"]["position"] == 1
    # The first operator is offline (their phone is gone), not wrapping up.
    assert operator_states(server, "op1")[-1] == ("offline", "leg_lost")
    # The caller heard the operator_lost prompt while waiting again.
    _left, right, codec = _recording(server, incident)
    start = iso_seconds(incident["answered_at"])
    lost_at = iso_seconds(lost["at"]) - start
    prompt = prompt_frames("operator_lost", "id", codec)
    assert prompt[:8000] in _window(right, lost_at - 0.5, lost_at + 6), "operator_lost not heard"
    assert incident["status"] == "completed"
    assert math.isclose(
        incident["sla_s"],
        iso_seconds(incident["operator_answered_at"]) - iso_seconds(incident["arrived_at"]),
        abs_tol=0.002,
    )


def test_pyvoip_citizen_answered_queued_bridged(tmp_path: Path) -> None:
    """pyVoIP 1.6.8 as the citizen's phone (random To-tags on its ACK and on
    its 200 to our BYE; needs 100 Trying before the 200): answered, queued,
    bridged to a baresip operator, and ended cleanly by the operator."""
    need("sipp", "baresip", "sox")
    from pyVoIP.VoIP import CallState, VoIPPhone  # tests only: GPL-3.0, never in the package

    prompts = quick_prompts(tmp_path)  # pyVoIP cannot press keys: the silent path
    # pyVoIP needs a registrar before it may call: it registers as an operator
    # account of its own. It registers after op1, so op1 is the longest idle;
    # were it offered a call it would answer 486 (no call handler), and the
    # ACD would move on to the next operator at once.
    ops = [Operator("op1", "secret1"), Operator("warga", "warga-secret")]
    with running_server(tmp_path, operators=ops, extra=TALK, prompts=prompts) as server:
        with baresip_operator(
            tmp_path / "op1", user="op1", password="secret1", server_port=server.sip_port
        ) as op1:
            wait_until(lambda: operator_online(server, "op1"), 20, what="op1 online")
            rtp_low, rtp_high = free_range(4)
            sip_port = free_port()
            phone = VoIPPhone(
                "127.0.0.1",
                server.sip_port,
                "warga",
                "warga-secret",
                myIP="127.0.0.1",
                sipPort=sip_port,
                rtpPortLow=rtp_low,
                rtpPortHigh=rtp_high,
            )
            phone.start()
            try:
                wait_until(lambda: operator_online(server, "warga"), 20, what="pyVoIP registered")
                call = phone.call("112")
                wait_until(lambda: call.state == CallState.ANSWERED, 20, what="answered")
                # A 400 Hz tone as 8-bit unsigned PCM (pyVoIP's audio format).
                tone = bytes(
                    128 + int(90 * math.sin(2 * math.pi * 400 * i / 8000)) for i in range(160)
                )
                deadline = time.monotonic() + 60
                while not talking_to(server, "warga", "op1"):
                    assert time.monotonic() < deadline, "never bridged to op1"
                    call.write_audio(tone)
                    time.sleep(0.02)
                for _ in range(100):  # two seconds of talk
                    call.write_audio(tone)
                    time.sleep(0.02)
                op1.command("hangup")
                wait_until(lambda: call.state == CallState.ENDED, 20, what="pyVoIP hung up")
                wait_until(lambda: incident_status(server, "warga") == "completed", 20)
            finally:
                phone.stop()
    incident = incident_of(server, "warga")
    assert incident is not None
    check_incident_json(incident)
    assert incident["status"] == "completed"
    assert incident["operator"] == "op1"
    assert incident["category"] == "unknown"
    for key in ("answered_at", "ivr_done_at", "queued_at", "operator_answered_at", "ended_at"):
        assert incident[key] is not None, key
    assert events_of(incident, "status")[-1]["detail"]["reason"] == "operator_hung_up"
    # 100 Trying went out before the 200 OK; our BYE got its 200 (random To-tag
    # and all) so it was sent once, not retransmitted until Timer F.
    out = [
        e["first_line"]
        for e in server.events("sip_out")
        if e.get("sip_call_id") == incident["call_id"]
    ]
    assert out.index("SIP/2.0 100 Trying") < out.index("SIP/2.0 200 OK")
    assert sum(1 for line in out if line.startswith("BYE ")) == 1
    assert sip_trace(server, "sip_in", "SIP/2.0 200", sip_port)
    # The citizen's tone is on the left channel (pyVoIP speaks PCMU).
    left, _right, codec = _recording(server, incident)
    assert codec.name == "PCMU"
    start = iso_seconds(incident["answered_at"])
    talk = linear(
        codec,
        _window(
            left,
            iso_seconds(incident["operator_answered_at"]) - start,
            iso_seconds(incident["ended_at"]) - start,
        ),
    )
    assert max(rms_per_second(talk)) > SILENCE_RMS * 10
