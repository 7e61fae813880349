"""The in-process benchmark harness runs end to end and prints well-formed JSON lines.

These tests check structure and task counts only, never timings. The harness runs
are ``slow`` (``pytest -m slow``); none needs a peer engine installed: the one about
``--vs graflow`` checks the message given when graflow is missing.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "inprocess.py"

QUICK_TASKS = 200
QUICK_SCALE_TASKS = 1_000
SHAPES = ("chain", "fanout", "fanout_edges", "lattice")
SCALE_SHAPES = ("fanout", "chain")
MEASUREMENT_KEYS = {
    "engine",
    "shape",
    "tasks",
    "seconds",
    "tasks_per_s",
    "build_seconds",
    "peak_rss_mb",
    "baseline_rss_mb",
    "python",
    "machine",
}


def expected_tasks(shape: str, n: int) -> int:
    if shape == "chain":
        return n
    if shape in ("fanout", "fanout_edges"):
        return n + 2
    width = math.isqrt(n)
    return width * width


def run_harness(*args: str) -> list[dict[str, Any]]:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=240,
        check=False,
    )
    assert proc.returncode == 0, f"harness failed ({proc.returncode}):\n{proc.stderr[-3000:]}"
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every stdout line is one JSON object
    assert all(isinstance(r, dict) for r in records)
    return records


def check_measurement(rec: dict[str, Any]) -> None:
    assert rec.keys() >= MEASUREMENT_KEYS
    assert rec["kind"] == "measurement"
    assert isinstance(rec["python"], str) and rec["python"]
    assert isinstance(rec["machine"], str) and rec["machine"]
    if rec["status"] == "unsupported":
        assert rec["engine"] == "graflow" and rec["error"]
        return
    assert rec["status"] == "ok", rec
    assert rec["executed"] == rec["tasks"]  # every task ran exactly once
    for key in ("seconds", "tasks_per_s", "build_seconds", "peak_rss_mb", "baseline_rss_mb"):
        assert isinstance(rec[key], int | float) and rec[key] > 0, key
    assert rec["peak_rss_mb"] >= rec["baseline_rss_mb"]
    assert len(rec["samples_seconds"]) == 1  # --quick runs once


def test_help() -> None:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--help"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0
    assert "--vs" in proc.stdout and "--quick" in proc.stdout


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_quick_aioflow_only() -> None:
    records = run_harness()
    measurements = [r for r in records if r["kind"] == "measurement"]
    for rec in measurements:
        check_measurement(rec)
    assert {r["engine"] for r in measurements} == {"aioflow"}
    assert not [r for r in records if r["kind"] == "ratio"]

    base = {r["shape"]: r for r in measurements if r["role"] == "base"}
    assert sorted(base) == sorted(SHAPES)
    for shape, rec in base.items():
        assert rec["tasks"] == expected_tasks(shape, QUICK_TASKS)

    scale = {r["shape"]: r for r in measurements if r["role"] == "scale"}
    assert sorted(scale) == sorted(SCALE_SHAPES)
    for shape, rec in scale.items():
        assert rec["tasks"] == expected_tasks(shape, QUICK_SCALE_TASKS)
    assert len(measurements) == len(SHAPES) + len(SCALE_SHAPES)

    target_names = {r["target"] for r in records if r["kind"] == "target"}
    assert {
        "fanout_tasks_per_s",
        "chain_tasks_per_s",
        "fanout_peak_rss_mb",
        "fanout_scaling",
        "chain_scaling",
    } <= target_names
    # quick sizes are not the targets' sizes
    assert all(not r["applicable"] for r in records if r["kind"] == "target")


# What `import graflow` does in an environment without the bench extra.
WITHOUT_GRAFLOW = (
    "import runpy, sys; "
    "sys.modules['graflow'] = None; "  # `import graflow` fails, find_spec finds nothing
    "sys.argv = sys.argv[1:]; "
    "runpy.run_path(sys.argv[0], run_name='__main__')"
)


def test_vs_graflow_without_graflow_fails_fast_with_the_install_command() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", WITHOUT_GRAFLOW, str(SCRIPT), "--quick", "--vs", "graflow"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""  # nothing was measured first
    assert "running" not in proc.stderr
    assert "[aioflow.missing_dependency] --vs graflow needs the peer engine 'graflow'" in (
        proc.stderr
    )
    assert 'hint: pip install -e ".[bench]"' in proc.stderr


@pytest.mark.slow
def test_phases_script_reports_plan_and_execute() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "phases.py"), "--sizes", "50", "--repeat", "1"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [(r["shape"], r["tasks"]) for r in records] == [("fanout", 52), ("chain", 50)]
    for record in records:
        assert record["plan_seconds"] > 0 and record["execute_seconds"] > 0


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_quick_observability() -> None:
    """``--observability``: five variants (the split into metrics only and tracing
    only included), their losses, and the targets."""
    records = run_harness("--observability")
    variants = {r["variant"]: r for r in records if r["kind"] == "observability"}
    assert set(variants) == {"off", "no_sdk", "metrics", "tracing", "on"}
    for rec in variants.values():
        assert rec["tasks"] == QUICK_TASKS + 2 and rec["tasks_per_s"] > 0
        assert len(rec["samples_seconds"]) == 1
    split = {r["variant"] for r in records if r["kind"] == "observability_split"}
    assert split == {"metrics", "tracing"}
    (collect,) = [r for r in records if r["kind"] == "observability_collect"]
    assert collect["seconds"] > 0 and len(collect["samples_seconds"]) == 2  # metrics, on
    targets = {r["target"]: r for r in records if r["kind"] == "target"}
    assert set(targets) == {
        "observability_on_throughput_lost",
        "observability_no_sdk_throughput_lost",
    }
    assert all(isinstance(t["met"], bool) for t in targets.values())
