"""sip/refer.py: the REFER target and the NOTIFYs of its implicit subscription (RFC 3515)."""

from __future__ import annotations

import pytest

from callcenter112.sip.dialog import Dialog
from callcenter112.sip.message import Headers, Request, Response, parse_message
from callcenter112.sip.refer import SIPFRAG, refer_notify, refer_target, sipfrag


@pytest.mark.parametrize(
    ("refer_to", "target"),
    [
        ("<sip:113@192.0.2.1>", "113"),
        ("<sip:fire@192.0.2.1;transport=udp?Replaces=abc>", "fire"),
        ("sip:110@example.org", "110"),
        ('"Fire" <sips:113@example.org:5061>', "113"),
        ("113", "113"),
        ("  <tel:113>  ", "113"),
    ],
)
def test_refer_target_is_the_user_part(refer_to: str, target: str) -> None:
    assert refer_target(refer_to) == target


def _dialog() -> Dialog:
    h = Headers()
    h.add("Via", "SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-r1")
    h.add("From", "<sip:112@192.0.2.10>;tag=ours")
    h.add("To", "<sip:op1@192.0.2.20>")
    h.add("Call-ID", "refer-test")
    h.add("CSeq", "1 INVITE")
    h.add("Contact", "<sip:112@192.0.2.10:5060>")
    invite = parse_message(Request("INVITE", "sip:op1@192.0.2.20:5062", h).serialize())
    assert isinstance(invite, Request)
    ok = Response.for_request(
        invite, 200, to_tag="theirs", headers=[("Contact", "<sip:op1@192.0.2.20:5062>")]
    )
    answer = parse_message(ok.serialize())
    assert isinstance(answer, Response)
    return Dialog.as_uac(invite, answer, via_host="192.0.2.10", via_port=5060)


@pytest.mark.parametrize(("active", "state"), [(True, "active;expires=60"), (False, "terminated")])
def test_the_notify_carries_the_sipfrag_and_the_subscription_state(
    active: bool, state: str
) -> None:
    dialog = _dialog()
    notify = refer_notify(dialog, refer_cseq=7, frag=sipfrag(486, "Busy Here"), active=active)
    parsed = parse_message(notify.serialize())
    assert isinstance(parsed, Request) and parsed.method == "NOTIFY"
    assert parsed.headers.get("Event") == "refer;id=7"
    assert (parsed.headers.get("Subscription-State") or "").startswith(state)
    assert parsed.headers.get("Content-Type") == SIPFRAG
    assert parsed.body == b"SIP/2.0 486 Busy Here\r\n"
    assert parsed.call_id == "refer-test" and parsed.to_tag == "theirs"
