"""SIGKILL of the real server mid-call: nothing of the record is lost (issue 5).

The server runs as a process with real peers: SIPp citizens and a baresip
operator. At the moment of the kill one caller is bridged to the operator, one
waits in the queue and one is still listening to the IVR menu; an earlier call
has already ended. After the restart every incident is present, the three
that were up are `interrupted` with a callback task, every recording is a
readable WAV holding the audio up to the crash and sealed into the hash chain
(`recordings verify` exits 0), the operator's state history no longer shows a
dead server's call as ongoing, the audit chain verifies, and the restarted
centre takes the next call to the same operator.

No timed assertions: every wait is a bounded `wait_until` on the database or
the files, with timeouts generous enough for two busy shared cores.
"""

from __future__ import annotations

import json
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest

from callcenter112.acd import OperatorState
from callcenter112.media.recorder import read_wav
from callcenter112.records import (
    OPERATOR_OFFLINE,
    open_store,
    recover_after_crash,
    verify_recordings,
)
from harness import (
    Baresip,
    Server,
    check_incident_json,
    linear,
    need,
    operator_online,
    recording_channels,
    rms_per_second,
    start_caller,
    wait_until,
)

# C must still be in the IVR when the server dies: the shipped menu plays for
# ~17 s and is repeated once after 10 s of silence.
IVR_AND_QUEUE = "input_timeout_s = 10\nmenu_tries = 2\n[queue]\nring_timeout_s = 4\nwrapup_s = 1\n"
STEREO_BYTES_PER_S = 2 * 8000  # G.711 stereo: one byte per sample and channel
WAV_HEADER = 58  # media.recorder.WAV_HEADER_SIZE

ENDED = "081100000000"  # hangs up in the IVR before the crash
BRIDGED = "081100000001"  # presses 1, talks to op1 (baresip) when the server dies
QUEUED = "081100000002"  # presses 2, waits in the queue (op1 is busy)
IN_IVR = "081100000003"  # presses nothing, still hearing the menu
AFTER = "081100000004"  # calls the restarted server


def _one(server: Server, query: str, *args: Any) -> Any:
    rows = server.sql(query, *args)
    return rows[0][0] if rows else None


def _incident_id(server: Server, caller: str) -> str | None:
    value = _one(
        server,
        "SELECT id FROM incidents WHERE caller = ? ORDER BY arrived_at DESC LIMIT 1",
        caller,
    )
    return None if value is None else str(value)


def _audio_bytes_on_disk(server: Server, caller: str) -> int:
    """How much audio of `caller`'s open recording the server has written so far."""
    path = _one(
        server,
        "SELECT r.path FROM recordings r JOIN incidents i ON i.id = r.incident_id"
        " WHERE i.caller = ?",
        caller,
    )
    if path is None:
        return 0
    file = server.recordings / str(path)
    return max(0, file.stat().st_size - WAV_HEADER) if file.exists() else 0


def _operator_states(server: Server, user: str) -> list[tuple[str, str | None]]:
    return [
        (str(state), reason)
        for state, reason in server.sql(
            "SELECT state, reason FROM operator_states WHERE operator = ? ORDER BY at, id", user
        )
    ]


def _soxi_seconds(path: Path) -> float:
    out = subprocess.run(
        ["soxi", "-D", str(path)], check=True, capture_output=True, text=True, timeout=30
    )
    return float(out.stdout.strip())


def _diagnostics(server: Server, *extra: str) -> str:
    return "\n".join([*extra, server.output()[-6000:]])


@pytest.mark.peers
def test_sigkill_mid_call_loses_no_incident_and_no_recording(tmp_path: Path) -> None:
    need("sipp", "baresip", "sox", "soxi")
    server = Server(tmp_path, extra=IVR_AND_QUEUE)
    server.start()
    phone = Baresip(tmp_path / "op1", user="op1", password="secret1", server_port=server.sip_port)
    callers = []
    try:
        phone.start()
        wait_until(lambda: operator_online(server, "op1"), 30, what="op1 registered")

        # 0. A call that is over before the crash: it must come through untouched.
        ended = start_caller(server, tmp_path / "c0", caller=ENDED, talk_ms=500)
        assert ended.wait(60) == 0, ended.logs()
        wait_until(
            lambda: (
                _one(server, "SELECT status FROM incidents WHERE caller = ?", ENDED) == "abandoned"
                and _one(server, "SELECT count(*) FROM recordings WHERE seq IS NOT NULL") == 1
            ),
            30,
            what="the first call ended and its recording sealed",
        )

        # 1. Bridged to op1, speaking (SIPp's G.711 speech) when the server dies.
        callers.append(
            start_caller(
                server, tmp_path / "c1", caller=BRIDGED, digits="1", audio=True, talk_ms=90_000
            )
        )
        wait_until(
            lambda: (
                _one(
                    server,
                    "SELECT operator_answered_at FROM incidents WHERE caller = ?",
                    BRIDGED,
                )
                is not None
            ),
            60,
            what="caller 1 bridged to op1",
        )
        wait_until(
            lambda: ("on_call", "answered") in _operator_states(server, "op1"),
            30,
            what="op1 on_call in the state history",
        )
        # 2. Waiting in the queue: fire, and the only operator is busy.
        callers.append(
            start_caller(server, tmp_path / "c2", caller=QUEUED, digits="2", talk_ms=90_000)
        )
        wait_until(
            lambda: (
                _one(server, "SELECT queued_at FROM incidents WHERE caller = ?", QUEUED) is not None
            ),
            60,
            what="caller 2 queued",
        )
        # 3. In the IVR, no key pressed.
        callers.append(start_caller(server, tmp_path / "c3", caller=IN_IVR, talk_ms=90_000))
        # Enough audio on disk that "readable up to the crash" means something.
        wait_until(
            lambda: (
                _audio_bytes_on_disk(server, BRIDGED) >= 4 * STEREO_BYTES_PER_S
                and _audio_bytes_on_disk(server, QUEUED) >= 2 * STEREO_BYTES_PER_S
                and _audio_bytes_on_disk(server, IN_IVR) >= 2 * STEREO_BYTES_PER_S
            ),
            60,
            what="three recordings growing on disk",
        )
        before = {
            str(caller): (str(status), ivr_done)
            for caller, status, ivr_done in server.sql(
                "SELECT caller, status, ivr_done_at FROM incidents"
            )
        }
        assert before[BRIDGED][0] == before[QUEUED][0] == before[IN_IVR][0] == "active", before
        assert before[IN_IVR][1] is None, "caller 3 left the IVR before the crash"
        assert before[ENDED][0] == "abandoned", before
        assert _one(server, "SELECT count(*) FROM recordings WHERE status = 'open'") == 3
        # An auditor may verify while calls are up: open recordings are not tampering.
        live = server.cli("recordings", "verify")
        assert live.returncode == 0, live.stdout + live.stderr
        assert "recordings: 1 chain entry, 1 file(s) re-hashed" in live.stdout

        server.kill()  # SIGKILL: no BYE, no seal, no final timestamps
        assert server.proc is not None and server.proc.returncode == -9
        for run in callers:
            assert run.running(), f"{run.name} ended before the crash:\n{run.logs()}"
            run.kill()
        phone.stop()  # the operator's phone still holds the dead call

        server.start()
        recovery = server.events("crash_recovery")
        assert recovery, _diagnostics(server, "no crash_recovery log line")
        check_after_restart(server)

        # The restarted centre is not stuck: op1 logs in again and takes the next call.
        phone = Baresip(
            tmp_path / "op1-again", user="op1", password="secret1", server_port=server.sip_port
        )
        phone.start()
        wait_until(lambda: operator_online(server, "op1"), 30, what="op1 registered again")
        after = start_caller(server, tmp_path / "c4", caller=AFTER, digits="1", talk_ms=1500)
        assert after.wait(90) == 0, after.logs() + _diagnostics(server)
        wait_until(
            lambda: (
                _one(server, "SELECT status FROM incidents WHERE caller = ?", AFTER) == "completed"
                and _one(server, "SELECT count(*) FROM recordings WHERE status = 'open'") == 0
            ),
            30,
            what="the call after the restart completed and sealed",
        )
        new = server.incident(str(_incident_id(server, AFTER)))
        assert new["operator"] == "op1" and new["operator_answered_at"] is not None, new
        states = _operator_states(server, "op1")
        cut = states.index((OPERATOR_OFFLINE, "server_restart"))
        assert "available" in [s for s, _ in states[cut:]], states
        assert "on_call" in [s for s, _ in states[cut:]], states

        verified = server.cli("recordings", "verify")
        assert verified.returncode == 0, verified.stdout + verified.stderr
        assert "recordings: 5 chain entries, 5 file(s) re-hashed" in verified.stdout
        audit = server.cli("audit", "verify")
        assert audit.returncode == 0, audit.stdout + audit.stderr
    finally:
        phone.stop()
        for run in callers:
            run.kill()
        try:
            server.stop()
        finally:
            server.kill()


def check_after_restart(server: Server) -> None:
    """What the restarted server's recovery must have left behind."""
    incidents = {inc["caller"]: inc for inc in server.incidents()}
    assert set(incidents) == {ENDED, BRIDGED, QUEUED, IN_IVR}, sorted(incidents)
    for inc in incidents.values():
        check_incident_json(inc)

    first = incidents[ENDED]
    assert first["status"] == "abandoned" and first["ended_at"] is not None, first
    assert "recording_recovered" not in [e["kind"] for e in first["events"]]

    bridged = incidents[BRIDGED]
    assert bridged["category"] == "medical" and bridged["operator"] == "op1", bridged
    assert incidents[QUEUED]["category"] == "fire", incidents[QUEUED]
    assert incidents[IN_IVR]["category"] == "unknown", incidents[IN_IVR]
    for caller in (BRIDGED, QUEUED, IN_IVR):
        inc = incidents[caller]
        assert inc["status"] == "interrupted", inc
        assert inc["ended_at"] is None  # unknown: the server was dead
        kinds = [e["kind"] for e in inc["events"]]
        assert "callback_created" in kinds and "recording_recovered" in kinds, kinds
        [repair] = [e["detail"] for e in inc["events"] if e["kind"] == "recording_recovered"]
        assert repair["path"] == inc["recordings"][0]["path"], repair
        assert repair["repair"]["header_rebuilt"] is False, repair
        assert repair["repair"]["frames"] * 2 + WAV_HEADER <= inc["recordings"][0]["size"]
        [status] = [e["detail"] for e in inc["events"] if e["kind"] == "status"]
        assert status["from"] == "active" and status["to"] == "interrupted", status
        assert inc["legs"] and all(leg["end_reason"] for leg in inc["legs"]), inc["legs"]
        [callback] = inc["callbacks"]
        assert callback["status"] == "open" and callback["number"] == caller, callback
        assert callback["reason"] == "interrupted", callback
    roles = sorted(leg["role"] for leg in bridged["legs"])
    assert roles == ["caller", "operator"], bridged["legs"]

    listed = server.cli("callbacks", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    open_tasks = {cb["incident_id"]: cb for cb in json.loads(listed.stdout)}
    for caller in (BRIDGED, QUEUED, IN_IVR):
        assert incidents[caller]["id"] in open_tasks, open_tasks
    assert incidents[ENDED]["id"] in open_tasks  # abandoned calls get one too

    # Every recording: sealed, read-only, a readable WAV, in the chain.
    seqs = []
    for caller, inc in incidents.items():
        [rec] = inc["recordings"]
        assert rec["status"] == "sealed" and rec["seq"] is not None, rec
        seqs.append(rec["seq"])
        path = server.recordings / rec["path"]
        assert stat.S_IMODE(path.stat().st_mode) == 0o440, oct(path.stat().st_mode)
        audio = read_wav(path)  # raises on a header that does not fit the file
        assert audio.channels == rec["channels"] == 2
        assert audio.info.data_size == path.stat().st_size - audio.info.data_offset
        assert abs(audio.info.duration_s - rec["duration_s"]) < 0.01, rec
        assert abs(_soxi_seconds(path) - audio.info.duration_s) < 0.01
        if caller == ENDED:
            continue
        assert audio.info.duration_s >= 2.0, (caller, rec)
        _left, right, codec = recording_channels(path)
        # The right channel is what the caller heard: the greeting at least.
        assert max(rms_per_second(linear(codec, right))) > 300, (caller, "right silent")
    assert sorted(seqs) == [1, 2, 3, 4]
    # The bridged caller was speaking (SIPp's g711a.pcap) before the crash.
    left, _right, codec = recording_channels(
        server.recordings / incidents[BRIDGED]["recordings"][0]["path"]
    )
    assert max(rms_per_second(linear(codec, left))) > 300, "caller's speech missing"

    verified = server.cli("recordings", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "recordings: 4 chain entries, 4 file(s) re-hashed" in verified.stdout
    assert "recordings: OK" in verified.stdout
    audit = server.cli("audit", "verify")
    assert audit.returncode == 0, audit.stdout + audit.stderr
    entries = server.cli("audit", "list", "--action", "crash_recovery", "--json")
    assert entries.returncode == 0, entries.stderr
    [entry] = json.loads(entries.stdout)
    assert entry["actor"] == "system"
    assert sorted(entry["detail"]["interrupted"]) == sorted(
        incidents[c]["id"] for c in (BRIDGED, QUEUED, IN_IVR)
    )
    assert entry["detail"]["operators_offline"] == ["op1"], entry
    assert len(entry["detail"]["sealed"]) == 3 and entry["detail"]["lost"] == [], entry

    # The history no longer says op1 is on a call with a server that died: the
    # crash closed it as offline (recovery), after which op1's saved registration
    # may already have brought them back (the restart restores bindings).
    states = _operator_states(server, "op1")
    cut = states.index((OPERATOR_OFFLINE, "server_restart"))
    assert states[cut - 1][0] == "on_call", states
    assert all(state != "on_call" for state, _ in states[cut + 1 :]), states


# --------------------------------------------------------------------------- the store side


def test_offline_is_the_acds_own_state_name() -> None:
    assert OperatorState.OFFLINE.value == OPERATOR_OFFLINE


async def test_recovery_closes_operator_histories_cut_off_by_the_crash(tmp_path: Path) -> None:
    t0 = 1_795_860_000.0
    async with open_store(tmp_path / "db.sqlite3") as store:
        await store.record_operator_state("op1", "available", reason="registered", at=t0)
        await store.record_operator_state("op1", "on_call", reason="answered", at=t0 + 5)
        await store.record_operator_state("op2", "available", reason="registered", at=t0)
        await store.record_operator_state("op2", "offline", reason="unregistered", at=t0 + 9)
        await store.record_operator_state("op3", "paused", reason="break", at=t0 + 2)

        report = await recover_after_crash(
            store, tmp_path / "rec", t0 + 60, repair=lambda path: None
        )
        assert report.operators_offline == ("op1", "op3")
        assert report.clean  # a graceful stop leaves histories open too: not a crash
        last = {}
        for change in await store.operator_state_history():
            last[change.operator] = (change.state, change.reason, change.at)
        assert last == {
            "op1": ("offline", "server_restart", t0 + 60),
            "op2": ("offline", "unregistered", t0 + 9),
            "op3": ("offline", "server_restart", t0 + 60),
        }
        again = await recover_after_crash(
            store, tmp_path / "rec", t0 + 61, repair=lambda path: None
        )
        assert again.operators_offline == ()
        assert len(await store.operator_state_history()) == 7
        assert (await verify_recordings(store, tmp_path / "rec")).ok
