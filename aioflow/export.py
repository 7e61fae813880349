"""Graph export: Mermaid and Graphviz DOT, for docs, reviews and ``aioflow graph``."""

from __future__ import annotations

import json

from .graph import TaskGraph

__all__ = ["to_dot", "to_mermaid"]


def _ids(graph: TaskGraph) -> dict[str, str]:
    # Node names may hold any character; ids are safe tokens, names become labels.
    return {name: f"n{i}" for i, name in enumerate(graph.node_names())}


def _mermaid_label(text: str) -> str:
    return '"' + text.replace('"', "#quot;") + '"'


def to_mermaid(graph: TaskGraph, title: str | None = None) -> str:
    """Render ``graph`` as a Mermaid flowchart (top to bottom)."""
    ids = _ids(graph)
    lines = ["---", f"title: {title}", "---"] if title else []
    lines.append("flowchart TD")
    for name, task in graph.tasks.items():
        lines.append(f"    {ids[name]}[{_mermaid_label(name)}]")
        if task.options.handler != "inline":
            lines.append(f"    class {ids[name]} handler_{task.options.handler}")
    for name, group in graph.groups.items():
        lines.append(f"    subgraph {ids[name]}_box [{_mermaid_label(name)}]")
        lines.extend(f"        {ids[m]}" for m in group.member_names)
        lines.append("    end")
        lines.append(f"    {ids[name]}{{{{{_mermaid_label(f'{name}: {group.policy!r}')}}}}}")
    for src, succs in graph.successors.items():
        lines.extend(f"    {ids[src]} --> {ids[dst]}" for dst in succs)
    return "\n".join(lines) + "\n"


def to_dot(graph: TaskGraph, title: str | None = None) -> str:
    """Render ``graph`` in Graphviz DOT (``dot -Tsvg``)."""
    q = json.dumps  # DOT accepts C-style double-quoted strings
    lines = [f"digraph {q(title or 'workflow')} {{", "    rankdir=LR;", "    node [shape=box];"]
    for name, task in graph.tasks.items():
        extra = f", xlabel={q(task.options.handler)}" if task.options.handler != "inline" else ""
        lines.append(f"    {q(name)} [label={q(name)}{extra}];")
    for i, (name, group) in enumerate(graph.groups.items()):
        lines.append(f"    subgraph cluster_{i} {{")
        lines.append(f"        label={q(f'{name} ({group.policy!r})')};")
        lines.extend(f"        {q(m)};" for m in group.member_names)
        lines.append("    }")
        lines.append(f"    {q(name)} [shape=diamond, label={q(name)}];")
    for src, succs in graph.successors.items():
        lines.extend(f"    {q(src)} -> {q(dst)};" for dst in succs)
    lines.append("}")
    return "\n".join(lines) + "\n"
