"""The OpenTelemetry SDK inside a container, for traced calls.

Imported by :mod:`aioflow.container` on the first call that carries a trace context,
and only when the SDK is in the image (``aioflow containers build-image --otel``):
an untraced container never imports OpenTelemetry. :func:`install` sets up, once per
container process, a global ``TracerProvider`` (the task's own code makes its spans
with the OpenTelemetry API) whose only span processor keeps the spans that finish,
and the :class:`~aioflow.observability.Tracing` instrument of the calls' workers.
No exporter: the spans go back to the handler with the result (:mod:`._docker_spans`).
"""

from __future__ import annotations

import threading
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanLimits, SpanProcessor, TracerProvider

from ..observability.tracing import Tracing
from ._docker_spans import MAX_ATTRIBUTES, MAX_EVENTS, MAX_VALUE, span_record

__all__ = ["SpanCollector", "install"]


class SpanCollector(SpanProcessor):
    """Keeps every span that finishes, until :meth:`take` (spans may end in any thread)."""

    def __init__(self) -> None:
        self._spans: list[ReadableSpan] = []
        self._lock = threading.Lock()

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        with self._lock:
            self._spans.append(span)

    def take(self) -> list[ReadableSpan]:
        """The spans finished since the last call, and forget them."""
        with self._lock:
            spans, self._spans = self._spans, []
        return spans

    def records(self, trace_id: str) -> list[dict[str, Any]]:
        """:meth:`take`, as plain records of the trace ``trace_id`` (32 hex digits)."""
        wanted = int(trace_id, 16)
        return [
            span_record(s)
            for s in self.take()
            if s.context is not None and s.context.trace_id == wanted and s.end_time is not None
        ]


def install() -> tuple[Tracing, SpanCollector]:
    """The tracing instrument and the span collector of this process (set up globally)."""
    collector = SpanCollector()
    provider = TracerProvider(
        resource=Resource.get_empty(),  # never exported from here: the host's applies
        shutdown_on_exit=False,  # nothing to flush
        span_limits=SpanLimits(
            max_span_attributes=MAX_ATTRIBUTES,
            max_events=MAX_EVENTS,
            max_event_attributes=MAX_ATTRIBUTES,
            max_attribute_length=MAX_VALUE,
        ),
    )
    provider.add_span_processor(collector)
    trace.set_tracer_provider(provider)
    return Tracing(provider), collector
