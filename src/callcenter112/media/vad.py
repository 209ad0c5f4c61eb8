"""Voice-activity detection on a caller's G.711 audio during the IVR (issue 12).

Owns one rule: "is somebody speaking on this line?", asked of 20 ms G.711
frames (160 samples at 8 kHz, RFC 3551 §4.5.14). The IVR uses the answer only
to tell a *silent* caller (no key, no speech for ``ivr.silent_after_s``: play
"if you cannot speak, press 5") from one who talks instead of pressing a key.
Neither answer ever ends a call: a missed word costs one extra prompt, a
noise taken for speech costs the ``silent`` flag — the caller is queued either
way.

Pure: frames in, a boolean out; no clock (the coordinator stamps the
``speech`` input to ``ivr.py`` with its own ``now``).

Theory of operation — energy + zero crossings with an adaptive floor
---------------------------------------------------------------------
Per frame, after G.711 decoding (``audioop``, C):

* ``rms`` energy and ``crossings`` (zero crossings among 160 samples);
* a frame is *voiced* when ``rms`` exceeds both ``MIN_SPEECH_RMS`` (about
  -40 dBFS: a phone line's idle noise stays well below) and
  ``FLOOR_RATIO`` x the running noise floor, and its crossings are below
  ``MAX_SPEECH_CROSSINGS`` — voiced speech has its energy under ~1 kHz
  (≲ 50 crossings per 20 ms), white/hiss noise crosses zero about every other
  sample (~80);
* the floor follows every frame quickly down and slowly up (``FLOOR_RISE``),
  so steady noise raises it and stops counting as speech, while the pauses
  between words keep it low for a talker;
* ``speech`` is declared once ``ONSET_FRAMES`` of the last ``WINDOW_FRAMES``
  frames were voiced (100 ms of a 200 ms window — one click is not a word)
  and the loudest of them is ``MODULATION`` x the quietest: syllables rise
  and fall, a noise that just started is loud but flat.

Measured against webrtcvad on espeak-ng speech, sox noise and silence in
``callcenter112.bench.vad``; figures and the choice in docs/decisions.md and
docs/benchmarks.md.
"""

from __future__ import annotations

import sys
from collections import deque
from dataclasses import dataclass, field

from .g711 import Codec

if sys.version_info >= (3, 13):  # pragma: no cover - depends on the interpreter
    import audioop
else:  # pragma: no cover
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import audioop

__all__ = [
    "FRAME_SAMPLES",
    "FrameFeatures",
    "VoiceActivityDetector",
    "frame_features",
]

FRAME_SAMPLES = 160  # 20 ms at 8000 Hz (RFC 3551 §4.5.14 PCMU/PCMA ptime 20)
MIN_SPEECH_RMS = 300  # ≈ -40 dBFS of 16-bit linear; quiet line noise is below
FLOOR_RATIO = 3.0  # voiced: ≥ ~10 dB over the running noise floor
MAX_SPEECH_CROSSINGS = 60  # of 160 samples; white noise has ~80
FLOOR_RISE = 1.05  # the floor climbs 5 % a frame (≈ 6 dB in 0.3 s) towards steady noise
WINDOW_FRAMES = 10  # 200 ms
ONSET_FRAMES = 5  # 100 ms of voiced frames in the window → speech
MODULATION = 3.0  # … whose loudest frame is ≥ 9.5 dB over its quietest voiced one


@dataclass(frozen=True, slots=True, kw_only=True)
class FrameFeatures:
    rms: int  # of 16-bit linear samples
    crossings: int  # zero crossings in the frame


def frame_features(codec: Codec, payload: bytes) -> FrameFeatures:
    """Energy and zero crossings of one G.711 frame (any length)."""
    pcm = audioop.ulaw2lin(payload, 2) if codec is Codec.PCMU else audioop.alaw2lin(payload, 2)
    return FrameFeatures(rms=audioop.rms(pcm, 2), crossings=audioop.cross(pcm, 2))


@dataclass(slots=True)
class VoiceActivityDetector:
    """One caller's detector; feed it every received frame in order."""

    codec: Codec
    # Starts at full scale, so the first frame sets it: a line that is noisy
    # from the start does not look like a talker.
    floor: float = 32767.0
    speaking: bool = False  # the last window held speech
    # rms of each frame in the window, 0 for an unvoiced one
    _window: deque[int] = field(default_factory=lambda: deque(maxlen=WINDOW_FRAMES))

    def voiced(self, features: FrameFeatures) -> bool:
        """Whether one frame looks like voice; updates the noise floor."""
        threshold = max(float(MIN_SPEECH_RMS), FLOOR_RATIO * self.floor)
        is_voiced = features.rms >= threshold and features.crossings <= MAX_SPEECH_CROSSINGS
        # Quieter frames pull the floor down at once; louder ones push it up
        # slowly, so steady noise stops looking like speech while the pauses
        # between words keep the floor low for a talker.
        self.floor = max(1.0, min(float(features.rms), self.floor * FLOOR_RISE))
        return is_voiced

    def feed(self, payload: bytes) -> bool:
        """One received frame; True exactly when speech starts (the rising edge)."""
        features = frame_features(self.codec, payload)
        self._window.append(features.rms if self.voiced(features) else 0)
        loud = [rms for rms in self._window if rms]
        # Syllables rise and fall; a noise that just started is loud but flat.
        now_speaking = len(loud) >= ONSET_FRAMES and max(loud) >= MODULATION * min(loud)
        started = now_speaking and not self.speaking
        self.speaking = now_speaking
        return started
