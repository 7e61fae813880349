"""The warm pool of a ``DockerHandler(pool_size=N)``: up to N live containers.

A call takes an idle container (or starts one while fewer than N exist), runs on
it, and gives it back; a container that failed in any way, or served
``max_tasks_per_container`` calls, is removed instead. Only the coroutine that
holds a container uses it, so each serves one call at a time; the pool's state
(the idle list) is touched by the loop's coroutines only, never across an await.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import anyio

from ._docker_box import Box

if TYPE_CHECKING:
    from ..context import TaskContext

__all__ = ["Pool"]


class Pool:
    """Idle containers, and a semaphore of N for the ones in use or idle."""

    def __init__(self, size: int, start: Callable[..., Awaitable[Box]]) -> None:
        self.size = size
        self._start = start
        self._slots = anyio.Semaphore(size)
        self._idle: list[Box] = []

    @property
    def idle(self) -> int:
        return len(self._idle)

    async def acquire(self, ctx: TaskContext) -> Box:
        """An idle container, else a new one (waits while N are in use)."""
        await self._slots.acquire()
        try:
            if self._idle:
                return self._idle.pop()
            return await self._start(ctx, pool=True)
        except BaseException:
            self._slots.release()
            raise

    async def release(self, box: Box, *, reuse: bool) -> None:
        """Give ``box`` back: idle again when ``reuse`` and healthy, else removed."""
        try:
            if reuse and not box.broken:
                self._idle.append(box)
            else:
                await box.remove()
        finally:
            self._slots.release()

    async def close(self) -> None:
        """Remove every idle container (the ones in use are removed by their callers)."""
        idle, self._idle = self._idle, []
        async with anyio.create_task_group() as tg:
            for box in idle:
                tg.start_soon(box.remove)
