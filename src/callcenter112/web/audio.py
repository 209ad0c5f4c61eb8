"""Recordings in the browser: G.711 WAV → 16-bit PCM WAV on the fly, byte ranges, waveforms.

Recordings stay G.711 on disk, bit for bit as they crossed the wire (DESIGN
§5), but browsers play only linear PCM WAV. `PcmPlan` describes the PCM WAV a
recording decodes to — a 44-byte canonical header followed by every code word
expanded to a 16-bit sample — without decoding anything: its length is known
up front, so the player can seek with HTTP range requests (RFC 9110 §14) and
only the requested bytes are read and decoded (`read_output`). Files that are
already 16-bit PCM pass through with a fresh header.

`parse_range` implements the single-range subset of RFC 9110 §14.1.2 that
media elements send (``bytes=a-b``, ``bytes=a-``, ``bytes=-n``). A Range in
another unit, or a list of several ranges, is ignored and the whole body is
sent (RFC 9110 §14.2 lets a server do so); a malformed or unsatisfiable bytes
range raises `RangeNotSatisfiable` (416).

`read_waveform` draws the picture auditors look at before listening: for
each pixel column the minimum and maximum sample of each channel (left the
caller, right what the centre sent), read column by column so a one-hour
recording never sits in memory whole. `waveform_svg` renders it.

The functions that read files block; the web layer runs them in a thread.
"""

from __future__ import annotations

import html
import struct
import sys
from array import array
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ..media.g711 import Codec, decode
from ..media.recorder import WavError, wav_info
from ..numerals import is_ascii_digits

if sys.version_info >= (3, 13):  # pragma: no cover - depends on the interpreter
    import audioop
else:  # pragma: no cover
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import audioop

__all__ = [
    "PCM_HEADER_SIZE",
    "ByteRange",
    "PcmPlan",
    "RangeNotSatisfiable",
    "Waveform",
    "parse_range",
    "pcm_plan",
    "pcm_wav_header",
    "read_output",
    "read_waveform",
    "waveform_svg",
]

PCM_HEADER_SIZE = 44  # RIFF(12) + "fmt "(8 + 16) + "data"(8): the canonical PCM header
_PCM_FORMAT = 1
_MAX_RANGE_HEADER = 200


class RangeNotSatisfiable(Exception):
    """A bytes Range that is malformed or lies beyond the body (RFC 9110 §15.5.17)."""

    def __init__(self, total: int) -> None:
        super().__init__(f"range not satisfiable (body is {total} bytes)")
        self.total = total


@dataclass(frozen=True, slots=True)
class ByteRange:
    start: int
    end: int  # inclusive, as in Content-Range

    @property
    def length(self) -> int:
        return self.end - self.start + 1


def parse_range(header: str | None, total: int) -> ByteRange | None:
    """The one byte range to send, or None for the whole body."""
    if header is None:
        return None
    text = header.strip()
    unit, sep, spec = text.partition("=")
    if not sep or unit.strip().lower() != "bytes":
        return None  # another unit: ignore the header
    if "," in spec:
        return None  # several ranges: send everything (RFC 9110 §14.2 allows it)
    if len(text) > _MAX_RANGE_HEADER:
        raise RangeNotSatisfiable(total)
    first, dash, last = spec.strip().partition("-")
    first, last = first.strip(), last.strip()
    if not dash or (first and not is_ascii_digits(first)) or (last and not is_ascii_digits(last)):
        raise RangeNotSatisfiable(total)
    if not first:  # suffix range: the last N bytes
        if not last or int(last) == 0 or total == 0:
            raise RangeNotSatisfiable(total)
        return ByteRange(max(0, total - int(last)), total - 1)
    start = int(first)
    end = total - 1 if not last else min(int(last), total - 1)
    if last and int(last) < start:
        raise RangeNotSatisfiable(total)
    if start >= total:
        raise RangeNotSatisfiable(total)
    return ByteRange(start, end)


def pcm_wav_header(*, channels: int, sample_rate: int, frames: int) -> bytes:
    """A 44-byte 16-bit PCM WAV header for `frames` sample frames."""
    block_align = channels * 2
    data_size = frames * block_align
    return b"".join(
        (
            b"RIFF",
            struct.pack("<I", (36 + data_size) & 0xFFFFFFFF),
            b"WAVE",
            b"fmt ",
            struct.pack(
                "<IHHIIHH",
                16,
                _PCM_FORMAT,
                channels,
                sample_rate,
                sample_rate * block_align,
                block_align,
                16,
            ),
            b"data",
            struct.pack("<I", data_size & 0xFFFFFFFF),
        )
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class PcmPlan:
    """How one recording file is served as a 16-bit PCM WAV."""

    codec: Codec | None  # None: the file is 16-bit PCM already (bytes pass through)
    channels: int
    sample_rate: int
    data_offset: int  # where the audio starts in the source file
    data_size: int  # source audio bytes
    header: bytes

    @property
    def expand(self) -> int:
        """Output bytes per source byte: 2 for G.711 (8-bit code → 16-bit sample)."""
        return 2 if self.codec is not None else 1

    @property
    def total(self) -> int:
        return PCM_HEADER_SIZE + self.data_size * self.expand

    @property
    def duration_s(self) -> float:
        frames = self.data_size // (self.channels * (1 if self.codec else 2))
        return frames / self.sample_rate if self.sample_rate else 0.0


def pcm_plan(path: Path) -> PcmPlan:
    """Read a recording's header (blocking); raises `WavError` for what cannot be played."""
    info = wav_info(path)
    if info.codec is None and info.bits_per_sample != 16:
        raise WavError(f"{path}: {info.bits_per_sample}-bit PCM is not served")
    frames = info.frames
    return PcmPlan(
        codec=info.codec,
        channels=info.channels,
        sample_rate=info.sample_rate,
        data_offset=info.data_offset,
        data_size=info.data_size,
        header=pcm_wav_header(channels=info.channels, sample_rate=info.sample_rate, frames=frames),
    )


def read_output(plan: PcmPlan, f: BinaryIO, start: int, end: int) -> bytes:
    """Output bytes [start, end] (inclusive) of the PCM WAV, read from the open source file."""
    if start < 0 or end >= plan.total or start > end:
        raise ValueError(f"bytes {start}-{end} outside 0-{plan.total - 1}")
    out = bytearray()
    if start < PCM_HEADER_SIZE:
        out += plan.header[start : min(end + 1, PCM_HEADER_SIZE)]
        start = PCM_HEADER_SIZE
    if start > end:
        return bytes(out)
    w = plan.expand
    d0, d1 = start - PCM_HEADER_SIZE, end - PCM_HEADER_SIZE
    s0, s1 = d0 // w, d1 // w
    f.seek(plan.data_offset + s0)
    raw = f.read(s1 - s0 + 1)
    if len(raw) != s1 - s0 + 1:
        raise WavError(f"recording ends early: wanted {s1 - s0 + 1} bytes at {s0}")
    pcm = decode(plan.codec, raw) if plan.codec is not None else raw
    skip = d0 - s0 * w
    out += pcm[skip : skip + (d1 - d0 + 1)]
    return bytes(out)


# --------------------------------------------------------------------------- waveform


@dataclass(frozen=True, slots=True, kw_only=True)
class Waveform:
    """Per pixel column, (min, max) of each channel's 16-bit samples."""

    columns: tuple[tuple[tuple[int, int], ...], ...]  # [channel][column]
    duration_s: float


def _minmax(pcm: bytes, channel: int, channels: int) -> tuple[int, int]:
    if not pcm:
        return (0, 0)
    if channels == 1:
        lo, hi = audioop.minmax(pcm, 2)
        return (lo, hi)
    samples = array("h")
    samples.frombytes(pcm)
    if sys.byteorder == "big":  # pragma: no cover - WAV is little-endian
        samples.byteswap()
    lo, hi = audioop.minmax(samples[channel::channels].tobytes(), 2)
    return (lo, hi)


def read_waveform(path: Path, *, columns: int = 1000) -> Waveform:
    """Min/max per column per channel of a recording (blocking; reads one column at a time)."""
    if columns < 1:
        raise ValueError("columns must be positive")
    plan = pcm_plan(path)
    ch = plan.channels
    src_frame = ch * (1 if plan.codec else 2)
    frames = plan.data_size // src_frame
    width = max(1, min(columns, frames))
    result: list[list[tuple[int, int]]] = [[] for _ in range(ch)]
    with open(path, "rb") as f:
        for k in range(width):
            first, stop = k * frames // width, (k + 1) * frames // width
            f.seek(plan.data_offset + first * src_frame)
            raw = f.read((stop - first) * src_frame)
            pcm = decode(plan.codec, raw) if plan.codec is not None else raw
            for c in range(ch):
                result[c].append(_minmax(pcm, c, ch))
    return Waveform(columns=tuple(tuple(c) for c in result), duration_s=plan.duration_s)


_TICK_STEPS_S = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600)


def _clock(seconds: float) -> str:
    s = int(seconds)
    return (
        f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"
    )


def waveform_svg(
    wave: Waveform, *, labels: tuple[str, ...] = ("Penelepon · Caller", "Pusat · Centre")
) -> str:
    """An SVG picture of `wave`: one band per channel, a time axis below."""
    width = max((len(c) for c in wave.columns), default=1) or 1
    band, gap, axis = 90, 14, 22
    n = len(wave.columns)
    height = n * band + (n - 1) * gap + axis
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" '
        f'aria-label="waveform">',
        f'<rect width="{width}" height="{height}" fill="#0b1f33"/>',
    ]
    colours = ("#7fd1ff", "#ffd27f", "#b6ff9e", "#ff9ec7")
    for c, cols in enumerate(wave.columns):
        top = c * (band + gap)
        mid = top + band / 2
        half = band / 2 - 2
        d = []
        for x, (lo, hi) in enumerate(cols):
            y1 = mid - hi / 32768 * half
            y2 = mid - lo / 32768 * half
            if y2 - y1 < 1:
                y1, y2 = mid - 0.5, mid + 0.5
            d.append(f"M{x}.5 {y1:.1f}V{y2:.1f}")
        parts.append(f'<line x1="0" x2="{width}" y1="{mid}" y2="{mid}" stroke="#335" />')
        parts.append(
            f'<path d="{"".join(d)}" stroke="{colours[c % len(colours)]}" '
            'stroke-width="1" fill="none" shape-rendering="crispEdges"/>'
        )
        label = html.escape(labels[c] if c < len(labels) else f"ch {c + 1}")
        parts.append(
            f'<text x="6" y="{top + 14}" fill="#e8f1ff" font-size="12" '
            f'font-family="sans-serif">{label}</text>'
        )
    if wave.duration_s > 0:
        step = next((s for s in _TICK_STEPS_S if wave.duration_s / s <= 10), 3600)
        base = height - axis
        t: float = 0
        while t <= wave.duration_s:
            tx = t / wave.duration_s * width
            parts.append(
                f'<line x1="{tx:.1f}" x2="{tx:.1f}" y1="{base}" y2="{base + 5}" stroke="#9ab"/>'
            )
            anchor = "start" if tx < 20 else "end" if tx > width - 20 else "middle"
            parts.append(
                f'<text x="{tx:.1f}" y="{base + 17}" fill="#cde" font-size="11" '
                f'text-anchor="{anchor}" font-family="sans-serif">{_clock(t)}</text>'
            )
            t += step
    parts.append("</svg>")
    return "".join(parts)
