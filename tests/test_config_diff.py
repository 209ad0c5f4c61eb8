"""The reload diff: keyed by name, secrets hidden, restart keys named."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from callcenter112.config import Config, parse_config
from callcenter112.config_diff import diff_configs

SHIPPED = Path(__file__).resolve().parent.parent / "config" / "callcenter112.toml"


def _base() -> dict[str, Any]:
    return tomllib.loads(SHIPPED.read_text())


def _cfg(data: dict[str, Any]) -> Config:
    return parse_config(data)


def test_same_file_is_no_change() -> None:
    assert diff_configs(_cfg(_base()), _cfg(_base())).empty


def test_reordering_rows_is_not_a_change() -> None:
    data = _base()
    data["operator"] = list(reversed(data["operator"]))
    assert diff_configs(_cfg(_base()), _cfg(data)).empty


def test_trunk_allow_change_is_live_and_named_by_trunk() -> None:
    data = _base()
    data["trunk"][0]["allow"] = ["127.0.0.9/32"]
    d = diff_configs(_cfg(_base()), _cfg(data))
    assert [c.path for c in d.changes] == ["trunk[telkom].allow"]
    assert d.changes[0].restart is False
    assert "127.0.0.9/32" in str(d.changes[0])
    assert d.sections() == {"trunk"}


def test_operator_added_and_removed_without_secrets() -> None:
    data = _base()
    removed = data["operator"].pop(0)
    data["operator"].append({"user": "op9", "password": "very-secret-9", "skills": ["medical"]})
    d = diff_configs(_cfg(_base()), _cfg(data))
    kinds = {c.path: c.kind for c in d.changes}
    assert kinds == {f"operator[{removed['user']}]": "removed", "operator[op9]": "added"}
    text = "\n".join(d.lines())
    assert "very-secret-9" not in text and removed["password"] not in text
    assert "(secret)" in text


def test_changed_password_is_hidden() -> None:
    data = _base()
    old = data["operator"][0]["password"]
    data["operator"][0]["password"] = "another-secret"
    d = diff_configs(_cfg(_base()), _cfg(data))
    (change,) = d.changes
    assert change.path.endswith(".password")
    assert change.old == "(secret)" and change.new == "(secret changed)"
    assert old not in str(d.to_json()) and "another-secret" not in str(d.to_json())


def test_listen_and_rtp_range_wait_for_restart() -> None:
    data = _base()
    data["sip"]["listen"] = "127.0.0.1:5090"
    data["rtp"]["ports"] = "30000-30999"
    data["queue"]["wrapup_s"] = 20
    d = diff_configs(_cfg(_base()), _cfg(data))
    assert {c.path for c in d.waiting} == {"sip.listen", "rtp.ports"}
    assert [c.path for c in d.live] == ["queue.wrapup_s"]
    assert d.to_json()["waiting_for_restart"] == ["rtp.ports", "sip.listen"]
