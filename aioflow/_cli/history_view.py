"""``aioflow runs`` / ``inspect`` for humans: rich tables and text (times local)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Final

from rich import box
from rich.console import Group, RenderableType
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from ..stores import RecordKind, RunInfo, format_duration
from .history import Failure, Inspection
from .report import value_repr

__all__ = ["inspect_view", "runs_table", "human_duration", "local_time"]

_STYLES: Final = {
    "succeeded": "green",
    "failed": "red",
    "cancelled": "yellow",
    "running": "cyan",
    "retrying": "yellow",
}
MAX_FAILURES: Final = 20
#: Characters of a run id shown in a narrow table.
SHORT_ID: Final = 8


def local_time(at: float | None, *, precise: bool = False) -> str:
    """``2025-01-31 13:00:00`` in local time (``precise``: ``13:00:00.250``); ``—`` for None."""
    if at is None:
        return "—"
    moment = datetime.fromtimestamp(at)
    if precise:
        return moment.strftime("%H:%M:%S.%f")[:-3]
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def human_duration(seconds: float | None) -> str:
    """``0.004s``, ``12.500s``, ``3m20s``; ``—`` for None."""
    if seconds is None:
        return "—"
    if seconds < 60:
        return f"{max(seconds, 0.0):.3f}s"
    return format_duration(round(seconds))


def _status(status: str | None) -> Text:
    if status is None:
        return Text("")
    return Text(status, style=_STYLES.get(status, ""))


def runs_table(
    store: str, runs: Sequence[RunInfo], *, limit: int | None, width: int = 200
) -> Table:
    """The runs of a store, newest first: id, workflow, status, start, duration, tasks.

    Below ``width`` 120 (the terminal's), run ids are cut to :data:`SHORT_ID`
    characters: the CLI takes any unique prefix of a run id.
    """
    short = width < 120
    table = Table(
        title=f"runs in {store}",
        title_justify="left",
        expand=False,
        box=box.SIMPLE_HEAD if short else box.HEAVY_HEAD,
        show_edge=not short,
        collapse_padding=short,
        pad_edge=not short,
    )
    table.add_column("run id", no_wrap=True, style="bold")
    table.add_column("workflow", overflow="fold", min_width=8)
    table.add_column("status", no_wrap=True)
    table.add_column("started", no_wrap=True)
    table.add_column("duration", justify="right", no_wrap=True)
    table.add_column("done", justify="right", no_wrap=True)
    table.add_column("failed", justify="right", no_wrap=True)
    table.add_column("total", justify="right", no_wrap=True)
    for info in runs:
        table.add_row(
            Text(info.run_id[:SHORT_ID] if short else info.run_id),
            Text(info.workflow),
            _status(info.status),
            Text(local_time(info.started_at)[: 16 if short else None]),
            Text(human_duration(info.duration)),
            Text(str(info.tasks_succeeded)),
            Text(str(info.tasks_failed), style="red" if info.tasks_failed else ""),
            Text(str(info.tasks_total)),
        )
    notes = []
    if short:
        notes.append("run ids shortened (any unique prefix will do; --json: full ids)")
    if limit is not None and len(runs) >= limit:
        notes.append(f"the newest {limit} (--limit N for more, 0 for all)")
    if notes:
        table.caption = "; ".join(notes)
        table.caption_justify = "left"
    return table


def inspect_view(inspection: Inspection, *, limit: int | None) -> list[RenderableType]:
    """Summary, timeline (its last ``limit`` records; None: all) and failures."""
    parts: list[RenderableType] = [_summary(inspection), Text("")]
    parts.append(_timeline(inspection, limit))
    if inspection.failures:
        shown = inspection.failures[:MAX_FAILURES]
        parts.append(Text(""))
        parts.append(
            Text(f"failed attempts ({len(inspection.failures)})", style="bold red"),
        )
        for failure in shown:
            parts.append(_failure(failure))
        hidden = len(inspection.failures) - len(shown)
        if hidden > 0:
            parts.append(Text(f"… {hidden} more failed attempts (--json prints them all)"))
    return parts


def _summary(inspection: Inspection) -> Table:
    info = inspection.info
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    grid.add_row("run", Text(info.run_id))
    grid.add_row("workflow", Text(info.workflow))
    grid.add_row("status", _status(info.status))
    grid.add_row("store", Text(inspection.store))
    grid.add_row("started", Text(local_time(info.started_at)))
    if info.finished_at is not None:
        finished = f"{local_time(info.finished_at)} (after {human_duration(info.duration)})"
        grid.add_row("finished", Text(finished))
    else:
        silent = f"last written {local_time(info.updated_at)}"
        grid.add_row("finished", Text(f"not yet ({silent})"))
    tasks = (
        f"{info.tasks_succeeded} succeeded · {info.tasks_failed} failed · {info.tasks_total} in all"
    )
    grid.add_row("tasks", Text(tasks))
    if inspection.inputs:
        pairs = ", ".join(f"{k}={value_repr(v, 200)}" for k, v in inspection.inputs.items())
        grid.add_row("inputs", Text(pairs))
    if info.error:
        grid.add_row("error", Text(info.error, style="red"))
    if inspection.in_flight:
        running = ", ".join(
            name if attempt is None else f"{name} (attempt {attempt})"
            for name, attempt in inspection.in_flight
        )
        grid.add_row("running", Text(f"{running}: started, not finished when the journal ends"))
    return grid


def _timeline(inspection: Inspection, limit: int | None) -> Table:
    # Seals (one per committed batch: its signature) say nothing about the run.
    records = [r for r in inspection.timeline if r.kind is not RecordKind.SEAL]
    shown = records if limit is None else records[-limit:] if limit else []
    start = inspection.origin
    table = Table(title=f"timeline ({len(records)} records)", title_justify="left", expand=False)
    table.add_column("#", justify="right", style="dim")
    table.add_column("time", no_wrap=True)
    table.add_column("+", justify="right", no_wrap=True, style="dim")
    table.add_column("kind", no_wrap=True)
    table.add_column("task", overflow="fold")
    table.add_column("attempt", justify="right")
    table.add_column("status", no_wrap=True)
    hidden = len(records) - len(shown)
    if hidden > 0:
        table.caption = f"the last {len(shown)}; {hidden} earlier (--limit 0 or --json: all)"
        table.caption_justify = "left"
    for record in shown:
        table.add_row(
            str(record.seq),
            local_time(record.at, precise=True),
            human_duration(record.at - start),
            Text(record.kind.value),
            Text(record.task_name or ""),
            "" if record.attempt is None else str(record.attempt),
            _status(record.status),
        )
    return table


def _failure(failure: Failure) -> Group:
    where = [f"attempt {failure.attempt}" if failure.attempt is not None else "attempt ?"]
    if failure.iteration is not None and failure.iteration > 1:
        where.append(f"iteration {failure.iteration}")
    where.append(f"worker {failure.worker or 'in-process'}")
    where.append(local_time(failure.at, precise=True))
    if failure.duration is not None:
        where.append(f"after {human_duration(failure.duration)}")
    if failure.status == "retrying":
        where.append("retried")
    code = f" [{failure.code}]" if failure.code else ""
    body: list[RenderableType] = [
        Text.assemble((f"{failure.type}{code}", "red"), f": {failure.message}")
    ]
    if failure.args:
        body.append(Text("arguments:", style="bold"))
        body.append(_indented(Group(*(Text(f"{k} = {v}") for k, v in failure.args.items()))))
    if failure.traceback:
        body.append(Text("traceback:", style="bold"))
        body.append(_indented(Text(failure.traceback.rstrip("\n"), style="dim")))
    return Group(
        Text(""),
        Text.assemble(("✗ ", "bold red"), (failure.task, "bold"), f"  {' · '.join(where)}"),
        _indented(Group(*body)),
    )


def _indented(renderable: RenderableType) -> Padding:
    """``renderable`` two columns in, wrapped lines too."""
    return Padding(renderable, (0, 0, 0, 2), expand=False)
