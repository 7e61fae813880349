"""``aioflow worker | workers | dlq | cancel``: running and operating distributed workers.

* ``aioflow worker URL --import MODULE ... [--concurrency N] [--queues a,b]``: serve
  the queues until SIGTERM or SIGINT (then a graceful shutdown: running tasks get
  ``--grace`` seconds, the rest goes back to the queue at once; a second signal
  stops at once).
* ``aioflow workers --backend URL [--json]``: the live workers and what they run.
* ``aioflow dlq list|retry|purge --backend URL [ID ...]``: the dead-letter stream.
* ``aioflow cancel RUN_ID --backend URL``: cancel a run from anywhere.
* ``aioflow watch RUN_ID --backend URL [--json]``: follow a run's progress from
  anywhere, as its coordinator publishes it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import anyio
from rich.table import Table
from rich.text import Text

from .._progress import ProgressSnapshot
from ..backends import journal_url, open_backend
from ..errors import ConfigurationError
from ..handlers import Handler
from ..serialization.refs import ImportPathError, import_path
from ..worker import Worker
from .interrupt import interruptible
from .loading import _import_file, _import_module
from .progress import ProgressDisplay, format_seconds

__all__ = ["add_distributed", "is_redis_url", "journal_url"]

BACKEND_HELP = "the distributed backend: redis://[user:password@]host:6379/0 (or rediss://)"


def is_redis_url(text: str) -> bool:
    return text.partition("://")[0].strip().lower() in ("redis", "rediss")


def _redis_backend(url: str) -> Any:
    if not is_redis_url(url):
        raise ConfigurationError(
            f"{url!r} is not a distributed backend",
            hint="Give the Redis URL the runs use, e.g. --backend redis://127.0.0.1:6379/0.",
        )
    return open_backend(url)


# --- aioflow worker ---------------------------------------------------------------------


def _import_all(modules: list[str]) -> None:
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # as `python -m` does: modules beside us import
    for name in modules:
        if name.endswith(".py") or os.sep in name:
            _import_file(Path(name))
        else:
            _import_module(name)


def _handlers(spec: str | None) -> dict[str, Handler]:
    """The handlers ``--handlers MODULE:NAME`` names: a mapping name -> Handler, or a
    function returning one."""
    if spec is None:
        return {}
    try:
        found = import_path(spec)
    except ImportPathError as exc:
        raise ConfigurationError(
            f"--handlers {spec!r}: {exc}",
            hint="Name a module-level mapping, e.g. --handlers myapp.workers:HANDLERS.",
        ) from exc
    if callable(found) and not isinstance(found, Mapping):
        found = found()
    if not isinstance(found, Mapping) or not all(
        isinstance(k, str) and isinstance(v, Handler) for k, v in found.items()
    ):
        raise ConfigurationError(
            f"--handlers {spec!r} is not a mapping of names to Handler objects",
            hint='For example HANDLERS = {"box": DockerHandler("myimage:1")}.',
        )
    return dict(found)


def _telemetry(args: argparse.Namespace) -> tuple[list[object], Any]:
    """The instruments ``--otel`` and ``--metrics-port`` ask for, and how to stop them."""
    instruments: list[object] = []
    stops: list[Any] = []
    if args.otel:
        from ..observability import Tracing
        from ..observability.setup import configure_tracing

        provider = configure_tracing()
        stops.append(provider.shutdown)
        instruments.append(Tracing(provider))
    if args.metrics_port is not None:
        from ..observability import Metrics
        from ..observability.setup import serve_prometheus

        meters, server = serve_prometheus(args.metrics_port, args.metrics_host)
        stops += [server.shutdown, meters.shutdown]
        instruments.append(Metrics(meters, task_names=not args.metrics_no_task_names))

    def stop() -> None:
        for each in stops:
            each()

    return instruments, stop


def cmd_worker(args: argparse.Namespace, consoles: Any) -> int:
    """Serve a backend's queues until SIGTERM or SIGINT."""
    _import_all(args.imports)
    queues = [q.strip() for q in args.queues.split(",") if q.strip()]
    backend = _redis_backend(args.url)
    instruments, telemetry_stop = _telemetry(args)
    worker = Worker(
        backend,
        handlers=_handlers(args.handlers),
        instruments=instruments,
        concurrency=args.concurrency or None,
        worker_id=args.worker_id,
    )
    worker.keyring.require_production(backend=backend.describe())  # before anything else
    consoles.err.print(
        f"aioflow worker {worker.worker_id}: serving {', '.join(queues)} on "
        f"{backend.describe()} (concurrency {args.concurrency or 'unlimited'})",
        soft_wrap=True,
        highlight=False,
    )

    async def main() -> None:
        async with anyio.create_task_group() as tg:

            async def signals() -> None:
                with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as received:
                    async for signum in received:
                        if worker.stopping:  # the second signal: stop now
                            consoles.err.print("stopping now", style="yellow")
                            tg.cancel_scope.cancel()
                            return
                        consoles.err.print(
                            f"{signal.Signals(signum).name}: shutting down (grace "
                            f"{args.grace:g} s; again to stop now)",
                            style="yellow",
                        )
                        worker.shutdown()

            if threading.current_thread() is threading.main_thread():
                tg.start_soon(signals)  # signals reach the main thread only
            await worker.run(queues=queues, grace=args.grace)
            tg.cancel_scope.cancel()

    try:
        anyio.run(main)
    except BaseExceptionGroup as group:  # the task group's: report the error itself
        leaf: BaseException = group
        while isinstance(leaf, BaseExceptionGroup) and len(leaf.exceptions) == 1:
            leaf = leaf.exceptions[0]
        raise leaf from leaf.__cause__
    finally:
        telemetry_stop()  # spans still buffered are exported; the endpoint closes
    consoles.err.print(f"aioflow worker {worker.worker_id}: stopped", highlight=False)
    return 0


def _add_worker(subparsers: Any, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser(
        "worker",
        parents=[common],
        help="execute the tasks of distributed runs",
        description="Serve the queues of a distributed backend: take task executions, run "
        "them, store their outcomes. SIGTERM or SIGINT: stop taking work, let running "
        "tasks finish within --grace seconds, hand the rest back to the queue; a second "
        "signal stops at once. Needs AIOFLOW_SECRET_KEY (the runs' key).",
        epilog="example: aioflow worker redis://127.0.0.1:6379/0 --import myapp.flows "
        "--concurrency 32 --queues default,io",
    )
    p.add_argument("url", metavar="URL", help=BACKEND_HELP)
    p.add_argument(
        "--import",
        dest="imports",
        action="append",
        default=[],
        metavar="MODULE",
        help="import this module (or file) first: where the tasks are (repeatable)",
    )
    p.add_argument(
        "--concurrency",
        type=int,
        default=16,
        metavar="N",
        help="tasks run at once (default 16; 0 for no limit)",
    )
    p.add_argument(
        "--queues",
        default="default",
        metavar="A,B",
        help="the queues to serve, comma-separated (default: default)",
    )
    p.add_argument(
        "--grace",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="on shutdown, how long running tasks may take to finish (default 30)",
    )
    p.add_argument(
        "--handlers",
        default=None,
        metavar="MODULE:NAME",
        help="the handlers tasks may name (handler=...): a mapping name -> Handler in "
        'your code, e.g. HANDLERS = {"box": DockerHandler("myimage:1")}, or a function '
        "returning one",
    )
    p.add_argument("--worker-id", default=None, metavar="ID", help="default: host-pid-random")
    p.add_argument(
        "--otel",
        action="store_true",
        help="OpenTelemetry spans of every attempt, children of their run's span; the SDK "
        "is configured from the OTEL_* environment variables (OTEL_TRACES_EXPORTER: otlp, "
        'console, none). Needs pip install "aioflow[otel]"',
    )
    p.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        metavar="PORT",
        help="serve Prometheus metrics at http://HOST:PORT/metrics (e.g. 9464)",
    )
    p.add_argument(
        "--metrics-host",
        default="0.0.0.0",
        metavar="HOST",
        help="the address --metrics-port listens on (default 0.0.0.0)",
    )
    p.add_argument(
        "--metrics-no-task-names",
        action="store_true",
        help="label task metrics by workflow and queue only, not by task name (for "
        "fan-outs of thousands of bound nodes)",
    )
    p.set_defaults(command=cmd_worker)


# --- aioflow workers ----------------------------------------------------------------------


def cmd_workers(args: argparse.Namespace, consoles: Any) -> int:
    """List the live workers."""
    backend = _redis_backend(args.backend)

    async def main() -> list[Any]:
        async with backend:
            found: list[Any] = await backend.workers()
            return found

    found = anyio.run(main)
    if args.json:
        document = [
            {
                "worker_id": w.worker_id,
                "host": w.host,
                "pid": w.pid,
                "queues": w.queues,
                "concurrency": w.concurrency,
                "running": w.running,
                "started_at": w.started_at,
                "stopping": w.stopping,
                "tasks": [{"run_id": run, "call_id": call} for run, call in w.tasks],
            }
            for w in found
        ]
        consoles.out.print_json(json.dumps(document))
        return 0
    if not found:
        consoles.err.print(f"no live worker on {backend.describe()}", highlight=False)
        return 0
    table = Table("worker", "host", "pid", "queues", "running", "up", "state")
    now = time.time()
    for w in found:
        table.add_row(
            w.worker_id,
            w.host,
            str(w.pid),
            ",".join(w.queues),
            f"{w.running}/{w.concurrency}",
            f"{now - w.started_at:.0f} s",
            "stopping" if w.stopping else "serving",
        )
    consoles.out.print(table)
    return 0


def _add_workers(subparsers: Any, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser(
        "workers",
        parents=[common],
        help="list the live workers of a distributed backend",
        description="List the workers whose heartbeat is current, with their queues and "
        "the tasks they run.",
        epilog="example: aioflow workers --backend redis://127.0.0.1:6379/0 --json",
    )
    p.add_argument("--backend", required=True, metavar="URL", help=BACKEND_HELP)
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.set_defaults(command=cmd_workers)


# --- aioflow dlq ----------------------------------------------------------------------------


def cmd_dlq(args: argparse.Namespace, consoles: Any) -> int:
    """List, retry or purge dead-lettered entries."""
    backend = _redis_backend(args.backend)
    ids = args.ids or None
    if args.action != "list" and ids is None and not args.all:
        raise ConfigurationError(
            f"aioflow dlq {args.action}: name the entries (IDs) or say --all",
            hint="`aioflow dlq list --backend URL` shows their ids.",
        )

    async def main() -> Any:
        async with backend:
            if args.action == "list":
                return await backend.dead_letters(limit=args.limit or None)
            if args.action == "retry":
                return await backend.retry_dead_letters(ids)
            return await backend.purge_dead_letters(ids)

    outcome = anyio.run(main)
    if args.action != "list":
        verb = "put back on their queues" if args.action == "retry" else "deleted"
        consoles.err.print(f"{outcome} dead-lettered entries {verb}", highlight=False)
        return 0
    if args.json:
        document = [
            {
                "id": d.id,
                "queue": d.queue,
                "priority": d.priority,
                "run_id": d.run_id,
                "call_id": d.call_id,
                "deliveries": d.deliveries,
                "error": d.error,
                "worker": d.worker,
                "at": d.at,
            }
            for d in outcome
        ]
        consoles.out.print_json(json.dumps(document))
        return 0
    if not outcome:
        consoles.err.print("the dead-letter stream is empty", highlight=False)
        return 0
    table = Table("id", "queue", "run", "deliveries", "error")
    for d in outcome:
        table.add_row(d.id, f"{d.queue}/{d.priority}", d.run_id, str(d.deliveries), d.error)
    consoles.out.print(table)
    return 0


def _add_dlq(subparsers: Any, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser(
        "dlq",
        parents=[common],
        help="the dead-letter stream: list, retry, purge",
        description="Entries are dead-lettered when delivered more than max_deliveries "
        "times (their workers kept dying) or when they do not verify (tampered, signed "
        "with another key). retry puts them back on their queues; purge deletes them.",
        epilog="example: aioflow dlq retry --backend redis://127.0.0.1:6379/0 --all",
    )
    p.add_argument("action", choices=("list", "retry", "purge"))
    p.add_argument("ids", nargs="*", metavar="ID", help="entry ids (retry, purge)")
    p.add_argument("--backend", required=True, metavar="URL", help=BACKEND_HELP)
    p.add_argument("--all", action="store_true", help="every entry (retry, purge)")
    p.add_argument("--limit", type=int, default=100, metavar="N", help="list at most N")
    p.add_argument("--json", action="store_true", help="list as one JSON document")
    p.set_defaults(command=cmd_dlq)


# --- aioflow cancel -------------------------------------------------------------------------


def cmd_cancel(args: argparse.Namespace, consoles: Any) -> int:
    """Cancel a distributed run."""
    backend = _redis_backend(args.backend)

    async def main() -> None:
        async with backend:
            await backend.cancel_run(args.run_id, args.reason)

    anyio.run(main)
    consoles.err.print(f"run {args.run_id}: cancellation sent", highlight=False)
    return 0


def _add_cancel(subparsers: Any, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser(
        "cancel",
        parents=[common],
        help="cancel a distributed run",
        description="Cancel a run on a distributed backend: its coordinator ends it "
        "(cancelled, journaled: `aioflow resume` can continue it), the workers cancel its "
        "running tasks and drop its queued ones.",
        epilog="example: aioflow cancel 5916ee92... --backend redis://127.0.0.1:6379/0",
    )
    p.add_argument("run_id", metavar="RUN_ID")
    p.add_argument("--backend", required=True, metavar="URL", help=BACKEND_HELP)
    p.add_argument("--reason", default="cancelled with aioflow cancel", help="why")
    p.set_defaults(command=cmd_cancel)


# --- aioflow watch --------------------------------------------------------------------------

#: The exit code of ``aioflow watch`` for how the run ended: those of ``aioflow run``
#: (see the table in :mod:`aioflow.cli`).
WATCH_EXIT = {"succeeded": 0, "failed": 1, "cancelled": 130}
_STATUS_STYLE = {"running": "cyan", "succeeded": "green", "failed": "red", "cancelled": "yellow"}


def snapshot_line(snapshot: ProgressSnapshot) -> Text:
    """One line of a snapshot: status, done/total, running, failed, elapsed, eta."""
    failed = snapshot.count("failed", "cancelled")
    parts = [
        f"{snapshot.done}/{snapshot.total} done",
        f"{snapshot.count('running')} running",
        f"{failed} failed",
    ]
    if snapshot.retries:
        parts.append(f"{snapshot.retries} retries")
    parts.append(f"elapsed {format_seconds(snapshot.elapsed)}")
    if not snapshot.final:
        parts.append(f"eta {format_seconds(snapshot.eta)}")
    text = Text.assemble(
        f"{snapshot.workflow} {snapshot.run_id}: ",
        (snapshot.status, _STATUS_STYLE.get(snapshot.status, "")),
        " " + ", ".join(parts),
    )
    if snapshot.running and not snapshot.final:
        text.append(f" ({', '.join(snapshot.running)})", style="dim")
    if snapshot.final and snapshot.reason:
        text.append(f": {snapshot.reason}")
    return text


class _WatchView:
    """Where ``aioflow watch`` shows the snapshots: JSON lines, text lines, or the
    live display (on a terminal), made when the first snapshot names the workflow."""

    def __init__(self, consoles: Any, *, json_lines: bool, live: bool) -> None:
        self._consoles = consoles
        self._json = json_lines
        self._live = live
        self._display: ProgressDisplay | None = None
        self._shown: dict[str, Any] | None = None
        self.last: ProgressSnapshot | None = None

    def show(self, snapshot: ProgressSnapshot) -> None:
        self.last = snapshot
        out = self._consoles.out
        if self._json:
            out.out(json.dumps(snapshot.to_document()), highlight=False)
            return
        if self._live:
            if self._display is None:
                description = f"{snapshot.workflow} {snapshot.run_id[:8]}"
                self._display = ProgressDisplay(
                    self._consoles.err, enabled=True, description=description
                )
                self._display.__enter__()
            self._display.update(snapshot)
            return
        # A keep-alive that says nothing new prints nothing new.
        seen = {**snapshot.to_document(), "at": None}
        if seen != self._shown:
            self._shown = seen
            out.print(snapshot_line(snapshot), soft_wrap=True, highlight=False)

    def __enter__(self) -> _WatchView:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._display is not None:
            self._display.__exit__(exc_type, exc, tb)
            if exc is None and self.last is not None:  # the bar is gone: say how it ended
                self._consoles.out.print(snapshot_line(self.last), soft_wrap=True)


def cmd_watch(args: argparse.Namespace, consoles: Any) -> int:
    """Follow a distributed run's progress until it ends; exit as it ended."""
    backend = _redis_backend(args.backend)
    live = not args.json and consoles.out.is_terminal and consoles.err.is_terminal
    view = _WatchView(consoles, json_lines=args.json, live=live)

    async def main() -> None:
        async with backend:
            snapshots = backend.follow_progress(args.run_id)
            async with contextlib.aclosing(snapshots):
                with view:
                    async for snapshot in snapshots:
                        view.show(snapshot)

    try:
        anyio.run(interruptible, main())
    except KeyboardInterrupt:
        return WATCH_EXIT["cancelled"]  # quietly: the run goes on, only watching stopped
    except BaseExceptionGroup as group:
        leaf: BaseException = group
        while isinstance(leaf, BaseExceptionGroup) and len(leaf.exceptions) == 1:
            leaf = leaf.exceptions[0]
        raise leaf from leaf.__cause__
    assert view.last is not None and view.last.final  # follow_progress raises otherwise
    return WATCH_EXIT.get(view.last.status, 1)


def _add_watch(subparsers: Any, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser(
        "watch",
        parents=[common],
        help="follow a distributed run's progress from anywhere",
        description="Attach to a run on a distributed backend and follow its progress as "
        "its coordinator publishes it (a few times a second): the live progress bar on "
        "a terminal, else one line per change. Ends when the run ends: exit code 0 if it "
        "succeeded, 1 if it failed, 130 if it was cancelled. If the coordinator stops "
        "publishing (its process died), says so, with the `aioflow resume` command, and "
        "exits 1.",
        epilog="example: aioflow watch 5916ee92... --backend redis://127.0.0.1:6379/0 --json",
    )
    p.add_argument("run_id", metavar="RUN_ID", help="the run's id (as it shows when it starts)")
    p.add_argument("--backend", required=True, metavar="URL", help=BACKEND_HELP)
    p.add_argument(
        "--json", action="store_true", help="print each snapshot as one JSON line instead"
    )
    p.set_defaults(command=cmd_watch)


def add_distributed(subparsers: Any, common: argparse.ArgumentParser) -> None:
    """Register ``worker``, ``workers``, ``dlq``, ``cancel`` and ``watch``."""
    for add in (_add_worker, _add_workers, _add_dlq, _add_cancel, _add_watch):
        add(subparsers, common)
