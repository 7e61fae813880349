"""Typed run events, as yielded by ``RunHandle.events()``.

Every event has ``run_id``, ``task_name`` (None for run-level events) and ``time``
(an aware UTC datetime). Events are frozen; consumers may keep them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

__all__ = [
    "Event",
    "GroupFinished",
    "RunFinished",
    "RunStarted",
    "TaskAdded",
    "TaskCancelled",
    "TaskFailed",
    "TaskRetrying",
    "TaskSkipped",
    "TaskStarted",
    "TaskSucceeded",
]


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """Base of all events."""

    run_id: str
    task_name: str | None = None
    time: datetime = field(default_factory=_now)


@dataclass(frozen=True, slots=True, kw_only=True)
class RunStarted(Event):
    """The run began; ``total_tasks`` static tasks are planned."""

    workflow: str
    total_tasks: int


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskAdded(Event):
    """A new task was added at run time (``ctx.next_task`` with a task the run lacked)."""

    by: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskStarted(Event):
    """An attempt of a task started."""

    attempt: int
    iteration: int = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskSucceeded(Event):
    """A task execution returned; ``duration`` is the attempt's wall time in seconds."""

    attempt: int
    iteration: int = 1
    duration: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskRetrying(Event):
    """An attempt failed and will be retried after ``delay`` seconds."""

    attempt: int
    error: BaseException
    delay: float


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskFailed(Event):
    """A task failed for good (retries exhausted or not retryable)."""

    attempt: int
    error: BaseException
    tolerated: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskCancelled(Event):
    """A running task was cancelled; ``reason`` says why."""

    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskSkipped(Event):
    """A task never ran (its branch was skipped by a goto, or the run ended first)."""

    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupFinished(Event):
    """A parallel group's policy gave its verdict (``task_name`` is the group's name)."""

    succeeded: bool
    outcomes: dict[str, str]


@dataclass(frozen=True, slots=True, kw_only=True)
class RunFinished(Event):
    """The run ended: ``status`` is ``"succeeded"``, ``"failed"`` or ``"cancelled"``."""

    status: str
    reason: str | None = None
    error: BaseException | None = None
