"""The JSON the API reads and writes, as pydantic models: the source of its OpenAPI schemas.

The handlers build their answers with the `*_to_json` / `*_json` functions of
incidents.py and views.py; these models describe those answers field by field
(`tests/test_web_api.py` validates real answers against the schemas generated
from them, and fails on any key a model does not name). Vocabularies come from
the same tuples the handlers check input against (config.DISPOSITIONS,
incidents.FLAGS, the incidents enums, live's Literal types), so the
document cannot list a value the API refuses.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..config import CATEGORY_ID, DISPOSITIONS
from ..incidents import FLAGS, CallbackResult, CallbackStatus, LegRole, RecordingStatus, Status
from ..live import CallPhase, OperatorStateName, SupervisionMode
from ..location.fix import FixSource

__all__ = [
    "ActiveCall",
    "AmlForm",
    "AmlSmsForm",
    "AttemptRecorded",
    "Callback",
    "CallbackAttemptBody",
    "CallbackCloseBody",
    "CallbackList",
    "CallbackQueryParams",
    "CallbackTakeBody",
    "Disposition",
    "DispositionSaved",
    "Eido",
    "Error",
    "Incident",
    "IncidentList",
    "IncidentLocation",
    "IncidentQueryParams",
    "MapSettings",
    "Operator",
    "OperatorList",
    "PauseBody",
    "PauseResult",
    "PinBody",
    "Queue",
    "Sla",
    "SlaParams",
    "TrunkHealthList",
    "UnpauseBody",
    "WaitingCaller",
]


def _enum(values: tuple[str, ...] | list[str], description: str = "") -> dict[str, Any]:
    extra: dict[str, Any] = {"enum": list(values)}
    if description:
        extra["description"] = description
    return extra


# A timestamp as the API writes it: UTC, milliseconds, `Z` (incidents.format_timestamp).
Time = Annotated[str | None, Field(json_schema_extra={"format": "date-time"})]
# Categories come from the centre's configuration ([[category]]), so the
# document names their form, not a fixed list; `unknown` is always one.
CategoryName = Annotated[
    str,
    Field(
        pattern=CATEGORY_ID,
        description="A configured category id ([[category]]), or `unknown`.",
    ),
]
DispositionName = Annotated[str, Field(json_schema_extra=_enum(DISPOSITIONS))]
FlagName = Annotated[str, Field(json_schema_extra=_enum(FLAGS))]
StatusName = Annotated[str, Field(json_schema_extra=_enum([s.value for s in Status]))]


class _Doc(BaseModel):
    """Documentation models: any key not named here fails the API test."""

    model_config = ConfigDict(extra="forbid")


class Empty(BaseModel):
    """An answer whose body carries nothing to read."""

    model_config = ConfigDict(extra="allow")


class Error(_Doc):
    error: str = Field(description="What was wrong.")


class LegQuality(_Doc):
    packets: int
    lost: int
    jitter_ms: float | None


class Leg(_Doc):
    id: int
    role: Annotated[str, Field(json_schema_extra=_enum([r.value for r in LegRole]))]
    call_id: str | None
    peer: str | None
    codec: str | None
    started_at: Time
    ended_at: Time
    end_reason: str | None
    quality: LegQuality | None


class IncidentEvent(_Doc):
    at: Time
    kind: str
    detail: dict[str, Any] | str | None


class Recording(_Doc):
    path: str
    sha256: str | None
    channels: int | None
    duration_s: float | None
    codec: str | None
    size: int | None
    status: Annotated[str, Field(json_schema_extra=_enum([s.value for s in RecordingStatus]))]
    started_at: Time
    sealed_at: Time
    seq: int | None
    deleted_at: Time
    deleted_by: str | None


class CallbackAttempt(_Doc):
    at: Time
    actor: str
    result: Annotated[str, Field(json_schema_extra=_enum([r.value for r in CallbackResult]))]
    note: str | None
    leg_id: int | None


class Callback(_Doc):
    id: int
    incident_id: str
    number: str | None
    no_number: bool = Field(description="The caller withheld the number.")
    priority: bool = Field(description="A silent caller's (issue 12): listed first.")
    reason: str
    status: Annotated[str, Field(json_schema_extra=_enum([s.value for s in CallbackStatus]))]
    created_at: Time
    taken_by: str | None
    taken_at: Time
    closed_by: str | None
    closed_at: Time
    outcome: str | None
    note: str | None
    attempts: list[CallbackAttempt]


class Incident(_Doc):
    """The incident JSON of DESIGN §4. A list row leaves out legs, events,
    recordings and callbacks."""

    id: str = Field(description="`YYYYMMDD-NNNN`.")
    caller: str = Field(description="National form (0812…) or anonymous.")
    caller_name: str | None
    trunk: str | None
    dialled: str | None
    call_id: str | None
    category: CategoryName
    language: str | None
    status: StatusName
    operator: str | None
    disposition: DispositionName | None
    location_text: str | None
    kecamatan: str | None
    kelurahan: str | None
    description: str | None
    agencies_notified: list[str]
    legal_hold: bool
    arrived_at: Time
    answered_at: Time
    ivr_done_at: Time
    queued_at: Time
    offered_at: Time
    operator_answered_at: Time
    transferred_at: Time
    ended_at: Time
    wrapped_up_at: Time
    sla_s: float | None = Field(description="operator_answered_at - arrived_at, seconds.")
    legs: list[Leg] = Field(default_factory=list)
    events: list[IncidentEvent] = Field(default_factory=list)
    recordings: list[Recording] = Field(default_factory=list)
    callbacks: list[Callback] = Field(default_factory=list)
    flags: list[FlagName] = Field(
        default_factory=list,
        description="Words from the timeline's flag events (full incident only).",
    )
    location: Location | None = Field(  # issue 13
        None, description="Where the caller is: the newest valid fix, every fix (full incident)."
    )


class IncidentList(_Doc):
    incidents: list[Incident]
    total: int = Field(description="Incidents matching the filters.")
    limit: int
    offset: int


class Disposition(_Doc):
    """Only the fields sent are changed; null or empty clears a field."""

    disposition: DispositionName | None = None
    category: CategoryName | None = None
    location_text: str | None = Field(None, max_length=10_000)
    kecamatan: str | None = Field(None, description="From web.city_areas.")
    kelurahan: str | None = Field(None, description="'Kelurahan X' or 'Desa X' of that kecamatan.")
    description: str | None = Field(None, max_length=10_000)
    agencies_notified: list[str] = Field(default_factory=list, description="[[agency]] names.")


class DispositionSaved(_Doc):
    incident_id: str
    changed: dict[str, list[Any]] = Field(
        description="field → [old, new] for the fields that changed."
    )


class WaitingCaller(_Doc):
    incident_id: str
    caller: str
    category: CategoryName
    language: str
    arrived_at: Time
    wait_s: float
    position: int = Field(description="1 = next to be offered.")
    offered_to: str | None


class Supervision(_Doc):
    user: str
    mode: SupervisionMode


class ActiveCall(_Doc):
    incident_id: str
    caller: str
    category: CategoryName
    phase: CallPhase
    operator: str | None
    agency: str | None
    arrived_at: Time
    phase_since: Time
    duration_s: float
    supervisors: list[Supervision]


class Queue(_Doc):
    at: Time
    waiting: list[WaitingCaller] = Field(description="In offer order.")
    calls: list[ActiveCall]
    max_calls: int


class Operator(_Doc):
    user: str
    name: str
    skills: list[str]
    state: OperatorStateName
    since: Time
    state_s: float
    reason: str | None
    calls_today: int
    missed: int
    incident_id: str | None
    registered: bool
    reachable: bool


class OperatorList(_Doc):
    operators: list[Operator]


class PauseBody(_Doc):
    reason: str = Field(max_length=64)
    note: str | None = Field(None, max_length=200)


class UnpauseBody(_Doc):
    pass


class PauseResult(_Doc):
    ok: bool
    user: str
    paused: bool
    reason: str | None


class CallbackList(_Doc):
    callbacks: list[Callback]


class CallbackTakeBody(_Doc):
    force: bool = Field(False, description="Take a task someone else holds (supervisors).")


class CallbackAttemptBody(_Doc):
    result: Annotated[str, Field(json_schema_extra=_enum([r.value for r in CallbackResult]))]
    note: str | None = Field(None, max_length=500)


class CallbackCloseBody(_Doc):
    outcome: str = Field(max_length=200)
    note: str | None = Field(None, max_length=500)


class AttemptRecorded(_Doc):
    callback_id: int
    attempt_id: int


class WithinCount(_Doc):
    count: int
    ratio: float | None


class Sla(_Doc):
    """Answer time is operator_answered_at - arrived_at (NENA: from the INVITE
    reaching the trunk)."""

    since: Time
    until: Time
    arrived: int
    answered: int
    abandoned: int
    interrupted: int
    active: int
    mean_answer_s: float | None
    max_answer_s: float | None
    answered_within: dict[str, WithinCount] = Field(
        description="For 10, 15 and 20 s: count and share of answered calls."
    )


# ---------------------------------------------------------------- query parameters
# One model per endpoint; each field is one optional query parameter.


class IncidentQueryParams(_Doc):
    since: Time = Field(None, description="Arrived at or after (ISO 8601; no offset = UTC).")
    until: Time = Field(None, description="Arrived before (a bare date includes that whole day).")
    caller: str | None = Field(None, description="Caller number in any spelling (+62…, 0812…).")
    category: CategoryName | None = Field(None, description="IVR or corrected category.")
    status: StatusName | None = Field(None, description="Incident status.")
    operator: str | None = Field(None, description="Operator SIP user.")
    disposition: DispositionName | None = Field(None, description="Operator's disposition.")
    limit: int | None = Field(None, ge=1, le=500, description="Page size (default 100).")
    offset: int | None = Field(None, ge=0, description="Rows to skip.")


class CallbackQueryParams(_Doc):
    status: Literal["open", "all"] | None = Field(None, description="open (default) or all.")
    incident_id: str | None = Field(None, description="Only this incident's tasks.")
    limit: int | None = Field(None, ge=1, le=500, description="Most rows (default 100).")


class SlaParams(_Doc):
    since: Time = Field(None, description="ISO 8601; default: today 00:00 local time.")
    until: Time = Field(None, description="ISO 8601; default: now.")


# ---------------------------------------------------------------- location (issue 13)


class Fix(_Doc):
    lat: float | None
    lon: float | None
    radius_m: float | None
    source: FixSource
    at: Time
    confidence: int | None
    valid: bool
    reason: str | None
    shape: str | None
    altitude_m: float | None


class Location(_Doc):
    """The newest valid fix on top; every fix in `fixes`, oldest first."""

    lat: float | None
    lon: float | None
    radius_m: float | None
    source: FixSource | None
    at: Time
    valid: bool
    fixes: list[Fix]


class AreaSuggestion(_Doc):
    """The kecamatan/kelurahan the position suggests."""

    kecamatan: str | None
    kelurahan: str | None
    distance_m: float | None = Field(description="To the reference point; null inside an outline.")
    method: Literal["outline", "nearest-point"]


class IncidentLocation(_Doc):
    incident_id: str
    location: Location
    suggestion: AreaSuggestion | None


class PinBody(_Doc):
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    radius_m: float | None = Field(None, ge=0)


class MapSettings(_Doc):
    tile_url: str | None
    attribution: str
    areas: dict[str, Any] | None = Field(description="The city's shipped vector data (GeoJSON).")


class AmlForm(BaseModel):
    """ETSI TS 103 625 HTTPS form fields (many; `hmac` last): kept open, as phones send more."""

    model_config = ConfigDict(extra="allow")


class AmlSmsForm(_Doc):
    from_: str = Field(alias="from", description="The sender's number.")
    body: str = Field(description="The AML SMS text (v1 or v2).")


class Eido(BaseModel):
    """NENA-STA-021 EIDO JSON: its schema is NENA's, not repeated here."""

    model_config = ConfigDict(extra="allow")


class TrunkHealthList(BaseModel):
    """Per trunk: the qualify state (OPTIONS to the carrier's proxy) and counters
    (calls, rejects by code, carrier 4xx/5xx) for today and the last hour."""

    model_config = ConfigDict(extra="forbid")
    trunks: dict[str, dict[str, Any]]
