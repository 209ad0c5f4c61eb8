"""Voice-activity detection on real espeak-ng speech, sox noise and silence, as G.711.

The audio is generated here with espeak-ng and sox (the same clips as
``scripts/bench vad``), converted to 8 kHz G.711 and fed frame by frame.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from callcenter112.bench.vad import CLIPS, clip_frames, make_clips
from callcenter112.ivr import IvrFinished, IvrMenu, IvrSettings, PlayPrompts
from callcenter112.media.g711 import Codec, ulaw_to_alaw
from callcenter112.media.vad import FRAME_SAMPLES, VoiceActivityDetector, frame_features

pytestmark = pytest.mark.skipif(
    not (shutil.which("espeak-ng") and shutil.which("sox")), reason="needs espeak-ng and sox"
)

FRAME_S = 0.02


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[bytes]]:
    folder = tmp_path_factory.mktemp("vad")
    return {name: clip_frames(path) for name, path in make_clips(folder).items()}


def onset(frames: list[bytes], codec: Codec = Codec.PCMU) -> float | None:
    vad = VoiceActivityDetector(codec)
    for i, frame in enumerate(frames):
        if vad.feed(frame):
            return i * FRAME_S
    return None


SPEECH = [n for n, (kind, _) in CLIPS.items() if kind == "speech"]
STEADY_NOISE = ["white_noise", "pink_noise", "brown_noise", "faint_hiss", "silence"]


@pytest.mark.parametrize("name", SPEECH)
def test_speech_is_found_within_half_a_second(name: str, clips: dict[str, list[bytes]]) -> None:
    frames = clips[name]
    assert len(frames) > 50 and all(len(f) == FRAME_SAMPLES for f in frames)
    # Where the talker starts: the first frame clearly above the clip's quietest.
    loud = [frame_features(Codec.PCMU, f).rms for f in frames]
    start = next(i for i, rms in enumerate(loud) if rms > 1000) * FRAME_S
    found = onset(frames)
    assert found is not None, f"{name}: speech never detected"
    assert start <= found + 0.04 and found - start < 0.5, (name, start, found)


@pytest.mark.parametrize("name", STEADY_NOISE)
def test_steady_noise_and_silence_are_not_speech(name: str, clips: dict[str, list[bytes]]) -> None:
    assert onset(clips[name]) is None


def test_noise_does_not_hide_a_talker(clips: dict[str, list[bytes]]) -> None:
    """Pink noise first, then the same noise with a voice in it: found after the 1 s pad."""
    found = onset(clips["speech_after_1s_in_pink_noise"])
    assert found is not None and 1.0 <= found < 1.5


def test_a_law_and_mu_law_agree(clips: dict[str, list[bytes]]) -> None:
    for name in ("speech_id", "pink_noise", "silence"):
        alaw = [ulaw_to_alaw(f) for f in clips[name]]
        a, u = onset(alaw, Codec.PCMA), onset(clips[name])
        assert (a is None) == (u is None), name
        if a is not None and u is not None:
            assert abs(a - u) <= 0.06


def test_one_rising_edge_per_utterance(clips: dict[str, list[bytes]]) -> None:
    vad = VoiceActivityDetector(Codec.PCMU)
    silence = clips["silence"][:50]
    frames = silence + clips["speech_id"] + silence + clips["speech_en"] + silence
    edges = [i for i, f in enumerate(frames) if vad.feed(f)]
    assert len(edges) >= 2 and not vad.speaking  # both utterances found; silence ends it
    assert edges[0] >= 50 and any(e >= 100 + len(clips["speech_id"]) for e in edges)


def test_ivr_with_vad_silent_caller_and_speaking_caller(clips: dict[str, list[bytes]]) -> None:
    """The coordinator's loop in miniature: frames → VAD → ``IvrMenu.speech``."""
    settings = IvrSettings(
        digits={"1": "medical"}, input_timeout_s=5.0, menu_tries=2, silent_after_s=3.0
    )

    def run(frames: list[bytes]) -> list[object]:
        menu, vad = IvrMenu(settings), VoiceActivityDetector(Codec.PCMU)
        out: list[object] = list(menu.start(0.0))
        now = 0.0
        for frame in frames:
            now += FRAME_S
            if vad.feed(frame):
                out += menu.speech(now)
            out += menu.timer_fired(now)
            if menu.finished:
                break
        return out

    quiet = clips["silence"] + clips["faint_hiss"]  # 8 s, nobody speaks
    out = run(quiet)
    assert any(isinstance(a, PlayPrompts) and a.names == ("silent_press",) for a in out)
    talker = (clips["speech_id"] + clips["speech_en"]) * 2
    out = run(talker)
    assert not any(isinstance(a, PlayPrompts) and a.names == ("silent_press",) for a in out)
    assert not any(isinstance(a, IvrFinished) for a in out)


def test_sox_converted_file_is_g711(tmp_path: Path) -> None:
    """The clip pipeline itself: sox writes 160-byte µ-law frames at 8 kHz."""
    out = tmp_path / "t.ul"
    subprocess.run(
        ["sox", "-n", "-r", "8000", "-c", "1", "-t", "ul", out, "synth", "1", "sine", "440"],
        check=True,
    )
    frames = clip_frames(out)
    assert len(frames) == 50 and frame_features(Codec.PCMU, frames[10]).crossings in range(
        16, 19
    )  # 2 per 440 Hz cycle
