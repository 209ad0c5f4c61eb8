"""The `Fix` record: one position report, valid or not, and the incident's location JSON.

Every report that arrives becomes a `Fix`, also the broken ones (``valid=False``
with the reason), so an auditor can see that a carrier sent something and why
it was not shown. `location_json` turns the fixes of one incident into the
``location`` object of the incident JSON (DESIGN §4):
``{lat, lon, radius_m, source, at, valid, fixes: [...]}``, where the top-level
position is the newest valid fix (an operator's pin is a newer, deliberate
correction, so it wins by the same rule).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Literal

__all__ = [
    "FIX_SOURCES",
    "MAX_RADIUS_M",
    "MAX_RAW",
    "Fix",
    "FixSource",
    "check_position",
    "format_time",
    "location_json",
]

FixSource = Literal["pidf", "aml-https", "aml-sms", "operator"]
FIX_SOURCES: tuple[FixSource, ...] = ("pidf", "aml-https", "aml-sms", "operator")

# A radius wider than this says nothing useful about where to send help: Kota
# Ambon measures ~40 km across; 3GPP TS 23.032 §6.2 uncertainty codes top out at
# 1800 km, which a cell-ID fix can approach. Kept, marked invalid.
MAX_RADIUS_M = 100_000.0
# What of the document that arrived is kept on the fix for the auditor (bytes).
MAX_RAW = 4096


def format_time(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def check_position(lat: float, lon: float, radius_m: float | None) -> str | None:
    """Why these numbers are not a position on Earth (WGS 84), or None."""
    if not (math.isfinite(lat) and math.isfinite(lon)):
        return "latitude/longitude is not a finite number"
    if not -90.0 <= lat <= 90.0:
        return f"latitude {lat} outside -90..90"
    if not -180.0 <= lon <= 180.0:
        return f"longitude {lon} outside -180..180"
    if radius_m is not None:
        if not math.isfinite(radius_m) or radius_m < 0:
            return f"uncertainty {radius_m} m is not a distance"
        if radius_m > MAX_RADIUS_M:
            return f"uncertainty {radius_m:.0f} m wider than {MAX_RADIUS_M:.0f} m"
    return None


@dataclass(frozen=True, slots=True, kw_only=True)
class Fix:
    """One position report. `lat`/`lon` are None only for an invalid fix.

    `radius_m` is the uncertainty radius in metres (None: not stated);
    `confidence` the percentage that the caller lies inside it (None: not
    stated; RFC 7459 §4 recommends 95 when converting). `at` is when the
    position was measured when the report says so, else when it arrived
    (epoch seconds, UTC). `caller` is the number the report speaks for, when
    it names one (AML), normalised E.164. `shape` names the reported shape
    (PIDF-LO), the positioning method (AML: "GPS", "G", "W"…) or "pin" (operator).
    """

    lat: float | None
    lon: float | None
    radius_m: float | None
    source: FixSource
    at: float
    confidence: int | None = None
    valid: bool = True
    reason: str | None = None
    shape: str | None = None
    altitude_m: float | None = None
    caller: str | None = None
    raw: str = ""

    @classmethod
    def invalid(
        cls, *, source: FixSource, at: float, reason: str, raw: str = "", caller: str | None = None
    ) -> Fix:
        return cls(
            lat=None,
            lon=None,
            radius_m=None,
            source=source,
            at=at,
            valid=False,
            reason=reason[:300],
            raw=raw[:MAX_RAW],
            caller=caller,
        )

    @classmethod
    def position(
        cls,
        *,
        lat: float,
        lon: float,
        radius_m: float | None,
        source: FixSource,
        at: float,
        confidence: int | None = None,
        shape: str | None = None,
        altitude_m: float | None = None,
        caller: str | None = None,
        raw: str = "",
    ) -> Fix:
        """A fix from numbers; checked, so out-of-range numbers give an invalid fix."""
        fix = cls(
            lat=lat,
            lon=lon,
            radius_m=None if radius_m is None else round(radius_m, 1),
            source=source,
            at=at,
            confidence=confidence,
            shape=shape,
            altitude_m=altitude_m if altitude_m is not None and math.isfinite(altitude_m) else None,
            caller=caller,
            raw=raw[:MAX_RAW],
        )
        problem = check_position(lat, lon, radius_m)
        if problem is None and confidence is not None and not 0 <= confidence <= 100:
            problem = f"confidence {confidence} outside 0..100"
        if problem is None:
            return fix
        # No half-believed position: the numbers are in the reason, not on the map.
        return replace(fix, lat=None, lon=None, radius_m=None, valid=False, reason=problem[:300])

    def with_caller(self, caller: str | None) -> Fix:
        return replace(self, caller=caller)

    def to_json(self) -> dict[str, object]:
        return {
            "lat": None if self.lat is None else round(self.lat, 7),
            "lon": None if self.lon is None else round(self.lon, 7),
            "radius_m": self.radius_m,
            "source": self.source,
            "at": format_time(self.at),
            "confidence": self.confidence,
            "valid": self.valid,
            "reason": self.reason,
            "shape": self.shape,
            "altitude_m": self.altitude_m,
        }


def location_json(fixes: Iterable[Fix]) -> dict[str, object]:
    """The incident JSON's ``location``: the newest valid fix on top, every fix listed.

    With no valid fix the position keys are null and ``valid`` is false;
    ``fixes`` lists them all, oldest first.
    """
    ordered = sorted(fixes, key=lambda f: f.at)
    best = next((f for f in reversed(ordered) if f.valid), None)
    return {
        "lat": None if best is None else best.lat,
        "lon": None if best is None else best.lon,
        "radius_m": None if best is None else best.radius_m,
        "source": None if best is None else best.source,
        "at": None if best is None else format_time(best.at),
        "valid": best is not None,
        "fixes": [f.to_json() for f in ordered],
    }
