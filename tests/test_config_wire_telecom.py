"""`[[trunk]] qualify_s` (issue 16): default, off, and a bad value named."""

from __future__ import annotations

from typing import Any

import pytest

from callcenter112.config import ConfigError, parse_config


def _doc(**trunk: Any) -> dict[str, Any]:
    return {
        "trunk": [{"name": "t", "allow": ["127.0.0.1"], "proxy": "127.0.0.1:5999", **trunk}],
        "operator": [{"user": "op1", "password": "secret1"}],
    }


def test_qualify_every_30_s_by_default_and_0_turns_it_off() -> None:
    assert parse_config(_doc()).trunk[0].qualify_s == 30.0
    assert parse_config(_doc(qualify_s=0)).trunk[0].qualify_s == 0.0


@pytest.mark.parametrize("value", [-1, 3601, "often"])
def test_a_bad_qualify_interval_is_named(value: object) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(_doc(qualify_s=value))
    assert any("trunk[0].qualify_s" in str(p) for p in caught.value.problems), caught.value
