"""Joining call legs: the two-party relay and the N-party mixer.

This module owns the payload path between legs; RTP headers, sockets and timing are the
glue's (`net/`).

* `Relay` is the caller ⇄ far party (operator, then agency) path of an ordinary bridged call.
  Each received payload is forwarded at once by the glue; here it is only re-expressed in the
  other leg's law when the two legs negotiated different ones (PCMA ⇄ PCMU through the G.711
  translation table: one `bytes.translate`, no decoding). Same law: the very same object.
* `Mixer` joins three or more parties (caller, operator, agency, supervisor). Once per clock
  tick every party contributes its oldest buffered 20 ms (or nothing), and every listener gets
  the sum of the parties it may hear, in its own law. Who hears whom is a *hearing matrix*;
  `hearing()` builds it for the supervisor modes:

  ==========  ===========================================================================
  conference  everyone hears everyone (warm transfer: caller + operator + agency)
  listen      the supervisor hears everyone; nobody hears the supervisor
  whisper     the supervisor hears everyone; only the operator hears the supervisor
  barge       the supervisor joins: everyone hears everyone
  ==========  ===========================================================================

Cost (DESIGN §5: decode only to mix): a party's frame is decoded at most once per tick and
only when some listener needs a sum; silent or absent frames are skipped; a listener that
hears exactly one party gets that party's code words as-is (or table-transcoded), bit-exact;
identical sums (same speakers) and their encodings are shared between listeners. Sums use
`audioop.add`, which saturates instead of wrapping.

A recording tap is a party that listens and does not speak: ``mixer.add("recording",
codec, speaks=False)`` with ``set_hearing("recording", everyone but the caller)`` yields the
right channel of the incident's recording including a whisper the caller did not hear.
"""

from __future__ import annotations

import enum
import sys
from collections.abc import Iterable

from .g711 import Codec, decode, encode, silence, transcode

if sys.version_info >= (3, 13):  # pragma: no cover - depends on the interpreter
    import audioop
else:  # pragma: no cover
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import audioop

__all__ = [
    "FRAME_BYTES",
    "MAX_BUFFER_FRAMES",
    "Mixer",
    "Mode",
    "Relay",
    "Role",
    "Transcoder",
    "hearing",
]

FRAME_BYTES = 160  # 20 ms of G.711 at 8000 Hz (RFC 3551 §4.5, §4.5.14)
# Audio a party may have buffered before its oldest is dropped: 60 ms. Absorbs arrival
# jitter against the tick without letting latency build up in the conference.
MAX_BUFFER_FRAMES = 3


class Transcoder:
    """One direction of a leg pair: re-express payloads in the receiving leg's law."""

    __slots__ = ("dst", "src", "table")

    def __init__(self, src: Codec, dst: Codec) -> None:
        self.src = src
        self.dst = dst
        # None when both legs use the same law: payloads pass through untouched.
        self.table: bytes | None = None if src is dst else transcode(src, dst, bytes(range(256)))

    @property
    def passthrough(self) -> bool:
        return self.table is None

    def convert(self, payload: bytes) -> bytes:
        table = self.table
        return payload if table is None else payload.translate(table)


class Relay:
    """The payload path of a two-party bridge: caller ⇄ far party (operator or agency).

    Counts frames each way, so the glue can tell a silent leg from a dead one.
    """

    __slots__ = (
        "_to_caller",
        "_to_far",
        "caller_codec",
        "far_codec",
        "to_caller_count",
        "to_far_count",
    )

    def __init__(self, *, caller: Codec, far: Codec) -> None:
        self.caller_codec = caller
        self.far_codec = far
        self._to_far = Transcoder(caller, far)
        self._to_caller = Transcoder(far, caller)
        self.to_far_count = 0
        self.to_caller_count = 0

    @property
    def transcoding(self) -> bool:
        return not self._to_far.passthrough

    def to_far(self, payload: bytes) -> bytes:
        """A payload from the caller, in the far leg's law."""
        self.to_far_count += 1
        table = self._to_far.table
        return payload if table is None else payload.translate(table)

    def to_caller(self, payload: bytes) -> bytes:
        """A payload from the far leg, in the caller's law."""
        self.to_caller_count += 1
        table = self._to_caller.table
        return payload if table is None else payload.translate(table)

    def set_far(self, codec: Codec) -> None:
        """The far party changed (transfer to an agency): use its law from now on."""
        self.far_codec = codec
        self._to_far = Transcoder(self.caller_codec, codec)
        self._to_caller = Transcoder(codec, self.caller_codec)


class Role(enum.StrEnum):
    """Party names the supervisor modes know about. Any other name is an ordinary party."""

    CALLER = "caller"
    OPERATOR = "operator"
    AGENCY = "agency"
    SUPERVISOR = "supervisor"


class Mode(enum.Enum):
    """How a supervisor (if present) takes part; see the module docstring."""

    CONFERENCE = "conference"
    LISTEN = "listen"
    WHISPER = "whisper"
    BARGE = "barge"


def hearing(mode: Mode, present: Iterable[str]) -> dict[str, frozenset[str]]:
    """The hearing matrix for `mode`: listener → the parties it hears."""
    names = frozenset(present)
    supervisor = Role.SUPERVISOR.value
    matrix: dict[str, frozenset[str]] = {}
    for listener in names:
        others = names - {listener}
        if (
            mode in (Mode.CONFERENCE, Mode.BARGE)
            or listener == supervisor
            or (mode is Mode.WHISPER and listener == Role.OPERATOR.value)
        ):
            matrix[listener] = others
        else:
            matrix[listener] = others - {supervisor}
    return matrix


class _Party:
    __slots__ = ("buf", "codec", "hears", "listens", "quiet", "speaks")

    def __init__(self, codec: Codec, *, speaks: bool, listens: bool) -> None:
        self.codec = codec
        self.speaks = speaks
        self.listens = listens
        self.hears: frozenset[str] = frozenset()
        self.buf = bytearray()
        self.quiet = silence(codec, FRAME_BYTES)


class Mixer:
    """Mixes 20 ms frames of N parties per tick according to a hearing matrix."""

    __slots__ = ("_buffer_limit", "_parties", "mode")

    def __init__(self, *, max_buffer_frames: int = MAX_BUFFER_FRAMES) -> None:
        self._parties: dict[str, _Party] = {}
        self._buffer_limit = max_buffer_frames * FRAME_BYTES
        self.mode: Mode | None = Mode.CONFERENCE

    def add(self, name: str, codec: Codec, *, speaks: bool = True, listens: bool = True) -> None:
        """Add a party (or change its law); the hearing matrix is rebuilt for `mode`."""
        self._parties[name] = _Party(codec, speaks=speaks, listens=listens)
        self._rebuild()

    def remove(self, name: str) -> None:
        if self._parties.pop(name, None) is not None:
            self._rebuild()

    def __contains__(self, name: object) -> bool:
        return name in self._parties

    @property
    def parties(self) -> list[str]:
        return list(self._parties)

    def set_mode(self, mode: Mode) -> None:
        """Apply a supervisor mode to all parties (replaces any custom hearing)."""
        self.mode = mode
        self._rebuild()

    def set_hearing(self, listener: str, speakers: Iterable[str]) -> None:
        """Custom hearing for one listener; sticks until the next mode change or add/remove."""
        party = self._parties[listener]
        party.hears = frozenset(s for s in speakers if s != listener)

    def hears(self, listener: str) -> frozenset[str]:
        return self._parties[listener].hears

    def _rebuild(self) -> None:
        if self.mode is None:
            return
        speaking = [n for n, p in self._parties.items() if p.speaks]
        matrix = hearing(self.mode, speaking)
        for name, party in self._parties.items():
            if party.listens:
                party.hears = matrix.get(name, frozenset(speaking))
            else:
                party.hears = frozenset()
        # A party that listens but does not speak (a tap) hears every speaker by default.

    def push(self, name: str, payload: bytes) -> None:
        """Audio received from party `name`, in its own law (any packet length)."""
        party = self._parties.get(name)
        if party is None or not party.speaks:
            return
        buf = party.buf
        buf += payload
        excess = len(buf) - self._buffer_limit
        if excess > 0:
            del buf[:excess]  # drop the oldest: latency must not build up

    def mix(self) -> dict[str, bytes]:
        """One tick: take a frame from every speaker; return each listener's frame."""
        active: dict[str, tuple[Codec, bytes]] = {}
        for name, party in self._parties.items():
            buf = party.buf
            if not buf:
                continue
            if len(buf) >= FRAME_BYTES:
                raw = bytes(buf[:FRAME_BYTES])
                del buf[:FRAME_BYTES]
            else:  # under-run on a short packet: pad the tail with silence
                raw = bytes(buf) + party.quiet[len(buf) :]
                buf.clear()
            if raw != party.quiet:
                active[name] = (party.codec, raw)

        out: dict[str, bytes] = {}
        linear: dict[str, bytes] = {}
        sums: dict[frozenset[str], bytes] = {}
        encoded: dict[tuple[frozenset[str], Codec], bytes] = {}
        for name, party in self._parties.items():
            if not party.listens:
                continue
            speakers = party.hears.intersection(active)
            if not speakers:
                out[name] = party.quiet
                continue
            if len(speakers) == 1:
                (only,) = speakers
                codec, raw = active[only]
                out[name] = transcode(codec, party.codec, raw)
                continue
            key = (speakers, party.codec)
            frame = encoded.get(key)
            if frame is None:
                total = sums.get(speakers)
                if total is None:
                    for speaker in speakers:
                        pcm = linear.get(speaker)
                        if pcm is None:
                            codec, raw = active[speaker]
                            pcm = linear[speaker] = decode(codec, raw)
                        total = pcm if total is None else audioop.add(total, pcm, 2)
                    assert total is not None
                    sums[speakers] = total
                frame = encoded[key] = encode(party.codec, total)
            out[name] = frame
        return out
