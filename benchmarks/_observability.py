"""``benchmarks/inprocess.py --observability``: the cost of tracing and metrics.

One process, one 10k-task fan-out (source, N no-op tasks in a parallel group, sink),
run in rounds; each round runs the three variants back to back (in a rotating order),
so a change in machine load affects them alike; the median of each is reported:

* ``off``: ``run(wf)``, no instruments;
* ``no_sdk``: ``instruments=[Tracing(), Metrics()]`` with no SDK configured (the
  OpenTelemetry API's no-op providers);
* ``on``: the same with the SDK configured: a ``TracerProvider`` exporting to an
  ``InMemorySpanExporter`` (``SimpleSpanProcessor``) and a ``MeterProvider`` with an
  ``InMemoryMetricReader``.

Targets (issue 11): ``on`` loses <= 15% of ``off``'s throughput, ``no_sdk`` <= 3%.
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import sys
import time
from typing import Any

from benchmarks._common import emit, machine_summary, python_summary, verdict

TARGETS = {"on": 0.15, "no_sdk": 0.03}


def run_observability(tasks: int, rounds: int) -> int:
    import aioflow
    from aioflow.observability import Metrics, Tracing

    try:
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
            InMemorySpanExporter,
        )
    except ImportError:
        sys.stderr.write('--observability needs the SDK: pip install -e ".[otel]"\n')
        return 2

    count = 0

    @aioflow.task
    async def noop() -> None:
        nonlocal count
        count += 1

    with aioflow.workflow("bench-observability") as wf:
        nodes = [noop.bind(name=f"t{i}") for i in range(tasks)]
        noop.bind(name="src") >> aioflow.parallel(*nodes) >> noop.bind(name="sink")

    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    variants: dict[str, list[Any]] = {
        "off": [],
        "no_sdk": [Tracing(), Metrics()],
        "on": [Tracing(tracer_provider), Metrics(meter_provider)],
    }
    total = tasks + 2

    async def once(instruments: list[Any]) -> float:
        nonlocal count
        count = 0
        gc.collect()
        start = time.perf_counter()
        await aioflow.run(wf, instruments=instruments, max_concurrency=None)
        elapsed = time.perf_counter() - start
        if count != total:
            raise RuntimeError(f"{count} task executions, expected {total}")
        return elapsed

    async def main() -> dict[str, list[float]]:
        await once([])  # warm-up
        seconds: dict[str, list[float]] = {name: [] for name in variants}
        names = list(variants)
        for r in range(rounds):
            for name in names[r % 3 :] + names[: r % 3]:
                seconds[name].append(await once(variants[name]))
                if name == "on":
                    spans = len(exporter.get_finished_spans())
                    if spans != total + 1:
                        raise RuntimeError(f"{spans} spans, expected {total + 1}")
                    exporter.clear()
        return seconds

    seconds = asyncio.run(main())
    medians = {name: statistics.median(values) for name, values in seconds.items()}
    for name, values in seconds.items():
        emit(
            {
                "kind": "observability",
                "variant": name,
                "tasks": total,
                "seconds": round(medians[name], 6),
                "tasks_per_s": round(total / medians[name], 1),
                "samples_seconds": [round(v, 6) for v in values],
                "python": python_summary(),
                "machine": machine_summary(),
            }
        )
    base = total / medians["off"]
    for name, limit in TARGETS.items():
        lost = 1 - (total / medians[name]) / base
        target = {
            "kind": "target",
            "target": f"observability_{name}_throughput_lost",
            "threshold": limit,
            "value": round(lost, 4),
            "met": lost <= limit,
            "applicable": True,
            "note": f"{name} vs off, medians of {rounds} interleaved rounds, one process",
        }
        emit(target)
        sys.stderr.write(
            f"{name:>7}: {total / medians[name]:>9,.0f} tasks/s  lost {lost:+.1%} "
            f"(target <= {limit:.0%}: {verdict(target)})\n"
        )
    tracer_provider.shutdown()
    meter_provider.shutdown()
    return 0
