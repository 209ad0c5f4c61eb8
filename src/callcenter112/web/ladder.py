"""The SIP ladder of an incident as a server-drawn SVG.

Telecom engineers read SIP as ladder diagrams (sngrep, Wireshark's VoIP
flow): one vertical line per party, one arrow per message, time going down.
`sip.capture.ladder()` decides the columns (caller side, centre, operators
and agencies) and the rows; this module only draws them. Each arrow is a
link to the message's full text on the same page (`#msg-<index>`), already
masked by the capture.

No script and no inline style: the page's Content-Security-Policy forbids
both, and presentation attributes (`stroke`, `fill`) are neither.
"""

from __future__ import annotations

import html
from collections.abc import Callable

from ..sip.capture import Ladder

__all__ = ["COLUMN_GAP", "ROW_HEIGHT", "ladder_svg"]

COLUMN_GAP = 230  # px between parties: room for "200 OK (INVITE)" and an address
ROW_HEIGHT = 30
_LEFT = 110  # the time column
_TOP = 54  # the column titles
_RESPONSE_COLOURS = {"1": "#6b7785", "2": "#0f7a3b", "3": "#0b4f9c", "4": "#b3261e", "5": "#b3261e"}
_REQUEST_COLOUR = "#1b2a3a"


def _colour(label: str) -> str:
    head = label[:3]
    if head.isdigit():
        return _RESPONSE_COLOURS.get(head[0], "#b3261e")
    return _REQUEST_COLOUR


def ladder_svg(diagram: Ladder, *, clock: Callable[[float], str]) -> str:
    """The whole diagram; `clock(at)` renders a row's time (the centre's zone)."""
    e = html.escape
    columns = diagram.columns
    width = _LEFT + COLUMN_GAP * max(1, len(columns)) + 20
    height = _TOP + ROW_HEIGHT * (len(diagram.rows) + 1)
    x = [_LEFT + COLUMN_GAP // 2 + i * COLUMN_GAP for i in range(len(columns))]
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="ladder" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="SIP ladder, {len(diagram.rows)} messages" data-testid="ladder-svg">',
        "<defs>",
    ]
    for name, colour in {"req": _REQUEST_COLOUR, **_RESPONSE_COLOURS}.items():
        out.append(
            f'<marker id="arrow-{name}" viewBox="0 0 10 10" refX="10" refY="5" '
            f'markerWidth="7" markerHeight="7" orient="auto-start-reverse">'
            f'<path d="M0,0 L10,5 L0,10 z" fill="{colour}"/></marker>'
        )
    out.append("</defs>")
    for i, title in enumerate(columns):
        role, _, address = title.partition(" ")
        out.append(
            f'<text x="{x[i]}" y="18" text-anchor="middle" font-weight="700" '
            f'font-size="13" data-testid="ladder-column">{e(role)}</text>'
            f'<text x="{x[i]}" y="34" text-anchor="middle" font-size="11" '
            f'fill="#4a5866" font-family="monospace">{e(address)}</text>'
            f'<line x1="{x[i]}" y1="{_TOP - 12}" x2="{x[i]}" y2="{height - 6}" '
            f'stroke="#9aa7b4" stroke-dasharray="4 3"/>'
        )
    for n, row in enumerate(diagram.rows):
        y = _TOP + ROW_HEIGHT * n + 18
        colour = _colour(row.label)
        marker = "req" if colour == _REQUEST_COLOUR else row.label[0]
        x1, x2 = x[row.source], x[row.destination]
        mid = (x1 + x2) / 2
        out.append(
            f'<a href="#msg-{row.index}" data-testid="ladder-row" data-index="{row.index}">'
            f"<title>{e(row.label)}</title>"
            # The whole row is the link target, not only its thin line and text.
            f'<rect x="0" y="{y - ROW_HEIGHT + 8}" width="{width}" height="{ROW_HEIGHT}" '
            f'fill="#0b4f9c" fill-opacity="0" class="hit"/>'
            f'<text x="4" y="{y + 4}" font-size="11" font-family="monospace" '
            f'fill="#4a5866">{e(clock(row.at))}</text>'
            f'<line x1="{x1}" y1="{y}" x2="{x2}" y2="{y}" stroke="{colour}" '
            f'stroke-width="1.6" marker-end="url(#arrow-{marker})"/>'
            f'<text x="{mid}" y="{y - 5}" text-anchor="middle" font-size="12" '
            f'fill="{colour}" font-weight="600">{e(row.label)}</text></a>'
        )
    out.append("</svg>")
    return "".join(out)
