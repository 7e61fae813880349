"""Lazy imports of optional dependencies (the ``aioflow[...]`` extras).

Importing aioflow never imports redis, aiodocker or OpenTelemetry; the first use
of a feature that needs one calls :func:`require`, which imports it or raises
:class:`~aioflow.errors.MissingDependencyError` naming the exact install command.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import MissingDependencyError

__all__ = ["EXTRAS", "require"]

# Module to import -> the extra that installs it.
EXTRAS = {
    "redis": "redis",
    "redis.asyncio": "redis",
    "aiodocker": "docker",
    "opentelemetry": "otel",
    "opentelemetry.sdk": "otel",
}


def require(module: str, *, feature: str, extra: str | None = None) -> ModuleType:
    """Import ``module`` for ``feature``.

    Args:
        module: the module to import (``"redis.asyncio"``).
        feature: what needs it, for the message (``"the Redis backend"``).
        extra: the aioflow extra that installs it (default: looked up in :data:`EXTRAS`).

    Raises:
        MissingDependencyError: the module is not installed; the hint is
            ``pip install "aioflow[extra]"``.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        name = extra or EXTRAS.get(module) or EXTRAS.get(module.split(".")[0], "all")
        raise MissingDependencyError(feature, name, module=module) from exc
