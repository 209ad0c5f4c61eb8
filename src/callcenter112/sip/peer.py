"""Where a SIP message came from or goes to, and how we name ourselves to it.

Shared by the transport (`net/`), the transaction layer and the registrar,
so that a response or an in-dialog request can go back on the same TCP or
TLS connection a message arrived on (RFC 3261 §18.2.2).

The transport names are RFC 3261's (§18, §26.2): "udp", "tcp" and "tls"
(TLS over TCP). TCP and TLS are the reliable ones (§17.1.1.2: no request
retransmission, Timers D/I/J/K zero). `via_value` and `contact_uri` are the
one home of what our Via and Contact say for a transport.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

__all__ = [
    "DEFAULT_PORTS",
    "RELIABLE",
    "Peer",
    "TransportName",
    "contact_uri",
    "uri_transport",
    "via_value",
]

TransportName = Literal["udp", "tcp", "tls"]

# RFC 3261 §17.1.1.2 / §17.2.1: reliable transports skip retransmissions.
RELIABLE: Final[frozenset[str]] = frozenset({"tcp", "tls"})
# RFC 3261 §19.1.2 / RFC 3263 §4.2: 5060 for sip: over udp/tcp, 5061 for TLS.
DEFAULT_PORTS: Final[dict[str, int]] = {"udp": 5060, "tcp": 5060, "tls": 5061}


@dataclass(frozen=True, slots=True)
class Peer:
    transport: TransportName
    host: str
    port: int
    # The TCP/TLS connection a message arrived on (None for UDP, or for a
    # stream destination that has no connection yet).
    conn_id: int | None = None

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.transport}:{host}:{self.port}"

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    @property
    def reliable(self) -> bool:
        return self.transport in RELIABLE


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def via_value(transport: str, host: str, port: int, branch: str) -> str:
    """Our Via for a request sent over `transport` (RFC 3261 §18.1.1, §20.42:
    `SIP/2.0/UDP|TCP|TLS sent-by`), asking for rport (RFC 3581)."""
    return f"SIP/2.0/{transport.upper()} {_bracket(host)}:{port};branch={branch};rport"


def contact_uri(user: str, host: str, port: int, transport: str) -> str:
    """Our Contact (a name-addr) on a leg over `transport`.

    TLS: a `sips:` URI, not `sip:…;transport=tls`. RFC 3261 §26.2.2 says
    "the use of 'transport=tls' has consequently been deprecated, partly
    because it was specific to a single hop of the request", and RFC 5630
    §3.1.3 repeats it; §3.1.2 there makes a SIPS Contact the way to say "reach
    me over TLS", and RFC 3261 §8.1.1.8 / §12.1.1 require a SIPS Contact when
    the Request-URI or the top Route is SIPS anyway. Every in-dialog request
    the far end sends us then comes over TLS, to our TLS listener (`port`).
    TCP keeps `;transport=tcp` (§19.1.1: without it a sip: URI means UDP).
    """
    host = _bracket(host)
    if transport == "tls":
        return f"<sips:{user}@{host}:{port}>"
    params = ";transport=tcp" if transport == "tcp" else ""
    return f"<sip:{user}@{host}:{port}{params}>"


def uri_transport(scheme: str, transport_param: str | None) -> TransportName | None:
    """The transport a `sip:`/`sips:` URI asks for (RFC 3261 §19.1.1,
    §26.2.2; RFC 3263 §4.1 without NAPTR). `sips:` is TLS over TCP, also
    with the legacy `transport=tls` or `transport=tcp`; `sip:` takes its
    `transport` parameter, UDP when absent. None for a transport we do not
    speak (sctp, ws)."""
    param = (transport_param or "").lower()
    if scheme.lower() == "sips":
        return "tls" if param in ("", "tcp", "tls") else None
    if param in ("", "udp"):
        return "udp"
    if param == "tcp":
        return "tcp"
    if param == "tls":
        return "tls"
    return None
