"""Issue 11's "done when", for containers: one trace shows a run whose tasks ran on two
Redis workers and in one container. The trace context goes into the container with
the call; the spans made inside come back over the attached stream (the container
has no network) and are re-created under the attempt's span."""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import box_tasks as bt
import pytest
from docker_engine import containers
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from redis_server import RedisServer
from worker_processes import WorkerProcesses

import aioflow
from aioflow import workflow
from aioflow.errors import PayloadTooLargeError
from aioflow.handlers import DockerHandler
from aioflow.handlers._docker_config import call_of
from aioflow.handlers._docker_spans import (
    MAX_NAME,
    MAX_SPANS,
    decode_spans,
    encode_spans,
    relay_container_spans,
)
from aioflow.handlers._docker_wire import FrameKind, FrameReader, frame
from aioflow.handlers.base import Handler
from aioflow.observability import Tracing, get_logger
from aioflow.serialization import Keyring, PayloadKind, TaskRef, encode_value

SECRET = secrets.token_hex(32)


class Spans:
    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))

    def named(self, name: str) -> list[ReadableSpan]:
        return [s for s in self.exporter.get_finished_spans() if s.name == name]


@pytest.fixture
def spans() -> Iterator[Spans]:
    found = Spans()
    yield found
    found.provider.shutdown()


def _messages(publish: Any) -> int:
    """How many calls a publish span sent."""
    return int(publish.attributes.get("messaging.batch.message_count", 1))


def _hex(span_id: int) -> str:
    return f"{span_id:016x}"


def _attempt(spans: Spans, task: str, kind: SpanKind) -> ReadableSpan:
    (found,) = [
        s
        for s in spans.named("aioflow.task")
        if s.attributes["aioflow.task.name"] == task and s.kind is kind
    ]
    return found


# --- in-process: the chain without Redis ------------------------------------------------


async def test_a_traced_attempt_is_traced_inside_its_container(
    box_image: str, docker_host: str, spans: Spans
) -> None:
    with workflow("traced-box") as wf:
        aioflow.parallel(bt.traced_work.bind(x=7), bt.boom, name="g", policy="best_effort")
    result = await aioflow.run(
        wf, handlers={"box": DockerHandler(box_image)}, instruments=[Tracing(spans.provider)]
    )
    (run,) = spans.named("aioflow.run")
    trace_id = run.context.trace_id
    assert result["traced_work"] == {"trace_id": f"{trace_id:032x}", "recording": True}

    host = _attempt(spans, "traced_work", SpanKind.INTERNAL)  # the attempt, here
    inside = _attempt(spans, "traced_work", SpanKind.CONSUMER)  # its worker, in the box
    (work,) = spans.named("box work")
    assert host.parent.span_id == run.context.span_id
    assert inside.parent.span_id == host.context.span_id
    assert work.parent.span_id == inside.context.span_id
    assert {s.context.trace_id for s in (host, inside, work)} == {trace_id}
    assert len(inside.attributes["aioflow.container.id"]) == 64
    assert inside.attributes["aioflow.container.image"] == box_image
    assert inside.attributes["aioflow.worker.id"].startswith("container-")
    assert inside.attributes["aioflow.task.outcome"] == "succeeded"
    assert "aioflow.container.id" not in work.attributes  # on the relayed root only
    # The times are the container's own, inside the host attempt's.
    assert host.start_time <= inside.start_time <= work.start_time
    assert work.end_time <= inside.end_time <= host.end_time
    assert work.attributes["box.x"] == 7
    (halfway,) = work.events
    assert halfway.name == "halfway" and halfway.attributes["box.step"] == 1
    assert work.start_time <= halfway.timestamp <= work.end_time

    # A failure inside keeps its status and its exception event.
    failed = _attempt(spans, "boom", SpanKind.CONSUMER)
    assert failed.parent.span_id == _attempt(spans, "boom", SpanKind.INTERNAL).context.span_id
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.status.description == "ValueError"
    (exception,) = [e for e in failed.events if e.name == "exception"]
    assert exception.attributes["exception.type"] == "ValueError"
    assert "boom in the box" in exception.attributes["exception.message"]
    assert await containers(docker_host) == []


async def test_each_call_on_a_pooled_container_brings_back_its_own_spans(
    box_image: str, spans: Spans
) -> None:
    with workflow("traced-pool") as wf:
        bt.traced_work.bind(name="first", x=1) >> bt.traced_work.bind(name="second", x=2)
    handler = DockerHandler(box_image, pool_size=1)
    await aioflow.run(wf, handlers={"box": handler}, instruments=[Tracing(spans.provider)])
    works = {s.attributes["box.x"]: s for s in spans.named("box work")}
    assert sorted(works) == [1, 2]  # one each, though both calls ran in one container
    for x, name in ((1, "first"), (2, "second")):
        inside = _attempt(spans, name, SpanKind.CONSUMER)
        assert works[x].parent.span_id == inside.context.span_id
        assert inside.parent.span_id == _attempt(spans, name, SpanKind.INTERNAL).context.span_id
    ids = {
        _attempt(spans, n, SpanKind.CONSUMER).attributes["aioflow.container.id"]
        for n in ("first", "second")
    }
    assert len(ids) == 1


async def test_untraced_calls_do_not_import_opentelemetry_in_the_container(
    box_image: str, spans: Spans
) -> None:
    with workflow("otel-modules") as wf:
        wf.add(bt.otel_modules)
    handlers = {"box": DockerHandler(box_image)}
    assert (await aioflow.run(wf, handlers=handlers))["otel_modules"] == []
    traced = await aioflow.run(wf, handlers=handlers, instruments=[Tracing(spans.provider)])
    assert "opentelemetry.sdk.trace" in traced["otel_modules"]


class _CarrierOf(Handler):
    """Returns the trace carrier a DockerHandler would put in this attempt's call."""

    async def execute(self, task: Any, args: Any, kwargs: Any, ctx: Any) -> Any:
        return call_of(task, args, kwargs, ctx, TaskRef.from_callable(task.fn)).trace


async def test_the_call_carries_the_attempt_span_only_when_traced(spans: Spans) -> None:
    @aioflow.task(handler="carrier")
    async def probe() -> None:
        return None

    with workflow("carrier") as wf:
        wf.add(probe)
    handlers = {"carrier": _CarrierOf()}
    Tracing(spans.provider)  # a tracing instrument exists in the process, unused here
    assert (await aioflow.run(wf, handlers=handlers))["probe"] == {}
    assert (await aioflow.run(wf, handlers=handlers, instruments=[Tracing()]))["probe"] == {}
    traced = await aioflow.run(wf, handlers=handlers, instruments=[Tracing(spans.provider)])
    (attempt,) = spans.named("aioflow.task")
    context = attempt.context
    _version, trace_id, span_id, flags = traced["probe"]["traceparent"].split("-")
    assert (trace_id, span_id) == (f"{context.trace_id:032x}", f"{context.span_id:016x}")
    assert int(flags, 16) & 1  # sampled


async def test_forwarded_stderr_carries_the_worker_and_span_ids(
    box_image: str, spans: Spans, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="aioflow")
    with workflow("traced-log") as wf:
        wf.add(bt.traced_work)
    await aioflow.run(
        wf,
        backend="memory://?serialize=true",  # through the worker runtime: a worker id
        handlers={"box": DockerHandler(box_image)},
        instruments=[Tracing(spans.provider)],
    )
    (attempt,) = [
        s
        for s in spans.named("aioflow.task")
        if s.attributes.get("aioflow.worker.id") == "in-process"  # not the container's
    ]
    (line,) = [
        r.msg
        for r in caplog.records
        if isinstance(r.msg, dict) and r.msg.get("line") == "working in the box"
    ]
    assert line["task_name"] == "traced_work" and line["attempt"] == 1
    assert line["worker_id"] == "in-process"
    assert len(line["container_id"]) == 12
    assert line["trace_id"] == f"{attempt.context.trace_id:032x}"
    # The attempt's span as the host knows it (not the worker's inside the container).
    assert line["span_id"] == f"{attempt.context.span_id:016x}"
    (step,) = [
        r.msg for r in caplog.records if isinstance(r.msg, dict) and r.msg["event"] == "box step"
    ]
    assert step["source"] == "container" and step["step"] == 1
    assert {k: step[k] for k in ("worker_id", "trace_id", "span_id", "container_id")} == {
        k: line[k] for k in ("worker_id", "trace_id", "span_id", "container_id")
    }


# --- what comes out of a container is checked before it is relayed -------------------


def _record(span_id: int, parent: int | None, trace_id: str, **fields: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "name": f"s{span_id}",
        "kind": "INTERNAL",
        "trace_id": trace_id,
        "span_id": _hex(span_id),
        "parent_span_id": None if parent is None else _hex(parent),
        "start": 1_000 + span_id,
        "end": 2_000 + span_id,
        "attributes": {"i": span_id},
        "events": [],
        "status": "UNSET",
        "status_description": None,
    }
    record.update(fields)
    return record


def test_spans_of_other_traces_or_over_the_limits_are_dropped() -> None:
    keyring = Keyring(secrets.token_bytes(32))
    mine, other = "a" * 32, "b" * 32
    records = [
        _record(1, None, mine),
        _record(2, 1, other),  # another trace
        _record(3, 1, mine, name="n" * (MAX_NAME + 1)),
        _record(4, 1, mine, attributes={"big": "x" * 100_000}),
        _record(5, 1, mine, kind="WEIRD"),
        _record(6, 1, mine, end=10),  # ends before it starts
        _record(1, None, mine),  # the same span id again
        _record(7, 1, mine, attributes={"nested": {"a": 1}}),
        _record(8, 1, mine, events=[{"name": "e", "time": 5, "attributes": {}}]),
    ]
    body = encode_value(records, keyring, allow_pickle=False, kind=PayloadKind.CONTROL)
    kept, dropped = decode_spans(body, keyring, mine)
    assert [r["span_id"] for r in kept] == [_hex(1), _hex(8)]
    assert dropped == 7
    many = [_record(i, None, mine) for i in range(1, MAX_SPANS + 50)]
    kept, dropped = decode_spans(encode_spans(many, keyring), keyring, mine)
    assert len(kept) == MAX_SPANS and dropped == 0  # the container sends the first 512
    body = encode_value(many, keyring, allow_pickle=False, kind=PayloadKind.CONTROL)
    kept, dropped = decode_spans(body, keyring, mine)
    assert len(kept) == MAX_SPANS and dropped == 49  # and the handler keeps no more


def test_a_spans_frame_over_the_size_limit_is_skipped_not_fatal() -> None:
    reader = FrameReader(limit=1000)
    data = frame(FrameKind.SPANS, b"s" * 5000) + frame(FrameKind.RESULT, b"result")
    got = [f for start in range(0, len(data), 700) for f in reader.feed(data[start : start + 700])]
    assert got == [(FrameKind.RESULT, b"result")]
    assert reader.dropped == [5000]
    with pytest.raises(PayloadTooLargeError):
        FrameReader(limit=1000).feed(frame(FrameKind.RESULT, b"r" * 5000))


def test_unsigned_or_pickled_spans_are_refused_and_logged(
    spans: Spans, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="aioflow")
    Tracing(spans.provider)
    tracer = spans.provider.get_tracer("test")
    with tracer.start_as_current_span("attempt") as attempt:
        carrier = {"traceparent": f"00-{attempt.get_span_context().trace_id:032x}-{'1' * 16}-01"}
    keyring = Keyring(secrets.token_bytes(32))
    records = [_record(1, None, carrier["traceparent"][3:35])]
    log = get_logger("test")
    forged = encode_spans(records, Keyring(secrets.token_bytes(32)))
    assert relay_container_spans(forged, keyring, carrier, {}, log) == 0
    pickled = encode_value([object()], keyring, allow_pickle=True, kind=PayloadKind.CONTROL)
    assert relay_container_spans(pickled, keyring, carrier, {}, log) == 0
    assert relay_container_spans(encode_spans(records, keyring), keyring, carrier, {}, log) == 1
    messages = [r.msg["event"] for r in caplog.records if isinstance(r.msg, dict)]
    assert messages.count("container spans dropped: the frame is not valid") == 2


def test_relayed_spans_get_parents_first_and_orphans_go_under_the_attempt(
    spans: Spans,
) -> None:
    Tracing(spans.provider)  # registers the relay
    tracer = spans.provider.get_tracer("test")
    with tracer.start_as_current_span("attempt") as attempt:
        here = attempt.get_span_context()
    trace_id = f"{here.trace_id:032x}"
    carrier = {"traceparent": f"00-{trace_id}-{here.span_id:016x}-01"}
    keyring = Keyring(secrets.token_bytes(32))
    records = [
        _record(3, 2, trace_id),  # a grandchild listed first
        _record(2, 1, trace_id, status="ERROR", status_description="bad"),
        _record(1, here.span_id, trace_id),  # the container's root
        _record(9, 8, trace_id, events=[{"name": "e", "time": 1500, "attributes": {"k": "v"}}]),
    ]
    body = encode_spans(records, keyring)
    root = {"aioflow.container.id": "c" * 64}
    assert relay_container_spans(body, keyring, carrier, root, get_logger("test")) == 4
    made = {s.name: s for s in spans.exporter.get_finished_spans()}
    assert made["s1"].parent.span_id == here.span_id
    assert made["s2"].parent.span_id == made["s1"].context.span_id
    assert made["s3"].parent.span_id == made["s2"].context.span_id
    assert made["s9"].parent.span_id == here.span_id  # its parent never came
    assert {_hex(made[n].context.span_id) for n in ("s1", "s2", "s3")}.isdisjoint(
        {_hex(1), _hex(2), _hex(3)}
    )  # new ids
    assert made["s1"].attributes["aioflow.container.id"] == "c" * 64
    assert made["s9"].attributes["aioflow.container.id"] == "c" * 64
    assert "aioflow.container.id" not in made["s2"].attributes
    assert (made["s2"].start_time, made["s2"].end_time) == (1002, 2002)
    assert made["s2"].status.status_code is StatusCode.ERROR
    assert made["s2"].status.description == "bad"
    (event,) = made["s9"].events
    assert (event.name, event.timestamp, dict(event.attributes)) == ("e", 1500, {"k": "v"})


# --- the done-when: two Redis workers and a container, one trace ---------------------


def _wait_for(predicate: Any, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.05)  # another process writes the file: nothing to wait on


def _lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.startswith("{")]


async def test_one_trace_across_two_redis_workers_and_a_container(
    box_image: str,
    docker_host: str,
    redis_server: RedisServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    spans: Spans,
) -> None:
    prefix = f"trace{secrets.token_hex(3)}"
    url = f"{redis_server.url}?prefix={prefix}"
    monkeypatch.setenv("AIOFLOW_SECRET_KEY", SECRET)
    spans_file = tmp_path / "worker-spans.jsonl"
    env = {
        "AIOFLOW_SECRET_KEY": SECRET,
        "AIOFLOW_OTEL_SPANS_FILE": str(spans_file),
        "OTEL_TRACES_EXPORTER": "none",
        "DOCKER_HOST": docker_host,
        "AIOFLOW_TEST_IMAGE": box_image,
        "PYTHONPATH": str(Path(bt.__file__).parent),
        "COLUMNS": "4000",  # log lines are never wrapped
    }
    with workflow("trace-fleet") as wf:
        spreads = [bt.spread.bind(name=f"spread_{i}") for i in range(6)]
        wf.add(*spreads, bt.traced_work.bind(x=3))
    workers = WorkerProcesses(
        url,
        imports=["box_tasks"],
        count=2,
        concurrency=2,
        env=env,
        prefix=prefix,
        extra=[
            *("--otel", "--handlers", "box_tasks:handlers"),
            *("--log-json", "--log-level", "INFO"),
        ],
        log_dir=tmp_path,
    )
    with workers:
        result = await aioflow.run(wf, backend=url, instruments=[Tracing(spans.provider)])
        ids = {workers.worker_id(0), workers.worker_id(1)}
        assert {result[f"spread_{i}"] for i in range(6)} == ids  # both workers ran some

        (run,) = spans.named("aioflow.run")
        trace_id = f"{run.context.trace_id:032x}"
        assert result["traced_work"]["trace_id"] == trace_id  # as the task saw it inside
        publishes = {_hex(s.context.span_id): s for s in spans.named("publish default")}
        # One publish span per submission (a batch send): 7 calls in all.
        assert sum(_messages(s) for s in publishes.values()) == 7

        def mine() -> list[dict[str, Any]]:
            return [s for s in _lines(spans_file) if s["trace_id"] == trace_id]

        _wait_for(lambda: len(mine()) == 9)  # 7 attempts, the container's, the code's
    found = mine()
    assert {s["trace_id"] for s in found} == {trace_id}
    by_id = {s["span_id"]: s for s in found}
    attempts = [
        s for s in found if s["name"] == "aioflow.task" and s["parent_span_id"] in publishes
    ]
    assert len(attempts) == 7
    assert {s["attributes"]["aioflow.worker.id"] for s in attempts} == ids
    (work,) = [s for s in found if s["name"] == "box work"]
    inside = by_id[work["parent_span_id"]]  # the container's aioflow.task
    worker_attempt = by_id[inside["parent_span_id"]]  # the worker's, of the box task
    publish = publishes[worker_attempt["parent_span_id"]]
    assert publish.parent.span_id == run.context.span_id  # run -> publish
    if _messages(publish) == 1:
        assert publish.attributes["aioflow.task.name"] == "traced_work"
    assert worker_attempt["name"] == inside["name"] == "aioflow.task"
    assert worker_attempt["attributes"]["aioflow.task.name"] == "traced_work"
    assert worker_attempt["attributes"]["aioflow.task.handler"] == "box"
    assert worker_attempt["attributes"]["aioflow.worker.id"] in ids
    assert inside["attributes"]["aioflow.task.name"] == "traced_work"
    assert inside["attributes"]["aioflow.container.image"] == box_image
    assert len(inside["attributes"]["aioflow.container.id"]) == 64
    assert inside["attributes"]["aioflow.worker.id"].startswith("container-")
    assert work["attributes"]["box.x"] == 3
    assert [e["name"] for e in work["events"]] == ["halfway"]
    assert worker_attempt["resource"] == inside["resource"]  # relayed by that worker

    # The worker forwarded the container's output with the task's ids.
    (line,) = [
        line
        for path in sorted(tmp_path.glob("w*.log"))
        for line in _lines(path)
        if line.get("line") == "working in the box"
    ]
    assert line["worker_id"] == worker_attempt["attributes"]["aioflow.worker.id"]
    assert (line["run_id"], line["task_name"], line["attempt"]) == (result.run_id, "traced_work", 1)
    assert (line["trace_id"], line["span_id"]) == (trace_id, worker_attempt["span_id"])
    assert await containers(docker_host) == []
