"""The retention sweep asks `retention_guard.sweep_refusal` before deleting
(issue 11), on both engines with real sealed recordings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from callcenter112.records import apply_retention
from test_recordings import DAY, T0, _call_with_recording

pytest_plugins = ("pg_support", "store_engines")


async def test_a_clock_behind_the_newest_seal_deletes_nothing_even_forced(
    store: Any, tmp_path: Path
) -> None:
    recdir = tmp_path / "recordings"
    recdir.mkdir()
    _, old = await _call_with_recording(store, recdir, 1, at=T0)
    _, new = await _call_with_recording(store, recdir, 2, at=T0 + 40 * DAY)
    newest = await store.newest_seal_at()
    assert newest is not None and newest >= T0 + 40 * DAY
    assert await store.count_recordings() == 2
    # The clock jumped back before the newest seal: "older than 30 days" is a lie.
    report = await apply_retention(store, recdir, keep_days=1, now=newest - 3600, force=True)
    assert report.deleted == () and report.refused and "behind the newest seal" in report.refused
    assert old.exists() and new.exists()


async def test_too_large_a_share_needs_force(store: Any, tmp_path: Path) -> None:
    recdir = tmp_path / "recordings"
    recdir.mkdir()
    paths = [(await _call_with_recording(store, recdir, n, at=T0 + n))[1] for n in range(1, 4)]
    a_year_later = T0 + 365 * DAY  # a clock set ahead makes everything look expired
    report = await apply_retention(store, recdir, keep_days=30, now=a_year_later, max_share=0.2)
    assert report.deleted == () and report.refused and "--force" in report.refused
    assert all(p.exists() for p in paths)
    forced = await apply_retention(
        store, recdir, keep_days=30, now=a_year_later, max_share=0.2, force=True
    )
    assert forced.refused is None and len(forced.deleted) == 3
    assert not any(p.exists() for p in paths)
    assert await store.count_recordings() == 0
