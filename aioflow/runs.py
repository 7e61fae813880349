"""Running workflows: ``run()``, ``run_sync()``, ``start()`` and the run handle."""

from __future__ import annotations

import asyncio
import difflib
import functools
import os
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any, Literal, TypedDict, Unpack, final
from urllib.parse import quote

import anyio

from ._util import NoPublicConstructor
from .backends import Backend, MemoryBackend, journal_url, open_backend
from .backends.base import DEFAULT_MAX_CONCURRENCY
from .channels import Channel, MemoryChannel
from .engine import Scheduler
from .errors import CheckpointError, ConfigurationError, RunStateError
from .events import Event
from .handlers import Handler, InlineHandler
from .instruments import Instruments
from .journal import Journal, load_journal
from .plan import check_inputs
from .results import RunResult, RunStatistics, RunStatus, TaskRecord, TaskStatus
from .serialization import Keyring
from .stores import RunStore, open_run_store
from .workflow import Workflow

__all__ = [
    "RunHandle",
    "RunOptions",
    "RunResult",
    "RunStatus",
    "TaskRecord",
    "TaskStatus",
    "run",
    "resume",
    "run_sync",
    "start",
]

_DEFAULT_BACKEND = MemoryBackend()


CheckpointMode = Literal["task", "background", "manual"]


class RunOptions(TypedDict, total=False):
    """The keyword options of :func:`run`, :func:`start` and :func:`resume`.

    Attributes:
        run_id: the run's id (default: a new uuid4 hex).
        max_concurrency: how many tasks may run at once (default 1000; None for no
            limit); ready tasks beyond it wait, highest ``priority`` first.
        max_threads: how many sync tasks may run in worker threads at once (40).
        channel: the channel to use (default: a new :class:`MemoryChannel`).
        checkpoint: journal the run to this store, for :func:`resume`: a store URL
            (``"sqlite:///path/runs.db"``; many runs may share one database), a path
            (a SQLite database file), or a :class:`~aioflow.stores.RunStore`. Runs on
            a distributed backend (Redis) are journaled to it by default;
            ``checkpoint=False`` turns that off.
        checkpoint_every: ``"task"`` (the default: a task's record is committed
            before anything that follows it starts), ``"background"`` (commits run
            behind the run, one at a time: much faster for chains; a crash may run
            again a task whose successors had started) or ``"manual"`` (only on
            ``await ctx.checkpoint()``, and at the end).
        keyring: signs checkpoints and payloads (default: ``AIOFLOW_SECRET_KEY`` from
            the environment, else the local per-user key).
        instruments: objects with hooks (``on_task_end``...) that observe the run
            (see :mod:`aioflow.instruments`).
        strict_inputs: refuse run inputs that no task has a parameter for (default
            True); False allows them.
    """

    run_id: str | None
    max_concurrency: int | None
    max_threads: int
    channel: Channel | None
    checkpoint: str | os.PathLike[str] | RunStore | Literal[False] | None
    checkpoint_every: CheckpointMode
    keyring: Keyring | None
    instruments: Sequence[object]
    strict_inputs: bool


_OPTION_NAMES = frozenset(RunOptions.__annotations__)


def _option_error(name: str) -> ConfigurationError:
    close = difflib.get_close_matches(name, sorted(_OPTION_NAMES), n=1)
    guess = f"did you mean {close[0]!r}? " if close else ""
    return ConfigurationError(
        f"unknown run option {name!r}",
        hint=f"{guess}Run options are: {', '.join(sorted(_OPTION_NAMES))}.",
    )


def _resolve_backend(backend: str | Backend | None) -> tuple[Backend, bool]:
    """The backend to use, and whether the run owns it (opens and closes it)."""
    if backend is None:
        return _DEFAULT_BACKEND, False
    if isinstance(backend, Backend):
        return backend, False
    if isinstance(backend, str):
        return open_backend(backend), True
    raise ConfigurationError(
        f"backend= takes a URL or a Backend, got {type(backend).__name__}",
        hint='For example backend="memory://" or backend="memory://?serialize=true".',
    )


def _check_int(name: str, value: object, *, optional: bool) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        allowed = "an int >= 1 or None" if optional else "an int >= 1"
        raise ConfigurationError(f"{name} must be {allowed}, got {value!r}")


def journal_store(target: object) -> tuple[RunStore, bool]:
    """The run store ``checkpoint=`` names, and whether the run owns (opens, closes) it.

    A store URL (``sqlite:///path/runs.db``, ``memory://``), a plain path (a SQLite
    database file), or a :class:`~aioflow.stores.RunStore` (the caller's).

    Raises:
        ConfigurationError: anything else, or a bad URL.
    """
    if isinstance(target, RunStore):
        return target, False
    if isinstance(target, str | os.PathLike):
        text = os.fspath(target)
        if "://" not in text:
            text = "sqlite:///" + quote(os.path.abspath(text).lstrip("/"))
        return open_run_store(text), True
    raise ConfigurationError(
        f"checkpoint= takes a store URL, a path or a RunStore, got {type(target).__name__}",
        hint='For example aioflow.run(wf, checkpoint="sqlite:///path/runs.db").',
    )


class _Prepared:
    """A scheduler ready to run, and what it runs with that the run owns."""

    __slots__ = ("owned", "scheduler")

    def __init__(self, scheduler: Scheduler, owned: list[Any]) -> None:
        self.scheduler = scheduler
        self.owned = owned  # a backend and a store opened by the run, closed after it

    async def execute(self) -> RunResult:
        if not self.owned:
            return await self.scheduler.execute()
        async with AsyncExitStack() as stack:
            for resource in self.owned:
                await stack.enter_async_context(resource)
            return await self.scheduler.execute()


def _prepare(
    wf: Workflow,
    inputs: Mapping[str, Any] | None,
    backend: str | Backend | None,
    handlers: Mapping[str, Handler] | None,
    max_steps: int | None,
    options: Mapping[str, Any],
    *,
    extra: Sequence[object] = (),
) -> _Prepared:
    """Validate every argument, then plan the run (nothing runs before all is checked)."""
    if not isinstance(wf, Workflow):
        raise ConfigurationError(
            f"expected a Workflow, got {type(wf).__name__}",
            hint="Build one with `with aioflow.workflow('name') as wf: ...` and pass wf.",
        )
    for name in options:
        if name not in _OPTION_NAMES:
            raise _option_error(name)
    if inputs is not None and not isinstance(inputs, Mapping):
        raise ConfigurationError(
            f"inputs must be a mapping of name -> value, got {type(inputs).__name__}",
            hint="For example aioflow.run(wf, inputs={'n': 3}).",
        )
    chosen, owns_backend = _resolve_backend(backend)  # an unknown scheme first, before keys
    _check_int("max_steps", max_steps, optional=True)
    max_concurrency = options.get("max_concurrency", DEFAULT_MAX_CONCURRENCY)
    _check_int("max_concurrency", max_concurrency, optional=True)
    channel = options.get("channel")
    if channel is not None and not isinstance(channel, Channel):
        raise ConfigurationError(f"channel must be a Channel, got {type(channel).__name__}")
    if handlers is not None and (
        not isinstance(handlers, Mapping)
        or not all(isinstance(h, Handler) for h in handlers.values())
    ):
        raise ConfigurationError(
            "handlers must map names to Handler instances",
            hint='For example handlers={"box": DockerHandler("image:tag")}.',
        )
    instruments = options.get("instruments", ())
    if isinstance(instruments, str | bytes) or not isinstance(instruments, Iterable):
        raise ConfigurationError("instruments must be a list of objects with hooks")
    run_id = options.get("run_id")
    if run_id is not None and (not isinstance(run_id, str) or not run_id):
        raise ConfigurationError(f"run_id must be a non-empty str, got {run_id!r}")
    every = options.get("checkpoint_every", "task")
    if every not in ("task", "background", "manual"):
        raise ConfigurationError(
            f"checkpoint_every must be 'task', 'background' or 'manual', got {every!r}"
        )
    keyring = options.get("keyring")
    checkpoint = options.get("checkpoint")
    owned: list[Any] = [chosen] if owns_backend else []
    store: RunStore | None = None
    if checkpoint is None:
        # A distributed backend journals its runs by default (resume after the
        # coordinator died); checkpoint=False turns that off.
        store = chosen.run_store()  # the backend's: it opens and closes it
    elif checkpoint is not False:
        store, owns_store = journal_store(checkpoint)
        if owns_store:
            owned.append(store)
    if store is not None or (keyring is None and chosen.remote):
        keyring = keyring if keyring is not None else Keyring.from_env()
    if chosen.remote:
        assert keyring is not None
        keyring.require_production(backend=chosen.describe())
    run_id = run_id or uuid.uuid4().hex
    if channel is None and keyring is not None:
        channel = chosen.run_channel(run_id, keyring)
    elif channel is not None and chosen.remote and not channel.durable:
        raise ConfigurationError(
            f"channel= is a {type(channel).__name__}, which the workers of the "
            f"{chosen.describe()} backend cannot reach",
            hint="Leave channel= out: a distributed run gets a channel in its backend "
            "(a RedisChannel on Redis).",
        )
    all_handlers: dict[str, Handler] = {
        "inline": InlineHandler(max_threads=options.get("max_threads", 40))
    }
    all_handlers.update(handlers or {})
    run_inputs = dict(inputs or {})
    check_inputs(wf.graph.tasks, run_inputs, strict=options.get("strict_inputs", True))
    scheduler = Scheduler(
        wf.graph,
        workflow=wf.name,
        run_id=run_id,
        inputs=run_inputs,
        handlers=all_handlers,
        channel=channel if channel is not None else MemoryChannel(),
        backend=chosen,
        max_steps=max_steps,
        max_concurrency=max_concurrency,
        instruments=Instruments(
            [*instruments, *extra, *chosen.run_instruments(run_id, wf.name)], run_id=run_id
        ),
        journal=None if store is None else Journal(store, keyring or Keyring.from_env(), run_id),
        journal_every=every,
        keyring=keyring,
    )
    return _Prepared(scheduler, owned)


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
    backend: str | Backend | None = None,
    handlers: Mapping[str, Handler] | None = None,
    max_steps: int | None = None,
    **options: Unpack[RunOptions],
) -> RunResult:
    """Run ``wf`` to the end and return its :class:`RunResult`.

    Args:
        wf: the workflow.
        inputs: run inputs; fill task parameters of the same name.
        backend: where tasks execute: ``None`` or ``"memory://"`` (in-process),
            ``"memory://?serialize=true"`` (in-process through the full wire path),
            or a :class:`~aioflow.backends.Backend`.
        handlers: extra handlers by name (``{"docker": DockerHandler(...)}``).
        max_steps: bound on task executions (iterations and dynamic tasks included);
            exceeding it fails the run with ``MaxStepsExceededError``.
        options: see :class:`RunOptions` (``run_id``, ``max_concurrency``,
            ``max_threads``, ``channel``, ``checkpoint``, ``checkpoint_every``,
            ``keyring``, ``instruments``, ``strict_inputs``).

    Raises:
        ConfigurationError: an invalid option or backend; nothing ran.
        WorkflowDefinitionError: the workflow is invalid; nothing ran.
        WorkflowFailedError: a task (or group, or a limit) failed the run; ``.result``
            is the partial result, ``__cause__`` the task's own exception.
        WorkflowCancelledError: the run was cancelled.
    """
    prepared = _prepare(wf, inputs, backend, handlers, max_steps, options)
    if not prepared.owned:  # one coroutine frame less on the scheduler's stack
        return _outcome(await prepared.scheduler.execute())
    return _outcome(await prepared.execute())


async def resume(
    source: str | os.PathLike[str] | RunStore,
    wf: Workflow,
    handlers: Mapping[str, Handler] | None = None,
    max_steps: int | None = None,
    backend: str | Backend | None = None,
    **options: Unpack[RunOptions],
) -> RunResult:
    """Continue the journaled run ``run_id`` of ``source``; finished tasks do not run again.

    ``source`` is the store the run was journaled to (``checkpoint=`` of the run):
    a store URL (``"sqlite:///path/runs.db"``), a path, or a ``RunStore``. Without
    ``run_id``, the store must hold exactly one unfinished run of ``wf`` (one whose
    process died; else one that failed or was cancelled). The run keeps its run id
    and inputs and goes on journaling to ``source``. Tasks that were running when the
    process died run again (at-least-once); a run that failed or was cancelled goes
    on from where it stopped, the task that failed it from its first attempt. Other
    options as :func:`run`.

    A run on a distributed backend is journaled there: ``resume("redis://host/0",
    wf, run_id=...)`` reads its journal from that Redis and dispatches its tasks to
    that Redis's workers again (``backend=`` says otherwise; a ``RedisBackend`` may
    be given as ``source`` too). A run that was in-process resumes in-process.

    Raises:
        CheckpointError: no such run (or several, without ``run_id``), a run that
            succeeded, a journal written by another workflow, or one that is
            corrupt or tampered with (left as it is).
        WorkflowFailedError, WorkflowCancelledError: as :func:`run`.
    """
    if isinstance(source, Backend):
        backend = source if backend is None else backend
        found = source.run_store()
        if found is None:
            raise ConfigurationError(
                f"the {source.describe()} backend keeps no journal to resume from",
                hint="Pass the store the run was journaled to (its checkpoint=).",
            )
        store, owns_store = found, False  # the backend's
    else:
        store, owns_store = journal_store(
            journal_url(source) if isinstance(source, str) and _is_redis_url(source) else source
        )
    async with AsyncExitStack() as stack:
        if owns_store:
            await stack.enter_async_context(store)
        keyring = options.get("keyring")
        keys = keyring if keyring is not None else Keyring.from_env()
        run_id = options.pop("run_id", None) or await _unfinished_run(store, wf.name)
        recorded = await load_journal(store, run_id, keys)
        if recorded.info.status == "succeeded":
            raise CheckpointError(
                f"run {run_id} succeeded: there is nothing left to resume",
                hint="Start a new run with aioflow.run(); `aioflow runs` lists the store's runs.",
                run_id=run_id,
            )
        if backend is None and recorded.backend is not None:
            # The run's tasks went to workers: they go there again.
            if not _is_redis_url(source) or recorded.backend not in ("redis", "rediss"):
                raise ConfigurationError(
                    f"run {run_id} ran its tasks on a {recorded.backend}:// backend",
                    hint="Say where they run now: resume(..., backend=URL) or "
                    "`aioflow resume ... --backend URL`.",
                    run_id=run_id,
                )
            backend = os.fspath(source)  # type: ignore[arg-type]
        chosen, owns_backend = _resolve_backend(backend)
        if owns_backend:
            await stack.enter_async_context(chosen)
        settings: dict[str, Any] = {**options, "keyring": keys, "run_id": run_id}
        settings["checkpoint"] = store  # the run's own store, opened here
        settings["strict_inputs"] = False  # the inputs are the run's own
        prepared = _prepare(wf, recorded.inputs, chosen, handlers, max_steps, settings)
        prepared.scheduler.replay(recorded)  # checks the workflow before anything changes
        await store.reopen_run(run_id)
        return _outcome(await prepared.execute())


def _is_redis_url(source: object) -> bool:
    return isinstance(source, str) and source.partition("://")[0].lower() in ("redis", "rediss")


async def _unfinished_run(store: RunStore, workflow: str) -> str:
    runs = await store.list_runs(workflow=workflow, limit=None)
    for wanted in ({"running"}, {"failed", "cancelled"}):
        found = [info for info in runs if info.status in wanted]
        if len(found) == 1:
            return found[0].run_id
        if found:
            listed = ", ".join(f"{info.run_id} ({info.status})" for info in found[:5])
            raise CheckpointError(
                f"{store.describe()} holds {len(found)} unfinished runs of workflow "
                f"{workflow!r}: {listed}{', ...' if len(found) > 5 else ''}",
                hint="Say which: aioflow.resume(store, wf, run_id=...) or "
                "`aioflow resume --run-id RUN_ID`; `aioflow runs` lists them.",
            )
    raise CheckpointError(
        f"{store.describe()} holds no unfinished run of workflow {workflow!r}",
        hint="Resume a run that was started with checkpoint= pointing at this store; "
        "`aioflow runs --store URL` lists what it holds.",
    )


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
        self._failed_to_start: Exception | None = None
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

    async def _drive(self, prepared: _Prepared) -> None:
        try:
            self._result = await prepared.execute()
        except Exception as exc:  # the run could not start (its store refused it...)
            self._failed_to_start = exc
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
        if self._failed_to_start is not None:
            raise self._failed_to_start
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
    backend: str | Backend | None = None,
    handlers: Mapping[str, Handler] | None = None,
    max_steps: int | None = None,
    **options: Unpack[RunOptions],
) -> AsyncIterator[RunHandle]:
    """Start ``wf`` in the background: ``async with aioflow.start(wf) as handle:``.

    Takes the same arguments as :func:`run`. Leaving the block normally waits for the
    run to end (and raises its ``WorkflowFailedError`` if it failed and nobody called
    ``handle.result()``); leaving it with an exception cancels the run first.

    Raises:
        ConfigurationError, WorkflowDefinitionError: invalid options or workflow;
            nothing ran.
    """
    handle = RunHandle._create()
    prepared = _prepare(
        wf, inputs, backend, handlers, max_steps, options, extra=(_Recorder(handle),)
    )
    handle._scheduler = prepared.scheduler
    error: BaseException | None = None
    async with anyio.create_task_group() as tg:
        tg.start_soon(handle._drive, prepared)
        try:
            yield handle
        except BaseException as exc:
            # Cancel the run, and re-raise the block's own exception once the task
            # group is closed, so it is not wrapped in an exception group.
            error = exc
            prepared.scheduler.cancel("the start() block raised")
    if error is not None:
        raise error
    if handle._failed_to_start is not None and not handle._retrieved:
        raise handle._failed_to_start  # itself, not wrapped in an exception group
    result = handle._result
    if not handle._retrieved and result is not None and result.status is RunStatus.FAILED:
        _outcome(result)  # a failure nobody looked at must not end silently


class _Recorder:
    """The instrument that feeds a handle's event history."""

    __slots__ = ("_handle",)

    def __init__(self, handle: RunHandle) -> None:
        self._handle = handle

    def on_event(self, event: Event) -> None:
        self._handle._on_event(event)
