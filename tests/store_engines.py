"""The store contract suite's engines: every test that takes `store` or `stores` runs twice.

Load the fixtures in a test module with ``pytest_plugins = ("pg_support",
"store_engines")`` and write the test once against the `Store` protocol:

* ``engine`` — "sqlite" or "postgresql" (the parametrisation);
* ``stores`` — a `StoreFactory` for that engine: ``stores.open(**options)`` opens a
  store (options as `WriterOptions`: max_batch, queue_size, id_utc_offset_s, …) on
  the test's own database, ``stores.raw()`` a `RawDatabase` connection beside the
  store (to inspect or tamper as an attacker would, triggers included);
* ``store`` — ``stores.open()``, opened for the test.

The PostgreSQL database is a fresh one on the session's server (tests/pg_support.py).
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from callcenter112.records import open_store
from callcenter112.records.postgres import open_pg_store

__all__ = ["ENGINES", "RawDatabase", "StoreFactory", "engine", "raw_for", "store", "stores"]

ENGINES = ("sqlite", "postgresql")


class RawDatabase:
    """A plain connection to the store's database, outside the store (autocommit)."""

    def __init__(self, engine: str, location: str) -> None:
        self.engine = engine
        if engine == "sqlite":
            self._conn: Any = sqlite3.connect(location, isolation_level=None)
            self.integrity_error: type[Exception] = sqlite3.IntegrityError
        else:
            import psycopg

            self._conn = psycopg.connect(location, autocommit=True)
            self.integrity_error = psycopg.IntegrityError

    def execute(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        if self.engine == "postgresql":
            sql = sql.replace("?", "%s")
        cur = self._conn.execute(sql, tuple(params))
        try:
            return [tuple(r) for r in cur.fetchall()]
        except Exception:
            return []

    def drop_trigger(self, name: str, table: str) -> None:
        if self.engine == "sqlite":
            self.execute(f"DROP TRIGGER {name}")
        else:
            self.execute(f"DROP TRIGGER {name} ON {table}")

    def forget_recording_copies(self) -> None:
        """Delete the database's copies of sealed recordings (triggers dropped), as an
        attacker would before tampering with the files: the folder is then all there is."""
        self.drop_trigger("recording_copies_no_delete", "recording_copies")
        self.execute("DELETE FROM recording_copies")

    def close(self) -> None:
        self._conn.close()


@dataclass
class StoreFactory:
    engine: str
    location: str  # a file path (sqlite) or a DSN (postgresql)

    def open(self, **options: Any) -> AbstractAsyncContextManager[Any]:
        if self.engine == "sqlite":
            return open_store(self.location, **options)
        return open_pg_store(self.location, **options)

    def raw(self) -> RawDatabase:
        return RawDatabase(self.engine, self.location)


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def stores(engine: str, tmp_path: Path, request: pytest.FixtureRequest) -> StoreFactory:
    if engine == "sqlite":
        return StoreFactory(engine, str(tmp_path / "db.sqlite3"))
    return StoreFactory(engine, str(request.getfixturevalue("pg_dsn")))


@pytest.fixture
async def store(stores: StoreFactory) -> AsyncIterator[Any]:
    async with stores.open() as s:
        yield s


def raw_for(store: Any) -> RawDatabase:
    """A `RawDatabase` beside an open store of either engine."""
    if hasattr(store, "dsn"):
        return RawDatabase("postgresql", store.dsn)
    return RawDatabase("sqlite", str(store.path))
