"""SIP dialogs (RFC 3261 §12, §13.2.2.4) built from real message bytes."""

from __future__ import annotations

import pytest

from callcenter112.sip.dialog import Dialog, DialogId, DialogTable, no_such_dialog
from callcenter112.sip.errors import SipParseError
from callcenter112.sip.events import AckReceived, PeerDefectTolerated, RequestReceived
from callcenter112.sip.message import Request, Response, parse_message
from callcenter112.sip.peer import Peer
from callcenter112.sip.transaction import TransactionLayer

TRUNK = Peer("udp", "192.0.2.1", 5060)
PYVOIP = Peer("udp", "127.0.0.1", 40000)

# What a carrier sends us (two proxies record-routed).
TRUNK_INVITE = (
    b"INVITE sip:112@192.0.2.10 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKtrunk1\r\n"
    b"Via: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bKorigin\r\n"
    b"Record-Route: <sip:p2.telkom.example;lr>\r\n"
    b"Record-Route: <sip:p1.telkom.example;lr>\r\n"
    b"Max-Forwards: 68\r\n"
    b'From: "+62 811 2345" <sip:+628112345@telkom.example>;tag=caller-tag\r\n'
    b"To: <sip:112@192.0.2.10>\r\n"
    b"Call-ID: trunk-call-1@198.51.100.7\r\n"
    b"CSeq: 101 INVITE\r\n"
    b"Contact: <sip:+628112345@198.51.100.7:5060;transport=udp>\r\n"
    b"Content-Length: 0\r\n\r\n"
)


def request(data: bytes) -> Request:
    message = parse_message(data)
    assert isinstance(message, Request)
    return message


def response(data: bytes) -> Response:
    message = parse_message(data)
    assert isinstance(message, Response)
    return message


def on_wire(message: Request | Response) -> Request | Response:
    return parse_message(message.serialize())


def uas_dialog() -> tuple[Request, Response, Dialog]:
    invite = request(TRUNK_INVITE)
    ok = Response.for_request(
        invite, 200, to_tag="our-tag", headers=[("Contact", "<sip:112@192.0.2.10:5060>")]
    )
    ok = response(ok.serialize())
    dialog = Dialog.as_uas(
        invite,
        ok,
        via_host="192.0.2.10",
        via_port=5060,
        local_contact="<sip:112@192.0.2.10:5060>",
    )
    return invite, ok, dialog


def test_uas_dialog_from_trunk_invite() -> None:
    invite, ok, dialog = uas_dialog()
    assert dialog.id == DialogId("trunk-call-1@198.51.100.7", "our-tag", "caller-tag")
    assert dialog.confirmed and not dialog.secure
    assert dialog.remote_cseq == 101 and dialog.invite_cseq == 101
    assert dialog.remote_target == "sip:+628112345@198.51.100.7:5060;transport=udp"
    # UAS: route set in Record-Route order (§12.1.1).
    assert dialog.route_set == ["<sip:p2.telkom.example;lr>", "<sip:p1.telkom.example;lr>"]
    assert "tag" not in dialog.local_uri and "tag" not in dialog.remote_uri
    assert ok.headers.get_all("Record-Route") == invite.headers.get_all("Record-Route")
    first = dialog.local_cseq
    bye = on_wire(dialog.create_request("BYE"))
    assert isinstance(bye, Request)
    assert bye.uri == dialog.remote_target
    assert bye.headers.get_all("Route") == dialog.route_set
    assert (bye.from_tag, bye.to_tag) == ("our-tag", "caller-tag")
    assert bye.from_address.uri.user == "112"
    assert bye.to_address.name == "+62 811 2345"
    assert (bye.cseq.sequence, bye.cseq.method) == (first + 1, "BYE")
    assert bye.call_id == invite.call_id
    via = bye.top_via
    assert (via.transport, via.host, via.port) == ("UDP", "192.0.2.10", 5060)
    assert via.branch and via.branch.startswith("z9hG4bK") and "rport" in via.parameters
    assert "Contact" not in bye.headers
    info = dialog.create_request(
        "INFO", body=b"Signal=1\r\n", content_type="application/dtmf-relay"
    )
    reinvite = dialog.create_request("INVITE", body=b"v=0\r\n", content_type="application/sdp")
    assert [info.cseq.sequence, reinvite.cseq.sequence] == [first + 2, first + 3]
    assert info.top_via.branch != reinvite.top_via.branch
    assert reinvite.headers.get("Contact") == "<sip:112@192.0.2.10:5060>"
    assert info.content_type == "application/dtmf-relay" and info.body == b"Signal=1\r\n"
    assert dialog.invite_cseq == first + 3
    with pytest.raises(ValueError):
        dialog.create_request("ACK")


def test_uac_dialog_route_set_is_reversed_and_ack_keeps_the_cseq() -> None:
    invite = request(
        b"INVITE sip:op1@192.0.2.50:5080 SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKout1;rport\r\n"
        b"Max-Forwards: 70\r\n"
        b"From: <sip:112@192.0.2.10>;tag=uac-tag\r\n"
        b"To: <sip:op1@192.0.2.10>\r\n"
        b"Call-ID: op-call-1@192.0.2.10\r\n"
        b"CSeq: 7 INVITE\r\n"
        b"Contact: <sip:112@192.0.2.10:5060>\r\n"
        b'Proxy-Authorization: Digest username="x", realm="r", nonce="n",'
        b' uri="sip:op1", response="0"\r\n'
        b"Content-Length: 0\r\n\r\n"
    )
    ok = response(
        b"SIP/2.0 200 OK\r\n"
        b"Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKout1;rport=5060\r\n"
        b"Record-Route: <sip:a.example;lr>, <sip:b.example;lr>\r\n"
        b"From: <sip:112@192.0.2.10>;tag=uac-tag\r\n"
        b"To: <sip:op1@192.0.2.10>;tag=op-tag\r\n"
        b"Call-ID: op-call-1@192.0.2.10\r\n"
        b"CSeq: 7 INVITE\r\n"
        b"Contact: <sip:op1@192.0.2.50:5080;transport=tcp>\r\n"
        b"Content-Length: 0\r\n\r\n"
    )
    dialog = Dialog.as_uac(invite, ok, via_host="192.0.2.10", via_port=5060)
    assert dialog.id == DialogId("op-call-1@192.0.2.10", "uac-tag", "op-tag")
    assert dialog.route_set == ["<sip:b.example;lr>", "<sip:a.example;lr>"]  # reversed (§12.1.2)
    assert dialog.local_cseq == 7 and dialog.remote_cseq is None
    ack = on_wire(dialog.create_ack(invite, ok))
    assert isinstance(ack, Request)
    assert (ack.method, ack.cseq.sequence, ack.cseq.method) == ("ACK", 7, "ACK")
    assert ack.uri == "sip:op1@192.0.2.50:5080;transport=tcp"
    assert ack.top_via.branch != invite.top_via.branch  # a 2xx ACK is a new transaction
    assert ack.headers.get("Proxy-Authorization") == invite.headers.get("Proxy-Authorization")
    assert ack.headers.get_all("Route") == dialog.route_set
    assert dialog.local_cseq == 7  # the ACK did not consume a number
    assert dialog.create_request("BYE").cseq.sequence == 8
    # The peer's first request sets the remote CSeq, whatever its value.
    bye = Request(
        "BYE",
        "sip:112@192.0.2.10:5060",
        [
            ("Via", "SIP/2.0/UDP 192.0.2.50:5080;branch=z9hG4bKb1"),
            ("From", "<sip:op1@192.0.2.10>;tag=op-tag"),
            ("To", "<sip:112@192.0.2.10>;tag=uac-tag"),
            ("Call-ID", "op-call-1@192.0.2.10"),
            ("CSeq", "3 BYE"),
        ],
    )
    assert dialog.receive_request(bye) is None and dialog.remote_cseq == 3


def test_early_dialog_is_confirmed_by_the_2xx() -> None:
    invite = request(TRUNK_INVITE.replace(b"Record-Route: <sip:p1.telkom.example;lr>\r\n", b""))
    ringing = Response.for_request(
        invite, 180, to_tag="t", headers=[("Contact", "<sip:x@192.0.2.99>")]
    )
    dialog = Dialog.as_uac(invite, response(ringing.serialize()), via_host="h", via_port=5060)
    assert not dialog.confirmed and dialog.route_set == ["<sip:p2.telkom.example;lr>"]
    ok = Response.for_request(invite, 200, to_tag="t", headers=[("Contact", "<sip:y@192.0.2.98>")])
    ok.headers.remove("Record-Route")
    dialog.receive_response(response(ok.serialize()))
    assert dialog.confirmed and dialog.route_set == []
    assert dialog.remote_target == "sip:y@192.0.2.98"
    dialog.receive_response(Response.for_request(invite, 486, to_tag="t"))  # ignored
    assert dialog.remote_target == "sip:y@192.0.2.98"


def test_strict_route_puts_the_target_last() -> None:
    _, _, dialog = uas_dialog()
    dialog.route_set = ["<sip:old-proxy.example>", "<sip:p1.telkom.example;lr>"]
    bye = dialog.create_request("BYE")
    assert bye.uri == "sip:old-proxy.example"
    assert bye.headers.get_all("Route") == [
        "<sip:p1.telkom.example;lr>",
        f"<{dialog.remote_target}>",
    ]


def test_cseq_rules_and_target_refresh() -> None:
    _, _, dialog = uas_dialog()

    def in_dialog(method: str, cseq: int, contact: str | None = None) -> Request:
        headers = [
            ("Via", "SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKx"),
            ("From", "<sip:+628112345@telkom.example>;tag=caller-tag"),
            ("To", "<sip:112@192.0.2.10>;tag=our-tag"),
            ("Call-ID", "trunk-call-1@198.51.100.7"),
            ("CSeq", f"{cseq} {method}"),
        ]
        if contact:
            headers.append(("Contact", contact))
        message = on_wire(Request(method, "sip:112@192.0.2.10", headers))
        assert isinstance(message, Request)
        return message

    assert dialog.receive_request(in_dialog("ACK", 101)) is None
    assert dialog.receive_request(in_dialog("INFO", 102)) is None and dialog.remote_cseq == 102
    assert dialog.receive_request(in_dialog("INFO", 100)) == 500  # §12.2.2: went back
    assert dialog.remote_cseq == 102
    assert dialog.receive_request(in_dialog("INVITE", 103, "<sip:moved@198.51.100.8>")) is None
    assert dialog.remote_target == "sip:moved@198.51.100.8" and dialog.invite_cseq == 103
    assert dialog.receive_request(in_dialog("INFO", 104, "<sip:ignored@x.example>")) is None
    assert dialog.remote_target == "sip:moved@198.51.100.8"  # INFO is no target refresh
    assert dialog.receive_request(in_dialog("CANCEL", 1)) is None


def test_dialog_creation_needs_a_contact_and_our_tag() -> None:
    invite = request(
        TRUNK_INVITE.replace(b"Contact: <sip:+628112345@198.51.100.7:5060;transport=udp>\r\n", b"")
    )
    with pytest.raises(SipParseError):
        Dialog.as_uas(
            invite, Response.for_request(invite, 200, to_tag="t"), via_host="h", via_port=1
        )
    with pytest.raises(ValueError):
        Dialog.as_uas(
            request(TRUNK_INVITE), Response.for_request(invite, 200), via_host="h", via_port=1
        )
    with pytest.raises(SipParseError):
        Dialog.as_uac(
            request(TRUNK_INVITE), Response.for_request(invite, 200), via_host="h", via_port=1
        )


# ---------------------------------------------------------------------------
# DialogTable


def table_with_uas_dialog() -> tuple[DialogTable, Dialog]:
    table = DialogTable()
    _, _, dialog = uas_dialog()
    table.add(dialog)
    return table, dialog


def test_table_matches_and_481_for_unknown_dialogs() -> None:
    table, dialog = table_with_uas_dialog()
    bye = request(
        b"BYE sip:112@192.0.2.10:5060 SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKbye1\r\n"
        b"From: <sip:+628112345@telkom.example>;tag=caller-tag\r\n"
        b"To: <sip:112@192.0.2.10>;tag=our-tag\r\n"
        b"Call-ID: trunk-call-1@198.51.100.7\r\n"
        b"CSeq: 102 BYE\r\nContent-Length: 0\r\n\r\n"
    )
    match = table.match_request(bye, TRUNK)
    assert match.dialog is dialog and match.in_dialog and not match.tolerated
    stranger = request(bye.serialize().replace(b"tag=our-tag", b"tag=not-ours"))
    miss = table.match_request(stranger, TRUNK)
    assert miss.dialog is None and miss.in_dialog
    answer = no_such_dialog(stranger)
    assert answer.status == 481 and answer.cseq.method == "BYE"
    fresh = request(TRUNK_INVITE)
    assert table.match_request(fresh).in_dialog is False
    assert DialogId("trunk-call-1@198.51.100.7", "our-tag", "caller-tag") in table
    assert len(table) == 1 and list(table) == [dialog]
    with pytest.raises(ValueError):
        table.add(dialog)
    table.remove(dialog.id)
    table.remove(dialog)  # idempotent
    assert len(table) == 0 and table.match_request(bye).dialog is None


def pyvoip_ack(invite: Request, to_tag: str) -> Request:
    # The shape of pyVoIP 1.6.8 SIPClient.gen_ack: the INVITE's Via (and
    # branch) reused, and `To: <raw>;tag=<fresh random tag>`.
    return request(
        b"ACK sip:112@192.0.2.10 SIP/2.0\r\n"
        + b"Via: "
        + (invite.headers.get("Via") or "").encode()
        + b"\r\n"
        b"Max-Forwards: 70\r\n"
        b"To: <sip:112@192.0.2.10>;tag=" + to_tag.encode() + b"\r\n"
        b"From: " + (invite.headers.get("From") or "").encode() + b"\r\n"
        b"Call-ID: " + invite.call_id.encode() + b"\r\n"
        b"CSeq: %d ACK\r\n" % invite.cseq.sequence + b"User-Agent: pyVoIP 1.6.8\r\n"
        b"Content-Length: 0\r\n\r\n"
    )


def test_pyvoip_ack_with_wrong_to_tag_is_matched_and_reported_once() -> None:
    table, dialog = table_with_uas_dialog()
    invite = request(TRUNK_INVITE)
    first = table.match_request(pyvoip_ack(invite, "0f3a9c21"), PYVOIP)
    assert first.dialog is dialog and first.tolerated
    assert first.defect == PeerDefectTolerated(
        peer=PYVOIP, kind="ack-to-tag", call_id=dialog.call_id
    )
    again = table.match_request(pyvoip_ack(invite, "77aa01bc"), PYVOIP)
    assert again.dialog is dialog and again.tolerated and again.defect is None
    other = table.match_request(pyvoip_ack(invite, "1"), Peer("udp", "127.0.0.1", 40002))
    assert other.defect is not None
    # An ACK for a different INVITE (CSeq) is not tolerated.
    wrong = request(pyvoip_ack(invite, "x").serialize().replace(b"CSeq: 101 ACK", b"CSeq: 99 ACK"))
    assert table.match_request(wrong, PYVOIP).dialog is None
    # Nor a BYE with a wrong To tag: that is a 481.
    bye = request(
        pyvoip_ack(invite, "x")
        .serialize()
        .replace(b"ACK sip", b"BYE sip")
        .replace(b"101 ACK", b"102 BYE")
    )
    assert table.match_request(bye, PYVOIP).dialog is None


def test_pyvoip_200_to_our_bye_with_wrong_to_tag() -> None:
    table, dialog = table_with_uas_dialog()
    bye = dialog.create_request("BYE")
    # pyVoIP gen_ok: To gets a fresh tag, not the dialog's.
    ok = Response.for_request(bye, 200)
    ok.headers.set("To", "<sip:+628112345@telkom.example>;tag=5e1d2a77")
    match = table.match_response(response(ok.serialize()), PYVOIP)
    assert match.dialog is dialog and match.tolerated
    assert match.defect is not None and match.defect.kind == "bye-response-to-tag"
    assert table.match_response(response(ok.serialize()), PYVOIP).defect is None
    # The correct tag matches without tolerance.
    good = response(Response.for_request(bye, 200).serialize())
    assert good.to_tag == "caller-tag"
    plain = table.match_response(good, PYVOIP)
    assert plain.dialog is dialog and not plain.tolerated
    # A 2xx to an INVITE with another tag is another dialog, never tolerated.
    reinvite = dialog.create_request("INVITE")
    forked = Response.for_request(reinvite, 200)
    forked.headers.set("To", "<sip:+628112345@telkom.example>;tag=fork")
    assert table.match_response(response(forked.serialize())).dialog is None


def test_transaction_and_dialog_layers_together_with_a_pyvoip_ack() -> None:
    layer = TransactionLayer()
    table = DialogTable()
    invite = request(
        TRUNK_INVITE.replace(b"Via: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bKorigin\r\n", b"")
    )
    (received,) = layer.receive(invite, PYVOIP, 0.0)
    assert isinstance(received, RequestReceived) and received.to_tag
    ok = Response.for_request(
        received.request, 200, to_tag=received.to_tag, headers=[("Contact", "<sip:112@192.0.2.10>")]
    )
    layer.respond(received.server_key, ok, 0.1)
    dialog = Dialog.as_uas(received.request, ok, via_host="192.0.2.10", via_port=5060)
    table.add(dialog)
    (acked,) = layer.receive(pyvoip_ack(invite, "random1"), PYVOIP, 0.2)
    assert isinstance(acked, AckReceived) and acked.server_key == received.server_key
    match = table.match_request(acked.request, acked.peer)
    assert match.dialog is dialog and match.defect is not None
    assert dialog.receive_request(acked.request) is None
