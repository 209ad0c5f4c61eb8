"""Load and validate the one TOML configuration file.

Telecom staff edit one file; a mistake in it must be named precisely before the
server runs. `load_config()` returns a frozen `Config` or raises `ConfigError`
carrying every problem as ``(key path, reason)`` — e.g. ``trunk[0].allow[1]:
'10.0.0.0/33' is not an IP network`` — so `check-config` can list them all at
once instead of one per run.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from .cluster.role import DEFAULT_LOCK_KEY
from .numerals import is_ascii_digits

__all__ = [
    "CATEGORIES",
    "DEMO_SECRETS",
    "DISPOSITIONS",
    "ROLES",
    "RTP_PAIRS_PER_CALL",
    "AgencyConfig",
    "AmlConfig",
    "ApiTokenConfig",
    "CallersConfig",
    "CategoryConfig",
    "CentreConfig",
    "ClusterConfig",
    "Config",
    "ConfigError",
    "ConfigProblem",
    "HostPort",
    "MapConfig",
    "OperatorConfig",
    "TrunkConfig",
    "UserConfig",
    "config_warnings",
    "exposure_problems",
    "is_loopback_listen",
    "load_config",
    "parse_config",
]

# The shipped Ambon category ids (``[[category]]`` in the file is the authority:
# use ``Config.category_ids``); kept for callers that need the default set.
CATEGORIES = (
    "medical",
    "fire",
    "disaster",
    "police",
    "security",
    "hearse",
    "utility",
    "other",
    "unknown",
)
SKILLS = CATEGORIES[:-1]
# Local SOP dispositions (issue 12); ``silent`` of older data reads as ``ghost``.
DISPOSITIONS = ("genuine", "ghost", "prank", "information", "wrong_number", "test", "duplicate")
ROLES = ("operator", "supervisor", "auditor", "admin", "telecom")


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}" if self.path else self.reason


class ConfigError(Exception):
    """Every problem found in one configuration file."""

    def __init__(self, source: str, problems: list[ConfigProblem]) -> None:
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  {p}" for p in problems)
        super().__init__(f"{source}: {len(problems)} problem(s)\n{lines}")

    def explain(self) -> str:
        """What every command prints for a bad file: the file, then one problem a line."""
        return "\n".join(
            [f"{self.source}: invalid configuration", *(f"  {p}" for p in self.problems)]
        )


@dataclass(frozen=True, slots=True)
class HostPort:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def _parse_host_port(value: object, *, default_port: int | None = None) -> HostPort:
    if isinstance(value, HostPort):
        return value
    if not isinstance(value, str):
        raise ValueError(f"expected a string 'host:port', got {type(value).__name__}")
    text = value.strip()
    host: str
    port_text: str | None
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ValueError(f"{value!r}: unclosed '[' in IPv6 address")
        host = text[1:end]
        rest = text[end + 1 :]
        if rest and not rest.startswith(":"):
            raise ValueError(f"{value!r}: expected ':port' after ']'")
        port_text = rest[1:] if rest else None
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    else:
        host, port_text = text, None
    if not host:
        raise ValueError(f"{value!r}: missing host")
    if port_text is None:
        if default_port is None:
            raise ValueError(f"{value!r}: missing ':port'")
        return HostPort(host, default_port)
    if not is_ascii_digits(port_text):
        raise ValueError(f"{value!r}: port {port_text!r} is not a number")
    port = int(port_text)
    if not 1 <= port <= 65535:
        raise ValueError(f"{value!r}: port {port} out of range 1-65535")
    return HostPort(host, port)


def _ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _cidr_list(v: list[str]) -> list[str]:
    """Each entry an IP address or network; every bad one named by its index."""
    bad = []
    for i, item in enumerate(v):
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            bad.append(f"[{i}] {item!r} is not an IP address or network (CIDR)")
    if bad:
        raise ValueError("; ".join(bad))
    return v


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


DigestAlgorithm = Literal["MD5", "SHA-256"]
_DEFAULT_DIGEST: tuple[DigestAlgorithm, ...] = ("MD5",)


class SipConfig(_Section):
    listen: HostPort = HostPort("0.0.0.0", 5060)
    advertise: str = "127.0.0.1"
    max_calls: Annotated[int, Field(ge=1, le=100_000)] = 500
    retry_after_s: Annotated[int, Field(ge=1, le=3600)] = 30
    realm: str = "callcenter112"
    # Log every SIP message sent and received (first line, peer, Call-ID) at
    # info level; for telecom staff debugging a trunk or a softphone.
    trace: bool = False
    # Registration: RFC 3261 §10.2.8 lets a registrar insist on a minimum.
    min_expires_s: Annotated[int, Field(ge=10, le=3600)] = 60
    max_expires_s: Annotated[int, Field(ge=60, le=86_400)] = 3600
    qualify_every_s: Annotated[float, Field(ge=1, le=3600)] = 30.0
    nonce_ttl_s: Annotated[float, Field(ge=5, le=3600)] = 300.0
    auth_fail_limit: Annotated[int, Field(ge=1, le=1000)] = 10
    auth_lockout_s: Annotated[float, Field(ge=1, le=86_400)] = 300.0
    # RFC 3261 §17.1.1.1 T1, the round-trip estimate every transaction timer
    # scales with (retransmissions from T1, timeouts 64*T1). 500 ms is the
    # RFC's default; it "MAY be chosen smaller" where the round trip is known
    # to be short (the trunk on a leased line, a LAN of softphones).
    timer_t1_ms: Annotated[int, Field(ge=50, le=4000)] = 500
    # -- SIP over TLS (issue 11, `edge`): `sips:` on tls_listen (RFC 3261
    # §26.2; 5061 by RFC 3263 §4.2), PEM certificate chain and key, paths
    # relative to the checkout. Off when tls_listen is unset.
    tls_listen: HostPort | None = None
    tls_certificate: str = ""
    tls_key: str = ""
    # Outgoing SIP over TLS (a `transport = "tls"` trunk, a phone reached on
    # a new TLS connection): PEM file of the CAs that may sign the far end's
    # certificate, instead of the system's; unset: the system's CAs.
    tls_ca: str = ""

    @field_validator("tls_listen", mode="before")
    @classmethod
    def _tls_listen(cls, v: object) -> HostPort | None:
        if v is None or v == "":
            return None
        hp = _parse_host_port(v, default_port=5061)
        if not _ip_literal(hp.host):
            raise ValueError(f"{hp.host!r} is not an IP address to listen on")
        return hp

    @model_validator(mode="after")
    def _tls_files(self) -> SipConfig:
        if self.tls_listen is not None and not (self.tls_certificate and self.tls_key):
            raise ValueError("tls_listen needs tls_certificate and tls_key (PEM files)")
        return self

    # -- end of the TLS keys
    # A REGISTER's Contact must name the address it came from (RFC 3261 §10.3
    # leaves Contact to the phone; a forged one would steer 112 offers to any
    # host). Set false only for phones behind NAT that write their private
    # address and are reached at the source anyway (docs/configuration.md).
    contact_must_match_source: bool = True
    # Edge proxies (Kamailio) whose REGISTERs may carry Path (RFC 3327): the
    # phone behind them is reached through the Path, so its Contact is not
    # checked against the source. A Path from anyone else is refused.
    path_proxies: list[str] = Field(default_factory=list)

    @field_validator("path_proxies")
    @classmethod
    def _path_proxies(cls, v: list[str]) -> list[str]:
        return _cidr_list(v)

    @field_validator("listen", mode="before")
    @classmethod
    def _listen(cls, v: object) -> HostPort:
        hp = _parse_host_port(v, default_port=5060)
        if not _ip_literal(hp.host):
            raise ValueError(f"{hp.host!r} is not an IP address to listen on")
        return hp

    # Digest algorithms offered in 401 challenges, most preferred first.
    # Debian's baresip 1.0.0 rejects a 401 that names SHA-256 at all, so MD5
    # alone is the default; ["SHA-256", "MD5"] for RFC 8760 clients.
    digest_algorithms: list[DigestAlgorithm] = Field(
        default_factory=lambda: list(_DEFAULT_DIGEST), min_length=1
    )

    @field_validator("advertise")
    @classmethod
    def _advertise(cls, v: str) -> str:
        # Written into SDP c= lines and Via/Contact: must be an IP literal
        # that the carrier and the softphones can reach.
        if not _ip_literal(v):
            raise ValueError(f"{v!r} is not an IP address")
        return v

    @model_validator(mode="after")
    def _expires(self) -> SipConfig:
        if self.min_expires_s > self.max_expires_s:
            raise ValueError(
                f"min_expires_s ({self.min_expires_s}) is above max_expires_s "
                f"({self.max_expires_s})"
            )
        return self


class RtpConfig(_Section):
    ports: str = "20000-20999"
    # Pre-opened sockets (DESIGN §5: opening one costs ~100 µs).
    preopen: Annotated[int, Field(ge=0, le=65_535)] = 64

    @model_validator(mode="before")
    @classmethod
    def _preopen_fits(cls, data: object) -> object:
        # Unset, `preopen` adapts to the range: 64 pairs or a quarter of the
        # pairs the range holds, whichever is smaller (issue 11: a small
        # range failed on a key nobody had set).
        if isinstance(data, dict) and "preopen" not in data:
            try:
                lo, hi = _port_range(str(data.get("ports", "20000-20999")))
            except ValueError:
                return data
            return {**data, "preopen": min(64, max(1, (hi - lo + 1) // 2 // 4))}
        return data

    @field_validator("ports")
    @classmethod
    def _ports(cls, v: str) -> str:
        lo, hi = _port_range(v)
        if lo % 2:
            raise ValueError(f"range {v!r} must start on an even port (RTP even, RTCP odd)")
        if hi - lo + 1 < 4:
            raise ValueError(f"range {v!r} holds fewer than 2 RTP/RTCP pairs")
        return v

    @property
    def port_range(self) -> tuple[int, int]:
        return _port_range(self.ports)


def _port_range(text: str) -> tuple[int, int]:
    parts = text.split("-")
    if len(parts) != 2 or not all(is_ascii_digits(p.strip()) for p in parts):
        raise ValueError(f"{text!r} is not a range like '20000-20999'")
    lo, hi = (int(p) for p in parts)
    if not (1024 <= lo <= 65535 and 1024 <= hi <= 65535):
        raise ValueError(f"range {text!r}: ports must lie in 1024-65535")
    if lo >= hi:
        raise ValueError(f"range {text!r}: start must be below end")
    return lo, hi


class CentreConfig(_Section):
    name: str = "Call Center 112"
    # The centre's local time zone: incident ids and "today" on the wallboard
    # follow the local day (Kota Ambon: WIT, UTC+9).
    timezone: str = "Asia/Jayapura"

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{v!r} is not a known time zone (e.g. 'Asia/Jayapura')") from None
        return v


class StorageConfig(_Section):
    # A SQLite file (default; ``sqlite:PATH`` also accepted) or a PostgreSQL DSN
    # ``postgresql://user@host1:5432,host2:5432/db?target_session_attrs=read-write``.
    database: str = "data/callcenter112.sqlite3"
    recordings: str = "data/recordings"
    # Low-disk alarm: free space under this in the database or recordings
    # folder (an hour of one stereo G.711 recording is ~58 MB).
    low_disk_mb: Annotated[int, Field(ge=1, le=10_000_000)] = 2048

    @field_validator("database")
    @classmethod
    def _database(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("empty: give a SQLite file path or a postgresql:// DSN")
        if "://" in v and not v.startswith(("postgresql://", "postgres://")):
            raise ValueError(
                f"{v.split('://', maxsplit=1)[0]}:// is not a database this server knows: "
                "give a SQLite file path or a postgresql:// DSN"
            )
        if v.startswith(("postgresql://", "postgres://")) and not v.split("://", 1)[1].strip("/"):
            raise ValueError("the postgresql:// DSN names no host")
        return v


class ControlConfig(_Section):
    # The local admin socket `callcenter112 reload` talks to (mode 0600).
    # Unix socket paths are limited to 107 bytes (sun_path, unix(7)).
    socket: Annotated[str, Field(min_length=1, max_length=100)] = "data/callcenter112.sock"


class ClusterConfig(_Section):
    """Two nodes behind the Kamailio edge (docs/deployment.md); off: one node.
    The leader is the node holding a PostgreSQL advisory lock (cluster/leader.py)."""

    enabled: bool = False
    # Where the lock lives; "" = [storage] database (which must then be postgresql://).
    leader_database: str = ""
    lock_key: Annotated[int, Field(ge=-(2**63), le=2**63 - 1)] = DEFAULT_LOCK_KEY
    retry_s: Annotated[float, Field(gt=0, le=10)] = 0.5
    check_s: Annotated[float, Field(gt=0, le=10)] = 1.0
    timeout_s: Annotated[float, Field(gt=0, le=10)] = 2.0

    def leader_dsn(self, storage: StorageConfig) -> str:
        return self.leader_database or storage.database


class RecordingsConfig(_Section):
    enabled: bool = True
    keep_days: Annotated[int, Field(ge=1, le=36_500)] = 3650
    # How often the retention sweep runs.
    sweep_every_s: Annotated[float, Field(ge=10, le=86_400)] = 3600.0
    # A sweep that would delete more than this share of the recordings
    # refuses without `--force` (a clock set years ahead deletes everything).
    max_delete_share: Annotated[float, Field(gt=0, le=1)] = 0.2


class WebConfig(_Section):
    listen: HostPort = HostPort("127.0.0.1", 8112)
    enabled: bool = True
    session_hours: Annotated[float, Field(gt=0, le=24 * 30)] = 12.0
    login_fail_limit: Annotated[int, Field(ge=1, le=100)] = 5
    login_lockout_s: Annotated[float, Field(ge=1, le=86_400)] = 300.0
    # Failures from one address (a control room behind one NAT) before it is locked.
    login_address_fail_limit: Annotated[int, Field(ge=1, le=1000)] = 20
    wait_alert_s: Annotated[float, Field(ge=1, le=3600)] = 20.0
    city_areas: str = "config/ambon-areas.toml"
    # --- hardening (issue 11): TLS, proxies, caps, metrics token.
    # PEM files; both set → the console is served over HTTPS.
    tls_certificate: str = ""
    tls_key: str = ""
    # Reverse proxies (CIDRs) whose X-Forwarded-For/-Proto are believed.
    trusted_proxies: list[str] = Field(default_factory=list)
    # "sha256$<hex>" (callcenter112 new-api-token); set → /metrics needs it.
    metrics_token: str = ""
    max_sessions_per_account: Annotated[int, Field(ge=1, le=1000)] = 5
    max_streams_per_account: Annotated[int, Field(ge=1, le=1000)] = 8

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies(cls, v: list[str]) -> list[str]:
        return _cidr_list(v)

    @field_validator("metrics_token")
    @classmethod
    def _metrics_token(cls, v: str) -> str:
        if v and not re.fullmatch(r"sha256\$[0-9a-f]{64}", v):
            raise ValueError("must be 'sha256$<64 hex>' from `callcenter112 new-api-token`")
        return v

    @model_validator(mode="after")
    def _tls_pair(self) -> WebConfig:
        if bool(self.tls_certificate) != bool(self.tls_key):
            raise ValueError("set both tls_certificate and tls_key, or neither")
        return self

    @field_validator("listen", mode="before")
    @classmethod
    def _listen(cls, v: object) -> HostPort:
        hp = _parse_host_port(v, default_port=8112)
        if not _ip_literal(hp.host):
            raise ValueError(f"{hp.host!r} is not an IP address to listen on")
        return hp


CATEGORY_ID = r"^[a-z][a-z0-9_]{0,31}$"
UNKNOWN = "unknown"


class CategoryConfig(_Section):
    id: Annotated[str, Field(pattern=CATEGORY_ID)]
    label: Annotated[str, Field(min_length=1, max_length=64)]  # Bahasa Indonesia
    label_en: Annotated[str, Field(max_length=64)] = ""
    priority: Annotated[int, Field(ge=0, le=100)] = 2
    ivr_key: str = ""

    @field_validator("ivr_key")
    @classmethod
    def _one_key(cls, v: str) -> str:
        if v and (len(v) != 1 or v not in "0123456789*#"):
            raise ValueError(f"{v!r} is not one DTMF key (0-9, *, #)")
        return v


def _cat(id: str, label: str, label_en: str, priority: int, ivr_key: str = "") -> CategoryConfig:
    return CategoryConfig(id=id, label=label, label_en=label_en, priority=priority, ivr_key=ivr_key)


# Kota Ambon's first month (issue 12): the four menu keys stay as before.
_AMBON_CATEGORIES = (
    _cat("medical", "Medis", "Medical", 1, "1"),
    _cat("fire", "Kebakaran", "Fire", 1, "2"),
    _cat("disaster", "Bencana", "Disaster", 1, "3"),
    _cat("police", "Polisi", "Police", 2, "4"),
    _cat("security", "Keamanan & ketertiban", "Security & public order", 2),
    _cat("hearse", "Mobil jenazah", "Hearse", 3),
    _cat("utility", "Listrik (PLN)", "Utility (PLN)", 3),
    _cat("other", "Lainnya", "Other", 3),
)
_UNKNOWN_CATEGORY = _cat(UNKNOWN, "Belum diketahui", "Unknown", 3)


class IvrConfig(_Section):
    language: Literal["id", "en"] = "id"
    # key → category id. Not set in the file: taken from [[category]].ivr_key
    # (see ``_resolve_categories``); set here, it is used as is.
    digits: dict[str, str] = Field(
        default_factory=lambda: {c.ivr_key: c.id for c in _AMBON_CATEGORIES if c.ivr_key}
    )
    english_key: str = "9"
    operator_key: str = "0"
    # Seconds to wait for a digit after the menu finishes playing.
    input_timeout_s: Annotated[float, Field(ge=1, le=60)] = 5.0
    # How many times the menu is played before the caller goes to `unknown`.
    menu_tries: Annotated[int, Field(ge=1, le=5)] = 2
    prompts: str = "sounds"
    # Silent callers (issue 12): no key and no speech this long after the IVR
    # starts → "if you cannot speak, press <silent_key>".
    silent_after_s: Annotated[float, Field(ge=3, le=120)] = 12.0
    silent_key: str = "5"

    @model_validator(mode="after")
    def _keys(self) -> IvrConfig:
        seen: dict[str, str] = {}
        for key, what in [(k, f"digits.{k}") for k in self.digits] + [
            (self.english_key, "english_key"),
            (self.operator_key, "operator_key"),
            (self.silent_key, "silent_key"),
        ]:
            if len(key) != 1 or key not in "0123456789*#":
                raise ValueError(f"{what}: {key!r} is not one DTMF key (0-9, *, #)")
            if key in seen:
                raise ValueError(f"{what}: key {key!r} is already used by {seen[key]}")
            seen[key] = what
        return self


class QueueConfig(_Section):
    # Lower number is served first; arrival time breaks ties. Category ids
    # named here override [[category]].priority (see ``_resolve_categories``).
    priority: dict[str, Annotated[int, Field(ge=0, le=100)]] = Field(
        default_factory=lambda: {c.id: c.priority for c in (*_AMBON_CATEGORIES, _UNKNOWN_CATEGORY)}
    )
    ring_timeout_s: Annotated[float, Field(ge=3, le=120)] = 15.0
    max_missed: Annotated[int, Field(ge=1, le=100)] = 2
    wrapup_s: Annotated[float, Field(ge=0, le=600)] = 10.0
    position_every_s: Annotated[float, Field(ge=5, le=600)] = 30.0
    overflow_after_s: Annotated[float, Field(ge=0, le=3600)] = 0.0
    overflow_to: str = ""
    # An operator whose phone declines an offer (busy, do-not-disturb) is
    # skipped this long, so an instant 486 cannot make the queue spin.
    decline_backoff_s: Annotated[float, Field(ge=0, le=600)] = 5.0
    # Operator leg considered dead after this long without RTP while talking.
    media_timeout_s: Annotated[float, Field(ge=2, le=600)] = 30.0
    # A watch-listed caller waits at most this much longer than a fresh caller
    # arriving at the same moment would (issue 12): a person always answers.
    watch_list_max_extra_wait_s: Annotated[float, Field(ge=0, le=300)] = 30.0


class TrunkConfig(_Section):
    name: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]
    allow: list[str]
    numbers: list[str] = Field(default_factory=lambda: ["112"])
    proxy: HostPort | None = None
    # "tls": calls out go over TLS to `proxy` (port 5061 unless given), its
    # certificate checked against `proxy`'s host and `sip.tls_ca`.
    transport: Literal["udp", "tcp", "tls"] = "udp"
    # Caller number used on calls out (agencies, callbacks).
    caller_id: str = "112"
    # Digest credentials for calls out, when the carrier challenges them (401/407).
    auth_user: str = ""
    auth_password: str = ""
    # Issue 16: OPTIONS to `proxy` every qualify_s seconds (0 = off); a trunk
    # that misses two in a row raises the trunk alarm (trunk_health.py).
    qualify_s: Annotated[float, Field(ge=0, le=3600)] = 30.0

    @field_validator("allow")
    @classmethod
    def _cidrs(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("at least one source address or network is needed")
        return _cidr_list(v)

    @field_validator("numbers")
    @classmethod
    def _numbers(cls, v: list[str]) -> list[str]:
        for i, n in enumerate(v):
            if not n or any(c.isspace() or c in "<>;@" for c in n):
                raise ValueError(f"[{i}] {n!r} is not a dialled number")
        return v

    @model_validator(mode="before")
    @classmethod
    def _tls_proxy_port(cls, data: object) -> object:
        # RFC 3263 §4.2: a TLS proxy without a port is on 5061, not 5060.
        if isinstance(data, dict) and data.get("transport") == "tls":
            v = data.get("proxy")
            if isinstance(v, str) and v.strip():
                try:
                    return {**data, "proxy": _parse_host_port(v, default_port=5061)}
                except ValueError:
                    pass  # reported under trunk[i].proxy by _proxy
        return data

    @field_validator("proxy", mode="before")
    @classmethod
    def _proxy(cls, v: object) -> HostPort | None:
        if v is None or v == "":
            return None
        return _parse_host_port(v, default_port=5060)

    @property
    def networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        return tuple(ipaddress.ip_network(a, strict=False) for a in self.allow)


class OperatorConfig(_Section):
    user: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]
    # Plain text: loopback only (the quick start). Elsewhere the SIP secret
    # is stored as HA1 digests (`callcenter112 hash-password --sip USER`),
    # and the web console password separately as `web_password_hash`.
    password: str = ""
    ha1_md5: Annotated[str, Field(pattern=r"^([0-9a-f]{32})?$")] = ""
    ha1_sha256: Annotated[str, Field(pattern=r"^([0-9a-f]{64})?$")] = ""
    web_password_hash: str = ""
    name: str = ""
    # Category ids; not set: every configured category (see ``_resolve_categories``).
    skills: list[str] = Field(default_factory=list)
    # False for a phone that registers but is never offered queue calls: a
    # supervisor's softphone used to listen, whisper and barge.
    takes_calls: bool = True
    # Issue 11: SDES-keyed SRTP on this operator's legs (callflow/guards.py):
    # "optional" offers a key on RTP/AVP, "mandatory" offers RTP/SAVP only.
    srtp: Literal["off", "optional", "mandatory"] = "off"

    @model_validator(mode="after")
    def _sip_secret(self) -> OperatorConfig:
        if self.password and (self.ha1_md5 or self.ha1_sha256):
            raise ValueError("set password or ha1_md5/ha1_sha256, not both")
        if not self.password and not (self.ha1_md5 or self.ha1_sha256):
            raise ValueError("set ha1_md5 and ha1_sha256 (or password on loopback)")
        if self.password and len(self.password) < 4:
            raise ValueError("password needs at least 4 characters")
        if self.web_password_hash and not self.web_password_hash.startswith("scrypt$"):
            raise ValueError("web_password_hash must come from `callcenter112 hash-password`")
        return self


class UserConfig(_Section):
    """A web console account (operators sign in with their SIP user instead)."""

    name: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]
    role: Literal["supervisor", "auditor", "admin", "telecom"]
    # "scrypt$N$r$p$salt_hex$hash_hex" as printed by `callcenter112 hash-password`,
    # or a plain `password` for demos (hashed in memory at load).
    password_hash: str = ""
    password: str = ""
    # A supervisor's softphone (registered like an operator) for listen/whisper/barge.
    sip_user: str = ""

    @model_validator(mode="after")
    def _one_secret(self) -> UserConfig:
        if bool(self.password_hash) == bool(self.password):
            raise ValueError("set exactly one of password_hash or password")
        if self.password_hash and not self.password_hash.startswith("scrypt$"):
            raise ValueError("password_hash must come from `callcenter112 hash-password`")
        return self


class ApiTokenConfig(_Section):
    """A bearer token for CAD/agency systems and national reporting."""

    name: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]
    role: Literal["operator", "supervisor", "auditor", "admin", "telecom"]
    # "sha256$<64 hex>" as printed by `callcenter112 new-api-token`.
    token_hash: Annotated[str, Field(pattern=r"^sha256\$[0-9a-f]{64}$")]


class AgencyConfig(_Section):
    name: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]
    number: Annotated[str, Field(min_length=1, max_length=32)]
    trunk: str
    label: str = ""
    ring_timeout_s: Annotated[float, Field(ge=3, le=120)] = 30.0


# --- location (issue 13): the AML receiver and the map ---------------------------


class AmlConfig(_Section):
    """`[aml]`: Advanced Mobile Location receiver (POST /api/v1/aml, /api/v1/aml/sms)."""

    # HMAC-SHA1 key shared with the ELS/AML provider; empty: messages are not signed.
    key: str = ""
    # Source addresses/networks that may post; empty: any (then set `key`).
    allow: list[str] = Field(default_factory=list)
    # A fix belongs to a caller's call or incident this many seconds around it.
    match_window_s: Annotated[float, Field(ge=10, le=86_400)] = 600.0
    # Region for reading national numbers (ISO 3166-1 alpha-2): 0812… → +62812….
    region: Annotated[str, Field(pattern=r"^[A-Z]{2}$")] = "ID"

    @field_validator("allow")
    @classmethod
    def _allow(cls, v: list[str]) -> list[str]:
        return _cidr_list(v)

    @property
    def networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        return tuple(ipaddress.ip_network(a, strict=False) for a in self.allow)


class LocationConfig(_Section):
    """`[location]`: dereferencing ``Geolocation: <https:…>`` (RFC 6753) on a call."""

    # PEM file of CA certificates trusted for the carrier's LIS, in addition to
    # the system's (a carrier with its own CA; tests with a local one). Empty: system only.
    ca_file: str = ""


class MapConfig(_Section):
    """`[map]`: the console's map (Leaflet): tiles, attribution, shipped vector data."""

    # XYZ tile URL; empty: no tiles, only the shipped vector data is drawn.
    tile_url: str = "https://tile.openstreetmap.org/{z}/{x}/{y}.png"
    attribution: str = "© OpenStreetMap contributors"
    # GeoJSON of the city's kecamatan/kelurahan (outlines or reference points).
    areas: str = "config/ambon-map.geojson"

    @field_validator("tile_url")
    @classmethod
    def _tile_url(cls, v: str) -> str:
        if not v:
            return v
        if not v.startswith(("https://", "http://")) or any(c.isspace() for c in v):
            raise ValueError("must be an http(s):// URL (or empty for no tiles)")
        missing = [p for p in ("{z}", "{x}", "{y}") if p not in v]
        if missing:
            raise ValueError(f"must contain {', '.join(missing)}")
        return v


# --- categories, dispositions and caller rules (issue 12) -------------------------------
#
# One rule for the category keys, also in docs/configuration.md:
# * ``[[category]]`` lists the categories (id, label, label_en, priority,
#   ivr_key); not given, the shipped Ambon set. ``unknown`` (no choice) is
#   always there; list it only to change its label or priority.
# * IVR keys: ``ivr.digits`` if the file sets it (used as is), else every
#   ``[[category]].ivr_key``. Setting both is an error: one home per key.
# * Priority: ``queue.priority.<id>`` if set, else ``[[category]].priority``.
# * ``[[operator]].skills`` not set: every category.

DispositionName = Literal[
    "genuine", "ghost", "prank", "information", "wrong_number", "test", "duplicate"
]
_DEFAULT_DISPOSITION_KEYS: dict[DispositionName, str] = {
    "genuine": "g",
    "ghost": "s",
    "prank": "p",
    "information": "i",
    "wrong_number": "w",
    "test": "t",
    "duplicate": "d",
}


class DispositionsConfig(_Section):
    """``[dispositions]``: the one console key of each SOP disposition."""

    keys: dict[DispositionName, str] = Field(
        default_factory=lambda: dict(_DEFAULT_DISPOSITION_KEYS)
    )

    @field_validator("keys")
    @classmethod
    def _keys(cls, v: dict[DispositionName, str]) -> dict[DispositionName, str]:
        merged = {**_DEFAULT_DISPOSITION_KEYS, **v}
        seen: dict[str, str] = {}
        for name, key in merged.items():
            if len(key) != 1 or not (key.isascii() and key.isalnum() and key == key.lower()):
                raise ValueError(f"{name}: {key!r} is not one lowercase letter or digit")
            if key in seen:
                raise ValueError(f"{name}: key {key!r} is already used by {seen[key]}")
            seen[key] = name
        return merged


class CallersConfig(_Section):
    """``[callers]``: the repeat-caller and watch-list suggestion rules."""

    # This many calls (this one included) from one number within 10 min → repeat_caller.
    repeat_calls_10min: Annotated[int, Field(ge=2, le=100)] = 3
    # This many prank dispositions within 24 h → suggest the watch list to a supervisor.
    suggest_after_pranks_24h: Annotated[int, Field(ge=1, le=100)] = 3


def _category_checks(cfg: Config) -> list[ConfigProblem]:
    problems: list[ConfigProblem] = []
    seen: dict[str, int] = {}
    for i, c in enumerate(cfg.category):
        if c.id in seen:
            problems.append(
                ConfigProblem(
                    f"category[{i}].id",
                    f"duplicate category {c.id!r} (first at category[{seen[c.id]}])",
                )
            )
        seen.setdefault(c.id, i)
        if c.id == UNKNOWN and c.ivr_key:
            problems.append(
                ConfigProblem(f"category[{i}].ivr_key", "'unknown' is no choice: it has no key")
            )
    ids = set(seen) | {UNKNOWN}
    explicit_digits = "digits" in cfg.ivr.model_fields_set
    keyed = [(i, c) for i, c in enumerate(cfg.category) if c.ivr_key]
    # Both set and saying the same (a document the telecom page wrote back,
    # which names every effective key) is one rule, not two.
    agree = dict(cfg.ivr.digits) == {c.ivr_key: c.id for _, c in keyed}
    if explicit_digits and keyed and not agree:
        problems.append(
            ConfigProblem(
                f"category[{keyed[0][0]}].ivr_key",
                "IVR keys are set in ivr.digits too: set them in one place",
            )
        )
    digits = cfg.ivr.digits if explicit_digits else {c.ivr_key: c.id for _, c in keyed}
    for key, cat in digits.items():
        where = f"ivr.digits.{key}" if explicit_digits else f"category {cat!r} ivr_key"
        if cat == UNKNOWN:
            problems.append(ConfigProblem(where, "a menu key cannot choose 'unknown'"))
        elif cat not in ids:
            problems.append(ConfigProblem(where, f"no [[category]] {cat!r}"))
    others = {cfg.ivr.english_key: "ivr.english_key", cfg.ivr.operator_key: "ivr.operator_key"}
    others[cfg.ivr.silent_key] = "ivr.silent_key"
    taken: dict[str, str] = {}
    for i, c in keyed:
        if explicit_digits:
            break  # IvrConfig has checked ivr.digits itself
        if c.ivr_key in others:
            problems.append(
                ConfigProblem(
                    "ivr",
                    f"{others[c.ivr_key]}: key {c.ivr_key!r} is already used by "
                    f"category[{i}].ivr_key ({c.id})",
                )
            )
        elif c.ivr_key in taken:
            problems.append(
                ConfigProblem(
                    f"category[{i}].ivr_key",
                    f"key {c.ivr_key!r} is already used by category {taken[c.ivr_key]!r}",
                )
            )
        taken.setdefault(c.ivr_key, c.id)
    for cat in cfg.queue.priority if "priority" in cfg.queue.model_fields_set else ():
        if cat not in ids:
            problems.append(ConfigProblem(f"queue.priority.{cat}", f"no [[category]] {cat!r}"))
    for i, op in enumerate(cfg.operator):
        for j, skill in enumerate(op.skills):
            if skill not in ids or skill == UNKNOWN:
                problems.append(
                    ConfigProblem(f"operator[{i}].skills[{j}]", f"no [[category]] {skill!r}")
                )
    return problems


def _raw_skills(data: dict[str, Any]) -> list[ConfigProblem]:
    """Operator skills that name no category, found on the raw tables so one
    run names them alongside type errors elsewhere."""
    rows = data.get("category")
    ids = {c.id for c in _AMBON_CATEGORIES}
    if isinstance(rows, list):
        ids = {r["id"] for r in rows if isinstance(r, dict) and isinstance(r.get("id"), str)}
    ops = data.get("operator")
    problems: list[ConfigProblem] = []
    for i, op in enumerate(ops if isinstance(ops, list) else []):
        skills = op.get("skills") if isinstance(op, dict) else None
        for j, skill in enumerate(skills if isinstance(skills, list) else []):
            if isinstance(skill, str) and (skill not in ids or skill == UNKNOWN):
                problems.append(
                    ConfigProblem(f"operator[{i}].skills[{j}]", f"no [[category]] {skill!r}")
                )
    return problems


def _resolve_categories(cfg: Config) -> Config:
    """Write the effective ``ivr.digits``, ``queue.priority`` and operator skills
    back into the config, so every reader sees one answer (rule above)."""
    cats = cfg.categories
    update: dict[str, object] = {}
    if "digits" not in cfg.ivr.model_fields_set:
        digits = {c.ivr_key: c.id for c in cats if c.ivr_key}
        update["ivr"] = cfg.ivr.model_copy(update={"digits": digits})
    explicit = cfg.queue.priority if "priority" in cfg.queue.model_fields_set else {}
    priority = {c.id: c.priority for c in cats} | dict(explicit)
    update["queue"] = cfg.queue.model_copy(update={"priority": priority})
    every = [c.id for c in cats if c.id != UNKNOWN]
    update["operator"] = [
        op if "skills" in op.model_fields_set else op.model_copy(update={"skills": every})
        for op in cfg.operator
    ]
    return cfg.model_copy(update=update)


class Config(_Section):
    centre: CentreConfig = CentreConfig()
    sip: SipConfig = SipConfig()
    rtp: RtpConfig = RtpConfig()
    storage: StorageConfig = StorageConfig()
    control: ControlConfig = ControlConfig()
    cluster: ClusterConfig = ClusterConfig()
    recordings: RecordingsConfig = RecordingsConfig()
    web: WebConfig = WebConfig()
    ivr: IvrConfig = IvrConfig()
    queue: QueueConfig = QueueConfig()
    trunk: list[TrunkConfig] = Field(default_factory=list)
    operator: list[OperatorConfig] = Field(default_factory=list)
    user: list[UserConfig] = Field(default_factory=list)
    agency: list[AgencyConfig] = Field(default_factory=list)
    api_token: list[ApiTokenConfig] = Field(default_factory=list)
    aml: AmlConfig = AmlConfig()
    map: MapConfig = MapConfig()
    location: LocationConfig = LocationConfig()  # issue 13
    category: list[CategoryConfig] = Field(default_factory=lambda: list(_AMBON_CATEGORIES))
    dispositions: DispositionsConfig = DispositionsConfig()
    callers: CallersConfig = CallersConfig()

    # Resolved against the config file's directory's parent when relative
    # (set by load_config); not a TOML key.
    base_dir: Path = Field(default=Path("."), exclude=True)

    def path(self, value: str) -> Path:
        p = Path(value)
        return p if p.is_absolute() else self.base_dir / p

    def trunk_named(self, name: str) -> TrunkConfig | None:
        return next((t for t in self.trunk if t.name == name), None)

    def agency_named(self, name_or_number: str) -> AgencyConfig | None:
        for a in self.agency:
            if name_or_number in (a.name, a.number):
                return a
        return None

    def operator_named(self, user: str) -> OperatorConfig | None:
        return next((o for o in self.operator if o.user == user), None)

    @property
    def categories(self) -> tuple[CategoryConfig, ...]:
        """Every category in file order, ``unknown`` last unless listed."""
        cats = tuple(self.category)
        if all(c.id != UNKNOWN for c in cats):
            cats += (_UNKNOWN_CATEGORY,)
        return cats

    @property
    def category_ids(self) -> tuple[str, ...]:
        return tuple(c.id for c in self.categories)


def _cross_checks(cfg: Config) -> list[ConfigProblem]:
    problems: list[ConfigProblem] = []

    def dupes(section: str, key: str, values: list[str]) -> None:
        seen: dict[str, int] = {}
        for i, v in enumerate(values):
            if v in seen:
                problems.append(
                    ConfigProblem(
                        f"{section}[{i}].{key}",
                        f"duplicate {section} {v!r} (first at {section}[{seen[v]}])",
                    )
                )
            else:
                seen[v] = i

    dupes("trunk", "name", [t.name for t in cfg.trunk])
    dupes("operator", "user", [o.user for o in cfg.operator])
    dupes("agency", "name", [a.name for a in cfg.agency])
    dupes("user", "name", [u.name for u in cfg.user])
    dupes("api_token", "name", [t.name for t in cfg.api_token])
    op_users = {o.user for o in cfg.operator}
    for i, u in enumerate(cfg.user):
        if u.name in op_users:
            problems.append(
                ConfigProblem(
                    f"user[{i}].name",
                    f"{u.name!r} is an operator; operators sign in with their SIP user",
                )
            )
        if u.sip_user and u.sip_user not in op_users:
            problems.append(
                ConfigProblem(
                    f"user[{i}].sip_user",
                    f"{u.sip_user!r} is not an [[operator]] user",
                )
            )

    numbers: dict[str, str] = {}
    for i, t in enumerate(cfg.trunk):
        for j, n in enumerate(t.numbers):
            if n in numbers:
                problems.append(
                    ConfigProblem(
                        f"trunk[{i}].numbers[{j}]",
                        f"number {n!r} is already served by trunk {numbers[n]!r}",
                    )
                )
            numbers.setdefault(n, t.name)

    trunk_names = {t.name for t in cfg.trunk}
    for i, a in enumerate(cfg.agency):
        if a.trunk not in trunk_names:
            problems.append(ConfigProblem(f"agency[{i}].trunk", f"no [[trunk]] named {a.trunk!r}"))
        elif cfg.trunk_named(a.trunk) and cfg.trunk_named(a.trunk).proxy is None:  # type: ignore[union-attr]
            problems.append(
                ConfigProblem(
                    f"agency[{i}].trunk",
                    f"trunk {a.trunk!r} has no proxy to dial {a.number!r} through",
                )
            )
    dupes("agency", "number", [a.number for a in cfg.agency])
    for i, t in enumerate(cfg.trunk):
        if t.transport == "tls" and cfg.sip.tls_listen is None:
            # The far end sends its in-dialog requests (BYE) to our sips:
            # Contact, which must be a TLS listener (sip/peer.contact_uri).
            problems.append(
                ConfigProblem(
                    f"trunk[{i}].transport", '"tls" needs sip.tls_listen (our sips: Contact)'
                )
            )

    if cfg.queue.overflow_after_s > 0:
        if not cfg.queue.overflow_to:
            problems.append(
                ConfigProblem("queue.overflow_to", "overflow_after_s is set but no overflow_to")
            )
        elif cfg.agency_named(cfg.queue.overflow_to) is None:
            problems.append(
                ConfigProblem("queue.overflow_to", f"no [[agency]] named {cfg.queue.overflow_to!r}")
            )

    lo, hi = cfg.rtp.port_range
    for key, hp in (("sip.listen", cfg.sip.listen), ("web.listen", cfg.web.listen)):
        if lo <= hp.port <= hi:
            problems.append(
                ConfigProblem("rtp.ports", f"range {cfg.rtp.ports} overlaps {key} port {hp.port}")
            )
    if cfg.rtp.preopen > (hi - lo + 1) // 2:
        problems.append(
            ConfigProblem(
                "rtp.preopen",
                f"{cfg.rtp.preopen} pairs do not fit in range {cfg.rtp.ports}",
            )
        )
    problems += _hardening_checks(cfg)
    if (
        cfg.web.enabled
        and cfg.sip.listen.port == cfg.web.listen.port
        and cfg.sip.listen.host in (cfg.web.listen.host, "0.0.0.0", "::")
    ):
        problems.append(ConfigProblem("web.listen", "same port as sip.listen"))
    if cfg.cluster.enabled and not cfg.cluster.leader_dsn(cfg.storage).startswith(
        ("postgresql://", "postgres://")
    ):
        problems.append(
            ConfigProblem(
                "cluster.leader_database",
                "a cluster needs a postgresql:// database for its leader lock"
                " (set it, or make [storage] database postgresql://)",
            )
        )
    return problems


# --- hardening (issue 11) ------------------------------------------------------------------

# Every RTP pair a call can hold at once: the caller's, the operator's, and an
# agency leg during a warm hand-off (caller + operator + agency).
RTP_PAIRS_PER_CALL = 3
# The secrets of the shipped config/callcenter112.toml: fine on loopback, a
# published password anywhere else.
DEMO_SECRETS = frozenset(
    {"ambon-op1", "ambon-op2", "ambon-supervisor", "ambon-auditor", "ambon-admin"}
)
_HA1_KEY = {"MD5": "ha1_md5", "SHA-256": "ha1_sha256"}


def _hardening_checks(cfg: Config) -> list[ConfigProblem]:
    problems: list[ConfigProblem] = []
    for i, op in enumerate(cfg.operator):
        if op.password:
            continue
        for alg in cfg.sip.digest_algorithms:
            if not getattr(op, _HA1_KEY[alg]):
                problems.append(
                    ConfigProblem(
                        f"operator[{i}].{_HA1_KEY[alg]}",
                        f"sip.digest_algorithms offers {alg}; `callcenter112 hash-password "
                        f"--sip {op.user}` prints it",
                    )
                )
    return problems


def is_loopback_listen(hp: HostPort) -> bool:
    """Whether only this machine can reach `hp` (127.0.0.0/8, ::1)."""
    return ipaddress.ip_address(hp.host).is_loopback


def exposure_problems(cfg: Config) -> list[ConfigProblem]:
    """Secrets that must not leave loopback: shipped demo passwords and
    plain-text passwords, when SIP or the web console listens elsewhere.

    `check-config` and `serve` both refuse on these; `parse_config` does not,
    so a unit test's in-memory config with a plain password still loads."""
    exposed = [
        f"{key} {hp}"
        for key, hp in (("sip.listen", cfg.sip.listen), ("web.listen", cfg.web.listen))
        if not is_loopback_listen(hp) and (key == "sip.listen" or cfg.web.enabled)
    ]
    if not exposed:
        return []
    where = " and ".join(exposed)
    problems: list[ConfigProblem] = []
    for i, op in enumerate(cfg.operator):
        if op.password in DEMO_SECRETS:
            problems.append(
                ConfigProblem(f"operator[{i}].password", f"shipped demo password with {where}")
            )
        elif op.password:
            problems.append(
                ConfigProblem(
                    f"operator[{i}].password",
                    f"plain-text SIP password with {where}; use ha1_md5/ha1_sha256 and "
                    "web_password_hash (`callcenter112 hash-password --sip USER`)",
                )
            )
    for i, u in enumerate(cfg.user):
        if u.password in DEMO_SECRETS:
            problems.append(
                ConfigProblem(f"user[{i}].password", f"shipped demo password with {where}")
            )
        elif u.password:
            problems.append(
                ConfigProblem(
                    f"user[{i}].password",
                    f"plain-text password with {where}; use password_hash "
                    "(`callcenter112 hash-password`)",
                )
            )
    for i, t in enumerate(cfg.trunk):
        if t.auth_password in DEMO_SECRETS:
            problems.append(
                ConfigProblem(f"trunk[{i}].auth_password", f"shipped demo password with {where}")
            )
    return problems


def _rtp_budget(cfg: Config) -> tuple[int, int, int]:
    """(pairs in the range, operators taking calls, pairs sip.max_calls needs)."""
    lo, hi = cfg.rtp.port_range
    pairs = (hi - lo + 1) // 2
    takers = sum(1 for o in cfg.operator if o.takes_calls)
    # A bridged call holds a caller pair and an operator pair, plus an agency
    # pair while handed off; a waiting caller holds one pair.
    needed = cfg.sip.max_calls + min(takers, cfg.sip.max_calls) * (RTP_PAIRS_PER_CALL - 1)
    return pairs, takers, needed


def config_warnings(cfg: Config) -> list[ConfigProblem]:
    """What check-config and serve report but accept: plain-text passwords on
    loopback, and an RTP range that caps calls below sip.max_calls."""
    pairs, takers, needed = _rtp_budget(cfg)
    out = []
    if pairs < takers * RTP_PAIRS_PER_CALL:
        out.append(
            ConfigProblem(
                "rtp.ports",
                f"range {cfg.rtp.ports} holds {pairs} RTP pairs; {takers} operator(s) "
                f"talking at once need {takers * RTP_PAIRS_PER_CALL} (caller, operator "
                "and agency pair each): some operators will sit idle while callers wait",
            )
        )
    elif pairs < needed:
        out.append(
            ConfigProblem(
                "rtp.ports",
                f"range {cfg.rtp.ports} holds {pairs} RTP pairs; sip.max_calls "
                f"{cfg.sip.max_calls} with {takers} operator(s) needs {needed}, so fewer "
                "calls will be admitted (widen the range or lower sip.max_calls)",
            )
        )
    out += [
        ConfigProblem(f"operator[{i}].password", "plain text: accepted on loopback only")
        for i, op in enumerate(cfg.operator)
        if op.password
    ]
    out += [
        ConfigProblem(f"user[{i}].password", "plain text: accepted on loopback only")
        for i, u in enumerate(cfg.user)
        if u.password
    ]
    return out


def _raw_duplicates(data: dict[str, Any]) -> list[ConfigProblem]:
    problems: list[ConfigProblem] = []
    for section, key in (
        ("trunk", "name"),
        ("operator", "user"),
        ("agency", "name"),
        ("user", "name"),
    ):
        rows = data.get(section)
        if not isinstance(rows, list):
            continue
        first: dict[str, int] = {}
        for i, row in enumerate(rows):
            value = row.get(key) if isinstance(row, dict) else None
            if not isinstance(value, str):
                continue
            if value in first:
                problems.append(
                    ConfigProblem(
                        f"{section}[{i}].{key}",
                        f"duplicate {section} {value!r} (first at {section}[{first[value]}])",
                    )
                )
            else:
                first[value] = i
    return problems


def _loc_to_path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.startswith(("function-", "literal[")) or part in {"function-after"}:
            continue
        else:
            out += f".{part}" if out else part
    return out


def _reason(err: dict[str, Any]) -> str:
    msg = str(err.get("msg", "invalid"))
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            msg = msg[len(prefix) :]
    kind = err.get("type", "")
    if kind == "extra_forbidden":
        return "unknown key (check the spelling; see docs/configuration.md)"
    if kind == "missing":
        return "required key is missing"
    inp = err.get("input")
    if kind in {
        "int_type",
        "int_parsing",
        "float_type",
        "float_parsing",
        "string_type",
        "bool_type",
        "list_type",
        "dict_type",
        "literal_error",
        "model_type",
    }:
        return f"{msg} (got {inp!r})"
    return msg


def parse_config(
    data: dict[str, Any], *, source: str = "<config>", base_dir: Path | None = None
) -> Config:
    """Validate an already-parsed TOML document."""
    try:
        cfg = Config.model_validate(data)
    except ValidationError as exc:
        problems = [
            ConfigProblem(_loc_to_path(tuple(e["loc"])), _reason(dict(e))) for e in exc.errors()
        ]
        # Duplicates are found on the raw tables too, so one run names them
        # alongside the type errors.
        seen = {str(p) for p in problems}
        problems += [p for p in _raw_duplicates(data) if str(p) not in seen]
        problems += [p for p in _raw_skills(data) if str(p) not in seen]
        raise ConfigError(source, problems) from None
    problems = _cross_checks(cfg) + _category_checks(cfg)
    if problems:
        raise ConfigError(source, problems)
    cfg = _resolve_categories(cfg)
    if base_dir is not None:
        cfg = cfg.model_copy(update={"base_dir": base_dir})
    return cfg


def load_config(path: str | Path) -> Config:
    """Read, parse and validate one TOML file; relative paths in it are taken
    from the directory above `config/` (the checkout), or the file's own
    directory when it does not live in a `config/` folder."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise ConfigError(str(p), [ConfigProblem("", f"cannot read: {exc.strerror}")]) from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(str(p), [ConfigProblem("", "not UTF-8 text")]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(p), [ConfigProblem("", f"TOML syntax: {exc}")]) from None
    parent = p.resolve().parent
    base = parent.parent if parent.name == "config" else parent
    return parse_config(data, source=str(p), base_dir=base)
