"""Running workflows: ``run()``, ``run_sync()``, ``start()`` and the run handle."""

from __future__ import annotations

import asyncio
import functools
import os
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any, final

import anyio

from ._util import NoPublicConstructor
from .channels import Channel, MemoryChannel
from .checkpoint import Checkpointer, CheckpointMode, CheckpointStore, open_store
from .engine import DEFAULT_MAX_CONCURRENCY, Scheduler
from .errors import (
    ConfigurationError,
    RunStateError,
)
from .events import Event
from .handlers import Handler, InlineHandler
from .results import RunResult, RunStatistics, RunStatus, TaskRecord, TaskStatus
from .serialization import Keyring
from .workflow import Workflow

__all__ = [
    "RunHandle",
    "RunResult",
    "RunStatus",
    "TaskRecord",
    "TaskStatus",
    "run",
    "resume",
    "run_sync",
    "start",
]

_MEMORY_BACKENDS = (None, "memory", "memory://")


def _check_backend(backend: Any) -> None:
    if backend in _MEMORY_BACKENDS:
        return
    # Payloads leaving the process must be signed with a configured key: refuse
    # the public development key before anything else.
    Keyring.from_env().require_production(backend=str(backend))
    raise ConfigurationError(
        f"unsupported backend {backend!r}",
        hint='This version runs workflows in-process: use backend=None or "memory://".',
    )


def _prepare(
    wf: Workflow,
    *,
    inputs: Mapping[str, Any] | None,
    backend: Any,
    handlers: Mapping[str, Handler] | None,
    max_steps: int | None,
    run_id: str | None,
    max_concurrency: int | None,
    max_threads: int,
    channel: Channel | None,
    checkpoint: str | os.PathLike[str] | CheckpointStore | None = None,
    checkpoint_every: CheckpointMode = "task",
    keyring: Keyring | None = None,
    emit: Any = None,
) -> Scheduler:
    if not isinstance(wf, Workflow):
        raise ConfigurationError(
            f"expected a Workflow, got {type(wf).__name__}",
            hint="Build one with `with aioflow.workflow('name') as wf: ...` and pass wf.",
        )
    _check_backend(backend)
    checkpointer = None
    if checkpoint is not None:
        checkpointer = Checkpointer(
            open_store(checkpoint),
            every=checkpoint_every,
            keyring=keyring if keyring is not None else Keyring.from_env(),
        )
    all_handlers: dict[str, Handler] = {"inline": InlineHandler(max_threads=max_threads)}
    all_handlers.update(handlers or {})
    return Scheduler(
        wf.graph,
        workflow=wf.name,
        run_id=run_id or uuid.uuid4().hex,
        inputs=inputs or {},
        handlers=all_handlers,
        channel=channel if channel is not None else MemoryChannel(),
        max_steps=max_steps,
        max_concurrency=max_concurrency,
        emit=emit,
        checkpointer=checkpointer,
    )


def _outcome(result: RunResult) -> RunResult:
    if result.status is not RunStatus.SUCCEEDED:
        # WorkflowFailedError (or a subclass) for failed runs, WorkflowCancelledError
        # for cancelled ones; either carries .result.
        assert result.error is not None
        raise result.error
    return result


async def run(
    wf: Workflow,
    inputs: Mapping[str, Any] | None = None,
    backend: Any = None,
    handlers: Mapping[str, Handler] | None = None,
    max_steps: int | None = None,
    *,
    run_id: str | None = None,
    max_concurrency: int | None = DEFAULT_MAX_CONCURRENCY,
    max_threads: int = 40,
    channel: Channel | None = None,
    checkpoint: str | os.PathLike[str] | CheckpointStore | None = None,
    checkpoint_every: CheckpointMode = "task",
    keyring: Keyring | None = None,
) -> RunResult:
    """Run ``wf`` to the end and return its :class:`RunResult`.

    Args:
        wf: the workflow.
        inputs: run inputs; fill task parameters of the same name.
        backend: ``None`` or ``"memory://"`` (in-process).
        handlers: extra handlers by name (``{"docker": DockerHandler(...)}``).
        max_steps: bound on task executions (iterations and dynamic tasks included);
            exceeding it fails the run with ``MaxStepsExceededError``.
        run_id: the run's id (default: a new uuid4 hex).
        max_concurrency: how many tasks may run at once (default 1000; None for no
            limit); ready tasks beyond it wait, highest ``priority`` first.
        max_threads: how many sync tasks may run in worker threads at once.
        channel: the channel to use (default: a new :class:`MemoryChannel`).
        checkpoint: a file path (or :class:`~aioflow.checkpoint.CheckpointStore`) to
            snapshot the run to, for :func:`resume`.
        checkpoint_every: ``"task"`` (after finished tasks, and at the end) or
            ``"manual"`` (only on ``await ctx.checkpoint()``).
        keyring: signs checkpoints (default: ``AIOFLOW_SECRET_KEY`` from the
            environment, else the public development key).

    Raises:
        WorkflowDefinitionError: the workflow is invalid; nothing ran.
        WorkflowFailedError: a task (or group, or a limit) failed the run; ``.result``
            is the partial result, ``__cause__`` the task's own exception.
        WorkflowCancelledError: the run was cancelled.
    """
    scheduler = _prepare(
        wf,
        inputs=inputs,
        backend=backend,
        handlers=handlers,
        max_steps=max_steps,
        run_id=run_id,
        max_concurrency=max_concurrency,
        max_threads=max_threads,
        channel=channel,
        checkpoint=checkpoint,
        checkpoint_every=checkpoint_every,
        keyring=keyring,
    )
    return _outcome(await scheduler.execute())


async def resume(
    source: str | os.PathLike[str] | CheckpointStore,
    wf: Workflow,
    handlers: Mapping[str, Handler] | None = None,
    max_steps: int | None = None,
    *,
    max_concurrency: int | None = DEFAULT_MAX_CONCURRENCY,
    max_threads: int = 40,
    channel: Channel | None = None,
    checkpoint: str | os.PathLike[str] | CheckpointStore | None = None,
    checkpoint_every: CheckpointMode = "task",
    keyring: Keyring | None = None,
) -> RunResult:
    """Continue the run checkpointed at ``source``; finished tasks are not run again.

    The run keeps its run id and inputs. Tasks that were pending, running, or had
    failed the run start again from their first attempt. The resumed run goes on
    checkpointing to ``checkpoint`` (default: ``source``).

    Raises:
        CheckpointError: missing, corrupt or tampered checkpoint (left untouched), or
            one written by another workflow.
        WorkflowFailedError, WorkflowCancelledError: as :func:`run`.
    """
    store = open_store(source)
    keys = keyring if keyring is not None else Keyring.from_env()
    snapshot = await Checkpointer(store, keyring=keys).load()
    scheduler = _prepare(
        wf,
        inputs=snapshot["inputs"],
        backend=None,
        handlers=handlers,
        max_steps=max_steps,
        run_id=snapshot["run_id"],
        max_concurrency=max_concurrency,
        max_threads=max_threads,
        channel=channel,
        checkpoint=checkpoint if checkpoint is not None else store,
        checkpoint_every=checkpoint_every,
        keyring=keys,
    )
    scheduler.restore(snapshot)
    return _outcome(await scheduler.execute())


def run_sync(wf: Workflow, inputs: Mapping[str, Any] | None = None, **kwargs: Any) -> RunResult:
    """:func:`run` from synchronous code (starts and closes an event loop).

    Raises:
        RunStateError: called from inside a running event loop (use ``await run()``).
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return anyio.run(functools.partial(run, wf, inputs, **kwargs))
    raise RunStateError(
        "run_sync() was called from a running event loop",
        hint="Inside async code use `await aioflow.run(wf)`.",
    )


@final
class RunHandle(metaclass=NoPublicConstructor):
    """A run in progress, from ``async with aioflow.start(wf) as handle``."""

    def __init__(self) -> None:
        self._scheduler: Scheduler | None = None
        self._history: list[Event] = []
        self._wakeup: anyio.Event | None = None
        self._done = anyio.Event()
        self._result: RunResult | None = None
        self._retrieved = False

    @property
    def run_id(self) -> str:
        assert self._scheduler is not None
        return self._scheduler.run_id

    @property
    def status(self) -> RunStatus:
        """``"running"`` until the run ends, then its final status."""
        assert self._scheduler is not None
        return self._scheduler.status

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def statistics(self) -> RunStatistics:
        """A snapshot of the run's progress (waiting, queued, running, finished counts)."""
        assert self._scheduler is not None
        return self._scheduler.statistics()

    def _on_event(self, event: Event) -> None:
        self._history.append(event)
        if self._wakeup is not None:
            self._wakeup.set()
            self._wakeup = None

    async def _drive(self) -> None:
        assert self._scheduler is not None
        try:
            self._result = await self._scheduler.execute()
        finally:
            self._done.set()
            if self._wakeup is not None:
                self._wakeup.set()
                self._wakeup = None

    def events(self) -> AsyncIterator[Event]:
        """The run's events, from its start; the iteration ends when the run ends."""
        return _EventIterator(self)

    async def result(self) -> RunResult:
        """Wait for the end of the run; its result (raises like :func:`run`)."""
        await self._done.wait()
        self._retrieved = True
        if self._result is None:
            raise RunStateError("the run ended without a result (its caller was cancelled)")
        return _outcome(self._result)

    async def cancel(self, reason: str | None = None) -> None:
        """Cancel the run; returns once nothing of the run is running any more."""
        assert self._scheduler is not None
        self._scheduler.cancel(reason)
        await self._done.wait()

    def cancel_task(self, name: str, reason: str | None = None) -> bool:
        """Cancel one running task (it fails with ``TaskCancelledError``); True if it ran.

        Raises:
            UnknownTaskError: the run has no task ``name``.
        """
        assert self._scheduler is not None
        return self._scheduler.cancel_task(name, reason)

    def __repr__(self) -> str:
        return f"<RunHandle run_id={self.run_id} status={self.status.value}>"


class _EventIterator:
    """Reads the handle's event history, then waits for new events; ends with the run."""

    __slots__ = ("_handle", "_index")

    def __init__(self, handle: RunHandle) -> None:
        self._handle = handle
        self._index = 0

    def __aiter__(self) -> _EventIterator:
        return self

    async def __anext__(self) -> Event:
        handle = self._handle
        while True:
            if self._index < len(handle._history):
                event = handle._history[self._index]
                self._index += 1
                return event
            if handle._done.is_set():
                raise StopAsyncIteration
            if handle._wakeup is None:
                handle._wakeup = anyio.Event()
            await handle._wakeup.wait()


@asynccontextmanager
async def start(
    wf: Workflow,
    inputs: Mapping[str, Any] | None = None,
    backend: Any = None,
    handlers: Mapping[str, Handler] | None = None,
    max_steps: int | None = None,
    *,
    run_id: str | None = None,
    max_concurrency: int | None = DEFAULT_MAX_CONCURRENCY,
    max_threads: int = 40,
    channel: Channel | None = None,
    checkpoint: str | os.PathLike[str] | CheckpointStore | None = None,
    checkpoint_every: CheckpointMode = "task",
    keyring: Keyring | None = None,
) -> AsyncIterator[RunHandle]:
    """Start ``wf`` in the background: ``async with aioflow.start(wf) as handle:``.

    Takes the same arguments as :func:`run`. Leaving the block normally waits for the
    run to end (and raises its ``WorkflowFailedError`` if it failed and nobody called
    ``handle.result()``); leaving it with an exception cancels the run first.

    Raises:
        WorkflowDefinitionError: the workflow is invalid; nothing ran.
    """
    handle = RunHandle._create()
    handle._scheduler = _prepare(
        wf,
        inputs=inputs,
        backend=backend,
        handlers=handlers,
        max_steps=max_steps,
        run_id=run_id,
        max_concurrency=max_concurrency,
        max_threads=max_threads,
        channel=channel,
        checkpoint=checkpoint,
        checkpoint_every=checkpoint_every,
        keyring=keyring,
        emit=handle._on_event,
    )
    error: BaseException | None = None
    async with anyio.create_task_group() as tg:
        tg.start_soon(handle._drive)
        try:
            yield handle
        except BaseException as exc:
            # Cancel the run, and re-raise the block's own exception once the task
            # group is closed, so it is not wrapped in an exception group.
            error = exc
            handle._scheduler.cancel("the start() block raised")
    if error is not None:
        raise error
    result = handle._result
    if not handle._retrieved and result is not None and result.status is RunStatus.FAILED:
        _outcome(result)  # a failure nobody looked at must not end silently
