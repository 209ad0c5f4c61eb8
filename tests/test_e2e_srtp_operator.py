"""SRTP on the operator's leg, end to end (issue 11).

baresip registers over TLS with `mediaenc=srtp-mand` (it answers only an
RTP/SAVP offer with a usable `a=crypto` and sends only SRTP); operator op1
is configured `srtp = "mandatory"`. A real SIPp 112 call with recorded
speech reaches it: the operator's phone decodes the caller's packets
bit-exact (so the centre encrypted what it relayed with the key it
offered), and the recording's caller channel is still the caller's G.711
code words, bit-exact (SRTP never reaches the recorder).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from harness import (
    Baresip,
    Operator,
    Server,
    free_port,
    need,
    operator_online,
    wait_until,
)
from test_e2e_media import (
    FAST,
    G711A,
    PCAPS,
    RATE,
    find_audio,
    incident_id_of,
    new_dumps,
    packets_in_order,
    pcap_speech,
    read_pcm_wav,
    read_recording,
    render_caller,
    run_caller,
    sealed_recording,
    seconds,
    status_of,
)
from test_tls_baresip import self_signed

pytestmark = pytest.mark.peers

MIN_CORRELATION = 0.9


class SrtpServer(Server):
    """The harness's server with op1's legs on mandatory SRTP."""

    def write_config(self) -> None:
        super().write_config()
        text = self.config_path.read_text()
        marker = '[[operator]]\nuser = "op1"\n'
        assert marker in text
        self.config_path.write_text(text.replace(marker, marker + 'srtp = "mandatory"\n'))


def tls_srtp_phone(directory: Path, *, port: int, ca: Path) -> Baresip:
    """baresip as op1 over TLS to 127.0.0.1:`port`, trusting `ca`, SRTP mandatory
    (tests/test_kamailio_tls.py uses it through the Kamailio edge)."""
    phone = Baresip(directory, user="op1", password="secret1", server_port=port)
    accounts = phone.directory / "accounts"
    accounts.write_text(
        accounts.read_text()
        .replace(f"@127.0.0.1:{port}>", f"@127.0.0.1:{port};transport=tls>")
        .replace(";audio_codecs=PCMU,PCMA", ";audio_codecs=PCMA;mediaenc=srtp-mand")
    )
    config = phone.directory / "config"
    config.write_text(
        config.read_text().replace("module account.so", "module srtp.so\nmodule account.so")
        + f"sip_cafile {ca}\n"
    )
    return phone


@pytest.mark.slow
def test_operator_on_tls_and_srtp_hears_the_caller_and_the_recording_stays_bit_exact(
    tmp_path: Path,
) -> None:
    need("baresip", "sipp", "openssl", "sox")
    cert, key = self_signed(tmp_path)
    tls_port = free_port()
    server = SrtpServer(
        tmp_path / "server",
        operators=[Operator("op1", "secret1")],
        extra=FAST,
        sip_extra=(
            f'tls_listen = "127.0.0.1:{tls_port}"\ntls_certificate = "{cert}"\ntls_key = "{key}"\n'
        ),
    )
    server.start()
    try:
        phone = tls_srtp_phone(tmp_path / "op1", port=tls_port, ca=cert)
        phone.start()
        try:
            wait_until(lambda: operator_online(server, "op1"), 30, what="op1 registered")
            caller = "0812000071"
            speech, packets = pcap_speech(G711A)
            before = set(phone.record_dir.glob("*.wav"))
            press_1 = PCAPS / "dtmf_2833_1.pcap"
            scenario = render_caller(tmp_path, caller=caller, media=[press_1, G711A], talk_ms=6800)
            run_caller(server, tmp_path, scenario)
            incident = wait_until(lambda: incident_id_of(server, caller), 20, what="incident")
            wait_until(lambda: status_of(server, incident) != "active", 30, what="call ended")
            assert status_of(server, incident) == "completed"
            path, _ = sealed_recording(server, incident)
        finally:
            phone.stop()
    finally:
        try:
            server.stop()
        finally:
            server.kill()
    assert "Traceback" not in server.output()

    # The offer to the phone was SDES-keyed RTP/SAVP, on its TLS connection.
    offers = [
        e
        for e in server.events("sip_out")
        if e["first_line"].startswith("INVITE sip:op1") and e["peer"].startswith("tls:")
    ]
    assert offers, "the offer went to the phone on its TLS connection"
    body = offers[0].get("message") or ""
    assert "RTP/SAVP" in body and "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:" in body

    # Caller -> operator through SRTP: baresip decrypted and decoded the caller's
    # packets, bit-exact and in order.
    (decoded_path,) = new_dumps(phone, before, "dec")
    decoded = read_pcm_wav(decoded_path)
    forwarded = packets_in_order(decoded, packets)
    assert forwarded >= len(packets) - 12, f"{forwarded} of {len(packets)} packets decoded"

    # The recording's caller channel: every packet's code words at its timestamp.
    rec = read_recording(path)
    match = find_audio(seconds(speech, 1.0, 4.0), rec.pcm(0))
    assert match.correlation >= MIN_CORRELATION, match
    origin = match.lag - RATE * 1
    first = packets[0].timestamp
    misplaced = [
        p.seq
        for p in packets
        if rec.left[origin + p.timestamp - first : origin + p.timestamp - first + len(p.payload)]
        != p.payload
    ]
    assert len(misplaced) <= len(packets) // 50, f"{len(misplaced)} packets not bit-exact"
    # Operator -> caller through SRTP: what baresip encoded is on the right channel.
    (encoded_path,) = new_dumps(phone, before, "enc")
    spoken = read_pcm_wav(encoded_path)
    heard = find_audio(seconds(spoken, 2.0, 4.0), rec.pcm(1))
    assert heard.correlation >= MIN_CORRELATION, heard
