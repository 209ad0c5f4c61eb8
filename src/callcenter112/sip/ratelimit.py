"""Per-source admission for registration traffic: rate buckets and lockout.

Owns two defences for the requests phones send us (REGISTER, OPTIONS and
other out-of-dialog requests from non-trunk addresses), so that a scanner or
a broken phone cannot starve the operators' softphones:

* a token bucket per source IP (`rate_per_s`, `burst`): a flood from one
  address is dropped without an answer while every other address keeps its
  own full bucket;
* a lockout after `fail_limit` failed authentications within about
  `window_s`: the source (or, see below, that user at that source) is
  refused for `lockout_s`. `record_failure` returns `LockoutStarted` exactly
  once per lockout — log that, not every refused request.

Verdicts: THROTTLED → drop silently (answering a flood costs as much as the
flood); LOCKED_OUT → answer `lockout_response()` (403: RFC 3261 §21.4.4 says
not to repeat the request, which slows a misconfigured phone down, and a
403 is smaller than the request so it amplifies nothing). Bucket first, lock
second, so a locked-out flood is dropped too.

NAT: in a call centre all operators' phones may share one public address.
If one misconfigured phone could lock that address, every operator behind it
would drop offline — during emergencies. So a source that authenticated
successfully within `trust_s` is *trusted*: its failures count against
(source, user) only, locking out the broken phone's user and no one else.
Untrusted sources (scanners have never succeeded) count failures against
the whole address, so spraying many user names does not multiply guesses.

Never put trunk traffic (INVITEs to 112) through this guard: an emergency
call must not be dropped by a rate limit.

Failures are counted in a fixed window that opens with the first failure and
lasts `window_s` (O(1) and exact for a burst; a burst straddling two windows
needs up to twice the limit, which is fine for a lockout). Every operation is
O(1).

Eviction (issue 11). Tables are bounded (`max_entries`), but a spoofer who
sends from more addresses than that must not push out what matters: a
trusted source (the operators' usual addresses) or an active lockout (a
scanner would otherwise free itself by flooding). So sources live in two
tables: `_sources`, the LRU of strangers, which a flood of new addresses
churns; and `_held`, sources that authenticated (trusted) or are locked out.
Only a successful authentication or a lockout moves a source into `_held`;
when `_held` is full its least recently used entry whose trust and lockout
have both ended goes first, and only then the oldest. A spoofer cannot
authenticate, so it can churn only the strangers' table.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from enum import Enum
from itertools import islice
from typing import TYPE_CHECKING, Final

from .message import Request, Response, new_tag

if TYPE_CHECKING:
    from ..config import SipConfig

__all__ = [
    "DEFAULT_BURST",
    "DEFAULT_RATE_PER_S",
    "DEFAULT_TRUST_S",
    "MAX_SOURCES",
    "Admission",
    "Lockout",
    "LockoutStarted",
    "SourceGuard",
    "lockout_response",
]

# No RFC sets these. A phone sends REGISTER (+ its challenged retry) every
# regint and OPTIONS keep-alives at most every few seconds; 200 phones behind
# one NAT re-registering every 60 s average under 7 requests/s. A restart of
# all of them at once is the burst.
DEFAULT_RATE_PER_S: Final = 20.0
DEFAULT_BURST: Final = 200.0
# A source stays trusted this long after a successful authentication: longer
# than the longest registration interval (SipConfig.max_expires_s ≤ 86 400 s
# is allowed, but phones refresh well inside 3600 s).
DEFAULT_TRUST_S: Final = 7200.0
# ~200 bytes per entry: a few MB whatever the number of addresses seen.
MAX_SOURCES: Final = 16_384


class Admission(Enum):
    ADMITTED = "admitted"
    THROTTLED = "throttled"  # drop without answering
    LOCKED_OUT = "locked_out"  # answer lockout_response()


@dataclass(frozen=True, slots=True, kw_only=True)
class LockoutStarted:
    """A source (user None) or one user at a source was locked out."""

    source: str
    user: str | None
    until: float
    failures: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Lockout:
    """An active lockout, for the telecom view."""

    source: str
    user: str | None
    until: float


class _Failures:
    __slots__ = ("count", "locked_until", "window_start")

    def __init__(self) -> None:
        self.count = 0
        self.window_start = float("-inf")
        self.locked_until = float("-inf")


class _Source(_Failures):
    __slots__ = ("refilled_at", "tokens", "trusted_until")

    def __init__(self, burst: float, now: float) -> None:
        super().__init__()
        self.tokens = burst
        self.refilled_at = now
        self.trusted_until = float("-inf")


class SourceGuard:
    """Token buckets and failed-authentication lockout, keyed by source IP."""

    __slots__ = (
        "_held",
        "_pairs",
        "_sources",
        "burst",
        "fail_limit",
        "lockout_s",
        "max_entries",
        "rate_per_s",
        "trust_s",
        "window_s",
    )

    def __init__(
        self,
        *,
        fail_limit: int = 10,
        lockout_s: float = 300.0,
        window_s: float | None = None,
        rate_per_s: float = DEFAULT_RATE_PER_S,
        burst: float = DEFAULT_BURST,
        trust_s: float = DEFAULT_TRUST_S,
        max_entries: int = MAX_SOURCES,
    ) -> None:
        if fail_limit < 1 or lockout_s <= 0 or rate_per_s <= 0 or burst < 1 or max_entries < 1:
            raise ValueError("fail_limit, lockout_s, rate_per_s, burst, max_entries must be > 0")
        self.fail_limit = fail_limit
        self.lockout_s = lockout_s
        # The configuration has no window; the lockout period is the natural
        # one (fail2ban's findtime defaults to its bantime too).
        self.window_s = lockout_s if window_s is None else window_s
        self.rate_per_s = rate_per_s
        self.burst = burst
        self.trust_s = trust_s
        self.max_entries = max_entries
        self._sources: OrderedDict[str, _Source] = OrderedDict()
        self._held: OrderedDict[str, _Source] = OrderedDict()
        self._pairs: OrderedDict[tuple[str, str], _Failures] = OrderedDict()

    @classmethod
    def from_config(cls, sip: SipConfig) -> SourceGuard:
        return cls(fail_limit=sip.auth_fail_limit, lockout_s=sip.auth_lockout_s)

    # -- admission -------------------------------------------------------------

    def check(self, source: str, now: float, *, user: str | None = None) -> Admission:
        """Admit one request from `source` (an IP address), taking a token.

        `user` is the user name the request claims (Authorization username,
        else the To user), used only to find a per-user lockout.
        """
        st = self._source(source, now)
        st.tokens = min(self.burst, st.tokens + max(0.0, now - st.refilled_at) * self.rate_per_s)
        st.refilled_at = now
        if st.tokens < 1.0:
            return Admission.THROTTLED
        st.tokens -= 1.0
        if st.locked_until > now:
            return Admission.LOCKED_OUT
        pair = self._pairs.get((source, user or ""))
        if pair is not None and pair.locked_until > now:
            return Admission.LOCKED_OUT
        return Admission.ADMITTED

    def allow(self, source: str, now: float, *, user: str | None = None) -> bool:
        return self.check(source, now, user=user) is Admission.ADMITTED

    # -- outcomes of authentication ---------------------------------------------

    def record_failure(
        self, source: str, now: float, *, user: str | None = None
    ) -> LockoutStarted | None:
        """Count a failed authentication; returns the lockout it starts, once."""
        st = self._source(source, now)
        trusted = st.trusted_until > now
        target: _Failures = self._pair(source, user or "") if trusted else st
        if target.locked_until > now:
            return None
        if now - target.window_start >= self.window_s:
            target.window_start = now
            target.count = 0
        target.count += 1
        if target.count < self.fail_limit:
            return None
        failures = target.count
        target.count = 0
        target.window_start = float("-inf")
        target.locked_until = now + self.lockout_s
        if target is st:
            self._hold(source, st, now)
        return LockoutStarted(
            source=source,
            user=(user or "") if trusted else None,
            until=target.locked_until,
            failures=failures,
        )

    def record_success(self, source: str, now: float, *, user: str | None = None) -> None:
        """A request from `source` authenticated: trust it, forget its failures."""
        st = self._source(source, now)
        st.trusted_until = now + self.trust_s
        st.count = 0
        self._hold(source, st, now)
        self._pairs.pop((source, user or ""), None)

    # -- views -------------------------------------------------------------------

    def trusted(self, source: str, now: float) -> bool:
        """Did `source` authenticate within `trust_s`? (A known operator
        address: what `admission.EdgePolicy` classes as OPERATOR.)"""
        st = self._held.get(source)
        return st is not None and st.trusted_until > now

    def locked_until(self, source: str, now: float, *, user: str | None = None) -> float | None:
        """When the lockout affecting (source, user) ends, or None."""
        ends = [
            f.locked_until
            for f in (self._entry(source), self._pairs.get((source, user or "")))
            if f is not None and f.locked_until > now
        ]
        return max(ends) if ends else None

    def lockouts(self, now: float) -> list[Lockout]:
        """Active lockouts (O(table size): for the telecom view, not per packet)."""
        out = [
            Lockout(source=ip, user=None, until=st.locked_until)
            for table in (self._sources, self._held)
            for ip, st in table.items()
            if st.locked_until > now
        ]
        out += [
            Lockout(source=ip, user=user, until=f.locked_until)
            for (ip, user), f in self._pairs.items()
            if f.locked_until > now
        ]
        return sorted(out, key=lambda lk: (lk.source, lk.user or ""))

    # -- tables --------------------------------------------------------------------

    def _entry(self, source: str) -> _Source | None:
        st = self._held.get(source)
        return st if st is not None else self._sources.get(source)

    def _source(self, source: str, now: float) -> _Source:
        st = self._held.get(source)
        if st is not None:
            self._held.move_to_end(source)
            return st
        st = self._sources.get(source)
        if st is None:
            st = self._sources[source] = _Source(self.burst, now)
            if len(self._sources) > self.max_entries:
                self._sources.popitem(last=False)
        else:
            self._sources.move_to_end(source)
        return st

    def _hold(self, source: str, st: _Source, now: float) -> None:
        """Move `source` where a flood of new addresses cannot evict it."""
        if self._held.get(source) is st:
            return
        self._sources.pop(source, None)
        self._held[source] = st
        if len(self._held) > self.max_entries:
            # The oldest entry that no longer matters, else the oldest. A
            # bounded look: entries are in last-use order, so expired ones
            # gather at the front.
            for ip in list(islice(self._held, 64)):
                old = self._held[ip]
                if old.trusted_until <= now and old.locked_until <= now:
                    del self._held[ip]
                    return
            self._held.popitem(last=False)

    def _pair(self, source: str, user: str) -> _Failures:
        key = (source, user)
        f = self._pairs.get(key)
        if f is None:
            f = self._pairs[key] = _Failures()
            if len(self._pairs) > self.max_entries:
                self._pairs.popitem(last=False)
        else:
            self._pairs.move_to_end(key)
        return f


def lockout_response(request: Request) -> Response:
    """The 403 for a request from a locked-out source."""
    return Response.for_request(
        request, 403, "Forbidden (too many failed authentications)", to_tag=new_tag()
    )
