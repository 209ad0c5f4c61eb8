"""Hand-off: agency transfer, conference, supervision, overflow and callbacks (issue 7).

112 exists to connect the caller to the right agency. This module does the
connecting, on top of the call actor (`calls.EmergencyCall`), which calls it
through `centre.handoff` for every outbound leg that is not a queue offer,
for REFERs from the operator's phone, for console commands and for ACD
overflow. Everything runs inside the call's actor, one message at a time.

* **Blind transfer** — a REFER from the operator's softphone (RFC 3515: 202,
  then NOTIFY with a sipfrag of the agency's progress) or the console button:
  the server dials the agency over its trunk while the caller hears
  "connecting" and hold audio; when the agency answers the caller is bridged
  to it and the operator is released to wrap-up.
* **Conference (warm transfer)** — the console adds the agency while caller
  and operator keep talking; once it answers the three are mixed; the
  operator may leave and caller and agency stay connected.
* **Failure never drops the caller** — busy, no answer, a rejection: the
  caller is back with the same operator and hears "the agency could not be
  reached", or, if the operator has left, goes to the head of the queue.
  Every attempt is an incident event.
* **Supervision** — a supervisor's softphone joins a live call to listen
  (hears both, heard by none), whisper (heard by the operator only) or barge
  (heard by both); every start and stop is audit-logged.
* **Callbacks** — from the callback list an operator calls the citizen
  back over the trunk, marked as a callback from an emergency centre
  (RFC 7090 `Priority: psap-callback`), bridged and recorded in the original
  incident; each attempt and its outcome is kept.

Recording follows the caller through all of this without a new file: the
caller's media leg records what the caller says on the left and whatever
it hears — operator, agency, conference mix — on the right.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any, cast, get_args

from ..acd import AcdError
from ..config import AgencyConfig
from ..incidents import LegRole
from ..live import ControlError, SupervisionMode
from ..logs import get_logger
from ..media.bridge import Mode
from ..media.player import Player
from ..net.media import Conference
from ..net.rtp_transport import PortsExhausted
from ..sip.peer import Peer
from ..sip.refer import refer_target, sipfrag
from .call import ALLOW
from .callbacks import CallbackCall
from .handoff_state import HandoffState, ReferSubscription
from .inbox import Command, LegRequest
from .legs import OutboundLeg
from .phases import Happening, Phase
from .services import HandoffHost

if TYPE_CHECKING:
    from .call import EmergencyCall

__all__ = ["Handoff", "HandoffState"]

log = get_logger("handoff")

SUPERVISION_MODES = {"listen": Mode.LISTEN, "whisper": Mode.WHISPER, "barge": Mode.BARGE}


class Handoff:
    def __init__(self, centre: HandoffHost) -> None:
        self.centre = centre

    # -- helpers -----------------------------------------------------------------

    @staticmethod
    def state(call: EmergencyCall) -> HandoffState:
        return call.handoff

    def _agency(self, name_or_number: str) -> AgencyConfig:
        target = name_or_number.strip()
        agency = self.centre.config.agency_named(target)
        if agency is None:
            raise ControlError(404, f"no agency {target!r} in the configuration")
        return agency

    async def _dial_agency(
        self, call: EmergencyCall, agency: AgencyConfig, purpose: str
    ) -> OutboundLeg:
        centre = self.centre
        trunk = centre.config.trunk_named(agency.trunk)
        if trunk is None or trunk.proxy is None:
            raise ControlError(409, f"agency {agency.name} has no trunk to dial through")
        advertise = centre.config.sip.advertise
        proxy = trunk.proxy
        try:
            leg = await call.open_outbound(
                role=LegRole.AGENCY,
                name=agency.name,
                request_uri=f"sip:{agency.number}@{proxy.host}:{proxy.port}",
                to_uri=f"<sip:{agency.number}@{proxy.host}>",
                from_user=trunk.caller_id,
                display=centre.config.centre.name,
                peer=Peer(trunk.transport, proxy.host, proxy.port),
                purpose=purpose,
                extra_headers=[
                    ("P-Asserted-Identity", f"<sip:{trunk.caller_id}@{advertise}>"),
                    ("X-Caller-Number", call.caller_number),
                ],
                trunk=trunk.name,
            )
        except PortsExhausted:
            raise ControlError(503, "no RTP ports free to dial the agency") from None
        leg.trunk = trunk.name
        centre.trunk_stats[trunk.name]["out"] = centre.wall()
        call.other_legs.append(leg)
        state = self.state(call)
        state.pending = leg
        state.agency = agency.name
        if state.ring_timer is not None:
            state.ring_timer.cancel()
        state.ring_timer = centre.loop.call_later(
            agency.ring_timeout_s, self._post_command, call, "agency_ring_timeout", {"leg": leg}
        )
        await call.journal.event(
            "agency_dialled",
            {"agency": agency.name, "number": agency.number, "mode": purpose},
        )
        return leg

    def _post_command(self, call: EmergencyCall, name: str, args: dict[str, Any]) -> None:
        done: asyncio.Future[None] = self.centre.loop.create_future()
        done.add_done_callback(_consume)
        call.post(Command(name, args, done))

    def _play_then(self, call: EmergencyCall, prompt: str, then: str) -> None:
        """Play `prompt` to the caller, then run command `then` in the call's actor."""
        media = call.caller.media
        if media is None:
            return
        player = Player(
            media.codec,
            on_finished=lambda _e: self._post_command(call, then, {}),
        )
        player.play(self.centre.prompts.get(prompt, call.language, media.codec))
        self.state(call).prompt_player = player
        media.play(player)

    def _hold_caller(self, call: EmergencyCall, first: str | None = "connecting") -> None:
        media = call.caller.media
        if media is None:
            return
        player = Player(media.codec)
        if first:
            player.play(self.centre.prompts.get(first, call.language, media.codec))
        player.loop(self.centre.prompts.get("hold_music", call.language, media.codec))
        call.player = player
        media.play(player)

    # -- REFER from the operator's phone ---------------------------------------------

    async def refer(self, call: EmergencyCall, leg: OutboundLeg, m: LegRequest) -> None:
        """The operator's phone transfers the caller (RFC 3515); the REFER's
        answer and NOTIFYs go through the leg's session (sip/refer.py)."""
        req = m.request
        session = leg.session
        assert session is not None  # a leg that sends requests has a session
        if leg is not call.operator_leg:
            session.respond(m.server_key, req, 403)
            return
        refer_to = req.headers.get("Refer-To") or ""
        try:
            agency = self._agency(refer_target(refer_to))
        except ControlError as exc:
            session.respond(m.server_key, req, 403, headers=[("Warning", f'399 - "{exc.message}"')])
            await call.journal.event("transfer_refused", {"refer_to": refer_to, "why": exc.message})
            return
        state = self.state(call)
        if state.pending is not None:
            session.respond(m.server_key, req, 491)
            return
        session.respond(m.server_key, req, 202, headers=[("Allow", ALLOW)])
        state.refer = ReferSubscription(leg=leg, cseq=req.cseq.sequence)
        self._notify(state.refer, sipfrag(100, "Trying"), active=True)
        state.actor = f"operator:{leg.name}"
        await self._blind(call, agency)

    def _notify(self, sub: ReferSubscription, frag: str, *, active: bool) -> None:
        session = sub.leg.session
        if session is None or sub.leg.state == "ended":
            return
        session.notify_refer(refer_cseq=sub.cseq, frag=frag, active=active)

    # -- console commands ----------------------------------------------------------

    async def command(self, call: EmergencyCall, name: str, args: dict[str, Any]) -> None:
        if name == "transfer":
            await self._console_transfer(call, args)
        elif name == "leave_conference":
            await self._leave_conference(call, args.get("actor", "console"))
        elif name == "supervise":
            await self._supervise(call, args["supervisor"], args["mode"], args["actor"])
        elif name == "stop_supervision":
            await self._stop_supervision(call, args["supervisor"], args["actor"])
        elif name == "agency_ring_timeout":
            leg = args["leg"]
            if leg.state in ("calling", "ringing"):
                await call.hangup_leg(leg, "no_answer")
                await self.leg_failed(call, leg, 408, "agency did not answer")
        elif name == "back_to_operator":
            await self._reconnect_operator(call)
        elif name == "prompt_done_requeue":
            self._hold_caller(call, first=None)
        else:
            raise ControlError(400, f"unknown command {name!r}")

    async def _console_transfer(self, call: EmergencyCall, args: dict[str, Any]) -> None:
        agency = self._agency(str(args["agency"]))
        mode = args.get("mode", "blind")
        state = self.state(call)
        if call.operator_leg is None or call.phase not in (Phase.TALKING, Phase.CONFERENCE):
            raise ControlError(409, "the call is not connected to an operator")
        if state.pending is not None:
            raise ControlError(409, "a hand-off is already being dialled")
        state.actor = str(args.get("actor", "console"))
        if mode == "blind":
            await self._blind(call, agency)
        elif mode == "conference":
            state.mode = "conference"
            await self._dial_agency(call, agency, "conference")
        else:
            raise ControlError(400, f"unknown transfer mode {mode!r}")

    async def _blind(self, call: EmergencyCall, agency: AgencyConfig) -> None:
        state = self.state(call)
        state.mode = "blind"
        await self._dial_agency(call, agency, "transfer")
        if call.operator_leg is not None:
            call.operator_leg.media.idle()
        self._hold_caller(call, "connecting")
        call.change_phase(Happening.TRANSFER_DIALLED)

    # -- legs answered / failed / hung up ---------------------------------------------

    async def leg_answered(self, call: EmergencyCall, leg: OutboundLeg) -> None:
        if leg.role is LegRole.SUPERVISOR:
            await self._supervisor_joined(call, leg)
            return
        state = self.state(call)
        if state.ring_timer is not None:
            state.ring_timer.cancel()
            state.ring_timer = None
        if leg is not state.pending:
            await call.hangup_leg(leg, "not_wanted")
            return
        state.pending = None
        wall = self.centre.wall()
        leg.leg_id = await call.journal.add_leg(
            role=LegRole.AGENCY,
            call_id=leg.invite.call_id,
            peer=f"{leg.name} {leg.peer}",
            codec=leg.media.codec.name,
            started_at=wall,
        )
        state.agency_leg = leg
        caller_media = call.caller.media
        assert caller_media is not None
        if leg.purpose == "conference" and call.operator_leg is not None:
            self._start_conference(call, [call.operator_leg, leg])
            call.change_phase(Happening.CONFERENCE_STARTED)
            await call.journal.event("conference_started", {"agency": leg.name})
            return
        # Blind transfer or overflow: caller and agency, the operator released.
        call.player = None
        caller_media.relay_with(leg.media)
        if state.refer is not None:
            self._notify(state.refer, sipfrag(200, "OK"), active=False)
            state.refer = None
        await self._release_operator(call, "transferred")
        call.change_phase(Happening.TRANSFERRED)
        await call.journal.stamp(
            transferred_at=wall,
            notify_agency=leg.name,
            event="transferred",
            detail={"agency": leg.name, "mode": state.mode},
        )
        self.centre.publish(
            "call_transferred", incident_id=call.incident_id, data={"agency": leg.name}
        )

    async def leg_failed(
        self, call: EmergencyCall, leg: OutboundLeg, status: int, reason: str
    ) -> None:
        if leg.role is LegRole.SUPERVISOR:
            self.state(call).supervisor_legs.pop(leg.name, None)
            await call.journal.event(
                "supervision_failed", {"supervisor": leg.name, "status": status}
            )
            return
        state = self.state(call)
        if leg is not state.pending:
            return
        state.pending = None
        state.agency = None
        if state.ring_timer is not None:
            state.ring_timer.cancel()
            state.ring_timer = None
        with contextlib.suppress(ValueError):
            call.other_legs.remove(leg)
        await call.journal.event(
            "transfer_failed",
            {"agency": leg.name, "status": status, "reason": reason, "mode": state.mode},
        )
        if state.refer is not None:
            self._notify(state.refer, sipfrag(status, reason), active=False)
            state.refer = None
        if state.mode == "conference":
            # The caller never left the operator: tell the caller, then back to talking.
            self._play_then(call, "transfer_failed", "back_to_operator")
            return
        if call.operator_leg is not None and call.operator_leg.state == "answered":
            self._play_then(call, "transfer_failed", "back_to_operator")
        else:
            await self._requeue(call, "transfer_failed")

    async def _reconnect_operator(self, call: EmergencyCall) -> None:
        """After "the agency could not be reached": back to the operator, or, if the
        operator's phone has gone meanwhile, to the head of the queue."""
        caller_media = call.caller.media
        leg = call.operator_leg
        if caller_media is None:
            return
        if leg is None or leg.state != "answered":
            await self._requeue(call, None)
            return
        call.player = None
        caller_media.relay_with(leg.media)
        call.change_phase(Happening.BACK_TO_OPERATOR)

    async def _requeue(self, call: EmergencyCall, prompt: str | None) -> None:
        """The caller goes back to the head of the queue (they keep their arrival
        time for the SLA); `prompt` first, then comfort audio."""
        call.operator = None
        call.operator_leg = None
        call.change_phase(Happening.REQUEUED)
        if prompt is not None:
            self._play_then(call, prompt, "prompt_done_requeue")
        else:
            self._hold_caller(call, first=None)
        try:
            self.centre.desk.enqueue(call.ref, call.category, call.arrived_mono, front=True)
        except AcdError as exc:
            log.error("requeue_failed", incident_id=call.incident_id, error=str(exc))
        await call.journal.event("requeued_after_failed_transfer")

    async def _release_operator(self, call: EmergencyCall, why: str) -> None:
        leg = call.operator_leg
        operator = call.operator
        if leg is not None:
            await call.hangup_leg(leg, why)
        call.operator_leg = None
        if operator is not None:
            self.centre.desk.call_ended(operator, call.incident_id)

    async def leg_hung_up(self, call: EmergencyCall, leg: OutboundLeg) -> None:
        state = self.state(call)
        with contextlib.suppress(ValueError):
            call.other_legs.remove(leg)
        if leg.role is LegRole.SUPERVISOR:
            await self._supervisor_left(call, leg.name, f"supervisor:{leg.name}")
            return
        if leg is state.agency_leg:
            state.agency_leg = None
            state.agency = None
            await call.journal.event("agency_hung_up", {"agency": leg.name})
            if state.conference is not None and call.operator_leg is not None:
                self._dissolve_conference(call)
                await self._reconnect_operator(call)
                return
            from ..incidents import Status

            await call.end(Status.COMPLETED, "agency_hung_up", bye_caller=True)

    async def operator_left(self, call: EmergencyCall) -> bool:
        """The operator's phone sent BYE. True when a hand-off keeps the caller
        connected (conference with an agency, transfer in progress)."""
        state = self.state(call)
        operator = call.operator
        if state.agency_leg is not None and state.conference is not None:
            call.operator_leg = None
            if operator is not None:
                self.centre.desk.call_ended(operator, call.incident_id)
            self._collapse_to_agency(call)
            await call.journal.stamp(
                transferred_at=self.centre.wall(),
                event="operator_left_conference",
                detail={"operator": operator, "agency": state.agency},
            )
            return True
        if state.pending is not None or call.phase is Phase.TRANSFER:
            # Softphones (baresip among them) hang up their side of a transfer
            # once it is under way — and some also after it failed. Neither may
            # drop the caller: a pending transfer goes on; a failed one sends the
            # caller back to the head of the queue once the failure prompt ends.
            call.operator_leg = None
            if operator is not None:
                self.centre.desk.call_ended(operator, call.incident_id)
            await call.journal.event("operator_left_during_transfer", {"operator": operator})
            return True
        return False

    # -- conference ----------------------------------------------------------------

    def _start_conference(self, call: EmergencyCall, others: list[OutboundLeg]) -> Conference:
        state = self.state(call)
        caller_media = call.caller.media
        assert caller_media is not None
        conf = state.conference
        if conf is None:
            conf = Conference(self.centre.media)
            state.conference = conf
            caller_media.label = "caller"
            conf.add(caller_media)
        for leg in others:
            if leg.media.conference is conf:
                continue
            leg.media.label = leg.role.value
            conf.add(leg.media)
        return conf

    def _dissolve_conference(self, call: EmergencyCall) -> None:
        state = self.state(call)
        conf = state.conference
        state.conference = None
        if conf is None:
            return
        for leg_media in list(conf.legs.values()):
            conf.remove(leg_media)

    def _collapse_to_agency(self, call: EmergencyCall) -> None:
        """Operator gone from a conference: caller ⇄ agency on a plain relay
        (cheaper than mixing two), unless supervisors still listen."""
        state = self.state(call)
        caller_media = call.caller.media
        agency = state.agency_leg
        if caller_media is None or agency is None:
            return
        if state.supervisor_legs:
            conf = state.conference
            if conf is not None:
                for media in list(conf.legs.values()):
                    if media.label == LegRole.OPERATOR.value:
                        conf.remove(media)
            return
        self._dissolve_conference(call)
        caller_media.relay_with(agency.media)
        call.change_phase(Happening.CONFERENCE_COLLAPSED)

    async def _leave_conference(self, call: EmergencyCall, actor: str) -> None:
        state = self.state(call)
        if state.conference is None or state.agency_leg is None:
            raise ControlError(409, "the call is not in a conference with an agency")
        operator = call.operator
        await self._release_operator(call, "left_conference")
        self._collapse_to_agency(call)
        await call.journal.stamp(
            transferred_at=self.centre.wall(),
            event="operator_left_conference",
            detail={"operator": operator, "agency": state.agency, "by": actor},
        )

    # -- supervision -----------------------------------------------------------------

    async def _supervise(
        self, call: EmergencyCall, supervisor: str, requested: str, actor: str
    ) -> None:
        mode = _supervision_mode(requested)
        centre = self.centre
        user = next((u for u in centre.config.user if u.name == supervisor), None)
        sip_user = user.sip_user if user is not None else ""
        if not sip_user:
            raise ControlError(409, f"{supervisor!r} has no softphone (set [[user]] sip_user)")
        state = self.state(call)
        current = state.supervisor_legs.get(supervisor)
        if current is not None:
            leg, _old = current
            state.supervisor_legs[supervisor] = (leg, mode)
            if state.conference is not None and leg.state == "answered":
                state.conference.mixer.set_mode(SUPERVISION_MODES[mode])
                state.supervisors = [(supervisor, mode)]
            await self._audit(
                actor, "supervise_mode", call, {"supervisor": supervisor, "mode": mode}
            )
            return
        if call.operator_leg is None and state.agency_leg is None:
            raise ControlError(409, "nobody to supervise: the call is not connected")
        bindings = centre.registrar.contacts(sip_user, reachable_only=True)
        if not bindings:
            raise ControlError(
                409, f"the softphone of {supervisor!r} ({sip_user}) is not registered"
            )
        binding = bindings[0]
        try:
            leg = await call.open_outbound(
                role=LegRole.SUPERVISOR,
                name=supervisor,
                request_uri=binding.contact,
                to_uri=f"<sip:{sip_user}@{centre.config.sip.advertise}>",
                from_user="supervision",
                display=f"{mode.upper()} 112 {call.caller_number}",
                peer=binding.target,
                purpose="supervise",
                softphone=sip_user,  # issue 11: the phone's [[operator]] srtp
            )
        except PortsExhausted:
            raise ControlError(503, "no RTP ports free for supervision") from None
        call.other_legs.append(leg)
        state.supervisor_legs[supervisor] = (leg, mode)
        await self._audit(actor, "supervise_start", call, {"supervisor": supervisor, "mode": mode})
        await call.journal.event("supervision_dialled", {"supervisor": supervisor, "mode": mode})

    async def _supervisor_joined(self, call: EmergencyCall, leg: OutboundLeg) -> None:
        state = self.state(call)
        entry = state.supervisor_legs.get(leg.name)
        if entry is None or call.done:
            await call.hangup_leg(leg, "not_wanted")
            return
        mode = entry[1]
        parties = [p for p in (call.operator_leg, state.agency_leg) if p is not None]
        conf = self._start_conference(call, [*parties, leg])
        conf.mixer.set_mode(SUPERVISION_MODES[mode])
        state.supervisors = [(leg.name, mode)]
        leg.leg_id = await call.journal.add_leg(
            role=LegRole.SUPERVISOR,
            call_id=leg.invite.call_id,
            peer=f"{leg.name} {leg.peer}",
            codec=leg.media.codec.name,
            started_at=self.centre.wall(),
        )
        await call.journal.event("supervision_started", {"supervisor": leg.name, "mode": mode})
        self.centre.publish(
            "supervision_changed",
            incident_id=call.incident_id,
            data={"supervisor": leg.name, "mode": mode},
        )

    async def _stop_supervision(self, call: EmergencyCall, supervisor: str, actor: str) -> None:
        state = self.state(call)
        entry = state.supervisor_legs.get(supervisor)
        if entry is None:
            raise ControlError(409, f"{supervisor!r} is not supervising this call")
        leg, _mode = entry
        await call.hangup_leg(leg, "supervision_stopped")
        with contextlib.suppress(ValueError):
            call.other_legs.remove(leg)
        await self._supervisor_left(call, supervisor, actor)

    async def _supervisor_left(self, call: EmergencyCall, supervisor: str, actor: str) -> None:
        state = self.state(call)
        entry = state.supervisor_legs.pop(supervisor, None)
        state.supervisors = [(u, m) for u, m in state.supervisors if u != supervisor]
        if entry is not None:
            leg = entry[0]
            if state.conference is not None and leg.media.conference is state.conference:
                state.conference.remove(leg.media)
        if state.conference is not None and not state.supervisor_legs:
            conf = state.conference
            if state.agency_leg is not None and call.operator_leg is not None:
                conf.mixer.set_mode(Mode.CONFERENCE)  # a real three-way stays mixed
            else:
                other = call.operator_leg or state.agency_leg
                self._dissolve_conference(call)
                if other is not None and call.caller.media is not None:
                    call.caller.media.relay_with(other.media)
        await self._audit(actor, "supervise_stop", call, {"supervisor": supervisor})
        await call.journal.event("supervision_stopped", {"supervisor": supervisor})
        self.centre.publish(
            "supervision_changed", incident_id=call.incident_id, data={"supervisor": supervisor}
        )

    async def _audit(
        self, actor: str, action: str, call: EmergencyCall, detail: dict[str, Any]
    ) -> None:
        try:
            await self.centre.store.audit(
                actor=actor,
                action=action,
                target=call.incident_id or call.ref,
                detail=detail,
                at=self.centre.wall(),
            )
        except Exception as exc:  # noqa: BLE001
            log.error("audit_failed", action=action, error=str(exc))

    # -- overflow --------------------------------------------------------------------

    async def overflow(self, call: EmergencyCall) -> None:
        name = self.centre.config.queue.overflow_to
        try:
            agency = self._agency(name)
            state = self.state(call)
            state.mode = "overflow"
            state.actor = "queue"
            await self._dial_agency(call, agency, "overflow")
        except ControlError as exc:
            log.error("overflow_failed", incident_id=call.incident_id, error=exc.message)
            self.centre.desk.enqueue(call.ref, call.category, call.arrived_mono, front=True)

    # -- callbacks ---------------------------------------------------------------------

    async def start_callback(self, callback_id: int, *, operator: str, actor: str) -> None:
        centre = self.centre
        callbacks = await centre.store.list_callbacks(open_only=False)
        cb = next((c for c in callbacks if c.id == callback_id), None)
        if cb is None:
            raise ControlError(404, f"no callback {callback_id}")
        if cb.number is None:
            raise ControlError(409, "the caller withheld their number: no callback possible")
        if cb.status.value == "closed":
            raise ControlError(409, f"callback {callback_id} is closed")
        if operator not in centre.operator_users:
            raise ControlError(404, f"no operator {operator!r}")
        bindings = centre.registrar.contacts(operator, reachable_only=True)
        if not bindings:
            raise ControlError(409, f"the softphone of {operator} is not registered")
        trunk = next((t for t in centre.config.trunk if t.proxy is not None), None)
        if trunk is None or trunk.proxy is None:
            raise ControlError(409, "no trunk with a proxy to call out through")
        try:
            await centre.store.callback_take(callback_id, actor=actor, at=centre.wall())
        except Exception as exc:  # noqa: BLE001 - taken by someone else: tell the console
            raise ControlError(409, str(exc)) from None
        try:
            centre.desk.pause(operator, "callback")
        except AcdError as exc:
            raise ControlError(409, f"{operator} cannot take a callback now: {exc}") from None
        callback = CallbackCall(
            centre,
            callback_id=callback_id,
            incident_id=cb.incident_id,
            number=cb.number,
            operator=operator,
            binding_contact=bindings[0].contact,
            binding_target=bindings[0].target,
            trunk_caller_id=trunk.caller_id,
            proxy=Peer(trunk.transport, trunk.proxy.host, trunk.proxy.port),
            trunk=trunk.name,
            actor=actor,
        )
        centre.spawn(callback.run())


def _supervision_mode(requested: str) -> SupervisionMode:
    for mode in get_args(SupervisionMode):
        if mode == requested:
            return cast(SupervisionMode, mode)
    raise ControlError(400, f"unknown supervision mode {requested!r}")


def _consume(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()
