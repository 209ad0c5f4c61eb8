"""The prank/ghost mix of `scripts/bench surge --prank-mix` (issue 12)."""

from __future__ import annotations

import random

from callcenter112.bench.prank_mix import MixSettings, compare, run_mix
from callcenter112.bench.surge import prank_mix_scripts


def test_model_runs_the_real_rules_and_answers_every_genuine_caller() -> None:
    s = MixSettings(callers=300, rate_per_min=6.0, operators=5)
    without, with_rules = compare(s)
    for f in (without, with_rules):
        assert f.genuine_unanswered == 0 and len(f.genuine) > 80
    # The silent path flags every ghost, and they are still answered by a person.
    assert with_rules.ghost_flagged_silent == with_rules.ghost_answered > 0
    assert without.ghost_flagged_silent == 0
    # The watch list only ever lists repeat prank numbers, after a supervisor's OK.
    assert 0 < with_rules.listed_numbers <= s.prank_numbers and without.listed_numbers == 0


def test_same_seed_same_figures() -> None:
    s = MixSettings(callers=120, rate_per_min=4.0)
    a, b = run_mix(s, rules_on=True), run_mix(s, rules_on=True)
    assert a.genuine == b.genuine


def test_prank_mix_scripts_for_the_real_server() -> None:
    scripts, kinds = prank_mix_scripts(
        callers=400,
        rate_per_s=5.0,
        share=0.6,
        prank_numbers=10,
        talk_s=30.0,
        prank_talk_s=5.0,
        rng=random.Random(7),
    )
    assert len(scripts) == len(kinds) == 400
    share = sum(k != "genuine" for k in kinds) / len(kinds)
    assert 0.5 < share < 0.7
    pranks = [s for s, k in zip(scripts, kinds, strict=True) if k == "prank"]
    ghosts = [s for s, k in zip(scripts, kinds, strict=True) if k == "ghost"]
    assert len({s.number for s in pranks}) <= 10 and all(s.digit for s in pranks)
    assert all(s.digit is None and s.expected_category == "unknown" for s in ghosts)
    genuine = [s for s, k in zip(scripts, kinds, strict=True) if k == "genuine"]
    assert len({s.number for s in genuine}) == len(genuine)
