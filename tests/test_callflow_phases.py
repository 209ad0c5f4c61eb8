"""The call's phase table (callflow/phases.py) and its printed copy in docs/architecture.md."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callcenter112.callflow.phases import (
    CONNECTED_PHASES,
    PHASE_TABLE,
    Happening,
    Phase,
    PhaseError,
    format_table,
    next_phase,
)

DOC = Path(__file__).resolve().parent.parent / "docs" / "architecture.md"


def test_the_printed_table_is_the_code_table() -> None:
    text = DOC.read_text(encoding="utf-8")
    begin, end = "<!-- phase-table:begin -->\n", "<!-- phase-table:end -->"
    assert begin in text and end in text
    printed = text.split(begin, 1)[1].split(end, 1)[0]
    assert printed == format_table(), "re-print it: python -m callcenter112.callflow.phases"


def test_every_happening_is_used_and_leads_to_its_target() -> None:
    assert {h for (_p, h) in PHASE_TABLE} == set(Happening)
    for (_phase, happening), target in PHASE_TABLE.items():
        assert target is happening.target


def test_every_phase_can_end_and_ended_is_final() -> None:
    for phase in Phase:
        if phase is Phase.ENDED:
            assert not [k for k in PHASE_TABLE if k[0] is phase]
        else:
            assert next_phase(phase, Happening.ENDED) is Phase.ENDED


def test_connected_phases_are_those_with_an_operator_or_agency() -> None:
    assert {Phase.TALKING, Phase.HOLD, Phase.TRANSFER, Phase.CONFERENCE} == CONNECTED_PHASES
    # The console, /metrics and incident JSON keep showing the same words.
    assert [p.value for p in Phase] == [
        "arriving", "ivr", "queue", "talking", "hold", "transfer", "conference", "ended"
    ]  # fmt: skip


@given(st.sampled_from(list(Phase)), st.sampled_from(list(Happening)))
def test_next_phase_follows_the_table_or_refuses(phase: Phase, happening: Happening) -> None:
    if (phase, happening) in PHASE_TABLE:
        assert next_phase(phase, happening) is PHASE_TABLE[(phase, happening)]
    else:
        with pytest.raises(PhaseError):
            next_phase(phase, happening)
