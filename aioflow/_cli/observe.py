"""``aioflow stats``: the fleet's figures, from the counters workers keep in Redis.

* ``aioflow stats --backend URL [--window S] [--json] [--watch [--interval S]]``:
  throughput and failure rate over the window, queue depths, dead letters, workers
  and what they run; ``--watch`` refreshes it until Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import anyio
from rich.console import Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from ..observability.stats import FleetStatistics, read_stats
from .distributed import BACKEND_HELP, _redis_backend
from .interrupt import interruptible

__all__ = ["add_observe", "stats_view"]


def stats_view(stats: FleetStatistics, where: str) -> Group:
    """The fleet's figures as a renderable (a summary line and a table of queues)."""
    head = Text(
        f"{where}: {stats.throughput:.3g} tasks/s over {stats.window:.0f} s "
        f"({stats.succeeded} succeeded, {stats.failed} failed, {stats.cancelled} cancelled; "
        f"failure rate {stats.failure_rate:.1%}) · {stats.workers} workers, "
        f"{stats.in_flight}/{stats.capacity} in flight · {stats.dead_letters} dead letters"
    )
    table = Table("queue", "depth", "succeeded", "failed", "cancelled")
    for q in stats.queues:
        table.add_row(q.name, str(q.depth), str(q.succeeded), str(q.failed), str(q.cancelled))
    return Group(head, table)


def cmd_stats(args: argparse.Namespace, consoles: Any) -> int:
    """Print the fleet's figures (once, or live with --watch)."""
    backend = _redis_backend(args.backend)
    where = backend.describe()

    async def once() -> FleetStatistics:
        return await read_stats(backend, window=args.window)

    async def main() -> FleetStatistics | None:
        async with backend:
            if not args.watch:
                return await once()
            if args.json:  # one JSON document per line, each refresh
                while True:
                    consoles.out.out(json.dumps((await once()).to_dict()), highlight=False)
                    await anyio.sleep(args.interval)
            with Live(console=consoles.out, auto_refresh=False) as live:
                while True:
                    live.update(stats_view(await once(), where), refresh=True)
                    await anyio.sleep(args.interval)

    try:
        stats = anyio.run(interruptible, main())
    except KeyboardInterrupt:
        return 0
    assert stats is not None
    if args.json:
        consoles.out.out(json.dumps(stats.to_dict()), highlight=False)
    else:
        consoles.out.print(stats_view(stats, where))
    return 0


def add_observe(subparsers: Any, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser(
        "stats",
        parents=[common],
        help="throughput, failure rate, queue depths and in-flight tasks of the fleet",
        description="The figures of every worker on a distributed backend, from the "
        "counters they keep in Redis: outcomes over the last --window seconds "
        "(whole minutes), queue depths, dead letters, live workers and what they run.",
        epilog="example: aioflow stats --backend redis://127.0.0.1:6379/0 --watch",
    )
    p.add_argument("--backend", required=True, metavar="URL", help=BACKEND_HELP)
    p.add_argument(
        "--window",
        type=int,
        default=60,
        metavar="SECONDS",
        help="how far back outcomes count (default 60; whole minutes)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.add_argument("--watch", action="store_true", help="refresh until Ctrl-C")
    p.add_argument(
        "--interval",
        type=float,
        default=2.0,
        metavar="SECONDS",
        help="with --watch: seconds between refreshes (default 2)",
    )
    p.set_defaults(command=cmd_stats)
