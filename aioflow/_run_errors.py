"""The errors a run fails with, built from the task, group or policy that failed it."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import TYPE_CHECKING

from ._runstate import CANCELLED, DISPATCHED, FAILED, SUCCEEDED, Node
from .errors import CycleLimitExceededError, GroupFailedError, WorkflowFailedError

if TYPE_CHECKING:
    from .policies import MemberOutcome

__all__ = ["group_failed", "internal_error", "policy_failed", "task_failed"]


def task_failed(run_id: str, node: Node, exc: BaseException) -> WorkflowFailedError:
    """The run's error when task ``node`` failed with ``exc`` (chained)."""
    error: WorkflowFailedError
    if isinstance(exc, CycleLimitExceededError):
        error = copy.copy(exc)  # the run fails with the same kind of error
    else:
        error = WorkflowFailedError(
            f"task {node.name!r} failed: {type(exc).__name__}: {exc}",
            hint=getattr(exc, "hint", None)
            or "See the chained exception (__cause__) for the task's own error.",
            run_id=run_id,
            task_name=node.name,
            attempt=node.attempts,
        )
    error.__cause__ = exc
    return error


def group_failed(run_id: str, group: Node, nodes: Mapping[str, Node]) -> GroupFailedError:
    """The error of a failed group; members still pending say how they ended."""
    assert group.group is not None and group.outcomes is not None and group.errors is not None
    outcomes: dict[str, MemberOutcome] = dict(group.outcomes)
    for member, outcome in outcomes.items():
        if outcome == "pending":  # stopped with the group
            state = nodes[member].state
            if state is CANCELLED or state is DISPATCHED:
                outcomes[member] = "cancelled"
            elif state is SUCCEEDED:
                outcomes[member] = "succeeded"
            elif state is FAILED:
                outcomes[member] = "failed"
    error = GroupFailedError(
        group.name, repr(group.group.policy), outcomes, group.errors, run_id=run_id
    )
    error.__cause__ = next(iter(group.errors.values()), None)
    return error


def policy_failed(run_id: str, group: Node, exc: Exception) -> WorkflowFailedError:
    """The run's error when the policy of ``group`` raised ``exc``."""
    assert group.group is not None
    error = WorkflowFailedError(
        f"the policy {group.group.policy!r} of group {group.name!r} raised "
        f"{type(exc).__name__}: {exc}",
        hint="Fix the GroupPolicy: evaluate() and fail_fast() must return a bool.",
        run_id=run_id,
        task_name=group.name,
    )
    error.__cause__ = exc
    return error


def internal_error(run_id: str, exc: Exception) -> WorkflowFailedError:
    """The run's error when the scheduler itself raised ``exc`` (a bug: say so)."""
    error = WorkflowFailedError(
        f"the run failed: {type(exc).__name__}: {exc}",
        hint="This is a bug in aioflow or in a custom handler or backend; see the cause.",
        run_id=run_id,
    )
    error.__cause__ = exc
    return error
