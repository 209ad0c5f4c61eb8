"""The store benchmark runs and compares the two commit modes (figures are not asserted)."""

from __future__ import annotations

from pathlib import Path

from callcenter112.bench.store_bench import TRANSITIONS_PER_CALL, bench_store


def test_bench_store_measures_both_modes(tmp_path: Path) -> None:
    result = bench_store(tmp_path, 20)
    grouped = result["group_commit"]
    single = result["one_commit_per_transition"]
    assert isinstance(grouped, dict) and isinstance(single, dict)
    assert grouped["transitions"] == single["transitions"] == 20 * TRANSITIONS_PER_CALL
    assert single["commits"] == 20 * TRANSITIONS_PER_CALL
    assert grouped["commits"] < single["commits"]
    assert grouped["per_s"] > 0 and single["per_s"] > 0
    assert (tmp_path / "bench-group.sqlite3").exists()
