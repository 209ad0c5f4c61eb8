"""`scripts/bench surge --prank-mix SHARE --real`: the prank/ghost mix against the real server.

The virtual-time model (`prank_mix.py`) compares the rules on and off; this
run checks the wired call flow under the same kind of mix: the real server
(`surge.SurgeServer`, its own temporary configuration) and simulated phones
(`simclient`) from `surge.prank_mix_scripts` — genuine callers press a menu
key, pranks call from a small pool of numbers and hang up after a short talk,
ghosts press nothing and send no audio. Operators answer everyone.

Reported per kind: callers, answered by an operator, answer time from arrival
(the store's ``sla_s``) p50/p90/max, and the flags the call flow raised
(``silent``, ``repeat_caller``, …), read from the incidents' ``flag`` events;
plus what no caller may ever meet: calls the system dropped (`system_drops`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import tempfile
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from ..simclient import (
    CallerScript,
    OperatorAccount,
    Quantiles,
    Simulation,
    SimulationPlan,
    read_incidents,
)
from ..sip.peer import Peer
from .report import write_section

__all__ = ["GHOST_NOTE", "MixRun", "main", "run"]

GHOST_NOTE = (
    'Ghosts pass the IVR\'s silent step first (`ivr.silent_after_s`, the "press 5" prompt, '
    "the input timeout) and then wait as category `unknown` at its configured priority, "
    "behind callers who chose a category: their longer answer time is that order, and not one "
    "of them was dropped. Pranks that repeat within 10 min carry `repeat_caller`."
)


class MixServer(Protocol):
    """`surge.SurgeServer`, passed in by surge.py (which imports this module)."""

    sip_port: int
    database: Path

    def start(self) -> None: ...

    def stop(self) -> None: ...


class MixRun(Protocol):
    """What surge.py hands over: the mix's scripts and a server to start."""

    @property
    def callers(self) -> int: ...
    @property
    def operators(self) -> int: ...
    @property
    def rate(self) -> float: ...
    @property
    def talk_s(self) -> float: ...
    @property
    def share(self) -> float: ...
    @property
    def scripts(self) -> Sequence[CallerScript]: ...
    @property
    def kinds(self) -> Sequence[str]: ...

    def server(self, directory: Path) -> MixServer: ...


def _flags_by_call(database: Path) -> dict[str, Counter[str]]:
    conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        rows = conn.execute(
            "SELECT i.call_id, e.detail FROM events e JOIN incidents i ON i.id = e.incident_id"
            " WHERE e.kind = 'flag'"
        ).fetchall()
    finally:
        conn.close()
    out: dict[str, Counter[str]] = {}
    for call_id, detail in rows:
        flag = json.loads(detail).get("flag", "?")
        out.setdefault(str(call_id), Counter())[str(flag)] += 1
    return out


async def run(mix: MixRun, directory: Path) -> str:
    share, callers, operators, rate = mix.share, mix.callers, mix.operators, mix.rate
    scripts, kinds = mix.scripts, mix.kinds
    server = mix.server(directory)
    await asyncio.to_thread(server.start)
    try:
        plan = SimulationPlan(
            server=Peer("udp", "127.0.0.1", server.sip_port),
            operators=tuple(
                OperatorAccount(user=f"op{i}", password=f"surge-op{i}")
                for i in range(1, operators + 1)
            ),
            scripts=tuple(scripts),
            talk_s=mix.talk_s,
            ring_s=(0.5, 1.5),
            seed=112,
        )
        sim = Simulation(plan)
        await sim.run(on_progress=lambda p: print(f"[prank] {p.line()}", flush=True))
        if sim.error is not None:
            raise RuntimeError(f"the prank mix could not start: {sim.error}")
        incidents = await read_incidents(
            server.database, [r.call_id for r in sim.records if r.call_id], since=sim.wall_started
        )
        flags = _flags_by_call(server.database)
    finally:
        await asyncio.to_thread(server.stop)
    kind_of = {r.call_id: kinds[r.script.index] for r in sim.records}
    outcomes = Counter(str(r.outcome) for r in sim.records)
    lines = [
        f"Real server, {callers} callers at {rate:g}/s, {operators} auto-answering operators, "
        f"prank+ghost share {share:.0%} (pranks from 5 numbers). Flags are the call flow's "
        "own `flag` events.",
        "",
        "| kind | callers | answered | answer time p50 | p90 | max | flags raised |",
        "|---|---|---|---|---|---|---|",
    ]
    for kind in ("genuine", "prank", "ghost"):
        ids = [c for c, k in kind_of.items() if k == kind and c]
        views = [incidents[c] for c in ids if c in incidents]
        answered = [v for v in views if v.operator_answered_at is not None]
        q = Quantiles.of(v.sla_s for v in answered if v.sla_s is not None)
        raised: Counter[str] = Counter()
        for c in ids:
            raised.update(flags.get(c, Counter()))
        shown = ", ".join(f"{f} {n}" for f, n in sorted(raised.items())) or "none"

        def s(x: float | None) -> str:
            return "—" if x is None else f"{x:.1f} s"

        lines.append(
            f"| {kind} | {len(ids)} | {len(answered)} | {s(q.p50)} | {s(q.p90)} | {s(q.max)} "
            f"| {shown} |"
        )
    lines += ["", "Caller outcomes: " + ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items()))]
    lines += ["", GHOST_NOTE]
    return "\n".join(lines) + "\n"


def main(args: argparse.Namespace, mix: MixRun) -> int:
    with tempfile.TemporaryDirectory(prefix="callcenter112-prank-") as tmp:
        body = asyncio.run(run(mix, Path(tmp)))
    if args.no_write or args.quick:
        print(body)
    else:
        write_section(
            "surge_prank_real", "Prank/ghost mix against the real server (issue 12)", body
        )
        print(body)
    return 0
