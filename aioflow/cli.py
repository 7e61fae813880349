"""The ``aioflow`` command line: ``aioflow run | resume | runs | inspect | purge | graph``.

Each subcommand is one ``cmd_*`` function taking the parsed arguments and the
consoles, returning an exit code, and one ``_add_*`` parser block listed in
:data:`SUBCOMMANDS`. Errors are reported here, once, by :func:`main`:

=====  ==========================================================================
code   meaning
=====  ==========================================================================
0      success
1      the run failed (a task, a group, a limit)
2      usage or definition error: bad arguments, a workflow that cannot load or
       is not well formed (nothing ran); a run store that cannot be used, an
       unknown run id, nothing to resume (``aioflow.checkpoint``)
130    the run was cancelled, or interrupted with Ctrl-C
=====  ==========================================================================

Results, graphs and what ``runs`` / ``inspect`` / ``purge`` report go to stdout;
progress, errors, warnings and logs to stderr (so are the tasks that failed in a
run that succeeded anyway, and the ``aioflow resume`` command of a journaled run
that did not succeed). The live progress display only shows when both are
terminals, so piped output stays clean.

The runs ``aioflow run`` starts are journaled to the run history,
``$AIOFLOW_HOME/runs.db`` (see :mod:`aioflow._cli.stores`), unless ``--no-history``;
with ``--checkpoint URL_OR_PATH`` that store is the journal instead.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import uuid
from collections.abc import Callable, Coroutine, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any, TextIO, TypeVar, cast

from rich.console import Console
from rich.text import Text
from rich.traceback import Traceback

from . import __version__
from ._cli.checkpoints import not_storable_hint, open_journal, print_resume_command
from ._cli.containers import add_containers
from ._cli.distributed import add_distributed, is_redis_url, journal_url
from ._cli.history import (
    find_run,
    inspect_document,
    list_runs,
    purge_runs,
    read_run,
    runs_command,
    runs_document,
)
from ._cli.history_view import inspect_view, runs_table
from ._cli.interrupt import interruptible
from ._cli.loading import load_workflow, parse_inputs
from ._cli.observe import add_observe
from ._cli.progress import ProgressDisplay, RunTracker
from ._cli.report import (
    error_lines,
    results_table,
    run_document,
    summary,
    to_json,
    tolerated_lines,
)
from ._cli.stores import (
    StoreTarget,
    history_target,
    store_target,
)
from .engine import DEFAULT_MAX_CONCURRENCY
from .errors import (
    AioflowError,
    CheckpointError,
    ConfigurationError,
    MissingDependencyError,
    WorkflowCancelledError,
    WorkflowDefinitionError,
    WorkflowFailedError,
)
from .observability.logging import LOGGER_NAME, configure_logging
from .results import RunResult
from .runs import resume, start
from .stores import (
    FINAL_RUN_STATUSES,
    RUN_STATUSES,
    format_duration,
    parse_duration,
)
from .workflow import Workflow

__all__ = ["EXIT_CANCELLED", "EXIT_FAILED", "EXIT_OK", "EXIT_USAGE", "build_parser", "main"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_CANCELLED = 0, 1, 2, 130
USAGE_ERRORS = (
    WorkflowDefinitionError,
    ConfigurationError,
    MissingDependencyError,
    CheckpointError,
)
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
TARGET_HELP = "the workflow: path/to/file.py:wf or package.module:wf"
STORE_HELP = (
    "the run store: a URL (sqlite:///abs/path/runs.db, sqlite://relative.db, memory://) "
    "or a path (a SQLite file)"
)
HISTORY_DEFAULT = "default: the run history, $AIOFLOW_HOME/runs.db"
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Consoles:
    """Where the CLI writes: ``out`` is what a pipe receives, ``err`` the diagnostics."""

    out: Console
    err: Console


Command = Callable[[argparse.Namespace, Consoles], int]


def _run_loop(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)``; an exception group of one error raises that error.

    Ctrl-C cancels ``main`` and raises ``KeyboardInterrupt`` (see
    :mod:`aioflow._cli.interrupt`).
    """
    try:
        return asyncio.run(interruptible(main))
    except BaseExceptionGroup as group:
        leaf: BaseException = group
        while isinstance(leaf, BaseExceptionGroup) and len(leaf.exceptions) == 1:
            leaf = leaf.exceptions[0]
        if isinstance(leaf, BaseExceptionGroup):
            raise
        raise leaf from leaf.__cause__


# --- aioflow run ---------------------------------------------------------------------


def cmd_run(args: argparse.Namespace, consoles: Consoles) -> int:
    """Run a workflow in-process, show its progress, print its results.

    The run is journaled to ``--checkpoint``, else to the run history (unless
    ``--no-history``).
    """
    inputs = parse_inputs(args.input)
    wf = load_workflow(args.target)
    if args.checkpoint is not None:
        journal: StoreTarget | None = store_target(args.checkpoint)
    elif args.backend is not None and is_redis_url(args.backend):
        journal = store_target(journal_url(args.backend))  # journaled to its Redis
    else:
        journal = None if args.no_history else history_target()
    live = consoles.out.is_terminal and consoles.err.is_terminal
    display = ProgressDisplay(consoles.err, enabled=live, description=wf.name)
    run_id = uuid.uuid4().hex
    options: dict[str, Any] = {
        "run_id": run_id,
        "max_concurrency": args.max_concurrency or None,  # 0: no limit
        "max_steps": args.max_steps,
    }
    if args.backend is not None:
        options["backend"] = args.backend
    follow = _follow(wf, inputs, display, options, journal, consoles.err)
    return _report_run(follow, wf, args, consoles, journal=journal, run_id=run_id)


async def _follow(
    wf: Workflow,
    inputs: Mapping[str, Any],
    display: ProgressDisplay,
    options: dict[str, Any],
    journal: StoreTarget | None,
    err: Console,
) -> RunResult:
    async with AsyncExitStack() as stack:
        if journal is not None:
            store = await open_journal(journal, err, stack)
            if store is not None:
                options = {**options, "checkpoint": store[0], "keyring": store[1]}
        tracker = RunTracker()
        async with start(wf, inputs, **options) as handle:
            with display:
                async for event in handle.events():
                    tracker.apply(event)
                    display.update(tracker)
            return await handle.result()


def _report_run(
    outcome: Coroutine[Any, Any, RunResult],
    wf: Workflow,
    args: argparse.Namespace,
    consoles: Consoles,
    *,
    journal: StoreTarget | None,
    run_id: str | None,
) -> int:
    """Await ``outcome`` on a new loop; print results (or JSON) and the error, if any.

    Tasks that failed in a run that succeeded anyway are named on stderr; a
    journaled run that did not succeed, or was interrupted, ends with the
    command that continues it.
    """
    result: RunResult | None = None
    error: WorkflowFailedError | WorkflowCancelledError | None = None
    try:
        result = _run_loop(outcome)
    except (WorkflowFailedError, WorkflowCancelledError) as exc:
        error, result = exc, exc.result
    except KeyboardInterrupt:
        consoles.err.print("interrupted: the run was cancelled", style="yellow")
        print_resume_command(consoles.err, journal, args.target, run_id)
        return EXIT_CANCELLED
    groups = {name: group.member_names for name, group in wf.groups.items()}
    if args.json:
        consoles.out.out(to_json(run_document(result, error, groups=groups)), highlight=False)
    elif result is not None:
        if result.results:
            consoles.out.print(results_table(result, groups=groups))
        consoles.out.print(summary(result), soft_wrap=True)
    if error is not None:
        report_error(consoles.err, error, traceback=args.traceback)
        hint = not_storable_hint(journal, error)
        if hint is not None:
            consoles.err.print(hint, soft_wrap=True)
        print_resume_command(
            consoles.err, journal, args.target, result.run_id if result else run_id
        )
        return exit_code(error)
    if result is not None:
        for line in tolerated_lines(result):
            consoles.err.print(line, soft_wrap=True)
    return EXIT_OK


def _add_run(subparsers: Any, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser(
        "run",
        parents=[common],
        help="run a workflow in this process",
        description="Run a workflow in-process, with a live progress display, and print "
        "its results. The run is recorded in the run history ($AIOFLOW_HOME/runs.db) "
        "unless --no-history, or journaled to --checkpoint instead.",
        epilog="example: aioflow run examples/etl.py:wf --input min_eur=50 --json",
    )
    p.add_argument("target", metavar="FILE_OR_MODULE:WORKFLOW", help=TARGET_HELP)
    p.add_argument(
        "-i",
        "--input",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a run input (repeatable); VALUE is parsed as JSON when it can be, else text",
    )
    _add_run_output_options(p)
    p.add_argument(
        "--max-steps", type=_natural, default=None, metavar="N", help="fail after N task runs"
    )
    p.add_argument(
        "--checkpoint",
        default=None,
        metavar="URL_OR_PATH",
        help="journal the run to this run store (sqlite:///abs/path/runs.db, "
        "sqlite://relative.db, memory://, or a path: a SQLite file; many runs share one) "
        "instead of the run history; continue it with `aioflow resume URL_OR_PATH ...`",
    )
    p.add_argument(
        "--no-history",
        action="store_true",
        help="do not record the run in the run history ($AIOFLOW_HOME/runs.db)",
    )
    _add_backend_option(p)
    p.set_defaults(command=cmd_run)


def _add_backend_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--backend",
        default=None,
        metavar="URL",
        help="where the tasks execute: memory:// (in this process, the default), "
        "memory://?serialize=true, or redis://host:6379/0 (on `aioflow worker`s; the "
        "run is then journaled to that Redis)",
    )


def _add_run_output_options(p: argparse.ArgumentParser) -> None:
    """Options shared by the commands that run a workflow (run, resume)."""
    p.add_argument("--json", action="store_true", help="print the outcome as one JSON document")
    p.add_argument(
        "--max-concurrency",
        type=_natural,
        default=DEFAULT_MAX_CONCURRENCY,
        metavar="N",
        help=f"tasks running at once (default {DEFAULT_MAX_CONCURRENCY}; 0 for no limit)",
    )


# --- aioflow resume ------------------------------------------------------------------


def cmd_resume(args: argparse.Namespace, consoles: Consoles) -> int:
    """Continue a journaled run; finished tasks are not run again."""
    backend = args.backend
    store = args.store
    if is_redis_url(store):  # a distributed run's journal: its tasks go back there
        backend = backend or store
        store = journal_url(store)
    journal = store_target(store)
    journal.require_existing()  # opening a missing file would create an empty store
    wf = load_workflow(args.target)
    limit = args.max_concurrency or None  # 0: no limit
    outcome = _resume(journal, wf, args.run_id, limit, backend)
    return _report_run(outcome, wf, args, consoles, journal=journal, run_id=args.run_id)


async def _resume(
    journal: StoreTarget,
    wf: Workflow,
    run_id: str | None,
    limit: int | None,
    backend: str | None,
) -> RunResult:
    async with journal.open() as store:
        if run_id is not None:  # a prefix will do, as for `aioflow inspect`
            info = await find_run(store, run_id, runs_command=runs_command(journal))
            run_id = info.run_id
        return await resume(store, wf, run_id=run_id, max_concurrency=limit, backend=backend)


def _add_resume(subparsers: Any, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser(
        "resume",
        parents=[common],
        help="continue a journaled run",
        description="Continue a run journaled in STORE (by `aioflow run`, in the run "
        "history or --checkpoint STORE, or by aioflow.run(wf, checkpoint=STORE)) with "
        "the workflow that started it; finished tasks are not run again. The run goes "
        "on journaling to STORE.",
        epilog="example: aioflow resume sqlite:///var/lib/app/runs.db examples/etl.py:wf "
        "--run-id 5916ee92...",
    )
    p.add_argument("store", metavar="STORE", help=STORE_HELP)
    p.add_argument("target", metavar="FILE_OR_MODULE:WORKFLOW", help=TARGET_HELP)
    p.add_argument(
        "--run-id",
        default=None,
        metavar="ID",
        help="the run to continue (default: the one unfinished run of the workflow in STORE)",
    )
    _add_run_output_options(p)
    _add_backend_option(p)
    p.set_defaults(command=cmd_resume)


# --- aioflow runs --------------------------------------------------------------------


def _read_target(text: str | None) -> StoreTarget:
    """The store a reading command names (``--store``), else the run history."""
    return store_target(text) if text is not None else history_target(retention=False)


def cmd_runs(args: argparse.Namespace, consoles: Consoles) -> int:
    """List the runs of a store (default: the run history), newest first."""
    target = _read_target(args.store)
    limit = args.limit or None  # 0: all
    runs = _run_loop(list_runs(target, args.workflow, args.status, limit))
    if args.json:
        consoles.out.out(to_json(runs_document(target.describe(), runs)), highlight=False)
    elif runs:
        table = runs_table(target.describe(), runs, limit=limit, width=consoles.out.width)
        consoles.out.print(table)
    else:
        wanted = [f"status {args.status}"] if args.status else []
        wanted += [f"workflow {args.workflow!r}"] if args.workflow else []
        which = f" ({', '.join(wanted)})" if wanted else ""
        consoles.out.print(Text(f"no runs in {target.describe()}{which}"), soft_wrap=True)
    return EXIT_OK


def _add_store_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--store", default=None, metavar="URL_OR_PATH", help=f"{STORE_HELP} ({HISTORY_DEFAULT})"
    )


def _add_runs(subparsers: Any, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser(
        "runs",
        parents=[common],
        help="list the runs of a run store (default: the run history)",
        description="List runs, newest first: id, workflow, status, start, duration, "
        "tasks done/failed/total.",
        epilog="example: aioflow runs --status failed --limit 10",
    )
    _add_store_option(p)
    p.add_argument("--status", choices=sorted(RUN_STATUSES), default=None, help="only these runs")
    p.add_argument("--workflow", default=None, metavar="NAME", help="only runs of this workflow")
    p.add_argument(
        "--limit",
        type=_natural,
        default=50,
        metavar="N",
        help="at most N runs, the newest (default 50; 0 for all)",
    )
    p.add_argument("--json", action="store_true", help="print the runs as one JSON document")
    p.set_defaults(command=cmd_runs)


# --- aioflow inspect -----------------------------------------------------------------


def cmd_inspect(args: argparse.Namespace, consoles: Consoles) -> int:
    """Show one run: summary, journal timeline, error snapshot of each failed attempt."""
    target = _read_target(args.store)
    inspection = _run_loop(read_run(target, args.run_id))
    if args.json:
        consoles.out.out(to_json(inspect_document(inspection)), highlight=False)
    else:
        for part in inspect_view(inspection, limit=args.limit or None):
            consoles.out.print(part)
    if inspection.warning:
        consoles.err.print(
            Text.assemble(
                ("warning ", "bold yellow"),
                "the run's journal could not be decoded here, so its inputs and error "
                f"snapshots are not shown: {inspection.warning}",
            ),
            soft_wrap=True,
        )
    return EXIT_OK


def _add_inspect(subparsers: Any, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser(
        "inspect",
        parents=[common],
        help="show a run: its timeline and the error of each failed attempt",
        description="Show one run of a run store: its summary, its journal's timeline, "
        "and for each failed attempt its error snapshot (exception type, message, "
        "traceback, attempt, arguments, worker).",
        epilog="example: aioflow inspect 5916ee92 --json",
    )
    p.add_argument("run_id", metavar="RUN_ID", help="the run's id, or its first characters")
    _add_store_option(p)
    p.add_argument(
        "--limit",
        type=_natural,
        default=200,
        metavar="N",
        help="show the last N records of the timeline (default 200; 0 for all; --json: all)",
    )
    p.add_argument("--json", action="store_true", help="print the run as one JSON document")
    p.set_defaults(command=cmd_inspect)


# --- aioflow purge -------------------------------------------------------------------


def cmd_purge(args: argparse.Namespace, consoles: Consoles) -> int:
    """Remove the finished runs older than ``--older-than`` from a store."""
    seconds = parse_duration(args.older_than)
    target = _read_target(args.store)
    purged = _run_loop(purge_runs(target, seconds, args.status))
    if args.json:
        doc = {
            "store": target.describe(),
            "purged": purged,
            "older_than": seconds,
            "status": args.status,
        }
        consoles.out.out(to_json(doc), highlight=False)
    else:
        which = f"{args.status} " if args.status else "finished "
        consoles.out.print(
            Text(
                f"purged {purged} {which}run{'' if purged == 1 else 's'} older than "
                f"{format_duration(seconds)} from {target.describe()}"
            ),
            soft_wrap=True,
        )
    return EXIT_OK


def _add_purge(subparsers: Any, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser(
        "purge",
        parents=[common],
        help="remove old finished runs from a run store (default: the run history)",
        description="Remove the runs that finished more than --older-than ago, with "
        "their journals; running runs are never removed. Prints how many were.",
        epilog="example: aioflow purge --older-than 7d --status succeeded",
    )
    p.add_argument(
        "--older-than",
        required=True,
        metavar="DURATION",
        help="e.g. 7d, 12h, 1h30m, 2w (a bare number is seconds)",
    )
    p.add_argument(
        "--status", choices=sorted(FINAL_RUN_STATUSES), default=None, help="only these runs"
    )
    _add_store_option(p)
    p.add_argument("--json", action="store_true", help="print the count as one JSON document")
    p.set_defaults(command=cmd_purge)


# --- aioflow graph -------------------------------------------------------------------


def cmd_graph(args: argparse.Namespace, consoles: Consoles) -> int:
    """Check a workflow's graph as a run would, then print it as Mermaid or Graphviz DOT."""
    wf = load_workflow(args.target)
    wf.validate()  # a static cycle, a duplicate name...: exit 2, like `aioflow run`
    text = wf.to_dot() if args.format == "dot" else wf.to_mermaid()
    consoles.out.out(text, end="", highlight=False)
    return EXIT_OK


def _add_graph(subparsers: Any, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser(
        "graph",
        parents=[common],
        help="print a workflow's graph (Mermaid or DOT)",
        description="Print a workflow's graph: a Mermaid flowchart, or Graphviz DOT.",
        epilog="example: aioflow graph examples/fanout.py:wf --format dot | dot -Tsvg > g.svg",
    )
    p.add_argument("target", metavar="FILE_OR_MODULE:WORKFLOW", help=TARGET_HELP)
    p.add_argument("--format", choices=("mermaid", "dot"), default="mermaid")
    p.set_defaults(command=cmd_graph)


# --- the parser and the entry point --------------------------------------------------

SUBCOMMANDS: tuple[Callable[[Any, argparse.ArgumentParser], None], ...] = (
    _add_run,
    _add_resume,
    _add_runs,
    _add_inspect,
    _add_purge,
    _add_graph,
    add_containers,
    add_distributed,
    add_observe,
)


def _natural(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The ``aioflow`` argument parser, with every subcommand of :data:`SUBCOMMANDS`."""
    parser = argparse.ArgumentParser(
        prog="aioflow",
        description="aioflow: an asyncio-native workflow runtime.",
        epilog="exit codes: 0 success, 1 failed run, 2 usage or definition error, "
        "130 cancelled or interrupted. See docs/cli.md.",
    )
    parser.add_argument("--version", action="version", version=f"aioflow {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--log-level",
        type=str.upper,
        choices=LOG_LEVELS,
        default=None,
        metavar="LEVEL",
        help=f"turn aioflow's logs on, to stderr: {', '.join(LOG_LEVELS)} (default: off)",
    )
    common.add_argument("--log-json", action="store_true", help="logs as JSON lines")
    common.add_argument(
        "--traceback", action="store_true", help="on error, show the full traceback too"
    )
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    for add in SUBCOMMANDS:
        add(subparsers, common)
    return parser


def exit_code(exc: BaseException) -> int:
    """The exit code for an error: 130 cancelled, 2 usage/definition, 1 otherwise."""
    if isinstance(exc, WorkflowCancelledError | KeyboardInterrupt):
        return EXIT_CANCELLED
    if isinstance(exc, USAGE_ERRORS):
        return EXIT_USAGE
    return EXIT_FAILED


def report_error(console: Console, exc: BaseException, *, traceback: bool = False) -> None:
    """Print ``exc``: its code, message and hint, then its causes (and traceback)."""
    if traceback:
        console.print(Traceback.from_exception(type(exc), exc, exc.__traceback__))
    for line in error_lines(exc):
        console.print(line, soft_wrap=True)


class _ConsoleStream:
    """A text stream writing through a console, so logs print above a live display."""

    def __init__(self, console: Console) -> None:
        self._console = console

    def write(self, text: str) -> int:
        self._console.out(text, end="", highlight=False)
        return len(text)

    def flush(self) -> None:
        self._console.file.flush()


def _start_logging(args: argparse.Namespace, console: Console) -> Callable[[], None]:
    if args.log_level is None and not args.log_json:
        return lambda: None  # a library is quiet; so is its CLI unless asked
    logger = logging.getLogger(LOGGER_NAME)
    previous = logger.level
    stream = cast(TextIO, _ConsoleStream(console))
    handler = configure_logging(args.log_level or "INFO", json=args.log_json, stream=stream)

    def stop() -> None:
        logger.removeHandler(handler)
        logger.setLevel(previous)

    return stop


def main(argv: list[str] | None = None) -> int:
    """Run the ``aioflow`` command line with ``argv`` (default: ``sys.argv[1:]``).

    Returns:
        The exit code: 0 success, 1 failed run, 2 usage or definition error,
        130 cancelled run or Ctrl-C.
    """
    consoles = Consoles(out=Console(), err=Console(stderr=True))
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error argparse reported
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    stop_logging = _start_logging(args, consoles.err)
    command: Command = args.command
    try:
        return command(args, consoles)
    except KeyboardInterrupt:
        consoles.err.print("interrupted: the run was cancelled", style="yellow")
        return EXIT_CANCELLED
    except AioflowError as exc:
        report_error(consoles.err, exc, traceback=args.traceback)
        return exit_code(exc)
    except Exception as exc:  # a bug: say so, with everything needed to report it
        report_error(consoles.err, exc, traceback=True)
        consoles.err.print("this is a bug in aioflow or its CLI; please report it", style="red")
        return EXIT_FAILED
    finally:
        stop_logging()


if __name__ == "__main__":
    raise SystemExit(main())
