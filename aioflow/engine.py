"""The scheduler: runs one workflow run on the current event loop.

Concurrency invariants (why there are no locks):

* All scheduling state (:class:`~aioflow._runstate.Node` states and counters, the
  results, the step count) is mutated only by the scheduler coroutine,
  :meth:`Scheduler._schedule`. Executors write only the bookkeeping of the one
  execution they run (see :mod:`aioflow._runstate`).
* Task executions run in *executor* tasks, children of the run's task group,
  served by an :class:`~aioflow._executors.ExecutorPool` (a priority queue; an
  executor is spawned only when work waits and none is free, up to
  ``max_concurrency``), so a run spawns as many anyio tasks as its peak
  concurrency needs, not one per task. A :class:`~aioflow._execution.TaskRunner`
  runs each execution under a cancel scope of its own (timeout, ``cancel_task``)
  and reports back with one message on a memory object stream.
* Cancelling the run cancels the task group: every execution is cancelled and
  awaited (threads included) before :meth:`Scheduler.execute` returns.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import anyio

from . import events as ev
from ._execution import FAILED, OK, Message, TaskRunner
from ._executors import ExecutorPool
from ._runstate import CANCELLED as CANCELLED_STATE
from ._runstate import FAILED as FAILED_STATE
from ._runstate import (
    NO_DATA,
    QUEUED,
    RUNNING,
    SUCCEEDED,
    WAITING,
    Node,
    RunView,
    statistics,
    summarize,
    task_records,
)
from .channels import Channel
from .checkpoint import CHECKPOINT_FORMAT, Checkpointer, fingerprint
from .context import ControlRequests, TaskContext
from .errors import (
    AioflowError,
    CheckpointError,
    CycleLimitExceededError,
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
from .observability.logging import get_logger
from .plan import ParamPlan, check_handlers, plan_dynamic, plan_static
from .policies import GroupOutcomes, MemberOutcome
from .results import RunResult, RunStatistics, RunStatus, TaskRecord

if TYPE_CHECKING:
    from .task import Task

__all__ = ["DEFAULT_MAX_CONCURRENCY", "Scheduler"]

DEFAULT_MAX_CONCURRENCY = 1000


class Scheduler:
    """Drives one run of a workflow graph in-process. Made by :func:`aioflow.run`.

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
        max_steps: int | None = None,
        max_concurrency: int | None = DEFAULT_MAX_CONCURRENCY,
        emit: Callable[[ev.Event], None] | None = None,
        checkpointer: Checkpointer | None = None,
    ) -> None:
        if max_steps is not None and max_steps < 1:
            raise WorkflowDefinitionError(f"max_steps must be >= 1, got {max_steps}")
        if max_concurrency is not None and max_concurrency < 1:
            raise WorkflowDefinitionError(f"max_concurrency must be >= 1, got {max_concurrency}")
        self.workflow = workflow
        self.run_id = run_id
        self.inputs = dict(inputs)
        self.channel = channel
        self._handlers = dict(handlers)
        self._max_steps = max_steps
        self._max_concurrency = max_concurrency
        self._emit = emit
        self._results: dict[str, Any] = {}
        self._nodes: dict[str, Node] = {}
        self._view = RunView(self._nodes, self._results, self.inputs)
        self._build(graph)
        self._static_tasks = len(graph.tasks)
        self._checkpointer = checkpointer
        self._fingerprint = fingerprint(graph) if checkpointer is not None else ""
        self._dirty = False  # something finished since the last checkpoint
        self._restored: list[Node] | None = None
        self._restored_channel: dict[str, Any] | None = None
        self._running = 0  # executions handed out and not reported back
        self._queued: list[Node] = []  # released, launched after the current batch
        self._steps = 0
        self._final: tuple[RunStatus, str | None, BaseException | None] | None = None
        self._pool: ExecutorPool[Node] | None = None
        self._scope: anyio.CancelScope | None = None
        self._cancel_requested: str | None = None
        self._log = get_logger("engine", run_id=run_id, workflow=workflow)
        self._debug = self._log.isEnabledFor(logging.DEBUG)
        self.status = RunStatus.PENDING
        self._t0: float | None = None

    # --- planning -------------------------------------------------------------------

    def _build(self, graph: TaskGraph) -> None:
        order = graph.validate()
        position: dict[str, int] | None = None  # only needed to plan parameters
        nodes: dict[str, Node] = {}
        tasks, successors, predecessors = graph.tasks, graph.successors, graph.predecessors
        # Nodes with one and the same successor share one tuple (every member of a
        # group): a wide fan-out does not make a tuple per member.
        single: dict[str, tuple[Node]] = {}
        # Reverse topological order: a node's successors exist when it is made.
        for name in reversed(order):
            names = successors[name]
            if len(names) == 1:
                succ: tuple[Node, ...] | None = single.get(names[0])
                if succ is None:
                    succ = single[names[0]] = (nodes[names[0]],)
            else:
                succ = tuple(nodes[s] for s in names)
            pending = len(predecessors[name])
            task = tasks.get(name)
            if task is not None:
                if task.options.handler not in self._handlers:
                    check_handlers(task, self._handlers)  # raises, naming the handler
                plan: tuple[ParamPlan, ...] = ()
                if task.params:
                    if position is None:
                        position = {n: i for i, n in enumerate(order)}
                    plan = plan_static(task, graph, position, self.inputs)
                # Positional (name, task, group, successors, pending, plan): the hot path.
                nodes[name] = Node(name, task, None, succ, pending, plan)
            else:
                group = graph.groups[name]
                outcomes: dict[str, MemberOutcome] = dict.fromkeys(group.member_names, "pending")
                node = Node(
                    name,
                    group=group,
                    outcomes=outcomes,
                    errors={},
                    successors=succ,
                    pending=pending,
                )
                nodes[name] = node
        # The run's nodes in topological order: ready tasks start in definition order.
        self._nodes.update((name, nodes[name]) for name in order)
        for group_node in nodes.values():
            if group_node.group is not None:
                for member in group_node.group.member_names:
                    nodes[member].groups += (group_node,)

    # --- public control -------------------------------------------------------------

    @property
    def results(self) -> Mapping[str, Any]:
        return self._results

    def cancel(self, reason: str | None = None) -> None:
        """Cancel the run: every running task is cancelled and awaited."""
        if self._cancel_requested is None:
            self._cancel_requested = reason or "cancelled"
        if self._pool is not None:
            self._pool.halt()  # queued tasks must not start while cancellation spreads
        if self._scope is not None:
            self._scope.cancel()

    def cancel_task(self, name: str, reason: str | None = None) -> bool:
        """Cancel one running task; it counts as failed (TaskCancelledError). True if it ran."""
        node = self._nodes.get(name)
        if node is None:
            raise UnknownTaskError(f"the run has no task named {name!r}", run_id=self.run_id)
        if node.state is not RUNNING or node.scope is None:
            return False
        node.cancel_reason = reason or "cancelled by request"
        node.scope.cancel()
        return True

    def statistics(self) -> RunStatistics:
        """A snapshot of the run's progress: how many tasks wait, run, have finished."""
        elapsed = 0.0 if self._t0 is None else time.perf_counter() - self._t0
        return statistics(self._nodes, elapsed)

    # --- the run ------------------------------------------------------------------

    async def execute(self) -> RunResult:
        """Run to the end and return the result (it never raises for task failures)."""
        started = datetime.now(UTC)
        t0 = self._t0 = time.perf_counter()
        self.status = RunStatus.RUNNING
        self._log.info("run started", tasks=self._static_tasks)
        if self._emit:
            self._emit(
                ev.RunStarted(
                    run_id=self.run_id, workflow=self.workflow, total_tasks=self._static_tasks
                )
            )
        try:
            if self._restored_channel is not None:
                for key, value in self._restored_channel.items():
                    await self.channel.set(key, value)
            with anyio.CancelScope() as self._scope:
                send, receive = anyio.create_memory_object_stream[Message](math.inf)
                runner = TaskRunner(
                    run_id=self.run_id,
                    channel=self.channel,
                    view=self._view,
                    handlers=self._handlers,
                    send=send,
                    emit=self._emit,
                    save_checkpoint=self.save_checkpoint if self._checkpointer else None,
                    debug=self._debug,
                )
                async with send, receive:
                    try:
                        async with anyio.create_task_group() as tg:
                            self._pool = ExecutorPool(
                                tg, runner.run, runner.cancelled, self._max_concurrency
                            )
                            try:
                                if self._cancel_requested is None:
                                    await self._schedule(receive)
                            finally:
                                # Whatever ends the schedule (done, stopped, cancelled
                                # from outside), nothing still queued may start.
                                self._pool.halt()
                            if self._final is not None:
                                tg.cancel_scope.cancel()  # ended early: cancel the rest
                    finally:
                        # Outcomes reported while the run was ending are recorded (a
                        # task that finished is not listed as cancelled), not acted on.
                        self._record_late(receive)
            if self._checkpointer is not None and self._checkpointer.every == "task":
                # The last state is saved even when the run was cancelled, so that
                # resume() continues from it; the write is short and bounded.
                with anyio.CancelScope(shield=True):
                    await self._checkpoint_or_fail()
        finally:
            result = self._finish(started, time.perf_counter() - t0)
        return result

    async def _schedule(self, receive: Any) -> None:
        if self._restored is not None:
            for node in self._restored:
                self._enqueue(node)
        else:
            for node in self._nodes.values():
                if node.pending == 0 and node.task is not None:
                    self._enqueue(node)
        self._launch_queued()
        while self._running and self._final is None:
            kind, node, payload, ctx = await receive.receive()
            self._on_message(kind, node, payload, ctx)
            # Drain everything already delivered before launching more: one wake-up
            # handles a whole burst of completions (wide fan-outs).
            while self._final is None:
                try:
                    kind, node, payload, ctx = receive.receive_nowait()
                except anyio.WouldBlock:
                    break
                self._on_message(kind, node, payload, ctx)
            checkpointer = self._checkpointer
            if self._dirty and checkpointer and checkpointer.every == "task" and not self._final:
                await self._checkpoint_or_fail()
            self._launch_queued()

    # --- launching ----------------------------------------------------------------

    def _enqueue(self, node: Node) -> None:
        if node.active or self._final is not None:
            return
        node.state = QUEUED
        self._queued.append(node)

    def _launch_queued(self) -> None:
        # Launched only after a batch was handled (and checkpointed): a checkpoint is
        # durable before anything that follows the tasks it records starts.
        queued, self._queued = self._queued, []
        for node in queued:
            if self._final is not None:
                return
            self._launch(node)

    def _launch(self, node: Node) -> None:
        self._steps += 1
        if self._max_steps is not None and self._steps > self._max_steps:
            error = MaxStepsExceededError(self._max_steps, run_id=self.run_id)
            self._stop(RunStatus.FAILED, error=error)
            return
        task = node.task
        assert task is not None and self._pool is not None
        node.state = RUNNING
        node.executions += 1
        node.cancel_reason = None
        self._running += 1
        self._pool.submit(node, task.options.priority)

    # --- reacting to outcomes (scheduler coroutine only) ----------------------------

    def _record_late(self, receive: Any) -> None:
        while True:
            try:
                kind, node, payload, _ = receive.receive_nowait()
            except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
                return
            self._running -= 1
            node.finished_at = time.time()
            if kind == OK:
                self._results[node.name] = payload
                node.state = SUCCEEDED
            elif kind == FAILED:
                node.state = FAILED_STATE
                node.error = payload

    def _on_message(self, kind: int, node: Node, payload: Any, ctx: TaskContext | None) -> None:
        self._running -= 1
        self._dirty = True
        node.finished_at = time.time()
        requests = ctx.requests if ctx is not None else None  # None: no requests made
        if requests is not None and requests.cancel is not None:
            if kind == OK:
                self._results[node.name] = payload
                node.state = SUCCEEDED
            else:
                node.state, node.error = FAILED_STATE, payload
            self._stop(RunStatus.CANCELLED, reason=requests.cancel, by=node.name)
        elif kind == OK:
            self._on_success(node, payload, requests)
        elif kind == FAILED:
            self._on_failure(node, payload)
        else:
            exc = TaskCancelledError(
                f"task {node.name!r} was cancelled: {payload}",
                run_id=self.run_id,
                task_name=node.name,
            )
            self._on_failure(node, exc)

    def _on_success(self, node: Node, value: Any, requests: ControlRequests | None) -> None:
        self._results[node.name] = value
        node.error = None  # a task run again may succeed where it failed before
        if self._emit:
            self._emit(
                ev.TaskSucceeded(
                    run_id=self.run_id,
                    task_name=node.name,
                    attempt=node.attempts,
                    iteration=node.iteration,
                    duration=node.duration,
                )
            )
        if self._debug:
            self._log.debug("task succeeded", task_name=node.name, attempt=node.attempts)
        if requests is not None and requests.terminate is not None:
            node.state = SUCCEEDED
            self._stop(RunStatus.SUCCEEDED, reason=requests.terminate, by=node.name)
            return
        if requests is not None and requests.iterate:
            node.state = WAITING
            node.iteration += 1
            node.iteration_data = requests.iteration_data
            self._enqueue(node)
            return
        node.state = SUCCEEDED
        goto = False
        if requests is not None and requests.next_tasks:
            for target, jump in requests.next_tasks:
                goto = goto or jump
                self._add_next(node, target)
        for group in node.groups:
            assert group.outcomes is not None
            group.outcomes[node.name] = "succeeded"
        if not goto:
            self._complete(node)

    def _on_failure(self, node: Node, exc: BaseException) -> None:
        node.state = CANCELLED_STATE if isinstance(exc, TaskCancelledError) else FAILED_STATE
        node.error = exc
        if not node.groups:
            self._emit_failed(node, exc, tolerated=False)
            self._fail_task(node, exc)
            return
        for group in node.groups:
            assert group.outcomes is not None and group.errors is not None and group.group
            group.outcomes[node.name] = "cancelled" if node.state is CANCELLED_STATE else "failed"
            group.errors[node.name] = exc
            if group.group.policy.fail_fast(GroupOutcomes(group.outcomes)):
                self._emit_failed(node, exc, tolerated=False)
                self._fail_group(group)
                return
        self._emit_failed(node, exc, tolerated=True)
        self._log.warning(
            "task failed; tolerated by its group policy",
            task_name=node.name,
            attempt=node.attempts,
            error=repr(exc),
        )
        self._complete(node)

    def _emit_failed(self, node: Node, exc: BaseException, *, tolerated: bool) -> None:
        if self._emit:
            self._emit(
                ev.TaskFailed(
                    run_id=self.run_id,
                    task_name=node.name,
                    attempt=node.attempts,
                    error=exc,
                    tolerated=tolerated,
                )
            )

    def _complete(self, node: Node) -> None:
        """``node`` is done: release successors whose predecessors are all done.

        A node that completes again (re-run by ``next_task``) runs its idle,
        already released successors again.
        """
        first = not node.counted
        node.counted = True
        for succ in node.successors:
            if first:
                succ.pending -= 1
                if succ.pending == 0:
                    self._release(succ)
            elif succ.pending == 0 and not succ.active:
                self._release(succ)

    def _release(self, node: Node) -> None:
        if node.group is None:
            self._enqueue(node)
            return
        assert node.outcomes is not None
        outcomes = GroupOutcomes(node.outcomes)
        succeeded = node.group.policy.evaluate(outcomes)
        if self._emit:
            self._emit(
                ev.GroupFinished(
                    run_id=self.run_id,
                    task_name=node.name,
                    succeeded=succeeded,
                    outcomes=dict(node.outcomes),
                )
            )
        if not succeeded:
            self._fail_group(node)
            return
        node.state = SUCCEEDED
        self._results[node.name] = {
            name: self._results[name] for name in outcomes.succeeded if name in self._results
        }
        self._complete(node)

    def _add_next(self, parent: Node, target: Task[..., Any] | str) -> None:
        parent.children += 1
        name = target if isinstance(target, str) else target.name
        node = self._nodes.get(name)
        if node is None:
            assert not isinstance(target, str)  # ctx.next_task checked the name
            try:
                check_handlers(target, self._handlers)
                plan = plan_dynamic(target, self._nodes, self.inputs)
            except WorkflowDefinitionError as exc:
                self._fail_task(parent, exc)
                return
            node = self._nodes[name] = Node(name, task=target, plan=plan, dynamic=True)
            if self._emit:
                self._emit(ev.TaskAdded(run_id=self.run_id, task_name=name, by=parent.name))
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
        node.iteration = 1
        node.iteration_data = NO_DATA
        self._enqueue(node)

    # --- checkpoints -----------------------------------------------------------------

    async def save_checkpoint(self) -> None:
        """Snapshot the run now (``ctx.checkpoint()``); running tasks count as pending."""
        assert self._checkpointer is not None
        channel = await self.channel.snapshot()
        # Captured without awaiting in between: a consistent picture of the run.
        snapshot = self._capture(channel)
        self._dirty = False
        await self._checkpointer.save(snapshot)

    async def _checkpoint_or_fail(self) -> None:
        try:
            await self.save_checkpoint()
        except AioflowError as exc:
            error = WorkflowFailedError(
                f"the run could not be checkpointed: {exc}",
                hint=exc.hint,
                run_id=self.run_id,
            )
            error.__cause__ = exc
            self._stop(RunStatus.FAILED, error=error)

    def _capture(self, channel: dict[str, Any]) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT,
            "workflow": self.workflow,
            "fingerprint": self._fingerprint,
            "run_id": self.run_id,
            "inputs": self.inputs,
            "results": dict(self._results),
            "steps": self._steps,
            "channel": channel,
            "nodes": {name: node.snapshot() for name, node in self._nodes.items()},
            "dynamic": {name: n.task for name, n in self._nodes.items() if n.dynamic},
        }

    def restore(self, snapshot: Mapping[str, Any]) -> None:
        """Continue from ``snapshot`` (see :mod:`aioflow.checkpoint`) instead of the start.

        Finished tasks keep their results and do not run again; tasks that were
        pending, running, or failed the run run again from their first attempt.

        Raises:
            CheckpointError: the checkpoint belongs to another workflow or shape.
        """
        if snapshot["workflow"] != self.workflow or snapshot["fingerprint"] != self._fingerprint:
            raise CheckpointError(
                f"the checkpoint was written by workflow {snapshot['workflow']!r} with other "
                f"tasks or edges than workflow {self.workflow!r} has now",
                hint="Resume with the same workflow definition that wrote the checkpoint.",
                run_id=snapshot.get("run_id"),
            )
        self.run_id = snapshot["run_id"]
        self.inputs.clear()
        self.inputs.update(snapshot["inputs"])
        for name, task in snapshot["dynamic"].items():
            plan = plan_dynamic(task, self._nodes, self.inputs)
            self._nodes[name] = Node(name, task=task, plan=plan, dynamic=True)
        self._restored = [
            self._nodes[name]
            for name, entry in snapshot["nodes"].items()
            if self._nodes[name].restore(entry)
        ]
        self._results.update(snapshot["results"])
        self._steps = snapshot["steps"]
        self._restored_channel = snapshot["channel"]

    # --- ending ---------------------------------------------------------------------

    def _fail_task(self, node: Node, exc: BaseException) -> None:
        error: WorkflowFailedError
        if isinstance(exc, CycleLimitExceededError):
            error = copy.copy(exc)  # the run fails with the same kind of error
        else:
            error = WorkflowFailedError(
                f"task {node.name!r} failed: {type(exc).__name__}: {exc}",
                hint=getattr(exc, "hint", None)
                or "See the chained exception (__cause__) for the task's own error.",
                run_id=self.run_id,
                task_name=node.name,
                attempt=node.attempts,
            )
        error.__cause__ = exc
        self._stop(RunStatus.FAILED, error=error)

    def _fail_group(self, group: Node) -> None:
        assert group.group is not None and group.outcomes is not None and group.errors is not None
        group.state = FAILED_STATE
        error = GroupFailedError(
            group.name,
            repr(group.group.policy),
            group.outcomes,
            group.errors,
            run_id=self.run_id,
        )
        error.__cause__ = next(iter(group.errors.values()), None)
        self._stop(RunStatus.FAILED, error=error)

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
            self._log.info("run stopped by task", task_name=by, status=status.value, reason=reason)
        if status is RunStatus.CANCELLED and error is None:
            error = WorkflowCancelledError(reason, run_id=self.run_id, task_name=by)
        self._final = (status, reason, error)

    def _finish(self, started: datetime, duration: float) -> RunResult:
        if self._final is not None:
            status, reason, error = self._final
        elif self._cancel_requested is not None or any(
            n.state is RUNNING or n.state is QUEUED for n in self._nodes.values()
        ):
            # handle.cancel(), or the caller's scope was cancelled: nothing keeps running.
            status = RunStatus.CANCELLED
            reason = self._cancel_requested or "the caller was cancelled"
            error = WorkflowCancelledError(reason, run_id=self.run_id)
        else:
            status, reason, error = RunStatus.SUCCEEDED, None, None
        finished = datetime.now(UTC)
        summary = summarize(self._nodes, self._results)
        if self._emit:
            for name in summary.interrupted:
                self._emit(
                    ev.TaskCancelled(run_id=self.run_id, task_name=name, reason=f"run {status}")
                )
            for name in summary.skipped:
                self._emit(ev.TaskSkipped(run_id=self.run_id, task_name=name, reason="not reached"))
        nodes = self._nodes

        def records() -> dict[str, TaskRecord]:
            # Built on first access: large runs do not pay for records nobody reads.
            return task_records(nodes, summary.statuses)

        self.status = status
        result = RunResult._create(
            run_id=self.run_id,
            workflow=self.workflow,
            status=status,
            results=self._results,
            tasks=records,
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
        if self._emit:
            self._emit(
                ev.RunFinished(run_id=self.run_id, status=status.value, reason=reason, error=error)
            )
        return result
