"""Planning a run: validate the workflow against its inputs and handlers, and decide,
once, where every parameter of every task comes from.

Precedence (DESIGN.md): bound value > context > result of a predecessor with that
name > run input > default. A required parameter nothing fills is a
:class:`~aioflow.errors.WorkflowDefinitionError`, raised before anything runs.
"""

from __future__ import annotations

import difflib
import inspect
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
    "check_inputs",
    "fill_arguments",
    "plan_dynamic",
    "plan_graph",
    "plan_params",
]


class Source(IntEnum):
    BOUND = 0
    CONTEXT = 1
    UPSTREAM = 2
    INPUT = 3
    DEFAULT = 4


_POSITIONAL_ONLY = inspect.Parameter.POSITIONAL_ONLY


@dataclass(frozen=True, slots=True)
class ParamPlan:
    """Where one parameter's value comes from."""

    name: str
    source: Source
    has_default: bool
    positional: bool


def _close(word: str, candidates: Collection[str]) -> list[str]:
    """The candidates that look like a misspelling of ``word``, closest first."""
    return difflib.get_close_matches(word, sorted(candidates), n=3, cutoff=0.7)


def _quoted(names: list[str]) -> str:
    return " or ".join(repr(n) for n in names)


def _unfilled(
    task: Task[..., Any],
    name: str,
    graph_names: Collection[str],
    inputs: Collection[str] = (),
) -> WorkflowDefinitionError:
    if name in graph_names:
        hint = (
            f"{name!r} is a task of the workflow but does not run before {task.name!r}: "
            f"add `{name} >> {task.name}`, bind a value, or pass inputs={{{name!r}: ...}}."
        )
    else:
        guesses: list[str] = []
        close_inputs = _close(name, inputs)
        if close_inputs:
            guesses.append(f"the run input {_quoted(close_inputs)}")
        close_nodes = _close(name, [n for n in graph_names if n != task.name])
        if close_nodes:
            guesses.append(f"the node {_quoted(close_nodes)}")
        guess = f"Nothing is named {name!r}; did you mean {' or '.join(guesses)}? "
        hint = (guess if guesses else "") + (
            f"Bind it ({task.name}.bind({name}=...)), pass run inputs={{{name!r}: ...}}, "
            f"give it a default, or add a predecessor task named {name!r}."
        )
    return WorkflowDefinitionError(
        f"parameter {name!r} of task {task.name!r} is filled by nothing",
        hint=hint,
        task_name=task.name,
    )


def _sources(
    task: Task[..., Any],
    upstream: Callable[[str], bool],
    known: Collection[str],
    inputs: Mapping[str, Any],
) -> tuple[Source, ...]:
    # The precedence of DESIGN.md, in one place.
    bound = task.bound
    sources: list[Source] = []
    for p in task.params:
        name = p.name
        if name in bound:
            sources.append(Source.BOUND)
        elif p.is_context:
            sources.append(Source.CONTEXT)
        elif upstream(name):
            sources.append(Source.UPSTREAM)
        elif name in inputs:
            sources.append(Source.INPUT)
        elif p.has_default:
            sources.append(Source.DEFAULT)
        else:
            raise _unfilled(task, name, known, inputs)
    return tuple(sources)


def _plans(task: Task[..., Any], sources: tuple[Source, ...]) -> tuple[ParamPlan, ...]:
    return tuple(
        [
            ParamPlan(p.name, source, p.has_default, p.kind is _POSITIONAL_ONLY)
            for p, source in zip(task.params, sources, strict=True)
        ]
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
    return _plans(task, _sources(task, upstream, known, inputs))


def plan_graph(
    graph: TaskGraph, order: list[str], inputs: Mapping[str, Any]
) -> dict[str, tuple[ParamPlan, ...]]:
    """Plan every task of the static graph at once; only tasks with parameters appear.

    Same precedence and errors as :func:`plan_params`, where a node feeds a
    parameter by name if it is an ancestor of the task. Near-linear in tasks + edges
    + parameters: a parameter named after a direct predecessor is upstream at once;
    for the other parameter names that are node names ("far" names, usually few),
    each gets a bit, and the set of far ancestors of every node (a Python int) is
    propagated along ``order``, each set dropped once all of its node's successors
    have taken it. Tasks of one function planned alike share one plan tuple.

    Args:
        graph: the validated graph.
        order: its topological order (``graph.validate()``).
        inputs: the run's inputs.

    Raises:
        WorkflowDefinitionError: a required parameter that nothing fills (the first
            such task in ``order``).
    """
    tasks, predecessors, successors = graph.tasks, graph.predecessors, graph.successors
    nodes = successors  # its keys: every node name
    # Pass 1: which names must be looked up among ancestors further than one edge.
    bit: dict[str, int] = {}
    for name in order:
        task = tasks.get(name)
        if task is None or not task.params:
            continue
        preds = _searchable(predecessors[name])
        for p in task.params:
            n = p.name
            if n in bit or n == name or n not in nodes or n in task.bound or p.is_context:
                continue
            if n not in preds:
                bit[n] = 1 << len(bit)
    # bind() copies of one function have one params tuple (alive during this call,
    # so its id is a safe key): planned alike, they share one plan.
    shared: dict[tuple[int, tuple[Source, ...]], tuple[ParamPlan, ...]] = {}
    plans: dict[str, tuple[ParamPlan, ...]] = {}

    def plan(task: Task[..., Any], upstream: Callable[[str], bool]) -> None:
        sources = _sources(task, upstream, nodes, inputs)
        key = (id(task.params), sources)
        found = shared.get(key)
        if found is None:
            found = shared[key] = _plans(task, sources)
        plans[task.name] = found

    if not bit:  # the common case: parameters come from direct predecessors only
        for name in order:
            task = tasks.get(name)
            if task is not None and task.params:
                plan(task, _searchable(predecessors[name]).__contains__)
        return plans
    # Pass 2: far-ancestor sets. passed[v] is what v hands its successors (its
    # ancestors and itself); left[v] counts the successors yet to take it, for the
    # nodes with more than one (a node with one successor gives it up at once).
    passed: dict[str, int] = {}
    left: dict[str, int] = {}
    ancestry = _Ancestry(bit)
    upstream = ancestry.upstream  # one bound method for all tasks: no closure per task
    for name in order:
        preds = predecessors[name]
        ancestors = 0
        for pred in preds:
            count = left.get(pred)
            if count is None:
                ancestors |= passed.pop(pred)
            elif count > 1:
                ancestors |= passed[pred]
                left[pred] = count - 1
            else:
                ancestors |= passed.pop(pred)
                del left[pred]
        task = tasks.get(name)
        if task is not None and task.params:
            ancestry.direct = _searchable(preds)
            ancestry.ancestors = ancestors
            plan(task, upstream)
        succ = len(successors[name])
        if succ:
            passed[name] = ancestors | bit.get(name, 0)
            if succ > 1:
                left[name] = succ
    return plans


def _searchable(names: list[str]) -> Collection[str]:
    # A task's predecessors are few, except after a wide fan-in: a set then.
    return names if len(names) < 16 else set(names)


class _Ancestry:
    """Whether a node of a given name runs before the task plan_graph is planning."""

    __slots__ = ("ancestors", "bit", "direct")

    def __init__(self, bit: Mapping[str, int]) -> None:
        self.bit = bit  # far name -> its bit
        self.direct: Collection[str] = ()  # the task's predecessors
        self.ancestors = 0  # the bits of the task's far ancestors

    def upstream(self, name: str) -> bool:
        return name in self.direct or bool(self.ancestors & self.bit.get(name, 0))


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


def check_inputs(
    tasks: Mapping[str, Task[..., Any]], inputs: Mapping[str, Any], *, strict: bool = True
) -> None:
    """Refuse run inputs that no task consumes (a misspelt input is silently ignored).

    An input is used when some task has a parameter of its name, whatever fills it.

    Args:
        tasks: the workflow's tasks by name.
        inputs: the run's inputs.
        strict: False allows inputs no task uses (``strict_inputs=False``).

    Raises:
        WorkflowDefinitionError: naming every unused input, with close parameter names.
    """
    if not strict or not inputs:
        return
    wanted: set[str] = set()
    for task in tasks.values():
        wanted.update(p.name for p in task.params)
    unused = [name for name in inputs if name not in wanted]
    if not unused:
        return
    guesses = []
    for name in unused:
        close = _close(name, wanted)
        if close:
            guesses.append(f"{name!r}: did you mean {_quoted(close)}?")
    listed = ", ".join(repr(n) for n in unused)
    one = len(unused) == 1
    raise WorkflowDefinitionError(
        f"run input{'' if one else 's'} {listed} {'is' if one else 'are'} used by no task "
        f"(no task has a parameter of {'that name' if one else 'those names'})",
        hint=" ".join(guesses)
        + (" " if guesses else "")
        + "Inputs fill the task parameters of the same name; fix the name, or pass "
        "strict_inputs=False to allow inputs no task of the workflow uses (such as "
        "inputs of tasks added at run time with ctx.next_task).",
    )


def check_handlers(task: Task[..., Any], handlers: Collection[str]) -> None:
    """Raise WorkflowDefinitionError if ``task`` names a handler nobody provides."""
    if task.options.handler not in handlers:
        raise WorkflowDefinitionError(
            f"task {task.name!r} wants handler {task.options.handler!r}, "
            f"but the run only has {sorted(handlers)}",
            hint=f"Pass handlers={{{task.options.handler!r}: SomeHandler(...)}} to the run.",
            task_name=task.name,
        )
