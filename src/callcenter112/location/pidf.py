"""PIDF-LO (RFC 4119, RFC 5491): parse with a hardened XML parser, reduce, serialize.

Parsing: `parse_pidf(data, content_type=..., now=...)` returns one `Fix` per
geodetic shape in the document (every ``gp:location-info`` under a PIDF
tuple, device or person), each reduced to a point and an uncertainty radius
by `geometry` (RFC 7459 §5.2). Every RFC 5491 §5.2 shape is read: Point,
Circle, Ellipse, ArcBand, Polygon, Sphere, Ellipsoid, Prism; coordinates in
EPSG 4326 (2-D) or EPSG 4979 (3-D, the altitude kept), lengths in metres
(EPSG 9001), angles in degrees (EPSG 9102) or radians (EPSG 9101).

Hostile or broken input never raises: a body over `MAX_PIDF_SIZE`, a DTD
(billion laughs), an entity, an external reference, malformed XML, the
wrong content type or impossible numbers each give a single ``valid=False``
fix with the reason. XML is read by defusedxml over the standard library's
expat with DTDs, entities and external references forbidden (see
docs/decisions.md, "PIDF-LO XML parser").

Serializing: `serialize(fix, entity=...)` writes a by-value PIDF-LO (a
Circle, or a Point without uncertainty) for the INVITE that hands a call to
an agency; it round-trips through `parse_pidf`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import datetime
from html import escape
from typing import Final
from xml.etree.ElementTree import Element, ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

from .fix import Fix, FixSource, format_time
from .geometry import arcband_centroid, polygon_centroid

__all__ = [
    "MAX_PIDF_SIZE",
    "NS",
    "PIDF_CONTENT_TYPE",
    "iter_shapes",
    "parse_pidf",
    "serialize",
]

PIDF_CONTENT_TYPE: Final = "application/pidf+xml"  # RFC 3863 §6, RFC 4119 §3
# A PIDF-LO rides inside one SIP message (RFC 3261 §18.1.1: 65,535 bytes) or one
# HTTP dereference (RFC 6753); real ones are 1-3 KB. Anything larger is refused unread.
MAX_PIDF_SIZE: Final = 65_535
# Shapes read from one document: a device and a person with a few location-info each.
MAX_SHAPES: Final = 16
MAX_POLYGON_POINTS: Final = 256  # RFC 5491 §5.2.2 gives no bound; 3GPP TS 23.032 §5.6 allows 15

NS: Final = {
    "pidf": "urn:ietf:params:xml:ns:pidf",
    "gp": "urn:ietf:params:xml:ns:pidf:geopriv10",
    "gml": "http://www.opengis.net/gml",
    "gs": "http://www.opengis.net/pidflo/1.0",
    "dm": "urn:ietf:params:xml:ns:pidf:data-model",
    "con": "urn:ietf:params:xml:ns:geopriv:conf",
    "ca": "urn:ietf:params:xml:ns:pidf:geopriv10:civicAddr",
}
_CRS_2D: Final = "urn:ogc:def:crs:EPSG::4326"
_CRS_3D: Final = "urn:ogc:def:crs:EPSG::4979"
_UOM_METRE: Final = "urn:ogc:def:uom:EPSG::9001"
_UOM_DEGREE: Final = "urn:ogc:def:uom:EPSG::9102"
_UOM_RADIAN: Final = "urn:ogc:def:uom:EPSG::9101"
# RFC 5491 §5.2 does not state a confidence; RFC 7459 §4.2 reads an absent one as 95 %.
DEFAULT_CONFIDENCE: Final = 95


class _Bad(ValueError):
    """A shape that cannot be read (internal; becomes an invalid fix)."""


def _q(prefix: str, name: str) -> str:
    return f"{{{NS[prefix]}}}{name}"


def _excerpt(data: bytes) -> str:
    return data[:4096].decode("utf-8", "replace")


def _media(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def parse_pidf(
    data: bytes,
    *,
    now: float,
    content_type: str | None = PIDF_CONTENT_TYPE,
    source: FixSource = "pidf",
) -> tuple[Fix, ...]:
    """Every geodetic fix in a PIDF-LO document; at least one fix (maybe invalid)."""

    def bad(reason: str) -> tuple[Fix, ...]:
        return (Fix.invalid(source=source, at=now, reason=reason, raw=_excerpt(data)),)

    media = _media(content_type)
    if media != PIDF_CONTENT_TYPE:
        return bad(f"content type {media or 'none'!r} is not {PIDF_CONTENT_TYPE}")
    if len(data) > MAX_PIDF_SIZE:
        return (
            Fix.invalid(
                source=source,
                at=now,
                reason=f"document of {len(data)} bytes is larger than {MAX_PIDF_SIZE}",
            ),
        )
    try:
        root = fromstring(data, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as exc:
        return bad(f"refused XML: {type(exc).__name__}")
    except ParseError as exc:
        return bad(f"not well-formed XML: {exc}")
    except (ValueError, RecursionError, UnicodeError) as exc:  # expat on odd encodings
        return bad(f"unreadable XML: {type(exc).__name__}")
    if root.tag != _q("pidf", "presence"):
        return bad(f"root element {root.tag[:80]!r} is not a PIDF presence")
    at = _timestamp(root, now)
    fixes: list[Fix] = []
    civic = False
    for info in root.iter(_q("gp", "location-info")):
        for shape in info:
            if len(fixes) >= MAX_SHAPES:
                break
            if shape.tag.startswith("{" + NS["ca"] + "}"):
                civic = True
                continue
            if not (shape.tag.startswith("{" + NS["gml"]) or shape.tag.startswith("{" + NS["gs"])):
                continue
            fixes.append(_shape_fix(shape, info, at=at, source=source, raw=_excerpt(data)))
    if not fixes:
        reason = "civic address only (not geocoded)" if civic else "no geodetic location-info in it"
        return bad(reason)
    return tuple(fixes)


def _timestamp(root: Element, now: float) -> float:
    for tag in (_q("pidf", "timestamp"), _q("dm", "timestamp")):
        for el in root.iter(tag):
            text = (el.text or "").strip()
            try:
                parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
            except ValueError:
                continue
            if parsed.tzinfo is not None:
                return parsed.timestamp()
    return now


def _confidence(info: Element) -> int | None:
    el = info.find(_q("con", "confidence"))
    if el is None:
        return None
    try:
        value = int(float((el.text or "").strip()))
    except ValueError:
        raise _Bad("confidence is not a number") from None
    return value


def _numbers(text: str | None, what: str) -> list[float]:
    words = (text or "").split()
    if not words:
        raise _Bad(f"{what} is empty")
    try:
        return [float(w) for w in words[: MAX_POLYGON_POINTS * 3 + 1]]
    except ValueError:
        raise _Bad(f"{what} is not a list of numbers") from None


def _dimension(shape: Element) -> int:
    crs = shape.get("srsName")
    if crs is None:
        return 0  # decided by the coordinates
    if crs == _CRS_2D:
        return 2
    if crs == _CRS_3D:
        return 3
    raise _Bad(f"coordinate system {crs[:80]!r} is not EPSG 4326 or 4979")


def _pos(parent: Element, dim: int) -> tuple[float, float, float | None]:
    el = parent.find(_q("gml", "pos"))
    if el is None:
        raise _Bad(f"{_local(parent)} has no gml:pos")
    nums = _numbers(el.text, "gml:pos")
    if len(nums) not in (2, 3) or (dim and len(nums) != dim):
        raise _Bad(f"gml:pos has {len(nums)} numbers for a {dim or 2}-D position")
    return nums[0], nums[1], nums[2] if len(nums) == 3 else None


def _length(shape: Element, name: str) -> float:
    el = shape.find(_q("gs", name))
    if el is None:
        raise _Bad(f"{_local(shape)} has no gs:{name}")
    uom = el.get("uom", _UOM_METRE)
    if uom != _UOM_METRE:
        raise _Bad(f"gs:{name} unit {uom[:60]!r} is not metres (EPSG 9001)")
    value = _numbers(el.text, f"gs:{name}")[0]
    if not math.isfinite(value) or value < 0:
        raise _Bad(f"gs:{name} {value} is not a length")
    return value


def _angle(shape: Element, name: str) -> float:
    el = shape.find(_q("gs", name))
    if el is None:
        raise _Bad(f"{_local(shape)} has no gs:{name}")
    value = _numbers(el.text, f"gs:{name}")[0]
    uom = el.get("uom", _UOM_DEGREE)
    if uom == _UOM_RADIAN:
        return math.degrees(value)
    if uom != _UOM_DEGREE:
        raise _Bad(f"gs:{name} unit {uom[:60]!r} is not degrees or radians")
    return value


def _local(el: Element) -> str:
    return el.tag.rsplit("}", 1)[-1]


def _ring(polygon: Element, dim: int) -> list[tuple[float, float]]:
    ring = polygon.find(f"{_q('gml', 'exterior')}/{_q('gml', 'LinearRing')}")
    if ring is None:
        raise _Bad("gml:Polygon has no exterior LinearRing")
    pos_list = ring.find(_q("gml", "posList"))
    if pos_list is not None:
        step = dim or int(pos_list.get("srsDimension", "2") or 2)
        if step not in (2, 3):
            raise _Bad("gml:posList dimension is not 2 or 3")
        nums = _numbers(pos_list.text, "gml:posList")
        if len(nums) % step:
            raise _Bad(f"gml:posList has {len(nums)} numbers, not a multiple of {step}")
        points = [(nums[i], nums[i + 1]) for i in range(0, len(nums), step)]
    else:
        points = []
        for el in ring.iter(_q("gml", "pos")):
            nums = _numbers(el.text, "gml:pos")
            points.append((nums[0], nums[1]) if len(nums) >= 2 else (math.nan, math.nan))
    if len(points) > MAX_POLYGON_POINTS:
        raise _Bad(f"polygon has more than {MAX_POLYGON_POINTS} points")
    # RFC 5491 §5.2.2: at least 4 positions, the first repeated as the last.
    if len(points) < 4 or points[0] != points[-1]:
        raise _Bad("polygon ring needs ≥ 4 positions, the last equal to the first")
    for la, lo in points:
        if not (math.isfinite(la) and -90 <= la <= 90 and math.isfinite(lo) and -180 <= lo <= 180):
            raise _Bad(f"polygon position {la} {lo} is not on Earth")
    return points


def _reduce(shape: Element) -> tuple[float, float, float | None, float | None, bool]:
    """(lat, lon, radius_m, altitude_m, has_uncertainty) of one RFC 5491 shape."""
    name = _local(shape)
    dim = _dimension(shape)
    if name == "Point":
        lat, lon, alt = _pos(shape, dim)
        return lat, lon, None, alt, False
    if name in ("Circle", "Sphere"):
        lat, lon, alt = _pos(shape, dim)
        return lat, lon, _length(shape, "radius"), alt, True
    if name in ("Ellipse", "Ellipsoid"):
        lat, lon, alt = _pos(shape, dim)
        major, minor = _length(shape, "semiMajorAxis"), _length(shape, "semiMinorAxis")
        _angle(shape, "orientation")  # required by RFC 5491 §5.2.4; a circle ignores it
        return lat, lon, max(major, minor), alt, True
    if name == "ArcBand":
        lat, lon, alt = _pos(shape, dim)
        clat, clon, radius = arcband_centroid(
            lat,
            lon,
            inner_m=_length(shape, "innerRadius"),
            outer_m=_length(shape, "outerRadius"),
            start_deg=_angle(shape, "startAngle"),
            opening_deg=_angle(shape, "openingAngle"),
        )
        return clat, clon, radius, alt, True
    if name == "Polygon":
        lat, lon, radius = polygon_centroid(_ring(shape, dim))
        return lat, lon, radius, None, True
    if name == "Prism":
        base = shape.find(f"{_q('gs', 'base')}/{_q('gml', 'Polygon')}")
        if base is None:
            raise _Bad("gs:Prism has no gs:base/gml:Polygon")
        lat, lon, radius = polygon_centroid(_ring(base, dim or 3))
        _length(shape, "height")
        return lat, lon, radius, None, True
    raise _Bad(f"shape {name[:40]!r} is not an RFC 5491 shape")


def _shape_fix(shape: Element, info: Element, *, at: float, source: FixSource, raw: str) -> Fix:
    try:
        lat, lon, radius, alt, uncertain = _reduce(shape)
        confidence = _confidence(info)
    except _Bad as exc:
        return Fix.invalid(source=source, at=at, reason=str(exc), raw=raw)
    if confidence is None and uncertain:
        confidence = DEFAULT_CONFIDENCE
    return Fix.position(
        lat=lat,
        lon=lon,
        radius_m=radius,
        source=source,
        at=at,
        confidence=confidence,
        shape=_local(shape),
        altitude_m=alt,
        raw=raw,
    )


def _num(value: float) -> str:
    return repr(round(value, 7))


def serialize(fix: Fix, *, entity: str, device_id: str = "caller", method: str = "") -> bytes:
    """A by-value PIDF-LO (RFC 4119, RFC 5491 §3.1 device form) for this fix.

    A Circle when the fix has an uncertainty radius, else a Point; EPSG 4326.
    `entity` is the presentity (``pres:`` or ``sip:`` URI of the caller).
    Raises `ValueError` for a fix without a position: there is nothing to send.
    """
    if not fix.valid or fix.lat is None or fix.lon is None:
        raise ValueError("an invalid fix has no position to send")
    pos = f"<gml:pos>{_num(fix.lat)} {_num(fix.lon)}</gml:pos>"
    if fix.radius_m is not None and fix.radius_m > 0:
        shape = (
            f'<gs:Circle srsName="{_CRS_2D}">{pos}'
            f'<gs:radius uom="{_UOM_METRE}">{_num(fix.radius_m)}</gs:radius></gs:Circle>'
        )
    else:
        shape = f'<gml:Point srsName="{_CRS_2D}">{pos}</gml:Point>'
    confidence = (
        ""
        if fix.confidence is None
        else f'<con:confidence pdf="normal">{int(fix.confidence)}</con:confidence>'
    )
    method_el = f"<gp:method>{escape(method)}</gp:method>" if method else ""
    doc = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<presence xmlns="{NS["pidf"]}" xmlns:gp="{NS["gp"]}" xmlns:gml="{NS["gml"]}" '
        f'xmlns:gs="{NS["gs"]}" xmlns:dm="{NS["dm"]}" xmlns:con="{NS["con"]}" '
        f'entity="{escape(entity, quote=True)}">\n'
        f' <dm:device id="{escape(device_id, quote=True)}">\n'
        f"  <gp:geopriv><gp:location-info>{shape}{confidence}</gp:location-info>"
        f"<gp:usage-rules/>{method_el}</gp:geopriv>\n"
        f"  <dm:timestamp>{format_time(fix.at)}</dm:timestamp>\n"
        " </dm:device>\n"
        "</presence>\n"
    )
    return doc.encode("utf-8")


def iter_shapes() -> Iterator[str]:
    """The RFC 5491 §5.2 shape names `parse_pidf` reads (for docs and tests)."""
    yield from (
        "Point",
        "Circle",
        "Ellipse",
        "ArcBand",
        "Polygon",
        "Sphere",
        "Ellipsoid",
        "Prism",
    )
