"""/healthz proves writes (issue 11): the store's probe row, every evidence
folder's write and free space; fixed words, never exception text."""

from __future__ import annotations

from pathlib import Path

from test_web_support import web_env


async def test_healthz_writes_the_store_and_the_folders(tmp_path: Path) -> None:
    async with web_env(tmp_path) as env:
        r = await env.client.get("/healthz")
        body = r.json()
        assert r.status_code == 200, body
        assert body["store"] == "ok" and body["disk:recordings"] == "ok"
        rows = await env.store._read(
            lambda conn: conn.execute("SELECT probed_at FROM health").fetchall()
        )
        assert len(rows) == 1


async def test_healthz_names_a_folder_it_cannot_write(tmp_path: Path) -> None:
    async with web_env(tmp_path) as env:
        recordings = tmp_path / "recordings"
        recordings.rename(tmp_path / "elsewhere")  # unmounted, say
        recordings.write_text("not a folder")
        r = await env.client.get("/healthz")
        assert r.status_code == 503
        assert r.json()["status"] == "fail" and r.json()["disk:recordings"] == "write_failed"
        assert "Errno" not in r.text and "directory" not in r.text


async def test_low_disk_is_degraded_not_down(tmp_path: Path) -> None:
    async with web_env(tmp_path) as env:
        object.__setattr__(env.app.state.web.config.storage, "low_disk_mb", 10_000_000)
        r = await env.client.get("/healthz")
        assert r.status_code == 200
        assert r.json()["status"] == "degraded" and r.json()["disk:recordings"] == "low_disk"


async def test_metrics_export_the_core_counters_and_free_disk(tmp_path: Path) -> None:
    from callcenter112.counters import CoreCounters, Counted

    async with web_env(tmp_path) as env:
        text = (await env.client.get("/metrics")).text
        assert "callcenter112_core_events_total" not in text  # this live centre counts nothing
        env.live.metrics = CoreCounters({Counted.REJECTED_CAPACITY: 3})  # type: ignore[attr-defined]
        text = (await env.client.get("/metrics")).text
        assert 'callcenter112_core_events_total{event="rejected_capacity"} 3.0' in text
        assert 'callcenter112_core_events_total{event="journal_write_failed"} 0.0' in text
        free = [
            line
            for line in text.splitlines()
            if line.startswith('callcenter112_disk_free_bytes{folder="recordings"}')
        ]
        assert len(free) == 1 and float(free[0].split()[-1]) > 0


async def test_a_callback_held_for_review_is_for_a_supervisor_to_dial(tmp_path: Path) -> None:
    from callcenter112.incidents import Status

    async with web_env(tmp_path) as env:
        t0 = env.live.clock()
        iid = await env.store.create_incident(caller="081277776666", arrived_at=t0 - 100)
        cb = await env.store.close_incident(
            iid, status=Status.INTERRUPTED, at=t0 - 80, ended_at=t0 - 80, reason="no_ack"
        )
        assert await env.store.callback_review(iid, reason="unverified_caller", at=t0 - 79) == 1
        csrf = await env.sign_in("op1")
        page = (await env.client.get("/console")).text
        assert f'data-callback="{cb}"' in page  # still listed …
        assert 'data-testid="callback-review"' in page  # … marked for a supervisor
        assert f"/console/callbacks/{cb}/call" not in page  # no "Call back" for an operator
        r = await env.client.post(
            f"/console/callbacks/{cb}/call",
            data={"csrf_token": csrf},
            headers={"Accept": "application/json"},
        )
        assert r.status_code == 403 and "supervisor" in r.text
        assert env.live.actions == []
        env.sign_out_locally()
        await env.sign_in("supervisor")  # the wallboard lists it for the supervisor to decide
        board = (await env.client.get("/wallboard")).text
        assert f'data-callback="{cb}"' in board and 'data-testid="callback-review"' in board
