"""`scripts/bench failover`: kill -9 the node taking calls behind the Kamailio
edge, with the shipped timers and with Kamailio's defaults, side by side.

On loopback, no root: two callcenter112 nodes (A preferred, B) behind the real
Kamailio rendered from deploy/kamailio/ (callcenter112.cluster.kamailio), SIPp
placing trunk calls at a steady rate through the edge; A is killed with
SIGKILL part-way. Each caller waits `patience_s` for an answer (a carrier
gives up, or the citizen does). Reported per timer set:

* time to detect: kill → the edge marks A down (a failed probe, or a call
  attempt that timed out on A), read from the edge's log as it is written;
* time to first answered call: kill → the first call B answered (B's store);
* calls lost: placed - answered within the caller's patience (each call
  has its own caller number, 0811 + SIPp's call number, so its start time
  is known from the rate: SIPp places call n at (n - 1) / rate);
* audio lost per interrupted call: for each call cut by the kill, the audio
  of its recording that reached the database (chunks of <= 2 s, issue 14)
  against the time it had been recorded when A died (mean and worst);
* time to callbacks queued: kill → the last callback task of a cut call
  (B's takeover, issue 15).

The nodes are a cluster on one PostgreSQL the benchmark starts itself
(initdb in a temporary folder, a free port): A is started first and is the
leader; B is the follower and takes the lock when A dies.

With Kamailio's defaults (tm fr_timer 30 s, fr_inv_timer 120 s, probes every
10 s) a dead node is found by a probe only after up to 40 s and every call sent
to it waits 30 s before trying B — longer than a caller's patience
(kamailio#3446). Figures go to docs/benchmarks.md (`write_section`).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from ..cluster.kamailio import (
    DEFAULT_TIMERS,
    KAMAILIO_DEFAULT_TIMERS,
    EdgeSettings,
    EdgeTimers,
    Node,
    render,
)
from ..cluster.nodeconfig import ROOT, node_config
from .report import write_section

CALLER_PREFIX = "0811"

__all__ = ["FailoverFigures", "FailoverSettings", "main", "markdown", "run_failover"]


@dataclass(frozen=True, slots=True, kw_only=True)
class FailoverSettings:
    rate: float = 2.0  # calls per second
    duration_s: float = 60.0  # placing calls
    kill_at_s: float = 20.0
    patience_s: float = 10.0  # a caller's wait for an answer
    talk_ms: int = 2000


@dataclass(frozen=True, slots=True, kw_only=True)
class FailoverFigures:
    label: str
    placed: int
    answered_before_kill: int
    answered_after_kill: int
    lost: int
    detect_s: float | None  # None: not detected within the run
    first_answer_s: float | None
    run_s: float
    interrupted: int = 0
    audio_lost_mean_s: float | None = None
    audio_lost_max_s: float | None = None
    callbacks_s: float | None = None  # kill → the last cut call's callback task


def _free_port() -> int:
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u,
        socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t,
    ):
        u.bind(("127.0.0.1", 0))
        port = int(u.getsockname()[1])
        t.bind(("127.0.0.1", port))
        return port


PG_BIN = Path("/usr/lib/postgresql/15/bin")
STEREO_BYTES_PER_S = 2 * 8000  # G.711 stereo recordings
WAV_HEADER = 58


class _Postgres:
    """A throw-away PostgreSQL 15 on 127.0.0.1 (as `postgres` when run as root)."""

    def __init__(self, root: Path) -> None:
        self.data = root / "pg"
        self.port = _free_port()

    def _run(self, *cmd: str) -> None:
        argv = [*(("runuser", "-u", "postgres", "--") if os.geteuid() == 0 else ()), *cmd]
        subprocess.run(argv, check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        self.data.mkdir(mode=0o700)
        if os.geteuid() == 0:
            shutil.chown(self.data, "postgres", "postgres")
            shutil.chown(self.data.parent, "postgres", "postgres")
        self._run(str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres",
                  "--auth=trust", "--no-sync")  # fmt: skip
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1"
            f" -c unix_socket_directories={self.data} -c fsync=off"
        )
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.data / "log"),
                  "-o", options, "-w", "start")  # fmt: skip

    def database(self, name: str) -> str:
        self._run(str(PG_BIN / "createdb"), "-h", "127.0.0.1", "-p", str(self.port),
                  "-U", "postgres", name)  # fmt: skip
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        with contextlib.suppress(subprocess.SubprocessError):
            self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")


def _query(dsn: str, sql: str, *args: object) -> list[tuple[object, ...]]:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute(sql, args).fetchall()


class _Node:
    def __init__(self, directory: Path, rtp: tuple[int, int], dsn: str) -> None:
        self.directory = directory
        self.dsn = dsn
        self.sip_port = _free_port()
        (directory / "data").mkdir(parents=True, exist_ok=True)
        self.config = directory / "node.toml"
        self.config.write_text(
            node_config(
                listen="127.0.0.1",
                sip_port=self.sip_port,
                web_port=_free_port(),
                rtp=rtp,
                data=directory / "data",
                edge_networks=("127.0.0.0/8",),
                database=dsn,
            )
        )
        self.log = directory / "node.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "callcenter112", "serve", "--config", str(self.config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.directory,
            )
        deadline = time.monotonic() + 60
        while '"event": "ready"' not in self.log.read_text(errors="replace"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"node not ready:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.1)

    def answered_at(self) -> dict[int, float]:
        """SIPp call number → wall-clock answer time (UTC epoch seconds), from the
        shared store: answered by either node."""
        rows = _query(
            self.dsn, "SELECT caller, answered_at FROM incidents WHERE answered_at IS NOT NULL"
        )
        out: dict[int, float] = {}
        for caller, answered in rows:
            number = str(caller).removeprefix(CALLER_PREFIX)
            if number.isdigit():
                out[int(number)] = _epoch(answered)
        return out

    def wait_for(self, event: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while event not in self.log.read_text(errors="replace"):
            if time.monotonic() > deadline:
                raise RuntimeError(f"no {event} in the node's log:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.1)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()


def _epoch(value: object) -> float:
    """The store keeps UTC epoch seconds; an ISO text is read too."""
    try:
        return float(str(value))
    except ValueError:
        return datetime.datetime.fromisoformat(str(value)).timestamp()


class _LogWatch:
    """Notes when a line matching `pattern` first appears in a growing file."""

    def __init__(self, path: Path, pattern: str) -> None:
        self.path = path
        self.pattern = re.compile(pattern)
        self.seen_at: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set() and self.seen_at is None:
            with contextlib.suppress(OSError):
                if self.pattern.search(self.path.read_text(errors="replace")):
                    self.seen_at = time.time()
            time.sleep(0.05)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)


def _scenario(directory: Path, settings: FailoverSettings) -> Path:
    text = (
        (ROOT / "tests" / "sipp" / "caller.xml.in")
        .read_text()
        .replace("@CALLER@", CALLER_PREFIX + "[call_number]")
        .replace("@PAUSE_BEFORE_MS@", "300")
        .replace("@MEDIA@", "")
        .replace("@TALK_MS@", str(settings.talk_ms))
    )
    path = directory / "caller.xml"
    path.write_text(text)
    return path


def _cut_calls(dsn: str, killed: float) -> tuple[int, list[float], float | None]:
    """Calls the kill cut: how many, the audio each lost (s), kill → last callback task."""
    rows = _query(
        dsn,
        "SELECT i.id, r.started_at, coalesce((SELECT sum(length(c.data)) FROM recording_chunks c"
        " WHERE c.recording_id = r.id AND c.at <= %s), 0)"
        " FROM incidents i LEFT JOIN recordings r ON r.incident_id = i.id"
        " WHERE i.status = 'interrupted'",
        killed,
    )
    lost = [
        max(0.0, (killed - float(str(started))) - max(0, int(str(stored)) - WAV_HEADER)
            / STEREO_BYTES_PER_S)
        for _, started, stored in rows
        if started is not None
    ]  # fmt: skip
    ((last,),) = _query(
        dsn,
        "SELECT max(c.created_at) FROM callbacks c JOIN incidents i ON i.id = c.incident_id"
        " WHERE i.status = 'interrupted'",
    )
    return len({r[0] for r in rows}), lost, None if last is None else _epoch(last) - killed


def run_failover(
    label: str, timers: EdgeTimers, settings: FailoverSettings, dsn: str
) -> FailoverFigures:
    with tempfile.TemporaryDirectory(prefix="cc112-failover-") as tmp:
        base = Path(tmp)
        a = _Node(base / "a", (34000, 34399), dsn)
        b = _Node(base / "b", (34400, 34799), dsn)
        edge_port = _free_port()
        cfg = render(
            EdgeSettings(
                listen_host="127.0.0.1",
                listen_port=edge_port,
                nodes=(
                    Node(host="127.0.0.1", port=a.sip_port, priority=0),
                    Node(host="127.0.0.1", port=b.sip_port, priority=1),
                ),
                trunk_nets=("127.0.0.1/32",),
                timers=timers,
            ),
            base / "edge",
        )
        edge_log = base / "edge.log"
        edge: subprocess.Popen[bytes] | None = None
        sipp: subprocess.Popen[bytes] | None = None
        watch = _LogWatch(edge_log, rf"node sip:127\.0\.0\.1:{a.sip_port} (down|failed)")
        try:
            a.start()
            a.wait_for('"after": "leader"')  # A holds the lock before B starts
            b.start()
            (base / "run").mkdir()
            with edge_log.open("wb") as log:
                edge = subprocess.Popen(
                    ["kamailio", "-DD", "-E", "-f", str(cfg), "-Y", str(base / "run"),
                     "-m", "64", "-M", "8"],
                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                )  # fmt: skip
            time.sleep(max(2.0, timers.ping_interval_s + 1.0))  # A probed up
            placed = round(settings.rate * settings.duration_s)
            trunk = base / "trunk"
            trunk.mkdir()
            cmd = [
                "sipp", f"127.0.0.1:{edge_port}", "-sf", str(_scenario(trunk, settings)),
                "-s", "112", "-i", "127.0.0.1", "-p", str(_free_port()),
                "-mp", "36000", "-r", f"{settings.rate:g}", "-m", str(placed),
                "-recv_timeout", str(int(settings.patience_s * 1000)),
                "-timeout", f"{int(settings.duration_s + 120)}s", "-nostdin", "-aa",
            ]  # fmt: skip
            with (trunk / "sipp.out").open("wb") as out:
                sipp = subprocess.Popen(
                    cmd, cwd=trunk, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
                )
            began = time.monotonic()
            began_wall = time.time()
            time.sleep(settings.kill_at_s)
            watch.start()
            a.kill()
            killed = time.time()
            sipp.wait(settings.duration_s + settings.patience_s + 180)
            run_s = time.monotonic() - began
            watch.stop()
            time.sleep(1.0)  # the last answers reach the store
            b.wait_for('"event": "takeover"', 60)
            interrupted, lost_audio, callbacks_s = _cut_calls(dsn, killed)
            before = {n for n, t in a.answered_at().items() if t <= killed}

            def in_time(n: int, t: float) -> bool:
                return t - (began_wall + (n - 1) / settings.rate) <= settings.patience_s

            after = {n: t for n, t in b.answered_at().items() if t > killed and in_time(n, t)}
            return FailoverFigures(
                label=label,
                placed=placed,
                answered_before_kill=len(before),
                answered_after_kill=len(after),
                lost=placed - len(before | set(after)),
                detect_s=None if watch.seen_at is None else watch.seen_at - killed,
                first_answer_s=min(after.values()) - killed if after else None,
                run_s=run_s,
                interrupted=interrupted,
                audio_lost_mean_s=sum(lost_audio) / len(lost_audio) if lost_audio else None,
                audio_lost_max_s=max(lost_audio, default=None),
                callbacks_s=callbacks_s,
            )
        finally:
            watch.stop()
            for proc in (sipp, edge):
                if proc is not None and proc.poll() is None:
                    proc.terminate()
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        proc.wait(10)
                    if proc.poll() is None:
                        proc.kill()
                        proc.wait()
            a.kill()
            b.stop()


def _audio(f: FailoverFigures) -> str:
    if f.audio_lost_mean_s is None or f.audio_lost_max_s is None:
        return "no call cut"
    return (
        f"{f.audio_lost_mean_s:.2f} s mean, {f.audio_lost_max_s:.2f} s worst"
        f" ({f.interrupted} calls cut)"
    )


def _s(value: float | None) -> str:
    return "not within the run" if value is None else f"{value:.2f} s"


def markdown(figures: list[FailoverFigures], settings: FailoverSettings) -> str:
    rows = [
        "| timers | placed | answered before kill | answered after kill | lost"
        " | time to detect | time to first call answered in patience"
        " | audio lost / interrupted call | time to callbacks queued |",
        "|---|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for f in figures:
        rows.append(
            f"| {f.label} | {f.placed} | {f.answered_before_kill} | {f.answered_after_kill}"
            f" | {f.lost} | {_s(f.detect_s)} | {_s(f.first_answer_s)}"
            f" | {_audio(f)} | {_s(f.callbacks_s)} |"
        )
    return (
        f"Two nodes on loopback behind Kamailio 5.6; SIPp trunk calls at {settings.rate:g}/s"
        f" for {settings.duration_s:g} s, `kill -9` of node A at {settings.kill_at_s:g} s;"
        f" a caller waits {settings.patience_s:g} s for an answer. The nodes share one"
        " PostgreSQL; A is the leader (advisory lock), B takes over when A dies.\n\n"
        + "\n".join(rows)
        + "\n\nShipped: tm fr_timer 1 s for probes and node-bound INVITEs, probes every 1 s,"
        " one failed probe marks a node down. Kamailio defaults: fr_timer 30 s,"
        " fr_inv_timer 120 s, probes every 10 s (kamailio#3446).\n"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench failover", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a short run (smoke test)")
    parser.add_argument("--no-write", action="store_true", help="print, do not write docs")
    args = parser.parse_args(argv)
    if args.quick:
        settings = FailoverSettings(rate=2.0, duration_s=16.0, kill_at_s=5.0, talk_ms=1000)
    else:
        settings = FailoverSettings()
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    with tempfile.TemporaryDirectory(prefix="cc112-failover-pg-") as tmp:
        pg = _Postgres(Path(tmp))
        pg.start()
        try:
            figures = [
                run_failover("shipped (deploy/kamailio)", DEFAULT_TIMERS, settings,
                             pg.database("shipped")),
                run_failover("Kamailio defaults", KAMAILIO_DEFAULT_TIMERS, settings,
                             pg.database("defaults")),
            ]  # fmt: skip
        finally:
            pg.stop()
    body = markdown(figures, settings)
    if args.no_write:
        print(body)
    else:
        write_section("failover", "Failover behind Kamailio (scripts/bench failover)", body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
