"""Relay (two-party payload path) and Mixer (hearing matrix) on real G.711 audio."""

from __future__ import annotations

import math
import struct

import pytest

from callcenter112.media import g711
from callcenter112.media.bridge import Mixer, Mode, Relay, Role, Transcoder, hearing
from callcenter112.media.g711 import Codec

A, U = Codec.PCMA, Codec.PCMU
CALLER, OPERATOR, AGENCY, SUPERVISOR = (r.value for r in Role)
# One distinct tone per party, none a harmonic of another.
TONES = {CALLER: 440.0, OPERATOR: 1000.0, AGENCY: 1650.0, SUPERVISOR: 2450.0}


def tone_frame(freq: float, codec: Codec, k: int, amplitude: float = 6000.0) -> bytes:
    """Frame `k` of a continuous sine at `freq`, G.711-encoded."""
    pcm = struct.pack(
        "<160h",
        *(
            round(amplitude * math.sin(2 * math.pi * freq * (k * 160 + i) / 8000))
            for i in range(160)
        ),
    )
    return g711.encode(codec, pcm)


def power(pcm: bytes, freq: float) -> float:
    """Goertzel power at `freq`, normalised by the frame's energy (0..~1)."""
    samples = struct.unpack(f"<{len(pcm) // 2}h", pcm)
    coeff = 2 * math.cos(2 * math.pi * freq / 8000)
    s1 = s2 = 0.0
    for x in samples:
        s1, s2 = x + coeff * s1 - s2, s1
    p = s1 * s1 + s2 * s2 - coeff * s1 * s2
    energy = sum(x * x for x in samples) or 1
    return p / (energy * len(samples) / 2)


def heard(frame: bytes, codec: Codec) -> set[str]:
    pcm = g711.decode(codec, frame)
    return {name for name, f in TONES.items() if power(pcm, f) > 0.05}


# ---------------------------------------------------------------- relay


def test_transcoder_passthrough_is_the_same_object() -> None:
    t = Transcoder(A, A)
    payload = bytes(range(160))
    assert t.passthrough
    assert t.convert(payload) is payload


def test_transcoder_matches_g711_tables() -> None:
    payload = bytes(range(256))
    assert Transcoder(A, U).convert(payload) == g711.alaw_to_ulaw(payload)
    assert Transcoder(U, A).convert(payload) == g711.ulaw_to_alaw(payload)


def test_relay_transcodes_only_when_laws_differ() -> None:
    frame = tone_frame(440, A, 0)
    same = Relay(caller=A, far=A)
    assert not same.transcoding
    assert same.to_far(frame) is frame
    assert same.to_caller(frame) is frame

    mixed = Relay(caller=A, far=U)
    assert mixed.transcoding
    to_far = mixed.to_far(frame)
    assert to_far == g711.alaw_to_ulaw(frame)
    back = mixed.to_caller(tone_frame(1000, U, 0))
    assert back == g711.ulaw_to_alaw(tone_frame(1000, U, 0))
    assert (mixed.to_far_count, mixed.to_caller_count) == (1, 1)
    # Any packet length (10/30 ms packetisation) passes.
    assert len(mixed.to_far(frame[:80])) == 80


def test_relay_follows_a_transfer_to_a_leg_in_another_law() -> None:
    relay = Relay(caller=U, far=U)
    frame = tone_frame(440, U, 0)
    relay.set_far(A)
    assert relay.far_codec is A
    assert relay.to_far(frame) == g711.ulaw_to_alaw(frame)


# ---------------------------------------------------------------- hearing matrix

ALL = {CALLER, OPERATOR, AGENCY, SUPERVISOR}


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        (
            Mode.CONFERENCE,
            {n: ALL - {n} for n in ALL},
        ),
        (
            Mode.BARGE,
            {n: ALL - {n} for n in ALL},
        ),
        (
            Mode.LISTEN,
            {
                CALLER: {OPERATOR, AGENCY},
                OPERATOR: {CALLER, AGENCY},
                AGENCY: {CALLER, OPERATOR},
                SUPERVISOR: {CALLER, OPERATOR, AGENCY},
            },
        ),
        (
            Mode.WHISPER,
            {
                CALLER: {OPERATOR, AGENCY},
                OPERATOR: {CALLER, AGENCY, SUPERVISOR},
                AGENCY: {CALLER, OPERATOR},
                SUPERVISOR: {CALLER, OPERATOR, AGENCY},
            },
        ),
    ],
)
def test_hearing_matrix(mode: Mode, expected: dict[str, set[str]]) -> None:
    assert hearing(mode, ALL) == {k: frozenset(v) for k, v in expected.items()}


# ---------------------------------------------------------------- mixer


def mixer_with(parties: dict[str, Codec], mode: Mode) -> Mixer:
    mixer = Mixer()
    for name, codec in parties.items():
        mixer.add(name, codec)
    mixer.set_mode(mode)
    return mixer


def run_tick(mixer: Mixer, parties: dict[str, Codec], k: int) -> dict[str, bytes]:
    for name, codec in parties.items():
        mixer.push(name, tone_frame(TONES[name], codec, k))
    return mixer.mix()


PARTIES = {CALLER: A, OPERATOR: U, SUPERVISOR: A}


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        (
            Mode.WHISPER,
            {
                CALLER: {OPERATOR},
                OPERATOR: {CALLER, SUPERVISOR},
                SUPERVISOR: {CALLER, OPERATOR},
            },
        ),
        (
            Mode.LISTEN,
            {CALLER: {OPERATOR}, OPERATOR: {CALLER}, SUPERVISOR: {CALLER, OPERATOR}},
        ),
        (
            Mode.BARGE,
            {
                CALLER: {OPERATOR, SUPERVISOR},
                OPERATOR: {CALLER, SUPERVISOR},
                SUPERVISOR: {CALLER, OPERATOR},
            },
        ),
    ],
)
def test_each_listener_hears_exactly_whom_the_mode_allows(
    mode: Mode, expected: dict[str, set[str]]
) -> None:
    mixer = mixer_with(PARTIES, mode)
    for k in range(5):
        out = run_tick(mixer, PARTIES, k)
        assert set(out) == set(PARTIES)
        for listener, frame in out.items():
            assert len(frame) == 160
            assert heard(frame, PARTIES[listener]) == expected[listener], (mode, listener, k)


def test_warm_transfer_conference_of_three() -> None:
    parties = {CALLER: A, OPERATOR: A, AGENCY: U}
    mixer = mixer_with(parties, Mode.CONFERENCE)
    out = run_tick(mixer, parties, 0)
    assert heard(out[CALLER], A) == {OPERATOR, AGENCY}
    assert heard(out[OPERATOR], A) == {CALLER, AGENCY}
    assert heard(out[AGENCY], U) == {CALLER, OPERATOR}
    # The operator drops: the caller now hears the agency alone, bit-exact after transcoding.
    mixer.remove(OPERATOR)
    agency_frame = tone_frame(TONES[AGENCY], U, 1)
    mixer.push(CALLER, tone_frame(TONES[CALLER], A, 1))
    mixer.push(AGENCY, agency_frame)
    out = mixer.mix()
    assert out[CALLER] == g711.ulaw_to_alaw(agency_frame)


def test_single_speaker_is_passed_bit_exact() -> None:
    mixer = mixer_with({CALLER: A, OPERATOR: A, SUPERVISOR: A}, Mode.LISTEN)
    frame = tone_frame(TONES[OPERATOR], A, 3)
    mixer.push(OPERATOR, frame)
    out = mixer.mix()
    assert out[CALLER] == frame
    assert out[SUPERVISOR] == frame
    assert out[OPERATOR] == g711.silence(A)  # hears the caller, who said nothing


def test_silent_and_absent_parties_give_silence() -> None:
    mixer = mixer_with({CALLER: A, OPERATOR: U}, Mode.CONFERENCE)
    mixer.push(CALLER, g711.silence(A))
    out = mixer.mix()
    assert out == {CALLER: g711.silence(A), OPERATOR: g711.silence(U)}


def test_short_packets_are_joined_into_frames_and_latency_is_bounded() -> None:
    mixer = mixer_with({CALLER: A, OPERATOR: A}, Mode.CONFERENCE)
    frame = tone_frame(TONES[CALLER], A, 0)
    mixer.push(CALLER, frame[:80])  # 10 ms packetisation
    mixer.push(CALLER, frame[80:])
    assert mixer.mix()[OPERATOR] == frame
    # A burst of 5 frames keeps only the newest 3 (60 ms).
    frames = [tone_frame(TONES[CALLER], A, k) for k in range(5)]
    for f in frames:
        mixer.push(CALLER, f)
    assert [mixer.mix()[OPERATOR] for _ in range(4)] == [*frames[2:], g711.silence(A)]
    # An under-run on a half frame is padded with silence.
    mixer.push(CALLER, frame[:80])
    assert mixer.mix()[OPERATOR] == frame[:80] + g711.silence(A)[80:]


def test_sum_saturates_instead_of_wrapping() -> None:
    mixer = mixer_with({CALLER: A, OPERATOR: A, AGENCY: A}, Mode.CONFERENCE)
    loud = g711.encode(A, struct.pack("<160h", *([30000] * 160)))
    mixer.push(OPERATOR, loud)
    mixer.push(AGENCY, loud)
    out = mixer.mix()[CALLER]
    samples = struct.unpack("<160h", g711.decode(A, out))
    assert min(samples) > 30000  # clipped at the top, not wrapped to negative


def test_recording_tap_hears_everyone_and_says_nothing() -> None:
    parties = {CALLER: A, OPERATOR: U, SUPERVISOR: A}
    mixer = mixer_with(parties, Mode.WHISPER)
    mixer.add("recording", A, speaks=False)
    mixer.set_hearing("recording", [OPERATOR, SUPERVISOR])
    assert mixer.hears("recording") == {OPERATOR, SUPERVISOR}
    out = run_tick(mixer, parties, 0)
    assert heard(out["recording"], A) == {OPERATOR, SUPERVISOR}
    assert heard(out[CALLER], A) == {OPERATOR}
    mixer.push("recording", b"\x00" * 160)  # ignored: a tap does not speak
    assert "recording" in mixer
    assert mixer.parties == [CALLER, OPERATOR, SUPERVISOR, "recording"]


def test_listener_only_party_defaults_to_hearing_all_speakers() -> None:
    mixer = Mixer()
    mixer.add(CALLER, A)
    mixer.add(OPERATOR, A)
    mixer.add("tap", U, speaks=False)
    assert mixer.hears("tap") == {CALLER, OPERATOR}
    mixer.add("deaf", A, listens=False)
    out = run_tick(mixer, {CALLER: A, OPERATOR: A}, 0)
    assert "deaf" not in out
