"""SIP over TLS against the real server: baresip registers over TLS and takes a 112 call.

The certificate is self-signed, made here with openssl for 127.0.0.1;
baresip trusts it through `sip_cafile`. The call comes from SIPp over the
trunk (UDP); the centre's INVITE to the operator goes back on the phone's
TLS connection (the registrar binds a TLS contact to the connection it
registered on, as transport tls), with a TLS Via and a sips: Contact.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from harness import (
    Baresip,
    Operator,
    Server,
    free_port,
    need,
    operator_online,
    start_caller,
    talking_to,
    wait_until,
)

pytestmark = pytest.mark.peers


def self_signed(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "sip.crt", directory / "sip.key"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.mark.slow
def test_baresip_registers_over_tls_and_answers_a_call(tmp_path: Path) -> None:
    need("baresip", "sipp", "openssl")
    cert, key = self_signed(tmp_path)
    tls_port = free_port()
    server = Server(
        tmp_path / "server",
        operators=[Operator("op1", "secret1")],
        sip_extra=(
            f'tls_listen = "127.0.0.1:{tls_port}"\ntls_certificate = "{cert}"\ntls_key = "{key}"\n'
        ),
    )
    server.start()
    try:
        phone = Baresip(tmp_path / "op1", user="op1", password="secret1", server_port=tls_port)
        accounts = phone.directory / "accounts"
        text = accounts.read_text()
        accounts.write_text(
            text.replace(f"@127.0.0.1:{tls_port}>", f"@127.0.0.1:{tls_port};transport=tls>")
        )
        config = phone.directory / "config"
        config.write_text(config.read_text() + f"sip_cafile {cert}\n")
        phone.start()
        try:
            wait_until(lambda: operator_online(server, "op1"), 30, what="op1 registered")
            # It registered over TLS: the server saw the REGISTER on a stream
            # from the phone, and nothing from it over UDP.
            registers = [
                e for e in server.events("sip_in") if e["first_line"].startswith("REGISTER ")
            ]
            assert registers and all(e["peer"].startswith("tls:") for e in registers)
            assert all("SIP/2.0/TLS" in (e.get("message") or "") for e in registers)
            caller = start_caller(
                server, tmp_path / "caller", caller="081234500001", digits="1", talk_ms=15_000
            )
            wait_until(
                lambda: talking_to(server, "081234500001", "op1"), 60, what="op1 answers over TLS"
            )
            invites_out = [
                e
                for e in server.events("sip_out")
                if e["first_line"].startswith("INVITE ") and e["peer"].startswith("tls:")
            ]
            # The binding kept its transport (issue 11): the offer went to the
            # phone over TLS, saying so in its Via, with our sips: Contact.
            assert invites_out, "the offer went to the phone on its TLS connection"
            offer = invites_out[0]["message"]
            assert f"Via: SIP/2.0/TLS 127.0.0.1:{tls_port};" in offer, offer
            assert f"Contact: <sips:112@127.0.0.1:{tls_port}>" in offer, offer
            assert caller.wait(90) == 0, caller.logs()
        finally:
            phone.stop()
    finally:
        try:
            server.stop()
        finally:
            server.kill()
    assert "Traceback" not in server.output()
