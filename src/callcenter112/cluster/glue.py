"""The running node in a cluster: leadership, takeover and drain wired to the centre (issue 15).

`ClusterNode` owns the node's `Leadership` (cluster/leader.py) and reacts to
its role changes:

  became LEADER   → reload the registrations the old leader saved, and go on
                    merging the ones another node saves every
                    REGISTRATION_MERGE_S while leading (a follower takes the
                    REGISTERs the edge sends as a last resort when no node
                    is leader, e.g. at a cold start of the cluster), then
                    `callflow.failover.take_over` (the old leader's calls become
                    `interrupted` incidents with callback tasks, their partial
                    recordings rebuilt from the database and sealed here);
  became FENCED   → no new calls (the role already refuses them), logged
                    critical: a leader that lost the database stopped;
  drain()         → planned switch-over: the lock is released at once, the
                    edge sends new calls to the other node, and when this
                    node's last call has ended it is a follower.

Every change is published to the wallboard as `node_role`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Collection, Coroutine
from pathlib import Path
from typing import Any

from ..callflow.failover import TakeoverReport, take_over
from ..config import Config
from ..logs import get_logger
from ..media.recorder import repair_wav
from ..records import Store
from .leader import LeaderSettings, Leadership
from .role import NodeRole, Role, RoleChanged

__all__ = ["ClusterNode", "ClusterSettingsError", "leader_settings"]

log = get_logger("cluster")

DRAIN_POLL_S = 0.2
# How soon a registration another node took reaches the leader's ACD. The
# cost is one indexed SELECT of a table with one row per softphone.
REGISTRATION_MERGE_S = 2.0


class ClusterSettingsError(ValueError):
    pass


def leader_settings(config: Config) -> LeaderSettings:
    c = config.cluster
    return LeaderSettings(
        dsn=c.leader_dsn(config.storage),
        lock_key=c.lock_key,
        retry_s=c.retry_s,
        check_s=c.check_s,
        timeout_s=c.timeout_s,
    )


class ClusterNode:
    """One node's leadership and what follows from it (see the module doc)."""

    def __init__(
        self,
        settings: LeaderSettings,
        *,
        store: Store,
        recordings_dir: Path,
        publish: Callable[..., None],
        own: Callable[[], Collection[str]],
        reload_registrations: Callable[[], Awaitable[None]],
        spawn: Callable[[Coroutine[Any, Any, None]], object],
        clock: Callable[[], float],
    ) -> None:
        self.store = store
        self.recordings_dir = recordings_dir
        self._publish = publish
        self._own = own
        self._reload = reload_registrations
        self._spawn = spawn
        # The centre consults this object (centre.role); a cluster node starts as a follower.
        self.role = NodeRole(Role.FOLLOWER, now=clock())
        self.leadership = Leadership(settings, self.role, clock=clock, on_change=self._changed)
        self.takeovers: list[TakeoverReport] = []
        self._merges = 0  # generation: one merge loop per leadership
        self._stopping = asyncio.Event()
        self.leader_since_wall: float | None = None

    def _changed(self, change: RoleChanged) -> None:
        log_at = log.critical if change.after is Role.FENCED else log.warning
        log_at(
            "node_role",
            before=change.before.value,
            after=change.after.value,
            cause=change.cause.value,
        )
        self._publish(
            "node_role",
            data={"role": change.after.value, "before": change.before.value},
        )
        if change.after is Role.LEADER:
            self.leader_since_wall = time.time()
            self._merges += 1
            self._spawn(self._take_over())
            self._spawn(self._merge_registrations(self._merges))

    async def _take_over(self) -> None:
        try:
            await self._reload()
        except Exception as exc:  # noqa: BLE001 - the takeover must go on
            log.error("takeover_registrations_failed", error=str(exc))
        try:
            report = await take_over(
                self.store,
                self.recordings_dir,
                own=self._own,
                wait_for_peers=self.leadership.peers_idle,
                repair=repair_wav,
            )
        except Exception as exc:  # noqa: BLE001 - retried by the next leadership
            log.critical("takeover_failed", error=str(exc))
            return
        self.takeovers.append(report)
        log.warning(
            "takeover",
            interrupted=list(report.interrupted),
            callbacks=len(report.callbacks),
            recordings_rebuilt=list(report.recordings_rebuilt),
            recordings_lost=list(report.recordings_lost),
            problems=list(report.problems[:20]),
        )
        self._publish("queue_changed")

    async def _merge_registrations(self, generation: int) -> None:
        """While this leadership lasts, take the registrations other nodes saved."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), REGISTRATION_MERGE_S)
            if self._stopping.is_set() or generation != self._merges or not self.role.runs_acd():
                return
            try:
                await self._reload()
            except Exception as exc:  # noqa: BLE001 - the next round tries again
                log.error("registration_merge_failed", error=str(exc))

    async def run(self) -> None:
        await self.leadership.run()

    def stop(self) -> None:
        self._stopping.set()
        self.leadership.stop()

    async def drain(self, active: Callable[[], int]) -> bool:
        """Planned switch-over; returns once this node's last call ended (False if
        it was not the leader)."""
        if await self.leadership.drain() is None:
            return False
        log.warning("draining", calls=active())
        while active() and self.role.role is Role.DRAINING:  # noqa: ASYNC110 - calls end anywhere
            await asyncio.sleep(DRAIN_POLL_S)
        self.leadership.drained()
        log.warning("drained")
        return True
