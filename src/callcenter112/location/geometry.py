"""RFC 5491 shapes reduced to a centre point and an uncertainty radius in metres.

The map and the agency need "where, and how sure": one point and one circle.
The reductions follow RFC 7459 §5.2 ("Shape Conversion"): a shape becomes the
smallest circle centred on its centroid that still holds the whole shape, so
the caller stays inside it (the confidence is not lowered):

- Circle / Sphere: centre, radius as given.
- Ellipse / Ellipsoid: centre; radius = semi-major axis (the ellipse lies
  inside that circle; the vertical axis of an ellipsoid does not move a map pin).
- Polygon / Prism: the area centroid (RFC 7459 §5.2.4 centroid of a polygon,
  on the local plane below); radius = distance to the farthest vertex.
- ArcBand: the centroid of the annular sector, d = (2/3)·(R³-r³)/(R²-r²) ·
  sin(θ/2)/(θ/2) from the centre along the bisecting bearing (standard
  centroid of a circular-annulus sector); radius = farthest point of the
  sector's outline from it, sampled every degree.
- Point: itself, uncertainty not stated (None).

Distances use a local tangent plane around the shape (equirectangular
projection on the IUGG mean Earth radius): over the ≤100 km a useful fix
spans, its error is far below the uncertainty being drawn (< 0.1 %).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = [
    "EARTH_RADIUS_M",
    "arcband_centroid",
    "destination",
    "distance_m",
    "polygon_centroid",
]

EARTH_RADIUS_M = 6_371_008.8  # IUGG mean radius R1 (Moritz, Geodetic Reference System 1980)


def _to_plane(lat0: float, lon0: float, lat: float, lon: float) -> tuple[float, float]:
    k = math.pi / 180.0 * EARTH_RADIUS_M
    return (lon - lon0) * k * math.cos(math.radians(lat0)), (lat - lat0) * k


def _from_plane(lat0: float, lon0: float, x: float, y: float) -> tuple[float, float]:
    k = math.pi / 180.0 * EARTH_RADIUS_M
    cos0 = max(math.cos(math.radians(lat0)), 1e-9)
    return lat0 + y / k, lon0 + x / (k * cos0)


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance (haversine) in metres."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


def destination(lat: float, lon: float, bearing_deg: float, metres: float) -> tuple[float, float]:
    """The point `metres` from (lat, lon) on `bearing_deg` (clockwise from north), local plane."""
    b = math.radians(bearing_deg)
    return _from_plane(lat, lon, metres * math.sin(b), metres * math.cos(b))


def polygon_centroid(points: Sequence[tuple[float, float]]) -> tuple[float, float, float]:
    """(lat, lon, radius_m) of a polygon given as (lat, lon) vertices.

    Area centroid by the shoelace formula on the local plane; a degenerate
    (zero-area) ring falls back to the mean of its vertices.
    """
    ring = list(points)
    if len(ring) > 1 and ring[0] == ring[-1]:
        ring.pop()
    lat0, lon0 = ring[0]
    xy = [_to_plane(lat0, lon0, la, lo) for la, lo in ring]
    area2 = cx = cy = 0.0
    for (x1, y1), (x2, y2) in zip(xy, xy[1:] + xy[:1], strict=True):
        cross = x1 * y2 - x2 * y1
        area2 += cross
        cx += (x1 + x2) * cross
        cy += (y1 + y2) * cross
    if abs(area2) < 1e-6:
        cx = sum(x for x, _ in xy) / len(xy)
        cy = sum(y for _, y in xy) / len(xy)
    else:
        cx, cy = cx / (3 * area2), cy / (3 * area2)
    radius = max(math.hypot(x - cx, y - cy) for x, y in xy)
    lat, lon = _from_plane(lat0, lon0, cx, cy)
    return lat, lon, radius


def arcband_centroid(
    lat: float,
    lon: float,
    *,
    inner_m: float,
    outer_m: float,
    start_deg: float,
    opening_deg: float,
) -> tuple[float, float, float]:
    """(lat, lon, radius_m) of an RFC 5491 §5.2.6 ArcBand (angles clockwise from north)."""
    theta = math.radians(min(max(opening_deg, 0.0), 360.0))
    r, big = min(inner_m, outer_m), max(inner_m, outer_m)
    if theta <= 0 or big <= 0:
        return lat, lon, big
    half = theta / 2
    if big - r < 1e-9:
        d = big * math.sin(half) / half
    else:
        d = (2.0 / 3.0) * (big**3 - r**3) / (big**2 - r**2) * math.sin(half) / half
    bisector = math.radians(start_deg) + half
    cx, cy = d * math.sin(bisector), d * math.cos(bisector)
    steps = max(2, int(math.degrees(theta)) + 1)
    far = 0.0
    for i in range(steps + 1):
        a = math.radians(start_deg) + theta * i / steps
        for rr in (r, big):
            far = max(far, math.hypot(rr * math.sin(a) - cx, rr * math.cos(a) - cy))
    clat, clon = _from_plane(lat, lon, cx, cy)
    return clat, clon, far
