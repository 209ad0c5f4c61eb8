"""Progress on the terminal for long CLI commands (`simulate`, `report`).

On a terminal one line is rewritten in place; into a pipe or a file each
update is its own line, and `ProgressBar` writes fewer of them (every 10 %
instead of every 1 %) so logs stay short.
"""

from __future__ import annotations

from typing import TextIO

__all__ = ["ProgressBar", "ProgressLine"]


class ProgressLine:
    """One rewritten line on a terminal; a line per update into a pipe or file."""

    def __init__(self, stream: TextIO, *, enabled: bool = True) -> None:
        self.stream = stream
        self.enabled = enabled
        self.tty = stream.isatty()
        self.every_s = 1.0 if self.tty else 5.0  # for callers that update on a timer
        self._drawn = False

    def show(self, line: str) -> None:
        if not self.enabled:
            return
        if self.tty:
            self.stream.write("\r\x1b[2K" + line)
            self._drawn = True
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def finish(self) -> None:
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False


class ProgressBar:
    """`label [#####.....]  512/1024 (50 %)`, redrawn when the percentage moves a step."""

    WIDTH = 30

    def __init__(self, line: ProgressLine, label: str, total: int) -> None:
        self.line = line
        self.label = label
        self.total = max(total, 0)
        self.step = 1 if line.tty else 10
        self._shown = -1

    def update(self, done: int) -> None:
        percent = 100 if self.total == 0 else min(100, done * 100 // self.total)
        if percent // self.step == self._shown // self.step and self._shown >= 0:
            return
        self._shown = percent
        filled = self.WIDTH * percent // 100
        bar = "#" * filled + "." * (self.WIDTH - filled)
        self.line.show(f"{self.label} [{bar}] {done}/{self.total} ({percent} %)")

    def finish(self) -> None:
        self.update(self.total)
        self.line.finish()
