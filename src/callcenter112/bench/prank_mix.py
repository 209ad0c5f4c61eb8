"""The 60 % prank/ghost mix of issue 12, on the real IVR and ACD rules, in virtual time.

``scripts/bench surge --prank-mix 0.6`` runs this model twice on the same
seeded arrivals — with the watch list and the silent path, and without them —
and reports genuine callers' answer time side by side. It drives the real
pure state machines (``ivr.IvrMenu``, ``acd.Acd``, ``callers``,
``watchlist.WatchList``) through a discrete-event loop: no SIP, no audio, no
sleeping, so a 4-hour shift runs in about a second and the two runs differ
only by the rules under test.

What the model assumes (each an input, printed with the figures):

* arrivals are Poisson; ``1 - prank_share - ghost_share`` of them genuine
  (unique numbers, press a menu key 2-5 s into the menu, never hang up),
  pranks from a small pool of repeat numbers (press a key, hang up after
  ``prank_patience_s`` of waiting), ghosts silent (no key, no speech; the
  line stays open);
* prompt lengths: greeting+menu 10 s, menu 8 s, invalid 2 s, silent prompt 3 s,
  watch-list warning 6 s;
* operators answer after a 2 s ring; genuine calls take ``genuine_talk_s``,
  a prank ``prank_talk_s`` and a ghost ``ghost_talk_s`` of operator time,
  then ``wrapup_s``; the operator disposes pranks/ghosts with one action;
* a supervisor confirms a watch-list suggestion at once (3 prank dispositions
  in 24 h → listed for 24 h).

"With" = IVR silent step on (``silent_after_s`` 12) + watch list;
"without" = the IVR's old no-input ending and no watch list.
"""

from __future__ import annotations

import heapq
import itertools
import random
from dataclasses import dataclass, field
from typing import Literal

from ..acd import (
    Acd,
    AcdAction,
    AcdSettings,
    CallerLeftQueue,
    CancelOffer,
    OfferCall,
    OperatorProfile,
    QueueOutcome,
)
from ..callers import CallerRules, InMemoryCallerHistory, PastCall, caller_history
from ..callers import suggest_watch_list as suggest
from ..incidents import Disposition, normalize_caller
from ..ivr import IvrAction, IvrFinished, IvrMenu, IvrSettings, PlayPrompts
from ..watchlist import WatchList

__all__ = ["MixFigures", "MixSettings", "compare", "markdown", "run_mix"]

Kind = Literal["genuine", "prank", "ghost"]
MENU = {"1": "medical", "2": "fire", "3": "disaster", "4": "police"}
PRIORITY = {"medical": 1, "fire": 1, "disaster": 1, "police": 2, "unknown": 3}
PROMPT_S = {
    "greeting": 2.0,
    "menu": 8.0,
    "invalid": 2.0,
    "silent_press": 3.0,
    "watch_list_warning": 6.0,
}
RING_S = 2.0


@dataclass(frozen=True, slots=True, kw_only=True)
class MixSettings:
    callers: int = 2000
    rate_per_min: float = 8.0  # Ambon's first month is ~10/day; a surge hour is far above
    prank_share: float = 0.30
    ghost_share: float = 0.30
    prank_numbers: int = 25  # the pool pranks come from (repeat callers)
    operators: int = 6
    genuine_talk_s: float = 90.0
    prank_talk_s: float = 20.0
    ghost_talk_s: float = 15.0
    wrapup_s: float = 10.0
    prank_patience_s: tuple[float, float] = (20.0, 90.0)
    watch_list_max_extra_wait_s: float = 30.0
    seed: int = 112


@dataclass(slots=True, kw_only=True)
class _Caller:
    ref: str
    kind: Kind
    number: str
    arrived: float
    menu: IvrMenu
    queued_at: float | None = None
    answered_at: float | None = None
    abandoned: bool = False
    flags: tuple[str, ...] = ()
    watch_listed: bool = False


@dataclass(slots=True)
class MixFigures:
    label: str
    genuine: list[float] = field(default_factory=list)  # answer times, s
    genuine_unanswered: int = 0
    prank_answered: int = 0
    prank_abandoned: int = 0
    ghost_answered: int = 0
    ghost_flagged_silent: int = 0
    listed_numbers: int = 0
    operator_time_on_pranks_s: float = 0.0

    def quantile(self, q: float) -> float:
        xs = sorted(self.genuine)
        return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")

    def within(self, seconds: float) -> float:
        return sum(1 for x in self.genuine if x <= seconds) / len(self.genuine)


def run_mix(settings: MixSettings, *, rules_on: bool) -> MixFigures:
    """One run; ``rules_on``: watch list + silent path."""
    rng = random.Random(settings.seed)
    s = settings
    acd = Acd(
        AcdSettings(
            priority=PRIORITY,
            wrapup_s=s.wrapup_s,
            watch_list_max_extra_wait_s=s.watch_list_max_extra_wait_s if rules_on else 0.0,
        ),
        [
            OperatorProfile(user=f"op{i}", skills=frozenset(MENU.values()))
            for i in range(s.operators)
        ],
    )
    for i in range(s.operators):
        acd.operator_registered(f"op{i}", 0.0)
    ivr_settings = IvrSettings(digits=MENU, silent_after_s=12.0 if rules_on else None)
    history = InMemoryCallerHistory()
    watch = WatchList()
    rules = CallerRules()
    fig = MixFigures(label="with watch list + silent path" if rules_on else "without")
    events: list[tuple[float, int, str, tuple[object, ...]]] = []
    seq = itertools.count()
    callers: dict[str, _Caller] = {}
    offers: dict[str, str] = {}
    talking: dict[str, str] = {}

    timers: set[tuple[str, str, float]] = set()  # one pending wake-up per timer and time

    def at(t: float, kind: str, *args: object) -> None:
        heapq.heappush(events, (t, next(seq), kind, args))

    def wake(t: float, kind: str, ref: str = "") -> None:
        if (kind, ref, t) not in timers:
            timers.add((kind, ref, t))
            at(t, kind, ref)

    def run_acd(now: float, actions: list[AcdAction]) -> None:
        for a in actions:
            if isinstance(a, OfferCall):
                offers[a.call_ref] = a.operator
                at(now + RING_S, "answer", a.call_ref, a.operator)
            elif isinstance(a, CancelOffer):
                offers.pop(a.call_ref, None)
            elif isinstance(a, CallerLeftQueue) and a.outcome is QueueOutcome.ANSWERED:
                offers.pop(a.call_ref, None)
                assert a.operator is not None
                c = callers[a.call_ref]
                c.answered_at = now
                talking[a.operator] = a.call_ref
                talk = {
                    "genuine": s.genuine_talk_s,
                    "prank": s.prank_talk_s,
                    "ghost": s.ghost_talk_s,
                }[c.kind]
                at(now + talk, "talk_end", a.operator)
        due = acd.deadline()
        if due is not None:
            wake(due, "acd_tick")

    def run_ivr(c: _Caller, now: float, actions: list[IvrAction]) -> None:
        for a in actions:
            if isinstance(a, PlayPrompts):
                at(now + sum(PROMPT_S[n] for n in a.names), "prompt_end", c.ref, a.playback)
            elif isinstance(a, IvrFinished):
                c.queued_at = now
                c.flags = a.flags
                run_acd(
                    now,
                    acd.enqueue(
                        c.ref,
                        a.category,
                        c.arrived,
                        now,
                        urgent="silent_confirmed" in a.flags,
                        watch_listed=c.watch_listed,
                    ),
                )
                if c.kind == "prank":
                    at(now + rng.uniform(*s.prank_patience_s), "hang_up", c.ref)
        if not c.menu.finished and c.menu.deadline is not None:
            wake(c.menu.deadline, "ivr_timer", c.ref)

    t = 0.0
    for i in range(s.callers):
        t += rng.expovariate(s.rate_per_min / 60.0)
        roll = rng.random()
        kind: Kind = (
            "prank"
            if roll < s.prank_share
            else "ghost"
            if roll < s.prank_share + s.ghost_share
            else "genuine"
        )
        number = f"0813{rng.randrange(s.prank_numbers):08d}" if kind == "prank" else f"0812{i:08d}"
        at(t, "arrive", f"c{i}", kind, number, rng.uniform(2.0, 5.0), rng.choice(sorted(MENU)))

    while events:
        now, _, kind_, args = heapq.heappop(events)
        if kind_ == "arrive":
            ref, ckind, phone, key_after, key = (str(a) for a in args)
            number = phone
            c = _Caller(
                ref=ref,
                kind=ckind,  # type: ignore[arg-type]
                number=number,
                arrived=now,
                menu=IvrMenu(ivr_settings),
            )
            callers[ref] = c
            history.add(number, PastCall(incident_id=ref, arrived_at=now))
            c.watch_listed = rules_on and watch.is_listed(number, now)
            run_ivr(c, now, c.menu.start(now, watch_listed=c.watch_listed))
            if ckind != "ghost":
                warning = PROMPT_S["watch_list_warning"] if c.watch_listed else 0.0
                at(now + warning + float(key_after), "digit", ref, key)
        elif kind_ == "digit":
            c = callers[str(args[0])]
            if not c.menu.finished:
                run_ivr(c, now, c.menu.digit(str(args[1]), now))
        elif kind_ == "prompt_end":
            c = callers[str(args[0])]
            if c.menu.state.name in ("PLAYING", "SILENT_PLAYING"):
                run_ivr(c, now, c.menu.prompt_finished(now, playback=int(args[1])))  # type: ignore[call-overload]
        elif kind_ == "ivr_timer":
            timers.discard((kind_, str(args[0]), now))
            c = callers[str(args[0])]
            if not c.menu.finished:
                run_ivr(c, now, c.menu.timer_fired(now))
        elif kind_ == "acd_tick":
            timers.discard((kind_, "", now))
            run_acd(now, acd.tick(now))
        elif kind_ == "answer":
            ref, op = str(args[0]), str(args[1])
            if offers.get(ref) == op:
                run_acd(now, acd.offer_answered(ref, op, now))
        elif kind_ == "hang_up":
            c = callers[str(args[0])]
            if c.answered_at is None and acd.is_queued(c.ref):
                c.abandoned = True
                offers.pop(c.ref, None)
                run_acd(now, acd.caller_left(c.ref, now))
        elif kind_ == "talk_end":
            op = str(args[0])
            ref = talking.pop(op)
            c = callers[ref]
            if c.kind == "prank":
                fig.operator_time_on_pranks_s += now - (c.answered_at or now)
                history.dispose(c.number, ref, Disposition.PRANK)
                past = history.calls_from(
                    normalize_caller(c.number), since=now - 86400.0, until=now + 1
                )
                hint = suggest(caller_history(c.number, past, now + 1), rules)
                if rules_on and hint is not None and not watch.is_listed(c.number, now):
                    watch.add(c.number, reason=hint.reason, expiry="24h", created_by="spv", now=now)
                    fig.listed_numbers += 1
            run_acd(now, acd.call_ended(op, now))
    for c in callers.values():
        if c.kind == "genuine":
            if c.answered_at is None:
                fig.genuine_unanswered += 1
            else:
                fig.genuine.append(c.answered_at - c.arrived)
        elif c.kind == "prank":
            fig.prank_answered += c.answered_at is not None
            fig.prank_abandoned += c.abandoned
        else:
            fig.ghost_answered += c.answered_at is not None
            fig.ghost_flagged_silent += "silent" in c.flags
    return fig


def compare(settings: MixSettings) -> tuple[MixFigures, MixFigures]:
    return run_mix(settings, rules_on=False), run_mix(settings, rules_on=True)


def markdown(settings: MixSettings, runs: tuple[MixFigures, MixFigures]) -> str:
    s = settings
    head = (
        f"Model run (real `IvrMenu` + `Acd` + `callers` + `WatchList`, virtual time), seed "
        f"{s.seed}: {s.callers} callers at {s.rate_per_min}/min, "
        f"{s.prank_share:.0%} prank (from {s.prank_numbers} numbers) + {s.ghost_share:.0%} "
        f"ghost, {s.operators} operators; talk genuine {s.genuine_talk_s:.0f} s / prank "
        f"{s.prank_talk_s:.0f} s / ghost {s.ghost_talk_s:.0f} s, wrap-up {s.wrapup_s:.0f} s; "
        f"pranks hang up after {s.prank_patience_s[0]:.0f}-{s.prank_patience_s[1]:.0f} s "
        f"waiting; cap {s.watch_list_max_extra_wait_s:.0f} s.\n\n"
    )
    rows = [
        "| run | genuine answer p50 | p90 | p99 | genuine ≤ 15 s | ≤ 20 s | genuine unanswered "
        "| pranks answered / abandoned | operator time on pranks | numbers listed "
        "| ghosts answered (flagged silent) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for f in runs:
        rows.append(
            f"| {f.label} | {f.quantile(0.5):.1f} s | {f.quantile(0.9):.1f} s "
            f"| {f.quantile(0.99):.1f} s | {f.within(15):.0%} | {f.within(20):.0%} "
            f"| {f.genuine_unanswered} | {f.prank_answered} / {f.prank_abandoned} "
            f"| {f.operator_time_on_pranks_s / 60:.0f} min | {f.listed_numbers} "
            f"| {f.ghost_answered} ({f.ghost_flagged_silent}) |"
        )
    base, new = runs
    ratio = new.quantile(0.9) / base.quantile(0.9) if base.quantile(0.9) else float("nan")
    return head + "\n".join(rows) + f"\n\nGenuine p90 with/without: {ratio:.2f}.\n"
