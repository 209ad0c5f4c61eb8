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

The ``silent`` prompt ("if you cannot speak, stay on the line") is not played
here: the coordinator plays it as the first queue prompt when the IVR finished
with ``reason="no_input"``, so the caller hears it once, already queued, and
the IVR has no second ending path.

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
# Played by the coordinator (queue side) after IvrFinished(reason="no_input").
PROMPT_SILENT = "silent"

UNKNOWN_CATEGORY = "unknown"
ENGLISH = "en"

FinishReason = Literal["digit", "operator_key", "no_input", "invalid"]


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

    def __post_init__(self) -> None:
        keys = [*self.digits, self.english_key, self.operator_key]
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
    def from_config(cls, cfg: IvrConfig) -> IvrSettings:
        return cls(
            digits=dict(cfg.digits),
            english_key=cfg.english_key,
            operator_key=cfg.operator_key,
            input_timeout_s=cfg.input_timeout_s,
            menu_tries=cfg.menu_tries,
            language=cfg.language,
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
    _deadline: float | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.language = self.language or self.settings.language

    @property
    def deadline(self) -> float | None:
        """When ``timer_fired`` must be called next, or None (no timer running)."""
        return self._deadline

    @property
    def finished(self) -> bool:
        return self.state is IvrState.DONE

    # --- inputs ---------------------------------------------------------------------

    def start(self, now: float) -> list[IvrAction]:
        self._move(IvrInput.STARTED)
        return [self._play((PROMPT_GREETING, PROMPT_MENU), now)]

    def digit(self, d: str, now: float) -> list[IvrAction]:
        """One DTMF key (``0-9 * # A-D``); barges in on any playing prompt."""
        if len(d) != 1 or d not in DTMF_KEYS:
            raise IvrError(f"IVR: {d!r} is not a DTMF key")
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
        if self._deadline is None or now < self._deadline:
            return []
        self._deadline = None
        if self.state is IvrState.PLAYING:
            self._move(IvrInput.PLAYBACK_OVERDUE)
            self._deadline = now + self.settings.input_timeout_s
            return []
        last = self.tries_used + 1 >= self.settings.menu_tries
        self._move(IvrInput.LAST_INPUT_TIMED_OUT if last else IvrInput.INPUT_TIMED_OUT)
        self.tries_used += 1
        actions: list[IvrAction] = [InputTimedOut(tries_used=self.tries_used, at=now)]
        if last:
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

    def _finish(self, category: str, reason: FinishReason, now: float) -> IvrFinished:
        self._deadline = None
        return IvrFinished(
            category=category, language=self.language, reason=reason, digits=self.digits, at=now
        )
