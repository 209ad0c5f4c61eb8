"""An incident's life drawn as one bar: set-up, IVR, queue, ringing, talk, transfer.

The phases come from the incident's timestamps (DESIGN §2: arrived, answered,
ivr_done, queued, offered, operator_answered, transferred, ended); each phase
runs from its own stamp to the next phase's, so a missing stamp (a caller who
hung up in the queue has no offered_at) simply ends the bar at `ended_at`.
Timeline events become tick marks on the bar. Pure: `now` stands in for the
end of a call still up.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass

from ..incidents import Incident, TimelineEntry

__all__ = [
    "PHASES",
    "Phase",
    "Segment",
    "Tick",
    "timeline_segments",
    "timeline_svg",
    "timeline_ticks",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class Phase:
    key: str
    label: str  # Indonesian first, English after the dot
    colour: str


PHASES: tuple[Phase, ...] = (
    Phase(key="setup", label="Sambung · Set-up", colour="#6b7a8f"),
    Phase(key="ivr", label="IVR", colour="#8e6cd9"),
    Phase(key="queue", label="Antre · Queue", colour="#e0a100"),
    Phase(key="ringing", label="Berdering · Ringing", colour="#e06c00"),
    Phase(key="talk", label="Bicara · Talk", colour="#1f9d55"),
    Phase(key="transfer", label="Alih · Transfer", colour="#1c6fd1"),
)
_PHASE = {p.key: p for p in PHASES}


@dataclass(frozen=True, slots=True, kw_only=True)
class Segment:
    phase: str
    label: str
    colour: str
    start: float  # epoch seconds
    end: float

    @property
    def seconds(self) -> float:
        return self.end - self.start


@dataclass(frozen=True, slots=True, kw_only=True)
class Tick:
    at: float
    kind: str


def timeline_segments(incident: Incident, *, now: float) -> list[Segment]:
    """The phases the call went through, in order, clipped to [arrived, ended or now]."""
    inc = incident
    begin = inc.arrived_at
    finish = inc.ended_at if inc.ended_at is not None else max(now, begin)
    starts: list[tuple[str, float | None]] = [
        ("setup", inc.arrived_at),
        ("ivr", inc.answered_at),
        ("queue", inc.queued_at if inc.queued_at is not None else inc.ivr_done_at),
        ("ringing", inc.offered_at),
        ("talk", inc.operator_answered_at),
        ("transfer", inc.transferred_at),
    ]
    known = [(key, t) for key, t in starts if t is not None]
    out: list[Segment] = []
    for i, (key, t) in enumerate(known):
        start = min(max(t, begin), finish)
        end = finish
        for _key, later in known[i + 1 :]:
            if later >= start:
                end = min(later, finish)
                break
        if end > start:
            phase = _PHASE[key]
            out.append(
                Segment(phase=key, label=phase.label, colour=phase.colour, start=start, end=end)
            )
    return out


def timeline_ticks(
    incident: Incident, events: Sequence[TimelineEntry], *, now: float
) -> list[Tick]:
    """Timeline events that fall on the bar (disposition edits after the call do not)."""
    finish = incident.ended_at if incident.ended_at is not None else now
    return [Tick(at=e.at, kind=e.kind) for e in events if incident.arrived_at <= e.at <= finish]


def _fmt(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 60 else f"{int(seconds) // 60} min {int(seconds) % 60} s"


def timeline_svg(
    segments: Sequence[Segment], ticks: Sequence[Tick] = (), *, width: int = 1000
) -> str:
    """Inline SVG of the bar; each segment and tick carries a <title> tooltip."""
    height, bar = 46, 28
    if not segments:
        return (
            f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
            'class="timeline" role="img" aria-label="timeline"></svg>'
        )
    t0 = segments[0].start
    span = max(segments[-1].end - t0, 1e-3)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        'class="timeline" role="img" aria-label="timeline" data-testid="timeline">'
    ]
    for seg in segments:
        x = (seg.start - t0) / span * width
        w = max(seg.seconds / span * width, 1.0)
        title = html.escape(f"{seg.label}: {_fmt(seg.seconds)}")
        parts.append(
            f'<rect x="{x:.1f}" y="0" width="{w:.1f}" height="{bar}" fill="{seg.colour}" '
            f'data-phase="{seg.phase}"><title>{title}</title></rect>'
        )
        if w > 60:
            parts.append(
                f'<text x="{x + 4:.1f}" y="18" font-size="12" fill="#fff" '
                f'font-family="sans-serif">{html.escape(seg.label.split(" · ")[0])}</text>'
            )
    for tick in ticks:
        x = (tick.at - t0) / span * width
        parts.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{bar}" y2="{bar + 10}" stroke="#223" '
            f'stroke-width="2"><title>{html.escape(tick.kind)} +{tick.at - t0:.1f} s'
            "</title></line>"
        )
    parts.append(
        f'<text x="0" y="{height - 2}" font-size="11" fill="#334" font-family="sans-serif">'
        f"0 s</text>"
        f'<text x="{width}" y="{height - 2}" font-size="11" fill="#334" text-anchor="end" '
        f'font-family="sans-serif">{_fmt(span)}</text>'
    )
    parts.append("</svg>")
    return "".join(parts)
