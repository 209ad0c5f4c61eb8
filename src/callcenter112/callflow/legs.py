"""The legs of an emergency call: the caller's side and the INVITEs we send.

`CallerSide` is the caller's INVITE dialog as the call sees it; `OutboundLeg`
an INVITE to an operator, an agency, a supervisor or a citizen (callback).
`caller_identity` and `dialled_number` read the caller's INVITE (DESIGN §2).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..incidents import LegQuality, LegRole
from ..net.media import MediaLeg
from ..net.sip_endpoint import SipEndpoint
from ..offer_answer import Negotiated
from ..sdp import SessionDescription
from ..sip.dialog import Dialog
from ..sip.errors import SipParseError
from ..sip.events import TransactionEvent
from ..sip.message import Request, Response, parse_address
from ..sip.peer import Peer
from ..sip.session import InviteSession
from ..sip.transaction import TransactionKey

__all__ = [
    "CallerSide",
    "OutboundLeg",
    "acknowledge_answer",
    "caller_identity",
    "dialled_number",
    "ignore_event",
    "quality",
]


def acknowledge_answer(
    leg: OutboundLeg, response: Response, endpoint: SipEndpoint, advertise: str
) -> bool:
    """A 2xx to the INVITE of `leg` (RFC 3261 §13.2.2.4, RFC 6026 §7.2): the
    dialog from the first one, an ACK for every one, retransmissions
    included. True when this 2xx made the dialog. Raises SipParseError when
    the 2xx cannot make a dialog (no Contact). The one home of this rule for
    the legs that do not run on `sip.session.InviteSession` yet."""
    first = leg.dialog is None
    if leg.dialog is None:
        leg.dialog = Dialog.as_uac(
            leg.invite,
            response,
            via_host=advertise,
            via_port=endpoint.port,
            transport=leg.peer.transport,
            local_contact=endpoint.contact("112", leg.peer.transport),
        )
    endpoint.send_stateless(leg.dialog.create_ack(leg.invite, response), leg.peer)
    return first


def ignore_event(event: TransactionEvent) -> None:
    """The handler of a request whose answer nobody needs (a last BYE, a NOTIFY)."""
    del event


@dataclass(slots=True)
class OutboundLeg:
    """An INVITE we sent (to an operator, an agency, a supervisor, a callback target)."""

    role: LegRole
    name: str  # operator user, agency name, supervisor user, or the number called
    invite: Request
    peer: Peer
    media: MediaLeg
    offer: SessionDescription
    client_key: TransactionKey | None = None
    dialog: Dialog | None = None
    negotiated: Negotiated | None = None
    state: Literal["calling", "ringing", "answered", "ended"] = "calling"
    cancelled: bool = False
    leg_id: int | None = None
    purpose: str = "offer"  # offer | transfer | conference | supervise | callback
    answered_at: float | None = None
    options_pending: bool = False
    probe: int = 0  # serial of the last in-dialog OPTIONS probe
    probed_at: float = 0.0
    bye_sent: bool = False
    trunk: str | None = None  # the trunk a call out goes through (agency, callback)
    auth_tried: bool = False  # answered one 401/407 challenge already
    # For queue offers: what the ACD said when the 200 OK arrived (None: not yet).
    # Decided in the SIP handler, at arrival, not when the call's inbox gets to
    # it: a busy loop must not turn an answer in time into a missed offer.
    acd_answer: bool | None = None
    # The leg's INVITE session, for legs moved onto sip/session.py (callbacks
    # so far); the SIP fields above are then unused and go when all legs have.
    session: InviteSession | None = None


@dataclass(slots=True)
class CallerSide:
    invite: Request
    server_key: TransactionKey
    peer: Peer
    to_tag: str
    media: MediaLeg | None = None
    negotiated: Negotiated | None = None
    dialog: Dialog | None = None
    answered: bool = False
    acked: bool = False
    ended: bool = False
    leg_id: int | None = None
    options_pending: bool = False
    probe: int = 0
    session_version: int = 1


def quality(media: MediaLeg) -> LegQuality:
    """What the incident keeps of a leg's RTP receive statistics."""
    s = media.stats()
    return LegQuality(packets=s.packets, lost=max(0, s.lost), jitter_ms=round(s.jitter_ms, 2))


def caller_identity(invite: Request) -> tuple[str, str | None]:
    """(number, display name) from P-Asserted-Identity, else From (DESIGN §2).

    Withheld numbers (Privacy: id, `anonymous` users) give 'anonymous'.
    """
    candidates = [*invite.headers.get_all("P-Asserted-Identity"), invite.headers.get("From") or ""]
    privacy = (invite.headers.get("Privacy") or "").lower()
    for value in candidates:
        if not value:
            continue
        try:
            addr = parse_address(value)
        except SipParseError:
            continue
        user = addr.uri.user or ""
        if addr.uri.scheme == "tel":
            user = addr.uri.user or ""
        user = user.split(";", 1)[0]
        if not user or user.lower() in ("anonymous", "unknown", "restricted", "unavailable"):
            continue
        if "id" in privacy.split(";") and value is not candidates[0]:
            return "anonymous", None
        return user, addr.name or None
    return "anonymous", None


def dialled_number(invite: Request) -> str:
    uri = invite.uri
    if uri.lower().startswith("urn:service:sos"):
        return "urn:service:sos"
    parsed = invite.sip_uri
    if parsed is not None and parsed.user:
        return parsed.user.split(";", 1)[0]
    return uri
