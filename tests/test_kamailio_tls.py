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

import subprocess
import time
from pathlib import Path

import pytest

from callcenter112.cluster.kamailio import EdgeSettings, EdgeTls, Node, main, render
from harness import (
    Operator,
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
from kamailio_edge import running_edge
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


def settings(tls: EdgeTls | None) -> EdgeSettings:
    return EdgeSettings(
        listen_host="127.0.0.1",
        listen_port=free_port(),
        nodes=(Node(host="127.0.0.1", port=25070),),
        trunk_nets=("127.0.0.1/32",),
        tls=tls,
    )


# --------------------------------------------------------------------------- the template


def test_rendered_tls_template_passes_kamailio_check(tmp_path: Path) -> None:
    need("kamailio")
    _, leaf = edge_leaf(tmp_path)
    port = free_port()
    tls = EdgeTls(host="127.0.0.1", port=port, certificate=leaf.certificate, key=leaf.key)
    cfg = render(settings(tls), tmp_path / "edge")
    check = subprocess.run(
        ["kamailio", "-c", "-f", str(cfg)], check=False, capture_output=True, text=True, timeout=30
    )
    assert check.returncode == 0, check.stderr[-3000:]
    # kamailio -c lists the sockets it would bind: the TLS one is there.
    assert f"tls: 127.0.0.1 [127.0.0.1]:{port}" in check.stdout + check.stderr
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


@pytest.mark.peers
@pytest.mark.slow
def test_operator_on_tls_through_the_edge_is_offered_a_call_with_srtp(tmp_path: Path) -> None:
    need("kamailio", "baresip", "sipp")
    ca, leaf = edge_leaf(tmp_path)
    tls_port = free_port()
    tls = EdgeTls(host="127.0.0.1", port=tls_port, certificate=leaf.certificate, key=leaf.key)
    number = "0812000081"
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
                assert "{0/TLS/v4} 200 OK" in phone.output()  # baresip's own account line
                # The REGISTER reached the node from the edge's UDP socket, sent by the
                # phone over TLS (its Via), with the edge's Path back to that connection.
                (register, *_) = sip_trace(node, "sip_in", "REGISTER", edge.port)
                text = register.get("message") or ""
                assert "SIP/2.0/TLS 127.0.0.1:" in text, text
                assert f"Path: <sip:127.0.0.1:{edge.port};lr;received=" in text, text
                assert "transport%3Dtls" in text.lower() or "transport=tls" in text.lower()
                before = set(phone.record_dir.glob("*.wav"))
                scenario = caller_scenario(
                    tmp_path, caller=number, pause_before_ms=300, talk_ms=30_000,
                    media=[dtmf_pcap("1")],
                )  # fmt: skip
                cmd = sipp_command(edge.port, scenario=str(scenario), extra=["-aa"])
                caller = start_sipp_in(tmp_path / "trunk", cmd, name="caller via edge")
                wait_until(lambda: talking_to(node, number, "op1"), 40, what="op1 talking")
                # The offer went to the edge (Path), SDES-keyed RTP/SAVP ...
                offers = [
                    o
                    for o in sip_trace(node, "sip_out", "INVITE sip:op1", edge.port)
                    if "RTP/SAVP" in (o.get("message") or "")
                ]
                assert offers, sip_trace(node, "sip_out", "INVITE", edge.port)
                assert "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:" in offers[0]["message"]
                # ... and the edge relayed it on its TLS socket (double Record-Route:
                # one entry per side), the phone answering with RTP/SAVP.
                answers = [
                    a
                    for a in sip_trace(node, "sip_in", "SIP/2.0 200", edge.port)
                    if "INVITE" in (a.get("message") or "") and "RTP/SAVP" in a["message"]
                ]
                assert answers, "the phone's SRTP answer came back through the edge"
                answer = answers[0]["message"]
                assert f"127.0.0.1:{tls_port};transport=tls" in answer, answer
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
            finally:
                phone.stop()
            edge_errors = edge.lines("ERROR")
    finally:
        try:
            node.stop()
        finally:
            node.kill()
    assert "Traceback" not in node.output()
    assert not edge_errors, edge_errors
    # Operator -> node through SRTP: what baresip encoded is the recording's right channel.
    rec = read_recording(recording)
    (encoded_path,) = new_dumps(phone, before, "enc")
    spoken = read_pcm_wav(encoded_path)
    heard = find_audio(seconds(spoken, 1.0, 3.0), rec.pcm(1))
    assert heard.correlation >= MIN_CORRELATION, heard
