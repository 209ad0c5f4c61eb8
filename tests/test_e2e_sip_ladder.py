"""End-to-end: the SIP ladder of a transferred call (issue 16).

A SIPp caller, a baresip operator who transfers (REFER) to a SIPp agency
behind the trunk proxy: every leg's messages are kept with the incident, in
order, secrets masked, and the auditor's pcap export reads back with the
same count (our reader, and tshark when installed).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from callcenter112.sip.capture import read_pcap
from harness import (
    WebSession,
    baresip_operator,
    event_kinds,
    incident_of,
    need,
    operator_online,
    start_caller,
    talking_to,
    wait_until,
)
from test_e2e_handoff import agency_server, start_agency

pytestmark = [pytest.mark.peers, pytest.mark.slow]

CALLER = "081311116666"


def test_transferred_call_ladder_and_pcap(tmp_path: Path) -> None:
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
                server, tmp_path / "caller", caller=CALLER, digits="2", audio=True, talk_ms=8000
            )
            wait_until(lambda: talking_to(server, CALLER, "op1"), 30, what="bridged to op1")
            assert phone.command("transfer", "113").get("ok")
            wait_until(
                lambda: "transferred" in event_kinds(incident_of(server, CALLER) or {"events": []}),
                30,
                what="transferred to the agency",
            )
            assert caller.wait(60) == 0, caller.logs()
        assert agency.wait(30) == 0, agency.logs()
        incident = incident_of(server, CALLER)
        assert incident is not None
        incident_id = incident["id"]

        def rows() -> list[tuple[object, ...]]:
            return server.sql(
                "SELECT seq, at, direction, leg, data FROM sip_messages"
                " WHERE incident_id = ? ORDER BY seq",
                incident_id,
            )

        # The last BYE/200 of the agency leg reach the store within a flush.
        wait_until(
            lambda: any(
                str(r[3]).startswith("agency:")
                and bytes(r[4]).startswith(b"SIP/2.0 200")
                and b" BYE" in bytes(r[4]).split(b"CSeq:", 1)[-1][:40]  # type: ignore[arg-type]
                for r in rows()
            ),
            20,
            what="the agency leg's BYE answered in the capture",
        )
        kept = rows()
        legs = {str(r[3]) for r in kept}
        assert {"caller", "operator:op1", "agency:damkar"} <= legs, legs
        firsts = [bytes(r[4]).split(b"\r\n", 1)[0] for r in kept]  # type: ignore[arg-type]
        assert firsts[0].startswith(b"INVITE "), firsts[:3]
        assert kept[0][2] == "in" and kept[0][3] == "caller"
        ats = [float(r[1]) for r in kept]  # type: ignore[arg-type]
        assert ats == sorted(ats), "messages out of order"
        for leg in ("operator:op1", "agency:damkar"):
            first = next(bytes(r[4]) for r in kept if r[3] == leg)  # type: ignore[arg-type]
            assert first.startswith(b"INVITE "), (leg, first[:60])
        # The REFER from the operator's phone is on its leg, before the agency's INVITE.
        refer = next(i for i, f in enumerate(firsts) if f.startswith(b"REFER "))
        agency_invite = next(i for i, r in enumerate(kept) if r[3] == "agency:damkar")
        assert kept[refer][3] == "operator:op1" and refer < agency_invite
        # Digest responses never kept (op1's REGISTER is not an incident's anyway).
        assert not any(
            b'response="' in bytes(r[4]) and b'response="***"' not in bytes(r[4]) for r in kept
        )  # type: ignore[arg-type]

        auditor = WebSession(server, "auditor", "audit-secret")
        page = auditor.get(f"/telecom/incidents/{incident_id}/sip")
        assert page.status_code == 200, page.text[:300]
        pcap = auditor.get(f"/api/v1/incidents/{incident_id}/sip.pcap")
        assert pcap.status_code == 200, pcap.text[:300]
        auditor.close()
        packets = read_pcap(pcap.content)
        assert len(packets) == len(kept)
        if shutil.which("tshark"):
            path = tmp_path / "ladder.pcap"
            path.write_bytes(pcap.content)
            out = subprocess.run(
                ["tshark", "-r", str(path), "-T", "fields", "-e", "frame.number"],
                capture_output=True, text=True, check=True, timeout=60,
            )  # fmt: skip
            assert len(out.stdout.split()) == len(kept)
    finally:
        server.stop()
        server.kill()
