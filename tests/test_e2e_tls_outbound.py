"""The centre dials out over TLS (issue 11), against the real server and a real TLS peer.

The agency's side is Debian's baresip listening for SIP over TLS (its
certificate signed by a throw-away CA made here, tests/tls_certs.py) and
answering automatically; the trunk `t` says `transport = "tls"` and the
centre trusts the CA through `sip.tls_ca`. The telecom page's test call to
the agency is an agency call through that trunk: INVITE, 200, ACK, BYE.

Debian's SIPp 3.6.1 is built without OpenSSL ("To use a TLS transport you
must compile SIPp with OpenSSL"), so the TLS user agent here is baresip.

With a CA the agency's certificate does not chain to, the call fails with
a logged `tls_connect_failed` naming the reason, and the server goes on
taking 112 calls.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness import (
    Baresip,
    Server,
    WebSession,
    baresip_operator,
    event_kinds,
    free_port,
    incident_of,
    incident_status,
    need,
    operator_online,
    start_caller,
    wait_until,
)
from tls_certs import new_authority

pytestmark = [pytest.mark.peers, pytest.mark.slow]


class TlsAgency(Baresip):
    """baresip as the agency behind the carrier: no registration, answers
    every call to its number over TLS on `tls_port` (baresip listens for TLS
    one port above `sip_listen`)."""

    def __init__(self, directory: Path, *, number: str, certificate: Path) -> None:
        super().__init__(directory, user=number, password="unused", server_port=0)
        config = directory / "config"
        config.write_text(config.read_text() + f"sip_certificate {certificate}\n")
        (directory / "accounts").write_text(
            f"<sip:{number}@127.0.0.1;transport=tls>;regint=0;answermode=auto;"
            "audio_codecs=PCMA,PCMU\n"
        )
        self.tls_port = self.sip_port + 1


@dataclass
class Setup:
    server: Server
    agency: TlsAgency
    tls_port: int  # the centre's TLS listener: our Via sent-by and sips: Contact


@contextlib.contextmanager
def centre_and_agency(
    tmp_path: Path, *, agency_ca: str, number: str = "113", extra: str = ""
) -> Iterator[Setup]:
    """The centre (its own TLS listener, the trunk to the agency over TLS, the
    city CA as sip.tls_ca) and the far end answering `number` over TLS (agency
    damkar, or a citizen called back), whose certificate `agency_ca`
    ("city-ca" or a stranger's) signed; both running."""
    ca = new_authority(tmp_path / "ca", "city-ca")
    signer = ca if agency_ca == ca.name else new_authority(tmp_path / agency_ca, agency_ca)
    leaf = signer.issue(tmp_path / "agency-cert", "agency", ips=("127.0.0.1",))
    agency = TlsAgency(tmp_path / "agency", number=number, certificate=leaf.bundle)
    own = ca.issue(tmp_path / "centre-cert", "centre", ips=("127.0.0.1",))
    tls_port = free_port()
    server = Server(
        tmp_path / "server",
        trunk_proxy_port=agency.tls_port,
        trunk_extra='transport = "tls"\n',
        agencies=[("damkar", "113")],
        extra=extra,
        sip_extra=(
            f'tls_listen = "127.0.0.1:{tls_port}"\n'
            f'tls_certificate = "{own.certificate}"\ntls_key = "{own.key}"\n'
            f'tls_ca = "{ca.certificate}"\n'
        ),
    )
    agency.start()
    try:
        server.start()
        try:
            yield Setup(server, agency, tls_port)
        finally:
            try:
                server.stop()
            finally:
                server.kill()
    finally:
        agency.stop()
    assert "Traceback" not in server.output()


def test_call(server: Server) -> dict[str, object]:
    web = WebSession(server, "admin", "admin-secret")
    try:
        answer = web.client.post(
            "/telecom/test-call",
            json={"target": "damkar"},
            headers={"X-CSRF-Token": web.csrf, "Accept": "application/json"},
        )
        assert answer.status_code == 200, answer.text[:300]
        result = answer.json()
        assert isinstance(result, dict)
        return result
    finally:
        web.close()


test_call.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test


def test_agency_call_goes_out_over_tls_and_completes(tmp_path: Path) -> None:
    need("baresip")
    with centre_and_agency(tmp_path, agency_ca="city-ca") as setup:
        server, agency, tls_port = setup.server, setup.agency, setup.tls_port
        result = test_call(server)
        assert result["status"] == 200 and result["ok"] is True, result
        out = server.events("sip_out")
        invites = [e for e in out if e["first_line"].startswith("INVITE sip:113@")]
        assert invites, "the agency INVITE"
        assert invites[0]["peer"] == f"tls:127.0.0.1:{agency.tls_port}"
        message = invites[0]["message"]
        assert f"Via: SIP/2.0/TLS 127.0.0.1:{tls_port};" in message, message
        assert f"Contact: <sips:112@127.0.0.1:{tls_port}>" in message, message
        # ACK and BYE went on the same TLS connection; the agency answered the BYE.
        for method in ("ACK", "BYE"):
            sent = [e for e in out if e["first_line"].startswith(f"{method} ")]
            assert sent and sent[0]["peer"].startswith("tls:"), method
        assert any(
            e["first_line"].startswith("SIP/2.0 200")
            and e["peer"].startswith("tls:")
            and " BYE\r\n" in (e.get("message") or "")
            for e in server.events("sip_in")
        ), "the agency's 200 to our BYE, over TLS"
        assert not server.events("tls_connect_failed")
    assert "Call established" in agency.output()


def test_an_agency_certificate_from_another_ca_fails_the_call_not_the_server(
    tmp_path: Path,
) -> None:
    need("baresip", "sipp")
    with centre_and_agency(tmp_path, agency_ca="other-ca") as setup:
        server, agency = setup.server, setup.agency
        result = test_call(server)
        assert result["ok"] is False and result["status"] == 503, result
        (failed,) = server.events("tls_connect_failed")
        assert failed["level"] == "error", failed
        assert failed["peer"] == f"tls:127.0.0.1:{agency.tls_port}"
        assert "certificate not accepted" in failed["reason"], failed
        # The server keeps serving: a citizen's 112 call over the trunk.
        number = "0821600077"
        caller = start_caller(server, tmp_path / "caller", caller=number, talk_ms=500)
        assert caller.wait(60) == 0, caller.logs()
        wait_until(lambda: incident_status(server, number) is not None, 20, what="incident")
    assert "Call established" not in agency.output()


@pytest.mark.parametrize("citizen", ["081311112222"])
def test_callback_reaches_the_citizen_over_tls(tmp_path: Path, citizen: str) -> None:
    """The call flow's own outbound leg (callflow/callbacks.py) over the TLS trunk:
    a caller gives up in the queue, an operator (baresip over UDP) calls back,
    and the citizen's phone answers over TLS."""
    need("baresip", "sipp")
    fast = "input_timeout_s = 2\n[queue]\nwrapup_s = 1\nring_timeout_s = 8"
    with centre_and_agency(tmp_path, agency_ca="city-ca", number=citizen, extra=fast) as setup:
        server, phone, tls_port = setup.server, setup.agency, setup.tls_port
        caller = start_caller(server, tmp_path / "caller", caller=citizen, digits="1", talk_ms=2500)
        assert caller.wait(60) == 0, caller.logs()
        wait_until(lambda: incident_status(server, citizen) == "abandoned", 20, what="abandoned")
        incident = incident_of(server, citizen)
        assert incident is not None
        (task,) = [c for c in incident["callbacks"] if c["status"] == "open"]
        with baresip_operator(
            tmp_path / "op1", user="op1", password="secret1", server_port=server.sip_port
        ):
            wait_until(lambda: operator_online(server, "op1"), 20, what="op1 registered")
            web = WebSession(server, "op1", "secret1")
            try:
                answer = web.post(f"/console/callbacks/{task['id']}/call")
                assert answer.status_code < 400, answer.text
                wait_until(
                    lambda: (
                        "callback_answered"
                        in event_kinds(incident_of(server, citizen) or {"events": []})
                    ),
                    40,
                    what="the citizen answered over TLS",
                )
            finally:
                web.close()
        # The operator hung up: the citizen's phone got its BYE over TLS.
        out = server.events("sip_out")
        wait_until(
            lambda: any(
                e["first_line"].startswith("BYE ") and e["peer"].startswith("tls:")
                for e in server.events("sip_out")
            ),
            20,
            what="BYE to the citizen over TLS",
        )
        (invite,) = [e for e in out if e["first_line"].startswith(f"INVITE sip:{citizen}@")]
        assert invite["peer"] == f"tls:127.0.0.1:{phone.tls_port}"
        assert f"Via: SIP/2.0/TLS 127.0.0.1:{tls_port};" in invite["message"]
        assert f"Contact: <sips:112@127.0.0.1:{tls_port}>" in invite["message"]
        attempts = [
            a
            for c in (incident_of(server, citizen) or {"callbacks": []})["callbacks"]
            for a in c.get("attempts", [])
        ]
        assert any(a["result"] == "answered" for a in attempts), attempts
    assert "Call established" in phone.output()
