"""``aioflow containers ls | prune | build-image``: aioflow's containers on a Docker Engine.

``ls`` lists the containers aioflow created (found by their ``aioflow.managed``
label, never by name or image) with their run, task and owner process; ``prune``
removes the *orphans* among them: those whose owner process (on this host) is no
longer running, as a crashed or killed coordinator leaves behind. A container
without aioflow's labels is never listed, stopped or removed (R2). ``build-image``
packs this Python environment into a local image (no registry needed).
"""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import TYPE_CHECKING, Any

from rich.table import Table

from ..handlers._docker_config import (
    LABEL_MANAGED,
    LABEL_OWNER,
    LABEL_RUN,
    LABEL_TASK,
    owner_alive,
)

if TYPE_CHECKING:
    from ..cli import Consoles

__all__ = ["add_containers", "list_containers", "prune_containers"]


def _owner_state(labels: dict[str, str]) -> str:
    alive = owner_alive(labels.get(LABEL_OWNER, ""))
    return "other host" if alive is None else ("running" if alive else "gone")


async def list_containers(docker_host: str | None) -> list[dict[str, Any]]:
    """aioflow's containers on the engine, as plain data (labelled ones only)."""
    from .._optional import require
    from ..handlers._docker_errors import engine_error

    aiodocker = require("aiodocker", feature="aioflow containers")
    try:
        async with aiodocker.Docker(url=docker_host) as docker:
            found = await docker.containers.list(
                all=True, filters=json.dumps({"label": [f"{LABEL_MANAGED}=true"]})
            )
    except Exception as exc:
        raise engine_error(exc, "listing containers", image=None) from exc
    rows = []
    for container in found:
        info: dict[str, Any] = container._container
        labels: dict[str, str] = info.get("Labels") or {}
        if labels.get(LABEL_MANAGED) != "true":  # the filter is the engine's: check it
            continue
        rows.append(
            {
                "id": str(info.get("Id", ""))[:12],
                "full_id": info.get("Id", ""),
                "name": ",".join(n.lstrip("/") for n in info.get("Names") or []),
                "state": info.get("State", ""),
                "status": info.get("Status", ""),
                "run_id": labels.get(LABEL_RUN, ""),
                "task": labels.get(LABEL_TASK, ""),
                "owner": labels.get(LABEL_OWNER, ""),
                "owner_state": _owner_state(labels),
            }
        )
    return rows


async def prune_containers(
    docker_host: str | None, *, other_hosts: bool = False, dry_run: bool = False
) -> list[dict[str, Any]]:
    """Remove aioflow's orphaned containers; return the ones removed (or to remove)."""
    from .._optional import require
    from ..handlers._docker_errors import engine_error

    rows = [
        row
        for row in await list_containers(docker_host)
        if row["owner_state"] == "gone" or (other_hosts and row["owner_state"] == "other host")
    ]
    if dry_run or not rows:
        return rows
    aiodocker = require("aiodocker", feature="aioflow containers")
    try:
        async with aiodocker.Docker(url=docker_host) as docker:
            for row in rows:
                container = docker.containers.container(row["full_id"])
                await container.delete(force=True, v=True)
    except Exception as exc:
        raise engine_error(exc, "removing orphaned containers", image=None) from exc
    return rows


def _print(
    rows: list[dict[str, Any]], args: argparse.Namespace, consoles: Consoles, title: str
) -> None:
    if args.json:
        public = [{k: v for k, v in row.items() if k != "full_id"} for row in rows]
        consoles.out.out(json.dumps(public, indent=2), highlight=False)
        return
    if not rows:
        consoles.out.print(f"{title}: none")
        return
    table = Table(title=title, title_justify="left")
    columns = ("id", "name", "state", "run_id", "task", "owner", "owner_state")
    for column in columns:
        table.add_column(column.replace("_", " "))
    for row in rows:
        table.add_row(*(str(row[c]) for c in columns))
    consoles.out.print(table)


def cmd_ls(args: argparse.Namespace, consoles: Consoles) -> int:
    """List aioflow's containers (by label) and whether their owner still runs."""
    rows = asyncio.run(list_containers(args.docker_host))
    _print(rows, args, consoles, "aioflow containers")
    return 0


def cmd_prune(args: argparse.Namespace, consoles: Consoles) -> int:
    """Remove aioflow's containers whose owner process is gone (labelled ones only)."""
    rows = asyncio.run(
        prune_containers(args.docker_host, other_hosts=args.other_hosts, dry_run=args.dry_run)
    )
    _print(rows, args, consoles, "would remove" if args.dry_run else "removed")
    return 0


def cmd_build_image(args: argparse.Namespace, consoles: Consoles) -> int:
    """Pack this Python environment (and --module M...) into the local image TAG."""
    from ..handlers._docker_image import build_image

    image_id = asyncio.run(
        build_image(
            args.tag,
            args.module,
            docker_host=args.docker_host,
            exclude=("rich",) if args.exclude is None else args.exclude,
            otel=args.otel,
        )
    )
    consoles.err.print(f"built {args.tag} ({image_id[:19]})", soft_wrap=True)
    consoles.out.out(args.tag, highlight=False)
    return 0


def add_containers(subparsers: Any, common: argparse.ArgumentParser) -> None:
    """The ``containers`` subcommand and its own subcommands."""
    p = subparsers.add_parser(
        "containers",
        parents=[common],
        help="aioflow's containers: ls, prune orphans, build an image",
        description="List and prune the containers aioflow created (by label only: "
        "others are never touched), or pack this Python environment into a local image.",
        epilog="example: aioflow containers prune --dry-run",
    )
    sub = p.add_subparsers(title="containers commands", metavar="ACTION", required=True)
    host = argparse.ArgumentParser(add_help=False)
    host.add_argument(
        "--docker-host", default=None, metavar="URL", help="the engine (default: DOCKER_HOST)"
    )
    ls = sub.add_parser("ls", parents=[common, host], help="list aioflow's containers")
    ls.add_argument("--json", action="store_true", help="print JSON")
    ls.set_defaults(command=cmd_ls)
    prune = sub.add_parser(
        "prune",
        parents=[common, host],
        help="remove orphans: aioflow's containers whose owner process is gone",
    )
    prune.add_argument("--dry-run", action="store_true", help="only list what would go")
    prune.add_argument(
        "--other-hosts",
        action="store_true",
        help="also remove those owned by processes of other hosts (their state is unknown here)",
    )
    prune.add_argument("--json", action="store_true", help="print JSON")
    prune.set_defaults(command=cmd_prune)
    build = sub.add_parser(
        "build-image",
        parents=[common, host],
        help="pack this Python environment into a local image (no registry needed)",
        epilog="example: aioflow containers build-image myflows:1 --module myflows --otel",
    )
    build.add_argument("tag", metavar="TAG", help="the image's name:tag")
    build.add_argument(
        "--module",
        action="append",
        default=[],
        metavar="M",
        help="an importable module or package to copy in (repeatable): your tasks' code",
    )
    build.add_argument(
        "--exclude",
        action="append",
        default=None,
        metavar="DIST",
        help="a distribution to leave out (repeatable; default: rich, for the CLI only)",
    )
    build.add_argument(
        "--otel",
        action="store_true",
        help="add the OpenTelemetry SDK (opentelemetry-sdk and its requirements): traced "
        "calls are then traced inside the container too",
    )
    build.set_defaults(command=cmd_build_image)
