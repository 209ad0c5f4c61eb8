"""Live reload: validate first, all or nothing, restart keys wait; the control
socket carries it over a real Unix socket."""

from __future__ import annotations

import asyncio
import os
import stat
import tomllib
from pathlib import Path
from typing import Any

import pytest

from callcenter112.config import Config, ConfigProblem, parse_config
from callcenter112.config_diff import ConfigDiff
from callcenter112.net.control import ControlServer, control_request
from callcenter112.runtime_config import LiveConfig

SHIPPED = Path(__file__).resolve().parent.parent / "config" / "callcenter112.toml"


def _data() -> dict[str, Any]:
    return tomllib.loads(SHIPPED.read_text())


class Recorder:
    def __init__(self, refuse: str = "") -> None:
        self.refuse = refuse
        self.applied: list[Config] = []
        self.checked = 0

    def check_config(self, new: Config, diff: ConfigDiff) -> list[ConfigProblem]:
        self.checked += 1
        return [ConfigProblem("operator", self.refuse)] if self.refuse else []

    def apply_config(self, new: Config, diff: ConfigDiff) -> None:
        self.applied.append(new)


def _write(path: Path, data: dict[str, Any]) -> None:
    import tomli_w

    path.write_text(tomli_w.dumps(data))


def test_valid_change_is_applied_to_every_listener(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    _write(path, _data())
    live = LiveConfig(parse_config(_data()), path=path)
    a, b = Recorder(), Recorder()
    live.listen(a)
    live.listen(b)
    data = _data()
    data["queue"]["wrapup_s"] = 42
    _write(path, data)
    result = live.reload_file(actor="cli:test")
    assert result.ok and result.applied == ("queue.wrapup_s",)
    assert [c.queue.wrapup_s for c in a.applied] == [42.0]
    assert [c.queue.wrapup_s for c in b.applied] == [42.0]
    assert live.current.queue.wrapup_s == 42


def test_invalid_file_changes_nothing_and_names_the_key(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    live = LiveConfig(parse_config(_data()), path=path)
    listener = Recorder()
    live.listen(listener)
    data = _data()
    data["queue"]["wrapup_s"] = "soon"
    _write(path, data)
    result = live.reload_file(actor="cli:test")
    assert not result.ok
    assert any("queue.wrapup_s" in p for p in result.problems)
    assert listener.checked == 0 and listener.applied == []
    assert live.current.queue.wrapup_s == 10


def test_one_refusing_listener_means_nobody_applies() -> None:
    live = LiveConfig(parse_config(_data()))
    ok, refusing = Recorder(), Recorder(refuse="op1 is busy")
    live.listen(ok)
    live.listen(refusing)
    data = _data()
    data["queue"]["wrapup_s"] = 20
    result = live.apply(parse_config(data), actor="web:admin", source="web")
    assert not result.ok and result.problems == ("operator: op1 is busy",)
    assert ok.applied == [] and refusing.applied == []
    assert live.current.queue.wrapup_s == 10


def test_restart_keys_keep_their_running_value_and_are_reported() -> None:
    live = LiveConfig(parse_config(_data()))
    data = _data()
    data["sip"]["listen"] = "127.0.0.1:5999"
    data["rtp"]["ports"] = "30000-30999"
    data["trunk"][0]["allow"] = ["127.0.0.5/32"]
    result = live.apply(parse_config(data), actor="sighup", source="file")
    assert result.ok
    assert set(result.waiting) == {"sip.listen", "rtp.ports"}
    assert result.applied == ("trunk[telkom].allow",)
    assert live.current.sip.listen.port == 5060
    assert live.current.rtp.ports == "20000-20999"
    assert live.current.trunk[0].allow == ["127.0.0.5/32"]
    assert "waiting for a restart: " in result.summary()


async def test_control_socket_round_trip_and_mode(tmp_path: Path) -> None:
    seen: list[dict[str, Any]] = []

    async def reload(request: dict[str, Any]) -> dict[str, Any]:
        seen.append(request)
        return {"ok": True, "changes": ["~ queue.wrapup_s: 10.0 -> 42.0"]}

    path = tmp_path / "ctl.sock"
    server = ControlServer(path, {"reload": reload})
    await server.start()
    try:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        answer = await control_request(path, {"command": "reload", "actor": "cli:x"})
        assert answer["ok"] and seen == [{"command": "reload", "actor": "cli:x"}]
        unknown = await control_request(path, {"command": "explode"})
        assert unknown["ok"] is False and "reload" in unknown["error"]
        reader, writer = await asyncio.open_unix_connection(str(path))
        writer.write(b"{not json\n")
        await writer.drain()
        assert b"not a JSON line" in await reader.readline()
        writer.close()
    finally:
        await server.close()
    assert not path.exists()


async def test_no_server_is_a_connection_error(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        await control_request(tmp_path / "absent.sock", {"command": "reload"})
