"""The supervisor's watch list of prank numbers (issue 12), pure.

Owns the rules of one list: an entry names a number, a reason, who listed it
and an expiry chosen from ``EXPIRY_CHOICES`` (24 h, 7 d, 30 d); a supervisor
may remove it early; every change is an ``WatchListChange`` for the audit log.
The system never lists a number by itself — ``callers.suggest_watch_list``
only proposes, and ``WatchList.add`` needs a person in ``created_by``.

What listing does, and only that (``acd.py``): the caller hears the
``watch_list_warning`` prompt first, then waits at the lowest priority and
only while others wait, never more than ``queue.watch_list_max_extra_wait_s``
beyond a fresh caller. A listed number is still answered by a person; no
call is refused or hung up because of who is calling.

Withheld or anonymous caller ID is never listable (``WatchListError``): a
line without a number may be anyone's.

Persistence is the store's (table ``watch_list``, see docs); this module keeps
the rules and an in-memory ``WatchList`` used by tests, the simulator and as
the cache the call flow consults at arrival (``is_listed(number, now)``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Literal, Protocol

from .incidents import ANONYMOUS, normalize_caller

__all__ = [
    "EXPIRY_CHOICES",
    "WatchList",
    "WatchListChange",
    "WatchListEntry",
    "WatchListError",
    "WatchListStore",
]

# Issue 12: "with a reason and an expiry (24 h / 7 d / 30 d)".
EXPIRY_CHOICES: Mapping[str, float] = MappingProxyType(
    {"24h": 24 * 3600.0, "7d": 7 * 86400.0, "30d": 30 * 86400.0}
)
MAX_REASON = 500


class WatchListError(Exception):
    """A change the list cannot take; ``status_hint`` is the HTTP answer."""

    def __init__(self, message: str, *, status_hint: int = 422) -> None:
        super().__init__(message)
        self.status_hint = status_hint


@dataclass(frozen=True, slots=True, kw_only=True)
class WatchListEntry:
    """One row of table ``watch_list``."""

    number: str  # normalised (``incidents.normalize_caller``)
    reason: str
    expires_at: float
    created_by: str
    created_at: float
    removed_by: str | None = None
    removed_at: float | None = None

    def active(self, now: float) -> bool:
        return self.removed_at is None and now < self.expires_at


@dataclass(frozen=True, slots=True, kw_only=True)
class WatchListChange:
    """For the audit log: ``listed`` or ``removed``, by whom, when."""

    action: Literal["listed", "removed"]
    entry: WatchListEntry
    actor: str
    at: float


class WatchListStore(Protocol):
    """What the store provides (and ``WatchList`` implements in memory)."""

    def add(
        self, number: str, *, reason: str, expiry: str, created_by: str, now: float
    ) -> WatchListChange: ...

    def remove(self, number: str, *, removed_by: str, now: float) -> WatchListChange: ...

    def is_listed(self, number: str, now: float) -> bool: ...


class WatchList:
    """The list in memory: at most one active entry per number; history kept."""

    __slots__ = ("_entries",)

    def __init__(self, entries: Iterable[WatchListEntry] = ()) -> None:
        self._entries: list[WatchListEntry] = list(entries)

    def add(
        self, number: str, *, reason: str, expiry: str, created_by: str, now: float
    ) -> WatchListChange:
        """A supervisor lists ``number``; an active entry is replaced (new reason/expiry)."""
        line = normalize_caller(number)
        if line == ANONYMOUS or not line:
            raise WatchListError("a withheld or anonymous caller ID cannot be listed")
        if expiry not in EXPIRY_CHOICES:
            raise WatchListError(f"expiry: {expiry!r} is not one of {'|'.join(EXPIRY_CHOICES)}")
        reason = reason.strip()
        if not reason or len(reason) > MAX_REASON:
            raise WatchListError(f"reason: 1 to {MAX_REASON} characters, saying why")
        if not created_by.strip():
            raise WatchListError("a person lists a number: created_by is required")
        for i, e in enumerate(self._entries):
            if e.number == line and e.active(now):
                self._entries[i] = replace(e, removed_by=created_by, removed_at=now)
        entry = WatchListEntry(
            number=line,
            reason=reason,
            expires_at=now + EXPIRY_CHOICES[expiry],
            created_by=created_by,
            created_at=now,
        )
        self._entries.append(entry)
        return WatchListChange(action="listed", entry=entry, actor=created_by, at=now)

    def remove(self, number: str, *, removed_by: str, now: float) -> WatchListChange:
        line = normalize_caller(number)
        for i, e in enumerate(self._entries):
            if e.number == line and e.active(now):
                done = replace(e, removed_by=removed_by, removed_at=now)
                self._entries[i] = done
                return WatchListChange(action="removed", entry=done, actor=removed_by, at=now)
        raise WatchListError(f"{line} is not on the watch list", status_hint=404)

    def entry(self, number: str, now: float) -> WatchListEntry | None:
        line = normalize_caller(number)
        if line == ANONYMOUS:
            return None
        return next((e for e in self._entries if e.number == line and e.active(now)), None)

    def is_listed(self, number: str, now: float) -> bool:
        """The call flow's question at arrival. Anonymous: always False."""
        return self.entry(number, now) is not None

    def active(self, now: float) -> tuple[WatchListEntry, ...]:
        return tuple(e for e in self._entries if e.active(now))

    def history(self) -> tuple[WatchListEntry, ...]:
        return tuple(self._entries)
