"""Where a run's time goes: planning (one node per task) versus executing the tasks.

``benchmarks/inprocess.py`` times ``await aioflow.run(wf)`` as a whole. This script
splits that time for the same no-op shapes, to show which part grows faster than the
number of tasks. It uses the engine's internal entry points (``aioflow.runs._prepare``
and the prepared run's ``execute``), so it may need updating when those change.

    .venv/bin/python benchmarks/phases.py [--sizes 10000,100000] [--repeat 5]
        [--shapes fanout,chain,far_ancestor]

Shapes: ``fanout`` (src >> parallel(n tasks) >> sink), ``chain`` (n tasks in a row) and
``far_ancestor`` (``src`` then a chain of n tasks that each take ``src``'s result by
parameter name, so every parameter comes from a far ancestor: the case that made
planning quadratic before it was planned over the whole graph at once).

Prints one JSON line per (shape, size): the median of ``--repeat`` runs of the plan
seconds, the execute seconds, and tasks/s for the whole run and for execution alone.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import anyio

import aioflow
from aioflow import chain, parallel, task, workflow
from aioflow.runs import _prepare

if not __package__:  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import emit


@task
async def noop() -> None:
    return None


@task
async def use(src: None) -> None:
    return None


def build(shape: str, n: int) -> aioflow.Workflow:
    with workflow(shape) as wf:
        if shape == "chain":
            chain(*[noop.bind(name=f"t{i}") for i in range(n)])
        elif shape == "far_ancestor":
            chain(noop.bind(name="src"), *[use.bind(name=f"c{i}") for i in range(n)])
        elif shape == "fanout":
            nodes = [noop.bind(name=f"t{i}") for i in range(n)]
            noop.bind(name="src") >> parallel(*nodes) >> noop.bind(name="sink")
        else:
            raise SystemExit(f"unknown shape {shape!r}: use fanout, chain or far_ancestor")
    return wf


def measure(wf: aioflow.Workflow) -> tuple[float, float]:
    gc.collect()
    t0 = time.perf_counter()
    # wf, inputs, backend, handlers, max_steps, run options: as aioflow.run(wf) does.
    prepared = _prepare(wf, None, None, None, None, {"max_threads": 40})
    t1 = time.perf_counter()
    anyio.run(prepared.execute)
    return t1 - t0, time.perf_counter() - t1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--shapes", default="fanout,chain")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    for shape in args.shapes.split(","):
        for n in (int(s) for s in args.sizes.split(",")):
            plans: list[float] = []
            runs: list[float] = []
            for _ in range(args.repeat):
                plan, execute = measure(build(shape, n))  # a new graph: nothing cached
                plans.append(plan)
                runs.append(execute)
            plan_s, exec_s = statistics.median(plans), statistics.median(runs)
            tasks = {"fanout": n + 2, "far_ancestor": n + 1}.get(shape, n)
            record: dict[str, Any] = {
                "kind": "phases",
                "shape": shape,
                "tasks": tasks,
                "plan_seconds": round(plan_s, 6),
                "execute_seconds": round(exec_s, 6),
                "tasks_per_s": round(tasks / (plan_s + exec_s), 1),
                "execute_tasks_per_s": round(tasks / exec_s, 1),
            }
            emit(record)


if __name__ == "__main__":
    main()
