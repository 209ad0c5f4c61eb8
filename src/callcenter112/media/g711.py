"""G.711 µ-law and A-law: the only codecs a 112 trunk is required to carry.

Audio stays G.711 end to end (DESIGN §5): it is relayed and recorded as the
8-bit code words it arrived in. Decoding to 16-bit linear PCM happens only to
mix, to detect in-band tones, or to play back in a browser.

`audioop` does the per-sample work in C on Python 3.11/3.12; on 3.13+ the
`audioop-lts` package provides the same module. PCMA⇄PCMU transcoding of a
frame is a single `bytes.translate()` through a 256-entry table (ITU-T G.711
Tables 1a/1b), built once from audioop so both directions agree with it.
"""

from __future__ import annotations

import enum
import sys

if sys.version_info >= (3, 13):  # pragma: no cover - depends on the interpreter
    import audioop
else:  # pragma: no cover
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import audioop

__all__ = [
    "ALAW_SILENCE",
    "ULAW_SILENCE",
    "Codec",
    "alaw_to_ulaw",
    "decode",
    "encode",
    "silence",
    "transcode",
    "ulaw_to_alaw",
]

SAMPLE_RATE = 8000
SAMPLE_WIDTH = 2  # bytes per linear sample handed to/from audioop

# The code word for linear 0 in each law (G.711: µ-law 0xFF, A-law 0xD5).
ULAW_SILENCE = 0xFF
ALAW_SILENCE = 0xD5


class Codec(enum.Enum):
    """A G.711 law with its static RTP payload type (RFC 3551 Table 4)."""

    PCMU = 0
    PCMA = 8

    @property
    def payload_type(self) -> int:
        return self.value

    @property
    def wav_format(self) -> int:
        # WAVE format tags: 6 = WAVE_FORMAT_ALAW, 7 = WAVE_FORMAT_MULAW.
        return 7 if self is Codec.PCMU else 6

    @property
    def silence_byte(self) -> int:
        return ULAW_SILENCE if self is Codec.PCMU else ALAW_SILENCE


def decode(codec: Codec, payload: bytes) -> bytes:
    """G.711 code words → 16-bit signed little-endian linear PCM."""
    if codec is Codec.PCMU:
        return audioop.ulaw2lin(payload, SAMPLE_WIDTH)
    return audioop.alaw2lin(payload, SAMPLE_WIDTH)


def encode(codec: Codec, pcm: bytes) -> bytes:
    """16-bit signed little-endian linear PCM → G.711 code words."""
    if codec is Codec.PCMU:
        return audioop.lin2ulaw(pcm, SAMPLE_WIDTH)
    return audioop.lin2alaw(pcm, SAMPLE_WIDTH)


def _table(src: Codec, dst: Codec) -> bytes:
    return encode(dst, decode(src, bytes(range(256))))


_ULAW_TO_ALAW = _table(Codec.PCMU, Codec.PCMA)
_ALAW_TO_ULAW = _table(Codec.PCMA, Codec.PCMU)


def ulaw_to_alaw(payload: bytes) -> bytes:
    return payload.translate(_ULAW_TO_ALAW)


def alaw_to_ulaw(payload: bytes) -> bytes:
    return payload.translate(_ALAW_TO_ULAW)


def transcode(src: Codec, dst: Codec, payload: bytes) -> bytes:
    """Re-express a frame in another law; a no-op (same object) when equal."""
    if src is dst:
        return payload
    if src is Codec.PCMU:
        return payload.translate(_ULAW_TO_ALAW)
    return payload.translate(_ALAW_TO_ULAW)


_SILENCE_CACHE: dict[tuple[Codec, int], bytes] = {}


def silence(codec: Codec, samples: int = 160) -> bytes:
    """`samples` code words of silence (160 = one 20 ms frame)."""
    key = (codec, samples)
    frame = _SILENCE_CACHE.get(key)
    if frame is None:
        frame = bytes([codec.silence_byte]) * samples
        if samples <= 8000:
            _SILENCE_CACHE[key] = frame
    return frame
