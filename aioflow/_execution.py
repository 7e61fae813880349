"""Running one task execution: the executor side of the engine.

A :class:`TaskRunner` is what the executor pool calls for each task execution. It
makes the execution's :class:`~aioflow.TaskContext`, fills the arguments, runs the
attempts through the task's handler (with timeouts and retries), and reports the
outcome to the scheduler with one message. It never changes scheduling state.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectSendStream

from . import events as ev
from ._runstate import NO_DATA, Node, RunView
from .channels import Channel
from .context import TaskContext, _set_current
from .errors import TaskTimeoutError
from .handlers import Handler
from .plan import fill_arguments

__all__ = ["CANCELLED", "FAILED", "OK", "Message", "TaskRunner"]

# Message kinds: (kind, node, value | error | cancel reason, ctx or None).
OK, FAILED, CANCELLED = 0, 1, 2
Message = tuple[int, Node, Any, TaskContext | None]


class TaskRunner:
    """Runs task executions handed out by the scheduler and reports their outcomes."""

    def __init__(
        self,
        *,
        run_id: str,
        channel: Channel,
        view: RunView,
        handlers: Mapping[str, Handler],
        send: MemoryObjectSendStream[Message],
        emit: Callable[[ev.Event], None] | None,
        save_checkpoint: Callable[[], Awaitable[None]] | None,
        debug: bool,
    ) -> None:
        self.run_id = run_id
        self._channel = channel
        self._view = view
        self._handlers = handlers
        self._send = send
        self._emit = emit
        self._save_checkpoint = save_checkpoint
        self._debug = debug

    async def run(self, node: Node, scope: anyio.CancelScope) -> None:
        """Run one execution of ``node`` (all its attempts) and report the outcome.

        ``scope`` is the executor's cancel scope, which belongs to this execution
        while it runs: ``cancel_task`` cancels it (or the attempt's deadline scope,
        for tasks with a timeout); the pool then calls :meth:`cancelled`.
        """
        task = node.task
        assert task is not None
        send = self._send
        # Made when the execution starts, not when it is queued: a wide fan-out does
        # not keep a context alive for every task waiting for an executor.
        ctx = TaskContext._create(
            run_id=self.run_id,
            task_name=node.name,
            channel=self._channel,
            run=self._view,
            iteration=node.iteration,
            max_cycles=task.options.max_cycles,
            save_checkpoint=self._save_checkpoint,
        )
        _set_current(ctx)
        if node.started_at is None:
            node.started_at = time.time()
        node.scope = scope
        args: tuple[Any, ...] = ()
        kwargs: dict[str, Any] = {}
        if node.plan:
            try:
                args, kwargs = fill_arguments(
                    task,
                    node.plan,
                    ctx=ctx,
                    results=self._view.results,
                    inputs=self._view.inputs,
                    state_of=self._view.state_of,
                    run_id=self.run_id,
                )
            except Exception as exc:
                node.scope = None
                send.send_nowait((FAILED, node, exc, ctx))
                return
        if node.iteration_data is not NO_DATA and task.takes("data"):
            kwargs["data"] = node.iteration_data
        handler = self._handlers[task.options.handler]
        options = task.options
        emit = self._emit
        attempt = 0
        while True:
            attempt += 1
            if attempt > 1:
                ctx._begin_attempt(attempt)
            node.attempts = attempt
            if emit:
                emit(
                    ev.TaskStarted(
                        run_id=self.run_id,
                        task_name=node.name,
                        attempt=attempt,
                        iteration=node.iteration,
                    )
                )
            if self._debug:
                ctx.log.debug("task started", iteration=node.iteration)
            t0 = time.perf_counter()
            error: Exception | None = None
            if options.timeout is None:
                # No deadline: the executor's scope is this execution's own scope.
                try:
                    value = await handler.execute(task, args, kwargs, ctx)
                except Exception as exc:
                    error = exc
            else:
                deadline = anyio.current_time() + options.timeout
                with anyio.CancelScope(deadline=deadline) as attempt_scope:
                    node.scope = attempt_scope
                    try:
                        value = await handler.execute(task, args, kwargs, ctx)
                    except Exception as exc:
                        error = exc
                node.scope = scope
                if attempt_scope.cancelled_caught:
                    if node.cancel_reason is not None:
                        node.scope = None
                        send.send_nowait((CANCELLED, node, node.cancel_reason, ctx))
                        return
                    error = TaskTimeoutError(
                        node.name, options.timeout, run_id=self.run_id, attempt=attempt
                    )
            node.duration += time.perf_counter() - t0
            if error is None:
                node.scope = None
                send.send_nowait((OK, node, value, ctx))
                return
            requests = ctx.requests
            stopping = requests is not None and (
                requests.cancel is not None or requests.terminate is not None
            )
            if not stopping and options.retries.should_retry(attempt, error):
                delay = options.retries.delay(attempt)
                if emit:
                    emit(
                        ev.TaskRetrying(
                            run_id=self.run_id,
                            task_name=node.name,
                            attempt=attempt,
                            error=error,
                            delay=delay,
                        )
                    )
                ctx.log.info("task attempt failed; retrying", error=repr(error), delay=delay)
                ctx.requests = None  # requests of a failed attempt do not count
                await anyio.sleep(delay)
                continue
            node.scope = None
            send.send_nowait((FAILED, node, error, ctx))
            return

    def cancelled(self, node: Node) -> None:
        """The pool caught the cancellation of ``node``'s execution scope (``cancel_task``)."""
        node.scope = None
        self._send.send_nowait((CANCELLED, node, node.cancel_reason or "cancelled", None))
