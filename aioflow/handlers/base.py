"""The handler contract: how one task execution is carried out.

The engine fills a task's parameters and hands the call to the handler named by
the task's ``handler`` option. A handler must:

* return the task's value, or raise the task's own exception (unchanged, so the
  run can chain it);
* be cancellable: when the engine cancels the call (timeout, ``cancel_task``, run
  cancelled) the handler stops waiting for the work at once; what it cannot stop
  at once (a thread, a container) it keeps accounting for and finishes or removes
  before :meth:`aclose` returns;
* hold no per-call state on itself: one handler serves many concurrent calls.

Lifecycle: a run (or a worker) enters every handler it uses as an async context
manager (``async with handler:``) and leaves it when it ends. Entries are counted,
so one handler may serve several runs at once: it is opened on the first entry
and closed (:meth:`aclose`) when the last one leaves. A closed handler opens
again on the next entry.

Background work: a handler that overrides :meth:`serve` has it run by each run (and
each serving worker) using it, in that run's task group, while the run goes on; it
is cancelled when the run ends. Several may run at once (concurrent runs sharing
the handler): the work they do must be shareable, and none of it may be needed for
a call to complete (a call never waits for ``serve``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

if TYPE_CHECKING:
    from ..context import TaskContext
    from ..task import Task

__all__ = ["Handler"]


class Handler(ABC):
    """Executes task calls. Subclass it and pass it as ``run(..., handlers={"name": h})``."""

    _entered: int = 0

    @abstractmethod
    async def execute(
        self,
        task: Task[..., Any],
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
        ctx: TaskContext,
    ) -> Any:
        """Run ``task`` with ``args``/``kwargs`` and return its value."""

    async def serve(self) -> None:  # noqa: B027 - optional hook
        """Background work while a run or worker uses the handler (see the module
        documentation); cancelled when it ends. The default has none."""

    async def serve_logged(self, log: Any) -> None:
        """:meth:`serve`, with a failure logged on ``log`` instead of raised: what runs
        and workers call (background work never fails them)."""
        try:
            await self.serve()
        except Exception as exc:
            log.error("a handler's background work failed", handler=repr(self), exc_info=exc)

    @property
    def serves(self) -> bool:
        """Whether this handler has background work (:meth:`serve` is overridden)."""
        return type(self).serve is not Handler.serve

    async def open(self) -> None:  # noqa: B027 - optional hook
        """Acquire resources (clients, pools). Called on the first ``async with`` entry."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release resources and wait for work still accounted for (threads, containers).

        Called when the last ``async with`` entry leaves; also callable directly.
        """

    async def __aenter__(self) -> Self:
        if self._entered == 0:
            await self.open()
        self._entered += 1
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._entered -= 1
        if self._entered == 0:
            await self.aclose()
