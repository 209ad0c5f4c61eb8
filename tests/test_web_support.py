"""Test support for the web console: a fake live centre, a configuration, a seeded store.

`FakeLiveCenter` implements `live.LiveCenter` over plain mutable state: tests
set callers waiting and operator states, `publish()` an event to every
subscriber (bounded queues, like the real centre), and read `actions` to see
what the web layer asked of it. `web_env()` builds the whole application over
a real `SqliteStore` in a temporary directory, with an httpx client speaking
ASGI to it. `seed_incident()` writes a completed incident with a real, sealed
G.711 stereo recording.

The few tests at the bottom check the fake itself.
"""

from __future__ import annotations

import asyncio
import math
import struct
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from starlette.applications import Starlette

from callcenter112.config import Config, parse_config
from callcenter112.incidents import Category, LegRole, Status
from callcenter112.live import (
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
from callcenter112.media.g711 import Codec, encode
from callcenter112.media.recorder import write_wav
from callcenter112.records import SqliteStore, open_store, seal_recording
from callcenter112.web import create_app
from callcenter112.web.auth import ApiToken

REPO = Path(__file__).resolve().parent.parent
AREAS = REPO / "config" / "ambon-areas.toml"
WIT = ZoneInfo("Asia/Jayapura")
# 2026-11-28 10:00 WIT: a morning shift in Ambon.
T0 = datetime(2026, 11, 28, 10, 0, 0, tzinfo=WIT).timestamp()

PASSWORDS = {
    "op1": "ambon-op1",
    "op2": "ambon-op2",
    "supervisor": "super-visor-1",
    "auditor": "audit-or-1",
    "admin": "admin-admin-1",
}
API_TOKEN = "cc112_test-token-for-the-cad-system-000000000000"


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def make_config(tmp_path: Path, **web: Any) -> Config:
    data: dict[str, Any] = {
        "centre": {"name": "Call Center 112 Kota Ambon", "timezone": "Asia/Jayapura"},
        "web": {
            "city_areas": str(AREAS),
            "login_fail_limit": 3,
            "login_address_fail_limit": 3,
            "login_lockout_s": 60,
            **web,
        },
        "trunk": [
            {
                "name": "telkom",
                "allow": ["127.0.0.0/8"],
                "numbers": ["112"],
                "proxy": "127.0.0.1:5070",
            }
        ],
        "operator": [
            {"user": "op1", "password": PASSWORDS["op1"], "name": "Operator Satu"},
            {"user": "op2", "password": PASSWORDS["op2"], "name": "Operator Dua"},
        ],
        "user": [
            {
                "name": "supervisor",
                "role": "supervisor",
                "password": PASSWORDS["supervisor"],
                "sip_user": "op2",
            },
            {"name": "auditor", "role": "auditor", "password": PASSWORDS["auditor"]},
            {"name": "admin", "role": "admin", "password": PASSWORDS["admin"]},
        ],
        "agency": [
            {"name": "ambulans", "label": "PSC 119", "number": "119", "trunk": "telkom"},
            {"name": "damkar", "label": "Damkar", "number": "113", "trunk": "telkom"},
        ],
        # Where web_env's store and recordings are: /healthz probes them (issue 11).
        "storage": {"database": "db.sqlite3", "recordings": "recordings"},
    }
    return parse_config(data, source="test", base_dir=tmp_path)


@dataclass
class FakeLiveCenter:
    """`LiveCenter` for tests: state in plain fields, events published by hand."""

    clock: FakeClock
    waiting: list[WaitingCaller] = field(default_factory=list)
    operators: dict[str, OperatorView] = field(default_factory=dict)
    calls: list[ActiveCall] = field(default_factory=list)
    trunks: list[TrunkView] = field(default_factory=list)
    registrations: list[RegistrationView] = field(default_factory=list)
    rtp: RtpUsage = field(default_factory=lambda: RtpUsage(in_use=4, opened=64, capacity=500))
    actions: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    refuse: ControlError | None = None  # raise this from the next control call
    broken: bool = False  # snapshot() raises (the SIP side is down)
    low_disk: tuple[str, ...] = ()  # folders under the low-disk threshold (issue 11)
    _subscribers: list[asyncio.Queue[LiveEvent | None]] = field(default_factory=list)

    @classmethod
    def standard(cls, clock: FakeClock) -> FakeLiveCenter:
        live = cls(clock=clock)
        for user, name in (("op1", "Operator Satu"), ("op2", "Operator Dua")):
            live.operators[user] = OperatorView(
                user=user,
                name=name,
                skills=("medical", "fire", "disaster", "police"),
                state="available",
                since=clock.now - 120,
                reason=None,
                calls_today=3,
                missed=0,
                incident_id=None,
                registered=True,
                reachable=True,
            )
            live.registrations.append(
                RegistrationView(
                    user=user,
                    contact=f"<sip:{user}@127.0.0.1:40{len(live.registrations)}00>",
                    source=f"udp:127.0.0.1:40{len(live.registrations)}00",
                    expires_at=clock.now + 3000,
                    reachable=True,
                    rtt_ms=1.5,
                    user_agent="baresip v1.0.0",
                )
            )
        live.trunks.append(
            TrunkView(
                name="telkom",
                allow=("127.0.0.0/8",),
                numbers=("112",),
                proxy="127.0.0.1:5070",
                last_inbound_at=clock.now - 30,
                last_outbound_at=None,
                calls_today=12,
                active_calls=1,
                rejected_today=2,
            )
        )
        return live

    # -- LiveCenter

    def snapshot(self) -> LiveSnapshot:
        if self.broken:
            raise RuntimeError("SIP side down")
        return LiveSnapshot(
            at=self.clock.now,
            waiting=tuple(self.waiting),
            operators=tuple(self.operators.values()),
            calls=tuple(self.calls),
            trunks=tuple(self.trunks),
            registrations=tuple(self.registrations),
            rtp=self.rtp,
            max_calls=500,
            low_disk=self.low_disk,
        )

    async def subscribe(self) -> AsyncGenerator[LiveEvent, None]:
        queue: asyncio.Queue[LiveEvent | None] = asyncio.Queue(100)
        self._subscribers.append(queue)
        try:
            while True:
                event = await queue.get()
                if event is None:
                    return
                yield event
        finally:
            self._subscribers.remove(queue)

    def _control(self, name: str, **args: Any) -> None:
        if self.refuse is not None:
            error, self.refuse = self.refuse, None
            raise error
        self.actions.append((name, args))

    async def set_operator_paused(
        self, user: str, *, paused: bool, reason: str | None, actor: str
    ) -> None:
        if user not in self.operators:
            raise ControlError(404, f"no operator {user}")
        self._control("set_operator_paused", user=user, paused=paused, reason=reason, actor=actor)
        self.operators[user] = replace(
            self.operators[user],
            state="paused" if paused else "available",
            reason=reason,
            since=self.clock.now,
        )
        self.publish("operator_changed", operator=user)

    async def transfer(self, incident_id: str, agency: str, *, mode: str, actor: str) -> None:
        self._control("transfer", incident_id=incident_id, agency=agency, mode=mode, actor=actor)

    async def leave_conference(self, incident_id: str, *, actor: str) -> None:
        self._control("leave_conference", incident_id=incident_id, actor=actor)

    async def supervise(self, incident_id: str, *, supervisor: str, mode: str, actor: str) -> None:
        self._control(
            "supervise", incident_id=incident_id, supervisor=supervisor, mode=mode, actor=actor
        )

    async def stop_supervision(self, incident_id: str, *, supervisor: str, actor: str) -> None:
        self._control(
            "stop_supervision", incident_id=incident_id, supervisor=supervisor, actor=actor
        )

    async def start_callback(self, callback_id: int, *, operator: str, actor: str) -> None:
        self._control("start_callback", callback_id=callback_id, operator=operator, actor=actor)

    # -- test controls

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    def publish(self, kind: str, **kw: Any) -> None:
        event = LiveEvent(kind=kind, at=self.clock.now, **kw)
        for queue in self._subscribers:
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(event)

    def stop(self) -> None:
        for queue in self._subscribers:
            queue.put_nowait(None)

    def disk_alarm(self, folder: str, *, low: bool) -> None:
        """The low-disk alarm of `folder` raised or cleared, as the centre's disk watch
        publishes it (callflow/guards.py start_disk_watch)."""
        others = tuple(f for f in self.low_disk if f != folder)
        self.low_disk = tuple(sorted((*others, folder))) if low else others
        self.publish(
            "low_disk",
            data={"folder": folder, "free_bytes": 10**8, "threshold_bytes": 2 * 10**9, "low": low},
        )

    def caller_waits(self, incident_id: str, caller: str, category: str, arrived_at: float) -> None:
        self.waiting.append(
            WaitingCaller(
                incident_id=incident_id,
                caller=caller,
                category=category,
                language="id",
                arrived_at=arrived_at,
                position=len(self.waiting) + 1,
                offered_to=None,
            )
        )
        self.publish("queue_changed", incident_id=incident_id)

    def offer(self, incident_id: str, operator: str) -> None:
        self.waiting = [
            replace(w, offered_to=operator) if w.incident_id == incident_id else w
            for w in self.waiting
        ]
        self.operators[operator] = replace(
            self.operators[operator],
            state="reserved",
            incident_id=incident_id,
            since=self.clock.now,
        )
        self.publish("call_offered", operator=operator, incident_id=incident_id)

    def answer(self, incident_id: str, operator: str, caller: str, category: str) -> None:
        self.waiting = [w for w in self.waiting if w.incident_id != incident_id]
        self.operators[operator] = replace(
            self.operators[operator], state="on_call", incident_id=incident_id, since=self.clock.now
        )
        self.calls.append(
            ActiveCall(
                incident_id=incident_id,
                caller=caller,
                category=category,
                phase="talking",
                operator=operator,
                agency=None,
                arrived_at=self.clock.now - 8,
                phase_since=self.clock.now,
            )
        )
        self.publish("call_answered", operator=operator, incident_id=incident_id)


def g711_stereo(seconds: float, codec: Codec = Codec.PCMA, *, speech: bool = False) -> bytes:
    """Interleaved stereo G.711: a 440 Hz tone on the left, 880 Hz quieter on the right.

    With `speech` the two sides take turns in bursts, like a conversation
    (nicer waveforms for the screenshots).
    """
    frames = int(8000 * seconds)

    def level(i: int, turn: int) -> float:
        if not speech:
            return 1.0
        t = i / 8000
        return 1.0 if int(t / 0.8) % 2 == turn else 0.04

    left = struct.pack(
        f"<{frames}h",
        *(int(12000 * level(i, 0) * math.sin(2 * math.pi * 440 * i / 8000)) for i in range(frames)),
    )
    right = struct.pack(
        f"<{frames}h",
        *(int(4000 * level(i, 1) * math.sin(2 * math.pi * 880 * i / 8000)) for i in range(frames)),
    )
    a, b = encode(codec, left), encode(codec, right)
    out = bytearray(frames * 2)
    out[0::2] = a
    out[1::2] = b
    return bytes(out)


@dataclass
class Seeded:
    incident_id: str
    recording_id: int
    path: Path
    wav_bytes: int


async def seed_incident(
    store: SqliteStore,
    recordings_dir: Path,
    *,
    at: float = T0 - 600,
    caller: str = "081234567890",
    operator: str = "op1",
    seconds: float = 3.0,
    codec: Codec = Codec.PCMA,
    speech: bool = False,
) -> Seeded:
    """A completed medical call answered by `operator` after 7.5 s, with a sealed recording."""
    iid = await store.create_incident(
        caller=caller, arrived_at=at, trunk="telkom", dialled="112", category=Category.MEDICAL
    )
    await store.update_incident(
        iid,
        at=at + 8,
        operator=operator,
        stamps={
            "answered_at": at + 0.2,
            "ivr_done_at": at + 4.0,
            "queued_at": at + 4.0,
            "offered_at": at + 5.0,
            "operator_answered_at": at + 7.5,
        },
        event="operator_answered",
        detail={"operator": operator},
    )
    leg = await store.add_leg(
        iid, role=LegRole.CALLER, call_id="c1", peer="127.0.0.1", codec="PCMA", started_at=at
    )
    await store.end_leg(leg, ended_at=at + 60, reason="bye")
    await store.close_incident(
        iid, status=Status.COMPLETED, at=at + 60, ended_at=at + 60, reason="caller hung up"
    )
    recordings_dir.mkdir(parents=True, exist_ok=True)
    day = recordings_dir / "2026" / "11" / "28"
    day.mkdir(parents=True, exist_ok=True)
    path = day / f"{iid}.wav"
    data = g711_stereo(seconds, codec, speech=speech)
    write_wav(path, codec, 2, data)
    rec = await seal_recording(
        store,
        iid,
        path,
        recordings_dir=recordings_dir,
        channels=2,
        duration_s=seconds,
        codec=codec,
        sealed_at=at + 61,
    )
    return Seeded(incident_id=iid, recording_id=rec.id, path=path, wav_bytes=len(data))


@dataclass
class WebEnv:
    app: Starlette
    client: httpx.AsyncClient
    store: SqliteStore
    live: FakeLiveCenter
    clock: FakeClock
    config: Config
    recordings: Path

    async def sign_in(self, user: str, password: str | None = None) -> str:
        """Sign in through the form; returns the session's CSRF token."""
        page = await self.client.get("/login")
        assert page.status_code == 200, page.text
        token = _field(page.text, "login_csrf")
        r = await self.client.post(
            "/login",
            data={"login_csrf": token, "user": user, "password": password or PASSWORDS[user]},
        )
        assert r.status_code == 303, r.text
        home = await self.client.get(r.headers["location"])
        assert home.status_code == 200, home.text
        return csrf_of(home.text)

    def sign_out_locally(self) -> None:
        self.client.cookies.clear()


def _field(html: str, name: str) -> str:
    marker = f'name="{name}" value="'
    start = html.index(marker) + len(marker)
    return html[start : html.index('"', start)]


def csrf_of(html: str) -> str:
    marker = '<meta name="csrf-token" content="'
    start = html.index(marker) + len(marker)
    return html[start : html.index('"', start)]


@asynccontextmanager
async def web_env(tmp_path: Path, **web: Any) -> AsyncIterator[WebEnv]:
    clock = FakeClock()
    config = make_config(tmp_path, **web)
    live = FakeLiveCenter.standard(clock)
    recordings = tmp_path / "recordings"
    recordings.mkdir()
    async with open_store(tmp_path / "db.sqlite3", id_utc_offset_s=9 * 3600) as store:
        app = create_app(
            config=config,
            store=store,
            live=live,
            recordings_dir=recordings,
            clock=clock,
            api_tokens=[ApiToken(name="cad", role="supervisor", token_hash=_token_hash())],
            scrypt_n=16,  # cheap in tests; tests/test_web_auth.py covers the real cost
        )
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield WebEnv(
                app=app,
                client=client,
                store=store,
                live=live,
                clock=clock,
                config=config,
                recordings=recordings,
            )


def _token_hash() -> str:
    from callcenter112.web.auth import hash_api_token

    return hash_api_token(API_TOKEN)


# --------------------------------------------------------------------------- the fake itself


async def test_fake_centre_delivers_events_to_each_subscriber() -> None:
    live = FakeLiveCenter.standard(FakeClock())
    a, b = live.subscribe(), live.subscribe()
    first_a = asyncio.ensure_future(anext(a))
    first_b = asyncio.ensure_future(anext(b))
    for _ in range(10):
        if live.subscribers == 2:
            break
        await asyncio.sleep(0)
    assert live.subscribers == 2
    live.caller_waits("20261128-0001", "0811", "medical", T0)
    assert (await first_a).kind == "queue_changed"
    assert (await first_b).incident_id == "20261128-0001"
    live.stop()
    with pytest.raises(StopAsyncIteration):
        await anext(a)
    await b.aclose()
    assert live.subscribers == 0


async def test_fake_centre_refuses_unknown_operator() -> None:
    live = FakeLiveCenter.standard(FakeClock())
    with pytest.raises(ControlError) as err:
        await live.set_operator_paused("nobody", paused=True, reason="x", actor="t")
    assert err.value.status == 404


async def test_seeded_recording_is_a_sealed_g711_file(tmp_path: Path) -> None:
    async with open_store(tmp_path / "db.sqlite3") as store:
        seeded = await seed_incident(store, tmp_path / "rec")
        record = await store.get_incident(seeded.incident_id)
    assert record is not None
    assert record.incident.sla_s == pytest.approx(7.5)
    assert record.recordings[0].status.value == "sealed"
    head = seeded.path.read_bytes()[:58]
    assert head[:4] == b"RIFF" and struct.unpack_from("<H", head, 20)[0] == 6  # A-law
