"""TCP framing (RFC 3261 §18.3, RFC 5626 keep-alives)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callcenter112.sip.errors import SipParseError
from callcenter112.sip.framing import KeepAlivePing, StreamFramer
from callcenter112.sip.message import MAX_MESSAGE_SIZE, Request, Response, parse_message


def options(n: int, body: bytes = b"", extra: bytes = b"") -> bytes:
    return (
        b"OPTIONS sip:112@192.0.2.10 SIP/2.0\r\n"
        b"Via: SIP/2.0/TCP 192.0.2.1:5060;branch=z9hG4bK%d\r\n"
        b"To: <sip:112@192.0.2.10>\r\n"
        b"From: <sip:a@192.0.2.1>;tag=%d\r\n"
        b"Call-ID: cid%d\r\n"
        b"CSeq: %d OPTIONS\r\n"
        % (n, n, n, n)
        + extra
        + b"Content-Length: %d\r\n\r\n" % len(body)
        + body
    )


def feed_all(framer: StreamFramer, chunks: list[bytes]) -> list[object]:
    out: list[object] = []
    for chunk in chunks:
        out += framer.feed(chunk)
    return out


def test_back_to_back_in_one_segment() -> None:
    data = options(1) + options(2, b"hello\r\n\r\nworld") + options(3)
    framer = StreamFramer()
    out = framer.feed(data)
    assert [m.call_id for m in out if isinstance(m, Request)] == ["cid1", "cid2", "cid3"]
    assert isinstance(out[1], Request) and out[1].body == b"hello\r\n\r\nworld"
    assert framer.buffered == 0


def test_keepalive_ping_and_stray_crlf() -> None:
    framer = StreamFramer()
    out = feed_all(framer, [b"\r\n", b"\r\n", options(1), b"\r\n", options(2), b"\r\n\r\n"])
    assert [type(x) for x in out] == [KeepAlivePing, Request, Request, KeepAlivePing]
    assert KeepAlivePing.PONG == b"\r\n"
    # A lone CRLF waits (it may become a ping); bare LFs are skipped.
    framer = StreamFramer()
    assert framer.feed(b"\r\n") == [] and framer.buffered == 2
    assert framer.feed(b"\n\n") == [] and framer.buffered == 0


def test_lf_only_message_and_compact_folded_length() -> None:
    lf = options(1, b"abc").replace(b"\r\n", b"\n")
    folded = options(2, b"xyz").replace(b"Content-Length: 3", b"l:\r\n  3")
    framer = StreamFramer()
    out = feed_all(framer, [lf[:10], lf[10:] + folded])
    assert [m.body for m in out if isinstance(m, Request)] == [b"abc", b"xyz"]


def test_unparsable_but_framed_message_keeps_the_stream() -> None:
    bad = options(1).replace(b"CSeq: 1 OPTIONS", b"CSeq: 1 BYE")
    framer = StreamFramer()
    out = framer.feed(bad + options(2))
    assert isinstance(out[0], SipParseError) and out[0].status_hint == 400
    assert isinstance(out[0].partial, Request)
    assert isinstance(out[1], Request) and not framer.broken


@pytest.mark.parametrize(
    ("message", "status"),
    [
        (options(1).replace(b"Content-Length: 0\r\n", b""), 400),
        (options(1).replace(b"Content-Length: 0", b"Content-Length: -1"), 400),
        (options(1).replace(b"Content-Length: 0", b"Content-Length: five"), 400),
        (options(1).replace(b"Content-Length: 0", b"Content-Length: 0\r\nl: 3"), 400),
        (options(1).replace(b"Content-Length: 0", b"Content-Length: 99999999"), 513),
        (options(1).replace(b"Content-Length: 0", b"Content-Length: %d" % MAX_MESSAGE_SIZE), 513),
    ],
)
def test_framing_faults_break_the_stream(message: bytes, status: int) -> None:
    framer = StreamFramer()
    with pytest.raises(SipParseError) as info:
        framer.feed(message)
    assert info.value.status_hint == status
    assert framer.broken
    # Far enough to be answered before closing: the headers are there.
    assert isinstance(info.value.partial, Request)
    assert info.value.partial.call_id == "cid1"
    with pytest.raises(SipParseError):
        framer.feed(options(2))


def test_endless_header_block_is_bounded() -> None:
    framer = StreamFramer()
    chunk = b"X-Filler: " + b"a" * 1000 + b"\r\n"
    framer.feed(b"OPTIONS sip:a@b SIP/2.0\r\n")
    with pytest.raises(SipParseError) as info:
        for _ in range(MAX_MESSAGE_SIZE // len(chunk) + 2):
            framer.feed(chunk)
    assert info.value.status_hint == 513 and framer.broken


def test_large_body_in_small_segments() -> None:
    body = bytes(range(256)) * 200
    data = options(1, body)
    framer = StreamFramer()
    out = feed_all(framer, [data[i : i + 1000] for i in range(0, len(data), 1000)])
    assert len(out) == 1 and isinstance(out[0], Request) and out[0].body == body


def test_response_on_stream() -> None:
    resp = (
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\nTo: <sip:a@b>;tag=2\r\n"
        b"From: <sip:c@d>;tag=1\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    )
    out = StreamFramer().feed(resp)
    assert len(out) == 1 and isinstance(out[0], Response)


@st.composite
def stream_and_cuts(draw: st.DrawFn) -> tuple[list[bytes], list[bytes]]:
    n = draw(st.integers(1, 6))
    messages = [
        options(i, draw(st.binary(max_size=40)), draw(st.sampled_from([b"", b"X-Y: z\r\n"])))
        for i in range(n)
    ]
    data = b"".join(messages)
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=20)))
    bounds = [0, *cuts, len(data)]
    return messages, [data[a:b] for a, b in itertools.pairwise(bounds)]


@given(stream_and_cuts())
@settings(max_examples=200)
def test_split_anywhere_gives_the_same_messages(case: tuple[list[bytes], list[bytes]]) -> None:
    messages, chunks = case
    framer = StreamFramer()
    out = feed_all(framer, chunks)
    assert out == [parse_message(m, datagram=False) for m in messages]
    assert framer.buffered == 0


@given(st.lists(st.binary(max_size=64), max_size=20))
@settings(max_examples=300)
def test_arbitrary_stream_bytes(chunks: list[bytes]) -> None:
    framer = StreamFramer()
    for chunk in chunks:
        try:
            items = framer.feed(chunk)
        except SipParseError:
            assert framer.broken
            return
        for item in items:
            assert isinstance(item, Request | Response | SipParseError | KeepAlivePing)


def test_messages_framed_before_a_fault_are_delivered_first() -> None:
    framer = StreamFramer()
    bad = options(2).replace(b"Content-Length: 0", b"Content-Length: -1")
    out = framer.feed(options(1) + bad)
    assert [m.call_id for m in out if isinstance(m, Request)] == ["cid1"]
    assert framer.broken and framer.fault is not None
    assert isinstance(framer.fault.partial, Request) and framer.fault.partial.call_id == "cid2"
    with pytest.raises(SipParseError) as info:
        framer.feed(b"")
    assert info.value is framer.fault
