"""The whole two-node topology on one machine, each part in its own network
namespace: for the demo, the cluster tests and the failover benchmark.

    trunk (SIPp) ─┐                      ┌─ node1 (callcenter112, priority 0)
    ops (baresip)─┼── bridge ── edge ────┼─ node2 (callcenter112, priority 1)
                  │  (namespace  (Kamailio)
                  │   <name>-net)        ├─ dbp (PostgreSQL 15 primary)
                  └──────────────────────└─ dbs (PostgreSQL 15 standby, streaming)

Every part is a namespace `<name>-<part>` with one veth into a bridge that
lives in the namespace `<name>-net`; addresses are 10.112.0.0/24 and exist
only inside those namespaces, so nothing reaches the host's own network.
`start` is refused while a topology of that name exists; `stop` is
idempotent and removes every process (by pid file, then whatever is left in
the namespaces), link and namespace it made, then the state directory's
run files. Needs root (ip netns).

The nodes share the PostgreSQL store through the multi-host DSN
`postgresql://postgres@10.112.0.21,10.112.0.22/callcenter112?target_session_attrs=read-write`
with `[cluster] enabled = true`: the leader is the node holding the advisory
lock (issue 15). The standby streams synchronously from the primary
(`synchronous_standby_names = '*'`), and the primary's TCP keepalives
(idle 2 s, interval 1 s, 3 probes) free a partitioned leader's lock in ~5 s,
after that leader has fenced itself (check_s + timeout_s = 3 s).
`cut node1` / `heal node1` take a part's link down and up inside its
namespace (a network partition); `sql "…"` queries the current primary.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from .kamailio import EdgeSettings, Node, render
from .nodeconfig import ROOT, node_config

__all__ = ["PARTS", "Part", "Topology", "main"]

SUBNET: Final = "10.112.0"
PG_BIN: Final = Path("/usr/lib/postgresql/15/bin")
SIP_PORT: Final = 5060
WEB_PORT: Final = 8080
PG_PORT: Final = 5432


@dataclass(frozen=True, slots=True, kw_only=True)
class Part:
    name: str  # at most 5 characters: veth names are limited to 15
    host: int  # last octet of its address

    @property
    def address(self) -> str:
        return f"{SUBNET}.{self.host}"


PARTS: Final = (
    Part(name="edge", host=2),
    Part(name="trunk", host=10),
    Part(name="node1", host=11),
    Part(name="node2", host=12),
    Part(name="dbp", host=21),
    Part(name="dbs", host=22),
    Part(name="ops", host=31),
)
_BY_NAME: Final = {p.name: p for p in PARTS}


def _run(*cmd: str, check: bool = True, user: str | None = None) -> str:
    if user is not None:
        cmd = ("runuser", "-u", user, "--", *cmd)
    done = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=120)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout


class Topology:
    """One named topology and its state directory."""

    def __init__(self, name: str, state: Path, *, python: str = sys.executable) -> None:
        if not name.isalnum() or len(name) > 6:
            raise ValueError(f"name: {name!r} must be 1-6 letters/digits (veth names)")
        self.name = name
        self.state = state.resolve()
        self.python = python

    # -- names ---------------------------------------------------------------

    def ns(self, part: str) -> str:
        return f"{self.name}-{part}"

    @property
    def net_ns(self) -> str:
        return f"{self.name}-net"

    def address(self, part: str) -> str:
        return _BY_NAME[part].address

    @property
    def dsn(self) -> str:
        hosts = ",".join(f"{self.address(p)}:{PG_PORT}" for p in ("dbp", "dbs"))
        return (
            f"postgresql://postgres@{hosts}/callcenter112"
            "?target_session_attrs=read-write&connect_timeout=2"
        )

    def exec_in(self, part: str, *cmd: str) -> list[str]:
        return ["ip", "netns", "exec", self.ns(part), *cmd]

    def namespaces(self) -> list[str]:
        ours = {self.net_ns, *(self.ns(p.name) for p in PARTS)}
        listed = _run("ip", "netns", "list").split()
        return [n for n in listed if n in ours]

    # -- start ---------------------------------------------------------------

    def start(self, *, with_operator: bool = True) -> None:
        if self.namespaces():
            raise RuntimeError(f"topology {self.name!r} exists: stop it first")
        self.state.mkdir(parents=True, exist_ok=True)
        self._clear_state()
        try:
            steps: list[tuple[str, Callable[[], None]]] = [
                ("network", self._network),
                ("databases", self._databases),
            ]
            steps += [(node, functools.partial(self._node, node)) for node in ("node1", "node2")]
            steps += [("edge", self._edge), ("ready", self._wait_ready)]
            if with_operator:
                steps.append(("operator", self._operator))
            for label, step in steps:
                began = time.monotonic()
                step()
                print(f"cluster: {label} {time.monotonic() - began:.1f}s", file=sys.stderr)
        except BaseException:
            self.stop()
            raise

    def _clear_state(self) -> None:
        """Remove what an earlier run of this topology left (only its own files)."""
        for item in self.state.iterdir():
            if item.suffix in (".log", ".pid") and item.is_file():
                item.unlink()
            elif item.name in {p.name for p in PARTS} and item.is_dir():
                shutil.rmtree(item)

    def _network(self) -> None:
        _run("ip", "netns", "add", self.net_ns)
        _run(*self.exec_in("net", "ip", "link", "add", "br0", "type", "bridge"))
        _run(*self.exec_in("net", "ip", "link", "set", "br0", "up"))
        _run(*self.exec_in("net", "ip", "link", "set", "lo", "up"))
        for part in PARTS:
            ns = self.ns(part.name)
            inner, outer = f"{self.name}-{part.name}", f"{self.name}b{part.name}"
            _run("ip", "netns", "add", ns)
            # Created inside the bridge's namespace; one end moves to the part.
            _run(*self.exec_in("net", "ip", "link", "add", outer, "type", "veth", "peer", inner))
            _run(*self.exec_in("net", "ip", "link", "set", inner, "netns", ns))
            _run(*self.exec_in("net", "ip", "link", "set", outer, "master", "br0", "up"))
            _run(*self.exec_in(part.name, "ip", "link", "set", "lo", "up"))
            _run(*self.exec_in(part.name, "ip", "link", "set", inner, "name", "eth0"))
            _run(*self.exec_in(part.name, "ip", "addr", "add", f"{part.address}/24", "dev", "eth0"))
            _run(*self.exec_in(part.name, "ip", "link", "set", "eth0", "up"))

    def _spawn(self, part: str, label: str, cmd: Sequence[str], *, cwd: Path | None = None) -> int:
        log = (self.state / f"{label}.log").open("wb")
        proc = subprocess.Popen(
            self.exec_in(part, *cmd),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=cwd or self.state,
            start_new_session=True,
        )
        log.close()
        (self.state / f"{label}.pid").write_text(str(proc.pid))
        return proc.pid

    def _databases(self) -> None:
        if not (PG_BIN / "initdb").exists():
            raise RuntimeError("PostgreSQL 15 is not installed (postgresql-15)")
        for part in ("dbp", "dbs"):
            d = self.state / part
            if d.exists():
                shutil.rmtree(d)
            d.mkdir()
            shutil.chown(d, "postgres", "postgres")
            d.chmod(0o700)
        # The state directory must be reachable by the postgres user.
        self.state.chmod(0o755)
        primary = self.state / "dbp"
        _run(
            str(PG_BIN / "initdb"), "-D", str(primary / "data"), "-U", "postgres",
            "--auth=trust", "-E", "UTF8", "--no-sync", user="postgres",
        )  # fmt: skip
        with (primary / "data" / "pg_hba.conf").open("a") as hba:
            # Demo only: trust inside the cluster's private subnet.
            hba.write(f"host all all {SUBNET}.0/24 trust\n")
            hba.write(f"host replication all {SUBNET}.0/24 trust\n")
        self._pg_start("dbp")
        _run(
            *self.exec_in("dbp", "runuser", "-u", "postgres", "--", str(PG_BIN / "createdb"),
                          "-h", str(primary), "-p", str(PG_PORT), "callcenter112"),
        )  # fmt: skip
        standby = self.state / "dbs"
        _run(
            *self.exec_in("dbs", "runuser", "-u", "postgres", "--", str(PG_BIN / "pg_basebackup"),
                          "-h", self.address("dbp"), "-p", str(PG_PORT), "-U", "postgres",
                          "-D", str(standby / "data"), "-R", "-X", "stream", "-c", "fast"),
        )  # fmt: skip
        self._pg_start("dbs")
        # Synchronous from now on (before the standby existed every COMMIT would wait).
        for sql in ("ALTER SYSTEM SET synchronous_standby_names = '*'", "SELECT pg_reload_conf()"):
            _run(
                *self.exec_in("dbp", "runuser", "-u", "postgres", "--", str(PG_BIN / "psql"),
                              "-h", str(primary), "-p", str(PG_PORT), "-At", "-c", sql),
            )  # fmt: skip

    def _pg_start(self, part: str) -> None:
        d = self.state / part
        options = (
            f"-c listen_addresses={self.address(part)} -c port={PG_PORT} "
            f"-c unix_socket_directories={d} -c tcp_keepalives_idle=2 "
            "-c tcp_keepalives_interval=1 -c tcp_keepalives_count=3"
        )
        _run(
            *self.exec_in(part, "runuser", "-u", "postgres", "--", str(PG_BIN / "pg_ctl"),
                          "-D", str(d / "data"), "-l", str(d / "postgres.log"),
                          "-o", options, "-w", "-t", "60", "start"),
        )  # fmt: skip

    def _node(self, part: str) -> None:
        d = self.state / part
        (d / "data").mkdir(parents=True, exist_ok=True)
        config = node_config(
            listen=self.address(part),
            sip_port=SIP_PORT,
            web_port=WEB_PORT,
            rtp=(20000, 20199),
            data=d / "data",
            edge_networks=(f"{self.address('edge')}/32",),
            database=self.dsn,
        )
        (d / "callcenter112.toml").write_text(config)
        self._spawn(
            part,
            part,
            [
                self.python,
                "-m",
                "callcenter112",
                "serve",
                "--config",
                str(d / "callcenter112.toml"),
            ],
            cwd=d,
        )

    def _edge(self) -> None:
        settings = EdgeSettings(
            listen_host=self.address("edge"),
            listen_port=SIP_PORT,
            nodes=(
                Node(host=self.address("node1"), port=SIP_PORT, priority=0),
                Node(host=self.address("node2"), port=SIP_PORT, priority=1),
            ),
            trunk_nets=(f"{self.address('trunk')}/32",),
        )
        d = self.state / "edge"
        cfg = render(settings, d)
        run = d / "run"
        run.mkdir(exist_ok=True)
        check = subprocess.run(
            ["kamailio", "-c", "-f", str(cfg)], check=False, capture_output=True, text=True
        )
        if check.returncode != 0:
            raise RuntimeError(f"kamailio -c refused the edge config:\n{check.stderr[-2000:]}")
        self._spawn(
            "edge",
            "edge",
            ["kamailio", "-DD", "-E", "-f", str(cfg), "-Y", str(run), "-m", "64", "-M", "8"],
        )

    def _operator(self) -> None:
        d = self.state / "ops"
        d.mkdir(exist_ok=True)
        (d / "config").write_text(
            f"sip_listen {self.address('ops')}:5060\n"
            f"net_interface eth0\n"
            "module_path /usr/lib/baresip/modules\n"
            "module g711.so\nmodule ausine.so\nmodule aubridge.so\n"
            "module account.so\nmodule menu.so\n"
            "audio_source ausine,440\naudio_player aubridge,nil\n"
        )
        (d / "accounts").write_text(
            f"<sip:op1@{self.address('edge')}:{SIP_PORT}>;auth_pass=secret1;"
            "answermode=auto;regint=60;audio_codecs=PCMU,PCMA\n"
        )
        self._spawn("ops", "ops", ["baresip", "-f", str(d)], cwd=d)

    def _wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        for part in ("node1", "node2"):
            log = self.state / f"{part}.log"
            while '"event": "ready"' not in _read(log) and '"event":"ready"' not in _read(log):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{part} not ready:\n{_read(log)[-3000:]}")
                self._check_alive(part)
                time.sleep(0.2)

    def _check_alive(self, label: str) -> None:
        pid = int((self.state / f"{label}.pid").read_text())
        with contextlib.suppress(ChildProcessError):
            done, _ = os.waitpid(pid, os.WNOHANG)
            if done:
                raise RuntimeError(f"{label} exited:\n{_read(self.state / f'{label}.log')[-3000:]}")

    # -- use -----------------------------------------------------------------

    def call(self, *, calls: int = 1, caller: str = "0819000001", talk_ms: int = 1500) -> int:
        """SIPp trunk calls from the trunk namespace through the edge; SIPp's exit code."""
        d = self.state / "trunk"
        d.mkdir(exist_ok=True)
        scenario = (
            (ROOT / "tests" / "sipp" / "caller.xml.in")
            .read_text()
            .replace("@CALLER@", caller)
            .replace("@PAUSE_BEFORE_MS@", "300")
            .replace("@MEDIA@", "")
            .replace("@TALK_MS@", str(talk_ms))
        )
        (d / "caller.xml").write_text(scenario)
        cmd = self.exec_in(
            "trunk", "sipp", f"{self.address('edge')}:{SIP_PORT}", "-sf", str(d / "caller.xml"),
            "-s", "112", "-i", self.address("trunk"), "-p", "5060", "-mp", "40000",
            "-m", str(calls), "-l", "4", "-timeout", "60s", "-timeout_error", "-nostdin",
            "-aa", "-trace_err",
        )  # fmt: skip
        done = subprocess.run(cmd, check=False, cwd=d, capture_output=True, text=True, timeout=120)
        (d / "sipp.out").write_text(done.stdout + done.stderr)
        return done.returncode

    def kill(self, part: str) -> None:
        """SIGKILL one node (or the edge, or the operator) as a machine dying would."""
        pid_file = self.state / f"{part}.pid"
        if part not in ("node1", "node2", "edge", "ops") or not pid_file.exists():
            raise ValueError(f"kill: {part!r} is not a running node1/node2/edge/ops")
        pid = int(pid_file.read_text())
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)

    def link(self, part: str, *, up: bool) -> None:
        """A network partition: `part`'s only link down (or up again) in its namespace."""
        if part not in _BY_NAME:
            raise ValueError(f"{part!r} is not one of {', '.join(_BY_NAME)}")
        _run(*self.exec_in(part, "ip", "link", "set", "eth0", "up" if up else "down"))

    def sql(self, query: str) -> str:
        """`query` on the current primary (psql -At: one row a line, `|` between)."""
        for part in ("dbp", "dbs"):
            out = subprocess.run(
                self.exec_in(part, "runuser", "-u", "postgres", "--", str(PG_BIN / "psql"),
                             "-h", str(self.state / part), "-p", str(PG_PORT), "-At",
                             "-d", "callcenter112", "-c", "SELECT pg_is_in_recovery()"),
                check=False, capture_output=True, text=True, timeout=30,
            )  # fmt: skip
            if out.stdout.strip() == "f":
                return _run(
                    *self.exec_in(part, "runuser", "-u", "postgres", "--", str(PG_BIN / "psql"),
                                  "-h", str(self.state / part), "-p", str(PG_PORT), "-At",
                                  "-d", "callcenter112", "-c", query),
                )  # fmt: skip
        raise RuntimeError("no primary database is running")

    def rotation(self, part: str, *, taking_calls: bool) -> None:
        """Take a node out of the edge's rotation (planned switch-over) or back in."""
        if part not in ("node1", "node2"):
            raise ValueError(f"{part!r} is not node1 or node2")
        state = "a" if taking_calls else "d"
        uri = f"sip:{self.address(part)}:{SIP_PORT}"
        ctl = f"unix:{self.state / 'edge' / 'kamailio.ctl'}"
        _run("kamcmd", "-s", ctl, "dispatcher.set_state", state, "1", uri)

    def status(self) -> dict[str, object]:
        alive: dict[str, bool] = {}
        for pid_file in sorted(self.state.glob("*.pid")):
            pid = int(pid_file.read_text())
            alive[pid_file.stem] = _pid_alive(pid)
        replication = ""
        if self.ns("dbp") in self.namespaces():
            replication = _run(
                *self.exec_in("dbp", "runuser", "-u", "postgres", "--", str(PG_BIN / "psql"),
                              "-h", str(self.state / "dbp"), "-p", str(PG_PORT), "-At", "-c",
                              "SELECT application_name || ' ' || state FROM pg_stat_replication"),
                check=False,
            ).strip()  # fmt: skip
        return {
            "name": self.name,
            "namespaces": self.namespaces(),
            "processes": alive,
            "replication": replication,
            "addresses": {p.name: p.address for p in PARTS},
        }

    # -- stop ----------------------------------------------------------------

    def stop(self) -> None:
        """Idempotent: everything this topology made goes, whatever state it is in."""
        for part in ("dbs", "dbp"):
            data = self.state / part / "data"
            if (data / "postmaster.pid").exists():
                _run(
                    "runuser", "-u", "postgres", "--", str(PG_BIN / "pg_ctl"), "-D", str(data),
                    "-m", "fast", "-w", "-t", "20", "stop", check=False,
                )  # fmt: skip
        for pid_file in sorted(self.state.glob("*.pid")):
            with contextlib.suppress(ValueError):
                _terminate(int(pid_file.read_text()))
            pid_file.unlink()
        present = set(self.namespaces())
        for ns in present:
            # Anything still running in our namespaces is ours (SIPp, kamailio children).
            for pid in _run("ip", "netns", "pids", ns, check=False).split():
                _terminate(int(pid))
        for ns in present:
            _run("ip", "netns", "del", ns, check=False)


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _terminate(pid: int, grace: float = 5.0) -> None:
    """SIGTERM the process group `pid` leads (every process started by the script
    leads its own session), then SIGKILL after `grace`."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            try:
                os.killpg(pid, sig)
            except ProcessLookupError:
                os.kill(pid, sig)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            if not _pid_alive(pid):
                return
            time.sleep(0.05)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/cluster", description=__doc__.split("\n")[0])
    parser.add_argument(
        "command",
        choices=["start", "stop", "status", "call", "kill", "out", "in", "cut", "heal", "sql"],
    )
    parser.add_argument(
        "part",
        nargs="?",
        help="kill: node1, node2, edge or ops; out/in: node1 or node2; cut/heal: any part;"
        " sql: the query",
    )
    parser.add_argument("--name", default="cc112", help="namespace prefix (1-6 characters)")
    parser.add_argument("--state", type=Path, default=None, help="state directory")
    parser.add_argument("--calls", type=int, default=1, help="for `call`: how many")
    parser.add_argument("--caller", default="0819000001", help="for `call`: the number")
    parser.add_argument("--no-operator", action="store_true", help="no baresip operator")
    args = parser.parse_args(argv)
    state = args.state or Path(os.environ.get("TMPDIR", "/tmp")) / f"callcenter112-{args.name}"
    try:
        topo = Topology(args.name, state)
        if args.command == "start":
            topo.start(with_operator=not args.no_operator)
            print(json.dumps(topo.status(), indent=2))
        elif args.command == "stop":
            topo.stop()
        elif args.command == "status":
            print(json.dumps(topo.status(), indent=2))
        elif args.command == "kill":
            topo.kill(str(args.part))
        elif args.command in ("cut", "heal"):
            topo.link(str(args.part), up=args.command == "heal")
        elif args.command == "sql":
            print(topo.sql(str(args.part)), end="")
        elif args.command in ("out", "in"):
            topo.rotation(str(args.part), taking_calls=args.command == "in")
        else:
            return topo.call(calls=args.calls, caller=args.caller)
    except (RuntimeError, ValueError) as exc:
        print(f"cluster: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
