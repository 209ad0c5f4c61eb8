"""`[location] ca_file`: the CA the dereferencer trusts besides the system's (issue 13)."""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path

import pytest

from callcenter112.callflow.location import fetch_context
from callcenter112.config import ConfigError, parse_config


def test_default_trusts_the_system_only() -> None:
    cfg = parse_config({}, source="t")
    assert cfg.location.ca_file == ""
    assert isinstance(fetch_context(cfg), ssl.SSLContext)


def test_unknown_key_is_named() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config({"location": {"ca_fil": "x.pem"}}, source="t")
    assert any("location" in str(p) and "ca_fil" in str(p) for p in err.value.problems)


def test_a_ca_file_is_loaded_relative_to_the_config(tmp_path: Path) -> None:
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "k.pem",
         "-out", "ca.pem", "-days", "1", "-subj", "/CN=test LIS CA"],
        check=True, capture_output=True, cwd=tmp_path,
    )  # fmt: skip
    cfg = parse_config({"location": {"ca_file": "ca.pem"}}, source="t").model_copy(
        update={"base_dir": tmp_path}
    )
    context = fetch_context(cfg)
    assert any(c["subject"] == ((("commonName", "test LIS CA"),),) for c in context.get_ca_certs())


def test_an_unreadable_ca_file_fails_loudly(tmp_path: Path) -> None:
    (tmp_path / "bad.pem").write_text("not a certificate")
    cfg = parse_config({"location": {"ca_file": "bad.pem"}}, source="t").model_copy(
        update={"base_dir": tmp_path}
    )
    with pytest.raises((OSError, ssl.SSLError)):
        fetch_context(cfg)
