"""Where a SIP message came from or goes to: transport, address, connection.

Shared by the transport (`net/`), the transaction layer and the registrar,
so that a response or an in-dialog request can go back on the same TCP
connection a message arrived on (RFC 3261 §18.2.2).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["Peer", "TransportName"]

TransportName = Literal["udp", "tcp"]


@dataclass(frozen=True, slots=True)
class Peer:
    transport: TransportName
    host: str
    port: int
    # The TCP connection a message arrived on (None for UDP, or for a TCP
    # destination that has no connection yet).
    conn_id: int | None = None

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.transport}:{host}:{self.port}"

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)
