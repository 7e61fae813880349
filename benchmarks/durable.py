"""Durable execution throughput: aioflow journaled to SQLite (optionally side by side with DBOS).

Every measurement runs in a fresh subprocess per (engine, shape, size, variant);
``--repeat`` fresh processes per measurement, the median is reported. The child
builds the workflow first (``build_seconds``, not timed) and times only the
execution (``seconds``). Each task (DBOS: each step) is a no-op apart from
incrementing a counter, which the child uses to check that every task ran
exactly once; a journaled aioflow run is also checked in its store (the run's
``tasks_succeeded`` must equal the task count) and a DBOS run in its system
database (one recorded step per step). Anything else is ``wrong_result``.

aioflow (``await aioflow.run(wf, checkpoint=URL)``), variants:

* ``memory``: no ``checkpoint=``, nothing durable (the unjournaled reference);
* ``sqlite_normal``: ``sqlite:///DIR/runs.db``, WAL mode, ``synchronous=normal``
  (the default: durable against ``kill -9`` at every commit);
* ``sqlite_full``: ``sqlite:///DIR/runs.db?synchronous=full`` (an fsync per commit:
  also survives a power loss).

Shapes (no-op tasks): ``chain``, N tasks in a line
(``chain(*[noop.bind(name=f"t{i}") for i in range(n)])``), at 1,000 and 10,000;
``fanout``, ``src >> parallel(*members, name="g") >> sink`` (N + 2 tasks), at 10,000.
A journaled child first runs a 20-task warm-up workflow into the same database
(many runs share one database), so the schema exists and the measured run is
the second run in it.

DBOS (``--vs dbos``; ``dbos`` on PyPI, SQLite system database in a temporary
directory), the same chain: one ``@DBOS.workflow()`` calling N ``@DBOS.step()``
no-op steps in sequence. Variants:

* ``async``: the documented async API (``async def`` workflow and steps, awaited
  on the caller's event loop), DBOS's SQLite defaults (rollback journal,
  ``synchronous=FULL``);
* ``sync``: the sync API (plain functions), the same defaults;
* ``async_wal`` / ``sync_wal``: the same, with every SQLite connection put in WAL
  mode with ``synchronous=NORMAL`` (a SQLAlchemy ``connect`` listener), the
  durability level of aioflow's default.

DBOS is configured and launched (schema migrations included) before timing and
runs a 20-step warm-up workflow first. The pragmas actually in effect on DBOS's
own engine are reported (``sqlite``). Ratios use DBOS's fastest variant; all of
them are in ``ratios_by_variant``.

Output: one JSON line per measurement on stdout (``"kind": "measurement"``), one
``"kind": "ratio"`` line per comparison (fan-out journaled/unjournaled; with
``--vs dbos`` aioflow/DBOS per chain size), then one ``"kind": "target"`` line per
performance target of issue 8 (``"met": true|false``). A human summary goes to
stderr.

``--vs dbos`` needs the peer installed: ``pip install -e ".[bench]"`` (the ``bench``
extra is not part of ``dev``). Without it the harness exits with code 2 at once,
saying so. ``--dbos-size N`` runs DBOS at N steps at most (for a slow machine);
ratios at other sizes are then marked invalid.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if not __package__:  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import (
    ChildOutcome,
    count_list,
    emit,
    fmt,
    machine_summary,
    missing_peer,
    package_version,
    peak_rss_mb,
    positive_int,
    python_summary,
    record_failure,
    run_child,
    target_record,
    verdict,
)

REPO_ROOT = Path(__file__).resolve().parent.parent

SHAPES: tuple[str, ...] = ("chain", "fanout")
DEFAULT_CHAIN_SIZES: tuple[int, ...] = (1_000, 10_000)
DEFAULT_FANOUT_TASKS = 10_000
QUICK_CHAIN_SIZES: tuple[int, ...] = (50, 200)
QUICK_FANOUT_TASKS = 200
WARMUP_TASKS = 20

AIOFLOW_VARIANTS: tuple[str, ...] = ("memory", "sqlite_normal", "sqlite_full", "sqlite_background")
JOURNALED_VARIANTS: tuple[str, ...] = ("sqlite_normal", "sqlite_full", "sqlite_background")
DEFAULT_JOURNALED = "sqlite_normal"
DBOS_VARIANTS: tuple[str, ...] = ("async", "sync", "async_wal", "sync_wal")

# Targets of issue 8 ("Targets"), evaluated on this run.
CHAIN_FLOOR = 3_000  # journaled 1,000-task chain, tasks/s
CHAIN_SCALING_FLOOR = 1.0  # 10,000-chain tasks/s / 1,000-chain tasks/s: no slower per task
FANOUT_FLOOR = 0.5  # journaled / unjournaled 10,000-wide fan-out
DBOS_FACTOR = 3.0  # aioflow journaled chain / DBOS steps/s

CONFIG_NOTES: dict[tuple[str, str], str] = {
    ("aioflow", "memory"): "await aioflow.run(wf) (no checkpoint=, nothing durable)",
    ("aioflow", "sqlite_normal"): (
        'await aioflow.run(wf, checkpoint="sqlite:///DIR/runs.db") (WAL, synchronous=normal)'
    ),
    ("aioflow", "sqlite_background"): (
        'await aioflow.run(wf, checkpoint="sqlite:///DIR/runs.db", checkpoint_every="background") '
        "(WAL, synchronous=normal; commits run behind the run)"
    ),
    ("aioflow", "sqlite_full"): (
        'await aioflow.run(wf, checkpoint="sqlite:///DIR/runs.db?synchronous=full") '
        "(WAL, synchronous=full)"
    ),
    ("dbos", "async"): (
        "async def @DBOS.workflow() awaiting N async def @DBOS.step() calls; "
        "SQLite system database, DBOS defaults"
    ),
    ("dbos", "sync"): (
        "def @DBOS.workflow() calling N def @DBOS.step() functions; "
        "SQLite system database, DBOS defaults"
    ),
    ("dbos", "async_wal"): (
        "as async, every connection PRAGMA journal_mode=WAL, synchronous=NORMAL"
    ),
    ("dbos", "sync_wal"): "as sync, every connection PRAGMA journal_mode=WAL, synchronous=NORMAL",
}


def shape_tasks(shape: str, n: int) -> int:
    """Number of user tasks in a shape of requested size ``n``."""
    if shape == "chain":
        return n
    if shape == "fanout":
        return n + 2
    raise ValueError(f"unknown shape {shape!r}")


def store_url(variant: str, directory: Path) -> str | None:
    """The ``checkpoint=`` URL of an aioflow variant (None: not journaled)."""
    if variant == "memory":
        return None
    url = f"sqlite:///{directory / 'runs.db'}"
    return url + "?synchronous=full" if variant == "sqlite_full" else url


def filesystem_of(path: Path) -> str | None:
    """Filesystem type holding ``path`` (from /proc/mounts; None where unknown)."""
    try:
        mounts = Path("/proc/mounts").read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    target = str(path.resolve())
    best, best_type = "", None
    for line in mounts:
        parts = line.split()
        if len(parts) < 3:
            continue
        mount = parts[1].replace("\\040", " ")
        inside = target == mount or target.startswith(mount.rstrip("/") + "/")
        if inside and len(mount) >= len(best):
            best, best_type = mount, parts[2]
    return best_type


def _db_bytes(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.iterdir() if p.is_file())


# --------------------------------------------------------------------------- child side


def aioflow_child(spec: dict[str, Any], record: dict[str, Any], directory: Path) -> None:
    """Measure one aioflow run; fill ``record``."""
    import aioflow
    from aioflow.stores import open_run_store

    shape, n, variant = spec["shape"], int(spec["n"]), spec["variant"]
    record["baseline_rss_mb"] = peak_rss_mb()
    count = [0]

    @aioflow.task
    async def noop() -> None:
        count[0] += 1

    def build(size: int, name: str) -> Any:
        with aioflow.workflow(name) as wf:
            if shape == "chain":
                aioflow.chain(*[noop.bind(name=f"t{i}") for i in range(size)])
            else:
                src = noop.bind(name="src")
                sink = noop.bind(name="sink")
                members = [noop.bind(name=f"t{i}") for i in range(size)]
                src >> aioflow.parallel(*members, name="g") >> sink
        return wf

    url = store_url(variant, directory)
    kwargs: dict[str, Any] = {} if url is None else {"checkpoint": url}
    if variant == "sqlite_background":
        kwargs["checkpoint_every"] = "background"

    def check_status(result: Any) -> None:
        status = getattr(result, "status", None)
        if str(getattr(status, "value", status)) != "succeeded":
            raise RuntimeError(f"aioflow run ended with status {status!r}")

    async def main() -> None:
        if spec.get("warmup", True):
            check_status(await aioflow.run(build(min(n, WARMUP_TASKS), "warmup"), **kwargs))
        count[0] = 0
        gc.collect()
        start = time.perf_counter()
        wf = build(n, f"bench-{shape}")
        record["build_seconds"] = round(time.perf_counter() - start, 6)
        start = time.perf_counter()
        result = await aioflow.run(wf, **kwargs)
        seconds = time.perf_counter() - start
        record["peak_rss_mb"] = peak_rss_mb()
        check_status(result)
        record["seconds"] = round(seconds, 6)
        record["executed"] = count[0]
        if url is not None:  # what the journal says: every task recorded as succeeded once
            async with open_run_store(url) as store:
                info = await store.get_run(result.run_id)
            record["journaled_succeeded"] = info.tasks_succeeded
            record["journal_records"] = info.last_seq
            record["db_bytes"] = _db_bytes(directory)

    asyncio.run(main())
    if url is not None:
        import sqlite3

        with sqlite3.connect(directory / "runs.db") as conn:  # persistent mode of the file
            record["sqlite"] = {
                "journal_mode": conn.execute("PRAGMA journal_mode").fetchone()[0],
                "synchronous": "full" if variant == "sqlite_full" else "normal",
            }
        conn.close()


_SYNCHRONOUS = {0: "off", 1: "normal", 2: "full", 3: "extra"}


def dbos_child(spec: dict[str, Any], record: dict[str, Any], directory: Path) -> None:
    """Measure one DBOS workflow of N steps; fill ``record``."""
    import sqlalchemy
    from dbos import DBOS, SetWorkflowID

    n, variant = int(spec["n"]), spec["variant"]
    is_async = variant.startswith("async")
    record["baseline_rss_mb"] = peak_rss_mb()
    if variant.endswith("_wal"):

        @sqlalchemy.event.listens_for(sqlalchemy.engine.Engine, "connect")
        def _wal(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.execute("PRAGMA journal_mode=WAL")
            dbapi_conn.execute("PRAGMA synchronous=NORMAL")

    count = [0]
    workflow: Callable[[int], Any]
    if is_async:

        @DBOS.step()
        async def noop_async() -> None:
            count[0] += 1

        @DBOS.workflow()
        async def chain_async(steps: int) -> int:
            for _ in range(steps):
                await noop_async()
            return steps

        workflow = chain_async
    else:

        @DBOS.step()
        def noop_sync() -> None:
            count[0] += 1

        @DBOS.workflow()
        def chain_sync(steps: int) -> int:
            for _ in range(steps):
                noop_sync()
            return steps

        workflow = chain_sync

    start = time.perf_counter()
    dbos = DBOS(
        config={
            "name": "aioflow-bench",
            "system_database_url": f"sqlite:///{directory / 'dbos.sqlite'}",
            "run_admin_server": False,
            "log_level": "WARNING",
        }
    )
    DBOS.launch()
    record["launch_seconds"] = round(time.perf_counter() - start, 6)
    record["build_seconds"] = None  # a DBOS workflow is a function: nothing to build
    try:

        async def run_async(workflow_id: str, steps: int) -> tuple[float, Any, list[Any]]:
            begin = time.perf_counter()
            with SetWorkflowID(workflow_id):
                value = await workflow(steps)
            seconds = time.perf_counter() - begin
            return seconds, value, await DBOS.list_workflow_steps_async(workflow_id)

        def run_sync(workflow_id: str, steps: int) -> tuple[float, Any, list[Any]]:
            begin = time.perf_counter()
            with SetWorkflowID(workflow_id):
                value = workflow(steps)
            seconds = time.perf_counter() - begin
            return seconds, value, DBOS.list_workflow_steps(workflow_id)

        def run(workflow_id: str, steps: int) -> tuple[float, Any, list[Any]]:
            if is_async:
                return asyncio.run(run_async(workflow_id, steps))
            return run_sync(workflow_id, steps)

        if spec.get("warmup", True):
            run("warmup", min(n, WARMUP_TASKS))
        count[0] = 0
        gc.collect()
        seconds, value, steps = run("bench", n)
        record["peak_rss_mb"] = peak_rss_mb()
        record["seconds"] = round(seconds, 6)
        record["executed"] = count[0]
        record["recorded_steps"] = len(steps)
        if value != n:
            raise RuntimeError(f"DBOS workflow returned {value!r}, expected {n}")
        record["db_bytes"] = _db_bytes(directory)
        try:  # the pragmas in effect on DBOS's own engine (a private attribute)
            with dbos._sys_db.engine.connect() as conn:
                mode = conn.exec_driver_sql("PRAGMA journal_mode").scalar()
                sync = conn.exec_driver_sql("PRAGMA synchronous").scalar()
            record["sqlite"] = {"journal_mode": mode, "synchronous": _SYNCHRONOUS.get(sync, sync)}
        except Exception as exc:  # informative only
            record["sqlite"] = {"unavailable": f"{type(exc).__name__}: {exc}"[:200]}
    finally:
        DBOS.destroy()


def child_main(spec: dict[str, Any]) -> int:
    """Measure one (engine, shape, size, variant) and print one JSON line."""
    engine, shape, n, variant = spec["engine"], spec["shape"], int(spec["n"]), spec["variant"]
    tasks = shape_tasks(shape, n)
    record: dict[str, Any] = {"engine": engine, "shape": shape, "variant": variant, "tasks": tasks}
    try:
        with tempfile.TemporaryDirectory(prefix="aioflow-durable-", dir=spec.get("dir")) as tmp:
            directory = Path(tmp)
            record["filesystem"] = filesystem_of(directory)
            if engine == "aioflow":
                aioflow_child(spec, record, directory)
            else:
                dbos_child(spec, record, directory)
        seconds = record["seconds"]
        record["tasks_per_s"] = round(tasks / seconds, 1) if seconds > 0 else None
        problems = []
        if record["executed"] != tasks:
            problems.append(f"{record['executed']} executions, expected {tasks}")
        if "journaled_succeeded" in record and record["journaled_succeeded"] != tasks:
            problems.append(f"journal has {record['journaled_succeeded']} succeeded tasks")
        if "recorded_steps" in record and record["recorded_steps"] != tasks:
            problems.append(f"DBOS recorded {record['recorded_steps']} steps")
        record["status"] = "wrong_result" if problems else "ok"
        record["error"] = "; ".join(problems) or None
    except BaseException as exc:  # report, never hang or vanish
        record_failure(record, exc)
        emit(record)
        return 1
    emit(record)
    return 0


# --------------------------------------------------------------------------- parent side


@dataclass(frozen=True)
class Job:
    engine: str
    shape: str
    n: int
    variant: str


def _variant_list(text: str) -> list[str]:
    variants = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [v for v in variants if v not in DBOS_VARIANTS]
    if unknown or not variants:
        raise argparse.ArgumentTypeError(
            f"unknown DBOS variant(s) {unknown}; choose from {DBOS_VARIANTS}"
        )
    return variants


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="benchmarks/durable.py",
        description=(
            "Durable execution throughput: aioflow journaled to SQLite (no-op chains, a "
            "fan-out; journaled vs not), optionally side by side with DBOS on SQLite. One "
            "fresh subprocess per measurement. Prints JSON lines on stdout, a summary on "
            "stderr."
        ),
    )
    parser.add_argument(
        "--vs",
        choices=["dbos"],
        help="also run the same chain of steps on DBOS (SQLite) and print aioflow/DBOS ratios",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"small sizes (chains of {','.join(map(str, QUICK_CHAIN_SIZES))}, fan-out "
        f"{QUICK_FANOUT_TASKS}), one repeat, for the test suite",
    )
    parser.add_argument(
        "--chain-sizes",
        type=count_list,
        help="comma-separated chain lengths; the first is the base of the scaling target "
        f"(default {','.join(map(str, DEFAULT_CHAIN_SIZES))})",
    )
    parser.add_argument(
        "--fanout-tasks",
        type=positive_int,
        help=f"width of the fan-out (default {DEFAULT_FANOUT_TASKS})",
    )
    parser.add_argument("--no-fanout", action="store_true", help="skip the fan-out runs")
    parser.add_argument(
        "--dbos-size",
        type=positive_int,
        help="run DBOS chains of at most this many steps (ratios at larger sizes are then "
        "marked invalid: they are only meaningful at equal size)",
    )
    parser.add_argument(
        "--dbos-variants",
        type=_variant_list,
        default=list(DBOS_VARIANTS),
        help=f"comma-separated DBOS variants (default: {','.join(DBOS_VARIANTS)})",
    )
    parser.add_argument(
        "--dir",
        help="where the temporary databases go (default: the system temporary directory; "
        "its filesystem is reported: a tmpfs makes every fsync free)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=600.0,
        help="seconds before an aioflow measurement is killed (default 600)",
    )
    parser.add_argument(
        "--dbos-timeout",
        type=float,
        default=900.0,
        help="seconds before a DBOS measurement is killed and reported as a timeout (default 900)",
    )
    parser.add_argument(
        "--repeat",
        type=positive_int,
        help="fresh-process runs per measurement; the median is reported (default 3, quick 1)",
    )
    parser.add_argument(
        "--no-warmup",
        action="store_true",
        help=f"skip the {WARMUP_TASKS}-task warm-up run done in each child before measuring",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    return parser


def dbos_sizes(args: argparse.Namespace) -> list[int]:
    """The DBOS chain length paired with each aioflow chain length."""
    cap = args.dbos_size
    return [n if cap is None else min(n, cap) for n in args.chain_sizes]


def plan(args: argparse.Namespace) -> list[Job]:
    """Jobs in run order: aioflow chains, the fan-out, then DBOS.

    The runs compared with each other by a scaling or fan-out target run close in
    time, so a change in machine load affects both sides alike.
    """
    jobs: list[Job] = []
    for n in args.chain_sizes:
        jobs += [Job("aioflow", "chain", n, v) for v in AIOFLOW_VARIANTS]
    if not args.no_fanout:
        jobs += [Job("aioflow", "fanout", args.fanout_tasks, v) for v in AIOFLOW_VARIANTS]
    if args.vs == "dbos":
        for n in dict.fromkeys(dbos_sizes(args)):
            jobs += [Job("dbos", "chain", n, v) for v in args.dbos_variants]
    return jobs


def _failure_from(outcome: ChildOutcome, timeout: float) -> tuple[str, str]:
    if outcome.timed_out:
        return "timeout", f"no result within {timeout:g} s; child process killed"
    tail = outcome.stderr_tail.splitlines()[-5:]
    return "error", f"child exited with code {outcome.returncode}: " + " | ".join(tail)


_FROM_MEDIAN = (
    "executed",
    "journaled_succeeded",
    "journal_records",
    "recorded_steps",
    "db_bytes",
    "sqlite",
    "filesystem",
)


def measure(job: Job, args: argparse.Namespace) -> dict[str, Any]:
    """Run one job ``args.repeat`` times in fresh processes; aggregate to one record."""
    tasks = shape_tasks(job.shape, job.n)
    record: dict[str, Any] = {
        "kind": "measurement",
        "engine": job.engine,
        "engine_version": package_version(job.engine),
        "shape": job.shape,
        "variant": job.variant,
        "journaled": job.engine == "dbos" or job.variant != "memory",
        "tasks": tasks,
        "seconds": None,
        "tasks_per_s": None,
        "build_seconds": None,
        "peak_rss_mb": None,
        "baseline_rss_mb": None,
        "executed": None,
        "status": "ok",
        "error": None,
        "samples_seconds": [],
        "config": CONFIG_NOTES.get((job.engine, job.variant)),
        "python": python_summary(),
        "machine": machine_summary(),
    }
    if job.engine == "dbos":
        record["steps_per_s"] = None
        record["launch_seconds"] = None
        record["api"] = "async" if job.variant.startswith("async") else "sync"
    timeout = args.dbos_timeout if job.engine == "dbos" else args.timeout
    spec = {
        "engine": job.engine,
        "shape": job.shape,
        "n": job.n,
        "variant": job.variant,
        "warmup": not args.no_warmup,
        "dir": args.dir,
    }
    argv = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)]
    samples: list[dict[str, Any]] = []
    for _ in range(args.repeat):
        # A scratch working directory: nothing an engine writes lands in the repository.
        with tempfile.TemporaryDirectory(prefix="aioflow-bench-") as scratch:
            outcome = run_child(argv, timeout, cwd=scratch, pythonpath=[str(REPO_ROOT)])
        child = outcome.record
        if outcome.timed_out or child is None or child.get("status") != "ok":
            status, error = _failure_from(outcome, timeout)
            if child is not None and child.get("status") not in (None, "ok"):
                status, error = str(child["status"]), str(child.get("error"))
            record.update(status=status, error=error)
            if child is not None:
                for key in ("baseline_rss_mb", "peak_rss_mb", "build_seconds", *_FROM_MEDIAN):
                    if key in child:
                        record[key] = child[key]
            return record
        samples.append(child)

    samples.sort(key=lambda s: s["seconds"])
    middle = samples[(len(samples) - 1) // 2]  # median (lower middle for even counts)
    builds = [s["build_seconds"] for s in samples if s.get("build_seconds") is not None]
    record.update(
        seconds=middle["seconds"],
        tasks_per_s=middle["tasks_per_s"],
        build_seconds=round(statistics.median(builds), 6) if builds else None,
        peak_rss_mb=max(s["peak_rss_mb"] for s in samples),
        baseline_rss_mb=round(statistics.median(s["baseline_rss_mb"] for s in samples), 2),
        samples_seconds=[s["seconds"] for s in samples],
    )
    for key in _FROM_MEDIAN:
        if key in middle:
            record[key] = middle[key]
    if job.engine == "dbos":
        record["steps_per_s"] = record["tasks_per_s"]
        record["launch_seconds"] = round(statistics.median(s["launch_seconds"] for s in samples), 6)
    return record


def _ok(rec: dict[str, Any] | None) -> bool:
    return rec is not None and rec["status"] == "ok" and rec["tasks_per_s"] is not None


def _find(
    results: Sequence[dict[str, Any]], engine: str, shape: str, n: int, variant: str
) -> dict[str, Any] | None:
    tasks = shape_tasks(shape, n)
    return next(
        (
            r
            for r in results
            if r["engine"] == engine
            and r["shape"] == shape
            and r["tasks"] == tasks
            and r["variant"] == variant
        ),
        None,
    )


def _side(rec: dict[str, Any] | None) -> dict[str, Any] | None:
    if rec is None:
        return None
    return {
        "engine": rec["engine"],
        "variant": rec["variant"],
        "tasks": rec["tasks"],
        "tasks_per_s": rec["tasks_per_s"],
        "status": rec["status"],
    }


def _ratio_line(
    name: str, ours: dict[str, Any] | None, theirs: dict[str, Any] | None, note: str
) -> dict[str, Any]:
    line: dict[str, Any] = {
        "kind": "ratio",
        "name": name,
        "numerator": _side(ours),
        "denominator": _side(theirs),
        "ratio": None,
        "valid": False,
        "note": note,
    }
    if ours is None or theirs is None:
        line["note"] = f"not measured; {note}"
    elif not _ok(ours) or not _ok(theirs):
        line["note"] = f"a measurement failed ({ours['status']}, {theirs['status']}); {note}"
    else:
        line["ratio"] = round(ours["tasks_per_s"] / theirs["tasks_per_s"], 3)
        line["valid"] = ours["tasks"] == theirs["tasks"]
        if not line["valid"]:
            line["note"] = (
                f"NOT VALID: {theirs['tasks']} against {ours['tasks']} tasks; ratios are only "
                f"meaningful at equal size; {note}"
            )
    return line


def ratios(results: Sequence[dict[str, Any]], args: argparse.Namespace) -> list[dict[str, Any]]:
    """Fan-out journaled/unjournaled; with ``--vs dbos`` aioflow/DBOS per chain size."""
    lines: list[dict[str, Any]] = []
    if not args.no_fanout:
        base = _find(results, "aioflow", "fanout", args.fanout_tasks, "memory")
        for variant in JOURNALED_VARIANTS:
            lines.append(
                _ratio_line(
                    f"fanout_{variant}_vs_memory",
                    _find(results, "aioflow", "fanout", args.fanout_tasks, variant),
                    base,
                    "aioflow journaled / not journaled, same fan-out, same invocation",
                )
            )
    if args.vs != "dbos":
        return lines
    for n, peer_n in zip(args.chain_sizes, dbos_sizes(args), strict=True):
        peers = [_find(results, "dbos", "chain", peer_n, v) for v in args.dbos_variants]
        ok_peers = [p for p in peers if p is not None and _ok(p)]
        best = max(ok_peers, key=lambda p: p["tasks_per_s"]) if ok_peers else None
        for variant in JOURNALED_VARIANTS:
            ours = _find(results, "aioflow", "chain", n, variant)
            line = _ratio_line(
                f"chain_{n}_{variant}_vs_dbos",
                ours,
                best if best is not None else (peers[0] if peers else None),
                "aioflow journaled chain tasks/s / DBOS steps/s (its fastest variant)",
            )
            line["dbos_variant"] = best["variant"] if best is not None else None
            line["ratios_by_variant"] = {
                p["variant"]: (
                    round(ours["tasks_per_s"] / p["tasks_per_s"], 2)
                    if ours is not None and _ok(ours) and _ok(p)
                    else None
                )
                for p in peers
                if p is not None
            }
            lines.append(line)
    return lines


def targets(
    results: Sequence[dict[str, Any]],
    ratio_lines: Sequence[dict[str, Any]],
    args: argparse.Namespace,
) -> list[dict[str, Any]]:
    """The performance targets of issue 8, evaluated on this run.

    The targets are stated for the default store (``sqlite_normal``); the same lines
    for ``sqlite_full`` are reported with ``"primary": false``.
    """
    out: list[dict[str, Any]] = []
    default_sizes = tuple(args.chain_sizes) == DEFAULT_CHAIN_SIZES

    def add(
        name: str,
        variant: str,
        threshold: str,
        value: float | None,
        met: bool | None,
        applicable: bool,
        note: str,
    ) -> None:
        out.append(
            target_record(
                name,
                threshold,
                value,
                met,
                applicable=applicable,
                note=note,
                variant=variant,
                primary=variant == DEFAULT_JOURNALED,
            )
        )

    first = args.chain_sizes[0]
    for variant in JOURNALED_VARIANTS:
        rec = _find(results, "aioflow", "chain", first, variant)
        tps = rec["tasks_per_s"] if _ok(rec) else None
        add(
            "journaled_chain_tasks_per_s",
            variant,
            f">= {CHAIN_FLOOR}",
            tps,
            None if tps is None else tps >= CHAIN_FLOOR,
            first == DEFAULT_CHAIN_SIZES[0],
            f"aioflow chain of {first} tasks journaled to SQLite",
        )
        for n in args.chain_sizes[1:]:
            big = _find(results, "aioflow", "chain", n, variant)
            value = (
                round(big["tasks_per_s"] / rec["tasks_per_s"], 3)
                if rec is not None and big is not None and _ok(rec) and _ok(big)
                else None
            )
            add(
                "journaled_chain_scaling",
                variant,
                f">= {CHAIN_SCALING_FLOOR} (no slower per task)",
                value,
                None if value is None else value >= CHAIN_SCALING_FLOOR,
                default_sizes,
                f"tasks/s at {n} tasks / tasks/s at {first} tasks",
            )
    for line in ratio_lines:
        name = line["name"]
        if name.startswith("fanout_"):
            variant = name.removeprefix("fanout_").removesuffix("_vs_memory")
            value = line["ratio"] if line["valid"] else None
            add(
                "journaled_fanout_vs_unjournaled",
                variant,
                f">= {FANOUT_FLOOR}",
                value,
                None if value is None else value >= FANOUT_FLOOR,
                args.fanout_tasks == DEFAULT_FANOUT_TASKS,
                f"journaled / unjournaled tasks/s, fan-out of {args.fanout_tasks}",
            )
        elif name.endswith("_vs_dbos"):
            variant = "sqlite_full" if name.endswith("sqlite_full_vs_dbos") else "sqlite_normal"
            value = line["ratio"] if line["valid"] else None
            tasks = line["numerator"]["tasks"] if line["numerator"] else None
            add(
                "chain_vs_dbos",
                variant,
                f">= {DBOS_FACTOR:g}x",
                value,
                None if value is None else value >= DBOS_FACTOR,
                default_sizes,
                f"chain of {tasks}: aioflow tasks/s / DBOS steps/s, against DBOS "
                f"{line['dbos_variant']} (its fastest variant)"
                + ("" if line["valid"] else f"; {line['note']}"),
            )
    return out


def print_summary(
    results: Sequence[dict[str, Any]],
    ratio_lines: Sequence[dict[str, Any]],
    target_lines: Sequence[dict[str, Any]],
) -> None:
    err = sys.stderr
    err.write(f"\n{python_summary()} on {machine_summary()}\n")
    header = (
        f"{'engine':8} {'shape':7} {'variant':14} {'tasks':>7} {'seconds':>9} "
        f"{'tasks/s':>10} {'build s':>8} {'peak MB':>8} {'sqlite':16}  status"
    )
    err.write(header + "\n")
    for r in results:
        pragmas = r.get("sqlite") or {}
        sqlite = (
            f"{pragmas.get('journal_mode')}/{pragmas.get('synchronous')}"
            if "journal_mode" in pragmas
            else "-"
        )
        err.write(
            f"{r['engine']:8} {r['shape']:7} {r['variant']:14} {r['tasks']:>7} "
            f"{fmt(r['seconds'], '.3f'):>9} {fmt(r['tasks_per_s'], ',.0f'):>10} "
            f"{fmt(r['build_seconds'], '.3f'):>8} {fmt(r['peak_rss_mb'], '.1f'):>8} "
            f"{sqlite:16}  {r['status']}" + (f": {r['error']}" if r["error"] else "") + "\n"
        )
    for line in ratio_lines:
        extra = f" (vs DBOS {line['dbos_variant']})" if "dbos_variant" in line else ""
        err.write(f"ratio {line['name']:32} = {fmt(line['ratio'])}{extra} valid={line['valid']}\n")
    for t in target_lines:
        result = verdict(t)
        scope = "" if t["applicable"] else " (sizes differ from the target's)"
        primary = "" if t["primary"] else " [second variant]"
        err.write(
            f"target {t['target']:32} {t['variant']:14} {t['threshold']:28} "
            f"value={fmt(t['value'])} -> {result}{scope}{primary}\n"
        )
    err.flush()


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.child is not None:
        return child_main(json.loads(args.child))
    if args.vs is not None and (problem := missing_peer(args.vs)) is not None:
        sys.stderr.write(problem)
        return 2
    if args.dir is not None and not os.path.isdir(args.dir):
        parser.error(f"--dir {args.dir!r} is not a directory")

    if args.chain_sizes is None:
        args.chain_sizes = list(QUICK_CHAIN_SIZES if args.quick else DEFAULT_CHAIN_SIZES)
    if args.fanout_tasks is None:
        args.fanout_tasks = QUICK_FANOUT_TASKS if args.quick else DEFAULT_FANOUT_TASKS
    if args.repeat is None:
        args.repeat = 1 if args.quick else 3

    results: list[dict[str, Any]] = []
    log: Callable[[str], int] = sys.stderr.write
    for job in plan(args):
        log(f"running {job.engine} {job.shape} ({job.variant}) n={job.n} ...\n")
        sys.stderr.flush()
        record = measure(job, args)
        results.append(record)
        emit(record)

    ratio_lines = ratios(results, args)
    for line in ratio_lines:
        emit(line)
    target_lines = targets(results, ratio_lines, args)
    for line in target_lines:
        emit(line)
    print_summary(results, ratio_lines, target_lines)
    aioflow_failed = [r for r in results if r["engine"] == "aioflow" and r["status"] != "ok"]
    return 1 if aioflow_failed else 0


if __name__ == "__main__":
    sys.exit(main())
