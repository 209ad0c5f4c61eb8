"""`callcenter112 reload`: apply the changed configuration file to the running server.

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


def _reload(args: argparse.Namespace) -> int:
    from .net.control import control_request

    try:
        path = control_socket_path(args.config)
    except ConfigError as exc:
        print(f"{exc.source}: invalid configuration, nothing changed", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return 2
    request = {"command": "reload", "actor": f"cli:{getpass.getuser()}"}
    try:
        answer = asyncio.run(control_request(path, request))
    except (OSError, TimeoutError) as exc:
        print(f"callcenter112: no server answers on {path}: {exc}", file=sys.stderr)
        return 1
    if not answer.get("ok"):
        print("reload refused, nothing changed:", file=sys.stderr)
        for problem in answer.get("problems") or [answer.get("error", "?")]:
            print(f"  {problem}", file=sys.stderr)
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


def add_commands(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    p = sub.add_parser(
        "reload",
        parents=[common],
        help="apply the changed configuration file to the running server, without ending calls",
    )
    p.set_defaults(handler=_reload)
