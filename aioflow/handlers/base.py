"""The handler contract: how one task execution is carried out.

The engine fills a task's parameters and hands the call to the handler named by
the task's ``handler`` option. A handler must:

* return the task's value, or raise the task's own exception (unchanged, so the
  run can chain it);
* be cancellable: when the engine cancels the call (timeout, run cancelled) the
  handler stops the work and releases what it holds before returning (containers
  are removed, threads are waited for);
* hold no per-call state on itself: one handler serves many concurrent calls.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..context import TaskContext
    from ..task import Task

__all__ = ["Handler"]


class Handler(ABC):
    """Executes task calls. Subclass it and pass it as ``run(..., handlers={"name": h})``."""

    @abstractmethod
    async def execute(
        self,
        task: Task[..., Any],
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
        ctx: TaskContext,
    ) -> Any:
        """Run ``task`` with ``args``/``kwargs`` and return its value."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release resources (clients, pools). Called by whoever created the handler."""
