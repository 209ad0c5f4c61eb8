"""Whether this node takes calls: leader, follower, draining or fenced.

Theory of operation. Two nodes sit behind the Kamailio edge
(deploy/kamailio/kamailio.cfg); the edge sends new calls to whichever node
answers its OPTIONS probes with 2xx. So a node's role is told to the edge
through one thing only, its answer to out-of-dialog OPTIONS:

  role       probe answer    a new INVITE that reaches it     runs the ACD
  LEADER     200             taken                            yes
  DRAINING   503 Draining    taken (the edge stops sending)   yes
  FOLLOWER   503 Standby     503, unless last resort          no
  FENCED     503 Fenced      503, unless last resort          no

A refused INVITE gets 503 with Retry-After: 0, which the edge's
failure_route turns into a retry on the next node within the same
transaction (RFC 3261 §21.5.4: 503 means "try another server"); the carrier
never sees it while another node is up. No call to 112 may be refused at
the edge for want of a leader, so when the edge finds no node active it
sends the INVITE to every node in turn marked `X-Callcenter112-Last-Resort`
(the edge strips that header from everything it receives, so only it can
set it), and a node takes a last-resort INVITE whatever its role (a fenced
node keeps the incident in memory until its database returns, issue 14).
In-dialog requests are never refused: calls already bridged on a draining
or fenced node finish there. A draining node takes an INVITE that still
reaches it (the edge notices the 503 probe within a second): during a
planned switch-over no call is refused.

Transitions (one table; anything not in it is ignored and reported):
  FOLLOWER --leadership_acquired--> LEADER     (the lock is ours)
  LEADER   --database_lost--------> FENCED     (self-fencing: the lock may be
                                                someone else's by now)
  LEADER   --drain_requested------> DRAINING   (planned switch-over)
  DRAINING --leadership_released--> FOLLOWER   (its last call ended, lock freed)
  DRAINING --database_lost--------> FENCED
  FENCED   --database_back--------> FOLLOWER   (it must win the lock again)
  FOLLOWER --database_lost--------> FENCED
A single node without a cluster is a LEADER for ever (`Role.LEADER`, the
default), so one machine behaves as before.

The call flow consults it (hooks, centre.py is not changed here):
  * OPTIONS without To tag → `probe_answer()` (status, reason, headers);
  * initial INVITE → if `refusal(last_resort=...)` is not None answer it and
    stop (`last_resort`: the request has the LAST_RESORT_HEADER);
  * the ACD offers calls only while `runs_acd()`.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from enum import Enum
from typing import Final

__all__ = [
    "DEFAULT_LOCK_KEY",
    "LAST_RESORT_HEADER",
    "TRANSITIONS",
    "NodeRole",
    "Role",
    "RoleChanged",
    "RoleInput",
    "SipAnswer",
]


# The PostgreSQL advisory lock whose holder is the leader (cluster/leader.py);
# one per centre, a fixed number unless [cluster] lock_key says otherwise.
DEFAULT_LOCK_KEY: Final = zlib.crc32(b"callcenter112 leader")

# Set by deploy/kamailio/kamailio.cfg (route TONODE / NODE_FAILOVER) only.
LAST_RESORT_HEADER: Final = "X-Callcenter112-Last-Resort"


class Role(Enum):
    LEADER = "leader"
    FOLLOWER = "follower"
    DRAINING = "draining"
    FENCED = "fenced"


class RoleInput(Enum):
    LEADERSHIP_ACQUIRED = "leadership_acquired"
    LEADERSHIP_RELEASED = "leadership_released"
    DATABASE_LOST = "database_lost"
    DATABASE_BACK = "database_back"
    DRAIN_REQUESTED = "drain_requested"


TRANSITIONS: Final[dict[tuple[Role, RoleInput], Role]] = {
    (Role.FOLLOWER, RoleInput.LEADERSHIP_ACQUIRED): Role.LEADER,
    (Role.FOLLOWER, RoleInput.DATABASE_LOST): Role.FENCED,
    (Role.LEADER, RoleInput.DATABASE_LOST): Role.FENCED,
    (Role.LEADER, RoleInput.DRAIN_REQUESTED): Role.DRAINING,
    (Role.DRAINING, RoleInput.LEADERSHIP_RELEASED): Role.FOLLOWER,
    (Role.DRAINING, RoleInput.DATABASE_LOST): Role.FENCED,
    (Role.FENCED, RoleInput.DATABASE_BACK): Role.FOLLOWER,
}

_REASONS: Final = {
    Role.FOLLOWER: "Standby",
    Role.DRAINING: "Draining",
    Role.FENCED: "Fenced",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class SipAnswer:
    """A response the call flow sends as is."""

    status: int
    reason: str
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class RoleChanged:
    before: Role
    after: Role
    cause: RoleInput
    at: float  # the caller's monotonic clock


class NodeRole:
    """This node's role; pure (time is passed in)."""

    __slots__ = ("_changed_at", "_role")

    def __init__(self, role: Role = Role.LEADER, *, now: float = 0.0) -> None:
        self._role = role
        self._changed_at = now

    @property
    def role(self) -> Role:
        return self._role

    @property
    def changed_at(self) -> float:
        return self._changed_at

    def accepting_calls(self) -> bool:
        """Whether this node asks the edge for new calls (its probe answer)."""
        return self._role is Role.LEADER

    def runs_acd(self) -> bool:
        """Whether the ACD offers calls (a draining node still serves its own)."""
        return self._role in (Role.LEADER, Role.DRAINING)

    def probe_answer(self) -> SipAnswer:
        """The answer to an out-of-dialog OPTIONS (the edge's probe)."""
        if self.accepting_calls():
            return SipAnswer(status=200, reason="OK")
        return SipAnswer(status=503, reason=_REASONS[self._role])

    def refusal(self, *, last_resort: bool = False) -> SipAnswer | None:
        """None to take a new INVITE, else the 503 that sends it to the other node."""
        if last_resort or self._role in (Role.LEADER, Role.DRAINING):
            return None
        # Retry-After: 0 — the edge retries elsewhere at once; no carrier backoff.
        return SipAnswer(status=503, reason=_REASONS[self._role], headers=(("Retry-After", "0"),))

    def apply(self, cause: RoleInput, now: float) -> RoleChanged | None:
        """Feed one input; the change it made, or None when the table has no
        entry (e.g. a second database_lost while fenced)."""
        after = TRANSITIONS.get((self._role, cause))
        if after is None:
            return None
        change = RoleChanged(before=self._role, after=after, cause=cause, at=now)
        self._role = after
        self._changed_at = now
        return change
