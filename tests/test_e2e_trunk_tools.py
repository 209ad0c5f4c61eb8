"""End-to-end: trunk qualify, probe and counters on the running server (issue 16).

A SIPp UAS plays the carrier's proxy: it answers three qualify OPTIONS and
then is gone. The trunk goes up, then down (the `trunk_down` alarm) after
two unanswered probes; a probe from the telecom page then reports no
answer; a SIPp citizen's call is counted on the trunk.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from harness import (
    SCENARIOS,
    Server,
    WebSession,
    free_port,
    incident_status,
    need,
    start_caller,
    start_sipp_in,
    wait_until,
)

pytestmark = [pytest.mark.peers, pytest.mark.slow]


def _health(web: WebSession) -> dict[str, object]:
    answer = web.get("/api/v1/trunks/health")
    assert answer.status_code == 200, answer.text[:300]
    trunk = answer.json()["trunks"]["t"]
    assert isinstance(trunk, dict)
    return trunk


def _post_json(web: WebSession, path: str, body: dict[str, object]) -> dict[str, object]:
    answer = web.client.post(
        path, json=body, headers={"X-CSRF-Token": web.csrf, "Accept": "application/json"}
    )
    assert answer.status_code == 200, answer.text[:300]
    result = answer.json()
    assert isinstance(result, dict)
    return result


def test_carrier_that_stops_answering_raises_the_alarm(tmp_path: Path) -> None:
    need("sipp")
    proxy_port = free_port()
    server = Server(tmp_path / "server", trunk_proxy_port=proxy_port, trunk_extra="qualify_s = 1")
    carrier = start_sipp_in(
        tmp_path / "carrier",
        [
            "sipp", "-sf", str(SCENARIOS / "carrier_options_uas.xml"), "-i", "127.0.0.1",
            "-p", str(proxy_port), "-m", "3", "-nostdin", "-timeout", "60s", "-trace_err",
        ],
        name="carrier",
    )  # fmt: skip
    server.start()
    try:
        web = WebSession(server, "admin", "admin-secret")
        up = wait_until(
            lambda: (h := _health(web))["qualify"]["state"] == "up" and h,  # type: ignore[index]
            20,
            what="trunk up",
        )
        assert up["qualify"]["last_status"] == 200  # type: ignore[index]
        assert carrier.wait(30) == 0, carrier.logs()
        wait_until(lambda: server.events("trunk_down"), 30, what="the trunk_down alarm")
        (alarm,) = server.events("trunk_down")
        assert alarm["trunk"] == "t" and alarm["previous"] == "up"
        assert _health(web)["qualify"]["state"] == "down"  # type: ignore[index]

        probe = _post_json(web, "/telecom/trunks/t/probe", {})
        assert probe["answered"] is False

        number = "0821600030"
        caller = start_caller(server, tmp_path / "caller", caller=number, talk_ms=500)
        caller.wait(60)
        wait_until(lambda: incident_status(server, number) is not None, 20)
        counters = _health(web)["counters"]
        assert counters["today"]["calls"] == 1, counters  # type: ignore[index]
        web.close()
    finally:
        try:
            server.stop()
        finally:
            server.kill()
            carrier.kill()


def test_test_call_to_an_agency_is_answered_then_hung_up(tmp_path: Path) -> None:
    """The telecom page's test call: INVITE to the agency over its trunk, the
    200 seen, then BYE (the SIPp agency's scenario ends only on that BYE);
    an agency that answers 486 is reported busy and counted as a carrier reject."""
    need("sipp")
    from test_e2e_handoff import agency_server, start_agency

    server, agency_port = agency_server(tmp_path, trunk_extra="qualify_s = 0")
    server.start()
    try:
        web = WebSession(server, "admin", "admin-secret")

        def test_call(target: str) -> dict[str, object]:
            return _post_json(web, "/telecom/test-call", {"target": target})

        agency = start_agency(tmp_path / "agency", agency_port)
        answered = test_call("damkar")
        assert answered["status"] == 200 and answered["ok"] is True, answered
        assert agency.wait(30) == 0, agency.logs()  # it got its BYE

        busy = start_agency(tmp_path / "busy", agency_port, scenario="agency_busy.xml")
        refused = test_call("ambulans")
        assert refused["status"] == 486 and refused["ok"] is False, refused
        busy.wait(30)
        counters = _health(web)["counters"]
        assert counters["today"]["carrier_errors"] == {"486": 1}, counters  # type: ignore[index]
        web.close()
    finally:
        try:
            server.stop()
        finally:
            server.kill()
