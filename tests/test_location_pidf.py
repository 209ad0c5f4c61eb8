"""location/pidf.py, geometry.py, headers.py, invite.py: PIDF-LO in, one point out, hostile XML."""

from __future__ import annotations

import math
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callcenter112.location.fix import Fix, location_json
from callcenter112.location.geometry import arcband_centroid, distance_m, polygon_centroid
from callcenter112.location.headers import parse_call_info, parse_geolocation
from callcenter112.location.invite import read_invite, with_location
from callcenter112.location.pidf import MAX_PIDF_SIZE, iter_shapes, parse_pidf, serialize
from location_samples import AMBON, HOSTILE, SHAPES, pidf

NOW = 1_796_000_000.0
STAMP = 1_796_605_323.0  # 2026-12-07T01:02:03Z, the samples' dm:timestamp

# (shape, expected radius in metres, expected altitude, how far the point may be from AMBON)
EXPECTED = {
    "Point": (None, None, 0.0),
    "Circle": (850.0, None, 0.0),
    "Ellipse": (1275.0, None, 0.0),
    "Sphere": (120.0, 25.0, 0.0),
    "Ellipsoid": (300.0, 30.0, 0.0),
}


def test_every_rfc5491_shape_has_a_sample() -> None:
    assert set(iter_shapes()) == set(SHAPES)


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_each_shape_reduces_to_a_point_and_radius(shape: str) -> None:
    (fix,) = parse_pidf(pidf(SHAPES[shape]), now=NOW)
    assert fix.valid, fix.reason
    assert fix.shape == shape and fix.source == "pidf"
    assert fix.at == STAMP
    assert fix.lat is not None and fix.lon is not None
    if shape in EXPECTED:
        radius, altitude, _ = EXPECTED[shape]
        assert (fix.lat, fix.lon) == AMBON
        assert fix.radius_m == radius
        assert fix.altitude_m == altitude
        assert fix.confidence == (None if shape == "Point" else 95)


@pytest.mark.parametrize("shape", ["Polygon", "Prism"])
def test_polygon_is_its_centroid_and_farthest_vertex(shape: str) -> None:
    (fix,) = parse_pidf(pidf(SHAPES[shape]), now=NOW)
    assert fix.lat is not None and fix.lon is not None and fix.radius_m is not None
    assert fix.lat == pytest.approx(-3.695, abs=1e-6)
    assert fix.lon == pytest.approx(128.180, abs=1e-6)
    corner = distance_m(fix.lat, fix.lon, -3.690, 128.175)
    assert fix.radius_m == pytest.approx(corner, rel=0.005)  # ~785 m, half the diagonal


def test_arcband_centroid_lies_on_the_bisector_and_circle_holds_the_band() -> None:
    (fix,) = parse_pidf(pidf(SHAPES["ArcBand"]), now=NOW)
    assert fix.lat is not None and fix.lon is not None and fix.radius_m is not None
    lat, lon = AMBON
    # bisector bearing 90° (east): same latitude, east of the centre by the centroid distance
    theta = math.radians(20)
    d = (2 / 3) * (2000**3 - 1000**3) / (2000**2 - 1000**2) * math.sin(theta / 2) / (theta / 2)
    assert fix.lat == pytest.approx(lat, abs=1e-6)
    assert distance_m(lat, lon, fix.lat, fix.lon) == pytest.approx(d, rel=0.001)
    assert fix.lon > lon
    # the band's four corners are inside the circle
    for bearing in (80, 100):
        for r in (1000, 2000):
            b = math.radians(bearing)
            clat = lat + r * math.cos(b) / 111_195.08
            clon = lon + r * math.sin(b) / (111_195.08 * math.cos(math.radians(lat)))
            assert distance_m(fix.lat, fix.lon, clat, clon) <= fix.radius_m + 1


def test_geometry_helpers() -> None:
    lat, lon, r = polygon_centroid([(0, 0), (0, 0), (0, 0), (0, 0)])
    assert (lat, lon, r) == (0, 0, 0)
    assert arcband_centroid(1.0, 2.0, inner_m=0, outer_m=0, start_deg=0, opening_deg=0) == (
        1.0,
        2.0,
        0,
    )
    # a full disc's centroid is its centre
    clat, clon, radius = arcband_centroid(
        0.0, 0.0, inner_m=0, outer_m=1000, start_deg=0, opening_deg=360
    )
    assert distance_m(0, 0, clat, clon) < 1 and radius == pytest.approx(1000, rel=0.001)


def test_radians_are_converted_not_taken_for_degrees() -> None:
    rad = (
        SHAPES["ArcBand"]
        .replace(
            '<gs:startAngle uom="urn:ogc:def:uom:EPSG::9102">80',
            f'<gs:startAngle uom="urn:ogc:def:uom:EPSG::9101">{math.radians(80)}',
        )
        .replace(
            '<gs:openingAngle uom="urn:ogc:def:uom:EPSG::9102">20',
            f'<gs:openingAngle uom="urn:ogc:def:uom:EPSG::9101">{math.radians(20)}',
        )
    )
    (a,) = parse_pidf(pidf(SHAPES["ArcBand"]), now=NOW)
    (b,) = parse_pidf(pidf(rad), now=NOW)
    assert a.lat is not None and b.lat is not None and a.lon is not None and b.lon is not None
    assert distance_m(a.lat, a.lon, b.lat, b.lon) < 0.01


@pytest.mark.parametrize(
    ("mutate", "why"),
    [
        (lambda s: s.replace("EPSG::4326", "EPSG::3857"), "not EPSG 4326 or 4979"),
        (lambda s: s.replace("-3.6954 128.1814", "128.1814 -3.6954"), "latitude"),
        (lambda s: s.replace("-3.6954 128.1814", "-3.6954"), "numbers"),
        (lambda s: s.replace("-3.6954 128.1814", "nan inf"), "finite"),
        (lambda s: s.replace("<gml:pos>-3.6954 128.1814</gml:pos>", ""), "no gml:pos"),
        (lambda s: s.replace("EPSG::9001", "EPSG::9002"), "not metres"),
        (lambda s: s.replace(">850.0<", ">-5<"), "not a length"),
        (lambda s: s.replace(">850.0<", ">9e9<"), "wider than"),
    ],
)
def test_bad_numbers_give_an_invalid_fix_with_the_reason(mutate, why: str) -> None:  # type: ignore[no-untyped-def]
    (fix,) = parse_pidf(pidf(mutate(SHAPES["Circle"])), now=NOW)
    assert not fix.valid and fix.lat is None
    assert fix.reason is not None and why in fix.reason, fix.reason


def test_polygon_ring_must_close() -> None:
    open_ring = SHAPES["Polygon"].replace(" -3.690 128.175</gml:posList>", "</gml:posList>")
    (fix,) = parse_pidf(pidf(open_ring), now=NOW)
    assert not fix.valid and "ring" in (fix.reason or "")


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_documents_are_invalid_fixes_fast(name: str) -> None:
    start = time.perf_counter()
    fixes = parse_pidf(HOSTILE[name], now=NOW)
    elapsed = time.perf_counter() - start
    assert len(fixes) == 1 and not fixes[0].valid and fixes[0].reason
    assert "root:" not in fixes[0].raw  # no /etc/passwd came back
    assert elapsed < 1.0  # generous: expansion would take minutes and gigabytes


def test_hostile_reasons_say_what_was_refused() -> None:
    assert "DTDForbidden" in (parse_pidf(HOSTILE["billion-laughs"], now=NOW)[0].reason or "")
    assert "DTDForbidden" in (parse_pidf(HOSTILE["external-entity"], now=NOW)[0].reason or "")
    assert "well-formed" in (parse_pidf(HOSTILE["broken"], now=NOW)[0].reason or "")
    assert str(MAX_PIDF_SIZE) in (parse_pidf(HOSTILE["10MB"], now=NOW)[0].reason or "")


def test_wrong_content_type_and_wrong_root() -> None:
    (fix,) = parse_pidf(pidf(SHAPES["Circle"]), now=NOW, content_type="text/xml")
    assert not fix.valid and "not application/pidf+xml" in (fix.reason or "")
    (fix,) = parse_pidf(b"<x/>", now=NOW)
    assert not fix.valid and "not a PIDF presence" in (fix.reason or "")
    civic = pidf(
        '<ca:civicAddress xmlns:ca="urn:ietf:params:xml:ns:pidf:geopriv10:civicAddr">'
        "<ca:country>ID</ca:country></ca:civicAddress>"
    )
    (fix,) = parse_pidf(civic, now=NOW)
    assert not fix.valid and "civic" in (fix.reason or "")


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=600))
def test_parse_never_raises_on_bytes(data: bytes) -> None:
    assert parse_pidf(data, now=NOW)
    assert parse_pidf(pidf(SHAPES["Circle"])[:200] + data, now=NOW)


@pytest.mark.parametrize("radius", [None, 0.0, 35.5])
def test_serialize_round_trips(radius: float | None) -> None:
    fix = Fix.position(
        lat=-3.6954321,
        lon=128.1814765,
        radius_m=radius,
        source="aml-https",
        at=STAMP,
        confidence=68,
    )
    doc = serialize(fix, entity="pres:+6281234567890@112.ambon.go.id", method="GPS")
    (back,) = parse_pidf(doc, now=NOW)
    assert back.valid and back.at == STAMP
    assert (back.lat, back.lon) == (fix.lat, fix.lon)
    assert back.radius_m == (radius if radius else None)
    assert back.shape == ("Circle" if radius else "Point")
    assert back.confidence == 68
    assert b"<gml:pos>-3.6954321 128.1814765</gml:pos>" in doc  # latitude first, degrees


def test_serialize_refuses_a_fix_without_position() -> None:
    with pytest.raises(ValueError, match="no position"):
        serialize(Fix.invalid(source="pidf", at=NOW, reason="x"), entity="pres:a@b")


def test_geolocation_headers_all_kept_by_value_first() -> None:
    values, notes = parse_geolocation(
        [
            "<https://lis.example/loc/1>;inserted-by=carrier",
            "<cid:a@b>, <sip:loc@x>",
            "<cid:a@b>",
            "junk",
        ]
    )
    assert [v.uri for v in values] == ["cid:a@b", "https://lis.example/loc/1", "sip:loc@x"]
    assert values[0].by_value and not values[1].by_value
    assert notes and "junk" in notes[0]


def test_call_info_emergency_purposes() -> None:
    infos, _ = parse_call_info(
        [
            "<https://x/provider>;purpose=EmergencyCallData.ProviderInfo, "
            "<cid:dev@x>;purpose=EmergencyCallData.DeviceInfo",
            "<urn:emergency:uid:callid:abc:bcf.example.com>;purpose=emergency-CallId",
            "<http://www.example.com/alice/photo.jpg>;purpose=icon",
            "<cid:sub@x>;purpose=EmergencyCallData.SubscriberInfo,<cid:c@x>;purpose=emergencycalldata.comment",
        ]
    )
    assert [i.purpose for i in infos] == [
        "EmergencyCallData.ProviderInfo",
        "EmergencyCallData.DeviceInfo",
        "emergency-CallId",
        "EmergencyCallData.SubscriberInfo",
        "EmergencyCallData.Comment",
    ]
    assert infos[1].by_value and not infos[0].by_value


SDP = (
    b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\n"
    b"t=0 0\r\nm=audio 4000 RTP/AVP 8\r\n"
)


def mixed(*parts: tuple[str, str | None, bytes]) -> bytes:
    out = b""
    for media, cid, payload in parts:
        out += b"--b1\r\nContent-Type: " + media.encode() + b"\r\n"
        if cid:
            out += b"Content-ID: <" + cid.encode() + b">\r\n"
        out += b"\r\n" + payload + b"\r\n"
    return out + b"--b1--\r\n"


def test_invite_by_value_two_headers_and_a_reference() -> None:
    body = mixed(
        ("application/sdp", None, SDP),
        ("application/pidf+xml", "loc1@carrier", pidf(SHAPES["Circle"])),
        ("application/pidf+xml", "loc2@carrier", pidf(SHAPES["Polygon"])),
        ("application/EmergencyCallData.DeviceInfo+xml", "dev@carrier", b"<DeviceInfo/>"),
        ("image/png", "pic", b"\x89PNG"),
    )
    sdp, report = read_invite(
        "multipart/mixed;boundary=b1",
        body,
        geolocation=["<https://lis.example/held/7>", "<cid:loc2@carrier>, <cid:loc1@carrier>"],
        call_info=["<cid:dev@carrier>;purpose=EmergencyCallData.DeviceInfo"],
        now=NOW,
    )
    assert sdp == SDP
    assert [f.shape for f in report.fixes] == ["Polygon", "Circle"]
    assert all(f.valid for f in report.fixes)
    assert report.references == ("https://lis.example/held/7",)
    assert report.data[0].purpose == "EmergencyCallData.DeviceInfo"
    assert report.data[0].text == "<DeviceInfo/>"
    assert report.notes == ("body part image/png <pic> ignored",)
    assert report.to_json()["references"] == ["https://lis.example/held/7"]


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_invite_with_hostile_location_keeps_its_sdp(name: str) -> None:
    payload = HOSTILE[name]
    if len(payload) > 60_000:
        payload = payload[:60_000]  # a SIP message cannot carry more (RFC 3261 §18.1.1)
    sdp, report = read_invite(
        "multipart/mixed; boundary=b1",
        mixed(("application/sdp", None, SDP), ("application/pidf+xml", "x@y", payload)),
        geolocation=["<cid:x@y>"],
        now=NOW,
    )
    assert sdp == SDP
    assert len(report.fixes) == 1 and not report.fixes[0].valid


def test_invite_notes_dangling_cid_and_unheaded_pidf() -> None:
    sdp, report = read_invite(
        "multipart/mixed; boundary=b1",
        mixed(
            ("application/sdp", None, SDP), ("application/pidf+xml", None, pidf(SHAPES["Point"]))
        ),
        geolocation=["<cid:gone@x>", "<sips:loc@x>"],
        now=NOW,
    )
    assert sdp == SDP
    assert [f.valid for f in report.fixes] == [False, True]
    assert "names no part" in (report.fixes[0].reason or "")
    assert any("not followed" in n for n in report.notes)
    assert any("no Geolocation header names it" in n for n in report.notes)


def test_plain_sdp_invite_has_an_empty_report() -> None:
    sdp, report = read_invite("application/sdp", SDP, now=NOW)
    assert sdp == SDP and report.empty


def test_location_json_picks_the_newest_valid_fix() -> None:
    old = Fix.position(lat=-3.7, lon=128.1, radius_m=50, source="pidf", at=NOW)
    new = Fix.position(lat=-3.69, lon=128.18, radius_m=10, source="aml-https", at=NOW + 5)
    bad = Fix.invalid(source="pidf", at=NOW + 9, reason="broken")
    body = location_json([new, bad, old])
    assert (body["lat"], body["lon"], body["radius_m"], body["source"]) == (
        -3.69,
        128.18,
        10,
        "aml-https",
    )
    assert body["valid"] is True
    assert [f["valid"] for f in body["fixes"]] == [True, True, False]  # type: ignore[index]
    assert location_json([bad])["valid"] is False
    assert location_json([bad])["lat"] is None


def test_transfer_body_round_trips_through_the_invite_reader() -> None:
    best = Fix.position(lat=-3.6958, lon=128.1814, radius_m=40, source="aml-sms", at=STAMP)
    out = with_location(
        SDP, best, entity="pres:+6281234567890@ambon", content_id="20261207-0001@cc112"
    )
    assert out.geolocation == "<cid:20261207-0001@cc112>"
    sdp, report = read_invite(out.content_type, out.body, geolocation=[out.geolocation], now=NOW)
    assert sdp == SDP and report.notes == ()
    (fix,) = report.fixes
    assert (fix.lat, fix.lon, fix.radius_m, fix.at) == (-3.6958, 128.1814, 40.0, STAMP)


def test_hook_on_a_parsed_invite_from_the_wire() -> None:
    """The call flow's hook, fed from `sip.message.parse_message` as the centre would."""
    from callcenter112.sip.message import Request, parse_message

    body = mixed(
        ("application/sdp", None, SDP),
        ("application/pidf+xml", "loc@carrier.example", pidf(SHAPES["Ellipse"])),
    )
    wire = (
        b"INVITE sip:112@192.0.2.10 SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776asdhds\r\n"
        b"Max-Forwards: 70\r\n"
        b"From: <sip:+6281234567890@carrier.example>;tag=1928301774\r\n"
        b"To: <sip:112@192.0.2.10>\r\n"
        b"Call-ID: a84b4c76e66710@carrier.example\r\n"
        b"CSeq: 314159 INVITE\r\n"
        b"Contact: <sip:+6281234567890@192.0.2.1>\r\n"
        b"Geolocation: <cid:loc@carrier.example>\r\n"
        b"Geolocation: <https://lis.carrier.example/loc/77>\r\n"
        b"Geolocation-Routing: no\r\n"
        b"Call-Info: <urn:emergency:uid:callid:77:carrier.example>;purpose=emergency-CallId\r\n"
        b'Content-Type: multipart/mixed; boundary="b1"\r\n'
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )
    req = parse_message(wire)
    assert isinstance(req, Request)
    sdp, report = read_invite(
        req.headers.get("Content-Type"),
        req.body,
        geolocation=req.headers.get_all("Geolocation"),
        call_info=req.headers.get_all("Call-Info"),
        now=NOW,
    )
    assert sdp == SDP
    assert [f.shape for f in report.fixes] == ["Ellipse"] and report.fixes[0].valid
    assert report.references == ("https://lis.carrier.example/loc/77",)
    assert [c.purpose for c in report.call_info] == ["emergency-CallId"]
