"""PostgreSQL 15 under the shared group-commit writer (psycopg 3, chosen by measurement).

The writer and the readers are plain psycopg connections in autocommit mode on
threads, exactly like SQLite's: one batch is one hop to the writer thread,
runs as ``BEGIN`` + one SAVEPOINT per write + ``COMMIT``, and the operations
are `records.queries` unchanged (`PgConnection` rewrites ``?`` to ``%s`` and
returns rows readable by name and position). docs/decisions.md has the
asyncpg/psycopg measurement.

A batch is sent in psycopg's pipeline mode (`PgConnection.pipelined`): on
loopback a round trip cost more than the statement itself, and one statement
at a time paid ~6 of them per transition (docs/benchmarks.md "store"). The
writer then waits only where a write reads a result back (``RETURNING``, the
row it updates) and once at the end; see `writer` for how a failing write
still fails alone.

Reaching the primary. The DSN may name several hosts
(``postgresql://db1:5432,db2:5432/cc112?target_session_attrs=read-write``):
libpq tries them in order and keeps the one that accepts writes, so after a
standby is promoted a reconnect lands on the new primary.

Every wait on the server is bounded (`connect`): a connect attempt per host by
``connect_timeout``, a silent peer — a primary whose machine or network died,
which sends no FIN or RST — by TCP keepalives and ``tcp_user_timeout``, so a
dead primary turns into a lost connection within ~10 s instead of the kernel's
~15 min (a query being sent) or 2 h (an answer awaited).

Outages. If the connection is lost before a batch's COMMIT was sent, nothing
of it committed: the writer keeps the batch and reconnects every
`reconnect_interval_s` for up to `outage_limit_s`, then runs the batch again.
Meanwhile new writes wait in the bounded write queue (`queue_size`), and
`health()` reports the outage (for the wallboard). When the limit passes the
batch fails with `StoreError` and the next batch starts a new wait. A
connection lost *during* COMMIT leaves the outcome unknown: that batch fails
(its callers retry or report), so nothing is ever written twice. With a
synchronous standby (``synchronous_standby_names``) a COMMIT returns only
once the standby has the WAL, so every acknowledged write survives the
primary's loss.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus

from ..protocol import StoreError
from ..sql import SqlConnection, SqlCursor
from ..writer import GroupCommitWriter, WriterOptions
from .schema import migrate

__all__ = ["PgConnection", "PgRow", "PgWriter", "connect"]

_SQL_CACHE: dict[str, str] = {}
_CONNECT_TIMEOUT_S = 3

# How long a dead server may keep a connection waiting. A primary whose *process*
# dies closes its sockets and the store learns it at once; a primary whose *machine*
# dies (power, network) sends nothing more, and with the kernel's defaults the writer
# thread would wait, with every write queued behind it, ~15 min for a query being sent
# (retransmissions, tcp_retries2 = 15) and over 2 h for an answer (keepalive 7200 s +
# 9 probes 75 s apart). Names and units are libpq's ("Parameter Key Words", PostgreSQL 15
# manual §34.1.2); a DSN that sets one of them wins.
_SOCKET_DEFAULTS: dict[str, str] = {
    "keepalives": "1",
    "keepalives_idle": "5",  # s idle before the first probe (as the servers' side: deployment.md)
    "keepalives_interval": "1",  # s between probes
    "keepalives_count": "3",  # unanswered probes → dead (tcp_user_timeout caps it at 10 s)
    "tcp_user_timeout": "10000",  # ms a sent query may stay unacknowledged (Linux TCP_USER_TIMEOUT)
}


def _pg_sql(sql: str) -> str:
    """``?`` placeholders → ``%s`` (and a literal ``%`` → ``%%``), cached."""
    out = _SQL_CACHE.get(sql)
    if out is None:
        out = sql.replace("%", "%%").replace("?", "%s")
        _SQL_CACHE[sql] = out
    return out


class PgRow:
    """A result row readable by column name or position, like `sqlite3.Row`."""

    __slots__ = ("_index", "_values")

    def __init__(self, values: Sequence[Any], index: dict[str, int]) -> None:
        self._values = values
        self._index = index

    def __getitem__(self, key: int | str, /) -> Any:
        if isinstance(key, str):
            return self._values[self._index[key]]
        return self._values[key]

    def __len__(self) -> int:
        return len(self._values)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._values)

    def __eq__(self, other: object) -> bool:
        return tuple(self._values) == (tuple(other) if isinstance(other, tuple | PgRow) else other)

    __hash__ = None  # type: ignore[assignment]

    def keys(self) -> list[str]:
        return list(self._index)


def _row_factory(cursor: Any) -> Any:
    description = cursor.description
    index = {} if description is None else {d.name: i for i, d in enumerate(description)}

    def make(values: Sequence[Any]) -> PgRow:
        return PgRow(values, index)

    return make


class _PipelinedCursor:
    """A cursor of a statement sent in pipeline mode. Its rows are read on demand
    by psycopg; its `rowcount` is known only once its answer came, so asking for
    it first waits for every answer sent so far (one round trip)."""

    __slots__ = ("_cursor", "_pipeline")

    def __init__(self, cursor: psycopg.Cursor[Any], pipeline: psycopg.Pipeline) -> None:
        self._cursor = cursor
        self._pipeline = pipeline

    @property
    def rowcount(self) -> int:
        self._pipeline.sync()
        return self._cursor.rowcount

    def fetchone(self) -> Any:
        return self._cursor.fetchone()

    def fetchall(self) -> list[Any]:
        return self._cursor.fetchall()

    def __iter__(self) -> Iterator[Any]:
        return iter(self._cursor)


class PgConnection:
    """A psycopg connection seen as `sql.SqlConnection` (autocommit; BEGIN/COMMIT are SQL)."""

    def __init__(self, raw: psycopg.Connection[Any]) -> None:
        self.raw = raw
        self._pipeline: psycopg.Pipeline | None = None

    def execute(self, sql: str, parameters: Sequence[object] = (), /) -> SqlCursor:
        cur = self.raw.cursor(row_factory=_row_factory)
        cur.execute(_pg_sql(sql), tuple(parameters) if parameters else None)
        if self._pipeline is not None:
            assert isinstance(cur, psycopg.Cursor)
            return _PipelinedCursor(cur, self._pipeline)
        return cur

    @contextmanager
    def pipelined(self) -> Iterator[None]:
        """Send statements without waiting for each answer (psycopg's pipeline
        mode, PostgreSQL 14+ libpq); leaving waits for every answer and raises
        the first error."""
        with self.raw.pipeline() as pipeline:
            self._pipeline = pipeline
            try:
                yield
            finally:
                self._pipeline = None

    def executemany(self, sql: str, parameters: Iterable[Sequence[object]], /) -> SqlCursor:
        cur = self.raw.cursor(row_factory=_row_factory)
        cur.executemany(_pg_sql(sql), [tuple(p) for p in parameters])
        return cur

    @property
    def lost(self) -> bool:
        return self.raw.closed or self.raw.broken

    @property
    def in_transaction(self) -> bool:
        return self.raw.info.transaction_status in (
            TransactionStatus.INTRANS,
            TransactionStatus.INERROR,
            TransactionStatus.ACTIVE,
        )

    def close(self) -> None:
        self.raw.close()


def connect(
    dsn: str, *, timeout_s: float = _CONNECT_TIMEOUT_S, prepared: bool = True
) -> PgConnection:
    """An autocommit connection to the server of `dsn` that accepts writes.

    Every wait on the server is bounded: connecting by `timeout_s` (per host),
    a silent peer by TCP keepalives and ``tcp_user_timeout`` (`_SOCKET_DEFAULTS`);
    the DSN's own values of these keys win.

    `prepared`: parameters travel apart from the statement (server-side
    binding), and a statement run `psycopg.Connection.prepare_threshold` (5)
    times is prepared on the server, so it is parsed and planned once per
    connection; False merges the values into the SQL text on the client
    (`psycopg.ClientCursor`) and the server parses and plans every statement
    (the benchmark's "before").
    """
    named = psycopg.conninfo.conninfo_to_dict(dsn)
    defaults = {"connect_timeout": str(max(1, int(timeout_s))), **_SOCKET_DEFAULTS}
    conninfo = psycopg.conninfo.make_conninfo(
        dsn, **{key: value for key, value in defaults.items() if key not in named}
    )
    raw = psycopg.connect(
        conninfo,
        autocommit=True,
        cursor_factory=psycopg.Cursor if prepared else psycopg.ClientCursor,
        application_name="callcenter112",
    )
    return PgConnection(raw)


def _redact(dsn: str) -> str:
    """The DSN without a password, for messages."""
    try:
        info = psycopg.conninfo.conninfo_to_dict(dsn)
    except psycopg.Error:
        return "<unparsable DSN>"
    info.pop("password", None)
    return psycopg.conninfo.make_conninfo("", **{k: v for k, v in info.items() if v is not None})


class PgWriter(GroupCommitWriter):
    """The PostgreSQL engine's connections. Options as `WriterOptions`, plus:

    * `outage_limit_s` — how long a batch waits for the database to come back
      before its writes fail (the write queue holds at most `queue_size` more);
    * `reconnect_interval_s` — pause between reconnection attempts;
    * `pipeline` — send a batch's statements in pipeline mode (the default; False
      waits for each statement's answer, the benchmark's "before");
    * `prepared` — server-side binding and prepared statements (`connect`).
    """

    engine = "postgresql"
    keeps_recording_copies = True  # the standby must have the evidence too

    def __init__(
        self,
        dsn: str,
        *,
        max_batch: int = 512,
        queue_size: int = 10_000,
        readers: int = 2,
        id_utc_offset_s: float = 0.0,
        outage_limit_s: float = 120.0,
        reconnect_interval_s: float = 0.5,
        pipeline: bool = True,
        prepared: bool = True,
    ) -> None:
        super().__init__(
            WriterOptions(
                max_batch=max_batch,
                queue_size=queue_size,
                readers=readers,
                id_utc_offset_s=id_utc_offset_s,
            )
        )
        self.dsn = dsn
        self._outage_limit_s = outage_limit_s
        self._reconnect_interval_s = reconnect_interval_s
        self._pipelines = pipeline
        self._prepared = prepared
        self._writer: PgConnection | None = None

    def _open_writer(self) -> int:
        try:
            conn = connect(self.dsn, prepared=self._prepared)
        except psycopg.Error as exc:
            raise StoreError(f"cannot connect to {_redact(self.dsn)}: {exc}") from exc
        try:
            version = migrate(conn)
        except psycopg.Error as exc:
            conn.close()
            raise StoreError(f"cannot prepare database {_redact(self.dsn)}: {exc}") from exc
        except BaseException:
            conn.close()
            raise
        self._writer = conn
        return version

    def _writer_connection(self) -> SqlConnection | None:
        return self._writer

    def _close_writer(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def _open_reader(self) -> SqlConnection:
        try:
            return connect(self.dsn, prepared=self._prepared)
        except psycopg.Error as exc:
            raise StoreError(f"cannot connect to {_redact(self.dsn)}: {exc}") from exc

    def _close_connection(self, conn: SqlConnection) -> None:
        assert isinstance(conn, PgConnection)
        conn.close()

    def _db_errors(self) -> tuple[type[Exception], ...]:
        return (psycopg.Error,)

    def _begin_write(self, conn: SqlConnection) -> None:
        conn.execute("BEGIN")

    def _begin_read(self, conn: SqlConnection) -> None:
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")

    def _in_transaction(self, conn: SqlConnection) -> bool:
        assert isinstance(conn, PgConnection)
        return conn.in_transaction

    def _pipeline(self, conn: SqlConnection) -> AbstractContextManager[object] | None:
        assert isinstance(conn, PgConnection)
        return conn.pipelined() if self._pipelines else None

    def _lost(self, conn: SqlConnection) -> bool:
        assert isinstance(conn, PgConnection)
        return conn.lost

    def _reconnect(self) -> bool:
        """Writer thread: drop the dead connection, try once to reach a primary."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        try:
            self._writer = connect(self.dsn, prepared=self._prepared)
        except psycopg.Error:
            return False
        return True

    async def _ride_out(self, outage: Exception) -> bool:
        import asyncio

        loop = asyncio.get_running_loop()
        started = time.monotonic()
        if self._outage_since is None:
            self._outage_since = time.time()
            self._outage_reason = str(outage)
        while time.monotonic() - started < self._outage_limit_s:
            if await loop.run_in_executor(self._writer_pool, self._reconnect):
                self._outage_since = None
                self._outage_reason = None
                return True
            await asyncio.sleep(self._reconnect_interval_s)
        return False
