"""Automatic call distribution: the 112 queue, the operators' states, and who gets which call.

Owns the queue of callers waiting for an operator and the working state of every
operator (DESIGN §2 phases 4, 5 and 8). It is pure: every input carries ``now``
(monotonic seconds), every public method returns the actions for the call
coordinator (``calls.py``), which sends the INVITE/CANCEL, plays the prompts and
writes the store, then reports results back. ``deadline()`` is the one timer
the coordinator re-arms (``loop.call_at(acd.deadline(), …)`` → ``tick(now)``).

Theory of operation
-------------------
Operators. An operator's state is one of ``OperatorState``. Presence
(registered *and* reachable = "online") and pause are orthogonal to the call
work, and the shown state is chosen by this rule, which ``_OPERATOR_TRANSITIONS``
spells out edge by edge:

* an offer ringing → RESERVED; a call → ON_CALL; after it → WRAP_UP, even if
  the phone went away meanwhile (wrap-up is console work);
* otherwise: not online → OFFLINE; a pause reason set → PAUSED; else AVAILABLE.

So a pause survives going offline and re-registering (an operator who paused
themselves, or was auto-paused after ``max_missed`` consecutive missed offers,
comes back PAUSED), and a pause asked for while ON_CALL takes effect when the
operator would next be free (after wrap-up). A pause from WRAP_UP ends the
wrap-up at once. Pausing is refused while an offer rings, while OFFLINE and
when already paused (``PauseRefusedError``); unpausing when no pause is set.
REGISTER proves the phone reachable, so ``operator_registered`` also sets
reachable; a lost operator leg (the phone died mid-call) marks it unreachable
until it registers again or answers a qualify (``operator_reachable(True)``).

Callers. The queue is ordered by ``(priority[category], requeued-first,
arrived_at, enqueue order)``. ``arrived_at`` is the NENA arrival (INVITE at the
trunk), so time spent in the IVR counts. A caller put back with ``front=True``
(their operator's phone died mid-call) keeps that arrival for the SLA and goes
ahead of everyone in their priority class who was not put back, but never ahead
of a higher priority class.

Silent and watch-listed callers (issue 12). ``enqueue(urgent=True)`` (the
caller pressed a key after "if you cannot speak, press 5": ``silent_confirmed``)
puts the caller in a class of their own ahead of every category.
``enqueue(watch_listed=True)`` (a number on the supervisor's watch list) puts
the caller behind every category — so they wait only while someone else is
waiting: the walk below is work-conserving — until ``watch_list_max_extra_wait_s``
after joining. Then the caller is *released*: re-keyed to exactly the place a
fresh caller of their category who arrived at the same moment holds, so the
extra wait over that fresh caller is capped and a person always answers. The
queue never refuses or drops anybody for who they are.

Assignment. After every input the queue is walked in order; each caller without
an offer gets the longest-idle *eligible* operator: AVAILABLE, not in the short
back-off after declining, and able to serve the category. Serving means having
the category in ``skills``; ``unknown`` is served by anyone, and so is a
category no operator on duty (AVAILABLE/RESERVED/ON_CALL/WRAP_UP) has — a fire
call is not left waiting for a fire-skilled operator who is not working. A
caller nobody free can serve does not block the callers behind it (no
head-of-line blocking), yet among callers one operator could serve, the earlier
one always gets the offer first. A walk leaves no waiting caller with an
eligible operator free (work-conserving). One offer per caller, one per
operator.

Offers end by answer (the caller leaves the queue, ``answered``), by failure
(``busy``/``rejected``/``error``: the operator stays AVAILABLE but is skipped
for ``decline_backoff_s`` so a phone on do-not-disturb answering 486 at once
cannot make the queue spin; ``unreachable``: OFFLINE), by the ring timeout
(``CancelOffer(no_answer)``, a missed mark), by the caller hanging up
(``CancelOffer(caller_left)``, no missed mark, the operator keeps their place
in the idle order) or by the operator going offline
(``CancelOffer(operator_offline)``). Unless answered, the caller keeps their
place and the next operator is tried at once. An operator whose offer ended
through their phone (failure, no answer) goes to the back of the idle order.

Timers, all checked by ``tick(now)`` and after every other input: ring
timeouts, wrap-up ends, back-off ends, overflow (``overflow_after_s`` after
arrival — after re-queueing for a put-back caller, who has already waited and
talked — and only while no offer rings for the caller: it is then
``OverflowCall`` and the caller leaves the queue, ``overflowed``), and position
announcements every ``position_every_s`` from joining the queue (the position
at joining is in ``CallerQueued`` for the "please hold" prompt, so the first
``AnnouncePosition`` comes one period later). After any input at ``now``,
``deadline()`` is None or later than ``now``: the coordinator's timer loop can
never spin.

Race with SIP (RFC 3261 §9.1): after ``CancelOffer`` the offer is over. A 200 OK
that crosses the CANCEL must be ACKed and BYEd by the coordinator;
``offer_answered`` for it raises ``OfferNotFoundError``. Likewise the 487 to
our own CANCEL is not reported.

Anything not in the state tables raises ``OperatorTransitionError`` /
``CallerTransitionError``; bad references raise the other ``AcdError``
subclasses. No input leaves a state stuck without a timer.
"""

from __future__ import annotations

import bisect
import enum
import heapq
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from .config import OperatorConfig, QueueConfig

__all__ = [
    "UNKNOWN_CATEGORY",
    "Acd",
    "AcdAction",
    "AcdError",
    "AcdSettings",
    "AcdSnapshot",
    "AnnouncePosition",
    "CallerInput",
    "CallerLeftQueue",
    "CallerQueued",
    "CallerState",
    "CallerTransitionError",
    "CallerView",
    "CancelOffer",
    "CancelReason",
    "DuplicateCallError",
    "OfferCall",
    "OfferFailure",
    "OfferNotFoundError",
    "OperatorInput",
    "OperatorProfile",
    "OperatorState",
    "OperatorStateChanged",
    "OperatorTransitionError",
    "OperatorView",
    "OverflowCall",
    "PauseRefusedError",
    "QueueOutcome",
    "UnknownCallError",
    "UnknownCategoryError",
    "UnknownOperatorError",
]

UNKNOWN_CATEGORY = "unknown"
MISSED_CALLS = "missed_calls"  # pause reason of the automatic pause

CancelReason = Literal["no_answer", "caller_left", "operator_offline"]


# --- errors -----------------------------------------------------------------------------


class AcdError(Exception):
    """An input the ACD cannot take; the message says why in operator terms."""


class UnknownOperatorError(AcdError):
    pass


class UnknownCallError(AcdError):
    pass


class UnknownCategoryError(AcdError):
    pass


class DuplicateCallError(AcdError):
    pass


class OfferNotFoundError(AcdError):
    """No such offer is out (never sent, or already ended: answered, cancelled, failed)."""


class OperatorTransitionError(AcdError):
    """The input is not in ``_OPERATOR_TRANSITIONS`` for the operator's state."""

    def __init__(self, operator: str, state: OperatorState, event: OperatorInput, why: str = ""):
        self.operator = operator
        self.state = state
        self.event = event
        super().__init__(
            why or f"operator {operator}: {event.name} is not allowed while {state.name}"
        )


class PauseRefusedError(OperatorTransitionError):
    """A pause or unpause that makes no sense in the operator's state."""


class CallerTransitionError(AcdError):
    """The input is not in ``_CALLER_TRANSITIONS`` for the caller's state."""

    def __init__(self, call_ref: str, state: CallerState, event: CallerInput) -> None:
        self.call_ref = call_ref
        self.state = state
        self.event = event
        super().__init__(f"caller {call_ref}: {event.name} is not allowed while {state.name}")


# --- state tables -----------------------------------------------------------------------


class OperatorState(enum.StrEnum):
    OFFLINE = "offline"  # not registered, or unreachable
    AVAILABLE = "available"
    RESERVED = "reserved"  # an offer is ringing
    ON_CALL = "on_call"
    WRAP_UP = "wrap_up"
    PAUSED = "paused"


class OperatorInput(enum.Enum):
    CAME_ONLINE = "came_online"
    CAME_ONLINE_PAUSED = "came_online_paused"
    WENT_OFFLINE = "went_offline"
    OFFER_SENT = "offer_sent"
    OFFER_ANSWERED = "offer_answered"
    OFFER_DECLINED = "offer_declined"  # busy, rejected, error
    OFFER_UNREACHABLE = "offer_unreachable"
    OFFER_WITHDRAWN = "offer_withdrawn"  # the caller hung up while it rang
    RING_TIMED_OUT = "ring_timed_out"
    RING_TIMED_OUT_PAUSED = "ring_timed_out_paused"  # the max_missed-th miss in a row
    CALL_ENDED = "call_ended"
    LEG_LOST = "leg_lost"
    WRAP_UP_ENDED = "wrap_up_ended"
    WRAP_UP_ENDED_PAUSED = "wrap_up_ended_paused"
    WRAP_UP_ENDED_OFFLINE = "wrap_up_ended_offline"
    PAUSE_REQUESTED = "pause_requested"
    PAUSE_REQUESTED_OFFLINE = "pause_requested_offline"  # from WRAP_UP with the phone gone
    UNPAUSE_REQUESTED = "unpause_requested"


_O, _OI = OperatorState, OperatorInput
_OPERATOR_TRANSITIONS: Mapping[tuple[OperatorState, OperatorInput], OperatorState] = (
    MappingProxyType(
        {
            (_O.OFFLINE, _OI.CAME_ONLINE): _O.AVAILABLE,
            (_O.OFFLINE, _OI.CAME_ONLINE_PAUSED): _O.PAUSED,
            (_O.OFFLINE, _OI.UNPAUSE_REQUESTED): _O.OFFLINE,  # clears the kept pause
            (_O.AVAILABLE, _OI.WENT_OFFLINE): _O.OFFLINE,
            (_O.AVAILABLE, _OI.OFFER_SENT): _O.RESERVED,
            (_O.AVAILABLE, _OI.PAUSE_REQUESTED): _O.PAUSED,
            (_O.RESERVED, _OI.WENT_OFFLINE): _O.OFFLINE,
            (_O.RESERVED, _OI.OFFER_ANSWERED): _O.ON_CALL,
            (_O.RESERVED, _OI.OFFER_DECLINED): _O.AVAILABLE,
            (_O.RESERVED, _OI.OFFER_UNREACHABLE): _O.OFFLINE,
            (_O.RESERVED, _OI.OFFER_WITHDRAWN): _O.AVAILABLE,
            (_O.RESERVED, _OI.RING_TIMED_OUT): _O.AVAILABLE,
            (_O.RESERVED, _OI.RING_TIMED_OUT_PAUSED): _O.PAUSED,
            (_O.ON_CALL, _OI.CAME_ONLINE): _O.ON_CALL,
            (_O.ON_CALL, _OI.CAME_ONLINE_PAUSED): _O.ON_CALL,
            (_O.ON_CALL, _OI.WENT_OFFLINE): _O.ON_CALL,  # the call's legs decide its fate
            (_O.ON_CALL, _OI.CALL_ENDED): _O.WRAP_UP,
            (_O.ON_CALL, _OI.LEG_LOST): _O.OFFLINE,
            (_O.ON_CALL, _OI.PAUSE_REQUESTED): _O.ON_CALL,  # deferred to after wrap-up
            (_O.ON_CALL, _OI.UNPAUSE_REQUESTED): _O.ON_CALL,
            (_O.WRAP_UP, _OI.CAME_ONLINE): _O.WRAP_UP,
            (_O.WRAP_UP, _OI.CAME_ONLINE_PAUSED): _O.WRAP_UP,
            (_O.WRAP_UP, _OI.WENT_OFFLINE): _O.WRAP_UP,
            (_O.WRAP_UP, _OI.WRAP_UP_ENDED): _O.AVAILABLE,
            (_O.WRAP_UP, _OI.WRAP_UP_ENDED_PAUSED): _O.PAUSED,
            (_O.WRAP_UP, _OI.WRAP_UP_ENDED_OFFLINE): _O.OFFLINE,
            (_O.WRAP_UP, _OI.PAUSE_REQUESTED): _O.PAUSED,
            (_O.WRAP_UP, _OI.PAUSE_REQUESTED_OFFLINE): _O.OFFLINE,
            (_O.WRAP_UP, _OI.UNPAUSE_REQUESTED): _O.WRAP_UP,  # cancels a deferred pause
            (_O.PAUSED, _OI.WENT_OFFLINE): _O.OFFLINE,
            (_O.PAUSED, _OI.UNPAUSE_REQUESTED): _O.AVAILABLE,
        }
    )
)

# Working: will take or is taking calls. A category one of them can serve is "staffed".
_ON_DUTY = frozenset({_O.AVAILABLE, _O.RESERVED, _O.ON_CALL, _O.WRAP_UP})


class CallerState(enum.Enum):
    WAITING = "waiting"
    OFFERED = "offered"
    ANSWERED = "answered"  # the three exits: the caller is then out of the queue
    ABANDONED = "abandoned"
    OVERFLOWED = "overflowed"


class CallerInput(enum.Enum):
    OFFER_SENT = "offer_sent"
    OFFER_ANSWERED = "offer_answered"
    OFFER_ENDED = "offer_ended"  # failed, timed out, or the operator went offline
    HUNG_UP = "hung_up"
    OVERFLOW_DUE = "overflow_due"


_C, _CI = CallerState, CallerInput
_CALLER_TRANSITIONS: Mapping[tuple[CallerState, CallerInput], CallerState] = MappingProxyType(
    {
        (_C.WAITING, _CI.OFFER_SENT): _C.OFFERED,
        (_C.WAITING, _CI.HUNG_UP): _C.ABANDONED,
        (_C.WAITING, _CI.OVERFLOW_DUE): _C.OVERFLOWED,
        (_C.OFFERED, _CI.OFFER_ANSWERED): _C.ANSWERED,
        (_C.OFFERED, _CI.OFFER_ENDED): _C.WAITING,
        (_C.OFFERED, _CI.HUNG_UP): _C.ABANDONED,
    }
)


class OfferFailure(enum.StrEnum):
    """Why an offer failed, as the coordinator maps the final response: 486/600 →
    BUSY, 603 → REJECTED, 408/480/transport failure → UNREACHABLE, other → ERROR."""

    BUSY = "busy"
    REJECTED = "rejected"
    UNREACHABLE = "unreachable"
    ERROR = "error"


class QueueOutcome(enum.StrEnum):
    ANSWERED = "answered"
    ABANDONED = "abandoned"
    OVERFLOWED = "overflowed"


# --- settings ---------------------------------------------------------------------------


# Ranks outside every configured priority (config: 0..100).
URGENT_RANK = -1  # silent_confirmed: ahead of every category
WATCH_LISTED_RANK = 1_000  # behind every category, until released


@dataclass(frozen=True, slots=True, kw_only=True)
class AcdSettings:
    """What the ACD needs from ``[queue]`` (``callcenter112.config.QueueConfig``)."""

    priority: Mapping[str, int]  # category → rank, lower first
    ring_timeout_s: float = 15.0
    max_missed: int = 2
    wrapup_s: float = 10.0
    position_every_s: float = 30.0
    overflow_after_s: float = 0.0  # 0: never
    # Not (yet) a config key: how long a declining operator is skipped.
    decline_backoff_s: float = 5.0
    # Issue 12: a watch-listed caller's wait beyond a fresh caller's, at most.
    watch_list_max_extra_wait_s: float = 30.0

    def __post_init__(self) -> None:
        if self.watch_list_max_extra_wait_s < 0:
            raise ValueError("watch_list_max_extra_wait_s cannot be negative")
        if any(not URGENT_RANK < rank < WATCH_LISTED_RANK for rank in self.priority.values()):
            raise ValueError(f"priorities must lie between {URGENT_RANK} and {WATCH_LISTED_RANK}")
        if UNKNOWN_CATEGORY not in self.priority:
            raise ValueError("priority needs the 'unknown' category")
        if not (self.ring_timeout_s > 0 and self.position_every_s > 0):
            raise ValueError("ring_timeout_s and position_every_s must be positive")
        if self.max_missed < 1:
            raise ValueError("max_missed must be at least 1")
        if min(self.wrapup_s, self.overflow_after_s, self.decline_backoff_s) < 0:
            raise ValueError("wrapup_s, overflow_after_s and decline_backoff_s cannot be negative")
        object.__setattr__(self, "priority", MappingProxyType(dict(self.priority)))

    @classmethod
    def from_config(cls, cfg: QueueConfig) -> AcdSettings:
        return cls(
            priority={str(k): v for k, v in cfg.priority.items()},
            ring_timeout_s=cfg.ring_timeout_s,
            max_missed=cfg.max_missed,
            wrapup_s=cfg.wrapup_s,
            position_every_s=cfg.position_every_s,
            overflow_after_s=cfg.overflow_after_s,
            decline_backoff_s=cfg.decline_backoff_s,
            watch_list_max_extra_wait_s=cfg.watch_list_max_extra_wait_s,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class OperatorProfile:
    """An ``[[operator]]`` as the ACD sees it."""

    user: str
    skills: frozenset[str]

    @classmethod
    def from_config(cls, cfg: OperatorConfig) -> OperatorProfile:
        return cls(user=cfg.user, skills=frozenset(cfg.skills))


# --- actions ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class OfferCall:
    """INVITE ``operator`` for the caller; the ACD cancels it itself at ``deadline``."""

    call_ref: str
    operator: str
    deadline: float


@dataclass(frozen=True, slots=True, kw_only=True)
class CancelOffer:
    """CANCEL the ringing INVITE; the offer is over (its 487 is not reported)."""

    call_ref: str
    operator: str
    reason: CancelReason


@dataclass(frozen=True, slots=True, kw_only=True)
class OverflowCall:
    """Send the caller to the overflow destination; they have left the queue."""

    call_ref: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AnnouncePosition:
    call_ref: str
    position: int  # 1 = next


@dataclass(frozen=True, slots=True, kw_only=True)
class CallerQueued:
    """The caller joined the queue (``requeued``: put back after their operator leg died)."""

    call_ref: str
    category: str
    position: int
    requeued: bool
    at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class CallerLeftQueue:
    """The one exit of one queue stay; ``waited_s`` counts from joining the queue."""

    call_ref: str
    outcome: QueueOutcome
    waited_s: float
    operator: str | None  # who answered, for ``answered``
    at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class OperatorStateChanged:
    """For the operator state history; into PAUSED the reason is the pause reason."""

    operator: str
    old: OperatorState
    new: OperatorState
    reason: str
    at: float


AcdAction = (
    OfferCall
    | CancelOffer
    | OverflowCall
    | AnnouncePosition
    | CallerQueued
    | CallerLeftQueue
    | OperatorStateChanged
)


# --- wallboard view ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class CallerView:
    call_ref: str
    category: str
    arrived_at: float
    queued_at: float
    position: int
    offered_to: str | None
    requeued: bool
    urgent: bool = False  # silent_confirmed
    watch_listed: bool = False  # still held behind the others (not yet released)


@dataclass(frozen=True, slots=True, kw_only=True)
class OperatorView:
    user: str
    state: OperatorState
    since: float
    reason: str  # of the last state change
    pause_reason: str | None  # also a kept or deferred pause while OFFLINE/ON_CALL/WRAP_UP
    registered: bool
    reachable: bool
    skills: frozenset[str]
    call_ref: str | None  # offered or talking
    calls_today: int
    missed: int  # consecutive, towards the automatic pause
    missed_today: int


@dataclass(frozen=True, slots=True, kw_only=True)
class AcdSnapshot:
    at: float
    callers: tuple[CallerView, ...]  # in queue order
    operators: tuple[OperatorView, ...]  # in configuration order


# --- internal records -------------------------------------------------------------------


@dataclass(slots=True, kw_only=True)
class _Operator:
    profile: OperatorProfile
    order: int
    state: OperatorState = OperatorState.OFFLINE
    state_since: float = 0.0
    reason: str = "configured"
    registered: bool = False
    reachable: bool = False
    pause_reason: str | None = None
    idle_since: float = 0.0
    blocked_until: float | None = None
    call_ref: str | None = None
    offer_deadline: float | None = None
    wrap_until: float | None = None
    missed: int = 0
    missed_today: int = 0
    calls_today: int = 0

    @property
    def user(self) -> str:
        return self.profile.user

    @property
    def online(self) -> bool:
        return self.registered and self.reachable


@dataclass(slots=True, kw_only=True)
class _Caller:
    call_ref: str
    category: str
    arrived_at: float
    queued_at: float
    requeued: bool
    key: tuple[int, int, float, int]
    state: CallerState = CallerState.WAITING
    offered_to: str | None = None
    next_announce: float = 0.0
    overflow_at: float | None = None
    urgent: bool = False
    release_at: float | None = None  # a held watch-listed caller's release


@dataclass(frozen=True, slots=True, kw_only=True)
class _Talk:
    category: str
    arrived_at: float
    urgent: bool


# --- the ACD ----------------------------------------------------------------------------


class Acd:
    """The queue and the operators of one centre."""

    __slots__ = ("_callers", "_now", "_ops", "_queue", "_seq", "_talks", "_timers", "settings")

    def __init__(
        self, settings: AcdSettings, operators: Iterable[OperatorProfile], now: float = 0.0
    ) -> None:
        self.settings = settings
        self._ops: dict[str, _Operator] = {}
        for i, profile in enumerate(operators):
            if profile.user in self._ops:
                raise ValueError(f"operator {profile.user!r} is listed twice")
            self._ops[profile.user] = _Operator(profile=profile, order=i, state_since=now)
        self._queue: list[_Caller] = []  # sorted by key
        self._callers: dict[str, _Caller] = {}
        # Answered calls, for a put-back after a lost operator leg.
        self._talks: dict[str, _Talk] = {}
        # Caller timers (announcement, overflow) as a heap; stale entries dropped lazily.
        self._timers: list[tuple[float, int, str]] = []
        self._seq = 0
        self._now = now

    # --- callers ----------------------------------------------------------------------

    def enqueue(
        self,
        call_ref: str,
        category: str,
        arrived_at: float,
        now: float,
        *,
        front: bool = False,
        urgent: bool = False,
        watch_listed: bool = False,
    ) -> list[AcdAction]:
        """A caller joins the queue (after the IVR). ``front``: put back first in class;
        ``urgent``: silent_confirmed, first of all; ``watch_listed``: held last, capped."""
        if call_ref in self._callers or call_ref in self._talks:
            raise DuplicateCallError(f"call {call_ref} is already queued or talking")
        if category not in self.settings.priority:
            raise UnknownCategoryError(f"call {call_ref}: no priority for {category!r}")
        out: list[AcdAction] = []
        self._join(
            call_ref=call_ref,
            category=category,
            arrived_at=arrived_at,
            now=now,
            front=front,
            out=out,
            urgent=urgent,
            watch_listed=watch_listed and not urgent,
        )
        self._advance(now, out)
        return out

    def caller_left(self, call_ref: str, now: float) -> list[AcdAction]:
        """The caller hung up while queued (``abandoned``)."""
        caller = self._caller(call_ref)
        out: list[AcdAction] = []
        if caller.offered_to is not None:
            op = self._ops[caller.offered_to]
            out.append(CancelOffer(call_ref=call_ref, operator=op.user, reason="caller_left"))
            idle_since = op.idle_since  # not the operator's doing: keep their place
            self._end_offer(op)
            self._move(op, OperatorInput.OFFER_WITHDRAWN, "caller_left", now, out)
            op.idle_since = idle_since
        self._leave(
            caller,
            event=CallerInput.HUNG_UP,
            outcome=QueueOutcome.ABANDONED,
            operator=None,
            now=now,
            out=out,
        )
        self._advance(now, out)
        return out

    # --- offers -----------------------------------------------------------------------

    def offer_answered(self, call_ref: str, operator: str, now: float) -> list[AcdAction]:
        op, caller = self._offer_of(call_ref, operator)
        out: list[AcdAction] = []
        self._end_offer(op)
        op.call_ref = call_ref
        op.calls_today += 1
        op.missed = 0
        self._move(op, OperatorInput.OFFER_ANSWERED, "answered", now, out)
        self._talks[call_ref] = _Talk(
            category=caller.category, arrived_at=caller.arrived_at, urgent=caller.urgent
        )
        self._leave(
            caller,
            event=CallerInput.OFFER_ANSWERED,
            outcome=QueueOutcome.ANSWERED,
            operator=op.user,
            now=now,
            out=out,
        )
        self._advance(now, out)
        return out

    def offer_failed(
        self, call_ref: str, operator: str, reason: OfferFailure | str, now: float
    ) -> list[AcdAction]:
        """The INVITE got a final failure (no CancelOffer of ours caused it)."""
        try:
            failure = OfferFailure(reason)
        except ValueError:
            raise AcdError(
                f"offer failure reason {reason!r} is not one of busy, rejected, unreachable, error"
            ) from None
        op, caller = self._offer_of(call_ref, operator)
        out: list[AcdAction] = []
        self._end_offer(op)
        if failure is OfferFailure.UNREACHABLE:
            op.reachable = False
            self._move(op, OperatorInput.OFFER_UNREACHABLE, failure.value, now, out)
        else:
            self._move(op, OperatorInput.OFFER_DECLINED, failure.value, now, out)
            op.idle_since = now
            if self.settings.decline_backoff_s > 0:
                op.blocked_until = now + self.settings.decline_backoff_s
        self._offer_ended(caller)
        self._advance(now, out)
        return out

    def tick(self, now: float) -> list[AcdAction]:
        """Run every timer that is due; call at ``deadline()`` (earlier is harmless)."""
        out: list[AcdAction] = []
        self._advance(now, out)
        return out

    # --- calls ------------------------------------------------------------------------

    def call_ended(self, operator: str, now: float) -> list[AcdAction]:
        """The operator is out of the call (either side hung up, or handed off)."""
        op = self._op(operator)
        out: list[AcdAction] = []
        self._move(op, OperatorInput.CALL_ENDED, "call_ended", now, out)
        if op.call_ref is not None:
            self._talks.pop(op.call_ref, None)
        op.call_ref = None
        op.wrap_until = now + self.settings.wrapup_s
        self._advance(now, out)
        return out

    def operator_leg_lost(self, call_ref: str, operator: str, now: float) -> list[AcdAction]:
        """The operator's phone died mid-call: it is taken as unreachable and the
        caller goes back to the head of their priority class."""
        op = self._op(operator)
        if op.state is not OperatorState.ON_CALL or op.call_ref != call_ref:
            raise UnknownCallError(f"operator {operator} is not talking to call {call_ref}")
        out: list[AcdAction] = []
        op.reachable = False
        op.call_ref = None
        self._move(op, OperatorInput.LEG_LOST, "leg_lost", now, out)
        talk = self._talks.pop(call_ref)
        self._join(
            call_ref=call_ref,
            category=talk.category,
            arrived_at=talk.arrived_at,
            now=now,
            front=True,
            out=out,
            urgent=talk.urgent,
        )
        self._advance(now, out)
        return out

    # --- presence and pause -----------------------------------------------------------

    def operator_registered(self, operator: str, now: float) -> list[AcdAction]:
        """A REGISTER (new or refresh) was accepted; it also proves reachability."""
        op = self._op(operator)
        was_online = op.online
        op.registered = op.reachable = True
        return self._presence_changed(op, was_online, "registered", now)

    def operator_unregistered(self, operator: str, now: float) -> list[AcdAction]:
        """The binding was removed or expired."""
        op = self._op(operator)
        was_online = op.online
        op.registered = False
        return self._presence_changed(op, was_online, "unregistered", now)

    def operator_reachable(self, operator: str, reachable: bool, now: float) -> list[AcdAction]:
        """A qualify (OPTIONS) answered or failed."""
        op = self._op(operator)
        was_online = op.online
        op.reachable = reachable
        return self._presence_changed(
            op, was_online, "reachable" if reachable else "unreachable", now
        )

    def pause(self, operator: str, reason: str, now: float) -> list[AcdAction]:
        """Stop offering calls to the operator (deferred to after the call if ON_CALL)."""
        op = self._op(operator)
        if not reason:
            raise PauseRefusedError(
                op.user, op.state, OperatorInput.PAUSE_REQUESTED, "a pause needs a reason"
            )
        if op.pause_reason is not None:
            raise PauseRefusedError(
                op.user,
                op.state,
                OperatorInput.PAUSE_REQUESTED,
                f"operator {op.user} is already paused ({op.pause_reason})",
            )
        event = OperatorInput.PAUSE_REQUESTED
        if op.state is OperatorState.WRAP_UP and not op.online:
            event = OperatorInput.PAUSE_REQUESTED_OFFLINE
        if (op.state, event) not in _OPERATOR_TRANSITIONS:
            why = {
                OperatorState.RESERVED: "a call is ringing on their phone: answer or reject it",
                OperatorState.OFFLINE: "they are offline: register the softphone first",
            }.get(op.state, f"not possible while {op.state.name}")
            raise PauseRefusedError(op.user, op.state, event, f"cannot pause {op.user}: {why}")
        out: list[AcdAction] = []
        op.pause_reason = reason
        if op.state is OperatorState.WRAP_UP:
            op.wrap_until = None
        self._move(op, event, reason, now, out)
        self._advance(now, out)
        return out

    def unpause(self, operator: str, now: float) -> list[AcdAction]:
        """Clear the pause (also a kept one while OFFLINE or a deferred one while ON_CALL)."""
        op = self._op(operator)
        if op.pause_reason is None:
            raise PauseRefusedError(
                op.user,
                op.state,
                OperatorInput.UNPAUSE_REQUESTED,
                f"cannot unpause {op.user}: not paused",
            )
        out: list[AcdAction] = []
        op.pause_reason = None
        self._move(op, OperatorInput.UNPAUSE_REQUESTED, "unpaused", now, out)
        self._advance(now, out)
        return out

    def reset_daily_counts(self) -> list[AcdAction]:
        """Start a new day for ``calls_today``/``missed_today`` (the coordinator's midnight)."""
        for op in self._ops.values():
            op.calls_today = op.missed_today = 0
        return []

    # --- live configuration (issue 16: live_config.py) ----------------------------------

    def set_operator(self, profile: OperatorProfile, now: float) -> list[AcdAction]:
        """Add an operator (offline until their phone registers) or change their skills."""
        op = self._ops.get(profile.user)
        if op is None:
            order = max((o.order for o in self._ops.values()), default=-1) + 1
            self._ops[profile.user] = _Operator(profile=profile, order=order, state_since=now)
            return []
        op.profile = profile
        out: list[AcdAction] = []
        self._advance(now, out)  # new skills may serve someone waiting
        return out

    def remove_operator(self, operator: str, now: float) -> list[AcdAction]:
        """Forget an operator removed from the configuration. Refused while a
        call is offered to them or they are on it: the call finishes first."""
        op = self._op(operator)
        if op.call_ref is not None:
            raise OperatorTransitionError(
                op.user, op.state, OperatorInput.WENT_OFFLINE, "on a call: removed after it"
            )
        del self._ops[operator]
        return []

    # --- queries ----------------------------------------------------------------------

    def deadline(self) -> float | None:
        """The earliest time ``tick`` has work to do, or None."""
        times = [
            t
            for op in self._ops.values()
            for t in (op.offer_deadline, op.wrap_until, op.blocked_until)
            if t is not None
        ]
        while self._timers and not self._timer_live(self._timers[0]):
            heapq.heappop(self._timers)  # lazily dropped: caller gone or timer moved
        if self._timers:
            times.append(self._timers[0][0])
        return min(times, default=None)

    def operator_state(self, operator: str) -> OperatorState:
        return self._op(operator).state

    def is_queued(self, call_ref: str) -> bool:
        return call_ref in self._callers

    def snapshot(self) -> AcdSnapshot:
        """A frozen view for the wallboard and the console."""
        callers = tuple(
            CallerView(
                call_ref=c.call_ref,
                category=c.category,
                arrived_at=c.arrived_at,
                queued_at=c.queued_at,
                position=i + 1,
                offered_to=c.offered_to,
                requeued=c.requeued,
                urgent=c.urgent,
                watch_listed=c.release_at is not None,
            )
            for i, c in enumerate(self._queue)
        )
        operators = tuple(
            OperatorView(
                user=op.user,
                state=op.state,
                since=op.state_since,
                reason=op.reason,
                pause_reason=op.pause_reason,
                registered=op.registered,
                reachable=op.reachable,
                skills=op.profile.skills,
                call_ref=op.call_ref,
                calls_today=op.calls_today,
                missed=op.missed,
                missed_today=op.missed_today,
            )
            for op in self._ops.values()
        )
        return AcdSnapshot(at=self._now, callers=callers, operators=operators)

    # --- internals: lookups -----------------------------------------------------------

    def _op(self, operator: str) -> _Operator:
        op = self._ops.get(operator)
        if op is None:
            raise UnknownOperatorError(f"no operator {operator!r} is configured")
        return op

    def _caller(self, call_ref: str) -> _Caller:
        caller = self._callers.get(call_ref)
        if caller is None:
            if call_ref in self._talks:
                raise UnknownCallError(
                    f"call {call_ref} is talking to an operator, not queued: report call_ended"
                )
            raise UnknownCallError(f"call {call_ref} is not queued")
        return caller

    def _offer_of(self, call_ref: str, operator: str) -> tuple[_Operator, _Caller]:
        op = self._op(operator)
        caller = self._callers.get(call_ref)
        if (
            caller is None
            or caller.offered_to != operator
            or op.state is not OperatorState.RESERVED
            or op.call_ref != call_ref
        ):
            raise OfferNotFoundError(
                f"no offer of call {call_ref} to {operator} is ringing (ended or never sent)"
            )
        return op, caller

    # --- internals: transitions -------------------------------------------------------

    def _move(
        self, op: _Operator, event: OperatorInput, reason: str, now: float, out: list[AcdAction]
    ) -> None:
        new = _OPERATOR_TRANSITIONS.get((op.state, event))
        if new is None:
            raise OperatorTransitionError(op.user, op.state, event)
        if new is op.state:
            return
        if new is OperatorState.PAUSED and op.pause_reason:
            reason = op.pause_reason
        if new is OperatorState.AVAILABLE:
            op.idle_since = now  # callers that keep an earlier value restore it afterwards
        out.append(
            OperatorStateChanged(operator=op.user, old=op.state, new=new, reason=reason, at=now)
        )
        op.state = new
        op.state_since = now
        op.reason = reason

    def _step(self, caller: _Caller, event: CallerInput) -> None:
        new = _CALLER_TRANSITIONS.get((caller.state, event))
        if new is None:
            raise CallerTransitionError(caller.call_ref, caller.state, event)
        caller.state = new

    def _presence_changed(
        self, op: _Operator, was_online: bool, reason: str, now: float
    ) -> list[AcdAction]:
        out: list[AcdAction] = []
        if op.online and not was_online:
            event = (
                OperatorInput.CAME_ONLINE_PAUSED if op.pause_reason else OperatorInput.CAME_ONLINE
            )
            self._move(op, event, reason, now, out)
        elif was_online and not op.online:
            caller = None
            if op.state is OperatorState.RESERVED and op.call_ref is not None:
                caller = self._callers[op.call_ref]
                out.append(
                    CancelOffer(
                        call_ref=caller.call_ref, operator=op.user, reason="operator_offline"
                    )
                )
                self._end_offer(op)
            self._move(op, OperatorInput.WENT_OFFLINE, reason, now, out)
            if caller is not None:
                self._offer_ended(caller)
        self._advance(now, out)
        return out

    def _end_offer(self, op: _Operator) -> None:
        op.offer_deadline = None
        op.call_ref = None

    def _offer_ended(self, caller: _Caller) -> None:
        """Back to waiting at their place; an overflow that fell due meanwhile now applies."""
        self._step(caller, CallerInput.OFFER_ENDED)
        caller.offered_to = None
        if caller.overflow_at is not None:
            self._push_timer(caller.overflow_at, caller.call_ref)

    def _join(
        self,
        *,
        call_ref: str,
        category: str,
        arrived_at: float,
        now: float,
        front: bool,
        out: list[AcdAction],
        urgent: bool = False,
        watch_listed: bool = False,
    ) -> None:
        self._seq += 1
        s = self.settings
        rank = URGENT_RANK if urgent else s.priority[category]
        if watch_listed and s.watch_list_max_extra_wait_s > 0:
            rank = WATCH_LISTED_RANK
        key = (rank, 0 if front else 1, arrived_at, self._seq)
        caller = _Caller(
            call_ref=call_ref,
            category=category,
            arrived_at=arrived_at,
            queued_at=now,
            requeued=front,
            key=key,
            next_announce=now + s.position_every_s,
            urgent=urgent,
        )
        if rank == WATCH_LISTED_RANK:
            caller.release_at = now + s.watch_list_max_extra_wait_s
            self._push_timer(caller.release_at, call_ref)
        if s.overflow_after_s > 0:
            caller.overflow_at = (now if front else arrived_at) + s.overflow_after_s
            self._push_timer(caller.overflow_at, call_ref)
        self._push_timer(caller.next_announce, call_ref)
        index = bisect.bisect_left(self._queue, key, key=lambda c: c.key)
        self._queue.insert(index, caller)
        self._callers[call_ref] = caller
        out.append(
            CallerQueued(
                call_ref=call_ref, category=category, position=index + 1, requeued=front, at=now
            )
        )

    def _leave(
        self,
        caller: _Caller,
        *,
        event: CallerInput,
        outcome: QueueOutcome,
        operator: str | None,
        now: float,
        out: list[AcdAction],
    ) -> None:
        self._step(caller, event)
        del self._queue[self._position(caller) - 1]
        del self._callers[caller.call_ref]
        out.append(
            CallerLeftQueue(
                call_ref=caller.call_ref,
                outcome=outcome,
                waited_s=now - caller.queued_at,
                operator=operator,
                at=now,
            )
        )

    def _position(self, caller: _Caller) -> int:
        return bisect.bisect_left(self._queue, caller.key, key=lambda c: c.key) + 1

    # --- internals: timers and assignment ---------------------------------------------

    def _advance(self, now: float, out: list[AcdAction]) -> None:
        """Everything that follows from time having reached ``now``, then assignment.
        Runs after every input, so no state waits for a separate tick."""
        self._now = now
        ops = self._ops.values()
        rings = sorted(
            (op.offer_deadline, op.order, op)
            for op in ops
            if op.offer_deadline is not None and op.offer_deadline <= now
        )
        for _, _, op in rings:
            self._ring_timed_out(op, now, out)
        wraps = sorted(
            (op.wrap_until, op.order, op)
            for op in ops
            if op.wrap_until is not None and op.wrap_until <= now
        )
        for _, _, op in wraps:
            op.wrap_until = None
            if not op.online:
                event = OperatorInput.WRAP_UP_ENDED_OFFLINE
            elif op.pause_reason:
                event = OperatorInput.WRAP_UP_ENDED_PAUSED
            else:
                event = OperatorInput.WRAP_UP_ENDED
            self._move(op, event, "wrap_up_ended", now, out)
        for op in ops:
            if op.blocked_until is not None and op.blocked_until <= now:
                op.blocked_until = None
        self._assign(now, out)
        self._caller_timers(now, out)

    def _ring_timed_out(self, op: _Operator, now: float, out: list[AcdAction]) -> None:
        assert op.call_ref is not None
        caller = self._callers[op.call_ref]
        out.append(CancelOffer(call_ref=caller.call_ref, operator=op.user, reason="no_answer"))
        self._end_offer(op)
        op.missed += 1
        op.missed_today += 1
        if op.missed >= self.settings.max_missed:
            op.missed = 0
            op.pause_reason = MISSED_CALLS
            self._move(op, OperatorInput.RING_TIMED_OUT_PAUSED, "no_answer", now, out)
        else:
            self._move(op, OperatorInput.RING_TIMED_OUT, "no_answer", now, out)
        self._offer_ended(caller)

    def _assign(self, now: float, out: list[AcdAction]) -> None:
        free = [
            op
            for op in self._ops.values()
            if op.state is OperatorState.AVAILABLE and op.blocked_until is None
        ]
        if not free:
            return
        free.sort(key=lambda op: (op.idle_since, op.order))  # longest idle first
        staffed = frozenset[str]().union(
            *(op.profile.skills for op in self._ops.values() if op.state in _ON_DUTY)
        )
        unservable: set[str] = set()  # categories nobody left in `free` can serve
        for caller in tuple(self._queue):
            if not free:
                break
            if caller.state is not CallerState.WAITING or caller.category in unservable:
                continue
            cat = caller.category
            open_to_all = cat == UNKNOWN_CATEGORY or cat not in staffed
            op = next((o for o in free if open_to_all or cat in o.profile.skills), None)
            if op is None:
                unservable.add(cat)
                continue
            free.remove(op)
            self._step(caller, CallerInput.OFFER_SENT)
            caller.offered_to = op.user
            op.call_ref = caller.call_ref
            op.offer_deadline = now + self.settings.ring_timeout_s
            out.append(
                OfferCall(call_ref=caller.call_ref, operator=op.user, deadline=op.offer_deadline)
            )
            self._move(op, OperatorInput.OFFER_SENT, "offered", now, out)

    def _push_timer(self, due: float, call_ref: str) -> None:
        self._seq += 1
        heapq.heappush(self._timers, (due, self._seq, call_ref))

    def _timer_live(self, entry: tuple[float, int, str]) -> bool:
        due, _, call_ref = entry
        caller = self._callers.get(call_ref)
        if caller is None:
            return False
        return due in (caller.next_announce, caller.release_at) or (
            due == caller.overflow_at and caller.state is CallerState.WAITING
        )

    def _release(self, caller: _Caller) -> None:
        """A held watch-listed caller takes the place a fresh caller of the same
        category and arrival holds (the cap of issue 12)."""
        del self._queue[self._position(caller) - 1]
        caller.release_at = None
        rank = self.settings.priority[caller.category]
        self._seq += 1  # behind a caller of the same class who arrived at the same instant
        caller.key = (rank, caller.key[1], caller.key[2], self._seq)
        index = bisect.bisect_left(self._queue, caller.key, key=lambda c: c.key)
        self._queue.insert(index, caller)

    def _caller_timers(self, now: float, out: list[AcdAction]) -> None:
        period = self.settings.position_every_s
        released = False
        while self._timers and self._timers[0][0] <= now:
            _, _, call_ref = heapq.heappop(self._timers)
            caller = self._callers.get(call_ref)
            if caller is None:
                continue
            if caller.release_at is not None and caller.release_at <= now:
                self._release(caller)
                released = True
            if (
                caller.overflow_at is not None
                and caller.overflow_at <= now
                and caller.state is CallerState.WAITING
            ):
                out.append(OverflowCall(call_ref=call_ref))
                self._leave(
                    caller,
                    event=CallerInput.OVERFLOW_DUE,
                    outcome=QueueOutcome.OVERFLOWED,
                    operator=None,
                    now=now,
                    out=out,
                )
                continue
            if caller.next_announce <= now:
                out.append(AnnouncePosition(call_ref=call_ref, position=self._position(caller)))
                # One announcement however late the tick; the schedule stays on its grid.
                late = int((now - caller.next_announce) // period) + 1
                caller.next_announce += late * period
                while caller.next_announce <= now:  # float rounding at an exact multiple
                    caller.next_announce += period
                self._push_timer(caller.next_announce, call_ref)
        if released:  # a released caller may now come before someone offered nothing
            self._assign(now, out)
