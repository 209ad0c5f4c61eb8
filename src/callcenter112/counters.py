"""Plain counters and gauges of the core, for /metrics to read.

The core (centre, calls, media) never imports `web/`: it counts here, and the
web layer reads `Centre.counters` and `Centre.rtp_quality()`. Names are the
`Counted` members, so a typo is a type error, not a silent new series.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass
from enum import StrEnum

__all__ = ["CoreCounters", "Counted", "RtpQuality"]


class Counted(StrEnum):
    TRANSACTION_LIMIT = "transaction_limit"  # a request answered 503 by a full layer
    INVITE_FORBIDDEN = "invite_forbidden"  # an INVITE from outside the trunk allow-list
    REJECTED_CAPACITY = "rejected_capacity"  # 503: the centre is at its call limit
    REJECTED_NO_PORTS = "rejected_no_ports"  # 503: no RTP ports left
    INCIDENT_CREATE_FAILED = "incident_create_failed"  # answered without a record
    JOURNAL_WRITE_FAILED = "journal_write_failed"  # an incident/recording write failed
    PHASE_TABLE_GAPS = "phase_table_gaps"  # a phase change the table lacks (a defect)


class CoreCounters(collections.Counter[Counted]):
    """Monotonic counts since the process started."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RtpQuality:
    """RTP receive statistics over the legs up now, for /metrics."""

    streams: int  # RTP streams being received now
    packets_received: int  # since the server started
    packets_lost: int  # since the server started (RFC 3550 §6.4.1 cumulative loss)
    jitter_ms: tuple[float, ...]  # current interarrival jitter of each stream
