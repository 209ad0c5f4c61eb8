"""When the retention sweep must refuse to delete recordings.

Pure: the sweep (`recordings.py`) gathers the figures and asks `sweep_refusal` first.
Deleting evidence is the one action that cannot be undone, and it is driven by the wall
clock, which can be wrong (a dead RTC battery, a bad NTP answer, an operator's typo):

* **Clock behind the newest seal.** Every recording is sealed with the wall time at its
  close; a clock earlier than the newest seal is provably wrong (time went backwards), so
  nothing computed from it — "older than keep_days" — can be trusted.
* **Too much at once.** A clock set years ahead makes every recording look expired. A
  sweep that would delete more than `recordings.max_delete_share` of the recordings
  refuses unless a person says `--force`.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SweepFigures", "sweep_refusal"]

# A seal may be stamped this far ahead of a later reading of the same clock (NTP slews,
# the seal's own write time) without the clock being wrong.
CLOCK_TOLERANCE_S = 5.0


@dataclass(frozen=True, slots=True, kw_only=True)
class SweepFigures:
    now: float  # wall clock, epoch seconds
    newest_seal_at: float | None  # the latest seal time in the store (None: nothing sealed)
    expired: int  # recordings the sweep would delete
    total: int  # recordings held


def sweep_refusal(figures: SweepFigures, *, max_share: float, force: bool) -> str | None:
    """Why the sweep must not run now (a sentence for the log and the CLI), or None."""
    if figures.newest_seal_at is not None and figures.now < (
        figures.newest_seal_at - CLOCK_TOLERANCE_S
    ):
        # Never overridable: with a clock known to be wrong, --force would delete by a lie.
        return (
            f"the clock ({figures.now:.0f}) is behind the newest seal "
            f"({figures.newest_seal_at:.0f}); fix the clock first"
        )
    if figures.total and not force and figures.expired > max_share * figures.total:
        return (
            f"would delete {figures.expired} of {figures.total} recordings, more than "
            f"recordings.max_delete_share {max_share:g}; check the clock, then use --force"
        )
    return None
