"""The worker runtime: executes signed ``TaskCall`` s from any backend.

A :class:`Worker` turns a signed :class:`~aioflow.serialization.TaskCall` into a
signed :class:`~aioflow.serialization.TaskResult`: it verifies and decodes the
call, resolves the task's code (by import path, or signed cloudpickle), builds a
worker-side :class:`~aioflow.TaskContext` that behaves like the in-process one
(``ctx.channel`` and ``ctx.result(name)`` through the backend, ``ctx.attempt``,
``ctx.log`` with the worker id bound), runs the attempt through the same code as
the in-process backend (:class:`~aioflow._execution.AttemptRunner`), and carries
the task's control requests and its exception (type, message, remote traceback)
back in the result. Everything it needs is injected: backend, handlers,
instruments (R6).

Backends feed it: the serializing in-process backend
(``memory://?serialize=true``) calls :meth:`Worker.execute` for every execution;
remote backends hand it the calls they receive.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Self

import anyio

from . import events as ev
from ._execution import AttemptRunner
from .backends.base import Execution, Status
from .context import ControlRequests, RunAccess
from .errors import AioflowError, ConfigurationError, SerializationError, WorkflowDefinitionError
from .handlers import Handler, InlineHandler
from .instruments import Instruments
from .observability.logging import get_logger
from .observability.propagation import set_current_call
from .serialization import (
    ErrorInfo,
    Keyring,
    TaskCall,
    TaskResult,
    decode_call,
    encode_result,
)
from .task import Task, TaskOptions

if TYPE_CHECKING:
    from .backends.base import Backend
    from .channels import Channel

__all__ = ["RunResources", "Worker", "requests_from_wire", "requests_to_wire"]


@dataclass(frozen=True, slots=True)
class RunResources:
    """What the tasks of one run see on a worker: its channel, its results and inputs."""

    channel: Channel
    view: RunAccess


def _new_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class Worker:
    """Executes task calls handed to it by a backend and returns their results.

    ``async with Worker(backend, ...) as worker:`` enters the handlers (they are
    closed when the worker closes, waiting for what they still account for).

    Args:
        backend: the backend this worker serves (a ``Backend``, or its URL).
        handlers: handlers by name (``"inline"`` is added when missing).
        instruments: objects with hooks (:mod:`aioflow.instruments`), told of every
            attempt this worker runs (``on_task_start``, ``on_task_end``).
        concurrency: how many attempts may run at once (None: no limit).
        worker_id: this worker's id (default: host-pid-random).
        keyring: verifies calls and signs results (default: from the environment).
        allow_pickled_code: accept task code sent as signed cloudpickle (default True:
            every payload is signed, so only a holder of the key can send code).
    """

    def __init__(
        self,
        backend: Backend | str | None = None,
        *,
        handlers: Mapping[str, Handler] | None = None,
        instruments: Iterable[object] = (),
        concurrency: int | None = 16,
        worker_id: str | None = None,
        keyring: Keyring | None = None,
        allow_pickled_code: bool = True,
    ) -> None:
        if isinstance(backend, str):  # a URL: "redis://host:6379/0"
            from .backends import open_backend

            backend = open_backend(backend)
        self.backend: Backend | None = backend
        self.worker_id = worker_id or _new_worker_id()
        self._handlers: dict[str, Handler] = {"inline": InlineHandler()}
        self._handlers.update(handlers or {})
        self._keyring = keyring
        self._allow_code = allow_pickled_code
        self._inst = Instruments(instruments, worker_id=self.worker_id)
        self.concurrency = concurrency
        self._limiter = anyio.CapacityLimiter(concurrency) if concurrency else None
        self._stop: anyio.Event | None = None
        self._stop_requested = False
        # Call id -> the scopes of its attempts running here: a queue delivers at least
        # once, so one call may run twice at once (an enqueue retried after a lost reply).
        self._running: dict[str, list[anyio.CancelScope]] = {}
        self._cancel_reasons: dict[str, str] = {}
        self._log = get_logger("worker", worker_id=self.worker_id)

    @property
    def keyring(self) -> Keyring:
        if self._keyring is None:
            self._keyring = Keyring.from_env()
        return self._keyring

    @property
    def running(self) -> int:
        """How many attempts execute now."""
        return sum(map(len, self._running.values()))

    async def __aenter__(self) -> Self:
        for handler in self._handlers.values():
            await handler.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        with anyio.CancelScope(shield=True):
            for handler in reversed(list(self._handlers.values())):
                await handler.__aexit__(None, None, None)

    async def run(self, *, queues: Sequence[str] = ("default",), grace: float = 30.0) -> None:
        """Serve the backend's ``queues`` until :meth:`shutdown` is called.

        Then no new work is taken; running tasks have ``grace`` seconds to finish;
        what still runs is cancelled and handed back to its queue at once (another
        worker takes it), as is work taken but not started.

        Raises:
            ConfigurationError: no backend, or one that has no queues (in-process).
            BackendUnavailableError: the backend's server cannot be reached.
        """
        if self.backend is None:
            raise ConfigurationError(
                "this Worker has no backend to serve",
                hint='Make it with Worker(RedisBackend("redis://host:6379/0")).',
            )
        if (
            isinstance(queues, str)
            or not queues
            or not all(isinstance(q, str) and q for q in queues)
        ):
            raise ConfigurationError(f"queues must be a list of queue names, got {queues!r}")
        if type(grace) not in (int, float) or grace < 0:
            raise ConfigurationError(f"grace must be a number of seconds >= 0, got {grace!r}")
        if self.backend.remote:  # before connecting: a local key cannot be shared
            if self._keyring is None:
                self._keyring = getattr(self.backend, "_keyring", None)
            self.keyring.require_production(backend=self.backend.describe())
        self._stop = anyio.Event()
        if self._stop_requested:
            self._stop.set()
        async with self.backend, self, anyio.create_task_group() as tg:
            self._log.info("worker started", queues=list(queues), concurrency=self.concurrency)
            for handler in self._handlers.values():
                if handler.serves:  # background work (a warm pool starting replacements)
                    tg.start_soon(handler.serve_logged, self._log)
            try:
                await self.backend.serve(self, queues=list(queues), grace=float(grace))
            finally:
                tg.cancel_scope.cancel()
                self._log.info("worker stopped")

    def shutdown(self) -> None:
        """Stop taking work; :meth:`run` returns once running tasks are dealt with."""
        self._stop_requested = True
        if self._stop is not None:
            self._stop.set()

    async def wait_shutdown(self) -> None:
        """Return once :meth:`shutdown` was called (for backends serving this worker)."""
        if self._stop is None:
            self._stop = anyio.Event()
            if self._stop_requested:
                self._stop.set()
        await self._stop.wait()

    @property
    def stopping(self) -> bool:
        return self._stop_requested

    def running_calls(self) -> list[str]:
        """The call ids running now."""
        return list(self._running)

    def cancel(self, call_id: str, reason: str = "cancelled") -> bool:
        """Cancel the running attempt ``call_id``; True if it was running here."""
        scopes = self._running.get(call_id)
        if not scopes:
            return False
        self._cancel_reasons[call_id] = reason
        for scope in scopes:
            scope.cancel()
        return True

    async def execute(
        self,
        payload: bytes,
        resources: RunResources,
        *,
        started: Callable[[TaskCall], None] | None = None,
        before: Callable[[TaskCall], Awaitable[None]] | None = None,
    ) -> bytes:
        """Verify and run one signed ``TaskCall``; return the signed ``TaskResult``.

        Args:
            payload: the signed call.
            resources: the run's channel and results, as this side sees them.
            started: called with the call when the task's code starts.
            before: awaited with the decoded call before the attempt runs, inside its
                cancel scope (a backend waits there for its rate limit, or fetches
                what the task reads).

        Raises:
            PayloadSignatureError: the call is not signed with an accepted key
                (nothing of it was decoded); the caller dead-letters it.
            SerializationError: the call is malformed. (A call whose arguments or
                code cannot be loaded here comes back as a failed result instead.)
        """
        return (await self.execute_call(payload, resources, started=started, before=before))[1]

    async def execute_call(
        self,
        payload: bytes,
        resources: RunResources,
        *,
        started: Callable[[TaskCall], None] | None = None,
        before: Callable[[TaskCall], Awaitable[None]] | None = None,
        bounded: bool = True,
        call_id: str = "",
    ) -> tuple[TaskResult, bytes]:
        """:meth:`execute`, returning the result too (not only its signed bytes).

        ``bounded=False``: the caller bounds concurrency itself (a backend serving
        this worker with ``concurrency`` slots), the worker's limiter is skipped.
        ``call_id``: the id the caller knows the call by (its queue entry's), for the
        result of a call that fails before its own id could be read.
        """
        keyring = self.keyring
        try:
            call = decode_call(payload, keyring, allow_pickled_code=self._allow_code)
        except SerializationError as exc:
            if exc.run_id is None or exc.task_name is None:
                raise
            return self._failure(call_id, exc.run_id, exc.task_name, exc.attempt or 1, exc, keyring)
        if self._limiter is None or not bounded:
            return await self._run(call, resources, started, before, keyring)
        async with self._limiter:
            return await self._run(call, resources, started, before, keyring)

    async def _run(
        self,
        call: TaskCall,
        resources: RunResources,
        started: Callable[[TaskCall], None] | None,
        before: Callable[[TaskCall], Awaitable[None]] | None,
        keyring: Keyring,
    ) -> tuple[TaskResult, bytes]:
        try:
            task = _task_of(call)
        except AioflowError as exc:  # TaskNotFoundError: the code is not here
            return self._encode(call, _failed(call, exc, self.worker_id), keyring)
        if task.options.handler not in self._handlers:
            missing = WorkflowDefinitionError(
                f"task {call.task_name!r} wants handler {task.options.handler!r}, but worker "
                f"{self.worker_id} only has {sorted(self._handlers)}",
                hint="Give the workers the handlers the tasks name: Worker(handlers=...) or "
                "`aioflow worker ... --handlers MODULE:NAME`.",
                run_id=call.run_id,
                task_name=call.task_name,
            )
            return self._encode(call, _failed(call, missing, self.worker_id), keyring)
        args_in = dict(call.args)
        positional = tuple(args_in.pop("*", ()))
        execution = Execution(
            0,
            task,
            call.task_name,
            call.attempt,
            call.iteration,
            positional,
            args_in,
            tuple(call.options.get("context", ())),
            call,
        )
        outcome: list[Execution] = []

        def on_started(ex: Execution) -> None:
            set_current_call(call)  # in the attempt's context: instruments read it
            if started is not None:
                started(call)
            if self._inst.task_start:
                self._inst.emit(
                    ev.TaskStarted(
                        run_id=call.run_id,
                        task_name=call.task_name,
                        attempt=call.attempt,
                        iteration=call.iteration,
                    )
                )

        runner = AttemptRunner(
            run_id=call.run_id,
            channel=resources.channel,
            view=resources.view,
            handlers=self._handlers,
            report=outcome.append,
            on_started=on_started,
            worker_id=self.worker_id,
        )
        started_at = time.time()
        refused: Exception | None = None
        with anyio.CancelScope() as scope:
            running = self._running.setdefault(call.call_id, [])
            running.append(scope)
            try:
                if before is not None:
                    try:
                        await before(call)
                    except Exception as exc:  # what the task needs is not there
                        refused = exc
                    started_at = time.time()
                if refused is None:
                    await runner.run(execution, scope)
            finally:
                running.remove(scope)
                if not running:
                    del self._running[call.call_id]
        # The reason goes with the last attempt of the call here.
        reasons = self._cancel_reasons
        reason = reasons.get(call.call_id) if running else reasons.pop(call.call_id, None)
        if scope.cancelled_caught:
            execution.cancel_reason = reason
            runner.cancelled(execution)
        elif refused is not None:
            return self._encode(call, _failed(call, refused, self.worker_id), keyring)
        result = _result_of(call, outcome[0], self.worker_id, started_at)
        if outcome[0].status is not Status.SUCCEEDED:
            self._log_outcome(call, outcome[0])
        self._emit_end(call, outcome[0])
        return self._encode(call, result, keyring)

    def _log_outcome(self, call: TaskCall, execution: Execution) -> None:
        error = execution.error
        log = self._log.info if execution.status is Status.CANCELLED else self._log.warning
        log(
            "task attempt cancelled"
            if execution.status is Status.CANCELLED
            else "task attempt failed",
            run_id=call.run_id,
            task_name=call.task_name,
            attempt=call.attempt,
            error=f"{type(error).__name__}: {error}",
            exc_info=error if execution.status is Status.FAILED else None,
        )

    def _emit_end(self, call: TaskCall, execution: Execution) -> None:
        if not self._inst.task_end:
            return
        event: ev.Event
        if execution.status is Status.SUCCEEDED:
            event = ev.TaskSucceeded(
                run_id=call.run_id,
                task_name=call.task_name,
                attempt=call.attempt,
                iteration=call.iteration,
                duration=execution.duration,
            )
        elif execution.status is Status.CANCELLED:
            event = ev.TaskCancelled(
                run_id=call.run_id, task_name=call.task_name, reason=str(execution.error)
            )
        else:
            assert execution.error is not None
            event = ev.TaskFailed(
                run_id=call.run_id,
                task_name=call.task_name,
                attempt=call.attempt,
                error=execution.error,
            )
        self._inst.emit(event)

    def _encode(
        self, call: TaskCall, result: TaskResult, keyring: Keyring
    ) -> tuple[TaskResult, bytes]:
        try:
            return result, encode_result(result, keyring)
        except SerializationError as exc:
            what = "result" if result.status == "succeeded" else "outcome"
            error = SerializationError(
                f"the {what} of task {call.task_name!r} cannot leave its process: {exc}",
                hint=exc.hint,
                run_id=call.run_id,
                task_name=call.task_name,
                attempt=call.attempt,
            )
            error.__cause__ = exc
            self._log.warning(
                "task result cannot be encoded", task_name=call.task_name, error=str(exc)
            )
            failed = _failed(call, error, self.worker_id)
            return failed, encode_result(failed, keyring)

    def _failure(
        self,
        call_id: str,
        run_id: str,
        task_name: str,
        attempt: int,
        exc: BaseException,
        keyring: Keyring,
    ) -> tuple[TaskResult, bytes]:
        result = TaskResult(
            call_id=call_id,
            run_id=run_id,
            task_name=task_name,
            attempt=attempt,
            status="failed",
            error=ErrorInfo.from_exception(exc),
            worker_id=self.worker_id,
        )
        return result, encode_result(result, keyring)

    def __repr__(self) -> str:
        return f"<Worker {self.worker_id} running={self.running}>"


# --- between executions and the wire ---------------------------------------------------


def _options_of(call: TaskCall) -> TaskOptions:
    o = call.options
    return TaskOptions(
        timeout=o.get("timeout"),
        max_cycles=o.get("max_cycles", 100),
        handler=o.get("handler", "inline"),
        queue=o.get("queue", "default"),
        priority=o.get("priority", 0),
        rate_limit=o.get("rate_limit"),
    )


_TASKS: dict[tuple[Any, ...], Task[..., Any]] = {}  # by reference and options


def _task_of(call: TaskCall) -> Task[..., Any]:
    """The task a call names (its code resolved on this side; cached for code named
    by import path, which resolves to the same function every time)."""
    ref = call.ref
    key: tuple[Any, ...] | None = None
    if not ref.pickled:
        o = call.options
        key = (  # not the task's name: executions carry their own (see _run)
            ref.path,
            o.get("timeout"),
            o.get("max_cycles", 100),
            o.get("handler", "inline"),
            o.get("queue", "default"),
            o.get("priority", 0),
            o.get("rate_limit"),
        )
        found = _TASKS.get(key)
        if found is not None:
            return found
    task = _resolve_task(call)
    if key is not None:
        if len(_TASKS) > 10_000:
            _TASKS.clear()
        _TASKS[key] = task
    return task


def _resolve_task(call: TaskCall) -> Task[..., Any]:
    code = call.ref.resolve()
    fn = code.fn if isinstance(code, Task) else code
    if not callable(fn):
        raise SerializationError(
            f"task reference {call.ref.path!r} does not name a function",
            hint="Refer to a @task or a module-level function.",
        )
    name = fn.__name__ if isinstance(getattr(fn, "__name__", None), str) else call.task_name
    return Task(fn, name=name, options=_options_of(call))


def _failed(call: TaskCall, exc: BaseException, worker_id: str) -> TaskResult:
    return TaskResult.failed(call, exc, worker_id=worker_id, finished_at=time.time())


def _result_of(
    call: TaskCall, execution: Execution, worker_id: str, started_at: float
) -> TaskResult:
    meta: dict[str, Any] = {
        "worker_id": worker_id,
        "started_at": started_at,
        "finished_at": time.time(),
        "requests": requests_to_wire(execution.requests),
    }
    if execution.status is Status.SUCCEEDED:
        return TaskResult.succeeded(call, execution.value, **meta)
    assert execution.error is not None
    error = ErrorInfo.from_exception(execution.error)
    status: Literal["cancelled", "failed"] = (
        "cancelled" if execution.status is Status.CANCELLED else "failed"
    )
    return TaskResult(
        call_id=call.call_id,
        run_id=call.run_id,
        task_name=call.task_name,
        attempt=call.attempt,
        status=status,
        error=error,
        **meta,
    )


def requests_to_wire(requests: ControlRequests | None) -> dict[str, Any] | None:
    """Control requests as plain data (tasks travel by reference, in the signed result)."""
    if requests is None:
        return None
    wire: dict[str, Any] = {}
    if requests.iterate:
        wire["iterate"] = True
        wire["data"] = requests.iteration_data
    if requests.next_tasks:
        wire["next"] = [[target, goto] for target, goto in requests.next_tasks]
    if requests.terminate is not None:
        wire["terminate"] = requests.terminate
    if requests.cancel is not None:
        wire["cancel"] = requests.cancel
    return wire


def requests_from_wire(wire: Mapping[str, Any] | None) -> ControlRequests | None:
    """The :class:`ControlRequests` of a decoded result.

    Raises:
        SerializationError: a malformed request.
    """
    if wire is None:
        return None
    requests = ControlRequests()
    if wire.get("iterate"):
        requests.iterate = True
        requests.iteration_data = wire.get("data")
    targets = wire.get("next")
    if targets is not None:
        next_tasks: list[tuple[Task[..., Any] | str, bool]] = []
        for item in targets:
            if (
                not isinstance(item, list | tuple)
                or len(item) != 2
                or not isinstance(item[0], Task | str)
                or type(item[1]) is not bool
            ):
                raise SerializationError("malformed next_task request in a task result")
            next_tasks.append((item[0], item[1]))
        requests.next_tasks = next_tasks
    for name in ("terminate", "cancel"):
        value = wire.get(name)
        if value is not None and type(value) is not str:
            raise SerializationError(f"malformed {name} request in a task result")
        setattr(requests, name, value)
    return requests
