"""The default handler: coroutines on the event loop, sync functions in worker threads."""

from __future__ import annotations

import functools
import math
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import anyio
import anyio.from_thread
import anyio.to_thread

from ..errors import ConfigurationError
from .base import Handler

if TYPE_CHECKING:
    from ..context import TaskContext
    from ..task import Task

__all__ = ["InlineHandler"]


class InlineHandler(Handler):
    """Runs async tasks on the loop and sync tasks in worker threads.

    Sync tasks never block the loop: they run through ``anyio.to_thread`` behind a
    limit of ``max_threads`` threads at once. Python cannot interrupt a thread, so
    when a sync task's attempt is cancelled (its timeout, ``cancel_task``, the run)
    the attempt ends at once, and the thread is left to finish in the background:
    it keeps its slot until it returns, its late value is discarded, and
    :meth:`aclose` (called when the run ends) waits for it, so nothing of a run is
    still running once the run has returned. A task can stop early by calling
    ``ctx.check_cancelled()`` in its loops.

    Args:
        max_threads: how many sync tasks may run at once (default 40).

    Raises:
        ConfigurationError: ``max_threads`` is not an int >= 1.
    """

    def __init__(self, *, max_threads: int = 40) -> None:
        if isinstance(max_threads, bool) or not isinstance(max_threads, int) or max_threads < 1:
            raise ConfigurationError(
                f"max_threads must be an int >= 1, got {max_threads!r}",
                hint="It bounds how many sync tasks run at once in worker threads; 40 by default.",
            )
        self._max_threads = max_threads
        self._slots: anyio.CapacityLimiter | None = None
        self._unbounded: anyio.CapacityLimiter | None = None
        self._threads = 0  # threads started and not returned, abandoned ones included
        self._idle: anyio.Event | None = None  # set when _threads falls to 0

    @property
    def max_threads(self) -> int:
        return self._max_threads

    @property
    def threads(self) -> int:
        """Threads running now, those of cancelled attempts included."""
        return self._threads

    async def execute(
        self,
        task: Task[..., Any],
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
        ctx: TaskContext,
    ) -> Any:
        if task.is_async:
            return await task.fn(*args, **kwargs)
        return await self.run_sync(functools.partial(task.fn, *args, **kwargs))

    async def run_sync(self, call: Callable[[], Any]) -> Any:
        """Run ``call`` in a worker thread; cancelling the caller abandons the wait only."""
        if self._slots is None:
            self._slots = anyio.CapacityLimiter(self._max_threads)
            self._unbounded = anyio.CapacityLimiter(math.inf)
        slot = object()
        await self._slots.acquire_on_behalf_of(slot)
        self._threads += 1
        state = _ThreadState()

        def done() -> None:  # on the loop: the thread returned, or will never run
            assert self._slots is not None
            self._slots.release_on_behalf_of(slot)
            self._threads -= 1
            if self._threads == 0 and self._idle is not None:
                self._idle.set()
                self._idle = None

        def in_thread() -> Any:
            with state.lock:
                if state.abandoned:
                    return None  # cancelled before it started: the loop released it
                state.started = True
            try:
                return call()
            finally:
                anyio.from_thread.run_sync(done)

        try:
            return await anyio.to_thread.run_sync(
                in_thread, abandon_on_cancel=True, limiter=self._unbounded
            )
        except BaseException:
            with state.lock:
                never_ran = not state.started
                state.abandoned = True
            if never_ran:
                done()
            raise

    async def aclose(self) -> None:
        """Wait until every thread this handler started has returned."""
        with anyio.CancelScope(shield=True):  # bounded: the threads are already running
            while self._threads:
                if self._idle is None:
                    self._idle = anyio.Event()
                await self._idle.wait()


class _ThreadState:
    """Whether a sync call's thread started, or was abandoned before it could."""

    __slots__ = ("abandoned", "lock", "started")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.started = False
        self.abandoned = False
