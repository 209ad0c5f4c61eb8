"""`callcenter112 reload` and `config export|import`: the running server's configuration.

The running server re-reads its own configuration file (the one it was
started with), validates it exactly as `check-config` does and applies it
without ending any call; this command prints what changed, what waits for a
restart, or why nothing changed. Exit 0 when applied (or nothing changed),
2 when the file is invalid or a change was refused, 1 when no server answers.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from pathlib import Path

from .config import ConfigError, load_config

__all__ = ["add_commands", "control_socket_path"]


def control_socket_path(config_path: str) -> Path:
    cfg = load_config(config_path)
    return cfg.path(cfg.control.socket)


def _socket_of_invalid_file(config_path: str) -> Path | None:
    """The socket named by a file that does not validate (so the running
    server can refuse it and audit who tried); None if even that is unreadable."""
    import tomllib

    from .config import ControlConfig

    p = Path(config_path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
        control = data.get("control", {})
        socket = str(control.get("socket", ControlConfig().socket))
    except (OSError, ValueError, AttributeError):
        return None
    path = Path(socket)
    parent = p.resolve().parent
    base = parent.parent if parent.name == "config" else parent  # as load_config
    return path if path.is_absolute() else base / path


def _print_refused(problems: list[str]) -> None:
    print("reload refused, nothing changed:", file=sys.stderr)
    for problem in problems:
        print(f"  {problem}", file=sys.stderr)


def _reload(args: argparse.Namespace) -> int:
    from .net.control import control_request

    try:
        path = control_socket_path(args.config)
    except ConfigError as exc:
        # Still tell the server: it refuses the file itself, names the key and audits it.
        local = [str(p) for p in exc.problems]
        found = _socket_of_invalid_file(args.config)
        if found is None:
            print(f"{exc.source}: invalid configuration, nothing changed", file=sys.stderr)
            _print_refused(local)
            return 2
        path = found
    request = {"command": "reload", "actor": f"cli:{getpass.getuser()}"}
    try:
        answer = asyncio.run(control_request(path, request))
    except (OSError, TimeoutError) as exc:
        print(f"callcenter112: no server answers on {path}: {exc}", file=sys.stderr)
        return 1
    if not answer.get("ok"):
        _print_refused(list(answer.get("problems") or [answer.get("error", "?")]))
        return 2
    changes = answer.get("changes") or []
    if not changes:
        print("no change")
        return 0
    print(f"applied {len(answer.get('applied') or [])} change(s) live")
    for line in changes:
        print(f"  {line}")
    waiting = answer.get("waiting_for_restart") or []
    if waiting:
        print("waiting for a restart: " + ", ".join(waiting))
    return 0


def _ask(args: argparse.Namespace, request: dict[str, object]) -> dict[str, object] | None:
    from .net.control import control_request

    try:
        path = control_socket_path(args.config)
    except ConfigError:
        path = _socket_of_invalid_file(args.config) or Path("/nonexistent")
    try:
        answer: dict[str, object] = asyncio.run(control_request(path, dict(request)))
    except (OSError, TimeoutError) as exc:
        print(f"callcenter112: no server answers on {path}: {exc}", file=sys.stderr)
        return None
    return answer


def _export(args: argparse.Namespace) -> int:
    answer = _ask(args, {"command": "config_export"})
    if answer is None:
        return 1
    if not answer.get("ok"):
        print(f"callcenter112: {answer.get('error', '?')}", file=sys.stderr)
        return 2
    sys.stdout.write(str(answer.get("text", "")))
    return 0


def _import(args: argparse.Namespace) -> int:
    try:
        text = Path(args.file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        print(f"callcenter112: cannot read {args.file}: {exc}", file=sys.stderr)
        return 2
    answer = _ask(
        args,
        {
            "command": "config_import",
            "actor": f"cli:{getpass.getuser()}",
            "source": str(Path(args.file).resolve()),
            "text": text,
        },
    )
    if answer is None:
        return 1
    if not answer.get("ok"):
        problems = answer.get("problems") or [answer.get("error", "?")]
        _print_refused([str(p) for p in problems] if isinstance(problems, list) else [])
        return 2
    changes = answer.get("changes") or []
    print(f"imported: {len(changes) if isinstance(changes, list) else 0} change(s)")
    for line in changes if isinstance(changes, list) else []:
        print(f"  {line}")
    return 0


def add_commands(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    p = sub.add_parser(
        "reload",
        parents=[common],
        help="apply the changed configuration file to the running server, without ending calls",
    )
    p.set_defaults(handler=_reload)
    p = sub.add_parser("config", help="the running server's stored configuration versions")
    verbs = p.add_subparsers(dest="config_command", required=True)
    e = verbs.add_parser("export", parents=[common], help="print the running configuration as TOML")
    e.set_defaults(handler=_export)
    i = verbs.add_parser(
        "import",
        parents=[common],
        help="apply FILE as a new version (the file wins over web changes; audited)",
    )
    i.add_argument("file")
    i.set_defaults(handler=_import)
