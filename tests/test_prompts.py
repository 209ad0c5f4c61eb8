"""Prompt library (shipped files), number composition, and the prompt build/convert tools."""

from __future__ import annotations

import math
import os
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from callcenter112.cli import main
from callcenter112.media import g711
from callcenter112.media.g711 import Codec
from callcenter112.media.prompts import (
    LANGUAGES,
    MAX_NUMBER,
    NUMBER_PARTS,
    SENTENCE_PROMPTS,
    PromptError,
    PromptLibrary,
    number_parts,
    prompt_path,
    required_prompts,
)
from callcenter112.media.prompts_cli import (
    PEAK_CEILING_DBFS,
    TARGET_LEVEL_DBFS,
    build_prompts,
    comfort_pcm,
    convert_recording,
    load_texts,
)
from callcenter112.media.recorder import read_wav, write_wav

SOUNDS = Path(__file__).resolve().parents[1] / "sounds"
TOML = SOUNDS / "prompts.toml"
A, U = Codec.PCMA, Codec.PCMU


def need(*tools: str) -> None:
    """Skip without the Debian peer; on CI (CI=true) its absence is a failure."""
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{', '.join(missing)} not installed on CI")
        pytest.skip(f"{', '.join(missing)} not installed")


@pytest.fixture(scope="module")
def library() -> PromptLibrary:
    return PromptLibrary.load(SOUNDS)


def goertzel(pcm: bytes, freq: float) -> float:
    """Power at `freq` relative to the frame's energy (0..~1)."""
    samples = struct.unpack(f"<{len(pcm) // 2}h", pcm)
    coeff = 2 * math.cos(2 * math.pi * freq / 8000)
    s1 = s2 = 0.0
    for x in samples:
        s1, s2 = x + coeff * s1 - s2, s1
    energy = sum(x * x for x in samples) or 1
    return (s1 * s1 + s2 * s2 - coeff * s1 * s2) / (energy * len(samples) / 2)


def dbfs_rms(pcm: bytes) -> float:
    samples = struct.unpack(f"<{len(pcm) // 2}h", pcm)
    return 10 * math.log10(sum(x * x for x in samples) / len(samples) / 32768**2)


def dbfs_peak(pcm: bytes) -> float:
    peak = max(abs(x) for x in struct.unpack(f"<{len(pcm) // 2}h", pcm))
    return 20 * math.log10(peak / 32768)


# ---------------------------------------------------------------- numbers

ID_NUMBERS = {
    0: "nol",
    7: "tujuh",
    10: "sepuluh",
    11: "sebelas",
    12: "dua belas",
    19: "sembilan belas",
    20: "dua puluh",
    23: "dua puluh tiga",
    99: "sembilan puluh sembilan",
    100: "seratus",
    101: "seratus satu",
    111: "seratus sebelas",
    250: "dua ratus lima puluh",
    999: "sembilan ratus sembilan puluh sembilan",
    1000: "seribu",
    1001: "seribu satu",
    2024: "dua ribu dua puluh empat",
    11000: "sebelas ribu",
    100000: "seratus ribu",
    999999: "sembilan ratus sembilan puluh sembilan ribu sembilan ratus sembilan puluh sembilan",
}
EN_NUMBERS = {
    0: "zero",
    13: "thirteen",
    20: "twenty",
    42: "forty two",
    100: "one hundred",
    305: "three hundred five",
    1200: "one thousand two hundred",
    999999: "nine hundred ninety nine thousand nine hundred ninety nine",
}


def spoken(n: int, language: str) -> str:
    texts = load_texts(TOML)
    return " ".join(texts[part][language] for part in number_parts(n, language))


@pytest.mark.parametrize(("n", "words"), ID_NUMBERS.items())
def test_indonesian_numbers(n: int, words: str) -> None:
    assert spoken(n, "id") == words


@pytest.mark.parametrize(("n", "words"), EN_NUMBERS.items())
def test_english_numbers(n: int, words: str) -> None:
    assert spoken(n, "en") == words


def test_every_number_uses_only_known_parts() -> None:
    for language in LANGUAGES:
        parts = set(NUMBER_PARTS[language])
        for n in [*range(2000), *range(2000, MAX_NUMBER + 1, 997), MAX_NUMBER]:
            assert set(number_parts(n, language)) <= parts, (language, n)
    with pytest.raises(ValueError):
        number_parts(-1, "id")
    with pytest.raises(ValueError):
        number_parts(MAX_NUMBER + 1, "en")
    with pytest.raises(ValueError):
        number_parts(3, "fr")


# ---------------------------------------------------------------- the shipped library


def test_shipped_prompts_load_in_both_laws(library: PromptLibrary) -> None:
    for language in LANGUAGES:
        for name in required_prompts(language):
            pcma = library.get(name, language, A)
            pcmu = library.get(name, language, U)
            assert pcma.frames and all(len(f) == 160 for f in pcma.frames)
            assert len(pcma.frames) == len(pcmu.frames)
            # µ-law derived from the shipped A-law by the G.711 table (the padding of the
            # last frame is each law's own silence code word).
            shipped = read_wav(prompt_path(SOUNDS, name, language)).data
            assert b"".join(pcma.frames)[: len(shipped)] == shipped
            assert b"".join(pcmu.frames)[: len(shipped)] == g711.alaw_to_ulaw(shipped)
            assert (name, language) in library
    assert library.get("menu", "id", A).duration_s > 5
    # Silence trimmed: a sentence starts and ends with sound, not seconds of nothing.
    greeting = library.get("greeting", "id", A)
    assert greeting.frames[0] != g711.silence(A) or greeting.frames[1] != g711.silence(A)


def test_hold_music_is_neutral_loopable_and_has_no_dtmf_like_tones(
    library: PromptLibrary,
) -> None:
    music = library.get("hold_music", "id", A)
    assert library.get("hold_music", "en", A) is music
    assert 10 <= music.duration_s <= 20
    assert music.frames[-1] == g711.silence(A)  # ends quiet: loops without a click
    dtmf_low, dtmf_high = (697, 770, 852, 941), (1209, 1336, 1477, 1633)
    loud_frames = 0
    for frame in music.frames:
        pcm = g711.decode(A, frame)
        if max(abs(x) for x in struct.unpack("<160h", pcm)) < 300:
            continue
        loud_frames += 1
        assert max(goertzel(pcm, f) for f in dtmf_high) < 0.01
        assert max(goertzel(pcm, f) for f in dtmf_low) < 0.05
    assert loud_frames > 200


def test_number_prompt_is_the_concatenation_of_its_words(library: PromptLibrary) -> None:
    for language, n in (("id", 23), ("id", 12), ("en", 42), ("id", 1234), ("en", 100_000)):
        composed = library.number(n, language, U)
        expected: list[bytes] = []
        for part in number_parts(n, language):
            expected.extend(library.get(part, language, U).frames)
        assert composed.frames == tuple(expected)
        assert composed.codec is U
    # Queue positions are pre-composed: no work at call time.
    assert library.number(5, "id", A) is library.number(5, "id", A)


def test_library_lookup_errors(library: PromptLibrary) -> None:
    with pytest.raises(PromptError, match="no_such_prompt"):
        library.get("no_such_prompt", "id", A)
    with pytest.raises(PromptError, match="language not loaded"):
        library.number(500, "fr", A)
    assert ("no_such_prompt", "id") not in library
    assert "greeting" in library.names("id")
    assert library.names(None) == ["hold_music"]


# ---------------------------------------------------------------- refusing to start


def copy_sounds(tmp_path: Path) -> Path:
    dst = tmp_path / "sounds"
    shutil.copytree(SOUNDS, dst)
    return dst


def test_missing_prompt_refuses_to_load_naming_the_file(tmp_path: Path) -> None:
    sounds = copy_sounds(tmp_path)
    (sounds / "en" / "menu.wav").unlink()
    with pytest.raises(PromptError) as err:
        PromptLibrary.load(sounds)
    assert err.value.path == sounds / "en" / "menu.wav"
    assert "missing" in str(err.value)
    assert "en/menu.wav" in str(err.value)
    # Loading only Indonesian does not need the English file.
    assert PromptLibrary.load(sounds, ["id"]).languages == ("id",)


def test_missing_hold_music_and_missing_directory(tmp_path: Path) -> None:
    sounds = copy_sounds(tmp_path)
    (sounds / "hold_music.wav").unlink()
    with pytest.raises(PromptError, match=r"hold_music\.wav: missing"):
        PromptLibrary.load(sounds)
    with pytest.raises(PromptError, match="prompt directory missing"):
        PromptLibrary.load(tmp_path / "nowhere")


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda p: p.write_bytes(b""), "unreadable"),
        (lambda p: p.write_bytes(p.read_bytes()[:30]), "unreadable"),
        (lambda p: write_wav(p, A, 2, b"\x01\x02" * 800), "1 channel|2 channel"),
        (lambda p: write_wav(p, A, 1, b""), "holds no audio"),
    ],
    ids=["empty-file", "cut-header", "stereo", "no-audio"],
)
def test_bad_prompt_file_refuses_to_load(tmp_path: Path, damage: object, reason: str) -> None:
    sounds = copy_sounds(tmp_path)
    victim = sounds / "id" / "please_hold.wav"
    damage(victim)  # type: ignore[operator]
    with pytest.raises(PromptError, match=reason) as err:
        PromptLibrary.load(sounds)
    assert err.value.path == victim


def test_extra_prompts_load_and_pcm_or_ulaw_files_are_accepted(tmp_path: Path) -> None:
    import wave

    sounds = copy_sounds(tmp_path)
    write_wav(sounds / "id" / "maintenance.wav", U, 1, b"\x10" * 500)
    with wave.open(str(sounds / "en" / "greeting.wav"), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(struct.pack("<320h", *([1000, -1000] * 160)))
    lib = PromptLibrary.load(sounds)
    extra = lib.get("maintenance", "id", U)
    assert len(extra.frames) == 4  # 500 bytes: 3 frames + one padded with silence
    assert b"".join(extra.frames)[:500] == b"\x10" * 500
    assert extra.frames[-1][20:] == g711.silence(U)[20:]
    greeting = lib.get("greeting", "en", A)
    assert b"".join(greeting.frames) == g711.encode(A, struct.pack("<320h", *([1000, -1000] * 160)))


# ---------------------------------------------------------------- build and convert


def test_build_checks_the_texts_before_speaking(tmp_path: Path) -> None:
    toml = tmp_path / "prompts.toml"
    toml.write_text(TOML.read_text(encoding="utf-8").replace("[menu]\nid = ", "[menu]\nxx = "))
    with pytest.raises(PromptError, match=r"\[menu\] has no 'id' text"):
        build_prompts(toml, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    toml.write_text("[greeting\n")
    with pytest.raises(PromptError, match="not valid TOML"):
        load_texts(toml)
    toml.write_text('[greeting]\nid = ""\n')
    with pytest.raises(PromptError, match=r"greeting\.id"):
        load_texts(toml)
    with pytest.raises(PromptError, match="no such prompt"):
        build_prompts(TOML, tmp_path / "out", only=["nonexistent"])


def test_shipped_texts_cover_every_required_prompt() -> None:
    texts = load_texts(TOML)
    for language in LANGUAGES:
        for name in required_prompts(language):
            assert texts[name][language], (name, language)
    assert set(SENTENCE_PROMPTS) <= set(texts)


def test_comfort_pattern_is_quiet_and_single_toned() -> None:
    pcm = comfort_pcm(4.0)
    assert len(pcm) == 2 * 4 * 8000
    assert -20 < dbfs_peak(pcm) < -14
    assert pcm[-320:] == b"\0" * 320


@pytest.mark.peers
def test_build_speaks_with_espeak_and_writes_readable_prompts(tmp_path: Path) -> None:
    need("espeak-ng", "ffmpeg")
    out = tmp_path / "sounds"
    written = build_prompts(TOML, out, only=["greeting", "n3", "hold_music"])
    assert sorted(p.relative_to(out).as_posix() for p in written) == [
        "en/greeting.wav",
        "en/n3.wav",
        "hold_music.wav",
        "id/greeting.wav",
        "id/n3.wav",
    ]
    for path in written:
        audio = read_wav(path)
        assert audio.codec is A
        assert audio.channels == 1
        assert audio.info.sample_rate == 8000
        assert audio.frames > 1600, path  # at least 0.2 s of sound
    greeting = read_wav(out / "id" / "greeting.wav")
    pcm = g711.decode(A, greeting.data)
    assert -2.0 < dbfs_peak(pcm) <= -0.9  # peak-limited at -1 dBFS
    assert 1.5 < greeting.info.duration_s < 6  # trimmed, one sentence
    assert max(abs(x) for x in struct.unpack("<40h", pcm[:80])) > 0  # no leading silence


@pytest.mark.peers
@pytest.mark.parametrize("fmt", ["mp3", "ogg"])
def test_convert_a_human_recording(tmp_path: Path, fmt: str) -> None:
    need("ffmpeg")
    src = tmp_path / f"voice.{fmt}"
    # 44.1 kHz stereo, 0.7 s of silence, 1.5 s of a quiet 440 Hz tone, 0.5 s of silence.
    subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-f", "lavfi", "-i",
         "sine=frequency=440:sample_rate=44100:duration=1.5,volume=0.05,"
         "adelay=700|700,apad=pad_dur=0.5",
         "-ac", "2", str(src)],
        check=True,
    )  # fmt: skip
    dst = tmp_path / "sounds" / "id" / "greeting.wav"
    seconds = convert_recording(src, dst)
    audio = read_wav(dst)
    assert (audio.codec, audio.channels, audio.info.sample_rate) == (A, 1, 8000)
    assert 1.3 < seconds < 1.7  # silence trimmed off both ends
    assert abs(audio.info.duration_s - seconds) < 0.01
    pcm = g711.decode(A, audio.data)
    # A pure tone has a 3 dB crest factor: the level target decides the gain, not the ceiling.
    assert abs(dbfs_rms(pcm) - TARGET_LEVEL_DBFS) < 0.5
    assert dbfs_peak(pcm) < PEAK_CEILING_DBFS
    mid = pcm[len(pcm) // 2 : len(pcm) // 2 + 320]
    assert goertzel(mid, 440) > 0.5


@pytest.mark.peers
def test_convert_refuses_silence_and_garbage(tmp_path: Path) -> None:
    need("ffmpeg")
    quiet = tmp_path / "quiet.wav"
    write_wav(quiet, A, 1, g711.silence(A, 8000))
    with pytest.raises(PromptError, match="silent"):
        convert_recording(quiet, tmp_path / "out.wav")
    junk = tmp_path / "junk.mp3"
    junk.write_bytes(b"this is no audio file" * 10)
    with pytest.raises(PromptError, match="ffmpeg cannot decode"):
        convert_recording(junk, tmp_path / "out.wav")
    with pytest.raises(PromptError, match="no such file"):
        convert_recording(tmp_path / "absent.ogg", tmp_path / "out.wav")
    assert not (tmp_path / "out.wav").exists()


# ---------------------------------------------------------------- commands


def test_cli_prompts_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["prompts", "check", "--dir", str(SOUNDS)]) == 0
    assert "OK" in capsys.readouterr().out
    broken = copy_sounds(tmp_path)
    (broken / "id" / "n7.wav").unlink()
    assert main(["prompts", "check", "--dir", str(broken)]) == 1
    assert "n7.wav: missing" in capsys.readouterr().err


@pytest.mark.peers
def test_cli_convert_and_build(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    need("ffmpeg")
    sounds = tmp_path / "sounds"
    src = tmp_path / "rec.wav"
    write_wav(src, U, 1, g711.encode(U, struct.pack("<800h", *([8000, -8000] * 400))))
    assert main(["prompts", "convert", str(src), "menu", "--lang", "en", "--dir", str(sounds)]) == 0
    assert read_wav(prompt_path(sounds, "menu", "en")).codec is A
    assert main(["prompts", "convert", str(src), "menu", "--dir", str(sounds)]) == 2
    assert "--lang" in capsys.readouterr().err
    assert main(["prompts", "convert", str(src), "hold_music", "--dir", str(sounds)]) == 0
    assert (sounds / "hold_music.wav").is_file()
    assert main(["prompts", "convert", str(src), "Bad-Name", "--dir", str(sounds)]) == 2
    assert main(["prompts", "convert", str(tmp_path / "no.wav"), "menu", "--lang", "id",
                 "--dir", str(sounds)]) == 1  # fmt: skip
    assert "no such file" in capsys.readouterr().err


@pytest.mark.peers
def test_cli_build_one_prompt(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    need("espeak-ng", "ffmpeg")
    out = tmp_path / "sounds"
    code = main(["prompts", "build", "--out", str(out), "--toml", str(TOML), "--only", "n9"])
    assert code == 0, capsys.readouterr().err
    assert read_wav(out / "id" / "n9.wav").frames > 0
    assert main(["prompts", "build", "--out", str(out), "--toml", str(tmp_path / "none.toml")]) == 1
