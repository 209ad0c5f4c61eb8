"""The `[sip]` TLS keys (issue 11, `edge`): defaults, validation, messages naming the key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from callcenter112.config import ConfigError, HostPort, parse_config


def config(**sip: Any) -> dict[str, Any]:
    return {
        "sip": {"listen": "127.0.0.1:5070", **sip},
        "trunk": [{"name": "t", "allow": ["192.0.2.0/24"], "numbers": ["112"]}],
    }


def test_tls_is_off_by_default() -> None:
    cfg = parse_config(config())
    assert cfg.sip.tls_listen is None and cfg.sip.tls_certificate == ""


def test_tls_listen_defaults_to_port_5061() -> None:
    cfg = parse_config(config(tls_listen="0.0.0.0", tls_certificate="c.pem", tls_key="k.pem"))
    assert cfg.sip.tls_listen == HostPort("0.0.0.0", 5061)


@pytest.mark.parametrize(
    ("sip", "words"),
    [
        ({"tls_listen": "0.0.0.0:5061"}, "tls_listen needs tls_certificate and tls_key"),
        ({"tls_listen": "0.0.0.0:5061", "tls_certificate": "c.pem"}, "tls_certificate and tls_key"),
        ({"tls_listen": "sip.example:5061", "tls_certificate": "c", "tls_key": "k"}, "not an IP"),
        ({"tls_listen": "0.0.0.0:99999", "tls_certificate": "c", "tls_key": "k"}, "out of range"),
    ],
)
def test_bad_tls_settings_name_the_key(sip: dict[str, str], words: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(config(**sip))
    assert "sip" in str(err.value) and words in str(err.value)


def test_check_config_checks_the_sip_certificate(tmp_path: Path) -> None:
    """`check-config` opens what `serve` will: the SIP TLS certificate too."""
    from callcenter112.preflight import preflight

    raw = config(
        tls_listen="127.0.0.1:5071",
        tls_certificate=str(tmp_path / "missing.crt"),
        tls_key=str(tmp_path / "missing.key"),
    )
    raw["storage"] = {
        "database": str(tmp_path / "db.sqlite3"),
        "recordings": str(tmp_path / "rec"),
    }
    raw["web"] = {"enabled": False}
    problems = preflight(parse_config(raw))
    assert any(p.path == "sip.tls_certificate" for p in problems), problems
