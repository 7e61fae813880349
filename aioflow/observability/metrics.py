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
``aioflow.tasks.dead_lettered``  ``{entry}``    queue entries a Redis worker of this
                                                process dead-lettered
``aioflow.queue.depth``          ``{entry}``    entries waiting (not yet taken by a
                                                worker) per queue and priority, as a
                                                Redis worker of this process last read
                                                them (gauge)
``aioflow.task.duration``        ``s``          attempt wall time (histogram)
``aioflow.task.queue_wait``      ``s``          enqueue to start, on workers (histogram)
``aioflow.runs.started``         ``{run}``      runs that started
``aioflow.runs.finished``        ``{run}``      runs that ended (``aioflow.run.status``)
``aioflow.run.duration``         ``s``          run wall time (histogram)
===============================  =============  =====================================

Attributes: task metrics carry ``aioflow.workflow``, ``aioflow.task.name`` and, on
workers, ``aioflow.task.queue``; run metrics ``aioflow.workflow`` (and
``aioflow.run.status``); ``aioflow.tasks.dead_lettered`` carries
``aioflow.task.queue``; ``aioflow.queue.depth`` carries ``aioflow.task.queue`` and
``aioflow.task.priority`` (an int). Dead letters and queue depths come from the Redis
workers of this process, through :mod:`aioflow.observability.fleet_gauges`: each
worker reads the depths of the queues it serves on its heartbeat, only while an
active ``Metrics`` exists.

The histograms' buckets are in seconds, 0.5 ms to one hour (``SECONDS_BUCKETS``), so
``histogram_quantile`` gives useful p95s of tasks short and long.

Cost: the counters and the in-flight gauge are counted in plain Python (one
attribute increment per event) and handed to the SDK only when it collects
(observable instruments); per attempt the SDK sees one histogram measurement (two
on workers, with the queue wait), with an attributes dict made once per (workflow,
task, queue). Instruments made on one meter provider share their counts, so two
``Metrics`` on one provider add up, as synchronous counters would.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable, Iterable
from operator import attrgetter
from typing import Any

from .. import events as ev
from .._optional import require
from ..errors import TaskTimeoutError
from . import fleet_gauges
from ._hooks import ActiveHooks
from .propagation import current_call

__all__ = ["Metrics"]


class _Series:
    """The counts of one (workflow, task, queue): one attributes dict, reused."""

    __slots__ = (
        "attributes",
        "cancelled",
        "failed",
        "in_flight",
        "retried",
        "started",
        "succeeded",
        "timed_out",
    )

    def __init__(self, attributes: dict[str, Any]) -> None:
        self.attributes = attributes
        self.started = self.succeeded = self.failed = self.retried = 0
        self.timed_out = self.cancelled = self.in_flight = 0


#: Bucket boundaries of the duration histograms, in seconds: from half a millisecond
#: (an in-process task) to an hour. (The SDK's default boundaries, 0 to 10,000, are
#: made for milliseconds: every task would fall in the first bucket or two.)
SECONDS_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
)  # fmt: skip

# workflow, task name (None: not labelled), queue (None: not known)
SeriesKey = tuple[str, str | None, str | None]

# The counters of _Series, by metric: (attribute, unit, description).
_COUNTERS = {
    "aioflow.tasks.started": ("started", "{attempt}", "Attempts started"),
    "aioflow.tasks.succeeded": ("succeeded", "{attempt}", "Attempts that returned"),
    "aioflow.tasks.failed": ("failed", "{attempt}", "Attempts that failed"),
    "aioflow.tasks.retried": ("retried", "{attempt}", "Failed attempts retried"),
    "aioflow.tasks.timed_out": ("timed_out", "{attempt}", "Attempts stopped by their timeout"),
    "aioflow.tasks.cancelled": ("cancelled", "{attempt}", "Attempts cancelled"),
}


class _Meters:
    """The instruments of one meter provider and the counts they report.

    Only the event loop's hooks write the counts; the SDK's callbacks read them at
    collection, maybe from another thread (a scrape): they copy the dicts first
    (``list(d.values())``, atomic under the GIL) and read plain ints.
    """

    def __init__(self, otel: Any, provider: Any, meter: Any) -> None:
        from opentelemetry.metrics._internal import _ProxyMeterProvider

        self._otel = otel
        noop = (_ProxyMeterProvider, otel.NoOpMeterProvider)
        self._noop = noop
        # A provider of the SDK records always; the API's default (a proxy until an
        # SDK is installed globally) only once an SDK is installed.
        self._sdk = not isinstance(provider, noop)
        self._never = isinstance(provider, otel.NoOpMeterProvider)
        self.series: dict[SeriesKey, _Series] = {}
        self.runs_started: dict[str, int] = {}
        self.runs_finished: dict[tuple[str, str], int] = {}
        # The Metrics made on this provider, held weakly: fleet figures (queue depths,
        # dead letters) are wanted only while one of them exists and records.
        self.users: weakref.WeakSet[Metrics] = weakref.WeakSet()
        self.fleet = fleet_gauges.subscribe(lambda: bool(self.users) and self.active())
        self._keep: list[Any] = []  # the observable instruments (and their callbacks)
        observation = otel.Observation

        def counts_of(field: str, zeros: bool) -> Callable[[Any], Iterable[Any]]:
            get = attrgetter(field)

            def observe(options: Any) -> list[Any]:
                return [
                    observation(value, s.attributes)
                    for s in list(self.series.values())
                    if (value := get(s)) or zeros
                ]

            return observe

        for name, (field, unit, description) in _COUNTERS.items():
            self._keep.append(
                meter.create_observable_counter(
                    name, [counts_of(field, False)], unit=unit, description=description
                )
            )
        self._keep.append(
            meter.create_observable_up_down_counter(
                "aioflow.tasks.in_flight",
                [counts_of("in_flight", True)],
                unit="{attempt}",
                description="Attempts running now",
            )
        )

        def runs_started(options: Any) -> list[Any]:
            return [
                observation(n, {"aioflow.workflow": wf})
                for wf, n in list(self.runs_started.items())
            ]

        def runs_finished(options: Any) -> list[Any]:
            return [
                observation(n, {"aioflow.workflow": wf, "aioflow.run.status": status})
                for (wf, status), n in list(self.runs_finished.items())
            ]

        def dead_lettered(options: Any) -> list[Any]:
            return [
                observation(n, {"aioflow.task.queue": queue})
                for queue, n in list(self.fleet.dead_lettered.items())
            ]

        def depths(options: Any) -> list[Any]:
            return [
                observation(n, {"aioflow.task.queue": queue, "aioflow.task.priority": priority})
                for (queue, priority), n in fleet_gauges.queue_depths().items()
            ]

        self._keep += [
            meter.create_observable_counter(
                "aioflow.runs.started", [runs_started], unit="{run}", description="Runs started"
            ),
            meter.create_observable_counter(
                "aioflow.runs.finished", [runs_finished], unit="{run}", description="Runs ended"
            ),
            meter.create_observable_counter(
                "aioflow.tasks.dead_lettered",
                [dead_lettered],
                unit="{entry}",
                description="Queue entries a worker dead-lettered",
            ),
            meter.create_observable_gauge(
                "aioflow.queue.depth",
                [depths],
                unit="{entry}",
                description="Entries waiting in a queue at a priority",
            ),
        ]

        def seconds(name: str, description: str) -> Any:
            return meter.create_histogram(
                name,
                unit="s",
                description=description,
                explicit_bucket_boundaries_advisory=SECONDS_BUCKETS,
            )

        self.duration = seconds("aioflow.task.duration", "Wall time of an attempt")
        self.queue_wait = seconds("aioflow.task.queue_wait", "From enqueue to start")
        self.run_duration = seconds("aioflow.run.duration", "Wall time of a run")

    def active(self) -> bool:
        """Whether measurements are recorded now (an SDK provider is there)."""
        if self._sdk:
            return True
        return not self._never and not isinstance(self._otel.get_meter_provider(), self._noop)

    def of(self, workflow: str, task: str | None, queue: str | None) -> _Series:
        key = (workflow, task, queue)
        series = self.series.get(key)
        if series is None:
            attributes: dict[str, Any] = {"aioflow.workflow": workflow}
            if task is not None:
                attributes["aioflow.task.name"] = task
            if queue is not None:
                attributes["aioflow.task.queue"] = queue
            series = self.series[key] = _Series(attributes)
        return series


# Provider -> its instruments, so that every Metrics made on one provider reports
# through one set of observable instruments (the SDK keeps the first instrument of
# a name and would drop the callbacks of a second).
_shared: weakref.WeakKeyDictionary[Any, _Meters] = weakref.WeakKeyDictionary()


class Metrics(ActiveHooks):
    """An instrument that records OpenTelemetry metrics of runs and task attempts.

    Args:
        meter_provider: where metrics go (default: the global provider, as set by
            ``opentelemetry.metrics.set_meter_provider``; without one, nothing records).
        task_names: label task metrics with ``aioflow.task.name`` (default). False:
            by workflow (and queue) only, for fan-outs of thousands of bound nodes,
            where a series per node name would be too many.

    Raises:
        MissingDependencyError: OpenTelemetry is not installed
            (``pip install "aioflow[otel]"``).
    """

    def __init__(self, meter_provider: Any = None, *, task_names: bool = True) -> None:
        otel = require("opentelemetry.metrics", feature="metrics (Metrics)", extra="otel")
        self._task_names = task_names
        from .. import __version__

        provider = meter_provider if meter_provider is not None else otel.get_meter_provider()
        meters = _shared.get(provider)
        if meters is None:
            meters = _Meters(otel, provider, provider.get_meter("aioflow", __version__))
            _shared[provider] = meters
        meters.users.add(self)
        self._meters = meters
        self._workflows: dict[str, tuple[str, float]] = {}  # run id -> (workflow, t0)
        # (run id, task) -> (series, t0): attempts started and not ended
        self._running: dict[tuple[str, str], tuple[_Series, float]] = {}

    @property
    def active(self) -> bool:
        """Whether metrics would record now (an SDK provider is given or installed)."""
        return self._meters.active()

    def _on_run_start(self, event: ev.RunStarted) -> None:
        self._workflows[event.run_id] = (event.workflow, time.perf_counter())
        started = self._meters.runs_started
        started[event.workflow] = started.get(event.workflow, 0) + 1

    def _on_run_end(self, event: ev.RunFinished) -> None:
        known = self._workflows.pop(event.run_id, None)
        if known is None:
            return
        meters = self._meters
        key = (known[0], event.status)
        meters.runs_finished[key] = meters.runs_finished.get(key, 0) + 1
        meters.run_duration.record(time.perf_counter() - known[1], {"aioflow.workflow": known[0]})
        for running in [k for k in self._running if k[0] == event.run_id]:
            self._running.pop(running)[0].in_flight -= 1

    def _on_task_start(self, event: ev.TaskStarted) -> None:
        name = event.task_name
        assert name is not None
        label = name if self._task_names else None
        call = current_call()
        if call is not None and call.run_id == event.run_id and call.task_name == name:
            series = self._meters.of(
                call.workflow or "", label, call.options.get("queue", "default")
            )
            enqueued = call.options.get("enqueued_at")
            if type(enqueued) is float:
                self._meters.queue_wait.record(max(0.0, time.time() - enqueued), series.attributes)
        else:
            known = self._workflows.get(event.run_id)
            series = self._meters.of(known[0] if known else "", label, None)
        key = (event.run_id, name)
        old = self._running.pop(key, None)
        if old is not None:
            old[0].in_flight -= 1
        self._running[key] = (series, time.perf_counter())
        series.started += 1
        series.in_flight += 1

    def _end(self, event: Any) -> None:
        started = self._running.pop((event.run_id, event.task_name), None)
        duration: float | None
        if started is None:
            known = self._workflows.get(event.run_id)
            label = event.task_name if self._task_names else None
            series = self._meters.of(known[0] if known else "", label, None)
            duration = None
        else:
            series, t0 = started
            series.in_flight -= 1
            duration = time.perf_counter() - t0
        if isinstance(event, ev.TaskSucceeded):
            series.succeeded += 1
            duration = event.duration or duration
        elif isinstance(event, ev.TaskCancelled):
            series.cancelled += 1
        else:
            series.failed += 1
            if isinstance(event, ev.TaskRetrying):
                series.retried += 1
            if isinstance(event.error, TaskTimeoutError):
                series.timed_out += 1
        if duration is not None:
            self._meters.duration.record(duration, series.attributes)

    def __repr__(self) -> str:
        return f"<Metrics running={len(self._running)}>"
