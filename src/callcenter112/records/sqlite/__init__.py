"""The embedded SQLite engine of the `Store` (the default: one machine, one file).

* `schema` — the tables, triggers and migrations;
* `writer` — the writer thread (group commit, one SAVEPOINT per write) and the readers;
* `queries` — `SqliteStore`, every operation of the `Store` protocol as SQL.
"""

from .schema import MIGRATIONS, SCHEMA_VERSION, Migration, migrate
from .store import SqliteStore, open_store

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "Migration", "SqliteStore", "migrate", "open_store"]
