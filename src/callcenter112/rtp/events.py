"""Events the rtp layer hands up to the call coordinator.

Owns the event records of the media-plane protocols: a dialled digit, from
whichever of the three ways a trunk may carry it (RFC 4733 telephone-events,
in-band DTMF tones, SIP INFO). Frozen, slotted, keyword-only, past tense
(STYLE §3).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, TypeAlias

__all__ = ["DigitReceived", "DigitSource"]

DigitSource: TypeAlias = Literal["rfc4733", "inband", "info"]


@dataclass(frozen=True, slots=True, kw_only=True)
class DigitReceived:
    """One key press, reported once, as soon as it is recognised (for barge-in).

    `digit` is one of ``0-9 * # A B C D``. `at` is the receive time on the
    caller's clock (the `now` passed in). `rtp_timestamp` is the event's RTP
    timestamp for RFC 4733, the sample position of the tone's detection for
    in-band, and None for SIP INFO. `duration_ms` is what the source said
    about the length of the press when it was reported (None if unknown).
    """

    digit: str
    source: DigitSource
    at: float
    rtp_timestamp: int | None = None
    duration_ms: int | None = None
