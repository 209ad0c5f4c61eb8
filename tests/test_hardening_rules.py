"""Issue 11, smaller rules: callback numbers, outside headers, retention, callback ownership."""

from __future__ import annotations

import pytest

from callcenter112.outside import INTERNAL_HEADERS, Party, callable_number, headers_for
from callcenter112.retention_guard import SweepFigures, sweep_refusal
from callcenter112.web.auth import Principal, may_close_callback


@pytest.mark.parametrize(
    ("raw", "dialled"),
    [
        ("081234567890", "081234567890"),  # Telkomsel mobile
        ("+6281234567890", "081234567890"),
        ("6281234567890", "081234567890"),
        ("0911-362202", "0911362202"),  # Ambon fixed line (BPBD)
        ("(0911) 362202", "0911362202"),
        (" 0812 3456 7890 ", "081234567890"),
    ],
)
def test_valid_indonesian_numbers_are_dialled_in_national_form(raw: str, dialled: str) -> None:
    assert callable_number(raw) == dialled


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "112",  # the emergency number itself
        "110",
        "0812",  # too short
        "+14155550100",  # foreign
        "+442071838750",
        "٠٨١٢٣٤٥٦٧٨٩٠",  # Arabic-Indic digits: not what a trunk dials
        "".join(chr(0xFF10 + int(d)) for d in "081234567890"),  # full-width
        "sip:op1@127.0.0.1",
        "anonymous",
        "0812345678901234567890123456789012",
        "08123456789;ext=1",
        "../../etc/passwd",
    ],
)
def test_anything_else_is_not_dialled(raw: str) -> None:
    assert callable_number(raw) is None


def test_internal_headers_stay_inside() -> None:
    headers = [
        ("X-Incident-ID", "AMB-20261207-0001"),
        ("Call-Info", "<http://127.0.0.1:8112/console?incident=AMB-1>;purpose=info"),
        ("Subject", "112 medical"),
        ("Priority", "psap-callback"),
        ("P-Asserted-Identity", "<sip:112@192.0.2.10>"),
    ]
    assert headers_for(Party.OPERATOR, headers) == headers
    for party in (Party.TRUNK, Party.AGENCY, Party.CITIZEN):
        out = headers_for(party, headers)
        assert [n for n, _ in out] == ["Priority", "P-Asserted-Identity"]
        assert not any("8112" in v or "AMB-" in v for _, v in out)
    assert "x-incident-id" in INTERNAL_HEADERS
    assert headers_for(Party.TRUNK, [("x-INCIDENT-id", "1")]) == []


def _figures(**kw: float | int | None) -> SweepFigures:
    base: dict[str, float | int | None] = {
        "now": 2_000_000_000.0,
        "newest_seal_at": 1_999_999_000.0,
        "expired": 10,
        "total": 1000,
    }
    base.update(kw)
    return SweepFigures(**base)  # type: ignore[arg-type]


def test_retention_refuses_a_clock_behind_the_newest_seal_even_with_force() -> None:
    assert sweep_refusal(_figures(), max_share=0.2, force=False) is None
    behind = _figures(now=1_999_000_000.0)
    for force in (False, True):
        reason = sweep_refusal(behind, max_share=0.2, force=force)
        assert reason is not None and "behind the newest seal" in reason
    # A few seconds of NTP slew are not a wrong clock.
    assert sweep_refusal(_figures(now=1_999_998_998.0), max_share=0.2, force=False) is None
    assert sweep_refusal(_figures(newest_seal_at=None), max_share=0.2, force=False) is None


def test_retention_refuses_a_large_share_without_force() -> None:
    big = _figures(expired=201)
    reason = sweep_refusal(big, max_share=0.2, force=False)
    assert reason is not None and "201 of 1000" in reason and "--force" in reason
    assert sweep_refusal(big, max_share=0.2, force=True) is None
    assert sweep_refusal(_figures(expired=200), max_share=0.2, force=False) is None
    assert sweep_refusal(_figures(expired=0, total=0), max_share=0.2, force=False) is None


def _who(user: str, role: str) -> Principal:
    return Principal(user=user, role=role, display=user, sip_user=None, via="session")  # type: ignore[arg-type]


def test_only_the_holder_or_a_supervisor_closes_a_callback() -> None:
    assert may_close_callback(_who("op1", "operator"), "op1")
    assert not may_close_callback(_who("op2", "operator"), "op1")
    assert not may_close_callback(_who("op2", "operator"), None)  # take it first
    assert may_close_callback(_who("sup", "supervisor"), "op1")
    assert may_close_callback(_who("adm", "admin"), None)
    assert not may_close_callback(_who("aud", "auditor"), None)
