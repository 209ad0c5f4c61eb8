"""Advanced Mobile Location: the HTTPS form (Android ELS) and the SMS bodies (ETSI TS 103 625).

A phone that dials 112 measures its position and sends it beside the call:

- HTTPS (Android Emergency Location Service, ETSI TS 103 625 §7.4 "HTTPS
  interface"): a form-encoded POST of ``v, emergency_number, source, time,
  location_latitude, location_longitude, location_time, location_accuracy,
  location_source, location_confidence (or location_certainty),
  location_altitude, location_floor, device_number, device_imei,
  device_model, cell_home_mcc/mnc, cell_network_mcc/mnc, device_languages,
  hmac``. With a key configured, ``hmac`` must be HMAC-SHA1 (RFC 2104) over the
  exact text before ``&hmac=``, hex; a message that fails is discarded (the
  receiver still answers 2xx, as ELS requires — the web layer does that).
- SMS (ETSI TS 103 625 §7.3, Annex A): ``A"ML=1;lt=…;lg=…;rd=…;top=…;lc=…;pm=…;…;ml=…``
  or ``A"ML=2;en=…;et=…;lo=lat,lon[,alt];lc=…;ls=…;…;ml=…``. ``ml`` is the
  message length; a mismatch (gateways re-encode) is noted, not rejected.

Both give an `AmlResult`: the fix (or None when discarded), the caller's
number in E.164, the fields read, and why it was discarded or what was odd.
"""

from __future__ import annotations

import hashlib
import hmac
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final
from urllib.parse import parse_qsl

from .fix import Fix, FixSource
from .numbers import DEFAULT_REGION, normalise_number

__all__ = [
    "AML_FIELDS",
    "MAX_AML_BODY",
    "AmlResult",
    "aml_hmac",
    "parse_aml_form",
    "parse_aml_sms",
]

# An ELS POST is ~400 bytes; an SMS at most 160 GSM 7-bit characters (3GPP TS 23.038),
# a few concatenated. Anything larger is not AML.
MAX_AML_BODY: Final = 4096
MAX_FIELDS: Final = 64
# Android reports location accuracy as the radius of 68 % confidence
# (android.location.Location#getAccuracy); used when the message states none.
ANDROID_CONFIDENCE: Final = 68

AML_FIELDS: Final = (
    "v",
    "emergency_number",
    "source",
    "time",
    "location_latitude",
    "location_longitude",
    "location_time",
    "location_accuracy",
    "location_source",
    "location_confidence",
    "location_certainty",
    "location_altitude",
    "location_floor",
    "device_number",
    "device_imei",
    "device_model",
    "cell_home_mcc",
    "cell_home_mnc",
    "cell_network_mcc",
    "cell_network_mnc",
    "device_languages",
    "hmac",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class AmlResult:
    fix: Fix | None  # None: discarded (see `discarded`)
    caller: str | None  # E.164
    fields: tuple[tuple[str, str], ...]
    discarded: str | None = None
    notes: tuple[str, ...] = ()


def aml_hmac(message: bytes, key: bytes) -> str:
    """HMAC-SHA1 (RFC 2104) of `message` as lower-case hex, as ELS computes it."""
    return hmac.new(key, message, hashlib.sha1).hexdigest()


def _float(fields: dict[str, str], *names: str) -> float | None:
    for name in names:
        text = fields.get(name, "").strip()
        if text:
            try:
                value = float(text)
            except ValueError:
                return math.nan
            return value
    return None


def _epoch_ms(text: str | None) -> float | None:
    if not text or not text.strip().isdigit() or len(text.strip()) > 16:
        return None
    return int(text.strip()) / 1000.0


def parse_aml_form(
    body: bytes, *, key: bytes | None, now: float, region: str = DEFAULT_REGION
) -> AmlResult:
    """An ELS HTTPS POST body → `AmlResult`; never raises."""

    def discard(reason: str, fields: tuple[tuple[str, str], ...] = ()) -> AmlResult:
        return AmlResult(fix=None, caller=None, fields=fields, discarded=reason)

    if len(body) > MAX_AML_BODY:
        return discard(f"body of {len(body)} bytes is larger than {MAX_AML_BODY}")
    try:
        text = body.decode("ascii")
    except UnicodeDecodeError:
        return discard("body is not an ASCII form")
    try:
        pairs = parse_qsl(
            text, keep_blank_values=True, max_num_fields=MAX_FIELDS, strict_parsing=True
        )
    except ValueError as exc:
        return discard(f"not a form: {str(exc)[:80]}")
    kept = tuple(pairs)
    fields: dict[str, str] = {}
    for name, value in pairs:
        if name in fields:
            return discard(f"field {name[:40]!r} given twice", kept)
        fields[name] = value
    if key is not None:
        cut = text.rfind("&hmac=")
        if cut == -1 or "hmac" not in fields:
            return discard("no hmac, and a key is configured", kept)
        expected = aml_hmac(text[:cut].encode("ascii"), key)
        if not hmac.compare_digest(expected, fields["hmac"].strip().lower()):
            return discard("hmac does not match", kept)
    caller = normalise_number(fields.get("device_number"), region=region)
    at = _epoch_ms(fields.get("location_time")) or _epoch_ms(fields.get("time")) or now
    lat = _float(fields, "location_latitude")
    lon = _float(fields, "location_longitude")
    radius = _float(fields, "location_accuracy")
    confidence = _float(fields, "location_confidence", "location_certainty")
    altitude = _float(fields, "location_altitude")
    raw = text[:4096]
    if lat is None or lon is None:
        fix = Fix.invalid(
            source="aml-https",
            at=at,
            reason="no location_latitude/longitude",
            raw=raw,
            caller=caller,
        )
    else:
        conf = ANDROID_CONFIDENCE if confidence is None else confidence
        fix = Fix.position(
            lat=lat,
            lon=lon,
            radius_m=radius,
            source="aml-https",
            at=at,
            confidence=int(conf) if math.isfinite(conf) else -1,
            shape=fields.get("location_source") or None,
            altitude_m=altitude if altitude is not None and math.isfinite(altitude) else None,
            caller=caller,
            raw=raw,
        )
    notes: tuple[str, ...] = ()
    if caller is None:
        notes = ("no device_number: the fix waits for an operator to attach it",)
    return AmlResult(fix=fix, caller=caller, fields=kept, notes=notes)


def _sms_time(text: str | None) -> float | None:
    if not text:
        return None
    t = text.strip()
    for fmt in ("%Y%m%d%H%M%S", "%Y%m%dT%H%M%SZ", "%Y%m%dT%H%M%S"):
        try:
            return datetime.strptime(t, fmt).replace(tzinfo=UTC).timestamp()
        except ValueError:
            continue
    try:
        parsed = datetime.fromisoformat(t.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()


def parse_aml_sms(
    body: str, *, sender: str | None, now: float, region: str = DEFAULT_REGION
) -> AmlResult:
    """An AML SMS body (v1 or v2) from `sender` → `AmlResult`; never raises."""
    source: FixSource = "aml-sms"
    caller = normalise_number(sender, region=region)
    text = body.strip()
    if len(text) > MAX_AML_BODY:
        return AmlResult(fix=None, caller=caller, fields=(), discarded="SMS body too long")
    head = text[:6].upper().replace('"', "")
    if not head.startswith("AML="):
        return AmlResult(fix=None, caller=caller, fields=(), discarded='not an AML SMS (A"ML=…)')
    pairs: list[tuple[str, str]] = []
    for item in text.split(";"):
        name, eq, value = item.partition("=")
        if eq:
            pairs.append((name.strip().replace('"', "").lower(), value.strip()))
    fields = dict(pairs)
    kept = tuple(pairs[:MAX_FIELDS])
    version = fields.get("aml", "")
    notes: list[str] = []
    declared = fields.get("ml")
    if declared is not None and declared.isdigit() and int(declared) != len(text):
        notes.append(f"length mismatch: ml={declared}, body has {len(text)} characters")
    at = _sms_time(fields.get("top") or fields.get("et")) or now
    lat = lon = altitude = None
    if version == "1":
        lat, lon = _float(fields, "lt"), _float(fields, "lg")
        method = fields.get("pm")
    elif version == "2":
        parts = [p.strip() for p in fields.get("lo", "").split(",")]
        method = fields.get("ls")
        try:
            if len(parts) >= 2:
                lat, lon = float(parts[0]), float(parts[1])
            if len(parts) >= 3 and parts[2]:
                altitude = float(parts[2])
        except ValueError:
            lat = lon = math.nan
    else:
        return AmlResult(
            fix=None, caller=caller, fields=kept, discarded=f"AML version {version[:8]!r} unknown"
        )
    radius = _float(fields, "rd", "lr", "ac")
    confidence = _float(fields, "lc")
    raw = text[:4096]
    if lat is None or lon is None:
        fix = Fix.invalid(
            source=source, at=at, reason="no position in the SMS", raw=raw, caller=caller
        )
    else:
        fix = Fix.position(
            lat=lat,
            lon=lon,
            radius_m=radius,
            source=source,
            at=at,
            confidence=None
            if confidence is None
            else (int(confidence) if math.isfinite(confidence) else -1),
            shape=method or None,
            altitude_m=altitude,
            caller=caller,
            raw=raw,
        )
    return AmlResult(fix=fix, caller=caller, fields=kept, notes=tuple(notes))
