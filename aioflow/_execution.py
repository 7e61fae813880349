"""Executing task attempts: the side of a backend that runs the code.

An :class:`AttemptRunner` is shared by every place that executes tasks — the
in-process backend's executors and the worker runtime (:mod:`aioflow.worker`) — so
a task behaves the same wherever it runs. For each attempt it builds the
:class:`~aioflow.TaskContext`, calls the handler under the attempt's deadline,
fills the execution's outcome and reports it. It never touches scheduling state:
the execution is a message it holds until it reports it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import anyio

from .backends.base import Execution, Status
from .channels import Channel
from .context import RunAccess, _current, new_context
from .errors import TaskCancelledError, TaskTimeoutError
from .handlers import Handler

__all__ = ["AttemptRunner", "cancelled_error"]

# Never turned into a task failure: they stop the process (or are the loop's own).
_PASSTHROUGH: tuple[type[BaseException], ...] = (KeyboardInterrupt, SystemExit, GeneratorExit)


def cancelled_error(execution: Execution, run_id: str) -> TaskCancelledError:
    """The error of an execution that was cancelled."""
    reason = execution.cancel_reason or "cancelled"
    return TaskCancelledError(
        f"task {execution.name!r} was cancelled: {reason}",
        run_id=run_id,
        task_name=execution.name,
        attempt=execution.attempt,
    )


class AttemptRunner:
    """Runs the attempts of one run on this side, and reports each one.

    Args:
        run_id: the run.
        channel, view: what the attempts' contexts use (``ctx.channel``, ``ctx.result``).
        handlers: the handlers by name.
        report: called with each execution once its outcome is filled.
        on_started: called with each execution when its code starts (emits events).
        save_checkpoint: ``ctx.checkpoint()``, or None.
        worker_id: put on contexts and outcomes (None in-process).
        debug: log every start (hot paths skip it otherwise).
    """

    __slots__ = (
        "_cancelled_exc",
        "_channel",
        "_debug",
        "_handlers",
        "_on_started",
        "_report",
        "_save_checkpoint",
        "_view",
        "run_id",
        "worker_id",
    )

    def __init__(
        self,
        *,
        run_id: str,
        channel: Channel,
        view: RunAccess,
        handlers: Mapping[str, Handler],
        report: Callable[[Execution], None],
        on_started: Callable[[Execution], None] | None = None,
        save_checkpoint: Callable[[], Any] | None = None,
        worker_id: str | None = None,
        debug: bool = False,
    ) -> None:
        self.run_id = run_id
        self._channel = channel
        self._view = view
        self._handlers = handlers
        self._report = report
        self._on_started = on_started
        self._save_checkpoint = save_checkpoint
        self.worker_id = worker_id
        self._debug = debug
        self._cancelled_exc = anyio.get_cancelled_exc_class()

    async def run(self, execution: Execution, scope: anyio.CancelScope) -> None:
        """Run ``execution`` under ``scope`` (which cancels it alone), then report it.

        When ``scope`` is cancelled the cancellation propagates to the caller, who
        then calls :meth:`cancelled`. A task that swallows the cancellation and
        returns counts as cancelled anyway, and one that returns after its deadline
        as timed out: a deadline is a deadline.
        """
        if execution.cancel_reason is not None:  # cancelled while it waited for a slot
            execution.end_unrun(Status.CANCELLED, cancelled_error(execution, self.run_id))
            self._report(execution)
            return
        task = execution.task
        options = task.options
        ctx = new_context(
            self.run_id,
            execution.name,
            self._channel,
            self._view,
            execution.iteration,
            execution.attempt,
            options,
            self.worker_id,
            self._save_checkpoint,
        )
        args, kwargs = execution.args, execution.kwargs
        for param in execution.context_params:
            if isinstance(param, int):  # a positional-only parameter
                args = (*args[:param], ctx, *args[param + 1 :])
            else:
                kwargs[param] = ctx
        _current.set(ctx)  # current_context(), also in the task's worker thread
        execution.handle = scope
        execution.started = True
        if self._on_started is not None:
            self._on_started(execution)
        if self._debug:
            ctx.log.debug("task started", iteration=execution.iteration)
        handler = self._handlers[options.handler]
        timeout = options.timeout
        error: BaseException | None = None
        value: Any = None
        t0 = time.perf_counter()
        try:
            if timeout is None:
                value = await handler.execute(task, args, kwargs, ctx)
            else:
                with anyio.CancelScope(deadline=anyio.current_time() + timeout) as deadline:
                    value = await handler.execute(task, args, kwargs, ctx)
                if deadline.cancel_called and execution.cancel_reason is None:
                    # Caught here, or swallowed by the task: either way the attempt
                    # outlived its deadline and its value does not count.
                    error = TaskTimeoutError(
                        execution.name, timeout, run_id=self.run_id, attempt=execution.attempt
                    )
        except Exception as exc:
            error = exc
        except BaseException as exc:
            if isinstance(exc, (self._cancelled_exc, *_PASSTHROUGH)):
                execution.duration = time.perf_counter() - t0
                execution.requests = ctx.requests
                raise
            error = exc  # a BaseException subclass of the task's own: a failure like any
        execution.duration = time.perf_counter() - t0
        execution.requests = ctx.requests
        execution.handle = None
        if error is None and execution.cancel_reason is not None:
            # cancel_task() sets the reason before it cancels the scope: the task
            # swallowed the cancellation and returned; it was cancelled all the same.
            error = cancelled_error(execution, self.run_id)
        if error is None:
            execution.status = Status.SUCCEEDED
            execution.value = value
            execution.error = None
        else:
            execution.status = (
                Status.CANCELLED if isinstance(error, TaskCancelledError) else Status.FAILED
            )
            execution.value = None
            execution.error = error
        self._report(execution)

    def cancelled(self, execution: Execution) -> None:
        """Report ``execution`` as cancelled while it ran (its scope caught it)."""
        execution.handle = None
        error = cancelled_error(execution, self.run_id)
        if execution.started:  # duration and requests were set when the attempt stopped
            execution.status, execution.value, execution.error = Status.CANCELLED, None, error
        else:
            execution.end_unrun(Status.CANCELLED, error)
        self._report(execution)
