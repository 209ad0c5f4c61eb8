"""The real web app with `[aml]` and `[map]` set, for the location web and browser tests."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx

from callcenter112.config import AmlConfig, MapConfig
from callcenter112.records import open_store
from callcenter112.web import create_app
from callcenter112.web.auth import ApiToken
from test_web_support import (
    REPO,
    FakeClock,
    FakeLiveCenter,
    WebEnv,
    _token_hash,
    make_config,
)

MAP = REPO / "config" / "ambon-map.geojson"


@contextlib.asynccontextmanager
async def location_env(
    tmp_path: Path, *, aml: dict[str, Any] | None = None, tile_url: str = ""
) -> AsyncIterator[WebEnv]:
    clock = FakeClock()
    base = make_config(tmp_path)
    config = base.model_copy(
        update={
            "aml": AmlConfig(**(aml or {})),
            "map": MapConfig(tile_url=tile_url, areas=str(MAP)),
        }
    )
    live = FakeLiveCenter.standard(clock)
    recordings = tmp_path / "recordings"
    recordings.mkdir(exist_ok=True)
    async with open_store(tmp_path / "db.sqlite3", id_utc_offset_s=9 * 3600) as store:
        app = create_app(
            config=config,
            store=store,
            live=live,
            recordings_dir=recordings,
            clock=clock,
            api_tokens=[ApiToken(name="cad", role="supervisor", token_hash=_token_hash())],
            scrypt_n=16,
        )
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield WebEnv(
                app=app,
                client=client,
                store=store,
                live=live,
                clock=clock,
                config=config,
                recordings=recordings,
            )
