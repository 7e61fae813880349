"""Engines of ``benchmarks/redis_throughput.py``: one module per engine.

Each module is both the **worker-side task module** (the worker processes import
it: it defines the no-op task and the task that returns ``time.time()`` at its
start) and the **producer** the harness drives (:class:`Producer` in each
module). The modules read the Redis URL from ``AIOFLOW_BENCH_REDIS_URL`` at
import time, because the worker CLIs of the peers import a module-level object
(a broker, a settings dict, a worker) that already names its Redis.

Nothing here imports an engine: this package's ``__init__`` is imported by the
orchestrating process, which may not have the peers installed. The engine
modules import their engine at the top.

Producer protocol (duck-typed; see ``redis_throughput.child_main``)::

    async with module.Producer(url, poll=0.001) as producer:
        prepared = await producer.prepare(n)     # not timed
        completed = await producer.fanout(prepared)   # timed: first enqueue .. last result
        started_at = await producer.one()        # submit one task, wait for its result:
                                                 # the task's own time.time() at its start
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ENGINES", "PEERS", "EngineSpec", "mark_ready", "worker_commands"]

#: Environment variables shared by the harness, the workers and the producers.
URL_ENV = "AIOFLOW_BENCH_REDIS_URL"
READY_ENV = "AIOFLOW_BENCH_READY_DIR"
TRACING_ENV = "AIOFLOW_BENCH_TRACING"  # "on": aioflow's producer traces its runs


@dataclass(frozen=True)
class EngineSpec:
    """How to find, start and describe one engine."""

    name: str
    module: str  # benchmarks.redis_peers.<module>: tasks + Producer
    probe: tuple[str, ...]  # importable modules the engine needs
    distributions: tuple[str, ...]  # PyPI distributions whose versions are reported
    config: str  # what is measured, in one line


ENGINES: dict[str, EngineSpec] = {
    "aioflow": EngineSpec(
        "aioflow",
        "benchmarks.redis_peers.aioflow_tasks",
        ("aioflow", "redis"),
        ("aioflow", "redis", "hiredis"),
        "aioflow.run(wf, backend=redis://...): a workflow of N independent @aioflow.task no-op "
        "nodes; workers: python -m aioflow worker URL --import MODULE --concurrency 32",
    ),
    "streaq": EngineSpec(
        "streaq",
        "benchmarks.redis_peers.streaq_peer",
        ("streaq",),
        ("streaq", "coredis"),
        "Worker(redis_url, concurrency=32); worker.enqueue_many(tasks) (one pipeline), "
        "task.result() in order (pub/sub); workers: streaq run MODULE:worker",
    ),
    "saq": EngineSpec(
        "saq",
        "benchmarks.redis_peers.saq_peer",
        ("saq", "redis"),
        ("saq", "redis", "hiredis"),
        "Queue.from_url; enqueue of N jobs gathered (as Queue.map does), completion by "
        "Queue.listen (saq's pub/sub multiplexer, subscribed before enqueue); workers: "
        "saq MODULE.settings (concurrency 32)",
    ),
    "taskiq": EngineSpec(
        "taskiq",
        "benchmarks.redis_peers.taskiq_peer",
        ("taskiq", "taskiq_redis"),
        ("taskiq", "taskiq-redis", "redis", "hiredis"),
        "RedisStreamBroker + RedisAsyncResultBackend; task.kiq() (32 at a time), "
        "wait_result(check_interval=POLL) in order; workers: taskiq worker MODULE:broker "
        "--workers 1 --max-async-tasks 32",
    ),
    "arq": EngineSpec(
        "arq",
        "benchmarks.redis_peers.arq_peer",
        ("arq",),
        ("arq", "redis", "hiredis"),
        "create_pool; enqueue_job (32 at a time), job.result(poll_delay=POLL) in order; "
        "workers: arq MODULE.WorkerSettings (max_jobs=32, arq's default poll_delay=0.5 s)",
    ),
}

#: The peers ``--vs`` accepts, in the issue's order.
PEERS: tuple[str, ...] = ("streaq", "saq", "taskiq", "arq")

CONCURRENCY = 32


def worker_commands(engine: str, python: str, url: str, concurrency: int) -> list[str]:
    """The command line of ONE worker process of ``engine`` (the harness starts W of them).

    Every engine gets W separate invocations of its own worker command, each with
    ``concurrency`` concurrent tasks: the same as ``--workers W`` of the CLIs that
    have that option (it forks the same worker W times), and every process is one
    the harness started and stops by its PID (process group).
    """
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}")
    spec = ENGINES[engine]
    if engine == "aioflow":
        return [
            python,
            "-m",
            "aioflow",
            "worker",
            url,
            "--import",
            spec.module,
            "--concurrency",
            str(concurrency),
        ]
    if engine == "streaq":
        # concurrency is the Worker's constructor argument (module level, from the env)
        return [python, "-m", "streaq", "run", f"{spec.module}:worker", "--workers", "1"]
    if engine == "saq":
        return [python, "-m", "saq", f"{spec.module}.settings", "--workers", "1"]
    if engine == "taskiq":
        return [
            python,
            "-m",
            "taskiq",
            "worker",
            f"{spec.module}:broker",
            "--workers",
            "1",
            "--max-async-tasks",
            str(concurrency),
        ]
    if engine == "arq":
        return [python, "-m", "arq", f"{spec.module}.WorkerSettings"]
    raise ValueError(f"unknown engine {engine!r}")


def concurrency_from_env() -> int:
    """Per-process concurrency for the module-level worker objects (default 32)."""
    return int(os.environ.get("AIOFLOW_BENCH_CONCURRENCY", CONCURRENCY))


def redis_url() -> str:
    """The Redis URL the harness gave this process."""
    return os.environ.get(URL_ENV, "redis://127.0.0.1:6379/0")


def mark_ready() -> None:
    """Leave ``READY_DIR/<pid>`` behind: this worker process imported its task module.

    Only worker processes get ``AIOFLOW_BENCH_READY_DIR``; the harness counts the
    files to know that W workers have started, then warms them up.
    """
    directory = os.environ.get(READY_ENV)
    if directory:
        Path(directory, str(os.getpid())).touch()
