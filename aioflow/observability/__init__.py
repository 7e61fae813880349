"""Logs, traces and metrics.

``configure_logging`` (structlog), and the instruments :class:`Tracing`
(OpenTelemetry spans) and :class:`Metrics` (OpenTelemetry metrics), which import
OpenTelemetry only when made (``pip install "aioflow[otel]"``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .logging import configure_logging as configure_logging
from .logging import get_logger as get_logger

if TYPE_CHECKING:
    from .metrics import Metrics as Metrics
    from .tracing import Tracing as Tracing

__all__ = ["Metrics", "Tracing", "configure_logging", "get_logger"]


def __getattr__(name: str) -> Any:
    # Loaded on first use: aioflow.context imports this package (for logging).
    if name == "Tracing":
        from .tracing import Tracing

        return Tracing
    if name == "Metrics":
        from .metrics import Metrics

        return Metrics
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
