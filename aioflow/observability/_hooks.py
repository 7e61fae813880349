"""The hooks of an instrument that exist only while it is active (an SDK is there)."""

from __future__ import annotations

from typing import Any

__all__ = ["ActiveHooks"]


def _hook(name: str) -> Any:
    return property(lambda self: getattr(self, name) if self.active else None)


class ActiveHooks:
    """Base of :class:`~.tracing.Tracing` and :class:`~.metrics.Metrics`: each hook is
    the method named here while ``active`` is true, else None. Hooks are looked up once
    per run by :mod:`aioflow.instruments`: with no SDK then, the instrument has none,
    so the run makes no event for it (near-zero cost)."""

    @property
    def active(self) -> bool:
        """Whether the instrument records now (an SDK provider is given or installed)."""
        raise NotImplementedError

    on_run_start = _hook("_on_run_start")
    on_run_end = _hook("_on_run_end")
    on_task_start = _hook("_on_task_start")
    on_task_end = _hook("_end")
    on_task_retry = _hook("_end")
