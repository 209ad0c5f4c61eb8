"""The JSON shapes of the live centre's state, shared by the API, the pages and /metrics.

Times are ISO 8601 UTC (as in the incident JSON, DESIGN §4); durations
(`wait_s`, `state_s`) are seconds at the snapshot's instant, rounded to 0.1 s.
"""

from __future__ import annotations

from ..incidents import SLA_THRESHOLDS_S, SlaSummary, format_timestamp
from ..live import ActiveCall, OperatorView, RegistrationView, TrunkView, WaitingCaller

__all__ = [
    "call_json",
    "operator_json",
    "registration_json",
    "sla_json",
    "trunk_json",
    "waiting_json",
]


def _age(now: float, since: float) -> float:
    return round(max(0.0, now - since), 1)


def waiting_json(w: WaitingCaller, now: float) -> dict[str, object]:
    return {
        "incident_id": w.incident_id,
        "caller": w.caller,
        "category": w.category,
        "language": w.language,
        "arrived_at": format_timestamp(w.arrived_at),
        "wait_s": _age(now, w.arrived_at),
        "position": w.position,
        "offered_to": w.offered_to,
    }


def operator_json(o: OperatorView, now: float) -> dict[str, object]:
    return {
        "user": o.user,
        "name": o.name,
        "skills": list(o.skills),
        "state": o.state,
        "since": format_timestamp(o.since),
        "state_s": _age(now, o.since),
        "reason": o.reason,
        "calls_today": o.calls_today,
        "missed": o.missed,
        "incident_id": o.incident_id,
        "registered": o.registered,
        "reachable": o.reachable,
    }


def call_json(c: ActiveCall, now: float) -> dict[str, object]:
    return {
        "incident_id": c.incident_id,
        "caller": c.caller,
        "category": c.category,
        "phase": c.phase,
        "operator": c.operator,
        "agency": c.agency,
        "arrived_at": format_timestamp(c.arrived_at),
        "phase_since": format_timestamp(c.phase_since),
        "duration_s": _age(now, c.arrived_at),
        "supervisors": [{"user": u, "mode": m} for u, m in c.supervisors],
    }


def trunk_json(t: TrunkView) -> dict[str, object]:
    return {
        "name": t.name,
        "allow": list(t.allow),
        "numbers": list(t.numbers),
        "proxy": t.proxy,
        "last_inbound_at": format_timestamp(t.last_inbound_at),
        "last_outbound_at": format_timestamp(t.last_outbound_at),
        "calls_today": t.calls_today,
        "active_calls": t.active_calls,
        "rejected_today": t.rejected_today,
    }


def registration_json(r: RegistrationView) -> dict[str, object]:
    return {
        "user": r.user,
        "contact": r.contact,
        "source": r.source,
        "expires_at": format_timestamp(r.expires_at),
        "reachable": r.reachable,
        "rtt_ms": r.rtt_ms,
        "user_agent": r.user_agent,
    }


def sla_json(s: SlaSummary) -> dict[str, object]:
    return {
        "since": format_timestamp(s.since),
        "until": format_timestamp(s.until),
        "arrived": s.arrived,
        "answered": s.answered,
        "abandoned": s.abandoned,
        "interrupted": s.interrupted,
        "active": s.active,
        "mean_answer_s": None if s.mean_answer_s is None else round(s.mean_answer_s, 3),
        "max_answer_s": None if s.max_answer_s is None else round(s.max_answer_s, 3),
        "answered_within": {
            str(t): {"count": s.within_s[t], "ratio": s.within_ratio(t)} for t in SLA_THRESHOLDS_S
        },
    }
