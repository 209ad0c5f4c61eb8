"""`[[operator]] srtp` (issue 11, `wire-edge`): default, values, a bad value names the key."""

from __future__ import annotations

from typing import Any

import pytest

from callcenter112.callflow.guards import SrtpMode, operator_srtp
from callcenter112.config import ConfigError, parse_config


def config(**operator: Any) -> dict[str, Any]:
    return {
        "sip": {"listen": "127.0.0.1:5070"},
        "trunk": [{"name": "t", "allow": ["192.0.2.0/24"], "numbers": ["112"]}],
        "operator": [{"user": "op1", "password": "secret1", **operator}],
    }


def test_srtp_is_off_by_default_and_for_strangers() -> None:
    cfg = parse_config(config())
    assert operator_srtp(cfg, "op1") is SrtpMode.OFF
    assert operator_srtp(cfg, "nobody") is SrtpMode.OFF


@pytest.mark.parametrize("mode", ["off", "optional", "mandatory"])
def test_srtp_modes(mode: str) -> None:
    assert operator_srtp(parse_config(config(srtp=mode)), "op1") is SrtpMode(mode)


def test_a_bad_srtp_mode_names_the_key() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(config(srtp="sometimes"))
    assert "operator" in str(err.value) and "srtp" in str(err.value)
