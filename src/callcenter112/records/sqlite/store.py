"""`SqliteStore`: the shared operations on the SQLite writer."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path

from ..protocol import Store
from ..queries import StoreQueries
from .writer import SqliteWriter

__all__ = ["SqliteStore", "open_store"]


class SqliteStore(SqliteWriter, StoreQueries):
    """The embedded `Store`: one SQLite file in WAL mode (options: `SqliteWriter`)."""


@asynccontextmanager
async def open_store(
    path: str | Path,
    *,
    max_batch: int = 512,
    queue_size: int = 10_000,
    readers: int = 2,
    id_utc_offset_s: float = 0.0,
    busy_timeout_s: float = 10.0,
    pragmas: Mapping[str, int | str] | None = None,
) -> AsyncIterator[SqliteStore]:
    """``async with open_store(path) as store:`` — open, yield, always close."""
    store = SqliteStore(
        path,
        max_batch=max_batch,
        queue_size=queue_size,
        readers=readers,
        id_utc_offset_s=id_utc_offset_s,
        busy_timeout_s=busy_timeout_s,
        pragmas=pragmas,
    )
    await store.open()
    try:
        yield store
    finally:
        await store.close()


def _conforms(store: SqliteStore) -> Store:
    return store  # mypy checks here that SqliteStore implements the protocol
