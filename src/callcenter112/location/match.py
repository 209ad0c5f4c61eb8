"""Which call a fix belongs to: the caller's live call, else their recent incident.

AML arrives beside the call (HTTPS or SMS, seconds after the INVITE, maybe
before it), keyed by the caller's number. `match_fix` picks, among
`Candidate`s the caller of which is the fix's caller (numbers compared in
E.164, `numbers.normalise_number`):

1. a live call, the most recent arrival;
2. else an incident that arrived at most `window_s` before the fix and had not
   ended more than `window_s` before it, the most recent arrival.

An unmatched fix is kept in `PendingFixes` (bounded, oldest dropped first)
until a call from that number arrives within the window: the call flow asks
`take(caller, now)` when it creates the incident.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from .fix import Fix

__all__ = ["DEFAULT_WINDOW_S", "MAX_PENDING", "Candidate", "PendingFixes", "match_fix"]

# ETSI TS 103 625 §6: the handset sends AML within ~20 s of the call (up to its
# T1 timer); a window of 10 minutes also catches a fix for a call just dropped.
DEFAULT_WINDOW_S: Final = 600.0
MAX_PENDING: Final = 1000


@dataclass(frozen=True, slots=True, kw_only=True)
class Candidate:
    incident_id: str
    caller: str | None  # E.164 (normalised by the caller of match_fix)
    arrived_at: float
    ended_at: float | None
    live: bool


def match_fix(
    caller: str | None, at: float, candidates: Iterable[Candidate], *, window_s: float
) -> str | None:
    """The incident id this fix belongs to, or None."""
    if not caller:
        return None
    mine = [c for c in candidates if c.caller == caller]
    live = [c for c in mine if c.live]
    if live:
        return max(live, key=lambda c: c.arrived_at).incident_id
    recent = [
        c
        for c in mine
        if c.arrived_at - window_s <= at
        and at - c.arrived_at <= window_s
        and (c.ended_at is None or at - c.ended_at <= window_s)
    ]
    if recent:
        return max(recent, key=lambda c: c.arrived_at).incident_id
    return None


class PendingFixes:
    """Fixes that matched no call yet, by caller; pure (time passed in)."""

    def __init__(self, *, window_s: float = DEFAULT_WINDOW_S, limit: int = MAX_PENDING) -> None:
        self.window_s = window_s
        self._items: deque[tuple[float, Fix]] = deque(maxlen=limit)

    def __len__(self) -> int:
        return len(self._items)

    def add(self, fix: Fix, *, now: float) -> None:
        self.expire(now)
        self._items.append((now, fix))

    def expire(self, now: float) -> None:
        while self._items and now - self._items[0][0] > self.window_s:
            self._items.popleft()

    def take(self, caller: str | None, *, now: float) -> list[Fix]:
        """The waiting fixes of this caller (removed), oldest first."""
        self.expire(now)
        if not caller:
            return []
        mine = [f for _, f in self._items if f.caller == caller]
        if mine:
            self._items = deque(
                ((t, f) for t, f in self._items if f.caller != caller), maxlen=self._items.maxlen
            )
        return mine

    def waiting(self) -> list[Fix]:
        return [f for _, f in self._items]
