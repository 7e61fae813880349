"""Between an :class:`~aioflow.backends.base.Execution` and the wire.

Every backend whose executions cross a serialization boundary (the serializing
in-process backend, Redis) encodes the request as a signed ``TaskCall`` and decodes
the signed ``TaskResult`` into the outcome with these two functions, so what runs
on one runs on the others.
"""

from __future__ import annotations

import time
from contextlib import AbstractContextManager
from typing import Any

from ..errors import SerializationError
from ..observability.propagation import inject, publishing
from ..serialization import Keyring, TaskCall, TaskRef, decode_result, encode_call
from ..serialization.results import TaskResult
from ..task import Task
from ..worker import requests_from_wire
from .base import Execution, Status

__all__ = ["CallEncoder", "apply_result", "refused"]


class CallEncoder:
    """Encodes the executions of one run as signed calls (task references cached)."""

    __slots__ = ("_keyring", "_refs", "run_id", "workflow")

    def __init__(self, run_id: str, workflow: str, keyring: Keyring) -> None:
        self.run_id = run_id
        self.workflow = workflow
        self._keyring = keyring
        self._refs: dict[int, tuple[Task[..., Any], TaskRef]] = {}

    def _ref(self, task: Task[..., Any]) -> TaskRef:
        known = self._refs.get(id(task))
        if known is None or known[0] is not task:
            known = self._refs[id(task)] = (task, TaskRef.from_callable(task.fn))
        return known[1]

    def batch(self) -> AbstractContextManager[None]:
        """``with encoder.batch():`` around the calls of one submission (a traced run
        makes one ``publish`` span per queue for them)."""
        return publishing(self.run_id)

    def encode(
        self, execution: Execution, call_id: str, extra: dict[str, Any] | None = None
    ) -> bytes:
        """The signed call of ``execution``.

        Raises:
            SerializationError: an argument or the task's code cannot cross a process.
        """
        task = execution.task
        options = task.options
        args = dict(execution.kwargs)
        context = execution.context_params
        for param in context:
            if type(param) is str:
                args.pop(param, None)  # filled on the worker with its own context
        if execution.args:
            args["*"] = list(execution.args)
        wire_options: dict[str, Any] = {
            "timeout": options.timeout,
            "max_cycles": options.max_cycles,
            "handler": options.handler,
            "queue": options.queue,
            "priority": options.priority,
            "context": list(context),
        }
        if options.rate_limit is not None:
            wire_options["rate_limit"] = options.rate_limit
        if extra:
            wire_options.update(extra)
        # Observability: when the call left (queue wait, measured where it starts) and
        # the trace context of the run, if a tracing instrument traces it.
        wire_options["enqueued_at"] = time.time()
        call = TaskCall(
            run_id=self.run_id,
            task_name=execution.name,
            ref=self._ref(task),
            args=args,
            attempt=execution.attempt,
            iteration=execution.iteration,
            options=wire_options,
            call_id=call_id,
            workflow=self.workflow,
            trace=inject(self.run_id, execution.name, wire_options),
        )
        return encode_call(call, self._keyring)


def refused(execution: Execution, exc: SerializationError, run_id: str) -> None:
    """End ``execution`` as failed: its call could not be encoded (nothing ran)."""
    error = SerializationError(
        f"the call of task {execution.name!r} cannot cross a process: {exc}",
        hint=exc.hint,
        run_id=run_id,
        task_name=execution.name,
        attempt=execution.attempt,
    )
    error.__cause__ = exc
    execution.end_unrun(Status.FAILED, error)


def apply_result(execution: Execution, data: bytes | TaskResult, keyring: Keyring) -> None:
    """Fill the outcome of ``execution`` from its signed result.

    A cancelled result without a start time is an execution that never started
    (``NOT_STARTED``: a worker dropped it because its run was cancelled).

    Raises:
        SerializationError: the result does not verify or decode.
    """
    result = data if isinstance(data, TaskResult) else decode_result(data, keyring)
    execution.handle = None
    execution.worker_id = result.worker_id
    if result.started_at is not None and result.finished_at is not None:
        execution.duration = max(0.0, result.finished_at - result.started_at)
    else:
        execution.duration = 0.0
    execution.requests = requests_from_wire(result.requests)
    if result.status == "succeeded":
        execution.status = Status.SUCCEEDED
        execution.value = result.value
        execution.error = None
        return
    assert result.error is not None
    execution.value = None
    execution.error = result.error.to_exception(
        run_id=result.run_id, task_name=result.task_name, attempt=result.attempt
    )
    if result.status == "cancelled":
        execution.status = Status.CANCELLED if result.started_at is not None else Status.NOT_STARTED
    else:
        execution.status = Status.FAILED
