"""The 112 menu: every path a caller can take, the barge-in, the timers and the errors."""

from __future__ import annotations

import ast
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callcenter112 import ivr
from callcenter112.config import IvrConfig, load_config
from callcenter112.ivr import (
    DigitAccepted,
    DigitRejected,
    InputTimedOut,
    IvrAction,
    IvrError,
    IvrFinished,
    IvrInput,
    IvrMenu,
    IvrSettings,
    IvrState,
    IvrTransitionError,
    PlayPrompts,
    StopPlayback,
)

ROOT = Path(__file__).resolve().parents[1]
DIGITS = {"1": "medical", "2": "fire", "3": "disaster", "4": "police"}
SETTINGS = IvrSettings(digits=DIGITS, input_timeout_s=5.0, menu_tries=2, playback_guard_s=60.0)


def started(s: IvrSettings = SETTINGS, now: float = 100.0) -> IvrMenu:
    menu = IvrMenu(s)
    menu.start(now)
    return menu


def waiting(now: float = 100.0) -> IvrMenu:
    """Greeting and menu have played out at now + 10."""
    menu = started(now=now)
    menu.prompt_finished(now + 10.0, playback=1)
    return menu


def state_of(menu: IvrMenu) -> IvrState:
    """Read through a call so mypy does not narrow the state across inputs."""
    return menu.state


def finished_of(actions: list[IvrAction]) -> IvrFinished:
    assert isinstance(actions[-1], IvrFinished)
    assert not any(isinstance(a, IvrFinished) for a in actions[:-1])
    return actions[-1]


# --- the happy paths ------------------------------------------------------------------------


def test_start_plays_greeting_and_menu_with_barge_in() -> None:
    menu = IvrMenu(SETTINGS)
    assert state_of(menu) is IvrState.IDLE and menu.deadline is None
    actions = menu.start(100.0)
    assert actions == [
        PlayPrompts(names=("greeting", "menu"), language="id", barge_in=True, playback=1)
    ]
    assert menu.state is IvrState.PLAYING
    assert menu.deadline == 160.0  # the playback guard, not the input timer


def test_menu_end_arms_the_input_timer() -> None:
    menu = started()
    assert menu.prompt_finished(110.0, playback=1) == []
    assert menu.state is IvrState.WAITING
    assert menu.deadline == 115.0


@pytest.mark.parametrize(("key", "category"), sorted(DIGITS.items()))
def test_each_category_digit(key: str, category: str) -> None:
    menu = waiting()
    actions = menu.digit(key, 112.0)
    assert actions == [
        DigitAccepted(digit=key, meaning=category, at=112.0),
        IvrFinished(category=category, language="id", reason="digit", digits=key, at=112.0),
    ]
    assert menu.finished and menu.deadline is None


def test_barge_in_during_greeting_stops_playback_first() -> None:
    menu = started()
    actions = menu.digit("2", 101.0)
    assert actions[0] == StopPlayback(playback=1)
    assert finished_of(actions).category == "fire"
    assert menu.deadline is None


def test_english_key_replays_menu_in_english_without_using_a_try() -> None:
    menu = started()
    actions = menu.digit("9", 103.0)  # barges into the Indonesian greeting
    assert actions == [
        StopPlayback(playback=1),
        DigitAccepted(digit="9", meaning="english", at=103.0),
        PlayPrompts(names=("menu",), language="en", barge_in=True, playback=2),
    ]
    assert menu.tries_used == 0 and menu.language == "en"
    menu.prompt_finished(110.0, playback=2)
    # Still two full tries: the first timeout replays the menu in English.
    first = menu.timer_fired(115.0)
    assert first == [
        InputTimedOut(tries_used=1, at=115.0),
        PlayPrompts(names=("menu",), language="en", barge_in=True, playback=3),
    ]
    menu.prompt_finished(120.0, playback=3)
    done = finished_of(menu.timer_fired(125.0))
    assert (done.category, done.language, done.reason, done.digits) == (
        "unknown",
        "en",
        "no_input",
        "9",
    )


def test_english_key_in_english_is_an_invalid_key() -> None:
    menu = waiting()
    menu.digit("9", 111.0)
    actions = menu.digit("9", 112.0)
    assert DigitRejected(digit="9", tries_used=1, at=112.0) in actions
    assert actions[-1] == PlayPrompts(
        names=("invalid", "menu"), language="en", barge_in=True, playback=3
    )


def test_english_start_language_has_no_english_key() -> None:
    menu = IvrMenu(IvrSettings(digits=DIGITS, language="en"))
    menu.start(0.0)
    assert isinstance(menu.digit("9", 1.0)[1], DigitRejected)


def test_operator_key_goes_to_the_general_queue() -> None:
    menu = waiting()
    actions = menu.digit("0", 111.0)
    assert actions == [
        DigitAccepted(digit="0", meaning="operator", at=111.0),
        IvrFinished(category="unknown", language="id", reason="operator_key", digits="0", at=111.0),
    ]


def test_invalid_twice_goes_to_unknown() -> None:
    menu = waiting()
    first = menu.digit("7", 111.0)
    assert first == [
        DigitRejected(digit="7", tries_used=1, at=111.0),
        PlayPrompts(names=("invalid", "menu"), language="id", barge_in=True, playback=2),
    ]
    assert menu.deadline == 171.0  # guard while the prompts play; no input timer
    second = menu.digit("#", 112.0)  # barges into the "invalid" prompt
    assert second[0] == StopPlayback(playback=2)
    assert second[1] == DigitRejected(digit="#", tries_used=2, at=112.0)
    done = finished_of(second)
    assert (done.category, done.reason, done.digits) == ("unknown", "invalid", "7#")


def test_invalid_then_valid_choice() -> None:
    menu = waiting()
    menu.digit("8", 111.0)
    done = finished_of(menu.digit("4", 113.0))
    assert (done.category, done.reason, done.digits) == ("police", "digit", "84")


def test_silence_twice_goes_to_unknown() -> None:
    menu = waiting()
    assert menu.timer_fired(114.9) == []  # early wake-up: nothing
    first = menu.timer_fired(115.0)
    assert first == [
        InputTimedOut(tries_used=1, at=115.0),
        PlayPrompts(names=("menu",), language="id", barge_in=True, playback=2),
    ]
    assert menu.state is IvrState.PLAYING
    menu.prompt_finished(125.0, playback=2)
    assert menu.deadline == 130.0
    second = menu.timer_fired(131.0)
    assert second[0] == InputTimedOut(tries_used=2, at=131.0)
    done = finished_of(second)
    assert (done.category, done.reason, done.digits) == ("unknown", "no_input", "")
    assert menu.deadline is None
    assert menu.timer_fired(200.0) == []  # a stale timer after the end is harmless


def test_reason_follows_the_last_try() -> None:
    menu = waiting()
    menu.timer_fired(115.0)
    done = finished_of(menu.digit("5", 116.0))
    assert done.reason == "invalid"
    menu = waiting()
    menu.digit("5", 111.0)
    menu.prompt_finished(115.0, playback=2)
    assert finished_of(menu.timer_fired(120.0)).reason == "no_input"


def test_one_try_only() -> None:
    menu = IvrMenu(IvrSettings(digits=DIGITS, menu_tries=1))
    menu.start(0.0)
    menu.prompt_finished(8.0)
    assert finished_of(menu.timer_fired(13.0)).reason == "no_input"


def test_never_a_disconnect() -> None:
    names = {n for n in ivr.__all__ if "hang" in n.lower() or "disconnect" in n.lower()}
    assert names == set()


# --- robustness -----------------------------------------------------------------------------


def test_playback_guard_starts_input_timer_when_player_never_reports() -> None:
    menu = started(now=0.0)
    assert menu.timer_fired(59.0) == []
    assert menu.timer_fired(60.0) == []
    assert menu.state is IvrState.WAITING and menu.deadline == 65.0
    assert isinstance(menu.timer_fired(65.0)[0], InputTimedOut)


def test_stale_prompt_finished_is_ignored() -> None:
    menu = started()
    menu.digit("6", 101.0)  # invalid: playback 2 replaces playback 1
    assert menu.prompt_finished(102.0, playback=1) == []
    assert state_of(menu) is IvrState.PLAYING
    menu.prompt_finished(106.0, playback=2)
    assert menu.state is IvrState.WAITING


@pytest.mark.parametrize(
    ("setup", "poke", "state", "event"),
    [
        ("idle", lambda m: m.digit("1", 1.0), IvrState.IDLE, IvrInput.CHOICE_DIGIT),
        ("idle", lambda m: m.prompt_finished(1.0), IvrState.IDLE, IvrInput.PROMPT_FINISHED),
        ("playing", lambda m: m.start(1.0), IvrState.PLAYING, IvrInput.STARTED),
        ("waiting", lambda m: m.prompt_finished(1.0), IvrState.WAITING, IvrInput.PROMPT_FINISHED),
        ("done", lambda m: m.digit("1", 1.0), IvrState.DONE, IvrInput.CHOICE_DIGIT),
        ("done", lambda m: m.digit("7", 1.0), IvrState.DONE, IvrInput.INVALID_DIGIT),
        ("done", lambda m: m.prompt_finished(1.0), IvrState.DONE, IvrInput.PROMPT_FINISHED),
    ],
)
def test_inputs_outside_the_table_raise(
    setup: str, poke: Callable[[IvrMenu], object], state: IvrState, event: IvrInput
) -> None:
    menu = IvrMenu(SETTINGS)
    if setup != "idle":
        menu.start(0.0)
    if setup == "waiting":
        menu.prompt_finished(0.5)
    if setup == "done":
        menu.digit("0", 0.5)
    before = (menu.state, menu.digits, menu.tries_used, menu.deadline)
    with pytest.raises(IvrTransitionError) as err:
        poke(menu)
    assert (err.value.state, err.value.event) == (state, event)
    assert (menu.state, menu.digits, menu.tries_used, menu.deadline) == before


@pytest.mark.parametrize("bad", ["", "12", "x", "E", " "])
def test_non_dtmf_input_is_rejected(bad: str) -> None:
    menu = started()
    with pytest.raises(IvrError):
        menu.digit(bad, 1.0)
    assert menu.digits == "" and menu.state is IvrState.PLAYING


@pytest.mark.parametrize(
    "kwargs",
    [
        {"digits": {"1": "medical"}, "english_key": "1"},
        {"digits": {"x": "medical"}},
        {"digits": {"1": "unknown"}},
        {"digits": DIGITS, "menu_tries": 0},
        {"digits": DIGITS, "input_timeout_s": 0},
    ],
)
def test_settings_are_validated(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        IvrSettings(**kwargs)


def test_settings_copy_the_digit_map() -> None:
    digits = dict(DIGITS)
    s = IvrSettings(digits=digits)
    digits["5"] = "fire"
    assert "5" not in s.digits


def test_settings_from_config_and_shipped_file() -> None:
    s = IvrSettings.from_config(IvrConfig())
    assert dict(s.digits) == DIGITS and (s.english_key, s.operator_key) == ("9", "0")
    cfg = load_config(ROOT / "config" / "callcenter112.toml")
    shipped = IvrSettings.from_config(cfg.ivr)
    assert (shipped.language, shipped.menu_tries, shipped.input_timeout_s) == ("id", 2, 5.0)


def test_module_is_pure() -> None:
    tree = ast.parse(Path(ivr.__file__).read_text())
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            imported.add(node.module.split(".")[0])
    assert not imported & {"asyncio", "socket", "time", "aiosqlite", "starlette", "uvicorn"}


# --- property: whatever the caller does, the menu ends exactly once -------------------------

Step = tuple[str, str]
steps = st.lists(
    st.one_of(
        st.tuples(st.just("digit"), st.sampled_from(sorted(ivr.DTMF_KEYS))),
        st.tuples(st.just("finished"), st.just("")),
        st.tuples(st.just("timer"), st.just("")),
    ),
    max_size=30,
)


@settings(max_examples=300, deadline=None)
@given(steps=steps, tries=st.integers(1, 4))
def test_any_input_sequence_ends_the_menu_once(steps: list[Step], tries: int) -> None:
    menu = IvrMenu(IvrSettings(digits=DIGITS, menu_tries=tries))
    now = 0.0
    out = menu.start(now)
    for kind, key in steps:
        if menu.finished:
            break
        now += 1.0
        if kind == "digit":
            out += menu.digit(key, now)
        elif kind == "finished" and menu.state is IvrState.PLAYING:
            out += menu.prompt_finished(now, playback=menu.playback)
        elif kind == "timer" and menu.deadline is not None:
            now = max(now, menu.deadline)
            out += menu.timer_fired(now)
        assert menu.tries_used <= tries
    # A silent caller from here on: only timers and prompt ends. Bounded.
    for _ in range(4 * tries + 4):
        if menu.finished:
            break
        assert menu.deadline is not None, "a running menu always has a timer"
        if menu.state is IvrState.PLAYING:
            out += menu.prompt_finished(now + 1.0, playback=menu.playback)
        now = max(now + 1.0, menu.deadline or now)
        out += menu.timer_fired(now)
    assert menu.finished and menu.deadline is None
    ends = [a for a in out if isinstance(a, IvrFinished)]
    assert len(ends) == 1 and out[-1] is ends[0]
    assert ends[0].digits == "".join(
        a.digit for a in out if isinstance(a, DigitAccepted | DigitRejected)
    )
    played = [a for a in out if isinstance(a, PlayPrompts)]
    assert [p.playback for p in played] == list(range(1, len(played) + 1))
    assert all(p.barge_in for p in played)


# --- silent callers (issue 12: never ending the call) ---------------------------------------

SILENT = IvrSettings(digits=DIGITS, input_timeout_s=5.0, menu_tries=2, silent_after_s=12.0)


def test_no_key_no_speech_plays_press_5_over_the_menu() -> None:
    menu = started(SILENT, now=0.0)
    assert menu.deadline == 12.0  # the silence timer, before the 60 s playback guard
    assert menu.timer_fired(11.9) == []
    out = menu.timer_fired(12.0)
    assert out == [
        StopPlayback(playback=1),
        PlayPrompts(names=("silent_press",), language="id", barge_in=True, playback=2),
    ]
    assert menu.state is IvrState.SILENT_PLAYING


@pytest.mark.parametrize("key", ["5", "1", "#", "0"])
def test_any_key_after_the_prompt_confirms_a_silent_caller(key: str) -> None:
    menu = started(SILENT, now=0.0)
    menu.timer_fired(12.0)
    menu.prompt_finished(15.0, playback=2)
    out = menu.digit(key, 16.0)
    done = finished_of(out)
    assert (done.reason, done.flags, done.category) == (
        "silent_confirmed",
        ("silent_confirmed",),
        "unknown",
    )
    assert DigitAccepted(digit=key, meaning="silent_confirmed", at=16.0) in out
    assert done.digits == key


def test_key_while_the_prompt_plays_stops_it_and_confirms() -> None:
    menu = started(SILENT, now=0.0)
    menu.timer_fired(12.0)
    out = menu.digit("5", 13.0)
    assert out[0] == StopPlayback(playback=2)
    assert finished_of(out).reason == "silent_confirmed"


def test_no_response_is_queued_silent_and_flagged_never_dropped() -> None:
    menu = started(SILENT, now=0.0)
    menu.timer_fired(12.0)
    menu.prompt_finished(15.0, playback=2)
    assert menu.deadline == 20.0
    done = finished_of(menu.timer_fired(20.0))
    assert (done.reason, done.flags, done.category) == ("silent", ("silent",), "unknown")
    assert menu.finished and menu.deadline is None


def test_speech_restarts_the_silence_timer_and_keeps_the_menu() -> None:
    menu = started(SILENT, now=0.0)
    assert menu.speech(8.0) == []
    assert menu.deadline == 20.0 and menu.state is IvrState.PLAYING and menu.spoke
    menu.prompt_finished(10.0, playback=1)
    assert menu.deadline == 15.0  # the input timer comes first now


def test_a_caller_who_spoke_but_pressed_nothing_finishes_no_input() -> None:
    s = IvrSettings(digits=DIGITS, input_timeout_s=5.0, menu_tries=2, silent_after_s=100.0)
    menu = started(s, now=0.0)
    menu.speech(3.0)
    menu.prompt_finished(10.0, playback=1)
    menu.timer_fired(15.0)
    menu.prompt_finished(20.0, playback=2)
    done = finished_of(menu.timer_fired(25.0))
    assert (done.reason, done.flags) == ("no_input", ())


def test_menu_running_out_before_the_silence_timer_still_asks() -> None:
    s = IvrSettings(digits=DIGITS, input_timeout_s=5.0, menu_tries=2, silent_after_s=100.0)
    menu = started(s, now=0.0)
    menu.prompt_finished(10.0, playback=1)
    menu.timer_fired(15.0)
    menu.prompt_finished(20.0, playback=2)
    out = menu.timer_fired(25.0)
    assert isinstance(out[0], InputTimedOut) and not any(isinstance(a, IvrFinished) for a in out)
    assert out[-1] == PlayPrompts(names=("silent_press",), language="id", barge_in=True, playback=3)
    menu.prompt_finished(28.0, playback=3)
    assert finished_of(menu.timer_fired(33.0)).reason == "silent"


def test_speech_after_the_prompt_goes_to_an_operator_unflagged() -> None:
    menu = started(SILENT, now=0.0)
    menu.timer_fired(12.0)
    out = menu.speech(13.0)
    assert out[0] == StopPlayback(playback=2)
    assert (finished_of(out).reason, finished_of(out).flags) == ("speech", ())


def test_the_prompt_is_in_the_callers_language() -> None:
    menu = started(SILENT, now=0.0)
    menu.digit("9", 1.0)  # English
    out = menu.timer_fired(13.0)
    assert out[-1] == PlayPrompts(names=("silent_press",), language="en", barge_in=True, playback=3)


def test_speech_outside_the_menu_is_ignored() -> None:
    menu = IvrMenu(SILENT)
    assert menu.speech(0.0) == []
    menu.start(0.0)
    menu.digit("1", 1.0)
    assert menu.speech(2.0) == [] and menu.finished


def test_silent_key_must_not_clash() -> None:
    with pytest.raises(ValueError, match="overlap"):
        IvrSettings(digits={**DIGITS, "5": "other"}, silent_after_s=10.0)
    with pytest.raises(ValueError, match="positive"):
        IvrSettings(digits=DIGITS, silent_after_s=0.0)


def test_shipped_config_enables_the_silent_step() -> None:
    cfg = load_config(ROOT / "config" / "callcenter112.toml").ivr
    s = IvrSettings.from_config(cfg, speech_detection=True)
    assert (s.silent_after_s, s.silent_key) == (12.0, "5")
    # A coordinator that does not feed the VAD keeps the old no-input ending.
    assert IvrSettings.from_config(cfg).silent_after_s is None


silent_steps = st.lists(
    st.one_of(
        st.tuples(st.just("digit"), st.sampled_from(sorted(ivr.DTMF_KEYS))),
        st.tuples(st.just("finished"), st.just("")),
        st.tuples(st.just("timer"), st.just("")),
        st.tuples(st.just("speech"), st.just("")),
        st.tuples(st.just("wait"), st.just("")),
    ),
    max_size=30,
)


@settings(max_examples=300, deadline=None)
@given(steps=silent_steps, tries=st.integers(1, 3), after=st.sampled_from([3.0, 12.0, 40.0]))
def test_silent_step_any_order_ends_once_and_never_hangs_up(
    steps: list[Step], tries: int, after: float
) -> None:
    menu = IvrMenu(
        IvrSettings(digits=DIGITS, menu_tries=tries, input_timeout_s=5.0, silent_after_s=after)
    )
    now = 0.0
    out = menu.start(now)
    heard = False
    for kind, key in steps:
        if menu.finished:
            break
        now += 1.0
        if kind == "digit":
            out += menu.digit(key, now)
        elif kind == "finished" and menu.state in (IvrState.PLAYING, IvrState.SILENT_PLAYING):
            out += menu.prompt_finished(now, playback=menu.playback)
        elif kind == "speech":
            heard = True
            out += menu.speech(now)
        elif kind == "timer" and menu.deadline is not None:
            now = max(now, menu.deadline)
            out += menu.timer_fired(now)
        elif kind == "wait":
            now += 7.0
            out += menu.timer_fired(now)
    for _ in range(4 * tries + 8):
        if menu.finished:
            break
        assert menu.deadline is not None, "a running menu always has a timer"
        if menu.state in (IvrState.PLAYING, IvrState.SILENT_PLAYING):
            out += menu.prompt_finished(now + 1.0, playback=menu.playback)
        now = max(now + 1.0, menu.deadline or now)
        out += menu.timer_fired(now)
    assert menu.finished and menu.deadline is None
    ends = [a for a in out if isinstance(a, IvrFinished)]
    assert len(ends) == 1 and out[-1] is ends[0]
    end = ends[0]
    # The flags say exactly how the silent step ended, and only it raises them.
    assert end.flags == {"silent_confirmed": ("silent_confirmed",), "silent": ("silent",)}.get(
        end.reason, ()
    )
    if end.reason == "no_input":
        assert heard, "a caller who never spoke is asked to press 5 before no_input"
    if end.reason in ("silent", "silent_confirmed", "speech"):
        assert any(isinstance(a, PlayPrompts) and a.names == ("silent_press",) for a in out), (
            "the silent step always plays its prompt"
        )


def test_watch_listed_caller_hears_the_warning_first_and_can_barge_in() -> None:
    menu = IvrMenu(SILENT)
    out = menu.start(0.0, watch_listed=True)
    assert out == [
        PlayPrompts(
            names=("watch_list_warning", "greeting", "menu"),
            language="id",
            barge_in=True,
            playback=1,
        )
    ]
    done = finished_of(menu.digit("1", 2.0))
    assert (done.category, done.reason) == ("medical", "digit")


def test_every_ivr_prompt_is_shipped() -> None:
    from callcenter112.media.prompts import SENTENCE_PROMPTS, prompt_path

    for name in (ivr.PROMPT_SILENT_PRESS, ivr.PROMPT_WATCH_LIST_WARNING):
        assert name in SENTENCE_PROMPTS
        for lang in ("id", "en"):
            assert prompt_path(ROOT / "sounds", name, lang).is_file()
