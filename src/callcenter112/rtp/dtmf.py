"""DTMF out of band: RFC 4733 telephone-events (receive and send) and SIP INFO bodies.

Owns turning the three out-of-band digit carriers into `DigitReceived`, once
per key press, and generating the RFC 4733 packets for digits we send to
agencies. (In-band tones are `media/tones.py`.)

Theory of operation — receiving (RFC 4733 §2.5.2). Every packet of one key
press carries the same RTP timestamp, the press's start time (§2.3.1); the
first has the marker bit (§2.5.1.1), updates grow the duration (§2.5.1.2), the
end packet is sent three times (§2.5.1.4). So a key press *is* its timestamp:
the first packet seen with a new timestamp reports the digit — whichever packet
that is, so a lost start packet still yields the digit once — and every other
packet of that timestamp is ignored. Packets older than the last press (late
or reordered end packets of the previous press) are ignored too. A press
longer than the 16-bit duration (about 8 s) continues in a new segment with a
new timestamp and no marker (§2.5.1.3); that is recognised and not reported
twice. Events 0-15 are ``0-9 * # A-D`` (§3.2); flash (16) and any other event
are ignored.

Sending (RFC 4733 §2.5.1). `plan_digit` lays out the packets of one digit on
the 20 ms media clock: a start packet with the marker bit, duration updates
about every `update_ms`, and the end packet on three consecutive ticks, all
with the same timestamp. `DtmfSender` queues digits and, tick by tick, turns
the plans into wire packets on an `OutgoingStream`.

SIP INFO (no RFC; de-facto formats of Cisco and others): `application/dtmf-relay`
(``Signal=5`` / ``Duration=160``) and `application/dtmf` (``5``).
"""

from __future__ import annotations

import struct
from collections import deque
from dataclasses import dataclass

from .events import DigitReceived
from .packet import RtpError
from .session import OutgoingStream

__all__ = [
    "DEFAULT_DURATION_MS",
    "DEFAULT_GAP_MS",
    "DEFAULT_VOLUME",
    "END_REPEATS",
    "EVENT_DIGITS",
    "EVENT_FLASH",
    "UPDATE_MS",
    "DtmfReceiver",
    "DtmfSender",
    "TelephoneEvent",
    "digit_from_info",
    "event_for_digit",
    "plan_digit",
]

EVENT_DIGITS = "0123456789*#ABCD"  # RFC 4733 §3.2, Table 7: events 0-15
EVENT_FLASH = 16  # RFC 4733 §3.2: hook flash — not a menu choice, ignored
MAX_VOLUME = 63  # RFC 4733 §2.3.4: 6-bit power level, 0 to -63 dBm0
MAX_DURATION = 0xFFFF  # RFC 4733 §2.3.5: 16-bit duration in timestamp units
END_REPEATS = 3  # RFC 4733 §2.5.1.4: the final packet is sent three times in all
UPDATE_MS = 50  # RFC 4733 §2.5.1.2: update interval (rounded to the 20 ms media clock)
DEFAULT_DURATION_MS = 100  # tone length we send; ITU-T Q.24 receivers need >= 40 ms
DEFAULT_GAP_MS = 100  # pause between sent digits; ITU-T Q.24 needs >= 40 ms
DEFAULT_VOLUME = 10  # -10 dBm0, a typical DTMF sending level (ITU-T Q.23)
FRAME_SAMPLES = 160  # one 20 ms tick at 8000 Hz
SAMPLES_PER_MS = 8  # RFC 4733 §2.1: telephone-event clock is 8000 Hz for DTMF
# A press whose timestamp is up to this far behind the last one is a late packet
# of an old press; further back, the sender's clock moved and it is a new press.
REORDER_WINDOW = 10 * 8000
# A segment this close to the 16-bit maximum is followed by a continuation (§2.5.1.3).
SEGMENT_NEAR_FULL = MAX_DURATION - 8 * FRAME_SAMPLES

_EVENT = struct.Struct("!BBH")


def _signed32(delta: int) -> int:
    delta &= 0xFFFF_FFFF
    return delta - (1 << 32) if delta & 0x8000_0000 else delta


def event_for_digit(digit: str) -> int:
    """The RFC 4733 event code of a DTMF digit (``0-9 * # A-D``, case-insensitive)."""
    code = EVENT_DIGITS.find(digit.upper()) if len(digit) == 1 else -1
    if code < 0:
        raise ValueError(f"{digit!r} is not a DTMF digit")
    return code


@dataclass(frozen=True, slots=True, kw_only=True)
class TelephoneEvent:
    """One RFC 4733 §2.3 event payload (the first 4 octets of the packet)."""

    event: int
    end: bool = False
    volume: int = DEFAULT_VOLUME
    duration: int = 0

    @classmethod
    def parse(cls, payload: bytes) -> TelephoneEvent:
        """The event in a telephone-event payload; `RtpError` if it is too short."""
        try:
            event, flags, duration = _EVENT.unpack_from(payload)
        except struct.error:
            raise RtpError("telephone-event payload shorter than 4 octets") from None
        return cls(event=event, end=flags > 0x7F, volume=flags & 0x3F, duration=duration)

    def serialize(self) -> bytes:
        if not 0 <= self.event <= 255 or not 0 <= self.volume <= MAX_VOLUME:
            raise ValueError("event must be 0..255 and volume 0..63")
        if not 0 <= self.duration <= MAX_DURATION:
            raise ValueError(f"duration {self.duration} does not fit 16 bits")
        return _EVENT.pack(self.event, (0x80 if self.end else 0) | self.volume, self.duration)

    @property
    def digit(self) -> str | None:
        """The DTMF digit of this event, None for flash and non-DTMF events."""
        return EVENT_DIGITS[self.event] if self.event < len(EVENT_DIGITS) else None


class DtmfReceiver:
    """Turns the telephone-event packets of one leg into one `DigitReceived` per press."""

    __slots__ = ("_duration", "_ended", "_event", "_ssrc", "_timestamp", "packets")

    def __init__(self) -> None:
        self._ssrc: int | None = None
        self._timestamp: int | None = None
        self._event = -1
        self._ended = False
        self._duration = 0
        self.packets = 0

    def receive(
        self, payload: bytes, *, ssrc: int, timestamp: int, marker: bool, now: float
    ) -> DigitReceived | None:
        """Account for one telephone-event packet; the digit if it starts a new press.

        Raises `RtpError` for a payload shorter than one event.
        """
        event = TelephoneEvent.parse(payload)
        self.packets += 1
        if ssrc != self._ssrc:  # a new source has its own timestamp space
            self._ssrc = ssrc
            self._timestamp = None
        if self._timestamp is not None:
            delta = _signed32(timestamp - self._timestamp)
            if delta == 0 and event.event == self._event:
                self._ended = self._ended or event.end
                self._duration = max(self._duration, event.duration)
                return None  # same press: update, end or retransmission
            if -REORDER_WINDOW < delta < 0:
                return None  # a late packet of an earlier press
            continuation = (
                0 < delta <= MAX_DURATION + FRAME_SAMPLES
                and event.event == self._event
                and not marker
                and not self._ended
                and self._duration >= SEGMENT_NEAR_FULL
            )
            if continuation:  # §2.5.1.3: next segment of a very long press
                self._timestamp = timestamp
                self._duration = event.duration
                self._ended = event.end
                return None
        self._timestamp = timestamp
        self._event = event.event
        self._ended = event.end
        self._duration = event.duration
        digit = event.digit
        if digit is None:
            return None
        return DigitReceived(
            digit=digit,
            source="rfc4733",
            at=now,
            rtp_timestamp=timestamp,
            duration_ms=event.duration // SAMPLES_PER_MS,
        )


def plan_digit(
    digit: str,
    *,
    duration_ms: int = DEFAULT_DURATION_MS,
    volume: int = DEFAULT_VOLUME,
    update_ms: int = UPDATE_MS,
    frame: int = FRAME_SAMPLES,
) -> tuple[TelephoneEvent | None, ...]:
    """The telephone-events of one digit, one entry per media-clock tick (None: send nothing).

    The tone lasts `duration_ms` rounded up to whole ticks. Tick 0 sends the
    start (to be sent with the marker bit), later ticks an update whenever
    `update_ms` have passed since the last one, the last tone tick the end
    event, and the two ticks after it repeat the end event (§2.5.1.4). Every
    entry is sent with the same RTP timestamp: the stream clock at tick 0.
    """
    code = event_for_digit(digit)
    if not 0 <= volume <= MAX_VOLUME:
        raise ValueError(f"volume {volume} is not 0..63")
    ticks = max(2, -(-duration_ms * SAMPLES_PER_MS // frame))
    if ticks * frame > MAX_DURATION:
        raise ValueError(f"a {duration_ms} ms digit needs more than one event segment")
    update = update_ms * SAMPLES_PER_MS
    plan: list[TelephoneEvent | None] = [TelephoneEvent(event=code, volume=volume, duration=frame)]
    sent = frame
    for tick in range(1, ticks - 1):
        duration = (tick + 1) * frame
        if duration - sent >= update:
            plan.append(TelephoneEvent(event=code, volume=volume, duration=duration))
            sent = duration
        else:
            plan.append(None)
    end = TelephoneEvent(event=code, end=True, volume=volume, duration=ticks * frame)
    plan.extend([end] * END_REPEATS)
    return tuple(plan)


class DtmfSender:
    """Sends queued digits as RFC 4733 packets on the media clock of one stream.

    While it has digits to send it owns the stream: each tick, `tick()` returns
    the packets to send *instead of* audio (possibly none, during the pause
    between two digits) and moves the stream clock one frame. Otherwise it
    returns None and the caller sends audio as usual (and moves the clock).
    """

    __slots__ = (
        "_duration_ms",
        "_gap_left",
        "_gap_ticks",
        "_index",
        "_plan",
        "_queue",
        "_start",
        "_update_ms",
        "_volume",
        "payload_type",
    )

    def __init__(
        self,
        *,
        payload_type: int = 101,
        duration_ms: int = DEFAULT_DURATION_MS,
        gap_ms: int = DEFAULT_GAP_MS,
        volume: int = DEFAULT_VOLUME,
        update_ms: int = UPDATE_MS,
    ) -> None:
        self.payload_type = payload_type
        self._duration_ms = duration_ms
        self._gap_ticks = -(-gap_ms * SAMPLES_PER_MS // FRAME_SAMPLES)
        self._volume = volume
        self._update_ms = update_ms
        self._queue: deque[str] = deque()
        self._plan: tuple[TelephoneEvent | None, ...] = ()
        self._index = 0
        self._start = 0
        self._gap_left = 0

    def send(self, digits: str) -> None:
        """Queue `digits` (``0-9 * # A-D``); `ValueError` names the first invalid one."""
        for digit in digits:
            event_for_digit(digit)
        self._queue.extend(digits.upper())

    @property
    def busy(self) -> bool:
        """True while digits are queued or one is being sent."""
        return bool(self._queue or self._index < len(self._plan))

    def tick(self, stream: OutgoingStream) -> list[bytes] | None:
        """The packets for this 20 ms tick, or None when there is nothing to send."""
        if self._index >= len(self._plan):
            if self._gap_left:
                self._gap_left -= 1
                if not self._queue:
                    return None  # nothing waits: the pause may carry audio
                stream.advance(FRAME_SAMPLES)
                return []
            if not self._queue:
                return None
            self._plan = plan_digit(
                self._queue.popleft(),
                duration_ms=self._duration_ms,
                volume=self._volume,
                update_ms=self._update_ms,
            )
            self._index = 0
            self._start = stream.timestamp
        event = self._plan[self._index]
        self._index += 1
        packets = []
        if event is not None:
            packets.append(
                stream.event_packet(
                    event.serialize(),
                    self.payload_type,
                    timestamp=self._start,
                    marker=self._index == 1,
                )
            )
        if self._index >= len(self._plan):
            self._gap_left = self._gap_ticks  # ITU-T Q.24: a pause between digits
        stream.advance(FRAME_SAMPLES)
        return packets


def digit_from_info(content_type: str, body: str | bytes, *, now: float) -> DigitReceived | None:
    """The digit in a SIP INFO body, or None if the body carries none.

    `application/dtmf-relay`: ``Signal=<digit>`` and optional ``Duration=<ms>``
    lines (``Signal=10``/``11`` are accepted for ``*``/``#``, as some gateways
    send them). `application/dtmf`: the digit alone (or ``10``/``11``).
    Anything else — other content types, flash, garbage — is None; the SIP
    layer still answers 200 OK, a bad INFO must not end an emergency call.
    """
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    kind = content_type.split(";", 1)[0].strip().lower()
    duration_ms: int | None = None
    if kind == "application/dtmf-relay":
        signal = None
        for line in text.splitlines():
            key, sep, value = line.partition("=")
            if not sep:
                continue
            key = key.strip().lower()
            if key == "signal":
                signal = value.strip()
            elif key == "duration":
                try:
                    duration_ms = int(value.strip())
                except ValueError:
                    duration_ms = None
        if signal is None:
            return None
    elif kind == "application/dtmf":
        signal = text.strip()
    else:
        return None
    digit = _signal_digit(signal)
    if digit is None:
        return None
    return DigitReceived(digit=digit, source="info", at=now, duration_ms=duration_ms)


def _signal_digit(signal: str) -> str | None:
    if len(signal) == 1 and signal.upper() in EVENT_DIGITS:
        return signal.upper()
    return _NUMERIC_SIGNALS.get(signal)


# Gateways that send event codes instead of characters do so for * and # only.
_NUMERIC_SIGNALS = {"10": "*", "11": "#"}
