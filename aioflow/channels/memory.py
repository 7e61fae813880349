"""The in-process channel: a dict owned by the run's event loop."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from typing import Any

from ..errors import ChannelError
from .base import Channel

__all__ = ["MemoryChannel"]

_MISSING = object()


class MemoryChannel(Channel):
    """A channel kept in memory.

    Safe by construction: it is only used from one event loop and no method awaits
    in the middle of an update, so ``incr``/``append`` are atomic. Values are deep
    copied on the way in and out, like a remote backend would (a task mutating what
    it read does not change what others read).

    Args:
        clock: monotonic time source for TTLs (injectable for tests).
    """

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._data: dict[str, Any] = {}
        self._expiry: dict[str, float] = {}
        self._clock = clock

    def _live(self, key: str) -> Any:
        deadline = self._expiry.get(key)
        if deadline is not None and self._clock() >= deadline:
            del self._data[key]
            del self._expiry[key]
            return _MISSING
        return self._data.get(key, _MISSING)

    @staticmethod
    def _copy(key: str, value: Any) -> Any:
        if value is None or type(value) in (int, float, str, bytes, bool):
            return value
        try:
            return copy.deepcopy(value)
        except Exception as exc:
            raise ChannelError(
                f"channel value under {key!r} of type {type(value).__name__} cannot be copied",
                hint="Store plain data (numbers, strings, lists, dicts, dataclasses), "
                "not connections, locks or open files.",
            ) from exc

    async def get(self, key: str, default: Any = None) -> Any:
        value = self._live(key)
        return default if value is _MISSING else self._copy(key, value)

    async def set(self, key: str, value: Any, *, ttl: float | None = None) -> None:
        self._data[key] = self._copy(key, value)
        if ttl is None:
            self._expiry.pop(key, None)
        else:
            self._expiry[key] = self._clock() + ttl

    async def delete(self, key: str) -> bool:
        present = self._live(key) is not _MISSING
        self._data.pop(key, None)
        self._expiry.pop(key, None)
        return present

    async def incr(self, key: str, amount: int = 1) -> int:
        current = self._live(key)
        if current is _MISSING:
            current = 0
        if type(current) is not int:
            raise ChannelError(
                f"cannot incr {key!r}: it holds a {type(current).__name__}, not an int",
                hint="Use incr only on keys that hold integers (or are absent).",
            )
        self._data[key] = current + amount
        return current + amount

    async def append(self, key: str, value: Any) -> int:
        current = self._live(key)
        if current is _MISSING:
            current = self._data[key] = []
        if not isinstance(current, list):
            raise ChannelError(
                f"cannot append to {key!r}: it holds a {type(current).__name__}, not a list",
                hint="Use append only on keys that hold lists (or are absent).",
            )
        current.append(self._copy(key, value))
        return len(current)

    async def keys(self) -> list[str]:
        return [key for key in list(self._data) if self._live(key) is not _MISSING]

    def __repr__(self) -> str:
        return f"<MemoryChannel keys={len(self._data)}>"
