"""Configuration loading and `check-config` (issue 2: every bad key named by path and reason)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from callcenter112.cli import main
from callcenter112.config import ConfigError, load_config, parse_config

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "config" / "callcenter112.toml"

MINIMAL = """
[sip]
listen = "127.0.0.1:15060"
[[trunk]]
name = "t"
allow = ["127.0.0.0/8"]
[[operator]]
user = "op1"
password = "secret1"
"""


# What serve opens, for a file checked outside the checkout (preflight.py).
FILES = f"""
[ivr]
prompts = "{ROOT / "sounds"}"
[web]
city_areas = "{ROOT / "config" / "ambon-areas.toml"}"
"""


def problems_of(data: dict[str, object]) -> dict[str, str]:
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    return {p.path: p.reason for p in info.value.problems}


def test_shipped_config_is_valid() -> None:
    cfg = load_config(SHIPPED)
    assert cfg.trunk[0].name == "telkom"
    assert "112" in cfg.trunk[0].numbers
    assert {o.user for o in cfg.operator} == {"op1", "op2"}
    # Relative paths resolve against the checkout, not the working directory.
    assert cfg.path(cfg.storage.database) == ROOT / "data" / "callcenter112.sqlite3"


def test_every_kind_of_bad_key_is_reported_at_once() -> None:
    found = problems_of(
        {
            "sip": {"listen": "127.0.0.1:99999", "max_calls": "many"},
            "rtp": {"ports": "5000-5100"},
            "trunk": [{"name": "t", "allow": ["10.0.0.0/8", "10.0.0.0/33", "banana"]}],
            "operator": [
                {"user": "op1", "password": "secret", "skills": ["medical", "cooking"]},
                {"user": "op1", "password": "secret"},
            ],
        }
    )
    assert "port 99999 out of range" in found["sip.listen"]
    assert "many" in found["sip.max_calls"]
    assert "'10.0.0.0/33'" in found["trunk[0].allow"] and "'banana'" in found["trunk[0].allow"]
    assert "cooking" in found["operator[0].skills[1]"]
    assert "duplicate operator 'op1'" in found["operator[1].user"]


def test_rtp_range_overlapping_sip_port() -> None:
    found = problems_of(
        {
            "sip": {"listen": "0.0.0.0:20010"},
            "rtp": {"ports": "20000-20999"},
            "trunk": [{"name": "t", "allow": ["127.0.0.1"]}],
        }
    )
    assert "overlaps sip.listen port 20010" in found["rtp.ports"]


@pytest.mark.parametrize(
    ("section", "body", "path", "fragment"),
    [
        ("rtp", {"ports": "20001-20999"}, "rtp.ports", "even port"),
        ("rtp", {"ports": "30000-20000"}, "rtp.ports", "start must be below end"),
        ("sip", {"listen": "localhost:5060"}, "sip.listen", "not an IP address"),
        ("sip", {"bogus": 1}, "sip.bogus", "unknown key"),
        ("ivr", {"english_key": "1"}, "ivr", "already used"),
        ("queue", {"ring_timeout_s": 0}, "queue.ring_timeout_s", "greater than or equal"),
        ("sip", {"timer_t1_ms": 10}, "sip.timer_t1_ms", "greater than or equal to 50"),
        ("sip", {"timer_t1_ms": 9000}, "sip.timer_t1_ms", "less than or equal to 4000"),
        ("queue", {"overflow_after_s": 60}, "queue.overflow_to", "no overflow_to"),
    ],
)
def test_single_problem_named(
    section: str, body: dict[str, object], path: str, fragment: str
) -> None:
    data: dict[str, object] = {"trunk": [{"name": "t", "allow": ["127.0.0.1"]}], section: body}
    found = problems_of(data)
    assert path in found, found
    assert fragment in found[path]


def test_agency_must_use_a_known_trunk_with_a_proxy() -> None:
    found = problems_of(
        {
            "trunk": [{"name": "t", "allow": ["127.0.0.1"]}],
            "agency": [
                {"name": "a", "number": "113", "trunk": "t"},
                {"name": "b", "number": "110", "trunk": "nope"},
            ],
        }
    )
    assert "no proxy" in found["agency[0].trunk"]
    assert "no [[trunk]] named 'nope'" in found["agency[1].trunk"]


def test_check_config_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good.toml"
    good.write_text(MINIMAL + FILES)
    assert main(["check-config", str(good)]) == 0
    assert "OK" in capsys.readouterr().out

    bad = tmp_path / "bad.toml"
    bad.write_text(MINIMAL.replace('"127.0.0.0/8"', '"127.0.0.0/99"') + "\n[web]\nlisten = 5\n")
    assert main(["check-config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "trunk[0].allow" in err and "web.listen" in err

    syntax = tmp_path / "syntax.toml"
    syntax.write_text("[sip\nlisten=")
    assert main(["check-config", str(syntax)]) == 2
    assert "TOML syntax" in capsys.readouterr().err

    assert main(["check-config", str(tmp_path / "missing.toml")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_console_command_installed(tmp_path: Path) -> None:
    exe = Path(sys.executable).parent / "callcenter112"
    good = tmp_path / "good.toml"
    good.write_text(MINIMAL + FILES)
    ok = subprocess.run(
        [str(exe), "check-config", str(good)], check=False, capture_output=True, text=True
    )
    assert ok.returncode == 0, ok.stderr
    bad = subprocess.run(
        [str(exe), "check-config", "--config", str(good), "/nonexistent.toml"],
        check=False,
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2
    assert "cannot read" in bad.stderr
