"""The one error type of the SIP layer.

Every malformed input — bytes off the wire, a header value that does not fit
its grammar, a message that breaks a framing limit — raises `SipParseError`
carrying the status code to answer with (h11's `RemoteProtocolError` model).
The endpoint turns it into that response when the message got far enough to
have the headers a response needs (Via, From, To, Call-ID, CSeq), and drops
the datagram otherwise. Nothing else may escape the parser.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .message import Request, Response

__all__ = ["SipParseError"]


class SipParseError(ValueError):
    """A SIP message or header could not be understood.

    `status_hint` is the response to send (400 unless a more precise code
    applies: 505 for a wrong SIP version, 513 for a message too large).
    `partial` is whatever could be parsed before the fault, so that a
    request can still be answered with a response that matches it.
    """

    def __init__(
        self,
        reason: str,
        *,
        status_hint: int = 400,
        partial: Request | Response | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status_hint = status_hint
        self.partial = partial

    def __repr__(self) -> str:
        return f"SipParseError({self.reason!r}, status_hint={self.status_hint})"
