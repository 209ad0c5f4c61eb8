"""Drive the real call flow over a fake wire and a fake clock (issue 10).

`CallflowHarness` builds a real `Centre` (the switchboard, the desk/ACD, the
hand-off, the journal) on a real SQLite store in a temporary folder and a real
`MediaEngine` on loopback RTP sockets, and replaces only two things:

- the SIP *transport*: every datagram the transaction layer sends is parsed and
  kept in `wire.sent`; tests deliver SIP to `SipEndpoint._on_message`, so the
  real transaction layer (retransmissions, ACK matching, CANCEL) still runs;
- the *clock*: `FakeClock` stands in for the loop's `time()`, `call_at` and
  `call_later` everywhere the call flow reads them (centre, desk, endpoint,
  media engine). `advance(seconds)` moves it on in 20 ms media ticks, fires the
  due timers and lets every call actor finish what that caused.

`Caller` (the carrier's side of one call) and `Phone` (an operator's,
agency's or supervisor's softphone) build and answer SIP as a peer would. The
harness never sleeps for SIP timers: only the store's writer thread and file
I/O take real time, and `settle()` waits until every actor is idle again.

Used by tests/test_callflow_flows.py and tests/test_callflow_machine.py; other
features' call-flow tests can build on it (see docs/architecture.md).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import tomllib
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from callcenter112.callflow.call import EmergencyCall
from callcenter112.callflow.handoff import Handoff
from callcenter112.callflow.inbox import Shutdown
from callcenter112.callflow.phases import Phase
from callcenter112.centre import Centre
from callcenter112.config import Config, parse_config
from callcenter112.incidents import RecordingStatus, Status
from callcenter112.media.prompts import PromptLibrary
from callcenter112.media.recorder import repair_wav
from callcenter112.net.media import MediaEngine
from callcenter112.net.rtp_transport import RtpSocketPool
from callcenter112.records import RecoveryReport, Store, new_store, recover_after_crash
from callcenter112.sip.auth import authorization_for
from callcenter112.sip.message import Headers, Request, Response, parse_message
from callcenter112.sip.peer import Peer
from harness import ROOT, SOUNDS, Operator, config_text, free_range

__all__ = ["Caller", "CallflowHarness", "FakeClock", "Phone", "Wire", "sdp_offer"]

TICK_S = 0.02
PROXY = Peer("udp", "127.0.0.1", 5090)  # the trunk's outbound proxy: agencies, callbacks
_seq = itertools.count(1)


# --------------------------------------------------------------------------- the clock


class FakeHandle:
    """What `call_at` returns: cancellable, like `asyncio.TimerHandle`."""

    def __init__(self, when: float, callback: Callable[..., object], args: tuple[Any, ...]) -> None:
        self._when = when
        self.callback = callback
        self.args = args
        self._cancelled = False

    def cancel(self) -> None:
        self._cancelled = True

    def cancelled(self) -> bool:
        return self._cancelled

    def when(self) -> float:
        return self._when


class FakeClock:
    """The parts of an event loop the call flow uses for time; the rest
    (`call_soon`, `create_future`, tasks) stays on the real loop."""

    def __init__(self, real: asyncio.AbstractEventLoop, start: float) -> None:
        self.real = real
        self.now = start
        self._heap: list[tuple[float, int, FakeHandle]] = []

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Callable[..., object], *args: Any) -> FakeHandle:
        handle = FakeHandle(when, callback, args)
        heapq.heappush(self._heap, (when, next(_seq), handle))
        return handle

    def call_later(self, delay: float, callback: Callable[..., object], *args: Any) -> FakeHandle:
        return self.call_at(self.now + delay, callback, *args)

    def call_soon(self, callback: Callable[..., object], *args: Any) -> asyncio.Handle:
        return self.real.call_soon(callback, *args)

    def create_future(self) -> asyncio.Future[Any]:
        return self.real.create_future()

    def fire_due(self) -> int:
        """Run every timer due by now; how many ran."""
        fired = 0
        while self._heap and self._heap[0][0] <= self.now:
            _, _, handle = heapq.heappop(self._heap)
            if not handle.cancelled():
                handle.callback(*handle.args)
                fired += 1
        return fired

    def pending(self) -> list[FakeHandle]:
        return [h for _, _, h in self._heap if not h.cancelled()]


# --------------------------------------------------------------------------- the wire


@dataclass
class Sent:
    message: Request | Response
    peer: Peer


@dataclass
class Wire:
    """Stands in for `SipTransport`: keeps what the endpoint sends."""

    port: int = 5060
    tls_port: int | None = None  # no TLS listener (SipEndpoint.port_for)
    trace: bool = False
    sent: list[Sent] = field(default_factory=list)
    on_connection_lost: Callable[[Peer], None] | None = None

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def send(self, data: bytes, peer: Peer) -> None:
        self.sent.append(Sent(parse_message(data), peer))

    def to(self, peer: Peer, *, since: int = 0) -> list[Request | Response]:
        return [s.message for s in self.sent[since:] if s.peer == peer]

    def requests(self, peer: Peer, method: str, *, since: int = 0) -> list[Request]:
        return [
            m for m in self.to(peer, since=since) if isinstance(m, Request) and m.method == method
        ]

    def responses(self, peer: Peer, call_id: str, *, since: int = 0) -> list[Response]:
        return [
            m
            for m in self.to(peer, since=since)
            if isinstance(m, Response) and m.call_id == call_id
        ]


def sdp_offer(port: int, *, direction: str = "sendrecv", version: int = 1) -> bytes:
    return (
        "v=0\r\n"
        f"o=- 4711 {version} IN IP4 127.0.0.1\r\n"
        "s=-\r\n"
        "c=IN IP4 127.0.0.1\r\n"
        "t=0 0\r\n"
        f"m=audio {port} RTP/AVP 8 0 101\r\n"
        "a=rtpmap:8 PCMA/8000\r\n"
        "a=rtpmap:0 PCMU/8000\r\n"
        "a=rtpmap:101 telephone-event/8000\r\n"
        "a=fmtp:101 0-16\r\n"
        f"a={direction}\r\n"
    ).encode()


def _request(
    method: str,
    uri: str,
    *,
    peer: Peer,
    from_: str,
    to: str,
    call_id: str,
    cseq: int,
    contact: str | None = None,
    body: bytes = b"",
    content_type: str = "application/sdp",
    extra: list[tuple[str, str]] | None = None,
    cseq_method: str | None = None,
    branch: str | None = None,
) -> Request:
    h = Headers()
    h.add("Via", f"SIP/2.0/UDP {peer.host}:{peer.port};branch={branch or f'z9hG4bK-h{next(_seq)}'}")
    h.add("Max-Forwards", "70")
    h.add("From", from_)
    h.add("To", to)
    h.add("Call-ID", call_id)
    h.add("CSeq", f"{cseq} {cseq_method or method}")
    if contact:
        h.add("Contact", contact)
    for name, value in extra or []:
        h.add(name, value)
    if body:
        h.add("Content-Type", content_type)
    request = parse_message(Request(method, uri, h, body).serialize())
    assert isinstance(request, Request)
    return request


# --------------------------------------------------------------------------- the harness


class CallflowHarness:
    """A centre on a fake wire and a fake clock; see the module docstring."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.wire = Wire()
        self.tasks: list[asyncio.Task[Any]] = []
        self.centre: Centre
        self.clock: FakeClock
        self.store: Store
        self.media: MediaEngine
        self.config: Config
        self._pool: RtpSocketPool
        self._incidents: set[str] = set()
        self.crashed = False
        self.answered: set[tuple[str, int, str]] = set()  # requests a peer has answered

    @classmethod
    async def open(
        cls,
        directory: Path,
        *,
        operators: list[Operator] | None = None,
        agencies: list[tuple[str, str]] | None = None,
        extra: str = "",
        sip_extra: str = "",
        supervisor_phone: str = "",
    ) -> CallflowHarness:
        """A centre on the fake wire; agencies are dialled through the trunk's
        proxy at `PROXY` (answer there with `Phone(h, "agency", port=PROXY.port)`)."""
        self = cls(directory)
        data = directory / "data"
        data.mkdir(parents=True, exist_ok=True)
        text = config_text(
            sip_port=5060,
            web_port=8080,
            rtp=free_range(16),
            data=data,
            operators=operators or [Operator("op1", "secret1")],
            agencies=agencies,
            extra=extra,
            sip_extra=sip_extra,
            trunk_proxy_port=PROXY.port,
            supervisor_phone=supervisor_phone,
        )
        self.config = parse_config(tomllib.loads(text), base_dir=ROOT)
        real = asyncio.get_running_loop()
        self.clock = FakeClock(real, real.time())
        self.store = new_store(str(data / "db.sqlite3"))
        await self.store.open()
        lo, hi = self.config.rtp.port_range
        self._pool = RtpSocketPool("127.0.0.1", (lo, hi), preopen=0)
        await self._pool.start()
        self.media = MediaEngine(self._pool, cname_host="127.0.0.1")
        self.media.loop = self.clock  # type: ignore[assignment]
        self.media.clock = type(self.media.clock)(start=self.clock.time())
        self.centre = Centre(
            self.config,
            store=self.store,
            prompts=PromptLibrary.load(SOUNDS),
            media=self.media,
            spawn=self._spawn,
        )
        self.centre.loop = self.clock  # type: ignore[assignment]
        self.centre.endpoint.transport = self.wire  # type: ignore[assignment]
        self.centre.endpoint._loop = self.clock  # type: ignore[assignment]
        self.centre.handoff = Handoff(self.centre)
        return self

    async def crash_and_recover(self) -> RecoveryReport:
        """The process dies here: nothing more runs for the live calls (their
        actors are never woken again) and the store is reopened from its file,
        as the next start does, and crash recovery runs on it."""
        self.crashed = True
        self.media.legs.clear()  # the dead process's sockets are the kernel's to close
        await self.store.close()
        self.store = new_store(str(self.directory / "data" / "db.sqlite3"))
        await self.store.open()
        return await recover_after_crash(
            self.store, self.centre.recordings_dir, self.centre.wall() + 60, repair=repair_wav
        )

    async def close(self) -> None:
        if self.crashed:
            for task in self.tasks:
                task.cancel()
            await asyncio.gather(*self.tasks, return_exceptions=True)
            await self.store.close()
            await self._pool.close()
            return
        for call in list(self.centre.active):
            if not call.done:
                call.post(Shutdown())
        await self.settle()
        for task in self.tasks:
            if not task.done():
                task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.store.close()
        await self._pool.close()

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.append(task)
        return task

    # -- driving ------------------------------------------------------------------

    @property
    def endpoint(self) -> Any:
        return self.centre.endpoint

    async def deliver(self, message: Request | Response, peer: Peer) -> None:
        """`message` arrives from `peer` (parsed from its bytes, as off a socket)."""
        parsed = parse_message(message.serialize())
        self.centre.endpoint._on_message(parsed, peer)
        await self.settle()

    async def settle(self, *, limit_s: float = 10.0) -> None:
        """Until every task is idle: call actors waiting on an empty inbox, the rest done."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit_s
        quiet = 0
        while quiet < 2:
            await asyncio.sleep(0)
            if all(_idle(task) for task in self.tasks):
                quiet += 1
            else:
                quiet = 0
                await asyncio.sleep(0.001)
            if loop.time() > deadline:
                busy = [t.get_coro() for t in self.tasks if not _idle(t)]
                raise AssertionError(f"call flow still busy after {limit_s}s: {busy}")
        self._note()
        self.tasks = [t for t in self.tasks if not t.done()]

    async def advance(self, seconds: float) -> None:
        """Move the clock on by `seconds`, tick by tick: timers fire, media plays."""
        end = self.clock.now + seconds
        while self.clock.now < end - 1e-9:
            self.clock.now = min(end, self.clock.now + TICK_S)
            fired = self.clock.fire_due()
            self.media.clock.run_due(self.clock.now)
            if fired or any(not c.inbox.empty() for c in self.centre.active):
                await self.settle()
        await self.settle()

    async def until(self, condition: Callable[[], bool], *, within_s: float = 120.0) -> None:
        """Advance the clock until `condition()` holds; fail after `within_s` of fake time."""
        end = self.clock.now + within_s
        while not condition():
            if self.clock.now >= end:
                raise AssertionError(f"not reached within {within_s}s of call time")
            await self.advance(0.1)

    # -- what there is ------------------------------------------------------------

    def call(self) -> EmergencyCall:
        calls = list(self.centre.active)
        assert len(calls) == 1, calls
        return calls[0]

    def leaks(self) -> tuple[int, int]:
        """RTP legs and pool ports still held."""
        return len(self.media.legs), self._pool.in_use

    async def check_ended(self) -> list[str]:
        """What is wrong once every call has ended: the issue's invariants.

        No call left active, no RTP leg or port held, every recording sealed or
        marked lost, every incident closed with timestamps in order. An empty
        list when all hold."""
        problems: list[str] = []
        if self.centre.active:
            problems.append(f"calls still active: {[c.phase for c in self.centre.active]}")
        if self.leaks() != (0, 0):
            problems.append(f"RTP legs/ports leaked: {self.leaks()}")
        for incident_id in self.incident_ids:
            record = await self.store.get_incident(incident_id)
            if record is None:
                problems.append(f"{incident_id}: no incident")
                continue
            inc = record.incident
            if inc.status is Status.ACTIVE:
                problems.append(f"{incident_id}: still active")
            if inc.ended_at is None:
                problems.append(f"{incident_id}: no ended_at")
            stamps = [
                (name, getattr(inc, name))
                for name in ("arrived_at", "answered_at", "operator_answered_at", "ended_at")
                if getattr(inc, name) is not None
            ]
            for (a, x), (b, y) in itertools.pairwise(stamps):
                if x > y + 1e-6:
                    problems.append(f"{incident_id}: {a} after {b}")
            if inc.answered_at is None and inc.operator_answered_at is not None:
                problems.append(f"{incident_id}: operator answered an unanswered call")
            for rec in record.recordings:
                if rec.status not in (RecordingStatus.SEALED, RecordingStatus.LOST):
                    problems.append(f"{incident_id}: recording {rec.id} {rec.status}")
            for leg in record.legs:
                if leg.is_open or leg.ended_at is None:
                    problems.append(f"{incident_id}: leg {leg.id} never ended")
        return problems

    @property
    def incident_ids(self) -> list[str]:
        return sorted(self._incidents)

    def _note(self) -> None:
        for call in self.centre.active:
            if call.incident_id is not None:
                self._incidents.add(call.incident_id)


def _idle(task: asyncio.Task[Any]) -> bool:
    if task.done():
        return True
    coro: Any = task.get_coro()
    while coro is not None:
        if getattr(coro, "__qualname__", "") == "Queue.get":
            return True
        coro = getattr(coro, "cr_await", None)
    return False


# --------------------------------------------------------------------------- peers


@dataclass
class Caller:
    """The carrier's side of one emergency call, from 127.0.0.2."""

    h: CallflowHarness
    number: str = "+4930123456"
    port: int = 5070
    rtp_port: int = 40000
    call_id: str = field(default_factory=lambda: f"caller-{next(_seq)}@127.0.0.2")
    tag: str = field(default_factory=lambda: f"c{next(_seq)}")
    cseq: int = 1
    invite: Request | None = None
    remote_tag: str | None = None
    mark: int = 0

    @property
    def peer(self) -> Peer:
        return Peer("udp", "127.0.0.2", self.port)

    def _from(self) -> str:
        return f"<sip:{self.number}@127.0.0.2>;tag={self.tag}"

    def _to(self) -> str:
        tag = f";tag={self.remote_tag}" if self.remote_tag else ""
        return f"<sip:112@127.0.0.1>{tag}"

    async def dial(self, *, body: bytes | None = None) -> None:
        self.mark = len(self.h.wire.sent)
        self.invite = _request(
            "INVITE",
            "sip:112@127.0.0.1",
            peer=self.peer,
            from_=self._from(),
            to=self._to(),
            call_id=self.call_id,
            cseq=self.cseq,
            contact=f"<sip:{self.number}@127.0.0.2:{self.port}>",
            body=sdp_offer(self.rtp_port) if body is None else body,
        )
        await self.h.deliver(self.invite, self.peer)

    def responses(self) -> list[Response]:
        return self.h.wire.responses(self.peer, self.call_id, since=self.mark)

    def final(self) -> Response | None:
        finals = [r for r in self.responses() if r.status >= 200 and r.cseq.method == "INVITE"]
        return finals[-1] if finals else None

    async def ack(self) -> None:
        final = self.final()
        assert final is not None and self.invite is not None
        self.remote_tag = final.to_tag
        await self.h.deliver(
            _request(
                "ACK",
                "sip:112@127.0.0.1:5060",
                peer=self.peer,
                from_=self._from(),
                to=self._to(),
                call_id=self.call_id,
                cseq=self.cseq,
            ),
            self.peer,
        )

    async def answered(self) -> None:
        """Dial, see the 200 and ACK it."""
        await self.dial()
        final = self.final()
        assert final is not None and final.status == 200, self.responses()
        await self.ack()

    async def in_dialog(
        self, method: str, *, body: bytes = b"", content_type: str = "application/sdp"
    ) -> Request:
        self.cseq += 1
        request = _request(
            method,
            "sip:112@127.0.0.1:5060",
            peer=self.peer,
            from_=self._from(),
            to=self._to(),
            call_id=self.call_id,
            cseq=self.cseq,
            contact=f"<sip:{self.number}@127.0.0.2:{self.port}>",
            body=body,
            content_type=content_type,
        )
        await self.h.deliver(request, self.peer)
        return request

    async def digit(self, digit: str) -> None:
        await self.in_dialog(
            "INFO",
            body=f"Signal={digit}\r\nDuration=160\r\n".encode(),
            content_type="application/dtmf-relay",
        )

    async def bye(self) -> Request:
        return await self.in_dialog("BYE")

    async def cancel(self) -> None:
        assert self.invite is not None
        branch = self.invite.top_via.branch
        await self.h.deliver(
            _request(
                "CANCEL",
                "sip:112@127.0.0.1",
                peer=self.peer,
                from_=self._from(),
                to="<sip:112@127.0.0.1>",
                call_id=self.call_id,
                cseq=self.invite.cseq.sequence,
                branch=branch,
            ),
            self.peer,
        )

    def byes(self) -> list[Request]:
        return [
            r
            for r in self.h.wire.requests(self.peer, "BYE", since=self.mark)
            if r.call_id == self.call_id
        ]

    async def answer_requests(self, status: int = 200) -> None:
        """Answer every request the centre sent this caller that is not answered yet."""
        for request in self.h.wire.to(self.peer, since=self.mark):
            if isinstance(request, Request) and request.method != "ACK":
                key = (request.call_id, request.cseq.sequence, request.method)
                if key not in self.h.answered:
                    self.h.answered.add(key)
                    await self.h.deliver(Response.for_request(request, status), self.peer)


@dataclass
class Phone:
    """A softphone registered at the centre (an operator's, an agency's line)."""

    h: CallflowHarness
    user: str
    password: str = ""
    port: int = 5080
    rtp_port: int = 41000
    tag: str = field(default_factory=lambda: f"p{next(_seq)}")
    mark: int = 0

    @property
    def peer(self) -> Peer:
        return Peer("udp", "127.0.0.1", self.port)

    @property
    def contact(self) -> str:
        return f"<sip:{self.user}@127.0.0.1:{self.port}>"

    async def register(self) -> None:
        call_id = f"reg-{self.user}-{next(_seq)}"
        aor = f"<sip:{self.user}@127.0.0.1>"

        def register(cseq: int, auth: str | None) -> Request:
            return _request(
                "REGISTER",
                "sip:127.0.0.1",
                peer=self.peer,
                from_=f"{aor};tag={self.tag}",
                to=aor,
                call_id=call_id,
                cseq=cseq,
                contact=self.contact,
                extra=[("Expires", "3600")] + ([("Authorization", auth)] if auth else []),
            )

        mark = len(self.h.wire.sent)
        await self.h.deliver(register(1, None), self.peer)
        challenge = self.h.wire.responses(self.peer, call_id, since=mark)[-1]
        assert challenge.status == 401, challenge
        www = challenge.headers.get("WWW-Authenticate")
        assert www is not None
        auth = authorization_for(
            www, "REGISTER", "sip:127.0.0.1", self.user, self.password, cnonce="c0ffee", nc=1
        )
        mark = len(self.h.wire.sent)
        await self.h.deliver(register(2, auth), self.peer)
        ok = self.h.wire.responses(self.peer, call_id, since=mark)[-1]
        assert ok.status == 200, ok

    def invites(self) -> list[Request]:
        return self.h.wire.requests(self.peer, "INVITE", since=self.mark)

    def ringing(self) -> Request | None:
        """The newest INVITE the centre sent here that has no final answer yet."""
        answered = {(r.call_id, r.cseq.sequence) for r in self._answers}
        for invite in reversed(self.invites()):
            if (invite.call_id, invite.cseq.sequence) not in answered and not invite.to_tag:
                return invite
        return None

    _answers: list[Response] = field(default_factory=list)

    async def answer(
        self, invite: Request, status: int = 200, *, body: bytes | None = None
    ) -> None:
        headers = [("Contact", self.contact)]
        if status == 200:
            payload = sdp_offer(self.rtp_port) if body is None else body
            headers.append(("Content-Type", "application/sdp"))
        else:
            payload = b""
        response = Response.for_request(
            invite, status, to_tag=self.tag, headers=headers, body=payload
        )
        if status >= 200:
            self._answers.append(response)
        await self.h.deliver(response, self.peer)

    def dialog_requests(self, method: str) -> list[Request]:
        return self.h.wire.requests(self.peer, method, since=self.mark)

    async def request_in(self, invite: Request, method: str, cseq: int, **kw: Any) -> Request:
        """A request of ours inside the dialog `invite` created (its From is the centre)."""
        request = _request(
            method,
            invite.contacts[0].uri.__str__() if invite.contacts else "sip:127.0.0.1:5060",
            peer=self.peer,
            from_=f"<sip:{self.user}@127.0.0.1>;tag={self.tag}",
            to=str(invite.headers.get("From")),
            call_id=invite.call_id,
            cseq=cseq,
            contact=self.contact,
            **kw,
        )
        await self.h.deliver(request, self.peer)
        return request

    async def answer_requests(self, status: int = 200) -> None:
        for request in self.h.wire.to(self.peer, since=self.mark):
            if isinstance(request, Request) and request.method not in ("ACK", "INVITE"):
                key = (request.call_id, request.cseq.sequence, request.method)
                if key not in self.h.answered:
                    self.h.answered.add(key)
                    await self.h.deliver(Response.for_request(request, status), self.peer)


def phase_of(h: CallflowHarness) -> Phase | None:
    calls = list(h.centre.active)
    return calls[0].phase if calls else None
