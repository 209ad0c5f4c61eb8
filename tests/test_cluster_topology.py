"""scripts/cluster: the whole topology in network namespaces on this machine —
start, SIPp trunk calls through Kamailio answered by node1 with the operator
registered through the edge and the standby database streaming; the
nodes share PostgreSQL and one is the leader; a network partition of the
leader (`ip link set eth0 down` in its namespace) fences it and the other
node answers; healed, it is a follower; kill -9 of the new leader and the
healed node answers again; then stop leaves no namespace, link or process
behind. Needs root (ip netns)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import IN_CI, PYTHON, ROOT, need, wait_until

pytestmark = [pytest.mark.peers, pytest.mark.slow]


def cluster(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CALLCENTER112_VENV": str(Path(PYTHON).parent.parent)}
    return subprocess.run(
        [str(ROOT / "scripts" / "cluster"), *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


@pytest.fixture
def state() -> Iterator[Path]:
    # Not under pytest's 0700 tmp_path: the postgres user must reach its data.
    d = Path(tempfile.mkdtemp(prefix="cc112-cluster-"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _role(state: Path, node: str) -> str | None:
    roles = [
        json.loads(line).get("after")
        for line in (state / f"{node}.log").read_text(errors="replace").splitlines()
        if line.startswith("{") and '"node_role"' in line
    ]
    return roles[-1] if roles else None


def _leader(state: Path) -> str | None:
    return next((n for n in ("node1", "node2") if _role(state, n) == "leader"), None)


def _answered(common: tuple[str, ...], caller: str = "0819000001") -> int:
    out = cluster(
        "sql",
        f"SELECT count(*) FROM incidents WHERE caller = '{caller}' AND answered_at IS NOT NULL",
        *common,
    )
    assert out.returncode == 0, out.stderr
    return int(out.stdout.strip())


def test_start_call_stop_leaves_nothing_behind(state: Path) -> None:
    need("kamailio", "sipp", "baresip", "ip", "runuser")
    if os.geteuid() != 0:
        if IN_CI:
            pytest.fail("scripts/cluster needs root (ip netns)")
        pytest.skip("scripts/cluster needs root (ip netns)")
    name = "t" + uuid.uuid4().hex[:5]
    common = ("--name", name, "--state", str(state))
    try:
        started = cluster("start", *common)
        assert started.returncode == 0, started.stderr[-4000:]
        status = json.loads(cluster("status", *common).stdout)
        assert len(status["namespaces"]) == 8
        assert all(status["processes"].values()), status
        assert status["replication"] == "walreceiver streaming", status
        # The same name cannot be started twice.
        again = cluster("start", *common)
        assert again.returncode == 1 and "exists" in again.stderr

        leader = wait_until(lambda: _leader(state), 30, what="a leader")
        follower = "node2" if leader == "node1" else "node1"
        called = cluster("call", *common, "--calls", "2")
        assert called.returncode == 0, (state / "trunk" / "sipp.out").read_text()[-3000:]
        assert _answered(common) == 2
        node_log = (state / f"{leader}.log").read_text()
        assert '"kind": "OperatorRegistered"' in node_log  # baresip, through the edge

        # Taken out of rotation and back (planned switch-over at the edge).
        assert cluster("out", leader, *common).returncode == 0
        assert cluster("in", leader, *common).returncode == 0

        # A network partition of the leader (its link down in its namespace): it
        # fences itself, the other node takes the lock and answers the next calls.
        assert cluster("cut", leader, *common).returncode == 0
        wait_until(lambda: _role(state, leader) == "fenced", 20, what=f"{leader} fenced")
        wait_until(lambda: _role(state, follower) == "leader", 30, what=f"{follower} leader")
        called = cluster("call", *common, "--calls", "2", "--caller", "0819000002")
        assert called.returncode == 0, (state / "trunk" / "sipp.out").read_text()[-3000:]
        assert _answered(common, "0819000002") == 2
        # Healed, the old leader comes back as a follower (failback is a switch-over).
        assert cluster("heal", leader, *common).returncode == 0
        wait_until(lambda: _role(state, leader) == "follower", 30, what=f"{leader} follower")

        # kill -9 of the current leader: the healed node takes over and answers.
        assert cluster("kill", follower, *common).returncode == 0
        wait_until(lambda: _role(state, leader) == "leader", 30, what=f"{leader} leader again")
        called = cluster("call", *common, "--calls", "2", "--caller", "0819000003")
        assert called.returncode == 0, (state / "trunk" / "sipp.out").read_text()[-3000:]
        assert _answered(common, "0819000003") == 2
    finally:
        stopped = cluster("stop", *common)
    assert stopped.returncode == 0, stopped.stderr
    namespaces = subprocess.run(
        ["ip", "netns", "list"], check=True, capture_output=True, text=True
    ).stdout
    assert name not in namespaces
    links = subprocess.run(["ip", "link"], check=True, capture_output=True, text=True).stdout
    assert name not in links
    assert not list(state.glob("*.pid"))
    assert cluster("stop", *common).returncode == 0  # idempotent
