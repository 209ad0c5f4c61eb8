"""Which engine a configured ``[storage] database`` names, and opening it.

* a path (``data/callcenter112.sqlite3``, or ``sqlite:PATH``) — SQLite, the
  default: one machine, nothing else to run;
* ``postgresql://…`` (or ``postgres://…``) — PostgreSQL 15, possibly several
  hosts with ``target_session_attrs=read-write`` (docs/deployment.md).

psycopg is imported only for the second.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from .sqlite import SqliteStore

if TYPE_CHECKING:
    from .postgres import PostgresStore

__all__ = ["is_postgresql", "new_store", "open_database", "sqlite_path"]

_PG_SCHEMES = ("postgresql://", "postgres://")
_SQLITE_PREFIX = "sqlite:"


def is_postgresql(database: str) -> bool:
    return database.startswith(_PG_SCHEMES)


def sqlite_path(database: str, resolve: Callable[[str], Path] = Path) -> Path:
    """The file of a SQLite `database` setting (``sqlite:`` prefix optional)."""
    if database.startswith(_SQLITE_PREFIX):
        database = database[len(_SQLITE_PREFIX) :]
    return resolve(database)


def new_store(
    database: str,
    *,
    resolve: Callable[[str], Path] = Path,
    id_utc_offset_s: float = 0.0,
) -> SqliteStore | PostgresStore:
    """A store for `database`, not yet opened (`await store.open()`).

    `resolve` turns a relative SQLite path into a file (the configuration's
    `Config.path`).
    """
    if is_postgresql(database):
        from .postgres import PostgresStore

        return PostgresStore(database, id_utc_offset_s=id_utc_offset_s)
    path = sqlite_path(database, resolve)
    path.parent.mkdir(parents=True, exist_ok=True)
    return SqliteStore(path, id_utc_offset_s=id_utc_offset_s)


@asynccontextmanager
async def open_database(
    database: str,
    *,
    resolve: Callable[[str], Path] = Path,
    id_utc_offset_s: float = 0.0,
) -> AsyncIterator[SqliteStore | PostgresStore]:
    """``async with open_database(cfg.storage.database, resolve=cfg.path) as store:``."""
    store = new_store(database, resolve=resolve, id_utc_offset_s=id_utc_offset_s)
    await store.open()
    try:
        yield store
    finally:
        await store.close()
