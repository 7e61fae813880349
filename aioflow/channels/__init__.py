"""Channels: the shared key-value state of a run."""

from .base import Channel as Channel
from .memory import MemoryChannel as MemoryChannel
from .typed import TypedChannel as TypedChannel

__all__ = ["Channel", "MemoryChannel", "TypedChannel"]
