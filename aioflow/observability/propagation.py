"""Where trace context crosses a process: the seam between runs, calls and tracers.

Nothing here imports OpenTelemetry; a tracing instrument
(:class:`aioflow.observability.Tracing`) plugs into it:

* **Coordinator.** While a run is traced, its instrument registers an *injector*
  for the run's id (:func:`register_injector`). When a backend encodes a
  ``TaskCall`` for that run (:class:`~aioflow.backends._calls.CallEncoder`), it asks
  :func:`inject` for the call's carrier (W3C ``traceparent``...), which travels in
  ``TaskCall.trace``; the calls of one submission are bracketed by
  :func:`publishing`, so the instrument makes one ``publish`` span per batch (and
  queue), the messaging conventions' batch send. A run nobody traces costs one
  dictionary lookup per call.
* **Worker.** While an attempt executes, :func:`current_call` is the ``TaskCall``
  it came in (set by the worker runtime in the attempt's own context), so an
  instrument's ``on_task_start`` finds the carrier, the queue and the enqueue time.
* **Containers.** A handler that runs an attempt in another process of its own (a
  ``DockerHandler``) asks :func:`context_carrier` for the carrier of the *current*
  context (the attempt's span) to put in the call it sends, and gives the spans
  that come back with the result, as plain records, to :func:`relay_spans`, which
  re-creates them in this process's tracer. Both are hooks a tracing instrument
  registers (:func:`register_span_relay`); without one, the carrier is empty and
  nothing is relayed, for the price of a global lookup.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ..serialization import TaskCall

__all__ = [
    "CarrierSource",
    "Injector",
    "SpanRelay",
    "context_carrier",
    "current_call",
    "inject",
    "publishing",
    "register_injector",
    "register_span_relay",
    "relay_spans",
    "set_attempt_span_relay",
    "set_current_call",
    "unregister_injector",
    "unregister_span_relay",
]


class Injector(Protocol):
    """What a tracing instrument registers for a traced run (see :func:`register_injector`).

    ``inject(task_name, options) -> carrier``: the trace context of one call of the
    run (``options`` are the call's wire options: queue, priority, handler...).
    ``begin()`` / ``end()`` bracket the calls a backend sends together (one
    submission, :func:`publishing`), so one ``publish`` span can stand for the batch;
    a call injected outside them is a batch of its own.
    """

    def inject(self, task_name: str, options: Mapping[str, Any]) -> dict[str, str]: ...

    def begin(self) -> None: ...

    def end(self) -> None: ...


# Run id -> its injector. Written only by tracing instruments' run hooks (on the run's
# loop); read by the run's backend session on the same loop.
_injectors: dict[str, Injector] = {}

#: ``source() -> carrier``: the trace context of the current context (empty: none).
CarrierSource = Callable[[], dict[str, str]]

#: ``relay(records, carrier, root_attributes) -> spans made``: re-create spans finished
#: in another process (plain records, see :mod:`aioflow.handlers._docker_spans`) under
#: the span of ``carrier``; ``root_attributes`` go on the ones whose parent is that span.
SpanRelay = Callable[[Sequence[Mapping[str, Any]], Mapping[str, str], Mapping[str, Any]], int]

# The tracing instrument made last registers itself (as it does for log lines' ids);
# the one that traces an attempt also sets itself in the attempt's context, and wins
# there (two instruments with two providers in one process: each gets its own).
_span_relay: tuple[CarrierSource, SpanRelay] | None = None
_attempt_relay: ContextVar[tuple[CarrierSource, SpanRelay] | None] = ContextVar(
    "aioflow_attempt_span_relay", default=None
)

_call: ContextVar[TaskCall | None] = ContextVar("aioflow_current_call", default=None)


def register_injector(run_id: str, injector: Injector) -> None:
    """Make ``injector`` give the trace context of the calls of run ``run_id``."""
    _injectors[run_id] = injector


def unregister_injector(run_id: str, injector: Injector | None = None) -> None:
    """Forget run ``run_id``'s injector (only ``injector``'s, when given)."""
    if injector is None or _injectors.get(run_id) == injector:
        _injectors.pop(run_id, None)


def inject(run_id: str, task_name: str, options: Mapping[str, Any]) -> dict[str, str]:
    """The trace-context carrier of a call of ``run_id`` (empty when it is not traced).

    An injector that raises yields an empty carrier: tracing never stops a task.
    """
    injector = _injectors.get(run_id)
    if injector is None:
        return {}
    try:
        return injector.inject(task_name, options)
    except Exception:
        return {}


@contextmanager
def publishing(run_id: str) -> Iterator[None]:
    """Bracket the calls of ``run_id`` a backend sends together (one submission): a
    traced run makes one ``publish`` span per queue for them, not one per call."""
    injector = _injectors.get(run_id)
    if injector is None:
        yield
        return
    with suppress(Exception):
        injector.begin()
    try:
        yield
    finally:
        with suppress(Exception):
            injector.end()


def current_call() -> TaskCall | None:
    """The ``TaskCall`` of the attempt executing in this context (on a worker), or None."""
    return _call.get()


def set_current_call(call: TaskCall | None) -> None:
    """Set by the worker runtime in the attempt's context, when the attempt starts."""
    _call.set(call)


def register_span_relay(source: CarrierSource, relay: SpanRelay) -> None:
    """Make :func:`context_carrier` and :func:`relay_spans` use these (replacing any)."""
    global _span_relay
    _span_relay = (source, relay)


def set_attempt_span_relay(hooks: tuple[CarrierSource, SpanRelay]) -> None:
    """Make the attempt executing in this context use ``hooks`` (set by the tracing
    instrument of the attempt, in its context)."""
    _attempt_relay.set(hooks)


def _relay_hooks() -> tuple[CarrierSource, SpanRelay] | None:
    return _attempt_relay.get() or _span_relay


def unregister_span_relay(source: CarrierSource | None = None) -> None:
    """Forget the span relay (only ``source``'s, when given)."""
    global _span_relay
    if source is None or (_span_relay is not None and _span_relay[0] == source):
        _span_relay = None


def context_carrier() -> dict[str, str]:
    """The trace-context carrier (W3C ``traceparent``...) of the current span, for a call
    that another process runs on this attempt's behalf; empty when nothing is traced.

    A source that raises, or returns something else than ``dict[str, str]``, yields an
    empty carrier: tracing never stops a task.
    """
    hooks = _relay_hooks()
    if hooks is None:
        return {}
    try:
        carrier = hooks[0]()
    except Exception:
        return {}
    if type(carrier) is not dict or not all(
        type(k) is str and type(v) is str for k, v in carrier.items()
    ):
        return {}
    return carrier


def relay_spans(
    records: Sequence[Mapping[str, Any]],
    carrier: Mapping[str, str],
    root_attributes: Mapping[str, Any],
) -> int:
    """Re-create ``records`` (spans finished elsewhere) in this process's tracer, under
    the span of ``carrier``; the number of spans made (0: no relay registered).

    Raises:
        Exception: what the relay raised (the caller logs it; a task never fails of it).
    """
    hooks = _relay_hooks()
    if hooks is None or not records:
        return 0
    return hooks[1](records, carrier, root_attributes)
