"""Digest authentication for SIP: RFC 3261 §22 as updated by RFC 7616 and RFC 8760.

Owns three things:

* the grammar of `WWW-Authenticate` / `Proxy-Authenticate` challenges and
  `Authorization` / `Proxy-Authorization` credentials (RFC 7235 §2.1, RFC 3261
  §25.1). This is our own parser: quoted strings may hold commas (sipmessage's
  `AuthParameters` splits on every comma), parameter names are
  case-insensitive, and whatever the text, it returns or raises
  `SipParseError` — nothing else;
* the digest computation of RFC 7616 §3.4.1-§3.4.3 for MD5, SHA-256 and
  SHA-512-256 and their `-sess` variants (`digest_response`);
* both ends of the exchange: `DigestAuthenticator` challenges and verifies
  requests from operators' softphones, and `authorization_for` answers a
  challenge from a carrier trunk when we send calls out.

Server policy (decided here, see the class docstring for the details):
the algorithms offered are configurable; each gets its own header, most
preferred first (RFC 8760 §2.3), all carrying the same nonce, `qop="auth"`
and an opaque. The default offers MD5 only — see DEFAULT_SERVER_ALGORITHMS
for why. Nonces are self-validating (an HMAC over their issue time and
random bits), so expiry needs no state; replay defence needs some — a
bounded LRU of the highest nonce-count seen per nonce. A correct response on
an expired or unknown nonce is answered `stale=true`, so phones retry
silently after the nonce lifetime or a server restart. An unknown user and a
wrong password look identical on the wire.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import math
import re
import secrets
import struct
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Final

from ..guessing import AccountGuard
from .errors import SipParseError
from .message import Request, Response, new_tag, parse_uri

if TYPE_CHECKING:
    from ..config import OperatorConfig, SipConfig

__all__ = [
    "DEFAULT_SERVER_ALGORITHMS",
    "MAX_AUTH_PARAMS",
    "MAX_CHALLENGES",
    "MAX_NONCES",
    "NONCE_CLOCK_SKEW_S",
    "RFC8760_ALGORITHMS",
    "AuthFailure",
    "AuthParams",
    "AuthResult",
    "DigestAlgorithm",
    "DigestAuthenticator",
    "SipSecret",
    "authorization_for",
    "digest_response",
    "ha1_for",
    "operator_credentials",
    "parse_challenges",
    "parse_credentials",
    "select_challenge",
]


# ---------------------------------------------------------------------------
# Algorithms: the IANA "HTTP Digest Hash Algorithms" registry (RFC 7616 §6.1),
# which RFC 8760 §2.1 makes the SIP registry too.


@dataclass(frozen=True, slots=True, kw_only=True)
class DigestAlgorithm:
    name: str  # as written on the wire: "MD5", "SHA-256-sess" …
    hash_name: str  # hashlib name
    session: bool  # the "-sess" variant (RFC 7616 §3.4.2)

    def hex(self, data: str) -> str:
        return hashlib.new(self.hash_name, data.encode("utf-8")).hexdigest()

    @staticmethod
    def named(name: str) -> DigestAlgorithm | None:
        """The algorithm for a wire name (case-insensitive), or None."""
        return _ALGORITHMS.get(name.lower())


_ALGORITHMS: Final = {
    alg.name.lower(): alg
    for alg in (
        DigestAlgorithm(name="MD5", hash_name="md5", session=False),
        DigestAlgorithm(name="MD5-sess", hash_name="md5", session=True),
        DigestAlgorithm(name="SHA-256", hash_name="sha256", session=False),
        DigestAlgorithm(name="SHA-256-sess", hash_name="sha256", session=True),
        DigestAlgorithm(name="SHA-512-256", hash_name="sha512_256", session=False),
        DigestAlgorithm(name="SHA-512-256-sess", hash_name="sha512_256", session=True),
    )
}

# RFC 8760 §2.3 lets a UAS offer several algorithms, one header each, most
# preferred first, and §2.4 tells the UAC to use the topmost it supports. The
# peers this centre must work with do not all follow that, so MD5 alone is
# the default and `("SHA-256", "MD5")` is opt-in per deployment:
#   * baresip 1.0.0 / libre 1.1.0 (Debian's, the operator phone of DESIGN §6)
#     fails registration with ENOSYS if ANY challenge names an algorithm other
#     than MD5, whatever the order (tested: tests/test_registrar.py);
#   * SIPp 3.6.1 takes the first header only and aborts on SHA-256
#     ("createAuthHeader: authentication must use MD5 or AKAv1-MD5");
#   * pjsip ≤ 2.10 (older MicroSIP/Zoiper builds), Twinkle, and Asterisk /
#     FreeSWITCH as clients read only the first header.
# An operator who cannot register cannot answer 112 calls, and SHA-256 buys
# little here: both are fast hashes, so an offline guess at a captured
# exchange costs about the same. Offer SHA-256 where every phone is known to
# handle RFC 8760.
DEFAULT_SERVER_ALGORITHMS: Final = ("MD5",)
RFC8760_ALGORITHMS: Final = ("SHA-256", "MD5")

# No RFC limit exists; RFC 7616 defines 13 parameters, so more than this is
# abuse. A header line is already bounded by message.MAX_HEADER_LINE.
MAX_AUTH_PARAMS: Final = 32
MAX_CHALLENGES: Final = 8  # challenges in one WWW-Authenticate value
# Nonces whose highest nonce-count we remember (RFC 7616 §3.3: the server
# "should" check nc to detect replays). Each entry is ~150 bytes; one entry
# per nonce actually used, so this bounds the memory whatever the traffic.
MAX_NONCES: Final = 16_384
# A nonce stamped further in the future than this is not ours.
NONCE_CLOCK_SKEW_S: Final = 1.0
# RFC 7616 §3.4: nc-value = 8LHEX. Some phones send fewer digits; the hash
# uses the string as sent, so tolerating that costs nothing.
_NC_RE: Final = re.compile(r"^[0-9A-Fa-f]{1,8}$")
_ONE_TIME: Final = 1 << 32  # nc recorded for an RFC 2069 (no qop) response


# ---------------------------------------------------------------------------
# Grammar: RFC 7235 §2.1 (which RFC 3261 §25.1 `challenge`/`credentials` follow)
#
#   challenge   = auth-scheme [ 1*SP ( token68 / #auth-param ) ]
#   auth-param  = token BWS "=" BWS ( token / quoted-string )
#   token68     = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
#
# `#` lists allow empty elements (RFC 7230 §7), and several challenges may
# share one header value.


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthParams:
    """One challenge or one set of credentials.

    `params` has lower-cased names and unquoted values.
    """

    scheme: str
    params: Mapping[str, str]
    token68: str | None = None

    @property
    def is_digest(self) -> bool:
        return self.scheme.lower() == "digest"

    def get(self, name: str) -> str | None:
        return self.params.get(name.lower())

    @property
    def algorithm(self) -> DigestAlgorithm | None:
        """RFC 7616 §3.3: absent means MD5. None for an unknown algorithm."""
        return DigestAlgorithm.named(self.get("algorithm") or "MD5")

    @property
    def qop_options(self) -> tuple[str, ...]:
        """The qop values of a challenge (`qop="auth,auth-int"`), lower-cased."""
        value = self.get("qop")
        if value is None:
            return ()
        return tuple(v.strip().lower() for v in value.split(",") if v.strip())


_TCHAR: Final = frozenset(
    "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
)
_WS: Final = " \t"
_TOKEN68: Final = re.compile(r"([A-Za-z0-9\-._~+/]+=*)[ \t]*(?=,|$)")


def parse_challenges(value: str) -> list[AuthParams]:
    """Every challenge in one WWW-Authenticate / Proxy-Authenticate value."""
    return _parse(value, many=True)


def parse_credentials(value: str) -> AuthParams:
    """The credentials in one Authorization / Proxy-Authorization value."""
    return _parse(value, many=False)[0]


def _skip_ws(s: str, i: int) -> int:
    n = len(s)
    while i < n and s[i] in _WS:
        i += 1
    return i


def _token(s: str, i: int) -> tuple[str, int]:
    start = i
    n = len(s)
    while i < n and s[i] in _TCHAR:
        i += 1
    if i == start:
        found = repr(s[i]) if i < n else "end of value"
        raise SipParseError(f"expected a token at offset {i}, found {found}")
    return s[start:i], i


def _value(s: str, i: int) -> tuple[str, int]:
    n = len(s)
    if i < n and s[i] == '"':
        out: list[str] = []
        i += 1
        while i < n:
            ch = s[i]
            if ch == '"':
                return "".join(out), i + 1
            if ch == "\\":
                i += 1
                if i >= n:
                    break
                ch = s[i]
            if ch in "\r\n\x00":
                raise SipParseError("control character in quoted string")
            out.append(ch)
            i += 1
        raise SipParseError("unterminated quoted string")
    # Unquoted: RFC 7235 says token, but servers send nonces and opaques
    # with "/" and "=" unquoted; anything up to whitespace or a comma will do.
    start = i
    while i < n and s[i] not in ' \t,"' and s[i] >= " " and s[i] != "\x7f":
        i += 1
    if i == start:
        raise SipParseError(f"missing parameter value at offset {i}")
    return s[start:i], i


def _parse(value: str, *, many: bool) -> list[AuthParams]:
    s = value
    n = len(s)
    out: list[AuthParams] = []
    scheme: str | None = None
    params: dict[str, str] = {}
    token68: str | None = None
    need_comma = False  # after a parameter or token68, only "," or the end may follow
    after_scheme = False  # a scheme was just read and no comma has followed yet

    def finish() -> None:
        if scheme is not None:
            out.append(AuthParams(scheme=scheme, params=params, token68=token68))

    i = _skip_ws(s, 0)
    while i < n:
        if s[i] == ",":
            need_comma = False
            after_scheme = False
            i = _skip_ws(s, i + 1)
            continue
        if need_comma:
            raise SipParseError(f"expected ',' at offset {i}")
        name, end = _token(s, i)
        eq = _skip_ws(s, end)
        if eq < n and s[eq] == "=":
            if scheme is None:
                raise SipParseError("parameter before the authentication scheme")
            if token68 is not None:
                raise SipParseError("parameter after token68")
            text, i = _value(s, _skip_ws(s, eq + 1))
            key = name.lower()
            if key in params:
                # RFC 7235 §2.1: each parameter name MUST only occur once.
                raise SipParseError(f"parameter {key!r} appears twice")
            if len(params) >= MAX_AUTH_PARAMS:
                raise SipParseError(f"more than {MAX_AUTH_PARAMS} parameters")
            params[key] = text
            need_comma = True
            after_scheme = False
            i = _skip_ws(s, i)
            continue
        # A new scheme.
        if after_scheme:
            raise SipParseError(f"two schemes without a comma at offset {i}")
        if scheme is not None and not many:
            raise SipParseError("more than one set of credentials")
        finish()
        if len(out) >= MAX_CHALLENGES:
            raise SipParseError(f"more than {MAX_CHALLENGES} challenges")
        scheme, params, token68 = name, {}, None
        i = end
        if i < n and s[i] not in _WS and s[i] != ",":
            raise SipParseError(f"unexpected {s[i]!r} after scheme {name!r}")
        i = _skip_ws(s, i)
        m = _TOKEN68.match(s, i)
        if m is not None:
            if name.lower() == "digest":
                # RFC 7616 §3.3/§3.4: Digest carries auth-params only.
                raise SipParseError(f"Digest with token68 {m.group(1)!r}")
            token68 = m.group(1)
            i = m.end()
            need_comma = True
        else:
            after_scheme = True
    finish()
    if not out:
        raise SipParseError("no authentication scheme")
    return out


def _quote(value: str) -> str:
    if any(c in value for c in "\r\n\x00"):
        raise ValueError("control character in an authentication parameter")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


# ---------------------------------------------------------------------------
# The computation (RFC 7616 §3.4.1-§3.4.3)


def _ha1(
    alg: DigestAlgorithm, username: str, realm: str, password: str, *, nonce: str, cnonce: str
) -> str:
    ha1 = alg.hex(f"{username}:{realm}:{password}")
    if alg.session:
        ha1 = alg.hex(f"{ha1}:{nonce}:{cnonce}")
    return ha1


def digest_response(
    *,
    algorithm: str,
    username: str,
    realm: str,
    password: str | None = None,
    method: str,
    uri: str,
    nonce: str,
    qop: str | None = None,
    nc: str | None = None,
    cnonce: str | None = None,
    body: bytes = b"",
    ha1: str | None = None,
) -> str:
    """The `response` value (lower-case hex) of RFC 7616 §3.4.1.

    `qop` None computes the RFC 2069 form KD(HA1, nonce:HA2) that RFC 7616
    §3.4.1 still describes for servers that send no qop; `auth-int` hashes
    `body` into A2 (§3.4.3). Give `password`, or the stored `ha1`
    (H(username:realm:password), RFC 7616 §3.4.2) instead. Raises
    SipParseError for an unknown algorithm or qop, or a qop without nc/cnonce.
    """
    alg = DigestAlgorithm.named(algorithm)
    if alg is None:
        raise SipParseError(f"unsupported digest algorithm {algorithm!r}")
    if alg.session and cnonce is None:
        raise SipParseError(f"{alg.name} needs a cnonce")
    if ha1 is None:
        if password is None:
            raise ValueError("digest_response needs a password or an ha1")
        ha1 = _ha1(alg, username, realm, password, nonce=nonce, cnonce=cnonce or "")
    elif alg.session:
        ha1 = alg.hex(f"{ha1}:{nonce}:{cnonce or ''}")
    qop_l = qop.lower() if qop is not None else None
    if qop_l == "auth-int":
        a2 = f"{method}:{uri}:{hashlib.new(alg.hash_name, body).hexdigest()}"
    elif qop_l in ("auth", None):
        a2 = f"{method}:{uri}"
    else:
        raise SipParseError(f"unsupported qop {qop!r}")
    ha2 = alg.hex(a2)
    if qop_l is None:
        return alg.hex(f"{ha1}:{nonce}:{ha2}")
    if nc is None or cnonce is None:
        raise SipParseError("qop needs nc and cnonce")
    return alg.hex(f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")


# ---------------------------------------------------------------------------
# Client side: answering a carrier's challenge


def select_challenge(values: Iterable[str], *, realm: str | None = None) -> AuthParams:
    """The challenge to answer among the WWW-/Proxy-Authenticate values of a
    response: the topmost Digest challenge whose algorithm we implement
    (RFC 8760 §2.4), optionally restricted to one realm. Raises
    SipParseError when none fits."""
    errors: list[str] = []
    for value in values:
        try:
            challenges = parse_challenges(value)
        except SipParseError as exc:
            errors.append(exc.reason)
            continue
        for ch in challenges:
            if not ch.is_digest or ch.algorithm is None:
                continue
            if realm is not None and ch.get("realm") != realm:
                continue
            if ch.get("realm") is None or ch.get("nonce") is None:
                continue
            if ch.qop_options and not {"auth", "auth-int"} & set(ch.qop_options):
                continue
            return ch
    detail = f" ({'; '.join(errors)})" if errors else ""
    raise SipParseError(f"no usable digest challenge{detail}")


def authorization_for(
    challenge: str | AuthParams,
    method: str,
    uri: str,
    username: str,
    password: str,
    *,
    cnonce: str,
    nc: int,
    body: bytes = b"",
) -> str:
    """The Authorization / Proxy-Authorization value answering `challenge`
    (one header value, or an already selected `AuthParams`).

    `nc` is the count of requests this client has sent with this nonce
    (1 for the first, RFC 7616 §3.4); the caller keeps it per nonce. qop
    `auth` is preferred over `auth-int` when both are offered; a challenge
    without qop gets an RFC 2069 answer. Raises SipParseError when the
    challenge cannot be answered.
    """
    ch = challenge if isinstance(challenge, AuthParams) else select_challenge([challenge])
    alg = ch.algorithm
    realm = ch.get("realm")
    nonce = ch.get("nonce")
    if not ch.is_digest or alg is None or realm is None or nonce is None:
        raise SipParseError("not an answerable digest challenge")
    if not 0 < nc < 1 << 32:
        raise ValueError(f"nonce count {nc} out of range")
    options = ch.qop_options
    qop: str | None
    if not options:
        qop = None
    elif "auth" in options:
        qop = "auth"
    elif "auth-int" in options:
        qop = "auth-int"
    else:
        raise SipParseError(f"no supported qop in {ch.get('qop')!r}")
    nc_text = f"{nc:08x}"
    response = digest_response(
        algorithm=alg.name,
        username=username,
        realm=realm,
        password=password,
        method=method,
        uri=uri,
        nonce=nonce,
        qop=qop,
        nc=nc_text if qop else None,
        cnonce=cnonce if qop or alg.session else None,
        body=body,
    )
    parts = [
        f"username={_quote(username)}",
        f"realm={_quote(realm)}",
        f"nonce={_quote(nonce)}",
        f"uri={_quote(uri)}",
        f"response={_quote(response)}",
    ]
    if ch.get("algorithm") is not None:
        parts.append(f"algorithm={alg.name}")
    if qop or alg.session:
        parts.append(f"cnonce={_quote(cnonce)}")
    opaque = ch.get("opaque")
    if opaque is not None:
        parts.append(f"opaque={_quote(opaque)}")
    if qop:
        parts.append(f"qop={qop}")
        parts.append(f"nc={nc_text}")
    return "Digest " + ", ".join(parts)


# ---------------------------------------------------------------------------
# Server side


@dataclass(frozen=True, slots=True, kw_only=True)
class SipSecret:
    """One operator's stored SIP secret: HA1 = H(user:realm:password) per
    algorithm (RFC 7616 §3.4.2), so the configuration never holds the
    password itself. `from_password` is for loopback demos and tests."""

    ha1: Mapping[str, str]  # algorithm wire name ("MD5", "SHA-256") → lower-case hex

    @staticmethod
    def from_password(user: str, realm: str, password: str) -> SipSecret:
        return SipSecret(
            ha1={name: ha1_for(name, user, realm, password) for name in ("MD5", "SHA-256")}
        )


def ha1_for(algorithm: str, user: str, realm: str, password: str) -> str:
    """H(user:realm:password) for one non-session algorithm, as stored in the config."""
    alg = DigestAlgorithm.named(algorithm)
    if alg is None or alg.session:
        raise ValueError(f"no stored HA1 for algorithm {algorithm!r}")
    return alg.hex(f"{user}:{realm}:{password}")


class AuthFailure(Enum):
    """Why `verify` refused a request; each maps to one answer."""

    MISSING = "missing"  # no Digest credentials → 401
    WRONG_REALM = "wrong_realm"  # credentials only for other realms → 401
    UNSUPPORTED = "unsupported"  # an algorithm we did not offer → 401
    MALFORMED = "malformed"  # unparsable or incomplete credentials → 400
    WRONG_URI = "wrong_uri"  # digest uri is not the Request-URI → 400
    UNKNOWN_USER = "unknown_user"  # → 401, same as a wrong password
    BAD_RESPONSE = "bad_response"  # wrong password → 401
    STALE_NONCE = "stale_nonce"  # right password, expired/unknown nonce → 401 stale
    REPLAY = "replay"  # right password, nonce-count not increasing → 401 stale
    GUESSING = "guessing"  # account in back-off, attempt from elsewhere → 403, unchecked


# Failures that say something about the password: these feed the lockout.
# MALFORMED is counted too: a phone that cannot form credentials cannot
# register anyway, while a scanner sending garbage should be stopped.
_COUNTED: Final = frozenset(
    {AuthFailure.UNKNOWN_USER, AuthFailure.BAD_RESPONSE, AuthFailure.MALFORMED}
)


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthResult:
    """The outcome of `DigestAuthenticator.verify`.

    `user` is the authenticated user (only when `ok`); `username` is the
    name the credentials claimed, verified or not — use it to key the
    lockout and logs, never to authorize. `response` is what to send when
    not ok (a 401 challenge or a 400).
    """

    user: str | None = None
    failure: AuthFailure | None = None
    username: str | None = None
    response: Response | None = None
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.failure is None

    @property
    def counts_as_failure(self) -> bool:
        """Whether this attempt should count towards a source's lockout."""
        return self.failure in _COUNTED


class DigestAuthenticator:
    """Challenges and verifies requests for one realm.

    Credentials map user → `SipSecret` (one HA1 per algorithm offered; the
    configuration's `ha1_md5` / `ha1_sha256`) or, for loopback demos and
    tests, a plain password. `secret` keys the nonce HMAC: give each server process a
    fresh random one (`secrets.token_bytes(32)`); nonces from an earlier run
    then fail the HMAC and a phone that answers one correctly gets
    `stale=true` and retries without bothering its user.

    Nonce: base64url(issue time in ms, 8 bytes ‖ 10 random bytes ‖
    HMAC-SHA256(secret, realm ‖ those 18 bytes)[:12]) — 40 characters with
    no "," or quote, so even pyVoIP's regex parser copes. Expiry is checked
    from the embedded time against `now` (the caller's monotonic clock).

    Replay: the highest nonce-count accepted per nonce is kept in an LRU of
    `max_nonces` entries, inserted only on a successful verification (so a
    challenge flood costs no memory). When an entry is evicted, a watermark
    rises to its issue time; a nonce issued at or before the watermark that
    is not in the table may have been used already, so it is answered
    `stale=true` rather than trusted — bounded memory, no replay window.

    RFC 2069 responses (no qop; pyVoIP 1.6.8 sends only these) are accepted,
    with the nonce then single-use: a second use of the nonce is a replay.
    That gives them the same replay protection as nc does for RFC 2617
    clients. `accept_rfc2069=False` refuses them (400).

    The digest `uri` must name the Request-URI (RFC 7616 §3.4.6 → 400
    otherwise): equal as text, or as SIP URIs with the same scheme, user,
    host (case-insensitive) and port (absent = 5060/5061); URI parameters are
    ignored because phones add or drop `;transport=` there (pyVoIP sends
    `sip:host;transport=UDP` for a Request-URI `sip:host`). This loses no
    security: the nonce-count, not the uri, stops replays, and qop=auth
    never protected the rest of the request anyway.

    Only the algorithms offered (`algorithms`) are accepted in credentials;
    anything else (`-sess`, SHA-512-256, unknown) gets a fresh challenge.
    `userhash` (RFC 7616 §3.4.4) is not offered, so credentials using it are
    malformed.

    Guessing (`guessing.AccountGuard`): when `verify` is given the request's
    `source`, a known user in back-off is refused (403, nothing checked)
    except at the address it last registered from; each wrong response for a
    known user counts on that account whatever the source.
    """

    __slots__ = (
        "_credentials",
        "_decoy",
        "_guard",
        "_opaque",
        "_secret",
        "_seen",
        "_watermark",
        "accept_rfc2069",
        "algorithms",
        "max_nonces",
        "nonce_ttl_s",
        "realm",
    )

    def __init__(
        self,
        realm: str,
        credentials: Mapping[str, str | SipSecret],
        *,
        secret: bytes,
        nonce_ttl_s: float = 300.0,
        algorithms: Sequence[str] = DEFAULT_SERVER_ALGORITHMS,
        max_nonces: int = MAX_NONCES,
        accept_rfc2069: bool = True,
        guard: AccountGuard | None = None,
    ) -> None:
        if not realm or any(c in realm for c in '"\\\r\n'):
            raise ValueError(f"realm {realm!r} cannot be quoted safely")
        if len(secret) < 16:
            raise ValueError("the nonce secret needs at least 16 bytes")
        if not algorithms:
            raise ValueError("at least one algorithm is needed")
        names: list[str] = []
        for a in algorithms:
            alg = DigestAlgorithm.named(a)
            if alg is None or alg.session:
                raise ValueError(f"cannot offer digest algorithm {a!r}")
            names.append(alg.name)
        self.realm = realm
        self.algorithms = tuple(names)
        self.nonce_ttl_s = nonce_ttl_s
        self.max_nonces = max_nonces
        self.accept_rfc2069 = accept_rfc2069
        self._secret = secret
        self._credentials = self._secrets(credentials)
        self._guard = guard if guard is not None else AccountGuard()
        self._decoy = secrets.token_hex(16)
        self._opaque = hmac.new(secret, b"opaque\0" + realm.encode(), "sha256").hexdigest()[:32]
        self._seen: OrderedDict[str, tuple[int, float]] = OrderedDict()
        self._watermark = float("-inf")

    @classmethod
    def from_config(
        cls,
        sip: SipConfig,
        operators: Iterable[OperatorConfig],
        *,
        secret: bytes,
        algorithms: Sequence[str] = DEFAULT_SERVER_ALGORITHMS,
    ) -> DigestAuthenticator:
        return cls(
            sip.realm,
            operator_credentials(operators),
            secret=secret,
            nonce_ttl_s=sip.nonce_ttl_s,
            algorithms=algorithms,
        )

    def update_credentials(self, credentials: Mapping[str, str | SipSecret]) -> None:
        """Replace the user table (configuration reload); nonces stay valid."""
        self._credentials = self._secrets(credentials)

    def _secrets(self, credentials: Mapping[str, str | SipSecret]) -> dict[str, SipSecret]:
        return {
            user: SipSecret.from_password(user, self.realm, c) if isinstance(c, str) else c
            for user, c in credentials.items()
        }

    @property
    def guard(self) -> AccountGuard:
        return self._guard

    # -- nonces --------------------------------------------------------------

    def new_nonce(self, now: float) -> str:
        raw = struct.pack(">q", round(now * 1000)) + secrets.token_bytes(10)
        return base64.urlsafe_b64encode(raw + self._mac(raw)).decode("ascii")

    def _mac(self, raw: bytes) -> bytes:
        return hmac.new(self._secret, self.realm.encode() + b"\0" + raw, "sha256").digest()[:12]

    def _nonce_issued_at(self, nonce: str) -> float | None:
        """Issue time of one of our nonces, or None for anything else."""
        if len(nonce) != 40:
            return None
        try:
            blob = base64.urlsafe_b64decode(nonce.encode("ascii"))
        except (binascii.Error, UnicodeEncodeError, ValueError):
            return None
        if len(blob) != 30 or base64.urlsafe_b64encode(blob).decode("ascii") != nonce:
            return None
        raw, mac = blob[:18], blob[18:]
        if not hmac.compare_digest(mac, self._mac(raw)):
            return None
        ms: int = struct.unpack(">q", raw[:8])[0]
        return ms / 1000.0

    # -- challenge -----------------------------------------------------------

    def challenge(self, request: Request, now: float, *, stale: bool = False) -> Response:
        """A 401 with one WWW-Authenticate per offered algorithm, most
        preferred first (RFC 8760 §2.3), sharing one fresh nonce."""
        nonce = self.new_nonce(now)
        headers = [
            ("WWW-Authenticate", self._challenge_value(alg, nonce, stale=stale))
            for alg in self.algorithms
        ]
        return Response.for_request(request, 401, to_tag=new_tag(), headers=headers)

    def _challenge_value(self, algorithm: str, nonce: str, *, stale: bool) -> str:
        value = (
            f'Digest realm="{self.realm}", nonce="{nonce}", opaque="{self._opaque}", '
            f'algorithm={algorithm}, qop="auth"'
        )
        return value + ", stale=true" if stale else value

    # -- verification --------------------------------------------------------

    def verify(self, request: Request, now: float, *, source: str | None = None) -> AuthResult:
        """Check the request's Authorization against our realm.

        `source` (the sender's IP) turns on the per-account guessing guard.
        Never raises on request content; every refusal comes back as an
        `AuthResult` carrying the response to send.
        """
        cred: AuthParams | None = None
        malformed: str | None = None
        other_realm = False
        for value in request.headers.get_all("Authorization"):
            try:
                parsed = parse_credentials(value)
            except SipParseError as exc:
                malformed = exc.reason
                continue
            if not parsed.is_digest:
                continue
            if parsed.get("realm") != self.realm:
                other_realm = True
                continue
            cred = parsed
            break
        if cred is None:
            if malformed is not None:
                return self._refuse(request, now, AuthFailure.MALFORMED, None, malformed)
            if other_realm:
                return self._refuse(
                    request, now, AuthFailure.WRONG_REALM, None, "credentials for another realm"
                )
            return self._refuse(request, now, AuthFailure.MISSING, None, "no credentials")
        username = cred.get("username")
        known = username is not None and username in self._credentials
        if known and source is not None:
            assert username is not None
            until = self._guard.refused_until(username, source, now)
            if until is not None:
                return AuthResult(
                    failure=AuthFailure.GUESSING,
                    username=username,
                    response=Response.for_request(
                        request,
                        403,
                        to_tag=new_tag(),
                        headers=[("Retry-After", str(max(1, math.ceil(until - now))))],
                    ),
                    detail="account is in back-off after repeated failures",
                )
        result = self._verify(request, now, cred)
        if known and source is not None:
            assert username is not None
            if result.ok:
                self._guard.succeeded(username, source)
            elif result.failure is AuthFailure.BAD_RESPONSE:
                self._guard.failed(username, source, now)
        return result

    def _verify(self, request: Request, now: float, cred: AuthParams) -> AuthResult:
        username = cred.get("username")
        missing = [k for k in ("username", "nonce", "uri", "response") if cred.get(k) is None]
        if missing or username is None:
            what = ", ".join(missing) or "username"
            if cred.get("username*") is not None:
                what = "username (username* is not supported)"
            return self._refuse(request, now, AuthFailure.MALFORMED, username, f"missing {what}")
        nonce = cred.params["nonce"]
        uri = cred.params["uri"]
        response = cred.params["response"].lower()
        if (cred.get("userhash") or "false").lower() != "false":
            return self._refuse(
                request, now, AuthFailure.MALFORMED, username, "userhash was not offered"
            )
        alg = cred.algorithm
        if alg is None or alg.name not in self.algorithms:
            return self._refuse(
                request,
                now,
                AuthFailure.UNSUPPORTED,
                username,
                f"algorithm {cred.get('algorithm')!r} not offered",
            )
        qop = cred.get("qop")
        nc = cred.get("nc")
        cnonce = cred.get("cnonce")
        nc_value = _ONE_TIME
        if qop is not None:
            if qop.lower() not in ("auth", "auth-int"):
                return self._refuse(
                    request, now, AuthFailure.MALFORMED, username, f"qop {qop!r} not offered"
                )
            if nc is None or cnonce is None or not _NC_RE.match(nc):
                return self._refuse(
                    request, now, AuthFailure.MALFORMED, username, "qop without valid nc/cnonce"
                )
            nc_value = int(nc, 16)
            if nc_value == 0:
                return self._refuse(request, now, AuthFailure.MALFORMED, username, "nc is zero")
        elif not self.accept_rfc2069:
            return self._refuse(request, now, AuthFailure.MALFORMED, username, "qop is required")
        if not _same_request_uri(uri, request.uri):
            return self._refuse(
                request, now, AuthFailure.WRONG_URI, username, f"uri {uri!r} is not the Request-URI"
            )

        stored = self._credentials.get(username)
        ha1 = None if stored is None else stored.ha1.get(alg.name)
        if stored is not None and ha1 is None:
            return self._refuse(
                request, now, AuthFailure.UNSUPPORTED, username, f"no {alg.name} HA1 stored"
            )
        expected = digest_response(
            algorithm=alg.name,
            username=username,
            realm=self.realm,
            # An unknown user is hashed against a random decoy so that the
            # answer and its cost do not reveal which users exist.
            ha1=alg.hex(self._decoy) if ha1 is None else ha1,
            method=request.method,
            uri=uri,
            nonce=nonce,
            qop=qop,
            nc=nc if qop is not None else None,
            cnonce=cnonce if qop is not None else None,
            body=request.body,
        )
        if stored is None or not _equal(expected, response):
            failure = AuthFailure.UNKNOWN_USER if stored is None else AuthFailure.BAD_RESPONSE
            return self._refuse(request, now, failure, username, "response does not match")

        # The password is right; now is the nonce still good?
        issued_at = self._nonce_issued_at(nonce)
        opaque = cred.get("opaque")
        if (
            issued_at is None
            or (opaque is not None and not _equal(opaque, self._opaque))
            or now - issued_at > self.nonce_ttl_s
            or issued_at > now + NONCE_CLOCK_SKEW_S
        ):
            return self._refuse(
                request, now, AuthFailure.STALE_NONCE, username, "nonce expired or not ours"
            )
        seen = self._seen.get(nonce)
        if seen is None:
            if issued_at <= self._watermark:
                return self._refuse(
                    request, now, AuthFailure.STALE_NONCE, username, "nonce state was evicted"
                )
        elif qop is None or nc_value <= seen[0]:
            return self._refuse(
                request, now, AuthFailure.REPLAY, username, "nonce-count did not increase"
            )
        self._remember(nonce, nc_value, issued_at)
        return AuthResult(user=username, username=username)

    def _remember(self, nonce: str, nc: int, issued_at: float) -> None:
        self._seen[nonce] = (nc, issued_at)
        self._seen.move_to_end(nonce)
        while len(self._seen) > self.max_nonces:
            _, (_, evicted_at) = self._seen.popitem(last=False)
            self._watermark = max(self._watermark, evicted_at)

    def _refuse(
        self,
        request: Request,
        now: float,
        failure: AuthFailure,
        username: str | None,
        detail: str,
    ) -> AuthResult:
        response: Response
        if failure in (AuthFailure.MALFORMED, AuthFailure.WRONG_URI):
            response = Response.for_request(
                request,
                400,
                to_tag=new_tag(),
                # RFC 3261 §20.43: 399 is the miscellaneous warning.
                headers=[("Warning", f'399 callcenter112 "{_warning_text(detail)}"')],
            )
        else:
            stale = failure in (AuthFailure.STALE_NONCE, AuthFailure.REPLAY)
            response = self.challenge(request, now, stale=stale)
        return AuthResult(failure=failure, username=username, response=response, detail=detail)


def _equal(a: str, b: str) -> bool:
    """Constant-time comparison; compare_digest refuses non-ASCII str."""
    return hmac.compare_digest(a.encode("utf-8", "replace"), b.encode("utf-8", "replace"))


def _warning_text(text: str) -> str:
    clean = "".join(c if " " <= c < "\x7f" and c not in '"\\' else "?" for c in text)
    return clean[:120]


def _same_request_uri(digest_uri: str, request_uri: str) -> bool:
    if digest_uri == request_uri:
        return True
    try:
        a = parse_uri(digest_uri)
        b = parse_uri(request_uri)
    except SipParseError:
        return False
    if a.scheme.lower() != b.scheme.lower() or a.scheme.lower() not in ("sip", "sips"):
        return False
    default = 5061 if a.scheme.lower() == "sips" else 5060
    return (
        a.user == b.user
        and a.host.lower() == b.host.lower()
        and (a.port or default) == (b.port or default)
    )


def operator_credentials(operators: Iterable[OperatorConfig]) -> dict[str, str | SipSecret]:
    """The digest user table of `[[operator]]` (a plain password or its HA1s);
    `update_credentials(operator_credentials(new.operator))` on a reload."""
    return {
        o.user: o.password
        or SipSecret(
            ha1={
                name: value
                for name, value in (("MD5", o.ha1_md5), ("SHA-256", o.ha1_sha256))
                if value
            }
        )
        for o in operators
    }
