"""The `[aml]` and `[map]` configuration sections: defaults, validation naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from callcenter112.config import ConfigError, load_config, parse_config

ROOT = Path(__file__).resolve().parent.parent


def problems(data: dict[str, object]) -> list[str]:
    with pytest.raises(ConfigError) as err:
        parse_config(data, source="t")
    return [str(p) for p in err.value.problems]


def test_defaults_osm_tiles_shipped_map_and_ten_minute_window() -> None:
    cfg = parse_config({}, source="t")
    assert cfg.map.tile_url == "https://tile.openstreetmap.org/{z}/{x}/{y}.png"
    assert "OpenStreetMap" in cfg.map.attribution
    assert cfg.map.areas == "config/ambon-map.geojson"
    assert (cfg.aml.key, cfg.aml.allow, cfg.aml.match_window_s, cfg.aml.region) == (
        "",
        [],
        600.0,
        "ID",
    )


def test_shipped_config_loads_with_its_map() -> None:
    cfg = load_config(ROOT / "config" / "callcenter112.toml")
    assert cfg.path(cfg.map.areas).is_file()


def test_values_are_read() -> None:
    cfg = parse_config(
        {
            "aml": {"key": "s3cret", "allow": ["192.0.2.0/24", "::1"], "match_window_s": 120},
            "map": {"tile_url": "", "attribution": "x", "areas": "a.geojson"},
        },
        source="t",
    )
    assert [str(n) for n in cfg.aml.networks] == ["192.0.2.0/24", "::1/128"]
    assert cfg.map.tile_url == ""


@pytest.mark.parametrize(
    ("data", "key", "why"),
    [
        ({"aml": {"allow": ["10.0.0.0/33"]}}, "aml.allow", "not an IP address or network"),
        ({"aml": {"match_window_s": 1}}, "aml.match_window_s", "10"),
        ({"aml": {"region": "indonesia"}}, "aml.region", ""),
        ({"aml": {"secret": "x"}}, "aml.secret", ""),
        ({"map": {"tile_url": "ftp://x/{z}/{x}/{y}"}}, "map.tile_url", "http(s)://"),
        ({"map": {"tile_url": "https://x/{z}/{x}.png"}}, "map.tile_url", "{y}"),
    ],
)
def test_bad_values_name_the_key(data: dict[str, object], key: str, why: str) -> None:
    found = problems(data)
    assert any(p.startswith(key) and why in p for p in found), found
