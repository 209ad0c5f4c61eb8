"""`scripts/bench sip`: SIP signalling throughput and call set-up latency (DESIGN §7).

Owns the SIP benchmark: the real server (`callcenter112 serve`) pinned to one
core with `taskset`, SIPp on loopback pinned to another, three figures:

* **OPTIONS transactions/s**: SIPp's rate ramped step by step until a call
  fails, SIPp cannot keep the rate, or the ladder ends; the figure is the
  highest step with no failure.
* **REGISTER with digest**: the same ramp, each call a full digest round
  trip (REGISTER → 401 → REGISTER with credentials → 200), i.e. two
  transactions and one MD5 check; SIPp's `[authentication]` answers the
  challenge as operator op1, whose binding each registration refreshes
  (SIPp 3.6 cannot take per-call credentials from an injection file inside
  `[authentication]`).
* **Call set-up**: INVITEs to 112 at a fixed rate (300 calls/s for 10 s by
  default), each call hung up right after its ACK; SIPp's response-time
  durations (`start_rtd`/`rtd`, dumped per call with `-trace_rtt`) give
  INVITE→100 and INVITE→200 per call, from which p50/p99 are computed.

The server's CPU is read from /proc/PID/stat (utime + stime) around each
step: CPU seconds per wall second of the one core it is pinned to.

The per-source admission bucket (sip/ratelimit.py: 20 REGISTER/s per
address, by policy) would cap one SIPp at 20 registrations/s, which measures
the policy, not the server; the server is started through `--serve` below,
which lifts the bucket and nothing else.

For the latencies SIPp's timer resolution is set to 1 ms (its default,
kept for the ramps, is 10 ms); its response times are whole milliseconds.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .report import write_section

__all__ = ["main"]

ROOT = Path(__file__).resolve().parents[3]
OPERATORS = 20
OPTIONS_LADDER = (250, 500, 1000, 1500, 2000, 3000, 4000, 5000, 6000, 8000, 10000)
REGISTER_LADDER = (100, 250, 500, 750, 1000, 1500, 2000, 3000, 4000, 5000)
# DESIGN §7, call set-up targets.
TARGET_CPS = 300
TARGET_100_P99_MS = 20.0
TARGET_200_P99_MS = 100.0

OPTIONS_XML = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="bench OPTIONS">
  <send retrans="500">
    <![CDATA[
      OPTIONS sip:112@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
      From: <sip:bench@[local_ip]:[local_port]>;tag=[pid]O[call_number]
      To: <sip:112@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 OPTIONS
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
  <recv response="200"/>
</scenario>
"""

REGISTER_XML = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="bench REGISTER with digest">
  <send retrans="500">
    <![CDATA[
      REGISTER sip:[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
      From: <sip:[service]@[remote_ip]:[remote_port]>;tag=[pid]R[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 REGISTER
      Contact: <sip:[service]@[local_ip]:[local_port]>
      Max-Forwards: 70
      Expires: 3600
      Content-Length: 0
    ]]>
  </send>
  <recv response="401" auth="true"/>
  <send retrans="500">
    <![CDATA[
      REGISTER sip:[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
      From: <sip:[service]@[remote_ip]:[remote_port]>;tag=[pid]R[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 2 REGISTER
      Contact: <sip:[service]@[local_ip]:[local_port]>
      [authentication]
      Max-Forwards: 70
      Expires: 3600
      Content-Length: 0
    ]]>
  </send>
  <recv response="200"/>
</scenario>
"""

INVITE_XML = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="bench call set-up">
  <nop start_rtd="answer"/>
  <send start_rtd="trying" retrans="500">
    <![CDATA[
      INVITE sip:112@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
      From: <sip:0812[call_number]@[local_ip]:[local_port]>;tag=[pid]I[call_number]
      To: <sip:112@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: <sip:0812[call_number]@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=citizen 1 1 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 8 0 101
      a=rtpmap:8 PCMA/8000
      a=rtpmap:0 PCMU/8000
      a=rtpmap:101 telephone-event/8000
      a=fmtp:101 0-15
    ]]>
  </send>
  <recv response="100" rtd="trying"/>
  <recv response="180" optional="true"/>
  <recv response="200" rtd="answer" rrs="true"/>
  <send>
    <![CDATA[
      ACK [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
      From: <sip:0812[call_number]@[local_ip]:[local_port]>;tag=[pid]I[call_number]
      [last_To:]
      [routes]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
  <send retrans="500" start_txn="bye">
    <![CDATA[
      BYE [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
      From: <sip:0812[call_number]@[local_ip]:[local_port]>;tag=[pid]I[call_number]
      [last_To:]
      [routes]
      Call-ID: [call_id]
      CSeq: 2 BYE
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
  <recv response="200" response_txn="bye"/>
</scenario>
"""


# --------------------------------------------------------------------------- ports


def _free_port(avoid: tuple[int, int] = (0, 0)) -> int:
    """A loopback port free for UDP and TCP, outside `avoid` (an inclusive
    range: the server's RTP ports); ephemeral, so never 5060-5070."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.bind(("127.0.0.1", 0))
            port: int = u.getsockname()[1]
            if avoid[0] <= port <= avoid[1]:
                continue
            try:
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
                    t.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port")


def _free_range(pairs: int) -> tuple[int, int]:
    """An even-aligned UDP range of `pairs` RTP/RTCP pairs, all free now."""
    for _ in range(200):
        lo = random.randrange(30000, 60000 - 2 * pairs, 2)
        try:
            for p in range(lo, lo + 2 * pairs):
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                    s.bind(("127.0.0.1", p))
        except OSError:
            continue
        return lo, lo + 2 * pairs - 1
    raise RuntimeError("no free port range")


def _rtp_range() -> tuple[int, int]:
    """As many RTP pairs as the shared machine has free in one block: a
    server that falls behind holds every call it has not finished yet, and
    runs out of ports (503 "no RTP ports") before it runs out of CPU."""
    for pairs in (1000, 500, 250):
        with contextlib.suppress(RuntimeError):
            return _free_range(pairs)
    raise RuntimeError("no free RTP port range")


# --------------------------------------------------------------------------- the server


def _config(directory: Path, sip_port: int, rtp: tuple[int, int]) -> str:
    operators = "".join(
        f'[[operator]]\nuser = "op{i}"\npassword = "secret{i}"\n' for i in range(1, OPERATORS + 1)
    )
    return f"""
[sip]
listen = "127.0.0.1:{sip_port}"
advertise = "127.0.0.1"
max_calls = 2000
[rtp]
ports = "{rtp[0]}-{rtp[1]}"
preopen = 64
[storage]
database = "{directory / "db.sqlite3"}"
recordings = "{directory / "recordings"}"
[web]
enabled = false
listen = "127.0.0.1:{_free_port(avoid=rtp)}"
[ivr]
prompts = "{ROOT / "sounds"}"
[[trunk]]
name = "bench"
allow = ["127.0.0.0/8"]
numbers = ["112"]
{operators}
"""


def _serve(config_path: str) -> int:
    """`callcenter112 serve` with the per-source REGISTER bucket lifted (see
    the module docstring); runs in the server process."""
    from ..cli import main as cli_main
    from ..sip import ratelimit

    def unlimited(cls: type[ratelimit.SourceGuard], sip: object) -> ratelimit.SourceGuard:
        return cls(
            fail_limit=getattr(sip, "auth_fail_limit", 10),
            lockout_s=getattr(sip, "auth_lockout_s", 300.0),
            rate_per_s=1e9,
            burst=1e9,
        )

    ratelimit.SourceGuard.from_config = classmethod(unlimited)  # type: ignore[assignment,method-assign]
    return cli_main(["serve", "--config", config_path])


@dataclass
class BenchServer:
    directory: Path
    core: int
    sip_port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> Path:
        return self.directory / "server.log"

    def start(self) -> None:
        rtp = _rtp_range()
        self.sip_port = _free_port(avoid=rtp)
        config = self.directory / "bench.toml"
        config.write_text(_config(self.directory, self.sip_port, rtp))
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [
                    "taskset",
                    "-c",
                    str(self.core),
                    sys.executable,
                    "-m",
                    "callcenter112.bench.sip",
                    "--serve",
                    str(config),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.directory,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited:\n{self.log.read_text()[-3000:]}")
            if '"event": "ready"' in self.log.read_text(errors="replace"):
                return
            time.sleep(0.1)
        raise RuntimeError(f"server not ready:\n{self.log.read_text()[-3000:]}")

    def cpu_seconds(self) -> float:
        assert self.proc is not None
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        # Fields 14 and 15 of proc(5) (utime, stime); [0] here is field 3.
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def waited_seconds(self) -> float:
        """Time the event-loop thread was runnable but waiting for its core
        (schedstat's second field, ns): other processes on that core, or the
        server's own worker threads (store writer, file I/O), which are
        pinned to the same core."""
        assert self.proc is not None
        pid = self.proc.pid
        try:
            return int(Path(f"/proc/{pid}/task/{pid}/schedstat").read_text().split()[1]) / 1e9
        except (OSError, ValueError, IndexError):
            return 0.0

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def problems(self) -> list[str]:
        text = self.log.read_text(errors="replace")
        return [w for w in ("Traceback", "message_handler_failed") if w in text]


# --------------------------------------------------------------------------- SIPp


@dataclass
class Step:
    rate: int
    calls: int
    successful: int = 0
    failed: int = 0
    retransmissions: int = 0
    wall_s: float = 0.0  # SIPp's own elapsed time: calls / its cumulative call rate
    cpu_s: float = 0.0
    waited_s: float = 0.0  # runnable but not running: the core was busy elsewhere
    first_error: str = ""
    rtt_ms: dict[str, list[float]] = field(default_factory=dict)

    @property
    def achieved(self) -> float:
        return self.successful / self.wall_s if self.wall_s else 0.0

    @property
    def cpu_share(self) -> float:
        return self.cpu_s / self.wall_s if self.wall_s else 0.0

    @property
    def wait_share(self) -> float:
        return self.waited_s / self.wall_s if self.wall_s else 0.0

    @property
    def ok(self) -> bool:
        return (
            self.failed == 0 and self.successful == self.calls and self.achieved >= 0.9 * self.rate
        )


def _run_sipp(
    server: BenchServer,
    directory: Path,
    scenario: str,
    *,
    rate: int,
    calls: int,
    core: int,
    extra: list[str],
) -> Step:
    directory.mkdir(parents=True, exist_ok=True)
    scenario_path = directory / "scenario.xml"
    scenario_path.write_text(scenario)
    stat = directory / "stat.csv"
    cmd = [
        "taskset",
        "-c",
        str(core),
        "sipp",
        f"127.0.0.1:{server.sip_port}",
        "-sf",
        str(scenario_path),
        "-i",
        "127.0.0.1",
        "-p",
        str(_free_port()),
        "-r",
        str(rate),
        "-m",
        str(calls),
        "-l",
        str(max(100, rate * 2)),
        "-buff_size",
        str(4 << 20),
        "-nostdin",
        "-aa",  # the server's qualify OPTIONS to registered contacts
        "-trace_stat",
        "-stf",
        str(stat),
        "-fd",
        "1",
        "-timeout",
        f"{calls // max(rate, 1) * 4 + 60}s",
        "-timeout_error",
        "-trace_err",
        *extra,
    ]
    cpu0, wait0, t0 = server.cpu_seconds(), server.waited_seconds(), time.monotonic()
    out = subprocess.run(cmd, cwd=directory, capture_output=True, text=True, check=False)
    wall, cpu = time.monotonic() - t0, server.cpu_seconds() - cpu0
    step = Step(rate=rate, calls=calls, wall_s=wall, cpu_s=cpu)
    step.waited_s = server.waited_seconds() - wait0
    rows = list(csv.DictReader(stat.open(), delimiter=";")) if stat.exists() else []
    if rows:
        last = rows[-1]
        step.successful = int(last.get("SuccessfulCall(C)") or 0)
        step.failed = int(last.get("FailedCall(C)") or 0)
        step.retransmissions = int(last.get("Retransmissions(C)") or 0)
        rate_c = float(last.get("CallRate(C)") or 0)
        if rate_c > 0:
            step.wall_s = min(wall, (step.successful + step.failed) / rate_c)
    else:
        step.failed = calls
        print(out.stdout[-2000:], out.stderr[-2000:], file=sys.stderr)
    for err in directory.glob("*_errors.log"):
        step.first_error = _error_summary(err.read_text(errors="replace"))
    for rtt in directory.glob("*_rtt.csv"):
        for row in csv.DictReader(rtt.open(), delimiter=";"):
            with contextlib.suppress(KeyError, ValueError):
                step.rtt_ms.setdefault(row["rtd_no"], []).append(float(row["response_time_ms"]))
    return step


def _step(
    directory: Path,
    name: str,
    scenario: str,
    *,
    rate: int,
    calls: int,
    server_core: int,
    sipp_core: int,
    extra: list[str],
    problems: list[str],
) -> Step:
    """One SIPp run against a fresh server: a step must not inherit the
    transactions of the one before (they live 64*T1 = 32 s over UDP)."""
    server = BenchServer(directory / f"{name}-server", core=server_core)
    server.directory.mkdir(parents=True)
    server.start()
    try:
        step = _run_sipp(
            server, directory / name, scenario, rate=rate, calls=calls, core=sipp_core, extra=extra
        )
    finally:
        server.stop()
        problems += [f"{name}: {p}" for p in server.problems()]
    print(
        f"{name:16} {step.successful}/{step.calls} ok, {step.failed} failed, "
        f"{step.retransmissions} retrans, {step.achieved:,.0f}/s achieved, "
        f"server CPU {step.cpu_share:.0%}, waiting {step.wait_share:.0%} {step.first_error}",
        flush=True,
    )
    return step


def _error_summary(text: str) -> str:
    """What SIPp's error log says went wrong, counted by kind."""
    kinds: Counter[str] = Counter()
    for found in re.finditer(
        r"while expecting '(\d+)'[^']*'(SIP/2\.0 \d+ [^\r\n']*)"
        r"|receive timeout on message[^:]*:(\d+)"
        r"|(Dead call) [^ ]+ \((\w+)\)",
        text,
    ):
        if found.group(1):
            kinds[f"got {found.group(2).removeprefix('SIP/2.0 ')} instead of {found.group(1)}"] += 1
        elif found.group(3):
            kinds[f"timeout at scenario step {found.group(3)}"] += 1
        elif found.group(4):
            kinds[f"late message for a {found.group(5)} call"] += 1
    return "; ".join(f"{n} x {kind}" for kind, n in kinds.most_common(4))


def _ramp(
    directory: Path,
    name: str,
    scenario: str,
    ladder: tuple[int, ...],
    *,
    seconds: float,
    server_core: int,
    sipp_core: int,
    extra: list[str],
    problems: list[str],
) -> tuple[Step | None, list[Step]]:
    """Steps up the ladder until one fails; the best step and all of them."""
    best: Step | None = None
    steps: list[Step] = []
    for rate in ladder:
        step = _step(
            directory,
            f"{name}-{rate}",
            scenario,
            rate=rate,
            calls=int(rate * seconds),
            server_core=server_core,
            sipp_core=sipp_core,
            extra=extra,
            problems=problems,
        )
        steps.append(step)
        if not step.ok:
            break
        best = step
    return best, steps


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


# --------------------------------------------------------------------------- report


def _ramp_rows(steps: list[Step], per_call: int) -> str:
    rows = [
        "| SIPp rate | calls ok / sent | failed | retransmissions | achieved /s | "
        "transactions /s | server CPU (1 core) | loop waiting for the core |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in steps:
        rows.append(
            f"| {s.rate:,} | {s.successful:,} / {s.calls:,} | {s.failed} | "
            f"{s.retransmissions} | {s.achieved:,.0f} | {s.achieved * per_call:,.0f} | "
            f"{s.cpu_share:.0%} | {s.wait_share:.0%} |"
        )
    return "\n".join(rows)


def _invite_rows(
    steps: list[Step], latency: Callable[[Step, str], tuple[float, float, float]]
) -> str:
    rows = []
    for s in steps:
        t, a = latency(s, "trying"), latency(s, "answer")
        rows.append(
            f"| {s.rate}/s | {s.successful:,} / {s.failed} | "
            f"{t[0]:.0f} / {t[1]:.0f} / {t[2]:.0f} ms | {a[0]:.0f} / {a[1]:.0f} / {a[2]:.0f} ms | "
            f"{s.cpu_share:.0%} | {s.wait_share:.0%} |"
        )
    return "\n".join(rows)


def _loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def _limit(steps: list[Step]) -> str:
    last = steps[-1]
    if last.ok:
        return "the end of the ladder (no failure)"
    if last.failed:
        return f"{last.failed} failed calls at {last.rate:,}/s"
    return f"SIPp could not keep {last.rate:,}/s (server CPU {last.cpu_share:.0%})"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="scripts/bench sip")
    parser.add_argument("--serve", metavar="CONFIG", help=argparse.SUPPRESS)
    parser.add_argument("--step-seconds", type=float, default=4.0)
    parser.add_argument(
        "--invite-rates",
        default=f"100,{TARGET_CPS}",
        help="call set-up rates, comma-separated; the targets are judged at the last",
    )
    parser.add_argument("--invite-seconds", type=float, default=10.0)
    parser.add_argument("--server-core", type=int, default=0)
    parser.add_argument("--sipp-core", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the working directory")
    parser.add_argument("--no-write", action="store_true", help="print, do not write docs")
    args = parser.parse_args(argv)
    if args.serve:
        sys.exit(_serve(args.serve))
    for tool in ("sipp", "taskset"):
        if shutil.which(tool) is None:
            sys.exit(f"scripts/bench sip needs {tool} (scripts/setup --peers installs sipp)")

    problems: list[str] = []
    cores = {"server_core": args.server_core, "sipp_core": args.sipp_core}
    load_before = _loadavg()
    with _workdir(args.keep) as work:
        options_best, options_steps = _ramp(
            work,
            "options",
            OPTIONS_XML,
            OPTIONS_LADDER,
            seconds=args.step_seconds,
            extra=[],
            problems=problems,
            **cores,
        )
        register_best, register_steps = _ramp(
            work,
            "register",
            REGISTER_XML,
            REGISTER_LADDER,
            seconds=args.step_seconds,
            extra=["-s", "op1", "-au", "op1", "-ap", "secret1"],
            problems=problems,
            **cores,
        )
        invites: list[Step] = []
        for rate in (int(r) for r in args.invite_rates.split(",") if r.strip()):
            invites.append(
                _step(
                    work,
                    f"invite-{rate}",
                    INVITE_XML,
                    rate=rate,
                    calls=int(rate * args.invite_seconds),
                    extra=["-trace_rtt", "-rtt_freq", "1", "-timer_resol", "1"],
                    problems=problems,
                    **cores,
                )
            )
    load_after = _loadavg()

    def latency(step: Step, rtd: str) -> tuple[float, float, float]:
        values = step.rtt_ms.get(rtd, [])
        return (
            _percentile(values, 0.5),
            _percentile(values, 0.99),
            max(values, default=float("nan")),
        )

    invite = invites[-1]
    p100, p200 = latency(invite, "trying"), latency(invite, "answer")
    options_per_s = options_best.achieved if options_best else 0.0
    register_per_s = register_best.achieved if register_best else 0.0
    summary = {
        "options_per_s": options_per_s,
        "register_per_s": register_per_s,
        "invite": {
            "rate": invite.rate,
            "ok": invite.successful,
            "failed": invite.failed,
            "p100_ms": p100,
            "p200_ms": p200,
            "cpu": invite.cpu_share,
        },
        "load": (load_before, load_after),
        "server_problems": problems,
    }
    print(json.dumps(summary, indent=2))
    calls = invite.calls

    def verdict(ok: bool) -> str:
        return "met" if ok else "**missed**"

    body = f"""
Server: `callcenter112 serve` pinned to core {args.server_core} (`taskset`), uvloop, SIP
trace off, web console off, a fresh server for every step (a step must not inherit the
transactions of the one before: they live 64*T1 = 32 s over UDP). SIPp 3.6 on loopback
pinned to core {args.sipp_core}, UDP, its own retransmissions on (500 ms). Each ramp step runs
{args.step_seconds:g} s at a fixed SIPp rate; a step passes with no failed call, every call
complete and at least 90 % of the rate achieved. Server CPU is utime + stime from
/proc/PID/stat over the step, as a share of its one core; "waiting for the core" is the
time its event-loop thread was runnable but not running (/proc/PID/task/PID/schedstat):
other processes on that core, or the server's own worker threads (store writer, file
I/O), pinned to the same core. A step that fails with the server well below 100 % CPU and
its loop waiting a lot was limited by the shared machine, not by the server. The per-source REGISTER
bucket (20/s per address, a policy) is lifted for this run so that one SIPp measures the
server, not the policy.

**OPTIONS**: {options_per_s:,.0f} transactions/s with 0 failures (limit:
{_limit(options_steps)}).

{_ramp_rows(options_steps, 1)}

**REGISTER with digest** (REGISTER → 401 → REGISTER with MD5 credentials → 200,
operator op1 refreshing its binding): {register_per_s:,.0f} registrations/s =
{2 * register_per_s:,.0f} REGISTER transactions/s with 0 failures (limit:
{_limit(register_steps)}).

{_ramp_rows(register_steps, 2)}

**Call set-up**: INVITEs to 112 for {args.invite_seconds:g} s at each rate, each call hung
up right after its ACK (incident written before the 200, IVR started, recording opened,
BYE, incident closed). SIPp's response times (whole ms) per call:

| rate | calls ok / failed | INVITE→100 p50 / p99 / max | INVITE→200 p50 / p99 / max | \
server CPU | loop waiting for the core |
|---|---|---|---|---|---|
{_invite_rows(invites, latency)}

At {invite.rate}/s against DESIGN §7:

| figure | value | target (DESIGN §7) |
|---|---|---|
| calls completed / failed | {invite.successful:,} / {invite.failed} | 0 failed: \
{verdict(invite.failed == 0 and invite.successful == calls)} |
| SIPp retransmissions | {invite.retransmissions} | |
| SIPp's errors | {invite.first_error or "none"} | |
| INVITE→100 p50 / p99 / max | {p100[0]:.0f} / {p100[1]:.0f} / {p100[2]:.0f} ms | \
p99 ≤ {TARGET_100_P99_MS:.0f} ms: {verdict(p100[1] <= TARGET_100_P99_MS)} |
| INVITE→200 p50 / p99 / max | {p200[0]:.0f} / {p200[1]:.0f} / {p200[2]:.0f} ms | \
p99 ≤ {TARGET_200_P99_MS:.0f} ms: {verdict(p200[1] <= TARGET_200_P99_MS)} |
| achieved call rate | {invite.achieved:,.0f}/s | {TARGET_CPS}/s: \
{verdict(invite.achieved >= 0.95 * TARGET_CPS)} |
| server CPU | {invite.cpu_share:.0%} of one core | |

Server log: {"clean" if not problems else ", ".join(problems)}. The machine is shared:
load average {load_before} before the run, {load_after} after (figures from a busy
moment can be far worse than from a quiet one; compare within one run).
"""
    if args.no_write:
        print(body)
    else:
        write_section("sip", "SIP: signalling throughput and call set-up", body)


@contextlib.contextmanager
def _workdir(keep: bool) -> Iterator[Path]:
    if keep:
        path = Path(tempfile.mkdtemp(prefix="callcenter112-bench-sip-"))
        print(f"working directory: {path}")
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="callcenter112-bench-sip-") as tmp:
        yield Path(tmp)


if __name__ == "__main__":
    main()
