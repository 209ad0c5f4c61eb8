"""`callcenter112 store migrate --from sqlite:PATH --to postgresql://…`: rows and chain heads kept.

A SQLite store with incidents, legs, sealed recordings (one tombstoned), recording
chunks, callbacks and audit entries is copied; the target verifies with the same heads.
The copy is run again after more writes to the source, and once more with nothing new.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from callcenter112.incidents import LegRole, Status
from callcenter112.records import open_store, verify_audit, verify_recordings
from callcenter112.records.postgres import open_pg_store
from test_recordings import T0, _call_with_recording

pytest_plugins = ("pg_support",)


def _migrate(db: Path, dsn: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "callcenter112",
            "store",
            "migrate",
            "--from",
            f"sqlite:{db}",
            "--to",
            dsn,
            "--progress",
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ},
        check=False,
    )


async def _heads(store: object, recdir: Path) -> tuple[tuple[int, str], tuple[int, str]]:
    rec = await verify_recordings(store, recdir)  # type: ignore[arg-type]
    aud = await verify_audit(store)  # type: ignore[arg-type]
    assert rec.ok, rec.problems
    assert aud.ok, aud.problems
    return (rec.head_seq, rec.head_hash), (aud.head_seq, aud.head_hash)


async def test_copy_keeps_every_row_and_the_chain_heads(tmp_path: Path, pg_dsn: str) -> None:
    db, recdir = tmp_path / "cc.sqlite3", tmp_path / "recordings"
    recdir.mkdir()
    async with open_store(db) as src:
        for n in range(4):
            await _call_with_recording(src, recdir, n)
        iid = await src.create_incident(caller=None, arrived_at=T0 + 100)  # anonymous
        await src.add_leg(
            iid, role=LegRole.CALLER, call_id="c", peer="p", codec="PCMA", started_at=T0 + 100
        )
        rid = await src.add_recording_open(iid, f"{iid}.wav", started_at=T0 + 100, codec="PCMA")
        await src.append_recording_chunk(rid, 0, b"RIFF0000WAVE", at=T0 + 101)
        await src.close_incident(
            iid, status=Status.ABANDONED, at=T0 + 110, ended_at=T0 + 110, reason="caller hung up"
        )
        [first] = await src.recording_chain(limit=1)
        await src.tombstone_recordings([first.id], actor="retention", at=T0 + 200)
        (recdir / first.path).chmod(0o644)
        (recdir / first.path).unlink()
        await src.set_legal_hold(iid, on=True, actor="auditor", at=T0 + 300)
        src_heads = await _heads(src, recdir)
        src_count = await src.count_incidents()

    done = _migrate(db, pg_dsn, "--recordings", str(recdir))
    assert done.returncode == 0, done.stderr
    assert "incidents: 5 rows" in done.stdout and "audit_log:" in done.stdout
    assert "recording files: 3 copied" in done.stdout  # 4 sealed, one of them tombstoned
    assert "incidents [" in done.stderr  # progress, per table
    async with open_pg_store(pg_dsn) as dst:
        assert await _heads(dst, recdir) == src_heads
        assert await dst.count_incidents() == src_count
        assert await dst.recording_bytes(rid) == b"RIFF0000WAVE"
        rec = await dst.get_incident(iid)
        assert rec is not None and rec.incident.legal_hold and rec.callbacks
        # The target has the files too: a fresh folder is refilled from it.
        fresh = tmp_path / "fresh-node-recordings"
        fresh.mkdir()
        report = await verify_recordings(dst, fresh)
        assert report.ok and (report.head_seq, report.head_hash) == src_heads[0]

    # More happens on the source; the copy runs again and brings it over.
    async with open_store(db) as src:
        await _call_with_recording(src, recdir, 9, at=T0 + 400)
        src_heads = await _heads(src, recdir)
    for _ in range(2):  # the second time there is nothing new
        done = _migrate(db, pg_dsn)
        assert done.returncode == 0, done.stderr
    async with open_pg_store(pg_dsn) as dst:
        assert await _heads(dst, recdir) == src_heads
        assert await dst.count_incidents() == src_count + 1
        # New writes on the target continue the chains and the ids.
        new = await dst.create_incident(caller="0812", arrived_at=T0 + 400)
        assert new.endswith("-0007")
        await dst.audit(actor="system", action="note", target=new, detail={}, at=T0 + 500)
        assert (await verify_audit(dst)).ok


def test_bad_arguments_are_named(tmp_path: Path) -> None:
    done = _migrate(tmp_path / "missing.sqlite3", "postgresql://127.0.0.1:1/x")
    assert done.returncode == 1 and "no such SQLite database" in done.stderr
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "callcenter112",
            "store",
            "migrate",
            "--from",
            "x.db",
            "--to",
            "mysql://h/db",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert bad.returncode == 2 and "postgresql://" in bad.stderr
