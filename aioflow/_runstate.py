"""Run state: one :class:`Node` per task or group barrier of a run, and what is
computed from the nodes (statistics, final statuses, task records).

Nodes are owned by the scheduler coroutine (see :mod:`aioflow.engine`): nothing
else writes them. Executions (:class:`~aioflow.backends.base.Execution`) are the
messages between the scheduler and a backend; a node only refers to the one it
has in flight.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from .errors import RemoteTaskError
from .plan import ParamPlan, Source
from .policies import MemberOutcome
from .results import RunStatistics, TaskRecord, TaskStatus

if TYPE_CHECKING:
    from .backends.base import Execution, SessionStatistics
    from .graph import ParallelGroup
    from .task import Task

__all__ = [
    "NO_DATA",
    "Node",
    "NodeState",
    "RunView",
    "Summary",
    "as_datetime",
    "context_params",
    "statistics",
    "summarize",
    "task_records",
]

NO_DATA: Any = object()  # no next_iteration data pending


class NodeState(enum.Enum):
    """Where a node is. Compared by identity (``node.state is NodeState.READY``)."""

    WAITING = "waiting"  # predecessors not done (or never reached)
    READY = "queued"  # released; dispatched after the current batch
    DISPATCHED = "running"  # an execution is with the backend (queued or running there)
    BACKOFF = "backoff"  # an attempt failed; the next waits for its retry delay
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


WAITING, READY, DISPATCHED, BACKOFF = (
    NodeState.WAITING,
    NodeState.READY,
    NodeState.DISPATCHED,
    NodeState.BACKOFF,
)
SUCCEEDED, FAILED, CANCELLED = NodeState.SUCCEEDED, NodeState.FAILED, NodeState.CANCELLED


@dataclass(slots=True, eq=False)
class Node:
    """Run state of one task or group barrier."""

    name: str
    task: Task[..., Any] | None = None
    group: ParallelGroup | None = None
    successors: tuple[Node, ...] = ()
    pending: int = 0  # predecessors that have not completed yet
    plan: tuple[ParamPlan, ...] = ()
    context: tuple[str | int, ...] = ()  # parameters that receive the TaskContext
    groups: tuple[Node, ...] = ()  # barriers this task belongs to
    outcomes: dict[str, MemberOutcome] | None = None  # group barriers: member outcomes
    errors: dict[str, BaseException] | None = None
    state: NodeState = WAITING
    counted: bool = False  # has this node counted toward its successors (this round)?
    dynamic: bool = False
    children: int = 0  # tasks it added at run time
    executions: int = 0  # executions that started (iterations and re-runs included)
    iteration: int = 1
    iteration_data: Any = NO_DATA
    attempts: int = 0  # attempts of the last execution that started
    duration: float = 0.0  # wall time of every attempt that ran
    started_at: float | None = None  # time.time() of the first start
    finished_at: float | None = None
    error: BaseException | None = None
    current: Execution | None = None  # the execution in flight
    cancel_reason: str | None = None  # cancel_task() while waiting to retry

    @property
    def active(self) -> bool:
        state = self.state
        return state is READY or state is DISPATCHED or state is BACKOFF

    def snapshot(self) -> dict[str, Any]:
        """This node's state as plain data, for a checkpoint."""
        current = self.current
        running = int(current is not None and current.started and current.attempt == 1)
        entry: dict[str, Any] = {
            "state": self.state.value,
            "counted": self.counted,
            "pending": self.pending,
            # An execution running now has started: it counts (it will run again).
            "executions": self.executions + running,
            "iteration": self.iteration,
            "attempts": self.attempts,
            "duration": self.duration,
            "children": self.children,
            "outcomes": self.outcomes,
            "error": None
            if self.error is None
            else (type(self.error).__qualname__, str(self.error)),
        }
        if self.iteration_data is not NO_DATA:
            entry["data"] = self.iteration_data
        return entry

    def restore(self, entry: Mapping[str, Any]) -> bool:
        """Take the state of a checkpoint ``entry``; True if the node must run again.

        A task that was queued, running, waiting to retry, or had failed (or been
        cancelled) without its group tolerating it runs again, from its first attempt.
        """
        self.counted = entry["counted"]
        self.pending = entry["pending"]
        self.executions = entry["executions"]
        self.iteration = entry["iteration"]
        self.attempts = entry["attempts"]
        self.duration = entry["duration"]
        self.children = entry["children"]
        self.iteration_data = entry.get("data", NO_DATA)
        if entry["outcomes"] is not None:
            self.outcomes = entry["outcomes"]
        if entry["error"] is not None:
            self.error = RemoteTaskError(*entry["error"], task_name=self.name)
        state = NodeState(entry["state"])
        rerun = state is READY or state is DISPATCHED or state is BACKOFF
        if (state is FAILED or state is CANCELLED) and not self.counted:
            rerun = self.task is not None
        if rerun:
            self.state = WAITING
            self.error = None
        else:
            self.state = state
        return rerun


def context_params(plan: tuple[ParamPlan, ...]) -> tuple[str | int, ...]:
    """The parameters of ``plan`` that take the TaskContext: names, or positions."""
    found: list[str | int] = []
    position = 0
    for p in plan:
        if p.source is Source.CONTEXT:
            found.append(position if p.positional else p.name)
        if p.positional and p.source is not Source.DEFAULT:
            position += 1
    return tuple(found)


def as_datetime(timestamp: float | None) -> datetime | None:
    return None if timestamp is None else datetime.fromtimestamp(timestamp, UTC)


class RunView:
    """What task contexts may read of the run (read-only views)."""

    __slots__ = ("_nodes", "inputs", "results")

    def __init__(
        self, nodes: Mapping[str, Node], results: Mapping[str, Any], inputs: Mapping[str, Any]
    ) -> None:
        self._nodes = nodes
        self.results = results
        self.inputs = inputs

    def has_node(self, name: str) -> bool:
        return name in self._nodes

    def node_names(self) -> list[str]:
        """The names of the run's tasks and groups (for views in other processes)."""
        return list(self._nodes)

    def state_of(self, name: str) -> str:
        node = self._nodes.get(name)
        return node.state.value if node is not None else "unknown"


@dataclass(frozen=True, slots=True)
class Summary:
    """How each task of a finished run ended, and which node is the run's output."""

    statuses: dict[str, TaskStatus]
    skipped: list[str]  # never reached, or never started
    output: str | None  # the single sink that ran, if there is exactly one


def summarize(nodes: Mapping[str, Node], results: Mapping[str, Any]) -> Summary:
    """Final statuses of a run's tasks, from the states of their nodes."""
    statuses: dict[str, TaskStatus] = {}
    skipped: list[str] = []
    sinks: list[str] = []
    for node in nodes.values():
        is_sink = not node.successors and not node.children
        state = node.state
        if node.task is None:
            if is_sink and state is SUCCEEDED:
                sinks.append(node.name)
            continue
        if state is SUCCEEDED:
            status = TaskStatus.SUCCEEDED
        elif state is FAILED:
            status = TaskStatus.FAILED
        elif state is CANCELLED or state is DISPATCHED or state is BACKOFF:
            status = TaskStatus.CANCELLED
        elif node.executions and node.name in results:
            status = TaskStatus.SUCCEEDED  # iterating when the run ended; last result kept
        else:
            status = TaskStatus.SKIPPED
            skipped.append(node.name)
        statuses[node.name] = status
        if is_sink and status is not TaskStatus.SKIPPED:
            sinks.append(node.name)
    return Summary(statuses, skipped, sinks[0] if len(sinks) == 1 else None)


def task_records(
    nodes: Mapping[str, Node], statuses: Mapping[str, TaskStatus]
) -> dict[str, TaskRecord]:
    """One :class:`~aioflow.TaskRecord` per task, in the run's order."""
    return {
        name: TaskRecord(
            name=name,
            status=status,
            attempts=(node := nodes[name]).attempts,
            executions=node.executions,
            duration=node.duration,
            started_at=as_datetime(node.started_at),
            finished_at=as_datetime(node.finished_at),
            error=node.error,
            dynamic=node.dynamic,
        )
        for name, status in statuses.items()
    }


def statistics(
    nodes: Mapping[str, Node], backend: SessionStatistics | None, elapsed: float
) -> RunStatistics:
    """Count a run's tasks by state; ``backend`` tells queued from running executions."""
    counts = dict.fromkeys(NodeState, 0)
    executions = total = 0
    for node in nodes.values():
        if node.task is not None:
            total += 1
            counts[node.state] += 1
            executions += node.executions
    in_backend_queue = backend.queued if backend is not None else 0
    executing = max(0, counts[DISPATCHED] - in_backend_queue)
    return RunStatistics(
        total=total,
        waiting=counts[WAITING],
        queued=counts[READY] + in_backend_queue,
        running=executing + counts[BACKOFF],
        succeeded=counts[SUCCEEDED],
        failed=counts[FAILED],
        cancelled=counts[CANCELLED],
        executions=executions + executing,
        elapsed=elapsed,
    )
