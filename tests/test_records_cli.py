"""The records commands, called through `callcenter112.cli.main` and as a real process."""

from __future__ import annotations

import asyncio
import csv
import getpass
import hashlib
import io
import json
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from callcenter112.cli import main
from callcenter112.incidents import Category, LegQuality, LegRole, Status
from callcenter112.records import SqliteStore, open_store, seal_recording
from callcenter112.records.cli import ProgressBar, cli_actor

T0 = datetime(2026, 11, 28, 10, 0, 0, tzinfo=UTC).timestamp()
CLI = Path(sys.executable).parent / "callcenter112"


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A config file, a database with three incidents and one sealed recording."""
    cfg = tmp_path / "cc.toml"
    cfg.write_text(
        '[storage]\ndatabase = "data/db.sqlite3"\nrecordings = "data/recordings"\n',
        encoding="utf-8",
    )
    asyncio.run(_populate(tmp_path / "data" / "db.sqlite3", tmp_path / "data" / "recordings"))
    return cfg


async def _populate(db: Path, recdir: Path) -> None:
    async with open_store(db) as s:
        a = await s.create_incident(
            caller="+6281234567890", arrived_at=T0, trunk="telkom", dialled="112", call_id="ca"
        )
        leg = await s.add_leg(
            a, role=LegRole.CALLER, call_id="ca", peer="192.0.2.5:5060", codec="PCMA", started_at=T0
        )
        await s.update_incident(
            a,
            at=T0 + 12,
            category=Category.MEDICAL,
            operator="op1",
            stamps={"answered_at": T0 + 0.1, "operator_answered_at": T0 + 12.25},
            event="operator_answered",
            detail={"operator": "op1"},
        )
        await s.end_leg(
            leg,
            ended_at=T0 + 70,
            reason="bye",
            quality=LegQuality(packets=3500, lost=4, jitter_ms=2.5),
        )
        await s.close_incident(
            a, status=Status.COMPLETED, at=T0 + 70, ended_at=T0 + 70, reason="bye"
        )
        path = recdir / f"{a}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"RIFF" + bytes(4000))
        await seal_recording(
            s,
            a,
            path,
            recordings_dir=recdir,
            channels=2,
            duration_s=70.0,
            codec="PCMA",
            sealed_at=T0 + 71,
        )
        await s.save_disposition(
            a, {"disposition": "genuine", "kelurahan": "Batu Merah"}, actor="op1", at=T0 + 90
        )
        b = await s.create_incident(
            caller="082200001111", arrived_at=T0 + 3600, category=Category.FIRE
        )
        await s.close_incident(
            b, status=Status.ABANDONED, at=T0 + 3620, ended_at=T0 + 3620, reason="queue"
        )
        await s.create_incident(caller=None, arrived_at=T0 + 86_400)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _audit_rows(cfg: Path) -> list[tuple[str, str, str]]:
    conn = sqlite3.connect(cfg.parent / "data" / "db.sqlite3")
    rows = conn.execute("SELECT actor, action, target FROM audit_log ORDER BY seq").fetchall()
    conn.close()
    return rows


# --------------------------------------------------------------------------- incidents


def test_list_table_newest_first(site: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "incidents", "list", "--config", str(site))
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["ID", "ARRIVED", "(UTC)"]
    ids = [line.split()[0] for line in lines[1:]]
    assert ids == ["20261129-0001", "20261128-0002", "20261128-0001"]
    assert "12.2s" in lines[3] and "genuine" in lines[3] and "anonymous" in lines[1]
    assert _audit_rows(site)[-1] == (cli_actor(), "list", "incidents")
    assert cli_actor() == f"cli:{getpass.getuser()}"


def test_list_json_and_filters(site: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys,
        "incidents",
        "list",
        "--config",
        str(site),
        "--json",
        "--since",
        "2026-11-28",
        "--until",
        "2026-11-28",
    )
    assert code == 0
    assert [i["id"] for i in json.loads(out)] == ["20261128-0002", "20261128-0001"]
    for args, expected in [
        (["--caller", "0812-3456-7890"], ["20261128-0001"]),
        (["--category", "fire"], ["20261128-0002"]),
        (["--status", "active"], ["20261129-0001"]),
        (["--operator", "op1"], ["20261128-0001"]),
        (["--disposition", "genuine"], ["20261128-0001"]),
        (["--since", "2026-11-28T10:30"], ["20261129-0001", "20261128-0002"]),
        (["--until", "2026-11-28T11:00:00Z"], ["20261128-0001"]),
        (["--limit", "1"], ["20261129-0001"]),
    ]:
        code, out, _ = run(capsys, "incidents", "list", "--config", str(site), "--json", *args)
        assert code == 0
        assert [i["id"] for i in json.loads(out)] == expected, args


def test_bad_date_and_bad_config_are_usage_errors(
    site: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["incidents", "list", "--config", str(site), "--since", "last tuesday"])
    assert exc.value.code == 2
    assert "not a date" in capsys.readouterr().err
    bad = tmp_path / "bad.toml"
    bad.write_text("[storage]\ndatabse = 'x'\n")
    code, _, err = run(capsys, "incidents", "list", "--config", str(bad))
    assert code == 2 and "storage.databse" in err


def test_show_json_has_the_design_shape(site: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys, "incidents", "show", "20261128-0001", "--config", str(site), "--json"
    )
    assert code == 0
    data = json.loads(out)
    assert data["id"] == "20261128-0001"
    assert data["caller"] == "081234567890"
    assert data["status"] == "completed" and data["category"] == "medical"
    assert data["operator"] == "op1"
    assert data["arrived_at"] == "2026-11-28T10:00:00.000Z"
    assert data["operator_answered_at"] == "2026-11-28T10:00:12.250Z"
    assert data["ended_at"] == "2026-11-28T10:01:10.000Z"
    assert data["sla_s"] == 12.25
    [rec] = data["recordings"]
    assert rec["path"] == "20261128-0001.wav" and rec["channels"] == 2 and rec["duration_s"] == 70.0
    assert len(rec["sha256"]) == 64
    kinds = [e["kind"] for e in data["events"]]
    assert kinds[0] == "arrived" and "operator_answered" in kinds and "disposition" in kinds
    assert data["legs"][0]["quality"] == {"packets": 3500, "lost": 4, "jitter_ms": 2.5}
    assert _audit_rows(site)[-1] == (cli_actor(), "view", "20261128-0001")


def test_show_text_and_unknown_id(site: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "incidents", "show", "20261128-0001", "--config", str(site))
    assert code == 0
    assert "Incident 20261128-0001  [completed]" in out
    assert "3500 packets, 4 lost, jitter 2.5 ms" in out
    assert "20261128-0001.wav  sealed  2 ch  70.0 s  PCMA" in out
    assert "Batu Merah" in out
    code, _, err = run(capsys, "incidents", "show", "20991231-0001", "--config", str(site))
    assert code == 1 and "no incident 20991231-0001" in err


def test_export_csv_with_progress_and_audit(
    site: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "export.csv"
    code, out, err = run(
        capsys,
        "incidents",
        "export",
        "--config",
        str(site),
        "--since",
        "2026-11-28",
        "--until",
        "2026-11-29",
        "--format",
        "csv",
        "--output",
        str(target),
        "--progress",
    )
    assert code == 0 and out == ""
    assert "export [" in err and "100%  3/3" in err and "exported 3 incident(s)" in err
    rows = list(csv.DictReader(io.StringIO(target.read_text(encoding="utf-8"))))
    assert [r["id"] for r in rows] == ["20261129-0001", "20261128-0002", "20261128-0001"]
    assert rows[2]["disposition"] == "genuine" and rows[2]["sla_s"] == "12.25"
    conn = sqlite3.connect(site.parent / "data" / "db.sqlite3")
    detail = json.loads(
        conn.execute("SELECT detail FROM audit_log WHERE action = 'export'").fetchone()[0]
    )
    conn.close()
    assert detail["count"] == 3 and detail["format"] == "csv"
    assert detail["output"] == str(target.resolve())
    assert detail["sha256"] == hashlib.sha256(target.read_bytes()).hexdigest()


def test_export_json_to_stdout_without_a_tty_draws_no_bar(
    site: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "incidents", "export", "--config", str(site), "--format", "json")
    assert code == 0 and err == ""
    data = json.loads(out)
    assert [d["id"] for d in data] == ["20261129-0001", "20261128-0002", "20261128-0001"]
    assert data[2]["recordings"][0]["path"] == "20261128-0001.wav"


def test_progress_bar_text() -> None:
    buf = io.StringIO()
    bar = ProgressBar("verify", buf, enabled=True)
    for i in range(1, 5):
        bar(i, 4)
    bar.finish()
    assert buf.getvalue().endswith("\rverify [" + "#" * 30 + "] 100%  4/4\n")
    quiet = io.StringIO()
    off = ProgressBar("verify", quiet, enabled=False)
    off(1, 1)
    off.finish()
    assert quiet.getvalue() == ""


# --------------------------------------------------------------------------- integrity


def test_recordings_verify_ok_then_tampered(site: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "recordings", "verify", "--config", str(site))
    assert code == 0
    assert "recordings: OK" in out and "1 file(s) re-hashed" in out
    path = site.parent / "data" / "recordings" / "20261128-0001.wav"
    path.chmod(0o644)
    data = bytearray(path.read_bytes())
    data[100] ^= 0xFF
    path.write_bytes(bytes(data))
    (path.parent / "stray.wav").write_bytes(b"x")
    code, out, _ = run(capsys, "recordings", "verify", "--config", str(site))
    assert code == 1
    assert "PROBLEM changed file: 20261128-0001.wav" in out
    assert "PROBLEM file unknown to the chain: stray.wav" in out
    assert "recordings: FAILED, 2 problem(s)" in out
    assert _audit_rows(site)[-1] == (cli_actor(), "verify", "recordings")


def test_audit_verify_list_and_tamper(site: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "audit", "verify", "--config", str(site))
    assert code == 0 and "audit log: OK" in out
    code, out, _ = run(capsys, "audit", "list", "--config", str(site), "--json")
    entries = json.loads(out)
    assert [e["action"] for e in entries] == ["disposition_change", "verify"]
    code, out, _ = run(capsys, "audit", "list", "--config", str(site), "--target", "20261128-0001")
    assert code == 0 and "disposition_change" in out and "verify" not in out
    code, out, _ = run(capsys, "audit", "list", "--config", str(site), "--action", "list", "--json")
    assert [e["target"] for e in json.loads(out)] == ["audit", "audit"]

    conn = sqlite3.connect(site.parent / "data" / "db.sqlite3", isolation_level=None)
    conn.execute("DROP TRIGGER audit_log_no_update")
    conn.execute("UPDATE audit_log SET actor = 'op9' WHERE seq = 1")
    conn.close()
    code, out, _ = run(capsys, "audit", "verify", "--config", str(site))
    assert code == 1
    assert "PROBLEM chain entry edited: audit #1 (disposition_change 20261128-0001 by op9)" in out


def test_callbacks_list(site: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "callbacks", "list", "--config", str(site))
    assert code == 0
    [header, row] = out.splitlines()
    assert header.split()[:3] == ["ID", "INCIDENT", "NUMBER"]
    assert row.split()[:4] == ["1", "20261128-0002", "082200001111", "open"]
    code, out, _ = run(capsys, "callbacks", "list", "--config", str(site), "--all", "--json")
    [cb] = json.loads(out)
    assert cb["incident_id"] == "20261128-0002" and cb["no_number"] is False

    async def close_it() -> None:
        async with open_store(site.parent / "data" / "db.sqlite3") as s:
            await s.callback_close(1, actor="op1", at=T0 + 7200, outcome="reached")

    asyncio.run(close_it())
    code, out, _ = run(capsys, "callbacks", "list", "--config", str(site))
    assert out == "no open callbacks\n"
    code, out, _ = run(capsys, "callbacks", "list", "--config", str(site), "--all")
    assert "reached" in out


# --------------------------------------------------------------------------- a real process


def test_installed_command_runs_the_records_commands(site: Path) -> None:
    assert CLI.exists(), CLI
    done = subprocess.run(
        [str(CLI), "incidents", "list", "--config", str(site), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert [i["id"] for i in json.loads(done.stdout)][-1] == "20261128-0001"
    done = subprocess.run(
        [str(CLI), "recordings", "verify", "--config", str(site), "--progress"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "verify [" in done.stderr and "recordings: OK" in done.stdout
    done = subprocess.run(
        [str(CLI), "incidents", "show", "nope", "--config", str(site)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1 and "no incident nope" in done.stderr


def test_store_is_closed_after_each_command(site: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run(capsys, "incidents", "list", "--config", str(site))

    async def reopen() -> int:
        s = SqliteStore(site.parent / "data" / "db.sqlite3")
        await s.open()
        try:
            return await s.count_incidents()
        finally:
            await s.close()

    assert asyncio.run(reopen()) == 3
