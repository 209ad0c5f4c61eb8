"""End-to-end: silent, repeat and watch-listed callers with real peers (issue 12).

Real server process, SIPp citizens on loopback (SIPp's shipped RFC 4733
capture of key 5, ``dtmf_2833_5.pcap``; silence = a caller that sends no RTP
at all and presses nothing; speech = SIPp's g711a.pcap), baresip operators.

The pure rules these paths use are tested without peers (test_ivr.py,
test_acd_watchlist.py, test_watchlist.py, test_vad.py); the call flow calls
them from callflow/screening.py (hooks in docs/architecture.md "Prank, silent
and repeat callers").
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from harness import (
    Server,
    WebSession,
    baresip_operator,
    incident_of,
    incident_status,
    need,
    operator_online,
    quick_prompts,
    running_server,
    start_caller,
    talking_to,
    wait_until,
)

pytestmark = [pytest.mark.peers, pytest.mark.slow]


CONFIG = """
menu_tries = 1
input_timeout_s = 1
silent_after_s = 3
[queue]
ring_timeout_s = 6
wrapup_s = 1
watch_list_max_extra_wait_s = 8
[callers]
repeat_calls_10min = 6
"""


def _flags(server: Server, caller: str) -> list[str]:
    incident = incident_of(server, caller)
    return [] if incident is None else list(incident.get("flags", []))


def _flag_details(incident: dict[str, Any], flag: str) -> list[dict[str, Any]]:
    return [
        e["detail"]
        for e in incident["events"]
        if e["kind"] == "flag" and isinstance(e["detail"], dict) and e["detail"]["flag"] == flag
    ]


def test_silent_caller_who_presses_5_is_answered_before_earlier_callers(tmp_path: Path) -> None:
    need("sipp", "baresip", "sox")
    prompts = quick_prompts(tmp_path)
    with (
        running_server(tmp_path, extra=CONFIG, prompts=prompts) as server,
        baresip_operator(
            tmp_path / "op1", user="op1", password="secret1", server_port=server.sip_port
        ) as phone,
    ):
        wait_until(lambda: operator_online(server, "op1"), 20, what="op1 online")
        busy = start_caller(
            server, tmp_path / "busy", caller="0814000000", digits="1", talk_ms=60_000
        )
        wait_until(lambda: talking_to(server, "0814000000", "op1"), 30, what="op1 busy")
        early = [
            start_caller(server, tmp_path / n, caller=n, digits="1", talk_ms=60_000)
            for n in ("0814000001", "0814000002")
        ]
        for n in ("0814000001", "0814000002"):
            wait_until(lambda n=n: incident_status(server, n), 20, what=f"{n} arrived")
        # Silent: "press 5" interrupts the menu silent_after_s (3 s) after the
        # answer and plays ~3.6 s, then 1 s (input_timeout_s) waits for a key;
        # key 5 at 5 s falls in that window.
        silent = start_caller(
            server,
            tmp_path / "silent",
            caller="0814000009",
            digits="5",
            pause_before_ms=5_000,
            talk_ms=60_000,
        )
        wait_until(lambda: "silent_confirmed" in _flags(server, "0814000009"), 30)
        phone.command("hangup")
        wait_until(lambda: talking_to(server, "0814000009", "op1"), 30, what="silent first")
        for n in ("0814000001", "0814000002"):
            incident = incident_of(server, n)
            assert incident is not None and incident["operator_answered_at"] is None
        for run in (busy, silent, *early):
            run.kill()


def test_silent_caller_who_does_nothing_is_queued_and_offered(tmp_path: Path) -> None:
    need("sipp", "baresip", "sox")
    prompts = quick_prompts(tmp_path)
    with running_server(tmp_path, extra=CONFIG, prompts=prompts) as server:
        silent = start_caller(server, tmp_path / "silent", caller="0814000010", talk_ms=40_000)
        wait_until(lambda: _flags(server, "0814000010") == ["silent"], 30, what="flagged silent")
        with baresip_operator(
            tmp_path / "op1", user="op1", password="secret1", server_port=server.sip_port
        ):
            wait_until(lambda: talking_to(server, "0814000010", "op1"), 40, what="offered")
        incident = incident_of(server, "0814000010")
        assert incident is not None and incident["category"] == "unknown"
        assert incident["status"] != "abandoned"  # the IVR never hung up
        silent.kill()


def test_a_caller_who_speaks_is_not_flagged_silent(tmp_path: Path) -> None:
    need("sipp", "sox")
    prompts = quick_prompts(tmp_path)
    with running_server(tmp_path, extra=CONFIG, prompts=prompts) as server:
        talker = start_caller(
            server, tmp_path / "talker", caller="0814000011", audio=True, talk_ms=15_000
        )
        wait_until(lambda: incident_status(server, "0814000011") == "abandoned", 60)
        incident = incident_of(server, "0814000011")
        assert incident is not None and incident["flags"] == []
        talker.kill()


def test_six_calls_in_ten_minutes_are_flagged_repeat_caller(tmp_path: Path) -> None:
    need("sipp", "sox")
    prompts = quick_prompts(tmp_path)
    number = "0814000020"
    with running_server(tmp_path, extra=CONFIG, prompts=prompts) as server:
        ids = []
        for i in range(6):
            run = start_caller(server, tmp_path / f"c{i}", caller=number, digits="1", talk_ms=1500)
            assert run.wait(60) == 0, run.logs()
            wait_until(lambda: incident_status(server, number) == "abandoned", 20)
            incident = incident_of(server, number)
            assert incident is not None
            ids.append(incident["id"])
            expected = ["repeat_caller"] if i == 5 else []
            assert [f for f in incident["flags"] if f == "repeat_caller"] == expected
        (detail,) = _flag_details(incident, "repeat_caller")
        assert detail["earlier"] == list(reversed(ids[:5]))


def test_watch_listed_caller_waits_behind_a_fresh_caller_within_the_cap(tmp_path: Path) -> None:
    need("sipp", "baresip", "sox")
    prompts = quick_prompts(tmp_path)
    listed, fresh = "0814000030", "0814000031"
    with running_server(tmp_path, extra=CONFIG, prompts=prompts) as server:
        server.cli("watchlist", "add", listed, "--reason", "pranks", "--expiry", "24h")
        runs = [
            start_caller(server, tmp_path / n, caller=n, digits="1", talk_ms=60_000)
            for n in (listed, fresh)
        ]
        time.sleep(2)
        with baresip_operator(
            tmp_path / "op1", user="op1", password="secret1", server_port=server.sip_port
        ) as phone:
            wait_until(lambda: talking_to(server, fresh, "op1"), 40, what="fresh first")
            phone.command("hangup")
            wait_until(lambda: talking_to(server, listed, "op1"), 40, what="then listed")
        a, b = incident_of(server, listed), incident_of(server, fresh)
        assert a is not None and b is not None and "watch_listed" in a["flags"]
        extra = a["sla_s"] - b["sla_s"]
        # Never more than the cap beyond the fresh caller (plus one ring + wrap-up).
        assert 0 < extra <= 8 + 6 + 1
        for run in runs:
            run.kill()


def test_operator_disposes_a_prank_and_ends_the_call_in_one_action(tmp_path: Path) -> None:
    need("sipp", "baresip", "sox")
    prompts = quick_prompts(tmp_path)
    caller = "0814000040"
    with (
        running_server(tmp_path, extra=CONFIG, prompts=prompts) as server,
        baresip_operator(
            tmp_path / "op1", user="op1", password="secret1", server_port=server.sip_port
        ),
    ):
        wait_until(lambda: operator_online(server, "op1"), 20, what="op1 online")
        run = start_caller(server, tmp_path / "c", caller=caller, digits="1", talk_ms=60_000)
        wait_until(lambda: talking_to(server, caller, "op1"), 30, what="op1 talking")
        incident = incident_of(server, caller)
        assert incident is not None
        web = WebSession(server, "op1", "secret1")
        try:
            url = f"/console/incidents/{incident['id']}/disposition"
            # Only prank or ghost may end the call; nothing is saved when refused.
            refused = web.post(url, {"disposition": "genuine", "end_call": "1"})
            assert refused.status_code == 422, refused.text
            r = web.client.post(
                url,
                json={"disposition": "prank", "end_call": "1"},
                headers={"X-CSRF-Token": web.csrf, "Accept": "application/json"},
            )
            assert r.status_code == 200, r.text
            assert r.json()["ended"] is True
        finally:
            web.close()
        wait_until(lambda: incident_status(server, caller) == "completed", 20, what="ended")
        done = incident_of(server, caller)
        assert done is not None and done["disposition"] == "prank"
        (ended,) = [e for e in done["events"] if e["kind"] == "ended_by_operator"]
        assert ended["detail"] == {"actor": "op1", "reason": "disposed prank"}
        status = [e for e in done["events"] if e["kind"] == "status"][-1]
        assert status["detail"]["reason"] == "ended_by_operator"
        # Every leg is down: the caller's and the operator's.
        assert all(leg["ended_at"] is not None for leg in done["legs"])
        run.kill()


def test_a_silent_caller_who_hangs_up_gets_a_priority_callback(tmp_path: Path) -> None:
    need("sipp", "sox")
    prompts = quick_prompts(tmp_path)
    with running_server(tmp_path, extra=CONFIG, prompts=prompts) as server:
        plain = start_caller(server, tmp_path / "plain", caller="0814000050", digits="1")
        assert plain.wait(60) == 0, plain.logs()
        # No key, no audio: flagged silent after ~7.6 s, hangs up in the queue at 12 s.
        silent = start_caller(server, tmp_path / "silent", caller="0814000051", talk_ms=12_000)
        assert silent.wait(60) == 0, silent.logs()
        for n in ("0814000050", "0814000051"):
            wait_until(lambda n=n: incident_status(server, n) == "abandoned", 20, what=n)
        assert _flags(server, "0814000051") == ["silent"]
        r = server.cli("callbacks", "list", "--json")
        assert r.returncode == 0, r.stderr
        rows = [(c["number"], c["priority"]) for c in json.loads(r.stdout)]
        # The silent caller's task is a priority one, listed before the older plain one.
        assert rows == [("0814000051", True), ("0814000050", False)]
