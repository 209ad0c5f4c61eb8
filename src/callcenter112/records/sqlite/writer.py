"""The SQLite side of the writer: one file in WAL mode, ``synchronous=FULL``.

The group commit itself (`records.writer.GroupCommitWriter`) is shared with
PostgreSQL; this module opens the writer connection (creating or upgrading
the schema), the read-only reader connections, and says how SQLite begins a
write (``BEGIN IMMEDIATE``: the write lock up front) and a read snapshot.
sqlite3 blocks, so the writer connection lives on one dedicated thread (a
whole batch is one hop to it) and readers on a small pool; `aiosqlite` is not
used: it hops threads per statement, which defeats running a batch as one unit.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from pathlib import Path

from ..protocol import StoreError
from ..sql import SqlConnection
from ..writer import GroupCommitWriter, WriterOptions
from .schema import migrate

__all__ = ["SqliteWriter"]


class SqliteWriter(GroupCommitWriter):
    """The embedded engine's connections. Options as `WriterOptions`, plus:

    * `busy_timeout_s` — how long a connection waits for a lock;
    * `pragmas` — extra ``PRAGMA name = value`` for the writer (e.g. a
      `max_page_count` cap).
    """

    engine = "sqlite"
    keeps_recording_copies = False  # one machine: the file is the evidence

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
        super().__init__(
            WriterOptions(
                max_batch=max_batch,
                queue_size=queue_size,
                readers=readers,
                id_utc_offset_s=id_utc_offset_s,
            )
        )
        self.path = Path(path)
        self._busy_timeout_s = busy_timeout_s
        self._pragmas = dict(pragmas or {})
        self._writer: sqlite3.Connection | None = None

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

    def _writer_connection(self) -> SqlConnection | None:
        return self._writer

    def _close_writer(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def _open_reader(self) -> SqlConnection:
        uri = self.path.resolve().as_uri() + "?mode=ro"
        conn = sqlite3.connect(
            uri,
            uri=True,
            isolation_level=None,
            check_same_thread=False,
            timeout=self._busy_timeout_s,
        )
        conn.row_factory = sqlite3.Row
        return conn

    def _close_connection(self, conn: SqlConnection) -> None:
        assert isinstance(conn, sqlite3.Connection)
        conn.close()

    def _db_errors(self) -> tuple[type[Exception], ...]:
        return (sqlite3.Error,)

    def _begin_write(self, conn: SqlConnection) -> None:
        conn.execute("BEGIN IMMEDIATE")

    def _begin_read(self, conn: SqlConnection) -> None:
        conn.execute("BEGIN")

    def _in_transaction(self, conn: SqlConnection) -> bool:
        assert isinstance(conn, sqlite3.Connection)
        return conn.in_transaction
