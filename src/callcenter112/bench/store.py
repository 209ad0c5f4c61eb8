"""`scripts/bench store`: durable incident transitions/s, group commit vs one commit each."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from .report import write_section
from .store_bench import TRANSITIONS_PER_CALL, bench_store


def main() -> None:
    parser = argparse.ArgumentParser(prog="scripts/bench store")
    parser.add_argument("--calls", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        result = bench_store(Path(tmp), args.calls)
    g: dict[str, float] = result["group_commit"]  # type: ignore[assignment]
    one: dict[str, float] = result["one_commit_per_transition"]  # type: ignore[assignment]
    rows = (
        "| mode | transitions/s | commits (fsyncs) | largest batch |\n|---|---|---|---|\n"
        f"| group commit | {g['per_s']:,.0f} | {g['commits']} | {g['largest_batch']} |\n"
        f"| one commit per transition | {one['per_s']:,.0f} | {one['commits']} | 1 |\n\n"
        f"Group commit is **{result['speedup']} times** the one-commit-per-transition rate."
    )
    write_section(
        "store",
        "Store: durable incident transitions",
        f"{args.calls} simultaneous calls, {TRANSITIONS_PER_CALL} durable transitions each "
        "(create before answer, answered, queued, operator answered, closed), WAL + "
        "synchronous=FULL, both modes in the same run.\n\n" + rows,
    )


if __name__ == "__main__":
    main()
