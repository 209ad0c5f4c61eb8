"""`GET /api/v1/cluster`: this node's role and its database's health (issues 14, 15).

For the wallboard and for people on duty: whether this node is the leader
(takes calls), a follower, draining or fenced, and whether the store is riding
out a database outage — since when and how many writes wait in memory to be
written when it returns (`records.protocol.StoreHealth`). It reads no table,
so it answers during the outage it reports.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..cluster.role import NodeRole
from ..incidents import SlaSummary, format_timestamp
from ..records.protocol import StoreHealth
from .context import Call, guarded
from .openapi import Operation, documented
from .schemas import Time

__all__ = ["ClusterStatus", "no_sla", "node_role", "routes", "status_json"]


class StoreHealthDoc(BaseModel):
    model_config = ConfigDict(extra="forbid")

    engine: Literal["sqlite", "postgresql"]
    available: bool = Field(description="False while the store rides out a database outage.")
    outage_since: Time
    reason: str | None
    queued_writes: int = Field(description="Writes waiting in memory for the database.")


class ClusterStatus(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["leader", "follower", "draining", "fenced"]
    store: StoreHealthDoc


def status_json(health: StoreHealth, role: NodeRole | None) -> dict[str, Any]:
    return {
        "role": role.role.value if role is not None else "leader",
        "store": {
            "engine": health.engine,
            "available": health.available,
            "outage_since": format_timestamp(health.outage_since),
            "reason": health.reason,
            "queued_writes": health.queued_writes,
        },
    }


def no_sla(since: float) -> SlaSummary:
    """What the wallboard shows for today's SLA while the database is away."""
    return SlaSummary(
        since=since, until=None, arrived=0, answered=0, within_s={}, abandoned=0,
        interrupted=0, active=0, mean_answer_s=None, max_answer_s=None,
    )  # fmt: skip


def node_role(live: object) -> NodeRole | None:
    """The centre's `NodeRole` (centre.Centre.role), if the live view has one."""
    role = getattr(live, "role", None)
    return role if isinstance(role, NodeRole) else None


@documented(
    Operation(
        summary="This node's role and its database's health.",
        description="Answers during a database outage (it reads no table).",
        answer=ClusterStatus,
        answer_description="Role and store health.",
        errors=(401, 403),
    )
)
@guarded("supervisor")
async def cluster_status(call: Call) -> Response:
    return JSONResponse(status_json(call.ctx.store.health(), node_role(call.ctx.live)))


def routes() -> list[Route]:
    return [Route("/api/v1/cluster", cluster_status, methods=["GET"])]
