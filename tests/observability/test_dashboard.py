"""``docs/grafana/aioflow.json``: a Grafana dashboard whose every PromQL metric and
label is one the Prometheus exporter writes for aioflow (so renaming a metric or an
attribute breaks this test, not the dashboard in silence).

The names are taken from a real exposition: a Redis worker and a coordinator in this
process, both with ``Metrics`` on one ``MeterProvider`` whose reader is the
OpenTelemetry ``PrometheusMetricReader`` (what ``aioflow worker --metrics-port``
serves), after a run, a retry, a timeout and a dead-lettered entry."""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from redis_server import RedisServer

import aioflow
from aioflow.observability import Metrics

from . import flows
from .inprocess_worker import backend_url, plant_garbage, serving, until

DASHBOARD = Path(__file__).resolve().parents[2] / "docs" / "grafana" / "aioflow.json"
PANELS = {
    "Throughput",
    "Failure rate",
    "p95 attempt duration",
    "p95 queue wait",
    "In flight",
    "Queue depth",
    "Dead-lettered",
    "Runs finished by status",
}


def load() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def expressions(dashboard: dict[str, Any]) -> list[str]:
    found = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    found += [v["query"]["query"] for v in dashboard["templating"]["list"]]
    return found


def names_in(expr: str) -> tuple[set[str], set[str]]:
    """(metric names, label names) of aioflow's that a PromQL expression uses."""
    labels: set[str] = set()
    for selector in re.findall(r"\{([^}]*)\}", expr):
        labels.update(re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", selector))
    for grouping in re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", expr):
        labels.update(n.strip() for n in grouping.split(","))
    labels.update(re.findall(r"label_values\(\s*\w+\s*,\s*(\w+)\s*\)", expr))
    bare = re.sub(r"\{[^}]*\}", "", expr)
    bare = re.sub(r"\b(?:by|without)\s*\([^)]*\)", "", bare)
    bare = re.sub(r"label_values\(\s*(\w+)\s*,\s*\w+\s*\)", r"\1", bare)
    bare = re.sub(r"\{\{[^}]*\}\}", "", bare)
    metrics = set(re.findall(r"\b(aioflow_\w+)", bare))
    return metrics, {n for n in labels if n.startswith("aioflow_")}


def test_the_dashboard_is_an_importable_grafana_dashboard() -> None:
    dashboard = load()
    assert isinstance(dashboard["schemaVersion"], int) and dashboard["schemaVersion"] >= 36
    assert dashboard["uid"] and dashboard["title"]
    (source,) = dashboard["__inputs"]
    assert (source["name"], source["type"], source["pluginId"]) == (
        "DS_PROMETHEUS",
        "datasource",
        "prometheus",
    )
    assert {p["title"] for p in dashboard["panels"]} >= PANELS
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${DS_PROMETHEUS}"
            assert target["expr"].count("(") == target["expr"].count(")"), target["expr"]
            assert names_in(target["expr"])[0], target["expr"]  # reads some aioflow metric
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    for expr in expressions(dashboard):
        assert set(re.findall(r"\$(\w+)", expr)) <= variables | {"__rate_interval"}, expr


def test_names_are_read_the_right_way() -> None:
    metrics, labels = names_in(
        "histogram_quantile(0.95, sum by (le, aioflow_task_name) "
        '(rate(aioflow_x_bucket{aioflow_workflow=~"$w", other="1"}[5m])))'
    )
    assert (metrics, labels) == ({"aioflow_x_bucket"}, {"aioflow_task_name", "aioflow_workflow"})


@pytest.fixture
def exposition(redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """What the Prometheus exporter writes for a worker and a coordinator."""
    import anyio
    import prometheus_client
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from opentelemetry.sdk.metrics import MeterProvider

    monkeypatch.setenv("AIOFLOW_SECRET_KEY", secrets.token_hex(32))
    url = backend_url(redis_server.url)
    provider = MeterProvider(metric_readers=[PrometheusMetricReader()])

    def text() -> str:
        return str(prometheus_client.generate_latest().decode())

    with aioflow.workflow("obs-cancel") as cancelling:  # nap is cancelled when broken fails
        flows.source >> (flows.broken | flows.nap)
    needed = ("aioflow_tasks_dead_lettered_total{", "aioflow_tasks_cancelled_total{")

    async def main() -> str:
        async with serving(url, [Metrics(provider)], ["default"], concurrency=4):
            metrics = Metrics(provider)  # the coordinator's
            await aioflow.run(flows.good(), backend=url, instruments=[metrics])
            for failing in (flows.timing_out(), cancelling):
                with pytest.raises(aioflow.WorkflowFailedError):
                    await aioflow.run(failing, backend=url, instruments=[metrics])
            await plant_garbage(url, "default", 1)
            await until(lambda: all(n in text() for n in needed))
            return text()

    try:
        yield anyio.run(main)
    finally:
        provider.shutdown()


def test_every_name_the_dashboard_uses_is_exported(exposition: str) -> None:
    samples = set()
    labels = set()
    for line in exposition.splitlines():
        if line.startswith("aioflow_"):
            head = line.rpartition(" ")[0]
            name, _, rest = head.partition("{")
            samples.add(name)
            labels.update(re.findall(r'(\w+)="', rest))
    used_metrics: set[str] = set()
    used_labels: set[str] = set()
    for expr in expressions(load()):
        metrics, names = names_in(expr)
        used_metrics |= metrics
        used_labels |= names
    assert not used_metrics - samples, f"not exported: {sorted(used_metrics - samples)}"
    assert not used_labels - labels, f"not exported: {sorted(used_labels - labels)}"
    # Every panel's subject is there: nothing the dashboard needs is missing.
    assert {
        "aioflow_tasks_succeeded_total",
        "aioflow_tasks_failed_total",
        "aioflow_task_duration_seconds_bucket",
        "aioflow_task_queue_wait_seconds_bucket",
        "aioflow_tasks_in_flight",
        "aioflow_queue_depth",
        "aioflow_tasks_dead_lettered_total",
        "aioflow_runs_finished_total",
    } <= used_metrics
