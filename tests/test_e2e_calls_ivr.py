"""End-to-end: citizens (SIPp) through the IVR into the right queue, and capacity.

Real server process, real SIPp callers on loopback (DESIGN §2 phases 1-4,
issue 4). No operator is on duty here: every caller is answered, goes through
the menu, waits in the queue and hangs up there, so each incident ends
`abandoned` with a callback task — the category is what the IVR decided.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness import (
    SippRun,
    check_incident_json,
    event_kinds,
    events_of,
    incident_of,
    incident_status,
    need,
    quick_prompts,
    running_server,
    sipp_command,
    start_caller,
    start_sipp_in,
    wait_until,
)

pytestmark = pytest.mark.peers

FAST_IVR = """
menu_tries = 1
input_timeout_s = 1
[queue]
ring_timeout_s = 4
wrapup_s = 1
"""


def _finish(callers: list[SippRun]) -> None:
    failed = [c for c in callers if c.wait(120) != 0]
    assert not failed, "\n".join(c.logs() for c in failed)


def test_digits_choose_the_category(tmp_path: Path) -> None:
    """1-4 → medical/fire/disaster/police; nothing → unknown after one menu;
    the English key then a digit; the operator key → unknown at once."""
    need("sipp", "sox")
    prompts = quick_prompts(tmp_path)  # greeting + menu ≈ 4 s for the silent caller
    cases = {
        # caller number: (keys, category, IVR finish reason, language)
        "0811000001": ("1", "medical", "digit", "id"),
        "0811000002": ("2", "fire", "digit", "id"),
        "0811000003": ("3", "disaster", "digit", "id"),
        "0811000004": ("4", "police", "digit", "id"),
        "0811000005": ("", "unknown", "no_input", "id"),
        "0811000009": ("91", "medical", "digit", "en"),
        "0811000000": ("0", "unknown", "operator_key", "id"),
    }
    with running_server(tmp_path, extra=FAST_IVR, prompts=prompts) as server:
        callers = []
        for number, (keys, *_rest) in cases.items():
            # The caller who presses nothing stays until the menu has played out
            # and the input timer fired; the others press during the greeting.
            # It talks (SIPp's g711a.pcap): a caller who says nothing at all is
            # a silent caller (issue 12, test_e2e_prank.py), not "no input".
            talk_ms = 2500 if keys else 9000
            callers.append(
                start_caller(
                    server,
                    tmp_path / f"sipp-{number}",
                    caller=number,
                    digits=keys,
                    pause_before_ms=300,
                    talk_ms=talk_ms,
                    audio=not keys,
                )
            )
        _finish(callers)
        wait_until(
            lambda: all(incident_status(server, n) == "abandoned" for n in cases),
            30,
            what="every incident closed",
        )
        callbacks = server.cli("callbacks", "list", "--json")
        assert callbacks.returncode == 0, callbacks.stderr
        open_callbacks = json.loads(callbacks.stdout)
        for number, (keys, category, reason, language) in cases.items():
            incident = incident_of(server, number)
            assert incident is not None, number
            check_incident_json(incident)
            assert incident["caller"] == number
            assert incident["category"] == category, (number, incident)
            assert incident["language"] == language, (number, incident)
            assert incident["status"] == "abandoned"
            assert incident["operator"] is None
            assert incident["operator_answered_at"] is None
            assert incident["ended_at"] is not None
            (done,) = events_of(incident, "ivr_done")
            assert done["detail"]["reason"] == reason, (number, done)
            assert done["detail"]["digits"] == keys, (number, done)
            kinds = event_kinds(incident)
            assert kinds.index("arrived") < kinds.index("ivr_done") < kinds.index("queued")
            for stamp in ("answered_at", "ivr_done_at", "queued_at"):
                assert incident[stamp] is not None, (number, stamp)
            # Recorded from the answer, IVR and queue included (DESIGN §2.2).
            (recording,) = incident["recordings"]
            assert recording["channels"] == 2
            assert recording["duration_s"] > 1.0
            assert (server.recordings / recording["path"]).exists()
            assert any(cb["incident_id"] == incident["id"] for cb in open_callbacks), number


def test_capacity_refuses_with_retry_after(tmp_path: Path) -> None:
    """`[sip] max_calls`: callers up to it are answered and kept; one more gets
    503 + Retry-After, and the kept callers are not disturbed."""
    need("sipp", "sox")
    with running_server(
        tmp_path, extra=FAST_IVR, sip_extra="max_calls = 2\nretry_after_s = 7"
    ) as server:
        kept = [
            start_caller(
                server, tmp_path / f"kept-{i}", caller=f"081200000{i}", digits="1", talk_ms=10_000
            )
            for i in (1, 2)
        ]
        wait_until(
            lambda: (
                server.sql("SELECT count(*) FROM incidents WHERE answered_at IS NOT NULL") == [(2,)]
            ),
            30,
            what="two callers answered",
        )
        assert all(c.running() for c in kept), "the kept callers must still be talking"
        refused_dir = tmp_path / "refused"
        refused = start_sipp_in(
            refused_dir,
            sipp_command(server.sip_port, scenario="caller_rejected.xml", timeout_s=30),
            name="refused caller",
        )
        assert refused.wait(60) == 0, refused.logs()
        assert any(
            e["first_line"] == "SIP/2.0 503 Service Unavailable"
            and "Retry-After: 7" in e.get("message", "")
            for e in server.events("sip_out")
        )
        assert all(c.running() for c in kept), "a refused caller must not disturb the others"
        _finish(kept)
        wait_until(
            lambda: all(incident_status(server, f"081200000{i}") == "abandoned" for i in (1, 2)),
            30,
            what="kept incidents closed",
        )
        for i in (1, 2):
            incident = incident_of(server, f"081200000{i}")
            assert incident is not None
            assert incident["category"] == "medical"
            assert (
                events_of(incident, "status")[-1]["detail"]["reason"] == "caller_hung_up_in_queue"
            )
        # The refused call is not a silent loss: an interrupted incident with a
        # callback task (the carrier may have routed it elsewhere; a callback checks).
        refused_incident = wait_until(lambda: incident_of(server, "0819999999"), 20)
        assert refused_incident["status"] == "interrupted"
        assert events_of(refused_incident, "refused")[0]["detail"]["status"] == 503
        assert events_of(refused_incident, "status")[-1]["detail"]["reason"] == "refused_capacity"
        assert [c["number"] for c in refused_incident["callbacks"]] == ["0819999999"]
