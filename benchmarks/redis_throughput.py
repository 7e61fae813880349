"""Distributed throughput and latency on a real Redis: aioflow's Redis backend against peers.

Engines (``benchmarks/redis_peers/``: one module per engine, both its worker-side
task module and its producer): ``aioflow`` (``aioflow.run(wf, backend="redis://...")``
with ``python -m aioflow worker`` processes) and the peers ``streaq``, ``saq``,
``taskiq`` (taskiq-redis's ``RedisStreamBroker``) and ``arq``, each driven the way
its documentation recommends, on its fastest documented path (batched enqueue where
the engine has one, pushed completions where it has them; see each module).

For every engine, in the same invocation, on the same ``redis-server``:

1. **throughput**: N no-op tasks (``--tasks``, 20,000), W worker processes
   (``--workers``, 2) x concurrency 32; the time from the first enqueue to the last
   completion the producer knows of. ``--scale 1,2,4`` repeats it with 1, 2 and 4
   worker processes (the scale curve).
2. **round trip**: submit one task and wait for its result, ``--latency-runs`` times
   (300) with idle workers (``--latency-gap-ms`` between runs): p50/p99 ms.
3. **enqueue-to-start**: from the same runs, the task's own ``time.time()`` at its
   start minus the producer's ``time.time()`` just before it submitted (for aioflow:
   just before ``run()``, so it includes the run's setup): p50/p99 ms.

Method: the harness starts its own ``redis-server`` (loopback, free port, no
persistence) unless ``--redis-url`` names one, and flushes the database before each
(engine, worker count). It starts W worker processes (W separate invocations of the
engine's own worker command, each with concurrency 32), waits until each has
imported its task module, then runs the producer in a fresh process: a warm-up (a few
one-task round trips and a 200-task batch), then the timed batch, then the latency
runs (at ``--workers`` only). Then it stops the workers, by their process group.
Every process it stops is one it started.

Each engine runs with its own interpreter: ``--python ENGINE=PATH`` (default: this
interpreter). The peers' Redis clients conflict: taskiq-redis needs ``redis>=8``, arq
(0.28.0, its latest) ``redis<6``; aioflow takes ``redis>=5``. So arq gets its own
venv, e.g.::

    python3 -m venv /work/benchvenv && /work/benchvenv/bin/pip install -e '.[redis,bench]'
    python3 -m venv /work/benchvenv-arq && /work/benchvenv-arq/bin/pip install arq==0.28.0
    /work/benchvenv/bin/python benchmarks/redis_throughput.py --vs streaq,saq,taskiq,arq \\
        --python arq=/work/benchvenv-arq/bin/python --scale 1,2,4

aioflow's processes get ``AIOFLOW_SECRET_KEY`` (random, the same for all) and a
private ``AIOFLOW_HOME``. When the engine is not usable (aioflow without its Redis
backend or worker command, a peer whose interpreter lacks it), its lines say so
(``"status": "unavailable"``); a ``--vs`` peer that is not installed stops the
harness at once (exit 2), before anything is measured.

**Tracing overhead** (``--observability``, issue 11): aioflow is measured with
tracing off and on, in the same invocation, ``--rounds`` times each (alternating
which goes first, fresh workers every time); its lines carry ``"tracing": false |
true``. Tracing on: the producer runs with ``instruments=[Tracing(provider)]``, an
SDK ``TracerProvider`` with a ``BatchSpanProcessor`` into an ``InMemorySpanExporter``
(the spans it exported are counted: ``"spans"``); the workers are started with
``--otel`` and ``OTEL_TRACES_EXPORTER=none`` (an SDK provider, spans made and
ended, exported nowhere). One more target line: the throughput lost (medians),
``<= 20%``. Peers, ratios and the other targets use the tracing-off lines.

Output: one JSON line per (engine, measurement[, workers]) on stdout (``"kind":
"measurement"``), ``"kind": "ratio"`` lines (aioflow / each peer, throughput), one
``"kind": "target"`` line per target of issue 9 (and of issue 11 with
``--observability``) and a final ``"kind": "verdict"`` line. A human summary goes
to stderr. Exit 1 when aioflow was asked for and failed.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

if not __package__:  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import (
    PEER_INSTALL,
    count_list,
    emit,
    fmt,
    machine_summary,
    positive_int,
    python_summary,
    run_child,
    target_record,
    verdict,
)
from benchmarks.redis_peers import (
    ENGINES,
    PEERS,
    READY_ENV,
    TRACING_ENV,
    URL_ENV,
    worker_commands,
)

REPO_ROOT = Path(__file__).resolve().parent.parent

DEFAULT_TASKS = 20_000
DEFAULT_WORKERS = 2
DEFAULT_LATENCY_RUNS = 300
CONCURRENCY = 32
WARMUP_TASKS = 200
WARMUP_ROUND_TRIPS = 10

# Targets of issue 9 ("Targets"), evaluated on this run.
THROUGHPUT_FLOOR = 20_000.0  # tasks/s, 20,000 tasks, 2 workers x 32
PEER_FACTOR = 15.0  # aioflow / best peer, same work, same invocation
ROUND_TRIP_P50_MS = 1.5
ROUND_TRIP_P99_MS = 3.0
START_P50_MS = 0.8
START_P99_MS = 1.5
SCALE_CURVE = (1, 2, 4)
TRACING_LOSS = 0.20  # issue 11: tracing on loses <= 20% of the throughput

MEASUREMENTS = ("throughput", "round_trip", "enqueue_to_start")


# --------------------------------------------------------------------------- Redis


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class RedisAddress:
    host: str
    port: int
    db: int
    password: str | None
    username: str | None

    @classmethod
    def parse(cls, url: str) -> RedisAddress:
        parts = urlsplit(url)
        if parts.scheme != "redis":
            raise ValueError(f"--redis-url {url!r}: only redis:// URLs are supported here")
        db = int(parts.path.strip("/") or 0)
        return cls(
            parts.hostname or "127.0.0.1",
            parts.port or 6379,
            db,
            unquote(parts.password) if parts.password else None,
            unquote(parts.username) if parts.username else None,
        )


def _encode(*args: str) -> bytes:
    out = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        data = arg.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def _read_reply(f: Any) -> Any:
    line = f.readline()
    if not line:
        raise ConnectionError("redis closed the connection")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        raise RuntimeError(f"redis error: {rest.decode()}")
    if kind == b":":
        return int(rest)
    if kind == b"$":
        size = int(rest)
        if size < 0:
            return None
        data = f.read(size + 2)[:-2]
        return data.decode(errors="replace")
    if kind == b"*":
        return [_read_reply(f) for _ in range(int(rest))]
    raise RuntimeError(f"unexpected redis reply {line!r}")


def redis_command(addr: RedisAddress, *args: str, timeout: float = 5.0) -> Any:
    """One command on a fresh connection (the harness needs PING, FLUSHDB and INFO only).

    A few lines of RESP so that the orchestrating process needs no Redis client.
    """
    with socket.create_connection((addr.host, addr.port), timeout=timeout) as sock:
        f = sock.makefile("rb")
        setup: list[tuple[str, ...]] = []
        if addr.password is not None:
            auth = (addr.username, addr.password) if addr.username else (addr.password,)
            setup.append(("AUTH", *auth))
        if addr.db:
            setup.append(("SELECT", str(addr.db)))
        for command in [*setup, args]:
            sock.sendall(_encode(*command))
            reply = _read_reply(f)
        return reply


def redis_info(addr: RedisAddress) -> dict[str, str]:
    text = redis_command(addr, "INFO", "server")
    info: dict[str, str] = {}
    for line in str(text).splitlines():
        if ":" in line and not line.startswith("#"):
            key, value = line.split(":", 1)
            info[key] = value.strip()
    return info


class RedisServer:
    """A ``redis-server`` of this invocation: loopback, free port, no persistence."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        executable = shutil.which("redis-server")
        if executable is None:
            raise RuntimeError(
                "redis-server is not installed (Debian/Ubuntu: apt-get install -y redis-server); "
                "or pass --redis-url redis://HOST:PORT/DB"
            )
        for _ in range(5):
            self.port = free_port()
            self.process = subprocess.Popen(
                [
                    executable,
                    "--port",
                    str(self.port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    str(self.directory),
                    "--logfile",
                    str(self.directory / "redis.log"),
                    "--daemonize",
                    "no",
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and self.process.poll() is None:
                try:
                    if redis_command(RedisAddress.parse(self.url), "PING") == "PONG":
                        return
                except OSError:
                    time.sleep(0.02)
            self.stop()
        raise RuntimeError(f"redis-server did not start (see {self.directory / 'redis.log'})")

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()  # by PID: this server only
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


# --------------------------------------------------------------------------- child side


def _versions(distributions: Sequence[str]) -> dict[str, str | None]:
    from importlib import metadata

    out: dict[str, str | None] = {}
    for name in distributions:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def _ms(samples: Sequence[float]) -> list[float]:
    return [round(s * 1000.0, 4) for s in samples]


def child_main(spec: dict[str, Any]) -> int:
    """The producer of one (engine, worker count): warm-up, throughput, latency runs."""
    import asyncio
    import gc
    import importlib

    engine = spec["engine"]
    record: dict[str, Any] = {
        "engine": engine,
        "versions": _versions(ENGINES[engine].distributions),
    }
    if spec.get("tracing"):
        os.environ[TRACING_ENV] = "on"  # read by aioflow's Producer
    try:
        module = importlib.import_module(ENGINES[engine].module)

        async def main() -> None:
            producer = module.Producer(spec["url"], spec["poll"])
            try:
                await measure_producer(producer)
            finally:
                if getattr(producer, "spans", None) is not None:
                    record["spans"] = producer.spans

        async def measure_producer(producer: Any) -> None:
            async with producer:
                for _ in range(WARMUP_ROUND_TRIPS):
                    await producer.one()
                warm = await producer.prepare(spec["warmup_tasks"])
                if await producer.fanout(warm) != spec["warmup_tasks"]:
                    raise RuntimeError("the warm-up batch did not complete every task")
                gc.collect()
                prepared = await producer.prepare(spec["tasks"])
                start = time.perf_counter()
                completed = await producer.fanout(prepared)
                seconds = time.perf_counter() - start
                record.update(seconds=round(seconds, 6), completed=completed)
                if not spec["latency_runs"]:
                    return
                round_trips: list[float] = []
                to_start: list[float] = []
                gap = spec["gap_ms"] / 1000.0
                for _ in range(spec["latency_runs"]):
                    await asyncio.sleep(gap)  # the workers are idle when the task is sent
                    wall = time.time()
                    begin = time.perf_counter()
                    started_at = await producer.one()
                    round_trips.append(time.perf_counter() - begin)
                    to_start.append(started_at - wall)
                record["round_trip_ms"] = _ms(round_trips)
                record["enqueue_to_start_ms"] = _ms(to_start)

        asyncio.run(main())
        record["status"] = "ok"
        record["error"] = None
        if record["completed"] != spec["tasks"]:
            record["status"] = "wrong_result"
            record["error"] = f"{record['completed']} tasks completed, expected {spec['tasks']}"
    except BaseException as exc:  # report, never hang or vanish
        record["status"] = "error"
        record["error"] = f"{type(exc).__name__}: {exc}"[:2000]
        traceback.print_exc(file=sys.stderr)
        emit(record)
        return 1
    emit(record)
    return 0


_PREFLIGHT = """
import sys
try:
    from aioflow.backends import open_backend
    open_backend(sys.argv[1])
except Exception as exc:
    print(f"{type(exc).__name__}: {exc}")
    sys.exit(1)
"""

_PROBE = """
import importlib.util, sys
missing = []
for name in sys.argv[1:]:
    try:
        if importlib.util.find_spec(name) is None:
            missing.append(name)
    except (ImportError, ValueError):
        missing.append(name)
print(",".join(missing))
sys.exit(1 if missing else 0)
"""


# --------------------------------------------------------------------------- parent side


def probe_engine(engine: str, python: str) -> str | None:
    """None when ``python`` can import what ``engine`` needs, else the missing modules."""
    try:
        proc = subprocess.run(
            [python, "-c", _PROBE, *ENGINES[engine].probe],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except OSError as exc:
        return f"cannot run {python}: {exc}"
    if proc.returncode == 0:
        return None
    return proc.stdout.strip() or proc.stderr.strip()[-300:] or f"exit {proc.returncode}"


def missing_peer_message(engine: str, python: str, missing: str) -> str:
    return (
        f"error [aioflow.missing_dependency] --vs {engine} needs the peer engine {engine!r}, "
        f"which {python} cannot import (missing: {missing})\n"
        f"  hint: {PEER_INSTALL} (the benchmark peers; not part of the dev extra), or "
        f"--python {engine}=PATH to an interpreter that has it (arq needs redis<6: its own venv)\n"
    )


def aioflow_unavailable(python: str, url: str, env: dict[str, str]) -> str | None:
    """None when aioflow's Redis backend and worker command exist, else why not."""
    missing = probe_engine("aioflow", python)
    if missing is not None:
        return f"aioflow's Redis backend needs {missing} (pip install -e '.[redis]')"
    proc = subprocess.run(
        [python, "-c", _PREFLIGHT, url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
        cwd=REPO_ROOT,
    )
    if proc.returncode != 0:
        why = proc.stdout.strip().splitlines()[-1:] or [proc.stderr.strip()[-300:]]
        return f"open_backend({url!r}) failed: {why[0]}"
    proc = subprocess.run(
        [python, "-m", "aioflow", "worker", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
        cwd=REPO_ROOT,
    )
    if proc.returncode != 0:
        tail = (proc.stderr.strip() or proc.stdout.strip()).splitlines()[-1:] or ["?"]
        return f"`python -m aioflow worker` is not available: {tail[0][:300]}"
    return None


@dataclass
class WorkerGroup:
    """W worker processes of one engine (each the leader of its own process group)."""

    processes: list[subprocess.Popen[bytes]]
    logs: list[Path]

    def exited(self) -> list[int]:
        return [i for i, p in enumerate(self.processes) if p.poll() is not None]

    def log_tail(self, index: int, limit: int = 1500) -> str:
        try:
            return self.logs[index].read_text(errors="replace")[-limit:].strip()
        except OSError:
            return ""

    def stop(self, grace: float = 10.0) -> None:
        for p in self.processes:
            if p.poll() is None:
                with suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGTERM)  # the group this harness started
        deadline = time.monotonic() + grace
        for p in self.processes:
            with suppress(subprocess.TimeoutExpired):
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
        for p in self.processes:  # stragglers, and children of a supervisor process
            with suppress(ProcessLookupError, PermissionError):
                os.killpg(p.pid, signal.SIGKILL)
            if p.poll() is None:
                p.wait(timeout=5)


def start_workers(
    engine: str,
    python: str,
    count: int,
    url: str,
    env: dict[str, str],
    scratch: Path,
    tracing: bool = False,
) -> WorkerGroup:
    ready = scratch / f"ready-{engine}-{count}"
    shutil.rmtree(ready, ignore_errors=True)
    ready.mkdir(parents=True)
    worker_env = {**env, READY_ENV: str(ready)}
    processes: list[subprocess.Popen[bytes]] = []
    logs: list[Path] = []
    argv = worker_commands(engine, python, url, CONCURRENCY)
    if tracing:  # an SDK TracerProvider on every worker, its spans exported nowhere
        argv = [*argv, "--otel"]
        worker_env.update(OTEL_TRACES_EXPORTER="none", OTEL_SERVICE_NAME="bench-worker")
    for i in range(count):
        log = scratch / f"worker-{engine}-{count}-{i}{'-traced' if tracing else ''}.log"
        logs.append(log)
        with log.open("wb") as out:
            processes.append(
                subprocess.Popen(
                    argv,
                    cwd=REPO_ROOT,
                    env=worker_env,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
    group = WorkerGroup(processes, logs)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if group.exited():
            group.stop()
            i = group.exited()[0]
            raise RuntimeError(
                f"worker process {i} of {engine} exited with {processes[i].returncode}: "
                f"{group.log_tail(i)[-800:]}"
            )
        if len(list(ready.iterdir())) >= count:
            time.sleep(0.5)  # from "module imported" to "reading its queue"
            return group
        time.sleep(0.05)
    group.stop()
    raise RuntimeError(f"{engine}: {count} workers did not start within 60 s")


@dataclass(frozen=True)
class Job:
    engine: str
    workers: int
    latency: bool
    tracing: bool | None = None  # None: not an --observability run
    round: int = 0


def plan(
    engines: Sequence[str],
    scale: Sequence[int],
    workers: int,
    observability: bool = False,
    rounds: int = 1,
) -> list[Job]:
    """The jobs, in order. With ``observability``, aioflow runs ``rounds`` pairs
    (tracing off, on) at each worker count, the pair's order alternating; latency
    is measured in the first pair only."""
    jobs: list[Job] = []
    for engine in engines:
        for w in scale:
            if engine != "aioflow" or not observability:
                jobs.append(Job(engine, w, latency=w == workers))
                continue
            for r in range(rounds):
                for tracing in (False, True) if r % 2 == 0 else (True, False):
                    jobs.append(
                        Job(engine, w, latency=w == workers and r == 0, tracing=tracing, round=r)
                    )
    return jobs


def _base(
    engine: str, measurement: str, workers: int, args: argparse.Namespace, job: Job | None = None
) -> dict[str, Any]:
    extra = (
        {} if job is None or job.tracing is None else {"tracing": job.tracing, "round": job.round}
    )
    return {
        **extra,
        "kind": "measurement",
        "engine": engine,
        "measurement": measurement,
        "workers": workers,
        "concurrency": CONCURRENCY,
        "engine_version": None,
        "versions": None,
        "status": None,
        "error": None,
        "config": ENGINES[engine].config,
        "interpreter": args.python_for[engine],
    }


def _percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of sorted values."""
    index = max(0, min(len(sorted_values) - 1, round(q / 100.0 * len(sorted_values)) - 1))
    return sorted_values[index]


def latency_stats(samples: Sequence[float]) -> dict[str, Any]:
    ordered = sorted(samples)
    return {
        "runs": len(ordered),
        "p50_ms": round(statistics.median(ordered), 3),
        "p99_ms": round(_percentile(ordered, 99), 3),
        "mean_ms": round(statistics.fmean(ordered), 3),
        "min_ms": round(ordered[0], 3),
        "max_ms": round(ordered[-1], 3),
    }


def measure(
    job: Job,
    args: argparse.Namespace,
    env: dict[str, str],
    scratch: Path,
    unavailable: str | None,
) -> list[dict[str, Any]]:
    """Run one (engine, worker count): its throughput line, and latency lines if asked."""
    latency = job.latency and args.latency_runs > 0  # --latency-runs 0: none
    names = ["throughput", *(["round_trip", "enqueue_to_start"] if latency else [])]
    records = [_base(job.engine, m, job.workers, args, job) for m in names]
    records[0].update(tasks=args.tasks, seconds=None, tasks_per_s=None, completed=None)
    for rec in records[1:]:
        rec.update(runs=args.latency_runs, p50_ms=None, p99_ms=None)

    def fail(status: str, error: str) -> list[dict[str, Any]]:
        for rec in records:
            rec.update(status=status, error=error)
        return records

    if unavailable is not None:
        return fail("unavailable", unavailable)
    python = args.python_for[job.engine]
    addr = RedisAddress.parse(args.url)
    redis_command(addr, "FLUSHDB")
    try:
        group = start_workers(
            job.engine, python, job.workers, args.url, env, scratch, tracing=bool(job.tracing)
        )
    except RuntimeError as exc:
        return fail("error", str(exc))
    try:
        spec = {
            "engine": job.engine,
            "url": args.url,
            "tasks": args.tasks,
            "warmup_tasks": WARMUP_TASKS,
            "latency_runs": args.latency_runs if latency else 0,
            "poll": args.poll,
            "gap_ms": args.latency_gap_ms,
            "tracing": bool(job.tracing),
        }
        outcome = run_child(
            [python, str(Path(__file__).resolve()), "--child", json.dumps(spec)],
            timeout=args.timeout,
            cwd=str(REPO_ROOT),
            pythonpath=[str(REPO_ROOT)],
        )
        dead = group.exited()
    finally:
        group.stop()
    child = outcome.record
    if child is not None:
        versions = child.get("versions") or {}
        for rec in records:
            rec["versions"] = versions
            rec["engine_version"] = versions.get(ENGINES[job.engine].distributions[0])
    if outcome.timed_out:
        return fail("timeout", f"the producer did not finish within {args.timeout:g} s")
    if child is None or child.get("status") != "ok":
        error = (child or {}).get("error") or outcome.stderr_tail[-800:] or "no output"
        if dead:
            error += f"; worker {dead[0]} had exited: {group.log_tail(dead[0])[-400:]}"
        return fail(str((child or {}).get("status") or "error"), error)
    if job.tracing:
        spans = child.get("spans")
        records[0]["spans"] = spans
        if spans is None or spans < args.tasks:  # every call sent under a publish span
            return fail(
                "wrong_result", f"tracing on, but the producer's publish spans sent {spans} calls"
            )
    seconds = child["seconds"]
    records[0].update(
        status="ok",
        seconds=seconds,
        completed=child["completed"],
        tasks_per_s=round(args.tasks / seconds, 1) if seconds > 0 else None,
    )
    if latency:
        for rec, key in zip(records[1:], ("round_trip_ms", "enqueue_to_start_ms"), strict=True):
            rec.update(status="ok", **latency_stats(child[key]))
    return records


def _find(
    results: Sequence[dict[str, Any]],
    engine: str,
    measurement: str,
    workers: int,
    tracing: bool = False,
) -> dict[str, Any] | None:
    """The first line of (engine, measurement, workers); of the traced runs if
    ``tracing`` (without --observability, no line is traced)."""
    return next(
        (
            r
            for r in results
            if r["engine"] == engine
            and r["measurement"] == measurement
            and r["workers"] == workers
            and bool(r.get("tracing")) == tracing
        ),
        None,
    )


def tracing_target(results: Sequence[dict[str, Any]], args: argparse.Namespace) -> dict[str, Any]:
    """Issue 11: aioflow's throughput lost with tracing on (medians of the rounds)."""
    w = args.workers

    def median_tps(tracing: bool) -> float | None:
        found = [
            r["tasks_per_s"]
            for r in results
            if r["engine"] == "aioflow"
            and r["measurement"] == "throughput"
            and r["workers"] == w
            and r.get("tracing") is tracing
            and _ok(r)
        ]
        return statistics.median(found) if found else None

    off, on = median_tps(False), median_tps(True)
    lost = round(1 - on / off, 4) if off and on is not None else None
    return target_record(
        "redis_tracing_throughput_lost",
        f"<= {TRACING_LOSS:.0%}",
        lost,
        None if lost is None else lost <= TRACING_LOSS,
        applicable=args.tasks == DEFAULT_TASKS and w == DEFAULT_WORKERS,
        note=f"aioflow tracing on vs off, {args.tasks} tasks, {w} workers x {CONCURRENCY}, "
        f"medians of {args.rounds} round(s): off {fmt(off, ',.0f')}, on {fmt(on, ',.0f')} "
        "tasks/s",
    )


def _ok(rec: dict[str, Any] | None) -> bool:
    return rec is not None and rec["status"] == "ok"


def ratios(results: Sequence[dict[str, Any]], args: argparse.Namespace) -> list[dict[str, Any]]:
    """aioflow / each peer, throughput, at every worker count both were measured at."""
    lines: list[dict[str, Any]] = []
    if "aioflow" not in args.engines:
        return lines
    for peer in (e for e in args.engines if e != "aioflow"):
        for w in args.scale:
            ours = _find(results, "aioflow", "throughput", w)
            theirs = _find(results, peer, "throughput", w)
            ratio = (
                round(ours["tasks_per_s"] / theirs["tasks_per_s"], 2)
                if ours is not None and theirs is not None and _ok(ours) and _ok(theirs)
                else None
            )
            lines.append(
                {
                    "kind": "ratio",
                    "name": f"throughput_aioflow_vs_{peer}",
                    "workers": w,
                    "tasks": args.tasks,
                    "ratio": ratio,
                    "valid": ratio is not None,
                    "note": "aioflow tasks/s / peer tasks/s, same tasks, same workers, "
                    "same invocation" + ("" if ratio is not None else "; a side failed"),
                }
            )
    return lines


def targets(results: Sequence[dict[str, Any]], args: argparse.Namespace) -> list[dict[str, Any]]:
    """The targets of issue 9, evaluated on this run (aioflow's figures)."""
    out: list[dict[str, Any]] = []
    w = args.workers
    standard = args.tasks == DEFAULT_TASKS and w == DEFAULT_WORKERS

    def add(
        name: str,
        threshold: str,
        value: float | None,
        met: bool | None,
        applicable: bool,
        note: str,
    ) -> None:
        out.append(target_record(name, threshold, value, met, applicable=applicable, note=note))

    ours = _find(results, "aioflow", "throughput", w)
    tps = ours["tasks_per_s"] if _ok(ours) and ours is not None else None
    add(
        "throughput_tasks_per_s",
        f">= {THROUGHPUT_FLOOR:,.0f}",
        tps,
        None if tps is None else tps >= THROUGHPUT_FLOOR,
        standard,
        f"aioflow, {args.tasks} no-op tasks, {w} workers x {CONCURRENCY}"
        + ("" if ours is None or _ok(ours) else f"; {ours['status']}: {ours['error']}"),
    )
    peers = [p for p in args.engines if p != "aioflow"]
    peer_recs = [
        r for p in peers if (r := _find(results, p, "throughput", w)) is not None and _ok(r)
    ]
    best = max(peer_recs, key=lambda r: r["tasks_per_s"]) if peer_recs else None
    ratio = round(tps / best["tasks_per_s"], 2) if tps is not None and best is not None else None
    add(
        "throughput_vs_best_peer",
        f">= {PEER_FACTOR:g}x",
        ratio,
        None if ratio is None else ratio >= PEER_FACTOR,
        standard and set(PEERS) <= {r["engine"] for r in peer_recs},
        f"aioflow / best peer ({best['engine']}, {best['tasks_per_s']:,.0f} tasks/s)"
        if best is not None
        else "no peer measured (--vs streaq,saq,taskiq,arq)",
    )
    for measurement, p50, p99 in (
        ("round_trip", ROUND_TRIP_P50_MS, ROUND_TRIP_P99_MS),
        ("enqueue_to_start", START_P50_MS, START_P99_MS),
    ):
        rec = _find(results, "aioflow", measurement, w)
        for q, limit in (("p50", p50), ("p99", p99)):
            value = rec[f"{q}_ms"] if rec is not None and _ok(rec) else None
            add(
                f"{measurement}_{q}_ms",
                f"<= {limit:g} ms",
                value,
                None if value is None else value <= limit,
                args.latency_runs >= 100,
                f"aioflow one-task workflow, {args.latency_runs} runs, idle workers",
            )
    curve = {s: _find(results, "aioflow", "throughput", s) for s in SCALE_CURVE}
    recorded = all(_ok(r) for r in curve.values())
    add(
        "scale_curve_recorded",
        "throughput at 1, 2 and 4 workers",
        None,
        recorded if "aioflow" in args.engines else None,
        True,
        ", ".join(
            f"{s}: {fmt(r['tasks_per_s'] if r is not None else None, ',.0f')}"
            for s, r in curve.items()
        )
        + ("" if recorded else " (run with --scale 1,2,4)"),
    )
    if getattr(args, "observability", False):
        out.append(tracing_target(results, args))
    return out


def print_summary(
    results: Sequence[dict[str, Any]],
    ratio_lines: Sequence[dict[str, Any]],
    target_lines: Sequence[dict[str, Any]],
    redis_version: str | None,
) -> None:
    err = sys.stderr
    err.write(f"\n{python_summary()} on {machine_summary()}, redis-server {redis_version}\n")
    err.write(
        f"{'engine':12} {'version':10} {'measurement':17} {'workers':>7} {'tasks/s':>10} "
        f"{'seconds':>8} {'p50 ms':>8} {'p99 ms':>8}  status\n"
    )
    for r in results:
        engine = r["engine"] + ("+otel" if r.get("tracing") else "")
        err.write(
            f"{engine:12} {fmt(r['engine_version']):10} {r['measurement']:17} "
            f"{r['workers']:>7} {fmt(r.get('tasks_per_s'), ',.0f'):>10} "
            f"{fmt(r.get('seconds'), '.2f'):>8} {fmt(r.get('p50_ms'), '.2f'):>8} "
            f"{fmt(r.get('p99_ms'), '.2f'):>8}  {r['status']}"
            + (f": {r['error']}" if r["error"] else "")
            + "\n"
        )
    for line in ratio_lines:
        err.write(f"ratio {line['name']:34} workers={line['workers']} = {fmt(line['ratio'])}\n")
    for t in target_lines:
        scope = "" if t["applicable"] else " (not the target's settings)"
        err.write(
            f"target {t['target']:26} {t['threshold']:34} value={fmt(t['value'])} "
            f"-> {verdict(t)}{scope}\n"
        )
    err.flush()


def _engine_list(choices: Sequence[str]) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        names = [s.strip() for s in text.split(",") if s.strip()]
        unknown = [n for n in names if n not in choices]
        if unknown or not names:
            raise argparse.ArgumentTypeError(
                f"unknown engine(s) {unknown}; choose from {', '.join(choices)}"
            )
        return list(dict.fromkeys(names))

    return parse


def _python_option(text: str) -> tuple[str, str]:
    engine, sep, path = text.partition("=")
    if not sep or engine not in ENGINES or not path:
        raise argparse.ArgumentTypeError(
            f"expected ENGINE=PATH with ENGINE in {', '.join(ENGINES)}, got {text!r}"
        )
    return engine, path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=(
            "Throughput and latency on a real Redis: aioflow's Redis backend, optionally "
            "side by side with streaq, saq, taskiq (taskiq-redis stream broker) and arq."
        )
    )
    parser.add_argument(
        "--vs",
        type=_engine_list(PEERS),
        default=[],
        metavar="PEERS",
        help="peers to run after aioflow, comma-separated: streaq,saq,taskiq,arq",
    )
    parser.add_argument(
        "--engines",
        type=_engine_list(tuple(ENGINES)),
        default=None,
        metavar="ENGINES",
        help="exactly these engines (e.g. streaq,saq: just peers; aioflow: just aioflow); "
        "default: aioflow plus --vs",
    )
    parser.add_argument(
        "--tasks", type=positive_int, default=DEFAULT_TASKS, help="tasks per batch (20000)"
    )
    parser.add_argument(
        "--workers",
        type=positive_int,
        default=DEFAULT_WORKERS,
        help="worker processes (2), each with concurrency 32; latency is measured here",
    )
    parser.add_argument(
        "--scale",
        type=count_list,
        default=None,
        metavar="W,W,...",
        help="throughput at each of these worker counts too, e.g. 1,2,4 (the scale curve)",
    )
    parser.add_argument(
        "--latency-runs",
        type=int,
        default=DEFAULT_LATENCY_RUNS,
        help="one-task round trips with idle workers (300; 0: none)",
    )
    parser.add_argument(
        "--latency-gap-ms",
        type=float,
        default=5.0,
        help="pause before each round trip, so the workers are idle (5 ms)",
    )
    parser.add_argument(
        "--poll",
        type=float,
        default=0.001,
        help="result poll interval, seconds, of the peers whose results are polled "
        "(taskiq, arq): 0.001",
    )
    parser.add_argument(
        "--python",
        type=_python_option,
        action="append",
        default=[],
        metavar="ENGINE=PATH",
        help="the interpreter of one engine's workers and producer (default: this one); "
        "repeatable, e.g. --python arq=/work/benchvenv-arq/bin/python",
    )
    parser.add_argument(
        "--redis-url",
        default=None,
        help="use this Redis (its database is FLUSHED before every engine) instead of "
        "starting a private redis-server",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=900.0,
        help="seconds one producer (warm-up + batch + latency runs) may take (900)",
    )
    parser.add_argument(
        "--observability",
        action="store_true",
        help="measure aioflow with tracing off and on (coordinator Tracing() with an SDK "
        "provider, in-memory exporter; workers --otel, OTEL_TRACES_EXPORTER=none), same "
        "invocation; adds the target: tracing on loses <= 20%%",
    )
    parser.add_argument(
        "--rounds",
        type=positive_int,
        default=1,
        help="with --observability: off/on pairs per worker count, alternating which "
        "goes first; medians are compared (1)",
    )
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    return parser


@contextmanager
def redis_for(args: argparse.Namespace, scratch: Path) -> Iterator[str]:
    if args.redis_url is not None:
        yield args.redis_url
        return
    directory = scratch / "redis"
    directory.mkdir()
    server = RedisServer(directory)
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.child is not None:
        return child_main(json.loads(args.child))
    if args.latency_runs < 0:
        parser.error("--latency-runs must be >= 0")
    args.engines = args.engines if args.engines is not None else ["aioflow", *args.vs]
    args.python_for = dict.fromkeys(ENGINES, sys.executable)
    args.python_for.update(dict(args.python))
    args.scale = sorted(set(args.scale or []) | {args.workers})

    for engine in args.engines:  # a missing peer stops everything at once
        if engine == "aioflow":
            continue
        missing = probe_engine(engine, args.python_for[engine])
        if missing is not None:
            sys.stderr.write(missing_peer_message(engine, args.python_for[engine], missing))
            return 2

    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="aioflow-redis-bench-") as tmp:
        scratch = Path(tmp)
        try:
            context = redis_for(args, scratch)
            args.url = context.__enter__()
        except (RuntimeError, OSError) as exc:
            sys.stderr.write(f"error: {exc}\n")
            return 2
        try:
            addr = RedisAddress.parse(args.url)
            info = redis_info(addr)
            redis_version = info.get("redis_version")
            home = scratch / "aioflow-home"
            env = {
                **os.environ,
                URL_ENV: args.url,
                "AIOFLOW_SECRET_KEY": secrets.token_hex(32),
                "AIOFLOW_HOME": str(home),
                "AIOFLOW_BENCH_CONCURRENCY": str(CONCURRENCY),
                "PYTHONPATH": os.pathsep.join(
                    [str(REPO_ROOT), *filter(None, os.environ.get("PYTHONPATH", "").split(":"))]
                ),
            }
            os.environ.update(env)  # run_child passes this process's environment on
            unavailable: dict[str, str | None] = {}
            if "aioflow" in args.engines:
                unavailable["aioflow"] = aioflow_unavailable(
                    args.python_for["aioflow"], args.url, env
                )
            jobs = plan(args.engines, args.scale, args.workers, args.observability, args.rounds)
            for job in jobs:
                traced = (
                    "" if job.tracing is None else f", tracing {'on' if job.tracing else 'off'}"
                )
                sys.stderr.write(f"running {job.engine} with {job.workers} worker(s){traced} ...\n")
                sys.stderr.flush()
                for record in measure(job, args, env, scratch, unavailable.get(job.engine)):
                    record.update(
                        redis=f"redis-server {redis_version}",
                        python=python_summary(),
                        machine=machine_summary(),
                    )
                    results.append(record)
                    emit(record)
        finally:
            context.__exit__(None, None, None)

    ratio_lines = ratios(results, args)
    for line in ratio_lines:
        emit(line)
    target_lines = targets(results, args) if "aioflow" in args.engines else []
    for line in target_lines:
        emit(line)
    applicable = [t for t in target_lines if t["applicable"]]
    emit(
        {
            "kind": "verdict",
            "engines": args.engines,
            "targets": len(target_lines),
            "met": sum(1 for t in target_lines if t["met"] is True),
            "not_met": [t["target"] for t in target_lines if t["met"] is False],
            "unknown": [t["target"] for t in target_lines if t["met"] is None],
            "all_met": bool(applicable) and all(t["met"] is True for t in applicable),
        }
    )
    print_summary(results, ratio_lines, target_lines, redis_version)
    aioflow_failed = [r for r in results if r["engine"] == "aioflow" and r["status"] != "ok"]
    return 1 if aioflow_failed else 0


if __name__ == "__main__":
    sys.exit(main())
