"""Registrar: where each operator's softphone can be reached, and whether it still can.

Owns the location service of RFC 3261 §10 for operators (bindings of an
operator's address-of-record to the Contact URIs their phones register, with
expiry), the choice of where to send an INVITE for a binding behind NAT, and
the scheduling of OPTIONS "qualify" pings that tell a dead phone from a live
one. It emits the events the ACD uses to put operators online and offline.

Theory of operation (RFC 3261 §10.3, "Processing REGISTER Requests"):

  Authentication happens first (`auth.DigestAuthenticator`); then
  `Registrar.handle_register(request, user, now, source=peer)`:

  §10.3 step 5  The To URI must be the authenticated operator's AOR: its user
                part must equal the authenticated user, else 403.
  §10.3 step 6  Each Contact's expiry comes from its `expires` parameter, else
                the Expires header, else the default (3600). Malformed values
                count as 3600 (§20.10, §20.19). `Contact: *` is allowed only
                alone and with `Expires: 0` (else 400) and removes every
                binding. An expiry below `min_expires` (and above zero) is
                refused with 423 and Min-Expires (§10.3 step 6, §20.23); one
                above `max_expires` is shortened — the registrar "MAY choose
                an expiration less than the requested" (§10.2.1.1).
  §10.3 step 7  For an existing binding, a request with the same Call-ID must
                carry a higher CSeq; otherwise the update is aborted as a
                whole (nothing changes) and answered 500: it is a delayed
                request that would otherwise undo a newer one.
  §10.3 step 8  200 OK lists every current binding with its remaining expiry.

Binding identity: the Contact URI, compared by scheme, user, host
(case-insensitive), port and all URI parameters; or, when the Contact carries
`+sip.instance` (RFC 5626 §4.1, RFC 5627), the instance ID (plus `reg-id`), so
a phone that restarts on a new port replaces its old binding instead of
leaving a dead one behind ("RFC 5626-lite": no flow tokens). A
contact whose URI equals an existing binding's is that binding even if the
instance ID changed (pyVoIP draws a new one at every start on the same
port): two bindings must never point at the same address.

At most `max_contacts_per_user` bindings are kept per operator. A new contact
beyond that evicts the binding refreshed longest ago rather than refusing:
an operator whose phone restarted must always get back in; the evicted
binding is most likely that restarted phone's dead predecessor. A single
REGISTER listing more new contacts than the cap is refused (403).

Where to send (NAT): each binding keeps the source (transport, address, port,
TCP/TLS connection) the REGISTER came from, and `Binding.target` decides:
  * contact host is an IP equal to the source IP → the contact (no NAT; its
    port is the one the phone listens on);
  * contact host is a non-global address (RFC 1918, CGNAT, loopback,
    link-local, ULA …) that differs from the source, a host name, or a
    transport we do not speak → the source (RFC 3581-style symmetric
    routing, what Kamailio's fix_nated_register and Asterisk's
    rewrite_contact do);
  * contact host is another global address → the contact (multi-homed phone).
  The contact's transport is its URI's (`peer.uri_transport`: `sips:` and
  `;transport=tls` are TLS, `;transport=tcp` TCP, else UDP). TCP and TLS keep
  the connection id when the contact is of the source's transport, so the
  INVITE reuses the phone's connection; when that has closed, the transport
  opens a new one of the same kind (TLS verified against `sip.tls_ca`).
The Request-URI of the INVITE stays the Contact URI; only the destination
changes.

Path (RFC 3327): behind an edge proxy (Kamailio, deploy/kamailio/) the
REGISTER arrives with `Path` headers naming the proxies on the way. The
binding keeps them in order (§5.3: "the registrar MUST store the Path header
values … in the order in which they appear") and every request to that
binding goes through them: `Binding.target` is the first Path URI's address
and `Binding.route_set` the Route headers to put on the request (§5.3:
"…use the stored Path as a preloaded Route set"), so calls reach the phone
through the proxy that holds its NAT pinhole. The 200 OK echoes the Path only
when the phone said `Supported: path` (§5.3); a phone that did not is still
served (Kamailio's `path_mode` "lazy"), because refusing an operator's phone
would take a 112 desk offline.

Reachability: a binding is `reachable` until the `Qualifier` sees
`failures_to_unreachable` consecutive OPTIONS pings fail, and again as soon
as any answer arrives or the phone re-registers. An operator is *online*
while at least one binding is reachable. Events:
  * `OperatorRegistered(user, contact, source)` — a new binding, or an
    offline operator came back; the ACD treats it as "online" (idempotent).
  * `OperatorUnregistered(user, reason, contact)` — the operator has no
    reachable binding left: reason `expired`, `removed` (unregistered, `*`,
    operator deleted) or `unreachable`.
  * `ContactReachabilityChanged(user, contact, reachable)` — per binding.
Time is always a passed-in `now` (the caller's monotonic clock).
"""

from __future__ import annotations

import heapq
import ipaddress
import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from enum import Enum
from typing import TYPE_CHECKING, Final

from ..numerals import is_ascii_digits
from .errors import SipParseError
from .message import URI, Address, Request, Response, new_tag, outside_quotes, parse_address
from .peer import DEFAULT_PORTS, Peer, TransportName, uri_transport

if TYPE_CHECKING:
    from ..config import SipConfig

__all__ = [
    "DEFAULT_EXPIRES",
    "MALFORMED_EXPIRES",
    "MAX_EXPIRES_VALUE",
    "Binding",
    "ContactReachabilityChanged",
    "OperatorRegistered",
    "OperatorUnregistered",
    "Qualifier",
    "RegisterOutcome",
    "Registrar",
    "RegistrarEvent",
    "UnregisterReason",
    "binding_from_dict",
    "binding_to_dict",
    "contact_refusal",
]

# RFC 3261 §10.2.1.1 suggests 3600 s when the UA asks for nothing; §20.10 and
# §20.19 make malformed values equivalent to 3600 too.
DEFAULT_EXPIRES: Final = 3600
MALFORMED_EXPIRES: Final = 3600
# RFC 3261 §20.19: larger values may be treated as 2**32-1.
MAX_EXPIRES_VALUE: Final = 2**32 - 1
# RFC 3261 §10.3 step 7: 423 only for requests "smaller than one hour".
_ONE_HOUR: Final = 3600


class UnregisterReason(Enum):
    EXPIRED = "expired"
    REMOVED = "removed"
    UNREACHABLE = "unreachable"


@dataclass(frozen=True, slots=True, kw_only=True)
class OperatorRegistered:
    """An operator has a (new) reachable binding: put them online."""

    user: str
    contact: str
    source: Peer


@dataclass(frozen=True, slots=True, kw_only=True)
class OperatorUnregistered:
    """An operator has no reachable binding left: take them offline."""

    user: str
    reason: UnregisterReason
    contact: str  # the binding whose loss took the operator offline


@dataclass(frozen=True, slots=True, kw_only=True)
class ContactReachabilityChanged:
    user: str
    contact: str
    reachable: bool


RegistrarEvent = OperatorRegistered | OperatorUnregistered | ContactReachabilityChanged


@dataclass(frozen=True, slots=True, kw_only=True)
class Binding:
    """One Contact of one operator (a value: updates replace it)."""

    user: str
    contact: str  # the Contact URI as the phone wrote it: the INVITE's Request-URI
    params: str  # its header parameters as ";name=value…", without expires
    key: str  # binding identity (instance ID or normalised URI)
    uri_key: str  # the normalised Contact URI (RFC 3261 §19.1.4-style)
    source: Peer  # where the REGISTER came from
    target: Peer  # where to send requests for this binding (see module doc)
    behind_nat: bool  # target is the source, not the contact
    call_id: str
    cseq: int
    q: float
    expires_at: float
    registered_at: float
    refreshed_at: float
    user_agent: str = ""
    reachable: bool = True
    path: tuple[str, ...] = ()  # RFC 3327 Path values, outermost proxy first

    @property
    def route_set(self) -> tuple[str, ...]:
        """Route header values for a request to this binding (RFC 3327 §5.3):
        the stored Path, in order; empty when the phone registered directly."""
        return self.path

    def expires_in(self, now: float) -> int:
        return max(0, math.ceil(self.expires_at - now))

    def contact_header(self, now: float) -> str:
        """The Contact value listing this binding in a 200 OK (§10.3 step 8)."""
        return f"<{self.contact}>{self.params};expires={self.expires_in(now)}"


@dataclass(frozen=True, slots=True, kw_only=True)
class RegisterOutcome:
    """What `handle_register` decided: the response to send and the events."""

    response: Response
    events: tuple[RegistrarEvent, ...] = ()

    @property
    def status(self) -> int:
        return self.response.status


@dataclass(frozen=True, slots=True, kw_only=True)
class _ContactRequest:
    key: str
    uri_key: str
    contact: str
    params: str
    uri: URI
    expires: int  # granted (0 = remove)
    q: float


class Registrar:
    """Bindings of operators to their softphones' contacts."""

    __slots__ = (
        "_bindings",
        "_heap",
        "_online",
        "_rebuild_at",
        "_seq",
        "contact_must_match_source",
        "default_expires",
        "max_contacts_per_user",
        "max_expires",
        "min_expires",
        "path_proxies",
    )

    def __init__(
        self,
        *,
        min_expires: int = 60,
        max_expires: int = 3600,
        default_expires: int = DEFAULT_EXPIRES,
        max_contacts_per_user: int = 5,
        contact_must_match_source: bool = True,
        path_proxies: Sequence[str] = (),
    ) -> None:
        if not 0 < min_expires <= max_expires or max_contacts_per_user < 1:
            raise ValueError("need 0 < min_expires <= max_expires and max_contacts_per_user >= 1")
        self.min_expires = min_expires
        self.max_expires = max_expires
        self.default_expires = default_expires
        self.max_contacts_per_user = max_contacts_per_user
        self.contact_must_match_source = contact_must_match_source
        self.path_proxies = tuple(ipaddress.ip_network(n, strict=False) for n in path_proxies)
        self._bindings: dict[str, dict[str, Binding]] = {}
        # (expires_at, seq, user, key); stale entries are skipped lazily.
        self._heap: list[tuple[float, int, str, str]] = []
        self._rebuild_at = 64
        self._seq = itertools.count()
        # Operators last reported online: events are emitted on changes of this.
        self._online: set[str] = set()

    @classmethod
    def from_config(cls, sip: SipConfig) -> Registrar:
        return cls(
            min_expires=sip.min_expires_s,
            max_expires=sip.max_expires_s,
            contact_must_match_source=sip.contact_must_match_source,
            path_proxies=sip.path_proxies,
        )

    def _trusted_path_source(self, source: Peer) -> bool:
        try:
            ip = ipaddress.ip_address(source.host.strip("[]"))
        except ValueError:
            return False
        return any(ip.version == n.version and ip in n for n in self.path_proxies)

    # -- queries -------------------------------------------------------------

    def contacts(self, user: str, *, reachable_only: bool = False) -> list[Binding]:
        """The operator's bindings, best first (highest q, then most recently
        refreshed)."""
        found = [
            b for b in self._bindings.get(user, {}).values() if b.reachable or not reachable_only
        ]
        return sorted(found, key=lambda b: (-b.q, -b.refreshed_at))

    def is_online(self, user: str) -> bool:
        return user in self._online

    def bindings(self) -> list[Binding]:
        return [b for per_user in self._bindings.values() for b in per_user.values()]

    def find(self, binding: Binding) -> Binding | None:
        """The current version of `binding` (it may have been refreshed), or None."""
        return self._bindings.get(binding.user, {}).get(binding.key)

    def snapshot(self) -> list[Binding]:
        """Every binding, by operator then age, for the telecom view."""
        return sorted(self.bindings(), key=lambda b: (b.user, b.registered_at, b.key))

    def deadline(self) -> float | None:
        """When the next binding expires (call `expire` then), or None."""
        heap = self._heap
        while heap and not self._live(heap[0]):
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    # -- time ----------------------------------------------------------------

    def expire(self, now: float) -> list[RegistrarEvent]:
        """Remove the bindings whose time is up."""
        events: list[RegistrarEvent] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            entry = heapq.heappop(heap)
            if not self._live(entry):
                continue
            _, _, user, key = entry
            gone = self._bindings[user].pop(key)
            if not self._bindings[user]:
                del self._bindings[user]
            events += self._sync(user, UnregisterReason.EXPIRED, gone.contact)
        return events

    def _live(self, entry: tuple[float, int, str, str]) -> bool:
        expires_at, _, user, key = entry
        b = self._bindings.get(user, {}).get(key)
        return b is not None and b.expires_at == expires_at

    def _schedule(self, b: Binding) -> None:
        heapq.heappush(self._heap, (b.expires_at, next(self._seq), b.user, b.key))
        # Refreshes leave stale entries behind; drop them when the heap has
        # doubled since the last clean-up (amortised O(1) per refresh).
        if len(self._heap) > self._rebuild_at:
            self._heap = [e for e in self._heap if self._live(e)]
            heapq.heapify(self._heap)
            self._rebuild_at = max(64, 2 * len(self._heap))

    # -- reachability (driven by the Qualifier, or by the caller) ------------

    def mark_reachable(self, binding: Binding, reachable: bool) -> list[RegistrarEvent]:
        """Record whether a binding answers; events when that changes."""
        current = self.find(binding)
        if current is None or current.reachable == reachable:
            return []
        self._bindings[current.user][current.key] = replace(current, reachable=reachable)
        events: list[RegistrarEvent] = [
            ContactReachabilityChanged(
                user=current.user, contact=current.contact, reachable=reachable
            )
        ]
        return events + self._sync(current.user, UnregisterReason.UNREACHABLE, current.contact)

    def unbind_user(self, user: str) -> list[RegistrarEvent]:
        """Drop every binding of `user` (the operator was removed from the
        configuration)."""
        gone = self._bindings.pop(user, {})
        if not gone:
            return []
        last = next(iter(gone.values()))
        return self._sync(user, UnregisterReason.REMOVED, last.contact)

    def _sync(
        self, user: str, reason: UnregisterReason, contact: str, *, announced: bool = False
    ) -> list[RegistrarEvent]:
        """Emit the online/offline change of `user`, if any. `announced`: an
        OperatorRegistered for this user is already among the events."""
        online = any(b.reachable for b in self._bindings.get(user, {}).values())
        if online and user not in self._online:
            self._online.add(user)
            if not announced:
                b = self.contacts(user, reachable_only=True)[0]
                return [OperatorRegistered(user=user, contact=b.contact, source=b.source)]
        elif not online and user in self._online:
            self._online.discard(user)
            return [OperatorUnregistered(user=user, reason=reason, contact=contact)]
        return []

    # -- restart -----------------------------------------------------------------

    def restore(self, bindings: Iterable[Binding], now: float) -> list[RegistrarEvent]:
        """Take back bindings saved before a restart (times already in this
        process's clock). Each operator with a live binding is announced
        online; the caller then qualifies them at once, and a phone that does
        not answer goes offline after the usual failed pings."""
        users: list[str] = []
        for b in bindings:
            if b.expires_at <= now or b.key in self._bindings.get(b.user, {}):
                continue  # expired meanwhile, or the phone re-registered first
            per_user = self._bindings.setdefault(b.user, {})
            if len(per_user) >= self.max_contacts_per_user:
                continue
            per_user[b.key] = replace(b, reachable=True)
            self._schedule(per_user[b.key])
            if b.user not in users:
                users.append(b.user)
        events: list[RegistrarEvent] = []
        for user in users:
            events += self._sync(user, UnregisterReason.EXPIRED, "")
        return events

    # -- REGISTER --------------------------------------------------------------

    def handle_register(
        self, request: Request, user: str, now: float, *, source: Peer
    ) -> RegisterOutcome:
        """Apply an authenticated REGISTER from `user` (RFC 3261 §10.3 steps
        5-8). Never raises on request content: a malformed request comes back
        as a 400 outcome."""
        try:
            return self._register(request, user, now, source)
        except SipParseError as exc:
            return RegisterOutcome(response=_reply(request, exc.status_hint, warning=exc.reason))

    def _register(self, request: Request, user: str, now: float, source: Peer) -> RegisterOutcome:
        to_uri = request.to_address.uri
        if to_uri.scheme.lower() not in ("sip", "sips") or to_uri.user != user:
            return RegisterOutcome(
                response=_reply(request, 403, "Forbidden (To is not your address-of-record)")
            )
        call_id = request.call_id
        cseq = request.cseq.sequence
        header_expires = _expires_value(request.headers.get("Expires"))
        path = _path_values(request)
        values = request.headers.get_all("Contact")
        wanted: dict[str, _ContactRequest] = {}
        if "*" not in values:
            for value in values:
                c = self._contact_request(value, header_expires)
                wanted[c.key] = c  # a contact listed twice: the last one counts

        # A late timer must not let a dead binding be listed, counted or
        # compared; its loss is reported with whatever this request changes.
        expired = self._purge_expired(user, now)
        events: list[RegistrarEvent] = []

        def done(
            response: Response, *, removed: str = "", announced: bool = False
        ) -> RegisterOutcome:
            reason = UnregisterReason.REMOVED if removed else UnregisterReason.EXPIRED
            events.extend(self._sync(user, reason, removed or expired, announced=announced))
            return RegisterOutcome(response=response, events=tuple(events))

        current = self._bindings.get(user, {})
        if "*" in values:
            if len(values) != 1 or header_expires != 0:
                return done(
                    _reply(request, 400, warning="Contact: * needs Expires: 0 and no other Contact")
                )
            if any(b.call_id == call_id and cseq <= b.cseq for b in current.values()):
                return done(_out_of_order(request))
            removed = next(iter(current.values())).contact if current else ""
            self._bindings.pop(user, None)
            return done(self._ok(request, user, now, path), removed=removed)

        if any(c.expires < 0 for c in wanted.values()):
            return done(_reply(request, 423, headers=[("Min-Expires", str(self.min_expires))]))
        for c in wanted.values():
            old = _existing(current, c)
            if old is not None and old.call_id == call_id and cseq <= old.cseq:
                return done(_out_of_order(request))
        if sum(1 for c in wanted.values() if c.expires > 0) > self.max_contacts_per_user:
            return done(_reply(request, 403, "Forbidden (too many contacts)"))
        if path and not self._trusted_path_source(source):
            # A Path steers every offer through its first hop: only the
            # centre's own edge proxies may set one (sip.path_proxies).
            return done(_reply(request, 403, "Forbidden (Path from an untrusted source)"))
        for c in wanted.values():
            # Behind a trusted edge the phone is reached through the Path; its
            # Contact names its own (often private) address, not the edge's.
            why = (
                None
                if path
                else contact_refusal(c.uri, source, strict=self.contact_must_match_source)
            )
            if c.expires > 0 and why is not None:
                return done(_reply(request, 403, "Forbidden (Contact address)", warning=why))

        # Apply: nothing below can fail.
        per_user = self._bindings.setdefault(user, {})
        user_agent = request.headers.get("User-Agent") or ""
        created = False
        removed = ""
        for c in wanted.values():
            old = _existing(per_user, c)
            if old is not None and old.key != c.key:
                del per_user[old.key]  # same URI, new instance ID: the phone restarted
            if c.expires == 0:
                if old is not None:
                    per_user.pop(c.key, None)
                    removed = old.contact
                continue
            target, nat = _target(c.uri, source) if not path else (_path_target(path), False)
            b = Binding(
                user=user,
                contact=c.contact,
                params=c.params,
                key=c.key,
                uri_key=c.uri_key,
                source=source,
                target=target,
                behind_nat=nat,
                call_id=call_id,
                cseq=cseq,
                q=c.q,
                expires_at=now + c.expires,
                registered_at=now if old is None else old.registered_at,
                refreshed_at=now,
                user_agent=user_agent,
                reachable=True,
                path=path,
            )
            per_user[c.key] = b
            self._schedule(b)
            if old is None:
                created = True
                events.append(OperatorRegistered(user=user, contact=b.contact, source=source))
            elif not old.reachable:
                # A REGISTER is a sign of life.
                events.append(
                    ContactReachabilityChanged(user=user, contact=b.contact, reachable=True)
                )
        # Over the cap: drop the bindings refreshed longest ago that this
        # request did not touch.
        overflow = len(per_user) - self.max_contacts_per_user
        if overflow > 0:
            stale = sorted(
                (b for k, b in per_user.items() if k not in wanted), key=lambda b: b.refreshed_at
            )
            for b in stale[:overflow]:
                del per_user[b.key]
                removed = b.contact
        if not per_user:
            del self._bindings[user]
        return done(self._ok(request, user, now, path), removed=removed, announced=created)

    def _purge_expired(self, user: str, now: float) -> str:
        """Drop the user's expired bindings without events; the contact of
        the last one dropped, or ""."""
        per_user = self._bindings.get(user)
        if not per_user:
            return ""
        last = ""
        for k in [k for k, b in per_user.items() if b.expires_at <= now]:
            last = per_user.pop(k).contact
        if not per_user:
            del self._bindings[user]
        return last

    def _contact_request(self, value: str, header_expires: int | None) -> _ContactRequest:
        addr = parse_address(value, "Contact")
        uri = addr.uri
        if uri.scheme.lower() not in ("sip", "sips"):
            raise SipParseError(f"Contact scheme {uri.scheme!r} cannot be called")
        expires: int | None = None
        q = 1.0
        params: list[str] = []
        for name, val in addr.parameters.items():
            lname = name.lower()
            if lname == "expires":
                expires = _expires_value(val or "")
                continue
            if lname == "q" and val is not None:
                q = _q_value(val)
            params.append(f";{name}" if val is None else f";{name}={val}")
        if expires is None:
            expires = header_expires if header_expires is not None else self.default_expires
        if 0 < expires < self.min_expires and expires < _ONE_HOUR:
            granted = -1  # 423
        else:
            granted = min(expires, self.max_expires)
        return _ContactRequest(
            key=_binding_key(addr),
            uri_key=_uri_key(addr.uri),
            contact=_contact_uri_text(value),
            params="".join(params),
            uri=uri,
            expires=granted,
            q=q,
        )

    def _ok(self, request: Request, user: str, now: float, path: tuple[str, ...]) -> Response:
        listed = [("Contact", b.contact_header(now)) for b in self.contacts(user)]
        if path and _supports_path(request):
            listed += [("Path", value) for value in path]  # RFC 3327 §5.3
        return Response.for_request(request, 200, to_tag=new_tag(), headers=listed)


# ---------------------------------------------------------------------------
# Qualify: OPTIONS pings (RFC 3261 §11)


class _Probe:
    __slots__ = ("failures", "next_at", "refreshed_at", "rtt", "sent_at")

    def __init__(self, next_at: float, refreshed_at: float) -> None:
        self.next_at = next_at
        self.sent_at: float | None = None
        self.failures = 0
        self.rtt: float | None = None
        self.refreshed_at = refreshed_at


class Qualifier:
    """When to send OPTIONS to each binding, and what the answers mean.

    RFC 3261 §11: a UA answers OPTIONS with the status it would give an
    INVITE, so *any* response — 200, but also 404, 405, 486 or 501 — proves
    the phone is alive and reachable through its NAT binding. Only silence
    (no response within `timeout_s`, or a transport error / transaction
    timeout reported by the caller) is a failure; `failures_to_unreachable`
    failures in a row mark the binding unreachable, one answer marks it
    reachable again. Unreachable bindings keep being pinged, so a phone that
    comes back is noticed within `every_s`.

    The caller's loop: `for b in q.due(now)`: send OPTIONS to `b.target` with
    Request-URI `b.contact`; on any final response `q.answered(b, rtt, now)`;
    on a transport error or local timeout `q.failed(b, now)`; at
    `q.deadline()` call `q.expire(now)` (pings unanswered after `timeout_s`).
    A phone's first ping is due `every_s` after it registered: the REGISTER
    itself just proved it reachable. Costs O(bindings) per call, which is
    fine for the few hundred phones of a centre.
    """

    __slots__ = ("_probes", "every_s", "failures_to_unreachable", "registrar", "timeout_s")

    def __init__(
        self,
        registrar: Registrar,
        *,
        every_s: float = 30.0,
        timeout_s: float = 5.0,
        failures_to_unreachable: int = 2,
    ) -> None:
        if every_s <= 0 or timeout_s <= 0 or failures_to_unreachable < 1:
            raise ValueError("every_s, timeout_s and failures_to_unreachable must be > 0")
        self.registrar = registrar
        self.every_s = every_s
        self.timeout_s = timeout_s
        self.failures_to_unreachable = failures_to_unreachable
        self._probes: dict[tuple[str, str], _Probe] = {}

    @classmethod
    def from_config(cls, registrar: Registrar, sip: SipConfig) -> Qualifier:
        every = sip.qualify_every_s
        return cls(registrar, every_s=every, timeout_s=min(5.0, every))

    def _probe(self, b: Binding) -> _Probe:
        p = self._probes.get((b.user, b.key))
        if p is None:
            p = self._probes[(b.user, b.key)] = _Probe(
                b.refreshed_at + self.every_s, b.refreshed_at
            )
        elif p.refreshed_at != b.refreshed_at:
            # Re-registered: a sign of life, count afresh.
            p.refreshed_at = b.refreshed_at
            p.failures = 0
        return p

    def _current(self) -> Iterable[tuple[Binding, _Probe]]:
        bindings = self.registrar.bindings()
        live = {(b.user, b.key) for b in bindings}
        for k in [k for k in self._probes if k not in live]:
            del self._probes[k]
        return [(b, self._probe(b)) for b in bindings]

    def due(self, now: float) -> list[Binding]:
        """Bindings to ping now; each is then in flight until answered,
        failed or timed out."""
        out: list[Binding] = []
        for b, p in self._current():
            if p.sent_at is None and p.next_at <= now:
                p.sent_at = now
                p.next_at = now + self.every_s
                out.append(b)
        return out

    def answered(self, binding: Binding, rtt: float, now: float) -> list[RegistrarEvent]:
        """Any response to the OPTIONS arrived (RFC 3261 §11: even 404/405/501)."""
        current = self.registrar.find(binding)
        if current is None:
            return []
        p = self._probe(current)
        p.sent_at = None
        p.failures = 0
        p.rtt = rtt
        return self.registrar.mark_reachable(current, True)

    def failed(self, binding: Binding, now: float) -> list[RegistrarEvent]:
        """The ping got no response (transport error, transaction timeout).
        Ignored when that ping was already counted by `expire`."""
        current = self.registrar.find(binding)
        if current is None:
            return []
        p = self._probe(current)
        if p.sent_at is None:
            return []
        p.sent_at = None
        return self._count_failure(current, p)

    def expire(self, now: float) -> list[RegistrarEvent]:
        """Count pings unanswered for `timeout_s` as failed."""
        events: list[RegistrarEvent] = []
        for b, p in self._current():
            if p.sent_at is not None and p.sent_at + self.timeout_s <= now:
                p.sent_at = None
                events += self._count_failure(b, p)
        return events

    def _count_failure(self, b: Binding, p: _Probe) -> list[RegistrarEvent]:
        p.failures += 1
        if p.failures >= self.failures_to_unreachable:
            return self.registrar.mark_reachable(b, False)
        return []

    def deadline(self) -> float | None:
        """The next time `due` or `expire` has something to do."""
        times = [
            p.sent_at + self.timeout_s if p.sent_at is not None else p.next_at
            for _, p in self._current()
        ]
        return min(times) if times else None

    def rtt(self, binding: Binding) -> float | None:
        """Round-trip time of the last answered ping, for the telecom view."""
        p = self._probes.get((binding.user, binding.key))
        return None if p is None else p.rtt


# ---------------------------------------------------------------------------
# Saving bindings across a restart (plain JSON-able dicts; times on the wall clock)


def _peer_dict(p: Peer) -> dict[str, object]:
    return {"transport": p.transport, "host": p.host, "port": p.port}


def _peer_of(d: Mapping[str, object]) -> Peer:
    transport = str(d["transport"])
    name: TransportName = "tls" if transport == "tls" else "tcp" if transport == "tcp" else "udp"
    # A TCP or TLS connection does not survive a restart: send on a new one.
    return Peer(name, str(d["host"]), int(str(d["port"])))


def binding_to_dict(b: Binding, *, mono_now: float, wall_now: float) -> dict[str, object]:
    shift = wall_now - mono_now
    return {
        "user": b.user,
        "contact": b.contact,
        "params": b.params,
        "key": b.key,
        "uri_key": b.uri_key,
        "source": _peer_dict(b.source),
        "target": _peer_dict(b.target),
        "behind_nat": b.behind_nat,
        "call_id": b.call_id,
        "cseq": b.cseq,
        "q": b.q,
        "expires_at": b.expires_at + shift,
        "registered_at": b.registered_at + shift,
        "refreshed_at": b.refreshed_at + shift,
        "user_agent": b.user_agent,
        "path": list(b.path),
    }


def binding_from_dict(d: Mapping[str, object], *, mono_now: float, wall_now: float) -> Binding:
    """The inverse of `binding_to_dict`; raises ValueError/KeyError on a bad row."""
    shift = mono_now - wall_now
    source = d["source"]
    target = d["target"]
    if not isinstance(source, Mapping) or not isinstance(target, Mapping):
        raise ValueError("source/target must be objects")
    return Binding(
        user=str(d["user"]),
        contact=str(d["contact"]),
        params=str(d["params"]),
        key=str(d["key"]),
        uri_key=str(d["uri_key"]),
        source=_peer_of(source),
        target=_peer_of(target),
        behind_nat=bool(d["behind_nat"]),
        call_id=str(d["call_id"]),
        cseq=int(str(d["cseq"])),
        q=float(str(d["q"])),
        expires_at=float(str(d["expires_at"])) + shift,
        registered_at=float(str(d["registered_at"])) + shift,
        refreshed_at=float(str(d["refreshed_at"])) + shift,
        user_agent=str(d.get("user_agent", "")),
        reachable=True,
        path=_stored_path(d.get("path", [])),
    )


# ---------------------------------------------------------------------------
# Helpers


def _reply(
    request: Request,
    status: int,
    reason: str | None = None,
    *,
    warning: str | None = None,
    headers: Iterable[tuple[str, str]] = (),
) -> Response:
    extra = list(headers)
    if warning:
        clean = "".join(c if " " <= c < "\x7f" and c not in '"\\' else "?" for c in warning)
        # RFC 3261 §20.43: 399 is the miscellaneous warning.
        extra.append(("Warning", f'399 callcenter112 "{clean[:120]}"'))
    return Response.for_request(request, status, reason, to_tag=new_tag(), headers=extra)


def _out_of_order(request: Request) -> Response:
    # RFC 3261 §10.3 step 7 says only that "the request fails"; 500 is what
    # the registrar cannot do, and a UA MAY retry it later (§21.5.1).
    return _reply(request, 500, "Server Internal Error (out-of-order CSeq)")


def _expires_value(text: str | None) -> int | None:
    """An Expires header / expires parameter value; malformed → 3600 (§20.19)."""
    if text is None:
        return None
    text = text.strip()
    if not is_ascii_digits(text):
        return MALFORMED_EXPIRES
    return min(int(text[:11]), MAX_EXPIRES_VALUE)


def _q_value(text: str) -> float:
    """RFC 3261 §20.10 qvalue; a malformed one counts as the default 1.0."""
    try:
        value = float(text)
    except ValueError:
        return 1.0
    return min(1.0, max(0.0, value)) if math.isfinite(value) else 1.0


def _param(addr: Address, name: str) -> str | None:
    return addr.parameters.get(name)


def _binding_key(addr: Address) -> str:
    instance = _param(addr, "+sip.instance")
    if instance:
        key = "instance:" + instance.strip().strip('"').strip("<>").lower()
        reg_id = _param(addr, "reg-id")
        return f"{key};reg-id={reg_id}" if reg_id else key
    return _uri_key(addr.uri)


def _uri_key(u: URI) -> str:
    # RFC 3261 §19.1.4 with one simplification: every URI parameter takes part
    # (the RFC ignores most parameters present on one side only); phones
    # re-register with the same text, so this only matters for odd ones.
    params = ";".join(sorted(f"{k.lower()}={(v or '').lower()}" for k, v in u.parameters.items()))
    return f"uri:{u.scheme.lower()}:{u.user or ''}@{u.host.lower()}:{u.port or ''};{params}"


def _existing(per_user: dict[str, Binding], c: _ContactRequest) -> Binding | None:
    """The binding a requested contact refers to: same identity, or — for a
    phone that restarted with a new instance ID on the same address — the
    same Contact URI (RFC 3261 §10.3 step 7 compares URIs)."""
    found = per_user.get(c.key)
    if found is not None:
        return found
    return next((b for b in per_user.values() if b.uri_key == c.uri_key), None)


def _contact_uri_text(value: str) -> str:
    """The URI of a Contact value exactly as written (phones look for their
    own contact in the 200 OK by comparing text)."""
    text = value.strip()
    for i, ch in outside_quotes(text, strict=False):
        if ch == "<":
            end = text.find(">", i + 1)
            return text[i + 1 : end if end >= 0 else len(text)].strip()
    return text.split(";", 1)[0].strip()


def _target(uri: URI, source: Peer) -> tuple[Peer, bool]:
    """Where to send requests for a contact registered from `source`, and
    whether that is the source rather than the contact (module doc)."""
    name = uri_transport(uri.scheme, _param_value(uri, "transport"))
    host = uri.host.strip("[]")
    try:
        ip = ipaddress.ip_address(host)
        src = ipaddress.ip_address(source.host.strip("[]"))
    except ValueError:
        return source, True
    if name is None:
        return source, True
    if ip == src or ip.is_global:
        # A TLS or TCP binding keeps its connection (RFC 3261 §18.2.2 reuse);
        # when it closes, the transport opens a new one of the same kind.
        same = name == source.transport and source.reliable and ip == src
        conn = source.conn_id if same else None
        return Peer(name, host, uri.port or DEFAULT_PORTS[name], conn), False
    return source, True


def contact_refusal(uri: URI, source: Peer, *, strict: bool) -> str | None:
    """Why a Contact may not be bound for a REGISTER from `source`, or None.

    Issue 11: a Contact naming another host would steer 112 offers (and the
    caller's audio) wherever the registrant likes. `strict`
    (`sip.contact_must_match_source`, the default): the Contact's host must be
    the source IP. Not strict, for phones behind NAT that write their private
    address: a non-global address or a host name is accepted (requests go to
    the source anyway, `_target`), but another global address is not.
    """
    host = uri.host.strip("[]")
    try:
        ip = ipaddress.ip_address(host)
        src = ipaddress.ip_address(source.host.strip("[]"))
    except ValueError:
        if strict:
            return f"Contact host {host[:64]!r} is not the source address {source.host}"
        return None
    if ip == src:
        return None
    if strict:
        return f"Contact {ip} is not the source address {src} (sip.contact_must_match_source)"
    if ip.is_global:
        return f"Contact {ip} is another public address than the source {src}"
    return None


def _param_value(uri: URI, name: str) -> str | None:
    if name not in uri.parameters:
        return None
    return (uri.parameters.get(name) or "").lower()


# ---------------------------------------------------------------------------
# Path (RFC 3327)


def _path_values(request: Request) -> tuple[str, ...]:
    """The REGISTER's Path values in order, each a valid SIP URI address
    (else 400 through SipParseError)."""
    values = request.headers.get_all("Path")
    out: list[str] = []
    for value in values:
        addr = parse_address(value, "Path")
        if addr.uri.scheme.lower() not in ("sip", "sips"):
            raise SipParseError(f"Path scheme {addr.uri.scheme!r} cannot be routed")
        out.append(str(addr))
    return tuple(out)


def _path_target(path: tuple[str, ...]) -> Peer:
    """Where a request to a binding with a Path goes: its first hop (RFC 3261
    §8.1.2: the first Route, it being a loose router)."""
    uri = parse_address(path[0], "Path").uri
    name = uri_transport(uri.scheme, _param_value(uri, "transport")) or "udp"
    return Peer(name, uri.host.strip("[]"), uri.port or DEFAULT_PORTS[name])


def _supports_path(request: Request) -> bool:
    return any(
        tag.strip().lower() == "path"
        for value in request.headers.get_all("Supported")
        for tag in value.split(",")
    )


def _stored_path(value: object) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise ValueError("path must be a list")
    return tuple(str(v) for v in value)
