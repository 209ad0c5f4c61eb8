"""`callcenter112 simulate`: simulated callers and operators against a running server.

Registers M simulated operators (users ``op1`` … ``opM`` of the
configuration, with their passwords) and places N simulated callers from
the trunk's loopback address at a set rate; each caller presses a digit,
waits, talks and hangs up (or, if scripted impatient, abandons in the
queue); each operator rings a moment, answers, talks and hangs up. Live
progress while it runs, then a summary checked against the incident store
named in the configuration: outcomes, categories as pressed, answer-time
percentiles (at the caller, and the store's SLA), abandoned calls and their
callback tasks, system-caused drops.

Exit status (DESIGN §4): 0 every call got the outcome its script asked for
and the store agrees; 1 anything else (a call rejected, unanswered,
dropped, failed or recorded differently, or the server unreachable); 2 bad usage or
configuration (e.g. fewer operators configured than asked for).

Loopback only: the simulated phones bind 127.0.0.1 and refuse a server that
is not on a loopback address, so a load generator cannot be pointed at a
production centre by accident. docs/simulate.md is the user's guide.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import random
import sys
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from .config import Config, ConfigError, load_config
from .logs import configure_logging
from .net.loop import run as run_on_server_loop
from .progress import ProgressLine
from .sip.peer import Peer

if TYPE_CHECKING:
    from .simclient import Simulation, Summary

    SubParsers = argparse._SubParsersAction[argparse.ArgumentParser]

__all__ = ["add_commands", "parse_range", "parse_rate", "select_operators"]

DIGIT_KEYS = "0123456789*#_"


class UsageError(Exception):
    """Bad arguments or a configuration the simulation cannot use (exit 2)."""


def parse_rate(text: str) -> float:
    """``2``, ``2/s`` or ``0.5/s`` → calls per second (above 0)."""
    value = text.strip().removesuffix("/s")
    try:
        rate = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a rate like 2/s") from None
    if not 0 < rate <= 1000:
        raise argparse.ArgumentTypeError(f"rate {text!r} must be above 0 and at most 1000/s")
    return rate


def parse_range(text: str) -> tuple[float, float]:
    """``0.5-2`` (seconds) or a single number → (low, high)."""
    parts = text.split("-")
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not seconds like 0.5-2") from None
    if len(values) == 1:
        values *= 2
    if len(values) != 2 or values[0] < 0 or values[1] < values[0]:
        raise argparse.ArgumentTypeError(f"{text!r} is not a range LOW-HIGH of seconds")
    return values[0], values[1]


def _ratio(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number between 0 and 1") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not between 0 and 1")
    return value


def _digits(text: str) -> str:
    bad = [c for c in text if c not in DIGIT_KEYS]
    if not text or bad:
        raise argparse.ArgumentTypeError(
            f"{text!r}: use DTMF keys 0-9 * # (and _ for a caller who presses nothing)"
        )
    return text


def _server(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


def add_commands(sub: SubParsers, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "simulate",
        parents=[common],
        help="place simulated calls answered by simulated operators (against a running server)",
        description="Simulated callers dial 112 from the trunk's loopback address, press a "
        "digit, wait, talk and hang up; simulated operators op1..opM register, answer and "
        "talk. Prints live progress and a summary checked against the incident store.",
    )
    p.add_argument("--callers", type=int, default=5, metavar="N", help="callers (default 5)")
    p.add_argument(
        "--operators", type=int, default=2, metavar="M", help="operators op1..opM (default 2)"
    )
    p.add_argument(
        "--rate", type=parse_rate, default=1.0, metavar="R/s", help="arrivals (default 1/s)"
    )
    p.add_argument("--talk-s", type=float, default=5.0, metavar="T", help="talk time (default 5 s)")
    p.add_argument(
        "--digits",
        type=_digits,
        default=None,
        metavar="KEYS",
        help="caller i presses KEYS[i mod len] (_ = nothing); default: a random menu key",
    )
    p.add_argument(
        "--server",
        type=_server,
        default=None,
        metavar="HOST:PORT",
        help="SIP address of the server (default: the config's sip.listen); loopback only",
    )
    p.add_argument(
        "--abandon",
        type=_ratio,
        default=0.0,
        metavar="P",
        help="share of impatient callers who hang up in the queue (default 0)",
    )
    p.add_argument(
        "--patience-s",
        type=parse_range,
        default=(3.0, 8.0),
        metavar="A-B",
        help="how long an impatient caller waits after pressing (default 3-8 s)",
    )
    p.add_argument(
        "--ring-s",
        type=parse_range,
        default=(0.5, 2.0),
        metavar="A-B",
        help="operators let it ring this long before answering (default 0.5-2 s)",
    )
    p.add_argument(
        "--digit-after-s",
        type=parse_range,
        default=(0.5, 1.5),
        metavar="A-B",
        help="callers press their digit this long after being answered (default 0.5-1.5 s)",
    )
    p.add_argument(
        "--caller-hangup",
        type=_ratio,
        default=0.5,
        metavar="P",
        help="share of conversations the caller ends (else the operator; default 0.5)",
    )
    p.add_argument(
        "--max-wait-s",
        type=float,
        default=300.0,
        metavar="S",
        help="a caller no operator answered in S seconds gives up: failure (default 300)",
    )
    p.add_argument("--seed", type=int, default=None, help="random seed (reproducible runs)")
    p.add_argument("--json", type=Path, default=None, metavar="FILE", help="write every call")
    p.add_argument(
        "--no-store", action="store_true", help="do not read the incidents back from the store"
    )
    p.add_argument("--quiet", action="store_true", help="no progress lines, only the summary")
    p.set_defaults(handler=_simulate)


# --------------------------------------------------------------------------- setup


def select_operators(cfg: Config, count: int) -> list[tuple[str, str]]:
    """(user, password) of op1..op`count`; `UsageError` naming what is missing."""
    if count < 1:
        raise UsageError("--operators must be at least 1")
    wanted = [f"op{i}" for i in range(1, count + 1)]
    missing = [u for u in wanted if cfg.operator_named(u) is None]
    if missing:
        have = ", ".join(o.user for o in cfg.operator) or "none"
        shown = ", ".join(missing[:5]) + (" …" if len(missing) > 5 else "")
        raise UsageError(
            f"--operators {count} needs [[operator]] users op1..op{count}, but the "
            f"configuration has no {shown} (it has: {have}); add them or ask for fewer"
        )
    accounts = []
    for user in wanted:
        op = cfg.operator_named(user)
        assert op is not None
        accounts.append((op.user, op.password))
    return accounts


def _server_peer(cfg: Config, given: tuple[str, int] | None) -> Peer:
    host, port = given if given is not None else (cfg.sip.listen.host, cfg.sip.listen.port)
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise UsageError(f"server {host!r} is not an IP address") from None
    if address.version != 4 or not address.is_loopback:
        raise UsageError(
            f"server {host}:{port} is not on IPv4 loopback: the simulator only loads a "
            "server on this machine (127.0.0.0/8)"
        )
    return Peer("udp", host, port)


def _dialled(cfg: Config) -> str:
    """A number a trunk that lets 127.0.0.1 in answers (112 when it can)."""
    me = ipaddress.ip_address("127.0.0.1")
    for trunk in cfg.trunk:
        if any(me.version == n.version and me in n for n in trunk.networks):
            numbers = [n for n in trunk.numbers if not n.startswith("urn:")]
            if "112" in numbers:
                return "112"
            if numbers:
                return numbers[0]
    raise UsageError(
        "no [[trunk]] allows 127.0.0.1 with a dialled number: simulated callers arrive "
        'from the loopback address; add "127.0.0.0/8" to a trunk\'s allow list'
    )


# --------------------------------------------------------------------------- the command


def _simulate(args: argparse.Namespace) -> int:
    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        print(exc.explain(), file=sys.stderr)
        return 2
    try:
        return _run(cfg, args)
    except UsageError as exc:
        print(f"callcenter112 simulate: {exc}", file=sys.stderr)
        return 2


def _run(cfg: Config, args: argparse.Namespace) -> int:
    from .simclient import OperatorAccount, Simulation, SimulationPlan, plan_callers

    if args.callers < 1:
        raise UsageError("--callers must be at least 1")
    if args.talk_s < 0 or args.max_wait_s <= 0:
        raise UsageError("--talk-s must not be negative and --max-wait-s must be above 0")
    accounts = select_operators(cfg, args.operators)
    server = _server_peer(cfg, args.server)
    dialled = _dialled(cfg)
    rng = random.Random(args.seed)
    scripts = plan_callers(
        callers=args.callers,
        rate_per_s=args.rate,
        menu=dict(cfg.ivr.digits),
        talk_s=args.talk_s,
        digits=args.digits,
        digit_after_s=args.digit_after_s,
        abandon_ratio=args.abandon,
        patience_s=args.patience_s,
        caller_hangup_ratio=args.caller_hangup,
        max_wait_s=args.max_wait_s,
        rng=rng,
    )
    plan = SimulationPlan(
        server=server,
        operators=tuple(OperatorAccount(user=u, password=p) for u, p in accounts),
        scripts=scripts,
        talk_s=args.talk_s,
        ring_s=args.ring_s,
        dialled=dialled,
        seed=args.seed,
    )
    configure_logging("warning", sys.stderr)
    database = cfg.path(cfg.storage.database)
    out = sys.stdout
    print(
        f"simulate: {args.callers} caller(s) at {args.rate:g}/s, {len(accounts)} operator(s) "
        f"({', '.join(u for u, _ in accounts[:4])}{' …' if len(accounts) > 4 else ''}), "
        f"talk {args.talk_s:g} s, server {server.host}:{server.port}, dialling {dialled}",
        file=out,
        flush=True,
    )
    simulation = Simulation(plan)
    printer = ProgressLine(out, enabled=not args.quiet)
    summary = run_on_server_loop(
        _simulate_and_check(simulation, printer, database, read_store=not args.no_store)
    )
    printer.finish()
    if simulation.error is not None:
        print(f"callcenter112 simulate: {simulation.error}", file=sys.stderr)
        return 1
    from .simclient import format_summary

    assert summary is not None
    print(format_summary(summary), file=out, flush=True)
    if args.json is not None:
        _write_json(args.json, simulation, summary)
    return 0 if summary.ok else 1


async def _simulate_and_check(
    simulation: Simulation,
    printer: ProgressLine,
    database: Path,
    *,
    read_store: bool,
) -> Summary | None:
    from .records import StoreError
    from .simclient import read_incidents, summarize

    await simulation.run(
        on_progress=lambda p: printer.show(p.line()), progress_every_s=printer.every_s
    )
    if simulation.error is not None:
        return None
    incidents = None
    if read_store:
        if not await asyncio.to_thread(database.exists):
            print(
                f"simulate: {database} does not exist; not checking the incidents",
                file=sys.stderr,
            )
        else:
            try:
                incidents = await read_incidents(
                    database,
                    [r.call_id for r in simulation.records if r.call_id],
                    since=simulation.wall_started,
                )
            except (StoreError, OSError) as exc:
                print(f"simulate: cannot read the incidents: {exc}", file=sys.stderr)
    return summarize(simulation.records, incidents)


def _write_json(path: Path, simulation: Simulation, summary: Summary) -> None:
    calls = []
    for r in simulation.records:
        calls.append(
            {
                "number": r.script.number,
                "digit": r.script.digit,
                "expected_category": r.script.expected_category,
                "call_id": r.call_id,
                "outcome": str(r.outcome) if r.outcome else None,
                "detail": r.detail,
                "operator": r.operator,
                "incident_id": r.incident_id,
                "answer_time_s": r.answer_time_s,
                "final_status": r.final_status,
            }
        )
    data = {"summary": asdict(summary) | {"ok": summary.ok}, "calls": calls}
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")
