"""The typed seam through which fixes reach the centre, and an in-memory board behind it.

Whoever receives a position — the INVITE path (PIDF-LO by value), the
dereferencer (by reference), the AML receiver (HTTPS, SMS), the operator's
pin — hands it to a `LocationSink`:

    sink.fix_received(fix, caller="+62812…", incident_id="20261207-0001" or None,
                      received_at=now)

`incident_id` is None when no call matched yet (the sink keeps it pending for
`claim`). The sink must not block: it records and notifies (the console map
within 1 s, DESIGN §7) and persists through the store.

`FixBoard` is the sink the web layer uses until the store keeps fixes: it
holds them in memory, bounded (per incident and in number of incidents),
pending ones by caller for the window. Pure: `now` comes from the fix or
the caller.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Final, Protocol

from .fix import Fix
from .match import DEFAULT_WINDOW_S, PendingFixes

__all__ = ["MAX_FIXES_PER_INCIDENT", "MAX_INCIDENTS", "FixBoard", "LocationSink"]

MAX_FIXES_PER_INCIDENT: Final = 200  # AML repeats at most every few seconds for a call
MAX_INCIDENTS: Final = 2_000  # a busy city's day of incidents with fixes


class LocationSink(Protocol):
    def fix_received(
        self, fix: Fix, *, caller: str | None, incident_id: str | None, received_at: float
    ) -> None:
        """Record a fix (valid or not) for an incident, or pending for its caller.

        `received_at` is when it reached us (wall clock): a phone's own clock may
        be wrong, so waiting and matching windows run on this, not `fix.at`.
        """
        ...


class FixBoard:
    """In-memory `LocationSink`: fixes by incident, unmatched ones pending by caller."""

    def __init__(self, *, window_s: float = DEFAULT_WINDOW_S) -> None:
        self._by_incident: OrderedDict[str, list[Fix]] = OrderedDict()
        self.pending = PendingFixes(window_s=window_s)
        self.version = 0  # bumped on every change, for cheap polling

    def fix_received(
        self, fix: Fix, *, caller: str | None, incident_id: str | None, received_at: float
    ) -> None:
        self.version += 1
        if incident_id is None:
            self.pending.add(fix.with_caller(caller or fix.caller), now=received_at)
            return
        fixes = self._by_incident.setdefault(incident_id, [])
        self._by_incident.move_to_end(incident_id)
        fixes.append(fix)
        del fixes[:-MAX_FIXES_PER_INCIDENT]
        while len(self._by_incident) > MAX_INCIDENTS:
            self._by_incident.popitem(last=False)

    def claim(self, incident_id: str, caller: str | None, *, now: float) -> list[Fix]:
        """Attach the caller's pending fixes to this (new) incident; returns them."""
        taken = self.pending.take(caller, now=now)
        for fix in taken:
            self.fix_received(fix, caller=caller, incident_id=incident_id, received_at=now)
        return taken

    def fixes(self, incident_id: str) -> list[Fix]:
        return list(self._by_incident.get(incident_id, ()))
