"""The warm pool of a ``DockerHandler(pool_size=N)``: up to N live containers.

A call takes an idle container (or starts one while fewer than N exist), runs on
it, and gives it back; a container that failed in any way is removed instead.
Only the coroutine that holds a container uses it, so each serves one call at a
time; the pool's state (the idle list) is touched by the loop's coroutines only,
never across an await.

Replacing a container that served ``max_tasks_per_container`` calls would put a
container start (a few hundred milliseconds) on the path of the next call. So
while some run or worker using the handler runs its background work
(:meth:`Pool.serve`, the handler's ``serve``), the old container keeps serving
while its successor starts there, and is removed once the successor is idle in
its place (for a moment the pool holds N + 1 containers). A successor that fails
to start is asked for again after the old container's next call. Without that
background work (a handler used outside a run or worker), the container is removed
at once and the next call starts one.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import anyio

from ..observability.logging import get_logger
from ._docker_box import Box

if TYPE_CHECKING:
    from ..context import TaskContext

__all__ = ["Pool"]

_log = get_logger("docker.pool")


class Pool:
    """Idle containers, and a semaphore of N for the ones in use or idle."""

    def __init__(
        self, size: int, start: Callable[..., Awaitable[Box]], *, max_tasks: int = 100
    ) -> None:
        self.size = size
        self.max_tasks = max_tasks
        self._start = start
        self._slots = anyio.Semaphore(size)
        self._idle: list[Box] = []
        # Containers whose successor is wanted, for the background work to start.
        self._send, self._receive = anyio.create_memory_object_stream[tuple[Box, "TaskContext"]](
            math.inf
        )
        self._servers = 0  # background loops running now (one per run using the pool)
        self._succeeding: set[Box] = set()  # boxes whose successor is wanted
        self._superseded: set[Box] = set()  # boxes replaced while in use
        self._closed = False

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

    async def release(self, box: Box, ctx: TaskContext, *, ok: bool) -> None:
        """Give ``box`` back after a call: idle again when the call went well, else
        removed; past its limit, its successor is started ahead (or it is removed)."""
        try:
            if not ok or box.broken or box in self._superseded:
                self._superseded.discard(box)
                self._succeeding.discard(box)
                await box.remove()
            elif box.tasks < self.max_tasks:
                self._idle.append(box)
            elif box in self._succeeding:
                self._idle.append(box)  # its successor is starting: it serves meanwhile
            elif self._servers:
                self._succeeding.add(box)
                self._send.send_nowait((box, ctx))
                self._idle.append(box)
            else:
                self._succeeding.discard(box)
                await box.remove()
        finally:
            self._slots.release()

    async def serve(self) -> None:
        """Start the successors wanted, one at a time, until cancelled (the handler's
        background work: one loop per run or worker using it; they share the work)."""
        self._servers += 1
        try:
            async for old, ctx in self._receive:
                if old not in self._succeeding:
                    continue  # removed meanwhile (it failed)
                try:
                    new = await self._start(ctx, pool=True)
                except Exception as exc:  # the old one is replaced the usual way
                    self._succeeding.discard(old)
                    _log.warning("a pool container's successor did not start", error=str(exc))
                    continue
                if old not in self._succeeding:  # removed while its successor started
                    in_use = self.size - int(self._slots.value)
                    if in_use + len(self._idle) < self.size:
                        self._idle.append(new)  # in its place
                    else:
                        await new.remove()
                    continue
                self._succeeding.discard(old)
                if old in self._idle:
                    self._idle.remove(old)
                    self._idle.append(new)
                    await old.remove()
                else:  # in use: removed when its call gives it back
                    self._superseded.add(old)
                    self._idle.append(new)
        finally:
            self._servers -= 1
            if not self._servers and self._closed:
                self._receive.close()

    async def close(self) -> None:
        """Remove every idle container (the ones in use are removed by their callers)."""
        idle, self._idle = self._idle, []
        self._succeeding.clear()
        self._closed = True
        self._send.close()  # the background loops' iterations end
        if not self._servers:
            self._receive.close()
        async with anyio.create_task_group() as tg:
            for box in idle:
                tg.start_soon(box.remove)
