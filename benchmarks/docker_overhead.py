"""Container overhead: aioflow's DockerHandler against a raw ``docker run --rm``.

Three measurements, on one Docker Engine and one image, in one invocation:

* ``cold``: a workflow of one no-op task run with ``DockerHandler(image)``
  (``pool_size=0``: a fresh container per call, created, attached, started, fed
  the signed call, removed), timed around ``aioflow.run``; interleaved with the
  reference, a raw ``docker run --rm IMAGE python -c pass`` (the docker CLI), and
  the same through the Engine API (create, attach, start, wait, remove with
  aiodocker: the CLI's own start-up left out). Medians of ``--cold`` samples each.
* ``warm``: ``DockerHandler(image, pool_size=1)``, a chain of ``--warm`` no-op
  tasks in one run (after a warm-up task); the per-task overhead is each task's
  recorded duration (the handler's call: frames in and out, the container's
  worker, signatures), p50 and p99.
* ``throughput``: ``--tasks`` independent no-op tasks with ``pool_size=4``, tasks/s.

The no-op task is defined in this script (``__main__``): it travels to the
container as signed cloudpickle, so the image needs no module of the benchmark
(any image with Python and aioflow, e.g. ``aioflow containers build-image``).

Output: one JSON line per measurement (``"kind": "measurement"``), then one
``"kind": "target"`` line per target of issue 10 (``"met": true|false``).
``--build-image`` packs this environment into ``--image`` first.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, machine_summary, package_version, python_summary


async def noop() -> None:
    return None


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def _raw_cli(image: str, host: str) -> float:
    docker = shutil.which("docker")
    if docker is None:
        raise SystemExit("docker_overhead: the docker CLI is not on PATH")
    t0 = time.perf_counter()
    subprocess.run(
        [docker, "-H", host, "run", "--rm", image, "python", "-c", "pass"],
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - t0


async def _raw_api(docker: Any, image: str) -> float:
    t0 = time.perf_counter()
    config = {"Image": image, "Cmd": ["python", "-c", "pass"], "AttachStdout": True}
    container = await docker.containers.create(config)
    try:
        await container.start()
        await container.wait()
    finally:
        await container.delete(force=True)
    return time.perf_counter() - t0


def _one(task: Any, name: str) -> Any:
    from aioflow import workflow

    with workflow(name) as wf:
        wf.add(task)
    return wf


async def cold(image: str, host: str, samples: int) -> dict[str, Any]:
    import aiodocker

    import aioflow
    from aioflow import task
    from aioflow.handlers import DockerHandler

    box = task(noop, handler="box")
    ours, cli, api = [], [], []
    async with aiodocker.Docker(url=host) as docker:
        await _raw_api(docker, image)  # warm the engine's caches, both ways
        await aioflow.run(_one(box, "cold"), handlers={"box": DockerHandler(image)})
        for _ in range(samples):
            cli.append(await asyncio.to_thread(_raw_cli, image, host))
            api.append(await _raw_api(docker, image))
            t0 = time.perf_counter()
            await aioflow.run(_one(box, "cold"), handlers={"box": DockerHandler(image)})
            ours.append(time.perf_counter() - t0)
    return {
        "aioflow_median_s": statistics.median(ours),
        "docker_run_cli_median_s": statistics.median(cli),
        "docker_api_median_s": statistics.median(api),
        "ratio_vs_cli": statistics.median(ours) / statistics.median(cli),
        "ratio_vs_api": statistics.median(ours) / statistics.median(api),
        "samples": samples,
        "aioflow_samples_s": ours,
        "cli_samples_s": cli,
    }


async def warm(image: str, tasks: int, max_tasks: int) -> dict[str, Any]:
    import aioflow
    from aioflow import chain, task, workflow
    from aioflow.handlers import DockerHandler

    box = task(noop, handler="box")
    with workflow("warm") as wf:
        chain(*(box.bind(name=f"t{i}") for i in range(tasks + 1)))
    handler = DockerHandler(image, pool_size=1, max_tasks_per_container=max_tasks)
    result = await aioflow.run(wf, handlers={"box": handler})
    durations = [result.tasks[f"t{i}"].duration for i in range(1, tasks + 1)]  # t0: start-up
    return {
        "tasks": tasks,
        "max_tasks_per_container": max_tasks,
        "p50_ms": _percentile(durations, 50) * 1000,
        "p99_ms": _percentile(durations, 99) * 1000,
        "max_ms": max(durations) * 1000,
        "mean_ms": statistics.fmean(durations) * 1000,
        "first_task_ms": result.tasks["t0"].duration * 1000,
    }


async def throughput(image: str, tasks: int, pool_size: int) -> dict[str, Any]:
    import aioflow
    from aioflow import task, workflow
    from aioflow.handlers import DockerHandler

    box = task(noop, handler="box")
    with workflow("throughput") as wf:
        wf.add(*(box.bind(name=f"t{i}") for i in range(tasks)))
    handler = DockerHandler(image, pool_size=pool_size)
    t0 = time.perf_counter()
    result = await aioflow.run(wf, handlers={"box": handler})
    seconds = time.perf_counter() - t0
    assert len(result.results) == tasks
    return {
        "tasks": tasks,
        "pool_size": pool_size,
        "seconds": seconds,
        "tasks_per_s": tasks / seconds,
    }


async def run(args: argparse.Namespace) -> int:
    host = args.docker_host or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    os.environ["DOCKER_HOST"] = host
    if args.build_image:
        from aioflow.handlers._docker_image import build_image

        await build_image(args.image, docker_host=host)
    common = {
        "engine": "aioflow",
        "engine_version": package_version("aioflow"),
        "image": args.image,
        "python": python_summary(),
        "machine": machine_summary(),
    }
    c = await cold(args.image, host, args.cold)
    emit({"kind": "measurement", "measurement": "cold", **c, **common})
    # The default recycling (a new container every 100 calls: its start-up lands in
    # the tail), and the steady state (one container serves every call).
    recycled = await warm(args.image, args.warm, 100)
    emit({"kind": "measurement", "measurement": "warm_recycled", **recycled, **common})
    w = await warm(args.image, args.warm, args.warm + 1)
    emit({"kind": "measurement", "measurement": "warm", **w, **common})
    t = await throughput(args.image, args.tasks, 4)
    emit({"kind": "measurement", "measurement": "throughput", **t, **common})
    targets = [
        ("cold_ratio_vs_docker_run", c["ratio_vs_cli"], 1.2),
        ("warm_p50_ms", w["p50_ms"], 10.0),
        ("warm_p99_ms", w["p99_ms"], 30.0),
        ("warm_p99_ms_recycling_every_100", recycled["p99_ms"], 30.0),
    ]
    for name, value, threshold in targets:
        emit(
            {
                "kind": "target",
                "target": name,
                "value": round(value, 3),
                "threshold": threshold,
                "met": value <= threshold,
            }
        )
    print(
        f"cold: aioflow {c['aioflow_median_s'] * 1000:.0f} ms vs docker run "
        f"{c['docker_run_cli_median_s'] * 1000:.0f} ms (x{c['ratio_vs_cli']:.2f}); warm p50 "
        f"{w['p50_ms']:.2f} ms p99 {w['p99_ms']:.2f} ms; pool_size=4: "
        f"{t['tasks_per_s']:.0f} tasks/s",
        file=sys.stderr,
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image", default="aioflow-bench:latest", help="the image to use")
    parser.add_argument("--docker-host", default=None, help="the engine (default DOCKER_HOST)")
    parser.add_argument("--build-image", action="store_true", help="build --image first")
    parser.add_argument("--cold", type=int, default=10, help="cold samples (default 10)")
    parser.add_argument("--warm", type=int, default=500, help="warm tasks (default 500)")
    parser.add_argument("--tasks", type=int, default=400, help="throughput tasks (default 400)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (a harness check)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.quick:
        args.cold, args.warm, args.tasks = 2, 20, 20
    return asyncio.run(run(args))


if __name__ == "__main__":
    raise SystemExit(main())
