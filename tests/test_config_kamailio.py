"""The [cluster] section: off by default; on, it needs a postgresql:// database
for the leader lock, and its values become LeaderSettings."""

from __future__ import annotations

import pytest

from callcenter112.cluster.leader import DEFAULT_LOCK_KEY, LeaderSettings
from callcenter112.config import ConfigError, parse_config

BASE: dict[str, object] = {
    "sip": {"listen": "127.0.0.1:15060"},
    "trunk": [{"name": "t", "allow": ["127.0.0.0/8"]}],
}


def problems_of(data: dict[str, object]) -> dict[str, str]:
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    return {p.path: p.reason for p in info.value.problems}


def test_off_by_default_and_a_single_node_needs_no_postgresql() -> None:
    cfg = parse_config(BASE)
    assert not cfg.cluster.enabled
    assert cfg.cluster.lock_key == DEFAULT_LOCK_KEY


def test_on_with_sqlite_is_refused_naming_the_key() -> None:
    problems = problems_of({**BASE, "cluster": {"enabled": True}})
    assert "postgresql://" in problems["cluster.leader_database"]


def test_on_with_the_store_on_postgresql_or_an_own_database() -> None:
    dsn = "postgresql://db1,db2/callcenter112?target_session_attrs=read-write"
    cfg = parse_config({**BASE, "storage": {"database": dsn}, "cluster": {"enabled": True}})
    assert cfg.cluster.leader_dsn(cfg.storage) == dsn
    own = "postgresql://db1/locks"
    cfg = parse_config(
        {**BASE, "cluster": {"enabled": True, "leader_database": own, "check_s": 0.5}}
    )
    c = cfg.cluster
    settings = LeaderSettings(
        dsn=c.leader_dsn(cfg.storage),
        lock_key=c.lock_key,
        retry_s=c.retry_s,
        check_s=c.check_s,
        timeout_s=c.timeout_s,
    )
    assert settings.dsn == own and settings.check_s == 0.5


@pytest.mark.parametrize(
    ("key", "value"), [("check_s", 0), ("timeout_s", 60), ("retry_s", -1), ("color", "x")]
)
def test_bad_values_are_named(key: str, value: object) -> None:
    problems = problems_of({**BASE, "cluster": {key: value}})
    assert any(path.startswith(f"cluster.{key}") for path in problems), problems
