"""The running centre follows its configuration live (issue 16).

`runtime_config.LiveConfig` holds the one running `Config` and applies a new
one all-or-nothing through `ConfigListener`s; this module supplies the
running centre's listeners and the ways a reload is asked for:

- `CentreFollower`: the centre's own tables — the trunk table (allow lists,
  numbers, proxy, credentials) and the edge admission's trunk networks, the
  registrar's digest accounts, the ACD's operators and queue settings, the
  IVR settings, and `centre.config` itself (agencies and everything read at
  use time). What runs now is never cut: a dialog already admitted is not
  re-checked against a new allow list, and an operator removed while a call
  is offered to them or they are on it finishes that call first; only then
  are they unregistered and taken out of the ACD (`_retire`).
- `Reloader`: `callcenter112 reload` (the control socket) and SIGHUP run the
  same `reload(actor)`; every attempt is audited (who, when, the diff with
  secrets hidden, or the problems that refused it).

Restart keys (listen addresses, the RTP range, the storage) are kept at their
running value by `LiveConfig` and reported as waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import acd as acd_mod
from .acd import AcdSettings, OperatorProfile
from .config import Config, ConfigProblem
from .config_diff import ConfigDiff
from .ivr import IvrSettings
from .logs import get_logger
from .runtime_config import LiveConfig, ReloadResult
from .sip.auth import operator_credentials

if TYPE_CHECKING:
    from .centre import Centre
    from .records import Store

__all__ = ["RETIRE_CHECK_S", "CentreFollower", "LiveWiring", "Reloader"]

log = get_logger("live_config")

# How often a removed operator who is still on a call is looked at again.
RETIRE_CHECK_S = 1.0


class CentreFollower:
    """A `ConfigListener` for the centre's trunk table, accounts, ACD and IVR."""

    def __init__(self, centre: Centre) -> None:
        self.centre = centre
        self.retiring: set[str] = set()
        self._retire_timer: asyncio.TimerHandle | None = None

    # -- check: nothing changes when any of these fail ----------------------------------

    def check_config(self, new: Config, diff: ConfigDiff) -> list[ConfigProblem]:
        problems: list[ConfigProblem] = []
        if "queue" in diff.sections():
            try:
                AcdSettings.from_config(new.queue)
            except ValueError as exc:
                problems.append(ConfigProblem(path="queue", reason=str(exc)))
        if "ivr" in diff.sections():
            try:
                IvrSettings.from_config(new.ivr)
            except ValueError as exc:
                problems.append(ConfigProblem(path="ivr", reason=str(exc)))
        return problems

    # -- apply: swaps only ----------------------------------------------------------------

    def apply_config(self, new: Config, diff: ConfigDiff) -> None:
        centre = self.centre
        sections = diff.sections()
        centre.config = new  # agencies, trunk proxies/credentials: read at use time
        if "trunk" in sections:
            self._trunks(new)
        if "operator" in sections or "sip" in sections:
            self._operators(new)
        if "queue" in sections:
            centre.desk.acd.settings = AcdSettings.from_config(new.queue)
        if "ivr" in sections:
            centre.ivr_settings = IvrSettings.from_config(new.ivr)  # calls after this one
        centre.publish("queue_changed")

    def _trunks(self, new: Config) -> None:
        centre = self.centre
        centre._trunk_nets = [(t, t.networks) for t in new.trunk]
        for t in new.trunk:
            centre.trunk_stats.setdefault(
                t.name, {"in": None, "out": None, "calls": 0, "rejected": 0}
            )
        centre.edge.set_trunk_networks(n for t in new.trunk for n in t.networks)

    def _operators(self, new: Config) -> None:
        centre = self.centre
        centre.auth.update_credentials(operator_credentials(new.operator))
        now = centre.loop.time()
        takes = {o.user: o for o in new.operator if o.takes_calls}
        for user, op in takes.items():
            self.retiring.discard(user)
            centre.desk.apply(centre.desk.acd.set_operator(OperatorProfile.from_config(op), now))
        gone = centre.operator_users - set(takes)
        centre.operator_users = set(takes) | (gone & self._busy(gone))
        self.retiring |= gone
        configured = {o.user for o in new.operator}
        # A supervisor's phone (takes_calls = false) removed: no call of theirs is in the ACD.
        for user in {b.user for b in centre.registrar.bindings()} - configured - gone:
            for event in centre.registrar.unbind_user(user):
                centre._presence_event(event)
        self._retire()

    def _busy(self, users: set[str]) -> set[str]:
        acd = self.centre.desk.acd
        snapshot = {o.user: o for o in acd.snapshot().operators}
        return {u for u in users if u in snapshot and snapshot[u].call_ref is not None}

    def _retire(self) -> None:
        """Take out every removed operator who is not on a call; look again later
        for those who are (their call finishes first)."""
        centre = self.centre
        self._retire_timer = None
        now = centre.loop.time()
        for user in sorted(self.retiring):
            try:
                centre.desk.apply(centre.desk.acd.remove_operator(user, now))
            except acd_mod.UnknownOperatorError:
                pass
            except acd_mod.AcdError:
                continue  # still on the call
            self.retiring.discard(user)
            events = centre.registrar.unbind_user(user)
            centre.operator_users.discard(user)
            for event in events:
                centre._presence_event(event)
            log.info("operator_removed", user=user)
            centre.publish("operator_changed", operator=user, data={"new": "removed"})
        if self.retiring:
            self._retire_timer = centre.loop.call_later(RETIRE_CHECK_S, self._retire)

    def close(self) -> None:
        if self._retire_timer is not None:
            self._retire_timer.cancel()


class Reloader:
    """`reload` from the control socket or SIGHUP: re-read the file, apply, audit."""

    def __init__(
        self,
        live: LiveConfig,
        store: Store,
        *,
        wall: Callable[[], float],
    ) -> None:
        self.live = live
        self.store = store
        self.wall = wall
        self._lock = asyncio.Lock()

    async def reload(self, actor: str) -> ReloadResult:
        async with self._lock:  # one reload at a time: each diffs against the one before
            result = self.live.reload_file(actor=actor)
            await self._audit(result)
            if result.ok:
                log.info("config_reloaded", actor=actor, changes=result.diff.lines())
            else:
                log.warning("config_reload_refused", actor=actor, problems=list(result.problems))
            return result

    async def _audit(self, result: ReloadResult) -> None:
        action = "config_reload" if result.ok else "config_reload_refused"
        try:
            await self.store.audit(
                actor=result.actor,
                action=action,
                target="config",
                detail=result.audit_detail(),
                at=self.wall(),
            )
        except Exception as exc:  # noqa: BLE001 - the reload itself already happened
            log.error("audit_failed", action=action, error=str(exc))

    async def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        """The control socket's `reload` command."""
        actor = str(request.get("actor") or "cli")[:100]
        return (await self.reload(actor)).to_json()

    def on_sighup(self, spawn: Callable[[Any], Any]) -> None:
        with contextlib.suppress(RuntimeError):
            spawn(self.reload("sighup"))


class LiveWiring:
    """What app.py starts for issue 16: the one `LiveConfig`, the centre's
    listeners, the control socket with `reload`, SIGHUP, and the web's seams."""

    def __init__(self, centre: Centre, store: Store, *, config_path: str) -> None:
        from .admin import MemoryConfigAdmin, TelecomServices

        self.centre = centre
        self.live = LiveConfig(centre.config, path=config_path or None)
        self.follower = CentreFollower(centre)
        self.live.listen(self.follower)
        self.reloader = Reloader(self.live, store, wall=centre.wall)
        self.services = TelecomServices(config=MemoryConfigAdmin(self.live))
        self._control: Any = None
        self._sighup = False

    async def start(self, *, install_signals: bool) -> None:
        from .net.control import ControlServer

        config = self.centre.config
        path = config.path(config.control.socket)
        control = ControlServer(path, {"reload": self.reloader.handle})
        try:
            await control.start()
        except OSError as exc:  # the centre runs on; only `reload` is unavailable
            log.error("control_socket_failed", path=str(path), error=str(exc))
        else:
            self._control = control
        if install_signals:
            import signal

            loop = self.centre.loop
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(signal.SIGHUP, self.reloader.on_sighup, self.centre.spawn)
                self._sighup = True

    def web_created(self, app: Any) -> None:
        """Register the web's `WebConfigFollower` once the console exists."""
        from .web.telecom_admin import WebConfigFollower

        self.live.listen(WebConfigFollower(app.state.web))

    async def close(self) -> None:
        self.follower.close()
        if self._sighup:
            import signal

            with contextlib.suppress(NotImplementedError, RuntimeError):
                self.centre.loop.remove_signal_handler(signal.SIGHUP)
        if self._control is not None:
            await self._control.close()
