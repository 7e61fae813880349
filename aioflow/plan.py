"""Planning a run: validate the workflow against its inputs and handlers, and decide,
once, where every parameter of every task comes from.

Precedence (DESIGN.md): bound value > context > result of a predecessor with that
name > run input > default. A required parameter nothing fills is a
:class:`~aioflow.errors.WorkflowDefinitionError`, raised before anything runs.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from enum import IntEnum
from typing import TYPE_CHECKING, Any

from .errors import MissingUpstreamResultError, WorkflowDefinitionError

if TYPE_CHECKING:
    from .graph import TaskGraph
    from .task import Task

__all__ = [
    "ParamPlan",
    "Source",
    "check_handlers",
    "fill_arguments",
    "plan_dynamic",
    "plan_params",
    "plan_static",
]


class Source(IntEnum):
    BOUND = 0
    CONTEXT = 1
    UPSTREAM = 2
    INPUT = 3
    DEFAULT = 4


@dataclass(frozen=True, slots=True)
class ParamPlan:
    """Where one parameter's value comes from."""

    name: str
    source: Source
    has_default: bool
    positional: bool


def _unfilled(
    task: Task[..., Any], name: str, graph_names: Collection[str]
) -> WorkflowDefinitionError:
    if name in graph_names:
        hint = (
            f"{name!r} is a task of the workflow but does not run before {task.name!r}: "
            f"add `{name} >> {task.name}`, bind a value, or pass inputs={{{name!r}: ...}}."
        )
    else:
        hint = (
            f"Bind it ({task.name}.bind({name}=...)), pass run inputs={{{name!r}: ...}}, "
            f"give it a default, or add a predecessor task named {name!r}."
        )
    return WorkflowDefinitionError(
        f"parameter {name!r} of task {task.name!r} is filled by nothing",
        hint=hint,
        task_name=task.name,
    )


def plan_params(
    task: Task[..., Any],
    *,
    upstream: Callable[[str], bool],
    known: Collection[str],
    inputs: Mapping[str, Any],
) -> tuple[ParamPlan, ...]:
    """Plan where each parameter of ``task`` comes from.

    Args:
        upstream: tells whether a node of that name runs before ``task``.
        known: every node name of the workflow (for the error hint).
        inputs: the run's inputs.

    Raises:
        WorkflowDefinitionError: a required parameter that nothing fills.
    """
    plans: list[ParamPlan] = []
    for p in task.params:
        if p.name in task.bound:
            source = Source.BOUND
        elif p.is_context:
            source = Source.CONTEXT
        elif upstream(p.name):
            source = Source.UPSTREAM
        elif p.name in inputs:
            source = Source.INPUT
        elif p.has_default:
            source = Source.DEFAULT
        else:
            raise _unfilled(task, p.name, known)
        positional = p.kind is p.kind.POSITIONAL_ONLY
        plans.append(ParamPlan(p.name, source, p.has_default, positional))
    return tuple(plans)


def plan_static(
    task: Task[..., Any],
    graph: TaskGraph,
    position: Mapping[str, int],
    inputs: Mapping[str, Any],
) -> tuple[ParamPlan, ...]:
    """Plan a task of the static graph: only its ancestors feed it by name."""
    if not task.params:
        return ()
    return plan_params(
        task,
        upstream=lambda name: name in position and graph.is_ancestor(name, task.name, position),
        known=position,
        inputs=inputs,
    )


def plan_dynamic(
    task: Task[..., Any], known: Collection[str], inputs: Mapping[str, Any]
) -> tuple[ParamPlan, ...]:
    """Plan a task added at run time: any node of the run may feed it by name."""
    return plan_params(task, upstream=known.__contains__, known=known, inputs=inputs)


def fill_arguments(
    task: Task[..., Any],
    plan: tuple[ParamPlan, ...],
    *,
    ctx: Any,
    results: Mapping[str, Any],
    inputs: Mapping[str, Any],
    state_of: Callable[[str], str],
    run_id: str,
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The arguments of one execution of ``task``, from the sources its ``plan`` names.

    Raises:
        MissingUpstreamResultError: an upstream task that should fill a parameter has
            no result (it failed in a tolerant group) and nothing else fills it.
    """
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    for p in plan:
        if p.source is Source.UPSTREAM:
            if p.name in results:
                value = results[p.name]
            elif p.name in inputs:
                value = inputs[p.name]
            elif p.has_default:
                continue
            else:
                raise MissingUpstreamResultError(
                    f"task {task.name!r} needs the result of {p.name!r}, which has none "
                    f"(status: {state_of(p.name)})",
                    run_id=run_id,
                    task_name=task.name,
                )
        elif p.source is Source.CONTEXT:
            value = ctx
        elif p.source is Source.BOUND:
            value = task.bound[p.name]
        elif p.source is Source.INPUT:
            value = inputs[p.name]
        else:
            continue
        if p.positional:
            args.append(value)
        else:
            kwargs[p.name] = value
    return tuple(args), kwargs


def check_handlers(task: Task[..., Any], handlers: Collection[str]) -> None:
    """Raise WorkflowDefinitionError if ``task`` names a handler nobody provides."""
    if task.options.handler not in handlers:
        raise WorkflowDefinitionError(
            f"task {task.name!r} wants handler {task.options.handler!r}, "
            f"but the run only has {sorted(handlers)}",
            hint=f"Pass handlers={{{task.options.handler!r}: SomeHandler(...)}} to the run.",
            task_name=task.name,
        )
