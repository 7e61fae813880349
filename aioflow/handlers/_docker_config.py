"""The container a ``DockerHandler`` creates: hardened configuration, labels, the call.

Every container aioflow creates carries the labels of :func:`labels` (the run,
the task, the process that owns it), which is how ``aioflow containers ls|prune``
find orphans, and how aioflow tells its containers from everyone else's: it never
stops or removes a container without them.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..errors import ConfigurationError
from ..observability.propagation import context_carrier
from ..serialization import TaskCall, TaskRef

if TYPE_CHECKING:
    from ..context import TaskContext
    from ..task import Task

__all__ = [
    "LABEL_HANDLER",
    "LABEL_MANAGED",
    "LABEL_OWNER",
    "LABEL_OWNER_HOST",
    "LABEL_OWNER_PID",
    "LABEL_POOL",
    "LABEL_RUN",
    "LABEL_TASK",
    "call_of",
    "labels",
    "owner",
    "owner_alive",
    "parse_size",
]

LABEL_MANAGED = "aioflow.managed"
LABEL_RUN = "aioflow.run_id"
LABEL_TASK = "aioflow.task"
LABEL_OWNER = "aioflow.owner"  # host:pid:process start time
LABEL_OWNER_HOST = "aioflow.owner.host"
LABEL_OWNER_PID = "aioflow.owner.pid"
LABEL_HANDLER = "aioflow.handler"
LABEL_POOL = "aioflow.pool"

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
_ENV_SECRETS = ("AIOFLOW_SECRET_KEY", "AIOFLOW_SECRET_KEYS_OLD")


def parse_size(value: str | int, what: str) -> int:
    """``"512m"`` -> bytes (``k``, ``m``, ``g``, ``t``: powers of 1024), or an int of bytes.

    Raises:
        ConfigurationError: not a size.
    """
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    match = _SIZE.match(value) if isinstance(value, str) else None
    if match is None or float(match.group(1)) <= 0:
        raise ConfigurationError(
            f"{what} must be a size such as '512m' or '2g' (or bytes, an int), got {value!r}",
            hint="Units: k, m, g (powers of 1024); None for no limit.",
        )
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


def _start_time(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().rpartition(")")[2].split()[19]
    except (OSError, IndexError):
        return "?"


def owner() -> str:
    """This process, as the owner label says it: ``host:pid:start time``."""
    pid = os.getpid()
    return f"{socket.gethostname()}:{pid}:{_start_time(pid)}"


def owner_alive(label: str) -> bool | None:
    """Whether the process of an owner label still runs (None: on another host)."""
    host, _, rest = label.partition(":")
    pid_text, _, started = rest.partition(":")
    if host != socket.gethostname() or not pid_text.isdigit():
        return None
    pid = int(pid_text)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, run by someone else
    return started in ("", "?") or _start_time(pid) == started  # else: pid reused


def labels(run_id: str, task: str, handler_id: str, *, pool: bool) -> dict[str, str]:
    """The labels of a container aioflow creates."""
    me = owner()
    host, pid, _ = me.split(":", 2)
    return {
        LABEL_MANAGED: "true",
        LABEL_RUN: run_id,
        LABEL_TASK: task,
        LABEL_OWNER: me,
        LABEL_OWNER_HOST: host,
        LABEL_OWNER_PID: pid,
        LABEL_HANDLER: handler_id,
        LABEL_POOL: "true" if pool else "false",
    }


def check_env(env: Mapping[str, str] | None) -> dict[str, str]:
    """The task's environment variables; the cluster's signing key is refused.

    Raises:
        ConfigurationError: not a mapping of str, or holds ``AIOFLOW_SECRET_KEY``.
    """
    if env is None:
        return {}
    if not isinstance(env, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in env.items()
    ):
        raise ConfigurationError(
            "env must map variable names to str values", hint="env={'MODE': 'fast'}"
        )
    leaked = [name for name in _ENV_SECRETS if name in env]
    if leaked:
        raise ConfigurationError(
            f"env passes {', '.join(leaked)} into the container: it must never see the "
            "cluster's signing key",
            hint="Remove it: each call is signed with a fresh key given to its container alone.",
        )
    return dict(env)


def check_mounts(mounts: Sequence[str | Mapping[str, Any]] | None) -> tuple[list[str], list[Any]]:
    """``"host:container[:ro]"`` strings (binds) and Engine API mount objects.

    Raises:
        ConfigurationError: something else.
    """
    binds: list[str] = []
    objects: list[Any] = []
    for mount in mounts or ():
        if isinstance(mount, str) and mount.count(":") in (1, 2):
            binds.append(mount)
        elif isinstance(mount, Mapping) and "Target" in mount:
            objects.append(dict(mount))
        else:
            raise ConfigurationError(
                f"a mount must be 'host_path:container_path[:ro]' or an Engine API mount "
                f"object with a 'Target', got {mount!r}",
                hint="mounts=['/data/in:/in:ro']; read-only is the safe choice.",
            )
    return binds, objects


def call_of(
    task: Task[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any], ctx: TaskContext,
    ref: TaskRef,
) -> TaskCall:  # fmt: skip
    """The call of one attempt, as the container's worker runs it (inline, no deadline:
    the handler enforces the deadline by killing the container). Its ``trace`` is the
    carrier of the current span (the attempt's, when it is traced; else empty)."""
    from ..context import TaskContext

    context: list[str | int] = []
    positional = list(args)
    for index, value in enumerate(positional):
        if isinstance(value, TaskContext):
            positional[index] = None
            context.append(index)
    named: dict[str, Any] = {}
    for name, value in kwargs.items():
        if isinstance(value, TaskContext):
            context.append(name)
        else:
            named[name] = value
    if positional:
        named["*"] = positional
    options = task.options
    return TaskCall(
        run_id=ctx.run_id,
        task_name=ctx.task_name,
        ref=ref,
        args=named,
        attempt=ctx.attempt,
        iteration=ctx.iteration,
        options={
            "timeout": None,
            "max_cycles": ctx.max_cycles,
            "handler": "inline",
            "queue": options.queue,
            "priority": options.priority,
            "context": context,
        },
        trace=context_carrier(),
    )
