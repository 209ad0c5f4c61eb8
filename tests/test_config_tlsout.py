"""Outgoing SIP over TLS in the configuration (issue 11, `tlsout`): `sip.tls_ca`,
a trunk's `transport = "tls"`, and `check-config` naming the key and the reason."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from callcenter112.config import ConfigError, HostPort, parse_config
from callcenter112.config_diff import RESTART_KEYS
from callcenter112.preflight import preflight
from tls_certs import new_authority

TLS_LISTEN = {"tls_listen": "127.0.0.1:5071", "tls_certificate": "c.pem", "tls_key": "k.pem"}


def config(trunk: dict[str, Any] | None = None, **sip: Any) -> dict[str, Any]:
    return {
        "sip": {"listen": "127.0.0.1:5070", **sip},
        "trunk": [{"name": "t", "allow": ["192.0.2.0/24"], "numbers": ["112"], **(trunk or {})}],
    }


def test_without_tls_keys_nothing_changes() -> None:
    cfg = parse_config(config(trunk={"proxy": "192.0.2.1"}))
    assert cfg.sip.tls_ca == ""
    assert cfg.trunk[0].transport == "udp" and cfg.trunk[0].proxy == HostPort("192.0.2.1", 5060)


@pytest.mark.parametrize(
    ("proxy", "expected"),
    [
        ("carrier.example", HostPort("carrier.example", 5061)),  # RFC 3263 §4.2
        ("192.0.2.1:5081", HostPort("192.0.2.1", 5081)),
        ("[2001:db8::1]", HostPort("2001:db8::1", 5061)),
    ],
)
def test_a_tls_trunk_dials_5061_unless_told(proxy: str, expected: HostPort) -> None:
    cfg = parse_config(config(trunk={"proxy": proxy, "transport": "tls"}, **TLS_LISTEN))
    assert cfg.trunk[0].transport == "tls" and cfg.trunk[0].proxy == expected


@pytest.mark.parametrize(
    ("trunk", "sip", "where", "words"),
    [
        ({"proxy": "192.0.2.1", "transport": "tls"}, {}, "trunk[0].transport", "sip.tls_listen"),
        ({"proxy": "192.0.2.1", "transport": "sctp"}, TLS_LISTEN, "trunk", "transport"),
        ({"proxy": "192.0.2.1:x", "transport": "tls"}, TLS_LISTEN, "proxy", "not a number"),
    ],
)
def test_bad_tls_trunks_name_the_key(
    trunk: dict[str, Any], sip: dict[str, Any], where: str, words: str
) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(config(trunk=trunk, **sip))
    assert where in str(err.value) and words in str(err.value), str(err.value)


def _checked(tmp_path: Path, tls_ca: str) -> list[tuple[str, str]]:
    raw = config(tls_ca=tls_ca)
    raw["storage"] = {"database": str(tmp_path / "db.sqlite3"), "recordings": str(tmp_path / "r")}
    raw["web"] = {"enabled": False}
    return [(p.path, p.reason) for p in preflight(parse_config(raw)) if p.path.startswith("sip")]


def test_check_config_opens_the_ca_file(tmp_path: Path) -> None:
    """`check-config` loads sip.tls_ca as `serve` will, and names key and reason."""
    ca = new_authority(tmp_path / "ca")
    assert _checked(tmp_path, str(ca.certificate)) == []
    ((key, reason),) = _checked(tmp_path, str(tmp_path / "missing.pem"))
    assert key == "sip.tls_ca" and "no such file" in reason and "missing.pem" in reason
    junk = tmp_path / "junk.pem"
    junk.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    ((key, reason),) = _checked(tmp_path, str(junk))
    assert key == "sip.tls_ca" and "junk.pem" in reason and "cannot be used" in reason
    leaf = ca.issue(tmp_path / "leaf", "leaf", ips=("127.0.0.1",))
    ((key, reason),) = _checked(tmp_path, str(leaf.key))  # a key, not a certificate
    assert key == "sip.tls_ca" and str(leaf.key) in reason


def test_the_ca_is_read_at_start_only() -> None:
    assert "sip.tls_ca" in RESTART_KEYS
