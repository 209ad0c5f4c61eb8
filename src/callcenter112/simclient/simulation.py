"""A whole simulation: M operators registered, N callers placed at a rate.

Owns running one simulation against a live server: its plan
(`SimulationPlan`, with `plan_callers` turning the command-line knobs into
one `CallerScript` per caller), the shared plumbing (one RTP bank, one SIP
agent on the trunk side for the callers, one for the operators' phones),
registering the operators before the first call, placing the callers on
their schedule, and tearing everything down — operators unregistered — when
the last caller is done. `Simulation.progress()` is a live view for the
command's progress line.

Concurrency (STYLE 9): one `asyncio.TaskGroup` holds every caller, every
answered offer and the housekeeping tasks; a call's failure is recorded on
its own record and never cancels a sibling. Everything is bounded: callers
by their scripts, the run as a whole by `SimulationPlan.deadline_s` (calls
still up then are ended on the wire and recorded as failed).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..sip.events import RequestReceived
from ..sip.message import Response, new_call_id, new_tag
from ..sip.peer import Peer
from .agent import SipAgent
from .caller import SimulatedCaller
from .media import RtpBank
from .operator import RegistrationFailed, SimulatedOperator
from .records import CallerScript, CallRecord, OperatorCallRecord

__all__ = [
    "OperatorAccount",
    "Progress",
    "Simulation",
    "SimulationError",
    "SimulationPlan",
    "plan_callers",
]

# How long the server has to answer an OPTIONS ping before we call it absent.
SERVER_PING_S = 5.0
# The server's SourceGuard lets one source burst 200 REGISTERs, then 20/s
# (sip/ratelimit.py DEFAULT_RATE_PER_S): two REGISTERs (challenge, answer) per
# operator every 100 ms stays inside the sustained rate, so a second run
# right after a first (bucket drained) is not throttled either.
REGISTER_PACE_S = 0.1
REGISTER_TRIES = 3
REGISTER_TIMEOUT_S = 60.0
# Callers still connected when the run ends are given this long to hang up.
STOP_GRACE_S = 5.0


class SimulationError(Exception):
    """The simulation could not start (no server, operators refused)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class OperatorAccount:
    user: str
    password: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SimulationPlan:
    """Everything one run does; build the scripts with `plan_callers`."""

    server: Peer
    operators: tuple[OperatorAccount, ...]
    scripts: tuple[CallerScript, ...]
    talk_s: float
    ring_s: tuple[float, float] = (0.5, 2.0)
    dialled: str = "112"
    seed: int | None = None
    deadline_s: float | None = None  # None: derived from the scripts

    def derived_deadline_s(self) -> float:
        """Long enough for the last caller's whole script, with margins."""
        if self.deadline_s is not None:
            return self.deadline_s
        longest = max(
            (s.starts_after_s + s.digit_after_s + s.max_wait_s + s.talk_s for s in self.scripts),
            default=0.0,
        )
        return longest + 120.0


def plan_callers(
    *,
    callers: int,
    rate_per_s: float,
    menu: Mapping[str, str],
    talk_s: float,
    digits: str | None = None,
    digit_after_s: tuple[float, float] = (0.5, 1.5),
    abandon_ratio: float = 0.0,
    patience_s: tuple[float, float] = (3.0, 8.0),
    caller_hangup_ratio: float = 0.5,
    max_wait_s: float = 300.0,
    rng: random.Random,
    number_prefix: str = "0812",
) -> tuple[CallerScript, ...]:
    """One script per caller.

    `digits` None: each caller presses a random key of `menu` (digit →
    category). Given: caller i presses ``digits[i % len(digits)]``, so a
    run is reproducible; ``_`` presses nothing (a silent caller). A key not
    in `menu` is expected to end up `unknown`.
    """
    if callers < 1 or rate_per_s <= 0:
        raise ValueError("callers must be at least 1 and the rate above 0")
    keys = sorted(menu)
    scripts = []
    for i in range(callers):
        if digits:
            choice = digits[i % len(digits)]
        elif keys:
            choice = rng.choice(keys)
        else:
            choice = "_"
        digit = None if choice == "_" else choice
        patient = rng.random() >= abandon_ratio
        scripts.append(
            CallerScript(
                index=i,
                number=f"{number_prefix}{i + 1:08d}",
                digit=digit,
                expected_category=menu.get(choice, "unknown") if digit else "unknown",
                starts_after_s=i / rate_per_s,
                digit_after_s=rng.uniform(*digit_after_s),
                patience_s=None if patient else rng.uniform(*patience_s),
                talk_s=talk_s,
                hangs_up_first=rng.random() < caller_hangup_ratio,
                max_wait_s=max_wait_s,
            )
        )
    return tuple(scripts)


@dataclass(frozen=True, slots=True, kw_only=True)
class Progress:
    """A live view of a run, for the progress line."""

    elapsed_s: float
    placed: int
    total: int
    operators_registered: int
    operators_busy: int  # ringing or talking
    phases: Mapping[str, int] = field(default_factory=dict)
    outcomes: Mapping[str, int] = field(default_factory=dict)

    def line(self) -> str:
        p = self.phases
        o = self.outcomes
        return (
            f"{self.elapsed_s:6.1f}s  placed {self.placed}/{self.total}  "
            f"ivr {p.get('ivr', 0) + p.get('calling', 0)}  queue {p.get('queue', 0)}  "
            f"talking {p.get('talking', 0)}  |  answered {o.get('answered', 0)}  "
            f"abandoned {o.get('abandoned', 0)}  "
            f"failed {sum(v for k, v in o.items() if k not in ('answered', 'abandoned'))}  |  "
            f"operators {self.operators_registered} on line, {self.operators_busy} busy"
        )


class Simulation:
    """One run of a `SimulationPlan` (see the module docstring)."""

    def __init__(self, plan: SimulationPlan, *, host: str = "127.0.0.1") -> None:
        if not plan.operators:
            raise ValueError("a simulation needs at least one operator")
        self.plan = plan
        self.host = host
        self.records = [CallRecord(script=s) for s in plan.scripts]
        self.operator_records: list[OperatorCallRecord] = []
        self.operators: list[SimulatedOperator] = []
        self.error: str | None = None
        self.wall_started = 0.0
        self.started = 0.0
        self.finished = 0.0
        self.bank: RtpBank | None = None
        self._rng = random.Random(plan.seed)
        self._by_number = {r.script.number: r for r in self.records}
        self._by_user: dict[str, SimulatedOperator] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._placed = 0
        self._phones: SipAgent | None = None
        self._spawn: Callable[[Coroutine[Any, Any, None]], Any] | None = None

    # -- the live view -------------------------------------------------------------------

    def progress(self) -> Progress:
        now = self._loop.time() if self._loop is not None else 0.0
        phases = Counter(r.phase for r in self.records if r.outcome is None)
        outcomes = Counter(str(r.outcome) for r in self.records if r.outcome is not None)
        return Progress(
            elapsed_s=max(0.0, now - self.started) if self.started else 0.0,
            placed=self._placed,
            total=len(self.records),
            operators_registered=sum(1 for o in self.operators if o.registered),
            operators_busy=sum(1 for o in self.operators if o.on_call is not None),
            phases=dict(phases),
            outcomes=dict(outcomes),
        )

    # -- running -------------------------------------------------------------------------

    async def run(
        self,
        *,
        on_progress: Callable[[Progress], None] | None = None,
        progress_every_s: float = 1.0,
    ) -> None:
        """Run the plan to the end; `error` says why if it could not start."""
        loop = asyncio.get_running_loop()
        self._loop = loop
        self.started = loop.time()
        self.wall_started = time.time()
        bank = self.bank = RtpBank(self.host)
        await bank.open()
        trunk = SipAgent(host=self.host)
        phones = self._phones = SipAgent(host=self.host, on_request=self._route_offer)
        try:
            await trunk.start()
            await phones.start()
            done = asyncio.Event()
            async with asyncio.TaskGroup() as tg:

                def spawn(coro: Coroutine[Any, Any, None]) -> Any:
                    return tg.create_task(coro)

                self._spawn = spawn
                if on_progress is not None:
                    tg.create_task(self._report(on_progress, progress_every_s, done))
                try:
                    await self._main(trunk, phones, bank, tg)
                except SimulationError as exc:
                    self.error = str(exc)
                except Exception as exc:  # noqa: BLE001 - reported, the run still tears down
                    self.error = f"internal error: {exc!r}"
                finally:
                    await self._release_operators()
                    done.set()
        finally:
            self._spawn = None
            self.finished = loop.time()
            self._join_operator_side()
            await trunk.close()
            await phones.close()
            bank.close()
            if on_progress is not None:
                on_progress(self.progress())

    async def _main(
        self, trunk: SipAgent, phones: SipAgent, bank: RtpBank, tg: asyncio.TaskGroup
    ) -> None:
        await self._check_server(trunk)
        await self._register_operators(phones, bank)
        refresh_stop = asyncio.Event()
        tg.create_task(self._keep_registered(refresh_stop))
        try:
            await self._place_callers(trunk, bank, tg)
        finally:
            refresh_stop.set()

    async def _check_server(self, trunk: SipAgent) -> None:
        server = self.plan.server
        options = trunk.build(
            "OPTIONS",
            f"sip:{server.host}:{server.port}",
            from_address=f"<sip:simulate@{trunk.host}>;tag={new_tag()}",
            to_address=f"<sip:{server.host}:{server.port}>",
            call_id=new_call_id(trunk.host),
            cseq=1,
        )
        response: Response | None = None
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(SERVER_PING_S):
                response = await trunk.transact(options, server)
        if response is None:
            raise SimulationError(
                f"no SIP server answers at {server.host}:{server.port} "
                "(is the server running? `scripts/run` starts it)"
            )

    async def _register_operators(self, phones: SipAgent, bank: RtpBank) -> None:
        plan = self.plan
        for account in plan.operators:
            op = SimulatedOperator(
                account.user,
                account.password,
                agent=phones,
                bank=bank,
                server=plan.server,
                ring_s=plan.ring_s,
                talk_s=plan.talk_s,
                rng=random.Random(self._rng.random()),
                caller_hangs_up=self._caller_hangs_up,
                spawn=self._spawn_call,
                records=self.operator_records,
            )
            self.operators.append(op)
            self._by_user[account.user] = op
        failures: list[str] = []

        async def register(op: SimulatedOperator, delay: float) -> None:
            await asyncio.sleep(delay)
            for attempt in range(REGISTER_TRIES):
                try:
                    await op.register()
                    return
                except RegistrationFailed as exc:
                    if exc.reason[:3] in ("401", "403", "404") or attempt == REGISTER_TRIES - 1:
                        failures.append(str(exc))
                        return
                await asyncio.sleep(1.0)

        try:
            async with asyncio.timeout(REGISTER_TIMEOUT_S + REGISTER_PACE_S * len(self.operators)):
                await asyncio.gather(
                    *(register(op, i * REGISTER_PACE_S) for i, op in enumerate(self.operators))
                )
        except TimeoutError:
            failures.append("registration did not finish in time")
        if failures:
            shown = "; ".join(failures[:5])
            more = f" (and {len(failures) - 5} more)" if len(failures) > 5 else ""
            raise SimulationError(f"operators could not register: {shown}{more}")

    async def _keep_registered(self, stop: asyncio.Event) -> None:
        """Refresh every binding at half its granted expiry, until `stop`."""
        while not stop.is_set():
            every = max(5.0, min(op.expires for op in self.operators) / 2)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(every):
                    await stop.wait()
            if stop.is_set():
                return
            for op in self.operators:
                if stop.is_set():
                    return
                with contextlib.suppress(RegistrationFailed):
                    await op.register()
                await asyncio.sleep(REGISTER_PACE_S)

    async def _place_callers(self, trunk: SipAgent, bank: RtpBank, tg: asyncio.TaskGroup) -> None:
        assert self._loop is not None
        loop = self._loop
        start = loop.time()
        tasks: list[asyncio.Task[CallRecord]] = []
        deadline = start + self.plan.derived_deadline_s()
        try:
            async with asyncio.timeout_at(deadline):
                for record in self.records:
                    delay = start + record.script.starts_after_s - loop.time()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    caller = SimulatedCaller(
                        record,
                        agent=trunk,
                        bank=bank,
                        server=self.plan.server,
                        dialled=self.plan.dialled,
                    )
                    tasks.append(tg.create_task(caller.run()))
                    self._placed += 1
                if tasks:
                    await asyncio.wait(tasks)
        except TimeoutError:
            for task in tasks:
                task.cancel()
            if tasks:
                await asyncio.wait(tasks, timeout=STOP_GRACE_S)

    async def _release_operators(self) -> None:
        """Unregister every operator (so the centre stops offering) and let calls end."""
        if not self.operators:
            return

        async def unregister(op: SimulatedOperator, delay: float) -> None:
            await asyncio.sleep(delay)
            await op.unregister()

        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(REGISTER_TIMEOUT_S + REGISTER_PACE_S * len(self.operators)):
                await asyncio.gather(
                    *(unregister(op, i * REGISTER_PACE_S) for i, op in enumerate(self.operators))
                )

    async def _report(
        self, on_progress: Callable[[Progress], None], every_s: float, done: asyncio.Event
    ) -> None:
        while not done.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(every_s):
                    await done.wait()
            if not done.is_set():
                on_progress(self.progress())

    # -- the operator side ----------------------------------------------------------------

    def _spawn_call(self, coro: Coroutine[Any, Any, None]) -> Any:
        if self._spawn is None:
            coro.close()
            return None
        return self._spawn(coro)

    def _route_offer(self, event: RequestReceived) -> None:
        request = event.request
        uri = request.sip_uri
        user = uri.user if uri is not None else None
        op = self._by_user.get(user or "")
        if op is None:
            # Not one of ours (RFC 3261 §21.4.5: no such user here).
            if self._phones is not None:
                self._phones.respond(
                    event.server_key, Response.for_request(request, 404, to_tag=event.to_tag)
                )
            return
        op.offer(event)

    def _caller_hangs_up(self, number: str) -> bool:
        record = self._by_number.get(number)
        return record is not None and record.script.hangs_up_first

    def _join_operator_side(self) -> None:
        """Copy who answered each caller (and the incident id shown) to its record."""
        for op_record in self.operator_records:
            record = self._by_number.get(op_record.caller)
            if record is None:
                continue
            if op_record.result == "talked" or record.operator is None:
                record.operator = op_record.operator
                record.operator_ring_s = op_record.ring_s
                if op_record.incident_id:
                    record.incident_id = op_record.incident_id
