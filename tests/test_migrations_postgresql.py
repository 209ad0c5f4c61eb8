"""PostgreSQL schema upgrades from every earlier version, like SQLite's (same rows, same checks).

Each version of `records.postgres.schema.MIGRATIONS` is the SQLite step of the
same number in PostgreSQL's types, so the rows an older program wrote are the
same; `check_upgraded` is the SQLite test's own list of what must survive.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from callcenter112.records.postgres import open_pg_store
from callcenter112.records.postgres.engine import connect
from callcenter112.records.postgres.schema import MIGRATIONS, SCHEMA_VERSION, migrate
from callcenter112.records.sqlite.schema import MIGRATIONS as SQLITE_MIGRATIONS
from test_migrations_sqlite import IID, _insert_rows_for, check_upgraded

pytest_plugins = ("pg_support",)


@pytest.mark.parametrize("start", range(SCHEMA_VERSION))
async def test_upgrade_from_every_earlier_version(tmp_path: Path, pg_dsn: str, start: int) -> None:
    conn = connect(pg_dsn)
    assert migrate(conn, target=start) == start
    _insert_rows_for(conn, start, tmp_path / "recordings")
    conn.close()
    async with open_pg_store(pg_dsn) as store:
        await check_upgraded(store, start, tmp_path / "recordings")
        if start:
            assert (await store.get_incident(IID)) is not None


def _schema(dsn: str) -> dict[str, object]:
    conn = connect(dsn)
    columns = sorted(
        tuple(r)
        for r in conn.execute(
            "SELECT table_name, column_name, data_type, is_nullable, column_default"
            " FROM information_schema.columns WHERE table_schema = 'public'"
        ).fetchall()
    )
    triggers = sorted(
        tuple(r)
        for r in conn.execute(
            "SELECT tgname, tgrelid::regclass::text FROM pg_trigger WHERE NOT tgisinternal"
        ).fetchall()
    )
    indexes = sorted(
        tuple(r)
        for r in conn.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'"
        ).fetchall()
    )
    conn.close()
    return {"columns": columns, "triggers": triggers, "indexes": indexes}


def test_step_by_step_upgrade_builds_the_same_schema(pg_server: object, pg_dsn: str) -> None:
    from pg_support import PgServer

    assert isinstance(pg_server, PgServer)
    pg_server.psql("CREATE DATABASE stepped")
    try:
        stepped = pg_server.dsn("stepped")
        for k in range(1, SCHEMA_VERSION + 1):
            conn = connect(stepped)
            assert migrate(conn, target=k) == k
            conn.close()
        conn = connect(pg_dsn)
        migrate(conn)
        conn.close()
        assert _schema(pg_dsn) == _schema(stepped)
    finally:
        pg_server.psql("DROP DATABASE stepped WITH (FORCE)")


def test_the_versions_match_sqlites() -> None:
    assert [(m.version, m.summary) for m in MIGRATIONS] == [
        (m.version, m.summary) for m in SQLITE_MIGRATIONS
    ]
