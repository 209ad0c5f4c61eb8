"""SIP capture per incident: masking, the ladder's columns and rows, the pcap
export read back by our reader and by Wireshark's own tshark."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from callcenter112.sip.capture import (
    CaptureBook,
    CapturedMessage,
    ladder,
    mask_secrets,
    read_pcap,
    to_pcap,
)

CENTRE = ("127.0.0.1", 5060)
TRUNK = ("127.0.0.2", 5070)
PHONE = ("127.0.0.3", 40000)


def _req(method: str, call_id: str = "a", extra: str = "") -> bytes:
    return (
        f"{method} sip:112@127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.2:5070;branch=z9hG4bK{method}\r\n"
        f"Call-ID: {call_id}\r\nCSeq: 1 {method}\r\n{extra}Content-Length: 0\r\n\r\n"
    ).encode()


def _resp(code: int, reason: str, method: str) -> bytes:
    return (
        f"SIP/2.0 {code} {reason}\r\nVia: SIP/2.0/UDP 127.0.0.2:5070;branch=z9hG4bK{method}\r\n"
        f"Call-ID: a\r\nCSeq: 1 {method}\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def _msg(
    at: float, direction: str, remote: tuple[str, int], data: bytes, leg: str
) -> CapturedMessage:
    return CapturedMessage(
        at=at,
        direction=direction,  # type: ignore[arg-type]
        local=CENTRE,
        remote=remote,
        transport="udp",
        data=data,
        leg=leg,
    )


def _call() -> list[CapturedMessage]:
    # A trunk call answered, offered to op1, bridged, hung up by the caller.
    return [
        _msg(10.0, "in", TRUNK, _req("INVITE"), "caller"),
        _msg(10.001, "out", TRUNK, _resp(100, "Trying", "INVITE"), "caller"),
        _msg(10.01, "out", TRUNK, _resp(200, "OK", "INVITE"), "caller"),
        _msg(10.02, "in", TRUNK, _req("ACK"), "caller"),
        _msg(14.0, "out", PHONE, _req("INVITE", "b"), "operator:op1"),
        _msg(15.0, "in", PHONE, _resp(200, "OK", "INVITE"), "operator:op1"),
        _msg(15.01, "out", PHONE, _req("ACK", "b"), "operator:op1"),
        _msg(30.0, "in", TRUNK, _req("BYE"), "caller"),
        _msg(30.001, "out", TRUNK, _resp(200, "OK", "BYE"), "caller"),
        _msg(30.002, "out", PHONE, _req("BYE", "b"), "operator:op1"),
    ]


def test_digest_response_and_sdes_keys_are_masked() -> None:
    raw = (
        b"REGISTER sip:x SIP/2.0\r\n"
        b'Authorization: Digest username="op1", realm="r", nonce="n1", '
        b'uri="sip:x", response="0123456789abcdef0123456789abcdef", algorithm=MD5\r\n'
        b"Content-Length: 0\r\n\r\n"
        b"a=crypto:1 AES_CM_128_HMAC_SHA1_80 "
        b"inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20\r\n"
    )
    masked = mask_secrets(raw)
    assert b"0123456789abcdef" not in masked
    assert b'response="***"' in masked
    assert b"PS1uQCVee" not in masked
    assert b"inline:***|2^20" in masked
    # What is not secret stays: telecom staff need the nonce and the user.
    assert b'username="op1"' in masked and b'nonce="n1"' in masked


def test_unquoted_response_is_masked_on_proxy_authorization() -> None:
    raw = b"INVITE sip:x SIP/2.0\r\nProxy-Authorization: Digest response=abc123, nonce=x\r\n\r\n"
    assert b"abc123" not in mask_secrets(raw)


def test_ladder_puts_caller_left_centre_middle_operator_right() -> None:
    lad = ladder(_call())
    assert lad.columns == (
        "caller 127.0.0.2:5070",
        "centre 127.0.0.1:5060",
        "operator:op1 127.0.0.3:40000",
    )
    labels = [r.label for r in lad.rows]
    assert labels[:4] == ["INVITE", "100 Trying (INVITE)", "200 OK (INVITE)", "ACK"]
    assert labels[-1] == "BYE"
    first, op_invite = lad.rows[0], lad.rows[4]
    assert (first.source, first.destination) == (0, 1)
    assert (op_invite.source, op_invite.destination) == (1, 2)


def test_ladder_orders_by_time_and_keeps_capture_index() -> None:
    msgs = _call()
    shuffled = [msgs[3], msgs[0], msgs[2], msgs[1]]
    lad = ladder(shuffled)
    assert [r.label for r in lad.rows] == [
        "INVITE",
        "100 Trying (INVITE)",
        "200 OK (INVITE)",
        "ACK",
    ]
    assert [r.index for r in lad.rows] == [1, 3, 2, 0]


def test_capture_book_keeps_the_start_and_counts_the_rest() -> None:
    book = CaptureBook(cap=400)
    kept = [book.add(m) for m in _call()]
    assert kept[0] and not kept[-1]
    assert book.size <= 400
    assert book.dropped == kept.count(False) > 0


def test_pcap_round_trip_ipv4_and_ipv6() -> None:
    msgs = _call()
    msgs.append(
        CapturedMessage(
            at=31.0, direction="in", local=("::1", 5060), remote=("::1", 5099),
            transport="udp", data=_req("OPTIONS"), leg="caller",
        )
    )  # fmt: skip
    back = read_pcap(to_pcap(msgs))
    assert [payload for _, payload in back] == [m.data for m in msgs]
    assert back[0][0] == pytest.approx(10.0, abs=1e-6)


def test_wireshark_reads_every_message(tmp_path: Path) -> None:
    tshark = shutil.which("tshark")
    if tshark is None:
        pytest.skip("tshark (Wireshark) is not installed")
    msgs = _call()
    path = tmp_path / "incident.pcap"
    path.write_bytes(to_pcap(msgs))
    out = subprocess.run(
        [tshark, "-r", str(path), "-d", "udp.port==5060,sip", "-d", "udp.port==5070,sip",
         "-d", "udp.port==40000,sip", "-T", "fields", "-e", "sip.Method", "-e", "sip.Status-Code",
         "-e", "sip.Call-ID"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    rows = [line.split("\t") for line in out.stdout.splitlines() if line.strip()]
    assert len(rows) == len(msgs)
    assert rows[0][0] == "INVITE" and rows[1][1] == "100"
    assert {r[2] for r in rows} == {"a", "b"}
