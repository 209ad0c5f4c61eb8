"""The SIP headers that point at a caller's location and emergency data.

- ``Geolocation`` (RFC 6442 §4.1): one or more ``<URI>`` values, in one header
  or several. A ``cid:`` URI is by value (a body part of this INVITE); an
  ``https:``/``http:``/``sip:``/``pres:`` URI is by reference. All are kept,
  by-value ones first, in arrival order (FreeSWITCH keeps only the last
  header; we keep them all).
- ``Call-Info`` (RFC 7852 §4): the additional emergency data blocks
  (``purpose=EmergencyCallData.ProviderInfo`` / ``.ServiceInfo`` /
  ``.DeviceInfo`` / ``.SubscriberInfo`` / ``.Comment``) and the call and
  incident identifiers (``purpose=emergency-CallId`` / ``emergency-IncidentId``).

Bad values are dropped with a note, never raised.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from ..sip.errors import SipParseError
from ..sip.message import split_list

__all__ = [
    "EMERGENCY_PURPOSES",
    "MAX_LOCATION_VALUES",
    "CallInfo",
    "GeolocationValue",
    "parse_call_info",
    "parse_geolocation",
]

# RFC 6442 sets no bound; a carrier sends one or two. More is noise, not a caller.
MAX_LOCATION_VALUES: Final = 8
MAX_CALL_INFO: Final = 16
MAX_URI: Final = 2048  # RFC 9110 §4.1 suggests supporting ≥ 8000; a location URI is short
EMERGENCY_PURPOSES: Final = (
    "EmergencyCallData.ProviderInfo",
    "EmergencyCallData.ServiceInfo",
    "EmergencyCallData.DeviceInfo",
    "EmergencyCallData.SubscriberInfo",
    "EmergencyCallData.Comment",
    "emergency-CallId",
    "emergency-IncidentId",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class GeolocationValue:
    uri: str
    scheme: str  # lower-case: "cid", "https", "http", "sip", "sips", "pres"

    @property
    def by_value(self) -> bool:
        return self.scheme == "cid"


@dataclass(frozen=True, slots=True, kw_only=True)
class CallInfo:
    purpose: str  # one of EMERGENCY_PURPOSES, as spelled there
    uri: str

    @property
    def by_value(self) -> bool:
        return self.uri[:4].lower() == "cid:"

    def to_json(self) -> dict[str, object]:
        return {"purpose": self.purpose, "uri": self.uri}


def _entries(values: Sequence[str], notes: list[str], what: str) -> list[tuple[str, str]]:
    """(uri, params text) for each ``<uri>;params`` element of the header values."""
    out: list[tuple[str, str]] = []
    for value in values:
        try:
            items = split_list(value, strict=False)
        except SipParseError as exc:
            notes.append(f"{what} {value[:60]!r} ignored: {exc.reason}")
            continue
        for item in items:
            if not item.startswith("<") or ">" not in item:
                notes.append(f"{what} value {item[:60]!r} ignored: not <URI>")
                continue
            uri, _, params = item[1:].partition(">")
            uri = uri.strip()
            if not uri or len(uri) > MAX_URI or ":" not in uri:
                notes.append(f"{what} value {item[:60]!r} ignored: not a URI")
                continue
            out.append((uri, params))
    return out


def parse_geolocation(values: Sequence[str]) -> tuple[tuple[GeolocationValue, ...], list[str]]:
    """Every Geolocation URI, by value first; and notes about values dropped."""
    notes: list[str] = []
    found: list[GeolocationValue] = []
    for uri, _params in _entries(values, notes, "Geolocation"):
        if len(found) >= MAX_LOCATION_VALUES:
            notes.append(f"Geolocation: more than {MAX_LOCATION_VALUES} values, rest ignored")
            break
        scheme = uri.split(":", 1)[0].lower()
        if any(g.uri == uri for g in found):
            continue
        found.append(GeolocationValue(uri=uri, scheme=scheme))
    ordered = [g for g in found if g.by_value] + [g for g in found if not g.by_value]
    return tuple(ordered), notes


def parse_call_info(values: Sequence[str]) -> tuple[tuple[CallInfo, ...], list[str]]:
    """The RFC 7852 entries of Call-Info headers (other purposes are not ours)."""
    notes: list[str] = []
    found: list[CallInfo] = []
    for uri, params in _entries(values, notes, "Call-Info"):
        purpose = None
        for param in params.split(";"):
            name, _, value = param.partition("=")
            if name.strip().lower() == "purpose":
                purpose = value.strip().strip('"')
        match = next(
            (p for p in EMERGENCY_PURPOSES if purpose and p.lower() == purpose.lower()), None
        )
        if match is None:
            continue
        if len(found) >= MAX_CALL_INFO:
            notes.append(f"Call-Info: more than {MAX_CALL_INFO} emergency entries, rest ignored")
            break
        found.append(CallInfo(purpose=match, uri=uri))
    return tuple(found), notes
