"""Legal-grade stereo recording of one incident, and the G.711 WAV format it is kept in.

This module owns three things:

* **The WAV format** for G.711 audio: `wav_header`, `write_wav`, `wav_info`, `read_wav` and
  `repair_wav`. A recording is a RIFF/WAVE file with format tag 7 (µ-law) or 6 (A-law),
  8000 Hz, 8 bits per sample, a `WAVEFORMATEX` with `cbSize = 0` and the `fact` chunk that
  non-PCM WAV files must carry (Microsoft "Multimedia Programming Interface and Data
  Specifications 1.0", 1991, §"WAVE Form Definition"/"Fact Chunk"). The code words are the ones
  that crossed the wire: nothing is decoded or re-encoded on the caller channel.
* **`RecordingTimeline`** (pure, loop thread): places each received payload on a sample
  timeline by its RTP timestamp, fills loss and silence with the law's silence code word,
  absorbs reordering within a small window and hands back interleaved stereo bytes
  (left = caller, right = what the centre sent to the caller).
* **`RecordingFile`** (file I/O; its calls are serialised by a lock) and
  **`IncidentRecorder`** (both together, with the lock that lets the glue call `flush()` from
  a worker thread while the loop keeps adding packets).

Theory of operation (timeline). Sample position 0 is the `start` instant (the answer). Each
channel maps an RTP stream onto positions with an anchor per SSRC, set at the stream's first
packet from its arrival time: ``position = anchor_pos + (ts - anchor_ts)`` in 32-bit serial
arithmetic (RFC 3550 §5.1: the timestamp is a 32-bit wrapping sampling clock; 8000 Hz for
G.711, RFC 3551 §4.5.14). A new SSRC, or a packet whose mapped position strays more than
`max_skew_s` from its arrival-based position (sender restart, timestamp jump, transfer to a new
source), is re-anchored from its arrival time. Positions older than ``now - reorder_window_s``
are committed by `drain()`: both channels are padded with silence to the same position and
interleaved with two slice assignments. A packet that arrives after its place was committed is
counted in `late_dropped` (a partially late one keeps its still-open tail).

Which law: the recording uses the caller's law, so the left channel is bit-exact. The right
channel is table-transcoded when its source uses the other law. G.711 A-law ⇄ µ-law conversion
is *not* lossless: the laws quantise differently, each direction maps the 256 code words onto
only 240 distinct ones, and a round trip restores 240 of 256. That is why the caller's side is
the one kept exact.

Right channel during IVR and queue: the glue feeds the frames the server itself sent to the
caller (prompts, comfort audio; silence when nothing was sent), so an auditor hears exactly
what the caller heard. In a conference the glue feeds the mix the caller heard (see
`bridge.Mixer`); in whisper mode it may instead feed a recording tap that includes the
supervisor. The recorder belongs to the incident, not to a leg: the right channel's source can
change (prompts → operator → agency → mix) without reopening the file.
"""

from __future__ import annotations

import contextlib
import enum
import hashlib
import os
import struct
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from .g711 import Codec, alaw_to_ulaw, silence, ulaw_to_alaw

__all__ = [
    "MAX_PENDING_BYTES",
    "WAV_HEADER_SIZE",
    "Channel",
    "IncidentRecorder",
    "RecordingDegraded",
    "RecordingFile",
    "RecordingHealth",
    "RecordingInfo",
    "RecordingRecovered",
    "RecordingTimeline",
    "RepairResult",
    "WavAudio",
    "WavError",
    "WavInfo",
    "read_wav",
    "repair_wav",
    "unrecorded_name",
    "wav_header",
    "wav_info",
    "write_wav",
]

SAMPLE_RATE = 8000  # RFC 3551 §4.5.14: PCMA/PCMU sampling rate
WAVE_FORMAT_PCM = 1
WAVE_FORMAT_ALAW = 6
WAVE_FORMAT_MULAW = 7

# RIFF header (12) + "fmt " chunk (8 + 18) + "fact" chunk (8 + 4) + "data" chunk header (8).
WAV_HEADER_SIZE = 58
_RIFF_SIZE_AT = 4
_FACT_FRAMES_AT = 46
_DATA_SIZE_AT = 54
_HEADER_SCAN_LIMIT = 1 << 16  # a header longer than this is not one we can read

# Reorder window: packets may arrive this late and still find their place. A 112 trunk's
# jitter is tens of ms; 200 ms costs 3.2 KB of buffer per call.
REORDER_WINDOW_S = 0.2
# A mapped position this far from the arrival-based one means the timestamps cannot be
# trusted any more (RFC 3550 §8.2 SSRC change, sender restart, transfer): re-anchor.
MAX_SKEW_S = 1.0
_MAX_ANCHORS = 8  # SSRCs remembered per channel (transfers, conferences)

_TS_MOD = 1 << 32  # RFC 3550 §5.1: 32-bit timestamp
_TS_HALF = 1 << 31


class WavError(ValueError):
    """A file is not a G.711/PCM WAV this module can read, or is cut short."""


class Channel(enum.IntEnum):
    """Recording channel: left is the caller, right is what the centre sent to the caller."""

    CALLER = 0
    CENTRE = 1


def _codec_of(format_tag: int) -> Codec | None:
    if format_tag == WAVE_FORMAT_MULAW:
        return Codec.PCMU
    if format_tag == WAVE_FORMAT_ALAW:
        return Codec.PCMA
    return None


# --------------------------------------------------------------------------- WAV format


def wav_header(codec: Codec, channels: int, frames: int) -> bytes:
    """The 58-byte header of a G.711 WAV holding `frames` sample frames."""
    data_size = frames * channels
    pad = data_size & 1
    riff_size = WAV_HEADER_SIZE - 8 + data_size + pad
    return b"".join(
        (
            b"RIFF",
            struct.pack("<I", riff_size & 0xFFFFFFFF),
            b"WAVE",
            b"fmt ",
            struct.pack(
                "<IHHIIHHH",
                18,
                codec.wav_format,
                channels,
                SAMPLE_RATE,
                SAMPLE_RATE * channels,  # bytes per second: one byte per sample
                channels,  # block align
                8,  # bits per sample
                0,  # cbSize
            ),
            b"fact",
            struct.pack("<II", 4, frames & 0xFFFFFFFF),
            b"data",
            struct.pack("<I", data_size & 0xFFFFFFFF),
        )
    )


def write_wav(path: Path, codec: Codec, channels: int, data: bytes) -> None:
    """Write a complete G.711 WAV atomically (temporary file, then rename)."""
    if channels < 1 or len(data) % channels:
        raise WavError(
            f"{path}: {len(data)} bytes is not a whole number of {channels}-channel frames"
        )
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(wav_header(codec, channels, len(data) // channels))
        f.write(data)
        if len(data) & 1:
            f.write(b"\0")  # RIFF chunks are word aligned
    os.replace(tmp, path)


@dataclass(frozen=True, slots=True, kw_only=True)
class WavInfo:
    """What a WAV header says, and where its audio lies in the file."""

    format_tag: int
    codec: Codec | None  # None for linear PCM
    channels: int
    sample_rate: int
    bits_per_sample: int
    block_align: int
    data_offset: int
    data_size: int

    @property
    def frames(self) -> int:
        return self.data_size // self.block_align

    @property
    def duration_s(self) -> float:
        return self.frames / self.sample_rate


@dataclass(frozen=True, slots=True, kw_only=True)
class WavAudio:
    """A whole WAV file's audio: the header fields and the raw sample bytes."""

    info: WavInfo
    data: bytes

    @property
    def codec(self) -> Codec | None:
        return self.info.codec

    @property
    def channels(self) -> int:
        return self.info.channels

    @property
    def frames(self) -> int:
        return self.info.frames

    def channel(self, index: int) -> bytes:
        """One channel's samples (8-bit formats: one byte per sample)."""
        if self.info.bits_per_sample != 8:
            raise WavError("channel() splits 8-bit (G.711) audio only")
        return self.data[index :: self.info.channels]


@dataclass(slots=True)
class _Chunks:
    riff_size: int | None = None
    fmt: bytes | None = None
    fact_at: int | None = None
    data_at: int | None = None  # offset of the "data" chunk header
    data_size: int | None = None


def _scan_chunks(head: bytes) -> _Chunks:
    """Walk the chunk list of `head` (a file's first bytes) as far as it goes."""
    found = _Chunks()
    if len(head) >= 8:
        found.riff_size = struct.unpack_from("<I", head, 4)[0]
    pos = 12
    while pos + 8 <= len(head):
        chunk_id = head[pos : pos + 4]
        size = struct.unpack_from("<I", head, pos + 4)[0]
        body = pos + 8
        if chunk_id == b"data":
            found.data_at = pos
            found.data_size = size
            break
        if chunk_id == b"fmt ":
            if body + size > len(head):
                break
            found.fmt = head[body : body + size]
        elif chunk_id == b"fact":
            found.fact_at = pos
        pos = body + size + (size & 1)
    return found


def _check_magic(head: bytes, where: object) -> None:
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        raise WavError(f"{where}: not a RIFF/WAVE file")


def _parse_fmt(fmt: bytes, where: object) -> tuple[int, int, int, int, int]:
    if len(fmt) < 16:
        raise WavError(f"{where}: fmt chunk too short ({len(fmt)} bytes)")
    tag, channels, rate, _byte_rate, block_align, bits = struct.unpack_from("<HHIIHH", fmt)
    if tag not in (WAVE_FORMAT_PCM, WAVE_FORMAT_ALAW, WAVE_FORMAT_MULAW):
        raise WavError(f"{where}: WAV format tag {tag} (only PCM, A-law, µ-law)")
    if not 1 <= channels <= 8 or rate <= 0:
        raise WavError(f"{where}: {channels} channel(s) at {rate} Hz")
    want_bits = (8, 16) if tag == WAVE_FORMAT_PCM else (8,)
    if bits not in want_bits or block_align != channels * bits // 8:
        raise WavError(f"{where}: {bits} bits per sample, block align {block_align}")
    return tag, channels, rate, bits, block_align


def _info_from_head(head: bytes, file_size: int, where: object) -> WavInfo:
    _check_magic(head, where)
    chunks = _scan_chunks(head)
    if chunks.fmt is None:
        raise WavError(f"{where}: no fmt chunk before the audio")
    if chunks.data_at is None or chunks.data_size is None:
        raise WavError(f"{where}: no data chunk (file cut short? run repair)")
    tag, channels, rate, bits, block_align = _parse_fmt(chunks.fmt, where)
    data_offset = chunks.data_at + 8
    if data_offset + chunks.data_size > file_size:
        raise WavError(
            f"{where}: data chunk says {chunks.data_size} bytes, file holds "
            f"{file_size - data_offset} (cut short? run repair)"
        )
    if chunks.data_size % block_align:
        raise WavError(f"{where}: data size {chunks.data_size} is not whole sample frames")
    return WavInfo(
        format_tag=tag,
        codec=_codec_of(tag),
        channels=channels,
        sample_rate=rate,
        bits_per_sample=bits,
        block_align=block_align,
        data_offset=data_offset,
        data_size=chunks.data_size,
    )


def wav_info(path: Path) -> WavInfo:
    """Read and check a WAV header (for streaming the audio, e.g. HTTP range replies)."""
    try:
        with open(path, "rb") as f:
            head = f.read(_HEADER_SCAN_LIMIT)
            size = os.fstat(f.fileno()).st_size
    except OSError as exc:
        raise WavError(f"{path}: {exc.strerror or exc}") from exc
    return _info_from_head(head, size, path)


def read_wav(path: Path) -> WavAudio:
    """Read a whole PCM/A-law/µ-law WAV. Raises `WavError` naming the file and the reason."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise WavError(f"{path}: {exc.strerror or exc}") from exc
    info = _info_from_head(raw[:_HEADER_SCAN_LIMIT], len(raw), path)
    data = raw[info.data_offset : info.data_offset + info.data_size]
    return WavAudio(info=info, data=data)


@dataclass(frozen=True, slots=True, kw_only=True)
class RepairResult:
    """What `repair_wav` did to a recording cut off by a crash."""

    path: Path
    changed: bool
    frames: int  # sample frames the file holds after repair
    dropped_bytes: int  # a partial sample frame (or stray bytes) cut from the end
    header_rebuilt: bool  # the cut fell inside the header: a fresh, empty header was written


def repair_wav(path: Path) -> RepairResult:
    """Make a WAV cut off by a crash readable again; the audio up to the cut is kept.

    Sizes are recomputed from the file length and a partial sample frame at the end is cut
    off. If the cut fell inside the header, a fresh header for an empty recording is written
    (law and channel count taken from what is left of it; µ-law stereo if even that is gone).
    A file that is not a RIFF/WAVE at all raises `WavError` and is left untouched.
    """
    path = Path(path)
    try:
        with open(path, "r+b") as f:
            head = f.read(_HEADER_SCAN_LIMIT)
            size = os.fstat(f.fileno()).st_size
            if not _riff_prefix(head):
                raise WavError(f"{path}: not a RIFF/WAVE file; not repaired")
            chunks = _scan_chunks(head)
            fmt = None if chunks.fmt is None else _parse_fmt(chunks.fmt, path)
            if chunks.data_at is None or fmt is None:
                if size >= WAV_HEADER_SIZE:
                    raise WavError(f"{path}: no fmt and data chunk in the header; not repaired")
                return _rebuild_header(f, path, head)
            block_align = fmt[4]
            data_offset = chunks.data_at + 8
            declared = chunks.data_size or 0
            if (
                chunks.riff_size == size - 8
                and data_offset + declared + (declared & 1) <= size
                and declared % block_align == 0
            ):
                return RepairResult(
                    path=path,
                    changed=False,
                    frames=declared // block_align,
                    dropped_bytes=0,
                    header_rebuilt=False,
                )
            available = size - data_offset
            data_size = available - available % block_align
            frames = data_size // block_align
            f.truncate(data_offset + data_size)
            if data_size & 1:
                f.seek(data_offset + data_size)
                f.write(b"\0")  # RIFF word alignment
            f.seek(_RIFF_SIZE_AT)
            f.write(struct.pack("<I", data_offset + data_size + (data_size & 1) - 8))
            if chunks.fact_at is not None:
                f.seek(chunks.fact_at + 8)
                f.write(struct.pack("<I", frames))
            f.seek(chunks.data_at + 4)
            f.write(struct.pack("<I", data_size))
            f.flush()
            os.fsync(f.fileno())
            return RepairResult(
                path=path,
                changed=True,
                frames=frames,
                dropped_bytes=available - data_size,
                header_rebuilt=False,
            )
    except OSError as exc:
        raise WavError(f"{path}: {exc.strerror or exc}") from exc


def _riff_prefix(head: bytes) -> bool:
    """True if `head` starts like a RIFF/WAVE file (as far as it goes)."""
    if head[:4] != b"RIFF"[: len(head)]:
        return False
    return len(head) <= 8 or head[8:12] == b"WAVE"[: len(head) - 8]


def _rebuild_header(f: BinaryIO, path: Path, head: bytes) -> RepairResult:
    """The cut fell inside the header: write the header of an empty recording."""
    codec = Codec.PCMU
    channels = 2
    if len(head) >= 22:
        codec = _codec_of(struct.unpack_from("<H", head, 20)[0]) or Codec.PCMU
    if len(head) >= 24 and struct.unpack_from("<H", head, 22)[0] == 1:
        channels = 1
    f.seek(0)
    f.truncate(0)
    f.write(wav_header(codec, channels, 0))
    f.flush()
    os.fsync(f.fileno())
    return RepairResult(
        path=path, changed=True, frames=0, dropped_bytes=len(head), header_rebuilt=True
    )


# --------------------------------------------------------------------------- timeline


class _Track:
    """One channel's uncommitted samples and the anchors of the streams that feed it."""

    __slots__ = ("anchors", "buf", "late_dropped", "reanchors")

    def __init__(self) -> None:
        self.buf = bytearray()  # code words for positions [committed, committed + len)
        # ssrc -> (last rtp timestamp, its sample position)
        self.anchors: dict[int, tuple[int, int]] = {}
        self.late_dropped = 0
        self.reanchors = 0


class RecordingTimeline:
    """Places payloads of both channels on one sample timeline; hands out interleaved bytes.

    Pure and single-threaded: call it from the event loop (or guard it, as
    `IncidentRecorder` does). Times are the glue's loop clock in seconds.
    """

    __slots__ = (
        "_committed",
        "_finished",
        "_max_skew",
        "_silence",
        "_start",
        "_tables",
        "_tracks",
        "_window",
        "codec",
    )

    def __init__(
        self,
        *,
        codec: Codec,
        start: float,
        reorder_window_s: float = REORDER_WINDOW_S,
        max_skew_s: float = MAX_SKEW_S,
    ) -> None:
        self.codec = codec
        self._start = start
        self._window = round(reorder_window_s * SAMPLE_RATE)
        self._max_skew = round(max_skew_s * SAMPLE_RATE)
        self._committed = 0  # positions before this are handed out
        self._tracks = (_Track(), _Track())
        self._silence = codec.silence_byte
        self._finished = False
        # Translation table per source law; None = already in the recording's law.
        to_recording = alaw_to_ulaw if codec is Codec.PCMU else ulaw_to_alaw
        other = Codec.PCMA if codec is Codec.PCMU else Codec.PCMU
        self._tables: dict[Codec, bytes | None] = {
            codec: None,
            other: to_recording(bytes(range(256))),
        }

    @property
    def committed_frames(self) -> int:
        """Sample frames handed out by `drain()`/`finish()` so far."""
        return self._committed

    @property
    def late_dropped(self) -> int:
        """Packets that arrived after their place on the timeline was committed."""
        return self._tracks[0].late_dropped + self._tracks[1].late_dropped

    @property
    def reanchors(self) -> int:
        """Times a channel was re-anchored (new SSRC, timestamp jump)."""
        return self._tracks[0].reanchors + self._tracks[1].reanchors

    def reset_channel(self, channel: Channel) -> None:
        """Forget a channel's stream anchors: its next packet is placed by arrival time."""
        self._tracks[channel].anchors.clear()

    def add(
        self,
        channel: Channel,
        payload: bytes,
        *,
        codec: Codec,
        rtp_timestamp: int,
        ssrc: int,
        arrival: float,
    ) -> None:
        """Place one RTP payload (G.711 code words, any length) on `channel`."""
        if self._finished or not payload:
            return
        table = self._tables[codec]
        if table is not None:
            payload = payload.translate(table)
        track = self._tracks[channel]
        anchors = track.anchors
        here = round((arrival - self._start) * SAMPLE_RATE)
        anchor = anchors.get(ssrc)
        if anchor is None:
            pos = here
            if anchors:
                track.reanchors += 1
            if len(anchors) >= _MAX_ANCHORS:
                del anchors[next(iter(anchors))]
        else:
            last_ts, last_pos = anchor
            delta = ((rtp_timestamp - last_ts + _TS_HALF) % _TS_MOD) - _TS_HALF
            pos = last_pos + delta
            if not -self._max_skew <= pos - here <= self._max_skew:
                pos = here
                track.reanchors += 1
        anchors[ssrc] = (rtp_timestamp, pos)

        n = len(payload)
        rel = pos - self._committed
        if rel < 0:
            if rel + n <= 0:
                track.late_dropped += 1
                return
            payload = payload[-rel:]
            n += rel
            rel = 0
        buf = track.buf
        have = len(buf)
        if rel == have:
            buf += payload  # in order: the common case
        elif rel + n <= have:
            buf[rel : rel + n] = payload
        else:
            if rel > have:
                buf += bytes((self._silence,)) * (rel - have)  # loss or silence suppression
            buf[rel:] = payload

    def drain(self, now: float) -> bytes:
        """Commit everything older than the reorder window; return it interleaved."""
        if self._finished:
            return b""
        upto = round((now - self._start) * SAMPLE_RATE) - self._window
        return self._commit(upto)

    def finish(self, now: float) -> bytes:
        """Commit all that is left (through `now` or the last buffered sample); then stop."""
        if self._finished:
            return b""
        upto = round((now - self._start) * SAMPLE_RATE)
        for track in self._tracks:
            upto = max(upto, self._committed + len(track.buf))
        data = self._commit(upto)
        self._finished = True
        return data

    def _commit(self, upto: int) -> bytes:
        count = upto - self._committed
        if count <= 0:
            return b""
        left, right = (self._take(track, count) for track in self._tracks)
        out = bytearray(2 * count)
        out[0::2] = left
        out[1::2] = right
        self._committed = upto
        return bytes(out)

    def _take(self, track: _Track, count: int) -> bytes | bytearray:
        buf = track.buf
        have = len(buf)
        if have <= count:
            if have == 0:
                return silence(self.codec, count)
            buf += bytes((self._silence,)) * (count - have)
            track.buf = bytearray()
            return buf
        part = buf[:count]
        del buf[:count]
        return part


# --------------------------------------------------------------------------- file


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordingInfo:
    """A closed recording: where it is and what it holds."""

    path: Path
    codec: Codec
    channels: int
    frames: int
    size_bytes: int

    @property
    def duration_s(self) -> float:
        return self.frames / SAMPLE_RATE


class RecordingFile:
    """A G.711 WAV being written: header first, then appended audio, sizes kept current.

    The header is written at creation with sizes for an empty file and rewritten after every
    `append()`, so the file on disk is a complete WAV after each append; only a crash in the
    middle of one needs `repair_wav`. An existing file is never overwritten. Calls are
    serialised by a lock, so a worker thread may append while another closes.

    Writes are unbuffered `pwrite`s at the end of the audio already counted. A write that
    fails (ENOSPC, EIO) cuts the file back to that end and raises: the file stays a complete
    WAV of everything written before, nothing half-written stays behind, and the caller
    (`IncidentRecorder`) keeps the bytes to write again.
    """

    __slots__ = ("_file", "_frames", "_lock", "channels", "codec", "fsync", "path")

    def __init__(self, path: Path, *, codec: Codec, channels: int = 2, fsync: bool = True) -> None:
        if channels not in (1, 2):
            raise ValueError("a recording has 1 or 2 channels")
        self.path = Path(path)
        self.codec = codec
        self.channels = channels
        self.fsync = fsync
        self._frames = 0
        self._lock = threading.Lock()
        # Unbuffered: a failed write must not leave bytes in a buffer to land later.
        self._file = open(self.path, "xb", buffering=0)  # noqa: SIM115 - kept for the call
        try:
            _pwrite_all(self._file.fileno(), wav_header(codec, channels, 0), 0)
        except BaseException:
            self._file.close()
            raise

    @property
    def frames(self) -> int:
        return self._frames

    @property
    def closed(self) -> bool:
        return self._file.closed

    def append(self, data: bytes) -> None:
        """Append whole sample frames (interleaved for stereo) and update the header."""
        if not data:
            return
        if len(data) % self.channels:
            raise ValueError(f"{len(data)} bytes is not whole {self.channels}-channel frames")
        with self._lock:
            f = self._file
            if f.closed:
                raise ValueError(f"{self.path}: recording already closed")
            fd = f.fileno()
            end = WAV_HEADER_SIZE + self._frames * self.channels
            try:
                _pwrite_all(fd, data, end)
            except OSError:
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, end)  # frees the partial write; the WAV stays whole
                raise
            self._frames += len(data) // self.channels
            self._write_sizes(pad=False)

    def _write_sizes(self, *, pad: bool) -> None:
        fd = self._file.fileno()
        data_size = self._frames * self.channels
        odd = data_size & 1
        if pad and odd:
            _pwrite_all(fd, b"\0", WAV_HEADER_SIZE + data_size)
        riff = WAV_HEADER_SIZE - 8 + data_size + (odd if pad else 0)
        _pwrite_all(fd, struct.pack("<I", riff), _RIFF_SIZE_AT)
        _pwrite_all(fd, struct.pack("<I", self._frames & 0xFFFFFFFF), _FACT_FRAMES_AT)
        _pwrite_all(fd, struct.pack("<I", data_size & 0xFFFFFFFF), _DATA_SIZE_AT)
        if self.fsync:
            os.fsync(fd)

    def close(self) -> RecordingInfo:
        """Finalise the header and close; calling it again returns the same result."""
        with self._lock:
            f = self._file
            if not f.closed:
                try:
                    self._write_sizes(pad=True)
                finally:
                    f.close()
            return RecordingInfo(
                path=self.path,
                codec=self.codec,
                channels=self.channels,
                frames=self._frames,
                size_bytes=self.path.stat().st_size,
            )


def _pwrite_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        view = view[n:]
        offset += n


def unrecorded_name(call_id: str) -> str:
    """The file stem of a recording that has no incident id: the Call-ID is
    attacker-chosen text (`../`, NUL, 64 KB), so only its hash reaches a path."""
    return "unrecorded-" + hashlib.sha256(call_id.encode("utf-8", "replace")).hexdigest()[:24]


# Audio held in memory while the disk refuses it: 10 minutes of stereo G.711
# (16 000 bytes/s). Beyond, the oldest held audio is dropped and counted.
MAX_PENDING_BYTES = 600 * 16_000


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordingDegraded:
    """Writing the recording failed; the audio is held in memory and retried."""

    path: Path
    error: str
    pending_bytes: int


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordingRecovered:
    """The held audio reached the disk again."""

    path: Path
    dropped_bytes: int


RecordingHealth = RecordingDegraded | RecordingRecovered


class IncidentRecorder:
    """One incident's stereo recording: a `RecordingTimeline` feeding a `RecordingFile`.

    `add()` runs on the event loop for every packet; `flush(now)` may run on a worker thread
    (it takes the committed audio under a short lock and writes it outside the loop's way);
    `close(now)` writes the rest and finalises the header.

    Faults (issue 11): when a write fails, the audio is kept (`pending_bytes`, up to
    `MAX_PENDING_BYTES`) and written first by the next `flush`; the call goes on. The change
    of state is reported once each way, `RecordingDegraded` then `RecordingRecovered`, from
    `take_health()` — the call flow polls it after each flush, on its loop, and writes the
    incident's `recording_degraded` event.
    """

    __slots__ = ("_health", "_lock", "_pending", "degraded", "dropped_bytes", "file", "timeline")

    def __init__(
        self,
        path: Path,
        *,
        codec: Codec,
        start: float,
        reorder_window_s: float = REORDER_WINDOW_S,
        fsync: bool = True,
    ) -> None:
        self.timeline = RecordingTimeline(
            codec=codec, start=start, reorder_window_s=reorder_window_s
        )
        self.file = RecordingFile(path, codec=codec, channels=2, fsync=fsync)
        self._lock = threading.Lock()
        self._pending = bytearray()
        self._health: list[RecordingHealth] = []
        self.degraded = False
        self.dropped_bytes = 0

    @property
    def path(self) -> Path:
        return self.file.path

    def add(
        self,
        channel: Channel,
        payload: bytes,
        *,
        codec: Codec,
        rtp_timestamp: int,
        ssrc: int,
        arrival: float,
    ) -> None:
        """`RecordingTimeline.add` under the recorder's lock (event loop thread)."""
        with self._lock:
            self.timeline.add(
                channel,
                payload,
                codec=codec,
                rtp_timestamp=rtp_timestamp,
                ssrc=ssrc,
                arrival=arrival,
            )

    def reset_channel(self, channel: Channel) -> None:
        with self._lock:
            self.timeline.reset_channel(channel)

    @property
    def pending_bytes(self) -> int:
        return len(self._pending)

    def take_health(self) -> list[RecordingHealth]:
        """State changes since the last call (degraded, recovered), oldest first."""
        with self._lock:
            out, self._health = self._health, []
        return out

    def flush(self, now: float) -> int:
        """Write the held and the newly committed audio; returns the bytes written (0 when
        the write failed and the audio is held for the next flush)."""
        with self._lock:
            data = self.timeline.drain(now)
        return self._write(data)

    def _write(self, data: bytes) -> int:
        self._pending += data
        if not self._pending:
            return 0
        try:
            self.file.append(bytes(self._pending))
        except OSError as exc:
            excess = len(self._pending) - MAX_PENDING_BYTES
            if excess > 0:
                excess += excess % self.file.channels
                del self._pending[:excess]
                self.dropped_bytes += excess
            if not self.degraded:
                self.degraded = True
                with self._lock:
                    self._health.append(
                        RecordingDegraded(
                            path=self.path,
                            error=exc.strerror or type(exc).__name__,
                            pending_bytes=len(self._pending),
                        )
                    )
            return 0
        written = len(self._pending)
        self._pending.clear()
        if self.degraded:
            self.degraded = False
            with self._lock:
                self._health.append(
                    RecordingRecovered(path=self.path, dropped_bytes=self.dropped_bytes)
                )
        return written

    def close(self, now: float) -> RecordingInfo:
        """Write everything left, finalise the header, close the file (idempotent).

        Audio the disk still refuses is counted in `dropped_bytes` (the call flow may wait
        for `pending_bytes` to reach 0 before closing)."""
        with self._lock:
            data = self.timeline.finish(now)
        if not self.file.closed:
            self._write(data)
            self.dropped_bytes += len(self._pending)
            self._pending.clear()
        return self.file.close()
