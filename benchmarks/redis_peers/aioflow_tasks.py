"""aioflow on Redis: the worker-side tasks and the producer (coordinator) of the benchmark.

Workers import this module (``python -m aioflow worker URL --import
benchmarks.redis_peers.aioflow_tasks --concurrency 32``), so the tasks resolve by
import path on them. The producer builds the workflows from the same tasks:

* throughput: one workflow of N independent no-op nodes
  (``wf.add(*[noop.bind(name=f"t{i}") for i in range(n)])``), run with
  ``await aioflow.run(wf, backend=URL)``; built before the clock starts;
* one task: a one-node workflow whose task returns ``time.time()`` at its start,
  run again and again with ``aioflow.run(wf, backend=backend)`` on one backend
  object opened once (``open_backend(URL)``, ``async with backend:``).

With ``AIOFLOW_BENCH_TRACING=on`` (``redis_throughput.py --observability``) every run
gets ``instruments=[Tracing(provider)]``: an SDK ``TracerProvider`` whose spans go
through a ``BatchSpanProcessor`` into an ``InMemorySpanExporter`` (counted at the
end: ``Producer.spans``).
"""

from __future__ import annotations

import os
import time
from types import TracebackType
from typing import Any, Self

import aioflow

from . import TRACING_ENV, mark_ready


@aioflow.task
async def noop() -> None:
    """Does nothing."""


@aioflow.task
async def started() -> float:
    """The wall-clock time at which this task started."""
    return time.time()


def fanout_workflow(n: int) -> Any:
    """N independent no-op tasks (t0 .. tN-1), no edges."""
    with aioflow.workflow(f"bench-fanout-{n}") as wf:
        wf.add(*[noop.bind(name=f"t{i}") for i in range(n)])
    return wf


def one_task_workflow() -> Any:
    with aioflow.workflow("bench-one") as wf:
        wf.add(started)
    return wf


def _check(result: Any) -> None:
    status = getattr(result, "status", None)
    if str(getattr(status, "value", status)) != "succeeded":
        raise RuntimeError(f"aioflow run ended with status {status!r}")


class Producer:
    """The coordinator side: runs the workflows on ``url``."""

    def __init__(self, url: str, poll: float) -> None:
        del poll  # completions are pushed (pub/sub): nothing is polled
        self.url = url
        # Runs on Redis are journaled there by default (resume after the coordinator
        # died); AIOFLOW_BENCH_JOURNAL=off measures them with checkpoint=False.
        off = os.environ.get("AIOFLOW_BENCH_JOURNAL", "on").lower() in ("off", "0", "no")
        self._options: dict[str, Any] = {"checkpoint": False} if off else {}
        self._backend: Any = None
        self._one: Any = None
        self._provider: Any = None
        self._exporter: Any = None
        self.spans: int | None = None  # calls the exported publish spans sent, when traced
        if os.environ.get(TRACING_ENV, "off").lower() == "on":
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor
            from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
                InMemorySpanExporter,
            )

            from aioflow.observability import Tracing

            self._exporter = InMemorySpanExporter()
            self._provider = TracerProvider()
            # A queue that holds a whole batch of publish spans: none is dropped.
            self._provider.add_span_processor(
                BatchSpanProcessor(self._exporter, max_queue_size=1 << 17)
            )
            self._options["instruments"] = [Tracing(self._provider)]

    async def __aenter__(self) -> Self:
        from aioflow.backends import open_backend

        self._backend = open_backend(self.url)
        await self._backend.__aenter__()
        self._one = one_task_workflow()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._backend.__aexit__(exc_type, exc, tb)
        if self._provider is not None:
            self._provider.force_flush()
            # Calls the publish spans stand for (one span per submitted batch).
            self.spans = sum(
                int(span.attributes.get("messaging.batch.message_count", 1))
                for span in self._exporter.get_finished_spans()
                if span.name.startswith("publish ")
            )
            self._provider.shutdown()

    async def prepare(self, n: int) -> Any:
        return fanout_workflow(n)

    async def fanout(self, wf: Any) -> int:
        result = await aioflow.run(wf, backend=self.url, **self._options)
        _check(result)
        return len(result.results)

    async def one(self) -> float:
        result = await aioflow.run(self._one, backend=self._backend, **self._options)
        _check(result)
        return float(result["started"])


mark_ready()
