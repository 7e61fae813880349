"""Across real processes: two ``aioflow worker --otel --metrics-port`` processes on a
real Redis. One trace spans the coordinator and both workers; the Prometheus
endpoints count what ran (and an entry dead-lettered, and the queue depths), as
``aioflow stats`` does; the workers' log lines carry their ids."""

from __future__ import annotations

import json
import os
import secrets
import socket
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from redis_server import RedisServer
from worker_processes import WorkerProcesses

import aioflow
from aioflow.observability import Metrics, Tracing

from . import flows
from .conftest import Readings, Spans

PREFIX = "obs"
SECRET = secrets.token_hex(32)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Fleet:
    url: str
    spans_file: Path
    logs: Path
    ports: list[int]
    ids: list[str]

    def worker_spans(self) -> list[dict[str, Any]]:
        if not self.spans_file.exists():
            return []
        return [json.loads(line) for line in self.spans_file.read_text().splitlines()]

    def log_lines(self) -> list[dict[str, Any]]:
        found = []
        for path in sorted(self.logs.glob("*.log")):
            for line in path.read_text(errors="replace").splitlines():
                if line.startswith("{"):
                    found.append(json.loads(line))
        return found

    def scrape(self, index: int) -> str:
        url = f"http://127.0.0.1:{self.ports[index]}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            return str(response.read().decode())


@pytest.fixture(scope="module")
def fleet(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    url = f"{redis_server.url}?prefix={PREFIX}"
    base = tmp_path_factory.mktemp("obs-fleet")
    spans_file = base / "spans.jsonl"
    env = {
        "AIOFLOW_SECRET_KEY": SECRET,
        "AIOFLOW_OTEL_SPANS_FILE": str(spans_file),
        "OTEL_TRACES_EXPORTER": "none",
        "OTEL_SERVICE_NAME": "obs-test-worker",
        "COLUMNS": "4000",  # log lines are never wrapped
    }
    ports = [_free_port(), _free_port()]
    workers = WorkerProcesses(
        url,
        imports=["observability.flows"],
        count=0,
        concurrency=2,
        env=env,
        prefix=PREFIX,
        extra=["--otel", "--log-json", "--log-level", "INFO"],
        log_dir=base,
    )
    try:
        for port in ports:
            workers.start_one("--metrics-port", str(port), "--metrics-host", "127.0.0.1")
        workers.wait_ready()
        yield Fleet(url, spans_file, base, ports, [workers.worker_id(i) for i in range(2)])
    finally:
        workers.stop()


@pytest.fixture
def coordinator(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIOFLOW_SECRET_KEY", SECRET)


def _wait_for(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.05)  # another process writes the file: nothing to wait on


@pytest.fixture(scope="module")
def traced_run(fleet: Fleet) -> Iterator[tuple[Fleet, Spans, Readings, aioflow.RunResult]]:
    """One traced run of the fan-out on the fleet (shared by the tests below)."""
    import anyio

    spans, readings = Spans(), Readings()
    os.environ["AIOFLOW_SECRET_KEY"] = SECRET
    try:
        tracer = spans.provider.get_tracer("app")

        async def main() -> aioflow.RunResult:
            with tracer.start_as_current_span("request"):
                return await aioflow.run(
                    flows.fan_out(),
                    backend=fleet.url,
                    run_id=f"obs-{secrets.token_hex(3)}",
                    instruments=[Tracing(spans.provider), Metrics(readings.provider)],
                )

        result = anyio.run(main)
        yield fleet, spans, readings, result
    finally:
        del os.environ["AIOFLOW_SECRET_KEY"]
        spans.provider.shutdown()
        readings.provider.shutdown()


def test_one_trace_across_the_coordinator_and_two_workers(
    traced_run: tuple[Fleet, Spans, Readings, aioflow.RunResult],
) -> None:
    fleet, spans, _, result = traced_run
    assert result["finish"] == "done"
    (run,) = spans.named("aioflow.run")
    (request,) = spans.named("request")
    assert run.parent.span_id == request.context.span_id
    trace_id = f"{run.context.trace_id:032x}"
    publishes = {f"{s.context.span_id:016x}": s for s in spans.named("publish default")}
    # One publish span per submission (a batch send): the 8 naps go out together.
    sent = [int(s.attributes.get("messaging.batch.message_count", 1)) for s in publishes.values()]
    assert sorted(sent) == [1, 1, 1, 8]  # source, 8 naps, finish twice
    expected = {"source", "finish", *(f"nap_{i}" for i in range(8))}

    def mine() -> list[dict[str, Any]]:
        return [
            s
            for s in fleet.worker_spans()
            if s["name"] == "aioflow.task" and s["trace_id"] == trace_id
        ]

    _wait_for(lambda: len(mine()) == 11)
    attempts = mine()
    assert {s["attributes"]["aioflow.task.name"] for s in attempts} == expected
    for s in attempts:
        assert s["kind"] == "CONSUMER"
        parent = publishes[s["parent_span_id"]]  # a child of the publish span of its batch
        if "messaging.batch.message_count" not in parent.attributes:
            assert parent.attributes["aioflow.task.name"] == s["attributes"]["aioflow.task.name"]
        assert parent.parent.span_id == run.context.span_id
        assert s["attributes"]["aioflow.workflow"] == "obs-fan"
        assert s["attributes"]["messaging.destination.name"] == "default"
        assert s["resource"]["service.name"] == "obs-test-worker"
    assert {s["attributes"]["aioflow.worker.id"] for s in attempts} == set(fleet.ids)
    failed = [s for s in attempts if s["status"] == "ERROR"]
    assert [
        (s["attributes"]["aioflow.task.name"], s["attributes"]["aioflow.task.attempt"])
        for s in failed
    ] == [("finish", 1)]
    assert failed[0]["attributes"]["aioflow.task.outcome"] == "failed"
    assert failed[0]["events"][0]["attributes"]["exception.type"] == "ConnectionError"


def test_worker_log_lines_carry_their_ids(
    traced_run: tuple[Fleet, Spans, Readings, aioflow.RunResult],
) -> None:
    fleet, spans, _, result = traced_run
    (run,) = spans.named("aioflow.run")
    trace_id = f"{run.context.trace_id:032x}"
    lines = fleet.log_lines()
    worked = next(
        line
        for line in lines
        if line["event"] == "finish worked" and line["run_id"] == result.run_id
    )
    assert worked["task_name"] == "finish" and worked["attempt"] == 2
    assert worked["worker_id"] in fleet.ids
    assert worked["trace_id"] == trace_id
    span = next(
        s
        for s in fleet.worker_spans()
        if s["attributes"].get("aioflow.task.name") == "finish"
        and s["attributes"]["aioflow.task.attempt"] == 2
        and s["trace_id"] == trace_id
    )
    assert worked["span_id"] == span["span_id"]
    failed = next(
        line
        for line in lines
        if line["event"] == "task attempt failed" and line["run_id"] == result.run_id
    )
    assert (
        failed["level"] == "warning" and failed["task_name"] == "finish" and failed["attempt"] == 1
    )
    assert failed["worker_id"] in fleet.ids and "ConnectionError: blip" in failed["error"]
    assert "Traceback" in failed["exception"]


def _sample(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        head, _, value = line.rpartition(" ")
        if all(f'{k}="{v}"' in head for k, v in labels.items()):
            total += float(value)
    return total


@pytest.fixture(scope="module")
def dead_letter(traced_run: tuple[Fleet, Spans, Readings, aioflow.RunResult]) -> Fleet:
    """After the traced run: one entry that does not verify, dead-lettered by a worker."""
    import redis

    fleet = traced_run[0]
    client = redis.Redis.from_url(fleet.url.partition("?")[0])
    try:
        # Counted and added at once (MULTI), as the coordinator's script does: a worker
        # may take and dead-letter it before a separate INCR (the count then stays 1).
        pipe = client.pipeline(transaction=True)
        pipe.incr(f"{PREFIX}:queue:{{default}}:len")
        pipe.xadd(
            f"{PREFIX}:queue:{{default}}:p0",
            {"r": "obs-forged", "c": "obs-forged-1", "d": b"\x00not a payload"},
        )
        pipe.execute()
    finally:
        client.close()

    def counted() -> bool:
        texts = [fleet.scrape(i) for i in range(2)]
        return sum(_sample(t, "aioflow_tasks_dead_lettered_total") for t in texts) >= 1

    _wait_for(counted)
    return fleet


def test_the_prometheus_endpoints_count_what_ran(
    traced_run: tuple[Fleet, Spans, Readings, aioflow.RunResult], dead_letter: Fleet
) -> None:
    fleet, _, readings, _ = traced_run
    texts = [fleet.scrape(i) for i in range(2)]
    started = sum(
        _sample(t, "aioflow_tasks_started_total", aioflow_workflow="obs-fan") for t in texts
    )
    succeeded = sum(
        _sample(t, "aioflow_tasks_succeeded_total", aioflow_workflow="obs-fan") for t in texts
    )
    failed = sum(
        _sample(t, "aioflow_tasks_failed_total", aioflow_task_name="finish") for t in texts
    )
    assert (started, succeeded, failed) == (11, 10, 1)
    assert (
        sum(
            _sample(t, "aioflow_task_duration_seconds_count", aioflow_workflow="obs-fan")
            for t in texts
        )
        == 11
    )
    assert (
        sum(
            _sample(t, "aioflow_task_queue_wait_seconds_count", aioflow_task_queue="default")
            for t in texts
        )
        >= 11
    )
    assert sum(_sample(t, "aioflow_tasks_in_flight") for t in texts) == 0
    dead = [
        _sample(t, "aioflow_tasks_dead_lettered_total", aioflow_task_queue="default") for t in texts
    ]
    assert sorted(dead) == [0, 1]  # the worker that took the forged entry counted it
    for text in texts:  # each worker reads the depths of the streams it serves
        assert 'aioflow_queue_depth{aioflow_task_priority="0",aioflow_task_queue="default"' in (
            text
        )
        assert _sample(text, "aioflow_queue_depth", aioflow_task_queue="default") == 0
    # The coordinator's own view, through the SDK's in-memory reader.
    assert readings.total("aioflow.tasks.succeeded", **{"aioflow.workflow": "obs-fan"}) == 10
    assert readings.total("aioflow.tasks.retried", **{"aioflow.task.name": "finish"}) == 1
    assert readings.total("aioflow.runs.finished", **{"aioflow.run.status": "succeeded"}) == 1


def test_stats_agree_with_what_ran(
    traced_run: tuple[Fleet, Spans, Readings, aioflow.RunResult],
    dead_letter: Fleet,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from aioflow.cli import main

    fleet = traced_run[0]
    assert main(["stats", "--backend", fleet.url, "--window", "300", "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    # Outcomes stored: 10 successes, the failed attempt of finish, and the failure
    # of the dead-lettered entry (its run is told; Prometheus counts it apart).
    assert (stats["succeeded"], stats["failed"], stats["cancelled"]) == (10, 2, 0)
    assert stats["failure_rate"] == pytest.approx(2 / 12)
    assert stats["throughput"] > 0
    assert (stats["workers"], stats["in_flight"], stats["capacity"]) == (2, 0, 4)
    (default,) = [q for q in stats["queues"] if q["name"] == "default"]
    assert (default["depth"], default["succeeded"], default["failed"]) == (0, 10, 2)
    texts = [fleet.scrape(i) for i in range(2)]
    assert (
        stats["dead_letters"]
        == 1
        == sum(_sample(t, "aioflow_tasks_dead_lettered_total") for t in texts)
    )
    assert stats["in_flight"] == sum(_sample(t, "aioflow_tasks_in_flight") for t in texts)
    attempts = sum(_sample(t, "aioflow_tasks_failed_total") for t in texts)
    assert stats["failed"] == attempts + stats["dead_letters"]
    # And the table, for people.
    assert main(["stats", "--backend", fleet.url, "--window", "300"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "10 succeeded, 2 failed" in out and "2 workers" in out and "│ default │ 0" in out
