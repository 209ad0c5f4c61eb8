"""Recordings in the browser: byte ranges, G.711 → PCM WAV, waveforms, integrity, replay audit.

Real G.711 WAV files written with `media.recorder.write_wav` and sealed into
the store's hash chain; the PCM WAV the server sends is checked against a
whole-file decode and read back with the standard library's `wave` module.
"""

from __future__ import annotations

import io
import os
import wave
import xml.etree.ElementTree as ET
from array import array
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callcenter112.media.g711 import Codec, decode
from callcenter112.media.recorder import write_wav
from callcenter112.web.audio import (
    PCM_HEADER_SIZE,
    ByteRange,
    RangeNotSatisfiable,
    parse_range,
    pcm_plan,
    read_output,
    read_waveform,
    waveform_svg,
)
from callcenter112.web.audit import REPLAY_AUDIT_WINDOW_S
from test_web_support import T0, Seeded, WebEnv, g711_stereo, seed_incident, web_env


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[WebEnv]:
    async with web_env(tmp_path) as e:
        yield e


# --------------------------------------------------------------------------- ranges


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("bytes=0-", ByteRange(0, 999)),
        ("bytes=10-19", ByteRange(10, 19)),
        ("bytes=990-5000", ByteRange(990, 999)),  # end past the body is clipped
        ("bytes=-10", ByteRange(990, 999)),
        ("bytes=-5000", ByteRange(0, 999)),
        ("bytes = 5-5", ByteRange(5, 5)),
        ("items=0-10", None),  # another unit: ignored
        ("bytes=0-1,5-6", None),  # several ranges: the whole body
    ],
)
def test_parse_range(header: str | None, expected: ByteRange | None) -> None:
    assert parse_range(header, 1000) == expected


@pytest.mark.parametrize(
    "header", ["bytes=1000-", "bytes=5-2", "bytes=-0", "bytes=a-b", "bytes=", "bytes=1-x", "bytes"]
)
def test_bad_or_unsatisfiable_ranges(header: str) -> None:
    if header == "bytes":
        assert parse_range(header, 1000) is None  # no '=': not a bytes range at all
        return
    with pytest.raises(RangeNotSatisfiable):
        parse_range(header, 1000)


def test_any_range_of_an_empty_body_is_unsatisfiable() -> None:
    with pytest.raises(RangeNotSatisfiable):
        parse_range("bytes=0-", 0)


# --------------------------------------------------------------------------- PCM conversion


def _expected_pcm(path: Path, codec: Codec) -> bytes:
    raw = path.read_bytes()[58:]  # write_wav's header is 58 bytes
    return decode(codec, raw)


@pytest.fixture(params=[Codec.PCMA, Codec.PCMU])
def g711_file(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Path, Codec]:
    codec: Codec = request.param
    path = tmp_path / "r.wav"
    write_wav(path, codec, 2, g711_stereo(0.5, codec))
    return path, codec


def test_whole_output_is_a_valid_pcm_wav(g711_file: tuple[Path, Codec]) -> None:
    path, codec = g711_file
    plan = pcm_plan(path)
    with path.open("rb") as f:
        out = read_output(plan, f, 0, plan.total - 1)
    assert len(out) == plan.total == PCM_HEADER_SIZE + 2 * 8000
    assert out[PCM_HEADER_SIZE:] == _expected_pcm(path, codec)
    with wave.open(io.BytesIO(out)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (2, 2, 8000)
        assert w.getnframes() == 4000
    assert plan.duration_s == pytest.approx(0.5)


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_every_range_is_the_same_bytes_as_the_whole(
    data: st.DataObject, tmp_path_factory: pytest.TempPathFactory
) -> None:
    path = tmp_path_factory.getbasetemp() / "hypo.wav"
    if not path.exists():
        write_wav(path, Codec.PCMA, 2, g711_stereo(0.1))
    plan = pcm_plan(path)
    with path.open("rb") as f:
        whole = read_output(plan, f, 0, plan.total - 1)
        start = data.draw(st.integers(0, plan.total - 1))
        end = data.draw(st.integers(start, plan.total - 1))
        assert read_output(plan, f, start, end) == whole[start : end + 1]


def test_16_bit_pcm_passes_through(tmp_path: Path) -> None:
    path = tmp_path / "pcm.wav"
    samples = array("h", [0, 1000, -1000, 32767, -32768, 5] * 100)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(samples.tobytes())
    plan = pcm_plan(path)
    assert plan.codec is None and plan.expand == 1
    with path.open("rb") as f:
        out = read_output(plan, f, 0, plan.total - 1)
    assert out[PCM_HEADER_SIZE:] == samples.tobytes()


def test_reading_outside_the_body_is_an_error(g711_file: tuple[Path, Codec]) -> None:
    path, _ = g711_file
    plan = pcm_plan(path)
    with path.open("rb") as f, pytest.raises(ValueError):
        read_output(plan, f, 0, plan.total)


# --------------------------------------------------------------------------- waveform


def test_waveform_min_max_per_column_per_channel(tmp_path: Path) -> None:
    path = tmp_path / "w.wav"
    data = g711_stereo(0.25)  # 2000 frames
    write_wav(path, Codec.PCMA, 2, data)
    wave_ = read_waveform(path, columns=10)
    pcm = array("h")
    pcm.frombytes(decode(Codec.PCMA, data))
    left, right = pcm[0::2], pcm[1::2]
    for c, channel in enumerate((left, right)):
        for k in range(10):
            part = channel[k * 200 : (k + 1) * 200]
            assert wave_.columns[c][k] == (min(part), max(part))
    assert max(hi for _, hi in wave_.columns[0]) > 11000  # the loud caller
    assert max(hi for _, hi in wave_.columns[1]) < 4200  # the quiet centre side
    assert wave_.duration_s == pytest.approx(0.25)


def test_waveform_of_a_short_file_has_a_column_per_frame(tmp_path: Path) -> None:
    path = tmp_path / "short.wav"
    write_wav(path, Codec.PCMU, 2, bytes([0x7F, 0xFF]) * 5)
    assert len(read_waveform(path, columns=1000).columns[0]) == 5


def test_waveform_svg_is_xml_with_one_path_per_channel(tmp_path: Path) -> None:
    path = tmp_path / "w.wav"
    write_wav(path, Codec.PCMA, 2, g711_stereo(2.0))
    svg = waveform_svg(read_waveform(path, columns=300))
    root = ET.fromstring(svg)
    ns = "{http://www.w3.org/2000/svg}"
    assert root.get("viewBox", "").startswith("0 0 300 ")
    assert len(root.findall(f"{ns}path")) == 2
    labels = [t.text for t in root.findall(f"{ns}text")]
    assert "Penelepon · Caller" in labels and "0:00" in labels and "0:02" in labels


# --------------------------------------------------------------------------- over HTTP


def _audio_url(s: Seeded) -> str:
    return f"/audit/incidents/{s.incident_id}/recordings/{s.recording_id}/audio.wav"


async def test_playback_whole_and_ranges(env: WebEnv) -> None:
    s = await seed_incident(env.store, env.recordings)
    expected = _expected_pcm(s.path, Codec.PCMA)
    total = PCM_HEADER_SIZE + len(expected)
    await env.sign_in("auditor")
    r = await env.client.get(_audio_url(s))
    assert r.status_code == 200
    assert r.headers["content-type"] == "audio/wav"
    assert r.headers["accept-ranges"] == "bytes"
    assert int(r.headers["content-length"]) == total == len(r.content)
    assert r.content[PCM_HEADER_SIZE:] == expected
    part = await env.client.get(_audio_url(s), headers={"Range": "bytes=1001-2000"})
    assert part.status_code == 206
    assert part.headers["content-range"] == f"bytes 1001-2000/{total}"
    assert part.content == r.content[1001:2001]
    tail = await env.client.get(_audio_url(s), headers={"Range": "bytes=-7"})
    assert tail.status_code == 206 and tail.content == r.content[-7:]
    opened = await env.client.get(_audio_url(s), headers={"Range": "bytes=0-"})
    assert opened.status_code == 206 and opened.content == r.content


@pytest.mark.parametrize("header", ["bytes=999999999-", "bytes=50-10", "bytes=x-"])
async def test_bad_range_is_416(env: WebEnv, header: str) -> None:
    s = await seed_incident(env.store, env.recordings)
    await env.sign_in("auditor")
    r = await env.client.get(_audio_url(s), headers={"Range": header})
    assert r.status_code == 416
    assert r.headers["content-range"] == f"bytes */{PCM_HEADER_SIZE + 2 * s.wav_bytes}"


async def test_head_answers_the_length_without_an_audit_entry(env: WebEnv) -> None:
    s = await seed_incident(env.store, env.recordings)
    await env.sign_in("auditor")
    r = await env.client.head(_audio_url(s))
    assert r.status_code == 200 and r.content == b""
    assert int(r.headers["content-length"]) == PCM_HEADER_SIZE + 2 * s.wav_bytes
    assert await env.store.list_audit(action="replay") == []


async def test_replay_is_audited_once_per_window_and_listed(env: WebEnv) -> None:
    s = await seed_incident(env.store, env.recordings)
    await env.sign_in("auditor")
    page = await env.client.get(f"/audit/incidents/{s.incident_id}")
    assert 'data-testid="no-replays"' in page.text
    for rng in ("bytes=0-", "bytes=5000-", "bytes=100-200"):  # a player's seeks
        assert (await env.client.get(_audio_url(s), headers={"Range": rng})).status_code == 206
    replays = await env.store.list_audit(action="replay")
    assert len(replays) == 1
    assert replays[0].actor == "auditor" and replays[0].target == s.incident_id
    assert replays[0].detail["recording"] == s.recording_id
    env.clock.advance(REPLAY_AUDIT_WINDOW_S + 1)
    await env.client.get(_audio_url(s))
    assert len(await env.store.list_audit(action="replay")) == 2
    page = await env.client.get(f"/audit/incidents/{s.incident_id}")
    assert (
        page.text.count('data-testid="replay-row" data-action="replay" data-actor="auditor"') == 2
    )


async def test_download_is_the_original_file_and_always_audited(env: WebEnv) -> None:
    s = await seed_incident(env.store, env.recordings)
    await env.sign_in("admin")
    url = f"/audit/incidents/{s.incident_id}/recordings/{s.recording_id}/download"
    for _ in range(2):
        r = await env.client.get(url)
        assert r.status_code == 200 and r.content == s.path.read_bytes()
        assert r.headers["content-disposition"].startswith("attachment;")
    downloads = await env.store.list_audit(action="download")
    assert [e.actor for e in downloads] == ["admin", "admin"]


async def test_waveform_picture_over_http(env: WebEnv) -> None:
    s = await seed_incident(env.store, env.recordings)
    await env.sign_in("auditor")
    r = await env.client.get(
        f"/audit/incidents/{s.incident_id}/recordings/{s.recording_id}/waveform.svg"
    )
    assert r.status_code == 200 and r.headers["content-type"].startswith("image/svg+xml")
    root = ET.fromstring(r.text)
    assert root.get("viewBox", "").startswith("0 0 1000 ")


async def test_integrity_intact_then_changed_then_missing(env: WebEnv) -> None:
    s = await seed_incident(env.store, env.recordings)
    await env.sign_in("auditor")
    page = await env.client.get(f"/audit/incidents/{s.incident_id}")
    assert 'data-testid="integrity" data-status="intact"' in page.text
    os.chmod(s.path, 0o644)
    with s.path.open("r+b") as f:  # one flipped bit in the audio
        f.seek(1000)
        byte = f.read(1)
        f.seek(1000)
        f.write(bytes([byte[0] ^ 1]))
    page = await env.client.get(f"/audit/incidents/{s.incident_id}")
    assert 'data-status="changed"' in page.text
    s.path.unlink()
    page = await env.client.get(f"/audit/incidents/{s.incident_id}")
    assert 'data-status="missing"' in page.text
    r = await env.client.get(_audio_url(s))
    assert r.status_code == 404


async def test_integrity_notices_an_edited_chain_entry(env: WebEnv) -> None:
    s = await seed_incident(env.store, env.recordings)
    second = await seed_incident(env.store, env.recordings, at=T0 - 100)
    import sqlite3

    raw = sqlite3.connect(env.store.path)
    raw.execute("DROP TRIGGER recordings_chain_immutable")
    raw.execute("UPDATE recordings SET size = size + 1 WHERE id = ?", (s.recording_id,))
    raw.commit()
    raw.close()
    await env.sign_in("auditor")
    page = await env.client.get(f"/audit/incidents/{s.incident_id}")
    assert 'data-status="edited_entry"' in page.text
    page = await env.client.get(f"/audit/incidents/{second.incident_id}")
    assert 'data-status="intact"' in page.text  # its link to the edited entry still holds


async def test_recording_urls_refuse_the_wrong_role_and_unknown_ids(env: WebEnv) -> None:
    s = await seed_incident(env.store, env.recordings)
    other = await seed_incident(env.store, env.recordings, at=T0 - 50)
    await env.sign_in("op1")
    assert (await env.client.get(_audio_url(s))).status_code == 403
    env.sign_out_locally()
    await env.sign_in("auditor")
    wrong = f"/audit/incidents/{s.incident_id}/recordings/{other.recording_id}/audio.wav"
    assert (await env.client.get(wrong)).status_code == 404
    assert (
        await env.client.get(f"/audit/incidents/{s.incident_id}/recordings/x/audio.wav")
    ).status_code == 404
    assert (await env.client.get("/audit/incidents/nope/recordings/1/audio.wav")).status_code == 404
    assert await env.store.list_audit(action="replay") == []
