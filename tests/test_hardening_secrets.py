"""Issue 11, secrets and identities: HA1 storage, exposure checks, guessing guards."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from callcenter112.config import (
    ConfigError,
    config_warnings,
    exposure_problems,
    load_config,
    parse_config,
)
from callcenter112.guessing import AccountGuard
from callcenter112.sip.auth import (
    AuthFailure,
    DigestAuthenticator,
    SipSecret,
    authorization_for,
    ha1_for,
)
from callcenter112.web.auth import LoginGuard, SessionStore
from test_auth import REALM, SECRET, T0, register

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "config" / "callcenter112.toml"


def _answer(auth: DigestAuthenticator, password: str, *, alg: int = 0, now: float = T0) -> Any:
    ch = auth.challenge(register(), now).headers.get_all("WWW-Authenticate")[alg]
    value = authorization_for(
        ch, "REGISTER", "sip:192.0.2.10:5080", "op1", password, cnonce="0a4f113b", nc=1
    )
    return register(authorization=[value])


# --------------------------------------------------------------------------- HA1


def test_ha1_is_the_rfc7616_user_realm_password_hash() -> None:
    assert ha1_for("MD5", "op1", "r", "pw") == hashlib.md5(b"op1:r:pw").hexdigest()
    assert ha1_for("SHA-256", "op1", "r", "pw") == hashlib.sha256(b"op1:r:pw").hexdigest()
    with pytest.raises(ValueError):
        ha1_for("MD5-sess", "op1", "r", "pw")


@pytest.mark.parametrize("alg_index", [0, 1])
def test_stored_ha1_verifies_both_algorithms_and_refuses_a_wrong_password(alg_index: int) -> None:
    secret = SipSecret(
        ha1={
            "SHA-256": ha1_for("SHA-256", "op1", REALM, "s3cret-pw"),
            "MD5": ha1_for("MD5", "op1", REALM, "s3cret-pw"),
        }
    )
    auth = DigestAuthenticator(REALM, {"op1": secret}, secret=SECRET, algorithms=("SHA-256", "MD5"))
    assert auth.verify(_answer(auth, "s3cret-pw", alg=alg_index), T0).user == "op1"
    bad = auth.verify(_answer(auth, "wrong", alg=alg_index), T0)
    assert bad.failure is AuthFailure.BAD_RESPONSE


def test_an_algorithm_without_its_ha1_is_not_accepted() -> None:
    secret = SipSecret(ha1={"MD5": ha1_for("MD5", "op1", REALM, "pw12")})
    auth = DigestAuthenticator(REALM, {"op1": secret}, secret=SECRET, algorithms=("SHA-256", "MD5"))
    result = auth.verify(_answer(auth, "pw12", alg=0), T0)  # SHA-256 first
    assert result.failure is AuthFailure.UNSUPPORTED


def _operator_cfg(**op: object) -> dict[str, object]:
    return {
        "sip": {"listen": "127.0.0.1:5060"},
        "operator": [{"user": "op1", **op}],
    }


def test_config_takes_ha1_pairs_and_names_the_missing_one() -> None:
    md5 = ha1_for("MD5", "op1", "callcenter112", "pw123456")
    sha = ha1_for("SHA-256", "op1", "callcenter112", "pw123456")
    cfg = parse_config(_operator_cfg(ha1_md5=md5, ha1_sha256=sha))
    auth = DigestAuthenticator.from_config(cfg.sip, cfg.operator, secret=SECRET)
    assert auth.verify(_answer(auth, "pw123456"), T0).user == "op1"
    data = _operator_cfg(ha1_sha256=sha)
    with pytest.raises(ConfigError) as err:
        parse_config(data)  # MD5 is offered by default but not stored
    assert [p.path for p in err.value.problems] == ["operator[0].ha1_md5"]
    with pytest.raises(ConfigError) as err:
        parse_config(_operator_cfg(password="pw123456", ha1_md5=md5))
    assert "not both" in str(err.value)
    with pytest.raises(ConfigError):
        parse_config(_operator_cfg(ha1_md5="xyz"))


def test_hash_password_sip_prints_the_ha1_pair() -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "callcenter112",
            "hash-password",
            "--sip",
            "op9",
            "--stdin",
            "--realm",
            "centre",
        ],
        input="long-enough-pw\n",
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    ).stdout
    assert f'ha1_md5 = "{hashlib.md5(b"op9:centre:long-enough-pw").hexdigest()}"' in out
    assert f'ha1_sha256 = "{hashlib.sha256(b"op9:centre:long-enough-pw").hexdigest()}"' in out
    # Without USER it asks for it first; the realm then comes from the config's sip.realm.
    asked = subprocess.run(
        [sys.executable, "-m", "callcenter112", "hash-password", "--sip", "--stdin"],
        input="op1\nlong-enough-pw\n",
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    assert "SIP user:" in asked.stderr
    md5 = hashlib.md5(b"op1:callcenter112:long-enough-pw").hexdigest()
    assert asked.stdout.splitlines()[1] == f'ha1_md5 = "{md5}"'


# --------------------------------------------------------------------------- exposure


def test_shipped_config_is_accepted_on_loopback_with_warnings() -> None:
    cfg = load_config(SHIPPED)
    assert exposure_problems(cfg) == []
    warned = {p.path for p in config_warnings(cfg)}
    assert "operator[0].password" in warned and "user[0].password" in warned


def test_demo_and_plain_passwords_refused_off_loopback(tmp_path: Path) -> None:
    text = SHIPPED.read_text().replace('listen = "127.0.0.1:5060"', 'listen = "0.0.0.0:5060"')
    (tmp_path / "config").mkdir()
    path = tmp_path / "config" / "cc.toml"
    path.write_text(text)
    found = {p.path: p.reason for p in exposure_problems(load_config(path))}
    assert "shipped demo password with sip.listen 0.0.0.0:5060" in found["operator[0].password"]
    assert "user[2].password" in found
    # A plain password that is not a demo one is named as plain text.
    cfg = parse_config(
        {"sip": {"listen": "192.0.2.1:5060"}, "operator": [{"user": "op1", "password": "abcdefg"}]}
    )
    [problem] = exposure_problems(cfg)
    assert problem.path == "operator[0].password" and "plain-text" in problem.reason
    # check-config fails on it, exit 2, naming the key.
    run = subprocess.run(
        [sys.executable, "-m", "callcenter112", "check-config", str(path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert run.returncode == 2 and "operator[0].password" in run.stderr


# --------------------------------------------------------------------------- guessing


def test_many_addresses_share_one_account_budget_with_backoff() -> None:
    guard = AccountGuard(free_failures=3, base_backoff_s=1.0, max_backoff_s=60.0)
    ends = [guard.failed("op1", f"203.0.113.{i}", T0) for i in range(6)]
    assert ends[:2] == [None, None]
    assert ends[2:] == [T0 + 1, T0 + 2, T0 + 4, T0 + 8]
    assert guard.refused_until("op1", "198.51.100.1", T0 + 7) == T0 + 8
    assert guard.refused_until("op1", "198.51.100.1", T0 + 8) is None
    for _ in range(20):
        guard.failed("op1", "203.0.113.9", T0)
    assert guard.refused_until("op1", "203.0.113.9", T0) == T0 + 60  # capped


def test_someone_elses_guessing_never_locks_the_usual_address() -> None:
    guard = AccountGuard(free_failures=2)
    guard.succeeded("op1", "10.0.0.5")
    for i in range(50):
        guard.failed("op1", f"203.0.113.{i}", T0)
    assert guard.refused_until("op1", "203.0.113.200", T0) is not None
    assert guard.refused_until("op1", "10.0.0.5", T0) is None
    # The usual address's own failures lock only itself.
    guard.failed("op1", "10.0.0.5", T0)
    assert guard.failed("op1", "10.0.0.5", T0) is not None
    assert guard.refused_until("op1", "10.0.0.5", T0 + 0.5) is not None


def test_sip_digest_guard_refuses_elsewhere_but_not_at_the_usual_address() -> None:
    auth = DigestAuthenticator(
        REALM, {"op1": "real-pw1"}, secret=SECRET, guard=AccountGuard(free_failures=2)
    )
    assert auth.verify(_answer(auth, "real-pw1"), T0, source="10.0.0.5").ok
    for i in range(5):
        auth.verify(_answer(auth, f"guess{i}"), T0, source=f"203.0.113.{i}")
    refused = auth.verify(_answer(auth, "real-pw1"), T0, source="203.0.113.77")
    assert refused.failure is AuthFailure.GUESSING
    assert refused.response is not None and refused.response.status == 403
    assert auth.verify(_answer(auth, "real-pw1"), T0, source="10.0.0.5").ok


def test_web_lockout_spares_the_usual_address() -> None:
    guard = LoginGuard(limit=3, lockout_s=60, address_limit=100)
    guard.succeeded("op1", "10.0.0.5")
    for i in range(3):
        guard.failed(guard.keys("op1", f"203.0.113.{i}"), T0 + i)
    assert guard.locked_until(guard.keys("op1", "203.0.113.50"), T0 + 5) is not None
    assert guard.locked_until(guard.keys("op1", "10.0.0.5"), T0 + 5) is None


def test_sessions_per_account_are_capped() -> None:
    from callcenter112.web.auth import Account

    store = SessionStore(ttl_s=3600, max_per_account=2)
    a = Account(name="op1", role="operator", display="op1", sip_user="op1")
    b = Account(name="op2", role="operator", display="op2", sip_user="op2")
    first = store.create(a, T0)
    other = store.create(b, T0)
    store.create(a, T0 + 1)
    store.create(a, T0 + 2)
    assert store.get(first.token, T0 + 3) is None  # the oldest of op1 went
    assert store.get(other.token, T0 + 3) is not None
    assert len(store) == 3
