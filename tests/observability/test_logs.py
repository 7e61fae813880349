"""Log lines carry the run's ids, and with tracing on the ids of the current span."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import pytest
from log_capture import json_lines, json_log_capture

import aioflow
from aioflow.observability import Tracing

from . import flows
from .conftest import Spans


@pytest.fixture
def json_logs() -> Iterator[io.StringIO]:
    with json_log_capture("INFO") as stream:
        yield stream


def _lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return json_lines(stream)


async def test_task_lines_carry_the_ids_of_their_attempt_span(
    json_logs: io.StringIO, spans: Spans
) -> None:
    await aioflow.run(flows.good(), run_id="logs-1", instruments=[Tracing(spans.provider)])
    lines = _lines(json_logs)
    attempts = {
        (s.attributes["aioflow.task.name"], s.attributes["aioflow.task.attempt"]): s
        for s in spans.named("aioflow.task")
    }
    (run,) = spans.named("aioflow.run")
    worked = next(line for line in lines if line["event"] == "flaky worked")
    assert (worked["run_id"], worked["task_name"], worked["attempt"]) == ("logs-1", "flaky", 2)
    assert worked["trace_id"] == f"{run.context.trace_id:032x}"
    assert worked["span_id"] == f"{attempts['flaky', 2].context.span_id:016x}"
    source = next(line for line in lines if line["event"] == "source working")
    assert source["span_id"] == f"{attempts['source', 1].context.span_id:016x}"
    finished = next(line for line in lines if line["event"] == "run finished")
    assert finished["span_id"] == f"{run.context.span_id:016x}"
    retry = next(line for line in lines if "retrying" in line["event"])
    assert retry["task_name"] == "flaky" and retry["trace_id"] == worked["trace_id"]


async def test_without_tracing_no_trace_ids(json_logs: io.StringIO) -> None:
    await aioflow.run(flows.good(), run_id="logs-2")
    worked = next(line for line in _lines(json_logs) if line["event"] == "flaky worked")
    assert worked["run_id"] == "logs-2" and "trace_id" not in worked


async def test_serialized_attempts_log_on_the_worker_side_with_its_id(
    json_logs: io.StringIO,
) -> None:
    await aioflow.run(flows.good(), run_id="logs-3", backend="memory://?serialize=true")
    lines = _lines(json_logs)
    worked = next(line for line in lines if line["event"] == "flaky worked")
    assert worked["worker_id"] == "in-process" and worked["attempt"] == 2
    failed = next(line for line in lines if line["event"] == "task attempt failed")
    assert failed["level"] == "warning"
    assert (failed["run_id"], failed["task_name"], failed["attempt"]) == ("logs-3", "flaky", 1)
    assert failed["error"] == "ConnectionError: blip" and "Traceback" in failed["exception"]
