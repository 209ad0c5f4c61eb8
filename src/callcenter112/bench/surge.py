"""`scripts/bench surge`: a surge of callers against the whole machine (DESIGN §7).

Starts the real server as a child process on its own temporary
configuration (many operators, a wide RTP range, `max_calls` far above the
surge, recordings on), then drives it with the simulated phones of
`simclient` from this process, in two phases on the same server:

1. **System delay** ("the system adds ≤ 1 s to the caller's wait beyond
   operator availability"): callers arrive slowly while far more operators
   than calls wait, answering at once (no ring). For each call the system's
   own delay is ``(operator_answered_at - ivr_done_at) - ring`` — the time
   between the caller's menu choice and an operator's answer that is not
   the operator's doing — read from the store; p50/p99.
2. **Surge**: callers arrive at a set rate (default 50/s, 1300 of them) with
   M operators (default 100) answering after a short ring, talking and
   hanging up; the queue grows to about 1000 waiting callers hearing prompts
   while 100 calls are bridged and recorded, then drains. Reported: answer
   time from arrival (the store's SLA, and as the callers measured it, and
   how far the two differ — "SLA figures right"), abandoned calls and their
   callback tasks, system-caused drops (target 0: calls rejected with an
   error, never answered (no final response to the INVITE in 40 s), hung
   up by the centre before an operator, or left `interrupted`),
   the peak of callers waiting and calls bridged (at the simulator and in
   the server's own `/metrics`), server and simulator CPU, and whether the
   wallboard stayed live: `/healthz` (a store query plus the live snapshot
   the wallboard renders from) polled every second from a separate process,
   its latency as a ratio to the idle latency.

Figures go to docs/benchmarks.md (`write_section("surge", …)`); `--quick`
runs a small version (a smoke test of the benchmark itself).

`--prank-mix SHARE` (issue 12) runs the prank/ghost mix instead: half the
share prank callers from a small pool of repeat numbers, half ghost (silent)
callers, the rest genuine — genuine callers' answer time with the watch list
and the silent path, side by side with the same arrivals without them, on the
real IVR/ACD rules in virtual time (`bench/prank_mix.py`). With `--real` the
same kind of mix (`prank_mix_scripts`) runs against the real server and the
wired call flow (`bench/prank_real.py`): answer times per kind and the flags
the call flow raised.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import itertools
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..net.loop import run
from ..simclient import (
    CallerScript,
    IncidentView,
    OperatorAccount,
    Progress,
    Quantiles,
    Simulation,
    SimulationPlan,
    Summary,
    plan_callers,
    read_incidents,
    summarize,
)
from ..sip.peer import Peer
from .report import write_section

__all__ = [
    "SurgeFigures",
    "SurgeServer",
    "SurgeSettings",
    "main",
    "markdown",
    "prank_mix_scripts",
    "run_surge",
]

ROOT = Path(__file__).resolve().parents[3]
MENU = {"1": "medical", "2": "fire", "3": "disaster", "4": "police"}
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 60.0
CPU_SAMPLE_S = 2.0
# No answer, abandonment or end for this long while callers wait: the server stopped serving.
STALL_S = 60.0
WRAPUP_S = 1.0
RTP_LOW = 20_000  # below the kernel's ephemeral range (32768+), where our own sockets land


@dataclass(frozen=True, slots=True, kw_only=True)
class SurgeSettings:
    operators: int = 110
    configured_operators: int = 120
    callers: int = 1400
    rate_per_s: float = 50.0
    talk_s: float = 10.0
    ring_s: tuple[float, float] = (0.5, 2.0)
    abandon_ratio: float = 0.1
    patience_s: tuple[float, float] = (30.0, 120.0)
    max_wait_s: float = 480.0
    sla_callers: int = 60
    sla_rate_per_s: float = 3.0
    recordings: bool = True
    seed: int = 112
    # RTP pairs opened at start (None: every pair the surge needs, as a centre expecting
    # one would configure; the server opens the rest one by one when they run out).
    preopen: int | None = None


@dataclass(slots=True, kw_only=True)
class WebPolls:
    count: int = 0
    failed: int = 0
    latency: Quantiles = field(default_factory=lambda: Quantiles.of(()))


@dataclass(slots=True, kw_only=True)
class SurgeFigures:
    settings: SurgeSettings
    system_delay_s: Quantiles = field(default_factory=lambda: Quantiles.of(()))
    sla_phase: Summary | None = None
    surge: Summary | None = None
    sla_vs_caller_s: Quantiles = field(default_factory=lambda: Quantiles.of(()))
    surge_duration_s: float = 0.0
    arrival_rate_per_s: float | None = None  # as achieved by the simulator
    connect_s: Quantiles = field(default_factory=lambda: Quantiles.of(()))
    dispatch_gap_s: Quantiles = field(default_factory=lambda: Quantiles.of(()))
    peak_waiting: int = 0  # at the simulator: connected, not yet talking
    peak_talking: int = 0
    peak_waiting_while_talking: tuple[int, int] = (0, 0)
    metrics_peak_queued: int | None = None
    metrics_peak_talking: int | None = None
    metrics_peak_paused: int | None = None  # operators auto-paused after missed offers
    stalled: bool = False
    server_cpu_mean: float | None = None  # share of one core over the loaded window
    server_cpu_peak: float | None = None
    simulator_cpu_mean: float | None = None
    idle_web: WebPolls = field(default_factory=WebPolls)
    loaded_web: WebPolls = field(default_factory=WebPolls)
    server_errors: int = 0
    rejected_capacity: int = 0
    failed: int = 0
    notes: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- the server


def _free_port() -> int:
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u,
        socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t,
    ):
        u.bind(("127.0.0.1", 0))
        port = int(u.getsockname()[1])
        t.bind(("127.0.0.1", port))
        return port


def _config_text(settings: SurgeSettings, data: Path, sip: int, web: int) -> str:
    pairs = settings.callers + settings.configured_operators + 200
    # Twice the pairs needed: other programs on a shared machine hold ports in this
    # range too, and the pool skips them (a full pool answers 503 "no RTP ports").
    high = min(RTP_LOW + 4 * pairs - 1, 32_767)
    operators = "".join(
        f'[[operator]]\nuser = "op{i}"\npassword = "surge-op{i}"\n'
        for i in range(1, settings.configured_operators + 1)
    )
    return f"""
[sip]
listen = "127.0.0.1:{sip}"
advertise = "127.0.0.1"
max_calls = {max(5000, 2 * settings.callers)}
[rtp]
ports = "{RTP_LOW}-{high}"
preopen = {settings.preopen if settings.preopen is not None else pairs}
[storage]
database = "{data / "surge.sqlite3"}"
recordings = "{data / "recordings"}"
[recordings]
enabled = {"true" if settings.recordings else "false"}
[web]
listen = "127.0.0.1:{web}"
city_areas = "{ROOT / "config" / "ambon-areas.toml"}"
[ivr]
prompts = "{ROOT / "sounds"}"
menu_tries = 1
input_timeout_s = 1
[queue]
ring_timeout_s = 10
max_missed = 10
wrapup_s = {WRAPUP_S:g}
position_every_s = 30
[[trunk]]
name = "carrier"
allow = ["127.0.0.0/8"]
numbers = ["112"]
{operators}
"""


class SurgeServer:
    """The server under test as a child process (its JSON log in a file)."""

    def __init__(self, directory: Path, settings: SurgeSettings) -> None:
        self.directory = directory
        self.sip_port = _free_port()
        self.web_port = _free_port()
        self.config = directory / "surge.toml"
        self.database = directory / "data" / "surge.sqlite3"
        self.log = directory / "server.log"
        (directory / "data").mkdir(parents=True, exist_ok=True)
        self.config.write_text(
            _config_text(settings, directory / "data", self.sip_port, self.web_port)
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "callcenter112", "serve", "--config", str(self.config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.directory,
            )
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited {self.proc.returncode}:\n{self.tail()}")
            if any(e.get("event") == "ready" for e in self.events()):
                return
            time.sleep(0.1)
        raise RuntimeError(f"server not ready in {READY_TIMEOUT_S:.0f} s:\n{self.tail()}")

    def events(self) -> list[dict[str, Any]]:
        out = []
        with contextlib.suppress(OSError):
            for line in self.log.read_text(errors="replace").splitlines():
                if line.startswith("{"):
                    with contextlib.suppress(ValueError):
                        out.append(json.loads(line))
        return out

    def tail(self, chars: int = 4000) -> str:
        with contextlib.suppress(OSError):
            return self.log.read_text(errors="replace")[-chars:]
        return ""

    def cpu_seconds(self) -> float | None:
        """utime + stime of the server process (proc(5))."""
        if self.proc is None:
            return None
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# --------------------------------------------------------------------------- the web poller


def _poll_web(base: str, out: Path, every_s: float, count: int, duration_s: float) -> int:
    """`--poll-web`: GET /healthz every `every_s` (and /metrics every 5th time), one JSON
    line each, until `count` polls, `duration_s`, or SIGTERM. A process of its own, so
    the simulator's busy loop does not colour the latencies."""
    stop = False

    def on_term(signum: int, frame: Any) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    end = time.monotonic() + duration_s
    n = 0
    with out.open("w") as f:
        while not stop and n < count and time.monotonic() < end:
            started = time.monotonic()
            record: dict[str, Any] = {"at": time.time()}
            try:
                with urllib.request.urlopen(f"{base}/healthz", timeout=10) as response:
                    response.read()
                    record["status"] = response.status
            except urllib.error.HTTPError as exc:
                record["status"] = exc.code
            except (OSError, ValueError) as exc:
                record["status"] = 0
                record["error"] = str(exc)
            record["latency_s"] = time.monotonic() - started
            if n % 5 == 0:
                with contextlib.suppress(OSError, ValueError):
                    with urllib.request.urlopen(f"{base}/metrics", timeout=10) as response:
                        text = response.read().decode("utf-8", "replace")
                    record["queued"] = _metric(text, "callcenter112_calls_queued")
                    record["talking"] = _metric(text, 'callcenter112_calls{phase="talking"}')
                    record["paused"] = _metric(text, 'callcenter112_operators{state="paused"}')
            f.write(json.dumps(record) + "\n")
            f.flush()
            n += 1
            time.sleep(max(0.0, every_s - (time.monotonic() - started)))
    return 0


def _metric(text: str, name: str) -> int | None:
    match = re.search(rf"^{re.escape(name)} ([0-9.eE+-]+)$", text, re.M)
    return int(float(match.group(1))) if match else None


async def _start_poller(
    base: str, out: Path, *, every_s: float, count: int, duration_s: float
) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "callcenter112.bench.surge",
        "--poll-web",
        base,
        "--poll-out",
        str(out),
        "--poll-every",
        str(every_s),
        "--poll-count",
        str(count),
        "--poll-duration",
        str(duration_s),
        stdin=subprocess.DEVNULL,
    )


async def _stop_poller(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
    try:
        async with asyncio.timeout(30):
            await proc.wait()
    except TimeoutError:
        proc.kill()
        await proc.wait()


def _read_polls(path: Path) -> tuple[WebPolls, list[dict[str, Any]]]:
    rows = []
    with contextlib.suppress(OSError):
        for line in path.read_text().splitlines():
            with contextlib.suppress(ValueError):
                rows.append(json.loads(line))
    ok = [r["latency_s"] for r in rows if r.get("status") == 200]
    return (
        WebPolls(count=len(rows), failed=len(rows) - len(ok), latency=Quantiles.of(ok)),
        rows,
    )


# --------------------------------------------------------------------------- phases


def _plan(
    settings: SurgeSettings,
    server: SurgeServer,
    *,
    operators: int,
    callers: int,
    rate: float,
    talk_s: float,
    ring_s: tuple[float, float],
    abandon_ratio: float,
    seed: int,
) -> SimulationPlan:
    rng = random.Random(seed)
    scripts = plan_callers(
        callers=callers,
        rate_per_s=rate,
        menu=MENU,
        talk_s=talk_s,
        digit_after_s=(0.3, 1.0),
        abandon_ratio=abandon_ratio,
        patience_s=settings.patience_s,
        caller_hangup_ratio=0.5,
        max_wait_s=settings.max_wait_s,
        rng=rng,
    )
    return SimulationPlan(
        server=Peer("udp", "127.0.0.1", server.sip_port),
        operators=tuple(
            OperatorAccount(user=f"op{i}", password=f"surge-op{i}") for i in range(1, operators + 1)
        ),
        scripts=scripts,
        talk_s=talk_s,
        ring_s=ring_s,
        seed=seed,
    )


def _print_progress(label: str) -> Callable[[Progress], None]:
    def show(progress: Progress) -> None:
        print(f"[{label}] {progress.line()}", flush=True)

    return show


async def _system_delay_phase(
    settings: SurgeSettings, server: SurgeServer, figures: SurgeFigures
) -> None:
    operators = min(settings.operators, settings.configured_operators)
    plan = _plan(
        settings,
        server,
        operators=operators,
        callers=settings.sla_callers,
        rate=settings.sla_rate_per_s,
        talk_s=2.0,
        ring_s=(0.0, 0.0),
        abandon_ratio=0.0,
        seed=settings.seed,
    )
    sim = Simulation(plan)
    await sim.run(on_progress=_print_progress("system delay"), progress_every_s=5.0)
    if sim.error is not None:
        raise RuntimeError(f"system-delay phase could not start: {sim.error}")
    incidents = await read_incidents(
        server.database, [r.call_id for r in sim.records if r.call_id], since=sim.wall_started
    )
    figures.sla_phase = summarize(sim.records, incidents)
    delays = []
    for r in sim.records:
        inc = incidents.get(r.call_id)
        if inc is None or inc.operator_answered_at is None or inc.ivr_done_at is None:
            continue
        delays.append(inc.operator_answered_at - inc.ivr_done_at - (r.operator_ring_s or 0.0))
    figures.system_delay_s = Quantiles.of(delays)


async def _surge_phase(
    settings: SurgeSettings, server: SurgeServer, figures: SurgeFigures, polls: Path
) -> None:
    plan = _plan(
        settings,
        server,
        operators=min(settings.operators, settings.configured_operators),
        callers=settings.callers,
        rate=settings.rate_per_s,
        talk_s=settings.talk_s,
        ring_s=settings.ring_s,
        abandon_ratio=settings.abandon_ratio,
        seed=settings.seed + 1,
    )
    sim = Simulation(plan)
    base = f"http://127.0.0.1:{server.web_port}"
    poller = await _start_poller(
        base, polls, every_s=1.0, count=100_000, duration_s=plan.derived_deadline_s() + 120
    )
    cpu: list[tuple[float, float]] = []  # (monotonic, server cpu seconds)
    own_start = os.times()
    loop = asyncio.get_running_loop()
    printer = _print_progress("surge")

    def track(progress: Progress) -> None:
        waiting = progress.phases.get("queue", 0) + progress.phases.get("ivr", 0)
        talking = progress.phases.get("talking", 0)
        figures.peak_waiting = max(figures.peak_waiting, waiting)
        figures.peak_talking = max(figures.peak_talking, talking)
        # The moment closest to DESIGN §7's 1000 waiting + 100 bridged, then the busiest.
        best_w, best_t = figures.peak_waiting_while_talking
        if _toward_target(waiting, talking) > _toward_target(best_w, best_t):
            figures.peak_waiting_while_talking = (waiting, talking)
        if int(progress.elapsed_s) % 5 == 0:
            printer(progress)

    async def sample_cpu(done: asyncio.Event) -> None:
        while not done.is_set():
            seconds = server.cpu_seconds()
            if seconds is not None:
                cpu.append((loop.time(), seconds))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CPU_SAMPLE_S):
                    await done.wait()

    async def watchdog(sim_task: asyncio.Task[None], done: asyncio.Event) -> None:
        """Abort a surge the server no longer serves (callers waiting, nobody answered)."""
        last: tuple[object, ...] = ()
        still_since = loop.time()
        while not done.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5.0):
                    await done.wait()
            p = sim.progress()
            waiting = p.phases.get("queue", 0) + p.phases.get("ivr", 0)
            moved = (tuple(sorted(p.outcomes.items())), p.phases.get("talking", 0))
            if moved != last or waiting == 0 or p.placed < p.total:
                last, still_since = moved, loop.time()
            elif loop.time() - still_since > STALL_S:
                figures.stalled = True
                figures.notes.append(
                    f"aborted: {waiting} callers waiting and no call answered, abandoned or "
                    f"ended for {STALL_S:.0f} s (server log: see the problems)"
                )
                sim_task.cancel()
                return

    done = asyncio.Event()
    started = loop.time()
    try:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(sample_cpu(done))
            sim_task = tg.create_task(sim.run(on_progress=track, progress_every_s=1.0))
            tg.create_task(watchdog(sim_task, done))
            await asyncio.wait([sim_task])  # returns also when the watchdog cancelled it
            done.set()
    finally:
        done.set()
        await _stop_poller(poller)
    figures.surge_duration_s = loop.time() - started
    own_end = os.times()
    busy = (own_end.user - own_start.user) + (own_end.system - own_start.system)
    figures.simulator_cpu_mean = busy / max(1e-9, figures.surge_duration_s)
    if sim.error is not None:
        raise RuntimeError(f"surge phase could not start: {sim.error}")
    if len(cpu) >= 2:
        figures.server_cpu_mean = (cpu[-1][1] - cpu[0][1]) / (cpu[-1][0] - cpu[0][0])
        figures.server_cpu_peak = max(
            (b[1] - a[1]) / (b[0] - a[0]) for a, b in itertools.pairwise(cpu)
        )
    figures.loaded_web, rows = _read_polls(polls)
    queued = [r["queued"] for r in rows if r.get("queued") is not None]
    talking = [r["talking"] for r in rows if r.get("talking") is not None]
    paused = [r["paused"] for r in rows if r.get("paused") is not None]
    figures.metrics_peak_queued = max(queued) if queued else None
    figures.metrics_peak_talking = max(talking) if talking else None
    figures.metrics_peak_paused = max(paused) if paused else None

    incidents = await read_incidents(
        server.database,
        [r.call_id for r in sim.records if r.call_id],
        since=sim.wall_started,
        settle_s=60.0,
    )
    figures.surge = summarize(sim.records, incidents)
    figures.failed = sum(1 for r in sim.records if str(r.outcome) == "failed")
    figures.rejected_capacity = sum(1 for r in sim.records if r.final_status == 503)
    figures.sla_vs_caller_s = Quantiles.of(_caller_minus_store(sim, incidents))
    figures.connect_s = Quantiles.of(
        r.connected - r.invite_sent
        for r in sim.records
        if r.connected is not None and r.invite_sent is not None
    )
    figures.dispatch_gap_s = Quantiles.of(_dispatch_gaps(sim, wrapup_s=WRAPUP_S))
    sent = sorted(r.invite_sent for r in sim.records if r.invite_sent is not None)
    if len(sent) > 1 and sent[-1] > sent[0]:
        figures.arrival_rate_per_s = (len(sent) - 1) / (sent[-1] - sent[0])


def _dispatch_gaps(sim: Simulation, *, wrapup_s: float) -> list[float]:
    """Per operator, the idle time between the end of one call and the next offer,
    beyond the wrap-up, while callers were still waiting: what the system adds to the
    queue under load ("beyond operator availability")."""
    heard = [r.operator_heard for r in sim.records if r.operator_heard is not None]
    if not heard:
        return []
    drained = max(heard)  # the last waiting caller reached an operator
    by_operator: dict[str, list[Any]] = {}
    for call in sim.operator_records:
        by_operator.setdefault(call.operator, []).append(call)
    gaps = []
    for calls in by_operator.values():
        calls.sort(key=lambda c: c.offered)
        for before, after in itertools.pairwise(calls):
            if before.ended is None or after.offered > drained or before.result != "talked":
                continue
            gaps.append(max(0.0, after.offered - before.ended - wrapup_s))
    return gaps


def _toward_target(waiting: int, talking: int) -> tuple[int, int]:
    return (min(waiting, 1000) + min(talking, 100), waiting + talking)


def _caller_minus_store(sim: Simulation, incidents: dict[str, IncidentView]) -> list[float]:
    """Caller-measured answer time minus the store's SLA, per answered call."""
    out = []
    for r in sim.records:
        inc = incidents.get(r.call_id)
        if inc is None or inc.sla_s is None or r.answer_time_s is None:
            continue
        out.append(r.answer_time_s - inc.sla_s)
    return out


async def run_surge(settings: SurgeSettings, directory: Path) -> SurgeFigures:
    """Both phases against one server started in `directory`."""
    figures = SurgeFigures(settings=settings)
    load_before = os.getloadavg()[0]
    server = SurgeServer(directory, settings)
    await asyncio.to_thread(server.start)
    try:
        idle_polls = directory / "idle-polls.jsonl"
        poller = await _start_poller(
            f"http://127.0.0.1:{server.web_port}", idle_polls, every_s=0.5, count=20, duration_s=60
        )
        await poller.wait()
        figures.idle_web, _ = _read_polls(idle_polls)
        if figures.idle_web.count in (0, figures.idle_web.failed):
            figures.notes.append("the web console did not answer /healthz while idle")
        print("[surge] phase 1: system delay with operators always free", flush=True)
        await _system_delay_phase(settings, server, figures)
        print("[surge] phase 2: the surge", flush=True)
        await _surge_phase(settings, server, figures, directory / "surge-polls.jsonl")
    finally:
        await asyncio.to_thread(server.stop)
        kept = Path(tempfile.gettempdir()) / "callcenter112-surge-server.log"
        with contextlib.suppress(OSError):
            kept.write_bytes(server.log.read_bytes())
            print(f"[surge] the server's log is kept in {kept}", flush=True)
        events = server.events()
        ended = Counter(
            f"{e.get('status')} ({e.get('reason')})"
            for e in events
            if e.get("event") == "call_ended" and e.get("status") != "completed"
        )
        if ended:
            figures.notes.append(
                "calls the server ended other than completed: "
                + ", ".join(f"{k} {v}" for k, v in ended.most_common(6))
            )
        errors = [e for e in events if e.get("level") in ("error", "critical")]
        figures.server_errors = len(errors)
        kinds = Counter(
            f"{e.get('event')}: {str(e.get('error') or e.get('why') or '')[:120]}" for e in errors
        )
        for kind, count in kinds.most_common(5):
            figures.notes.append(f"server {count} x {kind}")
        figures.notes.append(
            f"machine load average (1 min) {load_before:.1f} before, "
            f"{os.getloadavg()[0]:.1f} after: other work shares these cores"
        )
    return figures


# --------------------------------------------------------------------------- the report


def _s(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f} s"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.0f} ms"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.0f} %"


def _q(q: Quantiles, fmt: Callable[[float | None], str] = _s) -> str:
    return f"p50 {fmt(q.p50)}, p90 {fmt(q.p90)}, p99 {fmt(q.p99)}, max {fmt(q.max)} (n={q.n})"


def markdown(figures: SurgeFigures) -> str:
    st = figures.settings
    surge = figures.surge
    rows: list[tuple[str, str, str]] = []
    sd = figures.system_delay_s
    verdict = "-" if sd.p99 is None else ("met" if sd.p99 <= 1.0 else "**missed**")
    rows.append(
        (
            "system delay (menu choice → operator answer - ring), operators free",
            _q(sd),
            f"≤ 1 s: {verdict}",
        )
    )
    if surge is not None:
        outcomes = ", ".join(f"{k} {v}" for k, v in surge.outcomes.items())
        rows.append(("calls (surge)", f"{surge.calls}: {outcomes}", ""))
        rate = figures.arrival_rate_per_s
        rows.append(
            (
                "arrival rate achieved",
                "-" if rate is None else f"{rate:.1f}/s",
                f"{st.rate_per_s:g}/s asked",
            )
        )
        rows.append(("answer time from arrival (store SLA)", _q(surge.sla_s), ""))
        rows.append(
            ("answer time at the caller (INVITE → operator heard)", _q(surge.answer_time_s), "")
        )
        rows.append(
            ("INVITE → 200 OK at the caller (surge arrivals)", _q(figures.connect_s, _ms), "")
        )
        rows.append(
            (
                "operator idle beyond wrap-up before the next offer, callers waiting",
                _q(figures.dispatch_gap_s),
                "the system's delay under load",
            )
        )
        rows.append(
            (
                "caller-measured - store SLA",
                _q(figures.sla_vs_caller_s, _ms),
                "SLA figures right when small and ≥ 0",
            )
        )
        rows.append(("abandoned (callback tasks)", f"{surge.abandoned} ({surge.callbacks})", ""))
        drops_ok = "met" if surge.system_drops == 0 else "**missed**"
        rows.append(("system-caused drops", str(surge.system_drops), f"0: {drops_ok}"))
        rows.append(
            ("callers given up (no operator in time) / simulator failures", str(figures.failed), "")
        )
        rows.append(("incident disagreements", str(len(surge.problems)), "0"))
    peak_w, peak_t = figures.peak_waiting_while_talking
    target = "met" if peak_w >= 1000 and peak_t >= 100 else "not reached"
    rows.append(
        (
            "peak waiting + bridged at once (simulator)",
            f"{peak_w} + {peak_t}",
            f"1000 + 100: {target}",
        )
    )
    rows.append(
        (
            "peak queued / talking (server /metrics)",
            f"{figures.metrics_peak_queued} / {figures.metrics_peak_talking}",
            "",
        )
    )
    rows.append(
        (
            "peak operators paused (auto-pause after missed offers, /metrics)",
            str(figures.metrics_peak_paused),
            "0",
        )
    )
    rows.append(
        (
            "server CPU over the surge (mean / peak 2 s)",
            f"{_pct(figures.server_cpu_mean)} / {_pct(figures.server_cpu_peak)} of one core",
            "",
        )
    )
    rows.append(("simulator CPU (mean)", f"{_pct(figures.simulator_cpu_mean)} of one core", ""))
    idle, loaded = figures.idle_web, figures.loaded_web
    ratio = (
        None
        if idle.latency.p50 is None or loaded.latency.p50 is None
        else loaded.latency.p50 / idle.latency.p50
    )
    live = loaded.count > 0 and loaded.failed == 0
    rows.append(
        (
            "wallboard live: /healthz polls under load (failed)",
            f"{loaded.count} ({loaded.failed})",
            "live" if live else "**not live**",
        )
    )
    rows.append(("/healthz latency idle", _q(idle.latency, _ms), ""))
    rows.append(
        (
            "/healthz latency under load",
            _q(loaded.latency, _ms),
            "-" if ratio is None else f"p50 {ratio:.1f} x idle",
        )
    )
    rows.append(("server log lines at error/critical", str(figures.server_errors), "0"))
    table = "| figure | value | target |\n|---|---|---|\n" + "\n".join(
        f"| {a} | {b} | {c} |" for a, b, c in rows
    )
    intro = (
        f"Server and simulator on the same machine. Phase 1: {st.sla_callers} callers at "
        f"{st.sla_rate_per_s:g}/s, {st.operators} operators answering at once. Phase 2: "
        f"{st.callers} callers at {st.rate_per_s:g}/s, {st.operators} operators "
        f"(of {st.configured_operators} configured) ringing {st.ring_s[0]:g}-{st.ring_s[1]:g} s, "
        f"talking {st.talk_s:g} s, wrap-up {WRAPUP_S:g} s; "
        f"{st.abandon_ratio:.0%} of callers impatient "
        f"({st.patience_s[0]:g}-{st.patience_s[1]:g} s); recordings "
        f"{'on' if st.recordings else 'off'}; `rtp.preopen` "
        f"{'every pair the surge needs' if st.preopen is None else st.preopen}. "
        "Callers wait silent in the queue and hear "
        f"prompts and hold music; bridged calls carry audio both ways. Surge phase took "
        f"{figures.surge_duration_s:.0f} s."
    )
    notes = "".join(f"\n- {n}" for n in figures.notes)
    if notes:
        notes = f"\n\nNotes:{notes}"
    problems = ""
    if surge is not None and surge.problems:
        shown = "".join(f"\n- {p}" for p in surge.problems[:10])
        problems = f"\n\nFirst disagreements and failures:{shown}"
    return f"{intro}\n\n{table}{problems}{notes}\n"


async def _interruptible(coro: Coroutine[Any, Any, SurgeFigures]) -> SurgeFigures | None:
    """Run `coro`; SIGINT or SIGTERM cancel it (its clean-up stops the server) → None."""
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(coro)
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
    try:
        return await task
    except asyncio.CancelledError:
        return None
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def _run_loop(coro: Any) -> Any:
    return run(coro)


def prank_mix_scripts(
    *,
    callers: int,
    rate_per_s: float,
    share: float,
    prank_numbers: int,
    talk_s: float,
    prank_talk_s: float,
    rng: random.Random,
) -> tuple[tuple[CallerScript, ...], tuple[str, ...]]:
    """The simulator side of the prank mix for the real server: scripts and each
    caller's kind (``genuine``/``prank``/``ghost``). Pranks call from a pool of
    ``prank_numbers`` numbers (so repeat-caller and watch-list rules can fire),
    press a key and hang up after a short talk; ghosts press nothing and say
    nothing (the IVR's silent step); genuine callers press a menu key."""
    if not 0 <= share <= 1 or prank_numbers < 1:
        raise ValueError("share must be in [0, 1] and prank_numbers at least 1")
    base = plan_callers(callers=callers, rate_per_s=rate_per_s, menu=MENU, talk_s=talk_s, rng=rng)
    scripts: list[CallerScript] = []
    kinds: list[str] = []
    for script in base:
        roll = rng.random()
        if roll < share / 2:
            number = f"0813{rng.randrange(prank_numbers):08d}"
            scripts.append(
                dataclasses.replace(script, number=number, talk_s=prank_talk_s, hangs_up_first=True)
            )
            kinds.append("prank")
        elif roll < share:
            scripts.append(
                dataclasses.replace(
                    script, digit=None, expected_category="unknown", talk_s=prank_talk_s
                )
            )
            kinds.append("ghost")
        else:
            scripts.append(script)
            kinds.append("genuine")
    return tuple(scripts), tuple(kinds)


def _prank_mix(args: argparse.Namespace) -> int:
    from .prank_mix import MixSettings, compare
    from .prank_mix import markdown as mix_markdown

    share = float(args.prank_mix)
    mix = MixSettings(
        callers=300 if args.quick else 2000,
        prank_share=share / 2,
        ghost_share=share / 2,
    )
    body = mix_markdown(mix, compare(mix))
    if args.no_write or args.quick:
        print(body)
    else:
        write_section("surge_prank", "Surge with a prank/ghost mix (issue 12)", body)
    return 0


@dataclass(frozen=True, slots=True, kw_only=True)
class _RealMix:
    """The real-server prank mix's inputs (bench/prank_real.py's `MixRun`)."""

    callers: int
    operators: int
    rate: float
    talk_s: float
    share: float
    scripts: tuple[CallerScript, ...]
    kinds: tuple[str, ...]

    def server(self, directory: Path) -> SurgeServer:
        settings = SurgeSettings(
            operators=self.operators,
            configured_operators=self.operators + 2,
            callers=self.callers,
            rate_per_s=self.rate,
            talk_s=self.talk_s,
        )
        return SurgeServer(directory, settings)


def _prank_real(args: argparse.Namespace) -> int:
    from . import prank_real

    callers = 60 if args.quick else int(args.callers)
    rate = 1.0 if args.quick else float(args.rate)
    share = float(args.prank_mix)
    scripts, kinds = prank_mix_scripts(
        callers=callers,
        rate_per_s=rate,
        share=share,
        prank_numbers=5,
        talk_s=float(args.talk_s),
        prank_talk_s=2.0,
        rng=random.Random(112),
    )
    mix = _RealMix(
        callers=callers,
        operators=4 if args.quick else int(args.operators),
        rate=rate,
        talk_s=float(args.talk_s),
        share=share,
        scripts=scripts,
        kinds=kinds,
    )
    return prank_real.main(args, mix)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench surge")
    defaults = SurgeSettings()
    parser.add_argument("--operators", type=int, default=defaults.operators)
    parser.add_argument("--callers", type=int, default=defaults.callers)
    parser.add_argument("--rate", type=float, default=defaults.rate_per_s)
    parser.add_argument("--talk-s", type=float, default=defaults.talk_s)
    parser.add_argument("--abandon", type=float, default=defaults.abandon_ratio)
    parser.add_argument("--no-recordings", action="store_true")
    parser.add_argument(
        "--preopen", type=int, default=None, help="rtp.preopen (default: all the surge needs)"
    )
    parser.add_argument(
        "--prank-mix",
        type=float,
        metavar="SHARE",
        help="issue 12: this share of prank+ghost callers, with vs without the watch list",
    )
    parser.add_argument(
        "--real",
        action="store_true",
        help="with --prank-mix: against the real server (bench/prank_real.py)",
    )
    parser.add_argument("--quick", action="store_true", help="a small run (smoke test)")
    parser.add_argument("--no-write", action="store_true", help="print, do not write docs")
    parser.add_argument("--poll-web", help=argparse.SUPPRESS)
    parser.add_argument("--poll-out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--poll-every", type=float, default=1.0, help=argparse.SUPPRESS)
    parser.add_argument("--poll-count", type=int, default=100_000, help=argparse.SUPPRESS)
    parser.add_argument("--poll-duration", type=float, default=3600.0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.prank_mix is not None and args.real:  # issue 12: the wired call flow
        return _prank_real(args)
    if args.prank_mix is not None:
        return _prank_mix(args)
    if args.poll_web:
        assert args.poll_out is not None
        return _poll_web(
            args.poll_web, args.poll_out, args.poll_every, args.poll_count, args.poll_duration
        )
    settings = SurgeSettings(
        operators=args.operators,
        configured_operators=max(defaults.configured_operators, args.operators),
        callers=args.callers,
        rate_per_s=args.rate,
        talk_s=args.talk_s,
        abandon_ratio=args.abandon,
        recordings=not args.no_recordings,
        preopen=args.preopen,
    )
    if args.quick:
        settings = SurgeSettings(
            operators=10,
            configured_operators=12,
            callers=60,
            rate_per_s=10.0,
            talk_s=3.0,
            abandon_ratio=0.1,
            patience_s=(3.0, 8.0),
            sla_callers=10,
            sla_rate_per_s=2.0,
            recordings=not args.no_recordings,
        )
    with tempfile.TemporaryDirectory(prefix="callcenter112-surge-") as tmp:
        figures = _run_loop(_interruptible(run_surge(settings, Path(tmp))))
    if figures is None:
        print("surge: interrupted; nothing written", file=sys.stderr)
        return 130
    body = markdown(figures)
    if args.no_write or args.quick:
        print(body)
    else:
        write_section("surge", "Surge: 1000 queued + 100 bridged on the whole machine", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
