"""The ``aioflow`` command line: ``aioflow run | resume | graph``, ``aioflow --version``.

Each subcommand is one ``cmd_*`` function taking the parsed arguments and the
consoles, returning an exit code, and one ``_add_*`` parser block listed in
:data:`SUBCOMMANDS`. Errors are reported here, once, by :func:`main`:

=====  ==========================================================================
code   meaning
=====  ==========================================================================
0      success
1      the run failed (a task, a group, a limit)
2      usage or definition error: bad arguments, a workflow that cannot load or
       is not well formed (nothing ran)
130    the run was cancelled, or interrupted with Ctrl-C
=====  ==========================================================================

Results and graphs go to stdout; progress, errors and logs to stderr. The live
progress display only shows when both are terminals, so piped output stays clean.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any, TextIO, cast

from rich.console import Console
from rich.traceback import Traceback

from . import __version__
from ._cli.loading import load_workflow, parse_inputs
from ._cli.progress import ProgressDisplay, RunTracker
from ._cli.report import error_lines, results_table, run_document, summary, to_json
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


@dataclass(frozen=True, slots=True)
class Consoles:
    """Where the CLI writes: ``out`` is what a pipe receives, ``err`` the diagnostics."""

    out: Console
    err: Console


Command = Callable[[argparse.Namespace, Consoles], int]


# --- aioflow run ---------------------------------------------------------------------


def cmd_run(args: argparse.Namespace, consoles: Consoles) -> int:
    """Run a workflow in-process, show its progress, print its results."""
    inputs = parse_inputs(args.input)
    wf = load_workflow(args.target)
    live = consoles.out.is_terminal and consoles.err.is_terminal
    display = ProgressDisplay(consoles.err, enabled=live, description=wf.name)
    limit = args.max_concurrency or None  # 0: no limit
    follow = _follow(wf, inputs, display, limit, args.max_steps, args.checkpoint)
    return _report_run(follow, args, consoles)


def _report_run(
    outcome: Coroutine[Any, Any, RunResult], args: argparse.Namespace, consoles: Consoles
) -> int:
    """Await ``outcome`` on a new loop; print results (or JSON) and the error, if any."""
    result: RunResult | None = None
    error: WorkflowFailedError | WorkflowCancelledError | None = None
    try:
        result = asyncio.run(outcome)
    except (WorkflowFailedError, WorkflowCancelledError) as exc:
        error, result = exc, exc.result
    if args.json:
        consoles.out.out(to_json(run_document(result, error)), highlight=False)
    elif result is not None:
        if result.results:
            consoles.out.print(results_table(result))
        consoles.out.print(summary(result), soft_wrap=True)
    if error is not None:
        report_error(consoles.err, error, traceback=args.traceback)
        return exit_code(error)
    return EXIT_OK


async def _follow(
    wf: Workflow,
    inputs: Mapping[str, Any],
    display: ProgressDisplay,
    max_concurrency: int | None,
    max_steps: int | None,
    checkpoint: str | None,
) -> RunResult:
    tracker = RunTracker()
    async with start(
        wf, inputs, max_concurrency=max_concurrency, max_steps=max_steps, checkpoint=checkpoint
    ) as handle:
        with display:
            async for event in handle.events():
                tracker.apply(event)
                display.update(tracker)
        return await handle.result()


def _add_run(subparsers: Any, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser(
        "run",
        parents=[common],
        help="run a workflow in this process",
        description="Run a workflow in-process, with a live progress display, and print "
        "its results.",
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
        metavar="PATH",
        help="checkpoint the run to PATH after each batch of finished tasks "
        "(continue it with `aioflow resume PATH ...`)",
    )
    p.set_defaults(command=cmd_run)


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
    """Continue a checkpointed run; finished tasks are not run again."""
    wf = load_workflow(args.target)
    limit = args.max_concurrency or None  # 0: no limit
    return _report_run(resume(args.checkpoint, wf, max_concurrency=limit), args, consoles)


def _add_resume(subparsers: Any, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser(
        "resume",
        parents=[common],
        help="continue a checkpointed run",
        description="Continue the run checkpointed at PATH with the workflow it was "
        "written by; finished tasks are not run again. The run goes on checkpointing "
        "to PATH.",
        epilog="example: aioflow resume run.ckpt examples/etl.py:wf",
    )
    p.add_argument("checkpoint", metavar="PATH", help="the checkpoint file")
    p.add_argument("target", metavar="FILE_OR_MODULE:WORKFLOW", help=TARGET_HELP)
    _add_run_output_options(p)
    p.set_defaults(command=cmd_resume)


# --- aioflow graph -------------------------------------------------------------------


def cmd_graph(args: argparse.Namespace, consoles: Consoles) -> int:
    """Print a workflow's graph as Mermaid or Graphviz DOT."""
    wf = load_workflow(args.target)
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
    _add_graph,
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
