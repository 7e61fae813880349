"""TaskContext: what one task execution knows about its run.

One context is made per task attempt, on the side that executes it (in-process, on
a worker, in a container); it is never shared between tasks that run at the same
time, and it cannot be pickled. Control requests made
through it (``next_iteration``, ``next_task``, ``terminate_workflow``,
``cancel_workflow``) are recorded on the context and carried out by the scheduler
when the task's execution ends, so they are safe from worker threads too.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn, Protocol, TypeVar, final

import anyio.from_thread

from ._util import NoPublicConstructor
from .channels import Channel, TypedChannel
from .errors import CycleLimitExceededError, RunStateError, UnknownTaskError
from .observability.logging import get_logger

if TYPE_CHECKING:
    import structlog

    from .task import Task, TaskOptions

__all__ = ["ControlRequests", "RunAccess", "TaskContext", "current_context", "new_context"]

S = TypeVar("S")

_current: ContextVar[TaskContext | None] = ContextVar("aioflow_task_context", default=None)
_MISSING: Any = object()


class RunAccess(Protocol):
    """What a context may read of its run (provided by the engine)."""

    @property
    def results(self) -> Mapping[str, Any]: ...

    @property
    def inputs(self) -> Mapping[str, Any]: ...

    def has_node(self, name: str) -> bool: ...


@dataclass(slots=True)
class ControlRequests:
    """Requests a task made through its context, read by the scheduler afterwards."""

    iterate: bool = False
    iteration_data: Any = None
    next_tasks: list[tuple[Task[..., Any] | str, bool]] | None = None
    terminate: str | None = None
    cancel: str | None = None
    checkpoint: bool = False


@final
class TaskContext(metaclass=NoPublicConstructor):
    """The context of one task execution. Made by the engine; see :func:`current_context`.

    Attributes:
        run_id: id of the run.
        task_name: name of the executing task.
        attempt: 1 for the first attempt, 2 for the first retry...
        iteration: 1 for the first execution, 2 after one ``next_iteration()``...
        channel: the run's shared key-value state.
        worker_id: id of the worker executing the task (None in-process).
    """

    __slots__ = (
        "_log",
        "_options",
        "_run",
        "_save_checkpoint",
        "attempt",
        "channel",
        "iteration",
        "max_cycles",
        "requests",
        "run_id",
        "task_name",
        "worker_id",
    )

    def __init__(
        self,
        *,
        run_id: str,
        task_name: str,
        channel: Channel,
        run: RunAccess,
        iteration: int = 1,
        attempt: int = 1,
        max_cycles: int = 100,
        worker_id: str | None = None,
        save_checkpoint: Callable[[], Any] | None = None,
    ) -> None:
        self.run_id = run_id
        self.task_name = task_name
        self.attempt = attempt
        self.iteration = iteration
        self.max_cycles = max_cycles
        self.channel = channel
        self.worker_id = worker_id
        self.requests: ControlRequests | None = None  # made on the first request
        self._run = run
        self._log: structlog.stdlib.BoundLogger | None = None
        self._save_checkpoint = save_checkpoint
        # The attempt's task options (queue, priority, handler: for instruments), when
        # the engine made the context.
        self._options: TaskOptions | None = None

    # --- reading the run --------------------------------------------------------

    @property
    def log(self) -> structlog.stdlib.BoundLogger:
        """A structlog logger with run_id, task_name, attempt (and worker_id) bound."""
        if self._log is None:
            ids: dict[str, Any] = {
                "run_id": self.run_id,
                "task_name": self.task_name,
                "attempt": self.attempt,
            }
            if self.worker_id is not None:
                ids["worker_id"] = self.worker_id
            self._log = get_logger("task", **ids)
        return self._log

    @property
    def inputs(self) -> Mapping[str, Any]:
        """The run's inputs (read-only)."""
        return self._run.inputs

    def result(self, name: str, default: Any = _MISSING) -> Any:
        """The result of the finished task (or group) ``name``.

        Raises:
            UnknownTaskError: the run has no node ``name``.
            KeyError: ``name`` has not finished successfully and no default was given.
        """
        results = self._run.results
        if name in results:
            return results[name]
        if not self._run.has_node(name):
            raise UnknownTaskError(
                f"the run has no task or group named {name!r}",
                run_id=self.run_id,
                task_name=self.task_name,
            )
        if default is _MISSING:
            raise KeyError(f"task {name!r} has no result (yet)")
        return default

    def typed_channel(self, schema: type[S], *, prefix: str = "") -> TypedChannel[S]:
        """A view of :attr:`channel` validated against the ``TypedDict`` ``schema``."""
        return TypedChannel(self.channel, schema, prefix=prefix)

    # --- control requests -------------------------------------------------------

    def next_iteration(self, data: Any = None) -> None:
        """Run this task again after this execution; the next one gets ``data`` as ``data``.

        Successors wait until an iteration ends without calling this.

        Raises:
            CycleLimitExceededError: this would exceed the task's ``max_cycles``.
        """
        if self.iteration >= self.max_cycles:
            raise CycleLimitExceededError(self.task_name, self.max_cycles, run_id=self.run_id)
        requests = self._requests()
        requests.iterate = True
        requests.iteration_data = data

    def next_task(self, task: Task[..., Any] | str, goto: bool = False) -> str:
        """Add ``task`` to the run, to start after this task ends; returns its name.

        ``task`` is a task (added if new) or the name of one of the run's tasks (run
        again). With ``goto=True`` this task's static successors are skipped.

        Raises:
            UnknownTaskError: ``task`` is a name the run does not know.
        """
        if isinstance(task, str):
            if not self._run.has_node(task):
                raise UnknownTaskError(
                    f"next_task({task!r}): the run has no task named {task!r}",
                    hint="Pass the task object itself to add a new task at run time.",
                    run_id=self.run_id,
                    task_name=self.task_name,
                )
            name = task
        else:
            name = task.name
        requests = self._requests()
        if requests.next_tasks is None:
            requests.next_tasks = []
        requests.next_tasks.append((task, goto))
        return name

    def terminate_workflow(self, reason: str | None = None) -> None:
        """Finish the run successfully once this task returns; nothing else starts."""
        self._requests().terminate = reason or "terminated by task"

    def cancel_workflow(self, reason: str | None = None) -> None:
        """Cancel the run once this task returns (status ``"cancelled"``)."""
        self._requests().cancel = reason or "cancelled by task"

    def _requests(self) -> ControlRequests:
        if self.requests is None:
            self.requests = ControlRequests()
        return self.requests

    async def checkpoint(self) -> None:
        """Save a checkpoint of the run now (when the run was started with ``checkpoint=``)."""
        if self._save_checkpoint is None:
            raise RunStateError(
                "this run was started without checkpoint=; nothing to save to",
                hint="Pass checkpoint='path/to/file' (or a store) to aioflow.run().",
                run_id=self.run_id,
                task_name=self.task_name,
            )
        await self._save_checkpoint()

    def check_cancelled(self) -> None:
        """In a sync task (worker thread): raise if the task was cancelled.

        Call it in long loops so that timeouts and run cancellation stop the thread.
        In async tasks cancellation is delivered at every ``await``; this is a no-op there.
        """
        try:
            anyio.from_thread.check_cancelled()
        except RuntimeError:
            return  # not in an anyio worker thread: async code is cancelled at awaits

    def __reduce__(self) -> NoReturn:
        raise TypeError(
            "a TaskContext cannot be pickled: it belongs to one task execution and holds "
            "the run's live channel; pass the values you need (ctx.run_id, results) instead"
        )

    def __repr__(self) -> str:
        return (
            f"<TaskContext run={self.run_id} task={self.task_name} "
            f"attempt={self.attempt} iteration={self.iteration}>"
        )


def new_context(
    run_id: str,
    task_name: str,
    channel: Channel,
    run: RunAccess,
    iteration: int,
    attempt: int,
    options: TaskOptions,
    worker_id: str | None,
    save_checkpoint: Callable[[], Any] | None,
) -> TaskContext:
    """A context for one attempt (internal: the fast twin of ``TaskContext._create``)."""
    ctx: TaskContext = object.__new__(TaskContext)
    ctx.run_id = run_id
    ctx.task_name = task_name
    ctx.attempt = attempt
    ctx.iteration = iteration
    ctx.max_cycles = options.max_cycles
    ctx._options = options
    ctx.channel = channel
    ctx.worker_id = worker_id
    ctx.requests = None
    ctx._run = run
    ctx._log = None
    ctx._save_checkpoint = save_checkpoint
    return ctx


def current_context() -> TaskContext:
    """The context of the task execution this code runs in (also in its worker thread).

    Raises:
        RunStateError: called outside a task.
    """
    ctx = _current.get()
    if ctx is None:
        raise RunStateError(
            "current_context() was called outside a running task",
            hint="Call it from inside a task function, or accept a `ctx: TaskContext` parameter.",
        )
    return ctx


def _set_current(ctx: TaskContext | None) -> None:
    _current.set(ctx)
