"""The backend contract: where task executions happen, and how their outcomes come back.

The scheduler (:mod:`aioflow.engine`) owns every decision of a run: join counting,
policies, retries and their backoff, cycles, dynamic tasks, steps. A backend owns
none of it. It only carries *executions* (one per task attempt) to where they run
and their outcomes back:

* :class:`Backend` is opened once (``async with backend:``) and serves any number
  of runs, each through a :class:`Session` (``async with backend.session(link)``).
* :meth:`Session.submit` hands over a batch of :class:`Execution` s; each comes
  back exactly once, in a batch from :meth:`Session.receive`, its outcome filled in
  (:class:`Status`), or in the list :meth:`Session.halt` returns if it never
  started.
* :meth:`Session.cancel` cancels one execution; :meth:`Session.halt` stops the
  whole run's executions (queued ones never start, running ones are cancelled).

Template method (as saq's ``queue/base.py``): the public methods of
:class:`Session` validate, count and log once; a backend implements only the
primitives ``_submit``, ``_cancel`` and ``_halt``.

Concurrency: a session is used by one scheduler coroutine only; executions are
messages. Whoever holds an execution owns it: the scheduler fills the request,
the backend's executor fills the outcome, then hands it back. Nobody writes an
execution it does not hold, and executors never write scheduler state (R5).
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, Self

from ..errors import ConfigurationError
from ..observability.logging import get_logger

if TYPE_CHECKING:
    from ..channels import Channel
    from ..context import ControlRequests, RunAccess
    from ..handlers import Handler
    from ..serialization import Keyring
    from ..stores import RunStore
    from ..task import Task

__all__ = [
    "DEFAULT_MAX_CONCURRENCY",
    "Backend",
    "Execution",
    "RunLink",
    "Session",
    "SessionStatistics",
    "Status",
]


#: How many executions of one run may run at once, unless the run says otherwise.
DEFAULT_MAX_CONCURRENCY = 1000


class Status(enum.IntEnum):
    """How an execution ended."""

    PENDING = 0  # not finished (being executed, or queued)
    SUCCEEDED = 1  # ``value`` holds the result
    FAILED = 2  # ``error`` holds the exception (a timeout is a TaskTimeoutError)
    CANCELLED = 3  # cancelled while running; ``error`` may say why (``cancel_reason``)
    NOT_STARTED = 4  # dropped by ``halt()`` before it started


class Execution:
    """One attempt of one task: the request (set by the scheduler) and its outcome.

    The in-process form of a :class:`~aioflow.serialization.TaskCall` and its
    :class:`~aioflow.serialization.TaskResult`: a backend that crosses a process
    boundary encodes the request as a ``TaskCall`` and decodes the ``TaskResult``
    into the outcome fields. In-process, values are passed by reference.

    Request: ``call_id`` (unique in the run), ``task`` (its options give the
    timeout, priority, queue and handler), ``name``, ``attempt``, ``iteration``,
    ``args``/``kwargs`` (filled arguments), ``context_params`` (the parameters, by
    name or position, that receive the attempt's TaskContext), ``token`` (the
    scheduler's, opaque to backends).

    Outcome (set when it comes back): ``status``, ``value``, ``error``,
    ``requests`` (control requests the task made), ``started`` (its code began),
    ``duration`` (wall time of this attempt), ``worker_id``; ``cancel_reason`` is
    set by whoever cancels it, ``handle`` is the backend's own bookkeeping.
    """

    __slots__ = (
        "args",
        "attempt",
        "call_id",
        "cancel_reason",
        "context_params",
        "duration",
        "error",
        "handle",
        "iteration",
        "kwargs",
        "name",
        "requests",
        "started",
        "status",
        "task",
        "token",
        "value",
        "worker_id",
    )

    def __init__(
        self,
        call_id: int,
        task: Task[..., Any],
        name: str,
        attempt: int,
        iteration: int,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        context_params: tuple[str | int, ...],
        token: Any = None,
    ) -> None:
        self.call_id = call_id
        self.task = task
        self.name = name
        self.attempt = attempt
        self.iteration = iteration
        self.args = args
        self.kwargs = kwargs
        self.context_params = context_params
        self.token = token
        self.status = Status.PENDING
        self.started = False
        self.cancel_reason: str | None = None
        self.handle: Any = None
        self.worker_id: str | None = None
        # Set with the outcome, on every path (see aioflow._execution):
        self.value: Any
        self.error: BaseException | None
        self.requests: ControlRequests | None
        self.duration: float

    def end_unrun(self, status: Status, error: BaseException | None = None) -> None:
        """Fill the outcome of an execution that ends without its code running
        (dropped, cancelled while queued, refused on the way out)."""
        self.status = status
        self.value = None
        self.error = error
        self.requests = None
        self.duration = 0.0

    def __repr__(self) -> str:
        return (
            f"<Execution {self.name} call={self.call_id} attempt={self.attempt} "
            f"status={self.status.name}>"
        )


@dataclass(frozen=True, slots=True)
class RunLink:
    """What a backend session knows of its run (given by the scheduler).

    Attributes:
        run_id, workflow: the run's ids.
        channel: the run's channel (in-process backends hand it to task contexts).
        view: read access to the run's results and inputs (``ctx.result``).
        handlers: the run's handlers by name.
        on_started: called with each execution when it starts executing (emits
            ``TaskStarted``); only reads the execution; None when nobody listens.
        save_checkpoint: ``ctx.checkpoint()`` of in-process executions, or None.
        max_concurrency: how many of the run's executions may run at once (None: no
            limit); beyond it they wait, highest priority first.
        debug: whether debug logging is on (hot paths skip it otherwise).
        keyring: the run's keyring (signs what crosses a process), or None for the
            backend's own.
        cancel: cancels the whole run (a backend calls it when the run is cancelled
            from elsewhere, e.g. ``aioflow cancel RUN_ID``); None when not offered.
        remote_starts: whether ``on_started`` wants executions that run in other
            processes too (False: only local ones; a distributed backend need not
            have its workers announce starts).
    """

    run_id: str
    workflow: str
    channel: Channel
    view: RunAccess
    handlers: Mapping[str, Handler]
    on_started: Callable[[Execution], None] | None = None
    save_checkpoint: Callable[[], Any] | None = None
    max_concurrency: int | None = DEFAULT_MAX_CONCURRENCY
    debug: bool = False
    keyring: Keyring | None = None
    cancel: Callable[[str], None] | None = None
    remote_starts: bool = True


@dataclass(frozen=True, slots=True)
class SessionStatistics:
    """Executions a session holds: waiting for a slot, and executing now."""

    queued: int
    running: int


class Session(ABC):
    """One run's link to a backend. Used from the run's scheduler coroutine only.

    Guarantees every implementation keeps:

    * each submitted execution comes back exactly once: in a batch from
      :meth:`receive` / :meth:`receive_nowait` (its outcome set) or in the list
      :meth:`halt` returns (``NOT_STARTED``);
    * executions of higher ``priority`` start first when slots are scarce, then in
      submission order;
    * after the session's ``async with`` block is left, nothing it started is
      still running (threads and remote executions included, as far as the
      backend can know).
    """

    def __init__(self, link: RunLink) -> None:
        self.link = link
        self.submitted = 0
        self._log = get_logger("backend", run_id=link.run_id)

    # --- the public face: validate, count, log once ----------------------------------

    def submit(self, executions: Sequence[Execution]) -> None:
        """Hand over a batch of executions (never blocks; the backend queues them)."""
        if executions:
            self.submitted += len(executions)
            self._submit(executions)

    def cancel(self, execution: Execution, reason: str) -> bool:
        """Cancel one execution: True if it was queued or running here.

        It still comes back through :meth:`receive` (status ``CANCELLED``, or
        ``NOT_STARTED`` when it never started).
        """
        if execution.status is not Status.PENDING:
            return False
        execution.cancel_reason = reason
        return self._cancel(execution)

    def group_finished(self, name: str, value: Any) -> None:
        """Group ``name`` succeeded with ``value`` (its members' results), before any
        of its successors is submitted. A backend whose tasks read results elsewhere
        (``ctx.result`` on a worker) makes it readable there; by default nothing."""
        return None

    def halt(self) -> list[Execution]:
        """Stop the run's work: nothing queued starts any more; those are returned.

        Running executions are not cancelled by this call alone: the scheduler
        cancels the session's scope (leaving its ``async with`` block does).
        """
        dropped = self._halt()
        for execution in dropped:
            execution.end_unrun(Status.NOT_STARTED)
        if dropped:
            self._log.debug("queued executions dropped", count=len(dropped))
        return dropped

    @abstractmethod
    async def receive(self) -> list[Execution]:
        """Wait until an execution has finished; return every one finished (a batch).

        One wake-up of the scheduler handles a whole burst of completions.
        """

    @abstractmethod
    def receive_nowait(self) -> list[Execution]:
        """Every execution finished by now (maybe none); never waits."""

    @abstractmethod
    def statistics(self) -> SessionStatistics:
        """How many submitted executions wait for a slot, and how many execute now."""

    # --- the primitives --------------------------------------------------------------

    @abstractmethod
    def _submit(self, executions: Sequence[Execution]) -> None:
        """Queue ``executions``; they start when a slot is free."""

    @abstractmethod
    def _cancel(self, execution: Execution) -> bool:
        """Cancel ``execution`` (queued: drop it; running: cancel its scope)."""

    @abstractmethod
    def _halt(self) -> list[Execution]:
        """Drop every queued execution and refuse new ones; return those dropped."""


class Backend(ABC):
    """Where task executions happen. ``async with backend:`` opens and closes it.

    A backend is made once and may serve many runs (concurrently, too); each run
    opens its own :meth:`session`. Backends never import the engine.
    """

    #: URL schemes this backend serves (``"memory"``, ``"redis"``...).
    schemes: ClassVar[tuple[str, ...]] = ()
    #: True when executions cross a serialization boundary (payloads are signed
    #: with the run's keyring, so it must not be the local per-user key).
    remote: ClassVar[bool] = False

    async def open(self) -> None:  # noqa: B027 - optional hook
        """Connect (pools, clients). Called by ``async with``; must be idempotent."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release what :meth:`open` took. Idempotent."""

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    @abstractmethod
    def session(self, link: RunLink) -> AbstractAsyncContextManager[Session]:
        """A session for one run: ``async with backend.session(link) as session:``.

        Leaving the block cancels whatever of the run still executes here and
        waits until it has stopped.
        """

    def run_channel(self, run_id: str, keyring: Keyring) -> Channel | None:
        """The channel a run on this backend uses unless it is given one (None: the
        run makes a :class:`~aioflow.channels.MemoryChannel`). A backend whose tasks
        run in other processes returns a channel they all reach."""
        return None

    def run_store(self) -> RunStore | None:
        """The run store that journals runs on this backend unless ``checkpoint=``
        says otherwise (None: runs are not journaled by default). The backend owns
        it: it opens on first use and closes with the backend."""
        return None

    def run_instruments(self, run_id: str, workflow: str) -> Sequence[object]:
        """Instruments the backend adds to each run it serves (see
        :mod:`aioflow.instruments`), called once per run before it starts (default:
        none). Their hooks are sync and quick, like any instrument's; what they must
        do asynchronously runs in a task group the backend owns, and the backend
        waits for it before it closes. The Redis backend publishes the run's progress
        this way (``aioflow watch``)."""
        return ()

    async def serve(self, worker: Any, *, queues: Sequence[str], grace: float) -> None:
        """Feed ``worker`` (an :class:`aioflow.Worker`) the executions of ``queues``
        until :meth:`~aioflow.Worker.shutdown`; then let running ones finish within
        ``grace`` seconds and hand the rest back. Backends whose executions run in
        the caller's process have no workers to serve."""
        raise ConfigurationError(
            f"the {self.describe()} backend runs tasks in the caller's process: it "
            "has no queue for a worker to serve",
            hint="Start workers on a distributed backend, e.g. redis://host:6379/0.",
        )

    def describe(self) -> str:
        """The backend's URL without secrets, for messages and logs."""
        return f"{self.schemes[0]}://" if self.schemes else type(self).__name__
