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
import math
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
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
    """Run ``execute(item, scope)`` for submitted items on at most ``limit`` executors.

    Each executor runs its items inside a cancel scope of its own, passed to
    ``execute``: while an item runs, that scope is the item's, so cancelling it
    cancels that execution alone. The executor then calls ``cancelled(item)`` and
    goes on under a fresh scope. (One scope per executor rather than one per item:
    entering a cancel scope costs microseconds, a large share of a no-op task.)

    Args:
        tg: the task group that owns the executors.
        execute: the coroutine function run for each item; it must not raise.
        cancelled: called with an item whose execution was cancelled, or ended with
            an exception ``execute`` did not catch (the executor then ends).
        limit: the most executors (``None``: no limit).
    """

    def __init__(
        self,
        tg: TaskGroup,
        execute: Callable[[T, anyio.CancelScope], Awaitable[None]],
        cancelled: Callable[[T], None],
        limit: int | None,
    ) -> None:
        self._tg = tg
        self._execute = execute
        self._cancelled = cancelled
        self._limit = math.inf if limit is None else limit
        # One FIFO per priority level, and a heap of the levels that hold work: no
        # per-item allocation, O(1) for the usual single level.
        self._levels: dict[int, deque[T]] = {}
        self._order: list[int] = []  # heap of -priority of the non-empty levels
        self._size = 0
        self._busy = 0  # items being executed now
        self._executors = 0
        self._starting = 0  # spawned, not yet running: about to take work
        self._yielding = 0  # finished an item, yielded once before going idle
        self._waiters: deque[anyio.Event] = deque()  # idle executors, one event each
        self._closed = False

    @property
    def executors(self) -> int:
        """How many executor tasks exist (statistics, tests)."""
        return self._executors

    def submit(self, item: T, priority: int = 0) -> None:
        """Queue ``item``; higher ``priority`` is taken first, then first come first served."""
        level = self._levels.get(priority)
        if level is None:
            level = self._levels[priority] = deque()
            heapq.heappush(self._order, -priority)
        level.append(item)
        self._size += 1
        if self._waiters:
            self._waiters.popleft().set()
        else:
            self._grow()

    def submit_all(self, items: Iterable[T], priority_of: Callable[[T], int]) -> None:
        """Queue ``items`` in order (the batch form of :meth:`submit`)."""
        levels = self._levels
        added = 0
        for item in items:
            priority = priority_of(item)
            level = levels.get(priority)
            if level is None:
                level = levels[priority] = deque()
                heapq.heappush(self._order, -priority)
            level.append(item)
            added += 1
        self._size += added
        # Wake idle executors for the new work, then grow if more waits.
        while added and self._waiters:
            self._waiters.popleft().set()
            added -= 1
        if added:
            self._grow()

    @property
    def busy(self) -> int:
        """How many items are being executed now."""
        return self._busy

    @property
    def size(self) -> int:
        """How many items wait for an executor."""
        return self._size

    def halt(self) -> list[T]:
        """Drop the work still queued (it never starts), :meth:`close` the pool; return it."""
        dropped = [item for level in self._levels.values() for item in level]
        self._levels.clear()
        self._order.clear()
        self._size = 0
        self.close()
        return dropped

    def close(self) -> None:
        """No more work: idle executors end; busy ones end after their current item."""
        self._closed = True
        while self._waiters:
            self._waiters.popleft().set()

    def _grow(self) -> None:
        if self._starting == 0 and self._yielding == 0 and self._executors < self._limit:
            self._executors += 1
            self._starting += 1
            self._tg.start_soon(self._executor, name="aioflow-executor")

    async def _executor(self) -> None:
        self._starting -= 1
        streak = 0
        while True:
            current: T | None = None
            with anyio.CancelScope() as scope:
                while True:
                    if self._size:
                        current = self._pop()
                        if self._size and not self._waiters:
                            self._grow()  # more work waits and nobody else is free
                        self._busy += 1
                        try:
                            await self._execute(current, scope)
                        except BaseException:
                            self._busy -= 1
                            # Not this executor's own cancellation (the scope below
                            # reports that): the run is being cancelled, or the item
                            # let a stray cancellation escape. Report the item, so
                            # that nobody waits for it, and let the exception go on.
                            if not scope.cancel_called:
                                self._executors -= 1
                                self._cancelled(current)
                            raise
                        self._busy -= 1
                        current = None
                        if scope.cancel_called:
                            break  # cancelled, but the item finished anyway: new scope
                        streak += 1
                        if streak >= _STREAK:
                            streak = 0
                            await self._yield()
                    elif self._closed:
                        return
                    elif streak:
                        # Out of work right after an item: yield once first. The item's
                        # completion usually releases a successor, which the scheduler
                        # submits during this yield; taking it now is cheaper than
                        # parking on an event and being woken.
                        streak = 0
                        await self._yield()
                    else:
                        await self._idle()
            if scope.cancelled_caught and current is not None:
                self._cancelled(current)

    def _pop(self) -> T:
        priority = -self._order[0]
        level = self._levels[priority]
        item = level.popleft()
        self._size -= 1
        if not level:
            heapq.heappop(self._order)
            del self._levels[priority]
        return item

    async def _yield(self) -> None:
        # A yielding executor comes back for work by itself: while it is away,
        # waiting work is no reason to spawn another one.
        self._yielding += 1
        try:
            await anyio.lowlevel.checkpoint()
        finally:
            self._yielding -= 1

    async def _idle(self) -> None:
        wakeup = anyio.Event()
        self._waiters.append(wakeup)
        try:
            await wakeup.wait()
        finally:
            if wakeup in self._waiters:  # cancelled while idle
                self._waiters.remove(wakeup)
