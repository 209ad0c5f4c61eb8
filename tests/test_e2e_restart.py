"""A restart must not leave operators offline until their phones re-register.

Bindings are saved in the store; after a crash (SIGKILL) the new process
takes them back and qualifies each phone with OPTIONS at once, so the first
emergency after a restart is offered to the operator whose softphone never
noticed the restart.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from harness import (
    Server,
    baresip_operator,
    need,
    operator_online,
    start_caller,
    talking_to,
    wait_until,
)

pytestmark = pytest.mark.peers

CALLER = "081377778888"


def test_operators_are_back_online_after_a_crash_without_re_registering(tmp_path: Path) -> None:
    need("sipp", "baresip")
    server = Server(tmp_path / "server", sip_extra="max_expires_s = 3600")
    server.start()
    try:
        with baresip_operator(
            tmp_path / "op1", user="op1", password="secret1", server_port=server.sip_port
        ) as phone:
            wait_until(lambda: operator_online(server, "op1"), 20, what="op1 registered")
            # The binding reaches the store (saved a second after the REGISTER).
            wait_until(lambda: server.sql("SELECT operator FROM registrations"), 10)
            server.kill()
            first_log = server.log_path
            server.start()
            assert server.log_path != first_log
            wait_until(lambda: operator_online(server, "op1"), 10, what="op1 restored")
            restored = server.events("registrations_restored")
            assert restored and restored[0]["bindings"] == 1
            # The restored phone was pinged with OPTIONS and answered.
            wait_until(
                lambda: any(
                    e["first_line"].startswith("OPTIONS ") for e in server.events("sip_out")
                ),
                10,
                what="qualify ping",
            )
            caller = start_caller(
                server, tmp_path / "caller", caller=CALLER, digits="1", talk_ms=4000
            )
            wait_until(lambda: talking_to(server, CALLER, "op1"), 30, what="op1 answered")
            # No REGISTER had reached the new process by then: the binding came from the store.
            registers = [
                e for e in server.events("sip_in") if e["first_line"].startswith("REGISTER ")
            ]
            answered_at = next(
                e["timestamp"] for e in server.events("bridged") if e.get("operator") == "op1"
            )
            assert all(e["timestamp"] > answered_at for e in registers), registers
            assert caller.wait(60) == 0, caller.logs()
            assert phone.proc is not None and phone.proc.poll() is None
    finally:
        server.stop()
        server.kill()


def test_each_start_names_its_configuration_and_a_change_is_a_reload(tmp_path: Path) -> None:
    server = Server(tmp_path / "server")
    server.start()
    server.stop()
    server.start()  # same file: no reload
    server.stop()
    server.sip_extra = "max_calls = 7"
    server.start()  # changed file: a config_reload entry
    server.stop()
    rows = server.sql("SELECT action, detail FROM audit_log WHERE target = 'config' ORDER BY seq")
    actions = [a for a, _ in rows]
    assert actions == ["config_load", "config_load", "config_load", "config_reload"], actions
    import json

    loads = [json.loads(d) for a, d in rows if a == "config_load"]
    assert loads[0]["sha256"] == loads[1]["sha256"] != loads[2]["sha256"]
    assert loads[2]["previous"] == loads[1]["sha256"]
    assert server.cli("audit", "verify").returncode == 0
