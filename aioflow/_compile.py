"""Compiling a workflow's graph into the nodes of one run.

Done once per run, before anything runs: validate the graph (names, cycles,
policies), check handlers, plan every parameter (:func:`aioflow.plan.plan_graph`),
and make one :class:`~aioflow._runstate.Node` per task and group barrier, with its
join counter and successors. Raises :class:`~aioflow.errors.WorkflowDefinitionError`
for anything wrong, so a run never starts half-defined.
"""

from __future__ import annotations

import gc
from collections.abc import Collection, Mapping
from typing import Any

from ._runstate import Node, context_params
from .graph import TaskGraph
from .plan import check_handlers, plan_graph
from .policies import MemberOutcome

__all__ = ["compile_graph"]


def compile_graph(
    graph: TaskGraph, handlers: Collection[str], inputs: Mapping[str, Any]
) -> dict[str, Node]:
    """The run's nodes, by name, in topological order (ready tasks start in that order).

    Raises:
        WorkflowDefinitionError: the graph, its parameters or handlers are invalid.
    """
    order = graph.validate()
    # A 100,000-task graph makes ~300,000 objects here; the cyclic GC would walk the
    # whole heap several times while they are made, for nothing (none is garbage).
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _make_nodes(graph, order, handlers, inputs)
    finally:
        if enabled:
            gc.enable()


def _make_nodes(
    graph: TaskGraph, order: list[str], handlers: Collection[str], inputs: Mapping[str, Any]
) -> dict[str, Node]:
    plans = plan_graph(graph, order, inputs)
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
            if task.options.handler not in handlers:
                check_handlers(task, handlers)  # raises, naming the handler
            plan = plans.get(name, ())
            # Positional (name, task, group, successors, pending, plan, context): hot path.
            nodes[name] = Node(
                name, task, None, succ, pending, plan, context_params(plan) if plan else ()
            )
        else:
            group = graph.groups[name]
            outcomes: dict[str, MemberOutcome] = dict.fromkeys(group.member_names, "pending")
            nodes[name] = Node(
                name,
                group=group,
                outcomes=outcomes,
                errors={},
                successors=succ,
                pending=pending,
            )
    ordered = {name: nodes[name] for name in order}
    for group_node in ordered.values():
        if group_node.group is not None:
            for member in group_node.group.member_names:
                ordered[member].groups += (group_node,)
    return ordered
