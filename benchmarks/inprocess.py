"""In-process engine throughput: aioflow (optionally side by side with graflow).

Every measurement runs in a fresh subprocess per (engine, shape, size, variant)
so that peak RSS (``ru_maxrss``) belongs to that one shape. The child records
the RSS right after importing the engine (``baseline_rss_mb``), builds the
graph (``build_seconds``, not part of the throughput) and times only the
execution (``seconds``). Each task is a no-op apart from incrementing a counter,
which the child uses to check that every task ran exactly once.

Shapes (no-op tasks):

* ``chain``: N tasks in a line.
* ``fanout``: one source, an N-wide parallel group, one sink (N + 2 tasks).
* ``fanout_edges``: the same DAG, built from plain ``>>`` edges (aioflow only;
  graflow has no join counting, its sink would run N times).
* ``lattice``: isqrt(N) layers of isqrt(N) tasks; each task of layer i+1
  depends on the same column and the next column (mod width) of layer i.

Output: one JSON line per measurement on stdout (``"kind": "measurement"``);
with ``--vs graflow`` one ``"kind": "ratio"`` line per shape; then one
``"kind": "target"`` line per performance target. A human summary goes to
stderr.

``--vs graflow`` needs the peer installed: ``pip install -e ".[bench]"`` (the
``bench`` extra is not part of ``dev``). Without it the harness exits with code 2
at once, saying so. Children run in a scratch working directory, so nothing an
engine writes there (graflow's ``feedback_data/``) lands in the repository.

graflow is driven the idiomatic way (``workflow()`` context, ``@task``, ``>>``,
``parallel``/``|`` groups, ``WorkflowContext.execute``) in its fastest ordinary
configuration: ``NoopTracer(enable_runtime_graph=False)`` instead of the default
tracer (which records every task in a networkx runtime graph), an explicit
``start_node`` and a ``max_steps`` large enough for the graph (graflow's default
of 10,000 steps silently stops a 10,000-task run early). Parallel groups are
measured with both its default thread-pool backend and its ``DIRECT`` backend;
ratios use whichever is faster.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import json
import math
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

SHAPES: tuple[str, ...] = ("chain", "fanout", "fanout_edges", "lattice")
ENGINES: tuple[str, ...] = ("aioflow", "graflow")

DEFAULT_TASKS = 10_000
DEFAULT_SCALE_TASKS = 100_000
QUICK_TASKS = 200
QUICK_SCALE_TASKS = 1_000
WARMUP_TASKS = 20

AIOFLOW_VARIANTS: dict[str, tuple[str, ...]] = {
    "chain": ("chain",),
    "fanout": ("parallel",),
    "fanout_edges": ("edges",),
    "lattice": ("edges",),
}
GRAFLOW_VARIANTS: dict[str, tuple[str, ...]] = {
    "chain": ("chain",),
    "fanout": ("group_thread_pool", "group_direct"),
    "fanout_edges": (),
    "lattice": ("layer_groups_thread_pool", "layer_groups_direct"),
}
GRAFLOW_UNSUPPORTED: dict[str, str] = {
    "fanout_edges": (
        "graflow has no join counting: WorkflowEngine.execute enqueues every successor each "
        "time one predecessor finishes (graflow/core/engine.py), so with plain edges the sink "
        "would run N times; the same DAG is measured as graflow 'fanout' (a ParallelGroup)"
    ),
}
# How the graflow graph compares to the aioflow graph of the same shape.
COMPARABILITY: dict[str, tuple[str, str, str]] = {
    # aioflow shape: (graflow shape, comparability, note)
    "chain": ("chain", "exact", "same graph, both built with chain()"),
    "fanout": ("fanout", "exact", "same graph, both built as src >> parallel(...) >> sink"),
    "fanout_edges": (
        "fanout",
        "same_dag",
        "same dependencies; graflow can only express the fan-in as a ParallelGroup",
    ),
    "lattice": (
        "lattice",
        "approximate",
        "graflow cannot join 2 predecessors (a task would run once per predecessor, "
        "2^layer times), so graflow runs each layer as a ParallelGroup chained to the "
        "next: same tasks, stricter (per-layer barrier) ordering",
    ),
}
CONFIG_NOTES: dict[tuple[str, str], str] = {
    ("aioflow", "chain"): "chain(*nodes); await aioflow.run(wf) (defaults)",
    ("aioflow", "parallel"): (
        'src >> parallel(*nodes, policy="strict") >> sink; await aioflow.run(wf) (defaults)'
    ),
    ("aioflow", "edges"): "plain a >> b edges; await aioflow.run(wf) (defaults)",
    ("graflow", "chain"): "chain(*nodes); NoopTracer(enable_runtime_graph=False)",
    ("graflow", "group_thread_pool"): (
        "src >> parallel(*nodes) >> sink, default THREADING group backend "
        "(ThreadPoolExecutor, cpu_count workers); NoopTracer(enable_runtime_graph=False)"
    ),
    ("graflow", "group_direct"): (
        "src >> parallel(*nodes).with_execution(backend=CoordinationBackend.DIRECT) >> sink; "
        "NoopTracer(enable_runtime_graph=False)"
    ),
    ("graflow", "layer_groups_thread_pool"): (
        "parallel(layer_0) >> parallel(layer_1) >> ..., default THREADING group backend; "
        "NoopTracer(enable_runtime_graph=False)"
    ),
    ("graflow", "layer_groups_direct"): (
        "parallel(layer_0) >> parallel(layer_1) >> ..., DIRECT group backend; "
        "NoopTracer(enable_runtime_graph=False)"
    ),
}


def lattice_dims(n: int) -> tuple[int, int]:
    """(layers, width) of the lattice for a requested size: a square isqrt(n) x isqrt(n)."""
    width = max(2, math.isqrt(n))
    return width, width


def shape_tasks(shape: str, n: int) -> int:
    """Number of user tasks in a shape of requested size ``n``."""
    if shape == "chain":
        return n
    if shape in ("fanout", "fanout_edges"):
        return n + 2
    if shape == "lattice":
        layers, width = lattice_dims(n)
        return layers * width
    raise ValueError(f"unknown shape {shape!r}")


# --------------------------------------------------------------------------- child side


@dataclass
class Execution:
    seconds: float
    executed: int


class AioflowRunner:
    """Builds and runs the shapes on aioflow (imported lazily, in the child only)."""

    engine = "aioflow"

    def __init__(self) -> None:
        import aioflow

        self._aioflow = aioflow
        self.count = 0

        @aioflow.task
        async def noop() -> None:
            self.count += 1

        self._noop = noop

    def build(self, shape: str, n: int, variant: str, name: str) -> Any:
        aioflow = self._aioflow
        noop = self._noop
        with aioflow.workflow(name) as wf:
            if shape == "chain":
                aioflow.chain(*[noop.bind(name=f"t{i}") for i in range(n)])
            elif shape in ("fanout", "fanout_edges"):
                src = noop.bind(name="src")
                sink = noop.bind(name="sink")
                nodes = [noop.bind(name=f"t{i}") for i in range(n)]
                if shape == "fanout":
                    src >> aioflow.parallel(*nodes, policy="strict") >> sink
                else:
                    for node in nodes:
                        src >> node
                        node >> sink
            elif shape == "lattice":
                layers, width = lattice_dims(n)
                grid = [[noop.bind(name=f"l{i}_{j}") for j in range(width)] for i in range(layers)]
                for i in range(layers - 1):
                    upper, lower = grid[i], grid[i + 1]
                    for j in range(width):
                        upper[j] >> lower[j]
                        upper[(j + 1) % width] >> lower[j]
            else:
                raise ValueError(f"unknown shape {shape!r}")
        return wf

    def execute(self, graph: Any) -> Execution:
        aioflow = self._aioflow
        before = self.count

        async def main() -> float:
            start = time.perf_counter()
            result = await aioflow.run(graph)
            elapsed = time.perf_counter() - start
            status = getattr(result, "status", None)
            if status is not None and str(status) != "succeeded":
                raise RuntimeError(f"aioflow run ended with status {status!r}")
            return elapsed

        seconds = asyncio.run(main())
        return Execution(seconds=seconds, executed=self.count - before)


class GraflowRunner:
    """Builds and runs the shapes on graflow (imported lazily, in the child only)."""

    engine = "graflow"

    def __init__(self) -> None:
        import graflow  # type: ignore[import-untyped]
        from graflow.coordination.coordinator import (  # type: ignore[import-untyped]
            CoordinationBackend,
        )
        from graflow.trace.noop import NoopTracer  # type: ignore[import-untyped]

        self._graflow = graflow
        self._direct = CoordinationBackend.DIRECT
        self._tracer_cls = NoopTracer
        self.count = 0

        def noop() -> None:
            self.count += 1

        # Created outside any workflow context, so this template is never a graph node;
        # calling it with task_id=... creates registered instances.
        self._noop = graflow.task(id="noop")(noop)

    def build(self, shape: str, n: int, variant: str, name: str) -> Any:
        graflow = self._graflow
        noop = self._noop
        tracer = self._tracer_cls(enable_runtime_graph=False)
        with graflow.workflow(name, tracer=tracer) as wf:
            if shape == "chain":
                graflow.chain(*[noop(task_id=f"t{i}") for i in range(n)])
                start = "t0"
            elif shape == "fanout":
                src = noop(task_id="src")
                sink = noop(task_id="sink")
                group = graflow.parallel(*[noop(task_id=f"t{i}") for i in range(n)])
                if variant == "group_direct":
                    group.with_execution(backend=self._direct)
                src >> group >> sink
                start = "src"
            elif shape == "lattice":
                layers, width = lattice_dims(n)
                groups = []
                for i in range(layers):
                    group = graflow.parallel(*[noop(task_id=f"l{i}_{j}") for j in range(width)])
                    if variant == "layer_groups_direct":
                        group.with_execution(backend=self._direct)
                    groups.append(group)
                for upper, lower in itertools.pairwise(groups):
                    upper >> lower
                start = groups[0].task_id
            else:
                raise ValueError(f"graflow cannot run shape {shape!r}")
        return wf, start, shape_tasks(shape, n)

    def execute(self, graph: Any) -> Execution:
        wf, start, tasks = graph
        before = self.count
        # Steps count group nodes too; leave ample room so max_steps never truncates.
        max_steps = 4 * tasks + 1_000
        begin = time.perf_counter()
        wf.execute(start_node=start, max_steps=max_steps)
        seconds = time.perf_counter() - begin
        return Execution(seconds=seconds, executed=self.count - before)


def child_main(spec: dict[str, Any]) -> int:
    """Measure one (engine, shape, size, variant) and print one JSON line."""
    engine, shape, n, variant = spec["engine"], spec["shape"], int(spec["n"]), spec["variant"]
    tasks = shape_tasks(shape, n)
    record: dict[str, Any] = {"engine": engine, "shape": shape, "variant": variant, "tasks": tasks}
    try:
        runner: AioflowRunner | GraflowRunner
        runner = AioflowRunner() if engine == "aioflow" else GraflowRunner()
        record["baseline_rss_mb"] = peak_rss_mb()
        if spec.get("warmup", True):
            warm = runner.build(shape, min(n, WARMUP_TASKS), variant, "warmup")
            runner.execute(warm)
            del warm
        gc.collect()
        start = time.perf_counter()
        graph = runner.build(shape, n, variant, f"bench-{shape}")
        record["build_seconds"] = round(time.perf_counter() - start, 6)
        result = runner.execute(graph)
        record["peak_rss_mb"] = peak_rss_mb()
        record["seconds"] = round(result.seconds, 6)
        record["tasks_per_s"] = round(tasks / result.seconds, 1) if result.seconds > 0 else None
        record["executed"] = result.executed
        if result.executed != tasks:
            record["status"] = "wrong_result"
            record["error"] = f"{result.executed} task executions, expected {tasks}"
        else:
            record["status"] = "ok"
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
    role: str  # "base" or "scale"


def _shape_list(text: str) -> list[str]:
    shapes = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in shapes if s not in SHAPES]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown shape(s) {unknown}; choose from {SHAPES}")
    return shapes


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="benchmarks/inprocess.py",
        description=(
            "In-process throughput of no-op task graphs (chain, fan-out, lattice), one fresh "
            "subprocess per measurement. Prints JSON lines on stdout, a summary on stderr."
        ),
    )
    parser.add_argument(
        "--vs",
        choices=["graflow"],
        help="also run the same shapes on this engine and print aioflow/peer ratios",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"small sizes ({QUICK_TASKS} tasks, scaling at {QUICK_SCALE_TASKS}), one repeat, "
        "for the test suite",
    )
    parser.add_argument(
        "--tasks",
        type=positive_int,
        help=f"size N of each shape (default {DEFAULT_TASKS}; lattice is isqrt(N) x isqrt(N))",
    )
    parser.add_argument(
        "--shapes",
        type=_shape_list,
        default=list(SHAPES),
        help=f"comma-separated shapes to run (default: {','.join(SHAPES)})",
    )
    parser.add_argument(
        "--scale-tasks",
        "--size",
        dest="scale_tasks",
        type=positive_int,
        help=f"size of the aioflow-only scaling runs (default {DEFAULT_SCALE_TASKS})",
    )
    parser.add_argument(
        "--scale-shapes",
        type=_shape_list,
        default=["fanout", "chain"],
        help="comma-separated shapes for the scaling runs (default: fanout,chain)",
    )
    parser.add_argument("--no-scale", action="store_true", help="skip the scaling runs")
    parser.add_argument(
        "--peer-only",
        action="store_true",
        help="with --vs: run only the peer engine (no aioflow runs, ratios or targets)",
    )
    parser.add_argument(
        "--graflow-tasks",
        "--graflow-size",
        dest="graflow_tasks",
        type=positive_int,
        help="run graflow at this size instead of --tasks (ratios are then marked invalid: "
        "they are only meaningful at equal size)",
    )
    parser.add_argument(
        "--graflow-timeout",
        type=float,
        default=300.0,
        help="seconds before a graflow measurement is killed and reported as a timeout "
        "(default 300)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=600.0,
        help="seconds before an aioflow measurement is killed (default 600)",
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
    parser.add_argument(
        "--observability",
        action="store_true",
        help="instead: the cost of Tracing and Metrics on a fan-out of --tasks (default "
        "10k), off vs no SDK vs SDK with in-memory exporters, --repeat rounds (default 7)",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    return parser


def plan(args: argparse.Namespace) -> list[Job]:
    """Jobs in run order, grouped by shape: aioflow, its scaling run, then the peer.

    Runs that are compared with each other (a ratio, a scaling factor) run close in
    time, so a change in machine load affects both sides alike.
    """
    if args.peer_only and args.vs is None:
        raise SystemExit("--peer-only needs --vs")
    scale = not args.peer_only and not args.no_scale and args.scale_tasks != args.tasks
    jobs: list[Job] = []
    for shape in dict.fromkeys([*args.shapes, *(args.scale_shapes if scale else [])]):
        ours = [] if args.peer_only else AIOFLOW_VARIANTS[shape]
        if shape in args.shapes:
            jobs += [Job("aioflow", shape, args.tasks, v, "base") for v in ours]
        if scale and shape in args.scale_shapes:
            jobs += [Job("aioflow", shape, args.scale_tasks, v, "scale") for v in ours]
        if args.vs == "graflow" and shape in args.shapes:
            if shape in GRAFLOW_UNSUPPORTED:
                jobs.append(Job("graflow", shape, args.graflow_tasks, "unsupported", "base"))
            jobs += [
                Job("graflow", shape, args.graflow_tasks, v, "base")
                for v in GRAFLOW_VARIANTS[shape]
            ]
    return jobs


def _failure_from(outcome: ChildOutcome, timeout: float) -> tuple[str, str]:
    if outcome.timed_out:
        return "timeout", f"no result within {timeout:g} s; child process killed"
    tail = outcome.stderr_tail.splitlines()[-5:]
    return "error", f"child exited with code {outcome.returncode}: " + " | ".join(tail)


def measure(job: Job, args: argparse.Namespace) -> dict[str, Any]:
    """Run one job ``args.repeat`` times in fresh processes; aggregate to one record."""
    tasks = shape_tasks(job.shape, job.n)
    record: dict[str, Any] = {
        "kind": "measurement",
        "engine": job.engine,
        "engine_version": package_version(job.engine),
        "shape": job.shape,
        "variant": job.variant,
        "role": job.role,
        "tasks": tasks,
        "seconds": None,
        "tasks_per_s": None,
        "build_seconds": None,
        "peak_rss_mb": None,
        "baseline_rss_mb": None,
        "rss_delta_mb": None,
        "executed": None,
        "status": "ok",
        "error": None,
        "samples_seconds": [],
        "config": CONFIG_NOTES.get((job.engine, job.variant)),
        "python": python_summary(),
        "machine": machine_summary(),
    }
    if job.variant == "unsupported":
        record["status"] = "unsupported"
        record["error"] = GRAFLOW_UNSUPPORTED[job.shape]
        return record

    timeout = args.graflow_timeout if job.engine == "graflow" else args.timeout
    spec = {
        "engine": job.engine,
        "shape": job.shape,
        "n": job.n,
        "variant": job.variant,
        "warmup": not args.no_warmup,
    }
    argv = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)]
    samples: list[dict[str, Any]] = []
    for _ in range(args.repeat):
        # A scratch working directory: engines may write there (graflow creates
        # feedback_data/ in the current directory), never into the repository.
        with tempfile.TemporaryDirectory(prefix="aioflow-bench-") as scratch:
            outcome = run_child(argv, timeout, cwd=scratch, pythonpath=[str(REPO_ROOT)])
        child = outcome.record
        if outcome.timed_out or child is None or child.get("status") != "ok":
            status, error = _failure_from(outcome, timeout)
            if child is not None and child.get("status") not in (None, "ok"):
                status, error = str(child["status"]), str(child.get("error"))
            record.update(status=status, error=error)
            if child is not None:
                for key in ("baseline_rss_mb", "peak_rss_mb", "build_seconds", "executed"):
                    record[key] = child.get(key)
            return record
        samples.append(child)

    samples.sort(key=lambda s: s["seconds"])
    middle = samples[(len(samples) - 1) // 2]  # median (lower middle for even counts)
    record.update(
        seconds=middle["seconds"],
        tasks_per_s=middle["tasks_per_s"],
        build_seconds=round(statistics.median(s["build_seconds"] for s in samples), 6),
        peak_rss_mb=max(s["peak_rss_mb"] for s in samples),
        baseline_rss_mb=round(statistics.median(s["baseline_rss_mb"] for s in samples), 2),
        executed=middle["executed"],
        samples_seconds=[s["seconds"] for s in samples],
    )
    record["rss_delta_mb"] = round(record["peak_rss_mb"] - record["baseline_rss_mb"], 2)
    return record


def _ok(rec: dict[str, Any] | None) -> bool:
    return rec is not None and rec["status"] == "ok" and rec["tasks_per_s"] is not None


def ratios(results: Sequence[dict[str, Any]], shapes: Sequence[str]) -> list[dict[str, Any]]:
    """aioflow/graflow tasks-per-second ratio per shape (against graflow's fastest variant)."""
    lines: list[dict[str, Any]] = []
    for shape in shapes:
        ours = next(
            (
                r
                for r in results
                if r["engine"] == "aioflow" and r["role"] == "base" and r["shape"] == shape
            ),
            None,
        )
        peer_shape, comparable, note = COMPARABILITY[shape]
        peers = [
            r
            for r in results
            if r["engine"] == "graflow"
            and r["shape"] == peer_shape
            and r["variant"] != "unsupported"
        ]
        ours_tps = ours["tasks_per_s"] if ours is not None and _ok(ours) else None
        by_variant = {
            p["variant"]: round(ours_tps / p["tasks_per_s"], 2) if ours_tps and _ok(p) else None
            for p in peers
        }
        ok_peers = [p for p in peers if _ok(p)]
        best = max(ok_peers, key=lambda p: p["tasks_per_s"]) if ok_peers else None
        line: dict[str, Any] = {
            "kind": "ratio",
            "shape": shape,
            "graflow_shape": peer_shape,
            "aioflow_tasks": ours["tasks"] if ours else None,
            "graflow_tasks": best["tasks"] if best else (peers[0]["tasks"] if peers else None),
            "aioflow_tasks_per_s": ours_tps,
            "graflow_tasks_per_s": best["tasks_per_s"] if best else None,
            "graflow_variant": best["variant"] if best else None,
            "ratio": None,
            "ratios_by_variant": by_variant,
            "valid": False,
            "comparable": comparable,
            "note": note,
        }
        if ours is None:
            line["note"] = f"aioflow not measured; {note}"
        elif not _ok(ours):
            line["note"] = f"aioflow measurement failed ({ours['status']}); {note}"
        elif best is None:
            failures = "; ".join(f"{p['variant']}: {p['status']} ({p['error']})" for p in peers)
            line["note"] = f"no graflow result ({failures or 'not run'}); {note}"
        else:
            line["ratio"] = round(ours["tasks_per_s"] / best["tasks_per_s"], 2)
            line["valid"] = ours["tasks"] == best["tasks"]
            if not line["valid"]:
                line["note"] = (
                    f"NOT VALID: graflow ran {best['tasks']} tasks, aioflow {ours['tasks']}; "
                    f"ratios are only meaningful at equal size; {note}"
                )
        lines.append(line)
    return lines


def targets(
    results: Sequence[dict[str, Any]],
    ratio_lines: Sequence[dict[str, Any]],
    args: argparse.Namespace,
) -> list[dict[str, Any]]:
    """The performance targets of docs/benchmarks.md, evaluated on this run."""

    def find(shape: str, role: str) -> dict[str, Any] | None:
        return next(
            (
                r
                for r in results
                if r["engine"] == "aioflow" and r["shape"] == shape and r["role"] == role
            ),
            None,
        )

    base_ok = args.tasks == DEFAULT_TASKS
    out: list[dict[str, Any]] = []

    def add(
        name: str,
        threshold: str,
        value: float | None,
        met: bool | None,
        applicable: bool,
        note: str = "",
    ) -> None:
        out.append(target_record(name, threshold, value, met, applicable=applicable, note=note))

    for shape, floor in (("fanout", 50_000), ("chain", 20_000)):
        rec = find(shape, "base")
        if rec is None:
            continue
        tps = rec["tasks_per_s"] if _ok(rec) else None
        add(
            f"{shape}_tasks_per_s",
            f">= {floor}",
            tps,
            None if tps is None else tps >= floor,
            base_ok,
            f"aioflow {shape} at {rec['tasks']} tasks",
        )
    for shape, factor in (("fanout", 10), ("chain", 5)):
        line = next((x for x in ratio_lines if x["shape"] == shape), None)
        if line is None:
            continue
        value = line["ratio"] if line["valid"] else None
        add(
            f"{shape}_vs_graflow",
            f">= {factor}x",
            value,
            None if value is None else value >= factor,
            base_ok,
            f"against graflow {line['graflow_variant']} (its fastest variant)",
        )
    rec = find("fanout", "base")
    if rec is not None and rec["peak_rss_mb"] is not None and rec["status"] == "ok":
        add(
            "fanout_peak_rss_mb",
            "<= 100",
            rec["peak_rss_mb"],
            rec["peak_rss_mb"] <= 100,
            base_ok,
            f"whole-process peak RSS; after imports {rec['baseline_rss_mb']} MB",
        )
    for shape in args.scale_shapes:
        base, scaled = find(shape, "base"), find(shape, "scale")
        if base is None or scaled is None:
            continue
        value = (
            round(scaled["tasks_per_s"] / base["tasks_per_s"], 3)
            if _ok(base) and _ok(scaled)
            else None
        )
        add(
            f"{shape}_scaling",
            ">= 0.8 (within 20%)",
            value,
            None if value is None else value >= 0.8,
            base_ok and args.scale_tasks == DEFAULT_SCALE_TASKS,
            f"tasks/s at {scaled['tasks']} tasks / tasks/s at {base['tasks']} tasks",
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
        f"{'engine':8} {'shape':13} {'variant':25} {'tasks':>7} {'seconds':>9} "
        f"{'tasks/s':>10} {'build s':>8} {'peak MB':>8} {'base MB':>8}  status"
    )
    err.write(header + "\n")
    for r in results:
        err.write(
            f"{r['engine']:8} {r['shape']:13} {r['variant']:25} {r['tasks']:>7} "
            f"{fmt(r['seconds'], '.3f'):>9} {fmt(r['tasks_per_s'], ',.0f'):>10} "
            f"{fmt(r['build_seconds'], '.3f'):>8} {fmt(r['peak_rss_mb'], '.1f'):>8} "
            f"{fmt(r['baseline_rss_mb'], '.1f'):>8}  {r['status']}"
            + (f": {r['error']}" if r["error"] and r["status"] != "unsupported" else "")
            + "\n"
        )
    for line in ratio_lines:
        err.write(
            f"ratio {line['shape']:13} aioflow/graflow = {fmt(line['ratio'])}"
            f" (vs {line['graflow_variant']}, {line['comparable']}, valid={line['valid']})\n"
        )
    for t in target_lines:
        result = verdict(t)
        scope = "" if t["applicable"] else " (sizes differ from the target's)"
        err.write(
            f"target {t['target']:22} {t['threshold']:20} value={fmt(t['value'])}"
            f" -> {result}{scope}\n"
        )
    err.flush()


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.child is not None:
        return child_main(json.loads(args.child))
    if args.observability:
        from benchmarks._observability import run_observability

        tasks = args.tasks or (QUICK_TASKS if args.quick else DEFAULT_TASKS)
        return run_observability(tasks, args.repeat or (1 if args.quick else 7))
    if args.vs is not None and (problem := missing_peer(args.vs)) is not None:
        sys.stderr.write(problem)
        return 2

    if args.tasks is None:
        args.tasks = QUICK_TASKS if args.quick else DEFAULT_TASKS
    if args.scale_tasks is None:
        args.scale_tasks = QUICK_SCALE_TASKS if args.quick else DEFAULT_SCALE_TASKS
    if args.repeat is None:
        args.repeat = 1 if args.quick else 3
    if args.graflow_tasks is None:
        args.graflow_tasks = args.tasks
    if args.no_scale:
        args.scale_shapes = []

    results: list[dict[str, Any]] = []
    log: Callable[[str], int] = sys.stderr.write
    for job in plan(args):
        log(f"running {job.engine} {job.shape} ({job.variant}) n={job.n} ...\n")
        sys.stderr.flush()
        record = measure(job, args)
        results.append(record)
        emit(record)

    compare = args.vs == "graflow" and not args.peer_only
    ratio_lines = ratios(results, args.shapes) if compare else []
    for line in ratio_lines:
        emit(line)
    target_lines = [] if args.peer_only else targets(results, ratio_lines, args)
    for line in target_lines:
        emit(line)
    print_summary(results, ratio_lines, target_lines)
    failed = [r for r in results if r["status"] not in ("ok", "unsupported")]
    aioflow_failed = [r for r in failed if r["engine"] == "aioflow"]
    return 1 if aioflow_failed else 0


if __name__ == "__main__":
    sys.exit(main())
