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
from .admin import VersionedConfigAdmin
from .callflow.capture import FLUSH_S, IncidentCapture, centre_bindings
from .config import Config, ConfigProblem
from .config_diff import ConfigDiff
from .config_source import ConfigVersion, Origin, Verdict, decide_source, sha256_text
from .ivr import IvrSettings
from .logs import get_logger
from .runtime_config import LiveConfig, ReloadResult
from .sip.auth import operator_credentials
from .sip.peer import Peer
from .trunk_tools import EndpointTrunkTools

if TYPE_CHECKING:
    from .centre import Centre
    from .records import Store

__all__ = [
    "RETIRE_CHECK_S",
    "CentreFollower",
    "LiveWiring",
    "Reloader",
    "StoreConfigAdmin",
    "StoreVersions",
    "conflict_problem",
]

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
        if self._retire_timer is not None:
            self._retire_timer.cancel()
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
            centre.operator_users.discard(user)
            # Still configured (now a supervisor's phone, takes_calls = false): stays registered.
            kept = centre.config.operator_named(user) is not None
            events = [] if kept else centre.registrar.unbind_user(user)
            for event in events:
                centre._presence_event(event)
            log.info("operator_removed", user=user)
            centre.publish("operator_changed", operator=user, data={"new": "removed"})
        if self.retiring:
            self._retire_timer = centre.loop.call_later(RETIRE_CHECK_S, self._retire)

    def close(self) -> None:
        if self._retire_timer is not None:
            self._retire_timer.cancel()


class StoreVersions:
    """The `VersionBook` of the running centre: the store's `config_versions`."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def newest(self) -> ConfigVersion | None:
        found = await self.store.list_config_versions(limit=1)
        return found[0] if found else None

    async def add(
        self, *, text: str, origin: Origin, file_sha256: str, actor: str, at: float
    ) -> ConfigVersion:
        return await self.store.add_config_version(
            text=text, origin=origin, file_sha256=file_sha256, actor=actor, at=at
        )

    async def listing(self) -> list[ConfigVersion]:
        return await self.store.list_config_versions()

    async def get(self, version: int) -> ConfigVersion | None:
        return await self.store.get_config_version(version)


class StoreConfigAdmin(VersionedConfigAdmin):
    """The web's `ConfigAdmin` on the running centre: the one `LiveConfig`,
    versions in the store, the file read from disk when compared."""

    def current_file_text(self) -> str:
        path = self.live.path
        if path is None:
            return self.file_text
        try:
            return path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return self.file_text


def conflict_problem(newest: ConfigVersion) -> str:
    return (
        f"conflict: the file was edited, and version {newest.version} ({newest.origin}, by "
        f"{newest.actor}) changed the configuration since; version {newest.version} keeps "
        "running. Decide: `callcenter112 config import FILE` (the file wins) or "
        "`callcenter112 config export` into the file (the stored version wins)"
    )


class Reloader:
    """`reload` from the control socket or SIGHUP: the file against the stored
    versions (config_source.decide_source), apply, record, audit."""

    def __init__(
        self,
        live: LiveConfig,
        store: Store,
        admin: VersionedConfigAdmin,
        *,
        wall: Callable[[], float],
    ) -> None:
        self.live = live
        self.store = store
        self.admin = admin
        self.wall = wall
        self._lock = asyncio.Lock()

    async def reload(self, actor: str) -> ReloadResult:
        async with self._lock:  # one reload at a time: each diffs against the one before
            result = await self._reload(actor)
            await self._audit(result)
            if result.ok:
                log.info("config_reloaded", actor=actor, changes=result.diff.lines())
            else:
                log.warning("config_reload_refused", actor=actor, problems=list(result.problems))
            return result

    async def _reload(self, actor: str) -> ReloadResult:
        source = str(self.live.path) if self.live.path is not None else "<none>"
        if self.live.path is None:
            return ReloadResult(ok=False, actor=actor, source=source, problems=("no file",))
        try:
            file_text = self.live.path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            return ReloadResult(ok=False, actor=actor, source=source, problems=(str(exc),))
        newest = await self.admin.book.newest()
        decision = decide_source(file_text, newest, actor=actor, at=self.wall())
        if decision.verdict is Verdict.CONFLICT and newest is not None:
            return ReloadResult(
                ok=False, actor=actor, source=source, problems=(conflict_problem(newest),)
            )
        if decision.verdict is Verdict.STORE_AHEAD:
            return ReloadResult(ok=True, actor=actor, source=f"{source} (unchanged)")
        result = self.live.reload_file(actor=actor)
        if result.ok and decision.new_version is not None:
            await self.admin.book.add(
                text=file_text,
                origin="file",
                file_sha256=sha256_text(file_text),
                actor=actor,
                at=self.wall(),
            )
        return result

    async def _audit(self, result: ReloadResult, *, action: str = "config_reload") -> None:
        action = action if result.ok else f"{action}_refused"
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
        from .admin import DirectoryPromptAdmin, TelecomServices

        self.centre = centre
        self.store = store
        self.live = LiveConfig(centre.config, path=config_path or None)
        self.follower = CentreFollower(centre)
        self.live.listen(self.follower)
        file_text = self._file_text()
        self.admin = StoreConfigAdmin(
            self.live, StoreVersions(store), file_text=file_text, clock=centre.wall
        )
        self.reloader = Reloader(self.live, store, self.admin, wall=centre.wall)
        # The SIP ladder: every message of every incident's legs (callflow/capture.py).
        config = centre.config
        self.capture = IncidentCapture(
            local=(config.sip.advertise, centre.endpoint.port or config.sip.listen.port),
            bindings=lambda: centre_bindings(centre),
            store=store,
            write=centre.spawn_write,
            wall=centre.wall,
            mono=centre.loop.time,
        )
        self.trunks = EndpointTrunkTools(centre)
        centre.on_new_day.append(self.trunks.new_day)
        centre.endpoint.transport.tap = self._tap
        self._flush_timer: asyncio.TimerHandle | None = None
        self.services = TelecomServices(
            config=self.admin,
            captures=self.capture,
            trunks=self.trunks,
            prompts=DirectoryPromptAdmin(
                config.path(config.ivr.prompts),
                # The web applies prompts in a worker thread; the library lives on the loop.
                on_change=self._prompt_changed,
            ),
        )
        self._control: Any = None
        self._sighup = False

    def _file_text(self) -> str | None:
        if self.live.path is None:
            return None
        try:
            return self.live.path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return None

    async def choose_source(self) -> None:
        """At start: seed the store from the file, or run the stored version
        when the web changed it since (a conflict keeps the stored one too)."""
        file_text = self._file_text()
        if file_text is None:
            return
        book = self.admin.book
        newest = await book.newest()
        decision = decide_source(file_text, newest, actor="system", at=self.centre.wall())
        if decision.new_version is not None:
            await book.add(
                text=file_text,
                origin="file",
                file_sha256=sha256_text(file_text),
                actor="system",
                at=self.centre.wall(),
            )
            return
        if decision.verdict in (Verdict.STORE_AHEAD, Verdict.CONFLICT) and newest is not None:
            import tomllib

            from .config import ConfigError, parse_config

            try:
                stored = parse_config(
                    tomllib.loads(newest.text),
                    source=f"stored version {newest.version}",
                    base_dir=self.live.current.base_dir,
                )
            except (ConfigError, tomllib.TOMLDecodeError) as exc:
                log.error("stored_config_unusable", version=newest.version, error=str(exc))
                return
            result = self.live.apply(
                stored, actor="system", source=f"stored version {newest.version}"
            )
            if decision.conflict:
                log.warning("config_conflict", detail=conflict_problem(newest))
            log.info("config_from_store", version=newest.version, changes=result.diff.lines())

    async def export(self, request: dict[str, Any]) -> dict[str, Any]:
        """`config export`: the running configuration as TOML."""
        import tomli_w

        from .admin import config_document

        newest = await self.admin.book.newest()
        return {
            "ok": True,
            "version": newest.version if newest is not None else None,
            "text": tomli_w.dumps(config_document(self.live.current)),
        }

    async def import_text(self, request: dict[str, Any]) -> dict[str, Any]:
        """`config import FILE`: the file wins (validated, applied, a version, audited)."""
        import tomllib

        actor = str(request.get("actor") or "cli")[:100]
        source = str(request.get("source") or "import")[:300]
        try:
            document = tomllib.loads(str(request.get("text", "")))
        except tomllib.TOMLDecodeError as exc:
            result = ReloadResult(
                ok=False, actor=actor, source=source, problems=(f"TOML syntax: {exc}",)
            )
        else:
            result = await self.admin.apply_document(
                document, actor=actor, source=source, origin="cli"
            )
        await self.reloader._audit(result, action="config_import")
        return result.to_json()

    def _prompt_changed(self, name: str) -> None:
        self.centre.loop.call_soon_threadsafe(self.reload_prompt, name)

    def reload_prompt(self, name: str) -> None:
        from .media.prompts import PromptError

        try:
            self.centre.prompts.reload(name)
        except (PromptError, OSError) as exc:
            log.error("prompt_reload_failed", prompt=name, error=str(exc))
        else:
            log.info("prompt_reloaded", prompt=name)

    def _tap(self, direction: str, data: bytes, peer: Peer) -> None:
        try:
            self.capture.tap(direction, data, peer)
            self.trunks.observe(direction, data, peer)
        except Exception as exc:  # noqa: BLE001 - never in the way of a SIP message
            log.error("sip_tap_failed", error=str(exc))

    def _flush(self) -> None:
        try:
            self.capture.flush()
        except Exception as exc:  # noqa: BLE001 - the capture must never stop the centre
            log.error("capture_flush_failed", error=str(exc))
        self._flush_timer = self.centre.loop.call_later(FLUSH_S, self._flush)

    async def start(self, *, install_signals: bool) -> None:
        from .net.control import ControlServer

        self.capture.local = (self.capture.local[0], self.centre.endpoint.port)
        self._flush()
        self.trunks.start()

        try:
            await self.choose_source()
        except Exception as exc:  # noqa: BLE001 - the file's configuration runs on
            log.error("config_source_failed", error=str(exc))

        config = self.centre.config
        path = config.path(config.control.socket)
        control = ControlServer(
            path,
            {
                "reload": self.reloader.handle,
                "config_export": self.export,
                "config_import": self.import_text,
            },
        )
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

    async def close(self) -> None:
        self.follower.close()
        self.trunks.close()
        if self._flush_timer is not None:
            self._flush_timer.cancel()
        self.capture.flush()  # the last BYEs and their answers
        if self._sighup:
            import signal

            with contextlib.suppress(NotImplementedError, RuntimeError):
                self.centre.loop.remove_signal_handler(signal.SIGHUP)
        if self._control is not None:
            await self._control.close()
