"""``memory://?serialize=true``: in-process, through the full wire path.

Every execution is encoded as a signed ``TaskCall`` (task code by reference, or
signed cloudpickle), run by the worker runtime (:class:`aioflow.worker.Worker`),
and comes back as a signed ``TaskResult`` — on the caller's loop, without a
network. Channel values, results read with ``ctx.result`` and control requests
cross the codec the same way. So an argument, result or channel value that could
not cross a process fails here, with a ``SerializationError`` naming the task and
the value's type, exactly as it would on a remote backend: the way to check that
a workflow is ready to be distributed.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import anyio

from .._execution import cancelled_error
from .._executors import ExecutorPool
from ..channels import Channel
from ..context import _current
from ..errors import SerializationError
from ..serialization import (
    Keyring,
    PayloadKind,
    TaskCall,
    decode_value,
    encode_value,
)
from ..worker import RunResources, Worker
from ._calls import CallEncoder, apply_result, refused
from .base import Execution, RunLink, Status
from .memory import MemorySession

__all__ = ["CrossingChannel", "CrossingView", "SerializingSession"]

_MISSING: Any = object()


def _task_name() -> str:
    ctx = _current.get()
    return ctx.task_name if ctx is not None else "?"


class _Crossing:
    """Sends values through the codec and back, as a process boundary would."""

    __slots__ = ("_keyring",)

    def __init__(self, keyring: Keyring) -> None:
        self._keyring = keyring

    def cross(self, value: Any, what: str) -> Any:
        try:
            data = encode_value(
                value, self._keyring, allow_pickle=True, kind=PayloadKind.CHANNEL, root=what
            )
            return decode_value(data, self._keyring, allow_pickle=True, kind=PayloadKind.CHANNEL)
        except SerializationError as exc:
            task = _task_name()
            error = SerializationError(
                f"task {task!r}: {what} (a {type(value).__name__}) cannot cross a process: {exc}",
                hint=exc.hint,
                task_name=task,
            )
            raise error from exc


class CrossingChannel(Channel):
    """The run's channel as a worker sees it: every value written crosses the codec."""

    def __init__(self, inner: Channel, keyring: Keyring) -> None:
        self._inner = inner
        self._crossing = _Crossing(keyring)

    async def get(self, key: str, default: Any = None) -> Any:
        return await self._inner.get(key, default)

    async def set(self, key: str, value: Any, *, ttl: float | None = None) -> None:
        await self._inner.set(key, self._crossing.cross(value, f"channel[{key!r}]"), ttl=ttl)

    async def delete(self, key: str) -> bool:
        return await self._inner.delete(key)

    async def incr(self, key: str, amount: int = 1) -> int:
        return await self._inner.incr(key, amount)

    async def append(self, key: str, value: Any) -> int:
        return await self._inner.append(key, self._crossing.cross(value, f"channel[{key!r}]"))

    async def keys(self) -> list[str]:
        return await self._inner.keys()


class _CrossingMapping(Mapping[str, Any]):
    __slots__ = ("_crossing", "_inner", "_what")

    def __init__(self, inner: Mapping[str, Any], crossing: _Crossing, what: str) -> None:
        self._inner = inner
        self._crossing = crossing
        self._what = what

    def __getitem__(self, key: str) -> Any:
        return self._crossing.cross(self._inner[key], f"{self._what}[{key!r}]")

    def __contains__(self, key: object) -> bool:
        return key in self._inner

    def __iter__(self) -> Iterator[str]:
        return iter(self._inner)

    def __len__(self) -> int:
        return len(self._inner)


class CrossingView:
    """The run's results and inputs as a worker sees them (copies through the codec)."""

    __slots__ = ("_inner", "inputs", "results")

    def __init__(self, inner: Any, keyring: Keyring) -> None:
        crossing = _Crossing(keyring)
        self._inner = inner
        self.results: Mapping[str, Any] = _CrossingMapping(inner.results, crossing, "result")
        self.inputs: Mapping[str, Any] = _CrossingMapping(inner.inputs, crossing, "input")

    def has_node(self, name: str) -> bool:
        return bool(self._inner.has_node(name))


class SerializingSession(MemorySession):
    """A memory session whose executions go through signed calls and the worker."""

    def __init__(
        self,
        link: RunLink,
        tg: anyio.abc.TaskGroup,
        send: Any,
        receive: Any,
        keyring: Keyring | None = None,
    ) -> None:
        self._keyring = keyring if keyring is not None else Keyring.from_env()
        self._worker = Worker(
            handlers=link.handlers,
            concurrency=None,  # the session's pool bounds concurrency
            worker_id="in-process",
            keyring=self._keyring,
        )
        self._resources = RunResources(
            channel=CrossingChannel(link.channel, self._keyring),
            view=CrossingView(link.view, self._keyring),
        )
        self._encoder = CallEncoder(link.run_id, link.workflow, self._keyring)
        self._in_worker: dict[str, Execution] = {}
        super().__init__(link, tg, send, receive)

    def _make_pool(self, tg: anyio.abc.TaskGroup) -> ExecutorPool[Execution]:
        return ExecutorPool(tg, self._execute, self._cancelled, self.link.max_concurrency)

    # --- out: Execution -> signed TaskCall ------------------------------------------

    def _submit(self, executions: Sequence[Execution]) -> None:
        encoder = self._encoder
        run_id = self.link.run_id
        with encoder.batch():
            for execution in executions:
                try:
                    execution.handle = encoder.encode(execution, f"{run_id}:{execution.call_id}")
                except SerializationError as exc:
                    refused(execution, exc, run_id)
                    self._send.send_nowait(execution)
                    continue
                self._pool.submit(execution, execution.task.options.priority)

    # --- the worker's side, and back: signed TaskResult -> Execution -----------------

    async def _execute(self, execution: Execution, scope: anyio.CancelScope) -> None:
        if execution.cancel_reason is not None:
            execution.end_unrun(Status.CANCELLED, cancelled_error(execution, self.link.run_id))
            self._send.send_nowait(execution)
            return
        payload: bytes = execution.handle
        call_id = f"{self.link.run_id}:{execution.call_id}"
        self._in_worker[call_id] = execution
        try:
            data = await self._worker.execute(payload, self._resources, started=self._started)
        finally:
            del self._in_worker[call_id]
        self._decode(execution, data)
        self._send.send_nowait(execution)

    def _started(self, call: TaskCall) -> None:
        execution = self._in_worker[call.call_id]
        execution.started = True
        if self.link.on_started is not None:
            self.link.on_started(execution)

    def _decode(self, execution: Execution, data: bytes) -> None:
        apply_result(execution, data, self._keyring)

    def _cancelled(self, execution: Execution) -> None:
        # The whole run was cancelled while the worker ran this execution.
        execution.handle = None
        execution.end_unrun(Status.CANCELLED, cancelled_error(execution, self.link.run_id))
        self._send.send_nowait(execution)

    def _cancel(self, execution: Execution) -> bool:
        call_id = f"{self.link.run_id}:{execution.call_id}"
        if call_id in self._in_worker:
            self._worker.cancel(call_id, execution.cancel_reason or "cancelled")
        return True  # queued: reported cancelled when taken
