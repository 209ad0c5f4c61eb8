"""The configuration of one callcenter112 node behind the Kamailio edge, for
scripts/cluster and the failover benchmark (one home for both)."""

from __future__ import annotations

import hashlib
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
    database: str | None = None,
) -> str:
    """A node whose only trunk is the edge (calls arrive from the edge's address).

    The nodes listen on namespace addresses, not loopback, so their softphone
    secrets are HA1 digests (issue 11: no plain-text password off loopback)
    and the edge is trusted to add Path to REGISTERs. With `database` (a
    postgresql:// DSN shared by the nodes) the node runs in the cluster: the
    leader is the node holding the lock (issue 15); without it, SQLite in `data`."""

    def ha1(user: str, password: str, algorithm: str) -> str:
        return hashlib.new(algorithm, f"{user}:callcenter112:{password}".encode()).hexdigest()

    ops = "".join(
        f'[[operator]]\nuser = "{user}"\n'
        f'ha1_md5 = "{ha1(user, password, "md5")}"\n'
        f'ha1_sha256 = "{ha1(user, password, "sha256")}"\n'
        'skills = ["medical", "fire", "disaster", "police"]\n'
        for user, password in operators
    )
    allow = ", ".join(f'"{n}"' for n in edge_networks)
    store = f'"{database}"' if database else f'"{data / "db.sqlite3"}"'
    cluster = "[cluster]\nenabled = true\n" if database else ""
    return f"""
[sip]
listen = "{listen}:{sip_port}"
advertise = "{listen}"
trace = true
realm = "callcenter112"
path_proxies = [{allow}]
[rtp]
ports = "{rtp[0]}-{rtp[1]}"
[storage]
database = {store}
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
{ops}{cluster}"""
