"""REFER in a dialog we are in (RFC 3515), sans-IO: its target, its NOTIFYs.

An operator's softphone transfers a caller by sending a REFER in its dialog
with us. We answer 202 Accepted, which creates an implicit subscription
(RFC 3515 §2.4.4), and report the progress of the transfer in NOTIFYs whose
body is a message/sipfrag of the status line (RFC 3515 §2.4.5, RFC 3420):
"SIP/2.0 100 Trying" at once, then the final status. The last NOTIFY ends
the subscription (`Subscription-State: terminated`, RFC 6665 §4.1.3).

The call flow decides whether and where to transfer; the NOTIFY is sent
through the leg's `InviteSession.notify_refer` (sip/session.py), which owns
the dialog.
"""

from __future__ import annotations

from .dialog import Dialog
from .message import Request

__all__ = [
    "NOTIFY_EXPIRES_S",
    "SIPFRAG",
    "refer_notify",
    "refer_target",
    "sipfrag",
]

SIPFRAG = "message/sipfrag;version=2.0"
# RFC 3515 §2.4.4: the implicit subscription's duration is the notifier's to
# choose; a transfer to an agency is over within its ring timeout (<= 60 s).
NOTIFY_EXPIRES_S = 60


def refer_target(refer_to: str) -> str:
    """The user part of a Refer-To (`<sip:113@host>` → `113`), or the raw text."""
    text = refer_to.strip()
    if "<" in text and ">" in text:
        text = text[text.index("<") + 1 : text.index(">")]
    text = text.split("?", 1)[0].split(";", 1)[0]
    if ":" in text:
        text = text.split(":", 1)[1]
    return text.split("@", 1)[0]


def sipfrag(status: int, reason: str) -> str:
    """The status line a NOTIFY reports (RFC 3515 §2.4.5)."""
    return f"SIP/2.0 {status} {reason}"


def refer_notify(dialog: Dialog, *, refer_cseq: int, frag: str, active: bool) -> Request:
    """The NOTIFY for the REFER with CSeq `refer_cseq` (its `id`, RFC 3515
    §2.4.6); `active` False ends the subscription."""
    state = f"active;expires={NOTIFY_EXPIRES_S}" if active else "terminated;reason=noresource"
    return dialog.create_request(
        "NOTIFY",
        body=(frag + "\r\n").encode(),
        content_type=SIPFRAG,
        headers=[("Event", f"refer;id={refer_cseq}"), ("Subscription-State", state)],
    )
