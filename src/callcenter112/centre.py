"""The running centre: SIP switchboard, operator desk (ACD glue) and live view.

`Centre` owns the live state of one callcenter112 node and the services the
calls share:

* the **switchboard** routes every SIP request the endpoint hands up:
  REGISTER (digest, lockout, registrar), OPTIONS, INVITEs from trunks (403
  for unknown sources, 404 for unknown numbers, 503 + Retry-After beyond
  `max_calls`) that become `EmergencyCall`s, and in-dialog requests to the
  call that owns the dialog (481 otherwise);
* the **desk** feeds the pure ACD with `loop.time()`, executes its actions
  (offers, cancels, announcements, overflow) by posting them to the calls,
  records operator state history and keeps the one ACD timer armed;
* **presence**: registrations, expiry and OPTIONS qualify move operators
  online and offline;
* the **live view** (`LiveCenter`, live.py) for the web console: snapshots,
  a bounded event stream, and the control verbs.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import replace
from email.utils import formatdate
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import __version__
from . import acd as acd_mod
from .acd import Acd, AcdSettings, OperatorProfile
from .callflow.call import EmergencyCall, outbound_request
from .callflow.desk import Desk
from .callflow.inbox import (
    CallerAck,
    CallerAckMissing,
    CallerCancelled,
    CallerRequest,
    Command,
    LegRequest,
    Mailbox,
    Shutdown,
)
from .callflow.legs import OutboundLeg
from .callflow.screening import end_call  # issue 12
from .config import Config, TrunkConfig
from .counters import CoreCounters, Counted, RtpQuality
from .faults import DiskWatch
from .ivr import IvrSettings
from .live import (
    ActiveCall,
    ControlError,
    LiveEvent,
    LiveSnapshot,
    OperatorView,
    RegistrationView,
    RtpUsage,
    TrunkView,
    WaitingCaller,
)
from .logs import get_logger
from .media.prompts import PromptLibrary
from .net.media import MediaEngine
from .net.sip_endpoint import SipEndpoint
from .records import Store
from .records.queries import FRESHER_BY_S
from .sip.auth import DigestAuthenticator
from .sip.dialog import Dialog, DialogId, DialogTable, no_such_dialog
from .sip.events import (
    AckNotReceived,
    AckReceived,
    CancelReceived,
    RequestReceived,
    ResponseReceived,
    TransactionEvent,
    TransactionLimitReached,
    TransactionTimedOut,
    TransportFailed,
)
from .sip.message import Request, Response, new_tag
from .sip.ratelimit import Admission, SourceGuard, lockout_response
from .sip.registrar import (
    Binding,
    ContactReachabilityChanged,
    OperatorUnregistered,
    Qualifier,
    Registrar,
    RegistrarEvent,
    binding_from_dict,
    binding_to_dict,
)

if TYPE_CHECKING:
    from .callflow.handoff import Handoff

__all__ = ["Centre", "Desk"]

from .cluster.role import LAST_RESORT_HEADER, NodeRole

log = get_logger("centre")

ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, REFER, NOTIFY, REGISTER, UPDATE"
ACCEPT = "application/sdp, application/dtmf-relay, application/dtmf"
SUPPORTED_SCHEMES = ("sip", "sips", "tel", "urn")
LIVE_QUEUE_SIZE = 256


class Centre:
    """One callcenter112 node's live state and shared services."""

    def __init__(
        self,
        config: Config,
        *,
        store: Store,
        prompts: PromptLibrary,
        media: MediaEngine,
        spawn: Callable[[Coroutine[Any, Any, None]], Any],
    ) -> None:
        self.config = config
        self.loop = asyncio.get_running_loop()
        self.store = store
        self.prompts = prompts
        self.media = media
        from .callflow.guards import watch_recording_health  # issue 11: recording health

        watch_recording_health(self)  # → recording_degraded / _recovered incident events
        self._spawn = spawn
        self.recordings_dir = config.path(config.storage.recordings)
        self.recordings_dir.mkdir(parents=True, exist_ok=True)
        self.user_agent = f"callcenter112/{__version__}"
        self.console_url = f"http://{config.web.listen}"
        # Issue 12: the call feeds caller audio to media.vad, so the silent step is on.
        self.ivr_settings = IvrSettings.from_config(config.ivr, speech_detection=True)
        self.metrics = CoreCounters()
        # Operators the ACD offers calls to; supervisors' phones register too
        # (takes_calls = false) but are only ever called for supervision.
        self.operator_users = {o.user for o in config.operator if o.takes_calls}
        self.calls: dict[str, EmergencyCall] = {}  # by call ref (incident id)
        self.active: set[EmergencyCall] = set()
        self._by_invite: dict[Any, EmergencyCall] = {}
        self._dialog_owner: dict[DialogId, tuple[Mailbox, OutboundLeg | None]] = {}
        self.dialogs = DialogTable()
        self.trunk_stats: dict[str, dict[str, Any]] = {
            t.name: {"in": None, "out": None, "calls": 0, "rejected": 0} for t in config.trunk
        }
        self._trunk_nets = [(t, t.networks) for t in config.trunk]
        self.disk_watch: DiskWatch | None = None  # issue 11: low-disk alarm, from start()
        self.guard = SourceGuard.from_config(config.sip)
        self.auth = DigestAuthenticator.from_config(
            config.sip,
            config.operator,
            secret=secrets.token_bytes(32),
            algorithms=tuple(config.sip.digest_algorithms),
        )
        self.registrar = Registrar.from_config(config.sip)
        self.qualifier = Qualifier.from_config(self.registrar, config.sip)
        self.desk = Desk(
            self,
            Acd(
                AcdSettings.from_config(config.queue),
                [OperatorProfile.from_config(o) for o in config.operator if o.takes_calls],
                now=self.loop.time(),
            ),
        )
        self.endpoint = SipEndpoint(
            host=config.sip.listen.host,
            port=config.sip.listen.port,
            advertise=config.sip.advertise,
            on_event=self._on_sip_event,
            t1=config.sip.timer_t1_ms / 1000,
        )
        self.endpoint.transport.trace = config.sip.trace
        # Admission before parse, and SIP over TLS (issue 11).
        from .net.admission import install_edge

        self.edge = install_edge(
            self.endpoint.transport,
            config,
            self.guard,
            now=self.loop.time(),
            max_transactions=self.endpoint.layer.max_transactions,
        )
        self.handoff: Handoff | None = None  # set by app.py: agencies, conference, …
        self.role = NodeRole()  # issue 15: LEADER unless app.py runs a cluster
        self.cluster: Any = None  # issue 15: cluster.glue.ClusterNode when clustered
        self._subscribers: set[asyncio.Queue[LiveEvent | None]] = set()
        self._presence_timer: asyncio.TimerHandle | None = None
        self.stopping = False
        self._save_pending = False
        # (operator, binding key) → expires_at as this node last wrote it to the store.
        self._saved_bindings: dict[tuple[str, str], float] = {}
        self._midnight_timer: asyncio.TimerHandle | None = None
        self.on_new_day: list[Callable[[], None]] = []  # issue 16: trunk counters' day

    # -- helpers for calls ---------------------------------------------------------

    def wall(self) -> float:
        return time.time()

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        self._spawn(coro)

    def spawn_write(self, aw: Awaitable[Any]) -> None:
        """A store write that must not hold up its caller; failures are logged."""

        async def run() -> None:
            try:
                await aw
            except Exception as exc:  # noqa: BLE001
                log.error("background_write_failed", error=str(exc))

        self._spawn(run())

    def publish(
        self,
        kind: str,
        *,
        operator: str | None = None,
        incident_id: str | None = None,
        data: dict[str, Any] | None = None,
    ) -> None:
        if not self._subscribers:
            return
        event = LiveEvent(
            kind=kind, at=self.wall(), operator=operator, incident_id=incident_id, data=data or {}
        )
        for q in self._subscribers:
            if q.full():
                with contextlib.suppress(asyncio.QueueEmpty):
                    q.get_nowait()  # a slow reader loses the oldest event
            q.put_nowait(event)

    def register_dialog(self, dialog: Dialog, call: Mailbox, leg: OutboundLeg | None) -> None:
        with contextlib.suppress(ValueError):
            self.dialogs.add(dialog)
        self._dialog_owner[dialog.id] = (call, leg)

    def unregister_dialog(self, dialog: Dialog) -> None:
        self.dialogs.remove(dialog)
        self._dialog_owner.pop(dialog.id, None)

    def call_identified(self, call: EmergencyCall) -> None:
        self.calls[call.ref] = call
        self.publish("call_arrived", incident_id=call.incident_id)

    def call_finished(self, call: EmergencyCall) -> None:
        self.active.discard(call)
        if self.calls.get(call.ref) is call:
            del self.calls[call.ref]
        self._by_invite.pop(call.caller.server_key, None)
        if call.caller.dialog is not None:
            self.unregister_dialog(call.caller.dialog)
        self.publish("queue_changed")

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        await self.endpoint.start()
        await self._restore_registrations()
        from .callflow.guards import start_disk_watch  # issue 11: low-disk alarm

        self.disk_watch = start_disk_watch(self)  # → live event "low_disk" every change
        self._arm_presence()
        self._arm_midnight()
        log.info(
            "sip_listening",
            address=f"{self.config.sip.listen.host}:{self.endpoint.port}",
            advertise=self.config.sip.advertise,
        )

    def _arm_midnight(self) -> None:
        """ "Today" (calls per operator, per trunk) starts at the centre's local midnight."""
        from datetime import datetime, timedelta
        from zoneinfo import ZoneInfo

        tz = ZoneInfo(self.config.centre.timezone)
        now = datetime.fromtimestamp(self.wall(), tz)
        midnight = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), tz)
        delay = max(1.0, (midnight - now).total_seconds())
        self._midnight_timer = self.loop.call_later(delay, self._new_day)

    def _new_day(self) -> None:
        self.desk.apply(self.desk.acd.reset_daily_counts())
        for stats in self.trunk_stats.values():
            stats["calls"] = 0
            stats["rejected"] = 0
        for hook in self.on_new_day:  # issue 16
            hook()
        log.info("new_day")
        self.publish("queue_changed")
        self._arm_midnight()

    async def stop(self) -> None:
        """End every call cleanly (BYE, recordings sealed, incidents closed)."""
        self.stopping = True
        if self._midnight_timer is not None:
            self._midnight_timer.cancel()
        for call in list(self.active):
            call.post(Shutdown())
        for _ in range(100):
            if not self.active:
                break
            await asyncio.sleep(0.05)
        self.desk.close()
        try:
            await self._write_registrations()
            # Nobody is on duty on a stopped server; the history says so now,
            # not at the next start.
            await self.store.close_operator_states(reason="server_stopped", at=self.wall())
        except Exception as exc:  # noqa: BLE001
            log.error("stop_bookkeeping_failed", error=str(exc))
        if self._presence_timer is not None:
            self._presence_timer.cancel()
        for q in list(self._subscribers):
            with contextlib.suppress(asyncio.QueueFull):
                q.put_nowait(None)
        await asyncio.sleep(0.1)  # let BYEs leave
        await self.endpoint.close()

    # -- the switchboard ---------------------------------------------------------------

    def _trunk_of(self, ip: str) -> TrunkConfig | None:
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return None
        for trunk, nets in self._trunk_nets:
            if any(addr.version == n.version and addr in n for n in nets):
                return trunk
        return None

    def _on_sip_event(self, event: TransactionEvent) -> None:
        if isinstance(event, RequestReceived):
            self._on_request(event)
        elif isinstance(event, AckReceived):
            self._on_ack(event)
        elif isinstance(event, CancelReceived):
            call = self._by_invite.get(event.server_key)
            if call is not None:
                call.post(CallerCancelled(event))
        elif isinstance(event, AckNotReceived):
            call = self._by_invite.get(event.server_key)
            if call is not None:
                call.post(CallerAckMissing(event))
        elif isinstance(event, TransactionLimitReached):
            self.metrics[Counted.TRANSACTION_LIMIT] += 1
        elif isinstance(event, ResponseReceived | TransactionTimedOut | TransportFailed):
            pass  # answers to requests nobody waits for any more

    def _respond(self, ev: RequestReceived, status: int, **kwargs: Any) -> None:
        resp = Response.for_request(ev.request, status, to_tag=ev.to_tag or new_tag(), **kwargs)
        self.endpoint.respond(ev.server_key, resp)

    def _on_request(self, ev: RequestReceived) -> None:
        req = ev.request
        try:
            if req.max_forwards == 0 and req.method != "OPTIONS":
                self._respond(ev, 483)
                return
        except Exception:  # noqa: BLE001 - validated by the parser already
            pass
        scheme = req.uri.split(":", 1)[0].lower()
        if scheme not in SUPPORTED_SCHEMES:
            self._respond(ev, 416)
            return
        if req.to_tag:
            self._in_dialog(ev)
            return
        method = req.method
        if method == "INVITE":
            self._on_invite(ev)
        elif method == "REGISTER":
            self._on_register(ev)
        elif method == "OPTIONS" and (probe := self.role.probe_answer()).status != 200:
            self._respond(ev, probe.status, reason=probe.reason)  # issue 15: the edge's probe
        elif method == "OPTIONS":
            self._respond(
                ev,
                200,
                headers=[
                    ("Allow", ALLOW),
                    ("Accept", ACCEPT),
                    ("Supported", "replaces"),
                    ("Server", self.user_agent),
                ],
            )
        elif method in ("BYE", "INFO", "UPDATE", "NOTIFY", "REFER", "PRACK"):
            self.endpoint.respond(ev.server_key, no_such_dialog(req))
        else:
            self._respond(ev, 405, headers=[("Allow", ALLOW)])

    def _in_dialog(self, ev: RequestReceived) -> None:
        req = ev.request
        match = self.dialogs.match_request(req, ev.peer)
        if match.defect is not None:
            log.info("peer_defect_tolerated", peer=str(ev.peer), kind=match.defect.kind)
        owner = self._dialog_owner.get(match.dialog.id) if match.dialog is not None else None
        if owner is None:
            self.endpoint.respond(ev.server_key, no_such_dialog(req))
            return
        call, leg = owner
        # An ended call still answers what reaches it (see EmergencyCall.post).
        if leg is None:
            call.post(CallerRequest(req, ev.server_key, ev.peer))
        else:
            call.post(LegRequest(leg, req, ev.server_key, ev.peer))

    def _on_ack(self, ev: AckReceived) -> None:
        call: Mailbox | None = (
            self._by_invite.get(ev.server_key) if ev.server_key is not None else None
        )
        if call is None:
            match = self.dialogs.match_request(ev.request, ev.peer)
            owner = self._dialog_owner.get(match.dialog.id) if match.dialog else None
            if owner is None or owner[1] is not None:
                return
            call = owner[0]
        call.post(CallerAck(ev.request))

    def _on_invite(self, ev: RequestReceived) -> None:
        req = ev.request
        if (a := self.role.refusal(last_resort=LAST_RESORT_HEADER in req.headers)) is not None:
            self._respond(ev, a.status, reason=a.reason, headers=list(a.headers))  # issue 15
            return
        trunk = self._trunk_of(ev.peer.host)
        if trunk is None:
            # Issue 11: strangers were answered statelessly by the edge; what reaches
            # here is a known operator address, refused as DESIGN §2 says (403).
            log.info("invite_forbidden", source=str(ev.peer), uri=req.uri, stateless=False)
            self._respond(ev, 403, headers=[("Warning", '399 callcenter112 "not a trunk"')])
            return
        stats = self.trunk_stats[trunk.name]
        stats["in"] = self.wall()
        from .callflow.legs import dialled_number

        dialled = dialled_number(req)
        if dialled not in trunk.numbers:
            stats["rejected"] += 1
            self._respond(ev, 404)
            return
        from .callflow.guards import admits_caller  # issue 11: RTP pairs kept in reserve

        if (
            self.stopping
            or len(self.active) >= self.config.sip.max_calls
            or not admits_caller(self)
        ):
            stats["rejected"] += 1
            self.metrics[Counted.REJECTED_CAPACITY] += 1
            log.warning("capacity_reached", active=len(self.active))
            self._respond(ev, 503, headers=[("Retry-After", str(self.config.sip.retry_after_s))])
            if not self.stopping:
                self.spawn_write(self.record_refused(req, trunk.name, "capacity"))
            return
        # Issue 13: any body is accepted (multipart SDP + PIDF-LO); callflow/location.py reads it.
        stats["calls"] += 1
        call = EmergencyCall(
            self,
            invite=req,
            peer=ev.peer,
            server_key=ev.server_key,
            to_tag=ev.to_tag or new_tag(),
            trunk=trunk.name,
            arrived_mono=self.loop.time(),
            arrived_wall=self.wall(),
        )
        self.active.add(call)
        self._by_invite[ev.server_key] = call
        self._spawn(call.run())

    async def record_refused(self, invite: Request, trunk: str, reason: str) -> None:
        """An emergency call refused for lack of capacity (503: the carrier may
        route it to a neighbouring centre) is still an emergency that reached
        us: it becomes an `interrupted` incident with a callback task, never a
        silent loss."""
        from .callflow.legs import caller_identity, dialled_number
        from .incidents import Status

        number, name = caller_identity(invite)
        at = self.wall()
        incident_id = await self.store.create_incident(
            caller=number,
            caller_name=name,
            arrived_at=at,
            trunk=trunk,
            dialled=dialled_number(invite),
            call_id=invite.call_id,
        )
        await self.store.add_event(incident_id, "refused", {"status": 503, "reason": reason}, at=at)
        await self.store.close_incident(
            incident_id, status=Status.INTERRUPTED, at=at, ended_at=at, reason=f"refused_{reason}"
        )

    # -- registration and presence ---------------------------------------------------------

    def _on_register(self, ev: RequestReceived) -> None:
        req = ev.request
        now = self.loop.time()
        try:
            to_user = req.to_address.uri.user
        except Exception:  # noqa: BLE001
            to_user = None
        if self._trunk_of(ev.peer.host) is None:
            # The edge's admission already took this request's token from the
            # source's bucket; taking a second one here would halve the
            # rate a NAT full of operators' phones is allowed.
            locked = self.guard.locked_until(ev.peer.host, now, user=to_user) is not None
            admission = Admission.LOCKED_OUT if locked else Admission.ADMITTED
        else:
            # Trunk addresses skip the transport's bucket (emergency calls
            # are never throttled); a REGISTER from one still pays here.
            admission = self.guard.check(ev.peer.host, now, user=to_user)
        if admission is Admission.LOCKED_OUT:
            self.endpoint.respond(ev.server_key, lockout_response(req))
            return
        if admission is Admission.THROTTLED:
            return
        result = self.auth.verify(req, now, source=ev.peer.host)  # issue 11: guessing guard
        if not result.ok:
            if result.counts_as_failure:
                started = self.guard.record_failure(ev.peer.host, now, user=result.username)
                if started is not None:
                    log.warning(
                        "auth_lockout",
                        source=ev.peer.host,
                        user=result.username,
                        failures=started.failures,
                    )
                    self.spawn_write(
                        self.store.audit(
                            actor=f"sip:{ev.peer.host}",
                            action="sip_lockout",
                            target=result.username or ev.peer.host,
                            detail={"failures": started.failures},
                            at=self.wall(),
                        )
                    )
            assert result.response is not None
            self.endpoint.respond(ev.server_key, result.response)
            return
        assert result.user is not None
        self.guard.record_success(ev.peer.host, now, user=result.user)
        outcome = self.registrar.handle_register(req, result.user, now, source=ev.peer)
        response = outcome.response
        response.headers.add("Date", formatdate(usegmt=True))
        self.endpoint.respond(ev.server_key, response)
        for event in outcome.events:
            self._presence_event(event)
        if outcome.status == 200 and self.role.runs_acd():
            self._save_registrations_soon()
        elif outcome.status == 200:  # issue 15: a follower's last-resort REGISTER
            self._save_registrations(result.user)
        self._arm_presence()

    def _presence_event(self, event: RegistrarEvent) -> None:
        # Why an operator went offline (expired, removed, unreachable) and
        # which way a contact's reachability flipped: what telecom staff ask
        # first when a softphone "disappears".
        detail: dict[str, Any] = {}
        if isinstance(event, OperatorUnregistered):
            detail["reason"] = event.reason.value
        elif isinstance(event, ContactReachabilityChanged):
            detail["reachable"] = event.reachable
        log.info(
            "presence", kind=type(event).__name__, user=event.user, contact=event.contact, **detail
        )
        self.desk.presence(event)
        self.publish("registration_changed", operator=event.user)

    def _arm_presence(self) -> None:
        if self._presence_timer is not None:
            self._presence_timer.cancel()
        deadlines = [d for d in (self.registrar.deadline(), self.qualifier.deadline()) if d]
        at = min(deadlines) if deadlines else self.loop.time() + 5.0
        self._presence_timer = self.loop.call_at(
            max(at, self.loop.time() + 0.05), self._presence_tick
        )

    def _presence_tick(self) -> None:
        self._presence_timer = None
        now = self.loop.time()
        events = [*self.registrar.expire(now), *self.qualifier.expire(now)]
        for event in events:
            self._presence_event(event)
        if events:
            self._save_registrations_soon()
        for binding in self.qualifier.due(now):
            self._qualify(binding, now)
        self._arm_presence()

    # -- registrations across a restart --------------------------------------------

    async def _restore_registrations(self) -> None:
        """Take back the softphone bindings saved in the store and ping each new
        one at once: operators are online again within seconds of a restart
        instead of whenever their phones next re-register (up to an hour).

        Also the leader's merge in a cluster (cluster/glue.py calls this every
        few seconds while the node runs the ACD): a row is taken only when this
        node did not write it itself or it is fresher than what this node wrote,
        so a binding this node just dropped is not brought back before its
        delete is written."""
        try:
            rows = await self.store.load_registrations(now=self.wall())
        except Exception as exc:  # noqa: BLE001 - phones re-register on their own anyway
            log.error("registrations_load_failed", error=str(exc))
            return
        mono, wall = self.loop.time(), self.wall()
        configured = {o.user for o in self.config.operator}
        bindings, taken = [], {}
        for user, key, text, expires in rows:
            if user not in configured:
                continue  # removed from the configuration meanwhile
            mine = self._saved_bindings.get((user, key))
            if mine is not None and expires <= mine + FRESHER_BY_S:
                continue  # this node's own row: its registrar already decided
            try:
                b = binding_from_dict(json.loads(text), mono_now=mono, wall_now=wall)
            except (ValueError, KeyError, TypeError) as exc:
                log.warning("registration_row_unusable", user=user, error=str(exc))
                continue
            # First ping due now: the phone has not proved itself to this process.
            bindings.append(replace(b, refreshed_at=mono - self.qualifier.every_s))
            taken[(user, key)] = expires
            self.guard.record_success(b.source.host, mono, user=user)  # issue 11: known address
        events = self.registrar.restore(bindings, mono)
        self._saved_bindings.update(taken)  # in the store already, as written there
        for event in events:
            self._presence_event(event)
        if events:
            log.info("registrations_restored", bindings=len(bindings), operators=len(events))
            self._arm_presence()

    def _save_registrations_soon(self) -> None:
        if self._save_pending:
            return
        self._save_pending = True
        self.loop.call_later(1.0, self._save_registrations)

    def _save_registrations(self, user: str | None = None) -> None:
        self._save_pending = False
        self.spawn_write(self._write_registrations(user))

    async def _write_registrations(self, user: str | None = None) -> None:
        """Write this node's registrations to the store (see `save_registrations`).

        The node that runs the ACD owns the table: it writes every binding it
        holds and deletes the ones it dropped. Any other node writes only the
        bindings of the `user` whose REGISTER it just answered (the edge sent it
        as a last resort) and never deletes another node's rows: the leader
        merges them within seconds (cluster/glue.py)."""
        if user is None and not self.role.runs_acd():
            return
        rows = self._registration_rows(user)
        held = {(u, k) for u, k, _t, _e in rows}
        gone = [
            (u, k, e)
            for (u, k), e in self._saved_bindings.items()
            if (user is None or u == user) and (u, k) not in held
        ]
        await self.store.save_registrations(rows, gone=gone, now=self.wall())
        for u, k, _e in gone:
            self._saved_bindings.pop((u, k), None)
        self._saved_bindings.update({(u, k): e for u, k, _t, e in rows})

    def _registration_rows(self, user: str | None = None) -> list[tuple[str, str, str, float]]:
        mono, wall = self.loop.time(), self.wall()
        return [
            (
                b.user,
                b.key,
                json.dumps(binding_to_dict(b, mono_now=mono, wall_now=wall), sort_keys=True),
                wall + (b.expires_at - mono),
            )
            for b in self.registrar.bindings()
            if user is None or b.user == user
        ]

    def _qualify(self, binding: Binding, sent: float) -> None:
        options = outbound_request(
            self,
            "OPTIONS",
            request_uri=binding.contact,
            to_uri=f"<sip:{binding.user}@{self.config.sip.advertise}>",
            from_user="qualify",
            peer=binding.target,
        )

        def handler(event: TransactionEvent) -> None:
            now = self.loop.time()
            current = self.registrar.find(binding)
            if current is None:
                return
            if isinstance(event, ResponseReceived):
                events = self.qualifier.answered(current, now - sent, now)
            else:
                events = self.qualifier.failed(current, now)
            for e in events:
                self._presence_event(e)

        try:
            self.endpoint.request(options, binding.target, handler)
        except Exception as exc:  # noqa: BLE001
            log.warning("qualify_failed", user=binding.user, error=str(exc))

    # -- LiveCenter ------------------------------------------------------------------------

    def _wall_of(self, mono: float) -> float:
        return self.wall() - (self.loop.time() - mono)

    def snapshot(self) -> LiveSnapshot:
        now_mono = self.loop.time()
        snap = self.desk.acd.snapshot()
        by_ref = self.calls
        waiting = []
        for c in snap.callers:
            call = by_ref.get(c.call_ref)
            waiting.append(
                WaitingCaller(
                    incident_id=c.call_ref,
                    caller=call.caller_number if call else "?",
                    category=c.category,
                    language=call.language if call else "id",
                    arrived_at=self._wall_of(c.arrived_at),
                    position=c.position,
                    offered_to=c.offered_to,
                )
            )
        names = {o.user: o.name or o.user for o in self.config.operator}
        operators = [
            OperatorView(
                user=o.user,
                name=names.get(o.user, o.user),
                skills=tuple(sorted(o.skills)),
                state=str(o.state),  # type: ignore[arg-type]
                since=self._wall_of(o.since),
                reason=(o.pause_reason if o.state is acd_mod.OperatorState.PAUSED else o.reason),
                calls_today=o.calls_today,
                missed=o.missed,
                incident_id=o.call_ref,
                registered=o.registered,
                reachable=o.reachable,
            )
            for o in snap.operators
        ]
        calls = [
            ActiveCall(
                incident_id=c.incident_id or c.ref,
                caller=c.caller_number,
                category=c.category,
                phase=c.phase,
                operator=c.operator,
                agency=c.handoff.agency,
                arrived_at=c.arrived_wall,
                phase_since=self._wall_of(c.phase_since),
                supervisors=tuple(c.handoff.supervisors),
            )
            for c in self.active
            if c.phase != "ended"
        ]
        trunks = [
            TrunkView(
                name=t.name,
                allow=tuple(t.allow),
                numbers=tuple(t.numbers),
                proxy=str(t.proxy) if t.proxy else None,
                last_inbound_at=self.trunk_stats[t.name]["in"],
                last_outbound_at=self.trunk_stats[t.name]["out"],
                calls_today=self.trunk_stats[t.name]["calls"],
                active_calls=sum(1 for c in self.active if c.trunk == t.name),
                rejected_today=self.trunk_stats[t.name]["rejected"],
            )
            for t in self.config.trunk
        ]
        regs = [
            RegistrationView(
                user=b.user,
                contact=b.contact,
                source=str(b.source),
                expires_at=self.wall() + b.expires_in(now_mono),
                reachable=b.reachable,
                rtt_ms=(r * 1000 if (r := self.qualifier.rtt(b)) is not None else None),
                user_agent=b.user_agent or None,
            )
            for b in self.registrar.snapshot()
        ]
        pool = self.media.pool
        return LiveSnapshot(
            at=self.wall(),
            waiting=tuple(waiting),
            operators=tuple(operators),
            calls=tuple(calls),
            trunks=tuple(trunks),
            registrations=tuple(regs),
            rtp=RtpUsage(in_use=pool.in_use, opened=pool.opened, capacity=pool.capacity),
            max_calls=self.config.sip.max_calls,
            low_disk=self.disk_watch.low_folders() if self.disk_watch is not None else (),
        )

    async def subscribe(self) -> AsyncIterator[LiveEvent]:
        q: asyncio.Queue[LiveEvent | None] = asyncio.Queue(LIVE_QUEUE_SIZE)
        self._subscribers.add(q)
        try:
            while True:
                event = await q.get()
                if event is None:
                    return
                yield event
        finally:
            self._subscribers.discard(q)

    async def set_operator_paused(
        self, user: str, *, paused: bool, reason: str | None, actor: str
    ) -> None:
        if user not in self.operator_users:
            raise ControlError(404, f"no operator {user!r}")
        try:
            if paused:
                self.desk.pause(user, reason or "break")
            else:
                self.desk.unpause(user)
        except acd_mod.AcdError as exc:
            raise ControlError(409, str(exc)) from None
        await self.store.audit(
            actor=actor,
            action="pause" if paused else "unpause",
            target=f"operator:{user}",
            detail={"reason": reason} if reason else None,
            at=self.wall(),
        )

    def _call_for(self, incident_id: str) -> EmergencyCall:
        call = self.calls.get(incident_id)
        if call is None or call.done:
            raise ControlError(404, f"no live call for incident {incident_id}")
        return call

    async def _command(self, incident_id: str, name: str, **args: Any) -> None:
        if self.handoff is None:
            raise ControlError(501, "agency hand-off is not available on this node")
        call = self._call_for(incident_id)
        done: asyncio.Future[None] = self.loop.create_future()
        call.post(Command(name, args, done))
        try:
            await asyncio.wait_for(done, 10.0)
        except ControlError:
            raise
        except TimeoutError:
            raise ControlError(504, "the call did not answer in time") from None
        except Exception as exc:  # noqa: BLE001
            raise ControlError(409, str(exc)) from None

    async def transfer(self, incident_id: str, agency: str, *, mode: str, actor: str) -> None:
        await self._command(incident_id, "transfer", agency=agency, mode=mode, actor=actor)
        await self._audit_control(actor, "transfer", incident_id, {"agency": agency, "mode": mode})

    async def end_call(self, incident_id: str, *, actor: str, reason: str) -> None:
        """Issue 12, web.console.CallEnder: an operator ends a prank/ghost call."""
        await end_call(self._call_for(incident_id), actor=actor, reason=reason)
        await self._audit_control(actor, "end_call", incident_id, {"reason": reason})

    async def leave_conference(self, incident_id: str, *, actor: str) -> None:
        await self._command(incident_id, "leave_conference", actor=actor)
        await self._audit_control(actor, "leave_conference", incident_id, None)

    async def _audit_control(
        self, actor: str, action: str, incident_id: str, detail: dict[str, Any] | None
    ) -> None:
        try:
            await self.store.audit(
                actor=actor, action=action, target=incident_id, detail=detail, at=self.wall()
            )
        except Exception as exc:  # noqa: BLE001 - the hand-off itself already happened
            log.error("audit_failed", action=action, error=str(exc))

    def rtp_quality(self) -> RtpQuality:
        """RTP receive statistics over the legs up now, for /metrics."""
        received = lost = 0
        jitter: list[float] = []
        for leg in list(self.media.legs):
            stats = leg.stats()
            received += stats.packets
            lost += max(0, stats.lost)
            if stats.packets:
                jitter.append(stats.jitter_ms)
        return RtpQuality(
            streams=len(jitter),
            packets_received=received + int(getattr(self.media, "closed_packets", 0)),
            packets_lost=lost + int(getattr(self.media, "closed_lost", 0)),
            jitter_ms=tuple(jitter),
        )

    async def supervise(self, incident_id: str, *, supervisor: str, mode: str, actor: str) -> None:
        await self._command(incident_id, "supervise", supervisor=supervisor, mode=mode, actor=actor)

    async def stop_supervision(self, incident_id: str, *, supervisor: str, actor: str) -> None:
        await self._command(incident_id, "stop_supervision", supervisor=supervisor, actor=actor)

    async def start_callback(self, callback_id: int, *, operator: str, actor: str) -> None:
        if self.handoff is None:
            raise ControlError(501, "callbacks are not available on this node")
        await self.handoff.start_callback(callback_id, operator=operator, actor=actor)


def incident_recording_dir(base: Path, incident_id: str) -> Path:
    day = incident_id.split("-", maxsplit=1)[0]
    return base / day[:4] / day[4:6] / day[6:8]
