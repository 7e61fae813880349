"""OpenTelemetry metrics of runs and task attempts, as an instrument.

``run(wf, instruments=[Metrics()])`` counts the tasks of the runs of this process;
``Worker(instruments=[Metrics()])`` (``aioflow worker ... --metrics-port 9464``)
counts the attempts a worker executes. Names follow the OpenTelemetry conventions
(dotted, unit in ``unit``); the Prometheus exporter writes them with underscores,
``_total`` on counters and ``_seconds`` on durations:

===============================  =============  =====================================
metric                           unit           what
===============================  =============  =====================================
``aioflow.tasks.started``        ``{attempt}``  attempts that started
``aioflow.tasks.succeeded``      ``{attempt}``  attempts that returned
``aioflow.tasks.failed``         ``{attempt}``  attempts that failed (timeouts included,
                                                retried ones too)
``aioflow.tasks.retried``        ``{attempt}``  failed attempts the run retries
                                                (where the run is: the coordinator)
``aioflow.tasks.timed_out``      ``{attempt}``  attempts stopped by their timeout
``aioflow.tasks.cancelled``      ``{attempt}``  attempts cancelled
``aioflow.tasks.in_flight``      ``{attempt}``  attempts running now (up-down counter)
``aioflow.task.duration``        ``s``          attempt wall time (histogram)
``aioflow.task.queue_wait``      ``s``          enqueue to start, on workers (histogram)
``aioflow.runs.started``         ``{run}``      runs that started
``aioflow.runs.finished``        ``{run}``      runs that ended (``aioflow.run.status``)
``aioflow.run.duration``         ``s``          run wall time (histogram)
===============================  =============  =====================================

Attributes: ``aioflow.workflow``, ``aioflow.task.name`` and, on workers,
``aioflow.task.queue``; run metrics carry ``aioflow.workflow``. Dead-lettered
entries and queue depths are counted in Redis (``aioflow stats``).
"""

from __future__ import annotations

import time
from typing import Any

from .. import events as ev
from .._optional import require
from ..errors import TaskTimeoutError
from .propagation import current_call


def _hook(name: str) -> Any:
    """A hook that exists only while the instrument is active (an SDK is there)."""
    return property(lambda self: getattr(self, name) if self.active else None)


__all__ = ["Metrics"]


class Metrics:
    """An instrument that records OpenTelemetry metrics of runs and task attempts.

    Args:
        meter_provider: where metrics go (default: the global provider, as set by
            ``opentelemetry.metrics.set_meter_provider``; without one, nothing records).

    Raises:
        MissingDependencyError: OpenTelemetry is not installed
            (``pip install "aioflow[otel]"``).
    """

    def __init__(self, meter_provider: Any = None) -> None:
        metrics = require("opentelemetry.metrics", feature="metrics (Metrics)", extra="otel")
        from .. import __version__

        provider = meter_provider if meter_provider is not None else metrics.get_meter_provider()
        meter = provider.get_meter("aioflow", __version__)
        self._metrics = metrics
        # The global provider before an SDK is installed: nothing would record.
        self._global = meter_provider is None or isinstance(provider, metrics.NoOpMeterProvider)
        from opentelemetry.metrics._internal import _ProxyMeterProvider

        self._noop_types = (_ProxyMeterProvider, metrics.NoOpMeterProvider)

        def counter(name: str, unit: str, description: str) -> Any:
            return meter.create_counter(name, unit=unit, description=description)

        self._started = counter("aioflow.tasks.started", "{attempt}", "Attempts started")
        self._succeeded = counter("aioflow.tasks.succeeded", "{attempt}", "Attempts that returned")
        self._failed = counter("aioflow.tasks.failed", "{attempt}", "Attempts that failed")
        self._retried = counter("aioflow.tasks.retried", "{attempt}", "Failed attempts retried")
        self._timed_out = counter(
            "aioflow.tasks.timed_out", "{attempt}", "Attempts stopped by their timeout"
        )
        self._cancelled = counter("aioflow.tasks.cancelled", "{attempt}", "Attempts cancelled")
        self._in_flight = meter.create_up_down_counter(
            "aioflow.tasks.in_flight", unit="{attempt}", description="Attempts running now"
        )
        self._duration = meter.create_histogram(
            "aioflow.task.duration", unit="s", description="Wall time of an attempt"
        )
        self._queue_wait = meter.create_histogram(
            "aioflow.task.queue_wait", unit="s", description="From enqueue to start"
        )
        self._runs_started = counter("aioflow.runs.started", "{run}", "Runs started")
        self._runs_finished = counter("aioflow.runs.finished", "{run}", "Runs ended")
        self._run_duration = meter.create_histogram(
            "aioflow.run.duration", unit="s", description="Wall time of a run"
        )
        self._workflows: dict[str, tuple[str, float]] = {}  # run id -> (workflow, t0)
        # (run id, task) -> (attributes, t0): attempts started and not ended
        self._running: dict[tuple[str, str], tuple[dict[str, Any], float]] = {}

    @property
    def active(self) -> bool:
        """Whether metrics would record now (an SDK provider is given or installed)."""
        return not self._global or not isinstance(
            self._metrics.get_meter_provider(), self._noop_types
        )

    def _on_run_start(self, event: ev.RunStarted) -> None:
        self._workflows[event.run_id] = (event.workflow, time.perf_counter())
        self._runs_started.add(1, {"aioflow.workflow": event.workflow})

    def _on_run_end(self, event: ev.RunFinished) -> None:
        known = self._workflows.pop(event.run_id, None)
        if known is None:
            return
        attributes = {"aioflow.workflow": known[0], "aioflow.run.status": event.status}
        self._runs_finished.add(1, attributes)
        self._run_duration.record(time.perf_counter() - known[1], {"aioflow.workflow": known[0]})
        for key in [k for k in self._running if k[0] == event.run_id]:
            self._in_flight.add(-1, self._running.pop(key)[0])

    def _on_task_start(self, event: ev.TaskStarted) -> None:
        assert event.task_name is not None
        attributes: dict[str, Any] = {"aioflow.task.name": event.task_name}
        call = current_call()
        if call is not None and call.run_id == event.run_id and call.task_name == event.task_name:
            attributes["aioflow.workflow"] = call.workflow or ""
            attributes["aioflow.task.queue"] = call.options.get("queue", "default")
            enqueued = call.options.get("enqueued_at")
            if type(enqueued) is float:
                self._queue_wait.record(max(0.0, time.time() - enqueued), attributes)
        else:
            known = self._workflows.get(event.run_id)
            attributes["aioflow.workflow"] = known[0] if known else ""
        key = (event.run_id, event.task_name)
        old = self._running.pop(key, None)
        if old is not None:
            self._in_flight.add(-1, old[0])
        self._running[key] = (attributes, time.perf_counter())
        self._started.add(1, attributes)
        self._in_flight.add(1, attributes)

    def _on_task_end(self, event: ev.Event) -> None:
        self._end(event)

    def _on_task_retry(self, event: ev.TaskRetrying) -> None:
        self._end(event)

    def _end(self, event: Any) -> None:
        started = self._running.pop((event.run_id, event.task_name), None)
        if started is None:
            known = self._workflows.get(event.run_id)
            attributes = {
                "aioflow.task.name": event.task_name,
                "aioflow.workflow": known[0] if known else "",
            }
            duration = None
        else:
            attributes, t0 = started
            self._in_flight.add(-1, attributes)
            duration = time.perf_counter() - t0
        if isinstance(event, ev.TaskSucceeded):
            self._succeeded.add(1, attributes)
            duration = event.duration or duration
        elif isinstance(event, ev.TaskCancelled):
            self._cancelled.add(1, attributes)
        else:
            self._failed.add(1, attributes)
            if isinstance(event, ev.TaskRetrying):
                self._retried.add(1, attributes)
            if isinstance(event.error, TaskTimeoutError):
                self._timed_out.add(1, attributes)
        if duration is not None:
            self._duration.record(duration, attributes)

    # Hooks, looked up once per run by aioflow.instruments: with no SDK then, this
    # instrument has none, so the run makes no event for it (near-zero cost).
    on_run_start = _hook("_on_run_start")
    on_run_end = _hook("_on_run_end")
    on_task_start = _hook("_on_task_start")
    on_task_end = _hook("_on_task_end")
    on_task_retry = _hook("_on_task_retry")

    def __repr__(self) -> str:
        return f"<Metrics running={len(self._running)}>"
