"""Writing benchmark figures into docs/benchmarks.md, with the machine and the date.

Each benchmark owns one section between `<!-- bench:NAME -->` and
`<!-- /bench:NAME -->`; running it again replaces only its own section, so
figures from different runs sit side by side with their own dates.
"""

from __future__ import annotations

import datetime
import os
import platform
import re
import subprocess
import sys
from pathlib import Path

__all__ = ["DOCS", "machine", "write_section"]

DOCS = Path(__file__).resolve().parents[3] / "docs" / "benchmarks.md"

_HEADER = """# Benchmarks

Figures from `scripts/bench NAME`, each section with the machine and the date it was
measured on. These machines are shared and noisy: compare figures measured in the same run
(ratios), not across sections. Targets are DESIGN §7's.

"""


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        uvloop = (
            subprocess.run(
                [sys.executable, "-c", "import uvloop; print(uvloop.__version__)"],
                capture_output=True,
                text=True,
                check=False,
            ).stdout.strip()
            or "absent"
        )
    except OSError:
        uvloop = "?"
    return (
        f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"uvloop {uvloop}, {platform.system()} {platform.release()}"
    )


def write_section(name: str, title: str, body: str, path: Path = DOCS) -> None:
    today = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    block = (
        f"<!-- bench:{name} -->\n## {title}\n\n"
        f"Measured {today} on {machine()}.\n\n{body.strip()}\n<!-- /bench:{name} -->\n"
    )
    text = path.read_text() if path.exists() else _HEADER
    pattern = re.compile(
        rf"<!-- bench:{re.escape(name)} -->.*?<!-- /bench:{re.escape(name)} -->\n?", re.S
    )
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text)
    else:
        text = text.rstrip("\n") + "\n\n" + block
    path.write_text(text)
    print(block)
