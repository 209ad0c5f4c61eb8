"""PostgreSQL 15 servers that the tests start themselves (reusable by any test file).

Each server is a throw-away cluster: ``initdb`` into a temporary folder, a free
port on 127.0.0.1, trust authentication for loopback only, no Unix socket
outside its own folder. PostgreSQL refuses to run as root, so when the suite
runs as root every server command runs as the ``postgres`` system user
(``runuser -u postgres --``) on a folder owned by it.

Use it through the fixtures (import them into a test module, or from
conftest):

* ``pg_server`` (session) — one primary for the whole run; ``pg_dsn``
  (function) — a fresh, empty database on it for each test
  (``postgresql://postgres@127.0.0.1:PORT/tN``);
* ``pg_pair`` (function) — a primary plus a **synchronous** standby made by
  ``pg_basebackup -R`` (``synchronous_standby_names``, so a commit returns
  only once the standby has it): tests kill the primary
  (``PgServer.crash()`` = ``pg_ctl stop -m immediate``) and promote the standby
  (``PgServer.promote()``); ``PgPair.multi_host_dsn`` names both hosts with
  ``target_session_attrs=read-write``.

When the binaries are missing the fixtures skip (and tests/conftest.py turns
that skip into a failure under CI=true: scripts/setup --peers installs
``postgresql-15``).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

import pytest

__all__ = ["PG_BIN", "PgPair", "PgServer", "free_port", "pg_dsn", "pg_pair", "pg_server"]

PG_BIN = Path(os.environ.get("CALLCENTER112_PG_BIN", "/usr/lib/postgresql/15/bin"))
_START_TIMEOUT_S = 60


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_server_user(argv: list[str]) -> list[str]:
    """PostgreSQL will not run as root: run its commands as `postgres` then."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *argv]
    return argv


def _run(
    argv: list[str], *, netns: str | None = None, **kwargs: object
) -> subprocess.CompletedProcess[str]:
    """Run a server command (as `postgres` under root), inside network namespace `netns`."""
    command = _as_server_user(argv)
    if netns is not None:
        command = ["ip", "netns", "exec", netns, *command]
    return subprocess.run(  # type: ignore[call-overload, no-any-return]
        command, check=True, capture_output=True, text=True, **kwargs
    )


def _owned_tempdir(prefix: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    if os.geteuid() == 0:
        shutil.chown(path, "postgres", "postgres")
    path.chmod(0o700)
    return path


@dataclass
class PgServer:
    """One running cluster. `data` is its folder; `port` its TCP port on `address`
    (127.0.0.1, or an address inside the network namespace `netns`)."""

    data: Path
    port: int
    address: str = "127.0.0.1"
    netns: str | None = None
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log = self.data.parent / f"{self.data.name}.log"

    @property
    def host(self) -> str:
        return f"{self.address}:{self.port}"

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@{self.address}:{self.port}/{database}"

    # -- lifecycle

    @classmethod
    def initdb(cls, root: Path, name: str = "primary", **settings: str) -> PgServer:
        data = root / name
        _run(
            [
                str(PG_BIN / "initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ]
        )
        server = cls(data=data, port=free_port())
        server.configure(
            listen_addresses="'127.0.0.1'",
            unix_socket_directories=f"'{data}'",
            wal_level="replica",
            max_wal_senders="5",
            hot_standby="on",
            **settings,
        )
        with (data / "pg_hba.conf").open("a") as f:
            f.write("host replication postgres 127.0.0.1/32 trust\n")
        return server

    def configure(self, **settings: str) -> None:
        """Append ``name = value`` lines to postgresql.auto.conf (values quoted by the caller)."""
        lines = "".join(f"{k} = {v}\n" for k, v in settings.items())
        conf = self.data / "postgresql.auto.conf"
        text = conf.read_text() if conf.exists() else ""
        conf.write_text(text + lines)

    def start(self) -> None:
        _run(
            [
                str(PG_BIN / "pg_ctl"),
                "-D",
                str(self.data),
                "-l",
                str(self.log),
                "-w",
                "-t",
                str(_START_TIMEOUT_S),
                "-o",
                f"-p {self.port}",
                "start",
            ],
            netns=self.netns,
        )

    def stop(self) -> None:
        with suppress(subprocess.CalledProcessError):
            _run(
                [str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"],
                netns=self.netns,
            )

    def crash(self) -> None:
        """``pg_ctl stop -m immediate``: the server dies as in a power cut of its process."""
        _run(
            [str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"],
            netns=self.netns,
        )

    def promote(self) -> None:
        _run([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-w", "promote"])

    def psql(self, sql: str, database: str = "postgres") -> str:
        out = _run(
            [
                str(PG_BIN / "psql"),
                "-X",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                self.address,
                "-p",
                str(self.port),
                "-U",
                "postgres",
                "-d",
                database,
                "-c",
                sql,
            ],
            netns=self.netns,
        )
        return out.stdout.strip()

    def base_backup(self, root: Path, name: str = "standby") -> PgServer:
        """A streaming standby of this server (``pg_basebackup -R``), not started."""
        data = root / name
        _run(
            [
                str(PG_BIN / "pg_basebackup"),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                "postgres",
                "-D",
                str(data),
                "-R",
                "-X",
                "stream",
                "--no-sync",
            ]
        )
        standby = PgServer(data=data, port=free_port())
        # The copy carries the primary's settings: once promoted, a standby that still
        # waited for a synchronous standby of its own would block every COMMIT.
        standby.configure(
            synchronous_standby_names="''",
            unix_socket_directories=f"'{data}'",
            primary_conninfo=f"'host=127.0.0.1 port={self.port} user=postgres "
            f"application_name={name}'",
        )
        return standby


@dataclass
class PgPair:
    primary: PgServer
    standby: PgServer

    @property
    def multi_host_dsn(self) -> str:
        return (
            f"postgresql://postgres@{self.primary.host},{self.standby.host}/postgres"
            "?target_session_attrs=read-write&connect_timeout=2"
        )


def _available() -> bool:
    return (PG_BIN / "initdb").exists() and shutil.which("runuser") is not None


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    if not _available():
        pytest.skip(f"PostgreSQL 15 is not installed ({PG_BIN}/initdb missing)")
    root = _owned_tempdir("cc112-pg-")
    server = PgServer.initdb(root, fsync="off", max_connections="200")
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


_databases = iter(range(1, 1_000_000))


@pytest.fixture
def pg_dsn(pg_server: PgServer) -> Iterator[str]:
    """A new empty database for one test; dropped afterwards."""
    name = f"t{next(_databases)}_{os.getpid()}"
    pg_server.psql(f"CREATE DATABASE {name}")
    try:
        yield pg_server.dsn(name)
    finally:
        pg_server.psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def pg_pair() -> Iterator[PgPair]:
    """A primary and a synchronous streaming standby, both running."""
    if not _available():
        pytest.skip(f"PostgreSQL 15 is not installed ({PG_BIN}/initdb missing)")
    root = _owned_tempdir("cc112-pgpair-")
    primary = PgServer.initdb(root, "primary")
    primary.configure(synchronous_standby_names="'standby'", synchronous_commit="on")
    primary.start()
    standby: PgServer | None = None
    try:
        standby = primary.base_backup(root, "standby")
        standby.start()
        deadline = time.monotonic() + _START_TIMEOUT_S
        while primary.psql("SELECT sync_state FROM pg_stat_replication") != "sync":
            if time.monotonic() > deadline:
                raise TimeoutError("the standby never became synchronous")
            time.sleep(0.1)
        yield PgPair(primary=primary, standby=standby)
    finally:
        if standby is not None:
            standby.stop()
        primary.stop()
        shutil.rmtree(root, ignore_errors=True)
