"""The real Kamailio as the SIP edge in tests: render the shipped template, run it
in the foreground on loopback, stop it. Shared by tests/test_kamailio*.py,
tests/test_cluster*.py and the failover benchmark's test."""

from __future__ import annotations

import contextlib
import re
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from callcenter112.cluster.kamailio import EdgeSettings, render
from harness import free_port, need


@dataclass
class Edge:
    directory: Path
    port: int
    proc: subprocess.Popen[bytes]

    def log(self) -> str:
        return (self.directory / "kamailio.log").read_text(errors="replace")

    def lines(self, pattern: str) -> list[str]:
        return [line for line in self.log().splitlines() if re.search(pattern, line)]


def sip_options(port: int, *, timeout: float = 1.0, source: str = "127.0.0.1") -> str | None:
    """One OPTIONS to 127.0.0.1:port from `source`; the status line, or None."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((source, 0))
        s.settimeout(timeout)
        local = s.getsockname()[1]
        branch = "z9hG4bK" + uuid.uuid4().hex[:12]
        msg = (
            f"OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {source}:{local};branch={branch};rport\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:probe@{source}>;tag=t{uuid.uuid4().hex[:6]}\r\n"
            f"To: <sip:127.0.0.1:{port}>\r\n"
            f"Call-ID: {uuid.uuid4().hex}@test\r\n"
            "CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        )
        s.sendto(msg.encode(), ("127.0.0.1", port))
        try:
            data = s.recv(65535)
        except OSError:
            return None
        return data.split(b"\r\n", 1)[0].decode(errors="replace")


@contextlib.contextmanager
def running_edge(
    directory: Path,
    *,
    nodes: tuple[tuple[int, int], ...],
    trunk_nets: tuple[str, ...] = ("127.0.0.1/32",),
    **settings: object,
) -> Iterator[Edge]:
    """Kamailio on 127.0.0.1:free in the foreground; `nodes` are (port, priority)
    of nodes on 127.0.0.1."""
    from callcenter112.cluster.kamailio import Node

    need("kamailio")
    port = free_port()
    edge_settings = EdgeSettings(
        listen_host="127.0.0.1",
        listen_port=port,
        nodes=tuple(Node(host="127.0.0.1", port=p, priority=prio) for p, prio in nodes),
        trunk_nets=trunk_nets,
        **settings,  # type: ignore[arg-type]
    )
    cfg = render(edge_settings, directory)
    run = directory / "run"
    run.mkdir(exist_ok=True)
    with (directory / "kamailio.log").open("wb") as log:
        proc = subprocess.Popen(
            [
                "kamailio", "-DD", "-E", "-f", str(cfg), "-P", str(run / "kamailio.pid"),
                "-Y", str(run), "-m", "64", "-M", "8",
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    edge = Edge(directory, port, proc)
    try:
        deadline = time.monotonic() + 15
        while sip_options(port, timeout=0.3) is None:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"kamailio did not start:\n{edge.log()[-4000:]}")
        yield edge
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
