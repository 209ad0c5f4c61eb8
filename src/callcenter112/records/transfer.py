"""Moving a city: copy a SQLite store into PostgreSQL, row for row, re-runnable.

`copy_sqlite_to_postgresql` upgrades both schemas to the current version,
then copies every table in dependency order with its own ids, sequence
numbers and hashes, so the recordings and audit chains on the target have the
same entries and the same heads (`recordings verify` and `audit verify` prove
it). Run it again at any time: rows already there are skipped (append-only
tables) or brought up to date (an incident closed since, an open recording
sealed since); nothing is ever deleted on the target. The recording files stay
in the recordings folder (copy it alongside; their chain entries are what the
verification checks them against), and the audio chunks of recordings are
copied with the rest.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .postgres import open_pg_store
from .postgres.engine import connect
from .sqlite import open_store

__all__ = ["TABLES", "TransferReport", "copy_sqlite_to_postgresql"]

Progress = Callable[[str, int, int], None]  # (table, rows done, rows in all)

_PAGE = 2000


@dataclass(frozen=True, slots=True, kw_only=True)
class _Table:
    name: str
    key: tuple[str, ...]
    mutable: bool  # rows may change after insert: update them on a re-run
    identity: str | None = None  # identity column whose sequence must follow the copied ids


# Dependency order: a row's references are copied before it.
TABLES: tuple[_Table, ...] = (
    _Table(name="incident_days", key=("day",), mutable=True),
    _Table(name="incidents", key=("id",), mutable=True),
    _Table(name="events", key=("id",), mutable=False, identity="id"),
    _Table(name="call_legs", key=("id",), mutable=True, identity="id"),
    _Table(name="recordings", key=("id",), mutable=True, identity="id"),
    _Table(name="recording_chunks", key=("recording_id", "seq"), mutable=False),
    _Table(name="recording_copies", key=("recording_id",), mutable=False),
    _Table(name="callbacks", key=("id",), mutable=True, identity="id"),
    _Table(name="callback_attempts", key=("id",), mutable=False, identity="id"),
    _Table(name="operator_states", key=("id",), mutable=False, identity="id"),
    _Table(name="audit_log", key=("seq",), mutable=False, identity="seq"),
    _Table(name="registrations", key=("operator", "binding_key"), mutable=True),
)


@dataclass(frozen=True, slots=True, kw_only=True)
class TransferReport:
    rows: dict[str, int]  # rows read from the source, per table
    files: int = 0  # sealed recording files copied into the database
    missing_files: tuple[str, ...] = ()  # sealed, not deleted, but not in the folder


def _upsert(table: _Table, columns: list[str]) -> str:
    names = ", ".join(columns)
    marks = ", ".join("?" for _ in columns)
    conflict = ", ".join(table.key)
    sql = f"INSERT INTO {table.name} ({names}) VALUES ({marks}) ON CONFLICT ({conflict}) DO "
    changing = [c for c in columns if c not in table.key]
    if not table.mutable or not changing:
        return sql + "NOTHING"
    sets = ", ".join(f"{c} = excluded.{c}" for c in changing)
    # Only rows that differ are written: an unchanged sealed recording is not even touched.
    differs = " OR ".join(f"{table.name}.{c} IS DISTINCT FROM excluded.{c}" for c in changing)
    return sql + f"UPDATE SET {sets} WHERE {differs}"


def _copy_rows(source: Path, target: str, progress: Progress | None) -> TransferReport:
    src = sqlite3.connect(source.resolve().as_uri() + "?mode=ro", uri=True)
    dst = connect(target)
    counts: dict[str, int] = {}
    try:
        src.execute("BEGIN")  # one snapshot of the source for the whole copy
        for table in TABLES:
            total = int(src.execute(f"SELECT COUNT(*) FROM {table.name}").fetchone()[0])
            cur = src.execute(f"SELECT * FROM {table.name} ORDER BY {', '.join(table.key)}")
            columns = [d[0] for d in cur.description]
            sql = _upsert(table, columns)
            done = 0
            while rows := cur.fetchmany(_PAGE):
                dst.execute("BEGIN")
                try:
                    dst.executemany(sql, rows)
                    dst.execute("COMMIT")
                except BaseException:
                    dst.execute("ROLLBACK")
                    raise
                done += len(rows)
                if progress is not None:
                    progress(table.name, done, total)
            if progress is not None and total == 0:
                progress(table.name, 0, 0)
            if table.identity is not None:
                dst.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table.name}', '{table.identity}'),"
                    f" GREATEST((SELECT MAX({table.identity}) FROM {table.name}), 1))"
                )
            counts[table.name] = done
        src.execute("COMMIT")
    finally:
        src.close()
        dst.close()
    return TransferReport(rows=counts)


async def copy_sqlite_to_postgresql(
    source: Path,
    target: str,
    *,
    recordings_dir: Path | None = None,
    progress: Progress | None = None,
) -> TransferReport:
    """Copy the SQLite store at `source` (an existing file) into the PostgreSQL `target`.

    With `recordings_dir`, the sealed recordings' files are also copied into the
    database (`Store.keep_recording_copy`), so the standby has them: each must hash to
    its chain entry, or it is refused.
    """
    import asyncio

    if not await asyncio.to_thread(source.is_file):
        raise FileNotFoundError(f"{source}: no such SQLite database")
    async with open_store(source):
        pass  # brings the source to the current schema version
    async with open_pg_store(target):
        pass  # creates or upgrades the target's schema
    report = await asyncio.to_thread(_copy_rows, source, target, progress)
    if recordings_dir is None:
        return report
    files, missing = 0, []
    async with open_pg_store(target) as store:
        chain = await store.recording_chain(after_seq=0, limit=1 << 30)
        for done, rec in enumerate(chain, 1):
            path = recordings_dir / rec.path
            if rec.deleted_at is None and await store.recording_copy(rec.id) is None:
                if await asyncio.to_thread(path.is_file):
                    await store.keep_recording_copy(
                        rec.id, await asyncio.to_thread(path.read_bytes)
                    )
                    files += 1
                else:
                    missing.append(rec.path)
            if progress is not None:
                progress("recording files", done, len(chain))
    return TransferReport(rows=report.rows, files=files, missing_files=tuple(missing))
