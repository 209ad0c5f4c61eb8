"""Digest authentication (RFC 3261 §22, RFC 7616, RFC 8760) and the
per-source lockout: parser, RFC vectors, server ⇄ client round trips, nonce
expiry and replay, and lockout/rate limiting. Time is always a passed-in
`now`."""

from __future__ import annotations

import contextlib
import hashlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callcenter112.sip.auth import (
    DEFAULT_SERVER_ALGORITHMS,
    RFC8760_ALGORITHMS,
    AuthFailure,
    AuthParams,
    DigestAuthenticator,
    authorization_for,
    digest_response,
    parse_challenges,
    parse_credentials,
    select_challenge,
)
from callcenter112.sip.errors import SipParseError
from callcenter112.sip.message import Request, parse_message
from callcenter112.sip.ratelimit import (
    Admission,
    LockoutStarted,
    SourceGuard,
    lockout_response,
)

REALM = "callcenter112"
SECRET = b"0123456789abcdef0123456789abcdef"
USERS = {"op1": "secret1", "op2": "secret2"}
T0 = 1000.0


def register(
    *,
    uri: str = "sip:192.0.2.10:5080",
    authorization: list[str] | None = None,
    user: str = "op1",
    cseq: int = 1,
    body: bytes = b"",
) -> Request:
    lines = [
        f"REGISTER {uri} SIP/2.0",
        "Via: SIP/2.0/UDP 198.51.100.7:5062;branch=z9hG4bK776asdhds;rport",
        f"From: <sip:{user}@192.0.2.10>;tag=456248",
        f"To: <sip:{user}@192.0.2.10>",
        "Call-ID: 843817637684230@998sdasdh09",
        f"CSeq: {cseq} REGISTER",
        f"Contact: <sip:{user}@198.51.100.7:5062>",
        "Max-Forwards: 70",
        "Expires: 600",
    ]
    lines += [f"Authorization: {a}" for a in authorization or []]
    data = ("\r\n".join(lines) + f"\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body
    msg = parse_message(data)
    assert isinstance(msg, Request)
    return msg


def authenticator(**kw: object) -> DigestAuthenticator:
    return DigestAuthenticator(REALM, USERS, secret=SECRET, nonce_ttl_s=300.0, **kw)  # type: ignore[arg-type]


def challenge_headers(auth: DigestAuthenticator, now: float = T0) -> list[str]:
    resp = auth.challenge(register(), now)
    assert resp.status == 401
    return resp.headers.get_all("WWW-Authenticate")


def answer(
    auth: DigestAuthenticator,
    *,
    now: float = T0,
    user: str = "op1",
    password: str = "secret1",
    nc: int = 1,
    uri: str = "sip:192.0.2.10:5080",
    challenge: str | None = None,
) -> str:
    ch = challenge if challenge is not None else challenge_headers(auth, now)[0]
    return authorization_for(ch, "REGISTER", uri, user, password, cnonce="0a4f113b", nc=nc)


# ---------------------------------------------------------------------------
# Parser


def test_quoted_strings_keep_their_commas_and_escapes() -> None:
    (ch,) = parse_challenges(
        r'Digest realm="a, b", nonce="x,y=", qop="auth,auth-int", opaque="q\"u\\o"'
    )
    assert ch.scheme == "Digest" and ch.is_digest
    assert ch.params == {
        "realm": "a, b",
        "nonce": "x,y=",
        "qop": "auth,auth-int",
        "opaque": 'q"u\\o',
    }
    assert ch.qop_options == ("auth", "auth-int")


def test_parameter_names_are_case_insensitive_and_whitespace_is_tolerated() -> None:
    cred = parse_credentials(
        'digest USERNAME = "op1" ,Realm="r",\tNonce=abc/def==,  ALGORITHM=md5, NC=00000001'
    )
    assert cred.is_digest
    assert cred.get("username") == "op1"
    assert cred.get("Realm") == "r"
    assert cred.get("nonce") == "abc/def=="
    assert cred.algorithm is not None and cred.algorithm.name == "MD5"
    assert cred.get("nc") == "00000001"


def test_empty_list_elements_are_skipped() -> None:
    (ch,) = parse_challenges('Digest realm="r",, nonce="n" ,')
    assert ch.params == {"realm": "r", "nonce": "n"}


def test_several_challenges_in_one_value() -> None:
    chs = parse_challenges(
        'Digest realm="a", nonce="1", algorithm=SHA-256, Basic abc==, Newauth, '
        'Digest realm="b", nonce="2"'
    )
    assert [c.scheme for c in chs] == ["Digest", "Basic", "Newauth", "Digest"]
    assert chs[0].params == {"realm": "a", "nonce": "1", "algorithm": "SHA-256"}
    assert chs[1].token68 == "abc==" and chs[1].params == {}
    assert chs[3].get("realm") == "b"


@pytest.mark.parametrize(
    "value",
    [
        "",
        "   ",
        'realm="r"',  # parameter before any scheme
        "Digest realm=",
        'Digest realm="unterminated',
        'Digest realm="a" nonce="b"',  # missing comma
        'Digest realm="a", REALM="b"',  # RFC 7235 §2.1: once per challenge
        'Digest realm="a\r\nInjected: x"',
        "Digest Basic realm=x",  # two schemes without a comma
        "Digest@ realm=x",
        'Digest realm="a", Basic realm="b"',  # credentials: only one set
        "Digest " + ", ".join(f"p{i}=v" for i in range(40)),
        'Digest realm=a"b',
    ],
)
def test_malformed_credentials_raise_sip_parse_error(value: str) -> None:
    with pytest.raises(SipParseError):
        parse_credentials(value)


@given(st.text(max_size=300))
@settings(max_examples=400)
def test_parser_returns_or_raises_sip_parse_error_on_any_text(value: str) -> None:
    for parse in (parse_challenges, parse_credentials):
        with contextlib.suppress(SipParseError):
            parse(value)


@given(st.text(alphabet=' \t,="\\\r\n/+abcDigstRmnoq0-9', max_size=120))
@settings(max_examples=600)
def test_parser_survives_grammar_shaped_noise(value: str) -> None:
    try:
        items = parse_challenges(value)
    except SipParseError:
        return
    for item in items:
        assert item.scheme
        assert all(k == k.lower() for k in item.params)


_names = st.from_regex(r"[a-z][a-z0-9\-]{0,10}", fullmatch=True)
_values = st.text(
    alphabet=st.characters(blacklist_characters="\r\n\x00", codec="utf-8"),
    max_size=40,
)


@given(st.dictionaries(_names, _values, min_size=1, max_size=12))
def test_quoted_parameters_round_trip(params: dict[str, str]) -> None:
    def q(v: str) -> str:
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'

    text = "Digest " + ", ".join(f"{k}={q(v)}" for k, v in params.items())
    assert parse_credentials(text) == AuthParams(scheme="Digest", params=params)


# ---------------------------------------------------------------------------
# The computation: RFC vectors

# RFC 7616 §3.9.1.
R7616: dict[str, Any] = {
    "username": "Mufasa",
    "realm": "http-auth@example.org",
    "password": "Circle of Life",
    "method": "GET",
    "uri": "/dir/index.html",
    "nonce": "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
    "qop": "auth",
    "nc": "00000001",
    "cnonce": "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
}
R7616_CHALLENGE = (
    'Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm={alg}, '
    'nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", '
    'opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"'
)
R7616_RESPONSES = {
    "MD5": "8ca523f5e9506fed4657c9700eebdbec",
    "SHA-256": "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
}


@pytest.mark.parametrize("alg", ["MD5", "SHA-256"])
def test_rfc7616_example_responses(alg: str) -> None:
    assert digest_response(algorithm=alg, **R7616) == R7616_RESPONSES[alg]


@pytest.mark.parametrize("alg", ["MD5", "SHA-256"])
def test_rfc7616_example_through_the_client(alg: str) -> None:
    value = authorization_for(
        R7616_CHALLENGE.format(alg=alg),
        "GET",
        "/dir/index.html",
        "Mufasa",
        "Circle of Life",
        cnonce=R7616["cnonce"],
        nc=1,
    )
    cred = parse_credentials(value)
    assert cred.get("response") == R7616_RESPONSES[alg]
    assert cred.get("qop") == "auth"  # auth preferred over auth-int
    assert cred.get("nc") == "00000001"
    assert cred.get("algorithm") == alg
    assert cred.get("opaque") == "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"
    assert cred.get("username") == "Mufasa"
    # qop and nc are unquoted (RFC 7616 §3.4).
    assert "qop=auth" in value and "nc=00000001" in value


def test_rfc2617_example_response() -> None:
    # RFC 2617 §3.5.
    assert (
        digest_response(
            algorithm="MD5",
            username="Mufasa",
            realm="testrealm@host.com",
            password="Circle Of Life",
            method="GET",
            uri="/dir/index.html",
            nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",
            qop="auth",
            nc="00000001",
            cnonce="0a4f113b",
        )
        == "6629fae49393a05397450978507c4ef1"
    )


def _h(name: str, text: str) -> str:
    return hashlib.new(name, text.encode()).hexdigest()


def test_rfc2069_sess_and_auth_int_forms_match_an_independent_computation() -> None:
    kw: dict[str, Any] = {
        "username": "u",
        "realm": "r",
        "password": "p",
        "method": "INVITE",
        "uri": "sip:x",
    }
    ha1 = _h("md5", "u:r:p")
    ha2 = _h("md5", "INVITE:sip:x")
    assert digest_response(algorithm="MD5", nonce="n", **kw) == _h("md5", f"{ha1}:n:{ha2}")
    sess1 = _h("sha256", f"{_h('sha256', 'u:r:p')}:n:c")
    assert digest_response(
        algorithm="SHA-256-sess", nonce="n", qop="auth", nc="00000002", cnonce="c", **kw
    ) == _h("sha256", f"{sess1}:n:00000002:c:auth:{_h('sha256', 'INVITE:sip:x')}")
    body = b"v=0\r\n"
    ha2_int = _h("md5", f"INVITE:sip:x:{hashlib.md5(body).hexdigest()}")
    assert digest_response(
        algorithm="MD5", nonce="n", qop="auth-int", nc="00000001", cnonce="c", body=body, **kw
    ) == _h("md5", f"{ha1}:n:00000001:c:auth-int:{ha2_int}")
    sha512_256 = digest_response(algorithm="sha-512-256", nonce="n", **kw)
    assert len(sha512_256) == 64


def test_unknown_algorithm_and_qop_raise_sip_parse_error() -> None:
    kw: dict[str, Any] = {
        "username": "u",
        "realm": "r",
        "password": "p",
        "method": "M",
        "uri": "u",
        "nonce": "n",
    }
    with pytest.raises(SipParseError):
        digest_response(algorithm="SHA-1", **kw)
    with pytest.raises(SipParseError):
        digest_response(algorithm="MD5", qop="auth-conf", nc="1", cnonce="c", **kw)


# ---------------------------------------------------------------------------
# Client: choosing the challenge


def test_select_challenge_takes_the_topmost_supported_algorithm() -> None:
    chosen = select_challenge(
        [
            'Digest realm="x", nonce="1", algorithm=FANCY-HASH',
            'Basic realm="x"',
            'Digest realm="x", nonce="2", algorithm=SHA-256, qop="auth"',
            'Digest realm="x", nonce="3", algorithm=MD5, qop="auth"',
        ]
    )
    assert chosen.get("nonce") == "2"
    with pytest.raises(SipParseError):
        select_challenge(['Digest realm="x", nonce="1", qop="auth-conf"', "garbage ="])
    assert select_challenge(['Digest realm="x", nonce="1"'], realm="x").get("nonce") == "1"
    with pytest.raises(SipParseError):
        select_challenge(['Digest realm="x", nonce="1"'], realm="y")


def test_client_answers_a_challenge_without_qop_in_rfc2069_form() -> None:
    value = authorization_for(
        'Digest realm="carrier", nonce="abc"',
        "INVITE",
        "sip:113@carrier",
        "u",
        "p",
        cnonce="c",
        nc=1,
    )
    cred = parse_credentials(value)
    assert cred.get("qop") is None and cred.get("nc") is None and cred.get("cnonce") is None
    ha1 = _h("md5", "u:carrier:p")
    assert cred.get("response") == _h("md5", f"{ha1}:abc:{_h('md5', 'INVITE:sip:113@carrier')}")


# ---------------------------------------------------------------------------
# Server: challenge and verify


def test_default_challenge_offers_md5_only() -> None:
    assert DEFAULT_SERVER_ALGORITHMS == ("MD5",)
    (value,) = challenge_headers(authenticator())
    ch = parse_challenges(value)[0]
    assert ch.get("algorithm") == "MD5" and ch.get("qop") == "auth" and ch.get("stale") is None


def test_rfc8760_challenge_lists_sha256_first_then_md5_with_one_nonce() -> None:
    auth = authenticator(algorithms=RFC8760_ALGORITHMS)
    resp = auth.challenge(register(), T0)
    assert resp.status == 401
    assert resp.to_tag  # RFC 3261 §8.2.6.2
    chs = [parse_challenges(v)[0] for v in resp.headers.get_all("WWW-Authenticate")]
    assert [c.get("algorithm") for c in chs] == ["SHA-256", "MD5"]
    assert len({c.get("nonce") for c in chs}) == 1
    assert all(c.get("realm") == REALM and c.qop_options == ("auth",) for c in chs)
    assert all(c.get("opaque") for c in chs)
    nonce = chs[0].get("nonce") or ""
    assert "," not in nonce and '"' not in nonce  # pyVoIP's regex reads it whole


@pytest.mark.parametrize("index", [0, 1])
def test_round_trip_for_each_offered_algorithm(index: int) -> None:
    auth = authenticator(algorithms=RFC8760_ALGORITHMS)
    ch = challenge_headers(auth)[index]
    result = auth.verify(register(authorization=[answer(auth, challenge=ch)]), T0 + 1)
    assert result.ok and result.user == "op1" and result.response is None
    assert not result.counts_as_failure


def test_missing_credentials_are_challenged_and_not_counted() -> None:
    result = authenticator().verify(register(), T0)
    assert result.failure is AuthFailure.MISSING
    assert result.response is not None and result.response.status == 401
    assert not result.counts_as_failure


def test_wrong_password_and_unknown_user_look_the_same() -> None:
    auth = authenticator()
    wrong = auth.verify(register(authorization=[answer(auth, password="guess")]), T0)
    ghost = auth.verify(register(authorization=[answer(auth, user="ghost")], user="ghost"), T0)
    assert wrong.failure is AuthFailure.BAD_RESPONSE
    assert ghost.failure is AuthFailure.UNKNOWN_USER
    assert wrong.counts_as_failure and ghost.counts_as_failure
    assert wrong.username == "op1" and wrong.user is None
    for r in (wrong, ghost):
        assert r.response is not None and r.response.status == 401
        ch = parse_challenges(r.response.headers.get_all("WWW-Authenticate")[0])[0]
        assert ch.get("stale") is None
    assert [n for n, _ in wrong.response.headers] == [n for n, _ in ghost.response.headers]  # type: ignore[union-attr]


def test_same_nonce_count_twice_is_a_replay() -> None:
    auth = authenticator()
    ch = challenge_headers(auth)[0]
    first = register(authorization=[answer(auth, challenge=ch, nc=1)])
    assert auth.verify(first, T0 + 1).ok
    again = auth.verify(first, T0 + 2)
    assert again.failure is AuthFailure.REPLAY and not again.counts_as_failure
    assert again.response is not None and again.response.status == 401
    stale = parse_challenges(again.response.headers.get_all("WWW-Authenticate")[0])[0]
    assert stale.get("stale") == "true"
    # The same nonce with a higher count is fine; a lower one is not.
    assert auth.verify(register(authorization=[answer(auth, challenge=ch, nc=5)]), T0 + 3).ok
    late = auth.verify(register(authorization=[answer(auth, challenge=ch, nc=3)]), T0 + 4)
    assert late.failure is AuthFailure.REPLAY


def test_expired_nonce_with_right_password_is_stale() -> None:
    auth = authenticator()
    cred = answer(auth, now=T0)
    result = auth.verify(register(authorization=[cred]), T0 + 301)
    assert result.failure is AuthFailure.STALE_NONCE and not result.counts_as_failure
    assert result.response is not None
    values = result.response.headers.get_all("WWW-Authenticate")
    assert parse_challenges(values[0])[0].get("stale") == "true"
    # ... and the fresh nonce in that challenge works at once.
    retry = answer(auth, now=T0 + 301, challenge=values[0])
    assert auth.verify(register(authorization=[retry], cseq=2), T0 + 301).ok


def test_expired_nonce_with_wrong_password_is_a_bad_response() -> None:
    auth = authenticator()
    cred = answer(auth, now=T0, password="nope")
    assert auth.verify(register(authorization=[cred]), T0 + 400).failure is AuthFailure.BAD_RESPONSE


def test_nonce_from_another_server_run_is_stale_when_the_password_is_right() -> None:
    old = authenticator()
    cred = answer(old)
    restarted = DigestAuthenticator(REALM, USERS, secret=b"another-secret-of-32-bytes-len!!")
    assert restarted.verify(register(authorization=[cred]), T0).failure is AuthFailure.STALE_NONCE
    forged = authorization_for(
        f'Digest realm="{REALM}", nonce="made-up", qop="auth"',
        "REGISTER",
        "sip:192.0.2.10:5080",
        "op1",
        "secret1",
        cnonce="c",
        nc=1,
    )
    assert old.verify(register(authorization=[forged]), T0).failure is AuthFailure.STALE_NONCE


def test_nonce_from_the_future_is_not_ours() -> None:
    auth = authenticator()
    cred = answer(auth, now=T0 + 100)
    assert auth.verify(register(authorization=[cred]), T0).failure is AuthFailure.STALE_NONCE


def test_evicted_nonce_state_cannot_be_replayed() -> None:
    auth = authenticator(max_nonces=2)
    creds = [answer(auth, now=T0 + i) for i in range(3)]
    for i, c in enumerate(creds):
        assert auth.verify(register(authorization=[c]), T0 + 10 + i).ok
    # The first nonce was evicted: its exact request must not be accepted again.
    replay = auth.verify(register(authorization=[creds[0]]), T0 + 20)
    assert replay.failure is AuthFailure.STALE_NONCE
    # Nonces issued after the eviction are unaffected.
    assert auth.verify(register(authorization=[answer(auth, now=T0 + 21)]), T0 + 22).ok


def test_credentials_for_another_realm_are_challenged() -> None:
    auth = authenticator()
    other = DigestAuthenticator("elsewhere", USERS, secret=SECRET)
    result = auth.verify(register(authorization=[answer(other)]), T0)
    assert result.failure is AuthFailure.WRONG_REALM
    assert result.response is not None and result.response.status == 401
    both = register(authorization=[answer(other), answer(auth)])
    assert auth.verify(both, T0).ok


@pytest.mark.parametrize(
    ("request_uri", "digest_uri", "accepted"),
    [
        ("sip:192.0.2.10:5080", "sip:192.0.2.10:5080", True),
        ("sip:192.0.2.10", "sip:192.0.2.10;transport=UDP", True),  # pyVoIP
        ("sip:CallCenter.example", "sip:callcenter.example", True),
        ("sip:192.0.2.10", "sip:192.0.2.10:5060", True),
        ("sips:192.0.2.10", "sips:192.0.2.10:5061", True),
        ("sip:192.0.2.10:5080", "sip:192.0.2.10:5081", False),
        ("sip:192.0.2.10", "sip:192.0.2.11", False),
        ("sip:192.0.2.10", "sip:op1@192.0.2.10", False),
        ("sip:192.0.2.10", "sips:192.0.2.10", False),
        ("sip:192.0.2.10", "/dir/index.html", False),
    ],
)
def test_digest_uri_must_name_the_request_uri(
    request_uri: str, digest_uri: str, accepted: bool
) -> None:
    auth = authenticator()
    cred = answer(auth, uri=digest_uri)
    result = auth.verify(register(uri=request_uri, authorization=[cred]), T0)
    if accepted:
        assert result.ok
    else:
        assert result.failure is AuthFailure.WRONG_URI
        assert result.response is not None and result.response.status == 400
        assert result.response.headers.get("Warning")


@pytest.mark.parametrize(
    ("authorization", "failure"),
    [
        ('Digest realm="callcenter112", username="op1"', AuthFailure.MALFORMED),
        ('Digest realm="callcenter112", username="op1', AuthFailure.MALFORMED),
        ("Digest realm=\"callcenter112\", username*=UTF-8''op1", AuthFailure.MALFORMED),
        ("Basic b3AxOnNlY3JldDE=", AuthFailure.MISSING),
        ("Digest", AuthFailure.WRONG_REALM),
    ],
)
def test_broken_credentials(authorization: str, failure: AuthFailure) -> None:
    result = authenticator().verify(register(authorization=[authorization]), T0)
    assert result.failure is failure
    assert result.response is not None
    assert result.response.status == (400 if failure is AuthFailure.MALFORMED else 401)


def _tamper(value: str, **changes: str | None) -> str:
    params = dict(parse_credentials(value).params)
    for k, v in changes.items():
        if v is None:
            params.pop(k, None)
        else:
            params[k] = v
    return "Digest " + ", ".join(f'{k}="{v}"' for k, v in params.items())


def test_non_ascii_response_and_opaque_are_refused_not_raised() -> None:
    auth = authenticator()
    result = auth.verify(register(authorization=[_tamper(answer(auth), response="ä" * 32)]), T0)
    assert result.failure is AuthFailure.BAD_RESPONSE
    result = auth.verify(register(authorization=[_tamper(answer(auth), opaque="ö")]), T0)
    assert result.failure is AuthFailure.STALE_NONCE


def test_qop_without_nonce_count_is_malformed() -> None:
    auth = authenticator()
    result = auth.verify(register(authorization=[_tamper(answer(auth), nc=None)]), T0)
    assert result.failure is AuthFailure.MALFORMED
    result = auth.verify(register(authorization=[_tamper(answer(auth), nc="xyz")]), T0)
    assert result.failure is AuthFailure.MALFORMED
    result = auth.verify(register(authorization=[_tamper(answer(auth), userhash="true")]), T0)
    assert result.failure is AuthFailure.MALFORMED


def test_algorithms_not_offered_are_challenged_again() -> None:
    auth = authenticator()  # MD5 only
    sha = authorization_for(
        challenge_headers(auth)[0].replace("algorithm=MD5", "algorithm=SHA-256"),
        "REGISTER",
        "sip:192.0.2.10:5080",
        "op1",
        "secret1",
        cnonce="c",
        nc=1,
    )
    result = auth.verify(register(authorization=[sha]), T0)
    assert result.failure is AuthFailure.UNSUPPORTED
    assert result.response is not None and result.response.status == 401


def test_rfc2069_response_is_accepted_once_per_nonce() -> None:
    auth = authenticator()
    ch = challenge_headers(auth)[0].replace(', qop="auth"', "")
    cred = answer(auth, challenge=ch)
    assert "qop" not in cred
    assert auth.verify(register(authorization=[cred]), T0).ok
    assert auth.verify(register(authorization=[cred], cseq=2), T0).failure is AuthFailure.REPLAY
    strict = authenticator(accept_rfc2069=False)
    cred = answer(strict, challenge=challenge_headers(strict)[0].replace(', qop="auth"', ""))
    assert strict.verify(register(authorization=[cred]), T0).failure is AuthFailure.MALFORMED


def test_auth_int_covers_the_body() -> None:
    auth = authenticator()
    body = b"hello"
    ch = challenge_headers(auth)[0].replace('qop="auth"', 'qop="auth-int"')
    cred = authorization_for(
        ch, "REGISTER", "sip:192.0.2.10:5080", "op1", "secret1", cnonce="c", nc=1, body=body
    )
    assert auth.verify(register(authorization=[cred], body=body), T0).ok
    cred2 = authorization_for(
        ch, "REGISTER", "sip:192.0.2.10:5080", "op1", "secret1", cnonce="c", nc=2, body=body
    )
    tampered = auth.verify(register(authorization=[cred2], body=b"HELLO"), T0)
    assert tampered.failure is AuthFailure.BAD_RESPONSE


def test_credentials_can_be_reloaded() -> None:
    auth = authenticator()
    cred = answer(auth, user="op3", password="pw3")
    assert auth.verify(register(authorization=[cred], user="op3"), T0).failure is (
        AuthFailure.UNKNOWN_USER
    )
    auth.update_credentials({"op3": "pw3"})
    cred = answer(auth, user="op3", password="pw3")
    assert auth.verify(register(authorization=[cred], user="op3"), T0).ok


def test_constructor_refuses_unsafe_settings() -> None:
    with pytest.raises(ValueError):
        DigestAuthenticator('bad"realm', USERS, secret=SECRET)
    with pytest.raises(ValueError):
        DigestAuthenticator(REALM, USERS, secret=b"short")
    with pytest.raises(ValueError):
        DigestAuthenticator(REALM, USERS, secret=SECRET, algorithms=("MD5-sess",))
    with pytest.raises(ValueError):
        DigestAuthenticator(REALM, USERS, secret=SECRET, algorithms=())


@given(st.text(max_size=200))
@settings(max_examples=300)
def test_verify_never_raises_on_any_authorization_value(value: str) -> None:
    auth = authenticator()
    req = register()
    req.headers.add("Authorization", value)
    result = auth.verify(req, T0)
    assert not result.ok
    assert result.response is not None and result.response.status in (400, 401)


_CRED_NAMES = st.sampled_from(
    ["username", "realm", "nonce", "uri", "response", "algorithm", "qop", "nc", "cnonce",
     "opaque", "userhash", "username*"]
)  # fmt: skip


@given(
    st.dictionaries(_CRED_NAMES, _values, max_size=12),
    st.booleans(),
    st.sampled_from(["op1", "ghost", ""]),
)
@settings(max_examples=400)
def test_verify_never_raises_on_structured_credentials(
    params: dict[str, str], realistic: bool, user: str
) -> None:
    auth = authenticator()
    if realistic:  # start from valid credentials so deeper checks are reached
        base = dict(parse_credentials(answer(auth)).params)
        base["username"] = user
        params = {**base, **params}
    text = "Digest " + ", ".join(
        f'{k}="{v.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
        for k, v in params.items()
    )
    result = auth.verify(register(authorization=[text]), T0)
    assert result.ok or (result.response is not None and result.response.status in (400, 401))


# ---------------------------------------------------------------------------
# Lockout and rate limiting


def test_wrong_password_n_times_locks_that_source_only() -> None:
    auth = authenticator()
    guard = SourceGuard(fail_limit=3, lockout_s=300.0)
    attacker, operator = "203.0.113.66", "198.51.100.7"
    started: list[LockoutStarted] = []
    for i in range(3):
        assert guard.check(attacker, T0 + i) is Admission.ADMITTED
        result = auth.verify(register(authorization=[answer(auth, password=f"guess{i}")]), T0 + i)
        assert result.counts_as_failure
        event = guard.record_failure(attacker, T0 + i, user=result.username)
        if event is not None:
            started.append(event)
    assert started == [LockoutStarted(source=attacker, user=None, until=T0 + 2 + 300.0, failures=3)]
    assert guard.check(attacker, T0 + 3) is Admission.LOCKED_OUT
    assert not guard.allow(attacker, T0 + 3, user="op2")
    # Other sources are unaffected.
    assert guard.check(operator, T0 + 3, user="op1") is Admission.ADMITTED
    ok = auth.verify(register(authorization=[answer(auth, now=T0 + 3)]), T0 + 3)
    assert ok.ok
    # Logged once: no second LockoutStarted while locked.
    assert guard.record_failure(attacker, T0 + 4) is None
    assert guard.locked_until(attacker, T0 + 4) == T0 + 302.0
    assert [lk.source for lk in guard.lockouts(T0 + 4)] == [attacker]
    # The lockout ends on time.
    assert guard.check(attacker, T0 + 302.0) is Admission.ADMITTED
    assert guard.lockouts(T0 + 302.0) == []


def test_failures_count_within_a_window() -> None:
    guard = SourceGuard(fail_limit=3, lockout_s=60.0, window_s=30.0)
    # One failure every 15 s: at most two fall in any window opened by a failure.
    for i in range(20):
        assert guard.record_failure("192.0.2.1", T0 + 15.0 * i) is None
    assert guard.check("192.0.2.1", T0 + 300) is Admission.ADMITTED
    # Three within 30 s do.
    assert guard.record_failure("192.0.2.2", T0) is None
    assert guard.record_failure("192.0.2.2", T0 + 14) is None
    assert guard.record_failure("192.0.2.2", T0 + 29.9) is not None


def test_trusted_source_locks_only_the_failing_user() -> None:
    """One broken phone behind the centre's NAT must not lock every operator out."""
    guard = SourceGuard(fail_limit=2, lockout_s=100.0)
    nat = "198.51.100.1"
    guard.record_success(nat, T0, user="op1")
    assert guard.record_failure(nat, T0 + 1, user="op3") is None
    event = guard.record_failure(nat, T0 + 2, user="op3")
    assert event == LockoutStarted(source=nat, user="op3", until=T0 + 102, failures=2)
    assert guard.check(nat, T0 + 3, user="op3") is Admission.LOCKED_OUT
    assert guard.check(nat, T0 + 3, user="op1") is Admission.ADMITTED
    assert guard.check(nat, T0 + 3) is Admission.ADMITTED
    # Success for op3 later clears its count (after the lockout).
    guard.record_success(nat, T0 + 200, user="op3")
    assert guard.record_failure(nat, T0 + 201, user="op3") is None


def test_untrusted_source_spraying_user_names_is_counted_as_one() -> None:
    guard = SourceGuard(fail_limit=3, lockout_s=100.0)
    events = [guard.record_failure("203.0.113.9", T0, user=f"user{i}") for i in range(3)]
    assert events[:2] == [None, None]
    assert events[2] is not None and events[2].user is None
    assert guard.check("203.0.113.9", T0, user="op1") is Admission.LOCKED_OUT


def test_flood_from_one_source_does_not_starve_others() -> None:
    guard = SourceGuard(rate_per_s=1.0, burst=5.0)
    assert [guard.check("203.0.113.1", T0) for _ in range(7)] == [Admission.ADMITTED] * 5 + [
        Admission.THROTTLED
    ] * 2
    assert guard.check("198.51.100.7", T0) is Admission.ADMITTED
    assert guard.check("203.0.113.1", T0 + 1.0) is Admission.ADMITTED
    assert guard.check("203.0.113.1", T0 + 1.0) is Admission.THROTTLED


def test_locked_out_flood_is_dropped_not_answered() -> None:
    guard = SourceGuard(fail_limit=1, lockout_s=100.0, rate_per_s=1.0, burst=2.0)
    guard.record_failure("203.0.113.1", T0)
    assert guard.check("203.0.113.1", T0) is Admission.LOCKED_OUT
    assert guard.check("203.0.113.1", T0) is Admission.LOCKED_OUT
    assert guard.check("203.0.113.1", T0) is Admission.THROTTLED


def test_tables_are_bounded_lru() -> None:
    guard = SourceGuard(fail_limit=1, lockout_s=100.0, max_entries=3)
    guard.record_failure("192.0.2.1", T0)
    assert guard.check("192.0.2.1", T0) is Admission.LOCKED_OUT
    for i in range(2, 6):
        guard.check(f"192.0.2.{i}", T0)
    # Strangers churn their own bounded table; a lockout is held apart, so a
    # flood of new addresses cannot free a locked-out source (issue 11).
    assert [lk.source for lk in guard.lockouts(T0)] == ["192.0.2.1"]
    assert guard.check("192.0.2.1", T0) is Admission.LOCKED_OUT
    assert len(guard._sources) <= 3


def test_lockout_response_is_403() -> None:
    resp = lockout_response(register())
    assert resp.status == 403 and resp.to_tag
    assert resp.headers.get("Call-ID") == "843817637684230@998sdasdh09"


def test_guard_refuses_nonsense_settings() -> None:
    with pytest.raises(ValueError):
        SourceGuard(fail_limit=0)
    with pytest.raises(ValueError):
        SourceGuard(burst=0.5)
