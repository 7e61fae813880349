"""A priority work queue served by a growing set of executor tasks.

The scheduler submits task executions; executor tasks (children of the run's task
group) take them highest priority first. The pool grows like a thread pool: a new
executor is spawned only when work is waiting and no executor is free or about to
start, up to ``limit``. No-op or CPU-bound tasks are therefore served by a few
executors (spawning an anyio task costs tens of microseconds), while tasks that
wait on I/O make the pool grow until every waiting task has an executor.

Safe without locks: everything here runs on the run's event loop, and no method
awaits between reading and updating the counters.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

import anyio
import anyio.lowlevel
from anyio.abc import TaskGroup

__all__ = ["ExecutorPool"]

T = TypeVar("T")

# An executor that takes this many items in a row without suspending yields to the
# loop once, so that one executor cannot monopolise it.
_STREAK = 64


class ExecutorPool(Generic[T]):
    """Run ``execute(item)`` for submitted items on at most ``limit`` executor tasks.

    Args:
        tg: the task group that owns the executors.
        execute: the coroutine function run for each item; it must not raise.
        limit: the most executors (``None``: no limit).
    """

    def __init__(
        self, tg: TaskGroup, execute: Callable[[T], Awaitable[None]], limit: int | None
    ) -> None:
        self._tg = tg
        self._execute = execute
        self._limit = math.inf if limit is None else limit
        self._queue: list[tuple[int, int, T]] = []
        self._seq = itertools.count()
        self._executors = 0
        self._starting = 0  # spawned, not yet running: about to take work
        self._waiters: deque[anyio.Event] = deque()  # idle executors, one event each
        self._closed = False

    @property
    def executors(self) -> int:
        """How many executor tasks exist (statistics, tests)."""
        return self._executors

    def submit(self, item: T, priority: int = 0) -> None:
        """Queue ``item``; higher ``priority`` is taken first, then first come first served."""
        heapq.heappush(self._queue, (-priority, next(self._seq), item))
        if self._waiters:
            self._waiters.popleft().set()
        else:
            self._grow()

    def close(self) -> None:
        """No more work: idle executors end; busy ones end after their current item."""
        self._closed = True
        while self._waiters:
            self._waiters.popleft().set()

    def _grow(self) -> None:
        if self._starting == 0 and self._executors < self._limit:
            self._executors += 1
            self._starting += 1
            self._tg.start_soon(self._executor, name="aioflow-executor")

    async def _executor(self) -> None:
        self._starting -= 1
        streak = 0
        while True:
            if self._queue:
                item = heapq.heappop(self._queue)[2]
                if self._queue and not self._waiters:
                    self._grow()  # more work waits and nobody else is free
                await self._execute(item)
                streak += 1
                if streak >= _STREAK:
                    streak = 0
                    await anyio.lowlevel.checkpoint()
            elif self._closed:
                return
            else:
                streak = 0
                wakeup = anyio.Event()
                self._waiters.append(wakeup)
                try:
                    await wakeup.wait()
                finally:
                    if wakeup in self._waiters:  # cancelled while idle
                        self._waiters.remove(wakeup)
