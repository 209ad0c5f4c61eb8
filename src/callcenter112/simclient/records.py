"""What a simulation plans and what it observed, call by call.

Owns the plain records shared by the simulated phones, the simulation driver,
the `simulate` command and the surge benchmark: the script of one simulated
caller (`CallerScript`), the outcome of each call as the caller lived it
(`CallRecord`, `Outcome`), what each simulated operator saw of its calls
(`OperatorCallRecord`), and the nearest-rank `percentile` the reports use.

Times in the records are the simulator's loop clock (monotonic seconds);
`wall_started` alone is wall-clock time, to find the run's incidents in the
store.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "CallRecord",
    "CallerScript",
    "OperatorCallRecord",
    "Outcome",
    "percentile",
]


class Outcome(enum.StrEnum):
    """How one simulated call ended, as the caller lived it."""

    ANSWERED = "answered"  # an operator's voice reached the caller
    ABANDONED = "abandoned"  # the caller hung up in the IVR or queue, as scripted
    REJECTED = "rejected"  # the INVITE got an error response (403, 404, 503 …)
    UNANSWERED = "unanswered"  # the centre never answered the INVITE (40 s)
    DROPPED = "dropped"  # the server hung up on a caller no operator had answered
    FAILED = "failed"  # no operator within the caller's max wait, a simulator error

    @property
    def expected(self) -> bool:
        """An outcome the script asked for (the others are the system's doing)."""
        return self in (Outcome.ANSWERED, Outcome.ABANDONED)


@dataclass(frozen=True, slots=True, kw_only=True)
class CallerScript:
    """What one simulated caller does.

    `digit` None presses nothing (a silent caller: the IVR queues it as
    `unknown`). `patience_s` None waits for an operator up to `max_wait_s`;
    otherwise the caller hangs up that long after pressing, if no operator
    has answered yet. `hangs_up_first`: the caller ends the conversation
    after `talk_s`; else it waits for the operator's BYE.
    """

    index: int
    number: str
    digit: str | None
    expected_category: str
    starts_after_s: float
    digit_after_s: float
    patience_s: float | None
    talk_s: float
    hangs_up_first: bool
    max_wait_s: float


@dataclass(slots=True, kw_only=True)
class CallRecord:
    """One simulated call as its caller lived it (filled in while it runs)."""

    script: CallerScript
    call_id: str = ""
    phase: str = "waiting_to_call"  # calling | ivr | queue | talking | ended
    outcome: Outcome | None = None
    detail: str = ""
    wall_started: float | None = None
    invite_sent: float | None = None
    connected: float | None = None  # the server's 200 OK
    digit_sent: float | None = None
    operator_heard: float | None = None  # first frame of the operator's voice
    ended: float | None = None
    final_status: int | None = None  # the INVITE's final response
    # Filled from the operator side (who answered, the incident id it was shown).
    operator: str | None = None
    incident_id: str | None = None
    operator_ring_s: float | None = None

    @property
    def answer_time_s(self) -> float | None:
        """INVITE sent → the operator's voice heard, at the caller."""
        if self.invite_sent is None or self.operator_heard is None:
            return None
        return self.operator_heard - self.invite_sent

    def finish(self, outcome: Outcome, detail: str, now: float) -> None:
        """Record the outcome once; later calls keep the first one."""
        if self.outcome is not None:
            return
        self.outcome = outcome
        self.detail = detail
        self.ended = now
        self.phase = "ended"


@dataclass(slots=True, kw_only=True)
class OperatorCallRecord:
    """One offer a simulated operator received, and what became of it."""

    operator: str
    caller: str
    incident_id: str | None
    call_id: str
    offered: float
    answered: float | None = None
    ended: float | None = None
    result: str = "ringing"  # talked | cancelled | failed | busy
    ended_by: str | None = None  # operator | centre

    @property
    def ring_s(self) -> float | None:
        return None if self.answered is None else self.answered - self.offered


def percentile(values: Iterable[float], q: float) -> float | None:
    """Nearest-rank percentile (`q` in 0..1) of `values`; None when there are none."""
    ordered = sorted(values)
    if not ordered:
        return None
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]
