"""The OpenAPI 3.1 document of the JSON API, generated from the routes and the pydantic models.

Each API endpoint is registered with `documented(Operation(...))`: what it
means (summary, roles), its query parameters and body as models of
`schemas.py`, its answer model and the refusals it can give. `openapi_document`
walks the application's routes — paths, methods and path parameters come from
the routes themselves — and turns every model into a component schema with
pydantic's `models_json_schema`. A route under `/api/` without an operation is
an error, so nothing can be served undocumented; `tests/test_web_api.py` also
validates real answers against the generated schemas.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema
from starlette.routing import BaseRoute, Route

from .schemas import Error

__all__ = ["Operation", "PathParameter", "documented", "openapi_document", "operation_of"]

E = TypeVar("E", bound=Callable[..., Any])

_TITLE = "callcenter112 API"
_DESCRIPTION = (
    "Incidents, queue, operators and callbacks of a 112 emergency call centre, for CAD and "
    'agency systems and national reporting. Errors are JSON `{"error": "..."}` with a 4xx '
    "status: 400 wrong type or unknown field/parameter, 401 not signed in, 403 role or CSRF, "
    "404 unknown id, 409 not allowed now, 413 body over 64 KiB, 415 not JSON, 422 value "
    "outside its vocabulary."
)
_SECURITY_SCHEMES = {
    "bearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "An API token configured with its role.",
    },
    "session": {
        "type": "apiKey",
        "in": "cookie",
        "name": "cc112_session",
        "description": "The console's session; writes also need the X-CSRF-Token header "
        "with the session's CSRF token.",
    },
}
_REF = "#/components/schemas/{model}"


@dataclass(frozen=True, slots=True, kw_only=True)
class PathParameter:
    description: str
    schema: Mapping[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class Operation:
    """What one endpoint means; the route says where it is."""

    summary: str
    description: str = ""
    query: type[BaseModel] | None = None  # each field is an optional query parameter
    body: type[BaseModel] | None = None
    body_required: bool = True
    body_media: str = "application/json"  # or a form: application/x-www-form-urlencoded
    status: int = 200
    answer: type[BaseModel] | None = None  # None: the answer is not JSON we describe
    answer_media: str = "application/json"
    answer_description: str = ""
    errors: tuple[int, ...] = ()
    public: bool = False  # no sign-in needed


_OPERATIONS: dict[Callable[..., Any], Operation] = {}


def documented(operation: Operation) -> Callable[[E], E]:
    """Register `operation` as the meaning of the decorated endpoint."""

    def register(endpoint: E) -> E:
        _OPERATIONS[endpoint] = operation
        return endpoint

    return register


def operation_of(endpoint: Callable[..., Any]) -> Operation | None:
    return _OPERATIONS.get(endpoint)


def _without_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A query parameter is absent rather than null: drop the null branch and the
    model's title/default/format (a bare date is accepted where a time is)."""
    out = {
        k: v for k, v in schema.items() if k not in ("title", "default", "format", "description")
    }
    branches = out.pop("anyOf", None)
    if branches is not None:
        kept = [b for b in branches if b != {"type": "null"}]
        out.update(kept[0] if len(kept) == 1 else {"anyOf": kept})
    return out


def _query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    schema = model.model_json_schema()
    return [
        {
            "name": name,
            "in": "query",
            "required": False,
            "description": prop.get("description", ""),
            "schema": _without_null(prop),
        }
        for name, prop in schema["properties"].items()
    ]


def _json(
    model: type[BaseModel], description: str, media: str = "application/json"
) -> dict[str, Any]:
    schema = {"$ref": _REF.format(model=model.__name__)}
    return {"description": description, "content": {media: {"schema": schema}}}


def openapi_document(
    routes: Iterable[BaseRoute],
    path_parameters: Mapping[str, PathParameter],
    *,
    prefix: str = "/api/",
) -> dict[str, Any]:
    """The document for every `Route` under `prefix`; `LookupError` names a route
    that has no `Operation` or a path parameter without a description."""
    paths: dict[str, dict[str, Any]] = {}
    models: set[type[BaseModel]] = {Error}
    for route in routes:
        if not isinstance(route, Route) or not route.path.startswith(prefix):
            continue
        op = _OPERATIONS.get(route.endpoint)
        if op is None:
            raise LookupError(f"{route.path} has no OpenAPI operation")
        item: dict[str, Any] = {"summary": op.summary}
        if op.description:
            item["description"] = op.description
        if op.public:
            item["security"] = []
        parameters = []
        for name in route.param_convertors:
            if name not in path_parameters:
                raise LookupError(f"{route.path}: path parameter {name!r} is not described")
            p = path_parameters[name]
            parameters.append(
                {
                    "name": name,
                    "in": "path",
                    "required": True,
                    "description": p.description,
                    "schema": dict(p.schema),
                }
            )
        if op.query is not None:
            parameters.extend(_query_parameters(op.query))
        if parameters:
            item["parameters"] = parameters
        if op.body is not None:
            models.add(op.body)
            ref = {"$ref": _REF.format(model=op.body.__name__)}
            item["requestBody"] = {
                "required": op.body_required,
                "content": {op.body_media: {"schema": ref}},
            }
        answer: dict[str, Any] = {"description": op.answer_description or op.summary}
        if op.answer is not None:
            models.add(op.answer)
            answer = _json(op.answer, op.answer_description or op.summary, op.answer_media)
        responses: dict[str, Any] = {str(op.status): answer}
        for code in op.errors:
            responses[str(code)] = {"$ref": "#/components/responses/Error"}
        item["responses"] = responses
        for method in sorted(route.methods or ()):
            if method != "HEAD":
                paths.setdefault(route.path, {})[method.lower()] = item
    _, definitions = models_json_schema(
        [(m, "validation") for m in sorted(models, key=lambda m: m.__name__)],
        ref_template=_REF,
    )
    return {
        "openapi": "3.1.0",
        "info": {"title": _TITLE, "version": "1", "description": _DESCRIPTION},
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}, {"session": []}],
        "components": {
            "securitySchemes": _SECURITY_SCHEMES,
            "responses": {"Error": _json(Error, "The request was refused.")},
            "schemas": definitions.get("$defs", {}),
        },
        "paths": paths,
    }
