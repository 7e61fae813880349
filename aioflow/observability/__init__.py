"""Logs, traces and metrics."""

from .logging import configure_logging as configure_logging
from .logging import get_logger as get_logger

__all__ = ["configure_logging", "get_logger"]
