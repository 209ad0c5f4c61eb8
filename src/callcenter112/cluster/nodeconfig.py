"""The configuration of one callcenter112 node behind the Kamailio edge, for
scripts/cluster and the failover benchmark (one home for both)."""

from __future__ import annotations

from pathlib import Path
from typing import Final

__all__ = ["ROOT", "node_config"]

ROOT: Final = Path(__file__).resolve().parents[3]


def node_config(
    *,
    listen: str,
    sip_port: int,
    web_port: int,
    rtp: tuple[int, int],
    data: Path,
    edge_networks: tuple[str, ...],
    operators: tuple[tuple[str, str], ...] = (("op1", "secret1"),),
) -> str:
    """A node whose only trunk is the edge (calls arrive from the edge's address)."""
    ops = "".join(
        f'[[operator]]\nuser = "{user}"\npassword = "{password}"\n'
        'skills = ["medical", "fire", "disaster", "police"]\n'
        for user, password in operators
    )
    allow = ", ".join(f'"{n}"' for n in edge_networks)
    return f"""
[sip]
listen = "{listen}:{sip_port}"
advertise = "{listen}"
trace = true
[rtp]
ports = "{rtp[0]}-{rtp[1]}"
[storage]
database = "{data / "db.sqlite3"}"
recordings = "{data / "recordings"}"
[web]
listen = "{listen}:{web_port}"
city_areas = "{ROOT / "config" / "ambon-areas.toml"}"
[ivr]
prompts = "{ROOT / "sounds"}"
menu_tries = 1
input_timeout_s = 1
[[trunk]]
name = "edge"
allow = [{allow}]
numbers = ["112", "urn:service:sos"]
{ops}
[[user]]
name = "supervisor"
role = "supervisor"
password = "super-secret"
"""
