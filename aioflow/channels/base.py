"""The channel contract: a run's shared key-value state.

Every task of a run sees the same channel through ``ctx.channel``. Operations are
atomic with respect to each other: ``incr`` and ``append`` never lose an update,
whichever backend holds the data (one event loop for memory, Redis atomics for
Redis). Values are copied in and out, so a task never mutates another task's
object by accident.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

__all__ = ["Channel"]


class Channel(ABC):
    """Shared key-value state of one run. All methods are coroutines.

    ``durable`` is True for a channel whose contents outlive the process (Redis): a
    resumed run finds them there, so its journaled writes are not applied again.
    """

    durable: ClassVar[bool] = False

    @abstractmethod
    async def get(self, key: str, default: Any = None) -> Any:
        """The value under ``key``, or ``default`` if absent or expired."""

    @abstractmethod
    async def set(self, key: str, value: Any, *, ttl: float | None = None) -> None:
        """Store ``value`` under ``key``; with ``ttl`` it expires after that many seconds."""

    @abstractmethod
    async def delete(self, key: str) -> bool:
        """Remove ``key``; True if it was present."""

    @abstractmethod
    async def incr(self, key: str, amount: int = 1) -> int:
        """Atomically add ``amount`` to the integer under ``key`` (absent = 0); the new value.

        Raises:
            ChannelError: if the stored value is not an integer.
        """

    @abstractmethod
    async def append(self, key: str, value: Any) -> int:
        """Atomically append ``value`` to the list under ``key`` (absent = []); the new length.

        Raises:
            ChannelError: if the stored value is not a list.
        """

    @abstractmethod
    async def keys(self) -> list[str]:
        """The keys currently present (not expired)."""

    async def exists(self, key: str) -> bool:
        """True if ``key`` is present and not expired."""
        sentinel = object()
        return await self.get(key, sentinel) is not sentinel

    async def snapshot(self) -> dict[str, Any]:
        """A copy of every present key and value (used by checkpoints and inspection)."""
        return {key: await self.get(key) for key in await self.keys()}
