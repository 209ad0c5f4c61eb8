"""In-band DTMF detection and tone generation (media/tones.py)."""

from __future__ import annotations

import math
import random
import shutil
import struct
import subprocess
import warnings
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callcenter112.media import g711
from callcenter112.media.tones import (
    COLUMN_FREQUENCIES,
    DTMF_KEYPAD,
    ROW_FREQUENCIES,
    InbandDtmfDetector,
    dbm0_amplitude,
    dtmf_tone,
    dual_tone,
)

with warnings.catch_warnings():  # the same shim as media/g711.py (audioop-lts on 3.13+)
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

ALL = "123A456B789C*0#D"
FREQS = {
    key: (ROW_FREQUENCIES[r], COLUMN_FREQUENCIES[c])
    for r, row in enumerate(DTMF_KEYPAD)
    for c, key in enumerate(row)
}


def silence(ms: int) -> bytes:
    return bytes(16 * ms)


def white_noise(samples: int, level_dbm0: float, seed: int) -> bytes:
    rng = random.Random(seed)
    sigma = dbm0_amplitude(level_dbm0) / math.sqrt(2)  # rms of a sine at that level
    values = [max(-32768, min(32767, round(rng.gauss(0.0, sigma)))) for _ in range(samples)]
    return struct.pack(f"<{samples}h", *values)


def detect(pcm: bytes, *, chunk: int = 320, start: int = 0) -> str:
    """All digits found when `pcm` is fed in `chunk`-octet frames (20 ms by default)."""
    detector = InbandDtmfDetector()
    found = []
    for offset in range(0, len(pcm), chunk):
        found += detector.feed(pcm[offset : offset + chunk], start + offset // 2)
    return "".join(found)


def sequence(
    digits: str,
    *,
    ms: int = 100,
    gap_ms: int = 100,
    level: float = -10.0,
    twist: float = 0.0,
    deviation: float = 0.0,
    lead_samples: int = 0,
) -> bytes:
    pcm = bytes(2 * lead_samples)
    for i, digit in enumerate(digits):
        low, high = FREQS[digit]
        sign = 1 if i % 2 else -1  # alternate above and below nominal
        pcm += dual_tone(
            low * (1 + sign * deviation),
            high * (1 + sign * deviation),
            ms,
            low_dbm0=level,
            high_dbm0=level + twist,
        )
        pcm += silence(gap_ms)
    return pcm


def test_tone_generator_levels_and_frequencies() -> None:
    tone = dtmf_tone("5", 100, -10.0)
    assert len(tone) == 1600  # 800 samples
    # Two equal sines at -10 dBm0: total rms = amplitude (sqrt(2) * A/sqrt(2)).
    assert audioop.rms(tone, 2) == pytest.approx(dbm0_amplitude(-10.0), rel=0.02)
    # 0 dBm0 is 3.14 dB below a full-scale sine (G.711).
    assert dbm0_amplitude(3.14) == pytest.approx(32767)
    assert dtmf_tone("5", 100, -10.0) is tone  # cached
    twisted = dtmf_tone("#", 40, -20.0, twist_db=2.0)
    assert len(twisted) == 640
    assert dual_tone(697, 1209, 10, start_sample=3)[:4] != dual_tone(697, 1209, 10)[:4]
    whole = dual_tone(697, 1209, 40)
    assert dual_tone(697, 1209, 20) + dual_tone(697, 1209, 20, start_sample=160) == whole
    with pytest.raises(ValueError, match="not a DTMF digit"):
        dtmf_tone("E", 100)


@pytest.mark.parametrize("lead", [0, 13, 40, 79, 117])
def test_every_digit_found_exactly_once_at_any_alignment(lead: int) -> None:
    assert detect(sequence(ALL, lead_samples=lead)) == ALL


def test_a_long_press_is_one_digit_and_repeats_are_separate_presses() -> None:
    pcm = dtmf_tone("7", 2000) + silence(60) + dtmf_tone("7", 80) + silence(50)
    pcm += dtmf_tone("7", 60)
    assert detect(pcm) == "777"


@pytest.mark.parametrize("snr_db", [15, 20])
@pytest.mark.parametrize("deviation", [0.0, 0.015])
def test_tones_in_noise_with_frequency_deviation(snr_db: int, deviation: float) -> None:
    for lead, level in ((0, -10.0), (37, -25.0)):
        pcm = sequence(ALL, level=level, deviation=deviation, lead_samples=lead)
        noisy = audioop.add(pcm, white_noise(len(pcm) // 2, level - snr_db, seed=lead), 2)
        assert detect(noisy) == ALL, (snr_db, deviation, level)


def test_forty_ms_tones_and_pauses_in_noise() -> None:
    """ITU-T Q.24: 40 ms tones with 40 ms pauses must all be found."""
    for lead in range(0, 80, 8):
        pcm = sequence(ALL, ms=40, gap_ms=40, level=-20.0, deviation=0.015, lead_samples=lead)
        noisy = audioop.add(pcm, white_noise(len(pcm) // 2, -35.0, seed=lead), 2)
        assert detect(noisy) == ALL, lead


@pytest.mark.parametrize("ms", [10, 20, 25])
def test_short_bursts_are_not_digits(ms: int) -> None:
    for lead in range(0, 80, 8):
        assert detect(sequence(ALL, ms=ms, lead_samples=lead)) == ""


@pytest.mark.parametrize("deviation", [0.035, 0.05])
def test_off_frequency_pairs_are_rejected(deviation: float) -> None:
    assert detect(sequence(ALL, deviation=deviation)) == ""


def test_twist_limits() -> None:
    assert detect(sequence(ALL, twist=-7.5)) == ALL  # high group 7.5 dB weaker: accepted
    assert detect(sequence(ALL, twist=3.5)) == ALL  # 3.5 dB stronger: accepted
    assert detect(sequence(ALL, twist=-10.0)) == ""  # beyond normal twist
    assert detect(sequence(ALL, twist=6.0)) == ""  # beyond reverse twist


def test_level_limits() -> None:
    assert detect(sequence(ALL, level=-30.0)) == ALL
    assert detect(sequence(ALL, level=-40.0)) == ""
    assert detect(sequence(ALL, level=1.0)) == ALL  # loud, near clipping


def test_a_ten_ms_dropout_does_not_split_a_press() -> None:
    for lead in range(0, 80, 10):
        pcm = silence(20)[: 2 * lead] + dtmf_tone("5", 50) + silence(10) + dtmf_tone("5", 50)
        assert detect(pcm + silence(100)) == "5", lead


def test_two_keys_at_once_or_a_third_tone_is_not_a_digit() -> None:
    both = audioop.add(dtmf_tone("1", 200, -13.0), dtmf_tone("5", 200, -13.0), 2)
    assert detect(silence(40) + both + silence(100)) == ""
    adjacent_rows = audioop.add(dtmf_tone("1", 200), dual_tone(770, 3000, 200), 2)
    assert detect(silence(40) + adjacent_rows + silence(100)) == ""
    # A second low-group tone only 4 dB under the first: ambiguous row, no digit.
    ambiguous = audioop.add(
        dtmf_tone("1", 200, -10.0), dual_tone(770, 770, 200, low_dbm0=-20.0, high_dbm0=-20.0), 2
    )  # two -20 dBm0 sines in phase: one tone at -14 dBm0
    assert detect(silence(40) + ambiguous + silence(100)) == ""
    # A DTMF pair inside a three-tone chord: the pair carries only 2/3 of the power.
    chord = audioop.add(
        dtmf_tone("9", 200, -13.0), dual_tone(2200, 2200, 200, low_dbm0=-16.0, high_dbm0=-16.0), 2
    )
    assert detect(silence(40) + chord + silence(100)) == ""
    assert detect(silence(40) + dtmf_tone("9", 200, -13.0) + silence(100)) == "9"


@pytest.mark.parametrize("codec", [g711.Codec.PCMA, g711.Codec.PCMU])
def test_detection_through_g711(codec: g711.Codec) -> None:
    pcm = sequence(ALL, level=-15.0, deviation=0.015)
    noisy = audioop.add(pcm, white_noise(len(pcm) // 2, -33.0, seed=5), 2)
    assert detect(g711.decode(codec, g711.encode(codec, noisy))) == ALL


def test_any_chunking_gives_the_same_result() -> None:
    pcm = sequence("159#", ms=60, gap_ms=50, lead_samples=7)
    assert detect(pcm, chunk=2) == "159#"
    assert detect(pcm, chunk=74) == "159#"
    assert detect(pcm, chunk=len(pcm)) == "159#"


def test_a_gap_in_positions_restarts_the_analysis() -> None:
    detector = InbandDtmfDetector()
    half = dtmf_tone("3", 30)
    assert detector.feed(half, 0) == []
    # The rest of the "tone" arrives as if after lost packets: no digit from the splice.
    assert detector.feed(half, 8000) == []
    assert detector.feed(dtmf_tone("3", 100), 8000 + 240) == ["3"]
    assert detector.last_detected_at is not None
    with pytest.raises(ValueError, match="whole"):
        detector.feed(b"\x00", 0)


def test_rtp_timestamp_positions_may_wrap() -> None:
    detector = InbandDtmfDetector()
    # A 50 ms tone from sample 160; the timestamp wraps at the start of the third frame,
    # in the middle of the tone (treated as a gap, neither half would be long enough).
    pcm = silence(20) + dtmf_tone("6", 50) + silence(60)
    position = 0x100000000 - 320
    found = []
    for offset in range(0, len(pcm), 320):
        found += detector.feed(pcm[offset : offset + 320], position & 0xFFFFFFFF)
        position += 160
    assert found == ["6"]
    assert detector.last_detected_at is not None
    assert detector.last_detected_at < 0x100000000


def note(freq: float, ms: int, level_dbm0: float, harmonics: tuple[float, ...]) -> list[float]:
    count = ms * 8
    amplitude = dbm0_amplitude(level_dbm0)
    return [
        amplitude
        * sum(
            h * math.sin(2 * math.pi * freq * (k + 1) * n / 8000) for k, h in enumerate(harmonics)
        )
        for n in range(count)
    ]


def pcm16(values: list[float]) -> bytes:
    return struct.pack(f"<{len(values)}h", *(max(-32768, min(32767, round(v))) for v in values))


def test_sine_sweep_music_and_noise_find_nothing() -> None:
    count = 8000 * 5
    phase = 0.0
    values = []
    for n in range(count):
        phase += 2 * math.pi * (300 + 3100 * n / count) / 8000
        values.append(dbm0_amplitude(-10.0) * math.sin(phase))
    assert detect(pcm16(values)) == ""  # 300 -> 3400 Hz in 5 s
    # A chromatic scale C4..C7 of "instrument" notes (a fundamental with harmonics)...
    scale = []
    for semitone in range(37):
        freq = 261.63 * 2 ** (semitone / 12)
        scale += note(freq, 150, -12.0, (1.0, 0.5, 0.3, 0.2))
    assert detect(pcm16(scale)) == ""
    # ...and major triads in every key, each held 300 ms.
    chords = []
    for root in range(12):
        freq = 261.63 * 2 ** (root / 12)
        triad = [note(freq * 2 ** (i / 12), 300, -15.0, (1.0, 0.3)) for i in (0, 4, 7)]
        chords += [a + b + c for a, b, c in zip(*triad, strict=True)]
    assert detect(pcm16(chords)) == ""
    assert detect(white_noise(8000 * 3, -5.0, seed=1)) == ""


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2000).map(lambda b: b[: len(b) // 2 * 2]))
def test_arbitrary_audio_never_crashes(pcm: bytes) -> None:
    assert set(detect(pcm, chunk=322)) <= set(ALL)


# --- real speech (espeak-ng + sox): talk-off must be zero ---------------------------------

SPEECH = [
    (
        "id",
        "Selamat datang di layanan darurat satu satu dua Kota Ambon. Untuk ambulans tekan "
        "satu. Untuk pemadam kebakaran tekan dua. Untuk bencana tekan tiga. Untuk polisi "
        "tekan empat. Mohon tunggu, operator kami akan segera menjawab.",
    ),
    (
        "id+f3",
        "Tolong, rumah saya terbakar di jalan Sultan Hasanuddin nomor tujuh puluh dua. "
        "Ada anak kecil di dalam. Cepat kirim pemadam! Nomor saya nol delapan satu dua.",
    ),
    (
        "en",
        "Hello, this is an emergency. There has been a car accident on the main road near "
        "the harbour. Two people are injured and one is not breathing. Send an ambulance.",
    ),
    (
        "en+f4",
        "One one two. Press one for medical, two for fire, three for disaster, four for "
        "police. Please hold the line while we connect you to an operator.",
    ),
]
needs_speech = pytest.mark.skipif(
    shutil.which("espeak-ng") is None or shutil.which("sox") is None,
    reason="espeak-ng and sox are needed",
)


def speak(tmp_path: Path, voice: str, text: str) -> bytes:
    wav = tmp_path / "speech.wav"
    raw = tmp_path / "speech.raw"
    subprocess.run(["espeak-ng", "-v", voice, "-w", str(wav), text], check=True, timeout=120)
    subprocess.run(
        ["sox", str(wav), "-r", "8000", "-c", "1", "-b", "16", "-e", "signed-integer", str(raw)],
        check=True,
        timeout=120,
    )
    return raw.read_bytes()


@pytest.mark.peers
@needs_speech
@pytest.mark.parametrize(("voice", "text"), SPEECH, ids=[v for v, _ in SPEECH])
def test_speech_produces_no_digits(tmp_path: Path, voice: str, text: str) -> None:
    speech = speak(tmp_path, voice, text)
    assert len(speech) > 16000 * 5  # at least 5 s of audio
    for gain in (0.5, 1.0, 2.0, 4.0):  # quiet to clipped
        loud = audioop.mul(speech, 2, gain)
        assert detect(loud) == "", gain
        assert detect(g711.decode(g711.Codec.PCMA, g711.encode(g711.Codec.PCMA, loud))) == ""
    # The same pipeline does find a digit pressed after the speech.
    assert detect(speech + silence(100) + dtmf_tone("4", 80) + silence(100)) == "4"
