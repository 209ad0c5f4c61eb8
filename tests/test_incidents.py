"""Incident rules, records and JSON shape (pure: no store, no clock)."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callcenter112.incidents import (
    ANONYMOUS,
    INCIDENT_CSV_COLUMNS,
    TIMESTAMP_FIELDS,
    TRANSITIONS,
    CallLeg,
    Category,
    Disposition,
    Incident,
    IncidentError,
    IncidentRecord,
    LegQuality,
    LegRole,
    Recording,
    RecordingStatus,
    SlaSummary,
    Status,
    TimelineEntry,
    callback_number,
    canonical_json,
    check_leg_allowed,
    check_transition,
    format_incident_id,
    format_timestamp,
    format_timestamp_us,
    incident_csv_row,
    incident_day,
    incident_to_json,
    needs_callback,
    normalize_caller,
    parse_timestamp,
    validate_disposition_changes,
)

T0 = datetime(2026, 11, 28, 10, 0, 0, tzinfo=UTC).timestamp()


def _incident(**kw: object) -> Incident:
    base: dict[str, object] = {
        "id": "20261128-0042",
        "caller": "081234567890",
        "arrived_at": T0,
        "updated_at": T0,
    }
    base.update(kw)
    return Incident(**base)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- lifecycle


@given(st.sampled_from(list(Status)), st.sampled_from(list(Status)))
def test_every_status_pair_follows_the_table(current: Status, new: Status) -> None:
    allowed = current is Status.ACTIVE and new is not Status.ACTIVE
    if allowed:
        check_transition(current, new)
    else:
        with pytest.raises(IncidentError) as err:
            check_transition(current, new)
        assert err.value.status_hint == 409
    assert (new in TRANSITIONS[current]) is allowed


def test_final_states_never_leave() -> None:
    for status in (Status.COMPLETED, Status.ABANDONED, Status.INTERRUPTED):
        assert TRANSITIONS[status] == frozenset()


def test_dropped_calls_need_a_callback() -> None:
    assert needs_callback(Status.ABANDONED)
    assert needs_callback(Status.INTERRUPTED)
    assert not needs_callback(Status.COMPLETED)
    assert not needs_callback(Status.ACTIVE)


@given(st.sampled_from(list(Status)), st.sampled_from(list(LegRole)), st.booleans())
def test_leg_rule_over_every_status_and_role(status: Status, role: LegRole, cb_open: bool) -> None:
    allowed = role is LegRole.CALLBACK or status is Status.ACTIVE or cb_open
    if allowed:
        check_leg_allowed(status, role, callback_leg_open=cb_open)
    else:
        with pytest.raises(IncidentError, match="only get a callback leg"):
            check_leg_allowed(status, role, callback_leg_open=cb_open)


def test_callback_number_withheld_caller_gets_no_number() -> None:
    assert callback_number(ANONYMOUS) is None
    assert callback_number("081234") == "081234"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("+6281234567890", "081234567890"),
        ("+62 812-3456-7890", "081234567890"),
        ("006281234567890", "081234567890"),
        ("6281234567890", "081234567890"),
        ("081234567890", "081234567890"),
        ("(0911) 362202", "0911362202"),
        ("112", "112"),
        ("62", "62"),  # too short to be a national number with country code
        (None, ANONYMOUS),
        ("", ANONYMOUS),
        ("Anonymous", ANONYMOUS),
        ("restricted", ANONYMOUS),
    ],
)
def test_normalize_caller(raw: str | None, expected: str) -> None:
    assert normalize_caller(raw) == expected


# --------------------------------------------------------------------------- ids and time


def test_incident_id_is_day_and_sequence() -> None:
    assert incident_day(T0) == "20261128"
    assert format_incident_id("20261128", 42) == "20261128-0042"
    assert format_incident_id("20261128", 12345) == "20261128-12345"


def test_incident_day_with_local_offset() -> None:
    late = datetime(2026, 11, 28, 16, 30, tzinfo=UTC).timestamp()
    assert incident_day(late) == "20261128"
    assert incident_day(late, utc_offset_s=9 * 3600) == "20261129"  # WIT, Kota Ambon


def test_format_timestamp_ms_and_z() -> None:
    assert format_timestamp(T0) == "2026-11-28T10:00:00.000Z"
    assert format_timestamp(T0 + 0.1234) == "2026-11-28T10:00:00.123Z"
    assert format_timestamp(T0 + 59.9996) == "2026-11-28T10:01:00.000Z"  # rounds, carries
    assert format_timestamp(None) is None
    assert format_timestamp_us(T0 + 0.000001) == "2026-11-28T10:00:00.000001Z"


@given(st.floats(min_value=0, max_value=4_000_000_000, allow_nan=False))
def test_format_then_parse_round_trips_to_the_millisecond(t: float) -> None:
    text = format_timestamp(t)
    assert text is not None and text.endswith("Z")
    assert abs(parse_timestamp(text) - t) <= 0.0005 + 1e-6


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-28", T0 - 10 * 3600),
        ("2026-11-28T10:00", T0),
        ("2026-11-28T10:00:00Z", T0),
        ("2026-11-28T10:00:00.250Z", T0 + 0.25),
        ("2026-11-28T19:00:00+09:00", T0),
        ("2026-11-28 10:00", T0),
    ],
)
def test_parse_timestamp_forms(text: str, expected: float) -> None:
    assert parse_timestamp(text) == pytest.approx(expected)


def test_parse_timestamp_end_of_day_includes_the_whole_day() -> None:
    assert parse_timestamp("2026-11-28", end_of_day=True) == T0 + 14 * 3600
    # a time is taken literally even with end_of_day
    assert parse_timestamp("2026-11-28T10:00", end_of_day=True) == T0


@pytest.mark.parametrize("text", ["yesterday", "2026-13-01", "28/11/2026", ""])
def test_parse_timestamp_rejects_nonsense(text: str) -> None:
    with pytest.raises(ValueError, match="not a date"):
        parse_timestamp(text)


def test_canonical_json_is_stable() -> None:
    assert canonical_json({"b": 1, "a": [1, "é"]}) == '{"a":[1,"é"],"b":1}'


# --------------------------------------------------------------------------- SLA


def test_sla_is_operator_answered_minus_arrived() -> None:
    assert _incident().sla_s is None
    assert _incident(operator_answered_at=T0 + 12.345).sla_s == pytest.approx(12.345)


def test_sla_summary_ratio() -> None:
    s = SlaSummary(
        since=T0,
        until=None,
        arrived=5,
        answered=4,
        within_s={10: 1, 15: 2, 20: 4},
        abandoned=1,
        interrupted=0,
        active=0,
        mean_answer_s=12.0,
        max_answer_s=19.0,
    )
    assert s.within_ratio(15) == 0.5
    empty = SlaSummary(
        since=T0,
        until=None,
        arrived=0,
        answered=0,
        within_s={10: 0, 15: 0, 20: 0},
        abandoned=0,
        interrupted=0,
        active=0,
        mean_answer_s=None,
        max_answer_s=None,
    )
    assert empty.within_ratio(10) is None


# --------------------------------------------------------------------------- disposition form


def test_disposition_changes_are_normalised() -> None:
    out = validate_disposition_changes(
        {
            "disposition": "prank",
            "category": "fire",
            "location_text": "  Jl. Pattimura  ",
            "description": "",
            "agencies_notified": ["damkar", "damkar", "polisi"],
        }
    )
    assert out == {
        "disposition": Disposition.PRANK,
        "category": Category.FIRE,
        "location_text": "Jl. Pattimura",
        "description": None,
        "agencies_notified": ("damkar", "polisi"),
    }
    assert validate_disposition_changes({"disposition": None, "category": ""}) == {
        "disposition": None,
        "category": Category.UNKNOWN,
    }


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"disposition": "maybe"}, "not one of"),
        ({"category": "weather"}, "not one of"),
        ({"status": "completed"}, "not a disposition field"),
        ({"operator": "op2"}, "not a disposition field"),
        ({"agencies_notified": "damkar"}, "list of agency names"),
        ({"location_text": 5}, "expected text"),
        ({"description": "x" * 10_001}, "longer than"),
        ({"disposition": 3}, "not one of"),
    ],
)
def test_disposition_changes_rejected_with_422(changes: dict[str, object], match: str) -> None:
    with pytest.raises(IncidentError, match=match) as err:
        validate_disposition_changes(changes)
    assert err.value.status_hint == 422


# --------------------------------------------------------------------------- JSON and CSV


def _record() -> IncidentRecord:
    inc = _incident(
        category=Category.MEDICAL,
        status=Status.COMPLETED,
        operator="op1",
        disposition=Disposition.GENUINE,
        agencies_notified=("ambulans",),
        operator_answered_at=T0 + 8.5,
        ended_at=T0 + 60,
    )
    leg = CallLeg(
        id=1,
        incident_id=inc.id,
        role=LegRole.CALLER,
        call_id="abc@host",
        peer="192.0.2.1:5060",
        codec="PCMA",
        started_at=T0,
        ended_at=T0 + 60,
        end_reason="bye",
        quality=LegQuality(packets=3000, lost=3, jitter_ms=4.25),
    )
    rec = Recording(
        id=1,
        incident_id=inc.id,
        path="2026/11/28/20261128-0042.wav",
        status=RecordingStatus.SEALED,
        codec="PCMA",
        channels=2,
        started_at=T0,
        duration_s=60.0,
        size=960_058,
        sha256="ab" * 32,
        sealed_at=T0 + 61,
        seq=7,
    )
    return IncidentRecord(
        incident=inc,
        legs=(leg,),
        events=(TimelineEntry(at=T0, kind="arrived", detail={"trunk": "telkom"}),),
        recordings=(rec,),
    )


def test_incident_json_has_the_design_keys() -> None:
    data = incident_to_json(_record())
    for key in (
        "id",
        "caller",
        "category",
        "status",
        "operator",
        "arrived_at",
        "operator_answered_at",
        "ended_at",
        "recordings",
        "events",
        "legs",
        "disposition",
        *TIMESTAMP_FIELDS,
    ):
        assert key in data, key
    assert data["arrived_at"] == "2026-11-28T10:00:00.000Z"
    assert data["operator_answered_at"] == "2026-11-28T10:00:08.500Z"
    assert data["sla_s"] == 8.5
    assert data["recordings"] == [
        {
            "path": "2026/11/28/20261128-0042.wav",
            "sha256": "ab" * 32,
            "channels": 2,
            "duration_s": 60.0,
            "codec": "PCMA",
            "size": 960_058,
            "status": "sealed",
            "started_at": "2026-11-28T10:00:00.000Z",
            "sealed_at": "2026-11-28T10:01:01.000Z",
            "seq": 7,
            "deleted_at": None,
            "deleted_by": None,
        }
    ]
    assert data["events"] == [
        {"at": "2026-11-28T10:00:00.000Z", "kind": "arrived", "detail": {"trunk": "telkom"}}
    ]
    legs = data["legs"]
    assert isinstance(legs, list)
    assert legs[0]["quality"] == {"packets": 3000, "lost": 3, "jitter_ms": 4.25}
    json.dumps(data)  # serialisable as is


def test_list_row_json_leaves_out_the_collections() -> None:
    data = incident_to_json(_record().incident)
    assert "recordings" not in data and "events" not in data and "legs" not in data


def test_csv_row_matches_columns_and_round_trips_through_csv() -> None:
    inc = _record().incident
    row = incident_csv_row(inc)
    assert len(row) == len(INCIDENT_CSV_COLUMNS)
    buf = io.StringIO()
    csv.writer(buf).writerows([INCIDENT_CSV_COLUMNS, row])
    parsed = list(csv.DictReader(io.StringIO(buf.getvalue())))
    assert parsed[0]["id"] == "20261128-0042"
    assert parsed[0]["agencies_notified"] == "ambulans"
    assert parsed[0]["legal_hold"] == "no"
    assert parsed[0]["answered_at"] == ""
    assert parsed[0]["sla_s"] == "8.5"


# --------------------------------------------------------------------------- issue 12


def test_categories_are_the_citys_not_a_code_enum() -> None:
    from callcenter112 import incidents

    hearse = Category("hearse")
    assert hearse == "hearse" and hearse.value == "hearse" and str(hearse) == "hearse"
    assert Category("medical") == Category.MEDICAL and f"{Category.FIRE}" == "fire"
    assert json.dumps({"c": Category("flood")}) == '{"c": "flood"}'
    for bad in ("Medical", "", "x" * 33, "fire!", "1st"):
        with pytest.raises(ValueError):
            Category(bad)
    assert [c.value for c in Category][-1] == "unknown"
    # Configured ids decide what may be chosen; the shipped set without a config.
    assert validate_disposition_changes({"category": "hearse"})["category"] == "hearse"
    clean = validate_disposition_changes({"category": "flood"}, categories=("flood", "unknown"))
    assert clean["category"] == "flood"
    with pytest.raises(IncidentError, match="not one of flood"):
        validate_disposition_changes({"category": "hearse"}, categories=("flood", "unknown"))
    assert incidents.Category is Category


def test_sop_dispositions_and_old_silent_rows() -> None:
    assert [d.value for d in Disposition] == [
        "genuine",
        "ghost",
        "prank",
        "information",
        "wrong_number",
        "test",
        "duplicate",
    ]
    assert Disposition("silent") is Disposition.GHOST  # rows written before issue 12
    clean = validate_disposition_changes({"disposition": "information"})
    assert clean["disposition"] is Disposition.INFORMATION


def test_flags_come_from_flag_events_in_order() -> None:
    from callcenter112.incidents import FLAG_EVENT, flag_event_detail, incident_flags

    events = (
        TimelineEntry(
            at=1.0, kind=FLAG_EVENT, detail=flag_event_detail("repeat_caller", earlier=["a"])
        ),
        TimelineEntry(at=2.0, kind="ivr_done", detail={"flag": "silent"}),  # not a flag event
        TimelineEntry(at=3.0, kind=FLAG_EVENT, detail=flag_event_detail("silent")),
        TimelineEntry(at=4.0, kind=FLAG_EVENT, detail=flag_event_detail("repeat_caller")),
        TimelineEntry(at=5.0, kind=FLAG_EVENT, detail={"flag": "bogus"}),
        TimelineEntry(at=6.0, kind=FLAG_EVENT, detail="silent"),
    )
    assert incident_flags(events) == ("repeat_caller", "silent")
    with pytest.raises(IncidentError):
        flag_event_detail("vip")
    inc = Incident(id="X", caller="0812", arrived_at=0.0, updated_at=0.0)
    out = incident_to_json(IncidentRecord(incident=inc, events=events))
    assert out["flags"] == ["repeat_caller", "silent"]
    assert incident_to_json(IncidentRecord(incident=inc))["flags"] == []


def test_time_spent_on_each_disposition() -> None:
    from callcenter112.incidents import disposition_seconds, time_by_disposition

    assert disposition_seconds(100.0, 130.0) == 30.0
    assert disposition_seconds(None, 130.0) is None  # no operator answered
    assert disposition_seconds(100.0, 99.0) == 0.0  # clock skew clamps
    spent = time_by_disposition(
        [
            (Disposition.PRANK, 100.0, 112.0),
            (Disposition.PRANK, 200.0, 208.0),
            (Disposition.GHOST, 300.0, 305.0),
            (Disposition.GENUINE, 400.0, 700.0),
            (Disposition.GHOST, None, 900.0),
        ]
    )
    assert set(spent) == set(Disposition)
    prank = spent[Disposition.PRANK]
    assert (prank.count, prank.total_s, prank.mean_s, prank.max_s) == (2, 20.0, 10.0, 12.0)
    assert spent[Disposition.GHOST].count == 1 and spent[Disposition.TEST].count == 0
    assert spent[Disposition.GENUINE].total_s == 300.0


def test_silent_callers_get_a_priority_callback() -> None:
    from callcenter112.incidents import callback_is_priority

    assert callback_is_priority(["silent"]) and callback_is_priority(
        ("repeat_caller", "silent_confirmed")
    )
    assert not callback_is_priority(["repeat_caller", "watch_listed"]) and not callback_is_priority(
        []
    )
