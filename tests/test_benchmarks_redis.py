"""The Redis benchmark harness (benchmarks/redis_throughput.py): structure, never timings.

None of these tests needs a peer (streaq, saq, taskiq, arq) installed. The unit
checks run in the plain suite; the one that runs aioflow's side end to end (real
``aioflow worker`` processes on the session's ``redis_server``) is marked slow.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from redis_server import RedisServer

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "redis_throughput.py"
sys.path.insert(0, str(ROOT))

from benchmarks import redis_throughput as bench  # noqa: E402
from benchmarks.redis_peers import ENGINES, PEERS, worker_commands  # noqa: E402

COMMON_KEYS = {
    "kind",
    "engine",
    "measurement",
    "workers",
    "concurrency",
    "engine_version",
    "versions",
    "status",
    "error",
    "config",
    "interpreter",
    "redis",
    "python",
    "machine",
}
THROUGHPUT_KEYS = COMMON_KEYS | {"tasks", "seconds", "tasks_per_s", "completed"}
LATENCY_KEYS = COMMON_KEYS | {"runs", "p50_ms", "p99_ms", "mean_ms", "min_ms", "max_ms"}
TARGET_KEYS = {"kind", "target", "threshold", "value", "met", "applicable", "note"}
TARGETS = {
    "throughput_tasks_per_s",
    "throughput_vs_best_peer",
    "round_trip_p50_ms",
    "round_trip_p99_ms",
    "enqueue_to_start_p50_ms",
    "enqueue_to_start_p99_ms",
    "scale_curve_recorded",
}


def harness(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> Any:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=timeout,
        check=False,
        env=env,
    )


def test_help() -> None:
    proc = harness("--help")
    assert proc.returncode == 0, proc.stderr
    for option in (
        "--vs",
        "--engines",
        "--tasks",
        "--workers",
        "--scale",
        "--latency-runs",
        "--python",
        "--redis-url",
        "--poll",
    ):
        assert option in proc.stdout


def test_unknown_engine_is_refused() -> None:
    proc = harness("--vs", "celery")
    assert proc.returncode == 2
    assert "unknown engine" in proc.stderr


def test_missing_peer_stops_at_once(tmp_path: Path) -> None:
    """A ``--vs`` peer the interpreter cannot import: exit 2 and the install hint."""
    blocker = tmp_path / "sitecustomize.py"  # makes `streaq` unimportable, installed or not
    blocker.write_text(
        "import sys\n"
        "class _Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'streaq':\n"
        "            raise ImportError('blocked by the test')\n"
        "sys.meta_path.insert(0, _Block())\n"
    )
    env = {**__import__("os").environ, "PYTHONPATH": str(tmp_path)}
    proc = harness("--engines", "streaq", "--redis-url", "redis://127.0.0.1:1/0", env=env)
    assert proc.returncode == 2, proc.stderr
    assert "--vs streaq needs the peer engine 'streaq'" in proc.stderr
    assert "pip install" in proc.stderr
    assert proc.stdout == ""  # nothing was measured


def test_worker_commands() -> None:
    url = "redis://127.0.0.1:6379/0"
    assert worker_commands("aioflow", "py", url, 32) == [
        "py",
        "-m",
        "aioflow",
        "worker",
        url,
        "--import",
        "benchmarks.redis_peers.aioflow_tasks",
        "--concurrency",
        "32",
    ]
    for engine in PEERS:
        argv = worker_commands(engine, "py", url, 32)
        assert argv[:3] == ["py", "-m", engine]
        assert any(ENGINES[engine].module in arg for arg in argv)
    assert "--max-async-tasks" in worker_commands("taskiq", "py", url, 32)
    with pytest.raises(ValueError):
        worker_commands("celery", "py", url, 32)


def test_latency_stats() -> None:
    stats = bench.latency_stats([float(i) for i in range(1, 101)])  # 1..100 ms
    assert stats == {
        "runs": 100,
        "p50_ms": 50.5,
        "p99_ms": 99.0,
        "mean_ms": 50.5,
        "min_ms": 1.0,
        "max_ms": 100.0,
    }
    assert bench.latency_stats([2.0])["p99_ms"] == 2.0


def _throughput(engine: str, workers: int, tps: float | None, status: str = "ok") -> dict[str, Any]:
    return {
        "engine": engine,
        "measurement": "throughput",
        "workers": workers,
        "tasks_per_s": tps,
        "status": status,
        "error": None if status == "ok" else "boom",
    }


def _latency(measurement: str, p50: float, p99: float) -> dict[str, Any]:
    return {
        "engine": "aioflow",
        "measurement": measurement,
        "workers": 2,
        "p50_ms": p50,
        "p99_ms": p99,
        "status": "ok",
        "error": None,
    }


def test_targets_and_ratios() -> None:
    args = bench.build_parser().parse_args(["--vs", "streaq,saq,taskiq,arq"])
    args.engines = ["aioflow", *args.vs]
    args.scale = [1, 2, 4]
    results = [
        _throughput("aioflow", 1, 12_000.0),
        _throughput("aioflow", 2, 24_000.0),
        _throughput("aioflow", 4, 30_000.0),
        _throughput("streaq", 2, 700.0),
        _throughput("saq", 2, 1_050.0),
        _throughput("taskiq", 2, 1_200.0),
        _throughput("arq", 2, None, status="error"),
        _latency("round_trip", 1.2, 3.5),
        _latency("enqueue_to_start", 0.5, 1.0),
    ]
    lines = {t["target"]: t for t in bench.targets(results, args)}
    assert set(lines) == TARGETS
    for line in lines.values():
        assert line.keys() == TARGET_KEYS
    assert lines["throughput_tasks_per_s"]["met"] is True
    best = lines["throughput_vs_best_peer"]
    assert best["value"] == 20.0 and best["met"] is True  # against taskiq, the fastest
    assert "taskiq" in best["note"]
    assert best["applicable"] is False  # arq failed: not every peer was measured
    assert lines["round_trip_p50_ms"]["met"] is True
    assert lines["round_trip_p99_ms"]["met"] is False
    assert lines["enqueue_to_start_p99_ms"]["met"] is True
    assert lines["scale_curve_recorded"]["met"] is True

    ratios = {(r["name"], r["workers"]): r for r in bench.ratios(results, args)}
    assert ratios[("throughput_aioflow_vs_saq", 2)]["ratio"] == round(24_000 / 1_050, 2)
    assert ratios[("throughput_aioflow_vs_arq", 2)]["valid"] is False
    assert ratios[("throughput_aioflow_vs_streaq", 1)]["ratio"] is None  # not measured


def test_redis_commands(redis_server: RedisServer) -> None:
    addr = bench.RedisAddress.parse(redis_server.url.rsplit("/", 1)[0] + "/9")
    assert addr.db == 9
    assert bench.redis_command(addr, "PING") == "PONG"
    assert bench.redis_command(addr, "SET", "bench:probe", "x") == "OK"
    assert bench.redis_command(addr, "FLUSHDB") == "OK"
    assert bench.redis_command(addr, "GET", "bench:probe") is None
    assert bench.redis_info(addr)["redis_version"]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_aioflow_end_to_end(redis_server: RedisServer) -> None:
    """aioflow only, tiny scale, on the session's redis-server (its database 9)."""
    url = redis_server.url.rsplit("/", 1)[0] + "/9"
    proc = harness(
        "--engines",
        "aioflow",
        "--tasks",
        "200",
        "--latency-runs",
        "20",
        "--workers",
        "1",
        "--redis-url",
        url,
        timeout=540,
    )
    assert proc.returncode == 0, f"harness failed ({proc.returncode}):\n{proc.stderr[-3000:]}"
    records = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    kinds = [r["kind"] for r in records]
    assert kinds == ["measurement"] * 3 + ["target"] * len(TARGETS) + ["verdict"]
    by_name = {r["measurement"]: r for r in records if r["kind"] == "measurement"}
    assert set(by_name) == {"throughput", "round_trip", "enqueue_to_start"}
    for rec in by_name.values():
        assert rec["engine"] == "aioflow"
        assert rec["status"] == "ok", rec
        assert rec["error"] is None
        assert rec["workers"] == 1 and rec["concurrency"] == 32
        assert rec["engine_version"]
    throughput = by_name["throughput"]
    assert throughput.keys() >= THROUGHPUT_KEYS
    assert throughput["tasks"] == throughput["completed"] == 200
    assert throughput["seconds"] > 0 and throughput["tasks_per_s"] > 0
    for name in ("round_trip", "enqueue_to_start"):
        rec = by_name[name]
        assert rec.keys() >= LATENCY_KEYS
        assert rec["runs"] == 20
        assert rec["min_ms"] <= rec["p50_ms"] <= rec["p99_ms"] <= rec["max_ms"]
    assert by_name["round_trip"]["min_ms"] > 0
    targets = {r["target"]: r for r in records if r["kind"] == "target"}
    assert set(targets) == TARGETS
    assert targets["throughput_tasks_per_s"]["applicable"] is False  # not 20,000 x 2 workers
    verdict = records[-1]
    assert verdict["engines"] == ["aioflow"] and verdict["targets"] == len(TARGETS)
    assert "target throughput_tasks_per_s" in proc.stderr  # the human summary


def test_observability_plan_and_target() -> None:
    """``--observability``: aioflow in off/on pairs (order alternating), peers once;
    the tracing target compares the medians of the pairs at --workers."""
    jobs = bench.plan(["aioflow", "saq"], [1, 2], 2, observability=True, rounds=2)
    aioflow_jobs = [
        (j.workers, j.tracing, j.round, j.latency) for j in jobs if j.engine == "aioflow"
    ]
    assert aioflow_jobs == [
        (1, False, 0, False),
        (1, True, 0, False),
        (1, True, 1, False),
        (1, False, 1, False),
        (2, False, 0, True),
        (2, True, 0, True),
        (2, True, 1, False),
        (2, False, 1, False),
    ]
    assert [(j.workers, j.tracing) for j in jobs if j.engine == "saq"] == [(1, None), (2, None)]
    assert bench.plan(["aioflow"], [2], 2) == [bench.Job("aioflow", 2, latency=True)]

    args = bench.build_parser().parse_args(["--observability", "--rounds", "3"])
    args.engines, args.scale = ["aioflow"], [2]
    results = [
        {**_throughput("aioflow", 2, tps), "tracing": tracing}
        for tps, tracing in [
            (10_000.0, False),
            (9_000.0, True),
            (7_000.0, True),
            (11_000.0, False),
            (9_500.0, False),
            (8_500.0, True),
        ]
    ]
    lines = {t["target"]: t for t in bench.targets(results, args)}
    assert set(lines) == TARGETS | {"redis_tracing_throughput_lost"}
    lost = lines["redis_tracing_throughput_lost"]
    assert lost.keys() == TARGET_KEYS
    assert lost["value"] == round(1 - 8_500 / 10_000, 4) and lost["met"] is True
    assert lost["applicable"] is True  # 20,000 tasks, 2 workers: the settings
    # The other targets read the untraced lines: the first one at 2 workers.
    assert lines["throughput_tasks_per_s"]["value"] == 10_000.0


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_aioflow_end_to_end_with_tracing(redis_server: RedisServer) -> None:
    """``--observability``, tiny scale: traced workers and producer, spans counted."""
    url = redis_server.url.rsplit("/", 1)[0] + "/9"
    proc = harness(
        "--engines",
        "aioflow",
        "--tasks",
        "200",
        "--latency-runs",
        "0",
        "--workers",
        "1",
        "--observability",
        "--redis-url",
        url,
        timeout=540,
    )
    assert proc.returncode == 0, f"harness failed ({proc.returncode}):\n{proc.stderr[-3000:]}"
    records = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    runs = [r for r in records if r["kind"] == "measurement"]
    assert [(r["measurement"], r["tracing"]) for r in runs] == [
        ("throughput", False),
        ("throughput", True),
    ]
    assert all(r["status"] == "ok" and r["completed"] == 200 for r in runs), runs
    assert runs[1]["spans"] >= 200  # every call sent under a publish span
    (lost,) = [r for r in records if r.get("target") == "redis_tracing_throughput_lost"]
    assert isinstance(lost["value"], float) and lost["applicable"] is False
    assert "aioflow+otel" in proc.stderr
