"""The city's administrative areas for the console's location fields.

Operators record where an emergency is as free text plus a kecamatan
(district) and a kelurahan or desa (urban or rural village) picked from the
city's own list, so reports can be counted per area. The list lives in a
TOML file (`web.city_areas`, shipped: `config/ambon-areas.toml`) shaped as::

    city = "Kota Ambon"
    [[kecamatan]]
    name = "Nusaniwe"
    kelurahan = ["Benteng", ...]
    desa = ["Amahusu", ...]

A village is stored on the incident as "Kelurahan Benteng" or "Desa
Amahusu": the kind is part of the name because one kecamatan may have a
kelurahan and a desa of the same name (Nusaniwe, Urimessing).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

__all__ = ["AreaError", "CityAreas", "Kecamatan", "load_city_areas", "parse_city_areas"]

_MAX_NAME = 100


class AreaError(ValueError):
    """The areas file is unreadable or malformed; the message names the key."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Kecamatan:
    name: str
    kelurahan: tuple[str, ...]
    desa: tuple[str, ...]

    @property
    def villages(self) -> tuple[str, ...]:
        """Every village as stored on an incident: "Kelurahan X", then "Desa Y"."""
        return tuple(f"Kelurahan {n}" for n in self.kelurahan) + tuple(
            f"Desa {n}" for n in self.desa
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class CityAreas:
    city: str
    kecamatan: tuple[Kecamatan, ...]

    def named(self, name: str) -> Kecamatan | None:
        return next((k for k in self.kecamatan if k.name == name), None)

    def check(self, kecamatan: str | None, village: str | None) -> str | None:
        """Why this pair is not a place of the city, or None when it is.

        Both may be empty; a village needs its kecamatan and must lie in it.
        """
        if not kecamatan:
            return "kelurahan/desa given without its kecamatan" if village else None
        k = self.named(kecamatan)
        if k is None:
            return f"{kecamatan!r} is not a kecamatan of {self.city}"
        if village and village not in k.villages:
            return f"{village!r} is not a kelurahan or desa of kecamatan {kecamatan}"
        return None


def _names(raw: object, where: str) -> tuple[str, ...]:
    if not isinstance(raw, list):
        raise AreaError(f"{where}: expected a list of names")
    out: list[str] = []
    for i, item in enumerate(raw):
        if not isinstance(item, str) or not item.strip() or len(item) > _MAX_NAME:
            raise AreaError(f"{where}[{i}]: expected a name of 1-{_MAX_NAME} characters")
        if item in out:
            raise AreaError(f"{where}[{i}]: {item!r} is listed twice")
        out.append(item.strip())
    return tuple(out)


def parse_city_areas(data: dict[str, object], *, source: str = "<areas>") -> CityAreas:
    city = data.get("city")
    if not isinstance(city, str) or not city.strip():
        raise AreaError(f"{source}: city: expected the city's name")
    rows = data.get("kecamatan")
    if not isinstance(rows, list) or not rows:
        raise AreaError(f"{source}: kecamatan: expected at least one [[kecamatan]] table")
    found: list[Kecamatan] = []
    for i, row in enumerate(rows):
        where = f"{source}: kecamatan[{i}]"
        if not isinstance(row, dict):
            raise AreaError(f"{where}: expected a table")
        name = row.get("name")
        if not isinstance(name, str) or not name.strip() or len(name) > _MAX_NAME:
            raise AreaError(f"{where}.name: expected a name of 1-{_MAX_NAME} characters")
        if any(k.name == name for k in found):
            raise AreaError(f"{where}.name: {name!r} is listed twice")
        found.append(
            Kecamatan(
                name=name.strip(),
                kelurahan=_names(row.get("kelurahan", []), f"{where}.kelurahan"),
                desa=_names(row.get("desa", []), f"{where}.desa"),
            )
        )
    return CityAreas(city=city.strip(), kecamatan=tuple(found))


def load_city_areas(path: Path) -> CityAreas:
    """Read and check an areas file; raises `AreaError` naming the problem."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise AreaError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise AreaError(f"{path}: {exc}") from None
    return parse_city_areas(data, source=str(path))
