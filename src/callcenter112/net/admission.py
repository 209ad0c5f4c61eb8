"""The edge's glue: puts `sip/admission.py`'s policy and the TLS listener on a transport.

The composition root (today centre.py) calls `install_edge()` once, after
building its `SipEndpoint` and before starting it. The policy's notion of a
known operator address is the `SourceGuard` the registrar path already feeds
(`record_success` after a good digest), so no other hook is needed.
"""

from __future__ import annotations

import os
import ssl
from typing import TYPE_CHECKING

from ..sip.admission import EdgePolicy
from ..sip.ratelimit import SourceGuard
from .sip_transport import SipTransport

if TYPE_CHECKING:
    from ..config import Config

__all__ = ["TlsSetupError", "client_tls_context", "install_edge", "server_tls_context"]


class TlsSetupError(OSError):
    """The TLS certificate or key cannot be used; names the key and why. An
    OSError, so that start-up reports it like a port it cannot listen on."""


def server_tls_context(certificate: str, key: str) -> ssl.SSLContext:
    """A server context for SIP over TLS (RFC 3261 §26.2.1: TLS, not SSL;
    TLS 1.2 is the floor of RFC 8446's era and every softphone has it).
    No client certificate is asked for: phones authenticate by digest."""
    for name, path in (("sip.tls_certificate", certificate), ("sip.tls_key", key)):
        if not os.path.isfile(path):
            raise TlsSetupError(f"{name}: no such file {path}")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(certificate, key)
    except (ssl.SSLError, OSError) as exc:
        raise TlsSetupError(
            f"sip.tls_certificate/tls_key: {certificate} / {key} cannot be used: {exc}"
        ) from None
    return ctx


def client_tls_context(ca_file: str | None) -> ssl.SSLContext:
    """The context for TLS connections the centre opens (to a trunk, an
    agency's carrier, a phone whose connection closed): the peer's
    certificate must chain to `ca_file` (PEM, `sip.tls_ca`) or, when that is
    unset, to the system's CAs, and must name the host we dial
    (`check_hostname`, RFC 5922 §7.2). TLS 1.2 or later, as inbound."""
    if ca_file is not None and not os.path.isfile(ca_file):
        raise TlsSetupError(f"sip.tls_ca: no such file {ca_file}")
    try:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca_file)
    except (ssl.SSLError, OSError) as exc:
        raise TlsSetupError(f"sip.tls_ca: {ca_file} cannot be used: {exc}") from None
    if ca_file is not None and not ctx.get_ca_certs():
        raise TlsSetupError(f"sip.tls_ca: {ca_file} holds no CA certificate")
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def install_edge(
    transport: SipTransport,
    config: Config,
    guard: SourceGuard,
    *,
    now: float,
    max_transactions: int,
) -> EdgePolicy:
    """Admission before parse for every trunk in `config`, the TLS listener
    when `sip.tls_listen` is set, and outgoing TLS (`sip.tls_ca`). Call
    before `transport.start()`."""
    networks = [n for trunk in config.trunk for n in trunk.networks]
    policy = EdgePolicy(
        trunk_networks=networks, guard=guard, now=now, max_transactions=max_transactions
    )
    transport.admission = policy
    sip = config.sip
    if sip.tls_listen is not None:
        certificate, key = str(config.path(sip.tls_certificate)), str(config.path(sip.tls_key))
        # Loaded by start(), where a failure stops start-up with its message.
        transport.tls_loader = lambda: server_tls_context(certificate, key)
        transport.tls_host = sip.tls_listen.host
        transport.tls_port = sip.tls_listen.port
    ca = str(config.path(sip.tls_ca)) if sip.tls_ca else None
    transport.client_tls_loader = lambda: client_tls_context(ca)
    return policy
