"""The slice of a DB-API connection the store's operations use, shared by both engines.

`queries.StoreQueries` writes every operation once, as SQL in the dialect
SQLite 3.35+ and PostgreSQL 15 share (``?`` placeholders, ``RETURNING``,
``ON CONFLICT``, ``CASE`` instead of boolean sums), run on a connection of
this shape: `sqlite3.Connection` as it is, and `postgres.engine.PgConnection`
(psycopg 3, placeholders rewritten) for PostgreSQL. Column values come back
as the database has them, so the row type's items are `Any` here and the row
mappers in `rows` turn them into the typed records of `incidents`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Protocol

__all__ = ["SqlConnection", "SqlCursor", "SqlRow"]


class SqlRow(Protocol):
    """A result row: by column name or position (`sqlite3.Row` and its PostgreSQL twin)."""

    def __getitem__(self, key: int | str, /) -> Any: ...

    def keys(self) -> list[str]: ...


class SqlCursor(Protocol):
    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class SqlConnection(Protocol):
    def execute(self, sql: str, parameters: Sequence[object] = ..., /) -> SqlCursor: ...

    def executemany(self, sql: str, parameters: Iterable[Sequence[object]], /) -> SqlCursor: ...
