"""Player: frames in order, gaps, PromptFinished, barge-in, loops."""

from __future__ import annotations

import pytest

from callcenter112.media.g711 import Codec, silence
from callcenter112.media.player import Player, PromptFinished
from callcenter112.media.prompts import Prompt

A = Codec.PCMA
QUIET = silence(A, 160)


def prompt(name: str, count: int, codec: Codec = A, *, fill: int | None = None) -> Prompt:
    """A prompt whose frames are distinct and recognisable: frame k of `name` is tagged."""
    frames = tuple(
        bytes([fill if fill is not None else (hash(name) + k) % 200 + 1]) * 159 + bytes([k % 256])
        for k in range(count)
    )
    return Prompt(name=name, language="id", codec=codec, frames=frames)


def drain(player: Player, limit: int = 10_000) -> list[bytes | None]:
    out: list[bytes | None] = []
    for _ in range(limit):
        frame = player.next_frame()
        out.append(frame)
        if frame is None:
            return out
    raise AssertionError("player never finished")


def test_plays_frames_in_order_with_gaps_then_none() -> None:
    events: list[PromptFinished] = []
    player = Player(A, on_finished=events.append, gap_frames=2)
    greeting, menu = prompt("greeting", 3), prompt("menu", 4)
    seq = player.play(greeting, menu)
    out = drain(player)
    assert out == [*greeting.frames, QUIET, QUIET, *menu.frames, None]
    # The very same objects: playing allocates no audio.
    assert all(a is b for a, b in zip(out[:3], greeting.frames, strict=True))
    assert events == [PromptFinished(sequence=seq, names=("greeting", "menu"))]
    assert player.finished
    assert not player.playing
    assert player.next_frame() is None
    assert len(events) == 1  # reported once


def test_finished_is_reported_with_the_last_frame() -> None:
    events: list[PromptFinished] = []
    player = Player(A, on_finished=events.append)
    p = prompt("invalid", 2)
    player.play(p)
    assert player.next_frame() is p.frames[0]
    assert events == []
    assert player.remaining_frames == 1
    assert player.next_frame() is p.frames[1]
    assert len(events) == 1


def test_barge_in_stops_at_once_without_finished_event() -> None:
    events: list[PromptFinished] = []
    player = Player(A, on_finished=events.append)
    menu = prompt("menu", 50)
    player.play(menu)
    for _ in range(10):
        player.next_frame()
    player.barge_in()
    assert player.next_frame() is None
    assert player.finished
    assert events == []


def test_replacing_a_sequence_does_not_report_the_old_one() -> None:
    events: list[PromptFinished] = []
    player = Player(A, on_finished=events.append)
    player.play(prompt("menu", 5))
    player.next_frame()
    second = player.play(prompt("invalid", 2))
    drain(player)
    assert [e.sequence for e in events] == [second]
    assert events[0].names == ("invalid",)


def test_enqueue_extends_the_playing_sequence() -> None:
    events: list[PromptFinished] = []
    player = Player(A, on_finished=events.append, gap_frames=1)
    a, b = prompt("please_hold", 2), prompt("position", 2)
    seq = player.play(a)
    player.next_frame()
    assert player.enqueue(b) == seq
    out = drain(player)
    assert out == [a.frames[1], QUIET, *b.frames, None]
    assert events == [PromptFinished(sequence=seq, names=("please_hold", "position"))]
    # Enqueueing on an idle player starts a new sequence.
    assert player.enqueue(a) == seq + 1


def test_custom_gap_per_call() -> None:
    player = Player(A, gap_frames=5)
    a, b = prompt("position", 1), prompt("number:3", 1)
    player.play(a, b, gap_frames=0)
    assert drain(player) == [a.frames[0], b.frames[0], None]


def test_loop_plays_forever_and_resumes_after_an_announcement() -> None:
    events: list[PromptFinished] = []
    player = Player(A, on_finished=events.append, gap_frames=0)
    music = prompt("hold_music", 3)
    player.loop(music)
    got = [player.next_frame() for _ in range(7)]
    assert got == [*music.frames, *music.frames, music.frames[0]]
    assert player.finished  # no sequence
    assert player.playing
    announcement = prompt("position", 2)
    player.play(announcement)
    got = [player.next_frame() for _ in range(4)]
    # The announcement, then the music carries on from where it stopped.
    assert got == [*announcement.frames, music.frames[1], music.frames[2]]
    assert [e.names for e in events] == [("position",)]
    player.barge_in()
    assert player.next_frame() is music.frames[0]  # barge-in keeps the loop
    player.stop()
    assert player.next_frame() is None
    assert not player.playing


def test_setting_the_same_loop_again_keeps_its_position() -> None:
    player = Player(A)
    music = prompt("hold_music", 4)
    player.loop(music)
    player.next_frame()
    player.loop(music)
    assert player.next_frame() is music.frames[1]
    player.loop(None)
    assert player.next_frame() is None


def test_owner_may_start_the_next_sequence_from_the_callback() -> None:
    second = prompt("menu", 2)
    player: Player

    def again(event: PromptFinished) -> None:
        if event.names == ("greeting",):
            player.play(second)

    player = Player(A, on_finished=again)
    first = prompt("greeting", 1)
    player.play(first)
    assert drain(player) == [first.frames[0], *second.frames, None]


def test_wrong_law_is_refused() -> None:
    player = Player(Codec.PCMU)
    with pytest.raises(ValueError, match="PCMA"):
        player.play(prompt("greeting", 1, Codec.PCMA))
    with pytest.raises(ValueError):
        player.loop(prompt("hold_music", 1, Codec.PCMA))


def test_empty_player_returns_none() -> None:
    player = Player(A)
    assert player.next_frame() is None
    assert player.sequence == 0
    player.play()
    assert player.next_frame() is None
