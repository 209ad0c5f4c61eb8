"""Cut SIP messages out of a TCP byte stream (RFC 3261 §18.3).

On a stream the header block ends at the first empty line and the body is
exactly Content-Length octets, which is mandatory there. Messages may arrive
back to back in one segment or split anywhere, even inside the CRLF CRLF.
A CRLF CRLF between messages is an RFC 5626 §4.4.1 keep-alive ping that is
answered with a single CRLF pong.

A framing fault (no Content-Length, a header block or body over the limits)
cannot be resynchronised: the stream is poisoned and the connection must be
closed after answering 400 if the message got far enough to be answered.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from .errors import SipParseError
from .message import MAX_MESSAGE_SIZE, Request, Response, parse_message

__all__ = ["KeepAlivePing", "StreamFramer"]

_CONTENT_LENGTH: Final = re.compile(rb"^(?:content-length|l)[ \t]*:[ \t]*(\d{1,10})[ \t]*$", re.I | re.M)


@dataclass(frozen=True, slots=True, kw_only=True)
class KeepAlivePing:
    """A CRLFCRLF keep-alive arrived; answer with `PONG`."""

    PONG = b"\r\n"


class StreamFramer:
    """Incremental framer for one TCP connection.

    `feed(data)` returns the complete items found so far: parsed messages,
    `SipParseError`s for messages that framed correctly but did not parse
    (the connection may continue), and `KeepAlivePing`s. A fault that breaks
    the framing raises `SipParseError` and leaves the framer `broken`.
    """

    __slots__ = ("_buffer", "broken")

    def __init__(self) -> None:
        self._buffer = bytearray()
        self.broken = False

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def feed(self, data: bytes) -> list[Request | Response | SipParseError | KeepAlivePing]:
        if self.broken:
            raise SipParseError("stream already broken")
        self._buffer += data
        out: list[Request | Response | SipParseError | KeepAlivePing] = []
        buf = self._buffer
        while buf:
            # Leading CRLFs: keep-alives (a double CRLF) or stray line ends.
            if buf[:1] in (b"\r", b"\n"):
                if buf.startswith(b"\r\n\r\n"):
                    out.append(KeepAlivePing())
                    del buf[:4]
                    continue
                if buf in (b"\r", b"\r\n", b"\r\n\r"):
                    break  # wait: could be the start of a ping
                del buf[:1]
                continue
            end = buf.find(b"\r\n\r\n")
            sep = 4
            if end < 0:
                end = buf.find(b"\n\n")
                sep = 2
            if end < 0:
                if len(buf) > MAX_MESSAGE_SIZE:
                    self.broken = True
                    raise SipParseError("header block exceeds the message size limit", status_hint=513)
                break
            head = bytes(buf[:end])
            m = _CONTENT_LENGTH.search(head)
            if m is None:
                self.broken = True
                raise SipParseError("stream message without Content-Length")
            length = int(m.group(1))
            total = end + sep + length
            if total > MAX_MESSAGE_SIZE:
                self.broken = True
                raise SipParseError("message exceeds the size limit", status_hint=513)
            if len(buf) < total:
                break
            raw = bytes(buf[:total])
            del buf[:total]
            try:
                out.append(parse_message(raw, datagram=False))
            except SipParseError as exc:
                out.append(exc)
        return out
