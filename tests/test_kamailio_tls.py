"""Softphones over TLS at the Kamailio edge (DESIGN §8: "softphones (TLS/SRTP) ─
Kamailio (edge)"), with the real Kamailio, baresip and SIPp on loopback.

The rendered edge with a TLS listener passes `kamailio -c`; bad TLS settings
name the option. End to end: baresip registers over TLS to the edge (which
adds its Path and sends the REGISTER to the node over UDP), a SIPp 112 call
reaches the node, the node's SRTP offer goes through the edge back over the
phone's own TLS connection, the operator answers and is bridged with SRTP
both ways, and the operator's BYE reaches the node through the edge.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from callcenter112.cluster.kamailio import EdgeSettings, EdgeTls, Node, main, render
from harness import (
    Baresip,
    Operator,
    SippRun,
    caller_scenario,
    dtmf_pcap,
    free_port,
    incident_status,
    need,
    operator_online,
    sip_trace,
    sipp_command,
    start_sipp_in,
    talking_to,
    wait_until,
)
from kamailio_edge import Edge, running_edge
from test_e2e_media import (
    FAST,
    find_audio,
    incident_id_of,
    new_dumps,
    read_pcm_wav,
    read_recording,
    sealed_recording,
    seconds,
)
from test_e2e_srtp_operator import MIN_CORRELATION, SrtpServer, tls_srtp_phone
from test_kamailio_edge import EDGE_TRUST
from tls_certs import Leaf, new_authority


def edge_leaf(tmp_path: Path) -> tuple[Path, Leaf]:
    """A CA and the edge's certificate for 127.0.0.1 signed by it."""
    ca = new_authority(tmp_path / "ca")
    return ca.certificate, ca.issue(tmp_path / "certs", "edge", ips=("127.0.0.1",))


def settings(tls: EdgeTls | None, *, tcp: bool = False) -> EdgeSettings:
    return EdgeSettings(
        listen_host="127.0.0.1",
        listen_port=free_port(),
        nodes=(Node(host="127.0.0.1", port=25070),),
        trunk_nets=("127.0.0.1/32",),
        tcp=tcp,
        tls=tls,
    )


# --------------------------------------------------------------------------- the template


@pytest.mark.parametrize("tcp", [False, True])
def test_rendered_tls_template_passes_kamailio_check(tmp_path: Path, tcp: bool) -> None:
    need("kamailio")
    _, leaf = edge_leaf(tmp_path)
    port = free_port()
    tls = EdgeTls(host="127.0.0.1", port=port, certificate=leaf.certificate, key=leaf.key)
    cfg = render(settings(tls, tcp=tcp), tmp_path / "edge")
    check = subprocess.run(
        ["kamailio", "-c", "-f", str(cfg)], check=False, capture_output=True, text=True, timeout=30
    )
    assert check.returncode == 0, check.stderr[-3000:]
    # kamailio -c lists the sockets it would bind: the TLS one is there.
    assert f"tls: 127.0.0.1 [127.0.0.1]:{port}" in check.stdout + check.stderr
    assert ("tcp: 127.0.0.1" in check.stdout + check.stderr) == tcp
    local = (tmp_path / "edge" / "local.cfg").read_text()
    assert "#!define WITH_TLS" in local
    tls_cfg = (tmp_path / "edge" / "tls.cfg").read_text()
    assert f"certificate = {leaf.certificate}" in tls_cfg
    assert f"private_key = {leaf.key}" in tls_cfg
    assert "method = TLSv1.2+" in tls_cfg and "require_certificate = no" in tls_cfg


def test_without_tls_nothing_of_it_is_rendered(tmp_path: Path) -> None:
    need("kamailio")
    cfg = render(settings(None), tmp_path / "edge")
    check = subprocess.run(
        ["kamailio", "-c", "-f", str(cfg)], check=False, capture_output=True, text=True, timeout=30
    )
    assert check.returncode == 0, check.stderr[-3000:]
    assert "tls:" not in check.stdout + check.stderr
    assert "WITH_TLS" not in (tmp_path / "edge" / "local.cfg").read_text()
    assert not (tmp_path / "edge" / "tls.cfg").exists()


@pytest.mark.parametrize(
    ("change", "names"),
    [
        ({"host": "edge.local"}, "tls_listen: 'edge.local'"),
        ({"port": 70000}, "tls_listen: 70000"),
        ({"certificate": Path("/nonexistent/edge.crt")}, "tls_certificate: /nonexistent"),
        ({"key": Path("/nonexistent/edge.key")}, "tls_key: /nonexistent"),
        ({"key": "CERT"}, "tls_key: .* holds no PEM private key"),
        ({"certificate": "KEY"}, "tls_certificate: .* holds no PEM certificate"),
    ],
)
def test_bad_tls_settings_name_the_option(
    tmp_path: Path, change: dict[str, object], names: str
) -> None:
    _, leaf = edge_leaf(tmp_path)
    swap = {"CERT": leaf.certificate, "KEY": leaf.key}
    base: dict[str, object] = {
        "host": "127.0.0.1",
        "port": 5061,
        "certificate": leaf.certificate,
        "key": leaf.key,
    }
    values = {k: swap.get(v, v) if isinstance(v, str) else v for k, v in change.items()}
    with pytest.raises(ValueError, match=names):
        EdgeTls(**{**base, **values})  # type: ignore[arg-type]


def test_command_line_renders_tls_and_refuses_half_of_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, leaf = edge_leaf(tmp_path)
    common = ["--listen", "127.0.0.1:5060", "--node", "127.0.0.1:25070", "--trunk", "10.0.0.0/8"]
    out = tmp_path / "edge"
    tls = ["--tls-listen", "127.0.0.1:5061", "--tls-certificate", str(leaf.certificate)]
    assert main(["--out", str(out), *common, *tls, "--tls-key", str(leaf.key)]) == 0
    assert '#!substdef "!LISTEN_TLS_SOCKET!tls:127.0.0.1:5061!g"' in (out / "local.cfg").read_text()
    assert main(["--out", str(tmp_path / "half"), *common, *tls]) == 2
    assert "--tls-listen, --tls-certificate and --tls-key go together" in capsys.readouterr().err
    bad = ["--tls-listen", "5061", "--tls-certificate", str(leaf.certificate)]
    assert main(["--out", str(tmp_path / "bad"), *common, *bad, "--tls-key", str(leaf.key)]) == 2
    assert "tls_listen: '5061' is not HOST:PORT" in capsys.readouterr().err


# --------------------------------------------------------------------------- through it


@dataclass
class TlsSite:
    node: SrtpServer  # op1 on mandatory SRTP; trusts the edge's Path
    edge: Edge
    tls_port: int  # the edge's TLS listener
    phone: Baresip  # op1 on TLS + SRTP to the edge, registered


@contextlib.contextmanager
def tls_site(tmp_path: Path) -> Iterator[TlsSite]:
    """A node behind the edge with a TLS listener; op1's baresip registered over TLS."""
    need("kamailio", "baresip", "sipp")
    ca, leaf = edge_leaf(tmp_path)
    tls_port = free_port()
    tls = EdgeTls(host="127.0.0.1", port=tls_port, certificate=leaf.certificate, key=leaf.key)
    node = SrtpServer(
        tmp_path / "node", operators=[Operator("op1", "secret1")], extra=FAST, sip_extra=EDGE_TRUST
    )
    node.start()
    try:
        with running_edge(tmp_path / "edge", nodes=((node.sip_port, 0),), tls=tls) as edge:
            phone = tls_srtp_phone(tmp_path / "op1", port=tls_port, ca=ca)
            phone.start()
            try:
                wait_until(lambda: operator_online(node, "op1"), 30, what="op1 online via TLS")
                yield TlsSite(node=node, edge=edge, tls_port=tls_port, phone=phone)
            finally:
                phone.stop()
    finally:
        try:
            node.stop()
        finally:
            node.kill()
    assert "Traceback" not in node.output()


def call_via_edge(tmp_path: Path, site: TlsSite, number: str, *, talk_ms: int) -> SippRun:
    """A SIPp 112 call from the trunk through the edge's UDP port; presses 1."""
    scenario = caller_scenario(
        tmp_path, caller=number, pause_before_ms=300, talk_ms=talk_ms, media=[dtmf_pcap("1")]
    )
    cmd = sipp_command(site.edge.port, scenario=str(scenario), extra=["-aa"])
    return start_sipp_in(tmp_path / "trunk", cmd, name="caller via edge")


def invite_messages(node: SrtpServer, direction: str, first_line: str, port: int) -> list[str]:
    """Whole messages of the INVITE transactions (by CSeq) in `node`'s SIP trace."""
    return [
        m
        for m in (e.get("message") or "" for e in sip_trace(node, direction, first_line, port))
        if "\r\nCSeq: " in m and m.split("\r\nCSeq: ")[1].split("\r\n")[0].endswith(" INVITE")
    ]


@pytest.mark.peers
@pytest.mark.slow
def test_operator_on_tls_through_the_edge_is_offered_a_call_with_srtp(tmp_path: Path) -> None:
    number = "0812000081"
    with tls_site(tmp_path) as site:
        node, edge, phone = site.node, site.edge, site.phone
        assert "{0/TLS/v4} 200 OK" in phone.output()  # baresip's own account line
        # The REGISTER reached the node from the edge's UDP socket, sent by the
        # phone over TLS (its Via), with the edge's Path back to that connection.
        (register, *_) = sip_trace(node, "sip_in", "REGISTER", edge.port)
        text = register.get("message") or ""
        assert "SIP/2.0/TLS 127.0.0.1:" in text, text
        assert f"Path: <sip:127.0.0.1:{edge.port};lr;received=" in text, text
        assert "%3Btransport%3Dtls>" in text, text
        before = set(phone.record_dir.glob("*.wav"))
        caller = call_via_edge(tmp_path, site, number, talk_ms=30_000)
        wait_until(lambda: talking_to(node, number, "op1"), 40, what="op1 talking")
        # The offer went to the edge (Path), SDES-keyed RTP/SAVP ...
        offers = invite_messages(node, "sip_out", "INVITE sip:op1", edge.port)
        assert any("RTP/SAVP" in o for o in offers), offers
        assert all("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:" in o for o in offers), offers
        # ... and the edge relayed it on its TLS socket (double Record-Route: one
        # entry per side), the phone answering with RTP/SAVP.
        answers = [
            a for a in invite_messages(node, "sip_in", "SIP/2.0 200", edge.port) if "RTP/SAVP" in a
        ]
        assert answers, "the phone's SRTP answer came back through the edge"
        assert f"<sip:127.0.0.1:{site.tls_port};transport=tls;r2=on;lr" in answers[0], answers[0]
        assert not sip_trace(node, "sip_out", "INVITE", phone.sip_port)
        time.sleep(4)  # the operator talks a little, through SRTP
        phone.command("hangup")
        wait_until(lambda: incident_status(node, number) == "completed", 20)
        # The operator's BYE came to the node through the edge.
        assert sip_trace(node, "sip_in", "BYE", edge.port)
        assert caller.wait(60) == 0, caller.logs()
        incident = incident_id_of(node, number)
        assert incident
        recording, _ = sealed_recording(node, incident)
        edge_errors = edge.lines("ERROR")
    assert not edge_errors, edge_errors
    # Operator -> node through SRTP: what baresip encoded is the recording's right channel.
    rec = read_recording(recording)
    (encoded_path,) = new_dumps(phone, before, "enc")
    spoken = read_pcm_wav(encoded_path)
    heard = find_audio(seconds(spoken, 1.0, 3.0), rec.pcm(1))
    assert heard.correlation >= MIN_CORRELATION, heard


@pytest.mark.peers
@pytest.mark.slow
def test_an_offer_to_a_phone_whose_tls_connection_is_gone_is_refused_at_once(
    tmp_path: Path,
) -> None:
    """The phone died after registering: the edge does not try to connect to its
    source port (behind NAT nothing would answer) but answers the node one 480."""
    with tls_site(tmp_path) as site:
        node, edge = site.node, site.edge
        site.phone.kill()  # its TLS connection closes with it
        caller = call_via_edge(tmp_path, site, "0812000082", talk_ms=4000)
        try:
            wait_until(lambda: sip_trace(node, "sip_in", "SIP/2.0 480", edge.port), 30, what="480")
            time.sleep(1)  # room for a second answer, were there one
        finally:
            caller.kill()
        answers = [
            m.split("\r\n", 1)[0] for m in invite_messages(node, "sip_in", "SIP/2.0 4", edge.port)
        ]
        offers = sip_trace(node, "sip_out", "INVITE sip:op1", edge.port)
        connects = edge.lines("connect|refused")
    # One answer per offer (no stateless 477 beside tm's, each with its own To-tag),
    # and never a connection attempt to the phone's port.
    assert answers and all(a == "SIP/2.0 480 Phone Not Reachable" for a in answers), answers
    assert len(answers) == len(offers), (answers, offers)
    assert not connects, connects
