"""Leadership through a PostgreSQL advisory lock (cluster/leader.py), against a
real PostgreSQL 15 this test starts (initdb in a temporary folder, a free
port on 127.0.0.1, as the postgres user when run as root): one leader at a
time, the lock passes on a kill -9 and on a dropped session, a leader that
loses the database fences itself, a planned drain hands over."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from callcenter112.cluster.leader import DEFAULT_LOCK_KEY, LeaderSettings, Leadership
from callcenter112.cluster.role import NodeRole, Role
from harness import IN_CI, free_port

PG_BIN = Path("/usr/lib/postgresql/15/bin")
pytestmark = pytest.mark.peers


def _as_pg(argv: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


class Pg:
    def __init__(self, root: Path) -> None:
        self.data = root / "data"
        self.port = free_port()
        subprocess.run(
            _as_pg([str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres",
                    "--auth=trust", "--no-sync"]),
            check=True, capture_output=True,
        )  # fmt: skip
        with (self.data / "postgresql.auto.conf").open("a") as conf:
            conf.write(f"listen_addresses = '127.0.0.1'\nunix_socket_directories = '{self.data}'\n")

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def ctl(self, *args: str) -> None:
        subprocess.run(
            _as_pg([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l",
                    str(self.data.parent / "pg.log"), "-o", f"-p {self.port}", "-w", *args]),
            check=True, capture_output=True,
        )  # fmt: skip

    def sql(self, query: str) -> str:
        return subprocess.run(
            _as_pg([str(PG_BIN / "psql"), "-X", "-At", "-h", "127.0.0.1", "-p", str(self.port),
                    "-U", "postgres", "-c", query]),
            check=True, capture_output=True, text=True,
        ).stdout.strip()  # fmt: skip


@pytest.fixture(scope="module")
def pg() -> Iterator[Pg]:
    if not (PG_BIN / "initdb").exists():
        if IN_CI:
            pytest.fail("postgresql-15 is not installed")
        pytest.skip("postgresql-15 is not installed")
    root = Path(tempfile.mkdtemp(prefix="cc112-leader-"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    server = Pg(root)
    server.ctl("start")
    try:
        yield server
    finally:
        subprocess.run(
            _as_pg([str(PG_BIN / "pg_ctl"), "-D", str(server.data), "-m", "immediate", "stop"]),
            check=False, capture_output=True,
        )  # fmt: skip
        shutil.rmtree(root, ignore_errors=True)


def node(dsn: str, key: int, role: Role = Role.FOLLOWER) -> Leadership:
    settings = LeaderSettings(dsn=dsn, lock_key=key, retry_s=0.1, check_s=0.2, timeout_s=1.0)
    return Leadership(settings, NodeRole(role), clock=time.monotonic)


async def until(condition: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.05)


async def rounds(a: Leadership, b: Leadership, n: int) -> None:
    for _ in range(n):
        await a.step()
        await b.step()


def key() -> int:
    return DEFAULT_LOCK_KEY + free_port()  # one lock per test on the shared server


def test_one_leader_at_a_time(pg: Pg) -> None:
    async def main() -> None:
        k = key()
        a, b = node(pg.dsn, k), node(pg.dsn, k)
        await rounds(a, b, 3)
        assert {a.role.role, b.role.role} == {Role.LEADER, Role.FOLLOWER}
        await a.close()
        await b.close()

    asyncio.run(main())


def test_dropped_session_fences_the_leader_and_the_other_takes_over(pg: Pg) -> None:
    async def main() -> None:
        k = key()
        changes: list[tuple[Role, Role]] = []
        a = Leadership(
            LeaderSettings(dsn=pg.dsn, lock_key=k, retry_s=0.1, check_s=0.2, timeout_s=1.0),
            NodeRole(Role.FOLLOWER),
            clock=time.monotonic,
            on_change=lambda c: changes.append((c.before, c.after)),
        )
        b = node(pg.dsn, k)
        await a.step()
        await b.step()
        assert a.role.role is Role.LEADER and b.role.role is Role.FOLLOWER
        # The server drops the leader's session (as on a network partition seen by it).
        pg.sql(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            f" WHERE application_name = 'callcenter112-leader' AND pid IN"
            f" (SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND objid = {k % 2**32})"
        )
        await a.step()
        assert a.role.role is Role.FENCED  # self-fenced: no calls without the database
        await b.step()
        assert b.role.role is Role.LEADER
        await a.step()  # reconnects: a follower, the lock is b's
        await a.step()
        assert a.role.role is Role.FOLLOWER
        assert changes == [
            (Role.FOLLOWER, Role.LEADER),
            (Role.LEADER, Role.FENCED),
            (Role.FENCED, Role.FOLLOWER),
        ]
        await a.close()
        await b.close()

    asyncio.run(main())


HOLDER = """
import asyncio, sys, time
from callcenter112.cluster.leader import LeaderSettings, Leadership
from callcenter112.cluster.role import NodeRole, Role
async def main():
    n = Leadership(LeaderSettings(dsn=sys.argv[1], lock_key=int(sys.argv[2])),
                   NodeRole(Role.FOLLOWER), clock=time.monotonic)
    while n.role.role is not Role.LEADER:
        await asyncio.sleep(await n.step())
    print("leader", flush=True)
    await n.run()
asyncio.run(main())
"""


def test_kill_9_of_the_leader_process_frees_the_lock(pg: Pg) -> None:
    k = key()
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, pg.dsn, str(k)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "leader"

        async def main() -> None:
            b = node(pg.dsn, k)
            for _ in range(3):
                await b.step()
            assert b.role.role is Role.FOLLOWER  # the other process holds it
            holder.send_signal(signal.SIGKILL)
            holder.wait()

            async def lead() -> None:
                await until(lambda: b.role.role is Role.LEADER)

            runner = asyncio.create_task(b.run())
            await lead()
            b.stop()
            await runner

        asyncio.run(main())
    finally:
        holder.kill()
        holder.wait()


def test_database_down_fences_everyone_and_back_elects_one(pg: Pg) -> None:
    async def main() -> None:
        k = key()
        a, b = node(pg.dsn, k), node(pg.dsn, k)
        await a.step()
        await b.step()
        assert a.role.role is Role.LEADER
        pg.ctl("-m", "immediate", "stop")
        try:
            await a.step()
            await b.step()
            assert a.role.role is Role.FENCED and b.role.role is Role.FENCED
            assert not a.role.accepting_calls()
        finally:
            pg.ctl("start")
        await rounds(a, b, 3)
        assert sorted(r.role.role.value for r in (a, b)) == ["follower", "leader"]
        await a.close()
        await b.close()

    asyncio.run(main())


def test_planned_drain_hands_the_lock_over(pg: Pg) -> None:
    async def main() -> None:
        k = key()
        a, b = node(pg.dsn, k), node(pg.dsn, k)
        await a.step()
        await b.step()
        assert a.role.role is Role.LEADER
        assert await a.drain() is not None
        assert a.role.role is Role.DRAINING and a.role.refusal() is None  # still serves
        await b.step()
        assert b.role.role is Role.LEADER
        await a.step()
        assert a.role.role is Role.DRAINING  # until its own calls have ended
        assert a.drained() is not None
        await a.step()
        assert a.role.role is Role.FOLLOWER  # and it cannot take the lock back
        await a.close()
        await b.close()

    asyncio.run(main())


def test_unreachable_database_is_fenced_not_a_crash() -> None:
    async def main() -> None:
        n = node(f"postgresql://postgres@127.0.0.1:{free_port()}/postgres", 1)
        await n.step()
        assert n.role.role is Role.FENCED

    asyncio.run(main())


def test_bad_settings_name_the_key() -> None:
    with pytest.raises(ValueError, match="dsn"):
        LeaderSettings(dsn="/var/lib/db.sqlite3")
    with pytest.raises(ValueError, match="check_s"):
        LeaderSettings(dsn="postgresql://x/y", check_s=0)
