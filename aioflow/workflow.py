"""``workflow()``: the block in which tasks are composed into a graph."""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import Token
from types import MappingProxyType, TracebackType
from typing import TYPE_CHECKING, Any

from . import export
from .graph import Composable, ParallelGroup, TaskGraph, _active

if TYPE_CHECKING:
    from .task import Task

__all__ = ["Workflow", "workflow"]


class Workflow:
    """A named graph of tasks. Build it with ``with workflow("name") as wf: a >> b``.

    Inside the block, every task that takes part in ``>>``, ``|``, ``chain()`` or
    ``parallel()`` joins the workflow; ``wf.add(*tasks)`` adds tasks on their own.
    The block may be entered again later to add more. Mistakes are reported by
    :meth:`validate`, which every run calls before anything runs.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.graph = TaskGraph()
        self._tokens: list[Token[TaskGraph | None]] = []

    def __enter__(self) -> Workflow:
        self._tokens.append(_active.set(self.graph))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        _active.reset(self._tokens.pop())

    @property
    def tasks(self) -> Mapping[str, Task[..., Any]]:
        """The workflow's tasks by name."""
        return MappingProxyType(self.graph.tasks)

    @property
    def groups(self) -> Mapping[str, ParallelGroup]:
        """The workflow's parallel groups by name."""
        return MappingProxyType(self.graph.groups)

    def add(self, *items: Composable) -> Workflow:
        """Add tasks, groups or flows (with their own edges) to the workflow; returns it."""
        self.graph.add(*items)
        return self

    def validate(self) -> None:
        """Check the graph now (runs do it anyway).

        Raises:
            WorkflowDefinitionError: duplicate names, a group listing a task twice, a
                static cycle, an empty workflow...
        """
        self.graph.validate()

    def to_mermaid(self) -> str:
        """The graph as a Mermaid ``flowchart`` (paste into Markdown)."""
        return export.to_mermaid(self.graph, self.name)

    def to_dot(self) -> str:
        """The graph in Graphviz DOT."""
        return export.to_dot(self.graph, self.name)

    def __repr__(self) -> str:
        return f"<Workflow {self.name!r} tasks={len(self.graph.tasks)}>"


def workflow(name: str) -> Workflow:
    """A new, empty workflow; use it as ``with workflow("etl") as wf: ...``."""
    return Workflow(name)
