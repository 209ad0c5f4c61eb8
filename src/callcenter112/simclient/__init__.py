"""Simulated phones for load and demonstration: callers and operators on our own stack.

A small asyncio SIP user agent built from the project's sans-IO layers — the
transaction layer (through `net.sip_endpoint`), dialogs, digest answers,
SDP offer/answer, RTP streams with RFC 4733 digits on one shared media
clock — driving scripted callers (dial 112 from the trunk's address, press a
digit, wait, talk, hang up or abandon) and operators (register, ring,
answer, talk, hang up) against a running server on loopback.

Modules: `agent` (one SIP endpoint and its call routing), `media` (many
legs' RTP on one socket pair), `caller`, `operator` (the two kinds of
phone), `simulation` (a whole run: plan, register, place, tear down),
`records` (what was planned and observed), `report` (the run checked
against the incident store, and its summary). `callcenter112 simulate` and
`scripts/bench surge` are built on it.
"""

from __future__ import annotations

from .records import CallerScript, CallRecord, OperatorCallRecord, Outcome, percentile
from .report import IncidentView, Quantiles, Summary, format_summary, read_incidents, summarize
from .simulation import (
    OperatorAccount,
    Progress,
    Simulation,
    SimulationError,
    SimulationPlan,
    plan_callers,
)

__all__ = [
    "CallRecord",
    "CallerScript",
    "IncidentView",
    "OperatorAccount",
    "OperatorCallRecord",
    "Outcome",
    "Progress",
    "Quantiles",
    "Simulation",
    "SimulationError",
    "SimulationPlan",
    "Summary",
    "format_summary",
    "percentile",
    "plan_callers",
    "read_incidents",
    "summarize",
]
