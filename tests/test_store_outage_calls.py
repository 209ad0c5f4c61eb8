"""112 keeps being answered while PostgreSQL is away or being promoted (issue 14).

One real callcenter112 node on a real PostgreSQL primary with a synchronous
streaming standby (tests/pg_support.py `pg_pair`); callers are SIPp.

* The primary stopped during calls: every call is answered (the
  create-before-answer write waits at most `CREATE_DEADLINE_S`), the
  supervisors' `/api/v1/cluster` and wallboard show the outage with the writes
  waiting, and when the database returns every incident lands and is closed.
* The primary killed (`pg_ctl stop -m immediate`) during a burst of calls and
  the standby promoted; the node's DSN names both hosts with
  `target_session_attrs=read-write`: calls go on being answered, every incident
  committed before the kill is on the new primary, the chains verify, and a
  recording in progress at the kill has its audio up to ≤ 2 s before it.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from harness import (
    WebSession,
    caller_scenario,
    need,
    sipp_command,
    start_caller,
    start_sipp_in,
    wait_until,
)
from pg_support import PgPair, pg_pair  # noqa: F401 - fixture
from test_cluster_failover import (
    CHUNK_LOSS_BOUND_S,
    STEREO_BYTES_PER_S,
    PgNode,
    _chunk_bytes,
    _recording_of,
)

pytestmark = [pytest.mark.peers, pytest.mark.slow]

IVR = "input_timeout_s = 20\nmenu_tries = 2\n"


def _statuses(n: PgNode, prefix: str) -> dict[str, str]:
    return {
        str(c): str(s)
        for c, s in n.sql("SELECT caller, status FROM incidents WHERE caller LIKE ?", prefix + "%")
    }


def test_calls_are_answered_while_the_database_is_away(tmp_path: Path, pg_pair: PgPair) -> None:  # noqa: F811
    need("sipp")
    n = PgNode(tmp_path / "n", dsn=pg_pair.primary.dsn(), cluster=False, extra=IVR)
    n.start()
    try:
        web = WebSession(n, "supervisor", "super-secret")
        assert web.get("/api/v1/cluster").json()["store"]["available"] is True
        pg_pair.primary.stop()
        # Callers during the outage: each answered (SIPp's scenario fails otherwise).
        scenario = caller_scenario(tmp_path, caller="0813[call_number]", pause_before_ms=300,
                                   talk_ms=2000)  # fmt: skip
        cmd = sipp_command(n.sip_port, scenario=str(scenario), calls=4,
                           extra=["-aa", "-r", "2", "-l", "4"])  # fmt: skip
        burst = start_sipp_in(tmp_path / "burst", cmd, name="burst during the outage")
        seen = wait_until(
            lambda: (h := web.get("/api/v1/cluster").json()["store"])["available"] is False and h,
            30,
            what="the outage on /api/v1/cluster",
        )
        assert seen["outage_since"] is not None and seen["reason"], seen
        assert burst.wait(60) == 0, burst.logs() + n.output()[-4000:]
        board = web.get("/wallboard").text
        assert 'data-testid="store-outage"' in board, board[:2000]
        queued = web.get("/api/v1/cluster").json()["store"]["queued_writes"]
        assert queued > 0
        pg_pair.primary.start()
        # Every incident lands and is closed once the database is back.
        wait_until(
            lambda: (s := _statuses(n, "0813")) and len(s) == 4 and "active" not in s.values(),
            60,
            what="the outage's incidents written and closed",
        )
        wait_until(lambda: web.get("/api/v1/cluster").json()["store"]["available"] is True, 30)
        web.close()
    finally:
        n.stop()
        n.kill()


def test_promotion_during_a_burst_of_calls(tmp_path: Path, pg_pair: PgPair) -> None:  # noqa: F811
    need("sipp")
    n = PgNode(tmp_path / "n", dsn=pg_pair.multi_host_dsn, cluster=False, extra=IVR)
    n.start()
    try:
        long_call = start_caller(n, tmp_path / "long", caller="0814000000", audio=True,
                                 talk_ms=40_000)  # fmt: skip
        wait_until(lambda: _chunk_bytes(n, "0814000000") >= 3 * STEREO_BYTES_PER_S, 40,
                   what="3 s of the long call in the database")  # fmt: skip
        rec_id, started_at = _recording_of(n, "0814000000")
        scenario = caller_scenario(tmp_path, caller="0815[call_number]", pause_before_ms=300,
                                   talk_ms=1500)  # fmt: skip
        cmd = sipp_command(n.sip_port, scenario=str(scenario), calls=12,
                           extra=["-aa", "-r", "2", "-l", "6"])  # fmt: skip
        burst = start_sipp_in(tmp_path / "burst", cmd, name="burst across the promotion")
        wait_until(lambda: len(_statuses(n, "0815")) >= 3, 30, what="a few calls committed")
        committed = set(_statuses(n, "0815"))
        killed_at = time.time()
        pg_pair.primary.crash()
        pg_pair.standby.promote()
        assert burst.wait(90) == 0, burst.logs() + n.output()[-4000:]
        # Everything committed before the kill is on the new primary.
        new = PgNode(tmp_path / "probe", dsn=pg_pair.standby.dsn(), cluster=False)
        assert committed <= set(_statuses(new, "0815")), (committed, _statuses(new, "0815"))
        wait_until(lambda: len(_statuses(new, "0815")) == 12, 60, what="every call's incident")
        # The recording in progress: its chunks up to <= 2 s before the kill survived.
        ((stored,),) = new.sql(
            "SELECT coalesce(sum(length(data)), 0) FROM recording_chunks"
            " WHERE recording_id = ? AND at <= ?",
            rec_id,
            killed_at,
        )
        audio_s = (int(stored) - 58) / STEREO_BYTES_PER_S
        assert audio_s >= (killed_at - started_at) - CHUNK_LOSS_BOUND_S, (
            audio_s,
            killed_at - started_at,
        )
        long_call.kill()
        for what in ("recordings", "audit"):
            result = n.cli(what, "verify")
            assert result.returncode == 0, result.stdout + result.stderr
    finally:
        n.stop()
        n.kill()
