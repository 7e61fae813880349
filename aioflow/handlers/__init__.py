"""Handlers execute task calls: inline (loop and threads), docker (containers)."""

from .base import Handler as Handler
from .inline import InlineHandler as InlineHandler

__all__ = ["Handler", "InlineHandler"]
