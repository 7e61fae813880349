"""RunResult and TaskRecord: what a finished run reports."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Any, final

from ._util import NoPublicConstructor
from .errors import RunStateError

__all__ = ["RunResult", "RunStatistics", "RunStatus", "TaskRecord", "TaskStatus"]


class RunStatus(StrEnum):
    """Status of a run. Compares equal to its string value (``"succeeded"``...)."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class TaskStatus(StrEnum):
    """Final status of one task in a run."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"


@dataclass(frozen=True, slots=True)
class TaskRecord:
    """What happened to one task of a run.

    Attributes:
        attempts: attempts made by the last execution (1 = succeeded first time).
        executions: how many times it ran (iterations and re-runs included).
        duration: wall time of all its attempts, in seconds.
        error: the exception that failed it, if any.
    """

    name: str
    status: TaskStatus
    attempts: int = 0
    executions: int = 0
    duration: float = 0.0
    started_at: datetime | None = None
    finished_at: datetime | None = None
    error: BaseException | None = None
    dynamic: bool = False


@dataclass(frozen=True, slots=True)
class RunStatistics:
    """A snapshot of a run's progress (``handle.statistics()``).

    Attributes:
        total: tasks known to the run (static ones plus those added at run time).
        waiting: not ready yet (predecessors still running, or never reached).
        queued: ready, waiting for a free slot (``max_concurrency``).
        running: executing now (retries and backoffs included).
        succeeded, failed, cancelled: finished, by outcome.
        executions: task executions started so far (iterations and re-runs included).
        elapsed: seconds since the run started.
    """

    total: int
    waiting: int
    queued: int
    running: int
    succeeded: int
    failed: int
    cancelled: int
    executions: int
    elapsed: float

    @property
    def finished(self) -> int:
        return self.succeeded + self.failed + self.cancelled


@final
class RunResult(metaclass=NoPublicConstructor):
    """The outcome of a run: status, results by task name, per-task records.

    ``result["total"]`` is the result of task ``total``; ``result.output`` is the
    result of the workflow's single sink task.
    """

    __slots__ = (
        "_output_name",
        "_records",
        "_tasks",
        "duration",
        "error",
        "finished_at",
        "reason",
        "results",
        "run_id",
        "started_at",
        "status",
        "workflow",
    )

    def __init__(
        self,
        *,
        run_id: str,
        workflow: str,
        status: RunStatus,
        results: dict[str, Any],
        tasks: Callable[[], dict[str, TaskRecord]],
        started_at: datetime,
        finished_at: datetime,
        duration: float,
        output_name: str | None,
        reason: str | None = None,
        error: BaseException | None = None,
    ) -> None:
        self.run_id = run_id
        self.workflow = workflow
        self.status = status
        self.results: Mapping[str, Any] = MappingProxyType(results)
        self._records = tasks
        self._tasks: Mapping[str, TaskRecord] | None = None
        self.started_at = started_at
        self.finished_at = finished_at
        self.duration = duration
        self.reason = reason
        self.error = error
        self._output_name = output_name

    @property
    def tasks(self) -> Mapping[str, TaskRecord]:
        """Per-task records (status, attempts, executions, duration, error), by name."""
        if self._tasks is None:
            self._tasks = MappingProxyType(self._records())
        return self._tasks

    @property
    def succeeded(self) -> bool:
        return self.status is RunStatus.SUCCEEDED

    @property
    def output(self) -> Any:
        """The result of the workflow's single sink task.

        Raises:
            RunStateError: the workflow has several sinks (use ``result[name]``), or
                the sink produced no result.
        """
        if self._output_name is None:
            raise RunStateError(
                "this run has no single sink task, so no single output",
                hint="Read a task's result by name: result['task_name'].",
                run_id=self.run_id,
            )
        if self._output_name not in self.results:
            raise RunStateError(
                f"the sink task {self._output_name!r} produced no result "
                f"(its status: {self.tasks[self._output_name].status})",
                hint="Check result.status and result.tasks for what happened.",
                run_id=self.run_id,
                task_name=self._output_name,
            )
        return self.results[self._output_name]

    def __getitem__(self, name: str) -> Any:
        try:
            return self.results[name]
        except KeyError:
            known = self.tasks.get(name)
            why = f"its status is {known.status}" if known else "the run has no such task"
            raise KeyError(f"no result for {name!r}: {why}") from None

    def __contains__(self, name: object) -> bool:
        return name in self.results

    def __iter__(self) -> Iterator[str]:
        return iter(self.results)

    def get(self, name: str, default: Any = None) -> Any:
        return self.results.get(name, default)

    def __reduce__(self) -> tuple[Any, ...]:
        # Records are materialised: a pickled result does not need the run's nodes.
        fields = {
            "run_id": self.run_id,
            "workflow": self.workflow,
            "status": self.status,
            "results": dict(self.results),
            "tasks": dict(self.tasks),
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "duration": self.duration,
            "output_name": self._output_name,
            "reason": self.reason,
        }
        return (_rebuild_result, (fields,), {"error": self.error})

    def __setstate__(self, state: Mapping[str, Any]) -> None:
        self.error = state["error"]

    def __repr__(self) -> str:
        return (
            f"<RunResult {self.workflow} run_id={self.run_id} status={self.status.value} "
            f"duration={self.duration:.3f}s>"
        )


def _rebuild_result(fields: dict[str, Any]) -> RunResult:
    records: dict[str, TaskRecord] = fields.pop("tasks")
    return RunResult._create(tasks=lambda: records, error=None, **fields)
