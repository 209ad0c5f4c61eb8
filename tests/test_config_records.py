"""`[storage] database`: a SQLite file or a PostgreSQL DSN; anything else is named and refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from callcenter112.config import ConfigError, load_config
from callcenter112.records import is_postgresql
from callcenter112.records.engines import sqlite_path


def _write(tmp_path: Path, database: str) -> Path:
    path = tmp_path / "c.toml"
    path.write_text(f'[storage]\ndatabase = "{database}"\n')
    return path


@pytest.mark.parametrize(
    "database",
    [
        "data/cc.sqlite3",
        "sqlite:/var/lib/cc.sqlite3",
        "postgresql://cc@db1:5432,db2:5432/cc?target_session_attrs=read-write",
    ],
)
def test_accepted(tmp_path: Path, database: str) -> None:
    cfg = load_config(_write(tmp_path, database))
    assert cfg.storage.database == database


@pytest.mark.parametrize(
    ("database", "why"),
    [
        ("mysql://x/y", "mysql:// is not a database"),
        ("postgresql://", "names no host"),
        ("  ", "empty"),
    ],
)
def test_refused_with_the_key_and_the_reason(tmp_path: Path, database: str, why: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(_write(tmp_path, database))
    text = "\n".join(str(p) for p in err.value.problems)
    assert "database" in text and why in text


def test_engine_choice() -> None:
    assert is_postgresql("postgresql://h/db") and is_postgresql("postgres://h/db")
    assert not is_postgresql("data/x.sqlite3")
    assert sqlite_path("sqlite:/a/b.db") == Path("/a/b.db")
