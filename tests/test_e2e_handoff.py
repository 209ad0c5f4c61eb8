"""Issue 7 against the running server with real peers: transfer, conference, supervision, callbacks.

Agencies sit behind the trunk's proxy: a SIPp UAS on the proxy port answers
the centre's INVITE (`agency_answer.xml`, run with `-rtp_echo` so whatever
audio reaches it comes straight back) or refuses it (`agency_busy.xml`).
Audio proofs use what the server recorded: the right channel of the
incident's recording is what the caller heard, so the caller's own speech
appearing there after a transfer proves it reached the echoing agency and
came back through the bridge.
"""

from __future__ import annotations

import array
import math
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from harness import (
    PCAPS,
    SCENARIOS,
    Baresip,
    Operator,
    Server,
    SippRun,
    WebSession,
    baresip_operator,
    best_correlation,
    envelope,
    event_kinds,
    events_of,
    free_port,
    free_range,
    incident_of,
    linear,
    need,
    operator_online,
    recording_channels,
    start_caller,
    start_sipp_in,
    talking_to,
    wait_until,
)

pytestmark = pytest.mark.peers

CALLER = "081311112222"


def start_agency(directory: Path, port: int, scenario: str = "agency_answer.xml") -> SippRun:
    """A SIPp agency on the trunk proxy's port (a UAS: no remote address)."""
    need("sipp")
    cmd = [
        "sipp", "-sf", str(SCENARIOS / scenario), "-i", "127.0.0.1", "-p", str(port),
        "-mp", str(free_range(4)[0]), "-m", "1", "-rtp_echo", "-nostdin",
        "-timeout", "120s", "-timeout_error", "-trace_msg", "-trace_err", "-trace_logs",
    ]  # fmt: skip
    return start_sipp_in(directory, cmd, name=f"agency {scenario}")


def recording_of(server: Server, incident: dict[str, Any], index: int = 0) -> Path:
    return server.recordings / incident["recordings"][index]["path"]


def tone_wav(path: Path, hz: int, seconds: int = 60) -> Path:
    """A 16-bit sine for a baresip audio source (a voice nobody else has)."""
    need("sox")
    subprocess.run(
        ["sox", "-n", "-r", "8000", "-c", "1", "-e", "signed-integer", "-b", "16", str(path),
         "synth", str(seconds), "sine", str(hz), "vol", "0.5"],
        check=True,
    )  # fmt: skip
    return path


def tone_power(pcm: bytes, hz: float) -> float:
    """Goertzel power of `hz` in 8 kHz PCM, normalised by the signal's own energy."""
    samples = array.array("h", pcm)
    if not samples:
        return 0.0
    k = 2 * math.cos(2 * math.pi * hz / 8000)
    s1 = s2 = 0.0
    for x in samples:
        s1, s2 = x + k * s1 - s2, s1
    power = s1 * s1 + s2 * s2 - k * s1 * s2
    energy = sum(x * x for x in samples) * len(samples) or 1.0
    return power / energy


def seconds_slice(pcm: bytes, start_s: float, end_s: float) -> bytes:
    return pcm[int(start_s * 16000) & ~1 : int(end_s * 16000) & ~1]


def agency_server(tmp_path: Path, **kw: Any) -> tuple[Server, int]:
    port = free_port()
    server = Server(
        tmp_path / "server",
        trunk_proxy_port=port,
        agencies=[("damkar", "113"), ("ambulans", "119")],
        extra=(
            "input_timeout_s = 2\n[queue]\nwrapup_s = 1\nring_timeout_s = 8\nmedia_timeout_s = 30"
        ),
        **kw,
    )
    return server, port


def test_operator_refer_transfers_the_caller_to_the_agency(tmp_path: Path) -> None:
    need("sipp", "baresip")
    server, agency_port = agency_server(tmp_path)
    server.start()
    try:
        agency = start_agency(tmp_path / "agency", agency_port)
        with baresip_operator(
            tmp_path / "op1", user="op1", password="secret1", server_port=server.sip_port
        ) as phone:
            wait_until(lambda: operator_online(server, "op1"), 20, what="op1 registered")
            caller = start_caller(
                server, tmp_path / "caller", caller=CALLER, digits="2", audio=True, talk_ms=12000
            )
            wait_until(lambda: talking_to(server, CALLER, "op1"), 30, what="bridged to op1")
            # The operator's transfer button: REFER to the agency's number.
            answer = phone.command("transfer", "113")
            assert answer.get("ok"), answer
            wait_until(
                lambda: "transferred" in event_kinds(incident_of(server, CALLER) or {"events": []}),
                30,
                what="transferred to the agency",
            )
            assert caller.wait(60) == 0, caller.logs()
        assert agency.wait(30) == 0, agency.logs()
        incident = incident_of(server, CALLER)
        assert incident is not None
        assert incident["status"] == "completed"
        assert incident["operator"] == "op1"
        assert incident["transferred_at"] is not None
        assert "damkar" in incident["agencies_notified"]
        kinds = event_kinds(incident)
        assert kinds.index("agency_dialled") < kinds.index("transferred")
        assert [leg["role"] for leg in incident["legs"]].count("agency") == 1
        # The REFER got its 202 and NOTIFYs with the agency's progress (RFC 3515).
        refers = [e for e in server.events("sip_in") if e["first_line"].startswith("REFER ")]
        assert refers, "no REFER reached the server"
        notifies = [
            e
            for e in server.events("sip_out")
            if e["first_line"].startswith("NOTIFY ") and "sipfrag" in (e.get("message") or "")
        ]
        assert any("SIP/2.0 200 OK" in (n.get("message") or "") for n in notifies)
        # Issue 11: the agency is outside the centre: its INVITE carries no
        # X-Incident-ID (nor the console link); it got the INVITE all the same.
        agency_log = (
            (tmp_path / "agency")
            .joinpath(next(p.name for p in (tmp_path / "agency").glob("*_logs.log")))
            .read_text()
        )
        assert "agency INVITE incident= " in agency_log and incident["id"] not in agency_log
        # Recording: the caller's speech came back from the echoing agency on the right
        # channel after the transfer — it reached the agency through the bridge.
        left, right, codec = recording_channels(recording_of(server, incident))
        transferred_at = _offset(incident, "transferred")
        window_left = envelope(
            seconds_slice(linear(codec, left), transferred_at, transferred_at + 5)
        )
        window_right = envelope(
            seconds_slice(linear(codec, right), transferred_at + 0.3, transferred_at + 3.3)
        )
        assert max(window_right) > 200, "nothing on the right channel after the transfer"
        assert best_correlation(window_left, window_right) > 0.8
    finally:
        server.stop()
        server.kill()


def test_transfer_through_a_trunk_that_wants_credentials(tmp_path: Path) -> None:
    """The carrier challenges calls out (401): the server answers with the
    trunk's digest credentials and the transfer goes through."""
    need("sipp", "baresip")
    port = free_port()
    server = Server(
        tmp_path / "server",
        trunk_proxy_port=port,
        agencies=[("damkar", "113")],
        extra="input_timeout_s = 2\n[queue]\nwrapup_s = 1",
        trunk_extra='auth_user = "ambon112"\nauth_password = "trunk-secret"',
    )
    server.start()
    try:
        agency = start_agency(tmp_path / "agency", port, "agency_challenge.xml")
        with baresip_operator(
            tmp_path / "op1", user="op1", password="secret1", server_port=server.sip_port
        ) as phone:
            wait_until(lambda: operator_online(server, "op1"), 20, what="op1 registered")
            caller = start_caller(
                server, tmp_path / "caller", caller=CALLER, digits="2", talk_ms=8000
            )
            wait_until(lambda: talking_to(server, CALLER, "op1"), 30, what="bridged to op1")
            assert phone.command("transfer", "113").get("ok")
            wait_until(
                lambda: "transferred" in event_kinds(incident_of(server, CALLER) or {"events": []}),
                30,
                what="transferred after the challenge",
            )
            assert caller.wait(60) == 0, caller.logs()
        assert agency.wait(30) == 0, agency.logs()
        log_text = "".join(p.read_text() for p in (tmp_path / "agency").glob("*_logs.log"))
        assert "authvalid=true" in log_text, log_text
        assert server.events("trunk_challenge_answered")
    finally:
        server.stop()
        server.kill()


def _offset(incident: dict[str, Any], kind: str) -> float:
    """Seconds from the recording's start to the first event `kind`."""
    from harness import iso_seconds

    start = iso_seconds(incident["recordings"][0].get("started_at") or incident["answered_at"])
    return iso_seconds(events_of(incident, kind)[0]["at"]) - start


def test_agency_busy_returns_the_caller_to_the_operator(tmp_path: Path) -> None:
    """Console blind transfer to an agency that answers 486: the caller hears that
    the agency could not be reached and is back with the same operator."""
    need("sipp", "baresip")
    server, agency_port = agency_server(tmp_path)
    server.start()
    try:
        agency = start_agency(tmp_path / "agency", agency_port, "agency_busy.xml")
        with baresip_operator(
            tmp_path / "op1", user="op1", password="secret1", server_port=server.sip_port
        ) as phone:
            wait_until(lambda: operator_online(server, "op1"), 20, what="op1 registered")
            caller = start_caller(
                server, tmp_path / "caller", caller=CALLER, digits="1", talk_ms=60000
            )
            wait_until(lambda: talking_to(server, CALLER, "op1"), 30, what="bridged to op1")
            incident = incident_of(server, CALLER)
            assert incident is not None
            web = WebSession(server, "op1", "secret1")
            r = web.post(
                f"/console/incidents/{incident['id']}/transfer",
                {"agency": "ambulans", "mode": "blind"},
            )
            assert r.status_code < 400, r.text
            web.close()
            wait_until(
                lambda: (
                    "transfer_failed" in event_kinds(incident_of(server, CALLER) or {"events": []})
                ),
                30,
                what="transfer failure recorded",
            )
            assert agency.wait(30) == 0, agency.logs()
            # Back with the same operator once the prompt has played.
            wait_until(
                lambda: (
                    (incident_of(server, CALLER) or {}).get("status") == "active"
                    and _phase_events(server, "talking") >= 2
                ),
                20,
                what="reconnected to op1",
            )
            import time as _time

            _time.sleep(2)  # the operator talks to the caller again
            phone.command("hangup")
            assert caller.wait(60) == 0, caller.logs()
        incident = incident_of(server, CALLER)
        assert incident is not None and incident["status"] == "completed"
        assert incident["operator"] == "op1" and incident["transferred_at"] is None
        failed = events_of(incident, "transfer_failed")[0]["detail"]
        assert failed["status"] == 486 and failed["agency"] == "ambulans"
        # The caller heard "the agency could not be reached", then the operator again.
        _left, right, codec = recording_channels(recording_of(server, incident))
        from harness import prompt_frames

        prompt = prompt_frames("transfer_failed", "id", codec)
        at = right.find(prompt[800:2400])
        assert at >= 0, "transfer_failed prompt not heard by the caller"
        after = linear(codec, right[at + len(prompt) : at + len(prompt) + 16000])
        assert max(envelope(after)) > 200, "no operator audio after the failed transfer"
    finally:
        server.stop()
        server.kill()


def _phase_events(server: Server, phase: str) -> int:
    """How often the server logged a call entering `phase` (call_changed is live-only,
    so count the bridges and reconnections from the SIP side instead)."""
    incident = incident_of(server, CALLER)
    if incident is None:
        return 0
    kinds = event_kinds(incident)
    return kinds.count("operator_answered") + kinds.count("transfer_failed")


def test_refer_to_a_busy_agency_from_a_phone_that_hangs_up_requeues_the_caller(
    tmp_path: Path,
) -> None:
    """baresip hangs up its side of a REFER whose transfer failed. The caller must
    not be dropped: back to the head of the queue, offered to the next operator."""
    need("sipp", "baresip")
    server, agency_port = agency_server(
        tmp_path, operators=[Operator("op1", "secret1"), Operator("op2", "secret2")]
    )
    server.start()
    try:
        agency = start_agency(tmp_path / "agency", agency_port, "agency_busy.xml")
        with baresip_operator(
            tmp_path / "op1", user="op1", password="secret1", server_port=server.sip_port
        ) as phone1:
            wait_until(lambda: operator_online(server, "op1"), 20, what="op1 registered")
            caller = start_caller(
                server, tmp_path / "caller", caller=CALLER, digits="1", talk_ms=60000
            )
            wait_until(lambda: talking_to(server, CALLER, "op1"), 30, what="bridged to op1")
            with baresip_operator(
                tmp_path / "op2", user="op2", password="secret2", server_port=server.sip_port
            ) as phone2:
                wait_until(lambda: operator_online(server, "op2"), 20, what="op2 registered")
                assert phone1.command("transfer", "119").get("ok")
                wait_until(lambda: talking_to(server, CALLER, "op2"), 40, what="op2 answered")
                assert agency.wait(30) == 0, agency.logs()
                phone2.command("hangup")
                assert caller.wait(60) == 0, caller.logs()
        incident = incident_of(server, CALLER)
        assert incident is not None and incident["status"] == "completed"
        kinds = event_kinds(incident)
        assert "transfer_failed" in kinds
        assert "operator_left_during_transfer" in kinds
        assert kinds.count("operator_answered") == 2
        assert incident["operator"] in ("op1", "op2")
    finally:
        server.stop()
        server.kill()


def test_conference_where_the_operator_leaves_keeps_caller_and_agency(tmp_path: Path) -> None:
    need("sipp", "baresip")
    server, agency_port = agency_server(tmp_path)
    server.start()
    try:
        agency = start_agency(tmp_path / "agency", agency_port)
        with baresip_operator(
            tmp_path / "op1", user="op1", password="secret1", server_port=server.sip_port
        ):
            wait_until(lambda: operator_online(server, "op1"), 20, what="op1 registered")
            caller = start_caller(
                server, tmp_path / "caller", caller=CALLER, digits="2", audio=True, talk_ms=14000
            )
            wait_until(lambda: talking_to(server, CALLER, "op1"), 30, what="bridged to op1")
            incident = incident_of(server, CALLER)
            assert incident is not None
            web = WebSession(server, "op1", "secret1")
            r = web.post(
                f"/console/incidents/{incident['id']}/transfer",
                {"agency": "damkar", "mode": "conference"},
            )
            assert r.status_code < 400, r.text
            wait_until(
                lambda: (
                    "conference_started"
                    in event_kinds(incident_of(server, CALLER) or {"events": []})
                ),
                30,
                what="conference up",
            )
            r = web.post(f"/console/incidents/{incident['id']}/leave")
            assert r.status_code < 400, r.text
            web.close()
            assert caller.wait(60) == 0, caller.logs()
        assert agency.wait(30) == 0, agency.logs()
        incident = incident_of(server, CALLER)
        assert incident is not None
        assert incident["status"] == "completed"
        kinds = event_kinds(incident)
        assert "conference_started" in kinds and "operator_left_conference" in kinds
        assert kinds.index("operator_left_conference") < len(kinds) - 1
        # After the operator left, caller and agency still talk: the caller's speech
        # keeps coming back from the echoing agency.
        left, right, codec = recording_channels(recording_of(server, incident))
        left_at = _offset(incident, "operator_left_conference")
        window_left = envelope(seconds_slice(linear(codec, left), left_at, left_at + 4))
        window_right = envelope(seconds_slice(linear(codec, right), left_at + 0.3, left_at + 2.3))
        assert max(window_right) > 200
        assert best_correlation(window_left, window_right) > 0.8
        # Both hand-off commands are in the audit log.
        actions = {row[0] for row in server.sql("SELECT action FROM audit_log")}
        assert {"transfer", "leave_conference"} <= actions
    finally:
        server.stop()
        server.kill()


def test_whisper_is_heard_by_the_operator_only(tmp_path: Path) -> None:
    need("sipp", "baresip", "sox")
    server, _agency_port = agency_server(
        tmp_path,
        operators=[Operator("op1", "secret1"), Operator("sup1", "secret9", takes_calls=False)],
        supervisor_phone="sup1",
    )
    server.start()
    try:
        tone = tone_wav(tmp_path / "supervisor-1100hz.wav", 1100)
        with (
            baresip_operator(
                tmp_path / "op1", user="op1", password="secret1", server_port=server.sip_port
            ) as op_phone,
            baresip_operator(
                tmp_path / "sup1",
                user="sup1",
                password="secret9",
                server_port=server.sip_port,
                audio=tone,
            ),
        ):
            wait_until(lambda: operator_online(server, "op1"), 20, what="op1 registered")
            caller = start_caller(
                server, tmp_path / "caller", caller=CALLER, digits="4", talk_ms=16000
            )
            wait_until(lambda: talking_to(server, CALLER, "op1"), 30, what="bridged to op1")
            incident = incident_of(server, CALLER)
            assert incident is not None
            web = WebSession(server, "supervisor", "super-secret")
            r = web.post(f"/wallboard/calls/{incident['id']}/supervise", {"mode": "whisper"})
            assert r.status_code < 400, r.text
            wait_until(
                lambda: (
                    "supervision_started"
                    in event_kinds(incident_of(server, CALLER) or {"events": []})
                ),
                30,
                what="supervisor joined",
            )
            import time as _time

            _time.sleep(4)
            r = web.post(f"/wallboard/calls/{incident['id']}/unsupervise")
            assert r.status_code < 400, r.text
            web.close()
            assert caller.wait(60) == 0, caller.logs()
            heard_by_operator = _decoded_dump(op_phone)
        incident = incident_of(server, CALLER)
        assert incident is not None and incident["status"] == "completed"
        started = _offset(incident, "supervision_started")
        stopped = _offset(incident, "supervision_stopped")
        assert stopped - started > 2
        # The caller's ear (right channel) never carried the supervisor's 1100 Hz.
        _left, right, codec = recording_channels(recording_of(server, incident))
        caller_heard = seconds_slice(linear(codec, right), started + 0.5, stopped - 0.2)
        # The operator's ear did (baresip's decoded audio of that call).
        assert tone_power(heard_by_operator, 1100) > 0.2, "operator did not hear the whisper"
        assert tone_power(caller_heard, 1100) < 0.02, "the caller heard the whisper"
        actions = [row[0] for row in server.sql("SELECT action FROM audit_log ORDER BY seq")]
        assert "supervise_start" in actions and "supervise_stop" in actions
    finally:
        server.stop()
        server.kill()


def _decoded_dump(phone: Baresip) -> bytes:
    """What baresip decoded (heard) over its calls: its sndfile dump, as 16-bit PCM."""
    dumps = sorted(phone.record_dir.glob("dump-*-dec.wav"))
    assert dumps, "baresip wrote no decoded audio"
    import wave

    out = b""
    for dump in dumps:
        with wave.open(str(dump)) as w:
            out += w.readframes(w.getnframes())
    return out


def test_callback_reaches_the_citizen_and_is_recorded_in_the_incident(tmp_path: Path) -> None:
    need("sipp", "baresip")
    server, citizen_port = agency_server(tmp_path)
    server.start()
    try:
        # A caller who gives up in the queue (no operator registered yet).
        caller = start_caller(server, tmp_path / "caller", caller=CALLER, digits="1", talk_ms=2500)
        assert caller.wait(60) == 0, caller.logs()
        wait_until(lambda: (incident_of(server, CALLER) or {}).get("status") == "abandoned", 20)
        incident = incident_of(server, CALLER)
        assert incident is not None
        callbacks = [c for c in incident["callbacks"] if c["status"] == "open"]
        assert len(callbacks) == 1 and callbacks[0]["number"] == CALLER
        callback_id = callbacks[0]["id"]
        citizen = start_agency(tmp_path / "citizen", citizen_port)
        with baresip_operator(
            tmp_path / "op1", user="op1", password="secret1", server_port=server.sip_port
        ):
            wait_until(lambda: operator_online(server, "op1"), 20, what="op1 registered")
            web = WebSession(server, "op1", "secret1")
            r = web.post(f"/console/callbacks/{callback_id}/call")
            assert r.status_code < 400, r.text
            wait_until(
                lambda: (
                    "callback_answered"
                    in event_kinds(incident_of(server, CALLER) or {"events": []})
                ),
                40,
                what="the citizen answered the callback",
            )
            import time as _time

            _time.sleep(3)
            web.close()
        # The operator hung up (baresip stopped): the citizen got a BYE.
        assert citizen.wait(30) == 0, citizen.logs()
        log_text = "".join(p.read_text() for p in (tmp_path / "citizen").glob("*_logs.log"))
        assert "priority= psap-callback" in log_text  # RFC 7090 marking
        # Issue 11: no X-Incident-ID (or console link) reaches the citizen.
        assert "agency INVITE incident= priority" in log_text, log_text
        assert incident["id"] not in log_text
        incident = incident_of(server, CALLER)
        assert incident is not None
        assert incident["status"] == "abandoned"  # the original outcome stands
        roles = [leg["role"] for leg in incident["legs"]]
        assert "callback" in roles and "operator" in roles
        assert len(incident["recordings"]) == 2  # the original call and the callback
        attempts = [a for c in incident["callbacks"] for a in c.get("attempts", [])]
        assert any(a["result"] == "answered" for a in attempts)
        assert server.cli("recordings", "verify").returncode == 0
    finally:
        server.stop()
        server.kill()


def test_sipp_pcaps_are_present() -> None:
    """The hand-off tests rely on SIPp's shipped capture for the caller's speech."""
    need("sipp")
    assert (PCAPS / "g711a.pcap").exists()
    assert shutil.which("sipp")
