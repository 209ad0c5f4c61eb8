"""The call's journal (callflow/journal.py): each write and its failure rule,
against a real SQLite store and real recording files."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from callcenter112.callflow.journal import (
    Journal,
    RecordingEnd,
    WriteFailed,
    WriteKind,
    recording_path,
)
from callcenter112.counters import CoreCounters, Counted
from callcenter112.incidents import LegQuality, LegRole, RecordingStatus, Status
from callcenter112.logs import get_logger
from callcenter112.media.g711 import Codec
from callcenter112.media.recorder import IncidentRecorder, RecordingInfo
from callcenter112.records import SqliteStore, open_store

T0 = time.time()


class Recorders:
    """The media engine's recorder verbs, on real files, without a loop."""

    def __init__(self, *, fail_close: bool = False) -> None:
        self.fail_close = fail_close

    def open_recorder(self, path: Path, codec: Codec) -> IncidentRecorder:
        path.parent.mkdir(parents=True, exist_ok=True)
        return IncidentRecorder(path, codec=codec, start=0.0, fsync=False)

    def watch_recording(self, rec: IncidentRecorder, recording_id: int | None) -> None:
        pass  # nothing ships chunks here (issue 14: tests/test_cluster_failover.py)

    async def close_recorder(self, rec: IncidentRecorder) -> RecordingInfo:
        if self.fail_close:
            raise OSError("disk gone")
        return rec.close(1.0)


class BrokenStore:
    """A store whose every write fails (the database is down)."""

    def __getattr__(self, name: str) -> Any:
        async def fail(*args: object, **kwargs: object) -> None:
            raise RuntimeError(f"database down ({name})")

        return fail


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    async with open_store(tmp_path / "db.sqlite3") as s:
        yield s


def journal(store: Any, tmp_path: Path, **kwargs: Any) -> Journal:
    return Journal(
        store=store,
        recorders=kwargs.pop("recorders", Recorders()),
        recordings_dir=tmp_path / "rec",
        wall=time.time,
        counters=CoreCounters(),
        log=get_logger("test"),
        **kwargs,
    )


async def new_incident(j: Journal) -> str:
    incident_id = await j.create_incident(caller="+4930123", arrived_at=T0, call_id="c1")
    assert incident_id is not None
    return incident_id


async def test_writes_land_in_the_incident(store: SqliteStore, tmp_path: Path) -> None:
    j = journal(store, tmp_path)
    incident_id = await new_incident(j)
    assert await j.event("ivr_digit", {"digit": "1"})
    assert await j.stamp(answered_at=T0 + 1, event="answered")
    leg = await j.add_leg(
        role=LegRole.CALLER, call_id="c1", peer="udp:1.2.3.4:5060", codec="PCMA", started_at=T0
    )
    assert leg is not None
    assert await j.end_leg(leg, reason="bye", quality=LegQuality(packets=5, lost=0, jitter_ms=1))
    assert await j.close_incident(Status.COMPLETED, ended_at=T0 + 9, reason="caller_hung_up")
    record = await store.get_incident(incident_id)
    assert record is not None
    assert record.incident.status is Status.COMPLETED
    assert {"ivr_digit", "answered"} <= {e.kind for e in record.events}
    assert [x.role for x in record.legs] == [LegRole.CALLER]
    assert j.failures == []


async def test_a_failed_create_answers_without_a_record(tmp_path: Path) -> None:
    j = journal(BrokenStore(), tmp_path)
    assert await j.create_incident(caller="x", arrived_at=T0) is None
    assert j.counters[Counted.INCIDENT_CREATE_FAILED] == 1
    (failure,) = j.failures
    assert failure.kind is WriteKind.CREATE and "database down" in failure.error
    # Without an incident nothing else is written, and nothing raises.
    assert not await j.event("x")
    assert (
        await j.add_leg(role=LegRole.CALLER, call_id=None, peer=None, codec=None, started_at=0)
        is None
    )


async def test_failed_writes_are_kept_typed_and_counted(tmp_path: Path) -> None:
    j = journal(BrokenStore(), tmp_path, incident_id="20261207-000001")
    assert not await j.event("queued")
    assert not await j.stamp(queued_at=T0)
    assert not await j.close_incident(Status.ABANDONED, ended_at=T0, reason="x")
    assert [f.kind for f in j.failures] == [WriteKind.EVENT, WriteKind.STAMP, WriteKind.CLOSE]
    assert all(
        isinstance(f, WriteFailed) and f.incident_id == "20261207-000001" for f in j.failures
    )
    assert j.counters[Counted.JOURNAL_WRITE_FAILED] == 3


async def test_recording_opened_written_and_sealed(store: SqliteStore, tmp_path: Path) -> None:
    j = journal(store, tmp_path)
    incident_id = await new_incident(j)
    recording = await j.open_recording(Codec.PCMA, unrecorded_name="unused")
    assert recording is not None and recording.recording_id is not None
    assert recording.path.name == f"{incident_id}.wav"
    assert await j.seal_recording(recording) is RecordingEnd.SEALED
    record = await store.get_incident(incident_id)
    assert record is not None
    (sealed,) = record.recordings
    assert sealed.status is RecordingStatus.SEALED and sealed.sha256
    # The next recording of the incident (a callback) gets a name of its own.
    again = await j.open_recording(Codec.PCMA, unrecorded_name="unused", first_suffix=2)
    assert again is not None and again.path.name == f"{incident_id}-2.wav"
    assert await j.seal_recording(again) is RecordingEnd.SEALED


async def test_a_file_that_cannot_be_opened_is_marked_lost(
    store: SqliteStore, tmp_path: Path
) -> None:
    j = journal(store, tmp_path)
    incident_id = await new_incident(j)
    # The day directory cannot be created: a file stands where it should be.
    (tmp_path / "rec").write_bytes(b"not a directory")
    assert await j.open_recording(Codec.PCMA, unrecorded_name="unused") is None
    record = await store.get_incident(incident_id)
    assert record is not None
    (lost,) = record.recordings
    assert lost.status is RecordingStatus.LOST
    assert [f.kind for f in j.failures] == [WriteKind.RECORDING_OPEN]


async def test_a_recording_that_cannot_be_closed_is_marked_lost(
    store: SqliteStore, tmp_path: Path
) -> None:
    j = journal(store, tmp_path, recorders=Recorders(fail_close=True))
    incident_id = await new_incident(j)
    recording = await j.open_recording(Codec.PCMA, unrecorded_name="unused")
    assert recording is not None
    assert await j.seal_recording(recording) is RecordingEnd.LOST
    record = await store.get_incident(incident_id)
    assert record is not None
    assert [r.status for r in record.recordings] == [RecordingStatus.LOST]


def test_recording_paths_by_day_and_free_name(tmp_path: Path) -> None:
    path = recording_path(tmp_path, "20261207-000042", "20261207-000042")
    assert path == tmp_path / "2026" / "12" / "07" / "20261207-000042.wav"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"")
    assert recording_path(tmp_path, "20261207-000042", "20261207-000042").name == (
        "20261207-000042-2.wav"
    )
    assert recording_path(tmp_path, None, "unrecorded-x").parent == tmp_path / "unkn" / "ow" / "n"
