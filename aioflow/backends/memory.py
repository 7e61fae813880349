"""The in-process backend (``memory://``, the default).

Executions run on the caller's event loop, served by an
:class:`~aioflow._executors.ExecutorPool` in the session's task group; values are
passed by reference (zero copy). With ``serialize=True``
(``memory://?serialize=true``) every execution instead crosses the full wire path
through the worker runtime — a signed ``TaskCall`` out, a signed ``TaskResult``
back — on the same loop: what runs there runs on a remote backend
(see :mod:`aioflow.backends._serializing`).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING, Any, ClassVar

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from .._execution import AttemptRunner
from .._executors import ExecutorPool
from .base import DEFAULT_MAX_CONCURRENCY, Backend, Execution, RunLink, Session, SessionStatistics

if TYPE_CHECKING:
    from ..serialization import Keyring

__all__ = ["DEFAULT_MAX_CONCURRENCY", "MemoryBackend", "MemorySession", "open_session"]


class MemoryBackend(Backend):
    """Runs executions in this process, on the caller's event loop.

    Args:
        serialize: send every execution through the full wire path (signed
            ``TaskCall`` and ``TaskResult``, task code by reference or signed
            cloudpickle) and the worker runtime, as a remote backend does: the way to
            check that a workflow is ready to be distributed.
        keyring: signs the payloads of ``serialize=True`` (default: the run's).
    """

    schemes: ClassVar[tuple[str, ...]] = ("memory",)

    def __init__(self, *, serialize: bool = False, keyring: Keyring | None = None) -> None:
        self.serialize = serialize
        self.keyring = keyring

    def session(self, link: RunLink) -> AbstractAsyncContextManager[Session]:
        if self.serialize:
            from ._serializing import SerializingSession

            return open_session(SerializingSession, link, self.keyring)
        return open_session(MemorySession, link)

    def describe(self) -> str:
        return "memory://?serialize=true" if self.serialize else "memory://"

    def __repr__(self) -> str:
        return f"MemoryBackend(serialize={self.serialize})"


def _priority(execution: Execution) -> int:
    return execution.task.options.priority


@asynccontextmanager
async def open_session(
    kind: type[MemorySession], link: RunLink, *extra: Any
) -> AsyncIterator[Session]:
    """Run a session of ``kind`` in a task group of its own, for one run."""
    send, receive = anyio.create_memory_object_stream[Execution](math.inf)
    session: MemorySession | None = None
    with send, receive:
        try:
            async with anyio.create_task_group() as tg:
                session = kind(link, tg, send, receive, *extra)
                try:
                    yield session
                finally:
                    session._close()
                    tg.cancel_scope.cancel()  # whatever still runs of the run stops now
        finally:
            if session is not None:
                session._keep_late()


class MemorySession(Session):
    """Executions of one run on this loop, at most ``link.max_concurrency`` at once."""

    def __init__(
        self,
        link: RunLink,
        tg: anyio.abc.TaskGroup,
        send: MemoryObjectSendStream[Execution],
        receive: MemoryObjectReceiveStream[Execution],
    ) -> None:
        super().__init__(link)
        self._send = send
        self._receive = receive
        self._late: deque[Execution] | None = None
        self._pool = self._make_pool(tg)

    def _make_pool(self, tg: anyio.abc.TaskGroup) -> ExecutorPool[Execution]:
        link = self.link
        runner = AttemptRunner(
            run_id=link.run_id,
            channel=link.channel,
            view=link.view,
            handlers=link.handlers,
            report=self._send.send_nowait,
            on_started=link.on_started,
            save_checkpoint=link.save_checkpoint,
            debug=link.debug,
        )
        return ExecutorPool(tg, runner.run, runner.cancelled, link.max_concurrency)

    # --- the contract ------------------------------------------------------------------

    def _submit(self, executions: Sequence[Execution]) -> None:
        self._pool.submit_all(executions, _priority)

    def _cancel(self, execution: Execution) -> bool:
        scope = execution.handle
        if scope is not None:
            scope.cancel()
        return True  # running: cancelled now; queued: reported cancelled when taken

    def _halt(self) -> list[Execution]:
        return self._pool.halt()

    async def receive(self) -> list[Execution]:
        batch = [await self._receive.receive()]
        self._drain(batch)
        return batch

    def receive_nowait(self) -> list[Execution]:
        batch: list[Execution] = []
        self._drain(batch)
        return batch

    def _drain(self, batch: list[Execution]) -> None:
        if self._late is not None:
            batch.extend(self._late)
            self._late.clear()
            return
        take = self._receive.receive_nowait
        try:
            while True:
                batch.append(take())
        except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
            return

    def statistics(self) -> SessionStatistics:
        return SessionStatistics(queued=self._pool.size, running=self._pool.busy)

    def _keep_late(self) -> None:
        # The session is closed: what its executors reported last stays readable.
        late: deque[Execution] = deque()
        while True:
            try:
                late.append(self._receive.receive_nowait())
            except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
                break
        self._late = late

    def _close(self) -> None:
        self._pool.halt()
