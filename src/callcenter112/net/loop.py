"""The one place that picks the event loop: uvloop when installed, asyncio's otherwise.

The server (`app.serve`), the simulator and the benchmarks all run on the loop
`run()` makes, so what is measured is what is deployed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["loop_factory", "new_event_loop", "run"]

T = TypeVar("T")


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop factory, or None (asyncio's default) where uvloop is absent."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A fresh loop of the kind `run()` uses, for callers that drive it themselves."""
    factory = loop_factory()
    return asyncio.new_event_loop() if factory is None else factory()


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` to completion on a new loop of the server's kind and close it."""
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(coro)
