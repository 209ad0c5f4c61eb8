"""Benchmark of durable incident transitions: group commit against one commit each.

`bench_store(directory, n)` plays `n` simultaneous calls against a fresh
SQLite store twice in the same run — once with group commit (the default
writer) and once with ``max_batch=1`` (one fsync'ed commit per transition) —
and reports durable transitions per second for both. Each call makes the five
writes a real call makes before it may proceed: create the incident (before
answering), answered, queued, operator answered, closed. With a PostgreSQL
DSN (`bench_store(..., postgresql=DSN)`) the same calls run on PostgreSQL in
the same run: pipelined with prepared statements (the default), pipelined
with the values merged into the SQL on the client, and the writer before both
(one statement at a time, each waiting for its answer, values in the SQL).
Every run also reports the p99 latency of the create-before-
answer write.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from ..incidents import Category, Status
from ..records import SqliteStore
from ..records.postgres import PostgresStore

__all__ = ["TRANSITIONS_PER_CALL", "bench_store", "bench_store_async"]

TRANSITIONS_PER_CALL = 5


async def _one_call(
    store: SqliteStore | PostgresStore, i: int, t0: float, lat: list[float]
) -> None:
    arrived = t0 + i * 0.001
    started = time.perf_counter()
    incident_id = await store.create_incident(
        caller=f"0812{i:08d}", arrived_at=arrived, trunk="bench", dialled="112"
    )
    lat.append(time.perf_counter() - started)
    await store.update_incident(
        incident_id, at=arrived + 0.1, stamps={"answered_at": arrived + 0.1}
    )
    await store.update_incident(
        incident_id,
        at=arrived + 5,
        category=Category.MEDICAL,
        stamps={"ivr_done_at": arrived + 5, "queued_at": arrived + 5},
        event="queued",
    )
    await store.update_incident(
        incident_id,
        at=arrived + 9,
        operator=f"op{i % 20}",
        stamps={"offered_at": arrived + 8, "operator_answered_at": arrived + 9},
        event="operator_answered",
    )
    await store.close_incident(
        incident_id, status=Status.COMPLETED, at=arrived + 60, ended_at=arrived + 60, reason="bye"
    )


def _fresh(db: Path) -> None:
    db.parent.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)


def _fresh_pg(dsn: str, name: str = "cc112_bench") -> str:
    """An empty database `name` on the server of `dsn`; returns its DSN."""
    import psycopg
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {name}")
    params = conninfo_to_dict(dsn)
    params["dbname"] = name
    return make_conninfo("", **params)


def p99_ms(latencies: list[float]) -> float:
    ordered = sorted(latencies)
    return round(1000 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], 1)


async def _run(
    db: Path | str, n: int, max_batch: int, *, pipeline: bool = True, prepared: bool = True
) -> dict[str, float]:
    store: SqliteStore | PostgresStore
    if isinstance(db, Path):
        await asyncio.to_thread(_fresh, db)
        store = SqliteStore(db, max_batch=max_batch)
    else:
        dsn = await asyncio.to_thread(_fresh_pg, db)
        store = PostgresStore(dsn, max_batch=max_batch, pipeline=pipeline, prepared=prepared)
    await store.open()
    try:
        lat: list[float] = []
        t0 = time.time()
        start = time.perf_counter()
        await asyncio.gather(*(_one_call(store, i, t0, lat) for i in range(n)))
        elapsed = time.perf_counter() - start
        transitions = n * TRANSITIONS_PER_CALL
        return {
            "transitions": transitions,
            "seconds": round(elapsed, 4),
            "per_s": round(transitions / elapsed, 1),
            "commits": store.commits,
            "largest_batch": store.largest_batch,
            "create_p99_ms": p99_ms(lat),
        }
    finally:
        await store.close()


async def bench_store_async(
    path: str | Path, n: int, *, postgresql: str | None = None
) -> dict[str, object]:
    directory = Path(path)
    grouped = await _run(directory / "bench-group.sqlite3", n, max_batch=512)
    single = await _run(directory / "bench-single.sqlite3", n, max_batch=1)
    result: dict[str, object] = {
        "calls": n,
        "transitions_per_call": TRANSITIONS_PER_CALL,
        "group_commit": grouped,
        "one_commit_per_transition": single,
        "speedup": round(grouped["per_s"] / single["per_s"], 1),
    }
    if postgresql is not None:
        result["postgresql_group_commit"] = await _run(postgresql, n, max_batch=512)
        # Pipelined, but every statement parsed and planned by the server.
        result["postgresql_group_commit_client_binding"] = await _run(
            postgresql, n, max_batch=512, prepared=False
        )
        # The path before both: every statement waits for its answer, values in the SQL.
        result["postgresql_group_commit_before"] = await _run(
            postgresql, n, max_batch=512, pipeline=False, prepared=False
        )
        result["postgresql_one_commit_per_transition"] = await _run(postgresql, n, max_batch=1)
    return result


def bench_store(path: str | Path, n: int, *, postgresql: str | None = None) -> dict[str, object]:
    """Run the benchmark in its own event loop; `path` is a directory for the DB files."""
    return asyncio.run(bench_store_async(path, n, postgresql=postgresql))


if __name__ == "__main__":  # pragma: no cover
    import json
    import sys

    print(json.dumps(bench_store(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 200)))
