"""A position → the kecamatan and kelurahan/desa it suggests, from shipped vector data.

The data is a GeoJSON FeatureCollection (shipped: ``config/ambon-map.geojson``,
``[map] areas``). Features carry ``properties.kind`` (``kecamatan``,
``kelurahan`` or ``desa``), ``name`` (a village as the console stores it:
"Kelurahan Benteng", "Desa Amahusu") and, for villages, ``kecamatan``.

- Polygon/MultiPolygon features (real outlines, when a city has them): the
  area the point lies in (ray casting, even-odd rule).
- Point features (reference points, what Kota Ambon ships): the nearest village
  point within `MAX_SUGGEST_M`, and its kecamatan.

A suggestion is only that: the operator confirms it on the console.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from .geometry import distance_m

__all__ = [
    "MAX_FEATURES",
    "MAX_SUGGEST_M",
    "AreaFeature",
    "AreaMap",
    "AreaMapError",
    "Suggestion",
    "parse_area_map",
]

# Farther than this from every reference point, the position is outside the city
# (Kota Ambon's villages are at most ~3 km apart).
MAX_SUGGEST_M: Final = 5_000.0
MAX_FEATURES: Final = 5_000
_KINDS: Final = ("kecamatan", "kelurahan", "desa")
Ring = tuple[tuple[float, float], ...]  # (lon, lat), GeoJSON order


class AreaMapError(ValueError):
    """The vector data file is not the expected GeoJSON; the message says where."""


@dataclass(frozen=True, slots=True, kw_only=True)
class AreaFeature:
    kind: str
    name: str
    kecamatan: str | None  # for villages
    point: tuple[float, float] | None  # (lat, lon)
    polygons: tuple[tuple[Ring, ...], ...]  # each: exterior ring, holes


@dataclass(frozen=True, slots=True, kw_only=True)
class Suggestion:
    kecamatan: str | None
    village: str | None
    distance_m: float | None  # to the reference point; None when inside an outline
    method: str  # "outline" or "nearest-point"

    def to_json(self) -> dict[str, object]:
        return {
            "kecamatan": self.kecamatan,
            "kelurahan": self.village,
            "distance_m": None if self.distance_m is None else round(self.distance_m),
            "method": self.method,
        }


def _inside(lon: float, lat: float, ring: Ring) -> bool:
    inside = False
    j = len(ring) - 1
    for i in range(len(ring)):
        xi, yi = ring[i]
        xj, yj = ring[j]
        if (yi > lat) != (yj > lat) and lon < (xj - xi) * (lat - yi) / (yj - yi) + xi:
            inside = not inside
        j = i
    return inside


@dataclass(frozen=True, slots=True, kw_only=True)
class AreaMap:
    name: str
    features: tuple[AreaFeature, ...]

    def _containing(self, lat: float, lon: float, kinds: Sequence[str]) -> AreaFeature | None:
        for f in self.features:
            if f.kind in kinds:
                for poly in f.polygons:
                    if (
                        poly
                        and _inside(lon, lat, poly[0])
                        and not any(_inside(lon, lat, h) for h in poly[1:])
                    ):
                        return f
        return None

    def suggest(self, lat: float, lon: float) -> Suggestion | None:
        """The area this position suggests, or None when it is outside the data."""
        village = self._containing(lat, lon, ("kelurahan", "desa"))
        kec = self._containing(lat, lon, ("kecamatan",))
        if village is not None or kec is not None:
            return Suggestion(
                kecamatan=kec.name if kec else (village.kecamatan if village else None),
                village=village.name if village else None,
                distance_m=None,
                method="outline",
            )
        best: tuple[float, AreaFeature] | None = None
        for f in self.features:
            if f.kind == "kecamatan" or f.point is None:
                continue
            d = distance_m(lat, lon, f.point[0], f.point[1])
            if best is None or d < best[0]:
                best = (d, f)
        if best is None or best[0] > MAX_SUGGEST_M:
            return None
        return Suggestion(
            kecamatan=best[1].kecamatan,
            village=best[1].name,
            distance_m=best[0],
            method="nearest-point",
        )


def _position(value: object, where: str) -> tuple[float, float]:
    if (
        not isinstance(value, list)
        or len(value) < 2
        or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value[:2])
    ):
        raise AreaMapError(f"{where}: expected [lon, lat]")
    lon, lat = float(value[0]), float(value[1])
    if not (-180 <= lon <= 180 and -90 <= lat <= 90 and math.isfinite(lon + lat)):
        raise AreaMapError(f"{where}: [{lon}, {lat}] is not a position")
    return lon, lat


def _polygon(value: object, where: str) -> tuple[Ring, ...]:
    if not isinstance(value, list) or not value:
        raise AreaMapError(f"{where}: expected a list of rings")
    rings = []
    for i, ring in enumerate(value):
        if not isinstance(ring, list) or len(ring) < 4:
            raise AreaMapError(f"{where}[{i}]: a ring needs at least 4 positions")
        rings.append(tuple(_position(p, f"{where}[{i}]") for p in ring))
    return tuple(rings)


def parse_area_map(data: Mapping[str, object], *, source: str = "<map>") -> AreaMap:
    """Check and read a GeoJSON FeatureCollection; `AreaMapError` names what is wrong."""
    if data.get("type") != "FeatureCollection":
        raise AreaMapError(f"{source}: type: expected a GeoJSON FeatureCollection")
    rows = data.get("features")
    if not isinstance(rows, list) or not rows:
        raise AreaMapError(f"{source}: features: expected a non-empty list")
    if len(rows) > MAX_FEATURES:
        raise AreaMapError(f"{source}: features: more than {MAX_FEATURES}")
    found = []
    for i, row in enumerate(rows):
        where = f"{source}: features[{i}]"
        if not isinstance(row, dict):
            raise AreaMapError(f"{where}: expected an object")
        props = row.get("properties")
        geom = row.get("geometry")
        if not isinstance(props, dict) or not isinstance(geom, dict):
            raise AreaMapError(f"{where}: needs properties and geometry")
        kind, name = props.get("kind"), props.get("name")
        if kind not in _KINDS:
            raise AreaMapError(f"{where}.properties.kind: one of {', '.join(_KINDS)}")
        if not isinstance(name, str) or not name.strip():
            raise AreaMapError(f"{where}.properties.name: expected a name")
        kec = props.get("kecamatan")
        if kind != "kecamatan" and not isinstance(kec, str):
            raise AreaMapError(f"{where}.properties.kecamatan: a village needs its kecamatan")
        gtype, coords = geom.get("type"), geom.get("coordinates")
        point = None
        polygons: tuple[tuple[Ring, ...], ...] = ()
        if gtype == "Point":
            lon, lat = _position(coords, f"{where}.geometry.coordinates")
            point = (lat, lon)
        elif gtype == "Polygon":
            polygons = (_polygon(coords, f"{where}.geometry.coordinates"),)
        elif gtype == "MultiPolygon" and isinstance(coords, list):
            polygons = tuple(
                _polygon(p, f"{where}.geometry.coordinates[{j}]") for j, p in enumerate(coords)
            )
        else:
            raise AreaMapError(f"{where}.geometry.type: Point, Polygon or MultiPolygon")
        found.append(
            AreaFeature(
                kind=str(kind),
                name=name.strip(),
                kecamatan=kec if isinstance(kec, str) else None,
                point=point,
                polygons=polygons,
            )
        )
    name = data.get("name")
    return AreaMap(name=name if isinstance(name, str) else source, features=tuple(found))
