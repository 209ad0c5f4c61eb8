"""The Kamailio edge for a site: the shipped template plus the site's values.

`deploy/kamailio/kamailio.cfg` is a fixed script; everything that differs
between sites (listen socket, the nodes, the trunk's networks, the timers) is
written next to it as `local.cfg` (`#!substdef`/`#!define` lines that the
script includes), `dispatcher.list` and a db_text directory for `secfilter`.
`render()` writes that directory; `kamailio -c -f DIR/kamailio.cfg` checks it;
`kamcmd -s unix:DIR/kamailio.ctl …` talks to the running edge.

TLS (DESIGN §8, softphones over TLS/SRTP): with `EdgeTls` the edge also
listens on `tls:HOST:PORT` with the site's certificate and key (`tls.cfg`,
TLS 1.2 or later, no client certificate asked of phones); the nodes are
still reached over UDP on the private network.

Timers (docs/deployment.md): with Kamailio's defaults a dead node is
noticed only when tm's 30 s `fr_timer` ends a probe or a call attempt
(kamailio#3446). The edge's probes are tm transactions too, so `fr_timer_ms`
bounds how long one failed probe takes, and detection of a dead node takes at
most `ping_interval_s + fr_timer_ms * probing_threshold`.
"""

from __future__ import annotations

import argparse
import ipaddress
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

__all__ = [
    "DEFAULT_TIMERS",
    "KAMAILIO_DEFAULT_TIMERS",
    "SCANNER_USER_AGENTS",
    "TEMPLATE",
    "EdgeSettings",
    "EdgeTimers",
    "EdgeTls",
    "Node",
    "main",
    "render",
]

TEMPLATE: Final = Path(__file__).resolve().parents[3] / "deploy" / "kamailio" / "kamailio.cfg"

# Tools that sweep the internet for SIP servers announce themselves; a 112 edge
# has no reason to talk to them (SIPVicious' "friendly-scanner", sipcli, …).
SCANNER_USER_AGENTS: Final = (
    "friendly-scanner",
    "sipvicious",
    "sipcli",
    "sip-scan",
    "VaxSIPUserAgent",
    "sundayddr",
    "iWar",
    "pplsip",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class EdgeTimers:
    """Timers in the edge script; see the module docstring."""

    fr_timer_ms: int  # tm: no reply at all (also bounds each dispatcher probe)
    fr_inv_timer_ms: int  # tm: INVITE after a provisional reply
    node_fr_timer_ms: int  # an INVITE/REGISTER to a node with no reply: fail over
    node_fr_inv_timer_ms: int  # a node sent 1xx but no final answer
    phone_fr_timer_ms: int  # requests from the nodes to phones
    ping_interval_s: int  # dispatcher OPTIONS probes
    probing_threshold: int  # failed probes before a node is skipped
    inactive_threshold: int  # answered probes before it is used again


# What the shipped template uses: a dead node is skipped within ~2 s.
DEFAULT_TIMERS: Final = EdgeTimers(
    fr_timer_ms=1000,
    fr_inv_timer_ms=60_000,
    node_fr_timer_ms=1000,
    node_fr_inv_timer_ms=30_000,
    phone_fr_timer_ms=4000,
    ping_interval_s=1,
    probing_threshold=1,
    inactive_threshold=2,
)

# Kamailio 5.6's own tm defaults (tm README); its dispatcher does not probe at all
# by default (ds_ping_interval 0), so probes every 10 s as common configs do.
KAMAILIO_DEFAULT_TIMERS: Final = EdgeTimers(
    fr_timer_ms=30_000,
    fr_inv_timer_ms=120_000,
    node_fr_timer_ms=30_000,
    node_fr_inv_timer_ms=120_000,
    phone_fr_timer_ms=30_000,
    ping_interval_s=10,
    probing_threshold=1,
    inactive_threshold=1,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Node:
    """One callcenter112 node behind the edge; lower priority value is preferred."""

    host: str
    port: int
    priority: int = 0

    @property
    def uri(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"sip:{host}:{self.port}"


def _pem_file(option: str, path: Path, marker: str) -> None:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        raise ValueError(f"{option}: {path} cannot be read ({exc.strerror})") from None
    if "-----BEGIN " not in text or marker not in text:
        raise ValueError(f"{option}: {path} holds no PEM {marker.lower()}")


@dataclass(frozen=True, slots=True, kw_only=True)
class EdgeTls:
    """The softphones' TLS listener: address, and the PEM certificate (chain) and key."""

    host: str
    port: int
    certificate: Path
    key: Path

    def __post_init__(self) -> None:
        try:
            ipaddress.ip_address(self.host)
        except ValueError:
            raise ValueError(f"tls_listen: {self.host!r} is not an IP address") from None
        if not 0 < self.port < 65536:
            raise ValueError(f"tls_listen: {self.port} is not a port")
        _pem_file("tls_certificate", self.certificate, "CERTIFICATE")
        _pem_file("tls_key", self.key, "PRIVATE KEY")

    @property
    def socket(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"tls:{host}:{self.port}"


@dataclass(frozen=True, slots=True, kw_only=True)
class EdgeSettings:
    listen_host: str
    listen_port: int
    nodes: tuple[Node, ...]
    trunk_nets: tuple[str, ...]
    timers: EdgeTimers = DEFAULT_TIMERS
    pike_sampling_s: int = 2
    pike_requests: int = 30  # per source and sampling unit
    ban_seconds: int = 300
    register_rate: int = 50  # REGISTERs per second from phones, all together
    tcp: bool = False  # also listen on TCP (same port) for softphones
    tls: EdgeTls | None = None  # also listen on TLS for softphones
    blocked_user_agents: tuple[str, ...] = SCANNER_USER_AGENTS
    blocked_addresses: tuple[str, ...] = ()
    extra_defines: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        ipaddress.ip_address(self.listen_host)  # raises ValueError naming the value
        if not 0 < self.listen_port < 65536:
            raise ValueError(f"listen_port: {self.listen_port} is not a port")
        if not self.nodes:
            raise ValueError("nodes: at least one callcenter112 node is needed")
        if not self.trunk_nets:
            raise ValueError("trunk_nets: the trunk's networks are needed (never limited)")
        for net in self.trunk_nets:
            ipaddress.ip_network(net, strict=False)
        for node in self.nodes:
            ipaddress.ip_address(node.host)
            if not 0 < node.port < 65536:
                raise ValueError(f"nodes: {node.port} is not a port")


def _local_cfg(s: EdgeSettings, directory: Path) -> str:
    t = s.timers
    host = f"[{s.listen_host}]" if ":" in s.listen_host else s.listen_host
    lines = [
        "# Written by callcenter112.cluster.kamailio.render: the site's values.",
        f'#!substdef "!LISTEN_SOCKET!udp:{host}:{s.listen_port}!g"',
        *(
            ["#!define WITH_TCP", f'#!substdef "!LISTEN_TCP_SOCKET!tcp:{host}:{s.listen_port}!g"']
            if s.tcp
            else []
        ),
        *(
            [
                "#!define WITH_TLS",
                f'#!substdef "!LISTEN_TLS_SOCKET!{s.tls.socket}!g"',
                f'#!define TLS_CFG "{directory / "tls.cfg"}"',
            ]
            if s.tls
            else []
        ),
        f'#!define TRUNK_NETS "{",".join(s.trunk_nets)}"',
        f'#!define DS_LIST "{directory / "dispatcher.list"}"',
        f'#!define DB_TEXT_DIR "text://{directory / "db"}"',
        f'#!define CTL_SOCKET "unix:{directory / "kamailio.ctl"}"',
        f"#!define FR_TIMER_MS {t.fr_timer_ms}",
        f"#!define FR_INV_TIMER_MS {t.fr_inv_timer_ms}",
        f"#!define NODE_FR_TIMER_MS {t.node_fr_timer_ms}",
        f"#!define NODE_FR_INV_TIMER_MS {t.node_fr_inv_timer_ms}",
        f"#!define PHONE_FR_TIMER_MS {t.phone_fr_timer_ms}",
        f"#!define DS_PING_INTERVAL_S {t.ping_interval_s}",
        f"#!define DS_PROBING_THRESHOLD {t.probing_threshold}",
        f"#!define DS_INACTIVE_THRESHOLD {t.inactive_threshold}",
        f"#!define PIKE_SAMPLING_S {s.pike_sampling_s}",
        f"#!define PIKE_REQS_DENSITY {s.pike_requests}",
        f'#!substdef "!BAN_SECONDS!{s.ban_seconds}!g"',
        f'#!substdef "!REGISTER_RATE!{s.register_rate}!g"',
    ]
    lines += [f"#!define {name} {value}" for name, value in s.extra_defines.items()]
    return "\n".join(lines) + "\n"


def _tls_cfg(tls: EdgeTls) -> str:
    # tls module README, "config": [server:default] is every TLS listener;
    # phones present no certificate. [client:default] is used only if the edge
    # must open a connection to a phone (it normally reuses the phone's own).
    return (
        "# Written by callcenter112.cluster.kamailio.render: the edge's TLS identity.\n"
        "[server:default]\n"
        "method = TLSv1.2+\n"
        "verify_certificate = no\n"
        "require_certificate = no\n"
        f"certificate = {tls.certificate.resolve()}\n"
        f"private_key = {tls.key.resolve()}\n"
        "\n"
        "[client:default]\n"
        "method = TLSv1.2+\n"
        "verify_certificate = no\n"
        "require_certificate = no\n"
    )


def _dispatcher_list(s: EdgeSettings) -> str:
    # setid destination flags priority attrs. Set 1: probed (flag 8), so a
    # standby that answers 503 or a dead node is skipped. Set 2: the same nodes,
    # never probed: the last resort when set 1 has nobody active.
    lines = ["# setid destination flags priority"]
    for node in s.nodes:
        lines.append(f"1 {node.uri} 8 {100 - node.priority}")
    for node in s.nodes:
        lines.append(f"2 {node.uri} 0 {100 - node.priority}")
    return "\n".join(lines) + "\n"


def _secfilter_table(s: EdgeSettings) -> str:
    # db_text: columns from the Debian schema; action 0 = blocklist,
    # type 0 = user agent, type 3 = IP address.
    rows = ["id(int,auto) action(int) type(int) data(string)"]
    n = 0
    for ua in s.blocked_user_agents:
        n += 1
        rows.append(f"{n}:0:0:{ua}")
    for ip in s.blocked_addresses:
        n += 1
        rows.append(f"{n}:0:3:{ip}")
    return "\n".join(rows) + "\n"


def render(settings: EdgeSettings, directory: Path, *, template: Path = TEMPLATE) -> Path:
    """Write a complete Kamailio configuration directory; returns kamailio.cfg's path."""
    directory = directory.resolve()
    (directory / "db").mkdir(parents=True, exist_ok=True)
    cfg = directory / "kamailio.cfg"
    shutil.copyfile(template, cfg)
    (directory / "local.cfg").write_text(_local_cfg(settings, directory))
    (directory / "dispatcher.list").write_text(_dispatcher_list(settings))
    if settings.tls:
        (directory / "tls.cfg").write_text(_tls_cfg(settings.tls))
    (directory / "db" / "version").write_text(
        "table_name(string) table_version(int)\nsecfilter:1\n"
    )
    (directory / "db" / "secfilter").write_text(_secfilter_table(settings))
    return cfg


def _host_port(option: str, text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"{option}: {text!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


def _tls(args: argparse.Namespace) -> EdgeTls | None:
    given = (args.tls_listen, args.tls_certificate, args.tls_key)
    if not any(given):
        return None
    if not all(given):
        raise ValueError("--tls-listen, --tls-certificate and --tls-key go together")
    host, port = _host_port("tls_listen", str(args.tls_listen))
    return EdgeTls(host=host, port=port, certificate=args.tls_certificate, key=args.tls_key)


def _node(text: str) -> Node:
    host, _, rest = text.rpartition(":")
    port, _, priority = rest.partition("/")
    return Node(host=host.strip("[]"), port=int(port), priority=int(priority or 0))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m callcenter112.cluster.kamailio",
        description="Render deploy/kamailio/kamailio.cfg for a site.",
    )
    parser.add_argument("--out", type=Path, required=True, help="directory to write")
    parser.add_argument("--listen", required=True, help="HOST:PORT the edge listens on (UDP)")
    parser.add_argument(
        "--node", action="append", required=True, help="HOST:PORT[/PRIORITY] of a node"
    )
    parser.add_argument("--trunk", action="append", required=True, help="trunk CIDR")
    parser.add_argument("--kamailio-defaults", action="store_true", help="Kamailio's own timers")
    parser.add_argument("--tcp", action="store_true", help="also listen on TCP for softphones")
    parser.add_argument("--tls-listen", help="HOST:PORT for softphones over TLS (e.g. :5061)")
    parser.add_argument("--tls-certificate", type=Path, help="PEM certificate (chain) for TLS")
    parser.add_argument("--tls-key", type=Path, help="PEM private key for TLS")
    args = parser.parse_args(argv)
    try:
        host, port = _host_port("listen", str(args.listen))
        settings = EdgeSettings(
            listen_host=host,
            listen_port=port,
            nodes=tuple(_node(n) for n in args.node),
            trunk_nets=tuple(args.trunk),
            timers=KAMAILIO_DEFAULT_TIMERS if args.kamailio_defaults else DEFAULT_TIMERS,
            tcp=bool(args.tcp),
            tls=_tls(args),
        )
    except ValueError as exc:
        print(f"kamailio render: {exc}", file=sys.stderr)
        return 2
    print(render(settings, args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
