"""Two nodes, one leader: what the node does when it takes over (issues 14, 15).

Theory of operation. The nodes share the PostgreSQL store; the leader is the
node holding the advisory lock (cluster/leader.py). Two things here:

* `ChunkShipping` — while a call is recorded, what the media engine flushed
  to the local file (about once a second) is sent to the store in chunks of
  ≤ 2 s (`records.evidence.RecordingShipper`), so a node lost mid-call loses
  at most the last ~2 s of audio. Each recording ships from its own task, one
  at a time, so a slow or absent database never holds up the flusher (the
  disk copy goes on being written; the chunks catch up when it returns).
* `take_over()` — run once when a node becomes leader: every incident still
  `active` that this node is not serving was cut off with the old leader; it
  becomes `interrupted` with a callback task (the store's rule), its partial
  recording is rebuilt from the chunks in the database (`partial_wav`) into
  this node's recordings folder and sealed into its hash chain, so
  `recordings verify` passes here and the auditor hears the call up to the
  last shipped chunk.

A planned switch-over must not cut the old leader's bridged calls: the
draining node holds a shared "calls in progress" lock until its last call ends
(`Leadership.drain()` / `drained()`), and `take_over` waits for it
(`wait_for_peers`) before it touches any incident.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Collection, Coroutine, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeVar

from ..logs import get_logger
from ..records import Store
from ..records.evidence import RecordingShipper, partial_wav
from ..records.recovery import interrupt_active, seal_partial

__all__ = [
    "CREATE_DEADLINE_S",
    "ChunkShipping",
    "TakeoverReport",
    "before_deadline",
    "close_later",
    "take_over",
]

log = get_logger("failover")

TAKEOVER_REASON = "node lost while the call was up (failover)"

# A caller is answered at most this long after the create-before-answer write began,
# even while the database is away (the write goes on and lands when it returns).
# Above the write's measured p99 on PostgreSQL for 1000 simultaneous arrivals (~1.3 s,
# docs/benchmarks.md "store"), so a surge is still written before the answer; a
# promotion or an outage takes longer. Issue 14: 112 is never kept ringing by the database.
CREATE_DEADLINE_S: Final = 2.0

T = TypeVar("T")


_LATE: set[asyncio.Task[Any]] = set()


def close_later(aw: Coroutine[Any, Any, object]) -> None:
    """Run a late incident's deferred close (held until it finishes)."""
    task = asyncio.ensure_future(aw)
    _LATE.add(task)
    task.add_done_callback(_LATE.discard)


async def before_deadline(
    aw: Awaitable[T], *, late: Callable[[T], None], deadline_s: float = CREATE_DEADLINE_S
) -> T | None:
    """`aw`'s result, or None once `deadline_s` passed; then `aw` goes on and its
    result is handed to `late` when it comes (its error, if any, is logged)."""
    task = asyncio.ensure_future(aw)
    try:
        return await asyncio.wait_for(asyncio.shield(task), deadline_s)
    except TimeoutError:
        pass

    def done(t: asyncio.Future[T]) -> None:
        if t.cancelled():
            return
        if (exc := t.exception()) is not None:
            log.critical("late_write_failed", error=str(exc))
            return
        late(t.result())

    task.add_done_callback(done)
    return None


class ChunkShipping:
    """Ships each watched recording's new bytes to the store after a flush."""

    def __init__(
        self,
        store: Store,
        *,
        spawn: Callable[[Coroutine[Any, Any, None]], object],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self._spawn = spawn
        self._clock = clock
        self._shippers: dict[object, RecordingShipper] = {}
        self._busy: set[object] = set()

    def watch(self, recorder: object, recording_id: int | None, path: Path) -> None:
        """A recording opened (no store row: nothing to ship)."""
        if recording_id is not None:
            self._shippers[recorder] = RecordingShipper(recording_id=recording_id, path=path)

    def shipped(self, recorder: object) -> int:
        s = self._shippers.get(recorder)
        return 0 if s is None else s.shipped

    def after_flush(self, flushed: Iterable[object], live: Collection[object]) -> None:
        """Called right after the media engine flushed `flushed`; `live` are the
        recorders still open (the others are sealed: their copy is the sealed one)."""
        for gone in [r for r in self._shippers if r not in live and r not in self._busy]:
            del self._shippers[gone]
        for rec in flushed:
            if rec in self._shippers and rec not in self._busy:
                self._busy.add(rec)
                self._spawn(self._ship(rec))

    async def _ship(self, rec: object) -> None:
        try:
            await self._shippers[rec].ship(self.store, at=self._clock())
        except Exception as exc:  # noqa: BLE001 - retried after the next flush
            log.warning("recording_chunk_not_shipped", error=str(exc))
        finally:
            self._busy.discard(rec)


@dataclass(frozen=True, slots=True, kw_only=True)
class TakeoverReport:
    interrupted: tuple[str, ...] = ()
    callbacks: tuple[int, ...] = ()
    recordings_rebuilt: tuple[str, ...] = ()  # paths, from the database's chunks
    recordings_lost: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()


async def take_over(
    store: Store,
    recordings_dir: Path,
    *,
    own: Callable[[], Collection[str]],
    now: Callable[[], float] = time.time,
    wait_for_peers: Callable[[], Awaitable[None]] | None = None,
    repair: Callable[[Path], object] | None = None,
) -> TakeoverReport:
    """Close what the old leader left open; see the module doc.

    `own()` is the incident ids this node is serving (never touched);
    `wait_for_peers` returns once no other node still has calls (a draining
    leader's calls finish there); `repair` (media.recorder.repair_wav) is used
    when this node's own file is longer than the database's copy."""
    if wait_for_peers is not None:
        await wait_for_peers()
    interrupted: list[str] = []
    callbacks: list[int] = []
    problems: list[str] = []
    await interrupt_active(
        store, now(), reason=TAKEOVER_REASON, into=(interrupted, callbacks, problems),
        keep=set(own()),
    )  # fmt: skip
    with contextlib.suppress(Exception):
        await store.close_stray_legs(reason="failover")
    rebuilt: list[str] = []
    lost: list[str] = []
    cut = set(interrupted)
    for rec in await store.list_open_recordings():
        if rec.incident_id not in cut:
            continue
        path = recordings_dir / rec.path
        data = partial_wav(await store.recording_bytes(rec.id))
        if repair is not None and await asyncio.to_thread(_longer_here, path, len(data)):
            # This node wrote it (restarted in place): its own file holds more.
            try:
                await asyncio.to_thread(repair, path)
            except Exception as exc:  # noqa: BLE001 - sealed as found, never dropped
                problems.append(f"{rec.path}: repair failed ({exc}); sealed as found")
            data = b""
        elif not data:
            await store.mark_recording_lost(rec.id, at=now(), reason="no chunk reached the store")
            lost.append(rec.path)
            continue
        if data:
            await asyncio.to_thread(_write, path, data)
        source = "database chunks" if data else "this node's file"
        await seal_partial(store, rec, recordings_dir, now(), {"path": rec.path, "from": source})
        rebuilt.append(rec.path)
    report = TakeoverReport(
        interrupted=tuple(interrupted),
        callbacks=tuple(callbacks),
        recordings_rebuilt=tuple(rebuilt),
        recordings_lost=tuple(lost),
        problems=tuple(problems),
    )
    if interrupted or rebuilt or lost or problems:
        await store.audit(
            actor="system",
            action="failover_takeover",
            target="store",
            detail={
                "interrupted": interrupted,
                "callbacks": callbacks,
                "recordings_rebuilt": rebuilt,
                "recordings_lost": lost,
                "problems": problems,
            },
            at=now(),
        )
    return report


def _longer_here(path: Path, stored: int) -> bool:
    return path.is_file() and path.stat().st_size > stored


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".part")
    tmp.write_bytes(data)
    tmp.replace(path)
