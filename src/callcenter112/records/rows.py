"""Row mapping and the statements shared by the store's write operations (both engines).

Every function here runs on the writer thread (or a reader thread) with the
connection it is given; none of them commits.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import PurePosixPath
from typing import cast

from ..incidents import (
    INCIDENT_FIELDS,
    TIMESTAMP_FIELDS,
    AuditEntry,
    Callback,
    CallbackAttempt,
    CallbackResult,
    CallbackStatus,
    CallLeg,
    Category,
    Disposition,
    Incident,
    IncidentError,
    IncidentQuery,
    LegQuality,
    LegRole,
    Recording,
    RecordingStatus,
    Status,
    canonical_json,
    normalize_caller,
)
from .chain import GENESIS_HASH, audit_entry_hash
from .sql import SqlConnection, SqlRow

__all__: list[str] = []

# --------------------------------------------------------------------------- row mapping

_INCIDENT_COLUMNS = (*INCIDENT_FIELDS, "updated_at")
_EVERY_INCIDENT = IncidentQuery()
_INCIDENT_SELECT = "SELECT " + ", ".join(_INCIDENT_COLUMNS) + " FROM incidents"

Row = SqlRow


def _opt_float(value: object) -> float | None:
    return None if value is None else float(cast(float, value))


def _opt_int(value: object) -> int | None:
    return None if value is None else int(cast(int, value))


def _detail(text: str) -> dict[str, object] | str:
    value = json.loads(text)
    if isinstance(value, dict | str):
        return value
    return {"value": value}


def _incident(row: Row) -> Incident:
    stamps = {name: _opt_float(row[name]) for name in TIMESTAMP_FIELDS[1:]}
    return Incident(
        id=row["id"],
        caller=row["caller"],
        caller_name=row["caller_name"],
        trunk=row["trunk"],
        dialled=row["dialled"],
        call_id=row["call_id"],
        category=Category(row["category"]),
        language=row["language"],
        status=Status(row["status"]),
        operator=row["operator"],
        disposition=None if row["disposition"] is None else Disposition(row["disposition"]),
        location_text=row["location_text"],
        kecamatan=row["kecamatan"],
        kelurahan=row["kelurahan"],
        description=row["description"],
        agencies_notified=tuple(json.loads(row["agencies_notified"])),
        legal_hold=bool(row["legal_hold"]),
        arrived_at=float(row["arrived_at"]),
        updated_at=float(row["updated_at"]),
        **stamps,
    )


def _leg(row: Row) -> CallLeg:
    quality = None
    if row["packets"] is not None:
        quality = LegQuality(
            packets=int(row["packets"]),
            lost=int(row["lost"] or 0),
            jitter_ms=float(row["jitter_ms"] or 0.0),
        )
    return CallLeg(
        id=int(row["id"]),
        incident_id=row["incident_id"],
        role=LegRole(row["role"]),
        call_id=row["call_id"],
        peer=row["peer"],
        codec=row["codec"],
        started_at=float(row["started_at"]),
        ended_at=_opt_float(row["ended_at"]),
        end_reason=row["end_reason"],
        quality=quality,
    )


def _recording(row: Row) -> Recording:
    return Recording(
        id=int(row["id"]),
        incident_id=row["incident_id"],
        path=row["path"],
        status=RecordingStatus(row["status"]),
        codec=row["codec"],
        channels=_opt_int(row["channels"]),
        started_at=float(row["started_at"]),
        duration_s=_opt_float(row["duration_s"]),
        size=_opt_int(row["size"]),
        sha256=row["sha256"],
        sealed_at=_opt_float(row["sealed_at"]),
        seq=_opt_int(row["seq"]),
        prev_hash=row["prev_hash"],
        entry_hash=row["entry_hash"],
        deleted_at=_opt_float(row["deleted_at"]),
        deleted_by=row["deleted_by"],
    )


def _attempt(row: Row) -> CallbackAttempt:
    return CallbackAttempt(
        id=int(row["id"]),
        callback_id=int(row["callback_id"]),
        at=float(row["at"]),
        actor=row["actor"],
        result=CallbackResult(row["result"]),
        note=row["note"],
        leg_id=_opt_int(row["leg_id"]),
    )


def _callback(row: Row, attempts: Iterable[CallbackAttempt] = ()) -> Callback:
    return Callback(
        id=int(row["id"]),
        incident_id=row["incident_id"],
        number=row["number"],
        reason=row["reason"],
        status=CallbackStatus(row["status"]),
        created_at=float(row["created_at"]),
        taken_by=row["taken_by"],
        taken_at=_opt_float(row["taken_at"]),
        closed_by=row["closed_by"],
        closed_at=_opt_float(row["closed_at"]),
        outcome=row["outcome"],
        note=row["note"],
        attempts=tuple(attempts),
        priority=bool(row["priority"]),
        review=row["review"],  # issue 11
    )


def _audit_entry(row: Row) -> AuditEntry:
    detail = json.loads(row["detail"])
    return AuditEntry(
        seq=int(row["seq"]),
        at=float(row["at"]),
        actor=row["actor"],
        action=row["action"],
        target=row["target"],
        detail=detail if isinstance(detail, dict) else {"value": detail},
        prev_hash=row["prev_hash"],
        entry_hash=row["entry_hash"],
    )


# --------------------------------------------------------------------------- inside write ops


def _incident_row(conn: SqlConnection, incident_id: str) -> Row:
    row: Row | None = conn.execute(_INCIDENT_SELECT + " WHERE id = ?", (incident_id,)).fetchone()
    if row is None:
        raise IncidentError(f"no incident {incident_id!r}", status_hint=404)
    return row


def _insert_event(
    conn: SqlConnection,
    incident_id: str,
    at: float,
    kind: str,
    detail: Mapping[str, object] | str | None,
) -> None:
    payload: object = {} if detail is None else detail if isinstance(detail, str) else dict(detail)
    conn.execute(
        "INSERT INTO events (incident_id, at, kind, detail) VALUES (?, ?, ?, ?)",
        (incident_id, at, kind, canonical_json(payload)),
    )


def _insert_audit(
    conn: SqlConnection,
    *,
    at: float,
    actor: str,
    action: str,
    target: str,
    detail: Mapping[str, object] | None,
) -> AuditEntry:
    last: Row | None = conn.execute(
        "SELECT seq, entry_hash FROM audit_log ORDER BY seq DESC LIMIT 1"
    ).fetchone()
    seq = 1 if last is None else int(last["seq"]) + 1
    prev_hash = GENESIS_HASH if last is None else str(last["entry_hash"])
    detail_text = canonical_json(dict(detail or {}))
    stored_detail: dict[str, object] = json.loads(detail_text)
    entry_hash = audit_entry_hash(
        prev_hash=prev_hash,
        seq=seq,
        at=at,
        actor=actor,
        action=action,
        target=target,
        detail=stored_detail,
    )
    conn.execute(
        "INSERT INTO audit_log (seq, at, actor, action, target, detail, prev_hash, entry_hash)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (seq, at, actor, action, target, detail_text, prev_hash, entry_hash),
    )
    return AuditEntry(
        seq=seq,
        at=at,
        actor=actor,
        action=action,
        target=target,
        detail=stored_detail,
        prev_hash=prev_hash,
        entry_hash=entry_hash,
    )


def _insert_callback(
    conn: SqlConnection,
    incident_id: str,
    number: str | None,
    reason: str,
    at: float,
    *,
    priority: bool = False,
) -> int:
    cur = conn.execute(
        "INSERT INTO callbacks (incident_id, number, reason, status, created_at, priority)"
        " VALUES (?, ?, ?, 'open', ?, ?) RETURNING id",
        (incident_id, number, reason, at, int(priority)),
    )
    callback_id = int(cur.fetchone()[0])
    _insert_event(
        conn,
        incident_id,
        at,
        "callback_created",
        {
            "callback_id": callback_id,
            "number": number,
            "no_number": number is None,
            **({"priority": True} if priority else {}),
        },
    )
    return callback_id


def _callback_row(conn: SqlConnection, callback_id: int) -> Row:
    row: Row | None = conn.execute(
        "SELECT * FROM callbacks WHERE id = ?", (callback_id,)
    ).fetchone()
    if row is None:
        raise IncidentError(f"no callback {callback_id}", status_hint=404)
    return row


def _load_callback(conn: SqlConnection, callback_id: int) -> Callback:
    row = _callback_row(conn, callback_id)
    attempts = [
        _attempt(r)
        for r in conn.execute(
            "SELECT * FROM callback_attempts WHERE callback_id = ? ORDER BY at, id",
            (callback_id,),
        )
    ]
    return _callback(row, attempts)


def _check_word(name: str, value: str, *, limit: int = 64) -> None:
    if not value or len(value) > limit:
        raise IncidentError(f"{name}: must be 1-{limit} characters", status_hint=422)


def _relative_path(path: str) -> str:
    """Recording paths are stored relative to the recordings directory, '/'-separated."""
    p = PurePosixPath(path.replace("\\", "/"))
    if p.is_absolute() or ".." in p.parts or not p.parts or str(p) == ".":
        raise IncidentError(
            f"recording path {path!r} must be relative to the recordings directory",
            status_hint=422,
        )
    return str(p)


def _query_where(query: IncidentQuery) -> tuple[str, list[object]]:
    clauses: list[str] = []
    params: list[object] = []
    if query.since is not None:
        clauses.append("arrived_at >= ?")
        params.append(query.since)
    if query.until is not None:
        clauses.append("arrived_at < ?")
        params.append(query.until)
    if query.caller is not None:
        clauses.append("caller = ?")
        params.append(normalize_caller(query.caller))
    for column, value in (
        ("category", query.category),
        ("status", query.status),
        ("operator", query.operator),
        ("disposition", query.disposition),
    ):
        if value is not None:
            clauses.append(f"{column} = ?")
            params.append(str(value))
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params
