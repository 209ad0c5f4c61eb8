"""Tampering and the records CLI, on a database the real server produced (issue 5).

One module fixture runs the server with a baresip operator and four SIPp
citizens — two bridged to the operator, one who gives up in the queue, one who
hangs up in the IVR, the last one calling from `+62…` (another spelling of the
first caller's number) — then stops it. Each test works on its own copy of
that data directory (database + recordings + a config pointing at them), so
the tamper tests cannot disturb the CLI tests.

Tampering is done the way an attacker with shell access would: chmod and
write a sealed file, delete one, drop the database's immutability trigger and
rewrite a chain row. `callcenter112 recordings verify` (and `audit verify`)
must exit 1 and name each of them.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from callcenter112.cli import main
from callcenter112.incidents import INCIDENT_CSV_COLUMNS
from callcenter112.media.g711 import Codec, silence
from callcenter112.media.recorder import read_wav
from callcenter112.records import apply_retention, open_store
from harness import (
    Baresip,
    Server,
    check_incident_json,
    need,
    operator_online,
    start_caller,
    wait_until,
)

# op1 stays busy (talk + 3 s wrap-up) until well after the queued caller gave up.
QUICK = "input_timeout_s = 1\nmenu_tries = 1\n[queue]\nring_timeout_s = 4\nwrapup_s = 3\n"

FIRST = "0812000001"  # presses 1, bridged to op1, speaks
QUEUED = "0812000002"  # presses 3 (disaster) while op1 is busy, gives up in the queue
IVR = "0812000003"  # hangs up during the greeting
REPEAT = "+62812000001"  # FIRST's line in international form: presses 4 (police)


@dataclass
class Centre:
    """The stopped server's directory and what it recorded, by caller."""

    directory: Path
    ids: dict[str, str]  # caller (as dialled from) -> incident id
    arrived: dict[str, float]  # caller -> arrived_at (epoch seconds)
    paths: dict[str, str]  # caller -> recording path (relative)


def _one(server: Server, query: str, *args: Any) -> Any:
    rows = server.sql(query, *args)
    return rows[0][0] if rows else None


@pytest.fixture(scope="module")
def centre(tmp_path_factory: pytest.TempPathFactory) -> Centre:
    need("sipp", "baresip")
    base = tmp_path_factory.mktemp("centre")
    server = Server(base, extra=QUICK)
    server.start()
    phone = Baresip(base / "op1", user="op1", password="secret1", server_port=server.sip_port)
    try:
        phone.start()
        wait_until(lambda: operator_online(server, "op1"), 30, what="op1 registered")
        first = start_caller(
            server, base / "c1", caller=FIRST, digits="1", audio=True, talk_ms=5000
        )
        wait_until(
            lambda: (
                _one(server, "SELECT operator_answered_at FROM incidents WHERE caller = ?", FIRST)
                is not None
            ),
            60,
            what="first caller bridged",
        )
        queued = start_caller(server, base / "c2", caller=QUEUED, digits="3", talk_ms=1000)
        wait_until(
            lambda: _one(server, "SELECT count(*) FROM incidents WHERE caller = ?", QUEUED) == 1,
            30,
            what="second incident created",
        )
        ivr = start_caller(server, base / "c3", caller=IVR, talk_ms=300)
        for run in (first, queued, ivr):
            assert run.wait(90) == 0, run.logs()
        wait_until(
            lambda: (
                _one(
                    server,
                    "SELECT state FROM operator_states WHERE operator = 'op1'"
                    " ORDER BY at DESC, id DESC",
                )
                == "available"
            ),
            30,
            what="op1 available after wrap-up",
        )
        repeat = start_caller(server, base / "c4", caller=REPEAT, digits="4", talk_ms=1000)
        assert repeat.wait(90) == 0, repeat.logs()
        wait_until(
            lambda: (
                _one(server, "SELECT count(*) FROM incidents WHERE status = 'active'") == 0
                and _one(server, "SELECT count(*) FROM recordings WHERE seq IS NOT NULL") == 4
            ),
            30,
            what="four incidents closed, four recordings sealed",
        )
    finally:
        phone.stop()
        try:
            assert server.stop() == 0, server.output()[-4000:]
        finally:
            server.kill()

    rows = server.sql(
        "SELECT i.caller, i.id, i.arrived_at, r.path FROM incidents i"
        " JOIN recordings r ON r.incident_id = i.id ORDER BY i.arrived_at"
    )
    callers = [FIRST, QUEUED, IVR, REPEAT]
    assert [r[0] for r in rows] == [FIRST, QUEUED, IVR, FIRST], rows  # +62… stored as 0…
    got = dict(zip(callers, rows, strict=True))
    status = {str(c): str(s) for c, s in server.sql("SELECT id, status FROM incidents")}
    assert [status[got[c][1]] for c in callers] == [
        "completed",
        "abandoned",
        "abandoned",
        "completed",
    ], status
    return Centre(
        directory=base,
        ids={c: str(r[1]) for c, r in got.items()},
        arrived={c: float(r[2]) for c, r in got.items()},
        paths={c: str(r[3]) for c, r in got.items()},
    )


def copy_of(centre: Centre, target: Path) -> Server:
    """A private copy of the centre's records, with a config that points at it."""
    shutil.copytree(centre.directory / "data", target / "data")
    config = (centre.directory / "callcenter112.toml").read_text()
    (target / "callcenter112.toml").write_text(
        config.replace(str(centre.directory / "data"), str(target / "data"))
    )
    return Server(target)  # not started: .cli() and .sql() work on the copy


def _problems(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if line.startswith("PROBLEM ")]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


DOCS = Path(__file__).resolve().parent.parent / "docs" / "incidents.md"


def documented_check(server: Server, directory: Path) -> list[str]:
    """Run the stand-alone chain check printed in docs/incidents.md; its output lines."""
    text = DOCS.read_text()
    block = text.split("<!-- independent-check -->", 1)[1]
    code = block.split("```python\n", 1)[1].split("```", 1)[0]
    script = directory / "check_chain.py"
    script.write_text(code)
    out = subprocess.run(
        [sys.executable, "-I", str(script), str(server.database), str(server.recordings)],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return out.stdout.splitlines()


def _head(verify_stdout: str) -> str:
    [line] = [x for x in verify_stdout.splitlines() if " head #" in x]
    return line.rsplit(" ", 1)[1]


# --------------------------------------------------------------------------- tampering


@pytest.mark.peers
def test_untouched_records_verify(centre: Centre, tmp_path: Path) -> None:
    server = copy_of(centre, tmp_path)
    result = server.cli("recordings", "verify")
    assert result.returncode == 0, result.stdout + result.stderr
    assert _problems(result.stdout) == []
    assert "recordings: 4 chain entries, 4 file(s) re-hashed" in result.stdout
    assert result.stdout.rstrip().endswith("recordings: OK")
    independent = documented_check(server, tmp_path)
    assert [line.split(": ", 1)[1] for line in independent[:-1]] == ["chain ok, file ok"] * 4
    assert independent[-1] == f"head {_head(result.stdout)}"
    audit = server.cli("audit", "verify")
    assert audit.returncode == 0, audit.stdout + audit.stderr


@pytest.mark.peers
def test_flipped_byte_deleted_file_and_edited_chain_row_are_all_named(
    centre: Centre, tmp_path: Path
) -> None:
    server = copy_of(centre, tmp_path)
    flipped = server.recordings / centre.paths[QUEUED]
    deleted = server.recordings / centre.paths[IVR]
    doctored = server.recordings / centre.paths[FIRST]
    untouched = centre.paths[REPEAT]

    # 1. One byte in the middle of the audio changed in place.
    audio = read_wav(flipped)
    os.chmod(flipped, 0o644)
    with flipped.open("r+b") as f:
        at = audio.info.data_offset + audio.info.data_size // 2
        f.seek(at)
        (byte,) = f.read(1)
        f.seek(at)
        f.write(bytes([byte ^ 0xFF]))
    os.chmod(flipped, 0o440)  # and the mode put back

    # 2. Another recording removed.
    deleted.unlink()

    # 3. A third one doctored — what the caller said silenced — and its chain row
    #    rewritten to the new file's hash: the file then matches its row, but the
    #    row no longer matches the chain.
    sealed_as = _sha256(doctored)
    audio = read_wav(doctored)
    assert audio.codec is not None
    data = bytearray(audio.data)
    data[0::2] = silence(audio.codec, audio.frames)
    raw = doctored.read_bytes()
    os.chmod(doctored, 0o644)
    doctored.write_bytes(raw[: audio.info.data_offset] + bytes(data))
    assert _sha256(doctored) != sealed_as, "the caller's channel was silent already"
    with closing(sqlite3.connect(server.database)) as db:
        with pytest.raises(sqlite3.DatabaseError, match="immutable"):
            db.execute(
                "UPDATE recordings SET sha256 = ? WHERE path = ?",
                (_sha256(doctored), centre.paths[FIRST]),
            )
        db.execute("DROP TRIGGER recordings_chain_immutable")
        db.execute(
            "UPDATE recordings SET sha256 = ? WHERE path = ?",
            (_sha256(doctored), centre.paths[FIRST]),
        )
        db.commit()

    result = server.cli("recordings", "verify")
    assert result.returncode == 1, result.stdout + result.stderr
    problems = _problems(result.stdout)
    assert len(problems) == 3, result.stdout
    assert any(p.startswith(f"PROBLEM changed file: {centre.paths[QUEUED]}: ") for p in problems)
    assert any(p.startswith(f"PROBLEM missing file: {centre.paths[IVR]}: ") for p in problems)
    assert any(
        p.startswith(f"PROBLEM chain entry edited: {centre.paths[FIRST]} (#") for p in problems
    ), problems
    assert not [p for p in problems if untouched in p], problems
    assert "recordings: FAILED, 3 problem(s)" in result.stdout
    # The stand-alone check of docs/incidents.md finds the same three.
    independent = dict(line.split(": ", 1) for line in documented_check(server, tmp_path)[:-1])
    by_path = {key.split(" ", 1)[1]: value for key, value in independent.items()}
    assert by_path == {
        centre.paths[QUEUED]: "chain ok, FILE CHANGED",
        centre.paths[IVR]: "chain ok, MISSING",
        centre.paths[FIRST]: "CHAIN BROKEN, file ok",
        untouched: "chain ok, file ok",
    }

    # The failed verification is itself on the audit chain, with what it found.
    listed = server.cli("audit", "list", "--action", "verify", "--json")
    assert listed.returncode == 0, listed.stderr
    entry = json.loads(listed.stdout)[-1]
    assert entry["target"] == "recordings" and entry["detail"]["ok"] is False, entry
    assert len(entry["detail"]["problems"]) == 3
    assert server.cli("audit", "verify").returncode == 0


@pytest.mark.peers
def test_removed_chain_row_is_named(centre: Centre, tmp_path: Path) -> None:
    server = copy_of(centre, tmp_path)
    with closing(sqlite3.connect(server.database)) as db:
        db.execute("DROP TRIGGER recordings_chain_no_delete")
        db.execute("DELETE FROM recordings WHERE path = ?", (centre.paths[QUEUED],))
        db.commit()
    result = server.cli("recordings", "verify")
    assert result.returncode == 1, result.stdout
    problems = _problems(result.stdout)
    assert any(p.startswith("PROBLEM chain entry removed: ") for p in problems), problems
    # Its file is still on disk, now unknown to the chain.
    assert f"PROBLEM file unknown to the chain: {centre.paths[QUEUED]}: " in result.stdout


@pytest.mark.peers
def test_edited_and_removed_audit_entries_are_named(centre: Centre, tmp_path: Path) -> None:
    server = copy_of(centre, tmp_path)
    for _ in range(3):  # reading records is audited: give the chain a few entries
        assert server.cli("incidents", "list").returncode == 0
    with closing(sqlite3.connect(server.database)) as db:
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            db.execute("UPDATE audit_log SET actor = 'nobody' WHERE seq = 1")
        db.execute("DROP TRIGGER audit_log_no_update")
        db.execute("DROP TRIGGER audit_log_no_delete")
        db.execute("UPDATE audit_log SET actor = 'nobody' WHERE seq = 1")
        db.execute("DELETE FROM audit_log WHERE seq = 2")
        db.commit()
    result = server.cli("audit", "verify")
    assert result.returncode == 1, result.stdout
    problems = _problems(result.stdout)
    assert any(p.startswith("PROBLEM chain entry edited: audit #1 ") for p in problems), problems
    assert any(
        p.startswith("PROBLEM chain entry removed: audit #3 ") and "#2" in p for p in problems
    ), problems
    assert "audit log: FAILED, 2 problem(s)" in result.stdout


# --------------------------------------------------------------------------- the CLI


def _list(server: Server, *args: str) -> list[str]:
    result = server.cli("incidents", "list", "--json", *args)
    assert result.returncode == 0, result.stderr
    return [row["id"] for row in json.loads(result.stdout)]


def _iso_us(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat()


@pytest.mark.peers
def test_incidents_list_filters(centre: Centre, tmp_path: Path) -> None:
    server = copy_of(centre, tmp_path)
    ids = centre.ids
    newest_first = [ids[REPEAT], ids[IVR], ids[QUEUED], ids[FIRST]]
    assert _list(server) == newest_first

    assert _list(server, "--status", "completed") == [ids[REPEAT], ids[FIRST]]
    assert _list(server, "--status", "abandoned") == [ids[IVR], ids[QUEUED]]
    assert _list(server, "--status", "interrupted") == []
    assert _list(server, "--category", "disaster") == [ids[QUEUED]]
    assert _list(server, "--category", "police") == [ids[REPEAT]]
    assert _list(server, "--operator", "op1") == [ids[REPEAT], ids[FIRST]]
    assert _list(server, "--operator", "op2") == []
    # Caller history: one line, any spelling.
    for spelling in (FIRST, "+62812000001", "62812000001", "0812-000-001"):
        assert _list(server, "--caller", spelling) == [ids[REPEAT], ids[FIRST]], spelling
    assert _list(server, "--caller", IVR, "--status", "abandoned") == [ids[IVR]]

    # Time range: --since inclusive, --until exclusive, between arrivals.
    a = centre.arrived
    middle = _iso_us((a[QUEUED] + a[IVR]) / 2)
    assert _list(server, "--since", middle) == [ids[REPEAT], ids[IVR]]
    assert _list(server, "--until", middle) == [ids[QUEUED], ids[FIRST]]
    assert _list(server, "--since", _iso_us(a[QUEUED] - 0.001)) == newest_first[:3]
    assert _list(server, "--since", _iso_us((a[FIRST] + a[QUEUED]) / 2), "--until", middle) == [
        ids[QUEUED]
    ]
    first_day = datetime.fromtimestamp(a[FIRST], UTC).date().isoformat()
    last_day = datetime.fromtimestamp(a[REPEAT], UTC).date().isoformat()
    assert _list(server, "--since", first_day, "--until", last_day) == newest_first
    assert _list(server, "--limit", "2") == newest_first[:2]
    assert _list(server, "--limit", "2", "--offset", "2") == newest_first[2:]

    # The table: a header and one row per incident, newest first.
    table = server.cli("incidents", "list", "--operator", "op1")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split()[:3] == ["ID", "ARRIVED", "(UTC)"], lines
    assert [line.split()[0] for line in lines[1:]] == [ids[REPEAT], ids[FIRST]]
    assert "completed" in lines[1] and "police" in lines[1] and "op1" in lines[1]

    # Bad usage is exit 2 with the reason; an unknown incident is exit 1.
    bad = server.cli("incidents", "list", "--category", "flood")
    assert bad.returncode == 2 and "invalid choice" in bad.stderr, bad.stderr
    bad = server.cli("incidents", "list", "--since", "yesterday")
    assert bad.returncode == 2 and "is not a date or time" in bad.stderr, bad.stderr
    missing = server.cli("incidents", "show", "19700101-0001")
    assert missing.returncode == 1 and "no incident" in missing.stderr

    # Every listing was audited with its filters.
    audited = server.cli("audit", "list", "--action", "list", "--json", "--limit", "200")
    details = [e["detail"] for e in json.loads(audited.stdout) if e["target"] == "incidents"]
    assert {"category": "disaster", "limit": 50, "offset": 0, "count": 1} in details, details


@pytest.mark.peers
def test_incidents_export_csv_and_json(centre: Centre, tmp_path: Path) -> None:
    server = copy_of(centre, tmp_path)
    ids = centre.ids

    result = server.cli("incidents", "export", "--format", "csv")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # no progress bar when stderr is not a terminal
    rows = list(csv.reader(io.StringIO(result.stdout)))
    assert tuple(rows[0]) == INCIDENT_CSV_COLUMNS
    by_id = {r[0]: dict(zip(INCIDENT_CSV_COLUMNS, r, strict=True)) for r in rows[1:]}
    assert list(by_id) == [ids[REPEAT], ids[IVR], ids[QUEUED], ids[FIRST]]
    first, queued = by_id[ids[FIRST]], by_id[ids[QUEUED]]
    assert first["caller"] == FIRST and first["status"] == "completed"
    assert first["category"] == "medical" and first["operator"] == "op1"
    assert float(first["sla_s"]) > 0 and first["operator_answered_at"].endswith("Z")
    assert queued["category"] == "disaster" and queued["status"] == "abandoned"
    assert queued["operator"] == "" and queued["sla_s"] == ""
    assert by_id[ids[REPEAT]]["caller"] == FIRST
    assert all(r["legal_hold"] == "no" for r in by_id.values())

    filtered = server.cli("incidents", "export", "--format", "csv", "--status", "abandoned")
    assert [r[0] for r in csv.reader(io.StringIO(filtered.stdout))][1:] == [ids[IVR], ids[QUEUED]]

    # JSON to a file: every incident whole, the same as `incidents show --json`.
    out = tmp_path / "export.json"
    result = server.cli(
        "incidents", "export", "--format", "json", "--output", str(out), "--progress"
    )
    assert result.returncode == 0, result.stderr
    assert f"exported 4 incident(s) to {out}" in result.stderr
    assert "export [" in result.stderr and "100%  4/4" in result.stderr  # forced progress bar
    exported = json.loads(out.read_text())
    assert [inc["id"] for inc in exported] == list(by_id)
    for inc in exported:
        check_incident_json(inc)
        assert inc == server.incident(inc["id"])
        [rec] = inc["recordings"]
        path = server.recordings / rec["path"]
        assert rec["sha256"] == _sha256(path)
        assert rec["channels"] == 2 and rec["duration_s"] > 0
    first_json = next(inc for inc in exported if inc["id"] == ids[FIRST])
    assert sorted(leg["role"] for leg in first_json["legs"]) == ["caller", "operator"]
    assert "operator_answered" in [e["kind"] for e in first_json["events"]]

    # The export is on the audit chain with the file it wrote and that file's hash.
    listed = server.cli("audit", "list", "--action", "export", "--json")
    entries = json.loads(listed.stdout)
    json_entry = next(e for e in entries if e["detail"]["format"] == "json")
    assert json_entry["detail"]["output"] == str(out)
    assert json_entry["detail"]["sha256"] == _sha256(out)
    assert json_entry["detail"]["count"] == 4
    csv_entry = next(e for e in entries if e["detail"].get("status") == "abandoned")
    assert csv_entry["detail"]["count"] == 2 and csv_entry["detail"]["output"] == "stdout"

    # Time-bounded export, as an auditor asks for one shift.
    a = centre.arrived
    result = server.cli(
        "incidents",
        "export",
        "--format",
        "json",
        "--since",
        _iso_us((a[FIRST] + a[QUEUED]) / 2),
        "--until",
        _iso_us((a[IVR] + a[REPEAT]) / 2),
    )
    assert result.returncode == 0, result.stderr
    assert [inc["id"] for inc in json.loads(result.stdout)] == [ids[IVR], ids[QUEUED]]

    unwritable = server.cli(
        "incidents", "export", "--output", str(tmp_path / "no" / "such" / "dir" / "x.csv")
    )
    assert unwritable.returncode == 1 and "cannot write" in unwritable.stderr


@pytest.mark.peers
async def test_legal_hold_outlives_retention_and_tombstones_still_verify(
    centre: Centre, tmp_path: Path
) -> None:
    server = copy_of(centre, tmp_path)
    held = centre.ids[FIRST]
    order = "Polresta Pulau Ambon, request B/112/XI/2026"
    result = server.cli("incidents", "hold", held, "--reason", order)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{held}: on legal hold"
    again = server.cli("incidents", "hold", held, "--reason", order)
    assert again.stdout.strip() == f"{held}: on legal hold (unchanged)"
    assert server.incident(held)["legal_hold"] is True
    unknown = server.cli("incidents", "hold", "19700101-0001", "--reason", order)
    assert unknown.returncode == 1 and "no incident" in unknown.stderr
    no_reason = server.cli("incidents", "hold", held, "--reason", " ")
    assert no_reason.returncode == 2 and "needs a reason" in no_reason.stderr

    # The server's retention sweep, run as if a year had passed (keep_days = 30).
    a_year_later = max(centre.arrived.values()) + 365 * 86_400
    async with open_store(server.database) as store:
        report = await apply_retention(store, server.recordings, 30, a_year_later)
    assert report.errors == ()
    others = {centre.paths[c] for c in (QUEUED, IVR, REPEAT)}
    assert {r.path for r in report.deleted} == others
    assert (server.recordings / centre.paths[FIRST]).is_file()
    assert not any((server.recordings / path).exists() for path in others)

    # Tombstones keep the chain whole: verify still passes and counts them.
    verified = server.cli("recordings", "verify")
    assert verified.returncode == 0, verified.stdout
    assert "4 chain entries, 1 file(s) re-hashed, 3 deleted by retention" in verified.stdout
    states = sorted(line.split(": ", 1)[1] for line in documented_check(server, tmp_path)[:-1])
    assert states == ["chain ok, deleted by retention"] * 3 + ["chain ok, file ok"]
    gone = server.incident(centre.ids[IVR])["recordings"][0]
    assert gone["deleted_at"] is not None and gone["deleted_by"] == "retention", gone
    deletions = json.loads(
        server.cli("audit", "list", "--action", "retention_delete", "--json").stdout
    )
    assert sorted(e["detail"]["path"] for e in deletions) == sorted(others), deletions
    [hold] = json.loads(server.cli("audit", "list", "--action", "legal_hold", "--json").stdout)
    assert hold["target"] == held and hold["actor"].startswith("cli:"), hold
    assert hold["detail"] == {"on": True, "reason": order}

    # Released, the held recording goes at the next sweep, audited like the others.
    released = server.cli("incidents", "hold", held, "--release", "--reason", "case closed")
    assert released.stdout.strip() == f"{held}: not on legal hold", released.stderr
    async with open_store(server.database) as store:
        report = await apply_retention(store, server.recordings, 30, a_year_later)
    assert [r.path for r in report.deleted] == [centre.paths[FIRST]]
    verified = server.cli("recordings", "verify")
    assert verified.returncode == 0, verified.stdout
    assert "0 file(s) re-hashed, 4 deleted by retention" in verified.stdout


@pytest.mark.peers
def test_recordings_play_as_wav(centre: Centre, tmp_path: Path) -> None:
    """The sealed files are ordinary WAVs other tools read (soxi), with G.711 inside."""
    need("sox", "soxi")
    server = copy_of(centre, tmp_path)
    for caller, rel in centre.paths.items():
        path = server.recordings / rel
        audio = read_wav(path)
        assert audio.codec in (Codec.PCMA, Codec.PCMU) and audio.channels == 2, caller
        out = subprocess.run(
            ["soxi", "-c", str(path)], check=True, capture_output=True, text=True, timeout=30
        )
        assert out.stdout.strip() == "2"


# --------------------------------------------------------------------------- without peers


def test_hold_command_on_a_store_without_peers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`incidents hold` on a store filled in-process (runs where SIPp/baresip are missing)."""
    cfg = tmp_path / "cc.toml"
    cfg.write_text('[storage]\ndatabase = "data/db.sqlite3"\nrecordings = "data/recordings"\n')

    async def create() -> str:
        async with open_store(tmp_path / "data" / "db.sqlite3") as store:
            return await store.create_incident(caller="0812", arrived_at=1_795_860_000.0)

    incident_id = asyncio.run(create())
    args = ["incidents", "hold", incident_id, "--config", str(cfg)]
    assert main([*args, "--reason", "court order 7"]) == 0
    assert capsys.readouterr().out == f"{incident_id}: on legal hold\n"
    assert main([*args, "--reason", "court order 7"]) == 0
    assert capsys.readouterr().out == f"{incident_id}: on legal hold (unchanged)\n"
    assert main([*args, "--release", "--reason", "case closed"]) == 0
    assert capsys.readouterr().out == f"{incident_id}: not on legal hold\n"
    assert main(["incidents", "hold", "x", "--reason", "r", "--config", str(cfg)]) == 1
    assert "no incident 'x'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as usage:
        main(args)  # no --reason
    assert usage.value.code == 2

    async def trail() -> list[tuple[str, object]]:
        async with open_store(tmp_path / "data" / "db.sqlite3") as store:
            entries = await store.list_audit(action="legal_hold")
            return [(e.actor, e.detail) for e in entries]

    assert [detail for _actor, detail in asyncio.run(trail())] == [
        {"on": True, "reason": "court order 7"},
        {"on": False, "reason": "case closed"},
    ]
