"""An emergency INVITE's body and location headers → the SDP offer and a `LocationReport`.

This is the one function the call flow calls on a new INVITE
(`read_invite`); it never raises and never refuses. The INVITE is answered
with the SDP it returns exactly as without location; the report goes to the
incident:

- ``fixes``: by-value PIDF-LO fixes, in Geolocation order (by value first), also
  the invalid ones with their reasons; a PIDF-LO part no header names is read
  too (some gateways drop the header or the Content-ID), with a note.
- ``references``: ``https:`` location URIs to dereference off the call path
  (net/geoloc_fetch.py), in header order.
- ``call_info``/``data``: RFC 7852 Call-Info entries and the by-value blocks
  they name.
- ``notes``: every part, header value or reference not understood.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from ..sip.multipart import BodyPart, cid_matches, serialize_multipart, split_body
from .fix import Fix
from .headers import CallInfo, parse_call_info, parse_geolocation
from .pidf import PIDF_CONTENT_TYPE, parse_pidf, serialize

__all__ = [
    "MAX_DATA_BLOCK",
    "DataBlock",
    "LocationBody",
    "LocationReport",
    "read_invite",
    "with_location",
]

MAX_DATA_BLOCK = 16_384  # bytes of one RFC 7852 block kept on the incident


@dataclass(frozen=True, slots=True, kw_only=True)
class DataBlock:
    """An RFC 7852 additional-data block carried by value."""

    purpose: str
    media_type: str
    text: str

    def to_json(self) -> dict[str, object]:
        return {"purpose": self.purpose, "media_type": self.media_type, "text": self.text}


@dataclass(frozen=True, slots=True, kw_only=True)
class LocationReport:
    fixes: tuple[Fix, ...] = ()
    references: tuple[str, ...] = ()
    call_info: tuple[CallInfo, ...] = ()
    data: tuple[DataBlock, ...] = ()
    notes: tuple[str, ...] = field(default=())

    @property
    def empty(self) -> bool:
        return not (self.fixes or self.references or self.call_info or self.notes)

    def to_json(self) -> dict[str, object]:
        return {
            "fixes": [f.to_json() for f in self.fixes],
            "references": list(self.references),
            "call_info": [c.to_json() for c in self.call_info],
            "data": [d.to_json() for d in self.data],
            "notes": list(self.notes),
        }


def _label(part: BodyPart) -> str:
    return part.media_type + (f" <{part.content_id}>" if part.content_id else "")


def read_invite(
    content_type: str | None,
    body: bytes,
    *,
    geolocation: Sequence[str] = (),
    call_info: Sequence[str] = (),
    now: float,
) -> tuple[bytes | None, LocationReport]:
    """(the SDP offer or None, what the INVITE says about the caller's location)."""
    split = split_body(content_type, body)
    notes = list(split.notes)
    geos, geo_notes = parse_geolocation(geolocation)
    infos, info_notes = parse_call_info(call_info)
    notes += geo_notes + info_notes
    used: set[int] = set()
    fixes: list[Fix] = []
    references: list[str] = []
    for geo in geos:
        if geo.by_value:
            index = next((i for i, p in enumerate(split.parts) if cid_matches(geo.uri, p)), None)
            if index is None:
                fixes.append(
                    Fix.invalid(
                        source="pidf", at=now, reason=f"{geo.uri[:80]} names no part of the body"
                    )
                )
                continue
            used.add(index)
            part = split.parts[index]
            fixes.extend(parse_pidf(part.body, content_type=part.media_type, now=now))
        elif geo.scheme == "https":
            references.append(geo.uri)
        else:
            notes.append(f"Geolocation {geo.uri[:80]} not followed: only cid: and https: are")
    data: list[DataBlock] = []
    for info in infos:
        if not info.by_value:
            continue
        index = next((i for i, p in enumerate(split.parts) if cid_matches(info.uri, p)), None)
        if index is None:
            notes.append(f"Call-Info {info.purpose} {info.uri[:80]} names no part of the body")
            continue
        used.add(index)
        part = split.parts[index]
        data.append(
            DataBlock(
                purpose=info.purpose,
                media_type=part.media_type,
                text=part.body[:MAX_DATA_BLOCK].decode("utf-8", "replace"),
            )
        )
    for i, part in enumerate(split.parts):
        if i in used:
            continue
        if part.media_type == PIDF_CONTENT_TYPE:
            notes.append(f"{_label(part)} read though no Geolocation header names it")
            fixes.extend(parse_pidf(part.body, content_type=part.media_type, now=now))
        else:
            notes.append(f"body part {_label(part)[:100]} ignored")
    report = LocationReport(
        fixes=tuple(fixes),
        references=tuple(references),
        call_info=infos,
        data=tuple(data),
        notes=tuple(notes),
    )
    return split.sdp, report


@dataclass(frozen=True, slots=True, kw_only=True)
class LocationBody:
    """What an outgoing INVITE carries to pass the caller's location on by value."""

    content_type: str  # for the Content-Type header
    body: bytes
    geolocation: str  # the Geolocation header value: "<cid:…>"
    routing: str = "no"  # Geolocation-Routing (RFC 6442 §4.2): the agency does not re-route


def with_location(sdp: bytes, fix: Fix, *, entity: str, content_id: str) -> LocationBody:
    """The SDP offer plus the caller's PIDF-LO (by value) as one multipart/mixed body.

    For the INVITE that hands the call to an agency (RFC 6442 §3.1). `content_id`
    must be unique (``"<incident id>@<centre host>"``). Raises `ValueError` for
    an invalid fix: send the plain SDP then.
    """
    document = serialize(fix, entity=entity)
    boundary = "cc112-" + content_id.replace("@", "-")[:50]
    parts = (
        BodyPart(
            media_type="application/sdp",
            params=(),
            content_id=None,
            disposition=None,
            headers=(),
            body=sdp,
        ),
        BodyPart(
            media_type=PIDF_CONTENT_TYPE,
            params=(),
            content_id=content_id,
            disposition="by-reference",
            headers=(),
            body=document,
        ),
    )
    return LocationBody(
        content_type=f'multipart/mixed;boundary="{boundary}"',
        body=serialize_multipart(parts, boundary),
        geolocation=f"<cid:{content_id}>",
    )
