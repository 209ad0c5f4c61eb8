"""The desk: the ACD (acd.py, pure) on the loop clock.

ACD inputs go in with `now`, its actions come out and are executed here:
offers and queue decisions are posted to the calls' inboxes, operator state
changes are written and published, one `loop.call_at` timer is kept armed
at the ACD's deadline. The calls and the presence code use the verbs below.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

from .. import acd as acd_mod
from ..acd import Acd, AcdAction
from ..cluster.role import NodeRole
from ..logs import get_logger
from ..records import Store
from ..sip.registrar import (
    ContactReachabilityChanged,
    OperatorRegistered,
    OperatorUnregistered,
    Registrar,
    RegistrarEvent,
)
from .inbox import AcdAnnounce, AcdCancel, AcdOffer, AcdOverflow, AcdQueued, Message

__all__ = ["Desk", "DeskHost"]

log = get_logger("centre")

AcdMessage = AcdOffer | AcdCancel | AcdAnnounce | AcdOverflow | AcdQueued


class DeskCall(Protocol):
    @property
    def done(self) -> bool: ...

    def post(self, message: Message) -> None: ...


class DeskHost(Protocol):
    """What the desk needs from the switchboard (centre.Centre has it)."""

    loop: asyncio.AbstractEventLoop
    store: Store
    registrar: Registrar
    operator_users: set[str]
    role: NodeRole  # issue 15: only the leader (or a draining node) offers calls

    @property
    def calls(self) -> Mapping[str, DeskCall]: ...

    def wall(self) -> float: ...

    def spawn_write(self, aw: Awaitable[Any]) -> None: ...

    def publish(
        self,
        kind: str,
        *,
        operator: str | None = None,
        incident_id: str | None = None,
        data: dict[str, Any] | None = None,
    ) -> None: ...


class Desk:
    """The ACD on the loop clock: inputs in, actions executed, one timer armed."""

    def __init__(self, centre: DeskHost, acd: Acd) -> None:
        self.centre = centre
        self.acd = acd
        self._timer: asyncio.TimerHandle | None = None
        self.last_incident: dict[str, str] = {}  # operator → incident of their last call

    def _now(self) -> float:
        return self.centre.loop.time()

    def _run(self, fn: Callable[..., list[AcdAction]], *args: object, **kwargs: object) -> None:
        try:
            actions = fn(*args, self._now(), **kwargs)
        except acd_mod.AcdError as exc:
            log.warning("acd_refused", call=fn.__name__, error=str(exc))
            raise
        self.apply(actions)

    def apply(self, actions: list[AcdAction]) -> None:
        centre = self.centre
        changed = False
        for a in actions:
            if isinstance(a, acd_mod.OfferCall) and not centre.role.runs_acd():
                continue  # issue 15: not the leader; the offer times out and is made again
            if isinstance(a, acd_mod.OfferCall):
                self._post(a.call_ref, AcdOffer(a.operator, a.deadline))
            elif isinstance(a, acd_mod.CancelOffer):
                self._post(a.call_ref, AcdCancel(a.operator, str(a.reason)))
            elif isinstance(a, acd_mod.AnnouncePosition):
                self._post(a.call_ref, AcdAnnounce(a.position))
            elif isinstance(a, acd_mod.OverflowCall):
                self._post(a.call_ref, AcdOverflow())
                changed = True
            elif isinstance(a, acd_mod.CallerQueued):
                self._post(a.call_ref, AcdQueued(a.position, a.requeued))
                changed = True
            elif isinstance(a, acd_mod.CallerLeftQueue):
                changed = True
            elif isinstance(a, acd_mod.OperatorStateChanged):
                self._operator_changed(a)
                changed = True
        if changed:
            centre.publish("queue_changed")
        self._arm()

    def _post(self, call_ref: str, message: AcdMessage) -> None:
        call = self.centre.calls.get(call_ref)
        if call is not None and not call.done:
            call.post(message)
        elif isinstance(message, AcdOffer):
            # The call ended between the ACD's decision and its delivery: take
            # the caller out so the operator is not left reserved for a call
            # that will never ring their phone.
            self.centre.loop.call_soon(self._offer_gone, call_ref, message.operator)

    def _offer_gone(self, call_ref: str, operator: str) -> None:
        log.warning("offer_for_ended_call", call=call_ref, operator=operator)
        with contextlib.suppress(acd_mod.AcdError):
            self.apply(self.acd.caller_left(call_ref, self._now()))

    def _operator_changed(self, a: acd_mod.OperatorStateChanged) -> None:
        centre = self.centre
        wall = centre.wall()
        centre.spawn_write(
            centre.store.record_operator_state(a.operator, str(a.new), reason=a.reason, at=wall)
        )
        if a.old is acd_mod.OperatorState.WRAP_UP:
            incident = self.last_incident.get(a.operator)
            if incident is not None:
                centre.spawn_write(
                    centre.store.update_incident(incident, at=wall, stamps={"wrapped_up_at": wall})
                )
        centre.publish(
            "operator_changed",
            operator=a.operator,
            data={"old": str(a.old), "new": str(a.new), "reason": a.reason},
        )

    def _arm(self) -> None:
        deadline = self.acd.deadline()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if deadline is not None:
            self._timer = self.centre.loop.call_at(deadline, self._tick)

    def _tick(self) -> None:
        self._timer = None
        self.apply(self.acd.tick(self._now()))

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()

    # -- the verbs the calls and presence use ---------------------------------------

    def enqueue(
        self,
        ref: str,
        category: str,
        arrived_mono: float,
        *,
        front: bool = False,
        urgent: bool = False,  # issue 12: silent_confirmed, first of all
        watch_listed: bool = False,  # issue 12: held last, capped
    ) -> None:
        self._run(
            self.acd.enqueue,
            ref,
            category,
            arrived_mono,
            front=front,
            urgent=urgent,
            watch_listed=watch_listed,
        )

    def offer_answered(self, ref: str, operator: str) -> None:
        self._run(self.acd.offer_answered, ref, operator)
        self.last_incident[operator] = ref

    def offer_failed(self, ref: str, operator: str, failure: acd_mod.OfferFailure) -> None:
        with contextlib.suppress(acd_mod.AcdError):
            self._run(self.acd.offer_failed, ref, operator, failure)

    def caller_left(self, ref: str) -> None:
        with contextlib.suppress(acd_mod.AcdError):
            self._run(self.acd.caller_left, ref)

    def call_ended(self, operator: str, incident_id: str | None) -> None:
        if incident_id is not None:
            self.last_incident[operator] = incident_id
        with contextlib.suppress(acd_mod.AcdError):
            self._run(self.acd.call_ended, operator)

    def operator_leg_lost(self, ref: str, operator: str) -> bool:
        """The caller goes back to the head of the queue; False if the ACD refused."""
        try:
            self._run(self.acd.operator_leg_lost, ref, operator)
        except acd_mod.AcdError:
            return False
        return True

    def pause(self, operator: str, reason: str) -> None:
        """No calls offered to `operator` (a break, a callback they make)."""
        self._run(self.acd.pause, operator, reason)

    def unpause(self, operator: str) -> None:
        self._run(self.acd.unpause, operator)

    def is_queued(self, ref: str) -> bool:
        return self.acd.is_queued(ref)

    def operators_free(self) -> int:
        return sum(
            1 for o in self.acd.snapshot().operators if o.state is acd_mod.OperatorState.AVAILABLE
        )

    def presence(self, event: RegistrarEvent) -> None:
        if event.user not in self.centre.operator_users:
            return
        with contextlib.suppress(acd_mod.AcdError):
            if isinstance(event, OperatorRegistered):
                self._run(self.acd.operator_registered, event.user)
            elif isinstance(event, OperatorUnregistered):
                self._run(self.acd.operator_unregistered, event.user)
            elif isinstance(event, ContactReachabilityChanged):
                online = self.centre.registrar.contacts(event.user, reachable_only=True)
                self._run(self.acd.operator_reachable, event.user, bool(online))
