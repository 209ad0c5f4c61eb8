"""VAD choice by measurement (issue 12): own energy+zero-crossing detector vs webrtcvad.

``scripts/bench vad`` generates espeak-ng speech (Bahasa Indonesia and
English, normal and quiet), sox noise (white, pink, brown, faint hiss) and
digital silence, converts each to 8 kHz G.711 µ-law, feeds 20 ms frames to
each detector and reports, per detector:

* detection: speech clips in which speech was declared (and how fast);
* false positives: noise/silence clips in which speech was declared at all;
* CPU per frame (µs, decode included), as a ratio to the G.711 decode alone.

webrtcvad (``webrtcvad-wheels``) is measured only if installed; it is not a
dependency of the package.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from ..media.g711 import Codec, decode
from ..media.vad import FRAME_SAMPLES, VoiceActivityDetector
from .report import machine, write_section

__all__ = ["CLIPS", "clip_frames", "main", "make_clips"]

# name → (kind, shell command writing a WAV to $OUT). "speech" clips hold a
# talker; "noise" clips must never count as speech. A delayed start matters:
# a detector that learns the floor from the first frame must still reject noise
# that starts after a quiet second, and find speech that starts inside noise.
_SAY_ID = "Tolong, ada kebakaran di rumah saya, cepat"
CLIPS: dict[str, tuple[str, str]] = {
    "speech_id": ("speech", f'espeak-ng -v id -w "$OUT" "{_SAY_ID}"'),
    "speech_en": ("speech", 'espeak-ng -v en -w "$OUT" "Help, my father is not breathing"'),
    "speech_id_quiet": (
        "speech",
        'espeak-ng -v id -a 30 -w "$OUT" "saya tidak bisa bicara keras"',
    ),
    "speech_after_1s_in_pink_noise": (
        "speech",
        f'espeak-ng -v id -w "$OUT.s.wav" "{_SAY_ID}" && '
        'sox "$OUT.s.wav" "$OUT.p.wav" pad 1 && '
        'sox -m "$OUT.p.wav" "|sox -n -r 22050 -c 1 -p synth 6 pinknoise vol 0.05" "$OUT"',
    ),
    "white_noise": ("noise", 'sox -n -r 8000 "$OUT" synth 4 whitenoise vol 0.3'),
    "pink_noise": ("noise", 'sox -n -r 8000 "$OUT" synth 4 pinknoise vol 0.3'),
    "brown_noise": ("noise", 'sox -n -r 8000 "$OUT" synth 4 brownnoise vol 0.5'),
    "brown_noise_after_1s": ("noise", 'sox -n -r 8000 "$OUT" synth 4 brownnoise vol 0.5 pad 1'),
    "pink_noise_after_1s": ("noise", 'sox -n -r 8000 "$OUT" synth 4 pinknoise vol 0.3 pad 1'),
    "faint_hiss": ("noise", 'sox -n -r 8000 "$OUT" synth 4 whitenoise vol 0.003'),
    "silence": ("noise", 'sox -n -r 8000 "$OUT" trim 0 4'),
}


def make_clips(folder: Path) -> dict[str, Path]:
    """Generate every clip as headerless 8 kHz mono µ-law (``.ul``) in ``folder``."""
    out: dict[str, Path] = {}
    for name, (_, cmd) in CLIPS.items():
        raw = folder / f"{name}.raw.wav"
        subprocess.run(["sh", "-c", cmd], check=True, env={**os.environ, "OUT": str(raw)})
        ulaw = folder / f"{name}.ul"
        subprocess.run(["sox", raw, "-r", "8000", "-c", "1", "-t", "ul", ulaw], check=True)
        out[name] = ulaw
    return out


def clip_frames(path: Path) -> list[bytes]:
    """The 20 ms µ-law frames of one clip (a short last frame dropped)."""
    data = path.read_bytes()
    return [
        data[i : i + FRAME_SAMPLES] for i in range(0, len(data) - FRAME_SAMPLES + 1, FRAME_SAMPLES)
    ]


Detector = Callable[[bytes], bool]  # frame → voiced


def _own() -> Detector:
    vad = VoiceActivityDetector(Codec.PCMU)

    def run(frame: bytes) -> bool:
        vad.feed(frame)
        return vad.speaking

    return run


def _webrtc(mode: int) -> Detector | None:
    try:
        import webrtcvad  # type: ignore[import-untyped,import-not-found,unused-ignore]
    except ImportError:
        return None
    vad = webrtcvad.Vad(mode)
    window: list[bool] = []

    def run(frame: bytes) -> bool:
        window.append(bool(vad.is_speech(decode(Codec.PCMU, frame), 8000)))
        del window[:-10]
        return sum(window) >= 5  # the same 100-of-200 ms onset rule as ours

    return run


def _webrtc_maker(mode: int) -> Callable[[], Detector]:
    def make() -> Detector:
        detector = _webrtc(mode)
        assert detector is not None
        return detector

    return make


def _measure(make: Callable[[], Detector], clips: dict[str, list[bytes]]) -> dict[str, object]:
    found: dict[str, float | None] = {}
    frames = 0
    spent = 0.0
    for name, frames_of in clips.items():
        detect = make()
        onset: float | None = None
        t0 = time.process_time()
        for i, frame in enumerate(frames_of):
            if detect(frame) and onset is None:
                onset = i * 0.02
        spent += time.process_time() - t0
        frames += len(frames_of)
        found[name] = onset
    return {"onsets": found, "us_per_frame": spent / frames * 1e6}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench vad", description=__doc__)
    parser.add_argument("--repeat", type=int, default=20, help="passes over the clips (CPU)")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        paths = make_clips(Path(tmp))
        clips = {name: clip_frames(p) for name, p in paths.items()}
    detectors: dict[str, Callable[[], Detector]] = {"energy+zcr (ours)": _own}
    for mode in (2, 3):
        first = _webrtc(mode)
        if first is not None:
            detectors[f"webrtcvad mode {mode}"] = _webrtc_maker(mode)
    reference = 0.0
    t0 = time.process_time()
    for _ in range(args.repeat):
        for frames_of in clips.values():
            for frame in frames_of:
                decode(Codec.PCMU, frame)
    n = sum(len(f) for f in clips.values()) * args.repeat
    reference = (time.process_time() - t0) / n * 1e6
    speech = [n for n, (kind, _) in CLIPS.items() if kind == "speech"]
    noise = [n for n, (kind, _) in CLIPS.items() if kind == "noise"]
    rows = []
    for label, make in detectors.items():
        result = _measure(make, clips)
        cpu = min(
            float(_measure(make, clips)["us_per_frame"])  # type: ignore[arg-type]
            for _ in range(max(1, args.repeat // 4))
        )
        onsets: dict[str, float | None] = result["onsets"]  # type: ignore[assignment]
        hits = [n for n in speech if onsets[n] is not None]
        false = [n for n in noise if onsets[n] is not None]
        rows.append(
            f"| {label} | {len(hits)}/{len(speech)} "
            f"({', '.join(f'{n} {onsets[n]:.2f} s' for n in hits) or '-'}) "
            f"| {len(false)}/{len(noise)} ({', '.join(false) or 'none'}) "
            f"| {cpu:.1f} µs ({cpu / reference:.1f}x decode) |"
        )
    body = (
        f"{machine()}\n\n"
        f"Clips: {', '.join(CLIPS)} (espeak-ng / sox, 8 kHz µ-law, 20 ms frames); "
        f"speech declared at 5 voiced frames of 10. G.711 decode alone: "
        f"{reference:.2f} µs/frame.\n\n"
        "| detector | speech found (onset) | false positives (noise/silence clips) "
        "| CPU per frame |\n|---|---|---|---|\n" + "\n".join(rows) + "\n"
    )
    print(body)
    if not args.no_write:
        write_section("vad", "Voice-activity detection for silent callers (issue 12)", body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
