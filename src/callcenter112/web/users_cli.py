"""Commands for web accounts: `callcenter112 hash-password` and `callcenter112 new-api-token`.

`hash-password` asks for a password twice (or reads one line from stdin with
``--stdin``, for scripts) and prints the ``scrypt$N$r$p$salt$key`` string to
put in ``[[user]] password_hash``. `new-api-token` prints a fresh bearer token
(give it to the CAD or reporting system, once) and the ``sha256$…`` hash to put
in the configuration next to the token's role.
"""

from __future__ import annotations

import argparse
import getpass
import sys

from .auth import hash_password, new_api_token

__all__ = ["add_commands"]

_MIN_LENGTH = 8


def _hash_password(args: argparse.Namespace) -> int:
    if args.stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        try:
            password = getpass.getpass("Password: ")
            again = getpass.getpass("Again: ")
        except EOFError:
            print("no password given", file=sys.stderr)
            return 2
        if password != again:
            print("the two passwords differ", file=sys.stderr)
            return 2
    if len(password) < _MIN_LENGTH:
        print(f"a password needs at least {_MIN_LENGTH} characters", file=sys.stderr)
        return 2
    print(hash_password(password))
    return 0


def _new_api_token(args: argparse.Namespace) -> int:
    token, digest = new_api_token()
    print(f"token:      {token}")
    print(f"token_hash: {digest}")
    print("Give the token to the client system once; keep only token_hash in the config.")
    return 0


def add_commands(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    p = sub.add_parser(
        "hash-password",
        parents=[common],
        help="print an scrypt hash for [[user]] password_hash",
    )
    p.add_argument("--stdin", action="store_true", help="read the password from standard input")
    p.set_defaults(handler=_hash_password)
    p = sub.add_parser(
        "new-api-token",
        parents=[common],
        help="print a new API bearer token and the hash to configure",
    )
    p.set_defaults(handler=_new_api_token)
