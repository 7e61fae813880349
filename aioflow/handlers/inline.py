"""The default handler: coroutines on the event loop, sync functions in worker threads."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread

from .base import Handler

if TYPE_CHECKING:
    from ..context import TaskContext
    from ..task import Task

__all__ = ["InlineHandler"]


class InlineHandler(Handler):
    """Runs async tasks on the loop and sync tasks in worker threads.

    Sync tasks never block the loop: they run through ``anyio.to_thread`` behind a
    capacity limiter of ``max_threads``. A cancelled sync task cannot be interrupted
    by Python; the handler waits for its thread to return (so nothing of a cancelled
    run keeps running) and the task can stop early by calling ``ctx.check_cancelled()``.

    Args:
        max_threads: how many sync tasks may run at once (default 40).
    """

    def __init__(self, *, max_threads: int = 40) -> None:
        self._max_threads = max_threads
        self._limiter: anyio.CapacityLimiter | None = None

    @property
    def limiter(self) -> anyio.CapacityLimiter:
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self._max_threads)
        return self._limiter

    async def execute(
        self,
        task: Task[..., Any],
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
        ctx: TaskContext,
    ) -> Any:
        if task.is_async:
            return await task.fn(*args, **kwargs)
        call = functools.partial(task.fn, *args, **kwargs)
        return await anyio.to_thread.run_sync(call, limiter=self.limiter)
