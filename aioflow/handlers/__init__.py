"""Handlers execute task calls: inline (loop and threads), docker (containers)."""

from typing import TYPE_CHECKING, Any

from .base import Handler as Handler
from .inline import InlineHandler as InlineHandler

if TYPE_CHECKING:
    from .docker import DockerHandler as DockerHandler

__all__ = ["DockerHandler", "Handler", "InlineHandler"]


def __getattr__(name: str) -> Any:
    # DockerHandler is imported on first use: it pulls in the worker runtime, and
    # its module imports aiodocker only when a handler is opened.
    if name == "DockerHandler":
        from .docker import DockerHandler

        return DockerHandler
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
