"""The incident as a NENA EIDO (Emergency Incident Data Object, NENA-STA-021) JSON document.

Agency CAD systems take incidents in EIDO form. `incident_to_eido` builds one
from the incident JSON (`incidents.incident_to_json`, with its ``location``
object when the store provides it): the incident tracking identifier, its
state, the call, the location (the best fix as a geodetic circle, the civic
words the operator typed, every other fix as a further location reference),
the agencies notified and the notes. Pure: a dict in, a dict out.

Field names follow NENA-STA-021.1a-2022 (EIDO JSON schema: ``eidoMessageIdentifier``,
``incidentComponent``, ``callComponent``, ``locationComponent``,
``notesComponent``, ``agencyComponent``) as far as this centre has the data;
what it does not know is left out rather than invented.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

__all__ = ["EIDO_MEDIA_TYPE", "incident_to_eido"]

EIDO_MEDIA_TYPE: Final = "application/emergency.eido+json"  # NENA-STA-024 registration

_STATUS: Final = {
    "active": "Active",
    "completed": "Closed",
    "abandoned": "Closed",
    "interrupted": "Active",
}


def _urn(kind: str, value: str, centre: str) -> str:
    # NENA-STA-010.3 §2.1.7/2.1.8: urn:emergency:uid:<kind>:<string>:<FQDN of the element>
    return f"urn:emergency:uid:{kind}:{value}:{centre}"


def _location(loc: Mapping[str, object], ident: str) -> dict[str, object]:
    out: dict[str, object] = {"$id": ident}
    lat, lon, radius = loc.get("lat"), loc.get("lon"), loc.get("radius_m")
    if isinstance(lat, int | float) and isinstance(lon, int | float):
        if isinstance(radius, int | float) and radius > 0:
            out["geo"] = {
                "type": "Circle",
                "coordinates": [lon, lat],
                "radius": radius,
                "uom": "urn:ogc:def:uom:EPSG::9001",
            }
        else:
            out["geo"] = {"type": "Point", "coordinates": [lon, lat]}
    for key, name in (("source", "locationMethod"), ("at", "locationDate")):
        if loc.get(key) is not None:
            out[name] = loc[key]
    if loc.get("confidence") is not None:
        out["confidence"] = loc["confidence"]
    return out


def incident_to_eido(incident: Mapping[str, object], *, centre: str) -> dict[str, object]:
    """An EIDO JSON object for this incident JSON; `centre` is the centre's domain name."""
    ident = str(incident.get("id", ""))
    status = str(incident.get("status", ""))
    eido: dict[str, object] = {
        "$schema": "https://www.nena.org/schemas/eido/2.0/eido.json",
        "eidoMessageIdentifier": _urn("eido", ident, centre),
        "$id": _urn("incidentid", ident, centre),
        "lastUpdateTimestamp": incident.get("ended_at") or incident.get("arrived_at"),
        "incidentComponent": {
            "incidentTrackingIdentifier": _urn("incidentid", ident, centre),
            "lastUpdateTimestamp": incident.get("ended_at") or incident.get("arrived_at"),
            "incidentStatusCommonType": _STATUS.get(status, "Unknown"),
            "incidentTypeCommonRegistryText": incident.get("category"),
            "dispositionCode": incident.get("disposition"),
            "locationReference": "#loc-0",
        },
        "callComponent": [
            {
                "$id": _urn("callid", str(incident.get("call_id") or ident), centre),
                "callTypeDescription": "emergency",
                "callerNumber": incident.get("caller"),
                "callerName": incident.get("caller_name"),
                "callStartTimestamp": incident.get("arrived_at"),
                "callAnsweredTimestamp": incident.get("operator_answered_at"),
                "callEndTimestamp": incident.get("ended_at"),
                "attendingOperator": incident.get("operator"),
                "locationReference": "#loc-0",
            }
        ],
    }
    locations: list[dict[str, object]] = []
    loc = incident.get("location")
    best: dict[str, object] = (
        _location(loc, "loc-0") if isinstance(loc, Mapping) else {"$id": "loc-0"}
    )
    civic: dict[str, object] = {
        k: v
        for k, v in (
            ("A3", incident.get("kecamatan")),  # RFC 5139: A3 = city division
            ("A4", incident.get("kelurahan")),  # A4 = neighbourhood / village
            ("LOC", incident.get("location_text")),  # additional location information
        )
        if v
    }
    if civic:
        best["civicAddressText"] = civic
    locations.append(best)
    if isinstance(loc, Mapping):
        fixes = loc.get("fixes")
        if isinstance(fixes, list):
            for i, fix in enumerate(fixes, start=1):
                if isinstance(fix, Mapping) and fix.get("valid"):
                    locations.append(_location(fix, f"loc-{i}"))
    eido["locationComponent"] = locations
    agencies = incident.get("agencies_notified")
    if isinstance(agencies, list) and agencies:
        eido["agencyComponent"] = [{"agencyIdentifier": str(a)} for a in agencies]
    if incident.get("description"):
        eido["notesComponent"] = [
            {
                "noteText": incident["description"],
                "noteDateTime": incident.get("ended_at") or incident.get("arrived_at"),
                "noteAuthor": incident.get("operator"),
            }
        ]
    return eido
