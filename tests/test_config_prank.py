"""Config keys of issue 12: [[category]], [dispositions], [callers], the silent and
watch-list keys, and the one rule for ivr.digits / queue.priority."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from callcenter112.config import CATEGORIES, ConfigError, load_config, parse_config

ROOT = Path(__file__).resolve().parents[1]
TRUNK = {"trunk": [{"name": "t", "allow": ["127.0.0.1"]}]}


def problems(data: dict[str, object]) -> dict[str, str]:
    with pytest.raises(ConfigError) as err:
        parse_config({**TRUNK, **data})
    return {p.path: p.reason for p in err.value.problems}


def cat(id: str, **kw: object) -> dict[str, object]:
    return {"id": id, "label": id.title(), **kw}


def test_shipped_file_is_the_ambon_set() -> None:
    cfg = load_config(ROOT / "config" / "callcenter112.toml")
    assert cfg.category_ids == CATEGORIES
    assert cfg.ivr.digits == {"1": "medical", "2": "fire", "3": "disaster", "4": "police"}
    assert cfg.queue.priority["security"] == 2 and cfg.queue.priority["hearse"] == 3
    assert cfg.queue.watch_list_max_extra_wait_s == 30 and cfg.ivr.silent_after_s == 12
    assert cfg.dispositions.keys["prank"] == "p" and cfg.callers.repeat_calls_10min == 3
    labels = {c.id: (c.label, c.label_en) for c in cfg.categories}
    assert labels["hearse"] == ("Mobil jenazah", "Hearse")


def test_defaults_without_any_category_table() -> None:
    cfg = parse_config(dict(TRUNK))
    assert cfg.category_ids == CATEGORIES
    assert cfg.ivr.digits["1"] == "medical" and cfg.queue.priority["unknown"] == 3


def test_a_city_of_its_own_derives_keys_priority_and_skills() -> None:
    cfg = parse_config(
        {
            **TRUNK,
            "category": [cat("flood", priority=1, ivr_key="1"), cat("medical", ivr_key="2")],
            "operator": [{"user": "op1", "password": "secret"}],
        }
    )
    assert cfg.category_ids == ("flood", "medical", "unknown")
    assert cfg.ivr.digits == {"1": "flood", "2": "medical"}
    assert cfg.queue.priority == {"flood": 1, "medical": 2, "unknown": 3}
    assert cfg.operator[0].skills == ["flood", "medical"]


def test_old_keys_still_work_and_override() -> None:
    cfg = parse_config(
        {
            **TRUNK,
            "category": [cat("medical"), cat("fire")],
            "ivr": {"digits": {"7": "fire"}},
            "queue": {"priority": {"fire": 0}},
        }
    )
    assert cfg.ivr.digits == {"7": "fire"}
    assert cfg.queue.priority == {"medical": 2, "fire": 0, "unknown": 3}


@pytest.mark.parametrize(
    ("data", "path", "fragment"),
    [
        (
            {"category": [cat("medical", ivr_key="1")], "ivr": {"digits": {"2": "medical"}}},
            "category[0].ivr_key",
            "one place",
        ),
        ({"category": [cat("medical"), cat("medical")]}, "category[1].id", "duplicate"),
        ({"category": [cat("Medical")]}, "category[0].id", "pattern"),
        ({"category": [cat("unknown", ivr_key="5")]}, "category[0].ivr_key", "no key"),
        (
            {"category": [cat("a", ivr_key="1"), cat("b", ivr_key="1")]},
            "category[1].ivr_key",
            "already used",
        ),
        ({"category": [cat("a", ivr_key="5")]}, "ivr", "silent_key"),
        ({"category": [cat("a", ivr_key="x")]}, "category[0].ivr_key", "DTMF"),
        ({"ivr": {"digits": {"1": "weather"}}}, "ivr.digits.1", "no [[category]]"),
        ({"ivr": {"digits": {"1": "unknown"}}}, "ivr.digits.1", "cannot choose"),
        ({"queue": {"priority": {"weather": 1}}}, "queue.priority.weather", "no [[category]]"),
        (
            {"operator": [{"user": "o", "password": "secret", "skills": ["cooking"]}]},
            "operator[0].skills[0]",
            "cooking",
        ),
        ({"dispositions": {"keys": {"prank": "g"}}}, "dispositions.keys", "already used"),
        ({"dispositions": {"keys": {"maybe": "m"}}}, "dispositions.keys.maybe.[key]", "ghost"),
        ({"dispositions": {"keys": {"prank": "PP"}}}, "dispositions.keys", "one lowercase"),
        ({"callers": {"repeat_calls_10min": 1}}, "callers.repeat_calls_10min", "greater"),
        (
            {"queue": {"watch_list_max_extra_wait_s": -1}},
            "queue.watch_list_max_extra_wait_s",
            "greater",
        ),
        ({"ivr": {"silent_after_s": 1}}, "ivr.silent_after_s", "greater"),
    ],
)
def test_bad_keys_are_named(data: dict[str, object], path: str, fragment: str) -> None:
    found = problems(data)
    assert path in found, found
    assert fragment in found[path]


def test_check_config_names_a_bad_category_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[[trunk]]\nname = "t"\nallow = ["127.0.0.1"]\n'
        '[[category]]\nid = "hearse"\nlabel = "Mobil jenazah"\nivr_key = "9"\n'
    )
    done = subprocess.run(
        [sys.executable, "-m", "callcenter112", "check-config", str(bad)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert "english_key" in done.stdout + done.stderr
