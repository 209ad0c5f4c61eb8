"""Caller location in the running centre (issue 13), with SIPp citizens.

Each SIPp INVITE carries a multipart/mixed body (SDP + PIDF-LO, ``cid:``) or
a ``Geolocation: <https:…>`` reference to a local HTTPS server whose
certificate a test CA signed (``[location] ca_file``). Every call must be
answered 200 — location or none, hostile or not — and the incident must show
the position or say why it could not (``location.fixes[].reason``). AML
messages (the issue's published ELS vector, SMS v1/v2) posted during a live
SIPp call are matched to it.
"""

from __future__ import annotations

import contextlib
import http.server
import ssl
import subprocess
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness import (
    SCENARIOS,
    Server,
    dtmf_pcap,
    events_of,
    free_range,
    incident_of,
    need,
    running_server,
    sipp_command,
    start_sipp_in,
    wait_until,
)
from location_samples import AMBON, HOSTILE, SHAPES, pidf

pytestmark = [pytest.mark.slow, pytest.mark.peers]

MEDIA_PORT = free_range(4)[0]  # SIPp's -mp: the SDP in the -key body names it literally
SDP = (
    "v=0\r\no=citizen 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    f"m=audio {MEDIA_PORT} RTP/AVP 8 0 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:0 PCMU/8000\r\n"
    "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=ptime:20\r\n"
)
BOUNDARY = "loc-boundary-7f3a"
PROVIDER = "EmergencyCallData.ProviderInfo"  # RFC 7852 §4.1


def multipart(*parts: tuple[str, str | None, bytes]) -> bytes:
    """(media type, Content-ID or None, body) parts as one multipart/mixed body (CRLF)."""
    out = b""
    for media, cid, body in parts:
        head = f"--{BOUNDARY}\r\nContent-Type: {media}\r\n"
        if cid:
            head += f"Content-ID: <{cid}>\r\n"
        out += head.encode() + b"\r\n" + body + b"\r\n"
    return out + f"--{BOUNDARY}--\r\n".encode()


def press(key: str) -> str:
    if not key:
        return ""
    return (
        '  <pause milliseconds="300"/>\n'
        f'  <nop><action><exec play_pcap_audio="{dtmf_pcap(key)}"/></action></nop>\n'
        '  <pause milliseconds="600"/>'
    )


def location_call(
    server: Server,
    directory: Path,
    *,
    caller: str,
    headers: list[str],
    body: bytes,
    content_type: str = f'multipart/mixed;boundary="{BOUNDARY}"',
    talk_ms: int = 2500,
    key: str = "",
) -> Any:
    """One SIPp citizen: the INVITE with `headers` and `body`, answered, presses `key`
    (RFC 4733) if given, hangs up after `talk_ms`."""
    need("sipp")
    directory.mkdir(parents=True, exist_ok=True)
    lines = [f"      Content-Type: {content_type}", *(f"      {h}" for h in headers)]
    text = (
        (SCENARIOS / "caller_location.xml.in")
        .read_text()
        .replace("@CALLER@", caller)
        .replace("@HEADERS@", "\n".join(lines))
        .replace("@TALK_MS@", str(talk_ms))
        .replace("@MEDIA@", press(key))
    )
    scenario = directory / "caller_location.xml"
    scenario.write_text(text)
    cmd = sipp_command(
        server.sip_port,
        scenario=str(scenario),
        timeout_s=60,
        media_port=MEDIA_PORT if key else None,
        extra=["-aa", "-key", "body", body.decode("latin-1")],
    )
    return start_sipp_in(directory, cmd, name=f"caller {caller}")


def sdp_call(
    server: Server, directory: Path, caller: str, reference: str = "", *, talk_ms: int = 2500
) -> Any:
    """A plain-SDP INVITE, with ``Geolocation: <reference>`` when one is given."""
    headers = [f"Geolocation: <{reference}>"] if reference else []
    return location_call(
        server,
        directory,
        caller=caller,
        headers=headers,
        body=SDP.encode(),
        content_type="application/sdp",
        talk_ms=talk_ms,
    )


def pidf_calls(
    server: Server,
    directory: Path,
    documents: dict[str, bytes],
    prefix: str,
    *,
    talk_ms: int = 2500,
    key: str = "",
) -> dict[str, tuple[str, Any]]:
    """One SIPp call per PIDF-LO document (by value, ``cid:``), all at once:
    name → (caller number, the run)."""
    runs = {}
    for i, (name, document) in enumerate(documents.items()):
        caller = f"{prefix}{i:05d}"
        cid = f"loc{i}@carrier.example"
        runs[name] = (
            caller,
            location_call(
                server,
                directory / f"sipp-{name}",
                caller=caller,
                headers=[f"Geolocation: <cid:{cid}>", "Geolocation-Routing: no"],
                body=multipart(
                    ("application/sdp", None, SDP.encode()),
                    ("application/pidf+xml", cid, document),
                ),
                talk_ms=talk_ms,
                key=key,
            ),
        )
    return runs


def located(server: Server, caller: str) -> bool:
    incident = incident_of(server, caller)
    return bool(incident and incident["location"]["fixes"])


def answered_location(server: Server, run: Any, caller: str) -> dict[str, Any]:
    """Wait for the SIPp call to end well (200 received, hung up); the incident's JSON."""
    assert run.wait(60) == 0, run.logs()
    assert "SIP/2.0 200 OK" in run.logs(), run.logs()

    def ended() -> dict[str, Any] | None:
        incident = incident_of(server, caller)
        if incident is None or incident["status"] == "active":
            return None
        return incident if incident["location"]["fixes"] else None

    incident: dict[str, Any] = wait_until(ended, timeout=20, what=f"{caller}'s location")
    return incident


def test_every_rfc5491_shape_by_value_reaches_the_incident(tmp_path: Path) -> None:
    with running_server(tmp_path / "server") as server:
        runs = pidf_calls(server, tmp_path, {k: pidf(v) for k, v in SHAPES.items()}, "0812345")
        for shape, (caller, run) in runs.items():
            incident = answered_location(server, run, caller)
            loc = incident["location"]
            assert loc["valid"] is True, (shape, loc)
            assert loc["source"] == "pidf"
            assert loc["fixes"][0]["shape"] == shape, loc
            # Every shape lies within 2 km of central Ambon (the arc band, 1-2 km east of
            # its centre, is drawn where the caller is: ~1.5 km east).
            assert abs(loc["lat"] - AMBON[0]) < 0.02 and abs(loc["lon"] - AMBON[1]) < 0.02, loc
            if shape == "ArcBand":
                assert loc["lon"] - AMBON[1] > 0.01, loc
            if shape == "Point":
                assert loc["radius_m"] is None, loc  # a point states no uncertainty
            else:
                assert loc["radius_m"] is not None and loc["radius_m"] > 0, loc
            assert events_of(incident, "location_received")[0]["detail"]["valid"] == 1
            # Both parts understood: the SDP was the offer, the PIDF-LO the one named.
            assert not events_of(incident, "location_notes"), incident["events"]


def test_hostile_documents_are_answered_and_marked_invalid(tmp_path: Path) -> None:
    cases = {k: v for k, v in HOSTILE.items() if k != "10MB"}  # > a SIP message (65535)
    with running_server(tmp_path / "server") as server:
        runs = pidf_calls(server, tmp_path, cases, "0812346")
        for name, (caller, run) in runs.items():
            incident = answered_location(server, run, caller)
            loc = incident["location"]
            assert loc["valid"] is False and loc["lat"] is None, (name, loc)
            assert all(not f["valid"] and f["reason"] for f in loc["fixes"]), (name, loc)
            detail = events_of(incident, "location_received")[0]["detail"]
            assert detail["invalid"] and detail["invalid"][0], detail
        assert "root:" not in server.output()  # the external entity was never read


def test_two_geolocation_headers_and_call_info_by_value(tmp_path: Path) -> None:
    """A by-value fix and a reference nobody can follow: both kept, in header order;
    an RFC 7852 block named by Call-Info is on the timeline."""
    circle = pidf(SHAPES["Circle"])
    point = pidf(SHAPES["Point"]).replace(b"-3.6954 128.1814", b"-3.7000 128.1900")
    data = b'<EmergencyCallData.ProviderInfo xmlns="urn:ietf:params:xml:ns:EmergencyCallData">'
    data += b"<DataProviderString>Telkomsel</DataProviderString></EmergencyCallData.ProviderInfo>"
    with running_server(tmp_path / "server") as server:
        caller = "081234570001"
        run = location_call(
            server,
            tmp_path / "sipp",
            caller=caller,
            headers=[
                "Geolocation: <cid:first@carrier.example>",
                "Geolocation: <cid:second@carrier.example>",
                f"Call-Info: <cid:provider@carrier.example>;purpose={PROVIDER}",
            ],
            body=multipart(
                ("application/sdp", None, SDP.encode()),
                ("application/pidf+xml", "first@carrier.example", circle),
                ("application/pidf+xml", "second@carrier.example", point),
                (f"application/{PROVIDER}+xml", "provider@carrier.example", data),
            ),
        )
        incident = answered_location(server, run, caller)
        loc = incident["location"]
        assert [f["shape"] for f in loc["fixes"]] == ["Circle", "Point"], loc
        blocks = events_of(incident, "additional_data")[0]["detail"]["data"]
        assert blocks[0]["purpose"] == PROVIDER
        assert "Telkomsel" in blocks[0]["text"]


# ------------------------------------------------------------------ by reference (HTTPS)


def make_ca(directory: Path) -> tuple[Path, Path, Path]:
    """A test CA and a certificate for 127.0.0.1 it signed: (ca.pem, cert.pem, key.pem)."""
    need("openssl")
    names = ("ca.key", "ca.pem", "k.pem", "r.csr", "c.pem")
    ca_key, ca, key, csr, cert = (directory / n for n in names)
    ext = directory / "ext.cnf"
    ext.write_text("subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n")

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=directory)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key), "-out", str(ca),
        "-days", "2", "-subj", "/CN=callcenter112 test LIS CA")  # fmt: skip
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr),
        "-subj", "/CN=127.0.0.1")  # fmt: skip
    run("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
        "-CAcreateserial", "-out", str(cert), "-days", "2", "-extfile", str(ext))  # fmt: skip
    return ca, cert, key


@contextlib.contextmanager
def lis_server(cert: Path, key: Path, document: bytes) -> Iterator[tuple[int, list[str]]]:
    """A Location Information Server on loopback (HTTPS): GET → the PIDF-LO. Yields
    (port, the paths asked for)."""
    asked: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            asked.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "application/pidf+xml")
            self.send_header("Content-Length", str(len(document)))
            self.end_headers()
            self.wfile.write(document)

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(cert), str(key))
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd.server_address[1], asked
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_by_reference_is_fetched_from_a_lis_the_test_ca_signed(tmp_path: Path) -> None:
    ca, cert, key = make_ca(tmp_path)
    document = pidf(SHAPES["Ellipse"])
    with (
        lis_server(cert, key, document) as (port, asked),
        running_server(tmp_path / "server", extra=f'[location]\nca_file = "{ca}"\n') as server,
    ):
        caller = "081234580001"
        untrusted = "081234580002"
        run = sdp_call(server, tmp_path / "sipp", caller, f"https://127.0.0.1:{port}/loc/abc")
        incident = answered_location(server, run, caller)
        loc = incident["location"]
        assert asked == ["/loc/abc"]
        assert loc["valid"] is True and loc["fixes"][0]["shape"] == "Ellipse", loc
        assert events_of(incident, "location_received")[0]["detail"]["references"]
        # A name the certificate does not carry: refused, said so on the incident.
        run = sdp_call(server, tmp_path / "sipp-2", untrusted, f"https://localhost:{port}/loc/abc")
        incident = answered_location(server, run, untrusted)
        loc = incident["location"]
        assert loc["valid"] is False
        assert "TLS" in loc["fixes"][0]["reason"] or "certificate" in loc["fixes"][0]["reason"]


# ------------------------------------------------------------------ AML during a live call

ELS_VECTOR = (  # the published ELS vector (ETSI TS 103 625 annex), key "AML"
    "v=1&device_number=%2B33611223344&location_latitude=0.85732&location_longitude=-4.26325"
    "&location_time=1604912121000&location_accuracy=10.4&location_source=GPS"
    "&location_certainty=83&hmac=f64c70eb238bb239e00e8ac8c023bf2b5d3c41dd"
)


def post(server: Server, path: str, body: str) -> int:
    request = urllib.request.Request(
        f"http://127.0.0.1:{server.web_port}{path}",
        data=body.encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        return int(answer.status)


def test_aml_https_and_sms_are_matched_to_sipp_calls(tmp_path: Path) -> None:
    from urllib.parse import urlencode

    extra = '[aml]\nkey = "AML"\nallow = ["127.0.0.0/8"]\n'
    with running_server(tmp_path / "server", extra=extra) as server:
        french = "+33611223344"  # the vector's device number
        local = "081234590001"
        runs = [
            sdp_call(server, tmp_path / name, caller, talk_ms=8000)
            for name, caller in (("fr", french), ("id", local))
        ]
        wait_until(
            lambda: incident_of(server, french) and incident_of(server, local),
            what="both calls live",
        )
        assert post(server, "/api/v1/aml", ELS_VECTOR) == 200
        v1 = 'A"ML=1;lt=-3.69581;lg=+128.18141;rd=50;top=20261128010000;lc=90;pm=G;ml=999'
        v2 = 'A"ML=2;en=112;et=20261128T010005Z;lo=-3.69590,128.18150,12;lc=68;ls=G'
        for text in (v1, v2):
            body = urlencode({"from": "6281234590001", "body": text})
            assert post(server, "/api/v1/aml/sms", body) == 200
        for run in runs:
            assert run.wait(60) == 0, run.logs()
        fr = incident_of(server, french)
        assert fr is not None
        assert (fr["location"]["lat"], fr["location"]["lon"]) == (0.85732, -4.26325)
        assert fr["location"]["source"] == "aml-https"
        ours = incident_of(server, local)
        assert ours is not None
        assert [f["source"] for f in ours["location"]["fixes"]] == ["aml-sms", "aml-sms"]
        assert (ours["location"]["lat"], ours["location"]["lon"]) == (-3.6959, 128.1815)

        # An AML SMS that beats the call: kept pending, claimed by the caller's call.
        early = "081234590002"
        text = 'A"ML=1;lt=-3.70000;lg=+128.17000;rd=30;pm=G'
        assert post(server, "/api/v1/aml/sms", urlencode({"from": "+6281234590002", "body": text}))
        assert server.sql("SELECT count(*) FROM fixes WHERE incident_id IS NULL") == [(1,)]
        run = sdp_call(server, tmp_path / "early", early)
        assert run.wait(60) == 0, run.logs()
        wait_until(lambda: located(server, early), what="the pending fix claimed")
        claimed = incident_of(server, early)
        assert claimed is not None
        assert (claimed["location"]["lat"], claimed["location"]["radius_m"]) == (-3.7, 30.0)
        assert events_of(claimed, "location_received")[0]["detail"]["claimed_aml"] == 1
        assert server.sql("SELECT count(*) FROM fixes WHERE incident_id IS NULL") == [(0,)]


# ------------------------------------------------------------------ transfer to an agency


def test_agency_receives_the_pidf_lo_on_transfer(tmp_path: Path) -> None:
    """A caller with a PIDF-LO, answered by baresip, blind-transferred from the console:
    the agency's SIPp (`agency_location.xml`) fails unless the INVITE carries the
    caller's position by value with Geolocation and Geolocation-Routing: no."""
    from harness import WebSession, baresip_operator, operator_online, talking_to
    from test_e2e_handoff import agency_server, start_agency

    need("sipp", "baresip")
    server, agency_port = agency_server(tmp_path)
    server.start()
    try:
        agency = start_agency(tmp_path / "agency", agency_port, "agency_location.xml")
        with baresip_operator(
            tmp_path / "op1", user="op1", password="secret1", server_port=server.sip_port
        ):
            wait_until(lambda: operator_online(server, "op1"), 20, what="op1 registered")
            documents = {"circle": pidf(SHAPES["Circle"])}
            caller, run = pidf_calls(
                server, tmp_path, documents, "0812347", talk_ms=15000, key="1"
            )["circle"]
            wait_until(lambda: talking_to(server, caller, "op1"), 40, what="bridged to op1")
            incident = incident_of(server, caller)
            assert incident is not None and incident["location"]["valid"], incident
            web = WebSession(server, "op1", "secret1")
            r = web.post(
                f"/console/incidents/{incident['id']}/transfer",
                {"agency": "ambulans", "mode": "blind"},
            )
            assert r.status_code < 400, r.text
            web.close()
            assert agency.wait(60) == 0, agency.logs()  # the caller hung up: BYE reached it
            assert run.wait(30) == 0, run.logs()
        log = next((tmp_path / "agency").glob("*_logs.log")).read_text()
        assert "pos=<gml:pos>-3.6954 128.1814</gml:pos>" in log, log
        assert f"geo=<cid:{incident['id']}@127.0.0.1>" in log, log
    finally:
        server.stop()
        server.kill()


def test_a_body_without_sdp_is_answered_with_our_offer(tmp_path: Path) -> None:
    """Multipart with the PIDF-LO only (a gateway that lost the SDP): no 415 — the
    centre offers in its 200 (RFC 3261 §13.2.1) and keeps the position."""
    with running_server(tmp_path / "server") as server:
        caller = "081234610001"
        run = location_call(
            server,
            tmp_path / "sipp",
            caller=caller,
            headers=["Geolocation: <cid:only@carrier.example>"],
            body=multipart(("application/pidf+xml", "only@carrier.example", pidf(SHAPES["Point"]))),
        )
        incident = answered_location(server, run, caller)
        assert incident["location"]["valid"] is True
        answer = run.logs().split("SIP/2.0 200 OK", 1)[1]
        assert "m=audio " in answer.split("ACK ", 1)[0], answer[:2000]  # our offer
