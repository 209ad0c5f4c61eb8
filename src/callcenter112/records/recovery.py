"""Crash recovery: bring the store back to a consistent state after an unclean stop.

Runs at start, before calls are accepted: calls that were up become
`interrupted` incidents with a callback task, open legs are closed, operators'
cut-off state histories end in `offline`, and partial recordings are repaired
and sealed (never dropped: a failed repair seals the file as found).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path

from ..incidents import IncidentError, IncidentQuery, Recording, Status
from .evidence import seal_recording, wav_info
from .protocol import Store

__all__ = ["RecoveryReport", "interrupt_active", "recover_after_crash", "seal_partial"]


@dataclass(frozen=True, slots=True, kw_only=True)
class RecoveryReport:
    interrupted: tuple[str, ...] = ()  # incident ids
    callbacks: tuple[int, ...] = ()  # callback task ids created
    stray_legs_closed: int = 0
    # Operators whose state history ended in something other than `offline`: closed
    # with `offline` (reason "server_restart"). Not part of `clean`: a graceful stop
    # leaves the history open too, and that is not a crash.
    operators_offline: tuple[str, ...] = ()
    sealed: tuple[Recording, ...] = ()  # partial recordings repaired and sealed
    lost: tuple[str, ...] = ()  # open recordings whose file never appeared
    problems: tuple[str, ...] = ()  # repairs that failed (the file was sealed as found)

    @property
    def clean(self) -> bool:
        """True when there was nothing to recover."""
        return not (self.interrupted or self.stray_legs_closed or self.sealed or self.lost)


def _repair_detail(result: object) -> object:
    """What a repair reported, as plain JSON for the incident's timeline.

    `media.recorder.repair_wav` returns a dataclass (`changed`, `frames`,
    `dropped_bytes`, `header_rebuilt`, and the absolute `path`, left out: the
    event names the recording by its path in the recordings directory).
    """
    if result is None:
        return None
    if dataclasses.is_dataclass(result) and not isinstance(result, type):
        return {
            name: value
            for name, value in dataclasses.asdict(result).items()
            if name != "path" and isinstance(value, bool | int | float | str)
        }
    return str(result)


async def interrupt_active(
    store: Store,
    now: float,
    *,
    reason: str,
    into: tuple[list[str], list[int], list[str]],
    keep: Collection[str] = (),
) -> None:
    """Every `active` incident not in `keep` becomes `interrupted` with a callback
    task (oldest first); appends to `into` = (interrupted ids, callback ids, problems).
    Shared by crash recovery and a cluster node's takeover (callflow/failover.py)."""
    interrupted, callbacks, problems = into
    active = [
        inc.id
        async for inc in store.iter_incidents(IncidentQuery(status=Status.ACTIVE))
        if inc.id not in keep
    ]
    active.reverse()  # oldest first: callback tasks are then listed in arrival order
    for incident_id in active:
        try:
            callback_id = await store.close_incident(
                incident_id, status=Status.INTERRUPTED, at=now, ended_at=None, reason=reason
            )
        except IncidentError as exc:
            problems.append(f"{incident_id}: {exc}")
            continue
        interrupted.append(incident_id)
        if callback_id is not None:
            callbacks.append(callback_id)


async def seal_partial(
    store: Store, rec: Recording, recordings_dir: Path, now: float, detail: dict[str, object]
) -> Recording:
    """Seal an open recording's file as it is now and say so on the incident's timeline
    (`recording_recovered` with `detail`)."""
    path = recordings_dir / rec.path
    try:
        info = await asyncio.to_thread(wav_info, path)
    except OSError:
        info = None
    entry = await seal_recording(
        store,
        rec.incident_id,
        path,
        recordings_dir=recordings_dir,
        channels=info.channels if info else rec.channels,
        duration_s=info.duration_s if info else None,
        codec=rec.codec,
        sealed_at=now,
    )
    await store.add_event(rec.incident_id, "recording_recovered", detail, at=now)
    return entry


async def recover_after_crash(
    store: Store,
    recordings_dir: Path,
    now: float,
    *,
    repair: Callable[[Path], object],
) -> RecoveryReport:
    """Bring the store back to a consistent state after an unclean stop.

    Run at start, before any call is accepted. Every still-`active` incident
    becomes `interrupted` (its `ended_at` stays unknown) with an event, its
    open legs closed and a callback task created (flagged "no number" for an
    anonymous caller); legs left open elsewhere are closed; operators whose
    state history was cut off (last state `on_call`, `available`, …) get an
    `offline` entry, since nobody is registered to a server that just
    started; every open recording is repaired with `repair(path)` (the lead
    passes `media.recorder.repair_wav`) and sealed. A repair that fails is reported
    and the file is sealed as found — evidence is never dropped. Safe to run
    again if it is itself interrupted.
    """
    interrupted: list[str] = []
    callbacks: list[int] = []
    sealed: list[Recording] = []
    lost: list[str] = []
    problems: list[str] = []

    await interrupt_active(
        store, now, reason="server restarted while the call was up",
        into=(interrupted, callbacks, problems),
    )  # fmt: skip
    stray = await store.close_stray_legs(reason="server_restart")
    operators = await store.close_operator_states(reason="server_restart", at=now)

    for rec in await store.list_open_recordings():
        path = recordings_dir / rec.path
        if not await asyncio.to_thread(path.is_file):
            await store.mark_recording_lost(rec.id, at=now, reason="file missing after restart")
            lost.append(rec.path)
            continue
        repaired: object = None
        try:
            repaired = await asyncio.to_thread(repair, path)
        except Exception as exc:  # noqa: BLE001 - evidence is sealed as found, never dropped
            problems.append(f"{rec.path}: repair failed ({exc}); sealed as found")
        detail = {"path": rec.path, "repair": _repair_detail(repaired)}
        sealed.append(await seal_partial(store, rec, recordings_dir, now, detail))

    report = RecoveryReport(
        interrupted=tuple(interrupted),
        callbacks=tuple(callbacks),
        stray_legs_closed=stray,
        operators_offline=operators,
        sealed=tuple(sealed),
        lost=tuple(lost),
        problems=tuple(problems),
    )
    if not report.clean or problems:
        await store.audit(
            actor="system",
            action="crash_recovery",
            target="store",
            detail={
                "interrupted": list(interrupted),
                "callbacks": list(callbacks),
                "stray_legs_closed": stray,
                "operators_offline": list(operators),
                "sealed": [r.path for r in sealed],
                "lost": lost,
                "problems": problems,
            },
            at=now,
        )
    return report
