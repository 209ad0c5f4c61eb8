"""The legs of an emergency call: the caller's side and the INVITEs we send.

`CallerSide` is the caller's INVITE dialog as the call sees it; `OutboundLeg`
an INVITE to an operator, an agency, a supervisor or a citizen (callback).
`caller_identity` and `dialled_number` read the caller's INVITE (DESIGN §2).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from ..config import Config
from ..incidents import LegQuality, LegRole
from ..net.media import MediaLeg
from ..net.sip_endpoint import SipEndpoint
from ..offer_answer import Negotiated
from ..sdp import SessionDescription
from ..sip.dialog import Dialog
from ..sip.errors import SipParseError
from ..sip.events import TransactionEvent
from ..sip.message import Request, parse_address
from ..sip.peer import Peer
from ..sip.session import Credentials, InviteSession
from ..sip.transaction import TransactionKey
from .guards import LegSrtp  # issue 11

__all__ = [
    "CallerSide",
    "OutboundLeg",
    "caller_identity",
    "dialled_number",
    "ignore_event",
    "quality",
    "start_session",
    "trunk_credentials",
]


def start_session(
    leg: OutboundLeg,
    endpoint: SipEndpoint,
    *,
    advertise: str,
    user_agent: str,
    on_event: Callable[[TransactionEvent], None],
    credentials: Credentials | None,
) -> InviteSession:
    """The INVITE session of an outbound leg, started: the leg's INVITE goes out."""
    session = InviteSession.outgoing(
        transactions=endpoint,
        local=endpoint.local_party(leg.peer.transport, user_agent=user_agent),
        invite=leg.invite,
        peer=leg.peer,
        on_event=on_event,
        credentials=credentials,
    )
    leg.session = session
    session.start()
    return session


def trunk_credentials(config: Config, trunk_name: str | None) -> Credentials | None:
    """The digest credentials of `[[trunk]]` `trunk_name` (auth_user/auth_password), if any."""
    trunk = config.trunk_named(trunk_name) if trunk_name else None
    if trunk is None or not trunk.auth_user:
        return None
    return Credentials(user=trunk.auth_user, password=trunk.auth_password)


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
    dialog: Dialog | None = None  # the session's, once it answered (in-dialog NOTIFY)
    negotiated: Negotiated | None = None
    state: Literal["calling", "ringing", "answered", "ended"] = "calling"
    cancelled: bool = False
    leg_id: int | None = None
    purpose: str = "offer"  # offer | transfer | conference | supervise | callback
    answered_at: float | None = None
    options_pending: bool = False
    probe: int = 0  # serial of the last in-dialog OPTIONS probe
    probed_at: float = 0.0
    trunk: str | None = None  # the trunk a call out goes through (agency, callback)
    # For queue offers: what the ACD said when the 200 OK arrived (None: not yet).
    # Decided in the SIP handler, at arrival, not when the call's inbox gets to
    # it: a busy loop must not turn an answer in time into a missed offer.
    acd_answer: bool | None = None
    session: InviteSession | None = None  # the leg's INVITE usage (sip/session.py)
    srtp: LegSrtp | None = None  # issue 11: our SDES key until the answer (guards.py)

    def secure_media(self, answer: SessionDescription) -> None:
        """Issue 11: key the leg's media from `answer` when we offered SRTP
        (SdpError when a mandatory leg's answer carries no usable key)."""
        if self.srtp is not None:
            self.media.srtp = self.srtp.for_answer(self.offer, answer)


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
