"""``@task``: turn a function into a workflow node.

A :class:`Task` keeps the signature of the function it wraps (``Task[P, R]``), its
options (:class:`TaskOptions`) and parameters bound with :meth:`Task.bind`. It
holds no run state: the same task can take part in many workflows and runs.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import sys
import weakref
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Generic, ParamSpec, TypeVar, final, overload

from .context import TaskContext
from .errors import WorkflowDefinitionError
from .graph import Composable, ParallelGroup, TaskGraph
from .policies import RetryPolicy, resolve_retry_policy

__all__ = ["Param", "Task", "TaskOptions", "task"]

P = ParamSpec("P")
R = TypeVar("R")

DEFAULT_MAX_CYCLES = 100


@dataclass(frozen=True, slots=True)
class TaskOptions:
    """How a task runs.

    Attributes:
        retries: retry policy (``@task(retries=3)`` is ``RetryPolicy(retries=3)``).
        timeout: seconds one attempt may take, or None for no limit.
        max_cycles: how many times ``ctx.next_iteration()`` may run the task in all.
        handler: name of the handler that executes it (``"inline"`` by default).
        queue: the queue a distributed backend routes it to.
        priority: higher runs first when tasks wait for a free slot.
        description: free text shown in graphs and the CLI.
        rate_limit: at most this many starts per period across every worker of a
            distributed backend (``"100/s"``, ``"10/m"``, ``"500/h"``), or None.
    """

    retries: RetryPolicy = field(default_factory=RetryPolicy)
    timeout: float | None = None
    max_cycles: int = DEFAULT_MAX_CYCLES
    handler: str = "inline"
    queue: str = "default"
    priority: int = 0
    description: str | None = None
    rate_limit: str | None = None

    def __post_init__(self) -> None:
        if self.rate_limit is not None:
            parse_rate_limit(self.rate_limit)
        if type(self.priority) is not int:
            raise WorkflowDefinitionError(f"priority must be an int, got {self.priority!r}")
        if self.timeout is not None and not self.timeout > 0:
            raise WorkflowDefinitionError(
                f"timeout must be a positive number of seconds, got {self.timeout!r}"
            )
        if self.max_cycles < 1:
            raise WorkflowDefinitionError(f"max_cycles must be >= 1, got {self.max_cycles}")


@dataclass(frozen=True, slots=True)
class Param:
    """One parameter of a task function, analysed once."""

    name: str
    kind: inspect._ParameterKind
    is_context: bool
    has_default: bool


def _is_context_param(p: inspect.Parameter) -> bool:
    ann = p.annotation
    if ann is TaskContext:
        return True
    if isinstance(ann, str) and ann.replace(" ", "").split(".")[-1] == "TaskContext":
        return True
    return p.name == "ctx"


_NOTHING_BOUND: Mapping[str, Any] = MappingProxyType({})
_analysed: weakref.WeakKeyDictionary[Any, tuple[tuple[Param, ...], bool, bool]] = (
    weakref.WeakKeyDictionary()
)


def _analyse(fn: Callable[..., Any]) -> tuple[tuple[Param, ...], bool, bool]:
    """The parameters worth filling, whether ``fn`` takes ``**kwargs``, whether it is async.

    Cached per function: ``bind()`` makes many tasks of one function.
    """
    try:
        return _analysed[fn]
    except (KeyError, TypeError):
        pass
    params: list[Param] = []
    var_keyword = False
    for p in inspect.signature(fn).parameters.values():
        if p.kind is p.VAR_KEYWORD:
            var_keyword = True
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        params.append(
            Param(
                name=p.name,
                kind=p.kind,
                is_context=_is_context_param(p),
                has_default=p.default is not p.empty,
            )
        )
    is_async = inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 - async callable objects
    )
    result = (tuple(params), var_keyword, is_async)
    with contextlib.suppress(TypeError):  # not weakly referenceable: just not cached
        _analysed[fn] = result
    return result


@final
class Task(Composable, Generic[P, R]):
    """A workflow node wrapping a function. Made by :func:`task`.

    Calling a task calls the function directly (handy in unit tests); running it
    in a workflow fills its parameters from bound values, the context, upstream
    results, run inputs and defaults, in that order.
    """

    __slots__ = ("_accepts_any_kwarg", "bound", "fn", "is_async", "name", "options", "params")

    def __init__(
        self,
        fn: Callable[P, Any],
        *,
        name: str,
        options: TaskOptions,
        bound: Mapping[str, Any] | None = None,
    ) -> None:
        if inspect.isasyncgenfunction(fn) or inspect.isgeneratorfunction(fn):
            raise WorkflowDefinitionError(
                f"task {name!r} is a generator function; tasks must return a value",
                hint="Return a list instead of yielding, or stream through ctx.channel.",
                task_name=name,
            )
        self.fn = fn
        self.name = name
        self.options = options
        self.bound: Mapping[str, Any] = dict(bound) if bound else _NOTHING_BOUND
        self.params, self._accepts_any_kwarg, self.is_async = _analyse(fn)
        known = {p.name for p in self.params}
        unknown = set(self.bound) - known
        if unknown and not self._accepts_any_kwarg:
            raise WorkflowDefinitionError(
                f"task {name!r} has no parameter(s) {sorted(unknown)} to bind",
                hint=f"Parameters of {name!r} are: {sorted(known)}",
                task_name=name,
            )

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Any:
        return self.fn(*args, **kwargs)

    def takes(self, name: str) -> bool:
        """True if the function accepts a keyword argument ``name``."""
        return self._accepts_any_kwarg or any(p.name == name for p in self.params)

    def bind(self, name: str | None = None, **params: Any) -> Task[P, R]:
        """Another node running the same function, with ``params`` bound.

        Args:
            name: the new node's name (needed when both nodes are in one workflow).
            params: parameter values that take precedence over everything else.
        """
        return Task(
            self.fn,
            name=name or self.name,
            options=self.options,
            bound={**self.bound, **params},
        )

    def with_options(self, **changes: Any) -> Task[P, R]:
        """Another node with some options changed (``retries``, ``timeout``, ``name``...)."""
        name: str = changes.pop("name", None) or self.name
        if "retries" in changes:
            changes["retries"] = resolve_retry_policy(changes["retries"])
        return Task(self.fn, name=name, options=replace(self.options, **changes), bound=self.bound)

    # --- Composable ---------------------------------------------------------------

    def _heads(self) -> tuple[Task[P, R]]:
        return (self,)

    def _tails(self) -> tuple[Task[P, R] | ParallelGroup]:
        return (self,)

    def _register(self, graph: TaskGraph) -> None:
        graph.add_task(self)

    def __repr__(self) -> str:
        return f"<Task {self.name}>"

    def __reduce__(self) -> tuple[Any, ...]:
        # @task replaces a module-level function by its Task, so pickling ``fn`` by
        # reference would find the Task, not the function, and fall back to copying
        # its code. Refer to the module-level task instead when there is one.
        module = sys.modules.get(getattr(self.fn, "__module__", "") or "")
        base: Any = module
        for part in getattr(self.fn, "__qualname__", "<none>").split("."):
            base = getattr(base, part, None)
        if isinstance(base, Task) and base.fn is self.fn:
            where = (self.fn.__module__, self.fn.__qualname__)
            return (_task_from_reference, (*where, self.name, self.options, dict(self.bound)))
        return (_task_from_parts, (self.fn, self.name, self.options, dict(self.bound)))


def _task_from_reference(
    module: str, qualname: str, name: str, options: TaskOptions, bound: dict[str, Any]
) -> Task[..., Any]:
    base: Any = importlib.import_module(module)
    for part in qualname.split("."):
        base = getattr(base, part)
    return Task(base.fn, name=name, options=options, bound=bound)


_PERIODS = {
    "s": 1.0,
    "sec": 1.0,
    "second": 1.0,
    "m": 60.0,
    "min": 60.0,
    "minute": 60.0,
    "h": 3600.0,
    "hour": 3600.0,
}


def parse_rate_limit(text: object) -> tuple[int, float]:
    """``"100/s"`` -> ``(100, 1.0)``: how many starts per how many seconds.

    Raises:
        WorkflowDefinitionError: not of the form ``N/s``, ``N/m`` or ``N/h`` with N >= 1.
    """
    if isinstance(text, str):
        count, slash, unit = text.strip().partition("/")
        period = _PERIODS.get(unit.strip().lower())
        if slash and period is not None and count.strip().isdigit() and int(count) >= 1:
            return int(count), period
    raise WorkflowDefinitionError(
        f"rate_limit must be a str like '100/s', '10/m' or '500/h', got {text!r}",
        hint="Write the number of starts allowed, a slash, and s, m or h.",
    )


def _task_from_parts(
    fn: Callable[..., Any], name: str, options: TaskOptions, bound: dict[str, Any]
) -> Task[..., Any]:
    return Task(fn, name=name, options=options, bound=bound)


@overload
def task(fn: Callable[P, Awaitable[R]], /) -> Task[P, R]: ...
@overload
def task(fn: Callable[P, R], /) -> Task[P, R]: ...
@overload
def task(
    fn: None = None,
    /,
    *,
    name: str | None = None,
    retries: int | RetryPolicy | None = None,
    timeout: float | None = None,
    max_cycles: int | None = None,
    handler: str = "inline",
    queue: str = "default",
    priority: int = 0,
    description: str | None = None,
    rate_limit: str | None = None,
) -> Callable[[Callable[P, Any]], Task[P, Any]]: ...


def task(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    retries: int | RetryPolicy | None = None,
    timeout: float | None = None,
    max_cycles: int | None = None,
    handler: str = "inline",
    queue: str = "default",
    priority: int = 0,
    description: str | None = None,
    rate_limit: str | None = None,
) -> Any:
    """Make a function a workflow task: ``@task`` or ``@task(retries=3, timeout=10)``.

    Args:
        name: node name (default: the function's name); unique within a workflow.
        retries: an int (number of retries) or a :class:`RetryPolicy`.
        timeout: seconds per attempt; exceeding it raises ``TaskTimeoutError``.
        max_cycles: bound on ``ctx.next_iteration()`` executions (default 100).
        handler: which handler executes the task (``"inline"``, ``"docker"``...).
        queue: queue name for distributed backends.
        priority: higher values are started first when slots are scarce.
        description: shown in graph exports and the CLI.
        rate_limit: ``"N/s"``, ``"N/m"`` or ``"N/h"``: at most N starts of this task
            (by name) per second, minute or hour, across all the workers of a
            distributed backend (Redis); in-process backends do not limit it.

    Raises:
        WorkflowDefinitionError: for invalid options.
    """
    options = TaskOptions(
        retries=resolve_retry_policy(retries),
        timeout=timeout,
        max_cycles=DEFAULT_MAX_CYCLES if max_cycles is None else max_cycles,
        handler=handler,
        queue=queue,
        priority=priority,
        description=description,
        rate_limit=rate_limit,
    )

    def decorate(f: Callable[..., Any]) -> Task[..., Any]:
        if isinstance(f, Task):
            raise WorkflowDefinitionError(
                f"{f.name!r} is already a task", hint="Use task.with_options(...) to change it."
            )
        if not callable(f):
            raise WorkflowDefinitionError(f"@task needs a function, got {f!r}")
        default_name: str = getattr(f, "__name__", type(f).__name__)
        return Task(f, name=name or default_name, options=options)

    if fn is not None:
        return decorate(fn)
    return decorate
