"""Commands for web accounts: `callcenter112 hash-password` and `callcenter112 new-api-token`.

`hash-password` asks for a password twice (or reads one line from stdin with
``--stdin``, for scripts) and prints the ``scrypt$N$r$p$salt$key`` string to
put in ``[[user]] password_hash``. `new-api-token` prints a fresh bearer token
(give it to the CAD or reporting system, once) and the ``sha256$…`` hash to put
in the configuration next to the token's role.

`hash-password --sip USER` makes an operator's SIP secret instead: the HA1
digests H(USER:realm:password) for MD5 and SHA-256 (`ha1_md5`, `ha1_sha256`
in ``[[operator]]``). The realm is `--realm`, else the configuration's
`sip.realm`. The web console password is a different secret: hash it
without `--sip` and put it in the operator's `web_password_hash`.
"""

from __future__ import annotations

import argparse
import getpass
import sys

from ..config import ConfigError, load_config
from ..sip.auth import ha1_for
from .auth import hash_password, new_api_token

__all__ = ["add_commands"]

_MIN_LENGTH = 8


def _realm(args: argparse.Namespace) -> str:
    if args.realm:
        return str(args.realm)
    try:
        return load_config(args.config).sip.realm
    except ConfigError:
        return "callcenter112"


def _hash_password(args: argparse.Namespace) -> int:
    if args.sip is not None and not args.sip:
        print("SIP user: ", end="", file=sys.stderr, flush=True)  # stdout is the result
        args.sip = sys.stdin.readline().strip()
        if not args.sip:
            print("no SIP user given", file=sys.stderr)
            return 2
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
    if args.sip:
        realm = _realm(args)
        print(f"# [[operator]] user = {args.sip!r}, realm {realm!r}")
        print(f'ha1_md5 = "{ha1_for("MD5", args.sip, realm, password)}"')
        print(f'ha1_sha256 = "{ha1_for("SHA-256", args.sip, realm, password)}"')
        return 0
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
        help="print an scrypt hash for password_hash, or SIP HA1 digests with --sip",
    )
    p.add_argument("--stdin", action="store_true", help="read the password from standard input")
    p.add_argument(
        "--sip",
        nargs="?",
        const="",
        metavar="USER",
        help="print an operator's SIP HA1 digests (MD5 and SHA-256) instead",
    )
    p.add_argument("--realm", default="", help="SIP realm (default: the config's sip.realm)")
    p.set_defaults(handler=_hash_password)
    p = sub.add_parser(
        "new-api-token",
        parents=[common],
        help="print a new API bearer token and the hash to configure",
    )
    p.set_defaults(handler=_new_api_token)
