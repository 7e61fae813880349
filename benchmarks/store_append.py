"""Run store append throughput: is recording a task completion O(1)?

Appends ``task_finished`` records (128 bytes of opaque data each, about the size of
a signed result envelope) to a fresh SQLite store, one ``append`` call per batch,
and reports records/s. Cases (default):

* 1,000 records, one record per batch (one transaction, one commit per record);
* 10,000 records, one record per batch: per-record cost must not grow with the run,
  so this is compared with the 1,000-record case, and the last tenth of the run
  with its first tenth;
* 10,000 records in batches of 100 (group commit).

``synchronous=normal`` by default (durable against ``kill -9`` at every commit);
``--synchronous full`` adds an fsync per commit. Every measurement gets its own
temporary database, warmed up by 200 appends to another run first (the worker
thread, the first pages), so that only the run's size differs between the cases;
the cases take turns, after one run thrown away (a process's first run is slower
whatever its size); the best of ``--repeat`` runs per case is reported, with the
median. Output: one JSON line per case on stdout
(``"kind": "measurement"``), then one ``"kind": "scaling"`` line comparing the
two one-record-per-batch cases. Usage::

    python benchmarks/store_append.py [--synchronous normal|full] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if not __package__:  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import anyio

from aioflow.stores import JournalRecord, RecordKind, RunInfo, RunStore
from aioflow.stores.sqlite import SQLiteStore

CASES = ((1000, 1), (10000, 1), (10000, 100))
PAYLOAD = bytes(range(128))


def _records(count: int, start: int) -> list[JournalRecord]:
    return [
        JournalRecord(
            RecordKind.TASK_FINISHED, f"t{start + i}", 1, "succeeded", time.time(), PAYLOAD
        )
        for i in range(count)
    ]


async def _warm_up(store: RunStore) -> None:
    """Start the worker thread and the database's first pages before timing anything."""
    await store.begin_run(RunInfo(run_id="warm-up", workflow="bench", started_at=time.time()))
    for start in range(200):
        await store.append("warm-up", _records(1, start))


async def _measure(store: RunStore, total: int, batch: int) -> dict[str, Any]:
    await _warm_up(store)
    await store.begin_run(
        RunInfo(run_id="bench", workflow="bench", started_at=time.time(), tasks_total=total)
    )
    batches = [_records(batch, start) for start in range(0, total, batch)]
    marks: list[float] = []
    began = time.perf_counter()
    for records in batches:
        await store.append("bench", records)
        marks.append(time.perf_counter())
    seconds = marks[-1] - began
    tenth = max(1, len(batches) // 10)
    first = marks[tenth - 1] - began
    last = marks[-1] - marks[-tenth - 1]
    info = await store.get_run("bench")
    assert info.last_seq == total and info.tasks_succeeded == total
    return {
        "seconds": round(seconds, 4),
        "records_per_s": round(total / seconds),
        "first_tenth_records_per_s": round(tenth * batch / first),
        "last_tenth_records_per_s": round(tenth * batch / last),
    }


async def _once(total: int, batch: int, synchronous: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="aioflow-bench-") as tmp:
        async with SQLiteStore(
            Path(tmp) / "runs.db", synchronous="full" if synchronous == "full" else "normal"
        ) as store:
            return await _measure(store, total, batch)


def _summary(
    total: int, batch: int, synchronous: str, runs: list[dict[str, Any]]
) -> dict[str, Any]:
    best = max(runs, key=lambda r: r["records_per_s"])
    return {
        "kind": "measurement",
        "store": "sqlite",
        "synchronous": synchronous,
        "records": total,
        "batch": batch,
        "commits": total // batch,
        "repeat": len(runs),
        **best,
        "median_records_per_s": round(statistics.median(r["records_per_s"] for r in runs)),
    }


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--synchronous", choices=("normal", "full"), default="normal")
    parser.add_argument("--repeat", type=int, default=3, help="runs per case; best is reported")
    args = parser.parse_args(argv)
    # A first run is slower whatever its size (the process warming up): one is thrown
    # away, then the cases take turns, so that drift on a busy machine hits them alike.
    await _once(2000, 1, args.synchronous)
    runs: dict[tuple[int, int], list[dict[str, Any]]] = {case: [] for case in CASES}
    for _ in range(args.repeat):
        for total, batch in CASES:
            runs[total, batch].append(await _once(total, batch, args.synchronous))
    results = []
    for (total, batch), measured in runs.items():
        line = _summary(total, batch, args.synchronous, measured)
        results.append(line)
        print(json.dumps(line), flush=True)
    small, large = results[0], results[1]
    print(
        json.dumps(
            {
                "kind": "scaling",
                "synchronous": args.synchronous,
                "per_record_us_1000": round(1e6 / small["records_per_s"], 1),
                "per_record_us_10000": round(1e6 / large["records_per_s"], 1),
                "ratio_10000_vs_1000": round(large["records_per_s"] / small["records_per_s"], 3),
                "o1": large["records_per_s"] >= 0.8 * small["records_per_s"],
            }
        ),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(anyio.run(main))
