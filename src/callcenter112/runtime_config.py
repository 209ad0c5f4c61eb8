"""The running configuration, and applying a new one without ending a call.

A 112 centre never has a quiet minute to restart in, so a changed
configuration is applied live (`callcenter112 reload`, SIGHUP, the telecom
page). The rules:

1. **Validate first, exactly as `check-config` does.** An invalid file
   changes nothing; the result names each bad key and why.
2. **All or nothing.** Every part of the centre that depends on the
   configuration (the trunk table, the registrar's accounts, the IVR, the
   ACD's queue settings, the web's users…) is a `ConfigListener`. Each first
   *checks* the new configuration against its live state; only when every
   check passes does each *apply* it. `apply_config` only swaps references and
   never fails, so there is no half-applied state to roll back.
3. **What needs a restart waits.** Keys the process holds open (listen
   addresses, the RTP range, the storage) keep their running value; the
   result lists them as waiting, and `current` says what really runs.
4. **Calls in progress are never cut.** Listeners apply to what comes next:
   a dialog already admitted is not re-checked against a new allow list, an
   operator removed while on a call finishes it and is signed out after.

The audit entry (who, when, the diff with secrets hidden) is written by the
caller with `ReloadResult.audit_detail()`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from .config import Config, ConfigError, ConfigProblem, load_config
from .config_diff import RESTART_KEYS, ConfigDiff, diff_configs

__all__ = ["ConfigListener", "LiveConfig", "ReloadResult"]


class ConfigListener(Protocol):
    def check_config(self, new: Config, diff: ConfigDiff) -> list[ConfigProblem]:
        """Problems that forbid applying `new` now (nothing may change)."""
        ...

    def apply_config(self, new: Config, diff: ConfigDiff) -> None:
        """Swap to `new`; must not fail."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class ReloadResult:
    ok: bool
    actor: str
    source: str
    problems: tuple[str, ...] = ()
    diff: ConfigDiff = field(default_factory=lambda: ConfigDiff(changes=()))

    @property
    def applied(self) -> tuple[str, ...]:
        return tuple(c.path for c in self.diff.live) if self.ok else ()

    @property
    def waiting(self) -> tuple[str, ...]:
        return tuple(c.path for c in self.diff.waiting) if self.ok else ()

    def to_json(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "actor": self.actor,
            "source": self.source,
            "problems": list(self.problems),
            "changes": self.diff.lines(),
            "applied": list(self.applied),
            "waiting_for_restart": list(self.waiting),
        }

    def audit_detail(self) -> dict[str, object]:
        return {"source": self.source, **self.diff.to_json(), "problems": list(self.problems)}

    def summary(self) -> str:
        if not self.ok:
            return "reload refused, nothing changed:\n" + "\n".join(f"  {p}" for p in self.problems)
        if self.diff.empty:
            return "no change"
        lines = [f"applied {len(self.applied)} change(s) live"]
        lines += [f"  {c}" for c in self.diff.changes]
        if self.waiting:
            lines.append("waiting for a restart: " + ", ".join(self.waiting))
        return "\n".join(lines)


def _keep_running(old: Config, new: Config) -> Config:
    """`new` with every restart key set back to the value the process runs with."""
    updates: dict[str, object] = {}
    for path in RESTART_KEYS:
        section, key = path.split(".", 1)
        old_section = getattr(old, section)
        new_section = updates.get(section, getattr(new, section))
        if not hasattr(old_section, key) or not hasattr(new_section, key):
            continue
        value = getattr(old_section, key)
        if getattr(new_section, key) != value:
            updates[section] = new_section.model_copy(update={key: value})  # type: ignore[attr-defined]
    return new.model_copy(update=updates) if updates else new


class LiveConfig:
    """The one running `Config`; listeners follow every applied change."""

    def __init__(self, config: Config, *, path: str | Path | None = None) -> None:
        self.current = config
        self.path = Path(path) if path is not None else None
        self._listeners: list[ConfigListener] = []
        self.loader: Callable[[Path], Config] = load_config

    def listen(self, listener: ConfigListener) -> None:
        self._listeners.append(listener)

    def reload_file(self, *, actor: str) -> ReloadResult:
        """Re-read the configuration file and apply it."""
        source = str(self.path) if self.path is not None else "<none>"
        if self.path is None:
            return ReloadResult(ok=False, actor=actor, source=source, problems=("no file",))
        try:
            new = self.loader(self.path)
        except ConfigError as exc:
            return ReloadResult(
                ok=False, actor=actor, source=source, problems=tuple(str(p) for p in exc.problems)
            )
        return self.apply(new, actor=actor, source=source)

    def apply(self, new: Config, *, actor: str, source: str) -> ReloadResult:
        old = self.current
        diff = diff_configs(old, new)
        if diff.empty:
            return ReloadResult(ok=True, actor=actor, source=source, diff=diff)
        running = _keep_running(old, new)
        problems: list[str] = []
        for listener in self._listeners:
            problems += [str(p) for p in listener.check_config(running, diff)]
        if problems:
            return ReloadResult(
                ok=False, actor=actor, source=source, problems=tuple(problems), diff=diff
            )
        self.current = running
        for listener in self._listeners:
            listener.apply_config(running, diff)
        return ReloadResult(ok=True, actor=actor, source=source, diff=diff)
