"""Making the prompt files: `callcenter112 prompts build | convert | check`.

This module owns turning texts and human recordings into the shipped prompt format (8 kHz mono
G.711 A-law WAV, see `prompts`), and the `prompts` command group. It runs external programs
(espeak-ng, ffmpeg through pydub), so it is kept apart from `prompts`, which the server
imports; nothing here runs while calls are up.

Processing, identical for synthetic and human voices:

1. decode anything ffmpeg reads (WAV, MP3, OGG, …), down-mix to mono and resample to 8000 Hz
   with ffmpeg's resampler (band-limited, so no aliasing; pydub's own `set_frame_rate` is
   a linear interpolator without an anti-alias filter), high-pass at 100 Hz (rumble, DC);
2. trim leading and trailing silence: anything 40 dB or more below the peak;
3. normalise the *active speech level* (RMS over the 20 ms chunks within 35 dB of the peak, a
   simplified ITU-T P.56) to `TARGET_LEVEL_DBFS`, limited so that no peak exceeds
   `PEAK_CEILING_DBFS`: the gain is the smaller of the two, so nothing is clipped;
4. encode to A-law and write atomically.

The comfort audio (`hold_music`) is synthesised, not spoken: a slow melody of single soft
sine notes below 600 Hz, each note ending before the next begins, so at no instant are two
tones present, let alone a DTMF pair (ITU-T Q.23: 697-941 Hz with 1209-1633 Hz).
"""

from __future__ import annotations

import argparse
import math
import re
import subprocess
import sys
import tempfile
import tomllib
from array import array
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from .g711 import Codec, encode
from .prompts import (
    LANGUAGES,
    NEUTRAL_PROMPTS,
    PromptError,
    PromptLibrary,
    prompt_path,
    required_prompts,
)
from .recorder import write_wav

__all__ = [
    "PEAK_CEILING_DBFS",
    "TARGET_LEVEL_DBFS",
    "add_commands",
    "build_prompts",
    "comfort_pcm",
    "convert_recording",
    "load_texts",
]

SAMPLE_RATE = 8000
TARGET_LEVEL_DBFS = -18.0  # active speech level of every prompt
PEAK_CEILING_DBFS = -1.0  # no peak above this after the gain
TRIM_BELOW_PEAK_DB = 40.0
MIN_PEAK_DBFS = -60.0  # quieter than this is no recording at all (a muted microphone)
ACTIVE_WITHIN_PEAK_DB = 35.0
COMFORT_SECONDS = 16.0
COMFORT_PEAK_DBFS = -16.0  # gentle: well under the speech prompts
SHIPPED_CODEC = Codec.PCMA
_NAME = re.compile(r"^[a-z0-9_]{1,64}$")
_TOOL_TIMEOUT_S = 120


# --------------------------------------------------------------------------- audio steps


def _ffmpeg() -> str:
    # pydub is imported only when audio is processed: every `callcenter112` command loads
    # this module, and pydub warns at import time on a machine without ffmpeg.
    from pydub import AudioSegment

    return str(AudioSegment.converter)


def _telephone_audio(src: Path) -> Any:
    """Decode `src` (any format ffmpeg reads) into an 8 kHz mono 16-bit AudioSegment."""
    if not src.is_file():
        raise PromptError(src, "no such file")
    cmd = [
        _ffmpeg(),
        "-nostdin",
        "-v",
        "error",
        "-i",
        str(src),
        "-vn",
        "-ac",
        "1",
        "-ar",
        str(SAMPLE_RATE),
        "-af",
        "highpass=f=100",
        "-f",
        "s16le",
        "-acodec",
        "pcm_s16le",
        "pipe:1",
    ]
    try:
        done = subprocess.run(cmd, capture_output=True, timeout=_TOOL_TIMEOUT_S, check=False)
    except FileNotFoundError as exc:
        raise PromptError(src, f"ffmpeg not found ({cmd[0]}); install the ffmpeg package") from exc
    except subprocess.TimeoutExpired as exc:
        raise PromptError(src, "ffmpeg took too long") from exc
    if done.returncode != 0:
        reason = done.stderr.decode(errors="replace").strip().splitlines()
        raise PromptError(src, f"ffmpeg cannot decode it: {reason[-1] if reason else '?'}")
    if len(done.stdout) < 2:
        raise PromptError(src, "no audio in it")
    pcm = done.stdout[: len(done.stdout) // 2 * 2]
    from pydub import AudioSegment

    return AudioSegment(data=pcm, sample_width=2, frame_rate=SAMPLE_RATE, channels=1)


def _trim(segment: Any, where: Path) -> Any:
    from pydub.silence import detect_leading_silence

    peak = float(segment.max_dBFS)
    if peak < MIN_PEAK_DBFS:
        raise PromptError(where, f"the audio is silent (peak {peak:.0f} dBFS)")
    threshold = peak - TRIM_BELOW_PEAK_DB
    start = detect_leading_silence(segment, silence_threshold=threshold, chunk_size=5)
    end = len(segment) - detect_leading_silence(
        segment.reverse(), silence_threshold=threshold, chunk_size=5
    )
    return segment[start:end] if end > start else segment


def _active_level(segment: Any) -> float:
    """Simplified ITU-T P.56 active level: RMS of the 20 ms chunks near the peak."""
    peak = float(segment.max_dBFS)
    chunks = [c for c in segment[::20] if float(c.dBFS) > peak - ACTIVE_WITHIN_PEAK_DB]
    if not chunks:
        return float(segment.dBFS)
    energy = sum(float(c.rms) ** 2 * len(c.raw_data) for c in chunks)
    count = sum(len(c.raw_data) for c in chunks)
    rms = math.sqrt(energy / count)
    return 20 * math.log10(rms / 32768) if rms > 0 else -math.inf


def _normalise(segment: Any) -> Any:
    gain = min(
        TARGET_LEVEL_DBFS - _active_level(segment),
        PEAK_CEILING_DBFS - float(segment.max_dBFS),
    )
    return segment.apply_gain(gain)


def _write_prompt(pcm: bytes, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    write_wav(dst, SHIPPED_CODEC, 1, encode(SHIPPED_CODEC, pcm))


def convert_recording(src: Path, dst: Path) -> float:
    """Turn a human recording (WAV/MP3/OGG/…) into a shipped prompt file; returns seconds.

    Same steps as the synthetic prompts: 8 kHz mono, silence trimmed, level normalised,
    A-law WAV written atomically (a running server keeps the old one until restarted).
    """
    src, dst = Path(src), Path(dst)
    segment = _normalise(_trim(_telephone_audio(src), src))
    _write_prompt(bytes(segment.raw_data), dst)
    return len(segment) / 1000


def comfort_pcm(seconds: float = COMFORT_SECONDS) -> bytes:
    """The comfort loop as 16-bit PCM: soft single sine notes, one at a time, below 600 Hz.

    Each note has a raised-cosine attack and an exponential decay that reaches zero before
    the next note starts; the loop ends in silence, so it repeats without a click.
    """
    # A pentatonic phrase (C4 D4 E4 G4 A4 C5, all below 600 Hz); 0 is a rest.
    scale = {"C4": 261.63, "D4": 293.66, "E4": 329.63, "G4": 392.00, "A4": 440.00, "C5": 523.25}
    # fmt: off
    phrase = (
        "E4", "G4", "A4", "G4", "E4", "D4", "C4", "0",
        "D4", "E4", "G4", "E4", "D4", "C4", "D4", "0",
        "G4", "A4", "C5", "A4", "G4", "E4", "D4", "0",
        "E4", "D4", "C4", "D4", "E4", "0", "C4", "0",
    )
    # fmt: on
    note_s = seconds / len(phrase)
    note_n = int(note_s * SAMPLE_RATE)
    attack_n = int(0.04 * SAMPLE_RATE)
    release_n = int(0.03 * SAMPLE_RATE)
    amplitude = 32767 * 10 ** (COMFORT_PEAK_DBFS / 20)
    out = array("h")
    for note in phrase:
        if note == "0":
            out.extend([0] * note_n)
            continue
        step = 2 * math.pi * scale[note] / SAMPLE_RATE
        for i in range(note_n):
            if i < attack_n:
                env = 0.5 - 0.5 * math.cos(math.pi * i / attack_n)
            else:
                env = math.exp(-3.0 * (i - attack_n) / note_n)
            left = note_n - i
            if left < release_n:
                env *= left / release_n
            out.append(round(amplitude * env * math.sin(step * i)))
    out.extend([0] * (int(seconds * SAMPLE_RATE) - len(out)))
    if sys.byteorder != "little":  # pragma: no cover - WAV/audioop data is little-endian
        out.byteswap()
    return out.tobytes()


# --------------------------------------------------------------------------- build


def load_texts(toml_path: Path) -> dict[str, dict[str, str]]:
    """Read prompts.toml: ``{name: {language: text}}``; raises `PromptError` if malformed."""
    toml_path = Path(toml_path)
    try:
        data = tomllib.loads(toml_path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise PromptError(toml_path, f"cannot read: {exc.strerror or exc}") from exc
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise PromptError(toml_path, f"not valid TOML: {exc}") from exc
    texts: dict[str, dict[str, str]] = {}
    for name, table in data.items():
        if not _NAME.match(name) or not isinstance(table, dict):
            raise PromptError(toml_path, f"[{name}] must be a table named with a-z, 0-9, _")
        entry: dict[str, str] = {}
        for language, text in table.items():
            if not isinstance(text, str) or not text.strip():
                raise PromptError(toml_path, f"{name}.{language}: must be non-empty text")
            entry[language] = text.strip()
        texts[name] = entry
    return texts


def _speak(text: str, voice: str, speed: int, dst: Path) -> None:
    cmd = ["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(dst), "--stdin"]
    if text.startswith("<speak>"):
        cmd.insert(1, "-m")  # SSML: lets a sentence switch voice
    try:
        done = subprocess.run(
            cmd, input=text.encode(), capture_output=True, timeout=_TOOL_TIMEOUT_S, check=False
        )
    except FileNotFoundError as exc:
        raise PromptError(dst, "espeak-ng not found; install the espeak-ng package") from exc
    except subprocess.TimeoutExpired as exc:
        raise PromptError(dst, "espeak-ng took too long") from exc
    if done.returncode != 0 or not dst.is_file():
        reason = done.stderr.decode(errors="replace").strip()
        raise PromptError(dst, f"espeak-ng -v {voice} failed: {reason or done.returncode}")


def build_prompts(
    toml_path: Path,
    out_dir: Path,
    *,
    voice_id: str = "id",
    voice_en: str = "en-us",
    speed: int = 150,
    only: Iterable[str] | None = None,
    languages: Iterable[str] = LANGUAGES,
) -> list[Path]:
    """Speak every text of `toml_path` with espeak-ng into `out_dir`; returns files written.

    Every prompt the server requires must have a text for every language (checked first, so
    a half-written TOML changes nothing). `only` limits the build to some names
    (``hold_music`` included); the comfort loop is synthesised, not spoken.
    """
    out_dir = Path(out_dir)
    texts = load_texts(toml_path)
    langs = tuple(languages)
    voices: Mapping[str, str] = {"id": voice_id, "en": voice_en}
    wanted = None if only is None else set(only)
    for language in langs:
        if language not in voices:
            raise PromptError(toml_path, f"no voice for language {language!r}")
        for name in required_prompts(language):
            if (wanted is None or name in wanted) and language not in texts.get(name, {}):
                raise PromptError(toml_path, f"[{name}] has no {language!r} text")
    jobs = [
        (name, language, text)
        for name, entry in texts.items()
        for language, text in entry.items()
        if language in langs and (wanted is None or name in wanted)
    ]
    if wanted is not None:
        unknown = wanted - set(texts) - set(NEUTRAL_PROMPTS)
        if unknown:
            raise PromptError(toml_path, f"no such prompt: {', '.join(sorted(unknown))}")
    written: list[Path] = []
    with tempfile.TemporaryDirectory(prefix="callcenter112-prompts-") as tmp:
        for name, language, text in jobs:
            raw = Path(tmp) / f"{language}-{name}.wav"
            _speak(text, voices[language], speed, raw)
            dst = prompt_path(out_dir, name, language)
            convert_recording(raw, dst)
            written.append(dst)
    if wanted is None or "hold_music" in wanted:
        dst = prompt_path(out_dir, "hold_music", None)
        _write_prompt(comfort_pcm(), dst)
        written.append(dst)
    return written


# --------------------------------------------------------------------------- commands


def _prompt_dir(args: argparse.Namespace, explicit: str | None) -> Path:
    """--dir/--out if given; else the configuration's `[ivr] prompts`; else ./sounds."""
    if explicit:
        return Path(explicit)
    config_path = Path(args.config)
    if config_path.is_file():
        from ..config import ConfigError, load_config

        try:
            cfg = load_config(config_path)
        except ConfigError:
            pass  # `check-config` reports it; building prompts does not need the rest
        else:
            return cfg.path(cfg.ivr.prompts)
    return Path("sounds")


def _build(args: argparse.Namespace) -> int:
    out = _prompt_dir(args, args.out)
    toml_path = Path(args.toml) if args.toml else out / "prompts.toml"
    try:
        written = build_prompts(
            toml_path,
            out,
            voice_id=args.voice_id,
            voice_en=args.voice_en,
            only=args.only or None,
        )
    except PromptError as exc:
        print(f"prompts build: {exc}", file=sys.stderr)
        return 1
    print(f"{len(written)} prompt file(s) written under {out}")
    return 0


def _convert(args: argparse.Namespace) -> int:
    directory = _prompt_dir(args, args.dir)
    name: str = args.name
    if not _NAME.match(name):
        print(f"prompts convert: {name!r} is not a prompt name (a-z, 0-9, _)", file=sys.stderr)
        return 2
    language = None if name in NEUTRAL_PROMPTS else args.lang
    if name not in NEUTRAL_PROMPTS and language is None:
        print("prompts convert: --lang id|en is required for this prompt", file=sys.stderr)
        return 2
    dst = prompt_path(directory, name, language)
    try:
        seconds = convert_recording(Path(args.src), dst)
    except PromptError as exc:
        print(f"prompts convert: {exc}", file=sys.stderr)
        return 1
    print(f"{dst}: {seconds:.2f} s; restart the server to use it")
    return 0


def _check(args: argparse.Namespace) -> int:
    directory = _prompt_dir(args, args.dir)
    try:
        library = PromptLibrary.load(directory, LANGUAGES)
    except PromptError as exc:
        print(f"prompts check: {exc}", file=sys.stderr)
        return 1
    for language in library.languages:
        print(f"{language}: {len(library.names(language))} prompt(s)")
    print(f"neutral: {', '.join(library.names(None))}")
    print(f"{directory}: OK")
    return 0


def add_commands(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    """Register `prompts build`, `prompts convert` and `prompts check`."""
    group = subparsers.add_parser("prompts", help="build, convert and check announcements")
    sub = group.add_subparsers(dest="prompts_command", required=True, metavar="ACTION")

    p = sub.add_parser("build", parents=[common], help="speak prompts.toml with espeak-ng")
    p.add_argument("--out", metavar="DIR", help="prompt directory (default: [ivr] prompts)")
    p.add_argument("--toml", metavar="FILE", help="texts (default: DIR/prompts.toml)")
    p.add_argument("--only", metavar="NAME", action="append", help="build only NAME (repeat)")
    p.add_argument("--voice-id", default="id", help="espeak-ng voice for Indonesian")
    p.add_argument("--voice-en", default="en-us", help="espeak-ng voice for English")
    p.set_defaults(handler=_build)

    p = sub.add_parser(
        "convert", parents=[common], help="use a human recording (WAV/MP3/OGG) as a prompt"
    )
    p.add_argument("src", metavar="SRC", help="the recording")
    p.add_argument("name", metavar="NAME", help="prompt name, e.g. greeting")
    p.add_argument("--lang", choices=LANGUAGES, help="language of the recording")
    p.add_argument("--dir", metavar="DIR", help="prompt directory (default: [ivr] prompts)")
    p.set_defaults(handler=_convert)

    p = sub.add_parser("check", parents=[common], help="load every prompt as the server does")
    p.add_argument("--dir", metavar="DIR", help="prompt directory (default: [ivr] prompts)")
    p.set_defaults(handler=_check)
