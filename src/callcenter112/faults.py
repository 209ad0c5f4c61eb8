"""Faults that must not stop the service or lose evidence: start-up steps, disks, modes.

* `start_step` runs one start-up step (crash recovery, the configuration audit) with a
  few retries; if it still fails the centre raises an alarm and starts anyway — 112 calls
  matter more than a tidy start (issue 11: a disk error in recovery aborted the start).
* `probe_write` proves the disks take writes: a small file is written, fsynced, read back
  and removed in each folder the centre writes to. `/healthz` reports the result as fixed
  words, never exception text (which can name paths and users).
* `DiskWatch` raises and clears the low-disk alarm: free space of the database and
  recordings folders under `storage.low_disk_mb`. It reports changes only, so the log and
  the incident feed see one alarm and one all-clear, not one line a minute.
* `secure_files` applies the file modes of a centre whose files hold personal data and
  secrets: umask 077 for everything created later, folders 0700, the database and the
  configuration 0600 (sealed recordings are made 0440 by their seal, `recordings.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import stat
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from .logs import get_logger

__all__ = [
    "DiskAlarm",
    "DiskState",
    "DiskWatch",
    "ProbeResult",
    "disk_checks",
    "free_bytes",
    "probe_write",
    "secure_files",
    "start_step",
]

log = get_logger(__name__)
T = TypeVar("T")

START_ATTEMPTS = 3
START_RETRY_S = 0.5
_PROBE = b"callcenter112 health probe\n"


async def start_step(
    name: str,
    step: Callable[[], Awaitable[T]],
    *,
    attempts: int = START_ATTEMPTS,
    retry_s: float = START_RETRY_S,
    on_alarm: Callable[[str, str], None] | None = None,
) -> T | None:
    """`await step()`, retried `attempts` times; None (after an alarm) if it never works.

    Only OSError and the store's own errors are expected here; anything is caught because
    the alternative is a centre that does not start. `on_alarm(name, error_type)` lets the
    caller put the alarm where supervisors see it."""
    last = ""
    for attempt in range(1, attempts + 1):
        try:
            return await step()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - see docstring
            last = type(exc).__name__
            log.error("start_step_failed", step=name, attempt=attempt, error=last)
            if attempt < attempts:
                await asyncio.sleep(retry_s * attempt)
    log.critical("start_step_skipped", step=name, error=last, alarm=True)
    if on_alarm is not None:
        on_alarm(name, last)
    return None


@dataclass(frozen=True, slots=True, kw_only=True)
class ProbeResult:
    ok: bool
    # Fixed words for /healthz: "ok", "write_failed", "read_back_differs".
    reason: str


def probe_write(folder: Path) -> ProbeResult:
    """Write, fsync, read back and remove a small file in `folder` (blocking)."""
    path = folder / f".healthz-{secrets.token_hex(6)}"
    token = _PROBE + secrets.token_bytes(8)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, token)
            os.fsync(fd)
        finally:
            os.close(fd)
        same = path.read_bytes() == token
    except OSError:
        return ProbeResult(ok=False, reason="write_failed")
    finally:
        with contextlib.suppress(OSError):
            path.unlink()
    return ProbeResult(ok=same, reason="ok" if same else "read_back_differs")


async def disk_checks(folders: Iterable[Path], *, threshold_bytes: int) -> dict[str, str]:
    """The `/healthz` entries for the folders the centre writes to: ``"ok"``,
    ``"write_failed"``, ``"read_back_differs"`` or ``"low_disk"`` per folder name
    (``disk:<folder name>``); fixed words only, probes run in a worker thread."""
    out: dict[str, str] = {}
    for folder in dict.fromkeys(folders):
        result = await asyncio.to_thread(probe_write, folder)
        word = result.reason
        if result.ok:
            try:
                low = await asyncio.to_thread(free_bytes, folder) < threshold_bytes
            except OSError:
                low = True
            word = "low_disk" if low else "ok"
        out[f"disk:{folder.name}"] = word
    return out


def free_bytes(folder: Path) -> int:
    """Bytes an unprivileged writer may still use in `folder`'s file system."""
    st = os.statvfs(folder)
    return st.f_bavail * st.f_frsize


@dataclass(frozen=True, slots=True, kw_only=True)
class DiskState:
    folder: Path
    free_bytes: int
    low: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class DiskAlarm:
    """The low-disk alarm was raised (`low`) or cleared for one folder."""

    folder: Path
    free_bytes: int
    threshold_bytes: int
    low: bool


class DiskWatch:
    """Low-disk alarm over a few folders; `check()` returns the changes only.

    A folder that cannot be measured (unmounted, vanished) counts as low: not knowing
    whether evidence can be written is itself the alarm."""

    __slots__ = ("_low", "folders", "measure", "threshold_bytes")

    def __init__(
        self,
        folders: Iterable[Path],
        *,
        threshold_bytes: int,
        measure: Callable[[Path], int] = free_bytes,
    ) -> None:
        self.folders = tuple(dict.fromkeys(folders))
        self.threshold_bytes = threshold_bytes
        self.measure = measure
        self._low: dict[Path, bool] = {}

    def states(self) -> list[DiskState]:
        out = []
        for folder in self.folders:
            try:
                free = self.measure(folder)
            except OSError:
                free = 0
            out.append(DiskState(folder=folder, free_bytes=free, low=free < self.threshold_bytes))
        return out

    def low_folders(self) -> tuple[str, ...]:
        """The names of the folders the last `check()` found low (the raised alarms)."""
        return tuple(sorted(folder.name for folder, low in self._low.items() if low))

    def check(self) -> list[DiskAlarm]:
        changes = []
        for state in self.states():
            if self._low.get(state.folder, False) != state.low:
                self._low[state.folder] = state.low
                changes.append(
                    DiskAlarm(
                        folder=state.folder,
                        free_bytes=state.free_bytes,
                        threshold_bytes=self.threshold_bytes,
                        low=state.low,
                    )
                )
                (log.error if state.low else log.info)(
                    "low_disk" if state.low else "low_disk_cleared",
                    folder=str(state.folder),
                    free_mb=state.free_bytes // 1_000_000,
                    threshold_mb=self.threshold_bytes // 1_000_000,
                )
        return changes


def secure_files(*, folders: Iterable[Path], private_files: Iterable[Path]) -> list[str]:
    """umask 077 from now on; `folders` 0700 and `private_files` (database, configuration)
    0600 when they exist and are ours. Returns what could not be changed (for a warning)."""
    os.umask(0o077)
    problems = []
    for path, mode in [(f, 0o700) for f in folders] + [(f, 0o600) for f in private_files]:
        try:
            st = path.stat()
        except FileNotFoundError:
            continue
        except OSError as exc:
            problems.append(f"{path}: {exc.strerror}")
            continue
        if stat.S_IMODE(st.st_mode) & ~mode == 0:
            continue  # already as strict (or stricter)
        try:
            path.chmod(mode)
        except OSError as exc:
            problems.append(f"{path}: {exc.strerror}")
    return problems
