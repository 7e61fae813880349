"""``benchmarks/inprocess.py --observability``: the cost of tracing and metrics.

One process, one 10k-task fan-out (source, N no-op tasks in a parallel group, sink),
run in rounds; each round runs the five variants back to back (in a rotating order),
so a change in machine load affects them alike; the median of each is reported:

* ``off``: ``run(wf)``, no instruments;
* ``no_sdk``: ``instruments=[Tracing(), Metrics()]`` with no SDK configured (the
  OpenTelemetry API's no-op providers);
* ``metrics``: ``instruments=[Metrics(meter_provider)]``, a ``MeterProvider`` with
  an ``InMemoryMetricReader`` (collected once after each run, as a scrape would);
* ``tracing``: ``instruments=[Tracing(tracer_provider)]``, a ``TracerProvider``
  exporting to an ``InMemorySpanExporter`` (``SimpleSpanProcessor``);
* ``on``: both (tracing and metrics, SDK configured).

Targets (issue 11): ``on`` loses <= 15% of ``off``'s throughput, ``no_sdk`` <= 3%.
The ``metrics`` and ``tracing`` lines say where ``on``'s cost comes from (their
losses are reported, with no target of their own).
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import sys
import time
from typing import Any

from benchmarks._common import emit, machine_summary, python_summary, target_record, verdict

TARGETS = {"on": 0.15, "no_sdk": 0.03}
SPLIT = ("metrics", "tracing")  # reported beside the targets, no target of their own


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
        "metrics": [Metrics(meter_provider)],
        "tracing": [Tracing(tracer_provider)],
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

    # The reader's counters are cumulative and both metered variants count into the
    # same series (one provider, the same attributes): runs metered so far.
    metered = 0
    collect_seconds: list[float] = []  # one collection (a scrape) after a metered run

    async def main() -> dict[str, list[float]]:
        nonlocal metered
        await once([])  # warm-up
        seconds: dict[str, list[float]] = {name: [] for name in variants}
        names = list(variants)
        for r in range(rounds):
            k = r % len(names)
            for name in names[k:] + names[:k]:
                seconds[name].append(await once(variants[name]))
                if name in ("tracing", "on"):
                    spans = len(exporter.get_finished_spans())
                    if spans != total + 1:
                        raise RuntimeError(f"{spans} spans, expected {total + 1}")
                    exporter.clear()
                if name in ("metrics", "on"):
                    metered += 1
                    t0 = time.perf_counter()
                    data = reader.get_metrics_data()
                    collect_seconds.append(time.perf_counter() - t0)
                    started = _total(data, "aioflow.tasks.started")
                    if started != total * metered:
                        raise RuntimeError(f"{started} attempts counted, expected {total}")
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
                "opentelemetry_sdk": _sdk_version(),
                "python": python_summary(),
                "machine": machine_summary(),
            }
        )
    emit(
        {
            "kind": "observability_collect",
            "note": "one InMemoryMetricReader collection after a metered run (not timed "
            "in the runs above)",
            "tasks": total,
            "seconds": round(statistics.median(collect_seconds), 6),
            "samples_seconds": [round(v, 6) for v in collect_seconds],
        }
    )
    base = total / medians["off"]
    for name in SPLIT:
        lost = 1 - (total / medians[name]) / base
        emit(
            {
                "kind": "observability_split",
                "variant": name,
                "value": round(lost, 4),
                "note": f"{name} alone vs off, medians of {rounds} interleaved rounds",
            }
        )
        sys.stderr.write(
            f"{name:>7}: {total / medians[name]:>9,.0f} tasks/s  lost {lost:+.1%} "
            "(no target of its own)\n"
        )
    for name, limit in TARGETS.items():
        lost = 1 - (total / medians[name]) / base
        target = target_record(
            f"observability_{name}_throughput_lost",
            limit,
            round(lost, 4),
            lost <= limit,
            note=f"{name} vs off, medians of {rounds} interleaved rounds, one process",
        )
        emit(target)
        sys.stderr.write(
            f"{name:>7}: {total / medians[name]:>9,.0f} tasks/s  lost {lost:+.1%} "
            f"(target <= {limit:.0%}: {verdict(target)})\n"
        )
    sys.stderr.write(
        f"collect: {statistics.median(collect_seconds) * 1000:,.1f} ms per collection "
        f"of a {total}-task run's metrics\n"
    )
    tracer_provider.shutdown()
    meter_provider.shutdown()
    return 0


def _total(data: Any, name: str) -> float:
    """The sum of a metric's points in one collection (``MetricsData``)."""
    found = 0.0
    for resource in data.resource_metrics if data is not None else ():
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == name:
                    found += sum(point.value for point in metric.data.data_points)
    return found


def _sdk_version() -> str:
    from importlib.metadata import version

    return version("opentelemetry-sdk")
