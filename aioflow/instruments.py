"""Instruments: the hook protocol that events, logs, traces and metrics are built on.

An instrument is any object with some of the hooks below (trio's ``Instrument``
is the model); pass it as ``run(..., instruments=[obj])`` or
``Worker(instruments=[obj])``. Only the hooks an object has are called, each with
the typed event (see :mod:`aioflow.events`):

=================  ===================================================================
hook               called with
=================  ===================================================================
``on_run_start``   :class:`~aioflow.events.RunStarted`
``on_task_start``  :class:`~aioflow.events.TaskStarted`, when an attempt starts executing
``on_task_end``    :class:`~aioflow.events.TaskSucceeded`, ``TaskFailed`` or
                   ``TaskCancelled``
``on_task_retry``  :class:`~aioflow.events.TaskRetrying`
``on_task_add``    :class:`~aioflow.events.TaskAdded`
``on_task_skip``   :class:`~aioflow.events.TaskSkipped`
``on_group_end``   :class:`~aioflow.events.GroupFinished`
``on_run_end``     :class:`~aioflow.events.RunFinished`
``on_event``       every event above, after its own hook
=================  ===================================================================

An instrument whose ``on_task_start`` only cares about attempts that run in its own
process (a tracer: an attempt on a worker is traced by that worker) says so with a
class attribute ``remote_starts = False``; when no listener wants them, a
distributed backend does not have its workers announce each start (one message
less per task), and no ``TaskStarted`` is made for those attempts.

Hooks are plain (sync) callables, called on the run's event loop in the order the
events happen; they must be quick and must not block. A hook that raises is
logged once, with its traceback, and that instrument is disabled for the rest of
the run: an instrument never breaks a run. Events are made only when some
instrument listens, so a run without instruments pays nothing for them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Protocol, runtime_checkable

from . import events as ev
from .observability.logging import get_logger

__all__ = ["HOOKS", "Instrument", "Instruments"]

Hook = Callable[[Any], None]

#: Event type -> the name of its hook.
HOOKS: dict[type[ev.Event], str] = {
    ev.RunStarted: "on_run_start",
    ev.TaskStarted: "on_task_start",
    ev.TaskSucceeded: "on_task_end",
    ev.TaskFailed: "on_task_end",
    ev.TaskCancelled: "on_task_end",
    ev.TaskRetrying: "on_task_retry",
    ev.TaskAdded: "on_task_add",
    ev.TaskSkipped: "on_task_skip",
    ev.GroupFinished: "on_group_end",
    ev.RunFinished: "on_run_end",
}
_NAMES = (*dict.fromkeys(HOOKS.values()), "on_event")


@runtime_checkable
class Instrument(Protocol):
    """Documentation of the protocol: implement any subset of these hooks."""

    def on_event(self, event: ev.Event) -> None:
        """Every event (after its own hook)."""


class Instruments:
    """Dispatches events to the hooks instruments have. Made by runs and workers.

    ``wants(name)`` tells whether any instrument listens to a hook (plus
    ``on_event``), so the caller makes an event only when someone will read it.
    """

    def __init__(self, instruments: Iterable[object] = (), **ids: Any) -> None:
        self._instruments = list(instruments)
        self._hooks: dict[str, list[tuple[object, Hook]]] = {}
        self._disabled: set[int] = set()
        self._log = get_logger("instruments", **ids)
        self._rebuild()

    def _rebuild(self) -> None:
        self._hooks = {name: [] for name in _NAMES}
        for obj in self._instruments:
            for name in _NAMES:
                hook = getattr(obj, name, None)
                if callable(hook):
                    self._hooks[name].append((obj, hook))
        general = bool(self._hooks["on_event"])
        for name in _NAMES:
            setattr(self, name.removeprefix("on_"), general or bool(self._hooks[name]))
        self.remote_starts = general or any(
            getattr(obj, "remote_starts", True) for obj, _ in self._hooks["on_task_start"]
        )

    # Flags, one per hook: True when somebody listens (set by _rebuild).
    run_start: bool
    task_start: bool
    task_end: bool
    task_retry: bool
    task_add: bool
    task_skip: bool
    group_end: bool
    run_end: bool
    event: bool
    #: Whether a listener wants ``TaskStarted`` of attempts in other processes too.
    remote_starts: bool

    def __bool__(self) -> bool:
        return bool(self._instruments)

    def emit(self, event: ev.Event) -> None:
        """Call the hook of ``event``'s type, then ``on_event``, on every instrument."""
        hooks = self._hooks  # a failing hook rebuilds self._hooks; this one stays as is
        for name in (HOOKS[type(event)], "on_event"):
            for obj, hook in hooks[name]:
                if self._disabled and id(obj) in self._disabled:
                    continue
                try:
                    hook(event)
                except Exception as exc:
                    self._disable(obj, name, exc)

    def _disable(self, obj: object, hook: str, exc: Exception) -> None:
        if obj not in self._instruments:
            return
        self._instruments.remove(obj)
        self._disabled.add(id(obj))
        self._rebuild()
        self._log.error(
            "instrument hook raised; the instrument is disabled for this run",
            instrument=repr(obj),
            hook=hook,
            error=f"{type(exc).__name__}: {exc}",
            exc_info=exc,
        )
