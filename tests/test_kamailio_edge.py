"""The Kamailio edge (deploy/kamailio/kamailio.cfg) with the real Kamailio on
loopback: the rendered template passes `kamailio -c`; SIPp trunk calls pass
through it to a callcenter112 node and are answered and recorded; a baresip
operator registers through it (Path) and is offered a call through it; a
flood from many loopback addresses is cut by pike while trunk calls go on;
with a dead and a 503-answering destination calls go to the live node and
the dead one is marked down by the probes.

The node's role hook (cluster/role.py) is not wired into centre.py yet, so
the standby node is played by a small UDP responder that answers 503 to
everything, as `NodeRole.probe_answer()`/`refusal()` say a follower does.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from callcenter112.cluster.kamailio import (
    DEFAULT_TIMERS,
    KAMAILIO_DEFAULT_TIMERS,
    EdgeSettings,
    Node,
    render,
)
from harness import (
    baresip_operator,
    caller_scenario,
    dtmf_pcap,
    free_port,
    need,
    operator_online,
    running_server,
    sip_trace,
    sipp_command,
    start_sipp_in,
    talking_to,
    wait_until,
)
from kamailio_edge import running_edge, sip_options
from test_e2e_calls_talk import TALK

# The edge runs on loopback: its REGISTERs carry Path (RFC 3327).
EDGE_TRUST = 'path_proxies = ["127.0.0.0/8"]'

# --------------------------------------------------------------------------- the template


@pytest.mark.parametrize("timers", [DEFAULT_TIMERS, KAMAILIO_DEFAULT_TIMERS])
def test_rendered_template_passes_kamailio_check(tmp_path: Path, timers: object) -> None:
    need("kamailio")
    settings = EdgeSettings(
        listen_host="127.0.0.1",
        listen_port=free_port(),
        nodes=(Node(host="127.0.0.1", port=25070), Node(host="127.0.0.1", port=25080, priority=1)),
        trunk_nets=("203.0.113.0/24", "127.0.0.1/32"),
        timers=timers,  # type: ignore[arg-type]
        blocked_addresses=("192.0.2.66",),
    )
    cfg = render(settings, tmp_path / "edge")
    check = subprocess.run(
        ["kamailio", "-c", "-f", str(cfg)], check=False, capture_output=True, text=True, timeout=30
    )
    assert check.returncode == 0, check.stderr[-3000:]
    assert "config file ok" in check.stdout + check.stderr
    local = (tmp_path / "edge" / "local.cfg").read_text()
    assert f"#!define FR_TIMER_MS {timers.fr_timer_ms}" in local  # type: ignore[attr-defined]
    ds = (tmp_path / "edge" / "dispatcher.list").read_text().splitlines()
    assert "1 sip:127.0.0.1:25070 8 100" in ds and "2 sip:127.0.0.1:25080 0 99" in ds
    assert "0:3:192.0.2.66" in (tmp_path / "edge" / "db" / "secfilter").read_text()


def test_a_broken_template_fails_the_check(tmp_path: Path) -> None:
    """The check above can fail: a template with a typo is refused by kamailio -c."""
    need("kamailio")
    from callcenter112.cluster.kamailio import TEMPLATE

    broken = tmp_path / "broken.cfg"
    broken.write_text(TEMPLATE.read_text().replace("ds_select_dst(", "ds_select_dts(", 1))
    settings = EdgeSettings(
        listen_host="127.0.0.1",
        listen_port=free_port(),
        nodes=(Node(host="127.0.0.1", port=25070),),
        trunk_nets=("127.0.0.1/32",),
    )
    cfg = render(settings, tmp_path / "edge", template=broken)
    check = subprocess.run(
        ["kamailio", "-c", "-f", str(cfg)], check=False, capture_output=True, text=True, timeout=30
    )
    assert check.returncode != 0


@pytest.mark.parametrize(
    ("change", "names"),
    [
        ({"listen_host": "kamailio.local"}, "kamailio.local"),
        ({"listen_port": 0}, "listen_port"),
        ({"nodes": ()}, "nodes"),
        ({"trunk_nets": ()}, "trunk_nets"),
        ({"trunk_nets": ("10.0.0.0/33",)}, "10.0.0.0/33"),
    ],
)
def test_bad_settings_name_what_is_wrong(change: dict[str, object], names: str) -> None:
    base: dict[str, object] = {
        "listen_host": "127.0.0.1",
        "listen_port": 5060,
        "nodes": (Node(host="127.0.0.1", port=25070),),
        "trunk_nets": ("127.0.0.1/32",),
    }
    with pytest.raises(ValueError, match=names.replace(".", r"\.")):
        EdgeSettings(**{**base, **change})  # type: ignore[arg-type]


# --------------------------------------------------------------------------- a standby node


@dataclass
class AnsweringNode:
    port: int
    got: list[str]  # request lines (with the last-resort mark, if any)
    silent: threading.Event  # set it: the node stops answering, as a dead one

    def die(self) -> None:
        self.silent.set()


@contextlib.contextmanager
def answering_node(status: int, reason: str) -> Iterator[AnsweringNode]:
    """A UDP SIP responder on 127.0.0.1:free answering every request with
    `status` (a follower answers 503 to probes and INVITEs). ACKs are not answered."""
    port = free_port()
    got: list[str] = []
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", port))
    sock.settimeout(0.2)
    stop = threading.Event()
    node = AnsweringNode(port=port, got=got, silent=threading.Event())

    def serve() -> None:
        while not stop.is_set():
            try:
                data, addr = sock.recvfrom(65535)
            except OSError:
                continue
            head = data.split(b"\r\n\r\n", 1)[0].decode(errors="replace").split("\r\n")
            marks = [h for h in head if h.lower().startswith("x-callcenter112-last-resort")]
            got.append(head[0] + (" " + marks[0] if marks else ""))
            if head[0].startswith("ACK ") or node.silent.is_set():
                continue
            keep = [h for h in head[1:] if h.split(":", 1)[0].lower() in KEEP]
            keep = [f"{h};tag=standby" if h.lower().startswith("to:") else h for h in keep]
            reply = "\r\n".join([f"SIP/2.0 {status} {reason}", *keep, "Content-Length: 0"])
            sock.sendto((reply + "\r\n\r\n").encode(), addr)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield node
    finally:
        stop.set()
        thread.join(2)
        sock.close()


KEEP = {"via", "from", "to", "call-id", "cseq"}


# --------------------------------------------------------------------------- calls through it


@pytest.mark.peers
def test_trunk_calls_through_the_edge_are_answered_and_recorded(tmp_path: Path) -> None:
    need("sipp", "kamailio")
    number = "0812000001"
    with (
        running_server(tmp_path / "node", sip_extra=EDGE_TRUST) as node,
        running_edge(tmp_path / "edge", nodes=((node.sip_port, 0),)) as edge,
    ):
        scenario = caller_scenario(tmp_path, caller=number, pause_before_ms=300, talk_ms=1500)
        cmd = sipp_command(edge.port, scenario=str(scenario), calls=3, extra=["-aa", "-l", "2"])
        sipp = start_sipp_in(tmp_path / "trunk", cmd, name="trunk via edge")
        assert sipp.wait(90) == 0, sipp.logs() + edge.log()[-3000:]
        # The INVITEs reached the node from the edge, not from SIPp.
        invites = sip_trace(node, "sip_in", "INVITE", edge.port)
        assert len(invites) >= 3
        wait_until(
            lambda: len(node.sql("SELECT id FROM incidents WHERE caller = ?", number)) == 3, 20
        )
        wait_until(
            lambda: (
                not node.sql(
                    "SELECT id FROM incidents WHERE caller = ? AND status = 'active'", number
                )
            ),
            30,
        )
    ids = [r[0] for r in node.sql("SELECT id FROM incidents WHERE caller = ?", number)]
    for incident_id in ids:
        incident = node.incident(incident_id)
        assert incident["answered_at"], incident
        (rec,) = incident["recordings"]
        assert (node.recordings / rec["path"]).stat().st_size > 44  # WAV header + audio


@pytest.mark.peers
@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_operator_registers_through_the_edge_and_is_offered_a_call(
    tmp_path: Path, transport: str
) -> None:
    """The phone registers over UDP or TCP to the edge; the node is reached over UDP."""
    need("sipp", "baresip", "kamailio")
    number = "0812000002"
    with (
        running_server(tmp_path / "node", extra=TALK, sip_extra=EDGE_TRUST) as node,
        running_edge(
            tmp_path / "edge", nodes=((node.sip_port, 0),), tcp=transport == "tcp"
        ) as edge,
        baresip_operator(
            tmp_path / "op1",
            user="op1",
            password="secret1",
            server_port=edge.port,
            transport=transport,
        ) as op1,
    ):
        wait_until(lambda: operator_online(node, "op1"), 20, what="op1 online via the edge")
        # The REGISTER came through the edge with a Path naming it.
        registers = sip_trace(node, "sip_in", "REGISTER", edge.port)
        assert registers, "the REGISTER did not come through the edge"
        scenario = caller_scenario(
            tmp_path, caller=number, pause_before_ms=300, talk_ms=12000, media=[dtmf_pcap("1")]
        )
        cmd = sipp_command(edge.port, scenario=str(scenario), extra=["-aa"])
        caller = start_sipp_in(tmp_path / "trunk", cmd, name="caller via edge")
        wait_until(lambda: talking_to(node, number, "op1"), 40, what="op1 talking")
        # The offer went to the edge (the Path's first hop), not to baresip's port.
        offers = sip_trace(node, "sip_out", "INVITE", edge.port)
        assert any(f":{op1.sip_port}" in o["first_line"] for o in offers), offers
        assert not sip_trace(node, "sip_out", "INVITE", op1.sip_port)
        assert caller.wait(60) == 0, caller.logs()


@pytest.mark.peers
def test_flood_from_many_addresses_is_cut_while_trunk_calls_go_on(tmp_path: Path) -> None:
    """20 loopback addresses each send 150 OPTIONS as fast as they can (3000 in
    all, bounded) while the trunk (127.0.0.1, allow-listed) places calls."""
    need("sipp", "kamailio")
    number = "0812000003"
    with (
        running_server(tmp_path / "node", sip_extra=EDGE_TRUST) as node,
        running_edge(tmp_path / "edge", nodes=((node.sip_port, 0),)) as edge,
    ):
        scenario = caller_scenario(tmp_path, caller=number, pause_before_ms=300, talk_ms=1000)
        cmd = sipp_command(
            edge.port, scenario=str(scenario), calls=6, extra=["-aa", "-r", "2", "-l", "3"]
        )
        trunk = start_sipp_in(tmp_path / "trunk", cmd, name="trunk during flood")
        answered: dict[str, int] = {}

        def flood(source: str) -> None:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.bind((source, 0))
                s.settimeout(0.002)
                local = s.getsockname()[1]
                ok = 0
                for n in range(150):
                    msg = (
                        f"OPTIONS sip:op1@127.0.0.1:{edge.port} SIP/2.0\r\n"
                        f"Via: SIP/2.0/UDP {source}:{local};branch=z9hG4bKf{n}x{local}\r\n"
                        "Max-Forwards: 70\r\n"
                        f"From: <sip:x@{source}>;tag=f{n}\r\nTo: <sip:op1@127.0.0.1>\r\n"
                        f"Call-ID: flood-{source}-{n}\r\nCSeq: 1 OPTIONS\r\n"
                        "Content-Length: 0\r\n\r\n"
                    )
                    s.sendto(msg.encode(), ("127.0.0.1", edge.port))
                    with contextlib.suppress(OSError):
                        while s.recv(65535):
                            ok += 1
                answered[source] = ok

        sources = [f"127.0.9.{i}" for i in range(1, 21)]
        threads = [threading.Thread(target=flood, args=(src,)) for src in sources]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert trunk.wait(90) == 0, trunk.logs()
        banned = edge.lines(r"pike: banning")
        # Every flooding address was banned; the trunk never was.
        for src in sources:
            assert any(f"banning {src} " in line for line in banned), (src, banned[:5])
        assert not any("banning 127.0.0.1 " in line for line in banned)
        # Once banned, an address gets nothing: each got far fewer answers than it sent.
        assert all(n < 100 for n in answered.values()), answered
        # A banned address stays cut off; the trunk still gets its keepalive answered.
        assert sip_options(edge.port, source="127.0.9.1", timeout=0.5) is None
        assert sip_options(edge.port) == "SIP/2.0 200 Keepalive"
    rows = node.sql("SELECT answered_at FROM incidents WHERE caller = ?", number)
    assert len(rows) == 6 and all(r[0] for r in rows)


@pytest.mark.peers
def test_calls_skip_a_dead_and_a_standby_node_and_death_is_detected(tmp_path: Path) -> None:
    need("sipp", "kamailio")
    number = "0812000004"
    dead = free_port()  # nothing listens there
    with (
        running_server(tmp_path / "node", sip_extra=EDGE_TRUST) as node,
        answering_node(503, "Standby") as standby_node,
    ):
        standby, standby_got = standby_node.port, standby_node.got
        nodes = ((standby, 0), (dead, 1), (node.sip_port, 2))
        with running_edge(tmp_path / "edge", nodes=nodes) as edge:
            # The first call may arrive before the probes: it fails over within the
            # transaction (503 → next, silence → next after NODE_FR_TIMER_MS).
            scenario = caller_scenario(tmp_path, caller=number, pause_before_ms=300, talk_ms=800)
            cmd = sipp_command(edge.port, scenario=str(scenario), calls=4, extra=["-aa"])
            sipp = start_sipp_in(tmp_path / "trunk", cmd, name="trunk")
            assert sipp.wait(90) == 0, sipp.logs() + edge.log()[-3000:]
            # Each was marked down, by a failed call or by the probes.
            for port in (dead, standby):
                wait_until(lambda p=port: edge.lines(f"node sip:127.0.0.1:{p} (down|failed)"), 10)
            assert not edge.lines(f"node sip:127.0.0.1:{node.sip_port} (down|failed)")
            # Calls after the marking go straight to the live node.
            time.sleep(2.5)
            failures = len(edge.lines("failed"))
            cmd = sipp_command(edge.port, scenario=str(scenario), calls=2, extra=["-aa"])
            sipp = start_sipp_in(tmp_path / "trunk2", cmd, name="trunk again")
            assert sipp.wait(90) == 0, sipp.logs() + edge.log()[-3000:]
            assert len(edge.lines("failed")) == failures, edge.lines("failed")
        rows = node.sql("SELECT answered_at FROM incidents WHERE caller = ?", number)
        assert len(rows) == 6 and all(r[0] for r in rows)
        assert any(line.startswith("OPTIONS ") for line in standby_got)

    # A node that dies: it answered the probes, then goes silent.
    with running_server(tmp_path / "node2", sip_extra=EDGE_TRUST) as node2:
        with (
            answering_node(200, "OK") as doomed,
            running_edge(
                tmp_path / "edge2", nodes=((doomed.port, 0), (node2.sip_port, 1))
            ) as edge2,
        ):
            time.sleep(2.5)  # a few probes answered
            down = f"node sip:127.0.0.1:{doomed.port} down"
            assert not edge2.lines(down)
            doomed.die()
            died = time.monotonic()
            wait_until(lambda: edge2.lines(down), 15)
            detected = time.monotonic() - died
    # Kamailio's defaults need >= 30 s (fr_timer) for the first failed probe;
    # the shipped timers: ping 1 s + fr_timer 1 s (+ the log poll). The figure
    # itself belongs to scripts/bench failover; this only tells the regimes apart.
    assert detected < 10, detected


@pytest.mark.peers
def test_with_no_node_active_every_node_is_tried_as_a_last_resort(tmp_path: Path) -> None:
    """Both nodes refuse (503, as followers do): the edge tries each again with
    X-Callcenter112-Last-Resort, which a node never refuses; a forged header from
    outside is stripped."""
    need("kamailio")
    with (
        answering_node(503, "Standby") as first,
        answering_node(503, "Standby") as second,
        running_edge(tmp_path / "edge", nodes=((first.port, 0), (second.port, 1))) as edge,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as trunk,
    ):
        trunk.bind(("127.0.0.1", 0))
        trunk.settimeout(10)
        local = trunk.getsockname()[1]
        invite = (
            f"INVITE sip:112@127.0.0.1:{edge.port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{local};branch=z9hG4bKlastresort1;rport\r\n"
            "Max-Forwards: 70\r\nFrom: <sip:0812@127.0.0.1>;tag=lr1\r\n"
            "To: <sip:112@127.0.0.1>\r\nCall-ID: last-resort-1\r\nCSeq: 1 INVITE\r\n"
            f"Contact: <sip:0812@127.0.0.1:{local}>\r\n"
            "X-Callcenter112-Last-Resort: forged\r\nContent-Length: 0\r\n\r\n"
        )
        trunk.sendto(invite.encode(), ("127.0.0.1", edge.port))
        final = ""
        while not final:
            line = trunk.recv(65535).split(b"\r\n", 1)[0].decode()
            if not line.startswith("SIP/2.0 1"):
                final = line
        # RFC 3261 §16.7 step 6: a proxy turns a 503 it got into a 500 upstream.
        assert final.startswith("SIP/2.0 500"), final
        assert edge.lines("last resort")
    invites = [g for g in first.got + second.got if g.startswith("INVITE ")]
    # Each node once normally (the forged mark stripped), once as a last resort.
    assert len(invites) == 4, invites
    marked = [g for g in invites if "Last-Resort: yes" in g]
    assert len(marked) == 2, invites
    assert not any("forged" in g for g in invites)


@pytest.mark.peers
def test_sipvicious_scan_finds_nothing_but_a_phone_is_answered(tmp_path: Path) -> None:
    """SIPVicious' svmap (User-Agent friendly-scanner) from a non-trunk address is
    dropped by secfilter; an ordinary OPTIONS from the same address is answered."""
    need("svmap", "kamailio")
    with running_edge(tmp_path / "edge", nodes=((free_port(), 0),)) as edge:
        scan = subprocess.run(
            ["svmap", "-p", str(edge.port), "-b", "127.0.5.5", "127.0.0.1", "-t", "0.5"],
            check=False,
            capture_output=True,
            text=True,
            timeout=60,
            env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
        )
        assert "callcenter112-edge" not in scan.stdout, scan.stdout
        assert edge.lines(r"secfilter: dropping OPTIONS from 127\.0\.5\.5 ua=\[friendly-scanner\]")
        assert sip_options(edge.port, source="127.0.5.5") == "SIP/2.0 200 Keepalive"


@pytest.mark.peers
def test_planned_switch_over_at_the_edge_drops_no_call(tmp_path: Path) -> None:
    """Calls keep coming (2/s, each talking 3 s) while node A is taken out of
    rotation with kamcmd (dispatcher.set_state d): new calls go to B, the calls
    in progress on A finish there through the edge (Record-Route), none fails."""
    need("sipp", "kamailio", "kamcmd")
    number = "0812000005"
    with (
        running_server(tmp_path / "a", sip_extra=EDGE_TRUST) as a,
        running_server(tmp_path / "b", sip_extra=EDGE_TRUST) as b,
        running_edge(tmp_path / "edge", nodes=((a.sip_port, 0), (b.sip_port, 1))) as edge,
    ):
        scenario = caller_scenario(tmp_path, caller=number, pause_before_ms=300, talk_ms=3000)
        cmd = sipp_command(edge.port, scenario=str(scenario), calls=16, extra=["-aa", "-r", "2"])
        sipp = start_sipp_in(tmp_path / "trunk", cmd, name="trunk during switch-over")
        wait_until(lambda: len(a.sql("SELECT id FROM incidents")) >= 4, 30)
        switch = subprocess.run(
            ["kamcmd", "-s", f"unix:{edge.directory / 'kamailio.ctl'}",
             "dispatcher.set_state", "d", "1", f"sip:127.0.0.1:{a.sip_port}"],
            check=False, capture_output=True, text=True, timeout=10,
        )  # fmt: skip
        assert switch.returncode == 0, switch.stderr
        on_a_at_switch = len(a.sql("SELECT id FROM incidents"))
        active_on_a = len(a.sql("SELECT id FROM incidents WHERE status = 'active'"))
        assert sipp.wait(120) == 0, sipp.logs() + edge.log()[-3000:]
        rows_a = a.sql("SELECT answered_at FROM incidents")
        rows_b = b.sql("SELECT answered_at FROM incidents")
    assert active_on_a >= 1  # calls were in progress on A at the switch, and finished
    # After the switch nothing new reached A (a call already in flight may have).
    assert len(rows_a) <= on_a_at_switch + 1
    assert len(rows_b) >= 16 - on_a_at_switch - 1
    assert len(rows_a) + len(rows_b) == 16
    assert all(r[0] for r in rows_a + rows_b)
