"""Structured logging: one JSON object per line, bound to call and incident ids.

Every log line about a call carries `call_id` and, once it exists,
`incident_id`, so that `grep` on either finds the whole story of one
emergency across SIP, media, queue and store. Loggers are bound once per
call (`log.bind(call_id=..., incident_id=...)`) rather than through
context variables, because one event-loop task serves many calls.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import structlog

__all__ = ["configure_logging", "get_logger"]

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def configure_logging(level: str = "info", stream: TextIO | None = None) -> None:
    """JSON lines on `stream` (stderr by default), timestamps in UTC ISO 8601."""
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(sort_keys=False),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS.get(level, logging.INFO)),
        logger_factory=structlog.PrintLoggerFactory(file=stream or sys.stderr),
        cache_logger_on_first_use=False,
    )


def get_logger(name: str, **bound: Any) -> Any:
    """A structlog logger with `component=name` and the given fields bound."""
    # Initial values (not .bind()) keep the proxy lazy: loggers made at import
    # time must pick up the configuration applied later by `serve`.
    return structlog.get_logger(component=name, **bound)
