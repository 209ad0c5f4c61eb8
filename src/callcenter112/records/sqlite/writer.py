"""The SQLite writer thread: group commit with one SAVEPOINT per write, and the readers.

Callers put write operations on one bounded queue; a single writer task takes
the first operation and every other one already waiting (up to `max_batch`),
runs them on one dedicated thread in one transaction — each inside its own
SAVEPOINT, so one operation breaking a rule fails alone — and commits once
(``journal_mode=WAL``, ``synchronous=FULL``: one fsync per batch), then
resolves each caller's future. If the database itself fails (disk full, I/O
error) every operation of that batch fails with `StoreError`, never a silent
drop. Read queries run on a small pool of read-only connections, one snapshot
per read.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Self, TypeVar, cast

from ..protocol import StoreError
from .schema import migrate

__all__ = ["SqliteWriter"]

T = TypeVar("T")

# --------------------------------------------------------------------------- the SQLite store


@dataclass(slots=True)
class _WriteOp:
    run: Callable[[sqlite3.Connection], object]
    future: asyncio.Future[object]


_STOP = object()
_Outcome = tuple[bool, object]


def _failure(exc: BaseException) -> BaseException:
    if isinstance(exc, sqlite3.Error):
        err = StoreError(f"database write failed: {exc}")
        err.__cause__ = exc
        return err
    return exc


class SqliteWriter:
    """The embedded `Store`: one SQLite file in WAL mode.

    Use ``async with open_store(path) as store:`` (or `open()`/`close()`); the
    writer task lives between the two. Parameters:

    * `max_batch` — most write operations per transaction (1 = one commit per
      operation, used by the benchmark as the baseline);
    * `queue_size` — bound of the write queue; a full queue makes writers wait;
    * `readers` — read-only connections for queries;
    * `id_utc_offset_s` — offset of the local day used in incident ids
      (0 = UTC days; Kota Ambon's WIT would be 9 * 3600);
    * `pragmas` — extra ``PRAGMA name = value`` for the writer (e.g. a
      `max_page_count` cap).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        max_batch: int = 512,
        queue_size: int = 10_000,
        readers: int = 2,
        id_utc_offset_s: float = 0.0,
        busy_timeout_s: float = 10.0,
        pragmas: Mapping[str, int | str] | None = None,
    ) -> None:
        if max_batch < 1 or queue_size < 1 or readers < 1:
            raise ValueError("max_batch, queue_size and readers must be at least 1")
        self.path = Path(path)
        self._max_batch = max_batch
        self._queue_size = queue_size
        self._readers = readers
        self._id_utc_offset_s = id_utc_offset_s
        self._busy_timeout_s = busy_timeout_s
        self._pragmas = dict(pragmas or {})
        self._writer: sqlite3.Connection | None = None
        self._writer_pool: ThreadPoolExecutor | None = None
        self._reader_pool: ThreadPoolExecutor | None = None
        self._reader_conns: list[sqlite3.Connection] = []
        self._reader_lock = threading.Lock()
        self._local = threading.local()
        self._queue: asyncio.Queue[_WriteOp | object] | None = None
        self._writer_task: asyncio.Task[None] | None = None
        self._closing = False
        self.schema_version = 0
        # Counters for tests, metrics and the benchmark.
        self.commits = 0
        self.write_ops = 0
        self.largest_batch = 0

    # -- lifecycle

    async def open(self) -> None:
        """Create or upgrade the database and start the writer task."""
        if self._writer_task is not None:
            raise StoreError("store is already open", status_hint=500)
        loop = asyncio.get_running_loop()
        self._writer_pool = ThreadPoolExecutor(1, thread_name_prefix="store-writer")
        self._reader_pool = ThreadPoolExecutor(self._readers, thread_name_prefix="store-reader")
        try:
            self.schema_version = await loop.run_in_executor(self._writer_pool, self._open_writer)
        except BaseException:
            self._shutdown_pools()
            raise
        self._queue = asyncio.Queue(self._queue_size)
        self._closing = False
        self._writer_task = asyncio.create_task(self._write_loop(), name="store-writer")

    async def close(self) -> None:
        """Finish every queued write, stop the writer, close the connections."""
        task = self._writer_task
        if task is None:
            return
        self._closing = True
        assert self._queue is not None
        try:
            if not task.done():
                await self._queue.put(_STOP)
            await task
        finally:
            self._writer_task = None
            self._fail_queued(StoreError("store closed before the write ran"))
            await asyncio.get_running_loop().run_in_executor(self._writer_pool, self._close_writer)
            self._shutdown_pools()

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def _open_writer(self) -> int:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                self.path,
                isolation_level=None,
                check_same_thread=False,
                timeout=self._busy_timeout_s,
            )
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open database {self.path}: {exc}") from exc
        try:
            conn.row_factory = sqlite3.Row
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StoreError(f"{self.path}: cannot switch to WAL mode (got {mode})")
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA foreign_keys = ON")
            for name, value in self._pragmas.items():
                if not name.isidentifier():
                    raise StoreError(f"bad pragma name {name!r}", status_hint=500)
                conn.execute(f"PRAGMA {name} = {int(value) if isinstance(value, int) else value}")
            version = migrate(conn)
        except sqlite3.Error as exc:
            conn.close()
            raise StoreError(f"cannot prepare database {self.path}: {exc}") from exc
        except BaseException:
            conn.close()
            raise
        self._writer = conn
        return version

    def _close_writer(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def _shutdown_pools(self) -> None:
        if self._reader_pool is not None:
            self._reader_pool.shutdown(wait=True)
            self._reader_pool = None
        with self._reader_lock:
            for conn in self._reader_conns:
                conn.close()
            self._reader_conns.clear()
        self._local = threading.local()
        if self._writer_pool is not None:
            self._writer_pool.shutdown(wait=True)
            self._writer_pool = None

    def _fail_queued(self, error: StoreError) -> None:
        if self._queue is None:
            return
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if isinstance(item, _WriteOp) and not item.future.done():
                item.future.set_exception(error)

    # -- the writer

    async def _write(self, run: Callable[[sqlite3.Connection], T]) -> T:
        task = self._writer_task
        if task is None or task.done() or self._closing or self._queue is None:
            raise StoreError("store is closed")
        future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        await self._queue.put(_WriteOp(run, future))
        return cast(T, await future)

    async def _write_loop(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        stop = False
        while not stop:
            first = await self._queue.get()
            if first is _STOP:
                break
            batch = [cast(_WriteOp, first)]
            while len(batch) < self._max_batch:
                try:
                    item = self._queue.get_nowait()
                except asyncio.QueueEmpty:
                    break
                if item is _STOP:
                    stop = True
                    break
                batch.append(cast(_WriteOp, item))
            runs = [op.run for op in batch]
            pending = loop.run_in_executor(self._writer_pool, self._run_batch, runs)
            try:
                outcomes = await asyncio.shield(pending)
            except asyncio.CancelledError:
                # The batch is already in the writer thread: let it finish so
                # every caller learns whether its write is on disk.
                self._resolve(batch, await self._settle(pending, len(batch)))
                raise
            except Exception as exc:  # noqa: BLE001 - a runner bug: fail the batch, keep writing
                outcomes = [(False, StoreError(f"store writer failed: {exc!r}"))] * len(batch)
            self._resolve(batch, outcomes)

    @staticmethod
    async def _settle(pending: asyncio.Future[list[_Outcome]], n: int) -> list[_Outcome]:
        try:
            return await pending
        except Exception as exc:  # noqa: BLE001 - every caller must learn its write failed
            return [(False, StoreError(f"store writer failed: {exc!r}"))] * n

    @staticmethod
    def _resolve(batch: list[_WriteOp], outcomes: list[_Outcome]) -> None:
        for op, (ok, value) in zip(batch, outcomes, strict=True):
            if op.future.done():
                continue  # the caller gave up waiting; the write still happened
            if ok:
                op.future.set_result(value)
            else:
                op.future.set_exception(cast(BaseException, value))

    def _run_batch(self, runs: list[Callable[[sqlite3.Connection], object]]) -> list[_Outcome]:
        """One transaction for the whole batch; runs on the writer thread."""
        conn = self._writer
        if conn is None:
            return [(False, StoreError("store is closed"))] * len(runs)

        def all_failed(exc: BaseException) -> list[_Outcome]:
            if conn.in_transaction:
                with suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            return [(False, _failure(exc))] * len(runs)

        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            return all_failed(exc)
        outcomes: list[_Outcome] = []
        for run in runs:
            try:
                conn.execute("SAVEPOINT op")
            except sqlite3.Error as exc:
                return all_failed(exc)
            try:
                value = run(conn)
            except Exception as exc:  # noqa: BLE001 - one operation fails alone, batch goes on
                if not conn.in_transaction:
                    # SQLite rolled back the whole transaction (e.g. disk full):
                    # nothing of this batch is on disk.
                    return all_failed(exc)
                try:
                    conn.execute("ROLLBACK TO op")
                    conn.execute("RELEASE op")
                except sqlite3.Error as exc2:
                    return all_failed(exc2)
                outcomes.append((False, _failure(exc)))
            else:
                try:
                    conn.execute("RELEASE op")
                except sqlite3.Error as exc:
                    return all_failed(exc)
                outcomes.append((True, value))
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            return all_failed(exc)
        self.commits += 1
        self.write_ops += len(runs)
        self.largest_batch = max(self.largest_batch, len(runs))
        return outcomes

    # -- readers

    async def _read(self, run: Callable[[sqlite3.Connection], T]) -> T:
        if self._reader_pool is None:
            raise StoreError("store is closed")
        return await asyncio.get_running_loop().run_in_executor(
            self._reader_pool, self._run_read, run
        )

    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            uri = self.path.resolve().as_uri() + "?mode=ro"
            conn = sqlite3.connect(
                uri,
                uri=True,
                isolation_level=None,
                check_same_thread=False,
                timeout=self._busy_timeout_s,
            )
            conn.row_factory = sqlite3.Row
            self._local.conn = conn
            with self._reader_lock:
                self._reader_conns.append(conn)
        return conn

    def _run_read(self, run: Callable[[sqlite3.Connection], T]) -> T:
        try:
            conn = self._reader()
            conn.execute("BEGIN")  # one snapshot for every query of this read
            try:
                return run(conn)
            finally:
                conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StoreError(f"database read failed: {exc}") from exc
