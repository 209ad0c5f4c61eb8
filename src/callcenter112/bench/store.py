"""`scripts/bench store`: durable incident transitions/s, group commit vs one commit each."""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from .report import write_section
from .store_bench import TRANSITIONS_PER_CALL, bench_store


@contextmanager
def _throwaway_postgresql() -> Iterator[str]:
    """A local PostgreSQL 15 cluster for the run (the test suite's own starter)."""
    import shutil
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "tests"))
    from pg_support import PgServer, _owned_tempdir  # type: ignore[import-not-found]

    root = _owned_tempdir("cc112-bench-pg-")
    server = PgServer.initdb(root, fsync="on", synchronous_commit="on")
    server.start()
    try:
        yield server.dsn()
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


def _pipeline_ratios(result: dict[str, object]) -> str:
    """The writer now against before, and PostgreSQL against SQLite (all the same run)."""
    if "postgresql_group_commit" not in result:
        return ""
    sqlite: dict[str, float] = result["group_commit"]  # type: ignore[assignment]
    now: dict[str, float] = result["postgresql_group_commit"]  # type: ignore[assignment]
    before: dict[str, float] = result["postgresql_group_commit_before"]  # type: ignore[assignment]
    return (
        f" On PostgreSQL the pipelined, prepared batch gives **"
        f"{now['per_s'] / before['per_s']:.1f} times** the transitions/s of the writer before "
        f"(one statement at a time, values in the SQL) and a create p99 **"
        f"{before['create_p99_ms'] / now['create_p99_ms']:.1f} times** shorter; it runs at "
        f"{now['per_s'] / sqlite['per_s']:.2f} of SQLite's rate, with a create p99 "
        f"{now['create_p99_ms'] / sqlite['create_p99_ms']:.1f} times SQLite's."
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="scripts/bench store")
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument(
        "--postgresql",
        metavar="DSN",
        help="a PostgreSQL server to measure beside SQLite (default: start a throw-away "
        "PostgreSQL 15 cluster with tests/pg_support.py, with fsync on)",
    )
    parser.add_argument("--no-postgresql", action="store_true", help="SQLite only")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        dsn = args.postgresql
        if dsn is None and not args.no_postgresql:
            dsn = stack.enter_context(_throwaway_postgresql())
        result = bench_store(Path(tmp), args.calls, postgresql=dsn)
    g: dict[str, float] = result["group_commit"]  # type: ignore[assignment]
    one: dict[str, float] = result["one_commit_per_transition"]  # type: ignore[assignment]
    runs = [("SQLite", "group commit", g), ("SQLite", "one commit per transition", one)]
    for key, label in (
        ("postgresql_group_commit", "group commit, pipelined, prepared"),
        ("postgresql_group_commit_client_binding", "group commit, pipelined, values in the SQL"),
        ("postgresql_group_commit_before", "group commit, before: one statement at a time"),
        ("postgresql_one_commit_per_transition", "one commit per transition"),
    ):
        if key in result:
            runs.append(("PostgreSQL 15", label, result[key]))  # type: ignore[arg-type]
    rows = (
        "| engine | mode | transitions/s | commits | largest batch | create p99 (ms) |\n"
        "|---|---|---|---|---|---|\n"
        + "".join(
            f"| {engine} | {mode} | {r['per_s']:,.0f} | {r['commits']} | {r['largest_batch']} "
            f"| {r['create_p99_ms']} |\n"
            for engine, mode, r in runs
        )
        + f"\nGroup commit is **{result['speedup']} times** the one-commit-per-transition "
        "rate on SQLite." + _pipeline_ratios(result)
    )
    write_section(
        "store",
        "Store: durable incident transitions",
        f"{args.calls} simultaneous calls, {TRANSITIONS_PER_CALL} durable transitions each "
        "(create before answer, answered, queued, operator answered, closed), WAL + "
        "synchronous=FULL (SQLite) and fsync=on, synchronous_commit=on (PostgreSQL, local, one "
        "node), every mode in the same run.\n\n" + rows,
    )


if __name__ == "__main__":
    main()
