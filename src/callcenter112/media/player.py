"""What one call leg hears from the server: a queue of prompts, then optionally a loop.

This module owns `Player`, pulled once per clock tick by the leg's outgoing stream. It plays
ready-made frames (`prompts.Prompt`, or anything shaped like it) in one law; pulling a frame is
an index increment and a list lookup, no audio is produced at call time (DESIGN §5: 2000
callers hearing prompts).

Theory of operation. A player has a *sequence* (prompts played once, in order, with optional
silence between them) and a *loop* (e.g. the comfort music, repeated until changed). While a
sequence is queued it plays; as its last frame is handed out the player reports
`PromptFinished` to its owner's callback (the IVR starts its input timer then, the queue
schedules the next position announcement) and falls back to the loop, resuming the loop where
it left off.
With neither, `next_frame()` returns None and the stream sends nothing (or comfort noise, the
glue's choice). `barge_in()` drops the sequence at once (first DTMF digit, RFC 4733 event or
in-band) without reporting it finished, since the owner asked for it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from .clock import FRAME_SAMPLES
from .g711 import Codec, silence

__all__ = ["DEFAULT_GAP_FRAMES", "Player", "Prompt", "PromptFinished"]

FRAME_BYTES = FRAME_SAMPLES  # one byte per G.711 sample
DEFAULT_GAP_FRAMES = 15  # 300 ms of silence between two prompts of a sequence


class Prompt(Protocol):
    """What a player plays: `prompts.Prompt` fits (this module stays free of file I/O)."""

    @property
    def name(self) -> str: ...

    @property
    def codec(self) -> Codec: ...

    @property
    def frames(self) -> tuple[bytes, ...]: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class PromptFinished:
    """A player handed out the last frame of a sequence (not sent when barged in)."""

    sequence: int  # the number `Player.play`/`enqueue` returned
    names: tuple[str, ...]  # the prompts it held, in order


class Player:
    """Frames for one leg in one law; `next_frame()` once per tick."""

    __slots__ = (
        "_frames",
        "_i",
        "_loop",
        "_loop_i",
        "_n",
        "_names",
        "_on_finished",
        "_sequence",
        "codec",
        "gap",
    )

    def __init__(
        self,
        codec: Codec,
        *,
        on_finished: Callable[[PromptFinished], None] | None = None,
        gap_frames: int = DEFAULT_GAP_FRAMES,
    ) -> None:
        self.codec = codec
        self.gap = (silence(codec, FRAME_BYTES),) * gap_frames
        self._on_finished = on_finished
        self._frames: list[bytes] = []
        self._i = 0
        self._n = 0
        self._names: list[str] = []
        self._sequence = 0
        self._loop: tuple[bytes, ...] = ()
        self._loop_i = 0

    @property
    def finished(self) -> bool:
        """True when no sequence is left to play (a loop may still be playing)."""
        return self._i >= self._n

    @property
    def playing(self) -> bool:
        """True when `next_frame()` would return audio."""
        return self._i < self._n or bool(self._loop)

    @property
    def sequence(self) -> int:
        """Number of the current (or last) sequence."""
        return self._sequence

    @property
    def remaining_frames(self) -> int:
        return self._n - self._i

    def _check(self, prompt: Prompt) -> None:
        if prompt.codec is not self.codec:
            raise ValueError(
                f"prompt {prompt.name!r} is {prompt.codec.name}, this player plays "
                f"{self.codec.name}"
            )

    def play(self, *prompts: Prompt, gap_frames: int | None = None) -> int:
        """Replace the sequence with `prompts` (the loop is kept); returns its number.

        `gap_frames` of silence go between prompts (default: the player's gap).
        """
        self._frames = []
        self._i = 0
        self._n = 0
        self._names = []
        self._sequence += 1
        self._append(prompts, gap_frames)
        return self._sequence

    def enqueue(self, *prompts: Prompt, gap_frames: int | None = None) -> int:
        """Append `prompts` to the playing sequence (or start one); returns its number."""
        if self._i >= self._n:
            return self.play(*prompts, gap_frames=gap_frames)
        self._append(prompts, gap_frames, after_gap=True)
        return self._sequence

    def _append(
        self, prompts: tuple[Prompt, ...], gap_frames: int | None, *, after_gap: bool = False
    ) -> None:
        gap = self.gap if gap_frames is None else (silence(self.codec, FRAME_BYTES),) * gap_frames
        frames = self._frames
        for k, prompt in enumerate(prompts):
            self._check(prompt)
            if k or after_gap:
                frames.extend(gap)
            frames.extend(prompt.frames)
            self._names.append(prompt.name)
        self._n = len(frames)

    def loop(self, prompt: Prompt | None) -> None:
        """Repeat `prompt` whenever no sequence is playing (None: stop looping)."""
        if prompt is None:
            self._loop = ()
        else:
            self._check(prompt)
            if prompt.frames is not self._loop:
                self._loop = prompt.frames
                self._loop_i = 0

    def barge_in(self) -> None:
        """Stop the sequence now; no `PromptFinished` is reported. The loop keeps playing."""
        self._frames = []
        self._i = 0
        self._n = 0
        self._names = []

    def stop(self) -> None:
        """Silence everything: sequence and loop."""
        self.barge_in()
        self._loop = ()

    def next_frame(self) -> bytes | None:
        """The frame for this tick, or None when there is nothing to play."""
        i = self._i
        n = self._n
        if i < n:
            self._i = i + 1
            frame = self._frames[i]
            if i + 1 == n:
                self._finish()  # the owner may start the next sequence from its callback
            return frame
        loop = self._loop
        if loop:
            j = self._loop_i
            self._loop_i = j + 1 if j + 1 < len(loop) else 0
            return loop[j]
        return None

    def _finish(self) -> None:
        event = PromptFinished(sequence=self._sequence, names=tuple(self._names))
        self._frames = []
        self._i = 0
        self._n = 0
        self._names = []
        if self._on_finished is not None:
            self._on_finished(event)
