"""Metrics of runs and attempts, read back through the SDK's in-memory reader."""

from __future__ import annotations

import pytest

import aioflow
from aioflow.observability import Metrics

from . import flows
from .conftest import Readings


async def test_counts_of_a_run(readings: Readings) -> None:
    await aioflow.run(flows.good(), instruments=[Metrics(readings.provider)])
    wf = {"aioflow.workflow": "obs-good"}
    assert readings.total("aioflow.tasks.started", **wf) == 5
    assert readings.total("aioflow.tasks.succeeded", **wf) == 4
    assert readings.total("aioflow.tasks.failed", **wf) == 1
    assert readings.total("aioflow.tasks.retried", **{"aioflow.task.name": "flaky"}) == 1
    assert readings.total("aioflow.tasks.timed_out") == 0
    assert readings.total("aioflow.tasks.in_flight") == 0
    assert readings.total("aioflow.runs.started", **wf) == 1
    assert readings.total("aioflow.runs.finished", **wf, **{"aioflow.run.status": "succeeded"}) == 1
    points = readings.points()
    (duration,) = [
        p for p in points["aioflow.task.duration"] if p.attributes["aioflow.task.name"] == "sink"
    ]
    assert duration.count == 1 and duration.sum >= 0
    # Buckets in seconds, fine enough for tasks of a millisecond (p95 panels).
    assert duration.explicit_bounds[0] <= 0.001 and duration.explicit_bounds[-1] >= 3600
    assert sum(duration.bucket_counts[:9]) == 1  # sink returns at once: under 0.25 s
    assert sum(p.count for p in points["aioflow.run.duration"]) == 1


async def test_without_task_names_a_wide_fan_out_is_one_series(readings: Readings) -> None:
    wide = aioflow.workflow("obs-wide")
    with wide:
        aioflow.parallel(*(flows.source.bind(name=f"s{i}") for i in range(300)), name="all")
    await aioflow.run(wide, instruments=[Metrics(readings.provider, task_names=False)])
    (started,) = readings.points()["aioflow.tasks.started"]  # one series, not 300
    assert started.value == 300 and dict(started.attributes) == {"aioflow.workflow": "obs-wide"}
    (duration,) = readings.points()["aioflow.task.duration"]
    assert duration.count == 300


async def test_timeouts_and_failures(readings: Readings) -> None:
    metrics = Metrics(readings.provider)
    with pytest.raises(aioflow.WorkflowFailedError):
        await aioflow.run(flows.timing_out(), instruments=[metrics])
    with pytest.raises(aioflow.WorkflowFailedError):
        await aioflow.run(flows.bad(), instruments=[metrics])
    assert readings.total("aioflow.tasks.timed_out", **{"aioflow.task.name": "slow"}) == 1
    assert readings.total("aioflow.tasks.failed") == 2
    assert readings.total("aioflow.runs.finished", **{"aioflow.run.status": "failed"}) == 2


async def test_queue_wait_is_measured_where_calls_are_received(readings: Readings) -> None:
    await aioflow.run(
        flows.good(), backend="memory://?serialize=true", instruments=[Metrics(readings.provider)]
    )
    waits = readings.points()["aioflow.task.queue_wait"]
    assert sum(p.count for p in waits) == 5
    assert all(p.attributes["aioflow.task.queue"] == "default" for p in waits)
    assert max(p.max for p in waits) < 5.0


def test_without_opentelemetry_the_error_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import sys

    from aioflow.observability import Tracing

    monkeypatch.setitem(sys.modules, "opentelemetry.metrics", None)
    monkeypatch.setitem(sys.modules, "opentelemetry.trace", None)
    with pytest.raises(aioflow.MissingDependencyError, match=r"aioflow\[otel\]"):
        Metrics()
    with pytest.raises(aioflow.MissingDependencyError, match=r"aioflow\[otel\]"):
        Tracing()
