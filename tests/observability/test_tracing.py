"""Spans of runs and task attempts, read back through the SDK's in-memory exporter."""

from __future__ import annotations

import time
from typing import Any

import pytest
from opentelemetry.trace import SpanKind, StatusCode

import aioflow
from aioflow.observability import Tracing

from . import flows
from .conftest import Spans


def _by_name(spans: Spans) -> dict[str, list[object]]:
    found: dict[str, list[object]] = {}
    for s in spans.all():
        found.setdefault(s.name, []).append(s)
    return found


async def test_a_run_and_each_attempt_get_a_span(spans: Spans) -> None:
    result = await aioflow.run(
        flows.good(), run_id="traced-1", instruments=[Tracing(spans.provider)]
    )
    assert result["sink"] == 24
    (run,) = spans.named("aioflow.run")
    assert run.attributes["aioflow.run.id"] == "traced-1"
    assert run.attributes["aioflow.workflow"] == "obs-good"
    assert run.attributes["aioflow.run.status"] == "succeeded"
    assert run.parent is None
    tasks = spans.named("aioflow.task")
    names = sorted(
        (s.attributes["aioflow.task.name"], s.attributes["aioflow.task.attempt"]) for s in tasks
    )
    assert names == [("flaky", 1), ("flaky", 2), ("sink", 1), ("source", 1), ("square", 1)]
    for s in tasks:
        assert s.kind is SpanKind.INTERNAL
        assert s.parent is not None and s.parent.span_id == run.context.span_id
        assert s.context.trace_id == run.context.trace_id
        assert s.attributes["aioflow.workflow"] == "obs-good"
    first = next(
        s
        for s in tasks
        if s.attributes["aioflow.task.name"] == "flaky"
        and s.attributes["aioflow.task.attempt"] == 1
    )
    assert first.attributes["aioflow.task.outcome"] == "retried"
    assert first.status.status_code is StatusCode.ERROR
    (exc,) = [e for e in first.events if e.name == "exception"]
    assert exc.attributes["exception.type"] == "ConnectionError"
    assert exc.attributes["exception.message"] == "blip"
    ok = next(s for s in tasks if s.attributes["aioflow.task.name"] == "sink")
    assert ok.attributes["aioflow.task.outcome"] == "succeeded"
    assert ok.status.status_code is StatusCode.UNSET


async def test_an_in_process_attempt_says_its_queue_priority_and_handler(spans: Spans) -> None:
    @aioflow.task(queue="reports", priority=3)
    async def routed() -> str:
        return "ok"

    with aioflow.workflow("obs-routed") as wf:
        wf.add(routed.bind(name="routed"))
        wf.add(flows.source.bind(name="plain"))
    await aioflow.run(wf, instruments=[Tracing(spans.provider)])
    by_task = {s.attributes["aioflow.task.name"]: s for s in spans.named("aioflow.task")}
    routed_span, plain = by_task["routed"], by_task["plain"]
    assert routed_span.attributes["aioflow.task.queue"] == "reports"
    assert routed_span.attributes["aioflow.task.priority"] == 3
    assert routed_span.attributes["aioflow.task.handler"] == "inline"
    assert (plain.attributes["aioflow.task.queue"], plain.attributes["aioflow.task.priority"]) == (
        "default",
        0,
    )
    assert "messaging.system" not in routed_span.attributes  # no message: it ran here


async def test_a_failed_run_records_the_error(spans: Spans) -> None:
    with pytest.raises(aioflow.WorkflowFailedError):
        await aioflow.run(flows.bad(), instruments=[Tracing(spans.provider)])
    (run,) = spans.named("aioflow.run")
    assert run.status.status_code is StatusCode.ERROR
    assert run.attributes["aioflow.run.status"] == "failed"
    assert any(e.attributes["exception.type"] == "ValueError" for e in run.events)
    broken = next(
        s for s in spans.named("aioflow.task") if s.attributes["aioflow.task.name"] == "broken"
    )
    assert broken.attributes["aioflow.task.outcome"] == "failed"


async def test_a_timeout_is_its_own_outcome(spans: Spans) -> None:
    with pytest.raises(aioflow.WorkflowFailedError):
        await aioflow.run(flows.timing_out(), instruments=[Tracing(spans.provider)])
    slow = next(
        s for s in spans.named("aioflow.task") if s.attributes["aioflow.task.name"] == "slow"
    )
    assert slow.attributes["aioflow.task.outcome"] == "timed_out"


async def test_a_run_inside_an_application_span_is_its_child(spans: Spans) -> None:
    tracer = spans.provider.get_tracer("app")
    with tracer.start_as_current_span("GET /report") as request:
        await aioflow.run(flows.good(), instruments=[Tracing(spans.provider)])
        # Afterwards the application's span is current again.
        from opentelemetry import trace

        assert trace.get_current_span() is request
    (run,) = spans.named("aioflow.run")
    assert run.parent is not None and run.parent.span_id == request.get_span_context().span_id


async def test_spans_made_by_task_code_are_children_of_the_attempt(spans: Spans) -> None:
    tracer = spans.provider.get_tracer("app")

    @aioflow.task
    async def inner() -> int:
        with tracer.start_as_current_span("query"):
            return 1

    @aioflow.task
    def inner_sync() -> int:
        with tracer.start_as_current_span("sync query"):
            return 2

    with aioflow.workflow("nested") as wf:
        inner >> inner_sync
    await aioflow.run(wf, instruments=[Tracing(spans.provider)])
    attempts = {s.attributes["aioflow.task.name"]: s for s in spans.named("aioflow.task")}
    (query,) = spans.named("query")
    (sync_query,) = spans.named("sync query")
    assert query.parent.span_id == attempts["inner"].context.span_id
    assert sync_query.parent.span_id == attempts["inner_sync"].context.span_id


def messages(publish: Any) -> int:
    """How many calls a publish span sent."""
    return int(publish.attributes.get("messaging.batch.message_count", 1))


async def test_serialized_calls_carry_the_trace_context(spans: Spans) -> None:
    await aioflow.run(
        flows.good(), backend="memory://?serialize=true", instruments=[Tracing(spans.provider)]
    )
    (run,) = spans.named("aioflow.run")
    publishes = spans.named("publish default")
    by_id = {s.context.span_id: s for s in publishes}
    for s in publishes:
        assert s.kind is SpanKind.PRODUCER and s.parent.span_id == run.context.span_id
    # One publish span per submission (a batch send): 5 calls (flaky twice) in all.
    assert sum(messages(s) for s in publishes) == 5
    assert len(publishes) < 5  # the fan-out's calls went out together
    for s in spans.named("aioflow.task"):
        assert s.kind is SpanKind.CONSUMER
        publish = by_id[s.parent.span_id]  # the publish span of its own batch
        if messages(publish) == 1:
            assert publish.attributes["aioflow.task.name"] == s.attributes["aioflow.task.name"]
        assert s.attributes["messaging.destination.name"] == "default"
        assert s.attributes["aioflow.task.handler"] == "inline"
        assert s.attributes["aioflow.worker.id"] == "in-process"


async def test_no_sdk_no_spans_and_no_context_in_calls() -> None:
    from aioflow.observability import propagation

    tracing = Tracing()  # the API's no-op provider: nothing is configured
    result = await aioflow.run(
        flows.good(), backend="memory://?serialize=true", instruments=[tracing]
    )
    assert result["sink"] == 24
    assert propagation._injectors == {}
    assert tracing._tasks == {} and tracing._runs == {}


def test_without_an_sdk_the_instruments_have_no_hooks() -> None:
    from aioflow.instruments import Instruments
    from aioflow.observability import Metrics

    tracing, metrics = Tracing(), Metrics()
    assert tracing.on_task_start is None and metrics.on_task_end is None
    inst = Instruments([tracing, metrics])
    assert not (inst.task_start or inst.task_end or inst.run_start)


async def test_a_run_left_out_by_the_sampler_tells_its_workers_so() -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

    from aioflow.observability import propagation

    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=ALWAYS_OFF)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    carriers: list[dict[str, str]] = []

    class Calls:  # where the calls are received: what they carry
        def on_task_start(self, event: Any) -> None:
            call = propagation.current_call()
            if call is not None:
                carriers.append(dict(call.trace))

    result = await aioflow.run(
        flows.good(),
        backend="memory://?serialize=true",
        run_id="unsampled",
        instruments=[Tracing(provider), Calls()],
    )
    assert result["sink"] == 24
    assert len(carriers) == 5 and exporter.get_finished_spans() == ()
    for carrier in carriers:  # W3C traceparent: version-trace-parent-flags
        flags = int(carrier["traceparent"].rsplit("-", 1)[1], 16)
        assert flags & 1 == 0, carrier  # the sampled bit is off
    assert "unsampled" not in propagation._injectors  # forgotten with the run
    provider.shutdown()


async def test_spans_from_another_process_go_to_the_tracer_of_the_attempt(spans: Spans) -> None:
    """The records a container sends back are re-created by the instrument that traces
    the attempt, not by whichever ``Tracing`` was made last in the process."""
    from aioflow.observability.propagation import context_carrier, relay_spans

    ours = Tracing(spans.provider)
    other = Spans()
    Tracing(other.provider)  # made later: it must not take the attempt's spans
    now = time.time_ns()
    record = {
        "name": "inside",
        "kind": "INTERNAL",
        "trace_id": "0" * 32,
        "span_id": "1" * 16,
        "parent_span_id": None,
        "start": now,
        "end": now + 1000,
        "attributes": {"where": "container"},
        "events": [],
        "status": "UNSET",
        "status_description": None,
    }

    @aioflow.task
    async def sends_away() -> int:
        carrier = context_carrier()  # what a handler puts in the container's call
        return relay_spans([record], carrier, {"aioflow.container.id": "c1"})

    with aioflow.workflow("obs-relay") as wf:
        wf.add(sends_away)
    result = await aioflow.run(wf, instruments=[ours])
    assert result["sends_away"] == 1
    (inside,) = spans.named("inside")
    (attempt,) = spans.named("aioflow.task")
    assert inside.parent is not None and inside.parent.span_id == attempt.context.span_id
    assert inside.attributes["aioflow.container.id"] == "c1"
    assert other.all() == []
    other.provider.shutdown()
