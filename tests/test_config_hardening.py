"""Issue 11: check-config checks everything serve opens; both resolve paths alike."""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from callcenter112.config import load_config, parse_config
from callcenter112.preflight import check_certificate, preflight

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "config" / "callcenter112.toml"


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "callcenter112", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=False,
    )


def test_a_copied_config_fails_check_config_and_serve_alike(tmp_path: Path) -> None:
    copy = tmp_path / "cc.toml"
    shutil.copy(SHIPPED, copy)
    check = _cli("check-config", str(copy))
    serve = _cli("serve", "--config", str(copy))
    assert check.returncode == serve.returncode == 2
    for out in (check.stderr, serve.stderr):
        assert f"web.city_areas: {tmp_path}/config/ambon-areas.toml" in out
        assert f"ivr.prompts: {tmp_path}/sounds" in out
    # The same file in a checkout-shaped folder (config/ beside sounds/) passes.
    (tmp_path / "config").mkdir()
    shutil.copy(SHIPPED, tmp_path / "config" / "cc.toml")
    shutil.copy(ROOT / "config" / "ambon-areas.toml", tmp_path / "config")
    shutil.copytree(ROOT / "sounds", tmp_path / "sounds")
    cfg = load_config(tmp_path / "config" / "cc.toml")
    assert cfg.path(cfg.ivr.prompts) == tmp_path / "sounds"
    assert preflight(cfg) == []
    assert _cli("check-config", str(tmp_path / "config" / "cc.toml")).returncode == 0


def test_a_file_where_a_folder_should_be_is_named(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    cfg = parse_config(
        {"storage": {"recordings": str(tmp_path / "file"), "database": str(tmp_path / "db")}},
        base_dir=ROOT,
    )
    found = {p.path: p.reason for p in preflight(cfg)}
    assert "not a folder" in found["storage.recordings"]


def _cert(tmp_path: Path, name: str, days: int) -> tuple[Path, Path]:
    cert, key = tmp_path / f"{name}.crt", tmp_path / f"{name}.key"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-subj",
            "/CN=console.test",
            "-days",
            str(days),
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def test_certificates_are_read_parsed_matched_and_dated(tmp_path: Path) -> None:
    cert, key = _cert(tmp_path, "good", 30)
    assert check_certificate(cert, key) == []
    _, other_key = _cert(tmp_path, "other", 30)
    [mismatch] = check_certificate(cert, other_key)
    assert "not the key of good.crt" in mismatch
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=40)
    [expired] = check_certificate(cert, key, now=later)
    assert "expired on" in expired
    (tmp_path / "junk.crt").write_text("not pem")
    assert check_certificate(tmp_path / "junk.crt", key) == [
        f"{tmp_path}/junk.crt: not a PEM certificate"
    ]
    assert "cannot read" in check_certificate(tmp_path / "missing.crt", key)[0]
    cfg = parse_config(
        {
            "web": {"tls_certificate": str(cert), "tls_key": str(other_key)},
            "storage": {"recordings": str(tmp_path / "r"), "database": str(tmp_path / "d.db")},
        },
        base_dir=ROOT,
    )
    assert [p.path for p in preflight(cfg)] == ["web.tls_certificate"]


def test_tls_needs_both_files_and_proxies_must_be_networks() -> None:
    from callcenter112.config import ConfigError

    with pytest.raises(ConfigError) as err:
        parse_config({"web": {"tls_certificate": "a.crt", "trusted_proxies": ["10.0.0.0/8", "x"]}})
    text = str(err.value)
    assert "web.trusted_proxies" in text and "'x' is not an IP address or network" in text


def test_preopen_adapts_to_a_small_range_and_the_range_is_cross_checked() -> None:
    from callcenter112.config import config_warnings

    small = parse_config({"rtp": {"ports": "30000-30019"}})
    assert small.rtp.preopen == 2  # 10 pairs / 4
    assert parse_config({}).rtp.preopen == 64
    ops = [{"user": f"op{i}", "password": "secret1"} for i in range(4)]
    [idle] = config_warnings(parse_config({"rtp": {"ports": "30000-30019"}, "operator": ops}))[:1]
    assert idle.path == "rtp.ports" and "4 operator(s) talking at once need 12" in idle.reason
    cfg = parse_config({"rtp": {"ports": "30000-30099"}, "operator": ops})
    [warn] = [w for w in config_warnings(cfg) if w.path == "rtp.ports"]
    assert "holds 50 RTP pairs; sip.max_calls 500 with 4 operator(s) needs 508" in warn.reason
