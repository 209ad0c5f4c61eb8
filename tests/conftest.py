"""Suite-wide rules.

Under CI=true nothing may be skipped: a skip there means a test peer (SIPp,
baresip, chromium, sox, espeak-ng, ffmpeg, the sip-tester captures) is
missing from the machine, and the project's own set-up (scripts/setup
--peers) is supposed to have installed it. So every skip is turned into a
failure that names the reason, instead of a green run that tested less.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Generator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

IN_CI = os.environ.get("CI") == "true"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()  # type: ignore[attr-defined]
    if IN_CI and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped under CI=true (a test peer must be installed): {reason}"
