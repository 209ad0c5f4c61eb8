"""The phases of an emergency call and the one table that moves between them.

Theory of operation
-------------------
DESIGN §2 walks a call through arrival, answer, IVR, queue, offer, talk,
hand-off and end. Each of those is a `Phase`; what moves a call from one to
the next is a `Happening` (the caller was answered, the IVR finished, the
operator answered, put the caller on hold, was lost …). `PHASE_TABLE` says,
for every phase, which happenings it accepts and where each one leads; the
call (`callflow.call.EmergencyCall`, `callflow.handoff.Handoff`) changes phase *only* through
`next_phase` (STYLE 2). The table is printed in docs/architecture.md by
`format_table()`, and tests/test_callflow_phases.py keeps the two equal.

A happening the table does not list for the current phase is a defect of
the call flow, not of the caller: `next_phase` raises `PhaseError`, the call
logs it with its ids (critical) and still goes where the happening leads
(`Happening.target`), because the audio path has already been switched
when the phase is recorded and a 112 caller must never be dropped for our
bookkeeping. The unit tests fail on any such gap.

To add a phase: add it to `Phase`, give the happenings that enter and leave
it an entry in `PHASE_TABLE`, re-print docs/architecture.md
(`python -m callcenter112.callflow.phases`). To add a happening: add it to
`Happening` with its target, list the phases it may come from.
"""

from __future__ import annotations

from enum import Enum, StrEnum, auto
from typing import Final

__all__ = [
    "CONNECTED_PHASES",
    "LIVE_PHASES",
    "PHASE_TABLE",
    "Happening",
    "Phase",
    "PhaseError",
    "format_table",
    "next_phase",
]


class Phase(StrEnum):
    """Where a call is (the value is what the console, /metrics and the
    incident timeline show)."""

    ARRIVING = "arriving"  # INVITE in, incident being written, not answered
    IVR = "ivr"  # answered, the menu runs
    QUEUE = "queue"  # waiting for an operator (offers may ring)
    TALKING = "talking"  # with an operator, or an agency after a transfer
    HOLD = "hold"  # the operator put the caller on hold
    TRANSFER = "transfer"  # a blind transfer/overflow is being dialled
    CONFERENCE = "conference"  # caller, operator and an agency mixed
    ENDED = "ended"


class Happening(Enum):
    """What moves a call between phases (`target` is where it leads)."""

    REFUSED = auto()  # bad SDP, no RTP ports: the INVITE is refused
    ANSWERED = auto()  # 200 OK sent, the IVR starts
    IVR_FINISHED = auto()
    QUEUED = auto()  # the ACD placed (or re-placed) the caller
    OPERATOR_ANSWERED = auto()
    OPERATOR_HELD = auto()
    OPERATOR_RESUMED = auto()
    OPERATOR_LOST = auto()  # the operator's phone died: head of the queue
    TRANSFER_DIALLED = auto()
    TRANSFERRED = auto()  # the agency answered a blind transfer/overflow
    CONFERENCE_STARTED = auto()
    BACK_TO_OPERATOR = auto()  # a failed transfer/conference, operator still there
    REQUEUED = auto()  # a failed transfer, operator gone
    CONFERENCE_COLLAPSED = auto()  # the operator left: caller ⇄ agency
    ENDED = auto()

    @property
    def target(self) -> Phase:
        return _TARGETS[self]


_TARGETS: Final[dict[Happening, Phase]] = {
    Happening.REFUSED: Phase.ENDED,
    Happening.ANSWERED: Phase.IVR,
    Happening.IVR_FINISHED: Phase.QUEUE,
    Happening.QUEUED: Phase.QUEUE,
    Happening.OPERATOR_ANSWERED: Phase.TALKING,
    Happening.OPERATOR_HELD: Phase.HOLD,
    Happening.OPERATOR_RESUMED: Phase.TALKING,
    Happening.OPERATOR_LOST: Phase.QUEUE,
    Happening.TRANSFER_DIALLED: Phase.TRANSFER,
    Happening.TRANSFERRED: Phase.TALKING,
    Happening.CONFERENCE_STARTED: Phase.CONFERENCE,
    Happening.BACK_TO_OPERATOR: Phase.TALKING,
    Happening.REQUEUED: Phase.QUEUE,
    Happening.CONFERENCE_COLLAPSED: Phase.TALKING,
    Happening.ENDED: Phase.ENDED,
}


class PhaseError(Exception):
    """A happening the table does not allow in the current phase."""

    def __init__(self, phase: Phase, happening: Happening) -> None:
        super().__init__(f"{happening.name} in {phase.value}")
        self.phase = phase
        self.happening = happening


P = Phase
H = Happening
_LIVE: Final = (P.IVR, P.QUEUE, P.TALKING, P.HOLD, P.TRANSFER, P.CONFERENCE)
_WITH_OPERATOR: Final = (P.TALKING, P.HOLD, P.TRANSFER, P.CONFERENCE)


def _from(happening: Happening, *phases: Phase) -> dict[tuple[Phase, Happening], Phase]:
    return {(phase, happening): happening.target for phase in phases}


PHASE_TABLE: Final[dict[tuple[Phase, Happening], Phase]] = {
    **_from(H.REFUSED, P.ARRIVING),
    **_from(H.ANSWERED, P.ARRIVING),
    **_from(H.IVR_FINISHED, P.IVR),
    # The ACD's "queued" reaches the inbox after the IVR put the caller in
    # the queue, and again after an operator was lost or a transfer failed.
    **_from(H.QUEUED, P.IVR, P.QUEUE, P.HOLD, P.TRANSFER, P.CONFERENCE),
    **_from(H.OPERATOR_ANSWERED, P.QUEUE),
    **_from(H.OPERATOR_HELD, P.TALKING),
    **_from(H.OPERATOR_RESUMED, P.HOLD),
    **_from(H.OPERATOR_LOST, *_WITH_OPERATOR),
    # Console transfer (talking, conference), REFER from the phone (also on
    # hold), overflow from the queue.
    **_from(H.TRANSFER_DIALLED, P.QUEUE, P.TALKING, P.HOLD, P.CONFERENCE),
    **_from(H.TRANSFERRED, P.QUEUE, P.TALKING, P.HOLD, P.TRANSFER, P.CONFERENCE),
    **_from(H.CONFERENCE_STARTED, P.TALKING, P.HOLD, P.TRANSFER),
    **_from(H.BACK_TO_OPERATOR, P.TALKING, P.HOLD, P.TRANSFER, P.CONFERENCE),
    **_from(H.REQUEUED, P.QUEUE, *_WITH_OPERATOR),
    **_from(H.CONFERENCE_COLLAPSED, P.CONFERENCE),
    **_from(H.ENDED, P.ARRIVING, *_LIVE),
}
del P, H

LIVE_PHASES: Final = frozenset(_LIVE)
# Hanging up in these completes the call; anywhere else it abandons it.
CONNECTED_PHASES: Final = frozenset(_WITH_OPERATOR)


def next_phase(phase: Phase, happening: Happening) -> Phase:
    """Where `happening` leads from `phase`; PhaseError when the table has no such move."""
    try:
        return PHASE_TABLE[(phase, happening)]
    except KeyError:
        raise PhaseError(phase, happening) from None


def format_table() -> str:
    """The table as Markdown, one row per phase (printed in docs/architecture.md)."""
    lines = ["| phase | happening → next phase |", "|---|---|"]
    for phase in Phase:
        moves = [
            f"{happening.name} → {target.value}"
            for (source, happening), target in PHASE_TABLE.items()
            if source is phase
        ]
        lines.append(f"| {phase.value} | {', '.join(moves) or '(final)'} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(format_table(), end="")
