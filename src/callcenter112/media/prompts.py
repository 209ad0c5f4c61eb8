"""The announcement library: every prompt pre-encoded into 20 ms G.711 frames at start-up.

This module owns the prompt names the call flow may ask for, their on-disk layout, loading
and checking them, and composing spoken numbers ("posisi Anda dalam antrean nomor dua puluh
tiga") from number words. Building the files (espeak-ng, ffmpeg) is `prompts_cli`'s job; the
server only loads.

On disk (``sounds/`` by default, `[ivr] prompts` in the configuration)::

    sounds/<lang>/<name>.wav   one file per prompt and language (lang: id, en)
    sounds/<name>.wav          language-neutral prompts (hold_music)

Each file is 8 kHz mono G.711 A-law WAV (format tag 6): 8 KB per second, half of 16-bit PCM,
and the law most trunks in Indonesia carry (ITU-T G.711 A-law is the E1/European-hierarchy
law). The µ-law frames are derived by the G.711 translation table. µ-law WAV and 16-bit PCM WAV
(8 kHz mono) are accepted too, so a file dropped in by hand still loads.

Everything is decoded, split and re-expressed in both laws here, once: at call time a prompt is
a tuple of ready-made 160-byte `bytes` objects (RFC 3551 §4.5: 20 ms packetisation), and
playing it is an index walk (see `player.Player`). A missing or unreadable prompt raises
`PromptError` naming the file and the reason, so the server refuses to start rather than play
silence to a caller in an emergency.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from .g711 import Codec, alaw_to_ulaw, encode, silence, ulaw_to_alaw
from .recorder import WavError, read_wav

__all__ = [
    "FRAME_BYTES",
    "LANGUAGES",
    "MAX_NUMBER",
    "NEUTRAL_PROMPTS",
    "NUMBER_PARTS",
    "SENTENCE_PROMPTS",
    "Prompt",
    "PromptError",
    "PromptLibrary",
    "number_parts",
    "prompt_path",
    "required_prompts",
]

FRAME_BYTES = 160  # one 20 ms G.711 frame at 8000 Hz (RFC 3551 §4.5, §4.5.14)
SAMPLE_RATE = 8000
MAX_PROMPT_S = 300.0  # longer than any announcement; catches a wrong file dropped in
LANGUAGES = ("id", "en")

# What the call flow plays, in every language.
SENTENCE_PROMPTS = (
    "greeting",
    "menu",
    "invalid",
    "please_hold",
    "position",
    "all_busy",
    "connecting",
    "silent",
    "silent_press",  # issue 12: no key, no speech → "if you cannot speak, press 5"
    "watch_list_warning",  # issue 12: played first to a watch-listed number
    "operator_lost",
    "transfer_failed",
    "callback",
)
# Language-neutral audio: the comfort loop played in the queue and on hold.
NEUTRAL_PROMPTS = ("hold_music",)

# Number words each language composes 0..MAX_NUMBER from (see `number_parts`).
NUMBER_PARTS: Mapping[str, tuple[str, ...]] = {
    "id": (
        *(f"n{i}" for i in range(12)),  # nol … sembilan, sepuluh, sebelas
        "belas",
        "puluh",
        "n100",  # seratus
        "ratus",
        "n1000",  # seribu
        "ribu",
    ),
    "en": (
        *(f"n{i}" for i in range(20)),  # zero … nineteen
        *(f"n{i}" for i in range(20, 100, 10)),  # twenty … ninety
        "hundred",
        "thousand",
    ),
}
MAX_NUMBER = 999_999
_NUMBER_CACHE = 100  # numbers pre-composed at load: every realistic queue position


class PromptError(Exception):
    """A prompt is missing, unreadable or not usable; names the file and the reason."""

    def __init__(self, path: Path | str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = Path(path)
        self.reason = reason


def required_prompts(language: str) -> tuple[str, ...]:
    """Every per-language prompt the server needs for `language`."""
    try:
        return (*SENTENCE_PROMPTS, *NUMBER_PARTS[language])
    except KeyError:
        raise ValueError(f"no prompts defined for language {language!r}") from None


def prompt_path(directory: Path, name: str, language: str | None) -> Path:
    """Where prompt `name` lives: per language, or at the top for neutral prompts."""
    if language is None or name in NEUTRAL_PROMPTS:
        return Path(directory) / f"{name}.wav"
    return Path(directory) / language / f"{name}.wav"


def number_parts(n: int, language: str) -> tuple[str, ...]:
    """The prompt names that speak `n` (0 ≤ n ≤ MAX_NUMBER) in `language`, in order.

    Indonesian: 11 sebelas, 12 dua belas, 20 dua puluh, 23 dua puluh tiga, 100 seratus,
    250 dua ratus lima puluh, 1000 seribu, 2024 dua ribu dua puluh empat.
    English: 13 thirteen, 42 forty two, 305 three hundred five, 1200 one thousand two hundred.
    """
    if not 0 <= n <= MAX_NUMBER:
        raise ValueError(f"{n} is outside 0..{MAX_NUMBER}")
    if language == "id":
        return _number_id(n)
    if language == "en":
        return _number_en(n)
    raise ValueError(f"no number words for language {language!r}")


def _number_id(n: int) -> tuple[str, ...]:
    if n < 12:
        return (f"n{n}",)
    if n < 20:
        return (f"n{n - 10}", "belas")
    if n < 100:
        tens, units = divmod(n, 10)
        return (f"n{tens}", "puluh", *((f"n{units}",) if units else ()))
    if n < 1000:
        hundreds, rest = divmod(n, 100)
        head: tuple[str, ...] = ("n100",) if hundreds == 1 else (f"n{hundreds}", "ratus")
        return (*head, *(_number_id(rest) if rest else ()))
    thousands, rest = divmod(n, 1000)
    head = ("n1000",) if thousands == 1 else (*_number_id(thousands), "ribu")
    return (*head, *(_number_id(rest) if rest else ()))


def _number_en(n: int) -> tuple[str, ...]:
    if n < 20:
        return (f"n{n}",)
    if n < 100:
        tens, units = divmod(n, 10)
        return (f"n{tens * 10}", *((f"n{units}",) if units else ()))
    if n < 1000:
        hundreds, rest = divmod(n, 100)
        return (f"n{hundreds}", "hundred", *(_number_en(rest) if rest else ()))
    thousands, rest = divmod(n, 1000)
    return (*_number_en(thousands), "thousand", *(_number_en(rest) if rest else ()))


@dataclass(frozen=True, slots=True, kw_only=True)
class Prompt:
    """One announcement in one law: ready-made 20 ms frames."""

    name: str
    language: str | None  # None: language-neutral (hold music)
    codec: Codec
    frames: tuple[bytes, ...]

    @property
    def duration_s(self) -> float:
        return len(self.frames) * FRAME_BYTES / SAMPLE_RATE

    def __len__(self) -> int:
        return len(self.frames)


def _frames(payload: bytes, codec: Codec) -> tuple[bytes, ...]:
    """Split code words into 160-byte frames; the last one is padded with silence.

    Frames of pure silence share one object, so gaps cost no memory.
    """
    quiet = silence(codec, FRAME_BYTES)
    short = len(payload) % FRAME_BYTES
    if short:
        payload += quiet[short:]
    out = []
    for i in range(0, len(payload), FRAME_BYTES):
        frame = payload[i : i + FRAME_BYTES]
        out.append(quiet if frame == quiet else frame)
    return tuple(out)


def _load_file(path: Path) -> dict[Codec, bytes]:
    """Read one prompt file; returns its code words in both laws."""
    if not path.is_file():
        raise PromptError(path, "missing (run `callcenter112 prompts build`)")
    try:
        audio = read_wav(path)
    except WavError as exc:
        raise PromptError(path, f"unreadable: {exc}") from exc
    info = audio.info
    if info.channels != 1 or info.sample_rate != SAMPLE_RATE:
        raise PromptError(
            path,
            f"{info.channels} channel(s) at {info.sample_rate} Hz; prompts are 8 kHz mono "
            "(convert with `callcenter112 prompts convert`)",
        )
    if info.frames == 0:
        raise PromptError(path, "holds no audio")
    if info.duration_s > MAX_PROMPT_S:
        raise PromptError(path, f"{info.duration_s:.0f} s long; the limit is {MAX_PROMPT_S:.0f} s")
    data = audio.data
    if info.codec is Codec.PCMA:
        return {Codec.PCMA: data, Codec.PCMU: alaw_to_ulaw(data)}
    if info.codec is Codec.PCMU:
        return {Codec.PCMU: data, Codec.PCMA: ulaw_to_alaw(data)}
    if info.bits_per_sample != 16:
        raise PromptError(path, "8-bit linear PCM; prompts are G.711 or 16-bit PCM")
    return {codec: encode(codec, data) for codec in Codec}


class PromptLibrary:
    """All prompts of a deployment, pre-encoded in both laws; changed only by `reload`."""

    __slots__ = ("_numbers", "_prompts", "directory", "languages")

    def __init__(
        self,
        *,
        directory: Path,
        languages: tuple[str, ...],
        prompts: Mapping[tuple[str, str | None, Codec], Prompt],
    ) -> None:
        self.directory = directory
        self.languages = languages
        self._prompts = dict(prompts)
        self._numbers: dict[tuple[int, str, Codec], Prompt] = {}
        for language in languages:
            for codec in Codec:
                for n in range(_NUMBER_CACHE):
                    self._numbers[(n, language, codec)] = self._compose(n, language, codec)

    @classmethod
    def load(cls, directory: Path, languages: Iterable[str] = LANGUAGES) -> PromptLibrary:
        """Load and check every prompt; raises `PromptError` on the first bad or missing one.

        Besides the required prompts, any other ``<lang>/*.wav`` or top-level ``*.wav`` is
        loaded too (a centre may add its own announcements), and must be valid as well.
        """
        directory = Path(directory)
        langs = tuple(dict.fromkeys(languages))
        if not langs:
            raise ValueError("at least one language")
        if not directory.is_dir():
            raise PromptError(directory, "prompt directory missing")
        prompts: dict[tuple[str, str | None, Codec], Prompt] = {}

        def add(name: str, language: str | None, path: Path) -> None:
            for codec, payload in _load_file(path).items():
                prompts[(name, language, codec)] = Prompt(
                    name=name, language=language, codec=codec, frames=_frames(payload, codec)
                )

        for name in NEUTRAL_PROMPTS:
            add(name, None, prompt_path(directory, name, None))
        for extra in sorted(directory.glob("*.wav")):
            if extra.stem not in NEUTRAL_PROMPTS:
                add(extra.stem, None, extra)
        for language in langs:
            wanted = required_prompts(language)
            for name in wanted:
                add(name, language, prompt_path(directory, name, language))
            for extra in sorted((directory / language).glob("*.wav")):
                if extra.stem not in wanted:
                    add(extra.stem, language, extra)
        return cls(directory=directory, languages=langs, prompts=prompts)

    def reload(self, name: str) -> None:
        """Re-read one prompt after its file was replaced (issue 16: the prompt
        page). `name` is "id/greeting" or a neutral "beep". A bad file raises
        `PromptError` and the loaded prompt stays; a call already playing it
        keeps the frames it holds. Call on the event loop."""
        language, _, stem = name.rpartition("/")
        lang: str | None = language or None
        path = prompt_path(self.directory, stem, lang)
        loaded = _load_file(path)
        for codec, payload in loaded.items():
            self._prompts[(stem, lang, codec)] = Prompt(
                name=stem, language=lang, codec=codec, frames=_frames(payload, codec)
            )
        for language_ in self.languages:
            for codec in Codec:
                for n in range(_NUMBER_CACHE):
                    self._numbers[(n, language_, codec)] = self._compose(n, language_, codec)

    def get(self, name: str, language: str, codec: Codec) -> Prompt:
        """Prompt `name` in `language` (or the neutral one of that name) in `codec`."""
        prompt = self._prompts.get((name, language, codec)) or self._prompts.get(
            (name, None, codec)
        )
        if prompt is None:
            raise PromptError(prompt_path(self.directory, name, language), "no such prompt loaded")
        return prompt

    def __contains__(self, key: object) -> bool:
        """``(name, language) in library``."""
        if not isinstance(key, tuple) or len(key) != 2:
            return False
        name, language = key
        prompts = self._prompts
        return (name, language, Codec.PCMA) in prompts or (name, None, Codec.PCMA) in prompts

    def number(self, n: int, language: str, codec: Codec) -> Prompt:
        """The spoken number `n` (0 ≤ n ≤ MAX_NUMBER), composed from number words."""
        prompt = self._numbers.get((n, language, codec))
        if prompt is None:
            if language not in self.languages:
                raise PromptError(self.directory / language, "language not loaded")
            prompt = self._compose(n, language, codec)
        return prompt

    def _compose(self, n: int, language: str, codec: Codec) -> Prompt:
        frames: list[bytes] = []
        for part in number_parts(n, language):
            frames.extend(self.get(part, language, codec).frames)
        return Prompt(name=f"number:{n}", language=language, codec=codec, frames=tuple(frames))

    def names(self, language: str | None) -> list[str]:
        """Names loaded for `language` (None: the neutral ones)."""
        return sorted({name for name, lang, _codec in self._prompts if lang == language})
