"""The scheduler: runs one workflow run on the current event loop.

Concurrency invariants (why there are no locks):

* All scheduling state (``_Node`` fields, ``_results``, counters, the ready heap)
  is mutated only by the scheduler coroutine, :meth:`Scheduler._schedule`.
* Task executions run in *executor* tasks, children of the run's task group,
  served by an :class:`~aioflow._executors.ExecutorPool` (a priority queue; an
  executor is spawned only when work waits and none is free, up to
  ``max_concurrency``), so a run spawns as many anyio tasks as its peak
  concurrency needs, not one per task. Each execution runs under its own cancel
  scope (timeout, ``cancel_task``) and reports back with one message on a memory
  object stream. Executors never touch scheduling state.
* Cancelling the run cancels the task group: every execution is cancelled and
  awaited (threads included) before :meth:`Scheduler.execute` returns.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel
from anyio.streams.memory import MemoryObjectSendStream

from . import events as ev
from ._executors import ExecutorPool
from .channels import Channel
from .checkpoint import CHECKPOINT_FORMAT, Checkpointer, fingerprint
from .context import ControlRequests, TaskContext, _set_current
from .errors import (
    AioflowError,
    CheckpointError,
    CycleLimitExceededError,
    GroupFailedError,
    MaxStepsExceededError,
    MissingUpstreamResultError,
    RemoteTaskError,
    TaskCancelledError,
    TaskTimeoutError,
    UnknownTaskError,
    WorkflowCancelledError,
    WorkflowDefinitionError,
    WorkflowFailedError,
)
from .graph import ParallelGroup, TaskGraph
from .handlers import Handler
from .observability.logging import get_logger
from .plan import ParamPlan, Source, check_handlers, plan_dynamic, plan_static
from .policies import GroupOutcomes, MemberOutcome
from .results import RunResult, RunStatus, TaskRecord, TaskStatus

if TYPE_CHECKING:
    from .task import Task

__all__ = ["DEFAULT_MAX_CONCURRENCY", "Scheduler"]

_NO_DATA: Any = object()
DEFAULT_MAX_CONCURRENCY = 1000
_OK, _FAILED, _CANCELLED = 0, 1, 2

# Node states.
_WAITING, _QUEUED, _RUNNING = "waiting", "queued", "running"
_SUCCEEDED, _FAILED_S, _CANCELLED_S = "succeeded", "failed", "cancelled"
# States are compared by identity; decoded checkpoints map back to these objects.
_STATES = {s: s for s in (_WAITING, _QUEUED, _RUNNING, _SUCCEEDED, _FAILED_S, _CANCELLED_S)}


@dataclass(slots=True, eq=False)
class _Node:
    """Run state of one task or group barrier. Owned by the scheduler coroutine."""

    name: str
    task: Task[..., Any] | None = None
    group: ParallelGroup | None = None
    successors: tuple[_Node, ...] = ()
    pending: int = 0  # predecessors that have not completed yet
    plan: tuple[ParamPlan, ...] = ()
    groups: tuple[_Node, ...] = ()  # barriers this task belongs to
    outcomes: dict[str, MemberOutcome] | None = None  # group barriers: member outcomes
    errors: dict[str, BaseException] | None = None
    state: str = _WAITING
    counted: bool = False  # has this node already counted toward its successors?
    dynamic: bool = False
    children: int = 0  # tasks it added at run time
    executions: int = 0
    iteration: int = 1
    iteration_data: Any = _NO_DATA
    attempts: int = 0
    duration: float = 0.0
    started_at: float | None = None  # time.time() of the first start
    finished_at: float | None = None
    error: BaseException | None = None
    scope: anyio.CancelScope | None = None
    cancel_reason: str | None = None

    @property
    def active(self) -> bool:
        return self.state is _QUEUED or self.state is _RUNNING


def _as_datetime(timestamp: float | None) -> datetime | None:
    return None if timestamp is None else datetime.fromtimestamp(timestamp, UTC)


class _RunView:
    """What task contexts may read of the run (read-only views)."""

    __slots__ = ("_nodes", "inputs", "results")

    def __init__(
        self, nodes: dict[str, _Node], results: dict[str, Any], inputs: Mapping[str, Any]
    ) -> None:
        self._nodes = nodes
        self.results = results
        self.inputs = inputs

    def has_node(self, name: str) -> bool:
        return name in self._nodes


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
        self._nodes: dict[str, _Node] = {}
        self._view = _RunView(self._nodes, self._results, self.inputs)
        self._build(graph)
        self._static_tasks = len(graph.tasks)
        self._checkpointer = checkpointer
        self._fingerprint = fingerprint(graph) if checkpointer is not None else ""
        self._dirty = False  # something finished since the last checkpoint
        self._restored: list[_Node] | None = None
        self._restored_channel: dict[str, Any] | None = None
        self._running = 0  # executions handed out and not reported back
        self._queued: list[_Node] = []  # released, launched after the current batch
        self._steps = 0
        self._final: tuple[RunStatus, str | None, BaseException | None] | None = None
        self._send: MemoryObjectSendStream[tuple[int, _Node, Any, TaskContext | None]] | None = None
        self._pool: ExecutorPool[_Node] | None = None
        self._scope: anyio.CancelScope | None = None
        self._cancel_requested: str | None = None
        self._log = get_logger("engine", run_id=run_id, workflow=workflow)
        self._debug = self._log.isEnabledFor(logging.DEBUG)
        self.status = RunStatus.PENDING

    # --- planning -------------------------------------------------------------------

    def _build(self, graph: TaskGraph) -> None:
        order = graph.validate()
        position = {name: i for i, name in enumerate(order)}
        nodes = self._nodes
        tasks = graph.tasks
        for name in order:
            task = tasks.get(name)
            if task is not None:
                check_handlers(task, self._handlers)
                plan = plan_static(task, graph, position, self.inputs) if task.params else ()
                nodes[name] = _Node(name, task=task, plan=plan)
            else:
                group = graph.groups[name]
                outcomes: dict[str, MemberOutcome] = dict.fromkeys(group.member_names, "pending")
                nodes[name] = _Node(name, group=group, outcomes=outcomes, errors={})
        # Nodes with the same successors share one tuple (every member of a group).
        shared: dict[tuple[str, ...], tuple[_Node, ...]] = {}
        for name, node in nodes.items():
            names = tuple(graph.successors[name])
            succ = shared.get(names)
            if succ is None:
                succ = shared[names] = tuple(nodes[s] for s in names)
            node.successors = succ
            node.pending = len(graph.predecessors[name])
            if node.group is not None:
                for member in node.group.member_names:
                    nodes[member].groups += (node,)

    # --- public control -------------------------------------------------------------

    @property
    def results(self) -> Mapping[str, Any]:
        return self._results

    def cancel(self, reason: str | None = None) -> None:
        """Cancel the run: every running task is cancelled and awaited."""
        if self._cancel_requested is None:
            self._cancel_requested = reason or "cancelled"
        if self._scope is not None:
            self._scope.cancel()

    def cancel_task(self, name: str, reason: str | None = None) -> bool:
        """Cancel one running task; it counts as failed (TaskCancelledError). True if it ran."""
        node = self._nodes.get(name)
        if node is None:
            raise UnknownTaskError(f"the run has no task named {name!r}", run_id=self.run_id)
        if node.state is not _RUNNING or node.scope is None:
            return False
        node.cancel_reason = reason or "cancelled by request"
        node.scope.cancel()
        return True

    # --- the run ------------------------------------------------------------------

    async def execute(self) -> RunResult:
        """Run to the end and return the result (it never raises for task failures)."""
        started = datetime.now(UTC)
        t0 = time.perf_counter()
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
                send, receive = anyio.create_memory_object_stream[
                    tuple[int, _Node, Any, TaskContext | None]
                ](math.inf)
                self._send = send
                async with send, receive, anyio.create_task_group() as tg:
                    self._pool = ExecutorPool(
                        tg, self._execute, self._on_cancelled, self._max_concurrency
                    )
                    await self._schedule(receive)
                    if self._final is not None:
                        tg.cancel_scope.cancel()  # ended early: cancel what still runs
                    self._pool.close()  # idle executors end
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

    def _enqueue(self, node: _Node) -> None:
        if node.active or self._final is not None:
            return
        node.state = _QUEUED
        self._queued.append(node)

    def _launch_queued(self) -> None:
        # Launched only after a batch was handled (and checkpointed): a checkpoint is
        # durable before anything that follows the tasks it records starts.
        queued, self._queued = self._queued, []
        for node in queued:
            if self._final is not None:
                return
            self._launch(node)

    def _launch(self, node: _Node) -> None:
        self._steps += 1
        if self._max_steps is not None and self._steps > self._max_steps:
            error = MaxStepsExceededError(self._max_steps, run_id=self.run_id)
            self._stop(RunStatus.FAILED, error=error)
            return
        task = node.task
        assert task is not None and self._pool is not None
        node.state = _RUNNING
        node.executions += 1
        node.cancel_reason = None
        self._running += 1
        self._pool.submit(node, task.options.priority)

    # --- one task execution (runs concurrently; never mutates scheduling state) ------

    def _arguments(self, node: _Node, ctx: TaskContext) -> tuple[tuple[Any, ...], dict[str, Any]]:
        task = node.task
        assert task is not None
        args: list[Any] = []
        kwargs: dict[str, Any] = {}
        results = self._results
        for p in node.plan:
            if p.source is Source.UPSTREAM:
                if p.name in results:
                    value = results[p.name]
                elif p.name in self.inputs:
                    value = self.inputs[p.name]
                elif p.has_default:
                    continue
                else:
                    raise MissingUpstreamResultError(
                        f"task {node.name!r} needs the result of {p.name!r}, which has none "
                        f"(status: {self._nodes[p.name].state})",
                        run_id=self.run_id,
                        task_name=node.name,
                    )
            elif p.source is Source.CONTEXT:
                value = ctx
            elif p.source is Source.BOUND:
                value = task.bound[p.name]
            elif p.source is Source.INPUT:
                value = self.inputs[p.name]
            else:
                continue
            if p.positional:
                args.append(value)
            else:
                kwargs[p.name] = value
        if node.iteration_data is not _NO_DATA:
            kwargs["data"] = node.iteration_data
        return tuple(args), kwargs

    async def _execute(self, node: _Node, scope: anyio.CancelScope) -> None:
        """Run one task execution (all its attempts) and report the outcome.

        ``scope`` is the executor's cancel scope, which belongs to this execution
        while it runs: ``cancel_task`` cancels it (or the attempt's deadline scope,
        for tasks with a timeout) and the pool reports the cancellation.
        """
        task = node.task
        send = self._send
        assert task is not None and send is not None
        # Made here, when the execution starts, not when it is queued: a wide fan-out
        # does not keep a context alive for every task waiting for an executor.
        ctx = TaskContext._create(
            run_id=self.run_id,
            task_name=node.name,
            channel=self.channel,
            run=self._view,
            iteration=node.iteration,
            max_cycles=task.options.max_cycles,
            save_checkpoint=self.save_checkpoint if self._checkpointer is not None else None,
        )
        _set_current(ctx)
        if node.started_at is None:
            node.started_at = time.time()
        node.scope = scope
        try:
            args, kwargs = self._arguments(node, ctx)
        except Exception as exc:
            node.scope = None
            send.send_nowait((_FAILED, node, exc, ctx))
            return
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
                with anyio.CancelScope(
                    deadline=anyio.current_time() + options.timeout
                ) as attempt_scope:
                    node.scope = attempt_scope
                    try:
                        value = await handler.execute(task, args, kwargs, ctx)
                    except Exception as exc:
                        error = exc
                node.scope = scope
                if attempt_scope.cancelled_caught:
                    if node.cancel_reason is not None:
                        node.scope = None
                        send.send_nowait((_CANCELLED, node, node.cancel_reason, ctx))
                        return
                    error = TaskTimeoutError(
                        node.name, options.timeout, run_id=self.run_id, attempt=attempt
                    )
            node.duration += time.perf_counter() - t0
            if error is None:
                node.scope = None
                send.send_nowait((_OK, node, value, ctx))
                return
            requests = ctx.requests
            if (
                requests is None or (requests.cancel is None and requests.terminate is None)
            ) and options.retries.should_retry(attempt, error):
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
            send.send_nowait((_FAILED, node, error, ctx))
            return

    def _on_cancelled(self, node: _Node) -> None:
        """The pool caught the cancellation of an execution's scope (``cancel_task``)."""
        node.scope = None
        assert self._send is not None
        self._send.send_nowait((_CANCELLED, node, node.cancel_reason or "cancelled", None))

    # --- reacting to outcomes (scheduler coroutine only) ----------------------------

    def _on_message(self, kind: int, node: _Node, payload: Any, ctx: TaskContext | None) -> None:
        self._running -= 1
        self._dirty = True
        node.finished_at = time.time()
        requests = ctx.requests if ctx is not None else None  # None: no requests made
        if requests is not None and requests.cancel is not None:
            if kind == _OK:
                self._results[node.name] = payload
            node.state = _SUCCEEDED if kind == _OK else _FAILED_S
            self._stop(RunStatus.CANCELLED, reason=requests.cancel, by=node.name)
        elif kind == _OK:
            self._on_success(node, payload, requests)
        elif kind == _FAILED:
            self._on_failure(node, payload)
        else:
            exc = TaskCancelledError(
                f"task {node.name!r} was cancelled: {payload}",
                run_id=self.run_id,
                task_name=node.name,
            )
            self._on_failure(node, exc)

    def _on_success(self, node: _Node, value: Any, requests: ControlRequests | None) -> None:
        self._results[node.name] = value
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
            node.state = _SUCCEEDED
            self._stop(RunStatus.SUCCEEDED, reason=requests.terminate, by=node.name)
            return
        if requests is not None and requests.iterate:
            node.state = _WAITING
            node.iteration += 1
            node.iteration_data = requests.iteration_data
            self._enqueue(node)
            return
        node.state = _SUCCEEDED
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

    def _on_failure(self, node: _Node, exc: BaseException) -> None:
        node.state = _CANCELLED_S if isinstance(exc, TaskCancelledError) else _FAILED_S
        node.error = exc
        if not node.groups:
            self._emit_failed(node, exc, tolerated=False)
            self._fail_task(node, exc)
            return
        for group in node.groups:
            assert group.outcomes is not None and group.errors is not None and group.group
            group.outcomes[node.name] = "cancelled" if node.state is _CANCELLED_S else "failed"
            group.errors[node.name] = exc
            if group.group.policy.fail_fast(GroupOutcomes(group.outcomes)):
                self._emit_failed(node, exc, tolerated=False)
                self._fail_group(group)
                return
        self._emit_failed(node, exc, tolerated=True)
        self._log.warning(
            "task failed; tolerated by its group policy", task_name=node.name, error=repr(exc)
        )
        self._complete(node)

    def _emit_failed(self, node: _Node, exc: BaseException, *, tolerated: bool) -> None:
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

    def _complete(self, node: _Node) -> None:
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

    def _release(self, node: _Node) -> None:
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
        node.state = _SUCCEEDED
        self._results[node.name] = {
            name: self._results[name] for name in outcomes.succeeded if name in self._results
        }
        self._complete(node)

    def _add_next(self, parent: _Node, target: Task[..., Any] | str) -> None:
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
            node = self._nodes[name] = _Node(name, task=target, plan=plan, dynamic=True)
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
        node.iteration_data = _NO_DATA
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
        nodes: dict[str, dict[str, Any]] = {}
        for name, n in self._nodes.items():
            entry: dict[str, Any] = {
                "state": n.state,
                "counted": n.counted,
                "pending": n.pending,
                "executions": n.executions,
                "iteration": n.iteration,
                "attempts": n.attempts,
                "duration": n.duration,
                "children": n.children,
                "outcomes": n.outcomes,
                "error": None if n.error is None else (type(n.error).__qualname__, str(n.error)),
            }
            if n.iteration_data is not _NO_DATA:
                entry["data"] = n.iteration_data
            nodes[name] = entry
        return {
            "format": CHECKPOINT_FORMAT,
            "workflow": self.workflow,
            "fingerprint": self._fingerprint,
            "run_id": self.run_id,
            "inputs": self.inputs,
            "results": dict(self._results),
            "steps": self._steps,
            "channel": channel,
            "nodes": nodes,
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
            self._nodes[name] = _Node(name, task=task, plan=plan, dynamic=True)
        self._restored = []
        for name, entry in snapshot["nodes"].items():
            node = self._nodes[name]
            node.counted = entry["counted"]
            node.pending = entry["pending"]
            node.executions = entry["executions"]
            node.iteration = entry["iteration"]
            node.attempts = entry["attempts"]
            node.duration = entry["duration"]
            node.children = entry["children"]
            node.iteration_data = entry.get("data", _NO_DATA)
            if entry["outcomes"] is not None:
                node.outcomes = entry["outcomes"]
            if entry["error"] is not None:
                node.error = RemoteTaskError(*entry["error"], task_name=name)
            state = _STATES[entry["state"]]
            rerun = state in (_QUEUED, _RUNNING) or (
                state in (_FAILED_S, _CANCELLED_S) and not node.counted and node.task is not None
            )
            if rerun:
                node.state = _WAITING
                node.error = None
                self._restored.append(node)
            else:
                node.state = state
        self._results.update(snapshot["results"])
        self._steps = snapshot["steps"]
        self._restored_channel = snapshot["channel"]

    # --- ending ---------------------------------------------------------------------

    def _fail_task(self, node: _Node, exc: BaseException) -> None:
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

    def _fail_group(self, group: _Node) -> None:
        assert group.group is not None and group.outcomes is not None and group.errors is not None
        group.state = _FAILED_S
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
            n.state is _RUNNING or n.state is _QUEUED for n in self._nodes.values()
        ):
            # handle.cancel(), or the caller's scope was cancelled: nothing keeps running.
            status = RunStatus.CANCELLED
            reason = self._cancel_requested or "the caller was cancelled"
            error = WorkflowCancelledError(reason, run_id=self.run_id)
        else:
            status, reason, error = RunStatus.SUCCEEDED, None, None
        finished = datetime.now(UTC)
        statuses: dict[str, TaskStatus] = {}
        output_candidates: list[str] = []
        for node in self._nodes.values():
            is_sink = not node.successors and not node.children
            if node.task is None:
                if is_sink and node.state is _SUCCEEDED:
                    output_candidates.append(node.name)
                continue
            task_status = (
                TaskStatus.SUCCEEDED
                if node.state is _SUCCEEDED
                else self._final_status(node, status)
            )
            statuses[node.name] = task_status
            if is_sink and task_status is not TaskStatus.SKIPPED:
                output_candidates.append(node.name)

        def records() -> dict[str, TaskRecord]:
            # Built on first access: large runs do not pay for records nobody reads.
            return {
                name: TaskRecord(
                    name=name,
                    status=task_status,
                    attempts=(node := self._nodes[name]).attempts,
                    executions=node.executions,
                    duration=node.duration,
                    started_at=_as_datetime(node.started_at),
                    finished_at=_as_datetime(node.finished_at),
                    error=node.error,
                    dynamic=node.dynamic,
                )
                for name, task_status in statuses.items()
            }

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
            output_name=output_candidates[0] if len(output_candidates) == 1 else None,
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

    def _final_status(self, node: _Node, run_status: RunStatus) -> TaskStatus:
        state = node.state
        if state is _SUCCEEDED:
            return TaskStatus.SUCCEEDED
        if state is _FAILED_S:
            return TaskStatus.FAILED
        if state is _RUNNING or state is _CANCELLED_S:
            if state is _RUNNING and self._emit:
                self._emit(
                    ev.TaskCancelled(
                        run_id=self.run_id, task_name=node.name, reason=f"run {run_status.value}"
                    )
                )
            return TaskStatus.CANCELLED
        if node.executions and node.name in self._results:
            return TaskStatus.SUCCEEDED  # iterating when the run ended; last result kept
        if self._emit:
            self._emit(
                ev.TaskSkipped(run_id=self.run_id, task_name=node.name, reason="not reached")
            )
        return TaskStatus.SKIPPED
