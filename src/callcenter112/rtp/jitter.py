"""A small fixed-delay jitter buffer for the mixer and recorder path.

Owns turning one leg's packets, as they arrive (late, reordered, duplicated,
with gaps), into a steady 20 ms frame per tick of the shared media clock.

Theory of operation. Positions are RTP timestamps of the sender, unwrapped to
unbounded integers so 2**32 wrap-around is invisible. The play-out cursor
starts `delay` samples before the first packet's timestamp and advances one
frame per `pop()`. A packet is kept if any of its samples are still ahead of
the cursor; the `delay` is therefore the reorder tolerance: a packet may arrive
up to `delay` samples after its nominal time and still be played. Payloads
are addressed per sample (G.711: one octet per sample), so senders using 10,
20, 30 or 40 ms packets all come out as `frame`-sized frames, and missing
samples inside a frame are filled with the codec's silence octet.

Bounded: at most `capacity` packets are held (the oldest is dropped beyond
that) and the cursor never trails the newest packet by more than `max_delay`
(a sender clock faster than ours, a burst after a network stall or a sender
whose timestamps jumped forward: `pop` skips the cursor forward so the newest
packet plays after `delay`). A run of `LATE_RESYNC` consecutive late packets
means the sender's timestamps moved back (restart, non-compliant silence
handling): the buffer re-syncs to them instead of discarding the rest of the
call.

Pure and cheap: the common case (aligned 20 ms packets) is a list append on
`put` and a list pop on `pop`, no copy.
"""

from __future__ import annotations

from bisect import bisect_left

__all__ = ["DEFAULT_DELAY", "DEFAULT_MAX_DELAY", "LATE_RESYNC", "JitterBuffer"]

FRAME_SAMPLES = 160  # 20 ms at 8000 Hz, the media clock's tick
# 60 ms of reorder tolerance: a mobile uplink's jitter, small against the 150 ms
# one-way delay ITU-T G.114 §3 keeps for good quality.
DEFAULT_DELAY = 3 * FRAME_SAMPLES
DEFAULT_MAX_DELAY = 15 * FRAME_SAMPLES  # 300 ms: beyond this latency hurts more than a skip
DEFAULT_CAPACITY = 64  # packets; > max_delay even for 10 ms packetization
LATE_RESYNC = 5  # consecutive late packets (100 ms of 20 ms audio) before re-syncing


def _signed32(delta: int) -> int:
    delta &= 0xFFFF_FFFF
    return delta - (1 << 32) if delta & 0x8000_0000 else delta


class JitterBuffer:
    """Play-out buffer of one leg (see the module docstring for the rules)."""

    __slots__ = (
        "_capacity",
        "_cursor",
        "_delay",
        "_fill",
        "_frame",
        "_late_run",
        "_max_delay",
        "_payloads",
        "_ref_ext",
        "_ref_raw",
        "_starts",
        "concealed",
        "duplicates",
        "late",
        "overflow",
        "played",
        "resyncs",
    )

    def __init__(
        self,
        *,
        delay: int = DEFAULT_DELAY,
        max_delay: int = DEFAULT_MAX_DELAY,
        frame: int = FRAME_SAMPLES,
        capacity: int = DEFAULT_CAPACITY,
        fill: int = 0xFF,
    ) -> None:
        if not 0 <= delay < max_delay or frame <= 0 or capacity <= 0:
            raise ValueError("need 0 <= delay < max_delay, frame > 0 and capacity > 0")
        self._delay = delay
        self._max_delay = max_delay
        self._frame = frame
        self._capacity = capacity
        self._fill = bytes((fill,)) * frame
        self._starts: list[int] = []  # unwrapped timestamps, ascending
        self._payloads: list[bytes] = []
        self._cursor: int | None = None
        self._ref_raw = 0
        self._ref_ext = 0
        self._late_run = 0
        self.late = 0  # arrived after all their samples were played (dropped)
        self.duplicates = 0
        self.overflow = 0  # dropped because the buffer was full or the cursor skipped them
        self.resyncs = 0
        self.played = 0  # frames returned with audio
        self.concealed = 0  # frames returned as None (nothing to play)

    def __len__(self) -> int:
        return len(self._starts)

    @property
    def level(self) -> int:
        """Samples buffered ahead of the play-out cursor (0 when empty)."""
        if self._cursor is None or not self._starts:
            return 0
        return max(0, self._starts[-1] + len(self._payloads[-1]) - self._cursor)

    def _unwrap(self, timestamp: int) -> int:
        return self._ref_ext + _signed32(timestamp - self._ref_raw)

    def _resync(self, position: int) -> None:
        self._starts.clear()
        self._payloads.clear()
        self._cursor = position - self._delay
        self._late_run = 0

    def put(self, timestamp: int, payload: bytes) -> bool:
        """Buffer one packet's payload; False if it was dropped (late, duplicate, empty).

        Packets are placed by timestamp alone: once unwrapped it orders them and a
        duplicate repeats it, so the sequence number adds nothing here.
        """
        if not payload:
            return False
        if self._cursor is None:
            self._ref_raw = timestamp
            self._ref_ext = timestamp
            self._cursor = timestamp - self._delay
            start = timestamp
        else:
            start = self._unwrap(timestamp)
            if start > self._ref_ext:
                self._ref_raw = timestamp
                self._ref_ext = start
            if start + len(payload) <= self._cursor:
                self.late += 1
                self._late_run += 1
                if self._late_run < LATE_RESYNC:
                    return False
                self.resyncs += 1
                self._resync(start)
                self._ref_raw = timestamp
                self._ref_ext = start
            else:
                self._late_run = 0
        starts = self._starts
        if not starts or start > starts[-1]:
            starts.append(start)
            self._payloads.append(payload)
        else:
            index = bisect_left(starts, start)
            if index < len(starts) and starts[index] == start:
                self.duplicates += 1
                return False
            starts.insert(index, start)
            self._payloads.insert(index, payload)
        if len(starts) > self._capacity:
            self.overflow += 1
            del starts[0], self._payloads[0]
        return True

    def pop(self, timestamp: int | None = None) -> bytes | None:
        """The `frame` samples at the play-out cursor (or at `timestamp`), then advance.

        Returns None when no buffered packet covers any of those samples (the
        caller plays silence or conceals); otherwise exactly `frame` octets,
        gaps filled with the silence octet.
        """
        if self._cursor is None:
            self.concealed += 1
            return None
        play = self._cursor if timestamp is None else self._unwrap(timestamp)
        starts = self._starts
        payloads = self._payloads
        frame = self._frame
        if starts and starts[-1] + len(payloads[-1]) - play > self._max_delay:
            # The sender runs ahead of us (clock drift, a burst after a stall, a jump
            # forward of its clock): skip forward to play its newest packet after `delay`.
            play = starts[-1] - self._delay
            self.resyncs += 1
        end = play + frame
        self._cursor = end
        while starts and starts[0] + len(payloads[0]) <= play:
            del starts[0], payloads[0]
            self.overflow += 1
        if not starts or starts[0] >= end:
            self.concealed += 1
            return None
        if starts[0] == play and len(payloads[0]) == frame:
            del starts[0]
            self.played += 1
            return payloads.pop(0)
        out = bytearray(self._fill)
        index = 0
        while index < len(starts) and starts[index] < end:
            start = starts[index]
            payload = payloads[index]
            lo = max(start, play)
            hi = min(start + len(payload), end)
            out[lo - play : hi - play] = payload[lo - start : hi - start]
            if start + len(payload) <= end:
                del starts[index], payloads[index]
            else:
                index += 1
        self.played += 1
        return bytes(out)
