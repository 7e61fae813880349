"""The scheduler: a state machine that drives one run through a backend.

Concurrency invariants (why there are no locks):

* All scheduling state (the :class:`~aioflow._runstate.Node` s, the results, the
  step count, retry timers) is mutated only by the scheduler coroutine,
  :meth:`Scheduler._schedule`, and by the synchronous control methods
  (``cancel``, ``cancel_task``), which run on the same loop between its awaits.
* The scheduler reaches executions only through the backend contract
  (:mod:`aioflow.backends.base`): it submits :class:`Execution` s, one per task
  attempt, and receives each back once with its outcome. Backends own no decision:
  join counting, policies, retries and their backoff (a timer here, not a held
  slot), cycles, dynamic tasks and steps are all decided here.
* Leaving the backend session cancels whatever still executes and waits for it
  (threads included): nothing of a run keeps running once :meth:`execute` returns.
"""

from __future__ import annotations

import heapq
import logging
import time
from collections.abc import Collection, Iterator, Mapping
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import anyio

from ._compile import compile_graph
from ._replay import replay_channel, replay_journal
from ._run_errors import group_failed, internal_error, policy_failed, task_failed
from ._run_events import RunEvents
from ._runstate import (
    BACKOFF,
    CANCELLED,
    DISPATCHED,
    FAILED,
    NO_DATA,
    READY,
    SUCCEEDED,
    WAITING,
    Node,
    RunView,
    context_params,
    statistics,
    summarize,
    task_records,
)
from .backends.base import DEFAULT_MAX_CONCURRENCY, Backend, Execution, RunLink, Session, Status
from .channels import Channel
from .channels.journaled import JournalingChannel
from .context import ControlRequests
from .errors import (
    AioflowError,
    CheckpointError,
    GroupFailedError,
    MaxStepsExceededError,
    TaskCancelledError,
    UnknownTaskError,
    WorkflowCancelledError,
    WorkflowDefinitionError,
    WorkflowFailedError,
)
from .graph import TaskGraph
from .handlers import Handler
from .instruments import Instruments
from .journal import Journal, Recorded, fingerprint
from .observability.logging import get_logger
from .plan import check_handlers, fill_arguments, plan_dynamic
from .policies import GroupOutcomes
from .results import RunResult, RunStatistics, RunStatus, TaskRecord


class _AnyName(Collection[str]):
    """Every handler name (a distributed run leaves handlers to its workers)."""

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str)

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


if TYPE_CHECKING:
    from .serialization import Keyring
    from .task import Task

__all__ = ["DEFAULT_MAX_CONCURRENCY", "Scheduler"]

_SUCCEEDED = Status.SUCCEEDED
_MAX_BACKLOG = 20_000  # journal records waiting for a commit before the scheduler waits

Final = tuple[RunStatus, str | None, BaseException | None]


class Scheduler:
    """Drives one run of a workflow graph. Made by :func:`aioflow.run`.

    Raises (from the constructor): :class:`WorkflowDefinitionError` when the graph,
    its parameters or handlers are invalid — before anything runs.
    """

    def __init__(
        self,
        graph: TaskGraph,
        *,
        workflow: str,
        run_id: str,
        inputs: Mapping[str, Any],
        handlers: Mapping[str, Handler],
        channel: Channel,
        backend: Backend,
        max_steps: int | None = None,
        max_concurrency: int | None = DEFAULT_MAX_CONCURRENCY,
        instruments: Instruments | None = None,
        journal: Journal | None = None,
        journal_every: str = "task",
        keyring: Keyring | None = None,
    ) -> None:
        self.workflow = workflow
        self._keyring = keyring
        self.run_id = run_id
        self.inputs = dict(inputs)
        self.channel = channel
        self.graph = graph
        self._backend = backend
        self._handlers = dict(handlers)
        self._max_steps = max_steps
        self._max_concurrency = max_concurrency
        self._events = RunEvents(instruments or Instruments(), run_id)
        self._results: dict[str, Any] = {}
        # On a distributed backend the handlers are the workers' (each worker is
        # given its own): this process checks none and opens none.
        self._handler_names: Collection[str] = _AnyName() if backend.remote else self._handlers
        self._nodes = compile_graph(graph, self._handler_names, self.inputs)
        self._view = RunView(self._nodes, self._results, self.inputs)
        self._static_tasks = len(graph.tasks)
        self._journal = journal
        self._journal_every = journal_every  # "task": commit every batch; "manual"
        self._resumed: list[Execution] | None = None  # in flight when the journal ended
        self._flushing = False  # a background commit is in flight
        self._background: anyio.abc.TaskGroup
        self._replayed_channel: list[tuple[str, str, Any]] = []
        self._inflight = 0  # executions submitted and not received back
        self._ready: list[Node] = []  # released, dispatched after the current batch
        self._timers: list[tuple[float, int, Node, int]] = []  # (due, seq, node, attempt)
        self._calls = 0
        self._steps = 0
        self._final: Final | None = None
        self._failed_group: Node | None = None
        self._stopped_by: str | None = None  # the task that ended the run, if one did
        self._session: Session | None = None
        self._never_started: list[Execution] = []
        self._scope: anyio.CancelScope | None = None
        self._cancel_requested: str | None = None
        self._scheduled_to_end = False  # the schedule ran out of work (not interrupted)
        self._log = get_logger("engine", run_id=run_id, workflow=workflow)
        self._debug = self._log.isEnabledFor(logging.DEBUG)
        self.status = RunStatus.PENDING
        self._t0: float | None = None

    # --- public control (synchronous, on the run's loop) ------------------------------

    @property
    def results(self) -> Mapping[str, Any]:
        return self._results

    @property
    def nodes(self) -> Mapping[str, Node]:
        return self._nodes

    def cancel(self, reason: str | None = None) -> None:
        """Cancel the run: nothing queued starts; every running task is cancelled."""
        if self._cancel_requested is None:
            self._cancel_requested = reason or "cancelled"
        if self._session is not None:
            # Queued executions must not start while the cancellation spreads.
            self._never_started.extend(self._session.halt())
        if self._scope is not None:
            self._scope.cancel()

    def cancel_task(self, name: str, reason: str | None = None) -> bool:
        """Cancel one task; it counts as failed (TaskCancelledError). True if it ran.

        A task waiting to retry is cancelled when its backoff delay ends.
        """
        node = self._nodes.get(name)
        if node is None:
            raise UnknownTaskError(f"the run has no task named {name!r}", run_id=self.run_id)
        reason = reason or "cancelled by request"
        if node.state is DISPATCHED and node.current is not None and self._session is not None:
            return self._session.cancel(node.current, reason)
        if node.state is BACKOFF:
            node.cancel_reason = reason
            return True
        return False

    def statistics(self) -> RunStatistics:
        """A snapshot of the run's progress: how many tasks wait, run, have finished."""
        elapsed = 0.0 if self._t0 is None else time.perf_counter() - self._t0
        session = self._session.statistics() if self._session is not None else None
        return statistics(self._nodes, session, elapsed)

    # --- the run ------------------------------------------------------------------------

    async def execute(self) -> RunResult:
        """Run to the end and return the result (it never raises for task failures)."""
        if self._replayed_channel and not self.channel.durable:
            # A durable channel (Redis) kept the writes itself; a fresh one gets them.
            await replay_channel(self.channel, self._replayed_channel)
        if self._journal is not None:
            self.channel = JournalingChannel(self.channel, self._journal)
            if self._resumed is None:  # a new run: create it in the store first
                backend = self._backend
                await self._journal.begin(
                    self.workflow,
                    fingerprint(self.graph),
                    self.inputs,
                    self._static_tasks,
                    backend=backend.schemes[0] if backend.remote and backend.schemes else None,
                )
        started = datetime.now(UTC)
        t0 = self._t0 = time.perf_counter()
        self.status = RunStatus.RUNNING
        self._log.info("run started", tasks=self._static_tasks, backend=self._backend.describe())
        self._events.run_started(self.workflow, self._static_tasks)
        try:
            async with AsyncExitStack() as stack:
                for handler in self._handlers.values() if not self._backend.remote else ():
                    # Left last: a handler waits there for what it still accounts for
                    # (threads of cancelled sync tasks, containers).
                    await stack.enter_async_context(handler)
                session: Session | None = None
                try:
                    with anyio.CancelScope() as self._scope:
                        try:
                            # Entered here, not in a helper coroutine: every wake-up of
                            # the scheduler resumes each coroutine frame on its stack.
                            async with (
                                anyio.create_task_group() as self._background,
                                self._backend.session(self._link()) as session,
                            ):
                                self._session = session
                                serving = self._serve_handlers()
                                try:
                                    if self._cancel_requested is None:
                                        await self._schedule(session)
                                except Exception as exc:  # a bug (ours, a policy's): fail
                                    self._internal_error(exc)
                                finally:
                                    # Whatever ends the schedule (done, stopped, cancelled
                                    # from outside), nothing still queued may start.
                                    self._never_started.extend(session.halt())
                                    serving.cancel()
                        finally:
                            # Every execution came back: record how it ended (a task that
                            # finished while the run ended is not listed as cancelled).
                            if session is not None:
                                self._record_late(session)
                            self._session = None
                finally:
                    if self._journal is not None:
                        # Written even when the run was cancelled (by its own scope or
                        # by the caller's), so that resume() goes on from there and the
                        # store says how it ended; the write is short and bounded.
                        with anyio.CancelScope(shield=True):
                            await self._finish_journal()
        finally:
            result = self._finish(started, time.perf_counter() - t0)
        return result

    def _link(self) -> RunLink:
        return RunLink(
            run_id=self.run_id,
            workflow=self.workflow,
            channel=self.channel,
            view=self._view,
            handlers=self._handlers,
            on_started=self._on_started if self._events.task_start else None,
            remote_starts=self._events.remote_starts,
            save_checkpoint=self.save_checkpoint if self._journal else None,
            max_concurrency=self._max_concurrency,
            debug=self._debug,
            keyring=self._keyring,
            cancel=self.cancel,
        )

    def _serve_handlers(self) -> anyio.CancelScope:
        """Start the background work of the handlers that have some (a warm pool
        starting replacements); the scope returned ends it."""
        scope = anyio.CancelScope()
        handlers = [] if self._backend.remote else self._handlers.values()
        serving = [handler for handler in handlers if handler.serves]
        if serving:

            async def serve() -> None:
                with scope:
                    async with anyio.create_task_group() as tg:
                        for handler in serving:
                            tg.start_soon(handler.serve_logged, self._log)

            self._background.start_soon(serve)
        return scope

    async def _schedule(self, session: Session) -> None:
        if self._resumed is not None:
            # Resumed: what was in flight when the journal ended runs again, and what
            # the replay made ready starts (see aioflow._replay).
            resumed, self._resumed = self._resumed, []
            session.submit(resumed)
            self._journal_started(resumed)
        else:
            for node in self._nodes.values():
                if node.pending == 0:
                    if node.task is not None:
                        self._make_ready(node)
                    else:
                        self._release(node)  # an empty group: judged at once
        self._launch(session)
        on_outcome = self._on_outcome
        while self._final is None and (self._inflight or self._timers):
            # One wake-up handles the whole burst of completions delivered by then
            # (wide fan-outs) before anything more is launched.
            batch = await (session.receive() if not self._timers else self._next(session))
            for execution in batch:
                if self._final is None:
                    on_outcome(execution)
                else:
                    self._late(execution)
            if self._timers:
                self._fire_timers()
            journal = self._journal
            every = self._journal_every
            if journal and journal.pending and every != "manual" and not self._final:
                if (self._ready and every == "task") or journal.backlog > _MAX_BACKLOG:
                    # "task": what is about to start depends on outcomes just recorded;
                    # they are durable first (after a commit in flight, if any). Any
                    # mode: backpressure when the store falls behind.
                    await self._flush_or_fail()
                elif not self._flushing and (self._inflight or self._timers or self._ready):
                    # (When nothing is left to run, the run ends now: its last records
                    # go with the run's final status, in one commit.)
                    # Nothing to start ("task"), or "background": commit behind the run,
                    # one commit at a time and in order. A task's record is never
                    # committed before its predecessors', so the journal stays a
                    # consistent prefix of the run (see docs/checkpoints.md).
                    self._flushing = True
                    self._background.start_soon(self._background_flush)
            self._launch(session)
        self._scheduled_to_end = True

    async def _next(self, session: Session) -> list[Execution]:
        """The next batch, or none once the first retry timer is due."""
        delay = self._timers[0][0] - anyio.current_time()
        if delay > 0:
            with anyio.move_on_after(delay):
                return await session.receive()
        return session.receive_nowait()

    # --- dispatching ------------------------------------------------------------------

    def _make_ready(self, node: Node) -> None:
        if node.active or self._final is not None:
            return
        node.state = READY
        self._ready.append(node)

    def _launch(self, session: Session) -> None:
        # Launched only after a batch was handled (and journaled): the journal is
        # durable before anything that follows the tasks it records starts.
        if not self._ready:
            return
        ready, self._ready = self._ready, []
        batch: list[Execution] = []
        for node in ready:
            if self._final is not None:
                break
            execution = self._execution(node, 1)
            if execution is not None:
                batch.append(execution)
        session.submit(batch)
        if self._journal is not None:
            self._journal_started(batch)

    def _journal_started(self, executions: list[Execution]) -> None:
        if self._journal is not None:
            for execution in executions:
                self._journal.task_started(execution)

    def _execution(self, node: Node, attempt: int) -> Execution | None:
        """The execution of ``node``'s next attempt, or None when it failed at once."""
        if attempt == 1:
            self._steps += 1
            if self._max_steps is not None and self._steps > self._max_steps:
                error = MaxStepsExceededError(self._max_steps, run_id=self.run_id)
                node.state = WAITING
                self._stop(RunStatus.FAILED, error=error)
                return None
        task = node.task
        assert task is not None
        args: tuple[Any, ...] = ()
        kwargs: dict[str, Any] = {}
        if node.plan:
            try:
                args, kwargs = fill_arguments(
                    task,
                    node.plan,
                    ctx=None,  # the executing side puts the attempt's context there
                    results=self._results,
                    inputs=self.inputs,
                    state_of=self._view.state_of,
                    run_id=self.run_id,
                )
            except Exception as exc:
                self._failed_to_start(node, attempt, exc)
                return None
        if node.iteration_data is not NO_DATA and task.takes("data"):
            kwargs["data"] = node.iteration_data
        self._calls += 1
        execution = Execution(
            self._calls, task, node.name, attempt, node.iteration, args, kwargs, node.context, node
        )
        node.state = DISPATCHED
        node.current = execution
        self._inflight += 1
        return execution

    def _failed_to_start(self, node: Node, attempt: int, exc: Exception) -> None:
        # Its arguments could not be filled: the attempt started and failed at once.
        node.executions += attempt == 1
        node.attempts = attempt
        node.started_at = node.started_at or time.time()
        node.finished_at = time.time()
        self._events.task_started(node.name, attempt, node.iteration)
        self._on_failure(node, exc)

    def _on_started(self, execution: Execution) -> None:
        # Called by the executing side when an attempt starts; it only emits.
        self._events.task_started(execution.name, execution.attempt, execution.iteration)

    # --- outcomes (scheduler coroutine only) ----------------------------------------

    def _account(self, node: Node, execution: Execution) -> None:
        node.current = None
        self._inflight -= 1
        if execution.started:
            now = time.time()
            node.duration += execution.duration
            node.attempts = execution.attempt
            if execution.attempt == 1:
                node.executions += 1
            if node.started_at is None:
                node.started_at = now - execution.duration
            node.finished_at = now

    def _on_outcome(self, execution: Execution) -> None:
        node: Node = execution.token
        self._account(node, execution)
        status = execution.status
        requests = execution.requests
        if status is _SUCCEEDED and requests is None and self._journal is None:
            self._on_success(node, execution)  # the usual case, without the checks below
            return
        cancelling = requests is not None and requests.cancel is not None
        retry_delay: float | None = None
        error: BaseException | None = None
        if status is not Status.SUCCEEDED:
            error = self._error_of(execution)
            policy = execution.task.options.retries
            terminating = requests is not None and requests.terminate is not None
            if (
                status is Status.FAILED
                and not (terminating or cancelling)
                and policy.should_retry(execution.attempt, error)
            ):
                retry_delay = policy.delay(execution.attempt)
        if self._journal is not None and not self._record(execution, retry_delay is not None):
            return
        if cancelling:
            assert requests is not None and requests.cancel is not None
            if error is None:
                self._results[node.name] = execution.value
                node.state = SUCCEEDED
            else:
                self._set_failed(node, error)
            self._stop(RunStatus.CANCELLED, reason=requests.cancel, by=node.name)
        elif error is None:
            self._on_success(node, execution)
        elif retry_delay is not None:
            self._retry_later(node, execution, error, retry_delay)
        else:
            self._on_failure(node, error)

    def _record(self, execution: Execution, retrying: bool, *, late: bool = False) -> bool:
        """Journal ``execution``'s outcome; False (the run fails) when it cannot be."""
        assert self._journal is not None
        status = execution.status
        if status is Status.SUCCEEDED:
            requests = execution.requests
            iterating = requests is not None and requests.iterate and not late
            text = "iterating" if iterating else "succeeded"
        elif status is Status.CANCELLED:
            text = "cancelled"
        else:
            text = "retrying" if retrying else "failed"
        try:
            self._journal.task_finished(execution, text, late=late)
        except CheckpointError as exc:
            self._set_failed(execution.token, exc)
            self._fail_task(execution.token, exc)
            return False
        return True

    def _error_of(self, execution: Execution) -> BaseException:
        error = execution.error
        if error is None or (
            execution.status is Status.CANCELLED and not isinstance(error, TaskCancelledError)
        ):
            reason = execution.cancel_reason or "cancelled"
            error = TaskCancelledError(
                f"task {execution.name!r} was cancelled: {reason}",
                run_id=self.run_id,
                task_name=execution.name,
                attempt=execution.attempt,
            )
        return error

    def _retry_later(
        self, node: Node, execution: Execution, error: BaseException, delay: float
    ) -> None:
        node.state = BACKOFF
        self._events.task_retrying(node.name, execution.attempt, error, delay)
        self._log.warning(
            "task attempt failed; retrying",
            task_name=node.name,
            attempt=execution.attempt,
            error=repr(error),
            delay=delay,
            exc_info=error,
        )
        self._calls += 1  # a unique tie-breaker for the heap
        due = anyio.current_time() + delay
        heapq.heappush(self._timers, (due, self._calls, node, execution.attempt + 1))

    def _fire_timers(self) -> None:
        now = anyio.current_time()
        due: list[Execution] = []
        while self._timers and self._timers[0][0] <= now and self._final is None:
            _, _, node, attempt = heapq.heappop(self._timers)
            if node.state is not BACKOFF:
                continue
            if node.cancel_reason is not None:
                reason, node.cancel_reason = node.cancel_reason, None
                self._on_failure(
                    node,
                    TaskCancelledError(
                        f"task {node.name!r} was cancelled: {reason}",
                        run_id=self.run_id,
                        task_name=node.name,
                    ),
                )
                continue
            execution = self._execution(node, attempt)
            if execution is not None:
                due.append(execution)
        if due and self._session is not None:
            self._session.submit(due)
            self._journal_started(due)

    def _on_success(self, node: Node, execution: Execution) -> None:
        self._results[node.name] = execution.value
        node.error = None  # a task run again may succeed where it failed before
        if self._events.task_end:  # a plain attribute: no call when nobody listens
            self._events.task_succeeded(
                node.name, execution.attempt, execution.iteration, execution.duration
            )
        if self._debug:
            self._log.debug("task succeeded", task_name=node.name, attempt=execution.attempt)
        requests: ControlRequests | None = execution.requests
        if requests is None:  # the usual case: no control request
            node.state = SUCCEEDED
            for group in node.groups:
                assert group.outcomes is not None
                group.outcomes[node.name] = "succeeded"
            self._complete(node)
            return
        if requests.terminate is not None:
            node.state = SUCCEEDED
            self._stop(RunStatus.SUCCEEDED, reason=requests.terminate, by=node.name)
            return
        if requests.iterate:
            node.state = WAITING
            node.iteration += 1
            node.iteration_data = requests.iteration_data
            self._make_ready(node)
            return
        node.state = SUCCEEDED
        next_tasks = requests.next_tasks
        goto = bool(next_tasks) and any(jump for _, jump in next_tasks or ())
        for group in node.groups:
            assert group.outcomes is not None
            group.outcomes[node.name] = "succeeded"
        # With goto the task's own successors are skipped, but it still counts as a
        # finished member of its groups: a group is always judged. Completed before
        # the tasks it asked for are added: one that runs again re-arms what follows.
        if goto:
            self._complete_in_groups(node)
        else:
            self._complete(node)
        if next_tasks:
            for target, _ in next_tasks:
                self._add_next(node, target)

    def _set_failed(self, node: Node, exc: BaseException) -> None:
        node.state = CANCELLED if isinstance(exc, TaskCancelledError) else FAILED
        node.error = exc

    def _on_failure(self, node: Node, exc: BaseException) -> None:
        self._set_failed(node, exc)
        if not node.groups:
            self._log_failed(node, exc)
            self._emit_failed(node, exc, tolerated=False)
            self._fail_task(node, exc)
            return
        for group in node.groups:
            assert group.outcomes is not None and group.errors is not None and group.group
            group.outcomes[node.name] = "cancelled" if node.state is CANCELLED else "failed"
            group.errors[node.name] = exc
            try:
                fail_now = group.group.policy.fail_fast(GroupOutcomes(group.outcomes))
            except Exception as policy_error:
                self._policy_failed(group, policy_error)
                return
            if fail_now:
                self._log_failed(node, exc)
                self._emit_failed(node, exc, tolerated=False)
                self._fail_group(group)
                return
        self._emit_failed(node, exc, tolerated=True)
        self._log.warning(
            "task failed; tolerated by its group policy",
            task_name=node.name,
            attempt=node.attempts,
            error=repr(exc),
            exc_info=exc,
        )
        self._complete(node)

    def _log_failed(self, node: Node, exc: BaseException) -> None:
        """A task failed for good (timeouts included): an error line with its traceback;
        a cancelled one is a debug line (a cancelled run cancels many)."""
        if isinstance(exc, TaskCancelledError):
            if self._debug:
                self._log.debug("task cancelled", task_name=node.name, attempt=node.attempts)
            return
        self._log.error(
            "task failed", task_name=node.name, attempt=node.attempts, error=repr(exc), exc_info=exc
        )

    def _emit_failed(self, node: Node, exc: BaseException, *, tolerated: bool) -> None:
        self._events.task_failed(node.name, node.attempts, exc, tolerated)

    # --- joins ------------------------------------------------------------------------

    def _complete(self, node: Node) -> None:
        """``node`` is done: release successors whose predecessors are all done."""
        if node.counted:
            return
        node.counted = True
        for succ in node.successors:
            succ.pending -= 1
            if succ.pending == 0:
                self._release(succ)

    def _complete_in_groups(self, node: Node) -> None:
        """``node`` jumped elsewhere (goto): it counts for its groups, not its successors."""
        if node.counted:
            return
        node.counted = True
        for succ in node.successors:
            if succ.group is not None:
                succ.pending -= 1
                if succ.pending == 0:
                    self._release(succ)

    def _release(self, node: Node) -> None:
        if node.group is None:
            self._make_ready(node)
            return
        assert node.outcomes is not None
        outcomes = GroupOutcomes(node.outcomes)
        try:
            succeeded = node.group.policy.evaluate(outcomes)
        except Exception as exc:
            self._policy_failed(node, exc)
            return
        self._events.group_finished(node.name, bool(succeeded), node.outcomes)
        if not succeeded:
            self._fail_group(node)
            return
        node.state = SUCCEEDED
        value = self._results[node.name] = {
            name: self._results[name] for name in outcomes.succeeded if name in self._results
        }
        if self._session is not None:
            self._session.group_finished(node.name, value)  # before its successors go
        self._complete(node)

    def _rearm(self, target: Node) -> None:
        """``target`` runs again: everything downstream of it waits for a new round.

        Each node downstream waits again for its predecessors that run again, and
        still for those that have not completed yet: a join re-runs once per round,
        with the results of that round (not as soon as one predecessor re-completes).
        """
        downstream: dict[int, Node] = {id(target): target}
        stack = [target]
        while stack:
            for succ in stack.pop().successors:
                if id(succ) not in downstream:
                    downstream[id(succ)] = succ
                    stack.append(succ)
        for node in downstream.values():
            if not node.active or node is target:
                node.counted = False
        predecessors = self.graph.predecessors
        for node in downstream.values():
            if node is target or node.active:
                continue
            node.pending = sum(not self._nodes[p].counted for p in predecessors.get(node.name, ()))
            if node.group is not None:
                node.state = WAITING
                assert node.outcomes is not None and node.errors is not None
                for member in node.outcomes:
                    if id(self._nodes[member]) in downstream or self._nodes[member] is target:
                        node.outcomes[member] = "pending"
                        node.errors.pop(member, None)

    def _add_next(self, parent: Node, target: Task[..., Any] | str) -> None:
        parent.children += 1
        name = target if isinstance(target, str) else target.name
        node = self._nodes.get(name)
        if node is None:
            if isinstance(target, str):  # checked by ctx.next_task in-process; not remotely
                self._fail_task(
                    parent,
                    UnknownTaskError(
                        f"next_task({name!r}): the run has no task named {name!r}",
                        run_id=self.run_id,
                        task_name=parent.name,
                    ),
                )
                return
            try:
                check_handlers(target, self._handler_names)
                plan = plan_dynamic(target, self._nodes, self.inputs)
            except WorkflowDefinitionError as exc:
                self._fail_task(parent, exc)
                return
            node = self._nodes[name] = Node(
                name, task=target, plan=plan, context=context_params(plan), dynamic=True
            )
            self._events.task_added(name, parent.name)
            if self._journal is not None:
                self._journal.task_added(name, parent.name)
                self._journal.tasks_total = sum(n.task is not None for n in self._nodes.values())
        elif node.task is None or (not isinstance(target, str) and target is not node.task):
            what = "a group" if node.task is None else "another task"
            self._fail_task(
                parent,
                WorkflowDefinitionError(
                    f"next_task({name!r}): that name belongs to {what} of the run",
                    hint="Give the new task a unique name with .bind(name=...).",
                    run_id=self.run_id,
                    task_name=parent.name,
                ),
            )
            return
        elif not node.active:
            self._rearm(node)
        node.iteration = 1
        node.iteration_data = NO_DATA
        self._make_ready(node)

    # --- the end of a run ---------------------------------------------------------------

    def _late(self, execution: Execution) -> None:
        """Record an outcome that arrived after the run was decided (no decisions)."""
        node: Node = execution.token
        self._account(node, execution)
        if self._journal is not None and execution.status is not Status.NOT_STARTED:
            self._record(execution, False, late=True)
        if execution.status is Status.SUCCEEDED:
            self._results[node.name] = execution.value
            node.state = SUCCEEDED
            self._events.task_succeeded(
                node.name, execution.attempt, execution.iteration, execution.duration
            )
        elif execution.status is Status.NOT_STARTED:
            # Never started: not an execution. A retry that never started leaves a
            # task that did run, and was cancelled with its run.
            node.state = CANCELLED if execution.attempt > 1 else WAITING
        else:
            error = self._error_of(execution)
            self._set_failed(node, error)
            self._emit_failed(node, error, tolerated=False)

    def _record_late(self, session: Session) -> None:
        for execution in self._never_started:
            self._late(execution)
        self._never_started.clear()
        for late in session.receive_nowait():
            self._late(late)
        for node in self._nodes.values():
            # The run ended first: a task waiting to retry was cancelled; a task
            # that was only ready never started (again).
            if node.state is BACKOFF:
                node.state = CANCELLED
            elif node.state is READY:
                node.state = WAITING

    def _internal_error(self, exc: Exception) -> None:
        self._stop(RunStatus.FAILED, error=internal_error(self.run_id, exc))

    def _policy_failed(self, group: Node, exc: Exception) -> None:
        group.state = FAILED
        self._stop(RunStatus.FAILED, error=policy_failed(self.run_id, group, exc))

    def _fail_task(self, node: Node, exc: BaseException) -> None:
        self._stop(RunStatus.FAILED, error=task_failed(self.run_id, node, exc))

    def _fail_group(self, group: Node) -> None:
        group.state = FAILED
        self._failed_group = group
        self._stop(RunStatus.FAILED, error=group_failed(self.run_id, group, self._nodes))

    def _stop(
        self,
        status: RunStatus,
        *,
        reason: str | None = None,
        error: BaseException | None = None,
        by: str | None = None,
    ) -> None:
        if self._final is not None:
            return
        if by is not None:
            self._stopped_by = by
            self._log.info("run stopped by task", task_name=by, status=status.value, reason=reason)
        if status is RunStatus.CANCELLED and error is None:
            error = WorkflowCancelledError(reason, run_id=self.run_id, task_name=by)
        self._final = (status, reason, error)

    def _final_state(self) -> Final:
        if self._final is not None:
            status, reason, error = self._final
            if self._failed_group is not None and isinstance(error, GroupFailedError):
                # Member outcomes are final now: the error says how each one ended.
                error = group_failed(self.run_id, self._failed_group, self._nodes)
            return status, reason, error
        if self._cancel_requested is not None or not self._scheduled_to_end:
            # handle.cancel(), or the caller's scope was cancelled: nothing keeps running.
            reason = self._cancel_requested or "the caller was cancelled"
            return RunStatus.CANCELLED, reason, WorkflowCancelledError(reason, run_id=self.run_id)
        return RunStatus.SUCCEEDED, None, None

    def _finish(self, started: datetime, duration: float) -> RunResult:
        status, reason, error = self._final_state()
        finished = datetime.now(UTC)
        summary = summarize(self._nodes, self._results)
        self._events.tasks_skipped(summary.skipped, "not reached")
        nodes = self._nodes
        self.status = status
        result = RunResult._create(
            run_id=self.run_id,
            workflow=self.workflow,
            status=status,
            results=self._results,
            tasks=_Records(nodes, summary.statuses),
            started_at=started,
            finished_at=finished,
            duration=duration,
            output_name=summary.output,
            reason=reason,
            error=error,
        )
        if isinstance(error, WorkflowFailedError | WorkflowCancelledError):
            error.result = result
        log = self._log.error if status is RunStatus.FAILED else self._log.info
        log(
            "run finished",
            status=status.value,
            reason=reason,
            duration=round(duration, 6),
            error=repr(error) if error else None,
        )
        self._events.run_finished(status.value, reason, error)
        return result

    # --- the journal -------------------------------------------------------------------

    async def save_checkpoint(self) -> None:
        """Commit the journal now (``ctx.checkpoint()``; with ``checkpoint_every="manual"``)."""
        if self._journal is not None:
            await self._journal.flush()

    async def _background_flush(self) -> None:
        journal = self._journal
        try:
            # Records made while a commit was in flight go in the next one together.
            while journal is not None and journal.pending and self._final is None:
                await self._flush_or_fail()
        finally:
            self._flushing = False

    async def _flush_or_fail(self) -> None:
        assert self._journal is not None
        try:
            await self._journal.flush()
        except AioflowError as exc:
            error = WorkflowFailedError(
                f"the run could not be journaled: {exc}", hint=exc.hint, run_id=self.run_id
            )
            error.__cause__ = exc
            self._stop(RunStatus.FAILED, error=error)

    async def _finish_journal(self) -> None:
        assert self._journal is not None
        status, _, error = self._final_state()
        try:
            await self._journal.finish(status.value, error)
        except AioflowError as exc:
            self._log.error("the run's last journal records could not be written", error=str(exc))
            if self._final is None or self._final[0] is not RunStatus.FAILED:
                failure = WorkflowFailedError(
                    f"the run could not be journaled: {exc}", hint=exc.hint, run_id=self.run_id
                )
                failure.__cause__ = exc
                self._final = (RunStatus.FAILED, None, failure)

    def replay(self, recorded: Recorded) -> None:
        """Continue the journaled run ``recorded`` instead of starting afresh.

        Raises:
            CheckpointError: the journal was written by another workflow or shape, or
                does not match this workflow's tasks.
        """
        if recorded.workflow != self.workflow or recorded.fingerprint != fingerprint(self.graph):
            raise CheckpointError(
                f"run {recorded.info.run_id} was journaled by workflow "
                f"{recorded.workflow!r} with other tasks or edges than workflow "
                f"{self.workflow!r} has now",
                hint="Resume with the same workflow definition that started the run.",
                run_id=recorded.info.run_id,
            )
        self._resumed, self._replayed_channel = replay_journal(self, recorded)
        if self._journal is not None:
            self._journal.continue_after(recorded)

    @property
    def steps(self) -> int:
        return self._steps


class _Records:
    """Task records, built on first access: large runs do not pay for unread records."""

    __slots__ = ("_nodes", "_statuses")

    def __init__(self, nodes: Mapping[str, Node], statuses: Mapping[str, Any]) -> None:
        self._nodes = nodes
        self._statuses = statuses

    def __call__(self) -> dict[str, TaskRecord]:
        return task_records(self._nodes, self._statuses)
