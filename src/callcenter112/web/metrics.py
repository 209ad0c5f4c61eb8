"""`/metrics` for Prometheus and `/healthz` for load balancers and supervisors of the process.

The text exposition format (Prometheus "Exposition formats", text 0.0.4) is
written by hand: a ``# HELP`` and ``# TYPE`` line per family, then samples
with escaped label values. Numbers come from

* the live snapshot: calls up by phase, callers queued and the oldest wait,
  operators by state, registrations, RTP port pool, per-trunk traffic;
* the store, for the centre's local day: incidents by status (abandoned
  among them), the share answered within 10/15/20 s, and the answer-time
  histogram built from today's answered incidents (so its counters restart
  at local midnight; `rate()` and `increase()` treat that as a reset);
* the live centre's RTP receive statistics, if it offers them (`RtpQualitySource`:
  packets received and lost since start, current jitter per stream,
  RFC 3550 §6.4.1) — otherwise those families are left out.

`/healthz` answers 200 with JSON when the store answers a query and the live
centre (the SIP side) gives a snapshot, 503 naming what failed otherwise.
Neither endpoint needs a sign-in: they carry counts, no personal data; keep
`web.listen` on an internal address or filter them at the proxy.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from ..incidents import SLA_THRESHOLDS_S, IncidentQuery, Status, format_timestamp
from ..live import LiveSnapshot
from ..logs import get_logger
from ..records import StoreError
from .context import WebContext

__all__ = [
    "ANSWER_BUCKETS_S",
    "Exposition",
    "RtpQuality",
    "RtpQualitySource",
    "healthz",
    "metrics",
    "render_metrics",
]

# Histogram buckets for answer time, around the NENA 15 s / 20 s marks.
ANSWER_BUCKETS_S: tuple[float, ...] = (2, 5, 10, 15, 20, 30, 45, 60, 120, 300)
_OPERATOR_STATES = ("offline", "available", "reserved", "on_call", "wrap_up", "paused")
_PHASES = ("ivr", "queue", "ringing", "talking", "hold", "transfer", "conference")

log = get_logger("web.metrics")


@dataclass(frozen=True, slots=True, kw_only=True)
class RtpQuality:
    """RTP receive statistics the live centre may offer for /metrics."""

    streams: int  # RTP streams being received now
    packets_received: int  # since the server started
    packets_lost: int  # since the server started (RFC 3550 §6.4.1 cumulative loss)
    jitter_ms: tuple[float, ...]  # current interarrival jitter of each stream


@runtime_checkable
class RtpQualitySource(Protocol):
    def rtp_quality(self) -> RtpQuality: ...


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    if value == float("inf"):
        return "+Inf"
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


class Exposition:
    """Builds one text exposition, family by family."""

    def __init__(self) -> None:
        self._lines: list[str] = []

    def family(
        self,
        name: str,
        kind: str,
        help_text: str,
        samples: Iterable[tuple[Mapping[str, str], float]],
    ) -> None:
        self._lines.append(f"# HELP {name} {help_text}")
        self._lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            self._lines.append(f"{name}{self._labels(labels)} {_number(value)}")

    def one(self, name: str, kind: str, help_text: str, value: float) -> None:
        self.family(name, kind, help_text, [({}, value)])

    def histogram(
        self, name: str, help_text: str, values: Iterable[float], buckets: Iterable[float]
    ) -> None:
        data = sorted(values)
        self._lines.append(f"# HELP {name} {help_text}")
        self._lines.append(f"# TYPE {name} histogram")
        for le in [*buckets, float("inf")]:
            count = sum(1 for v in data if v <= le)
            self._lines.append(f'{name}_bucket{{le="{_number(le)}"}} {count}')
        self._lines.append(f"{name}_sum {_number(round(sum(data), 6))}")
        self._lines.append(f"{name}_count {len(data)}")

    @staticmethod
    def _labels(labels: Mapping[str, str]) -> str:
        if not labels:
            return ""
        inner = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
        return "{" + inner + "}"

    def text(self) -> str:
        return "\n".join(self._lines) + "\n"


def _live_families(out: Exposition, snap: LiveSnapshot, now: float) -> None:
    phases = {p: 0 for p in _PHASES}
    for c in snap.calls:
        if c.phase in phases:
            phases[c.phase] += 1
    out.one(
        "callcenter112_calls_active",
        "gauge",
        "Calls up now (IVR, queue, ringing, talking, transfer).",
        sum(1 for c in snap.calls if c.phase != "ended"),
    )
    out.family(
        "callcenter112_calls",
        "gauge",
        "Calls up now by phase.",
        [({"phase": p}, n) for p, n in phases.items()],
    )
    out.one(
        "callcenter112_calls_queued", "gauge", "Callers waiting for an operator.", len(snap.waiting)
    )
    oldest = min((w.arrived_at for w in snap.waiting), default=None)
    out.one(
        "callcenter112_queue_oldest_wait_seconds",
        "gauge",
        "How long the longest-waiting caller has waited since arrival.",
        0 if oldest is None else max(0.0, round(now - oldest, 3)),
    )
    out.one(
        "callcenter112_calls_max", "gauge", "Configured call limit (sip.max_calls).", snap.max_calls
    )
    states = {s: 0 for s in _OPERATOR_STATES}
    for o in snap.operators:
        states[o.state] = states.get(o.state, 0) + 1
    out.family(
        "callcenter112_operators",
        "gauge",
        "Operators by state.",
        [({"state": s}, n) for s, n in states.items()],
    )
    out.one(
        "callcenter112_registrations",
        "gauge",
        "Softphone registrations.",
        len(snap.registrations),
    )
    out.one(
        "callcenter112_registrations_reachable",
        "gauge",
        "Softphone registrations answering qualify OPTIONS.",
        sum(1 for r in snap.registrations if r.reachable),
    )
    out.one(
        "callcenter112_rtp_ports_in_use", "gauge", "RTP sockets carrying a call.", snap.rtp.in_use
    )
    out.one("callcenter112_rtp_ports_open", "gauge", "RTP sockets opened (pool).", snap.rtp.opened)
    out.one(
        "callcenter112_rtp_ports_capacity",
        "gauge",
        "RTP sockets the port range allows.",
        snap.rtp.capacity,
    )
    out.family(
        "callcenter112_trunk_calls_today",
        "gauge",
        "Calls per trunk since local midnight.",
        [({"trunk": t.name}, t.calls_today) for t in snap.trunks],
    )
    out.family(
        "callcenter112_trunk_calls_active",
        "gauge",
        "Calls up per trunk.",
        [({"trunk": t.name}, t.active_calls) for t in snap.trunks],
    )
    out.family(
        "callcenter112_trunk_rejected_today",
        "gauge",
        "Calls refused per trunk since local midnight (403/404/503).",
        [({"trunk": t.name}, t.rejected_today) for t in snap.trunks],
    )
    out.family(
        "callcenter112_trunk_last_inbound_timestamp_seconds",
        "gauge",
        "When the trunk last brought a call in (0 = never).",
        [({"trunk": t.name}, round(t.last_inbound_at or 0, 3)) for t in snap.trunks],
    )


def _rtp_families(out: Exposition, quality: RtpQuality) -> None:
    out.one("callcenter112_rtp_streams", "gauge", "RTP streams being received.", quality.streams)
    out.one(
        "callcenter112_rtp_packets_received_total",
        "counter",
        "RTP packets received since start.",
        quality.packets_received,
    )
    out.one(
        "callcenter112_rtp_packets_lost_total",
        "counter",
        "RTP packets lost since start (RFC 3550 cumulative loss).",
        quality.packets_lost,
    )
    jitter = quality.jitter_ms
    out.family(
        "callcenter112_rtp_jitter_milliseconds",
        "gauge",
        "Interarrival jitter of the streams received now (RFC 3550 §6.4.1).",
        [
            ({"stat": "max"}, round(max(jitter, default=0.0), 3)),
            ({"stat": "mean"}, round(sum(jitter) / len(jitter), 3) if jitter else 0),
        ],
    )


async def render_metrics(ctx: WebContext) -> str:
    """The whole exposition; a part whose source fails is left out and flagged down."""
    out = Exposition()
    now = ctx.now()
    try:
        snap = ctx.live.snapshot()
    except Exception as exc:  # noqa: BLE001 - reported as down, never a crash
        log.warning("metrics_snapshot_failed", error=repr(exc))
        snap = None
    out.one(
        "callcenter112_live_up", "gauge", "1 if the live centre gave a snapshot.", snap is not None
    )
    if snap is not None:
        _live_families(out, snap, now)
    midnight = ctx.local_midnight(now)
    try:
        sla = await ctx.store.sla_summary(since=midnight)
        answer_times = [
            inc.sla_s
            async for inc in ctx.store.iter_incidents(IncidentQuery(since=midnight))
            if inc.sla_s is not None
        ]
    except StoreError as exc:
        log.warning("metrics_store_failed", error=str(exc))
        out.one("callcenter112_store_up", "gauge", "1 if the incident store answered.", 0)
    else:
        out.one("callcenter112_store_up", "gauge", "1 if the incident store answered.", 1)
        out.family(
            "callcenter112_incidents_today",
            "gauge",
            "Incidents that arrived since local midnight, by status.",
            [
                ({"status": Status.ACTIVE.value}, sla.active),
                (
                    {"status": Status.COMPLETED.value},
                    sla.arrived - sla.active - sla.abandoned - sla.interrupted,
                ),
                ({"status": Status.ABANDONED.value}, sla.abandoned),
                ({"status": Status.INTERRUPTED.value}, sla.interrupted),
            ],
        )
        out.one(
            "callcenter112_calls_abandoned_today",
            "gauge",
            "Callers who hung up before an operator answered, since local midnight.",
            sla.abandoned,
        )
        out.family(
            "callcenter112_answered_within_ratio",
            "gauge",
            "Share of today's answered calls answered within N s of arrival (NENA).",
            [
                ({"seconds": str(t)}, round(r, 4))
                for t in SLA_THRESHOLDS_S
                if (r := sla.within_ratio(t)) is not None
            ],
        )
        out.histogram(
            "callcenter112_answer_time_seconds",
            "Answer time (operator answered - INVITE arrived) of today's calls.",
            answer_times,
            ANSWER_BUCKETS_S,
        )
    live = ctx.live
    if isinstance(live, RtpQualitySource):
        try:
            _rtp_families(out, live.rtp_quality())
        except Exception as exc:  # noqa: BLE001 - reported as down, never a crash
            log.warning("metrics_rtp_failed", error=repr(exc))
    out.one("callcenter112_web_sessions", "gauge", "Signed-in web sessions.", len(ctx.sessions))
    out.one(
        "callcenter112_web_event_streams", "gauge", "Open live-update streams.", len(ctx.streams)
    )
    return out.text()


async def metrics(request: Request) -> Response:
    ctx: WebContext = request.app.state.web
    return PlainTextResponse(
        await render_metrics(ctx),
        media_type="text/plain; version=0.0.4; charset=utf-8",
        headers={"Cache-Control": "no-store"},
    )


async def healthz(request: Request) -> Response:
    ctx: WebContext = request.app.state.web
    checks: dict[str, str] = {}
    try:
        await ctx.store.list_incidents(IncidentQuery(), limit=1)
        checks["store"] = "ok"
    except StoreError as exc:
        checks["store"] = f"fail: {exc}"
    try:
        ctx.live.snapshot()
        checks["sip"] = "ok"
    except Exception as exc:  # noqa: BLE001 - reported as down, never a crash
        checks["sip"] = f"fail: {exc!r}"
    ok = all(v == "ok" for v in checks.values())
    return JSONResponse(
        {"status": "ok" if ok else "fail", **checks, "at": format_timestamp(ctx.now())},
        status_code=200 if ok else 503,
        headers={"Cache-Control": "no-store"},
    )
