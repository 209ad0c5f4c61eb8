"""The 112 voice menu for one caller: greeting, menu, DTMF choice, category.

Owns the menu state machine of one call (DESIGN §2 phase 3). It is pure: every
input carries ``now`` (monotonic seconds) and every method returns the list of
actions the call coordinator (``calls.py``) must carry out. It plays nothing,
reads no clock and never hangs up — there is no "disconnect" action at all.

Theory of operation
-------------------
``start()`` plays ``greeting`` + ``menu`` in the start language, barge-in
allowed. A digit may arrive at any time (RFC 4733 telephone-event, in-band
tone or SIP INFO — the coordinator normalises them to one DTMF key); while a
prompt plays, the first digit stops it at once (``StopPlayback``). When the
menu has played to its end the input timer is armed for ``input_timeout_s``;
``deadline`` tells the coordinator when to call ``timer_fired()``.

* a key in ``digits``   → ``IvrFinished(category, reason="digit")``
* ``operator_key``      → ``IvrFinished("unknown", reason="operator_key")``
* ``english_key``       → language becomes ``en`` and the menu (only the menu:
  the caller has already heard the greeting) is replayed; this does not use up
  a try. Pressed again while already in English it is an invalid key.
* any other key         → ``invalid`` + ``menu`` replayed; uses up a try
* input timeout         → ``menu`` replayed; uses up a try

After ``menu_tries`` used-up tries the caller goes to the general queue:
``IvrFinished("unknown", reason=…)`` with ``"no_input"`` or ``"invalid"``
after the kind of the last try (DESIGN §2: "No input or invalid input repeats
once, then the call goes to the general queue with category unknown").

Silent callers (issue 12, after the UK Silent Solution — never ending the
call). With ``silent_after_s`` set, a second timer runs from ``start()``: any
key or any ``speech()`` (the caller's audio, ``media/vad.py``) restarts it.
When it runs out — or when the menu's last try runs out and the caller has
never spoken — the menu stops and ``silent_press`` plays ("jika Anda tidak
dapat berbicara, tekan 5" / "if you cannot speak, press 5"):

* ``silent_key`` or *any* key → ``IvrFinished("unknown", reason=
  "silent_confirmed", flags=("silent_confirmed",))``: the ACD queues it first;
* speech → ``reason="speech"`` (the caller can talk: an operator hears them);
* nothing for ``input_timeout_s`` after the prompt → ``reason="silent",
  flags=("silent",)``: queued at normal priority, flagged; the operator
  decides. There is still no hang-up anywhere.

A caller who spoke but pressed nothing finishes ``no_input`` as before.

Every key is reported as it is handled (``DigitAccepted``/``DigitRejected``,
``InputTimedOut``) and ``IvrFinished.digits`` repeats the whole key history, so
the incident record shows exactly what the caller pressed and when.

Safety net: a ``PlayPrompts`` that is never reported finished (a player fault)
must not strand the caller in the menu. ``deadline`` while a prompt plays is
``playback_guard_s`` after it started; if the timer fires then, the prompt is
taken as finished and the input timer starts.

Each ``PlayPrompts`` carries a ``playback`` serial number. ``prompt_finished``
may name it; a report for a playback that has since been stopped or replaced
is stale and ignored (a barge-in and the natural end of the old prompt can
cross in the coordinator's queue). Any other input that is not in
``_TRANSITIONS`` raises ``IvrTransitionError`` — a coordinator bug, never a
silent stuck menu.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from .config import IvrConfig

__all__ = [
    "DTMF_KEYS",
    "PROMPT_GREETING",
    "PROMPT_INVALID",
    "PROMPT_MENU",
    "PROMPT_SILENT",
    "PROMPT_SILENT_PRESS",
    "PROMPT_WATCH_LIST_WARNING",
    "UNKNOWN_CATEGORY",
    "DigitAccepted",
    "DigitRejected",
    "InputTimedOut",
    "IvrAction",
    "IvrError",
    "IvrFinished",
    "IvrInput",
    "IvrMenu",
    "IvrSettings",
    "IvrState",
    "IvrTransitionError",
    "PlayPrompts",
    "StopPlayback",
]

# RFC 4733 §3.2 Table 3: events 0-15 are the sixteen DTMF keys.
DTMF_KEYS = frozenset("0123456789*#ABCD")

PROMPT_GREETING = "greeting"
PROMPT_MENU = "menu"
PROMPT_INVALID = "invalid"
# "If you cannot speak, press any key, or stay on the line": a queue-side prompt
# of the coordinator (kept for it); the IVR's own silent step plays the next one.
PROMPT_SILENT = "silent"
PROMPT_SILENT_PRESS = "silent_press"  # "… tekan 5" / "… press 5"
PROMPT_WATCH_LIST_WARNING = "watch_list_warning"
FLAG_SILENT = "silent"  # the words of incidents.FLAGS (ivr.py imports no store code)
FLAG_SILENT_CONFIRMED = "silent_confirmed"

UNKNOWN_CATEGORY = "unknown"
ENGLISH = "en"

FinishReason = Literal[
    "digit", "operator_key", "no_input", "invalid", "silent_confirmed", "silent", "speech"
]


class IvrError(Exception):
    """An input the menu cannot take (bad key, or an input its state forbids)."""


class IvrTransitionError(IvrError):
    """The input is not in the state table for the menu's current state."""

    def __init__(self, state: IvrState, event: IvrInput) -> None:
        self.state = state
        self.event = event
        super().__init__(f"IVR: input {event.name} is not allowed in state {state.name}")


class IvrState(enum.Enum):
    IDLE = "idle"  # created, not started
    PLAYING = "playing"  # a prompt list is playing; digits barge in
    WAITING = "waiting"  # menu played out; input timer armed
    SILENT_PLAYING = "silent_playing"  # "if you cannot speak, press 5" is playing
    SILENT_WAITING = "silent_waiting"  # … played out; last wait for a key or a word
    DONE = "done"  # IvrFinished emitted; the call belongs to the queue


class IvrInput(enum.Enum):
    STARTED = "started"
    CHOICE_DIGIT = "choice_digit"
    OPERATOR_DIGIT = "operator_digit"
    ENGLISH_DIGIT = "english_digit"
    INVALID_DIGIT = "invalid_digit"
    LAST_INVALID_DIGIT = "last_invalid_digit"  # the invalid key that uses up the last try
    PROMPT_FINISHED = "prompt_finished"
    PLAYBACK_OVERDUE = "playback_overdue"  # guard timer: the player never reported
    INPUT_TIMED_OUT = "input_timed_out"
    LAST_INPUT_TIMED_OUT = "last_input_timed_out"
    # Silent callers
    SPEECH = "speech"  # the caller spoke (VAD): restarts the silence timer
    SILENCE_TIMED_OUT = "silence_timed_out"  # no key, no speech for silent_after_s
    LAST_INPUT_TIMED_OUT_SILENT = "last_input_timed_out_silent"  # … and never spoke
    SILENT_DIGIT = "silent_digit"  # any key after the silent prompt
    SILENT_SPEECH = "silent_speech"  # a word after the silent prompt
    SILENT_NO_RESPONSE = "silent_no_response"


_S, _I = IvrState, IvrInput
_TRANSITIONS: Mapping[tuple[IvrState, IvrInput], IvrState] = MappingProxyType(
    {
        (_S.IDLE, _I.STARTED): _S.PLAYING,
        (_S.PLAYING, _I.PROMPT_FINISHED): _S.WAITING,
        (_S.PLAYING, _I.PLAYBACK_OVERDUE): _S.WAITING,
        (_S.PLAYING, _I.CHOICE_DIGIT): _S.DONE,
        (_S.PLAYING, _I.OPERATOR_DIGIT): _S.DONE,
        (_S.PLAYING, _I.ENGLISH_DIGIT): _S.PLAYING,
        (_S.PLAYING, _I.INVALID_DIGIT): _S.PLAYING,
        (_S.PLAYING, _I.LAST_INVALID_DIGIT): _S.DONE,
        (_S.WAITING, _I.CHOICE_DIGIT): _S.DONE,
        (_S.WAITING, _I.OPERATOR_DIGIT): _S.DONE,
        (_S.WAITING, _I.ENGLISH_DIGIT): _S.PLAYING,
        (_S.WAITING, _I.INVALID_DIGIT): _S.PLAYING,
        (_S.WAITING, _I.LAST_INVALID_DIGIT): _S.DONE,
        (_S.WAITING, _I.INPUT_TIMED_OUT): _S.PLAYING,
        (_S.WAITING, _I.LAST_INPUT_TIMED_OUT): _S.DONE,
        (_S.PLAYING, _I.SPEECH): _S.PLAYING,
        (_S.WAITING, _I.SPEECH): _S.WAITING,
        (_S.PLAYING, _I.SILENCE_TIMED_OUT): _S.SILENT_PLAYING,
        (_S.WAITING, _I.SILENCE_TIMED_OUT): _S.SILENT_PLAYING,
        (_S.WAITING, _I.LAST_INPUT_TIMED_OUT_SILENT): _S.SILENT_PLAYING,
        (_S.SILENT_PLAYING, _I.PROMPT_FINISHED): _S.SILENT_WAITING,
        (_S.SILENT_PLAYING, _I.PLAYBACK_OVERDUE): _S.SILENT_WAITING,
        (_S.SILENT_PLAYING, _I.SILENT_DIGIT): _S.DONE,
        (_S.SILENT_WAITING, _I.SILENT_DIGIT): _S.DONE,
        (_S.SILENT_PLAYING, _I.SILENT_SPEECH): _S.DONE,
        (_S.SILENT_WAITING, _I.SILENT_SPEECH): _S.DONE,
        (_S.SILENT_WAITING, _I.SILENT_NO_RESPONSE): _S.DONE,
    }
)


@dataclass(frozen=True, slots=True, kw_only=True)
class IvrSettings:
    """What one menu needs from ``[ivr]`` (``callcenter112.config.IvrConfig``)."""

    digits: Mapping[str, str]  # DTMF key → category
    english_key: str = "9"
    operator_key: str = "0"
    input_timeout_s: float = 5.0
    menu_tries: int = 2
    language: str = "id"
    # Longest a prompt list may play before it is taken as finished (see module doc).
    playback_guard_s: float = 60.0
    # No key and no speech this long after start → the silent step; None: off.
    silent_after_s: float | None = None
    silent_key: str = "5"

    def __post_init__(self) -> None:
        keys = [*self.digits, self.english_key, self.operator_key]
        if self.silent_after_s is not None:
            keys.append(self.silent_key)
            if not self.silent_after_s > 0:
                raise ValueError("silent_after_s must be positive")
        for key in keys:
            if key not in DTMF_KEYS:
                raise ValueError(f"IVR key {key!r} is not a DTMF key")
        if len(set(keys)) != len(keys):
            raise ValueError(f"IVR keys overlap: {keys}")
        if UNKNOWN_CATEGORY in self.digits.values():
            raise ValueError("a menu key cannot choose the 'unknown' category")
        if self.menu_tries < 1:
            raise ValueError("menu_tries must be at least 1")
        if not (self.input_timeout_s > 0 and self.playback_guard_s > 0):
            raise ValueError("IVR timers must be positive")
        # A private copy: the caller's dict must not change a running menu.
        object.__setattr__(self, "digits", MappingProxyType(dict(self.digits)))

    @classmethod
    def from_config(cls, cfg: IvrConfig, *, speech_detection: bool = False) -> IvrSettings:
        """``speech_detection``: the coordinator feeds the caller's audio to
        ``media.vad`` and reports ``speech()``. Only then is the silent step on —
        without it a caller who talks instead of pressing would be taken for silent."""
        return cls(
            digits=dict(cfg.digits),
            english_key=cfg.english_key,
            operator_key=cfg.operator_key,
            input_timeout_s=cfg.input_timeout_s,
            menu_tries=cfg.menu_tries,
            language=cfg.language,
            silent_after_s=cfg.silent_after_s if speech_detection else None,
            silent_key=cfg.silent_key,
        )


# --- actions (what the coordinator must do / record) ---------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class PlayPrompts:
    """Play these prompts in order, replacing anything playing; report the end
    with ``prompt_finished(now, playback=…)``."""

    names: tuple[str, ...]
    language: str
    barge_in: bool
    playback: int


@dataclass(frozen=True, slots=True, kw_only=True)
class StopPlayback:
    """Stop the prompt list ``playback`` at once (barge-in); it will not finish."""

    playback: int


@dataclass(frozen=True, slots=True, kw_only=True)
class DigitAccepted:
    """A key that meant something: a category, ``english`` or ``operator``."""

    digit: str
    meaning: str
    at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class DigitRejected:
    """A key that maps to nothing; ``tries_used`` counts this one."""

    digit: str
    tries_used: int
    at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class InputTimedOut:
    """No key within ``input_timeout_s`` after the menu; ``tries_used`` counts this one."""

    tries_used: int
    at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class IvrFinished:
    """The menu is over: queue the call with ``category``. Always the last action."""

    category: str
    language: str
    reason: FinishReason
    digits: str  # every key pressed, in order
    at: float
    flags: tuple[str, ...] = ()  # "silent" / "silent_confirmed" (incidents.FLAGS words)


IvrAction = PlayPrompts | StopPlayback | DigitAccepted | DigitRejected | InputTimedOut | IvrFinished


@dataclass(slots=True)
class IvrMenu:
    """One caller's pass through the menu."""

    settings: IvrSettings
    state: IvrState = IvrState.IDLE
    language: str = ""
    tries_used: int = 0
    digits: str = ""
    playback: int = 0  # serial of the current/last PlayPrompts
    spoke: bool = False  # speech was heard at least once
    _deadline: float | None = field(default=None, repr=False)
    _silent_due: float | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.language = self.language or self.settings.language

    @property
    def deadline(self) -> float | None:
        """When ``timer_fired`` must be called next, or None (no timer running)."""
        due = [t for t in (self._deadline, self._silent_due) if t is not None]
        return min(due, default=None)

    @property
    def finished(self) -> bool:
        return self.state is IvrState.DONE

    # --- inputs ---------------------------------------------------------------------

    def start(self, now: float, *, watch_listed: bool = False) -> list[IvrAction]:
        """``watch_listed``: the number is on the supervisor's watch list — the
        warning plays first (issue 12), then the greeting and the menu as for
        everyone; a key still barges in, so a genuine caller loses no time."""
        self._move(IvrInput.STARTED)
        self._restart_silence(now)
        names: tuple[str, ...] = (PROMPT_GREETING, PROMPT_MENU)
        if watch_listed:
            names = (PROMPT_WATCH_LIST_WARNING, *names)
        return [self._play(names, now)]

    def digit(self, d: str, now: float) -> list[IvrAction]:
        """One DTMF key (``0-9 * # A-D``); barges in on any playing prompt."""
        if len(d) != 1 or d not in DTMF_KEYS:
            raise IvrError(f"IVR: {d!r} is not a DTMF key")
        if self.state in (IvrState.SILENT_PLAYING, IvrState.SILENT_WAITING):
            return self._silent_answered(IvrInput.SILENT_DIGIT, d, now)
        s = self.settings
        if d in s.digits:
            event = IvrInput.CHOICE_DIGIT
        elif d == s.operator_key:
            event = IvrInput.OPERATOR_DIGIT
        elif d == s.english_key and self.language != ENGLISH:
            event = IvrInput.ENGLISH_DIGIT
        elif self.tries_used + 1 >= s.menu_tries:
            event = IvrInput.LAST_INVALID_DIGIT
        else:
            event = IvrInput.INVALID_DIGIT
        was_playing = self.state is IvrState.PLAYING
        self._move(event)  # raises before anything is recorded
        self._restart_silence(now)
        self.digits += d
        actions: list[IvrAction] = []
        if was_playing:
            actions.append(StopPlayback(playback=self.playback))
        self._deadline = None
        if event is IvrInput.CHOICE_DIGIT:
            category = s.digits[d]
            actions.append(DigitAccepted(digit=d, meaning=category, at=now))
            actions.append(self._finish(category, "digit", now))
        elif event is IvrInput.OPERATOR_DIGIT:
            actions.append(DigitAccepted(digit=d, meaning="operator", at=now))
            actions.append(self._finish(UNKNOWN_CATEGORY, "operator_key", now))
        elif event is IvrInput.ENGLISH_DIGIT:
            self.language = ENGLISH
            actions.append(DigitAccepted(digit=d, meaning="english", at=now))
            actions.append(self._play((PROMPT_MENU,), now))
        else:
            self.tries_used += 1
            actions.append(DigitRejected(digit=d, tries_used=self.tries_used, at=now))
            if event is IvrInput.LAST_INVALID_DIGIT:
                actions.append(self._finish(UNKNOWN_CATEGORY, "invalid", now))
            else:
                actions.append(self._play((PROMPT_INVALID, PROMPT_MENU), now))
        return actions

    def speech(self, now: float) -> list[IvrAction]:
        """The caller started speaking (``VoiceActivityDetector.feed`` said so).
        Ignored before start and after the end; never barges in on a prompt."""
        if self.state in (IvrState.IDLE, IvrState.DONE):
            return []
        self.spoke = True
        if self.state in (IvrState.SILENT_PLAYING, IvrState.SILENT_WAITING):
            return self._silent_answered(IvrInput.SILENT_SPEECH, None, now)
        self._move(IvrInput.SPEECH)
        self._restart_silence(now)
        return []

    def prompt_finished(self, now: float, playback: int | None = None) -> list[IvrAction]:
        """The current prompt list played to its end. A stale ``playback`` is ignored."""
        if playback is not None and playback != self.playback:
            return []
        self._move(IvrInput.PROMPT_FINISHED)
        self._deadline = now + self.settings.input_timeout_s
        return []

    def timer_fired(self, now: float) -> list[IvrAction]:
        """The clock input: acts only once ``deadline`` has passed, so an early or
        repeated wake-up is harmless (the timer is a hint, as in aioquic)."""
        if self._silent_due is not None and now >= self._silent_due:
            was_playing = self.state is IvrState.PLAYING
            self._move(IvrInput.SILENCE_TIMED_OUT)
            return self._silent_prompt(now, stop=was_playing)
        if self._deadline is None or now < self._deadline:
            return []
        self._deadline = None
        if self.state in (IvrState.PLAYING, IvrState.SILENT_PLAYING):
            self._move(IvrInput.PLAYBACK_OVERDUE)
            self._deadline = now + self.settings.input_timeout_s
            return []
        if self.state is IvrState.SILENT_WAITING:
            self._move(IvrInput.SILENT_NO_RESPONSE)
            return [self._finish(UNKNOWN_CATEGORY, "silent", now, flags=(FLAG_SILENT,))]
        last = self.tries_used + 1 >= self.settings.menu_tries
        never_spoke = self.settings.silent_after_s is not None and not self.spoke
        if last and never_spoke:
            event = IvrInput.LAST_INPUT_TIMED_OUT_SILENT
        elif last:
            event = IvrInput.LAST_INPUT_TIMED_OUT
        else:
            event = IvrInput.INPUT_TIMED_OUT
        self._move(event)
        self.tries_used += 1
        actions: list[IvrAction] = [InputTimedOut(tries_used=self.tries_used, at=now)]
        if event is IvrInput.LAST_INPUT_TIMED_OUT_SILENT:
            actions += self._silent_prompt(now, stop=False)
        elif last:
            actions.append(self._finish(UNKNOWN_CATEGORY, "no_input", now))
        else:
            actions.append(self._play((PROMPT_MENU,), now))
        return actions

    # --- internals ------------------------------------------------------------------

    def _move(self, event: IvrInput) -> None:
        nxt = _TRANSITIONS.get((self.state, event))
        if nxt is None:
            raise IvrTransitionError(self.state, event)
        self.state = nxt

    def _play(self, names: tuple[str, ...], now: float) -> PlayPrompts:
        self.playback += 1
        self._deadline = now + self.settings.playback_guard_s
        return PlayPrompts(
            names=names, language=self.language, barge_in=True, playback=self.playback
        )

    def _restart_silence(self, now: float) -> None:
        after = self.settings.silent_after_s
        self._silent_due = None if after is None else now + after

    def _silent_prompt(self, now: float, *, stop: bool) -> list[IvrAction]:
        """Stop the menu if it plays (``stop``) and ask "if you cannot speak, press 5"."""
        self._silent_due = None
        actions: list[IvrAction] = []
        if stop:
            actions.append(StopPlayback(playback=self.playback))
        actions.append(self._play((PROMPT_SILENT_PRESS,), now))
        return actions

    def _silent_answered(self, event: IvrInput, d: str | None, now: float) -> list[IvrAction]:
        was_playing = self.state is IvrState.SILENT_PLAYING
        self._move(event)
        actions: list[IvrAction] = []
        if was_playing:
            actions.append(StopPlayback(playback=self.playback))
        if d is None:
            actions.append(self._finish(UNKNOWN_CATEGORY, "speech", now))
            return actions
        self.digits += d
        actions.append(DigitAccepted(digit=d, meaning=FLAG_SILENT_CONFIRMED, at=now))
        actions.append(
            self._finish(UNKNOWN_CATEGORY, "silent_confirmed", now, flags=(FLAG_SILENT_CONFIRMED,))
        )
        return actions

    def _finish(
        self, category: str, reason: FinishReason, now: float, *, flags: tuple[str, ...] = ()
    ) -> IvrFinished:
        self._deadline = None
        self._silent_due = None
        return IvrFinished(
            category=category,
            language=self.language,
            reason=reason,
            digits=self.digits,
            at=now,
            flags=flags,
        )
