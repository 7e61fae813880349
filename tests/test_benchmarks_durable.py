"""The durable-execution benchmark harness runs end to end and prints well-formed JSON lines.

These tests check structure and task counts only, never timings. None needs DBOS
installed: the one about ``--vs dbos`` blocks its import and checks the message
given when it is missing.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "durable.py"

QUICK_CHAIN_SIZES = (50, 200)
QUICK_FANOUT_TASKS = 200
VARIANTS = ("memory", "sqlite_normal", "sqlite_full", "sqlite_background")
JOURNALED = ("sqlite_normal", "sqlite_full", "sqlite_background")
MEASUREMENT_KEYS = {
    "engine",
    "engine_version",
    "shape",
    "variant",
    "journaled",
    "tasks",
    "seconds",
    "tasks_per_s",
    "build_seconds",
    "peak_rss_mb",
    "baseline_rss_mb",
    "executed",
    "status",
    "error",
    "samples_seconds",
    "config",
    "python",
    "machine",
}
TARGET_KEYS = {"target", "variant", "primary", "threshold", "value", "met", "applicable", "note"}


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
    assert "target journaled_chain_tasks_per_s" in proc.stderr  # the human summary
    return records


def check_measurement(rec: dict[str, Any]) -> None:
    assert rec.keys() >= MEASUREMENT_KEYS
    assert rec["kind"] == "measurement"
    assert rec["engine"] == "aioflow"
    assert rec["status"] == "ok", rec
    assert rec["error"] is None
    assert rec["executed"] == rec["tasks"]  # every task ran exactly once
    assert rec["journaled"] == (rec["variant"] != "memory")
    if rec["journaled"]:
        assert rec["journaled_succeeded"] == rec["tasks"]  # and the journal says so
        assert rec["journal_records"] >= rec["tasks"]
        assert rec["db_bytes"] > 0
        expected = "full" if rec["variant"] == "sqlite_full" else "normal"
        assert rec["sqlite"] == {"journal_mode": "wal", "synchronous": expected}
    for key in ("seconds", "tasks_per_s", "build_seconds", "peak_rss_mb", "baseline_rss_mb"):
        assert isinstance(rec[key], int | float) and rec[key] > 0, key
    assert rec["peak_rss_mb"] >= rec["baseline_rss_mb"]
    assert len(rec["samples_seconds"]) == 1  # --quick runs once
    assert isinstance(rec["python"], str) and rec["python"]
    assert isinstance(rec["machine"], str) and rec["machine"]


def test_help() -> None:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--help"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    for option in ("--vs", "--quick", "--repeat", "--dbos-size", "--chain-sizes"):
        assert option in proc.stdout


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_quick_aioflow_only() -> None:
    records = run_harness()
    kinds = [r["kind"] for r in records]
    # measurements first, then ratios, then targets
    assert kinds == sorted(kinds, key=["measurement", "ratio", "target"].index)
    measurements = [r for r in records if r["kind"] == "measurement"]
    for rec in measurements:
        check_measurement(rec)
    got = sorted((r["shape"], r["tasks"], r["variant"]) for r in measurements)
    expected = sorted(
        [("chain", n, v) for n in QUICK_CHAIN_SIZES for v in VARIANTS]
        + [("fanout", QUICK_FANOUT_TASKS + 2, v) for v in VARIANTS]
    )
    assert got == expected

    ratios = {r["name"]: r for r in records if r["kind"] == "ratio"}
    assert sorted(ratios) == sorted(f"fanout_{v}_vs_memory" for v in JOURNALED)
    for line in ratios.values():
        assert line["valid"] is True
        assert isinstance(line["ratio"], float) and line["ratio"] > 0
        assert line["numerator"]["tasks"] == line["denominator"]["tasks"]
        assert line["denominator"]["variant"] == "memory"

    targets = [r for r in records if r["kind"] == "target"]
    for t in targets:
        assert t.keys() >= TARGET_KEYS
        assert isinstance(t["met"], bool)
        assert t["primary"] == (t["variant"] == "sqlite_normal")
        assert t["applicable"] is False  # quick sizes are not the targets' sizes
    names = {(t["target"], t["variant"]) for t in targets}
    assert names == {
        (name, variant)
        for name in (
            "journaled_chain_tasks_per_s",
            "journaled_chain_scaling",
            "journaled_fanout_vs_unjournaled",
        )
        for variant in JOURNALED
    }  # no DBOS comparison without --vs dbos


# What `import dbos` does in an environment without the bench extra.
WITHOUT_DBOS = (
    "import runpy, sys; "
    "sys.modules['dbos'] = None; "  # `import dbos` fails, find_spec finds nothing
    "sys.argv = sys.argv[1:]; "
    "runpy.run_path(sys.argv[0], run_name='__main__')"
)


def test_vs_dbos_without_dbos_fails_fast_with_the_install_command() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", WITHOUT_DBOS, str(SCRIPT), "--quick", "--vs", "dbos"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""  # nothing was measured first
    assert "running" not in proc.stderr
    assert "[aioflow.missing_dependency] --vs dbos needs the peer engine 'dbos'" in proc.stderr
    assert 'hint: pip install -e ".[bench]"' in proc.stderr
