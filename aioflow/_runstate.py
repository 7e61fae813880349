"""Run state: one :class:`Node` per task or group barrier of a run.

Nodes are owned by the scheduler coroutine (see :mod:`aioflow.engine`). The only
fields an executor writes are the bookkeeping of the execution it is running
(``attempts``, ``duration``, ``started_at``, ``scope``): a node has at most one
execution at a time, and the scheduler reads them only after that execution
reported back.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import anyio

from .errors import RemoteTaskError
from .plan import ParamPlan
from .policies import MemberOutcome
from .results import RunStatistics, TaskRecord, TaskStatus

if TYPE_CHECKING:
    from .graph import ParallelGroup
    from .task import Task

__all__ = [
    "CANCELLED",
    "FAILED",
    "NO_DATA",
    "QUEUED",
    "RUNNING",
    "SUCCEEDED",
    "WAITING",
    "Node",
    "RunView",
    "Summary",
    "as_datetime",
    "statistics",
    "summarize",
    "task_records",
]

NO_DATA: Any = object()  # no next_iteration data pending

# Node states, compared by identity.
WAITING, QUEUED, RUNNING = "waiting", "queued", "running"
SUCCEEDED, FAILED, CANCELLED = "succeeded", "failed", "cancelled"
# Decoded checkpoints map state names back to these very objects.
_STATES = {s: s for s in (WAITING, QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED)}


@dataclass(slots=True, eq=False)
class Node:
    """Run state of one task or group barrier."""

    name: str
    task: Task[..., Any] | None = None
    group: ParallelGroup | None = None
    successors: tuple[Node, ...] = ()
    pending: int = 0  # predecessors that have not completed yet
    plan: tuple[ParamPlan, ...] = ()
    groups: tuple[Node, ...] = ()  # barriers this task belongs to
    outcomes: dict[str, MemberOutcome] | None = None  # group barriers: member outcomes
    errors: dict[str, BaseException] | None = None
    state: str = WAITING
    counted: bool = False  # has this node already counted toward its successors?
    dynamic: bool = False
    children: int = 0  # tasks it added at run time
    executions: int = 0
    iteration: int = 1
    iteration_data: Any = NO_DATA
    attempts: int = 0
    duration: float = 0.0
    started_at: float | None = None  # time.time() of the first start
    finished_at: float | None = None
    error: BaseException | None = None
    scope: anyio.CancelScope | None = None  # cancels the running execution
    cancel_reason: str | None = None

    @property
    def active(self) -> bool:
        return self.state is QUEUED or self.state is RUNNING

    def snapshot(self) -> dict[str, Any]:
        """This node's state as plain data, for a checkpoint."""
        entry: dict[str, Any] = {
            "state": self.state,
            "counted": self.counted,
            "pending": self.pending,
            "executions": self.executions,
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

        A task that was queued, running, or had failed (or been cancelled) without
        its group tolerating it runs again, from its first attempt.
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
        state = _STATES[entry["state"]]
        rerun = state is QUEUED or state is RUNNING
        if (state is FAILED or state is CANCELLED) and not self.counted:
            rerun = self.task is not None
        if rerun:
            self.state = WAITING
            self.error = None
        else:
            self.state = state
        return rerun


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

    def state_of(self, name: str) -> str:
        node = self._nodes.get(name)
        return node.state if node is not None else "unknown"


@dataclass(frozen=True, slots=True)
class Summary:
    """How each task of a finished run ended, and which node is the run's output."""

    statuses: dict[str, TaskStatus]
    interrupted: list[str]  # were running when the run ended
    skipped: list[str]  # never reached
    output: str | None  # the single sink that ran, if there is exactly one


def summarize(nodes: Mapping[str, Node], results: Mapping[str, Any]) -> Summary:
    """Final statuses of a run's tasks, from the states of their nodes."""
    statuses: dict[str, TaskStatus] = {}
    interrupted: list[str] = []
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
        elif state is RUNNING or state is CANCELLED:
            status = TaskStatus.CANCELLED
            if state is RUNNING:
                interrupted.append(node.name)
        elif node.executions and node.name in results:
            status = TaskStatus.SUCCEEDED  # iterating when the run ended; last result kept
        else:
            status = TaskStatus.SKIPPED
            skipped.append(node.name)
        statuses[node.name] = status
        if is_sink and status is not TaskStatus.SKIPPED:
            sinks.append(node.name)
    return Summary(statuses, interrupted, skipped, sinks[0] if len(sinks) == 1 else None)


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


def statistics(nodes: Mapping[str, Node], elapsed: float) -> RunStatistics:
    """Count a run's tasks by state."""
    counts = dict.fromkeys(_STATES, 0)
    executions = total = 0
    for node in nodes.values():
        if node.task is not None:
            total += 1
            counts[node.state] += 1
            executions += node.executions
    return RunStatistics(
        total=total,
        waiting=counts[WAITING],
        queued=counts[QUEUED],
        running=counts[RUNNING],
        succeeded=counts[SUCCEEDED],
        failed=counts[FAILED],
        cancelled=counts[CANCELLED],
        executions=executions,
        elapsed=elapsed,
    )
