"""scripts/cluster: the whole topology in network namespaces on this machine —
start, SIPp trunk calls through Kamailio answered by node1 with the operator
registered through the edge and the standby database streaming; node1 is
killed and the next calls are answered by node2; then stop leaves no
namespace, link or process behind. Needs root (ip netns)."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import IN_CI, PYTHON, ROOT, need

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

        called = cluster("call", *common, "--calls", "2")
        assert called.returncode == 0, (state / "trunk" / "sipp.out").read_text()[-3000:]
        db = state / "node1" / "data" / "db.sqlite3"
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            rows = conn.execute("SELECT answered_at FROM incidents").fetchall()
        assert len(rows) == 2 and all(r[0] for r in rows)
        node1 = (state / "node1.log").read_text()
        assert '"kind": "OperatorRegistered"' in node1  # baresip, through the edge

        # Taken out of rotation and back (planned switch-over at the edge).
        assert cluster("out", "node1", *common).returncode == 0
        assert cluster("in", "node1", *common).returncode == 0
        # node1 dies: the next calls are answered by node2 through the edge.
        assert cluster("kill", "node1", *common).returncode == 0
        called = cluster("call", *common, "--calls", "2")
        assert called.returncode == 0, (state / "trunk" / "sipp.out").read_text()[-3000:]
        db2 = state / "node2" / "data" / "db.sqlite3"
        with sqlite3.connect(f"file:{db2}?mode=ro", uri=True) as conn:
            rows = conn.execute("SELECT answered_at FROM incidents").fetchall()
        assert len(rows) == 2 and all(r[0] for r in rows)
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
