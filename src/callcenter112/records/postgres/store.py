"""`PostgresStore`: the shared operations on the PostgreSQL writer."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from ..protocol import Store
from ..queries import StoreQueries
from .engine import PgWriter

__all__ = ["PostgresStore", "open_pg_store"]


class PostgresStore(PgWriter, StoreQueries):
    """The `Store` on PostgreSQL 15 (options: `PgWriter`)."""


@asynccontextmanager
async def open_pg_store(
    dsn: str,
    *,
    max_batch: int = 512,
    queue_size: int = 10_000,
    readers: int = 2,
    id_utc_offset_s: float = 0.0,
    outage_limit_s: float = 120.0,
    pipeline: bool = True,
    prepared: bool = True,
) -> AsyncIterator[PostgresStore]:
    """``async with open_pg_store(dsn) as store:`` — open, yield, always close."""
    store = PostgresStore(
        dsn,
        max_batch=max_batch,
        queue_size=queue_size,
        readers=readers,
        id_utc_offset_s=id_utc_offset_s,
        outage_limit_s=outage_limit_s,
        pipeline=pipeline,
        prepared=prepared,
    )
    await store.open()
    try:
        yield store
    finally:
        await store.close()


def _conforms(store: PostgresStore) -> Store:
    return store  # mypy checks here that PostgresStore implements the protocol
