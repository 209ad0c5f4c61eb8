"""Cut SIP messages out of a TCP byte stream (RFC 3261 §18.3).

On a stream the header block ends at the first empty line and the body is
exactly Content-Length octets, which is mandatory there. Messages may arrive
back to back in one segment or split anywhere, even inside the CRLF CRLF.
A CRLF CRLF between messages is an RFC 5626 §4.4.1 keep-alive ping that is
answered with a single CRLF pong.

A framing fault (no, a negative, a non-numeric or two conflicting
Content-Lengths; a header block or body over the limits) cannot be
resynchronised (RFC 4475 §3.1.2.3, §3.3.9): the stream is poisoned and the
connection must be closed, after answering 400 if the message got far enough
to be answered (`SipParseError.partial`). A message that frames correctly but
does not parse is returned as its `SipParseError` and the stream goes on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from .errors import SipParseError
from .message import (
    MAX_MESSAGE_SIZE,
    Request,
    Response,
    canonical_name,
    content_length_of,
    find_head_end,
    parse_message,
)

__all__ = ["KeepAlivePing", "StreamFramer"]


@dataclass(frozen=True, slots=True, kw_only=True)
class KeepAlivePing:
    """A CRLFCRLF keep-alive arrived; answer with `PONG`."""

    PONG: ClassVar[bytes] = b"\r\n"


def _content_length(head: bytes) -> int:
    """Content-Length of a header block, read the way the parser reads it:
    folded lines joined, compact form `l` expanded, every occurrence seen."""
    values: list[str] = []
    current: bytes | None = None
    for raw in head.replace(b"\r\n", b"\n").split(b"\n")[1:]:
        if raw[:1] in (b" ", b"\t"):
            if current is not None:
                current += b" " + raw.strip(b" \t")
            continue
        if current is not None:
            values.append(current.decode("latin-1"))
        name, colon, value = raw.partition(b":")
        header = canonical_name(name.decode("latin-1").strip(" \t"))
        current = value if colon and header == "Content-Length" else None
    if current is not None:
        values.append(current.decode("latin-1"))
    length = content_length_of(values)
    if length is None:
        raise SipParseError("stream message without Content-Length")
    return length


class StreamFramer:
    """Incremental framer for one TCP connection.

    `feed(data)` returns the complete items found so far: parsed messages,
    `SipParseError`s for messages that framed correctly but did not parse
    (the connection may continue), and `KeepAlivePing`s. A fault that breaks
    the framing raises `SipParseError` (answer its `partial` with 400, then
    close) and leaves the framer `broken`; every later `feed` raises it
    again. When messages framed before the fault in the same call, they are
    returned first and `broken` is already set: check it after each call.
    Work per call is bounded by the data fed plus one header-block scan per
    message (the search resumes where it stopped).
    """

    __slots__ = ("_buffer", "_need", "_scanned", "broken", "fault")

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._scanned = 0  # where the search for the empty line resumes
        self._need = 0  # octets of the message being received, once its head is read
        self.broken = False
        self.fault: SipParseError | None = None

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def feed(self, data: bytes) -> list[Request | Response | SipParseError | KeepAlivePing]:
        if self.broken:
            raise self.fault or SipParseError("stream already broken")
        out: list[Request | Response | SipParseError | KeepAlivePing] = []
        try:
            self._frame(data, out)
        except SipParseError as exc:
            self.broken = True
            self.fault = exc
            self._buffer.clear()
            if not out:
                raise
        return out

    def _frame(
        self, data: bytes, out: list[Request | Response | SipParseError | KeepAlivePing]
    ) -> None:
        self._buffer += data
        buf = self._buffer
        while buf:
            # Leading CRLFs: keep-alives (a double CRLF) or stray line ends.
            if buf[0] in b"\r\n":
                if buf.startswith(b"\r\n\r\n"):
                    out.append(KeepAlivePing())
                    del buf[:4]
                    continue
                if bytes(buf) in (b"\r", b"\r\n", b"\r\n\r"):
                    break  # wait: could be the start of a ping
                del buf[:1]
                continue
            if self._need:
                if len(buf) < self._need:
                    break
                total, self._need = self._need, 0
                out.append(self._take(total))
                continue
            split = find_head_end(buf, max(0, self._scanned - 3))
            if split is None:
                self._scanned = len(buf)
                if len(buf) > MAX_MESSAGE_SIZE:
                    raise SipParseError(
                        "header block exceeds the message size limit", status_hint=513
                    )
                break
            head_end, body_start = split
            try:
                length = _content_length(bytes(buf[:head_end]))
            except SipParseError as exc:
                raise SipParseError(
                    exc.reason, status_hint=exc.status_hint, partial=_partial(bytes(buf[:head_end]))
                ) from None
            total = body_start + length
            if total > MAX_MESSAGE_SIZE:
                raise SipParseError(
                    "message exceeds the size limit",
                    status_hint=513,
                    partial=_partial(bytes(buf[:head_end])),
                )
            self._scanned = 0
            if len(buf) < total:
                self._need = total
                break
            out.append(self._take(total))

    def _take(self, total: int) -> Request | Response | SipParseError:
        raw = bytes(self._buffer[:total])
        del self._buffer[:total]
        try:
            return parse_message(raw, datagram=False)
        except SipParseError as exc:
            return exc


def _partial(head: bytes) -> Request | Response | None:
    """The header block parsed without its body, so that a framing fault can
    still be answered (400) before the connection is closed."""
    try:
        message = parse_message(head + b"\r\n\r\n", datagram=True)
    except SipParseError as exc:
        return exc.partial
    return message
