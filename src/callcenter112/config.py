"""Load and validate the one TOML configuration file.

Telecom staff edit one file; a mistake in it must be named precisely before the
server runs. `load_config()` returns a frozen `Config` or raises `ConfigError`
carrying every problem as ``(key path, reason)`` — e.g. ``trunk[0].allow[1]:
'10.0.0.0/33' is not an IP network`` — so `check-config` can list them all at
once instead of one per run.
"""

from __future__ import annotations

import ipaddress
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

__all__ = [
    "CATEGORIES",
    "DISPOSITIONS",
    "ROLES",
    "AgencyConfig",
    "ApiTokenConfig",
    "CentreConfig",
    "Config",
    "ConfigError",
    "ConfigProblem",
    "HostPort",
    "OperatorConfig",
    "TrunkConfig",
    "UserConfig",
    "load_config",
    "parse_config",
]

CATEGORIES = ("medical", "fire", "disaster", "police", "unknown")
SKILLS = ("medical", "fire", "disaster", "police")
DISPOSITIONS = ("genuine", "prank", "silent", "test", "wrong_number", "duplicate")
ROLES = ("operator", "supervisor", "auditor", "admin")


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
    if not port_text.isdigit():
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
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
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


class RecordingsConfig(_Section):
    enabled: bool = True
    keep_days: Annotated[int, Field(ge=1, le=36_500)] = 3650
    # How often the retention sweep runs.
    sweep_every_s: Annotated[float, Field(ge=10, le=86_400)] = 3600.0


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

    @field_validator("listen", mode="before")
    @classmethod
    def _listen(cls, v: object) -> HostPort:
        hp = _parse_host_port(v, default_port=8112)
        if not _ip_literal(hp.host):
            raise ValueError(f"{hp.host!r} is not an IP address to listen on")
        return hp


Category = Literal["medical", "fire", "disaster", "police", "unknown"]
Skill = Literal["medical", "fire", "disaster", "police"]


_DEFAULT_DIGITS: dict[str, Skill] = {"1": "medical", "2": "fire", "3": "disaster", "4": "police"}
_DEFAULT_PRIORITY: dict[Category, int] = {
    "medical": 1,
    "fire": 1,
    "disaster": 1,
    "police": 2,
    "unknown": 3,
}
_ALL_SKILLS: list[Skill] = ["medical", "fire", "disaster", "police"]


class IvrConfig(_Section):
    language: Literal["id", "en"] = "id"
    digits: dict[str, Skill] = Field(default_factory=lambda: dict(_DEFAULT_DIGITS))
    english_key: str = "9"
    operator_key: str = "0"
    # Seconds to wait for a digit after the menu finishes playing.
    input_timeout_s: Annotated[float, Field(ge=1, le=60)] = 5.0
    # How many times the menu is played before the caller goes to `unknown`.
    menu_tries: Annotated[int, Field(ge=1, le=5)] = 2
    prompts: str = "sounds"

    @model_validator(mode="after")
    def _keys(self) -> IvrConfig:
        seen: dict[str, str] = {}
        for key, what in [(k, f"digits.{k}") for k in self.digits] + [
            (self.english_key, "english_key"),
            (self.operator_key, "operator_key"),
        ]:
            if len(key) != 1 or key not in "0123456789*#":
                raise ValueError(f"{what}: {key!r} is not one DTMF key (0-9, *, #)")
            if key in seen:
                raise ValueError(f"{what}: key {key!r} is already used by {seen[key]}")
            seen[key] = what
        return self


class QueueConfig(_Section):
    # Lower number is served first; arrival time breaks ties.
    priority: dict[Category, Annotated[int, Field(ge=0, le=100)]] = Field(
        default_factory=lambda: dict(_DEFAULT_PRIORITY)
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

    @field_validator("priority")
    @classmethod
    def _all_categories(cls, v: dict[str, int]) -> dict[str, int]:
        missing = [c for c in CATEGORIES if c not in v]
        if missing:
            raise ValueError(f"no priority for {', '.join(missing)}")
        return v


class TrunkConfig(_Section):
    name: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]
    allow: list[str]
    numbers: list[str] = Field(default_factory=lambda: ["112"])
    proxy: HostPort | None = None
    transport: Literal["udp", "tcp"] = "udp"
    # Caller number used on calls out (agencies, callbacks).
    caller_id: str = "112"
    # Digest credentials for calls out, when the carrier challenges them (401/407).
    auth_user: str = ""
    auth_password: str = ""

    @field_validator("allow")
    @classmethod
    def _cidrs(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("at least one source address or network is needed")
        bad = []
        for i, item in enumerate(v):
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                bad.append(f"[{i}] {item!r} is not an IP address or network (CIDR)")
        if bad:
            raise ValueError("; ".join(bad))
        return v

    @field_validator("numbers")
    @classmethod
    def _numbers(cls, v: list[str]) -> list[str]:
        for i, n in enumerate(v):
            if not n or any(c.isspace() or c in "<>;@" for c in n):
                raise ValueError(f"[{i}] {n!r} is not a dialled number")
        return v

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
    password: Annotated[str, Field(min_length=4)]
    name: str = ""
    skills: list[Skill] = Field(default_factory=lambda: list(_ALL_SKILLS))
    # False for a phone that registers but is never offered queue calls: a
    # supervisor's softphone used to listen, whisper and barge.
    takes_calls: bool = True


class UserConfig(_Section):
    """A web console account (operators sign in with their SIP user instead)."""

    name: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]
    role: Literal["supervisor", "auditor", "admin"]
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
    role: Literal["operator", "supervisor", "auditor", "admin"]
    # "sha256$<64 hex>" as printed by `callcenter112 new-api-token`.
    token_hash: Annotated[str, Field(pattern=r"^sha256\$[0-9a-f]{64}$")]


class AgencyConfig(_Section):
    name: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]
    number: Annotated[str, Field(min_length=1, max_length=32)]
    trunk: str
    label: str = ""
    ring_timeout_s: Annotated[float, Field(ge=3, le=120)] = 30.0


class Config(_Section):
    centre: CentreConfig = CentreConfig()
    sip: SipConfig = SipConfig()
    rtp: RtpConfig = RtpConfig()
    storage: StorageConfig = StorageConfig()
    recordings: RecordingsConfig = RecordingsConfig()
    web: WebConfig = WebConfig()
    ivr: IvrConfig = IvrConfig()
    queue: QueueConfig = QueueConfig()
    trunk: list[TrunkConfig] = Field(default_factory=list)
    operator: list[OperatorConfig] = Field(default_factory=list)
    user: list[UserConfig] = Field(default_factory=list)
    agency: list[AgencyConfig] = Field(default_factory=list)
    api_token: list[ApiTokenConfig] = Field(default_factory=list)

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
    if (
        cfg.web.enabled
        and cfg.sip.listen.port == cfg.web.listen.port
        and cfg.sip.listen.host in (cfg.web.listen.host, "0.0.0.0", "::")
    ):
        problems.append(ConfigProblem("web.listen", "same port as sip.listen"))
    return problems


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
        raise ConfigError(source, problems) from None
    problems = _cross_checks(cfg)
    if problems:
        raise ConfigError(source, problems)
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
