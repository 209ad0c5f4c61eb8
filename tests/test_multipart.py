"""sip/multipart.py: RFC 2046 multipart bodies of INVITEs (SDP + PIDF-LO), hostile ones too."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callcenter112.sip.multipart import (
    MAX_PARTS,
    MultipartError,
    cid_matches,
    parse_content_type,
    parse_multipart,
    serialize_multipart,
    split_body,
)

SDP = (
    b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\n"
    b"t=0 0\r\nm=audio 4000 RTP/AVP 8\r\n"
)
PIDF = b'<?xml version="1.0"?><presence xmlns="urn:ietf:params:xml:ns:pidf" entity="pres:a@b"/>'


def body(boundary: str = "boundary1", *, crlf: bytes = b"\r\n") -> bytes:
    n = crlf
    return (
        b"preamble is ignored" + n
        + b"--" + boundary.encode() + n
        + b"Content-Type: application/sdp" + n + n
        + SDP + n
        + b"--" + boundary.encode() + n
        + b"Content-Type: application/pidf+xml" + n
        + b"Content-ID: <target123@atlanta.example.com>" + n
        + b"Content-Disposition: by-reference;handling=optional" + n + n
        + PIDF + n
        + b"--" + boundary.encode() + b"--" + n
        + b"epilogue too"
    )  # fmt: skip


def test_rfc6442_example_body_splits_into_sdp_and_pidf() -> None:
    split = split_body('multipart/mixed; boundary="boundary1"', body())
    assert split.sdp == SDP
    assert split.notes == ()
    (pidf,) = split.parts
    assert pidf.media_type == "application/pidf+xml"
    assert pidf.content_id == "target123@atlanta.example.com"
    assert pidf.disposition == "by-reference"
    assert pidf.body == PIDF
    assert cid_matches("cid:target123@atlanta.example.com", pidf)
    assert cid_matches("cid:target123%40atlanta.example.com", pidf)  # RFC 2392 %-encoding
    assert not cid_matches("cid:other@x", pidf)


def test_bare_lf_line_ends_are_tolerated() -> None:
    split = split_body("multipart/mixed;boundary=boundary1", body(crlf=b"\n"))
    assert split.sdp is not None and split.sdp.startswith(b"v=0")
    assert split.parts[0].content_id == "target123@atlanta.example.com"


def test_plain_sdp_and_absent_content_type_are_the_offer() -> None:
    assert split_body("application/sdp", SDP).sdp == SDP
    assert split_body(None, SDP).sdp == SDP
    assert split_body("Application/SDP", SDP).sdp == SDP
    assert split_body("application/sdp", b"").sdp is None


def test_other_body_is_noted_never_raised() -> None:
    split = split_body("application/pidf+xml", PIDF)
    assert split.sdp is None and split.notes == ("body of type application/pidf+xml ignored",)


@pytest.mark.parametrize(
    ("content_type", "payload", "why"),
    [
        ("multipart/mixed", body(), "without a boundary"),
        ("multipart/mixed; boundary=nothere", body(), "does not occur"),
        ("multipart/mixed; boundary=boundary1", body().replace(b"--boundary1--", b""), "closing"),
        ("multipart/mixed; boundary=" + "x" * 71, b"--" + b"x" * 71 + b"\r\n", "1-70"),
        (
            "multipart/mixed; boundary=b",
            b"--b\r\nContent-Type: a/b\r\nno blank line\r\n--b--",
            "no empty line",
        ),
        ("multipart/mixed; boundary=b", b"--b\r\nBad Header\r\n\r\nx\r\n--b--", "Name: value"),
        ("multipart/mixed; boundary=b", b"--b\r\n\xff: x\r\n\r\nx\r\n--b--", "UTF-8"),
        (
            "multipart/mixed; boundary=b",
            b"--b\r\nContent-Transfer-Encoding: base64\r\n\r\nAAAA\r\n--b--",
            "base64",
        ),
        ("multipart/mixed; boundary=b", b"--b junk\r\n\r\nx\r\n--b--", "after a boundary"),
        ("not a type", body(), "type/subtype"),
    ],
)
def test_malformed_bodies_become_notes(content_type: str, payload: bytes, why: str) -> None:
    split = split_body(content_type, payload)
    assert split.sdp is None
    assert len(split.notes) == 1 and why in split.notes[0], split.notes


def test_too_many_parts_is_refused_by_the_parser() -> None:
    parts = b"".join(b"--b\r\nContent-Type: text/plain\r\n\r\nx\r\n" for _ in range(MAX_PARTS + 1))
    with pytest.raises(MultipartError, match="more than"):
        parse_multipart(parts + b"--b--", "b")
    ok = b"".join(b"--b\r\nContent-Type: text/plain\r\n\r\nx\r\n" for _ in range(MAX_PARTS))
    assert len(parse_multipart(ok + b"--b--", "b")) == MAX_PARTS


def test_part_without_headers_defaults_to_text_plain() -> None:
    (part,) = parse_multipart(b"--b\r\n\r\nhello\r\n--b--\r\n", "b")
    assert part.media_type == "text/plain" and part.body == b"hello"


def test_multipart_without_sdp_part_says_so() -> None:
    split = split_body("multipart/mixed; boundary=b", b"--b\r\nContent-Type: a/b\r\n\r\nx\r\n--b--")
    assert split.sdp is None and "no application/sdp" in split.notes[0]
    assert split.parts[0].media_type == "a/b"


def test_content_type_parameters_quoted_and_case() -> None:
    assert parse_content_type('Multipart/Mixed; Boundary="a;b\\"c"') == (
        "multipart/mixed",
        (("boundary", 'a;b"c'),),
    )
    assert parse_content_type(None) == ("", ())


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400), st.text(max_size=80))
def test_split_body_never_raises(payload: bytes, content_type: str) -> None:
    split_body(content_type, payload)
    split_body("multipart/mixed; boundary=b", b"--b\r\n" + payload)


def test_serialize_round_trips_and_refuses_a_boundary_inside_a_part() -> None:
    parts = split_body('multipart/mixed; boundary="boundary1"', body()).parts
    again = parse_multipart(serialize_multipart(parts, "zz9"), "zz9")
    key = [(p.media_type, p.params, p.content_id, p.disposition, p.body) for p in parts]
    assert [(p.media_type, p.params, p.content_id, p.disposition, p.body) for p in again] == key
    with pytest.raises(MultipartError, match="inside a part"):
        serialize_multipart(parse_multipart(b"--b\r\n\r\nx--zz9\r\n--b--", "b"), "zz9")
