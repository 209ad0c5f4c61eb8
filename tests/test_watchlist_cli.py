"""`callcenter112 watchlist add|list|remove` on a real SQLite store (issue 12)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from callcenter112.cli import main
from callcenter112.records import open_store
from callcenter112.records.cli import cli_actor


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    path = tmp_path / "cc.toml"
    path.write_text(
        '[storage]\ndatabase = "data/db.sqlite3"\nrecordings = "data/recordings"\n',
        encoding="utf-8",
    )
    return path


def test_add_list_remove_audited(cfg: Path, capsys: pytest.CaptureFixture[str]) -> None:
    c = ["--config", str(cfg)]
    assert (
        main(["watchlist", "add", "+62 814 0000 30", "--reason", "pranks", "--for", "24h", *c]) == 0
    )
    assert "0814000030 listed until" in capsys.readouterr().out
    assert main(["watchlist", "list", "--json", *c]) == 0
    (entry,) = json.loads(capsys.readouterr().out)
    assert entry["number"] == "0814000030" and entry["created_by"] == cli_actor()
    # The test's spelling of the option works too; anonymous never does.
    assert main(["watchlist", "add", "anonymous", "--reason", "x", "--expiry", "7d", *c]) == 2
    assert "anonymous" in capsys.readouterr().err
    assert main(["watchlist", "remove", "0814000030", *c]) == 0
    assert main(["watchlist", "remove", "0814000030", *c]) == 1
    assert "not on the watch list" in capsys.readouterr().err
    assert main(["watchlist", "list", "--json", *c]) == 0
    assert json.loads(capsys.readouterr().out) == []

    async def audit() -> list[str]:
        async with open_store(cfg.parent / "data" / "db.sqlite3") as store:
            assert not await store.is_watch_listed("0814000030", time.time())
            return [e.action for e in await store.list_audit(target="0814000030")]

    assert asyncio.run(audit()) == ["watch_list_add", "watch_list_remove"]


def test_a_bad_expiry_is_refused_by_the_parser(cfg: Path) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["watchlist", "add", "0814", "--reason", "x", "--for", "1y", "--config", str(cfg)])
    assert exit_.value.code == 2
