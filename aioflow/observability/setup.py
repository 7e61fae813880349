"""Setting the OpenTelemetry SDK up for a worker process (``aioflow worker --otel``,
``--metrics-port``). Imports the SDK only when called.

* :func:`configure_tracing` — a global ``TracerProvider`` from the standard
  ``OTEL_*`` environment variables: ``OTEL_SERVICE_NAME`` and
  ``OTEL_RESOURCE_ATTRIBUTES`` (the resource), ``OTEL_TRACES_SAMPLER`` (the sampler),
  ``OTEL_TRACES_EXPORTER`` = ``otlp`` (default; ``OTEL_EXPORTER_OTLP_ENDPOINT``...,
  OTLP over HTTP), ``console`` or ``none`` (comma-separated for several). Also
  ``AIOFLOW_OTEL_SPANS_FILE=PATH``: every span as a JSON line in PATH (debugging).
* :func:`serve_prometheus` — a ``MeterProvider`` whose metrics a Prometheus scrape
  endpoint serves (``http://HOST:PORT/metrics``).
"""

from __future__ import annotations

import os
from typing import Any

from .._optional import require
from ..errors import ConfigurationError

__all__ = ["configure_tracing", "serve_prometheus"]

SPANS_FILE_ENV = "AIOFLOW_OTEL_SPANS_FILE"


def configure_tracing(service_name: str = "aioflow-worker") -> Any:
    """Install (globally) and return a ``TracerProvider`` configured from ``OTEL_*``.

    Raises:
        MissingDependencyError: the SDK (or the OTLP exporter) is not installed.
        ConfigurationError: an unknown ``OTEL_TRACES_EXPORTER``.
    """
    trace = require("opentelemetry.trace", feature="--otel")
    sdk = require("opentelemetry.sdk.trace", feature="--otel")
    export = require("opentelemetry.sdk.trace.export", feature="--otel")
    resources = require("opentelemetry.sdk.resources", feature="--otel")
    attributes = {} if os.environ.get("OTEL_SERVICE_NAME") else {"service.name": service_name}
    provider = sdk.TracerProvider(resource=resources.Resource.create(attributes))
    names = os.environ.get("OTEL_TRACES_EXPORTER", "otlp")
    for name in (n.strip().lower() for n in names.split(",")):
        if name in ("", "none"):
            continue
        if name == "console":
            provider.add_span_processor(export.SimpleSpanProcessor(export.ConsoleSpanExporter()))
        elif name == "otlp":
            otlp = require(
                "opentelemetry.exporter.otlp.proto.http.trace_exporter",
                feature="exporting spans over OTLP (OTEL_TRACES_EXPORTER=otlp)",
                extra="otel",
            )
            provider.add_span_processor(export.BatchSpanProcessor(otlp.OTLPSpanExporter()))
        else:
            raise ConfigurationError(
                f"OTEL_TRACES_EXPORTER={names!r}: unknown exporter {name!r}",
                hint="Use otlp (the default), console or none.",
            )
    path = os.environ.get(SPANS_FILE_ENV)
    if path:
        from ._jsonl import JsonLinesSpanExporter

        provider.add_span_processor(export.SimpleSpanProcessor(JsonLinesSpanExporter(path)))
    trace.set_tracer_provider(provider)
    return provider


def serve_prometheus(port: int, host: str = "0.0.0.0") -> tuple[Any, Any]:
    """Serve metrics at ``http://host:port/metrics``; return ``(meter_provider, server)``.

    The provider is installed globally too (metrics the tasks' own code records are
    served as well). Stop with ``server.shutdown()`` and ``meter_provider.shutdown()``.

    Raises:
        MissingDependencyError: the Prometheus exporter is not installed.
    """
    exporter = require(
        "opentelemetry.exporter.prometheus", feature="--metrics-port (Prometheus)", extra="otel"
    )
    client = require("prometheus_client", feature="--metrics-port (Prometheus)", extra="otel")
    metrics = require("opentelemetry.metrics", feature="--metrics-port")
    sdk = require("opentelemetry.sdk.metrics", feature="--metrics-port")
    resources = require("opentelemetry.sdk.resources", feature="--metrics-port")
    reader = exporter.PrometheusMetricReader()
    provider = sdk.MeterProvider(
        metric_readers=[reader],
        resource=resources.Resource.create({"service.name": "aioflow-worker"}),
    )
    server, _thread = client.start_http_server(port, addr=host)
    metrics.set_meter_provider(provider)
    return provider, server
