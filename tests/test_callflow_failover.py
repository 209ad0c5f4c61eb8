"""callflow/failover.py on both store engines: the takeover, chunk shipping and the
answer deadline (issues 14, 15). The end-to-end proofs with real peers are
tests/test_cluster_failover.py and tests/test_store_outage_calls.py."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from callcenter112.callflow.failover import ChunkShipping, before_deadline, take_over
from callcenter112.incidents import IncidentQuery, Status
from callcenter112.media.g711 import Codec
from callcenter112.media.recorder import IncidentRecorder
from callcenter112.records import verify_recordings, wav_info
from store_engines import StoreFactory
from test_recordings import T0

pytest_plugins = ("pg_support", "store_engines")


async def test_before_deadline_answers_in_time_or_hands_the_result_on_later() -> None:
    async def write(delay: float, value: str) -> str:
        await asyncio.sleep(delay)
        return value

    late: list[str] = []
    assert await before_deadline(write(0.0, "fast"), late=late.append, deadline_s=0.5) == "fast"
    assert await before_deadline(write(0.3, "slow"), late=late.append, deadline_s=0.05) is None
    assert late == []  # not yet: the write goes on
    await asyncio.sleep(0.5)
    assert late == ["slow"]

    async def broken() -> str:
        await asyncio.sleep(0.1)
        raise OSError("database gone for good")

    assert await before_deadline(broken(), late=late.append, deadline_s=0.01) is None
    await asyncio.sleep(0.3)
    assert late == ["slow"]  # a failed late write hands nothing on (it is logged)


async def _recorded_call(store: Any, folder: Path, spawned: list[Any]) -> tuple[str, int, float]:
    """A call on the 'old leader': its recorder writes ~3 s, shipped after each flush."""
    iid = await store.create_incident(caller="081200000001", arrived_at=T0)
    path = folder / f"{iid}.wav"
    rid = await store.add_recording_open(iid, path.name, started_at=T0, codec="PCMA", channels=2)
    shipping = ChunkShipping(store, spawn=lambda c: spawned.append(asyncio.ensure_future(c)))
    rec = IncidentRecorder(path, codec=Codec.PCMA, start=0.0, fsync=False)
    shipping.watch(rec, rid, path)
    for second in (1.0, 2.0, 3.0):
        rec.flush(second)
        shipping.after_flush([rec], {rec})
        await asyncio.gather(*spawned)
    assert shipping.shipped(rec) == path.stat().st_size  # everything flushed reached the store
    return iid, rid, 3.0


async def test_take_over_interrupts_the_old_leaders_calls_and_rebuilds_their_audio(
    stores: StoreFactory, tmp_path: Path
) -> None:
    old, new = tmp_path / "old-node", tmp_path / "new-node"
    old.mkdir()
    new.mkdir()
    spawned: list[Any] = []
    async with stores.open() as store:
        cut, rid, seconds = await _recorded_call(store, old, spawned)
        mine = await store.create_incident(caller="081200000002", arrived_at=T0 + 1)
        report = await take_over(store, new, own=lambda: {mine}, now=lambda: T0 + 10)
        assert report.interrupted == (cut,)
        assert len(report.callbacks) == 1
        assert report.recordings_rebuilt == (f"{cut}.wav",)
        active = [i.id async for i in store.iter_incidents(IncidentQuery(status=Status.ACTIVE))]
        assert active == [mine]  # this node's own call is left alone
        (callback,) = await store.list_callbacks(incident_id=cut)
        assert callback.number == "081200000001"
        info = wav_info(new / f"{cut}.wav")
        assert info is not None and info.channels == 2
        # Every flushed byte (the recorder keeps a jitter margin back from `now`).
        flushed = (old / f"{cut}.wav").stat().st_size
        rebuilt = (new / f"{cut}.wav").stat().st_size
        assert rebuilt == flushed and info.data_bytes > 0
        assert seconds - 0.5 <= info.duration_s <= seconds
        verified = await verify_recordings(store, new)
        assert verified.ok, verified
        # Run again (a second takeover): nothing left to do.
        again = await take_over(store, new, own=lambda: {mine}, now=lambda: T0 + 20)
        assert again.interrupted == () and again.recordings_rebuilt == ()
    assert rid > 0


async def test_take_over_waits_for_a_draining_node(stores: StoreFactory, tmp_path: Path) -> None:
    released = asyncio.Event()

    async def peers_idle() -> None:
        await released.wait()

    async with stores.open() as store:
        iid = await store.create_incident(caller="081200000003", arrived_at=T0)
        task = asyncio.ensure_future(
            take_over(store, tmp_path, own=set, now=lambda: T0 + 5, wait_for_peers=peers_idle)
        )
        await asyncio.sleep(0.2)
        assert not task.done()
        record = await store.get_incident(iid)
        assert record is not None and record.incident.status is Status.ACTIVE  # still theirs
        released.set()
        report = await task
        assert report.interrupted == (iid,)
