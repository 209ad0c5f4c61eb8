"""location/aml.py and numbers.py: the ELS HTTPS form (published HMAC vector) and AML SMS v1/v2."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callcenter112.location.aml import aml_hmac, parse_aml_form, parse_aml_sms
from callcenter112.location.numbers import normalise_number

NOW = 1_796_000_000.0
# The published vector (issue 13): key "AML", HMAC-SHA1 over the text before "&hmac=".
VECTOR = (
    b"v=1&device_number=%2B33611223344&location_latitude=0.85732&location_longitude=-4.26325"
    b"&location_time=1604912121000&location_accuracy=10.4&location_source=GPS"
    b"&location_certainty=83&hmac=f64c70eb238bb239e00e8ac8c023bf2b5d3c41dd"
)


def test_published_vector_hmac() -> None:
    message = VECTOR.split(b"&hmac=")[0]
    assert aml_hmac(message, b"AML") == "f64c70eb238bb239e00e8ac8c023bf2b5d3c41dd"


def test_published_vector_is_accepted_with_its_key() -> None:
    result = parse_aml_form(VECTOR, key=b"AML", now=NOW)
    assert result.discarded is None and result.fix is not None
    fix = result.fix
    assert fix.valid and fix.source == "aml-https"
    assert (fix.lat, fix.lon, fix.radius_m, fix.confidence) == (0.85732, -4.26325, 10.4, 83)
    assert fix.at == 1604912121.0
    assert result.caller == "+33611223344" == fix.caller
    assert ("location_source", "GPS") in result.fields


@pytest.mark.parametrize(
    ("body", "key", "why"),
    [
        (VECTOR, b"OTHER", "does not match"),
        (VECTOR.replace(b"0.85732", b"0.85733"), b"AML", "does not match"),
        (VECTOR.split(b"&hmac=")[0], b"AML", "no hmac"),
        (b"\xff\xfe", None, "ASCII"),
        (b"a=1&a=2", None, "twice"),
        (b"x" * 5000, None, "larger"),
        (b"no-equals-sign", None, "not a form"),
    ],
)
def test_bad_messages_are_discarded_with_a_reason(body: bytes, key: bytes | None, why: str) -> None:
    result = parse_aml_form(body, key=key, now=NOW)
    assert result.fix is None and result.discarded is not None and why in result.discarded


def test_without_key_the_form_is_read_and_android_confidence_assumed() -> None:
    body = (
        b"v=3&emergency_number=112&device_number=081234567890&location_latitude=-3.69"
        b"&location_longitude=128.18&location_accuracy=12&time=1796000000000"
    )
    result = parse_aml_form(body, key=None, now=NOW)
    assert result.fix is not None and result.fix.valid
    assert result.fix.confidence == 68  # Android accuracy is a 68 % radius
    assert result.fix.at == 1_796_000_000.0
    assert result.caller == "+6281234567890"


def test_missing_or_impossible_position_is_an_invalid_fix() -> None:
    result = parse_aml_form(b"v=1&device_number=0812345678", key=None, now=NOW)
    assert result.fix is not None and not result.fix.valid
    bad = parse_aml_form(b"v=1&location_latitude=95&location_longitude=1", key=None, now=NOW)
    assert bad.fix is not None and not bad.fix.valid and "latitude" in (bad.fix.reason or "")
    assert bad.notes  # no number: nobody to match


SMS_V1 = (
    'A"ML=1;lt=-3.69581;lg=+128.18141;rd=50;top=20261207012345;lc=90;pm=G;'
    "si=510101234567890;ei=356479056599790;mcc=510;mnc=10;ml=128"
)
SMS_V2 = 'A"ML=2;en=112;et=20261207T012345Z;lo=-3.69581,128.18141,12;lc=68;ls=G;ml=75'


def test_sms_v1() -> None:
    assert len(SMS_V1) == 128
    result = parse_aml_sms(SMS_V1, sender="6281234567890", now=NOW)
    fix = result.fix
    assert fix is not None and fix.valid and fix.source == "aml-sms"
    assert (fix.lat, fix.lon, fix.radius_m, fix.confidence) == (-3.69581, 128.18141, 50.0, 90)
    assert fix.at == 1_796_606_625.0  # 2026-12-07 01:23:45 UTC
    assert result.caller == "+6281234567890" and result.notes == ()


def test_sms_v2_with_altitude() -> None:
    assert len(SMS_V2) == 75
    result = parse_aml_sms(SMS_V2, sender="+6281234567890", now=NOW)
    fix = result.fix
    assert fix is not None and fix.valid
    assert (fix.lat, fix.lon, fix.altitude_m, fix.confidence) == (-3.69581, 128.18141, 12.0, 68)
    assert fix.at == 1_796_606_625.0


def test_sms_length_mismatch_is_noted_not_rejected() -> None:
    result = parse_aml_sms(SMS_V1.replace("ml=128", "ml=140"), sender="0812", now=NOW)
    assert result.fix is not None and result.fix.valid
    assert result.notes and "length mismatch" in result.notes[0]


@pytest.mark.parametrize(
    ("body", "why"),
    [("hello", "not an AML"), ('A"ML=9;lt=1;lg=2', "version"), ("x" * 5000, "too long")],
)
def test_sms_not_aml(body: str, why: str) -> None:
    result = parse_aml_sms(body, sender="0812", now=NOW)
    assert result.fix is None and why in (result.discarded or "")


def test_sms_v2_bad_numbers() -> None:
    result = parse_aml_sms('A"ML=2;lo=abc,def;lc=68', sender="0812", now=NOW)
    assert result.fix is not None and not result.fix.valid


@pytest.mark.parametrize(
    ("text", "e164"),
    [
        ("+6281234567890", "+6281234567890"),
        ("081234567890", "+6281234567890"),
        ("6281234567890", "+6281234567890"),
        ("006281234567890", "+6281234567890"),
        ("sip:081234567890@carrier", "+6281234567890"),
        ("tel:+62-812-3456-7890", "+6281234567890"),
        ("0911 312345", "+62911312345"),  # Ambon landline
        ("+33611223344", "+33611223344"),
        ("112", "112"),
        ("", None),
        (None, None),
        ("anonymous", None),
    ],
)
def test_numbers_normalise(text: str | None, e164: str | None) -> None:
    assert normalise_number(text) == e164


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300), st.text(max_size=200))
def test_parsers_never_raise(body: bytes, sms: str) -> None:
    parse_aml_form(body, key=b"k", now=NOW)
    parse_aml_form(body, key=None, now=NOW)
    parse_aml_sms(sms, sender=sms[:20], now=NOW)
    parse_aml_sms('A"ML=1;' + sms, sender=None, now=NOW)
