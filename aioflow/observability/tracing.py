"""OpenTelemetry spans for runs and task attempts, as an instrument.

``run(wf, instruments=[Tracing()])`` on the coordinator and
``Worker(instruments=[Tracing()])`` (``aioflow worker ... --otel``) on workers. The
spans, and who makes them:

=====================  ==========  =================================================
span                   kind        made
=====================  ==========  =================================================
``aioflow.run``        INTERNAL    by the coordinator, for the whole run; a child of
                                   the span current when the run starts (a web
                                   request's, say)
``publish {queue}``    PRODUCER    by the coordinator, for the calls that cross a
                                   process (Redis, ``memory://?serialize=true``):
                                   one per queue for the calls sent together (a
                                   batch send: ``messaging.batch.message_count``),
                                   while they are encoded and handed over
``aioflow.task``       INTERNAL    by the process where the attempt runs: in-process
                       / CONSUMER  (INTERNAL), or on a worker (CONSUMER: a child of
                                   the ``publish`` span, whose context travelled in
                                   ``TaskCall.trace``)
=====================  ==========  =================================================

While an attempt runs, its ``aioflow.task`` span is the current span, so spans the
task's own code makes are its children, and aioflow log lines carry its
``trace_id`` and ``span_id``. An attempt a ``DockerHandler`` runs in a container is
traced there too: the call carries the attempt span's context, and the spans made
inside (the container's ``aioflow.task``, and the task code's) come back with the
result and are re-created here as its children, by the instrument that traces the
attempt (:func:`~aioflow.observability.propagation.set_attempt_span_relay`).

OpenTelemetry is imported only when a ``Tracing`` is made (``pip install
"aioflow[otel]"``); with no SDK configured (the API's no-op provider) a run's spans
do not record, and the instrument stops at the run span.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from .. import events as ev
from .._optional import require
from ..context import _current
from ..errors import TaskTimeoutError
from ._hooks import ActiveHooks
from .logging import set_trace_ids_source
from .propagation import (
    current_call,
    register_injector,
    register_span_relay,
    set_attempt_span_relay,
    unregister_injector,
)

__all__ = ["Tracing", "outcome_of"]

_TRACER = "aioflow"


def outcome_of(event: ev.Event) -> str:
    """``succeeded``, ``failed``, ``timed_out``, ``cancelled`` or ``retried``."""
    if isinstance(event, ev.TaskSucceeded):
        return "succeeded"
    if isinstance(event, ev.TaskCancelled):
        return "cancelled"
    if isinstance(event, ev.TaskRetrying):
        return "retried"
    if isinstance(event, ev.TaskFailed) and isinstance(event.error, TaskTimeoutError):
        return "timed_out"
    return "failed"


def _here(event: ev.TaskStarted) -> bool:
    """Whether this code runs in the executing context of ``event``'s attempt."""
    ctx = _current.get()
    return (
        ctx is not None
        and ctx.task_name == event.task_name
        and ctx.run_id == event.run_id
        and ctx.attempt == event.attempt
    )


class Tracing(ActiveHooks):
    """An instrument that makes OpenTelemetry spans of runs and task attempts.

    Args:
        tracer_provider: where spans go (default: the global provider, as set by
            ``opentelemetry.trace.set_tracer_provider``; without one, nothing records).

    Raises:
        MissingDependencyError: OpenTelemetry is not installed
            (``pip install "aioflow[otel]"``).
    """

    #: An attempt on a worker is traced by that worker: its start need not be
    #: announced to the coordinator (see :mod:`aioflow.instruments`).
    remote_starts = False

    def __init__(self, tracer_provider: Any = None) -> None:
        trace = require("opentelemetry.trace", feature="tracing (Tracing)", extra="otel")
        self._otel_context = require("opentelemetry.context", feature="tracing", extra="otel")
        self._propagate = require("opentelemetry.propagate", feature="tracing", extra="otel")
        self._trace = trace
        from .. import __version__

        provider = tracer_provider if tracer_provider is not None else trace.get_tracer_provider()
        self._tracer = provider.get_tracer(_TRACER, __version__)
        # The global provider before an SDK is installed: spans would not record.
        self._global = tracer_provider is None
        self._noop_types = (trace.ProxyTracerProvider, trace.NoOpTracerProvider)
        if isinstance(provider, trace.NoOpTracerProvider):
            self._global = True
        self._kind = trace.SpanKind
        self._error = trace.Status(trace.StatusCode.ERROR)
        self._runs: dict[str, tuple[Any, Any, str]] = {}  # run id -> (span, token, workflow)
        self._tasks: dict[tuple[str, str], Any] = {}  # (run id, task) -> attempt span
        # run id -> tasks whose calls were sent to other processes (they trace them)
        self._remote: dict[str, set[str]] = {}
        self._last_carrier: tuple[dict[str, str], Any] | None = None  # see _extract
        self._unsampled: set[str] = set()  # runs the sampler left out
        set_trace_ids_source(self._current_ids)
        self._relay_hooks = (self._carrier, self._relay)
        register_span_relay(*self._relay_hooks)

    # --- near-zero cost without an SDK ---------------------------------------------------

    @property
    def active(self) -> bool:
        """Whether spans would record now (an SDK provider is given or installed)."""
        return not self._global or not isinstance(
            self._trace.get_tracer_provider(), self._noop_types
        )

    # --- logs --------------------------------------------------------------------------

    def _current_ids(self) -> tuple[str, str] | None:
        sc = self._trace.get_current_span().get_span_context()
        if not sc.is_valid:
            return None
        return f"{sc.trace_id:032x}", f"{sc.span_id:016x}"

    # --- runs --------------------------------------------------------------------------

    def _on_run_start(self, event: ev.RunStarted) -> None:
        span = self._tracer.start_span(
            "aioflow.run",
            kind=self._kind.INTERNAL,
            attributes={
                "aioflow.run.id": event.run_id,
                "aioflow.workflow": event.workflow,
                "aioflow.run.tasks": event.total_tasks,
            },
        )
        if not span.is_recording():  # no SDK, or not sampled: this run is not traced
            if span.get_span_context().is_valid:
                # Sampled out: its calls say so (W3C flags 00), so a worker's
                # parent-based sampler does not trace them either.
                carrier: dict[str, str] = {}
                self._propagate.inject(carrier, context=self._trace.set_span_in_context(span))
                self._unsampled.add(event.run_id)
                register_injector(event.run_id, _Unsampled(carrier))
            return
        # Current in the scheduler's context for the run (logs, spans of the backend);
        # detached by on_run_end, which the scheduler calls from the same coroutine.
        token = self._otel_context.attach(self._trace.set_span_in_context(span))
        self._runs[event.run_id] = (span, token, event.workflow)
        self._remote[event.run_id] = set()
        register_injector(event.run_id, _Publisher(self, event.run_id, span, event.workflow))

    def _on_run_end(self, event: ev.RunFinished) -> None:
        entry = self._runs.pop(event.run_id, None)
        if entry is None:
            if event.run_id in self._unsampled:
                self._unsampled.discard(event.run_id)
                unregister_injector(event.run_id)
            return
        span, token, _ = entry
        unregister_injector(event.run_id)
        self._remote.pop(event.run_id, None)
        spans = self._tasks  # left open by a run that ended early
        for key in [k for k in spans if k[0] == event.run_id]:
            spans.pop(key).end()
        span.set_attribute("aioflow.run.status", event.status)
        if event.error is not None and event.status == "failed":
            cause = event.error.__cause__ or event.error
            span.record_exception(cause)
            span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, str(event.error)))
        span.end()
        self._otel_context.detach(token)

    def _extract(self, carrier: Mapping[str, str]) -> Any:
        """The context of ``carrier``; the last one is kept, since the calls of one batch
        carry the same (parsing a ``traceparent`` costs more than comparing it)."""
        last = self._last_carrier
        if last is not None and last[0] == carrier:
            return last[1]
        context = self._propagate.extract(carrier)
        self._last_carrier = (dict(carrier), context)
        return context

    # --- task attempts -----------------------------------------------------------------

    def _on_task_start(self, event: ev.TaskStarted) -> None:
        assert event.task_name is not None
        key = (event.run_id, event.task_name)
        call = current_call()
        attributes: dict[str, Any] = {
            "aioflow.run.id": event.run_id,
            "aioflow.task.name": event.task_name,
            "aioflow.task.attempt": event.attempt,
            "aioflow.task.iteration": event.iteration,
        }
        here = _here(event)
        ctx = _current.get() if here else None
        if call is not None and here and call.run_id == event.run_id:
            # A worker (or the serializing backend): the call says where it came from.
            parent = self._extract(call.trace)
            if call.workflow:
                attributes["aioflow.workflow"] = call.workflow
            options = call.options
            queue = options.get("queue", "default")
            attributes.update(
                {
                    "aioflow.task.queue": queue,
                    "aioflow.task.priority": options.get("priority", 0),
                    "aioflow.task.handler": options.get("handler", "inline"),
                    "messaging.system": "aioflow",
                    "messaging.operation.type": "process",
                    "messaging.operation.name": "process",
                    "messaging.destination.name": queue,
                    "messaging.message.id": call.call_id,
                }
            )
            kind = self._kind.CONSUMER
        else:
            run = self._runs.get(event.run_id)
            if run is None:  # not a traced run
                return
            if not here and event.task_name in self._remote[event.run_id]:
                return  # sent to a worker: that worker's span is the attempt's
            parent = self._trace.set_span_in_context(run[0])
            attributes["aioflow.workflow"] = run[2]
            kind = self._kind.INTERNAL
            if ctx is not None and ctx._options is not None:  # the engine's: how it runs
                attributes["aioflow.task.queue"] = ctx._options.queue
                attributes["aioflow.task.priority"] = ctx._options.priority
                attributes["aioflow.task.handler"] = ctx._options.handler
        if ctx is not None and ctx.worker_id is not None:
            attributes["aioflow.worker.id"] = ctx.worker_id
        span = self._tracer.start_span(
            "aioflow.task", context=parent, kind=kind, attributes=attributes
        )
        if not span.is_recording():
            return
        old = self._tasks.pop(key, None)
        if old is not None:
            old.end()
        self._tasks[key] = span
        if here:
            # Current for the attempt's code (its context only; the next attempt in
            # this context replaces it).
            self._otel_context.attach(self._trace.set_span_in_context(span))
            set_attempt_span_relay(self._relay_hooks)

    def _end(self, event: Any) -> None:
        key = (event.run_id, event.task_name)
        outcome = outcome_of(event)
        error: BaseException | None = getattr(event, "error", None)
        remote = self._remote.get(event.run_id)
        if remote:
            remote.discard(event.task_name)
        span = self._tasks.pop(key, None)
        if span is None:
            return
        span.set_attribute("aioflow.task.outcome", outcome)
        if error is not None:
            span.record_exception(error)
            span.set_status(
                self._trace.Status(self._trace.StatusCode.ERROR, f"{type(error).__name__}")
            )
        elif outcome == "cancelled":
            span.set_attribute("aioflow.task.cancel_reason", getattr(event, "reason", ""))
        span.end()

    # --- spans of another process (an attempt in a container) --------------------------

    def _carrier(self) -> dict[str, str]:
        """The carrier of the current span (the attempt's, in a handler); empty: none."""
        if not self._trace.get_current_span().get_span_context().is_valid:
            return {}
        carrier: dict[str, str] = {}
        self._propagate.inject(carrier)
        return carrier

    def _relay(
        self,
        records: Sequence[Mapping[str, Any]],
        carrier: Mapping[str, str],
        root_attributes: Mapping[str, Any],
    ) -> int:
        """Re-create spans finished elsewhere (validated records) under ``carrier``'s span.

        They get new span ids here: parents are made before their children, whose
        parent is mapped to the new id; a record whose parent is not among them goes
        under the carrier's span, with ``root_attributes``.
        """
        trace = self._trace
        above = trace.get_current_span(self._propagate.extract(carrier)).get_span_context()
        if not above.is_valid:
            return 0
        made: dict[str, Any] = {}  # a record's span id -> the context of its new span
        for record in _parents_first(records):
            parent = made.get(record["parent_span_id"])
            attributes = dict(record["attributes"])
            if parent is None:
                parent = above
                attributes.update(root_attributes)
            span = self._tracer.start_span(
                record["name"],
                context=trace.set_span_in_context(trace.NonRecordingSpan(parent)),
                kind=self._kind[record["kind"]],
                attributes=attributes,
                start_time=record["start"],
            )
            for event in record["events"]:
                span.add_event(event["name"], event["attributes"], timestamp=event["time"])
            if record["status"] == "ERROR":
                span.set_status(
                    trace.Status(trace.StatusCode.ERROR, record.get("status_description"))
                )
            elif record["status"] == "OK":
                span.set_status(trace.Status(trace.StatusCode.OK))
            span.end(end_time=record["end"])
            new = span.get_span_context()
            made[record["span_id"]] = trace.SpanContext(
                new.trace_id,
                new.span_id,
                is_remote=False,
                trace_flags=new.trace_flags,
                trace_state=new.trace_state,
            )
        return len(made)

    def __repr__(self) -> str:
        return f"<Tracing runs={len(self._runs)} open={len(self._tasks)}>"


class _Unsampled:
    """The injector of a run the sampler left out: every call carries its unsampled
    context, and no span is made."""

    __slots__ = ("_carrier",)

    def __init__(self, carrier: dict[str, str]) -> None:
        self._carrier = carrier

    def begin(self) -> None:
        pass

    def end(self) -> None:
        pass

    def inject(self, task_name: str, options: Mapping[str, Any]) -> dict[str, str]:
        return dict(self._carrier)


class _Publisher:
    """The injector of one traced run: one ``publish {queue}`` span (PRODUCER) per queue
    for the calls of one submission (the messaging conventions' batch send), whose
    context every call of the batch carries; a call outside a submission is a batch
    of its own. The span lasts while the batch is encoded and handed to the backend;
    where and when each call ran are its worker's ``aioflow.task`` spans."""

    __slots__ = ("_depth", "_open", "_run_id", "_run_span", "_tracing", "_workflow")

    def __init__(self, tracing: Tracing, run_id: str, run_span: Any, workflow: str) -> None:
        self._tracing = tracing
        self._run_id = run_id
        self._run_span = run_span
        self._workflow = workflow
        self._depth = 0
        # queue -> [span, carrier, calls, (first task, its options)]
        self._open: dict[str, list[Any]] = {}

    def begin(self) -> None:
        self._depth += 1

    def end(self) -> None:
        self._depth = max(0, self._depth - 1)
        if self._depth == 0 and self._open:
            self._close()

    def inject(self, task_name: str, options: Mapping[str, Any]) -> dict[str, str]:
        tracing = self._tracing
        remote = tracing._remote.get(self._run_id)
        if remote is None:  # the run ended
            return {}
        remote.add(task_name)
        queue = options.get("queue", "default")
        batch = self._open.get(queue)
        if batch is None:
            trace = tracing._trace
            span = tracing._tracer.start_span(
                f"publish {queue}",
                context=trace.set_span_in_context(self._run_span),
                kind=tracing._kind.PRODUCER,
                attributes={
                    "messaging.system": "aioflow",
                    "messaging.operation.type": "send",
                    "messaging.operation.name": "publish",
                    "messaging.destination.name": queue,
                    "aioflow.run.id": self._run_id,
                    "aioflow.workflow": self._workflow,
                },
            )
            carrier: dict[str, str] = {}
            tracing._propagate.inject(carrier, context=trace.set_span_in_context(span))
            batch = self._open[queue] = [span, carrier, 0, (task_name, options)]
        batch[2] += 1
        if self._depth == 0:
            self._close()
        return dict(batch[1])

    def _close(self) -> None:
        for span, _, calls, (task_name, options) in self._open.values():
            if calls == 1:  # the span of one call says which
                span.set_attributes(
                    {
                        "aioflow.task.name": task_name,
                        "aioflow.task.priority": options.get("priority", 0),
                        "aioflow.task.handler": options.get("handler", "inline"),
                    }
                )
            else:
                span.set_attribute("messaging.batch.message_count", calls)
            span.end()
        self._open.clear()


def _parents_first(records: Sequence[Mapping[str, Any]]) -> Iterator[Mapping[str, Any]]:
    """``records`` (with distinct ``span_id``), each after its parent when that is there."""
    by_id = {r["span_id"]: r for r in records}
    done: set[str] = set()
    for record in records:
        chain = []
        node: Mapping[str, Any] | None = record
        while node is not None and node["span_id"] not in done:
            done.add(node["span_id"])  # also breaks a cycle of parents
            chain.append(node)
            node = by_id.get(node["parent_span_id"])
        yield from reversed(chain)
