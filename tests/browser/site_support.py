"""What the browser tests share besides fixtures: the site record, chromium's path and flags.

Kept out of conftest.py so test modules import it by a name no other
conftest can shadow.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from test_web_support import Seeded, WebEnv

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Where the browser tests save their page screenshots: a scratch folder, so a
# test run never rewrites the tracked pictures; CALLCENTER112_SCREENSHOTS=docs/screenshots
# regenerates the documentation's (README, docs/web.md).
SCREENSHOTS = Path(
    os.environ.get("CALLCENTER112_SCREENSHOTS")
    or Path(tempfile.gettempdir()) / "callcenter112-screenshots"
).resolve()


@dataclass
class Site:
    """The application running on loopback, its environment and its seeded incident."""

    base: str
    env: WebEnv
    seeded: Seeded
