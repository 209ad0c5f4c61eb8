"""End-to-end: the queue and the offers to operators, with real phones.

SIPp citizens, baresip operators (and SIPp playing an operator's phone that
is busy or answers across our CANCEL) against the running server (DESIGN §2
phases 4, 5 and 8; issue 4). Callers that wait for an operator use long
`talk_ms`: the call is ended by the operator (baresip `hangup`) once the
test has seen it bridged, so no outcome depends on how fast this shared
machine is. Waits are `wait_until` with generous timeouts; nothing asserts
that anything was fast (only that a ring timeout did not fire early).
"""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path
from typing import Any

import pytest

from harness import (
    Baresip,
    Operator,
    Server,
    baresip_operator,
    check_incident_json,
    event_kinds,
    events_of,
    incident_of,
    incident_status,
    iso_seconds,
    need,
    operator_online,
    operator_states,
    running_server,
    sip_trace,
    sipp_operator_phone,
    start_caller,
    talking_to,
    wait_until,
)

pytestmark = pytest.mark.peers

QUEUE = """
menu_tries = 1
input_timeout_s = 1
[queue]
ring_timeout_s = {ring}
wrapup_s = 1
max_missed = {missed}
"""


def _queue(ring: float = 4, missed: int = 2) -> str:
    return QUEUE.format(ring=ring, missed=missed)


def _online(server: Server, *phones: Baresip) -> None:
    for phone in phones:
        wait_until(lambda p=phone: operator_online(server, p.user), 20, what=f"{phone.user} online")


def _details(incident: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [e["detail"] for e in events_of(incident, kind)]


def test_three_callers_one_operator_served_in_order(tmp_path: Path) -> None:
    """Same priority → arrival order; the one operator is never in two calls;
    every phase timestamp is written and wrap-up ends with `wrapped_up_at`."""
    need("sipp", "baresip")
    numbers = ["0813000001", "0813000002", "0813000003"]
    with (
        running_server(tmp_path, extra=_queue()) as server,
        baresip_operator(
            tmp_path / "op1", user="op1", password="secret1", server_port=server.sip_port
        ) as phone,
    ):
        _online(server, phone)
        callers = []
        for number in numbers:
            callers.append(
                start_caller(server, tmp_path / number, caller=number, digits="1", talk_ms=90_000)
            )
            # Arrival order is the order the INVITEs reached the trunk.
            wait_until(lambda n=number: incident_status(server, n), 20, what=f"{number} arrived")
        for number in numbers:
            wait_until(
                lambda n=number: talking_to(server, n, "op1"), 60, what=f"op1 talks to {number}"
            )
            # The operator is in exactly this one call right now.
            talking = server.sql(
                "SELECT caller FROM incidents WHERE status = 'active' AND operator_answered_at"
                " IS NOT NULL"
            )
            assert talking == [(number,)]
            time.sleep(3)  # a short emergency
            phone.command("hangup")
            wait_until(
                lambda n=number: incident_status(server, n) == "completed",
                20,
                what=f"{number} completed",
            )
        for caller in callers:
            assert caller.wait(60) == 0, caller.logs()
        wait_until(
            lambda: (
                server.sql("SELECT count(*) FROM incidents WHERE wrapped_up_at IS NOT NULL")
                == [(3,)]
            ),
            20,
            what="every wrap-up over",
        )
        incidents = [incident_of(server, n) for n in numbers]
        for number, incident in zip(numbers, incidents, strict=True):
            assert incident is not None
            check_incident_json(incident)
            assert incident["caller"] == number
            assert incident["category"] == "medical"
            assert incident["status"] == "completed"
            assert incident["operator"] == "op1"
            # DESIGN §2: every phase timestamp, in phase order.
            stamps = [
                iso_seconds(incident[k])
                for k in (
                    "arrived_at",
                    "answered_at",
                    "ivr_done_at",
                    "queued_at",
                    "offered_at",
                    "operator_answered_at",
                    "ended_at",
                    "wrapped_up_at",
                )
            ]
            assert stamps == sorted(stamps), (number, stamps)
            sla = stamps[5] - stamps[0]
            assert incident["sla_s"] == pytest.approx(sla, abs=0.002)
            assert _details(incident, "status")[-1]["reason"] == "operator_hung_up"
            assert _details(incident, "offered") == [{"operator": "op1"}]
        # Served in arrival order, offers and answers alike.
        for key in ("arrived_at", "offered_at", "operator_answered_at", "ended_at"):
            values = [iso_seconds(i[key]) for i in incidents if i is not None]
            assert values == sorted(values), key
        # Never two calls at once: each call ended before the next was answered,
        # and the operator's state history never skips wrap-up.
        for done, following in itertools.pairwise(incidents):
            assert done is not None and following is not None
            assert iso_seconds(done["ended_at"]) <= iso_seconds(following["offered_at"])
        states = [s for s, _ in operator_states(server, "op1")]
        assert states.count("on_call") == 3
        for i, state in enumerate(states[:-1]):
            if state == "on_call":
                assert states[i + 1] == "wrap_up", states
            if state == "reserved":
                assert states[i + 1] == "on_call", states


def test_operator_who_does_not_answer_is_skipped(tmp_path: Path) -> None:
    """op1's phone rings and rings: after ring_timeout_s it is CANCELled, op1
    gets a missed mark (max_missed=1: paused), and op2 answers the caller."""
    need("sipp", "baresip")
    number = "0814000001"
    ops = [Operator("op1", "secret1"), Operator("op2", "secret2")]
    with running_server(tmp_path, operators=ops, extra=_queue(ring=4, missed=1)) as server:
        with baresip_operator(
            tmp_path / "op1",
            user="op1",
            password="secret1",
            server_port=server.sip_port,
            answermode="manual",
        ) as op1:
            _online(server, op1)  # op1 first: the longest idle gets the first offer
            with baresip_operator(
                tmp_path / "op2", user="op2", password="secret2", server_port=server.sip_port
            ) as op2:
                _online(server, op2)
                caller = start_caller(
                    server, tmp_path / "caller", caller=number, digits="2", talk_ms=90_000
                )
                wait_until(lambda: talking_to(server, number, "op2"), 60, what="op2 answers")
                time.sleep(1)
                op2.command("hangup")
                assert caller.wait(60) == 0, caller.logs()
                wait_until(lambda: incident_status(server, number) == "completed", 20)
                # op1's phone got the CANCEL and answered it (and 487 to the INVITE).
                assert sip_trace(server, "sip_out", "CANCEL", op1.sip_port)
                assert sip_trace(server, "sip_in", "SIP/2.0 487", op1.sip_port)
        incident = incident_of(server, number)
        assert incident is not None
        check_incident_json(incident)
        assert incident["category"] == "fire"
        assert incident["operator"] == "op2"
        assert incident["status"] == "completed"
        kinds = [
            (e["kind"], e["detail"].get("operator"))
            for e in incident["events"]
            if e["kind"] in ("offered", "offer_cancelled", "operator_answered")
        ]
        assert kinds == [
            ("offered", "op1"),
            ("offer_cancelled", "op1"),
            ("offered", "op2"),
            ("operator_answered", "op2"),
        ]
        assert _details(incident, "offer_cancelled")[0]["reason"] == "no_answer"
        # Cancelled by the ring timeout (4 s), not sooner.
        (offered_op1, _offered_op2) = events_of(incident, "offered")
        (cancelled,) = events_of(incident, "offer_cancelled")
        assert iso_seconds(cancelled["at"]) - iso_seconds(offered_op1["at"]) >= 3.9
        # The missed offer auto-paused op1 (max_missed = 1); op2 was never paused.
        assert ("paused", "missed_calls") in operator_states(server, "op1")
        assert all(state != "paused" for state, _ in operator_states(server, "op2"))
        # The missed ring shows in the operator's history, not as op1's call.
        assert server.sql("SELECT count(*) FROM incidents WHERE operator = 'op1'") == [(0,)]


def test_busy_operator_is_skipped_at_once(tmp_path: Path) -> None:
    """A phone answering 486 Busy Here: the next operator is offered the call
    at once - no CANCEL, no ring timeout, no missed mark."""
    need("sipp", "baresip")
    number = "0815000001"
    ops = [Operator("busy", "busy-secret"), Operator("op2", "secret2")]
    with running_server(tmp_path, operators=ops, extra=_queue(ring=30, missed=1)) as server:
        phone = sipp_operator_phone(server, tmp_path / "busy", user="busy", password="busy-secret")
        try:
            wait_until(lambda: operator_online(server, "busy"), 20, what="busy online")
            with baresip_operator(
                tmp_path / "op2", user="op2", password="secret2", server_port=server.sip_port
            ) as op2:
                _online(server, op2)
                caller = start_caller(
                    server, tmp_path / "caller", caller=number, digits="4", talk_ms=90_000
                )
                wait_until(lambda: talking_to(server, number, "op2"), 60, what="op2 answers")
                time.sleep(1)
                op2.command("hangup")
                assert caller.wait(60) == 0, caller.logs()
                wait_until(lambda: incident_status(server, number) == "completed", 20)
        finally:
            phone.kill()
        incident = incident_of(server, number)
        assert incident is not None
        check_incident_json(incident)
        assert incident["category"] == "police"
        assert incident["operator"] == "op2"
        kinds = [
            (e["kind"], e["detail"].get("operator"))
            for e in incident["events"]
            if e["kind"] in ("offered", "offer_failed", "offer_cancelled", "operator_answered")
        ]
        assert kinds == [
            ("offered", "busy"),
            ("offer_failed", "busy"),
            ("offered", "op2"),
            ("operator_answered", "op2"),
        ]
        assert _details(incident, "offer_failed")[0]["status"] == 486
        # Busy is not a missed call: no pause.
        assert all(state != "paused" for state, _ in operator_states(server, "busy"))
        assert not any(e["first_line"].startswith("CANCEL") for e in server.events("sip_out")), (
            "a busy phone must not be CANCELled"
        )


def test_caller_hanging_up_in_queue_is_abandoned_with_callback(tmp_path: Path) -> None:
    """The caller gives up while op1's phone rings: op1 is CANCELled cleanly
    (no missed mark), the incident is `abandoned` and a callback task exists."""
    need("sipp", "baresip")
    number = "0816000001"
    with running_server(tmp_path, extra=_queue(ring=60, missed=1)) as server:
        with baresip_operator(
            tmp_path / "op1",
            user="op1",
            password="secret1",
            server_port=server.sip_port,
            answermode="manual",
        ) as op1:
            _online(server, op1)
            caller = start_caller(
                server, tmp_path / "caller", caller=number, digits="3", talk_ms=4000
            )
            assert caller.wait(60) == 0, caller.logs()
            wait_until(lambda: incident_status(server, number) == "abandoned", 20)
            wait_until(
                lambda: sip_trace(server, "sip_in", "SIP/2.0 487", op1.sip_port),
                20,
                what="op1's INVITE ended with 487",
            )
            assert sip_trace(server, "sip_out", "CANCEL", op1.sip_port)
            # op1 is free again, not paused for a call the caller abandoned.
            wait_until(
                lambda: operator_states(server, "op1")[-1][0] == "available",
                10,
                what="op1 available again",
            )
        incident = incident_of(server, number)
        assert incident is not None
        check_incident_json(incident)
        assert incident["status"] == "abandoned"
        assert incident["category"] == "disaster"
        assert incident["operator"] is None
        assert incident["operator_answered_at"] is None
        kinds = event_kinds(incident)
        assert kinds.index("ringing") < kinds.index("offer_cancelled") < kinds.index("status")
        assert _details(incident, "offer_cancelled")[0]["reason"] == "caller_left"
        assert _details(incident, "status")[-1]["reason"] == "caller_hung_up_in_queue"
        assert all(state != "paused" for state, _ in operator_states(server, "op1"))
        result = server.cli("callbacks", "list", "--json")
        assert result.returncode == 0, result.stderr
        (callback,) = [c for c in json.loads(result.stdout) if c["incident_id"] == incident["id"]]
        assert callback["number"] == number
        assert callback["status"] == "open"
        assert callback["reason"] == "abandoned"


def test_answer_crossing_cancel_is_hung_up(tmp_path: Path) -> None:
    """RFC 3261 §9.1: the 200 OK that crosses our CANCEL (ring timeout) is
    ACKed and BYEd, never bridged; the caller goes to the next operator."""
    need("sipp", "baresip")
    number = "0817000001"
    ops = [Operator("late", "late-secret"), Operator("op2", "secret2")]
    with running_server(tmp_path, operators=ops, extra=_queue(ring=4, missed=2)) as server:
        phone = sipp_operator_phone(
            server,
            tmp_path / "late",
            user="late",
            password="late-secret",
            scenario="operator_crossing.xml",
            calls=1,
        )
        try:
            wait_until(lambda: operator_online(server, "late"), 20, what="late online")
            with baresip_operator(
                tmp_path / "op2", user="op2", password="secret2", server_port=server.sip_port
            ) as op2:
                _online(server, op2)
                caller = start_caller(
                    server, tmp_path / "caller", caller=number, digits="1", talk_ms=90_000
                )
                # The late phone's scenario only passes if it got ACK and BYE.
                assert phone.wait(60) == 0, phone.logs()
                wait_until(lambda: talking_to(server, number, "op2"), 60, what="op2 answers")
                time.sleep(1)
                op2.command("hangup")
                assert caller.wait(60) == 0, caller.logs()
                wait_until(lambda: incident_status(server, number) == "completed", 20)
        finally:
            phone.kill()
        incident = incident_of(server, number)
        assert incident is not None
        assert incident["operator"] == "op2"
        answered = _details(incident, "operator_answered")
        assert answered == [{"operator": "op2"}]
        kinds = [
            (e["kind"], e["detail"].get("operator"))
            for e in incident["events"]
            if e["kind"] in ("offered", "offer_cancelled", "operator_answered")
        ]
        assert kinds == [
            ("offered", "late"),
            ("offer_cancelled", "late"),
            ("offered", "op2"),
            ("operator_answered", "op2"),
        ]
        assert server.sql("SELECT count(*) FROM incidents WHERE operator = 'late'") == [(0,)]


def test_answer_crossing_cancel_after_caller_left_is_hung_up(tmp_path: Path) -> None:
    """The caller hangs up while the operator's phone rings; the phone answers
    just as our CANCEL arrives. The call is already over: the late 200 OK is
    still ACKed and BYEd, so the operator's phone is not left in a ghost call."""
    need("sipp", "baresip")
    number = "0818000001"
    ops = [Operator("late", "late-secret")]
    with running_server(tmp_path, operators=ops, extra=_queue(ring=60, missed=2)) as server:
        phone = sipp_operator_phone(
            server,
            tmp_path / "late",
            user="late",
            password="late-secret",
            scenario="operator_crossing.xml",
            calls=1,
        )
        try:
            wait_until(lambda: operator_online(server, "late"), 20, what="late online")
            caller = start_caller(
                server, tmp_path / "caller", caller=number, digits="1", talk_ms=3000
            )
            assert caller.wait(60) == 0, caller.logs()
            # The phone's scenario only passes if it got the ACK and the BYE.
            assert phone.wait(60) == 0, phone.logs()
        finally:
            phone.kill()
        wait_until(lambda: incident_status(server, number) == "abandoned", 20)
        assert any(e.get("to") == "late" for e in server.events("late_answer_hung_up"))
        # The operator is free again, and was not marked as having missed a call.
        wait_until(
            lambda: operator_states(server, "late")[-1][0] == "available", 10, what="late free"
        )
    incident = incident_of(server, number)
    assert incident is not None
    assert incident["operator"] is None
    assert _details(incident, "offer_cancelled") == [{"operator": "late", "reason": "caller_left"}]
    assert server.sql("SELECT count(*) FROM callbacks WHERE incident_id = ?", incident["id"]) == [
        (1,)
    ]
