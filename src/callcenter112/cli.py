"""The `callcenter112` command.

Subcommands are small functions taking the parsed arguments and returning an
exit status. Exit statuses are part of the interface (DESIGN §4): 0 success,
1 a check failed (e.g. `recordings verify` found tampering), 2 bad usage or a
bad configuration file.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from . import __version__
from .config import Config, ConfigError, config_warnings, load_config

__all__ = ["main"]

DEFAULT_CONFIG = "config/callcenter112.toml"

Handler = Callable[[argparse.Namespace], int]


def _load_checked(path: str) -> Config | None:
    """The configuration, after everything serve opens was checked
    (preflight.py); None after printing each problem."""
    from .preflight import preflight

    try:
        cfg = load_config(path)
        problems = preflight(cfg)
        if problems:
            raise ConfigError(path, problems)
    except ConfigError as exc:
        print(exc.explain(), file=sys.stderr)
        return None
    for warning in config_warnings(cfg):
        print(f"{path}: warning: {warning}", file=sys.stderr)
    return cfg


def _check_config(args: argparse.Namespace) -> int:
    path = args.file or args.config
    cfg = _load_checked(path)
    if cfg is None:
        return 2
    print(
        f"{path}: OK ({len(cfg.trunk)} trunk(s), {len(cfg.operator)} operator(s), "
        f"{len(cfg.agency)} agency(ies), {len(cfg.user)} web user(s))"
    )
    return 0


def _serve(args: argparse.Namespace) -> int:
    from .app import serve

    cfg = _load_checked(args.config)
    if cfg is None:
        return 2
    from .faults import secure_files
    from .records import is_postgresql

    # A PostgreSQL database is the server's to protect; a SQLite file is ours.
    local_db = None if is_postgresql(cfg.storage.database) else cfg.path(cfg.storage.database)
    folders = [cfg.path(cfg.storage.recordings)] + ([local_db.parent] if local_db else [])
    for problem in secure_files(
        # Never the checkout or the working folder itself (a bare file name).
        folders=[
            f for f in folders if f.resolve() not in (cfg.base_dir.resolve(), Path.cwd().resolve())
        ],
        private_files=[*([local_db] if local_db else []), Path(args.config)],
    ):
        print(f"callcenter112: cannot tighten the mode of {problem}", file=sys.stderr)
    status: int = serve(cfg, config_path=args.config)
    return status


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="callcenter112",
        description="Emergency 112 call-handling server.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        default=DEFAULT_CONFIG,
        metavar="FILE",
        help=f"configuration file (default {DEFAULT_CONFIG})",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("serve", parents=[common], help="run the server")
    p.set_defaults(handler=_serve)

    p = sub.add_parser("check-config", parents=[common], help="validate a configuration file")
    p.add_argument("file", nargs="?", help="file to check (default: --config)")
    p.set_defaults(handler=_check_config)

    # Further command groups register themselves here; each module exposes
    # `add_commands(subparsers, common)`.
    for register in _command_groups():
        register(sub, common)
    return parser


def _command_groups() -> list[
    Callable[[argparse._SubParsersAction[argparse.ArgumentParser], argparse.ArgumentParser], None]
]:
    # Imported here so `serve` and `check-config` start without loading every group.
    # A group that fails to import is a bug: the error surfaces, never a missing command.
    from . import control_cli, report_cli, simulate, watchlist_cli
    from .media import prompts_cli
    from .records import cli as records_cli
    from .web import users_cli

    return [
        records_cli.add_commands,
        prompts_cli.add_commands,
        simulate.add_commands,
        users_cli.add_commands,
        report_cli.add_commands,
        control_cli.add_commands,
        watchlist_cli.add_commands,  # issue 12
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
