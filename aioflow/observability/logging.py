"""structlog for aioflow: quiet unless the application turns logging on.

aioflow logs through structlog onto the standard library logger ``"aioflow"``,
which has a ``NullHandler``: nothing is emitted until the application configures
logging (``logging.basicConfig(level="INFO")`` is enough), or calls
:func:`configure_logging` for console or JSON output. Every line carries the ids
bound where it was made: ``run_id``, ``task_name``, ``attempt``, ``worker_id``; with tracing on
(:class:`aioflow.observability.Tracing`), also ``trace_id`` and ``span_id`` of the
current span.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, MutableMapping
from typing import Any, TextIO

import structlog

__all__ = ["configure_logging", "get_logger", "LOGGER_NAME"]

LOGGER_NAME = "aioflow"

_stdlib_logger = logging.getLogger(LOGGER_NAME)
_stdlib_logger.addHandler(logging.NullHandler())

# Set by a tracing instrument (aioflow.observability.Tracing): returns the trace and
# span ids of the current span, or None. Kept here so that logging needs no tracer.
_trace_ids: Callable[[], tuple[str, str] | None] | None = None


def set_trace_ids_source(source: Callable[[], tuple[str, str] | None] | None) -> None:
    """Make every aioflow log line carry ``trace_id`` and ``span_id`` from ``source``."""
    global _trace_ids
    _trace_ids = source


def _add_trace_ids(logger: Any, method: str, event: MutableMapping[str, Any]) -> Any:
    source = _trace_ids
    if source is not None:
        ids = source()
        if ids is not None:
            event.setdefault("trace_id", ids[0])
            event.setdefault("span_id", ids[1])
    return event


_PROCESSORS: list[Any] = [
    structlog.stdlib.filter_by_level,
    _add_trace_ids,
    structlog.stdlib.add_log_level,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
    structlog.processors.StackInfoRenderer(),
    structlog.processors.format_exc_info,
    structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
]


def get_logger(name: str | None = None, **bound: Any) -> structlog.stdlib.BoundLogger:
    """A structlog logger writing to the stdlib logger ``aioflow[.name]``, with ``bound`` ids.

    Independent of the application's global structlog configuration, so importing
    aioflow never changes what an application logs, and never prints by itself.
    """
    std = logging.getLogger(f"{LOGGER_NAME}.{name}" if name else LOGGER_NAME)
    logger: structlog.stdlib.BoundLogger = structlog.wrap_logger(
        std,
        processors=_PROCESSORS,
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    return logger.bind(**bound) if bound else logger


def configure_logging(
    level: int | str = "INFO", *, json: bool = False, stream: TextIO | None = None
) -> logging.Handler:
    """Turn aioflow's logs on: a handler on the ``aioflow`` logger.

    Args:
        level: minimum level (``"DEBUG"`` shows every task start and finish).
        json: one JSON object per line instead of the console format.
        stream: where to write (default: stderr).

    Returns:
        The handler installed (remove it with ``logging.getLogger("aioflow").removeHandler``).
    """
    renderer: Any = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    )
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
            foreign_pre_chain=[structlog.stdlib.add_log_level],
        )
    )
    _stdlib_logger.addHandler(handler)
    _stdlib_logger.setLevel(level)
    return handler
