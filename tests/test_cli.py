"""The `callcenter112` command: every command group is there, and a broken one surfaces.

The CLI used to skip a group whose module failed to import ("not built yet"),
which turned a bug into a silently missing command.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from callcenter112 import cli


def test_every_command_group_is_registered() -> None:
    parser = cli.build_parser()
    commands = next(
        a for a in parser._actions if a.dest == "command"
    ).choices  # argparse keeps the subparsers here
    assert commands is not None
    for name in ("serve", "check-config", "incidents", "recordings", "simulate", "hash-password"):
        assert name in commands, name


def test_a_group_that_fails_to_import_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    # A module of the package that raises ModuleNotFoundError on import.
    import callcenter112

    monkeypatch.setitem(sys.modules, "callcenter112.simulate", None)
    monkeypatch.delattr(callcenter112, "simulate", raising=False)
    with pytest.raises(ModuleNotFoundError):
        cli.build_parser()


def test_bad_config_is_printed_once_the_same_way(tmp_path: object) -> None:
    from pathlib import Path

    bad = Path(str(tmp_path)) / "bad.toml"
    bad.write_text('[sip]\nlisten = "nowhere:99999"\n')
    for argv in (["check-config", str(bad)], ["simulate", "--config", str(bad)]):
        r = subprocess.run(
            [sys.executable, "-m", "callcenter112", *argv],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        assert r.returncode == 2, (argv, r.stderr)
        assert r.stderr.startswith(f"{bad}: invalid configuration\n  "), r.stderr
