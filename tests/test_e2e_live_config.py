"""End-to-end: the running server follows its configuration live (issue 16).

The real server as a process, `callcenter112 reload` over its control socket
and SIGHUP, SIPp citizens from two loopback addresses, baresip operators.
What is checked is what a carrier, an operator and an auditor would see: a
bridged call survives a changed allow list with audio both ways, the old
address is then refused (403) and the new one admitted, an invalid file
names its key and changes nothing, a new operator registers and takes a
call without a restart, and an operator removed while talking finishes the
call and only then loses their account.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest

from harness import (
    PCAPS,
    Server,
    WebSession,
    baresip_operator,
    caller_scenario,
    dtmf_pcap,
    incident_status,
    linear,
    need,
    operator_online,
    recording_channels,
    rms_per_second,
    running_server,
    sipp_command,
    start_sipp_in,
    talking_to,
    wait_until,
)

pytestmark = [pytest.mark.peers, pytest.mark.slow]

TALK = """
menu_tries = 1
input_timeout_s = 1
[queue]
ring_timeout_s = 8
wrapup_s = 1
media_timeout_s = 3
"""
SILENCE_RMS = 50.0
OLD_ALLOW = 'allow = ["127.0.0.0/8"]'


def _edit(server: Server, old: str, new: str) -> None:
    text = server.config_path.read_text()
    assert old in text, old
    server.config_path.write_text(text.replace(old, new, 1))


def _caller(
    server: Server, directory: Path, number: str, *, source: str, talk_ms: int, audio: bool
) -> object:
    directory.mkdir(parents=True, exist_ok=True)
    # Key 1 (RFC 4733) picks a category; then G.711 speech (~8 s).
    media = [dtmf_pcap("1"), str(PCAPS / "g711a.pcap")] if audio else [dtmf_pcap("1")]
    scenario = caller_scenario(
        directory, caller=number, pause_before_ms=300, media=media, talk_ms=talk_ms
    )
    cmd = sipp_command(server.sip_port, scenario=str(scenario), timeout_s=120, extra=["-aa"])
    cmd[cmd.index("-i") + 1] = source
    return start_sipp_in(directory, cmd, name=f"caller {number} from {source}")


def _audits(server: Server, action: str) -> list[dict[str, object]]:
    rows = server.sql("SELECT actor, detail FROM audit_log WHERE action = ? ORDER BY seq", action)
    return [{"actor": a, **json.loads(d or "{}")} for a, d in rows]


def _forbidden_from(server: Server, number: str, tmp: Path, source: str) -> bool:
    """One INVITE from `source`: True when the centre answered 403 (not a trunk)."""
    run = _caller(server, tmp / f"probe-{source}", number, source=source, talk_ms=500, audio=False)
    run.wait(60)  # type: ignore[attr-defined]
    return any(
        e.get("event") == "invite_forbidden" and f"{source}:" in e.get("source", "")
        for e in server.events()
    )


def test_allow_list_change_keeps_the_bridged_call_then_moves_admission(tmp_path: Path) -> None:
    need("sipp", "baresip")
    number = "0821600001"
    with (
        running_server(tmp_path, extra=TALK) as server,
        baresip_operator(
            tmp_path / "op1", user="op1", password="secret1", server_port=server.sip_port
        ),
    ):
        wait_until(lambda: operator_online(server, "op1"), 20, what="op1 online")
        call = _caller(
            server, tmp_path / "caller", number, source="127.0.0.1", talk_ms=9000, audio=True
        )
        wait_until(lambda: talking_to(server, number, "op1"), 40, what="bridged to op1")

        # An invalid file: the key is named, exit 2, nothing changes.
        _edit(server, OLD_ALLOW, 'allow = ["127.0.0.2/32", "not-an-address"]')
        refused = server.cli("reload")
        assert refused.returncode == 2, refused
        assert "trunk" in refused.stderr and "allow" in refused.stderr, refused.stderr
        assert "not-an-address" in refused.stderr
        assert _audits(server, "config_reload_refused")

        # The real change, on the telecom page's trunk form, while the call is bridged.
        web = WebSession(server, "admin", "admin-secret")
        saved = web.client.post(
            "/telecom/config/trunk",
            json={
                "original": "t",
                "name": "t",
                "allow": "127.0.0.2/32",
                "numbers": "112\nurn:service:sos",
                "transport": "udp",
                "caller_id": "112",
            },
            headers={"X-CSRF-Token": web.csrf, "Accept": "application/json"},
        )
        web.close()
        assert saved.status_code == 200, saved.text[:300]
        assert "trunk[t].allow" in saved.json()["applied"], saved.json()
        (audit,) = _audits(server, "trunk_changed")
        assert audit["actor"] == "admin"
        assert any(c["path"] == "trunk[t].allow" for c in audit["changes"])  # type: ignore[index, union-attr]
        assert talking_to(server, number, "op1")

        assert call.wait(90) == 0, call.logs()  # type: ignore[attr-defined]
        wait_until(lambda: incident_status(server, number) == "completed", 20)
        (row,) = server.sql(
            "SELECT r.path FROM recordings r JOIN incidents i ON i.id = r.incident_id"
            " WHERE i.caller = ?",
            number,
        )
        left, right, codec = recording_channels(server.recordings / row[0])
        # The talk after the reload (the last 3 s before the end) is audible both ways.
        tail_left = rms_per_second(linear(codec, left[-4 * 8000 : -1 * 8000]))
        tail_right = rms_per_second(linear(codec, right[-4 * 8000 : -1 * 8000]))
        assert sum(r > SILENCE_RMS * 10 for r in tail_left) >= 2, tail_left
        assert sum(r > SILENCE_RMS * 10 for r in tail_right) >= 2, tail_right

        # Now the old address is refused and the new one admitted.
        assert _forbidden_from(server, "0821600002", tmp_path, "127.0.0.1")
        assert not _forbidden_from(server, "0821600003", tmp_path, "127.0.0.2")
        wait_until(lambda: incident_status(server, "0821600003") is not None, 20)
        assert incident_status(server, "0821600002") is None


def test_operator_added_and_removed_live_sighup(tmp_path: Path) -> None:
    need("sipp", "baresip")
    with running_server(tmp_path, extra=TALK) as server:
        # (A phone trying op2 before it exists would be locked out by the
        # failed-authentication rule, as it should be: it is not tried here.)
        _edit(
            server,
            "[[user]]",
            '[[operator]]\nuser = "op2"\npassword = "secret2"\n'
            'skills = ["medical", "fire", "disaster", "police"]\n\n[[user]]',
        )
        assert server.proc is not None
        server.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: _audits(server, "config_reload"), 20, what="SIGHUP reload audited")
        assert _audits(server, "config_reload")[0]["actor"] == "sighup"

        number = "0821600010"
        with baresip_operator(
            tmp_path / "op2", user="op2", password="secret2", server_port=server.sip_port
        ) as op2:
            wait_until(lambda: operator_online(server, "op2"), 20, what="op2 registered")
            call = _caller(
                server, tmp_path / "caller", number, source="127.0.0.1", talk_ms=7000, audio=True
            )
            wait_until(lambda: talking_to(server, number, "op2"), 40, what="bridged to op2")

            # Removed while on the call: the call goes on to its end.
            text = server.config_path.read_text()
            start = text.index('[[operator]]\nuser = "op2"')
            end = text.index("[[user]]", start)
            server.config_path.write_text(text[:start] + text[end:])
            assert server.cli("reload").returncode == 0
            assert talking_to(server, number, "op2")
            assert call.wait(90) == 0, call.logs()  # type: ignore[attr-defined]
            wait_until(lambda: incident_status(server, number) == "completed", 20)
            wait_until(
                lambda: server.events("operator_removed"), 20, what="op2 removed after the call"
            )
            assert op2.proc is not None and op2.proc.poll() is None
        # A restart key waits (and says so); a queue setting applies at once.
        _edit(server, "preopen = 8", "preopen = 9")
        _edit(server, "wrapup_s = 1", "wrapup_s = 2")
        mixed = server.cli("reload")
        assert mixed.returncode == 0, mixed.stderr
        assert "waiting for a restart: rtp.preopen" in mixed.stdout, mixed.stdout
        assert "applied 1 change(s) live" in mixed.stdout
        assert "queue.wrapup_s" in mixed.stdout
        # The account is gone: op2's REGISTER is refused now.
        before = len(server.events("presence"))
        with baresip_operator(
            tmp_path / "op2-late", user="op2", password="secret2", server_port=server.sip_port
        ):
            time.sleep(3)
        registered = [
            e
            for e in server.events("presence")[before:]
            if e.get("user") == "op2" and e.get("kind") == "OperatorRegistered"
        ]
        assert not registered


def test_web_operator_survives_restart_then_file_conflict_and_import(tmp_path: Path) -> None:
    """An operator added on the people page registers and takes a call with no
    restart; the web's version is in the store and runs after a restart; a
    hand-edited file then conflicts (reload names it, exit 2, nothing changes)
    until `config import` lets the file win; `config export` prints what runs."""
    need("sipp", "baresip")

    server = Server(tmp_path, extra=TALK)
    server.start()
    try:
        web = WebSession(server, "supervisor", "super-secret")
        added = web.client.post(
            "/people/operators",
            json={"user": "op7", "skills": ["medical"]},
            headers={"X-CSRF-Token": web.csrf, "Accept": "application/json"},
        )
        assert added.status_code == 200, added.text
        password = added.json()["password"]
        web.close()
        number = "0821600020"
        with baresip_operator(
            tmp_path / "op7", user="op7", password=password, server_port=server.sip_port
        ):
            wait_until(lambda: operator_online(server, "op7"), 20, what="op7 registered")
            call = _caller(
                server, tmp_path / "caller", number, source="127.0.0.1", talk_ms=2000, audio=False
            )
            wait_until(lambda: talking_to(server, number, "op7"), 40, what="bridged to op7")
            assert call.wait(90) == 0, call.logs()  # type: ignore[attr-defined]
        origins = [r[0] for r in server.sql("SELECT origin FROM config_versions ORDER BY version")]
        assert origins == ["file", "web"]

        # After a restart the stored (web) version runs: op7 still exists.
        server.stop()
        server.proc = None
        text = server.config_path.read_text()
        server.start()  # writes the same file again: unchanged since version 1
        exported = server.cli("config", "export")
        assert exported.returncode == 0, exported.stderr
        assert 'user = "op7"' in exported.stdout
        assert server.config_path.read_text() == text

        # A hand edit now conflicts: refused, named, nothing changes.
        _edit(server, 'name = "t"', 'name = "t"\ncaller_id = "0911"')
        refused = server.cli("reload")
        assert refused.returncode == 2
        assert "conflict" in refused.stderr and "config import" in refused.stderr
        assert 'user = "op7"' in server.cli("config", "export").stdout

        # The file wins on import: op7 is gone, the file's edit runs.
        imported = server.cli("config", "import", str(server.config_path))
        assert imported.returncode == 0, imported.stderr
        now = server.cli("config", "export").stdout
        assert 'user = "op7"' not in now and 'caller_id = "0911"' in now
        (origin,) = server.sql("SELECT origin FROM config_versions ORDER BY version DESC LIMIT 1")
        assert origin[0] == "cli"
        assert _audits(server, "config_import")
        # …and a reload of that same file is no conflict any more.
        again = server.cli("reload")
        assert again.returncode == 0, again.stderr
    finally:
        try:
            server.stop()
        finally:
            server.kill()
