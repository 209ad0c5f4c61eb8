"""The README's two commands: `scripts/run` serves, and a softphone can register to it.

`scripts/run` is exercised as the README gives it (set-up check, then
`callcenter112 serve`), with `--config` pointing at a copy of the shipped
configuration moved to free loopback ports — 5060 may be taken on a shared
machine. The shipped configuration itself must validate.
"""

from __future__ import annotations

import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from harness import ROOT, Baresip, free_port, free_range, need, wait_until

pytestmark = pytest.mark.peers


def shipped_config_on_free_ports(directory: Path) -> tuple[Path, int]:
    text = (ROOT / "config" / "callcenter112.toml").read_text()
    sip, web = free_port(), free_port()
    lo, hi = free_range(16)
    text = text.replace('listen = "127.0.0.1:5060"', f'listen = "127.0.0.1:{sip}"')
    text = text.replace(
        'listen = "127.0.0.1:8112"',
        f'listen = "127.0.0.1:{web}"\ncity_areas = "{ROOT / "config" / "ambon-areas.toml"}"',
    )
    text = text.replace('ports = "20000-20999"', f'ports = "{lo}-{hi}"\npreopen = 4')
    text = re.sub(r'database = ".*"', f'database = "{directory / "db.sqlite3"}"', text)
    text = re.sub(r'recordings = "data/recordings"', f'recordings = "{directory / "rec"}"', text)
    text = text.replace('prompts = "sounds"', f'prompts = "{ROOT / "sounds"}"')
    path = directory / "callcenter112.toml"
    path.write_text(text)
    return path, sip


def test_shipped_config_is_valid() -> None:
    result = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "callcenter112"), "check-config",
         str(ROOT / "config" / "callcenter112.toml")],
        check=False, capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


def test_scripts_run_serves_and_a_softphone_registers(tmp_path: Path) -> None:
    need("baresip")
    config, sip_port = shipped_config_on_free_ports(tmp_path)
    log = (tmp_path / "run.log").open("wb")
    proc = subprocess.Popen(
        [str(ROOT / "scripts" / "run"), "--config", str(config)],
        stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path,
    )  # fmt: skip
    try:
        output = lambda: (tmp_path / "run.log").read_text(errors="replace")  # noqa: E731
        wait_until(lambda: '"event": "ready"' in output() or proc.poll() is not None, 120)
        assert proc.poll() is None, output()
        assert "web_console" not in output(), output()  # the console came up too
        phone = Baresip(tmp_path / "op1", user="op1", password="ambon-op1", server_port=sip_port)
        phone.start()
        try:
            wait_until(
                lambda: '"kind": "OperatorRegistered"' in output(), 30, what="op1 registered"
            )
        finally:
            phone.stop()
        wait_until(lambda: '"kind": "OperatorUnregistered"' in output(), 15, what="de-registered")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
        time.sleep(0.1)
    assert code == 0, (tmp_path / "run.log").read_text()
    assert '"event": "stopped"' in (tmp_path / "run.log").read_text()
