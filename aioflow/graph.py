"""The task graph and the composition operators: ``>>``, ``|``, chain(), parallel().

A workflow under construction is the *active graph* (a context variable set by
``with workflow(...)``). Composing tasks records nodes and edges into it:

* ``a >> b`` adds an edge from every exit of ``a`` to every entry of ``b``;
* ``a | b`` / ``parallel(a, b)`` make a :class:`ParallelGroup`: a barrier node the
  members lead into, whose policy decides whether the group succeeded.

Mistakes made while composing (two tasks with one name...) are recorded and raised
by :meth:`TaskGraph.validate`, which every run calls before anything runs.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from .errors import WorkflowDefinitionError
from .policies import GroupPolicy, PolicyLike, resolve_group_policy

if TYPE_CHECKING:
    from .task import Task

__all__ = [
    "Composable",
    "Flow",
    "ParallelGroup",
    "TaskGraph",
    "active_graph",
    "chain",
    "parallel",
]

_active: ContextVar[TaskGraph | None] = ContextVar("aioflow_active_graph", default=None)


def active_graph() -> TaskGraph:
    """The graph of the enclosing ``with workflow(...)`` block."""
    graph = _active.get()
    if graph is None:
        raise WorkflowDefinitionError(
            "tasks can only be composed inside a `with workflow(...) as wf:` block",
            hint="Open a workflow first: with aioflow.workflow('name') as wf: a >> b",
        )
    return graph


class Composable(ABC):
    """Something that can stand on either side of ``>>`` and ``|``.

    ``heads`` are the nodes an incoming edge leads to; ``tails`` the nodes an
    outgoing edge leaves from.
    """

    __slots__ = ()

    @abstractmethod
    def _heads(self) -> Sequence[Task[..., Any] | ParallelGroup]:
        """The nodes an edge into this leads to."""

    @abstractmethod
    def _tails(self) -> Sequence[Task[..., Any] | ParallelGroup]:
        """The nodes an edge out of this leaves from."""

    @abstractmethod
    def _register(self, graph: TaskGraph) -> None:
        """Add this (and what it is made of) to ``graph``."""

    def __rshift__(self, other: Composable) -> Flow:
        return _connect(self, other)

    def __rrshift__(self, other: Composable) -> Flow:
        return _connect(other, self)

    def __or__(self, other: Composable) -> ParallelGroup:
        return _group_of(self, other)

    def __ror__(self, other: Composable) -> ParallelGroup:
        return _group_of(other, self)


class Flow(Composable):
    """A composed fragment, ``a >> b``: enters at ``first``, leaves at ``last``.

    Its parts and the edges its ``>>`` made (by node name) are registered in the graph
    it was built in; registering it in another graph (``wf.add(flow)``) adds the same
    parts and edges there, walking the fragment iteratively: chains can be very long.
    """

    __slots__ = ("_edges", "_first", "_graph", "_last")

    def __init__(
        self,
        first: Composable,
        last: Composable,
        graph: TaskGraph,
        edges: tuple[tuple[str, str], ...] = (),
    ) -> None:
        self._first = first
        self._last = last
        self._graph = graph
        self._edges = edges  # made by the >> joining first and last, in order

    def _heads(self) -> Sequence[Task[..., Any] | ParallelGroup]:
        return _end(self, first=True)._heads()

    def _tails(self) -> Sequence[Task[..., Any] | ParallelGroup]:
        return _end(self, first=False)._tails()

    def _register(self, graph: TaskGraph) -> None:
        if graph is self._graph:
            return
        # In the order the fragment was built: the parts of `first`, the parts of
        # `last`, then the edges joining them (a post-order walk, without recursion).
        stack: list[Composable | tuple[tuple[str, str], ...]] = [self]
        while stack:
            item = stack.pop()
            if isinstance(item, tuple):
                for edge in item:
                    graph._add_edge(edge)
            elif isinstance(item, Flow):
                if item._graph is not graph:  # else: already there, edges and all
                    stack.extend((item._edges, item._last, item._first))
            else:
                item._register(graph)

    def __repr__(self) -> str:
        return f"<Flow {_end(self, first=True)!r} >> ... >> {_end(self, first=False)!r}>"


def _end(flow: Flow, *, first: bool) -> Composable:
    """The first (or last) part of ``flow`` that is not a flow (no recursion)."""
    item: Composable = flow
    while isinstance(item, Flow):
        item = item._first if first else item._last
    return item


class ParallelGroup(Composable):
    """Members that run concurrently and are judged together by a policy.

    Successors of a group wait for the group's verdict; a parameter named after the
    group receives ``{member_name: result}`` of the members that succeeded.
    """

    __slots__ = ("_implicit", "members", "name", "policy")

    def __init__(
        self,
        members: Sequence[Task[..., Any]],
        *,
        name: str | None = None,
        policy: PolicyLike | None = None,
        _implicit: bool = False,
    ) -> None:
        self.members: tuple[Task[..., Any], ...] = tuple(members)
        # An unnamed group is named when it joins a workflow (group_1, group_2... in
        # the order the workflow's code makes them): the same code gives the same
        # names in every process, which checkpoints rely on.
        self.name = name or ""
        self.policy: GroupPolicy = resolve_group_policy(policy)
        self._implicit = _implicit

    @property
    def member_names(self) -> list[str]:
        return [m.name for m in self.members]

    def with_policy(self, policy: PolicyLike) -> ParallelGroup:
        """Set this group's policy (``"strict"``, ``"best_effort"``, AtLeast...); returns it."""
        self.policy = resolve_group_policy(policy)
        self._implicit = False
        return self

    def _heads(self) -> Sequence[Task[..., Any] | ParallelGroup]:
        # An empty group has no member to lead into: an edge into it leads to its
        # barrier, which the engine judges (over zero members) once that edge's
        # source is done; so `a >> parallel() >> b` still runs b after a.
        return self.members or (self,)

    def _tails(self) -> Sequence[Task[..., Any] | ParallelGroup]:
        return (self,)

    def _register(self, graph: TaskGraph) -> None:
        graph.add_group(self)

    def __repr__(self) -> str:
        return f"<ParallelGroup {self.name} {self.member_names} policy={self.policy!r}>"


def _check_members(group: ParallelGroup) -> None:
    """Raise WorkflowDefinitionError if ``group`` lists a task twice (``a | a``)."""
    seen: set[str] = set()
    for name in group.member_names:
        if name in seen:
            raise WorkflowDefinitionError(
                f"group {group.name!r} lists task {name!r} more than once",
                hint="A task is a member of a group once (it runs once); for another "
                f"run of the same function add a copy: {name}.bind(name='{name}_2').",
                task_name=name,
            )
        seen.add(name)


def _members_of(item: Composable) -> list[Task[..., Any]]:
    if isinstance(item, ParallelGroup):
        return list(item.members)
    heads, tails = item._heads(), item._tails()
    if len(heads) == 1 and len(tails) == 1 and heads[0] is tails[0]:
        head = heads[0]
        if not isinstance(head, ParallelGroup):  # chain(empty_group) is no task
            return [head]
    raise WorkflowDefinitionError(
        f"a parallel group's members must be tasks, got {item!r}",
        hint="Group tasks with | or parallel(); chain inside a member with a separate >>.",
    )


def _group_of(left: Composable, right: Composable) -> ParallelGroup:
    graph = active_graph()
    members: list[Task[..., Any]] = []
    for side in (left, right):
        members.extend(_members_of(side))
        # `a | b | c` builds one group: an implicit group nobody wired is absorbed.
        if isinstance(side, ParallelGroup) and side._implicit and graph.is_unwired(side):
            graph.discard_group(side)
    group = ParallelGroup(members, _implicit=True)
    group._register(graph)
    return group


def parallel(
    *tasks: Composable, name: str | None = None, policy: PolicyLike | None = None
) -> ParallelGroup:
    """Run ``tasks`` concurrently as one group judged by ``policy`` (default ``"strict"``).

    Raises:
        WorkflowDefinitionError: outside a workflow block, or a member is not a task.
    """
    graph = active_graph()
    members: list[Task[..., Any]] = []
    for item in tasks:
        members.extend(_members_of(item))
    group = ParallelGroup(members, name=name, policy=policy)
    group._register(graph)
    return group


def chain(*items: Composable) -> Flow:
    """``chain(a, b, c)`` is ``a >> b >> c``."""
    if not items:
        raise WorkflowDefinitionError("chain() needs at least one task")
    graph = active_graph()
    flow: Composable = items[0]
    flow._register(graph)
    for item in items[1:]:
        flow = _connect(flow, item)
    return flow if isinstance(flow, Flow) else Flow(flow, flow, graph)


def _connect(left: Composable, right: Composable) -> Flow:
    if not isinstance(left, Composable) or not isinstance(right, Composable):
        raise WorkflowDefinitionError(
            f"cannot connect {left!r} >> {right!r}: both sides must be tasks or groups",
            hint="Decorate functions with @task before composing them.",
        )
    graph = active_graph()
    left._register(graph)
    right._register(graph)
    heads = right._heads()
    edges = tuple((tail.name, head.name) for tail in left._tails() for head in heads)
    for edge in edges:
        graph._add_edge(edge)
    if isinstance(right, ParallelGroup):
        right._implicit = False
    if isinstance(left, ParallelGroup):
        left._implicit = False
    return Flow(left, right, graph, edges)


def _where(fn: Any) -> str:
    """``module:qualname (file:line)`` of a task's function, as far as it is known."""
    module = getattr(fn, "__module__", None) or "?"
    qualname = getattr(fn, "__qualname__", None) or type(fn).__qualname__
    code = getattr(fn, "__code__", None)
    if code is None:
        return f"{module}:{qualname}"
    return f"{module}:{qualname} ({code.co_filename}:{code.co_firstlineno})"


def _duplicate_hint(task: Task[..., Any], existing: Task[..., Any] | None) -> str:
    name = task.name
    if existing is None:  # the name is a group's
        return (
            f"A parallel group is already named {name!r}: give the group another name "
            f"(parallel(..., name=...)) or the task one (@task(name=...) or .bind(name=...))."
        )
    if existing.fn is task.fn:  # a copy of one function (bind / with_options)
        return (
            "Task names must be unique in a workflow: use "
            f"{name}.bind(name='another_name') for a second copy."
        )
    return (
        f"Tasks of two different functions are both named {name!r}: {_where(existing.fn)} "
        f"and {_where(task.fn)}. Task names must be unique in a workflow: give one of "
        "them another name with @task(name='...') on its function (or "
        ".bind(name='...') where it is a copy)."
    )


class TaskGraph:
    """Nodes (tasks and group barriers) and edges of one workflow.

    Only the thread building the workflow mutates it; runs read it.
    """

    def __init__(self) -> None:
        self.tasks: dict[str, Task[..., Any]] = {}
        self.groups: dict[str, ParallelGroup] = {}
        self.successors: dict[str, list[str]] = {}
        self.predecessors: dict[str, list[str]] = {}
        self._edges: set[tuple[str, str]] = set()
        self._problems: list[WorkflowDefinitionError] = []
        self._version = 0  # bumped by every change; validate() caches per version
        self._unnamed_groups = 0
        self._validated: tuple[int, list[str]] | None = None

    # --- building ------------------------------------------------------------------

    def _add_node(self, name: str) -> None:
        self._version += 1
        self.successors.setdefault(name, [])
        self.predecessors.setdefault(name, [])

    def add_task(self, task: Task[..., Any]) -> None:
        existing = self.tasks.get(task.name)
        if existing is task:
            return
        if existing is not None or task.name in self.groups:
            self._problems.append(
                WorkflowDefinitionError(
                    f"two different nodes are named {task.name!r}",
                    hint=_duplicate_hint(task, existing),
                    task_name=task.name,
                )
            )
            return
        self.tasks[task.name] = task
        self._add_node(task.name)

    def add_group(self, group: ParallelGroup) -> None:
        if not group.name:
            self._unnamed_groups += 1
            group.name = f"group_{self._unnamed_groups}"
        existing = self.groups.get(group.name)
        if existing is group:
            return
        if existing is not None or group.name in self.tasks:
            self._problems.append(
                WorkflowDefinitionError(
                    f"two different nodes are named {group.name!r}",
                    hint="Give the group a name no task or other group uses.",
                    task_name=group.name,
                )
            )
            return
        self.groups[group.name] = group
        self._add_node(group.name)
        for member in group.members:
            self.add_task(member)
            self.add_edge(member.name, group.name)

    def add_edge(self, src: str, dst: str) -> None:
        self._add_edge((src, dst))

    def _add_edge(self, edge: tuple[str, str]) -> None:
        # Takes the pair itself: the set keeps the tuple a Flow already holds.
        if edge in self._edges:
            return
        self._edges.add(edge)
        src, dst = edge
        self._version += 1
        self._add_node(src)
        self._add_node(dst)
        self.successors[src].append(dst)
        self.predecessors[dst].append(src)

    def is_unwired(self, group: ParallelGroup) -> bool:
        """True if nothing leads into or out of ``group`` except its own members."""
        members = set(group.member_names)
        if self.successors.get(group.name):
            return False
        if any(p not in members for p in self.predecessors.get(group.name, ())):
            return False
        return not any(self.predecessors.get(m) for m in members)

    def discard_group(self, group: ParallelGroup) -> None:
        if self.groups.get(group.name) is not group:
            return
        self._version += 1
        del self.groups[group.name]
        for member in group.member_names:
            edge = (member, group.name)
            if edge in self._edges:  # once, also for a member listed twice (a | a)
                self._edges.discard(edge)
                self.successors[member].remove(group.name)
        del self.successors[group.name]
        del self.predecessors[group.name]

    def add(self, *items: Composable) -> None:
        """Add tasks, groups or flows to the graph without new edges between them."""
        for item in items:
            if not isinstance(item, Composable):
                raise WorkflowDefinitionError(
                    f"cannot add {item!r} to a workflow: not a task or group",
                    hint="Decorate functions with @task before adding them.",
                )
            item._register(self)

    # --- reading -------------------------------------------------------------------

    def node_names(self) -> Iterator[str]:
        return iter(self.successors)

    def sinks(self) -> list[str]:
        return [name for name, succ in self.successors.items() if not succ]

    def sources(self) -> list[str]:
        return [name for name, pred in self.predecessors.items() if not pred]

    def topological_order(self) -> list[str]:
        """Nodes in an order where every edge points forward.

        Raises:
            WorkflowDefinitionError: naming a cycle, if there is one.
        """
        remaining = {name: len(pred) for name, pred in self.predecessors.items()}
        order = [name for name, count in remaining.items() if count == 0]
        successors = self.successors
        for name in order:  # grows while it is walked: Kahn's algorithm
            for succ in successors[name]:
                left = remaining[succ] - 1
                remaining[succ] = left
                if not left:
                    order.append(succ)
        if len(order) != len(remaining):
            cycle = self._find_cycle({n for n, c in remaining.items() if c > 0})
            raise WorkflowDefinitionError(
                "static cycle: " + " >> ".join(cycle),
                hint="A workflow is acyclic; loop with ctx.next_iteration(...) or "
                "ctx.next_task(..., goto=True) instead of an edge back.",
            )
        return order

    def _find_cycle(self, candidates: set[str]) -> list[str]:
        # Walk predecessors inside the unsorted remainder: every node there has one,
        # so the walk must revisit a node; the part from that node on is a cycle.
        node = min(candidates)
        seen: dict[str, int] = {}
        path: list[str] = []
        while node not in seen:
            seen[node] = len(path)
            path.append(node)
            node = next(p for p in self.predecessors[node] if p in candidates)
        cycle = path[seen[node] :]
        cycle.reverse()
        return [*cycle, cycle[0]]

    def validate(self) -> list[str]:
        """Check the graph; return a topological order (cached until the graph changes).

        Raises:
            WorkflowDefinitionError: duplicate names, empty workflow, a group listing a
                task twice, invalid group policies, or a static cycle.
        """
        if self._problems:
            raise self._problems[0]
        if not self.tasks:
            raise WorkflowDefinitionError(
                "the workflow has no tasks",
                hint="Compose tasks inside the workflow block (a >> b) or use wf.add(task).",
            )
        fresh = self._validated is not None and self._validated[0] == self._version
        if not fresh:  # members never change after a group is made: once per version
            for group in self.groups.values():
                _check_members(group)
        for group in self.groups.values():
            try:
                group.policy.validate(group.member_names)
            except Exception as exc:
                raise WorkflowDefinitionError(
                    f"group {group.name!r}: {exc}",
                    hint=getattr(exc, "hint", "Fix the group's policy."),
                    task_name=group.name,
                ) from exc
        if self._validated is None or not fresh:
            self._validated = (self._version, self.topological_order())
        return list(self._validated[1])
