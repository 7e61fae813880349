"""Finding *where* inside a value encoding failed, for error messages.

Only runs after a failure, so it favours clarity over speed. The walk is
iterative (no recursion limit), visits each container once, and descends only
into what the codec itself descends into: exact dicts, lists, tuples, sets and
frozensets, enum values and dataclass fields.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["find_cycle_or_depth", "find_path", "format_key"]


def format_key(key: object) -> str:
    """Render a dict key inside a path, shortened: ``"rows"`` -> ``'rows'``."""
    text = repr(key)
    return text if len(text) <= 40 else text[:37] + "..."


def _children(value: object, path: str) -> Iterator[tuple[object, str]] | None:
    kind = type(value)
    if kind is dict:
        assert isinstance(value, dict)
        return _dict_children(value, path)
    if kind is list or kind is tuple:
        assert isinstance(value, list | tuple)
        return ((item, f"{path}[{index}]") for index, item in enumerate(value))
    if kind is set or kind is frozenset:
        assert isinstance(value, set | frozenset)
        return ((item, f"{path}{{set item}}") for item in value)
    if isinstance(value, enum.Enum):
        return iter(((value.value, f"{path}.value"),))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return (
            (getattr(value, field.name, None), f"{path}.{field.name}")
            for field in dataclasses.fields(value)
        )
    return None


def _dict_children(value: dict[Any, Any], path: str) -> Iterator[tuple[object, str]]:
    for key, item in value.items():
        yield key, f"{path}{{key {format_key(key)}}}"
        yield item, f"{path}[{format_key(key)}]"


def find_path(value: object, match: Callable[[object], bool], root: str) -> str | None:
    """Return the path of the first part of ``value`` for which ``match`` is true.

    Args:
        value: the value that failed to encode.
        match: predicate, e.g. ``lambda x: x is culprit``.
        root: the name of the value in the path (``"result"``, ``"args"`` ...).

    Returns:
        A path such as ``result['rows'][3].owner``, or ``None`` when nothing matches.
    """
    stack: list[tuple[object, str]] = [(value, root)]
    seen: set[int] = set()
    while stack:
        current, path = stack.pop()
        try:
            if match(current):
                return path
        except Exception:  # a predicate must never turn into a second failure
            pass
        children = _children(current, path)
        if children is None or id(current) in seen:
            continue
        seen.add(id(current))
        stack.extend(reversed(list(children)))
    return None


def find_cycle_or_depth(value: object, root: str, max_depth: int) -> str | None:
    """Return the path where ``value`` refers back to itself or nests past ``max_depth``.

    Args:
        value: the value that was too deep to encode.
        root: the name of the value in the path.
        max_depth: nesting depth the encoder accepts.

    Returns:
        The path of the first reference cycle or too-deep part, or ``None``.
    """
    stack: list[tuple[object, str, int, bool]] = [(value, root, 0, False)]
    ancestors: set[int] = set()
    done: set[int] = set()
    while stack:
        current, path, depth, leaving = stack.pop()
        if leaving:
            ancestors.discard(id(current))
            done.add(id(current))
            continue
        children = _children(current, path)
        if children is None or id(current) in done:
            continue
        if id(current) in ancestors:
            return f"{path} (a reference cycle)"
        if depth >= max_depth:
            return f"{path} (nested more than {max_depth} levels deep)"
        ancestors.add(id(current))
        stack.append((current, path, depth, True))
        stack.extend((child, p, depth + 1, False) for child, p in reversed(list(children)))
    return None
