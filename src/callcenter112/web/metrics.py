"""`/metrics` for Prometheus and `/healthz` for load balancers and supervisors of the process.

The exposition is written by `prometheus_client` (text format 0.0.4, the
content type every Prometheus scrapes): each scrape gathers its figures —
the store is asynchronous, a collector is not — then hands them to a
one-scrape collector as metric families. Numbers come from

* the live snapshot: calls up by phase, callers queued and the oldest wait,
  operators by state, registrations, RTP port pool, per-trunk traffic;
* the store, for the centre's local day: incidents by status (abandoned
  among them), the share answered within 10/15/20 s, and the answer-time
  histogram built from today's answered incidents (so its counters restart
  at local midnight; `rate()` and `increase()` treat that as a reset);
* the live centre's RTP receive statistics, if it offers them (`rtp_quality()`
  returning anything with the four `RtpQuality` fields: packets received and
  lost since start, current jitter per stream, RFC 3550 §6.4.1) — otherwise
  those families are left out.

`/healthz` answers 200 with JSON when the store answers a query and the live
centre (the SIP side) gives a snapshot, 503 naming what failed otherwise.
Neither endpoint needs a sign-in: they carry counts, no personal data; keep
`web.listen` on an internal address or filter them at the proxy.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Protocol, runtime_checkable

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..callflow.guards import storage_folders
from ..counters import CoreCounters, Counted, RtpQuality
from ..faults import disk_checks, free_bytes
from ..incidents import SLA_THRESHOLDS_S, IncidentQuery, Status, format_timestamp
from ..live import LiveSnapshot
from ..logs import get_logger
from ..records import StoreError
from .context import WebContext

__all__ = [
    "ANSWER_BUCKETS_S",
    "CONTENT_TYPE",
    "CoreCountersSource",
    "RtpQuality",
    "RtpQualityFigures",
    "RtpQualitySource",
    "healthz",
    "metrics",
    "render_metrics",
]

# Histogram buckets for answer time, around the NENA 15 s / 20 s marks.
ANSWER_BUCKETS_S: tuple[float, ...] = (2, 5, 10, 15, 20, 30, 45, 60, 120, 300)
# The text format Prometheus has scraped since 2014 (prometheus_client writes it;
# its CONTENT_TYPE_LATEST announces 1.0.0, which older scrapers do not know).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_OPERATOR_STATES = ("offline", "available", "reserved", "on_call", "wrap_up", "paused")
_PHASES = ("ivr", "queue", "ringing", "talking", "hold", "transfer", "conference")

log = get_logger("web.metrics")


class RtpQualityFigures(Protocol):
    """What /metrics reads from `rtp_quality()`: plain counters, any class."""

    @property
    def streams(self) -> int: ...  # RTP streams being received now
    @property
    def packets_received(self) -> int: ...  # since the server started
    @property
    def packets_lost(self) -> int: ...  # since start (RFC 3550 §6.4.1 cumulative loss)
    @property
    def jitter_ms(self) -> Sequence[float]: ...  # current interarrival jitter per stream


@runtime_checkable
class RtpQualitySource(Protocol):
    def rtp_quality(self) -> RtpQualityFigures: ...


@runtime_checkable
class CoreCountersSource(Protocol):
    """The live centre's own counts (`centre.Centre.metrics`, issue 11)."""

    @property
    def metrics(self) -> CoreCounters: ...


def _le(bound: float) -> str:
    # Bucket labels as Prometheus users write them in queries (le="10", le="+Inf").
    return "+Inf" if bound == float("inf") else f"{bound:g}"


class _Scrape(Collector):
    """The families of one scrape, gathered before `generate_latest` runs."""

    def __init__(self) -> None:
        self.families: list[Metric] = []

    def collect(self) -> Iterator[Metric]:
        return iter(self.families)

    def gauge(self, name: str, help_text: str, value: float) -> None:
        self.families.append(GaugeMetricFamily(name, help_text, value=value))

    def gauges(
        self, name: str, help_text: str, label: str, samples: Iterable[tuple[str, float]]
    ) -> None:
        family = GaugeMetricFamily(name, help_text, labels=[label])
        for label_value, value in samples:
            family.add_metric([label_value], value)
        self.families.append(family)

    def counter(self, name: str, help_text: str, value: float) -> None:
        # prometheus_client appends the `_total` the name is exposed with.
        self.families.append(
            CounterMetricFamily(name.removesuffix("_total"), help_text, value=value)
        )

    def counters(
        self, name: str, help_text: str, label: str, samples: Iterable[tuple[str, float]]
    ) -> None:
        family = CounterMetricFamily(name.removesuffix("_total"), help_text, labels=[label])
        for label_value, value in samples:
            family.add_metric([label_value], value)
        self.families.append(family)

    def histogram(
        self, name: str, help_text: str, values: Iterable[float], buckets: Iterable[float]
    ) -> None:
        data = sorted(values)
        counts = [
            (_le(le), float(sum(1 for v in data if v <= le))) for le in [*buckets, float("inf")]
        ]
        self.families.append(
            HistogramMetricFamily(name, help_text, buckets=counts, sum_value=round(sum(data), 6))
        )

    def text(self) -> bytes:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(self)
        return generate_latest(registry)


def _live_families(out: _Scrape, snap: LiveSnapshot, now: float) -> None:
    phases = {p: 0 for p in _PHASES}
    for c in snap.calls:
        if c.phase in phases:
            phases[c.phase] += 1
    out.gauge(
        "callcenter112_calls_active",
        "Calls up now (IVR, queue, ringing, talking, transfer).",
        sum(1 for c in snap.calls if c.phase != "ended"),
    )
    out.gauges("callcenter112_calls", "Calls up now by phase.", "phase", phases.items())
    out.gauge("callcenter112_calls_queued", "Callers waiting for an operator.", len(snap.waiting))
    oldest = min((w.arrived_at for w in snap.waiting), default=None)
    out.gauge(
        "callcenter112_queue_oldest_wait_seconds",
        "How long the longest-waiting caller has waited since arrival.",
        0 if oldest is None else max(0.0, round(now - oldest, 3)),
    )
    out.gauge("callcenter112_calls_max", "Configured call limit (sip.max_calls).", snap.max_calls)
    states = {s: 0 for s in _OPERATOR_STATES}
    for o in snap.operators:
        states[o.state] = states.get(o.state, 0) + 1
    out.gauges("callcenter112_operators", "Operators by state.", "state", states.items())
    out.gauge("callcenter112_registrations", "Softphone registrations.", len(snap.registrations))
    out.gauge(
        "callcenter112_registrations_reachable",
        "Softphone registrations answering qualify OPTIONS.",
        sum(1 for r in snap.registrations if r.reachable),
    )
    out.gauge("callcenter112_rtp_ports_in_use", "RTP sockets carrying a call.", snap.rtp.in_use)
    out.gauge("callcenter112_rtp_ports_open", "RTP sockets opened (pool).", snap.rtp.opened)
    out.gauge(
        "callcenter112_rtp_ports_capacity", "RTP sockets the port range allows.", snap.rtp.capacity
    )
    per_trunk: Mapping[str, tuple[str, Iterable[tuple[str, float]]]] = {
        "callcenter112_trunk_calls_today": (
            "Calls per trunk since local midnight.",
            [(t.name, t.calls_today) for t in snap.trunks],
        ),
        "callcenter112_trunk_calls_active": (
            "Calls up per trunk.",
            [(t.name, t.active_calls) for t in snap.trunks],
        ),
        "callcenter112_trunk_rejected_today": (
            "Calls refused per trunk since local midnight (403/404/503).",
            [(t.name, t.rejected_today) for t in snap.trunks],
        ),
        "callcenter112_trunk_last_inbound_timestamp_seconds": (
            "When the trunk last brought a call in (0 = never).",
            [(t.name, round(t.last_inbound_at or 0, 3)) for t in snap.trunks],
        ),
    }
    for name, (help_text, samples) in per_trunk.items():
        out.gauges(name, help_text, "trunk", samples)


def _rtp_families(out: _Scrape, quality: RtpQualityFigures) -> None:
    out.gauge("callcenter112_rtp_streams", "RTP streams being received.", quality.streams)
    out.counter(
        "callcenter112_rtp_packets_received_total",
        "RTP packets received since start.",
        quality.packets_received,
    )
    out.counter(
        "callcenter112_rtp_packets_lost_total",
        "RTP packets lost since start (RFC 3550 cumulative loss).",
        quality.packets_lost,
    )
    jitter = list(quality.jitter_ms)
    out.gauges(
        "callcenter112_rtp_jitter_milliseconds",
        "Interarrival jitter of the streams received now (RFC 3550 §6.4.1).",
        "stat",
        [
            ("max", round(max(jitter, default=0.0), 3)),
            ("mean", round(sum(jitter) / len(jitter), 3) if jitter else 0),
        ],
    )


async def _store_families(out: _Scrape, ctx: WebContext, midnight: float) -> None:
    up = "1 if the incident store answered."
    try:
        sla = await ctx.store.sla_summary(since=midnight)
        answer_times = [
            inc.sla_s
            async for inc in ctx.store.iter_incidents(IncidentQuery(since=midnight))
            if inc.sla_s is not None
        ]
    except StoreError as exc:
        log.warning("metrics_store_failed", error=str(exc))
        out.gauge("callcenter112_store_up", up, 0)
        return
    out.gauge("callcenter112_store_up", up, 1)
    completed = sla.arrived - sla.active - sla.abandoned - sla.interrupted
    out.gauges(
        "callcenter112_incidents_today",
        "Incidents that arrived since local midnight, by status.",
        "status",
        [
            (Status.ACTIVE.value, sla.active),
            (Status.COMPLETED.value, completed),
            (Status.ABANDONED.value, sla.abandoned),
            (Status.INTERRUPTED.value, sla.interrupted),
        ],
    )
    out.gauge(
        "callcenter112_calls_abandoned_today",
        "Callers who hung up before an operator answered, since local midnight.",
        sla.abandoned,
    )
    out.gauges(
        "callcenter112_answered_within_ratio",
        "Share of today's answered calls answered within N s of arrival (NENA).",
        "seconds",
        [(str(t), round(r, 4)) for t in SLA_THRESHOLDS_S if (r := sla.within_ratio(t)) is not None],
    )
    out.histogram(
        "callcenter112_answer_time_seconds",
        "Answer time (operator answered - INVITE arrived) of today's calls.",
        answer_times,
        ANSWER_BUCKETS_S,
    )


async def _disk_families(out: _Scrape, ctx: WebContext) -> None:
    """Free bytes in each evidence folder (issue 11: the low-disk alarm's figure)."""
    samples = []
    for folder in storage_folders(ctx.config):
        try:
            samples.append((folder.name, float(await asyncio.to_thread(free_bytes, folder))))
        except OSError as exc:
            log.warning("metrics_disk_failed", folder=str(folder), error=str(exc))
            samples.append((folder.name, 0.0))
    out.gauges(
        "callcenter112_disk_free_bytes",
        "Bytes still free for the centre in each evidence folder.",
        "folder",
        samples,
    )


async def render_metrics(ctx: WebContext) -> bytes:
    """The whole exposition; a part whose source fails is left out and flagged down."""
    out = _Scrape()
    now = ctx.now()
    try:
        snap = ctx.live.snapshot()
    except Exception as exc:  # noqa: BLE001 - reported as down, never a crash
        log.warning("metrics_snapshot_failed", error=repr(exc))
        snap = None
    out.gauge("callcenter112_live_up", "1 if the live centre gave a snapshot.", snap is not None)
    if snap is not None:
        _live_families(out, snap, now)
    await _store_families(out, ctx, ctx.local_midnight(now))
    live = ctx.live
    if isinstance(live, RtpQualitySource):
        try:
            _rtp_families(out, live.rtp_quality())
        except Exception as exc:  # noqa: BLE001 - reported as down, never a crash
            log.warning("metrics_rtp_failed", error=repr(exc))
    if isinstance(live, CoreCountersSource):  # issue 11: the centre's own counts
        counted = live.metrics
        out.counters(
            "callcenter112_core_events_total",
            "Things the core counted since start (refusals, failed writes, …).",
            "event",
            [(c.value, counted[c]) for c in Counted],
        )
    await _disk_families(out, ctx)
    out.gauge("callcenter112_web_sessions", "Signed-in web sessions.", len(ctx.sessions))
    out.gauge("callcenter112_web_event_streams", "Open live-update streams.", len(ctx.streams))
    return out.text()


async def metrics(request: Request) -> Response:
    ctx: WebContext = request.app.state.web
    return Response(
        await render_metrics(ctx),
        media_type=CONTENT_TYPE,
        headers={"Cache-Control": "no-store"},
    )


async def healthz(request: Request) -> Response:
    """Issue 11: the store proves a write (`probe`), every evidence folder a
    write and its free space; answers carry fixed words, never exception text
    (that goes to the log)."""
    ctx: WebContext = request.app.state.web
    checks: dict[str, str] = {}
    try:
        await ctx.store.probe(ctx.now())
        checks["store"] = "ok"
    except Exception as exc:  # noqa: BLE001 - reported as down, never a crash
        log.error("healthz_store_failed", error=str(exc))
        checks["store"] = "fail"
    try:
        ctx.live.snapshot()
        checks["sip"] = "ok"
    except Exception as exc:  # noqa: BLE001 - reported as down, never a crash
        log.error("healthz_sip_failed", error=repr(exc))
        checks["sip"] = "fail"
    storage = ctx.config.storage
    checks.update(
        await disk_checks(
            storage_folders(ctx.config), threshold_bytes=storage.low_disk_mb * 1_000_000
        )
    )
    # Low disk still works (the alarm is on the wallboard): degraded, not down.
    ok = all(v in ("ok", "low_disk") for v in checks.values())
    status = "fail" if not ok else "ok" if all(v == "ok" for v in checks.values()) else "degraded"
    return JSONResponse(
        {"status": status, **checks, "at": format_timestamp(ctx.now())},
        status_code=200 if ok else 503,
        headers={"Cache-Control": "no-store"},
    )
