"""A channel whose writes are journaled (the channel of a journaled run)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .base import Channel

if TYPE_CHECKING:
    from ..journal import Journal

__all__ = ["JournalingChannel"]


class JournalingChannel(Channel):
    """Forwards every operation to ``inner`` and records each write in ``journal``.

    A write is journaled after it was applied, in the batch committed with the
    outcomes that follow it: a write whose task did not finish before a crash may be
    lost with it, and is made again when the task runs again (at-least-once). TTLs
    are not journaled: a resumed run's values do not expire.
    """

    def __init__(self, inner: Channel, journal: Journal) -> None:
        self.inner = inner
        self._journal = journal

    async def get(self, key: str, default: Any = None) -> Any:
        return await self.inner.get(key, default)

    async def set(self, key: str, value: Any, *, ttl: float | None = None) -> None:
        await self.inner.set(key, value, ttl=ttl)
        self._journal.channel_write("set", key, value)

    async def delete(self, key: str) -> bool:
        present = await self.inner.delete(key)
        if present:
            self._journal.channel_write("delete", key)
        return present

    async def incr(self, key: str, amount: int = 1) -> int:
        value = await self.inner.incr(key, amount)
        self._journal.channel_write("set", key, value)  # the new value: replay is a set
        return value

    async def append(self, key: str, value: Any) -> int:
        length = await self.inner.append(key, value)
        self._journal.channel_write("append", key, value)
        return length

    async def keys(self) -> list[str]:
        return await self.inner.keys()

    async def snapshot(self) -> dict[str, Any]:
        return await self.inner.snapshot()
