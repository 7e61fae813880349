"""The container benchmark harness runs end to end, on a private Docker Engine, at tiny scale.

Structure only, never timings: every measurement and target line is there and well formed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "docker_overhead.py"
sys.path.insert(0, str(ROOT / "tests" / "containers"))

from docker_engine import DockerEngine, DockerMissing  # noqa: E402


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_docker_overhead_harness_prints_every_measurement(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    engine = DockerEngine(tmp_path_factory.mktemp("dockerd"))
    try:
        engine.start()
    except DockerMissing as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        proc = subprocess.run(
            [
                *(sys.executable, str(SCRIPT), "--quick", "--build-image"),
                *("--image", "aioflow-bench:test", "--docker-host", engine.host),
            ],
            capture_output=True,
            text=True,
            timeout=280,
            check=False,
        )
    finally:
        engine.stop()
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    measurements = {r["measurement"]: r for r in records if r["kind"] == "measurement"}
    assert set(measurements) == {"cold", "warm", "warm_recycled", "throughput"}
    assert measurements["cold"]["samples"] == 2 and measurements["cold"]["ratio_vs_cli"] > 0
    assert measurements["warm"]["tasks"] == 20 and measurements["warm"]["p99_ms"] > 0
    assert measurements["throughput"]["pool_size"] == 4
    targets = {r["target"]: r for r in records if r["kind"] == "target"}
    assert set(targets) == {
        "cold_ratio_vs_docker_run",
        "warm_p50_ms",
        "warm_p99_ms",
        "warm_p99_ms_recycling_every_100",
    }
    assert all(isinstance(t["met"], bool) for t in targets.values())
