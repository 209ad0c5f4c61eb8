"""Recording audio reaches the store in chunks while the call is up (both engines).

A node lost mid-call loses at most the chunk it had not flushed: a second
store (another process's connection) reads the recording back as a readable
WAV whose audio is the bytes that were flushed, in order.
"""

from __future__ import annotations

import asyncio
import hashlib
import struct
from pathlib import Path

import pytest

from callcenter112.incidents import IncidentError
from callcenter112.records import StoreError, wav_info
from callcenter112.records.evidence import partial_wav
from callcenter112.records.protocol import MAX_CHUNK_BYTES
from store_engines import StoreFactory, raw_for
from test_recordings import T0, g711_wav

pytest_plugins = ("pg_support", "store_engines")

TWO_SECONDS = 2 * 8000 * 2  # stereo G.711


def _as_recorder_leaves_it(wav: bytes) -> bytes:
    """The recorder writes placeholder sizes until it closes the file."""
    out = bytearray(wav)
    struct.pack_into("<I", out, 4, 0xFFFFFFFF)
    data_at = out.index(b"data")
    struct.pack_into("<I", out, data_at + 4, 0xFFFFFFFF)
    return bytes(out)


async def test_chunks_make_a_readable_partial_recording_for_another_reader(
    stores: StoreFactory, tmp_path: Path
) -> None:
    whole = _as_recorder_leaves_it(g711_wav(8000 * 7))  # 7 s of audio
    header = len(whole) - 8000 * 7 * 2
    flushed = whole[: header + 3 * TWO_SECONDS + 101]  # 3 chunks of 2 s and a torn frame
    chunks = [flushed[: header + TWO_SECONDS]] + [
        flushed[i : i + TWO_SECONDS] for i in range(header + TWO_SECONDS, len(flushed), TWO_SECONDS)
    ]
    async with stores.open() as store:
        iid = await store.create_incident(caller="081234567890", arrived_at=T0)
        rid = await store.add_recording_open(
            iid, f"{iid}.wav", started_at=T0, codec="PCMU", channels=2
        )
        for seq, data in enumerate(chunks):
            await store.append_recording_chunk(rid, seq, data, at=T0 + 2 * (seq + 1))
        await store.append_recording_chunk(rid, 1, chunks[1], at=T0 + 9)  # a retried flush
    # The node is gone; another store (another process) reads what reached the database.
    async with stores.open() as other:
        stored = await other.recording_bytes(rid)
    assert stored == flushed
    readable = partial_wav(stored)
    path = tmp_path / "partial.wav"
    path.write_bytes(readable)
    info = wav_info(path)
    assert info is not None and info.channels == 2 and info.sample_rate == 8000
    assert info.data_bytes == 3 * TWO_SECONDS + 100  # the torn stereo frame is dropped
    assert readable[header : header + info.data_bytes] == flushed[header:-1]
    raw = raw_for(other)
    hashes = [
        r[0]
        for r in raw.execute(
            "SELECT sha256 FROM recording_chunks WHERE recording_id = ? ORDER BY seq", (rid,)
        )
    ]
    assert hashes == [
        hashlib.sha256(c).hexdigest() for c in chunks
    ]  # each chunk is kept with its hash
    raw.close()


async def test_chunks_out_of_order_too_big_or_after_sealing_are_refused(
    stores: StoreFactory,
) -> None:
    async with stores.open() as store:
        iid = await store.create_incident(caller="081234567890", arrived_at=T0)
        rid = await store.add_recording_open(iid, "a.wav", started_at=T0, codec="PCMA")
        await store.append_recording_chunk(rid, 0, b"RIFF", at=T0)
        cases = [
            (rid, 2, b"x", 409, "out of order"),
            (rid, 0, b"RIFX", 409, "different chunk"),
            (rid, 1, b"x" * (MAX_CHUNK_BYTES + 1), 422, "bytes"),
            (rid, 1, b"", 422, "bytes"),
            (rid + 99, 0, b"x", 404, "no recording"),
        ]
        results = await asyncio.gather(
            *(store.append_recording_chunk(r, s, d, at=T0) for r, s, d, _, _ in cases),
            return_exceptions=True,
        )
        for result, (_, _, _, status, words) in zip(results, cases, strict=True):
            assert isinstance(result, IncidentError) and result.status_hint == status
            assert words in str(result)
        await store.add_recording(
            iid,
            "a.wav",
            sha256="0" * 64,
            size=4,
            channels=2,
            duration_s=0.0,
            codec="PCMA",
            sealed_at=T0 + 1,
        )
        with pytest.raises(IncidentError, match="sealed"):
            await store.append_recording_chunk(rid, 1, b"late", at=T0 + 2)
        assert await store.recording_bytes(rid) == b"RIFF"


async def test_stored_chunks_are_append_only_and_damage_is_noticed(
    stores: StoreFactory,
) -> None:
    async with stores.open() as store:
        iid = await store.create_incident(caller="081234567890", arrived_at=T0)
        rid = await store.add_recording_open(iid, "a.wav", started_at=T0, codec="PCMA")
        await store.append_recording_chunk(rid, 0, b"RIFF----WAVE", at=T0)
        raw = raw_for(store)
        with pytest.raises(raw.integrity_error, match="append-only"):
            raw.execute("UPDATE recording_chunks SET data = ?", (b"evil",))
        with pytest.raises(raw.integrity_error, match="append-only"):
            raw.execute("DELETE FROM recording_chunks")
        raw.drop_trigger("recording_chunks_no_update", "recording_chunks")
        raw.execute("UPDATE recording_chunks SET data = ?", (b"RIFF----WAVX",))
        raw.close()
        with pytest.raises(StoreError, match="damaged"):
            await store.recording_bytes(rid)


async def test_sealed_copy_in_the_database_refills_the_recordings_folder(
    stores: StoreFactory, tmp_path: Path
) -> None:
    from callcenter112.records import verify_recordings
    from test_recordings import _call_with_recording

    recdir = tmp_path / "recordings"
    recdir.mkdir()
    async with stores.open() as store:
        _, path = await _call_with_recording(store, recdir, 1)
        [rec] = await store.recording_chain(limit=5)
        data = path.read_bytes()
        if not store.keeps_recording_copies:  # SQLite keeps none by itself; the contract holds
            await store.keep_recording_copy(rec.id, data)
        assert await store.recording_copy(rec.id) == data
        await store.keep_recording_copy(rec.id, data)  # again: accepted
        with pytest.raises(IncidentError, match="not what was sealed"):
            await store.keep_recording_copy(rec.id, data[:-1] + b"\x00")
        raw = raw_for(store)
        with pytest.raises(raw.integrity_error, match="immutable"):
            raw.execute("UPDATE recording_copies SET data = ?", (b"evil",))
        with pytest.raises(raw.integrity_error, match="immutable"):
            raw.execute("DELETE FROM recording_copies")
        raw.close()
        path.chmod(0o644)
        path.unlink()  # the disk of this node is gone
        report = await verify_recordings(store, recdir)
        if store.keeps_recording_copies:
            assert report.ok, report.problems
            assert path.read_bytes() == data  # refilled from the database
        else:
            assert [p.kind.value for p in report.problems] == ["missing_file"]


async def test_the_shipper_sends_what_the_real_recorder_flushed(
    stores: StoreFactory, tmp_path: Path
) -> None:
    from callcenter112.media.g711 import Codec
    from callcenter112.media.recorder import RecordingFile
    from callcenter112.records.evidence import RecordingShipper

    path = tmp_path / "live.wav"
    recorder = RecordingFile(path, codec=Codec.PCMU, channels=2, fsync=False)
    async with stores.open() as store:
        iid = await store.create_incident(caller="081234567890", arrived_at=T0)
        rid = await store.add_recording_open(iid, "live.wav", started_at=T0, codec="PCMU")
        shipper = RecordingShipper(recording_id=rid, path=path)
        assert await shipper.ship(store, at=T0) > 0  # the header
        for second in range(5):  # five flushes of one second each, then the node dies
            recorder.append(bytes((second * 7 + i) % 256 for i in range(16_000)))
            assert await shipper.ship(store, at=T0 + second + 1) == 16_000
        recorder.append(b"\x55" * 3_000)  # flushed to disk, never shipped: lost with the node
        assert shipper.seq == 6
        stored = await store.recording_bytes(rid)
    readable = tmp_path / "readable.wav"
    readable.write_bytes(partial_wav(stored))
    info = wav_info(readable)
    assert info is not None and info.data_bytes == 5 * 16_000 and info.channels == 2
    on_disk = path.read_bytes()
    assert readable.read_bytes()[-80_000:] == on_disk[-83_000:-3_000]
