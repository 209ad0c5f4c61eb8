"""The embedded SQLite engine of the `Store` (the default: one machine, one file).

* `schema` — the tables, triggers and migrations;
* `writer` — the writer thread (group commit, one SAVEPOINT per write) and the readers;
* `queries` — `SqliteStore`, every operation of the `Store` protocol as SQL.
"""

from .queries import SqliteStore, open_store
from .schema import MIGRATIONS, SCHEMA_VERSION, Migration, migrate

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "Migration", "SqliteStore", "migrate", "open_store"]
