"""Who may use the web console: accounts, password hashes, sessions, CSRF, lockout, API tokens.

This module owns the security decisions of the web layer and does no IO: time
is passed in as `now` (epoch seconds), so every rule is tested without a clock.

* **Accounts** come from the configuration: `[[user]]` (supervisor, auditor,
  admin) with an scrypt `password_hash`, or a plain `password` that is hashed
  in memory at start; and `[[operator]]`, who sign in with their SIP user and
  SIP password. The SIP password must stay in the configuration in clear
  (digest authentication needs it), so scrypt would protect nothing there;
  it is kept as an HMAC-SHA-256 under a per-process random key and compared
  in constant time.
* **Password hashes** are ``scrypt$N$r$p$salt_hex$key_hex`` (RFC 7914). N=2^14,
  r=8, p=1 is the interactive-login setting of Percival's scrypt paper (§7)
  and costs ~0.1 s on the target machine, so the web layer verifies in a
  worker thread, never on the event loop that carries the media.
* **Sessions** are a random 256-bit token in an HttpOnly, SameSite=Strict
  cookie mapped to a server-side record that expires `web.session_hours`
  after sign-in (a shift; no sliding renewal). Each session has its own CSRF
  token, compared with `hmac.compare_digest`.
* **Lockout**: `web.login_fail_limit` failures within `web.login_lockout_s`,
  counted per user name and per source address, lock that key for
  `web.login_lockout_s`. A success clears the user's count, not the
  address's (else one valid account would reset an attacker's budget).
* **API tokens** for CAD, agency and reporting systems: random bearer
  tokens whose SHA-256 is configured (`sha256$hex`); a token is 256 random
  bits, so a fast hash is enough. Requests carrying one need no CSRF token:
  nothing ambient (a cookie) authenticates them.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

__all__ = [
    "ROLE_NAMES",
    "SCRYPT_N",
    "SCRYPT_P",
    "SCRYPT_R",
    "Account",
    "ApiToken",
    "Directory",
    "LoginGuard",
    "PasswordFormatError",
    "Principal",
    "Role",
    "Session",
    "SessionStore",
    "TokenRing",
    "csrf_matches",
    "hash_api_token",
    "hash_password",
    "may_close_callback",
    "new_api_token",
    "verify_password",
]

Role = Literal["operator", "supervisor", "auditor", "admin"]
ROLE_NAMES: tuple[Role, ...] = ("operator", "supervisor", "auditor", "admin")

# RFC 7914 §2 parameters; the values of Percival's paper for interactive logins.
SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
_SALT_BYTES = 16
_KEY_BYTES = 32
# hashlib.scrypt needs 128 * N * r bytes (16 MiB here); allow hashes up to N=2^17.
_SCRYPT_MAXMEM = 256 * 1024 * 1024
_MAX_N = 2**17
_MAX_PASSWORD = 1024  # longer input is refused before hashing (CPU exhaustion)

_TOKEN_PREFIX = "cc112_"


class PasswordFormatError(ValueError):
    """A stored hash is not ``scrypt$N$r$p$salt_hex$key_hex``."""


def hash_password(
    password: str,
    *,
    salt: bytes | None = None,
    n: int = SCRYPT_N,
    r: int = SCRYPT_R,
    p: int = SCRYPT_P,
) -> str:
    """The ``scrypt$…`` string for `[[user]] password_hash` (blocking, ~0.1 s)."""
    salt = secrets.token_bytes(_SALT_BYTES) if salt is None else salt
    key = hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=_KEY_BYTES, maxmem=_SCRYPT_MAXMEM
    )
    return f"scrypt${n}${r}${p}${salt.hex()}${key.hex()}"


def _parse_scrypt(encoded: str) -> tuple[int, int, int, bytes, bytes]:
    parts = encoded.split("$")
    if len(parts) != 6 or parts[0] != "scrypt":
        raise PasswordFormatError("expected scrypt$N$r$p$salt_hex$key_hex")
    try:
        n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
        salt, key = bytes.fromhex(parts[4]), bytes.fromhex(parts[5])
    except ValueError:
        raise PasswordFormatError("N, r, p must be numbers and salt, key hex") from None
    if n < 2 or n & (n - 1) or n > _MAX_N or not 1 <= r <= 32 or not 1 <= p <= 16:
        raise PasswordFormatError(f"scrypt parameters N={n} r={r} p={p} out of range")
    if len(salt) < 8 or len(key) < 16:
        raise PasswordFormatError("salt or key too short")
    return n, r, p, salt, key


def verify_password(password: str, encoded: str) -> bool:
    """Constant-time check of `password` against an ``scrypt$…`` hash (blocking)."""
    n, r, p, salt, key = _parse_scrypt(encoded)
    if len(password) > _MAX_PASSWORD:
        return False
    got = hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=len(key), maxmem=_SCRYPT_MAXMEM
    )
    return hmac.compare_digest(got, key)


def csrf_matches(expected: str, given: str | None) -> bool:
    """Constant-time comparison of a session's CSRF token with the one sent."""
    if not given:
        return False
    return hmac.compare_digest(expected.encode("utf-8"), given.encode("utf-8", "replace"))


# --------------------------------------------------------------------------- accounts


@dataclass(frozen=True, slots=True, kw_only=True)
class Account:
    """Someone who may sign in: `name` is what they type (an operator's SIP user)."""

    name: str
    role: Role
    display: str
    sip_user: str | None  # operator: their own; supervisor: the softphone for listen-in


@dataclass(frozen=True, slots=True)
class _Secret:
    kind: Literal["scrypt", "hmac"]
    value: str | bytes


class _UserLike(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def role(self) -> str: ...
    @property
    def password_hash(self) -> str: ...
    @property
    def password(self) -> str: ...
    @property
    def sip_user(self) -> str: ...


class _OperatorLike(Protocol):
    @property
    def user(self) -> str: ...
    @property
    def password(self) -> str: ...
    @property
    def name(self) -> str: ...


class Directory:
    """The accounts of one configuration, with their secrets.

    `verify()` is blocking (scrypt); every check costs one scrypt run, known
    name or not, operator or web user, so timing does not tell which names
    exist.
    """

    def __init__(
        self,
        *,
        users: Iterable[_UserLike] = (),
        operators: Iterable[_OperatorLike] = (),
        scrypt_n: int = SCRYPT_N,
    ) -> None:
        self._hmac_key = secrets.token_bytes(32)
        self._accounts: dict[str, tuple[Account, _Secret]] = {}
        for op in operators:
            account = Account(
                name=op.user, role="operator", display=op.name or op.user, sip_user=op.user
            )
            # The web password is its own secret (`web_password_hash`); the
            # SIP password doubles as it only in loopback demos, where it is
            # in the file in clear anyway. HA1-only operators without a web
            # hash cannot sign in to the console.
            web_hash: str = getattr(op, "web_password_hash", "")
            if web_hash:
                _parse_scrypt(web_hash)
                self._accounts[op.user] = (account, _Secret("scrypt", web_hash))
            elif op.password:
                self._accounts[op.user] = (account, _Secret("hmac", self._mac(op.password)))
        for u in users:
            role = _role(u.role)
            secret = (
                _Secret("scrypt", u.password_hash)
                if u.password_hash
                else _Secret("scrypt", hash_password(u.password, n=scrypt_n))
            )
            if u.password_hash:
                _parse_scrypt(u.password_hash)  # refuse a malformed hash at start, not at login
            account = Account(name=u.name, role=role, display=u.name, sip_user=u.sip_user or None)
            self._accounts[u.name] = (account, secret)
        self._dummy = hash_password(secrets.token_hex(8), n=scrypt_n)

    def _mac(self, password: str) -> bytes:
        return hmac.new(self._hmac_key, password.encode("utf-8"), hashlib.sha256).digest()

    def account(self, name: str) -> Account | None:
        found = self._accounts.get(name)
        return None if found is None else found[0]

    def accounts(self) -> list[Account]:
        return [a for a, _ in self._accounts.values()]

    def verify(self, name: str, password: str) -> Account | None:
        """The account if `password` is right, else None (blocking)."""
        found = self._accounts.get(name)
        if found is None or len(password) > _MAX_PASSWORD:
            verify_password(password[:_MAX_PASSWORD], self._dummy)
            return None
        account, secret = found
        if secret.kind == "hmac":
            assert isinstance(secret.value, bytes)
            ok = hmac.compare_digest(self._mac(password), secret.value)
            # Same cost as a scrypt check, so timing does not tell operators' names.
            verify_password(password, self._dummy)
        else:
            assert isinstance(secret.value, str)
            ok = verify_password(password, secret.value)
        return account if ok else None


def _role(value: str) -> Role:
    for role in ROLE_NAMES:
        if value == role:
            return role
    raise ValueError(f"unknown role {value!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Principal:
    """Who is making this request, and how they proved it."""

    user: str  # account name, or "token:<name>" for an API token
    role: Role
    display: str
    sip_user: str | None
    via: Literal["session", "token"]

    def may(self, roles: Iterable[Role]) -> bool:
        """Admin may do everything; others only what their role is listed for."""
        return self.role == "admin" or self.role in roles


# --------------------------------------------------------------------------- sessions


@dataclass(slots=True, kw_only=True)
class Session:
    token: str
    account: Account
    csrf: str
    created_at: float
    expires_at: float
    # recording key -> when its replay was last audit-logged in this session
    replays: dict[str, float] = field(default_factory=dict)

    def principal(self) -> Principal:
        a = self.account
        return Principal(
            user=a.name, role=a.role, display=a.display, sip_user=a.sip_user, via="session"
        )


class SessionStore:
    """Server-side sessions keyed by their random cookie token.

    Bounded: beyond `max_sessions` the oldest session is dropped (expired
    ones first), so a flood of sign-ins cannot exhaust memory.
    """

    def __init__(
        self, *, ttl_s: float, max_sessions: int = 10_000, max_per_account: int = 1000
    ) -> None:
        if ttl_s <= 0 or max_sessions < 1 or max_per_account < 1:
            raise ValueError("ttl_s, max_sessions and max_per_account must be positive")
        self.ttl_s = ttl_s
        self.max_sessions = max_sessions
        # `web.max_sessions_per_account`: a new sign-in beyond it ends that
        # account's oldest session (a leaked password cannot hold many).
        self.max_per_account = max_per_account
        self._sessions: dict[str, Session] = {}

    def __len__(self) -> int:
        return len(self._sessions)

    def create(self, account: Account, now: float) -> Session:
        self._prune(now)
        while len(self._sessions) >= self.max_sessions:
            del self._sessions[next(iter(self._sessions))]
        mine = [t for t, s in self._sessions.items() if s.account.name == account.name]
        for token in mine[: max(0, len(mine) - self.max_per_account + 1)]:
            del self._sessions[token]
        session = Session(
            token=secrets.token_urlsafe(32),
            account=account,
            csrf=secrets.token_urlsafe(32),
            created_at=now,
            expires_at=now + self.ttl_s,
        )
        self._sessions[session.token] = session
        return session

    def get(self, token: str | None, now: float) -> Session | None:
        if not token:
            return None
        session = self._sessions.get(token)
        if session is None:
            return None
        if now >= session.expires_at:
            del self._sessions[token]
            return None
        return session

    def drop(self, token: str | None) -> Session | None:
        return None if token is None else self._sessions.pop(token, None)

    def _prune(self, now: float) -> None:
        for token in [t for t, s in self._sessions.items() if now >= s.expires_at]:
            del self._sessions[token]


def may_close_callback(who: Principal, taken_by: str | None) -> bool:
    """Only the operator holding a callback, or a supervisor (admin passes),
    may close it (issue 11: any operator could close anyone's)."""
    if who.may(("supervisor",)):
        return True
    return taken_by is not None and taken_by == who.user


# --------------------------------------------------------------------------- lockout


@dataclass(slots=True)
class _Failures:
    times: deque[float] = field(default_factory=deque)
    locked_until: float = 0.0


class LoginGuard:
    """Counts sign-in failures per key ("user:NAME", "ip:ADDR") and locks keys.

    A key is locked for `lockout_s` once `limit` failures fall within the last
    `lockout_s` seconds. At most `max_keys` keys are tracked; the oldest are
    forgotten first (an attacker rotating names cannot grow memory).

    The user key counts failures from every address, so many addresses get
    one user's budget. The address a user last signed in from (its *usual
    address*) has a key of its own, ``user:NAME@ADDR``: someone guessing
    from elsewhere locks ``user:NAME`` but never the real operator at their
    usual desk (issue 11). Pass only names that exist as `user`.
    """

    def __init__(
        self,
        *,
        limit: int,
        lockout_s: float,
        address_limit: int | None = None,
        max_keys: int = 20_000,
    ) -> None:
        if limit < 1 or lockout_s <= 0 or max_keys < 2:
            raise ValueError("limit, lockout_s and max_keys must be positive")
        self.limit = limit
        # A whole control room shares one NAT address: a few typos by several
        # operators must not lock the shift out, so addresses get more room.
        self.address_limit = address_limit if address_limit is not None else 4 * limit
        self.lockout_s = lockout_s
        self.max_keys = max_keys
        self._keys: dict[str, _Failures] = {}
        self._usual: dict[str, str] = {}

    def keys(self, user: str | None, ip: str | None) -> list[str]:
        out = []
        if user and ip and self._usual.get(user) == ip:
            out.append(f"user:{user}@{ip}")
        elif user:
            out.append(f"user:{user}")
        if ip:
            out.append(f"ip:{ip}")
        return out

    def locked_until(self, keys: Sequence[str], now: float) -> float | None:
        """The latest lock end among `keys`, or None if none is locked."""
        until = max((self._keys[k].locked_until for k in keys if k in self._keys), default=0.0)
        return until if until > now else None

    def failed(self, keys: Sequence[str], now: float) -> list[str]:
        """Count one failure on each key; returns the keys that became locked now."""
        newly: list[str] = []
        for key in keys:
            entry = self._keys.pop(key, None) or _Failures()
            self._keys[key] = entry  # re-insert: most recently used last
            if entry.locked_until > now:
                continue
            entry.times.append(now)
            while entry.times and entry.times[0] <= now - self.lockout_s:
                entry.times.popleft()
            limit = self.address_limit if key.startswith("ip:") else self.limit
            if len(entry.times) >= limit:
                entry.locked_until = now + self.lockout_s
                entry.times.clear()
                newly.append(key)
        while len(self._keys) > self.max_keys:
            del self._keys[next(iter(self._keys))]
        return newly

    def succeeded(self, user: str, ip: str | None = None) -> None:
        """A right password: clears that user's key at this address; the
        address becomes the user's usual one."""
        if ip is None:
            self._keys.pop(f"user:{user}", None)
            return
        self._keys.pop(f"user:{user}@{ip}", None)
        if self._usual.get(user) != ip:
            self._keys.pop(f"user:{user}", None)
        self._usual.pop(user, None)
        self._usual[user] = ip
        while len(self._usual) > self.max_keys:
            del self._usual[next(iter(self._usual))]


# --------------------------------------------------------------------------- API tokens


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiToken:
    """A configured bearer token: `token_hash` is ``sha256$<hex of SHA-256(token)>``."""

    name: str
    role: Role
    token_hash: str

    def principal(self) -> Principal:
        return Principal(
            user=f"token:{self.name}",
            role=self.role,
            display=f"API {self.name}",
            sip_user=None,
            via="token",
        )


def hash_api_token(token: str) -> str:
    return "sha256$" + hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_api_token() -> tuple[str, str]:
    """A fresh bearer token and the hash to put in the configuration."""
    token = _TOKEN_PREFIX + secrets.token_urlsafe(32)
    return token, hash_api_token(token)


class TokenRing:
    """The configured API tokens; `verify` compares against every one in constant time."""

    def __init__(self, tokens: Iterable[ApiToken]) -> None:
        self._tokens = tuple(tokens)
        for t in self._tokens:
            kind, _, digest = t.token_hash.partition("$")
            if kind != "sha256" or len(digest) != 64:
                raise ValueError(f"api token {t.name!r}: token_hash must be sha256$<64 hex>")

    def __len__(self) -> int:
        return len(self._tokens)

    def verify(self, token: str) -> ApiToken | None:
        if len(token) > 256:
            return None
        presented = hash_api_token(token).encode("ascii")
        found: ApiToken | None = None
        for t in self._tokens:
            if hmac.compare_digest(presented, t.token_hash.encode("ascii")):
                found = t
        return found
