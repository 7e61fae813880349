"""What ``aioflow run`` prints: the results table, the JSON document, error reports."""

from __future__ import annotations

import dataclasses
import itertools
import json
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from datetime import date, datetime, time
from enum import Enum
from typing import Any

from rich.table import Table
from rich.text import Text

from ..errors import AioflowError, GroupFailedError
from ..results import RunResult, RunStatus, TaskStatus

__all__ = [
    "error_lines",
    "error_object",
    "jsonable",
    "ordered_names",
    "results_table",
    "run_document",
    "summary",
    "tolerated_lines",
    "type_name",
    "value_repr",
]

MAX_REPR = 1000
_MAX_CAUSES = 8
_ICONS = {RunStatus.SUCCEEDED: "✓", RunStatus.FAILED: "✗", RunStatus.CANCELLED: "⊘"}
_STYLES = {RunStatus.SUCCEEDED: "green", RunStatus.FAILED: "red", RunStatus.CANCELLED: "yellow"}


def value_repr(value: Any, limit: int = MAX_REPR) -> str:
    """``repr(value)``, cut at ``limit`` characters."""
    try:
        text = repr(value)
    except Exception as exc:  # a broken __repr__ must not hide the results
        text = f"<{type(value).__name__} (repr failed: {exc!r})>"
    return text if len(text) <= limit else text[: limit - 1] + "…"


Groups = Mapping[str, Sequence[str]]


def ordered_names(result: RunResult, groups: Groups | None = None) -> list[str]:
    """The names in ``result.results`` in definition order, not in completion order.

    Tasks come in the order of ``result.tasks`` (the run's order: definition order,
    tasks added at run time last); a group (``groups`` maps its name to its members)
    right after the last of its members; anything else last.
    """
    results = result.results
    after: dict[str, list[str]] = {}
    if groups:
        position = {name: index for index, name in enumerate(result.tasks)}
        for group, members in groups.items():
            known = [m for m in members if m in position]
            if group in results and known:
                after.setdefault(max(known, key=position.__getitem__), []).append(group)
    names: list[str] = []
    for name in result.tasks:
        if name in results:
            names.append(name)
        names.extend(after.get(name, ()))
    if len(names) < len(results):
        placed = set(names)
        names.extend(name for name in results if name not in placed)
    return names


def results_table(result: RunResult, *, limit: int = 50, groups: Groups | None = None) -> Table:
    """A two-column table: task (or group) name -> repr of its result, in definition order.

    At most ``limit`` rows: a wide run says how many more there are (``--json``
    prints them all). ``groups`` (group name -> member names) places each group's
    row after its members (see :func:`ordered_names`).
    """
    table = Table(title=f"{result.workflow} results", title_justify="left", expand=False)
    table.add_column("task", style="bold", no_wrap=True)
    table.add_column("result", overflow="fold")
    for name in itertools.islice(ordered_names(result, groups), limit):
        table.add_row(Text(name), Text(value_repr(result.results[name])))
    hidden = len(result.results) - limit
    if hidden > 0:
        table.add_row(
            Text(f"… {hidden} more", style="dim"), Text("use --json for all", style="dim")
        )
    return table


def summary(result: RunResult) -> Text:
    """One line: status, duration, run id, and how many tasks ended how."""
    counts = Counter(record.status for record in result.tasks.values())
    tally = ", ".join(f"{counts[s]} {s.value}" for s in TaskStatus if counts[s])
    text = Text(f"{_ICONS.get(result.status, '?')} {result.workflow} ", style="bold")
    text.append(result.status.value, style=_STYLES.get(result.status, ""))
    text.append(f" in {result.duration:.3f}s · run {result.run_id} · {tally or 'no tasks'}")
    if result.reason:
        text.append(f" · {result.reason}", style="dim")
    return text


def tolerated_lines(result: RunResult) -> list[Text]:
    """For a run that succeeded anyway: each task that failed or was cancelled.

    ``task: ErrorType: message`` per task (a group policy tolerated it, or the
    workflow was terminated while it ran); nothing when every task succeeded.
    """
    if result.status is not RunStatus.SUCCEEDED:
        return []
    bad = [
        record
        for record in result.tasks.values()
        if record.status is TaskStatus.FAILED or record.status is TaskStatus.CANCELLED
    ]
    if not bad:
        return []
    failed = sum(1 for record in bad if record.status is TaskStatus.FAILED)
    counts = [f"{failed} failed"] if failed else []
    if len(bad) > failed:
        counts.append(f"{len(bad) - failed} cancelled")
    lines = [
        Text.assemble(
            ("warning ", "bold yellow"),
            f"the run succeeded, but not every task did ({' and '.join(counts)}):",
        )
    ]
    for record in bad:
        error = record.error
        what = f"{type_name(error)}: {error}" if error is not None else record.status.value
        lines.append(Text(f"  {record.name}: {what}"))
    return lines


def type_name(exc: BaseException) -> str:
    """``ValueError``, ``TaskTimeoutError``, or ``package.module.MyError``."""
    cls = type(exc)
    if cls.__module__ == "builtins" or cls.__module__.startswith("aioflow."):
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


def _causes(exc: BaseException) -> Iterator[BaseException]:
    seen = {id(exc)}
    cause = exc.__cause__
    while cause is not None and id(cause) not in seen and len(seen) <= _MAX_CAUSES:
        seen.add(id(cause))
        yield cause
        cause = cause.__cause__


def error_lines(exc: BaseException) -> list[Text]:
    """The error's ``describe()`` (code, message, hint), group members, then its causes."""
    lines: list[Text] = []
    hints: set[str] = set()
    if isinstance(exc, AioflowError):
        head, _, hint = exc.describe().partition("\n")
        lines.append(Text.assemble(("error ", "bold red"), head))
        if hint:
            lines.append(Text(hint, style="cyan"))
            hints.add(exc.hint)
    else:
        lines.append(Text.assemble(("error ", "bold red"), f"{type_name(exc)}: {exc}"))
    if isinstance(exc, GroupFailedError):
        for member, error in exc.errors.items():
            lines.append(Text(f"  member {member}: {type_name(error)}: {error}"))
    for cause in _causes(exc):
        code = f" [{cause.code}]" if isinstance(cause, AioflowError) else ""
        lines.append(Text(f"  caused by {type_name(cause)}{code}: {cause}", style="dim"))
        if isinstance(cause, AioflowError) and cause.hint not in hints:
            hints.add(cause.hint)
            lines.append(Text(f"    hint: {cause.hint}", style="cyan"))
    return lines


def error_object(exc: BaseException) -> dict[str, Any]:
    """The error as JSON-ready data: type, code, message, hint, causes."""
    obj: dict[str, Any] = {"type": type_name(exc), "message": str(exc)}
    if isinstance(exc, AioflowError):
        obj.update(code=exc.code, message=exc.message, hint=exc.hint, task_name=exc.task_name)
    if isinstance(exc, GroupFailedError):
        obj["members"] = {m: f"{type_name(e)}: {e}" for m, e in exc.errors.items()}
    obj["causes"] = [
        {"type": type_name(c), "message": str(c), "code": getattr(c, "code", None)}
        for c in _causes(exc)
    ]
    return obj


def run_document(
    result: RunResult | None, error: BaseException | None = None, *, groups: Groups | None = None
) -> dict[str, Any]:
    """What ``aioflow run --json`` prints: the run, its results and tasks, the error.

    Results and tasks are in definition order (see :func:`ordered_names`).
    """
    doc: dict[str, Any] = {}
    if result is not None:
        results = result.results
        doc.update(
            run_id=result.run_id,
            workflow=result.workflow,
            status=result.status.value,
            reason=result.reason,
            duration=result.duration,
            results=jsonable({name: results[name] for name in ordered_names(result, groups)}),
            tasks={
                name: {
                    "status": r.status.value,
                    "attempts": r.attempts,
                    "executions": r.executions,
                    "duration": r.duration,
                    "dynamic": r.dynamic,
                    "error": None if r.error is None else f"{type_name(r.error)}: {r.error}",
                }
                for name, r in result.tasks.items()
            },
        )
    doc["error"] = None if error is None else error_object(error)
    return doc


def to_json(doc: Mapping[str, Any]) -> str:
    """``doc`` as indented JSON text."""
    return json.dumps(doc, indent=2, ensure_ascii=False)


def jsonable(value: Any) -> Any:
    """``value`` as JSON-ready data: containers, dataclasses, enums and dates converted,
    other objects as their ``repr``."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Mapping):
        return {k if isinstance(k, str) else str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, set | frozenset):
        items = [jsonable(v) for v in value]
        try:
            return sorted(items)
        except TypeError:
            return items
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return jsonable({f.name: getattr(value, f.name) for f in dataclasses.fields(value)})
    if isinstance(value, Enum):
        return jsonable(value.value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    model_dump = getattr(value, "model_dump", None)  # pydantic models
    if callable(model_dump):
        try:
            return jsonable(model_dump(mode="json"))
        except Exception:  # not pydantic after all: fall back to the repr
            pass
    return value_repr(value)
