"""The OpenAPI 3.1 document of the JSON API, written by hand to say what each call means.

`tests/test_web_api.py` checks it against the app's routes both ways: every
documented path and method exists, every `/api/v1` route is documented.
"""

from __future__ import annotations

from typing import Any

from ..config import CATEGORY_ID, DISPOSITIONS
from ..incidents import FLAGS

__all__ = ["OPENAPI"]

_ERROR = {"$ref": "#/components/responses/Error"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _query(name: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema or {"type": "string"},
    }


def _path(name: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": schema or {"type": "string"},
    }


def _errors(*codes: int) -> dict[str, Any]:
    return {str(c): _ERROR for c in codes}


def _body(schema: dict[str, Any], *, required: bool = True) -> dict[str, Any]:
    return {"required": required, "content": {"application/json": {"schema": schema}}}


_CATEGORY = {
    "type": "string",
    "pattern": CATEGORY_ID,
    "description": "A configured [[category]] id (Ambon: medical, fire, disaster, police, "
    "security, hearse, utility, other) or unknown.",
}
_STATUS = {"type": "string", "enum": ["active", "completed", "abandoned", "interrupted"]}
_DISPOSITION = {
    "type": "string",
    "enum": list(DISPOSITIONS),
}
_TIME = {"type": ["string", "null"], "format": "date-time"}
_INCIDENT_ID = _path("incident_id", "Incident id, `YYYYMMDD-NNNN`.")
_CALLBACK_ID = _path("callback_id", "Callback task id.", {"type": "integer", "minimum": 1})
_USER = _path("user", "Operator SIP user.")

_SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {"error": {"type": "string", "description": "What was wrong."}},
    },
    "Incident": {
        "type": "object",
        "description": "The incident JSON of DESIGN §4. A list row leaves out legs, events, "
        "recordings and callbacks.",
        "required": ["id", "caller", "category", "status", "arrived_at"],
        "properties": {
            "id": {"type": "string"},
            "caller": {"type": "string", "description": "National form (0812…) or anonymous."},
            "caller_name": {"type": ["string", "null"]},
            "trunk": {"type": ["string", "null"]},
            "dialled": {"type": ["string", "null"]},
            "call_id": {"type": ["string", "null"]},
            "category": _CATEGORY,
            "language": {"type": ["string", "null"]},
            "status": _STATUS,
            "operator": {"type": ["string", "null"]},
            "disposition": {"anyOf": [_DISPOSITION, {"type": "null"}]},
            "flags": {
                "type": "array",
                "items": {"type": "string", "enum": list(FLAGS)},
                "description": "From the incident's `flag` timeline events (full record only).",
            },
            "location_text": {"type": ["string", "null"]},
            "kecamatan": {"type": ["string", "null"]},
            "kelurahan": {"type": ["string", "null"]},
            "description": {"type": ["string", "null"]},
            "agencies_notified": {"type": "array", "items": {"type": "string"}},
            "legal_hold": {"type": "boolean"},
            "arrived_at": _TIME,
            "answered_at": _TIME,
            "ivr_done_at": _TIME,
            "queued_at": _TIME,
            "offered_at": _TIME,
            "operator_answered_at": _TIME,
            "transferred_at": _TIME,
            "ended_at": _TIME,
            "wrapped_up_at": _TIME,
            "sla_s": {
                "type": ["number", "null"],
                "description": "operator_answered_at - arrived_at, seconds.",
            },
            "legs": {"type": "array", "items": {"type": "object"}},
            "events": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "at": _TIME,
                        "kind": {"type": "string"},
                        "detail": {"type": ["object", "string"]},
                    },
                },
            },
            "recordings": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "path": {"type": "string"},
                        "sha256": {"type": ["string", "null"]},
                        "channels": {"type": ["integer", "null"]},
                        "duration_s": {"type": ["number", "null"]},
                    },
                },
            },
            "callbacks": {"type": "array", "items": _ref("Callback")},
        },
    },
    "IncidentList": {
        "type": "object",
        "required": ["incidents", "total", "limit", "offset"],
        "properties": {
            "incidents": {"type": "array", "items": _ref("Incident")},
            "total": {"type": "integer", "description": "Incidents matching the filters."},
            "limit": {"type": "integer"},
            "offset": {"type": "integer"},
        },
    },
    "Disposition": {
        "type": "object",
        "additionalProperties": False,
        "description": "Only the fields sent are changed; null or empty clears a field.",
        "properties": {
            "disposition": {"anyOf": [_DISPOSITION, {"type": "null"}]},
            "category": _CATEGORY,
            "location_text": {"type": ["string", "null"], "maxLength": 10000},
            "kecamatan": {"type": ["string", "null"], "description": "From web.city_areas."},
            "kelurahan": {
                "type": ["string", "null"],
                "description": "'Kelurahan X' or 'Desa X' of that kecamatan.",
            },
            "description": {"type": ["string", "null"], "maxLength": 10000},
            "agencies_notified": {
                "type": "array",
                "items": {"type": "string", "description": "An [[agency]] name."},
            },
        },
    },
    "DispositionSaved": {
        "type": "object",
        "properties": {
            "incident_id": {"type": "string"},
            "changed": {
                "type": "object",
                "description": "field → [old, new] for the fields that changed.",
                "additionalProperties": {"type": "array"},
            },
        },
    },
    "WaitingCaller": {
        "type": "object",
        "properties": {
            "incident_id": {"type": "string"},
            "caller": {"type": "string"},
            "category": _CATEGORY,
            "language": {"type": "string"},
            "arrived_at": _TIME,
            "wait_s": {"type": "number"},
            "position": {"type": "integer", "description": "1 = next to be offered."},
            "offered_to": {"type": ["string", "null"]},
        },
    },
    "ActiveCall": {
        "type": "object",
        "properties": {
            "incident_id": {"type": "string"},
            "caller": {"type": "string"},
            "category": _CATEGORY,
            "phase": {
                "type": "string",
                "enum": [
                    "ivr",
                    "queue",
                    "ringing",
                    "talking",
                    "hold",
                    "transfer",
                    "conference",
                    "ended",
                ],
            },
            "operator": {"type": ["string", "null"]},
            "agency": {"type": ["string", "null"]},
            "arrived_at": _TIME,
            "phase_since": _TIME,
            "duration_s": {"type": "number"},
            "supervisors": {"type": "array", "items": {"type": "object"}},
        },
    },
    "Queue": {
        "type": "object",
        "properties": {
            "at": _TIME,
            "waiting": {"type": "array", "items": _ref("WaitingCaller")},
            "calls": {"type": "array", "items": _ref("ActiveCall")},
            "max_calls": {"type": "integer"},
        },
    },
    "Operator": {
        "type": "object",
        "properties": {
            "user": {"type": "string"},
            "name": {"type": "string"},
            "skills": {"type": "array", "items": {"type": "string"}},
            "state": {
                "type": "string",
                "enum": ["offline", "available", "reserved", "on_call", "wrap_up", "paused"],
            },
            "since": _TIME,
            "state_s": {"type": "number"},
            "reason": {"type": ["string", "null"]},
            "calls_today": {"type": "integer"},
            "missed": {"type": "integer"},
            "incident_id": {"type": ["string", "null"]},
            "registered": {"type": "boolean"},
            "reachable": {"type": "boolean"},
        },
    },
    "PauseResult": {
        "type": "object",
        "properties": {
            "ok": {"type": "boolean"},
            "user": {"type": "string"},
            "paused": {"type": "boolean"},
            "reason": {"type": ["string", "null"]},
        },
    },
    "Callback": {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "incident_id": {"type": "string"},
            "number": {"type": ["string", "null"]},
            "no_number": {"type": "boolean", "description": "The caller withheld the number."},
            "reason": {"type": "string"},
            "status": {"type": "string", "enum": ["open", "taken", "closed"]},
            "created_at": _TIME,
            "taken_by": {"type": ["string", "null"]},
            "taken_at": _TIME,
            "closed_by": {"type": ["string", "null"]},
            "closed_at": _TIME,
            "outcome": {"type": ["string", "null"]},
            "note": {"type": ["string", "null"]},
            "attempts": {"type": "array", "items": {"type": "object"}},
        },
    },
    "Sla": {
        "type": "object",
        "description": "Answer time is operator_answered_at - arrived_at (NENA: from the INVITE "
        "reaching the trunk).",
        "properties": {
            "since": _TIME,
            "until": _TIME,
            "arrived": {"type": "integer"},
            "answered": {"type": "integer"},
            "abandoned": {"type": "integer"},
            "interrupted": {"type": "integer"},
            "active": {"type": "integer"},
            "mean_answer_s": {"type": ["number", "null"]},
            "max_answer_s": {"type": ["number", "null"]},
            "answered_within": {
                "type": "object",
                "description": "For 10, 15 and 20 s: count and share of answered calls.",
                "additionalProperties": {
                    "type": "object",
                    "properties": {
                        "count": {"type": "integer"},
                        "ratio": {"type": ["number", "null"]},
                    },
                },
            },
        },
    },
}

_READERS = "Roles: supervisor, auditor, admin (or an API token of those roles)."
_DESK = "Roles: operator, supervisor, admin."

OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "callcenter112 API",
        "version": "1",
        "description": "Incidents, queue, operators and callbacks of a 112 emergency call "
        "centre, for CAD and agency systems and national reporting. Errors are JSON "
        '`{"error": "..."}` with a 4xx status: 400 wrong type or unknown field/parameter, '
        "401 not signed in, 403 role or CSRF, 404 unknown id, 409 not allowed now, 413 "
        "body over 64 KiB, 415 not JSON, 422 value outside its vocabulary.",
    },
    "servers": [{"url": "/"}],
    "security": [{"bearer": []}, {"session": []}],
    "components": {
        "securitySchemes": {
            "bearer": {
                "type": "http",
                "scheme": "bearer",
                "description": "An API token configured with its role.",
            },
            "session": {
                "type": "apiKey",
                "in": "cookie",
                "name": "cc112_session",
                "description": "The console's session; writes also need the X-CSRF-Token "
                "header with the session's CSRF token.",
            },
        },
        "responses": {"Error": _json(_ref("Error"), "The request was refused.")},
        "schemas": _SCHEMAS,
    },
    "paths": {
        "/api/v1/openapi.json": {
            "get": {
                "summary": "This document.",
                "security": [],
                "responses": {"200": {"description": "OpenAPI 3.1 document."}},
            }
        },
        "/api/v1/incidents": {
            "get": {
                "summary": "Incidents matching the filters, newest arrival first.",
                "description": _READERS,
                "parameters": [
                    _query("since", "Arrived at or after (ISO 8601; no offset = UTC)."),
                    _query("until", "Arrived before (a bare date includes that whole day)."),
                    _query("caller", "Caller number in any spelling (+62…, 0812…)."),
                    _query("category", "IVR or corrected category.", _CATEGORY),
                    _query("status", "Incident status.", _STATUS),
                    _query("operator", "Operator SIP user."),
                    _query("disposition", "Operator's disposition.", _DISPOSITION),
                    _query(
                        "limit", "Page size.", {"type": "integer", "minimum": 1, "maximum": 500}
                    ),
                    _query("offset", "Rows to skip.", {"type": "integer", "minimum": 0}),
                ],
                "responses": {
                    "200": _json(_ref("IncidentList"), "A page of incidents."),
                    **_errors(400, 401, 403, 422),
                },
            }
        },
        "/api/v1/incidents/{incident_id}": {
            "get": {
                "summary": "One incident with its legs, timeline, recordings and callbacks.",
                "description": _READERS,
                "parameters": [_INCIDENT_ID],
                "responses": {
                    "200": _json(_ref("Incident"), "The incident."),
                    **_errors(401, 403, 404),
                },
            }
        },
        "/api/v1/incidents/{incident_id}/disposition": {
            "post": {
                "summary": "Save the after-call form (audit-logged as disposition_change).",
                "description": "Roles: operator (their own incidents), supervisor, admin.",
                "parameters": [_INCIDENT_ID],
                "requestBody": _body(_ref("Disposition")),
                "responses": {
                    "200": _json(_ref("DispositionSaved"), "What changed."),
                    **_errors(400, 401, 403, 404, 413, 415, 422),
                },
            }
        },
        "/api/v1/queue": {
            "get": {
                "summary": "Callers waiting (in offer order) and calls up now.",
                "description": _DESK,
                "responses": {
                    "200": _json(_ref("Queue"), "The live queue."),
                    **_errors(401, 403),
                },
            }
        },
        "/api/v1/operators": {
            "get": {
                "summary": "Every configured operator with live state.",
                "description": _DESK,
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {
                                "operators": {"type": "array", "items": _ref("Operator")}
                            },
                        },
                        "Operators.",
                    ),
                    **_errors(401, 403),
                },
            }
        },
        "/api/v1/operators/{user}/pause": {
            "post": {
                "summary": "Pause an operator (no calls offered); audit-logged.",
                "description": "Operators pause themselves; supervisors and admins anyone.",
                "parameters": [_USER],
                "requestBody": _body(
                    {
                        "type": "object",
                        "required": ["reason"],
                        "additionalProperties": False,
                        "properties": {
                            "reason": {"type": "string", "maxLength": 64},
                            "note": {"type": "string", "maxLength": 200},
                        },
                    }
                ),
                "responses": {
                    "200": _json(_ref("PauseResult"), "Paused."),
                    **_errors(400, 401, 403, 404, 409, 413, 415, 422),
                },
            }
        },
        "/api/v1/operators/{user}/unpause": {
            "post": {
                "summary": "Make a paused operator available again; audit-logged.",
                "description": "Operators resume themselves; supervisors and admins anyone.",
                "parameters": [_USER],
                "requestBody": _body(
                    {"type": "object", "additionalProperties": False}, required=False
                ),
                "responses": {
                    "200": _json(_ref("PauseResult"), "Available."),
                    **_errors(400, 401, 403, 404, 409),
                },
            }
        },
        "/api/v1/callbacks": {
            "get": {
                "summary": "Callback tasks of dropped calls, oldest first.",
                "description": _DESK,
                "parameters": [
                    _query("status", "open (default) or all.", {"enum": ["open", "all"]}),
                    _query("incident_id", "Only this incident's tasks."),
                    _query(
                        "limit", "Most rows.", {"type": "integer", "minimum": 1, "maximum": 500}
                    ),
                ],
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {
                                "callbacks": {"type": "array", "items": _ref("Callback")}
                            },
                        },
                        "Callback tasks.",
                    ),
                    **_errors(400, 401, 403, 422),
                },
            }
        },
        "/api/v1/callbacks/{callback_id}/take": {
            "post": {
                "summary": "Claim a callback task (audit-logged).",
                "description": "force=true takes a task someone else holds (supervisors).",
                "parameters": [_CALLBACK_ID],
                "requestBody": _body(
                    {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {"force": {"type": "boolean"}},
                    },
                    required=False,
                ),
                "responses": {
                    "200": _json(_ref("Callback"), "The task, now taken."),
                    **_errors(400, 401, 403, 404, 409),
                },
            }
        },
        "/api/v1/callbacks/{callback_id}/attempts": {
            "post": {
                "summary": "Note one try at calling back.",
                "description": _DESK,
                "parameters": [_CALLBACK_ID],
                "requestBody": _body(
                    {
                        "type": "object",
                        "required": ["result"],
                        "additionalProperties": False,
                        "properties": {
                            "result": {
                                "type": "string",
                                "enum": ["answered", "no_answer", "busy", "failed"],
                            },
                            "note": {"type": "string", "maxLength": 500},
                        },
                    }
                ),
                "responses": {
                    "201": _json(
                        {
                            "type": "object",
                            "properties": {
                                "callback_id": {"type": "integer"},
                                "attempt_id": {"type": "integer"},
                            },
                        },
                        "Attempt recorded.",
                    ),
                    **_errors(400, 401, 403, 404, 409, 422),
                },
            }
        },
        "/api/v1/callbacks/{callback_id}/close": {
            "post": {
                "summary": "Close a callback task with its outcome (audit-logged).",
                "description": _DESK,
                "parameters": [_CALLBACK_ID],
                "requestBody": _body(
                    {
                        "type": "object",
                        "required": ["outcome"],
                        "additionalProperties": False,
                        "properties": {
                            "outcome": {"type": "string", "maxLength": 200},
                            "note": {"type": "string", "maxLength": 500},
                        },
                    }
                ),
                "responses": {
                    "200": _json(_ref("Callback"), "The closed task."),
                    **_errors(400, 401, 403, 404, 409, 422),
                },
            }
        },
        "/api/v1/sla": {
            "get": {
                "summary": "Answer-time figures for calls that arrived in [since, until).",
                "description": _READERS + " since defaults to the centre's local midnight.",
                "parameters": [
                    _query("since", "ISO 8601; default: today 00:00 local time."),
                    _query("until", "ISO 8601; default: now."),
                ],
                "responses": {
                    "200": _json(_ref("Sla"), "SLA figures."),
                    **_errors(400, 401, 403),
                },
            }
        },
    },
}
