"""The PostgreSQL 15 engine of the `Store` (two machines: primary + synchronous standby).

* `schema` — the same migrations as SQLite's, in PostgreSQL's types and triggers;
* `engine` — psycopg connections under the shared group-commit writer, reconnection
  through a multi-host DSN, riding out outages;
* `store` — `PostgresStore`, the shared operations on that writer.

psycopg is imported only when a ``postgresql://`` database is configured, so
the one-machine SQLite set-up does not need it.
"""

from .store import PostgresStore, open_pg_store

__all__ = ["PostgresStore", "open_pg_store"]
