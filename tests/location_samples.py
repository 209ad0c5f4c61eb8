"""PIDF-LO documents for the location tests: one per RFC 5491 shape, and hostile ones."""

from __future__ import annotations

HEAD = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<presence xmlns="urn:ietf:params:xml:ns:pidf"'
    ' xmlns:gp="urn:ietf:params:xml:ns:pidf:geopriv10"'
    ' xmlns:gml="http://www.opengis.net/gml"'
    ' xmlns:gs="http://www.opengis.net/pidflo/1.0"'
    ' xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model"'
    ' entity="pres:caller@carrier.example">'
    '<dm:device id="phone"><gp:geopriv><gp:location-info>'
)
TAIL = (
    "</gp:location-info><gp:usage-rules/><gp:method>GPS</gp:method></gp:geopriv>"
    "<dm:timestamp>2026-12-07T01:02:03Z</dm:timestamp></dm:device></presence>"
)
C2 = 'srsName="urn:ogc:def:crs:EPSG::4326"'
C3 = 'srsName="urn:ogc:def:crs:EPSG::4979"'
M = 'uom="urn:ogc:def:uom:EPSG::9001"'
D = 'uom="urn:ogc:def:uom:EPSG::9102"'
AMBON = (-3.6954, 128.1814)

SHAPES: dict[str, str] = {
    "Point": f"<gml:Point {C2}><gml:pos>-3.6954 128.1814</gml:pos></gml:Point>",
    "Circle": (
        f"<gs:Circle {C2}><gml:pos>-3.6954 128.1814</gml:pos>"
        f"<gs:radius {M}>850.0</gs:radius></gs:Circle>"
    ),
    "Ellipse": (
        f"<gs:Ellipse {C2}><gml:pos>-3.6954 128.1814</gml:pos>"
        f"<gs:semiMajorAxis {M}>1275</gs:semiMajorAxis>"
        f"<gs:semiMinorAxis {M}>670</gs:semiMinorAxis>"
        f"<gs:orientation {D}>43.2</gs:orientation></gs:Ellipse>"
    ),
    "ArcBand": (
        f"<gs:ArcBand {C2}><gml:pos>-3.6954 128.1814</gml:pos>"
        f"<gs:innerRadius {M}>1000</gs:innerRadius><gs:outerRadius {M}>2000</gs:outerRadius>"
        f"<gs:startAngle {D}>80</gs:startAngle><gs:openingAngle {D}>20</gs:openingAngle>"
        "</gs:ArcBand>"
    ),
    "Polygon": (
        f"<gml:Polygon {C2}><gml:exterior><gml:LinearRing><gml:posList>"
        "-3.690 128.175 -3.690 128.185 -3.700 128.185 -3.700 128.175 -3.690 128.175"
        "</gml:posList></gml:LinearRing></gml:exterior></gml:Polygon>"
    ),
    "Sphere": (
        f"<gs:Sphere {C3}><gml:pos>-3.6954 128.1814 25.0</gml:pos>"
        f"<gs:radius {M}>120</gs:radius></gs:Sphere>"
    ),
    "Ellipsoid": (
        f"<gs:Ellipsoid {C3}><gml:pos>-3.6954 128.1814 30</gml:pos>"
        f"<gs:semiMajorAxis {M}>300</gs:semiMajorAxis><gs:semiMinorAxis {M}>200</gs:semiMinorAxis>"
        f"<gs:verticalAxis {M}>50</gs:verticalAxis><gs:orientation {D}>90</gs:orientation>"
        "</gs:Ellipsoid>"
    ),
    "Prism": (
        f"<gs:Prism {C3}><gs:base><gml:Polygon><gml:exterior><gml:LinearRing><gml:posList>"
        "-3.690 128.175 10 -3.690 128.185 10 -3.700 128.185 10 -3.700 128.175 10 -3.690 128.175 10"
        "</gml:posList></gml:LinearRing></gml:exterior></gml:Polygon></gs:base>"
        f"<gs:height {M}>20</gs:height></gs:Prism>"
    ),
}


def pidf(shape_xml: str) -> bytes:
    return (HEAD + shape_xml + TAIL).encode()


BILLION_LAUGHS = (
    b'<?xml version="1.0"?>\n<!DOCTYPE lolz [<!ENTITY lol "lol">'
    + b"".join(
        f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">'.encode()
        for i in range(1, 10)
    )
    + b']>\n<presence xmlns="urn:ietf:params:xml:ns:pidf">&lol9;</presence>'
)
EXTERNAL_ENTITY = (
    b'<?xml version="1.0"?>\n<!DOCTYPE p [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
    b'<presence xmlns="urn:ietf:params:xml:ns:pidf">&xxe;</presence>'
)
DTD_ONLY = (
    b'<?xml version="1.0"?>\n<!DOCTYPE presence SYSTEM "http://127.0.0.1:9/x.dtd">'
    b'<presence xmlns="urn:ietf:params:xml:ns:pidf"/>'
)
BROKEN = pidf(SHAPES["Circle"])[:-40]
HUGE = pidf(SHAPES["Circle"]).replace(
    b"<gp:usage-rules/>", b"<gp:usage-rules/>" + b" " * 10_000_000
)
HOSTILE: dict[str, bytes] = {
    "billion-laughs": BILLION_LAUGHS,
    "external-entity": EXTERNAL_ENTITY,
    "dtd": DTD_ONLY,
    "broken": BROKEN,
    "10MB": HUGE,
}
