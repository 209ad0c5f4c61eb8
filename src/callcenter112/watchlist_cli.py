"""`callcenter112 watchlist add|list|remove`: the supervisor's watch list (issue 12).

A person lists a number (the system only suggests, `callers.suggest_watch_list`),
with a reason and an expiry of 24h, 7d or 30d; every change is an audit row
written with it (`Store.watch_list_add` / `watch_list_remove`). The actor is
the operating-system user running the command (`records.cli.cli_actor`).
Listing never refuses a call: it plays a warning and waits the caller behind
fresh callers, never more than `queue.watch_list_max_extra_wait_s`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from .config import Config
from .incidents import format_timestamp
from .records import Store
from .records.cli import _handler, cli_actor
from .watchlist import EXPIRY_CHOICES, WatchListEntry, WatchListError

__all__ = ["add_commands", "entry_to_json"]


def entry_to_json(e: WatchListEntry) -> dict[str, object]:
    return {
        "number": e.number,
        "reason": e.reason,
        "expires_at": format_timestamp(e.expires_at),
        "created_by": e.created_by,
        "created_at": format_timestamp(e.created_at),
        "removed_by": e.removed_by,
        "removed_at": format_timestamp(e.removed_at),
    }


async def _add(store: Store, cfg: Config, args: argparse.Namespace) -> int:
    try:
        change = await store.watch_list_add(
            args.number,
            reason=args.reason,
            expiry=args.expiry,
            created_by=cli_actor(),
            now=time.time(),
        )
    except WatchListError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    e = change.entry
    print(f"{e.number} listed until {format_timestamp(e.expires_at)}: {e.reason}")
    return 0


async def _remove(store: Store, cfg: Config, args: argparse.Namespace) -> int:
    try:
        change = await store.watch_list_remove(args.number, removed_by=cli_actor(), now=time.time())
    except WatchListError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{change.entry.number} removed from the watch list")
    return 0


async def _list(store: Store, cfg: Config, args: argparse.Namespace) -> int:
    entries = await store.watch_list(time.time(), history=args.history)
    if args.json:
        sys.stdout.write(json.dumps([entry_to_json(e) for e in entries], indent=2) + "\n")
        return 0
    for e in entries:
        row = entry_to_json(e)
        ended = f"  removed by {e.removed_by}" if e.removed_by else ""
        print(f"{e.number:<16} until {row['expires_at']}  by {e.created_by}: {e.reason}{ended}")
    return 0


def add_commands(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    wl = sub.add_parser("watchlist", help="the supervisor's watch list of prank numbers")
    wl_sub = wl.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = wl_sub.add_parser("add", parents=[common], help="list a number (audited)")
    p.add_argument("number")
    p.add_argument("--reason", required=True, help="why (shown to supervisors, audited)")
    p.add_argument(
        "--for",
        "--expiry",
        dest="expiry",
        required=True,
        choices=tuple(EXPIRY_CHOICES),
        help="how long the entry lasts",
    )
    p.set_defaults(handler=_handler(_add))
    p = wl_sub.add_parser("remove", parents=[common], help="take a number off early (audited)")
    p.add_argument("number")
    p.set_defaults(handler=_handler(_remove))
    p = wl_sub.add_parser("list", parents=[common], help="numbers listed now")
    p.add_argument("--history", action="store_true", help="every entry ever, removed too")
    p.add_argument("--json", action="store_true", help="JSON instead of a table")
    p.set_defaults(handler=_handler(_list))
