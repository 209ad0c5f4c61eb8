"""The backup and restore of docs/deployment.md, done for real.

A PostgreSQL primary archives its WAL (`archive_command`, as the deployment
guide configures it) and gets a base backup (`pg_basebackup`). More incidents
and audit entries are written after the backup; then the primary is lost. A
new server restored from the base backup plus the WAL archive
(`restore_command`, `recovery.signal`) holds every incident written before the
last archived segment — those after the backup included — and the audit chain
verifies with the same head entry.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest

from callcenter112.records import verify_audit
from callcenter112.records.postgres import open_pg_store
from pg_support import PG_BIN, PgServer, _as_server_user, _owned_tempdir, _run, free_port

pytestmark = pytest.mark.slow

T0 = 1795860000.0


async def _write(dsn: str, first: int, count: int) -> list[str]:
    ids = []
    async with open_pg_store(dsn) as store:
        for n in range(first, first + count):
            iid = await store.create_incident(caller=f"0812{n:08d}", arrived_at=T0 + n)
            await store.audit(actor="system", action="note", target=iid, detail={"n": n}, at=T0)
            ids.append(iid)
    return ids


def _wait_archived(server: PgServer, deadline_s: float = 30.0) -> None:
    """Close the current WAL segment and wait until the archiver has copied it."""
    segment = server.psql("SELECT pg_walfile_name(pg_switch_wal())")
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        last = server.psql("SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver")
        if last and last >= segment:
            return
        time.sleep(0.2)
    raise AssertionError(f"WAL segment {segment} was not archived")


async def test_base_backup_plus_wal_archive_restores_every_incident(tmp_path: Path) -> None:
    if not (PG_BIN / "initdb").exists() or shutil.which("runuser") is None:
        pytest.skip("PostgreSQL 15 binaries are not installed")
    root = _owned_tempdir("cc112-restore-")
    try:
        wal = root / "wal"
        _run(["mkdir", str(wal)])
        primary = PgServer.initdb(
            root,
            archive_mode="on",
            archive_command=f"'test ! -f {wal}/%f && cp %p {wal}/%f'",
        )
        primary.start()
        before = await _write(primary.dsn(), 0, 20)
        base = root / "base"
        _run(
            [str(PG_BIN / "pg_basebackup"), "-h", "127.0.0.1", "-p", str(primary.port),
             "-U", "postgres", "-D", str(base), "-X", "fetch", "--no-sync"]
        )  # fmt: skip
        after = await _write(primary.dsn(), 20, 15)  # only in the WAL archive
        _wait_archived(primary)
        async with open_pg_store(primary.dsn()) as store:
            head = (await store.list_audit())[-1]
        primary.crash()  # the machine is lost

        restored = PgServer(data=base, port=free_port())
        restored.configure(
            restore_command=f"'cp {wal}/%f %p'",
            unix_socket_directories=f"'{base}'",
            archive_mode="off",
        )
        _run(["touch", str(base / "recovery.signal")])
        restored.start()
        end = time.monotonic() + 60
        while restored.psql("SELECT pg_is_in_recovery()") != "f":
            assert time.monotonic() < end, "recovery did not finish"
            time.sleep(0.2)
        ids = set(restored.psql("SELECT id FROM incidents").splitlines())
        assert set(before) <= ids, "incidents from the base backup"
        assert set(after) <= ids, "incidents replayed from the WAL archive"
        async with open_pg_store(restored.dsn()) as store:
            report = await verify_audit(store)
            assert report.ok, report.problems
            restored_head = (await store.list_audit())[-1]
        assert (restored_head.seq, restored_head.entry_hash) == (head.seq, head.entry_hash)
        restored.stop()
    finally:
        subprocess.run(_as_server_user(["pkill", "-f", str(root)]), check=False)
        shutil.rmtree(root, ignore_errors=True)
