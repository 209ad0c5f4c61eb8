"""SIP dialogs: RFC 3261 §12 (and §13.2.2.4 for the ACK of a 2xx), sans-IO.

Theory of operation
-------------------
RFC 3261 §12: "A dialog represents a peer-to-peer SIP relationship between
two user agents that persists for some time. ... A dialog is identified at
each UA with a dialog ID, which consists of a Call-ID value, a local tag and
a remote tag." Its state (§12.1.1 UAS, §12.1.2 UAC) is the local and remote
sequence numbers, local and remote URIs, the remote target (the peer's
Contact), the route set (Record-Route, reversed on the UAC side) and the
secure flag. Requests within the dialog (§12.2.1.1) carry the dialog's
tags, a local CSeq one higher each time (ACK and CANCEL excepted), the
route set as Route headers and the remote target as Request-URI (loose
routing; the strict-routing form is kept for old proxies). Requests
received (§12.2.2) must not go back in CSeq (500) and a target-refresh
request (re-INVITE, UPDATE) replaces the remote target.

`DialogTable` matches incoming requests and responses to dialogs by
(Call-ID, local tag, remote tag). An in-dialog request for no dialog is
answered 481 (`no_such_dialog`). One tolerance, for a known peer bug:
pyVoIP puts a random To-tag on its ACK and on its 200 to BYE. Such an ACK or
non-INVITE response is matched by Call-ID, our tag and CSeq instead, and the
defect is reported once per peer (`PeerDefectTolerated`) so that it is
logged, never silently absorbed.

Not implemented, on purpose: several early dialogs from one INVITE forked by
a proxy (§12.1.2, §13.2.2.4). Calls to operators go straight to their
registered contact and calls from the trunk arrive without forking towards
us, so one dialog per INVITE is all the server ever has.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace

from .errors import SipParseError
from .events import PeerDefectTolerated
from .message import (
    Address,
    Headers,
    Request,
    Response,
    new_branch,
    parse_address,
)
from .peer import Peer, via_value

__all__ = [
    "TARGET_REFRESH_METHODS",
    "Dialog",
    "DialogId",
    "DialogMatch",
    "DialogTable",
    "no_such_dialog",
]

# §12.2 / RFC 3311 / RFC 6665: requests that may change the remote target.
TARGET_REFRESH_METHODS = frozenset({"INVITE", "UPDATE", "SUBSCRIBE", "NOTIFY", "REFER"})
# Requests that carry our Contact (RFC 3261 §8.1.1.8, RFC 3311, RFC 3515, RFC 6665).
_CONTACT_METHODS = frozenset({"INVITE", "UPDATE", "SUBSCRIBE", "NOTIFY", "REFER"})
# §13.2.2.4: the ACK of a 2xx carries the INVITE's credentials.
_CREDENTIAL_HEADERS = ("Authorization", "Proxy-Authorization")
_MAX_REPORTED = 10_000  # (peer, kind) pairs remembered for "report once"


@dataclass(frozen=True, slots=True)
class DialogId:
    call_id: str
    local_tag: str
    remote_tag: str


def _without_tag(address: Address) -> str:
    return str(
        Address(uri=address.uri, name=address.name, parameters=address.parameters.without("tag"))
    )


def _route_values(values: Iterable[str]) -> list[str]:
    # Validate now (a broken Record-Route must fail at dialog creation, not at BYE time).
    return [str(parse_address(v, "Record-Route")) for v in values]


def _initial_cseq() -> int:
    # §12.2.1.1: an initial value of our choosing, well below 2**31 (§8.1.1.5).
    return secrets.randbelow(2**16) + 1


@dataclass(slots=True, kw_only=True)
class Dialog:
    """The state of one dialog, and the requests it builds.

    `via_host`/`via_port`/`transport` are what the transport owner writes in
    the Via of requests this dialog sends (the Via is ours to fill, §18.1.1);
    `local_contact` is our Contact (a name-addr) for target-refresh requests.
    """

    call_id: str
    local_tag: str
    remote_tag: str
    local_uri: str  # name-addr of our side, without tag (From of our requests)
    remote_uri: str  # name-addr of the peer, without tag (To of our requests)
    local_cseq: int
    remote_cseq: int | None
    remote_target: str  # the peer's Contact URI
    route_set: list[str] = field(default_factory=list)
    secure: bool = False
    confirmed: bool = True
    via_host: str = "127.0.0.1"
    via_port: int = 5060
    transport: str = "udp"
    local_contact: str | None = None
    invite_cseq: int | None = None  # CSeq of the INVITE that made/last refreshed it

    @property
    def id(self) -> DialogId:
        return DialogId(self.call_id, self.local_tag, self.remote_tag)

    # -- constructors ---------------------------------------------------------

    @classmethod
    def as_uas(
        cls,
        request: Request,
        response: Response,
        *,
        via_host: str,
        via_port: int,
        transport: str = "udp",
        local_contact: str | None = None,
    ) -> Dialog:
        """The dialog our response (a 2xx, or a 1xx with a To-tag: early)
        creates for `request` (§12.1.1). Raises SipParseError (400) when the
        request cannot make a dialog (no Contact, bad Record-Route)."""
        local_tag = response.to_tag
        if not local_tag:
            raise ValueError("a dialog-creating response must carry our To tag")
        contacts = request.contacts
        if len(contacts) != 1:
            raise SipParseError("dialog-creating request needs exactly one Contact")
        cseq = request.cseq.sequence
        return cls(
            call_id=request.call_id,
            local_tag=local_tag,
            remote_tag=request.from_tag or "",
            local_uri=_without_tag(request.to_address),
            remote_uri=_without_tag(request.from_address),
            local_cseq=_initial_cseq(),
            remote_cseq=cseq,
            remote_target=str(contacts[0].uri),
            route_set=_route_values(request.headers.get_all("Record-Route")),
            secure=request.uri.lower().startswith("sips:"),
            confirmed=200 <= response.status < 300,
            via_host=via_host,
            via_port=via_port,
            transport=transport,
            local_contact=local_contact,
            invite_cseq=cseq if request.method == "INVITE" else None,
        )

    @classmethod
    def as_uac(
        cls,
        request: Request,
        response: Response,
        *,
        via_host: str,
        via_port: int,
        transport: str = "udp",
        local_contact: str | None = None,
    ) -> Dialog:
        """The dialog `response` (2xx, or 1xx with a To-tag) creates for our
        `request` (§12.1.2): route set = Record-Route reversed."""
        remote_tag = response.to_tag
        if not remote_tag:
            raise SipParseError("a dialog-creating response without To tag")
        contacts = response.contacts
        if len(contacts) != 1:
            raise SipParseError("dialog-creating response needs exactly one Contact")
        cseq = request.cseq.sequence
        return cls(
            call_id=request.call_id,
            local_tag=request.from_tag or "",
            remote_tag=remote_tag,
            local_uri=_without_tag(request.from_address),
            remote_uri=_without_tag(request.to_address),
            local_cseq=cseq,
            remote_cseq=None,
            remote_target=str(contacts[0].uri),
            route_set=list(reversed(_route_values(response.headers.get_all("Record-Route")))),
            secure=request.uri.lower().startswith("sips:"),
            confirmed=200 <= response.status < 300,
            via_host=via_host,
            via_port=via_port,
            transport=transport,
            local_contact=local_contact,
            invite_cseq=cseq if request.method == "INVITE" else None,
        )

    # -- requests we send ---------------------------------------------------------

    def create_request(
        self,
        method: str,
        *,
        body: bytes = b"",
        content_type: str | None = None,
        headers: Iterable[tuple[str, str]] = (),
    ) -> Request:
        """A request within the dialog (§12.2.1.1): BYE, re-INVITE, INFO,
        OPTIONS, REFER, NOTIFY, UPDATE … The local CSeq goes up by one.
        For CANCEL use `transaction.build_cancel`, for the 2xx ACK
        `create_ack`."""
        if method in ("ACK", "CANCEL"):
            raise ValueError(f"{method} is not built by create_request")
        self.local_cseq += 1
        if method == "INVITE":
            self.invite_cseq = self.local_cseq
        return self._build(method, self.local_cseq, body, content_type, headers)

    def create_ack(
        self,
        invite: Request,
        response: Response,
        *,
        body: bytes = b"",
        content_type: str | None = None,
        headers: Iterable[tuple[str, str]] = (),
    ) -> Request:
        """The ACK of a 2xx to our INVITE (§13.2.2.4): the INVITE's CSeq
        number with method ACK, a new branch, the dialog's route set, the
        INVITE's credentials. Send it with `send_stateless`, again for every
        retransmission of the 2xx."""
        del response  # the dialog already holds what the 2xx said
        extra = [
            (name, value) for name in _CREDENTIAL_HEADERS for value in invite.headers.get_all(name)
        ]
        return self._build("ACK", invite.cseq.sequence, body, content_type, [*extra, *headers])

    def _build(
        self,
        method: str,
        cseq: int,
        body: bytes,
        content_type: str | None,
        headers: Iterable[tuple[str, str]],
    ) -> Request:
        routes = list(self.route_set)
        uri = self.remote_target
        if routes and not _is_loose(routes[0]):
            # §12.2.1.1 strict routing: the first route becomes the
            # Request-URI, the remote target goes last in the Route set.
            first = parse_address(routes.pop(0)).uri
            uri = str(replace(first, headers=None))  # §12.2.1.1: headers not allowed
            routes.append(f"<{self.remote_target}>")
        h = Headers()
        h.add("Via", via_value(self.transport, self.via_host, self.via_port, new_branch()))
        h.add("Max-Forwards", "70")
        for route in routes:
            h.add("Route", route)
        h.add(
            "From", f"{self.local_uri};tag={self.local_tag}" if self.local_tag else self.local_uri
        )
        h.add(
            "To", f"{self.remote_uri};tag={self.remote_tag}" if self.remote_tag else self.remote_uri
        )
        h.add("Call-ID", self.call_id)
        h.add("CSeq", f"{cseq} {method}")
        if method in _CONTACT_METHODS and self.local_contact:
            h.add("Contact", self.local_contact)
        for name, value in headers:
            h.add(name, value)
        if body and content_type:
            h.add("Content-Type", content_type)
        return Request(method, uri, h, body)

    # -- what the peer sends ---------------------------------------------------------

    def receive_request(self, request: Request) -> int | None:
        """Apply §12.2.2 to a request of this dialog. Returns the status to
        reject it with (500: CSeq went back), or None when it is in order;
        a target-refresh request with a Contact updates the remote target."""
        if request.method in ("ACK", "CANCEL"):
            return None  # ACK and CANCEL reuse the INVITE's number
        cseq = request.cseq.sequence
        if self.remote_cseq is not None and cseq < self.remote_cseq:
            return 500
        self.remote_cseq = cseq
        if request.method == "INVITE":
            self.invite_cseq = cseq
        if request.method in TARGET_REFRESH_METHODS:
            contacts = request.contacts
            if contacts:
                self.remote_target = str(contacts[0].uri)
        return None

    def receive_response(self, response: Response) -> None:
        """Apply a response to one of our requests: a 2xx to a target-refresh
        request updates the remote target; a 2xx to the INVITE confirms an
        early dialog, taking its route set from the 2xx (§12.1.2)."""
        if not 200 <= response.status < 300:
            return
        method = response.cseq.method
        if method == "INVITE" and not self.confirmed:
            self.confirmed = True
            self.route_set = list(reversed(_route_values(response.headers.get_all("Record-Route"))))
        if method in TARGET_REFRESH_METHODS:
            contacts = response.contacts
            if contacts:
                self.remote_target = str(contacts[0].uri)


def _is_loose(route: str) -> bool:
    return "lr" in parse_address(route).uri.parameters


def no_such_dialog(request: Request) -> Response:
    """481 for an in-dialog request that matches no dialog (§12.2.2)."""
    return Response.for_request(request, 481)


@dataclass(frozen=True, slots=True, kw_only=True)
class DialogMatch:
    """What `DialogTable` found. `dialog` is None when nothing matched;
    `in_dialog` says the message claimed a dialog (a request with a To tag),
    so that None then means 481. `tolerated` is set when the match needed
    the pyVoIP tolerance, `defect` the first time for that peer and kind."""

    dialog: Dialog | None
    in_dialog: bool
    tolerated: bool = False
    defect: PeerDefectTolerated | None = None


class DialogTable:
    """The dialogs of one endpoint, keyed by (Call-ID, local tag, remote tag)."""

    __slots__ = ("_by_call_id", "_dialogs", "_reported")

    def __init__(self) -> None:
        self._dialogs: dict[DialogId, Dialog] = {}
        self._by_call_id: dict[str, list[Dialog]] = {}
        self._reported: set[tuple[Peer | None, str]] = set()

    def __len__(self) -> int:
        return len(self._dialogs)

    def __iter__(self) -> Iterator[Dialog]:
        return iter(list(self._dialogs.values()))

    def __contains__(self, dialog_id: object) -> bool:
        return dialog_id in self._dialogs

    def add(self, dialog: Dialog) -> None:
        if dialog.id in self._dialogs:
            raise ValueError(f"dialog {dialog.id} exists")
        self._dialogs[dialog.id] = dialog
        self._by_call_id.setdefault(dialog.call_id, []).append(dialog)

    def get(self, dialog_id: DialogId) -> Dialog | None:
        return self._dialogs.get(dialog_id)

    def remove(self, dialog: Dialog | DialogId) -> None:
        dialog_id = dialog.id if isinstance(dialog, Dialog) else dialog
        found = self._dialogs.pop(dialog_id, None)
        if found is None:
            return
        same = self._by_call_id.get(found.call_id, [])
        if found in same:
            same.remove(found)
        if not same:
            self._by_call_id.pop(found.call_id, None)

    def match_request(self, request: Request, peer: Peer | None = None) -> DialogMatch:
        """The dialog of an incoming request: To tag = our tag, From tag =
        theirs (§12.2.2). A request without To tag is out of dialog."""
        to_tag = request.to_tag
        if not to_tag:
            return DialogMatch(dialog=None, in_dialog=False)
        dialog = self._dialogs.get(DialogId(request.call_id, to_tag, request.from_tag or ""))
        if dialog is not None:
            return DialogMatch(dialog=dialog, in_dialog=True)
        if request.method == "ACK":
            # pyVoIP: random To-tag on the ACK. Same Call-ID, their tag, and
            # the CSeq of the INVITE the ACK acknowledges.
            sequence = request.cseq.sequence
            for candidate in self._by_call_id.get(request.call_id, ()):
                if (
                    candidate.remote_tag == (request.from_tag or "")
                    and candidate.invite_cseq == sequence
                ):
                    return self._tolerate(candidate, peer, "ack-to-tag")
        return DialogMatch(dialog=None, in_dialog=True)

    def match_response(self, response: Response, peer: Peer | None = None) -> DialogMatch:
        """The dialog of a response to our request: From tag = our tag, To
        tag = theirs. A non-INVITE response (the 200 to our BYE) whose To tag
        is wrong is matched by Call-ID, our tag and our CSeq (pyVoIP)."""
        local = response.from_tag or ""
        remote = response.to_tag or ""
        dialog = self._dialogs.get(DialogId(response.call_id, local, remote))
        if dialog is not None:
            return DialogMatch(dialog=dialog, in_dialog=True)
        cseq = response.cseq
        if cseq.method != "INVITE":
            for candidate in self._by_call_id.get(response.call_id, ()):
                if candidate.local_tag == local and cseq.sequence <= candidate.local_cseq:
                    return self._tolerate(candidate, peer, f"{cseq.method.lower()}-response-to-tag")
        return DialogMatch(dialog=None, in_dialog=bool(remote))

    def _tolerate(self, dialog: Dialog, peer: Peer | None, kind: str) -> DialogMatch:
        key = (peer, kind)
        defect = None
        if len(self._reported) >= _MAX_REPORTED:
            self._reported.clear()  # bounded: at worst a defect is reported again
        if key not in self._reported:
            self._reported.add(key)
            defect = PeerDefectTolerated(peer=peer, kind=kind, call_id=dialog.call_id)
        return DialogMatch(dialog=dialog, in_dialog=True, tolerated=True, defect=defect)
