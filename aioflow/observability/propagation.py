"""Where trace context crosses a process: the seam between runs, calls and tracers.

Nothing here imports OpenTelemetry; a tracing instrument
(:class:`aioflow.observability.Tracing`) plugs into it:

* **Coordinator.** While a run is traced, its instrument registers an *injector*
  for the run's id (:func:`register_injector`). When a backend encodes a
  ``TaskCall`` for that run (:class:`~aioflow.backends._calls.CallEncoder`), it asks
  :func:`inject` for the call's carrier (W3C ``traceparent``...), which travels in
  ``TaskCall.trace``. A run nobody traces costs one dictionary lookup per call.
* **Worker.** While an attempt executes, :func:`current_call` is the ``TaskCall``
  it came in (set by the worker runtime in the attempt's own context), so an
  instrument's ``on_task_start`` finds the carrier, the queue and the enqueue time.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..serialization import TaskCall

__all__ = [
    "Injector",
    "current_call",
    "inject",
    "register_injector",
    "set_current_call",
    "unregister_injector",
]

#: ``injector(task_name, options) -> carrier``: the trace context of one call of a run
#: (``options`` are the call's wire options: queue, priority, handler...).
Injector = Callable[[str, Mapping[str, Any]], dict[str, str]]

# Run id -> its injector. Written only by tracing instruments' run hooks (on the run's
# loop); read by the run's backend session on the same loop.
_injectors: dict[str, Injector] = {}

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
        return injector(task_name, options)
    except Exception:
        return {}


def current_call() -> TaskCall | None:
    """The ``TaskCall`` of the attempt executing in this context (on a worker), or None."""
    return _call.get()


def set_current_call(call: TaskCall | None) -> None:
    """Set by the worker runtime in the attempt's context, when the attempt starts."""
    _call.set(call)
