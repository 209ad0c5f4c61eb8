"""Leadership through PostgreSQL: a session advisory lock, no home-made consensus.

Theory of operation. The nodes of a centre share one PostgreSQL (the store's,
issue 14). The leader is the node whose database session holds the advisory
lock `lock_key` (`pg_try_advisory_lock`, PostgreSQL manual §9.27.10 and
§13.3.5): the server grants it to one session at a time and frees it when that
session ends — the node exits, is killed, or its connection is dropped — so
there is no lease to expire and no clock to trust.

`Leadership.step()` is one round, driving the node's `NodeRole` (role.py):
  * no connection, or it failed: connect (bounded by `timeout_s`); failing
    that the node is FENCED (database_lost) — a leader that cannot see the
    database stops taking calls, for the lock may be someone else's by now;
  * FENCED with a connection again: database_back → FOLLOWER;
  * FOLLOWER: try the lock every `retry_s`; got it → LEADER;
  * LEADER: prove the session alive every `check_s` (a query bounded by
    `timeout_s`); an error or a timeout → drop the connection → FENCED.
`drain()` releases the lock on purpose for a planned switch-over (LEADER →
DRAINING) and `drained()` ends it (→ FOLLOWER) once the node's calls ended.
While it drains the node holds the "calls in progress" lock (`lock_key + 1`)
in shared mode; the new leader's takeover waits in `peers_idle()` until no
node holds it, so it never marks a draining node's live calls `interrupted`.
A draining node that dies frees it with its session.

Fencing order: a leader cut off from the database fences itself within
`check_s + timeout_s` (3 s by default). The server frees the lock of a
session it can no longer reach only when its TCP keepalive gives up
(`tcp_keepalives_idle/interval/count`: set them to ≥ 8 s in total, see
docs/deployment.md), so the old leader has stopped taking calls
before the other node can take the lock. A clean death (kill -9, the
machine's kernel closing the socket) frees the lock at once.

After a promotion the multi-host DSN (`target_session_attrs=read-write`)
reaches the new primary; the old primary's locks died with it, so the first
node to reconnect takes the lock.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .role import DEFAULT_LOCK_KEY, NodeRole, Role, RoleChanged, RoleInput

if TYPE_CHECKING:
    import psycopg

__all__ = ["DEFAULT_LOCK_KEY", "LeaderSettings", "Leadership"]


@dataclass(frozen=True, slots=True, kw_only=True)
class LeaderSettings:
    dsn: str
    lock_key: int = DEFAULT_LOCK_KEY
    retry_s: float = 0.5  # a follower tries the lock this often
    check_s: float = 1.0  # a leader proves its session alive this often
    timeout_s: float = 2.0  # connect or query slower than this: the database is lost

    def __post_init__(self) -> None:
        if not self.dsn.startswith(("postgresql://", "postgres://")):
            raise ValueError("dsn: leadership needs a postgresql:// database")
        for name in ("retry_s", "check_s", "timeout_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}: must be > 0")


class Leadership:
    """Drives one node's `NodeRole` from the advisory lock (see module doc)."""

    def __init__(
        self,
        settings: LeaderSettings,
        role: NodeRole,
        *,
        clock: Callable[[], float],
        on_change: Callable[[RoleChanged], None] | None = None,
    ) -> None:
        self.settings = settings
        self.role = role
        self._clock = clock
        self._on_change = on_change
        self._conn: psycopg.AsyncConnection[tuple[object, ...]] | None = None
        self._stopping = asyncio.Event()
        self._release_busy = False  # drained(): give the shared busy lock back

    def _apply(self, cause: RoleInput) -> RoleChanged | None:
        change = self.role.apply(cause, self._clock())
        if change is not None and self._on_change is not None:
            self._on_change(change)
        return change

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), self.settings.timeout_s)

    async def _query(self, sql: str, *params: object) -> tuple[object, ...] | None:
        assert self._conn is not None
        cursor = await asyncio.wait_for(self._conn.execute(sql, params), self.settings.timeout_s)
        return await cursor.fetchone()

    async def _connect(self) -> bool:
        import psycopg  # imported only for a cluster: SQLite nodes never need it

        try:
            self._conn = await asyncio.wait_for(
                psycopg.AsyncConnection.connect(
                    self.settings.dsn,
                    autocommit=True,
                    connect_timeout=max(1, round(self.settings.timeout_s)),
                    application_name="callcenter112-leader",
                ),
                self.settings.timeout_s,
            )
        except (OSError, TimeoutError, psycopg.Error):
            self._conn = None
            return False
        return True

    async def step(self) -> float:
        """One round; returns the seconds until the next one."""
        import psycopg

        s = self.settings
        if self._conn is None or self._conn.closed:
            if not await self._connect():
                self._apply(RoleInput.DATABASE_LOST)
                return s.retry_s
            self._apply(RoleInput.DATABASE_BACK)
        try:
            if self._release_busy:
                await self._query("SELECT pg_advisory_unlock_shared(%s)", self._busy_key)
                self._release_busy = False
            if self.role.role is Role.FOLLOWER:
                row = await self._query("SELECT pg_try_advisory_lock(%s)", s.lock_key)
                if row is not None and row[0] is True:
                    self._apply(RoleInput.LEADERSHIP_ACQUIRED)
                    return s.check_s
                return s.retry_s
            await self._query("SELECT 1")
            return s.check_s
        except (OSError, TimeoutError, psycopg.Error):
            await self._drop()
            self._apply(RoleInput.DATABASE_LOST)
            return s.retry_s

    async def run(self) -> None:
        """Step until `stop()` or cancelled; the lock goes with the connection."""
        try:
            while not self._stopping.is_set():
                delay = await self.step()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), delay)
        finally:
            await self._drop()

    @property
    def _busy_key(self) -> int:
        key = self.settings.lock_key + 1
        return key if key < 2**63 else -(2**63)

    async def peers_idle(self) -> None:
        """Return once no other node is draining calls (see the module doc)."""
        import psycopg

        while not self._stopping.is_set():
            if self._conn is not None and not self._conn.closed:
                try:
                    row = await self._query("SELECT pg_try_advisory_lock(%s)", self._busy_key)
                    if row is not None and row[0] is True:
                        await self._query("SELECT pg_advisory_unlock(%s)", self._busy_key)
                        return
                except (OSError, TimeoutError, psycopg.Error):
                    pass
            await asyncio.sleep(self.settings.retry_s)

    def stop(self) -> None:
        self._stopping.set()

    async def drain(self) -> RoleChanged | None:
        """Planned switch-over: give the lock up now, keep serving own calls."""
        change = self._apply(RoleInput.DRAIN_REQUESTED)
        if change is not None and self._conn is not None:
            import psycopg

            try:
                await self._query("SELECT pg_advisory_lock_shared(%s)", self._busy_key)
                await self._query("SELECT pg_advisory_unlock(%s)", self.settings.lock_key)
            except (OSError, TimeoutError, psycopg.Error):
                await self._drop()  # the lock went with the session anyway
        return change

    def drained(self) -> RoleChanged | None:
        """The draining node's last call ended: it is a follower again."""
        change = self._apply(RoleInput.LEADERSHIP_RELEASED)
        if change is not None:
            self._release_busy = True  # by the next step(), on the lock's session
        return change

    async def close(self) -> None:
        await self._drop()
