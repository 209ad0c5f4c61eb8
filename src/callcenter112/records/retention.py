"""Retention: delete recordings older than the configured days unless on legal hold.

The chain entry stays as a tombstone and each deletion is audit-logged
(`retention_delete`), in the same transaction that re-checks the hold.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from ..incidents import Recording
from ..retention_guard import SweepFigures, sweep_refusal
from .protocol import Store

__all__ = ["RetentionReport", "apply_retention"]

_DAY_S = 86_400


@dataclass(frozen=True, slots=True, kw_only=True)
class RetentionReport:
    deleted: tuple[Recording, ...] = ()
    errors: tuple[str, ...] = ()  # files that could not be removed (entry is tombstoned)
    refused: str | None = None  # issue 11: why nothing was deleted (retention_guard)


_RETENTION_BATCH = 200
_RETENTION_MAX_ROUNDS = 10_000


async def apply_retention(
    store: Store,
    recordings_dir: Path,
    keep_days: float,
    now: float,
    *,
    actor: str = "retention",
    max_share: float = 1.0,
    force: bool = False,
) -> RetentionReport:
    """Delete recordings sealed more than `keep_days` ago, unless on legal hold.

    Each entry becomes a tombstone (audit-logged as `retention_delete`) in
    the same transaction that re-checks the hold; then its file is removed.
    A file already gone counts as removed.

    First (issue 11) `retention_guard.sweep_refusal` is asked: with the clock
    behind the newest seal, or more than `max_share` of the recordings due
    without `force`, nothing is deleted and the report says why.
    """
    cutoff = now - keep_days * _DAY_S
    total = await store.count_recordings()
    expired = len(await store.recordings_due_for_retention(before=cutoff, limit=total + 1))
    figures = SweepFigures(
        now=now, newest_seal_at=await store.newest_seal_at(), expired=expired, total=total
    )
    refusal = sweep_refusal(figures, max_share=max_share, force=force)
    if refusal is not None:
        return RetentionReport(refused=refusal)
    deleted: list[Recording] = []
    errors: list[str] = []
    for _ in range(_RETENTION_MAX_ROUNDS):
        due = await store.recordings_due_for_retention(before=cutoff, limit=_RETENTION_BATCH)
        if not due:
            break
        done = await store.tombstone_recordings([r.id for r in due], actor=actor, at=now)
        for rec in done:
            try:
                await asyncio.to_thread((recordings_dir / rec.path).unlink, missing_ok=True)
            except OSError as exc:
                errors.append(f"{rec.path}: {exc}")
        deleted.extend(done)
        if len(done) < len(due):
            break  # some were put on hold meanwhile; the next sweep sees the rest
    return RetentionReport(deleted=tuple(deleted), errors=tuple(errors))
