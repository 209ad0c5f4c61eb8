"""location/match.py, sink.py, areas.py (with the shipped Ambon data) and eido.py."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from callcenter112.location.areas import AreaMapError, parse_area_map
from callcenter112.location.eido import incident_to_eido
from callcenter112.location.fix import Fix, location_json
from callcenter112.location.match import Candidate, PendingFixes, match_fix
from callcenter112.location.sink import FixBoard, LocationSink
from callcenter112.web.areas import parse_city_areas

ROOT = Path(__file__).resolve().parent.parent
T = 1_796_000_000.0
ME = "+6281234567890"


def fix(at: float = T, caller: str | None = ME, lat: float = -3.6955) -> Fix:
    return Fix.position(lat=lat, lon=128.179, radius_m=20, source="aml-https", at=at, caller=caller)


def cand(
    iid: str, arrived: float, *, caller: str = ME, ended: float | None = None, live: bool = False
) -> Candidate:
    return Candidate(incident_id=iid, caller=caller, arrived_at=arrived, ended_at=ended, live=live)


def test_live_call_wins_over_recent_incident() -> None:
    cands = [
        cand("old", T - 100, ended=T - 50),
        cand("live", T - 20, live=True),
        cand("other", T, caller="+62811", live=True),
    ]
    assert match_fix(ME, T, cands, window_s=600) == "live"


def test_recent_incident_within_window_newest_first() -> None:
    cands = [cand("a", T - 500, ended=T - 400), cand("b", T - 300, ended=T - 200)]
    assert match_fix(ME, T, cands, window_s=600) == "b"
    assert match_fix(ME, T, cands, window_s=250) is None  # b arrived 300 s before
    assert match_fix(ME, T, [cand("c", T - 100, ended=T - 90)], window_s=60) is None
    assert match_fix(None, T, cands, window_s=600) is None
    assert match_fix("+6299", T, cands, window_s=600) is None


def test_pending_fixes_wait_for_their_call_and_expire() -> None:
    pending = PendingFixes(window_s=60, limit=3)
    pending.add(fix(T), now=T)
    pending.add(fix(T, caller="+6211"), now=T + 1)
    assert pending.take("+6299", now=T + 2) == []
    got = pending.take(ME, now=T + 10)
    assert len(got) == 1 and got[0].caller == ME
    assert pending.take(ME, now=T + 11) == []
    assert len(pending) == 1
    pending.expire(T + 100)
    assert len(pending) == 0
    for i in range(5):
        pending.add(fix(T + i), now=T + i)
    assert len(pending) == 3  # bounded


def test_fix_board_is_a_location_sink() -> None:
    board = FixBoard(window_s=60)
    sink: LocationSink = board
    sink.fix_received(fix(T), caller=ME, incident_id="20261207-0001", received_at=T)
    sink.fix_received(fix(T + 1, lat=-3.7), caller=ME, incident_id=None, received_at=T + 1)
    assert [f.lat for f in board.fixes("20261207-0001")] == [-3.6955]
    assert board.claim("20261207-0002", ME, now=T + 5)[0].lat == -3.7
    assert [f.lat for f in board.fixes("20261207-0002")] == [-3.7]
    assert board.version == 3


def load_map() -> dict[str, object]:
    data = json.loads((ROOT / "config" / "ambon-map.geojson").read_text())
    assert isinstance(data, dict)
    return data


def test_shipped_map_names_every_place_of_the_areas_file() -> None:
    areas = parse_city_areas(tomllib.loads((ROOT / "config" / "ambon-areas.toml").read_text()))
    amap = parse_area_map(load_map())
    kecamatan = {f.name for f in amap.features if f.kind == "kecamatan"}
    villages = {(f.kecamatan, f.name) for f in amap.features if f.kind != "kecamatan"}
    assert kecamatan == {k.name for k in areas.kecamatan}
    assert villages == {(k.name, v) for k in areas.kecamatan for v in k.villages}
    for kec, village in villages:
        assert areas.check(kec, village) is None


@pytest.mark.parametrize(
    ("lat", "lon", "kecamatan", "village"),
    [
        (-3.6957, 128.1792, "Sirimau", "Kelurahan Honipopu"),  # by the port
        (-3.7101, 128.0905, "Teluk Ambon", "Desa Laha"),  # Pattimura airport
        (-3.6512, 128.1915, "Teluk Ambon", "Desa Poka"),  # Universitas Pattimura
        (-3.7832, 128.1085, "Nusaniwe", "Desa Latuhalat"),
        (-3.6255, 128.2548, "Teluk Ambon Baguala", "Desa Passo"),
    ],
)
def test_a_position_suggests_its_village(
    lat: float, lon: float, kecamatan: str, village: str
) -> None:
    found = parse_area_map(load_map()).suggest(lat, lon)
    assert found is not None and found.method == "nearest-point"
    assert (found.kecamatan, found.village) == (kecamatan, village)
    assert found.distance_m is not None and found.distance_m < 500


def test_far_away_suggests_nothing() -> None:
    assert parse_area_map(load_map()).suggest(-6.2, 106.8) is None  # Jakarta


def test_outlines_win_over_points() -> None:
    square = [[128.0, -4.0], [128.5, -4.0], [128.5, -3.5], [128.0, -3.5], [128.0, -4.0]]
    hole = [[128.1, -3.8], [128.2, -3.8], [128.2, -3.7], [128.1, -3.7], [128.1, -3.8]]
    data = {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "properties": {"kind": "kecamatan", "name": "K"},
                "geometry": {"type": "Polygon", "coordinates": [square, hole]},
            },
            {
                "type": "Feature",
                "properties": {"kind": "desa", "name": "Desa D", "kecamatan": "K"},
                "geometry": {"type": "MultiPolygon", "coordinates": [[hole]]},
            },
        ],
    }
    amap = parse_area_map(data)
    inside = amap.suggest(-3.6, 128.4)
    assert inside is not None and (inside.kecamatan, inside.village, inside.method) == (
        "K",
        None,
        "outline",
    )
    in_hole = amap.suggest(-3.75, 128.15)
    assert in_hole is not None and (in_hole.kecamatan, in_hole.village) == ("K", "Desa D")
    assert amap.suggest(10.0, 10.0) is None


@pytest.mark.parametrize(
    ("data", "why"),
    [
        ({"type": "x"}, "FeatureCollection"),
        ({"type": "FeatureCollection", "features": []}, "non-empty"),
        ({"type": "FeatureCollection", "features": [{"properties": {}, "geometry": {}}]}, "kind"),
        (
            {
                "type": "FeatureCollection",
                "features": [{"properties": {"kind": "desa", "name": "x"}, "geometry": {}}],
            },
            "needs its kecamatan",
        ),
        (
            {
                "type": "FeatureCollection",
                "features": [
                    {
                        "properties": {"kind": "kecamatan", "name": "x"},
                        "geometry": {"type": "Point", "coordinates": [500, 1]},
                    }
                ],
            },
            "not a position",
        ),
    ],
)
def test_bad_map_data_names_the_problem(data: dict[str, object], why: str) -> None:
    with pytest.raises(AreaMapError, match=why):
        parse_area_map(data)


def test_eido_carries_the_best_fix_and_the_typed_place() -> None:
    fixes = [fix(T), Fix.invalid(source="pidf", at=T + 1, reason="broken"), fix(T + 2, lat=-3.70)]
    incident = {
        "id": "20261207-0001",
        "caller": "081234567890",
        "caller_name": None,
        "call_id": "abc@carrier",
        "category": "fire",
        "status": "completed",
        "operator": "op1",
        "disposition": "genuine",
        "location_text": "dekat Pasar Mardika",
        "kecamatan": "Sirimau",
        "kelurahan": "Kelurahan Rijali",
        "description": "kebakaran rumah",
        "agencies_notified": ["damkar"],
        "arrived_at": "2026-12-07T01:00:00.000Z",
        "operator_answered_at": "2026-12-07T01:00:09.000Z",
        "ended_at": "2026-12-07T01:05:00.000Z",
        "location": location_json(fixes),
    }
    eido = incident_to_eido(incident, centre="112.ambon.go.id")
    json.dumps(eido)
    assert eido["eidoMessageIdentifier"] == "urn:emergency:uid:eido:20261207-0001:112.ambon.go.id"
    inc = eido["incidentComponent"]
    assert isinstance(inc, dict) and inc["incidentStatusCommonType"] == "Closed"
    locs = eido["locationComponent"]
    assert isinstance(locs, list)
    assert locs[0]["geo"] == {
        "type": "Circle",
        "coordinates": [128.179, -3.7],
        "radius": 20.0,
        "uom": "urn:ogc:def:uom:EPSG::9001",
    }
    assert locs[0]["civicAddressText"] == {
        "A3": "Sirimau",
        "A4": "Kelurahan Rijali",
        "LOC": "dekat Pasar Mardika",
    }
    assert len(locs) == 3  # best + the two valid fixes; the invalid one is not a location
    assert eido["agencyComponent"] == [{"agencyIdentifier": "damkar"}]
    call = eido["callComponent"]
    assert isinstance(call, list) and call[0]["callerNumber"] == "081234567890"


def test_eido_without_location() -> None:
    eido = incident_to_eido({"id": "x", "status": "active"}, centre="c")
    assert eido["locationComponent"] == [{"$id": "loc-0"}]
