"""Admission before parse: who may make this server parse, answer or hold state.

Theory of operation (issue 11, "the trunk first, always"). Every datagram,
and every TCP/TLS connection, is judged by its *source address* before any
SIP is parsed, in one of three classes:

* ``TRUNK``: an address in a trunk's allow-list. Emergency calls come from
  here; nothing below ever drops, delays or throttles it. (A spoofed trunk
  address can only send: it never sees an answer, so it cannot complete a
  TCP handshake or a digest round trip.)
* ``OPERATOR``: a source that authenticated successfully within the trust
  period (`SourceGuard.trusted`: the address a registered softphone sends
  from). It gets its own per-source bucket and its own share of the
  transaction table, which no anonymous flood can use up.
* ``ANONYMOUS``: everyone else (scanners, floods, a phone not yet
  registered).

What each class may do with a datagram (`Verdict`):

=========  ==========================  ==================================
class      out-of-dialog INVITE        other requests / ACK / responses
=========  ==========================  ==================================
TRUNK      DELIVER                     DELIVER
OPERATOR   DELIVER (bucket, share)     DELIVER (requests: bucket, share;
                                       responses: always)
ANONYMOUS  REFUSE (stateless 403,      DELIVER (bucket; requests: share)
           within a global budget)
=========  ==========================  ==================================

REFUSE means: parse, and if it is an INVITE with no To tag answer 403
*statelessly* (RFC 3261 §8.2.6: no server transaction, nothing held for
64*T1 = 32 s, nothing retransmitted, so the server is not a reflector); an
in-dialog INVITE goes through the class's transaction share like any other
request. Refusals are limited globally (`REFUSALS_PER_S`): past that a
flood's INVITEs are dropped unparsed, which bounds both the parse work and
what we reflect.

Transaction shares. The transaction layer holds at most a fixed number of
server transactions (`max_transactions`, net/sip_endpoint.py's
MAX_TRANSACTIONS), each for ~32 s after its answer over UDP (Timer J,
RFC 3261 §17.2.2; Timer L, RFC 6026 §8.7). A class's share is a token
bucket of `share * MAX_TRANSACTIONS` tokens refilled over 32 s: a class can
never have more than its share live at once, so the trunk's share (what
neither other class can take) stays free for calls. Client transactions (the
centre's own INVITEs to operators and agencies, its OPTIONS qualify) are not
counted against the server cap at all, so they always have room.

TCP/TLS connections: a per-address cap by class and a global cap of
`MAX_TCP_CONNECTIONS` of which `TCP_RESERVED` can only be taken by the trunk
and operators. The net glue closes a non-trunk connection that sends no
complete message within `FIRST_MESSAGE_TIMEOUT_S`.

Pure: time is passed in; no sockets here (STYLE 1).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum
from typing import Final

from .ratelimit import Admission, SourceGuard

__all__ = [
    "FIRST_MESSAGE_TIMEOUT_S",
    "MAX_TCP_CONNECTIONS",
    "REFUSALS_PER_S",
    "SHARES",
    "TCP_PER_ADDRESS",
    "TCP_RESERVED",
    "TRANSACTION_LIFETIME_S",
    "EdgePolicy",
    "EdgeStats",
    "SourceClass",
    "Verdict",
    "message_kind",
]

# How long a UDP server transaction outlives its answer: 64*T1, T1 = 500 ms
# (RFC 3261 §17.2.2 Timer J; RFC 6026 §8.7 Timer L).
TRANSACTION_LIFETIME_S: Final = 32.0


class SourceClass(Enum):
    TRUNK = "trunk"
    OPERATOR = "operator"
    ANONYMOUS = "anonymous"


# Shares of the transaction table. No RFC: the trunk's 40 % (20 000) holds
# DESIGN §7's 300 calls/s (INVITE + BYE, 32 s each: 19 200); operators'
# registrations, qualify answers and re-INVITEs fit easily in 30 %.
SHARES: Final[dict[SourceClass, float]] = {
    SourceClass.OPERATOR: 0.30,
    SourceClass.ANONYMOUS: 0.30,
}
# Stateless 403s per second to non-trunk INVITEs, all sources together. A
# real misdialled phone needs one; a flood past this is dropped unparsed.
REFUSALS_PER_S: Final = 200.0
# TCP/TLS (no RFC sets these): a NAT with every operator's phone behind it
# needs many; a stranger needs a few; the reserve is for the trunk's and
# operators' connections when strangers hold all the others.
MAX_TCP_CONNECTIONS: Final = 2048
TCP_RESERVED: Final = 512
TCP_PER_ADDRESS: Final[dict[SourceClass, int]] = {
    SourceClass.TRUNK: MAX_TCP_CONNECTIONS,
    SourceClass.OPERATOR: 256,
    SourceClass.ANONYMOUS: 8,
}
# A connection that has not sent one complete message by then is closed
# (RFC 5626 keep-alive CRLFs do not count). A real phone sends its REGISTER
# right after the (TLS) handshake; slowloris does not.
FIRST_MESSAGE_TIMEOUT_S: Final = 10.0
# Cached trunk look-ups; cleared, not grown, past this (a spoofer from
# millions of addresses costs a re-classification, not memory).
_CLASS_CACHE_MAX: Final = 65_536


class Verdict(Enum):
    DELIVER = "deliver"  # parse and hand to the transaction layer
    REFUSE = "refuse"  # parse; an out-of-dialog INVITE gets a stateless 403
    DROP = "drop"  # silently, unparsed


@dataclass(slots=True)
class EdgeStats:
    delivered: int = 0
    refused: int = 0
    dropped_bucket: int = 0
    dropped_share: int = 0
    dropped_refusals: int = 0
    tcp_refused: int = 0
    tcp_first_message_timeouts: int = 0


class _Bucket:
    __slots__ = ("capacity", "rate", "stamp", "tokens")

    def __init__(self, capacity: float, rate: float, now: float) -> None:
        self.capacity = capacity
        self.rate = rate
        self.tokens = capacity
        self.stamp = now

    def take(self, now: float) -> bool:
        tokens = min(self.capacity, self.tokens + max(0.0, now - self.stamp) * self.rate)
        self.stamp = now
        if tokens < 1.0:
            self.tokens = tokens
            return False
        self.tokens = tokens - 1.0
        return True


def message_kind(data: bytes) -> bytes:
    """The method of a request (b"INVITE", b"ACK", …) or b"" for a response,
    read from the first bytes without parsing (RFC 3261 §7.1: Request-Line =
    Method SP Request-URI SP SIP-Version; a response starts "SIP/")."""
    if data[:4] == b"SIP/":
        return b""
    end = data.find(b" ", 0, 32)
    return data[:end] if end > 0 else b"?"


class EdgePolicy:
    """The decision table above, for one listener (UDP, TCP and TLS together)."""

    def __init__(
        self,
        *,
        trunk_networks: Iterable[ipaddress.IPv4Network | ipaddress.IPv6Network],
        guard: SourceGuard,
        now: float,
        max_transactions: int,
        refusals_per_s: float = REFUSALS_PER_S,
        max_tcp: int = MAX_TCP_CONNECTIONS,
        tcp_reserved: int = TCP_RESERVED,
    ) -> None:
        self.networks = tuple(trunk_networks)
        self.guard = guard
        self.stats = EdgeStats()
        self._trunk_cache: dict[str, bool] = {}
        self._shares = {
            cls: _Bucket(
                share * max_transactions, share * max_transactions / TRANSACTION_LIFETIME_S, now
            )
            for cls, share in SHARES.items()
        }
        self._refusals = _Bucket(refusals_per_s, refusals_per_s, now)
        self.max_tcp = max_tcp
        self.tcp_reserved = tcp_reserved
        self._tcp_by_host: dict[str, int] = {}
        self._tcp_total = 0
        self._tcp_unreserved = 0  # held by anonymous sources

    def set_trunk_networks(
        self, networks: Iterable[ipaddress.IPv4Network | ipaddress.IPv6Network]
    ) -> None:
        """A reloaded trunk table (issue 16); connections already open keep their class."""
        self.networks = tuple(networks)
        self._trunk_cache.clear()

    # -- classes ------------------------------------------------------------------

    def is_trunk(self, host: str) -> bool:
        known = self._trunk_cache.get(host)
        if known is not None:
            return known
        try:
            addr = ipaddress.ip_address(host)
        except ValueError:
            found = False
        else:
            found = any(addr.version == n.version and addr in n for n in self.networks)
        if len(self._trunk_cache) >= _CLASS_CACHE_MAX:
            self._trunk_cache.clear()
        self._trunk_cache[host] = found
        return found

    def classify(self, host: str, now: float) -> SourceClass:
        if self.is_trunk(host):
            return SourceClass.TRUNK
        if self.guard.trusted(host, now):
            return SourceClass.OPERATOR
        return SourceClass.ANONYMOUS

    # -- datagrams and framed messages ------------------------------------------

    def admit(self, kind: bytes, host: str, now: float) -> Verdict:
        """The fate of one message from `host`; `kind` from `message_kind()`."""
        cls = self.classify(host, now)
        if cls is SourceClass.TRUNK:
            self.stats.delivered += 1
            return Verdict.DELIVER
        if cls is SourceClass.OPERATOR and kind == b"":
            # A softphone answering the centre's own requests (qualify OPTIONS,
            # offers): it creates no server transaction and only matches ours.
            # A phone that thawed answers a backlog at once; throttling that
            # burst would drop the answer that proves it is back.
            self.stats.delivered += 1
            return Verdict.DELIVER
        if self.guard.check(host, now) is Admission.THROTTLED:
            self.stats.dropped_bucket += 1
            return Verdict.DROP
        if cls is SourceClass.ANONYMOUS and kind == b"INVITE":
            if not self._refusals.take(now):
                self.stats.dropped_refusals += 1
                return Verdict.DROP
            self.stats.refused += 1
            return Verdict.REFUSE
        if kind in (b"", b"ACK"):  # no server transaction is created
            self.stats.delivered += 1
            return Verdict.DELIVER
        return self.admit_transaction(cls, now)

    def admit_transaction(self, cls: SourceClass, now: float) -> Verdict:
        """Take one server transaction from `cls`'s share (the trunk has no
        limit here: it gets whatever the others cannot take)."""
        bucket = self._shares.get(cls)
        if bucket is not None and not bucket.take(now):
            self.stats.dropped_share += 1
            return Verdict.DROP
        self.stats.delivered += 1
        return Verdict.DELIVER

    # -- connections --------------------------------------------------------------

    def open_connection(self, host: str, now: float) -> SourceClass | None:
        """Admit a new TCP/TLS connection from `host`: its class, or None to
        refuse it. Pair every admitted one with `close_connection`."""
        cls = self.classify(host, now)
        held = self._tcp_by_host.get(host, 0)
        if (
            held >= TCP_PER_ADDRESS[cls]
            or self._tcp_total >= self.max_tcp
            or (
                cls is SourceClass.ANONYMOUS
                and self._tcp_unreserved >= self.max_tcp - self.tcp_reserved
            )
        ):
            self.stats.tcp_refused += 1
            return None
        self._tcp_by_host[host] = held + 1
        self._tcp_total += 1
        if cls is SourceClass.ANONYMOUS:
            self._tcp_unreserved += 1
        return cls

    def close_connection(self, host: str, cls: SourceClass) -> None:
        held = self._tcp_by_host.get(host, 0)
        if held <= 1:
            self._tcp_by_host.pop(host, None)
        else:
            self._tcp_by_host[host] = held - 1
        self._tcp_total = max(0, self._tcp_total - 1)
        if cls is SourceClass.ANONYMOUS:
            self._tcp_unreserved = max(0, self._tcp_unreserved - 1)

    @property
    def tcp_connections(self) -> int:
        return self._tcp_total
