"""The incident: its lifecycle rules, its records and its JSON shape (pure, no IO).

An incident is one emergency: every leg, IVR choice, wait, operator, agency
hand-off, note and recording of it belong to one record (DESIGN §1). This
module owns

* the vocabularies (`Status`, `Category`, `Disposition`, `LegRole`, …) as
  string enums whose values are what the database, the JSON API and the CLI
  carry;
* the lifecycle state table and the rules the store enforces inside its
  write transactions (which status may follow which, which legs an incident
  may still get, which fields the call flow and the disposition form may set);
* the records the store hands out (`Incident`, `CallLeg`, `TimelineEntry`,
  `Recording`, `Callback`, `AuditEntry`, …) — plain frozen dataclasses, so the
  web layer and the CLI never see a database row;
* the one JSON shape of an incident (`incident_to_json`, DESIGN §4) and its
  CSV row;
* time: every timestamp is a float of UNIX epoch seconds (UTC) inside the
  program and ISO 8601 UTC with milliseconds and a 'Z' at the edges
  (`format_timestamp`, `parse_timestamp`);
* the answer-time SLA, measured the NENA way from the moment the INVITE
  reached the trunk: ``sla_s = operator_answered_at - arrived_at`` (DESIGN §2).

Theory of operation — the incident lifecycle:

    An incident is created `active` when the INVITE is accepted and leaves that
    state exactly once, to one of three final states:

      active --call ended after an operator or agency took it--> completed
      active --caller hung up before an operator answered-----> abandoned
      active --server lost the call (crash, restart)-----------> interrupted

    Nothing leaves a final state. `abandoned` and `interrupted` incidents get a
    callback task when they are closed (a dropped call is never a silent loss).
    A callback is a new call attached to the same incident: a `callback` leg
    may be added to an incident in any state, and while such a leg is open the
    incident may get operator/agency/supervisor legs too (the callback is
    bridged to an operator); the status does not change — the outcome of the
    callback lives on its callback task. Notes, dispositions and timeline
    events may be added in any state (the operator fills in the form after the
    call).
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import ClassVar, TypeVar

from .location.fix import Fix, location_json

__all__ = [
    "ANONYMOUS",
    "CALL_FLOW_FIELDS",
    "DISPOSITION_FIELDS",
    "FLAGS",
    "FLAG_EVENT",
    "FLAG_REPEAT_CALLER",
    "FLAG_SILENT",
    "FLAG_SILENT_CONFIRMED",
    "FLAG_WATCH_LISTED",
    "INCIDENT_CSV_COLUMNS",
    "INCIDENT_FIELDS",
    "SLA_THRESHOLDS_S",
    "TIMESTAMP_FIELDS",
    "TRANSITIONS",
    "AuditAction",
    "AuditEntry",
    "CallLeg",
    "Callback",
    "CallbackAttempt",
    "CallbackResult",
    "CallbackStatus",
    "Category",
    "Disposition",
    "DispositionTime",
    "Incident",
    "IncidentError",
    "IncidentQuery",
    "IncidentRecord",
    "LegQuality",
    "LegRole",
    "OperatorStateChange",
    "Recording",
    "RecordingStatus",
    "SlaSummary",
    "Status",
    "TimelineEntry",
    "audit_entry_to_json",
    "callback_is_priority",
    "callback_number",
    "callback_to_json",
    "canonical_json",
    "check_leg_allowed",
    "check_transition",
    "disposition_seconds",
    "flag_event_detail",
    "format_incident_id",
    "format_timestamp",
    "format_timestamp_us",
    "incident_csv_row",
    "incident_day",
    "incident_flags",
    "incident_to_json",
    "leg_to_json",
    "needs_callback",
    "normalize_caller",
    "parse_timestamp",
    "recording_to_json",
    "sla_seconds",
    "time_by_disposition",
    "validate_disposition_changes",
]


class IncidentError(Exception):
    """A request broke an incident rule; `status_hint` is the HTTP answer for it.

    404 unknown incident/leg/callback, 409 not allowed in the current state,
    422 a value outside its vocabulary.
    """

    def __init__(self, message: str, *, status_hint: int = 409) -> None:
        super().__init__(message)
        self.status_hint = status_hint


# --------------------------------------------------------------------------- vocabularies


class Status(StrEnum):
    ACTIVE = "active"
    COMPLETED = "completed"
    ABANDONED = "abandoned"
    INTERRUPTED = "interrupted"


_CATEGORY_ID = re.compile(r"[a-z][a-z0-9_]{0,31}")
# The shipped Ambon ids (config ``[[category]]``); only for iteration by old
# readers (``for c in Category``). The configured list is ``Config.category_ids``.
_SHIPPED_CATEGORIES = (
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


class _CategoryType(type):
    def __iter__(cls) -> Iterator[Category]:
        return iter(tuple(Category(c) for c in _SHIPPED_CATEGORIES))


class Category(str, metaclass=_CategoryType):
    """A category id from the configuration (issue 12: categories are the
    city's, not a code enum). Any lowercase word of up to 32 characters is a
    well-formed id; whether it is *configured* is the config's answer
    (``validate_disposition_changes(..., categories=cfg.category_ids)``).
    Existing rows already hold plain strings, so no migration is needed."""

    __slots__ = ()

    MEDICAL: ClassVar[Category]
    FIRE: ClassVar[Category]
    DISASTER: ClassVar[Category]
    POLICE: ClassVar[Category]
    UNKNOWN: ClassVar[Category]

    def __new__(cls, value: str) -> Category:
        if not isinstance(value, str) or not _CATEGORY_ID.fullmatch(value):
            raise ValueError(f"{value!r} is not a category id (a-z, 0-9, _; up to 32)")
        return super().__new__(cls, value)

    @property
    def value(self) -> str:
        return str.__str__(self)

    def __str__(self) -> str:
        return str.__str__(self)

    def __repr__(self) -> str:
        return f"Category({str.__repr__(self)})"


Category.MEDICAL = Category("medical")
Category.FIRE = Category("fire")
Category.DISASTER = Category("disaster")
Category.POLICE = Category("police")
Category.UNKNOWN = Category("unknown")


class Disposition(StrEnum):
    """What the call was, per the local SOP (Cilegon: normal, ghost, prank,
    information) plus the centre's own test/wrong number/duplicate."""

    GENUINE = "genuine"
    GHOST = "ghost"  # no response on the line
    PRANK = "prank"
    INFORMATION = "information"  # a question, not an emergency
    WRONG_NUMBER = "wrong_number"
    TEST = "test"
    DUPLICATE = "duplicate"

    @classmethod
    def _missing_(cls, value: object) -> Disposition | None:
        # Rows written before issue 12 say "silent" for what the SOP calls a
        # ghost call: read them as GHOST (the store may rewrite them once).
        return cls.GHOST if value == "silent" else None


# Console/API words for the incident's flags (DESIGN §4 ``flags``).
FLAG_SILENT = "silent"  # no key, no speech in the IVR: the operator decides
FLAG_SILENT_CONFIRMED = "silent_confirmed"  # pressed a key after "if you cannot speak"
FLAG_REPEAT_CALLER = "repeat_caller"
FLAG_WATCH_LISTED = "watch_listed"
FLAGS = (FLAG_SILENT, FLAG_SILENT_CONFIRMED, FLAG_REPEAT_CALLER, FLAG_WATCH_LISTED)
# The timeline event that raises one: ``{"kind": "flag", "detail": {"flag": word, …}}``.
# Flags live in the timeline (who/what raised them, when, why: audited), not
# in a column; ``incident_flags`` reads them back.
FLAG_EVENT = "flag"


class LegRole(StrEnum):
    CALLER = "caller"
    OPERATOR = "operator"
    AGENCY = "agency"
    SUPERVISOR = "supervisor"
    CALLBACK = "callback"


class RecordingStatus(StrEnum):
    OPEN = "open"  # being written; the store knows it so recovery can repair it
    SEALED = "sealed"  # hashed, read-only, in the hash chain
    LOST = "lost"  # the file never appeared (found missing by crash recovery)


class CallbackStatus(StrEnum):
    OPEN = "open"
    TAKEN = "taken"  # someone is working it; others see who
    CLOSED = "closed"


class CallbackResult(StrEnum):
    ANSWERED = "answered"
    NO_ANSWER = "no_answer"
    BUSY = "busy"
    FAILED = "failed"


class AuditAction(StrEnum):
    """Known audit actions; the store accepts any short lowercase word too."""

    REPLAY = "replay"
    DOWNLOAD = "download"
    EXPORT = "export"
    VIEW = "view"
    LIST = "list"
    VERIFY = "verify"
    DISPOSITION_CHANGE = "disposition_change"
    CONFIG_RELOAD = "config_reload"
    PAUSE = "pause"
    UNPAUSE = "unpause"
    RETENTION_DELETE = "retention_delete"
    LOGIN = "login"
    LOGIN_FAILED = "login_failed"
    LOGOUT = "logout"
    LEGAL_HOLD = "legal_hold"
    CALLBACK_TAKE = "callback_take"
    CALLBACK_CLOSE = "callback_close"
    LISTEN = "listen"
    WHISPER = "whisper"
    BARGE = "barge"


# The timestamps every incident keeps (DESIGN §2), in the order a call lives them.
TIMESTAMP_FIELDS: tuple[str, ...] = (
    "arrived_at",
    "answered_at",
    "ivr_done_at",
    "queued_at",
    "offered_at",
    "operator_answered_at",
    "transferred_at",
    "ended_at",
    "wrapped_up_at",
)

# Fields the call flow sets as the call moves (IVR choice, language, who answered).
CALL_FLOW_FIELDS: tuple[str, ...] = ("category", "language", "operator", "caller_name")

# Fields the operator's after-call form sets; every change is audit-logged.
DISPOSITION_FIELDS: tuple[str, ...] = (
    "disposition",
    "category",
    "location_text",
    "kecamatan",
    "kelurahan",
    "description",
    "agencies_notified",
)

# Answer-time bands shown on the wallboard. NENA-STA-020.1 (Call Answering
# Standard): 90 % of calls answered within 15 s, 95 % within 20 s; 10 s is the
# centre's own stretch goal.
SLA_THRESHOLDS_S: tuple[int, ...] = (10, 15, 20)

ANONYMOUS = "anonymous"

_E = TypeVar("_E", bound=StrEnum)

# Longest free text accepted from the disposition form (a description is notes,
# not a document).
MAX_TEXT = 10_000

# --------------------------------------------------------------------------- state table

TRANSITIONS: Mapping[Status, frozenset[Status]] = {
    Status.ACTIVE: frozenset({Status.COMPLETED, Status.ABANDONED, Status.INTERRUPTED}),
    Status.COMPLETED: frozenset(),
    Status.ABANDONED: frozenset(),
    Status.INTERRUPTED: frozenset(),
}

_NEEDS_CALLBACK = frozenset({Status.ABANDONED, Status.INTERRUPTED})


def check_transition(current: Status, new: Status) -> None:
    """Raise `IncidentError` (409) unless the table allows `current` → `new`."""
    if new not in TRANSITIONS[current]:
        raise IncidentError(
            f"an incident that is {current.value} cannot become {new.value}", status_hint=409
        )


def needs_callback(status: Status) -> bool:
    """A dropped call becomes a callback task, never a silent loss (DESIGN §1)."""
    return status in _NEEDS_CALLBACK


def callback_is_priority(flags: Iterable[str]) -> bool:
    """A silent caller who hung up gets a *priority* callback task (issue 12, after
    the UK Silent Solution): they may have been unable to speak, not unwilling."""
    return any(f in (FLAG_SILENT, FLAG_SILENT_CONFIRMED) for f in flags)


def check_leg_allowed(status: Status, role: LegRole, *, callback_leg_open: bool) -> None:
    """Raise `IncidentError` (409) unless an incident in `status` may get a `role` leg."""
    if role is LegRole.CALLBACK or status is Status.ACTIVE or callback_leg_open:
        return
    raise IncidentError(
        f"an incident that is {status.value} can only get a callback leg, not a {role.value} leg",
        status_hint=409,
    )


def callback_number(caller: str) -> str | None:
    """The number to call back, or None when the caller withheld it.

    An anonymous caller still gets a callback task — flagged "no number" — so
    a supervisor sees the dropped call and can ask the carrier for the line.
    """
    return None if caller == ANONYMOUS else caller


_NUMBER_JUNK = re.compile(r"[\s\-.()/]")
_WITHHELD = {"", "anonymous", "unknown", "restricted", "private", "unavailable", "withheld"}


def normalize_caller(raw: str | None) -> str:
    """One spelling per Indonesian line, so caller history finds earlier calls.

    Carriers present the same mobile as ``+62812…``, ``62812…``, ``0062812…``
    or ``0812…``; the national form ``0812…`` is what operators read and what a
    callback dials over the trunk. A withheld number becomes ``anonymous``.
    """
    text = _NUMBER_JUNK.sub("", raw or "")
    if text.lower() in _WITHHELD:
        return ANONYMOUS
    if text.startswith("+62"):
        return "0" + text[3:]
    if text.startswith("0062"):
        return "0" + text[4:]
    if text.startswith("62") and len(text) >= 10:
        return "0" + text[2:]
    return text


# --------------------------------------------------------------------------- ids and time


def incident_day(arrived_at: float, *, utc_offset_s: float = 0.0) -> str:
    """The `YYYYMMDD` an incident id starts with (UTC unless an offset is given)."""
    return (datetime.fromtimestamp(arrived_at, UTC) + timedelta(seconds=utc_offset_s)).strftime(
        "%Y%m%d"
    )


def format_incident_id(day: str, seq: int) -> str:
    """``20261128-0042``: the day and the incident's number that day (4+ digits)."""
    return f"{day}-{seq:04d}"


def _split_ms(t: float, scale: int) -> tuple[datetime, int]:
    ticks = round(t * scale)
    whole, frac = divmod(ticks, scale)
    return datetime.fromtimestamp(whole, UTC), frac


def format_timestamp(t: float | None) -> str | None:
    """ISO 8601 UTC with milliseconds and 'Z': ``2026-11-28T10:00:00.123Z``."""
    if t is None:
        return None
    dt, ms = _split_ms(t, 1000)
    return f"{dt:%Y-%m-%dT%H:%M:%S}.{ms:03d}Z"


def format_timestamp_us(t: float) -> str:
    """Microsecond form used inside hash-chain entries (stable across backends)."""
    dt, us = _split_ms(t, 1_000_000)
    return f"{dt:%Y-%m-%dT%H:%M:%S}.{us:06d}Z"


_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def parse_timestamp(text: str, *, end_of_day: bool = False) -> float:
    """Accept ``2026-11-28``, ``2026-11-28T10:00``, ``2026-11-28T10:00:00.5Z``, ``…+09:00``.

    Times without an offset are UTC. A bare date means its first instant, or
    with `end_of_day` the first instant of the next day (so ``--until
    2026-11-28`` includes the whole 28th as an exclusive upper bound).
    Raises ValueError naming the text.
    """
    s = text.strip()
    try:
        if _DATE_ONLY.match(s):
            dt = datetime.fromisoformat(s).replace(tzinfo=UTC)
            if end_of_day:
                dt += timedelta(days=1)
            return dt.timestamp()
        dt = datetime.fromisoformat(s.replace(" ", "T", 1))
    except ValueError:
        raise ValueError(
            f"{text!r} is not a date or time (use 2026-11-28, 2026-11-28T10:00 or ISO 8601 with Z)"
        ) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def canonical_json(value: object) -> str:
    """The one byte-stable JSON spelling used for stored details and hash chains."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


# --------------------------------------------------------------------------- records


@dataclass(frozen=True, slots=True, kw_only=True)
class Incident:
    id: str
    caller: str
    caller_name: str | None = None
    trunk: str | None = None
    dialled: str | None = None
    call_id: str | None = None
    category: Category = Category.UNKNOWN
    language: str | None = None
    status: Status = Status.ACTIVE
    operator: str | None = None
    disposition: Disposition | None = None
    location_text: str | None = None
    kecamatan: str | None = None
    kelurahan: str | None = None
    description: str | None = None
    agencies_notified: tuple[str, ...] = ()
    legal_hold: bool = False
    arrived_at: float
    answered_at: float | None = None
    ivr_done_at: float | None = None
    queued_at: float | None = None
    offered_at: float | None = None
    operator_answered_at: float | None = None
    transferred_at: float | None = None
    ended_at: float | None = None
    wrapped_up_at: float | None = None
    updated_at: float

    @property
    def sla_s(self) -> float | None:
        return sla_seconds(self.arrived_at, self.operator_answered_at)


@dataclass(frozen=True, slots=True, kw_only=True)
class LegQuality:
    """Receive-side RTP statistics of one leg (RFC 3550 §6.4.1 loss and jitter)."""

    packets: int
    lost: int
    jitter_ms: float


@dataclass(frozen=True, slots=True, kw_only=True)
class CallLeg:
    id: int
    incident_id: str
    role: LegRole
    call_id: str | None
    peer: str | None
    codec: str | None
    started_at: float
    ended_at: float | None = None
    end_reason: str | None = None  # None while the leg is up
    quality: LegQuality | None = None

    @property
    def is_open(self) -> bool:
        return self.end_reason is None


@dataclass(frozen=True, slots=True, kw_only=True)
class TimelineEntry:
    """One line of an incident's timeline: ``{at, kind, detail}`` in the JSON."""

    at: float
    kind: str
    detail: dict[str, object] | str


@dataclass(frozen=True, slots=True, kw_only=True)
class Recording:
    """A recording file and, once sealed, its entry in the recordings hash chain."""

    id: int
    incident_id: str
    path: str  # relative to the recordings directory, '/'-separated
    status: RecordingStatus
    codec: str | None
    channels: int | None
    started_at: float
    duration_s: float | None = None
    size: int | None = None
    sha256: str | None = None
    sealed_at: float | None = None
    seq: int | None = None
    prev_hash: str | None = None
    entry_hash: str | None = None
    deleted_at: float | None = None  # tombstone: removed by retention, entry kept
    deleted_by: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CallbackAttempt:
    id: int
    callback_id: int
    at: float
    actor: str
    result: CallbackResult
    note: str | None = None
    leg_id: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Callback:
    id: int
    incident_id: str
    number: str | None  # None: the caller withheld the number
    reason: str
    status: CallbackStatus
    created_at: float
    taken_by: str | None = None
    taken_at: float | None = None
    closed_by: str | None = None
    closed_at: float | None = None
    outcome: str | None = None
    note: str | None = None
    attempts: tuple[CallbackAttempt, ...] = ()
    priority: bool = False  # a silent caller's (issue 12): listed first
    # Issue 11: why the task waits for a supervisor instead of being dialled.
    review: str | None = None

    @property
    def no_number(self) -> bool:
        return self.number is None


@dataclass(frozen=True, slots=True, kw_only=True)
class OperatorStateChange:
    operator: str
    state: str
    reason: str | None
    at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditEntry:
    seq: int
    at: float
    actor: str
    action: str
    target: str
    detail: dict[str, object]
    prev_hash: str
    entry_hash: str


@dataclass(frozen=True, slots=True, kw_only=True)
class IncidentRecord:
    """An incident with everything that belongs to it."""

    incident: Incident
    legs: tuple[CallLeg, ...] = ()
    events: tuple[TimelineEntry, ...] = ()
    recordings: tuple[Recording, ...] = ()
    callbacks: tuple[Callback, ...] = ()
    fixes: tuple[Fix, ...] = ()  # caller location reports, oldest first (issue 13)


@dataclass(frozen=True, slots=True, kw_only=True)
class IncidentQuery:
    """Filters for listing incidents; `since` inclusive, `until` exclusive (arrived_at)."""

    since: float | None = None
    until: float | None = None
    caller: str | None = None
    category: Category | None = None
    status: Status | None = None
    operator: str | None = None
    disposition: Disposition | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SlaSummary:
    """Answer-time figures for incidents that arrived in [since, until)."""

    since: float
    until: float | None
    arrived: int
    answered: int  # reached an operator
    within_s: Mapping[int, int]  # SLA_THRESHOLDS_S → answered within that many seconds
    abandoned: int
    interrupted: int
    active: int
    mean_answer_s: float | None
    max_answer_s: float | None

    def within_ratio(self, seconds: int) -> float | None:
        """Share of answered calls answered within `seconds` (None if none answered)."""
        return self.within_s[seconds] / self.answered if self.answered else None


# --------------------------------------------------------------------------- rules on values


def sla_seconds(arrived_at: float, operator_answered_at: float | None) -> float | None:
    """Answer time measured from the INVITE reaching the trunk (DESIGN §2)."""
    if operator_answered_at is None:
        return None
    return operator_answered_at - arrived_at


def flag_event_detail(flag: str, **why: object) -> dict[str, object]:
    """The ``detail`` of the timeline event raising ``flag`` (one of ``FLAGS``)."""
    if flag not in FLAGS:
        raise IncidentError(f"flag {flag!r} is not one of {'|'.join(FLAGS)}", status_hint=422)
    return {"flag": flag, **why}


def incident_flags(events: Iterable[TimelineEntry]) -> tuple[str, ...]:
    """The incident's flags, from its ``flag`` timeline events, first-raised order."""
    out: list[str] = []
    for e in events:
        if e.kind == FLAG_EVENT and isinstance(e.detail, dict):
            flag = e.detail.get("flag")
            if isinstance(flag, str) and flag in FLAGS and flag not in out:
                out.append(flag)
    return tuple(out)


def disposition_seconds(operator_answered_at: float | None, disposed_at: float) -> float | None:
    """Operator time one disposition cost: from the operator answering to the
    disposition being saved (issue 12: "the time spent on each disposition is
    measured"). None when no operator answered (a disposition on a callback-
    only or abandoned incident costs no talk time); never negative (clock
    skew between nodes is clamped to 0)."""
    if operator_answered_at is None:
        return None
    return max(0.0, disposed_at - operator_answered_at)


@dataclass(frozen=True, slots=True, kw_only=True)
class DispositionTime:
    """Operator time spent on one disposition over a set of incidents."""

    disposition: Disposition
    count: int  # dispositions with a measured time
    total_s: float
    mean_s: float
    max_s: float


def time_by_disposition(
    rows: Iterable[tuple[Disposition, float | None, float]],
) -> dict[Disposition, DispositionTime]:
    """``rows``: (disposition, operator_answered_at, disposed_at) per incident,
    the *first* disposition of each (a later correction is not operator time).
    Every disposition appears in the answer, with zeros when none was measured."""
    spent: dict[Disposition, list[float]] = {d: [] for d in Disposition}
    for disposition, answered_at, disposed_at in rows:
        seconds = disposition_seconds(answered_at, disposed_at)
        if seconds is not None:
            spent[Disposition(disposition)].append(seconds)
    return {
        d: DispositionTime(
            disposition=d,
            count=len(xs),
            total_s=sum(xs),
            mean_s=sum(xs) / len(xs) if xs else 0.0,
            max_s=max(xs, default=0.0),
        )
        for d, xs in spent.items()
    }


def _text(name: str, value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise IncidentError(f"{name}: expected text, got {type(value).__name__}", status_hint=422)
    text = value.strip()
    if len(text) > MAX_TEXT:
        raise IncidentError(f"{name}: longer than {MAX_TEXT} characters", status_hint=422)
    return text or None


def _enum_value(kind: type[_E], name: str, value: object) -> _E:
    try:
        if not isinstance(value, str):
            raise ValueError(value)
        return kind(value)
    except ValueError:
        allowed = "|".join(m.value for m in kind)
        raise IncidentError(f"{name}: {value!r} is not one of {allowed}", status_hint=422) from None


def _category_value(name: str, value: object, categories: Collection[str]) -> Category:
    if value in (None, ""):
        return Category.UNKNOWN
    allowed = "|".join(categories)
    if not isinstance(value, str) or value not in categories:
        raise IncidentError(f"{name}: {value!r} is not one of {allowed}", status_hint=422)
    try:
        return Category(value)
    except ValueError as exc:
        raise IncidentError(f"{name}: {exc}", status_hint=422) from None


def validate_disposition_changes(
    changes: Mapping[str, object], *, categories: Collection[str] = _SHIPPED_CATEGORIES
) -> dict[str, object]:
    """Check a disposition form; return the values normalised for storage.

    Keys outside `DISPOSITION_FIELDS` and values outside their vocabulary raise
    `IncidentError` (422). `None`/empty clears a field (except `category`, which
    falls back to unknown). `agencies_notified` is a list of agency names.
    ``categories``: the configured ids (``Config.category_ids``); without it the
    shipped Ambon set.
    """
    out: dict[str, object] = {}
    for key, value in changes.items():
        if key not in DISPOSITION_FIELDS:
            raise IncidentError(f"{key}: not a disposition field", status_hint=422)
        if key == "disposition":
            out[key] = None if value in (None, "") else _enum_value(Disposition, key, value)
        elif key == "category":
            out[key] = _category_value(key, value, categories)
        elif key == "agencies_notified":
            if value is None:
                out[key] = ()
                continue
            if isinstance(value, str) or not isinstance(value, list | tuple):
                raise IncidentError(f"{key}: expected a list of agency names", status_hint=422)
            names: list[str] = []
            for item in value:
                name = _text(key, item)
                if name and name not in names:
                    names.append(name)
            out[key] = tuple(names)
        else:
            out[key] = _text(key, value)
    return out


# --------------------------------------------------------------------------- JSON and CSV


def leg_to_json(leg: CallLeg) -> dict[str, object]:
    return {
        "id": leg.id,
        "role": leg.role.value,
        "call_id": leg.call_id,
        "peer": leg.peer,
        "codec": leg.codec,
        "started_at": format_timestamp(leg.started_at),
        "ended_at": format_timestamp(leg.ended_at),
        "end_reason": leg.end_reason,
        "quality": None
        if leg.quality is None
        else {
            "packets": leg.quality.packets,
            "lost": leg.quality.lost,
            "jitter_ms": leg.quality.jitter_ms,
        },
    }


def recording_to_json(rec: Recording) -> dict[str, object]:
    return {
        "path": rec.path,
        "sha256": rec.sha256,
        "channels": rec.channels,
        "duration_s": rec.duration_s,
        "codec": rec.codec,
        "size": rec.size,
        "status": rec.status.value,
        "started_at": format_timestamp(rec.started_at),
        "sealed_at": format_timestamp(rec.sealed_at),
        "seq": rec.seq,
        "deleted_at": format_timestamp(rec.deleted_at),
        "deleted_by": rec.deleted_by,
    }


def callback_to_json(cb: Callback) -> dict[str, object]:
    return {
        "id": cb.id,
        "incident_id": cb.incident_id,
        "number": cb.number,
        "no_number": cb.no_number,
        "priority": cb.priority,
        "reason": cb.reason,
        "status": cb.status.value,
        "created_at": format_timestamp(cb.created_at),
        "taken_by": cb.taken_by,
        "taken_at": format_timestamp(cb.taken_at),
        "closed_by": cb.closed_by,
        "closed_at": format_timestamp(cb.closed_at),
        "outcome": cb.outcome,
        "note": cb.note,
        "attempts": [
            {
                "at": format_timestamp(a.at),
                "actor": a.actor,
                "result": a.result.value,
                "note": a.note,
                "leg_id": a.leg_id,
            }
            for a in cb.attempts
        ],
    }


def audit_entry_to_json(entry: AuditEntry) -> dict[str, object]:
    return {
        "seq": entry.seq,
        "at": format_timestamp(entry.at),
        "actor": entry.actor,
        "action": entry.action,
        "target": entry.target,
        "detail": entry.detail,
        "prev_hash": entry.prev_hash,
        "entry_hash": entry.entry_hash,
    }


def incident_to_json(item: Incident | IncidentRecord) -> dict[str, object]:
    """The incident JSON of `incidents show --json` and the web API (DESIGN §4).

    Given a bare `Incident` (a list row) the `legs`, `events`, `recordings`
    and `callbacks` keys are left out rather than shown empty.
    """
    inc = item.incident if isinstance(item, IncidentRecord) else item
    out: dict[str, object] = {
        "id": inc.id,
        "caller": inc.caller,
        "caller_name": inc.caller_name,
        "trunk": inc.trunk,
        "dialled": inc.dialled,
        "call_id": inc.call_id,
        "category": inc.category.value,
        "language": inc.language,
        "status": inc.status.value,
        "operator": inc.operator,
        "disposition": None if inc.disposition is None else inc.disposition.value,
        "location_text": inc.location_text,
        "kecamatan": inc.kecamatan,
        "kelurahan": inc.kelurahan,
        "description": inc.description,
        "agencies_notified": list(inc.agencies_notified),
        "legal_hold": inc.legal_hold,
    }
    for name in TIMESTAMP_FIELDS:
        out[name] = format_timestamp(getattr(inc, name))
    sla = inc.sla_s
    out["sla_s"] = None if sla is None else round(sla, 3)
    if isinstance(item, IncidentRecord):
        out["legs"] = [leg_to_json(leg) for leg in item.legs]
        out["flags"] = list(incident_flags(item.events))
        out["events"] = [
            {"at": format_timestamp(e.at), "kind": e.kind, "detail": e.detail} for e in item.events
        ]
        out["recordings"] = [recording_to_json(r) for r in item.recordings]
        out["callbacks"] = [callback_to_json(c) for c in item.callbacks]
        out["location"] = location_json(item.fixes)  # issue 13
    return out


# An incident's stored fields in one order: the CSV export's columns and the
# store's incident columns (records/rows.py) both start with these.
INCIDENT_FIELDS: tuple[str, ...] = (
    "id",
    "caller",
    "caller_name",
    "trunk",
    "dialled",
    "call_id",
    "category",
    "language",
    "status",
    "operator",
    "disposition",
    "location_text",
    "kecamatan",
    "kelurahan",
    "description",
    "agencies_notified",
    "legal_hold",
    *TIMESTAMP_FIELDS,
)

INCIDENT_CSV_COLUMNS: tuple[str, ...] = (*INCIDENT_FIELDS, "sla_s")


def incident_csv_row(inc: Incident) -> list[str]:
    """One CSV row in `INCIDENT_CSV_COLUMNS` order (lists joined with ';')."""
    data = incident_to_json(inc)
    row: list[str] = []
    for col in INCIDENT_CSV_COLUMNS:
        value = data[col]
        if isinstance(value, list):
            row.append(";".join(str(v) for v in value))
        elif isinstance(value, bool):
            row.append("yes" if value else "no")
        elif value is None:
            row.append("")
        else:
            row.append(str(value))
    return row
