"""Group commit with one SAVEPOINT per write, and the read pool: shared by both engines.

Callers put write operations on one bounded queue; a single writer task takes
the first operation and every other one already waiting (up to `max_batch`),
runs them on one dedicated thread in one transaction — each inside its own
SAVEPOINT, so one operation breaking a rule fails alone — commits once, then
resolves each caller's future. 200 simultaneous arrivals cost a handful of
commits (fsyncs), not 200. If the database itself fails every operation of
that batch fails with `StoreError`, never a silent drop — unless the engine
says the failure is an outage it can ride out (`_outage`, PostgreSQL: the
connection was lost before COMMIT was sent): then the batch is kept and run
again on a new connection (see `records.postgres`).

An engine whose driver can send statements without waiting for each answer
(PostgreSQL's pipeline mode, `_pipeline`) runs the batch that way first: the
writer then waits about once per write (where a write reads a result back)
instead of once per statement. A database error in a pipeline cannot be pinned
on its write, so it rolls the batch back and the batch runs again one statement
at a time, where the failing write fails alone as above.

Read queries run on a small pool of threads, each with its own connection,
one snapshot per read. An engine supplies the connections and its dialect's
transaction statements by overriding the hooks at the bottom.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, suppress
from dataclasses import dataclass
from typing import Self, TypeVar, cast

from .protocol import StoreError, StoreHealth
from .sql import SqlConnection

__all__ = ["GroupCommitWriter", "WriterOptions"]

T = TypeVar("T")
Operation = Callable[[SqlConnection], object]


@dataclass(slots=True)
class _WriteOp:
    run: Operation
    future: asyncio.Future[object]


_STOP = object()
_Outcome = tuple[bool, object]


class _Outage(Exception):
    """The connection went away before COMMIT: nothing of the batch is committed."""


@dataclass(frozen=True, slots=True, kw_only=True)
class WriterOptions:
    """`max_batch` — most writes per transaction (1 = one commit each, the benchmark's
    baseline); `queue_size` — bound of the write queue (a full queue makes writers
    wait); `readers` — read connections; `id_utc_offset_s` — offset of the local day
    used in incident ids (0 = UTC days; Kota Ambon's WIT is 9 * 3600)."""

    max_batch: int = 512
    queue_size: int = 10_000
    readers: int = 2
    id_utc_offset_s: float = 0.0

    def __post_init__(self) -> None:
        if self.max_batch < 1 or self.queue_size < 1 or self.readers < 1:
            raise ValueError("max_batch, queue_size and readers must be at least 1")


class GroupCommitWriter:
    """The writer task, its thread, and the reader pool. Engines subclass it."""

    engine = "?"

    def __init__(self, options: WriterOptions) -> None:
        self._max_batch = options.max_batch
        self._queue_size = options.queue_size
        self._readers = options.readers
        self._id_utc_offset_s = options.id_utc_offset_s
        self._writer_pool: ThreadPoolExecutor | None = None
        self._reader_pool: ThreadPoolExecutor | None = None
        self._reader_conns: list[SqlConnection] = []
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
        # Pipelined batches run again one statement at a time after a database error.
        self.pipeline_replays = 0
        # Set while the engine rides out a database outage (`_ride_out`).
        self._outage_since: float | None = None
        self._outage_reason: str | None = None

    def health(self) -> StoreHealth:
        """Is the database reachable, and how many writes wait (cheap: for the wallboard)."""
        return StoreHealth(
            engine=self.engine,
            available=self._outage_since is None,
            outage_since=self._outage_since,
            reason=self._outage_reason,
            queued_writes=self.queued_writes,
        )

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

    def _shutdown_pools(self) -> None:
        if self._reader_pool is not None:
            self._reader_pool.shutdown(wait=True)
            self._reader_pool = None
        with self._reader_lock:
            for conn in self._reader_conns:
                with suppress(Exception):
                    self._close_connection(conn)
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

    @property
    def queued_writes(self) -> int:
        """Writes waiting for the writer (during an outage: the buffered ones)."""
        return 0 if self._queue is None else self._queue.qsize()

    async def _write(self, run: Callable[[SqlConnection], T]) -> T:
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
            while True:
                pending = loop.run_in_executor(self._writer_pool, self._run_batch, runs)
                try:
                    outcomes = await asyncio.shield(pending)
                except asyncio.CancelledError:
                    # The batch is already in the writer thread: let it finish so
                    # every caller learns whether its write is on disk.
                    self._resolve(batch, await self._settle(pending, len(batch)))
                    raise
                except _Outage as exc:
                    # Nothing of the batch committed: keep it and run it again once the
                    # engine has a connection (it decides how long to wait, and when to give up).
                    if await self._ride_out(exc):
                        continue
                    outcomes = [(False, StoreError(f"database unavailable: {exc}"))] * len(batch)
                except Exception as exc:  # noqa: BLE001 - a runner bug: fail the batch, keep writing
                    outcomes = [(False, StoreError(f"store writer failed: {exc!r}"))] * len(batch)
                break
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

    def _failure(self, exc: BaseException) -> BaseException:
        if isinstance(exc, self._db_errors()):
            err = StoreError(f"database write failed: {exc}")
            err.__cause__ = exc
            return err
        return exc

    def _run_batch(self, runs: list[Operation]) -> list[_Outcome]:
        """One transaction for the whole batch; runs on the writer thread."""
        conn = self._writer_connection()
        if conn is None:
            raise _Outage("no connection to the database")
        pipeline = self._pipeline(conn)
        if pipeline is not None:
            outcomes = self._run_pipelined(conn, pipeline, runs)
            if outcomes is not None:
                return outcomes
            self.pipeline_replays += 1
        return self._run_one_by_one(conn, runs)

    def _run_pipelined(
        self, conn: SqlConnection, pipeline: AbstractContextManager[object], runs: list[Operation]
    ) -> list[_Outcome] | None:
        """The batch with its statements sent without waiting for each answer.

        The same SAVEPOINT per write as `_run_one_by_one`, but a statement's
        error reaches the client only at the next read of a result or the
        pipeline's end, possibly inside a later write: it cannot be told whose
        it is. So any database error rolls the whole batch back and returns
        None (run it again one statement at a time, where each write fails
        alone); an error raised by a write itself (a rule, e.g. `IncidentError`)
        rolls back to its savepoint here as there.
        """
        errors = self._db_errors()
        outcomes: list[_Outcome] = []
        try:
            with pipeline:
                self._begin_write(conn)
                for run in runs:
                    conn.execute("SAVEPOINT op")
                    try:
                        value = run(conn)
                    except errors:
                        raise
                    except Exception as exc:  # noqa: BLE001 - one operation fails alone
                        conn.execute("ROLLBACK TO op")
                        outcomes.append((False, self._failure(exc)))
                    else:
                        outcomes.append((True, value))
                    conn.execute("RELEASE op")
            # Leaving the pipeline waited for every answer: no statement failed.
        except errors as exc:
            if self._lost(conn):
                raise _Outage(str(exc)) from exc
            if self._in_transaction(conn):
                with suppress(*errors):
                    conn.execute("ROLLBACK")
            return None
        return self._commit(conn, runs, outcomes)

    def _run_one_by_one(self, conn: SqlConnection, runs: list[Operation]) -> list[_Outcome]:
        """The batch one statement at a time, each write inside its own SAVEPOINT."""
        errors = self._db_errors()

        def all_failed(exc: BaseException) -> list[_Outcome]:
            if self._lost(conn):
                raise _Outage(str(exc)) from exc
            if self._in_transaction(conn):
                with suppress(*errors):
                    conn.execute("ROLLBACK")
            return [(False, self._failure(exc))] * len(runs)

        try:
            self._begin_write(conn)
        except errors as exc:
            return all_failed(exc)
        outcomes: list[_Outcome] = []
        for run in runs:
            try:
                conn.execute("SAVEPOINT op")
            except errors as exc:
                return all_failed(exc)
            try:
                value = run(conn)
            except Exception as exc:  # noqa: BLE001 - one operation fails alone, batch goes on
                if not self._in_transaction(conn) or self._lost(conn):
                    # The database rolled back the whole transaction (disk full,
                    # connection lost): nothing of this batch is committed.
                    return all_failed(exc)
                try:
                    conn.execute("ROLLBACK TO op")
                    conn.execute("RELEASE op")
                except errors as exc2:
                    return all_failed(exc2)
                outcomes.append((False, self._failure(exc)))
            else:
                try:
                    conn.execute("RELEASE op")
                except errors as exc:
                    return all_failed(exc)
                outcomes.append((True, value))
        return self._commit(conn, runs, outcomes)

    def _commit(
        self, conn: SqlConnection, runs: list[Operation], outcomes: list[_Outcome]
    ) -> list[_Outcome]:
        errors = self._db_errors()
        try:
            conn.execute("COMMIT")
        except errors as exc:
            # Lost during COMMIT the outcome is unknown: fail rather than write twice.
            if self._in_transaction(conn):
                with suppress(*errors):
                    conn.execute("ROLLBACK")
            return [(False, self._failure(exc))] * len(runs)
        self.commits += 1
        self.write_ops += len(runs)
        self.largest_batch = max(self.largest_batch, len(runs))
        return outcomes

    # -- readers

    async def _read(self, run: Callable[[SqlConnection], T]) -> T:
        if self._reader_pool is None:
            raise StoreError("store is closed")
        return await asyncio.get_running_loop().run_in_executor(
            self._reader_pool, self._run_read, run
        )

    def _reader(self) -> SqlConnection:
        conn: SqlConnection | None = getattr(self._local, "conn", None)
        if conn is None or self._lost(conn):
            conn = self._open_reader()
            self._local.conn = conn
            with self._reader_lock:
                self._reader_conns.append(conn)
        return conn

    def _run_read(self, run: Callable[[SqlConnection], T]) -> T:
        for attempt in (1, 2):
            conn: SqlConnection | None = None
            try:
                conn = self._reader()
                self._begin_read(conn)  # one snapshot for every query of this read
                try:
                    return run(conn)
                finally:
                    if self._in_transaction(conn) and not self._lost(conn):
                        conn.execute("COMMIT")
            except self._db_errors() as exc:
                if attempt == 1 and conn is not None and self._lost(conn):
                    continue  # the server went away (a failover): once more on a new connection
                raise StoreError(f"database read failed: {exc}") from exc
        raise AssertionError("unreachable")

    # -- engine hooks

    def _open_writer(self) -> int:
        """Connect (creating/upgrading the schema); return the schema version. Writer thread."""
        raise NotImplementedError

    def _writer_connection(self) -> SqlConnection | None:
        raise NotImplementedError

    def _close_writer(self) -> None:
        raise NotImplementedError

    def _open_reader(self) -> SqlConnection:
        raise NotImplementedError

    def _close_connection(self, conn: SqlConnection) -> None:
        raise NotImplementedError

    def _db_errors(self) -> tuple[type[Exception], ...]:
        raise NotImplementedError

    def _begin_write(self, conn: SqlConnection) -> None:
        raise NotImplementedError

    def _begin_read(self, conn: SqlConnection) -> None:
        raise NotImplementedError

    def _in_transaction(self, conn: SqlConnection) -> bool:
        raise NotImplementedError

    def _pipeline(self, conn: SqlConnection) -> AbstractContextManager[object] | None:
        """A context in which statements are sent without waiting for their answers
        (PostgreSQL's pipeline mode), or None to run one statement at a time."""
        return None

    def _lost(self, conn: SqlConnection) -> bool:
        """Is this connection gone (server died, network cut)? Never, for a file."""
        return False

    async def _ride_out(self, outage: Exception) -> bool:
        """An outage hit a batch: wait for the database; True to run the batch again."""
        return False
