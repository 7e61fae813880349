"""``python -m aioflow.container``: the side of a task inside a container.

A :class:`~aioflow.handlers.docker.DockerHandler` starts this in its container
and talks to it over the attached stdin and stdout (frames of
:mod:`aioflow.handlers._docker_wire`). For each task it receives a fresh signing
key, then the ``TaskCall`` signed with it; it runs the call as a one-shot worker
(:class:`aioflow.Worker`, the same attempt code as everywhere else) and writes
the ``TaskResult`` signed with the same key. It never holds the cluster's key, so
a task cannot forge calls for other workers.

Inside, the task has the usual :class:`~aioflow.TaskContext`: ``ctx.channel``,
``ctx.result(name)`` and ``ctx.inputs`` are requests answered by the handler over
the same stream (no network is needed), and the control requests
(``next_iteration``, ``next_task``, ``terminate_workflow``, ``cancel_workflow``)
travel back in the result. Everything the task prints, and aioflow's logs (JSON
lines), go to stderr, which the handler forwards to the run's log.

A call that carries a trace context (``TaskCall.trace``, the attempt span's on the
handler's side) is traced here when the OpenTelemetry SDK is in the image: the
worker's ``aioflow.task`` span is a child of that context, spans the task's code
makes are its children, and the spans finished during the call go back in a
``SPANS`` frame before the result (:mod:`aioflow.handlers._docker_otel`). Otherwise
OpenTelemetry is never imported.

One call after another until stdin ends (a warm pool container serves many);
when stdin ends while a task runs, nobody can receive its result: the process
exits at once (status 3).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import queue
import socket
import sys
import threading
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread

from . import errors as _errors
from .channels import Channel
from .errors import AioflowError, ChannelError
from .handlers._docker_wire import (
    FrameKind,
    FrameReader,
    decode_answer,
    encode_request,
    frame,
    stderr_end,
)
from .observability.logging import LOGGER_NAME, configure_logging, get_logger
from .observability.propagation import current_call
from .serialization import Keyring, TaskRef
from .serialization.envelope import max_payload_bytes_from_env
from .task import Task
from .worker import RunResources, Worker

if TYPE_CHECKING:
    from .handlers._docker_otel import SpanCollector
    from .observability.tracing import Tracing

__all__ = ["main"]

EXIT_ORPHANED = 3  # stdin ended while a task ran: its handler is gone
EXIT_BROKEN = 4  # the stream from the handler is corrupt
LOG_LEVEL_ENV = "AIOFLOW_CONTAINER_LOG_LEVEL"
_log = get_logger("container")


class _Link:
    """The frame stream: a reader thread (stdin), and writes serialized by a lock.

    The reader thread hands calls to the loop through a queue and wakes the
    requests waiting for their answers; it never touches anything else. So a
    synchronous ``ctx.result(name)`` may block the loop's thread while it waits:
    the answer arrives through the reader thread.
    """

    def __init__(self, in_fd: int, out_fd: int, limit: int) -> None:
        self._in = in_fd
        self._out = out_fd
        self._frames = FrameReader(limit)
        self._calls: queue.SimpleQueue[tuple[bytes, bytes] | None] = queue.SimpleQueue()
        self._pending: dict[int, _Pending] = {}
        self._ids = itertools.count(1)
        self._write_lock = threading.Lock()
        self._pending_lock = threading.Lock()
        self.keyring: Keyring | None = None  # of the call running now
        self.busy = False
        self._thread = threading.Thread(target=self._read, name="aioflow-stdin", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        key: bytes | None = None
        try:
            while True:
                data = os.read(self._in, 1 << 16)
                if not data:
                    break
                for kind, body in self._frames.feed(data):
                    if kind is FrameKind.KEY:
                        key = body
                    elif kind is FrameKind.CALL and key is not None:
                        self._calls.put((key, body))
                        key = None
                    elif kind is FrameKind.ANSWER:
                        self._answer(body)
                    else:
                        raise ChannelError(f"unexpected {kind.name} frame from the handler")
        except Exception as exc:
            _log.error("container stream broken", error=str(exc))
            os._exit(EXIT_BROKEN)
        if self.busy:
            os._exit(EXIT_ORPHANED)
        self._calls.put(None)

    def _answer(self, body: bytes) -> None:
        assert self.keyring is not None
        request_id, ok, value = decode_answer(body, self.keyring)
        with self._pending_lock:
            pending = self._pending.pop(request_id, None)
        if pending is not None:
            pending.ok, pending.value = ok, value
            pending.done.set()

    def send(self, kind: FrameKind, body: bytes) -> None:
        data = memoryview(frame(kind, body))
        with self._write_lock:
            while data:
                written = os.write(self._out, data)
                data = data[written:]

    def next_call(self) -> tuple[bytes, bytes] | None:
        """The next (key, signed call), or None when stdin ended (blocks)."""
        return self._calls.get()

    def request(self, op: str, args: list[Any]) -> Any:
        """Ask the handler; block until it answers (any thread but the reader).

        Raises:
            AioflowError: what the handler raised (a ``ChannelError`` ...).
        """
        keyring = self.keyring
        assert keyring is not None
        request_id = next(self._ids)
        pending = _Pending()
        with self._pending_lock:
            self._pending[request_id] = pending
        self.send(FrameKind.REQUEST, encode_request(keyring, request_id, op, args))
        pending.done.wait()
        if not pending.ok:
            raise _rebuild_error(pending.value)
        return pending.value

    async def ask(self, op: str, args: list[Any]) -> Any:
        return await anyio.to_thread.run_sync(self.request, op, args, abandon_on_cancel=True)


class _Pending:
    __slots__ = ("done", "ok", "value")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.ok = False
        self.value: Any = None


def _rebuild_error(info: Any) -> AioflowError:
    parts = list(info) if type(info) is list else ["ChannelError", str(info)]
    type_name, message, hint = [*parts, "?", "", None][:3]
    cls = getattr(_errors, str(type_name).rpartition(".")[2], None)
    if not (isinstance(cls, type) and issubclass(cls, AioflowError)) or (
        cls.__init__ is not AioflowError.__init__
    ):
        cls = ChannelError
    return cls(str(message), hint=hint if isinstance(hint, str) else None)


class _RemoteChannel(Channel):
    """The run's channel, through the handler."""

    def __init__(self, link: _Link) -> None:
        self._link = link

    async def get(self, key: str, default: Any = None) -> Any:
        found, value = await self._link.ask("get", [key])
        return value if found else default

    async def exists(self, key: str) -> bool:
        found, _ = await self._link.ask("get", [key])
        return bool(found)

    async def set(self, key: str, value: Any, *, ttl: float | None = None) -> None:
        await self._link.ask("set", [key, value, ttl])

    async def delete(self, key: str) -> bool:
        return bool(await self._link.ask("delete", [key]))

    async def incr(self, key: str, amount: int = 1) -> int:
        value: int = await self._link.ask("incr", [key, amount])
        return value

    async def append(self, key: str, value: Any) -> int:
        length: int = await self._link.ask("append", [key, value])
        return length

    async def keys(self) -> list[str]:
        return list(await self._link.ask("keys", []))


class _RemoteResults(Mapping[str, Any]):
    """Results of the run's finished tasks, fetched on first use (one request a name)."""

    def __init__(self, link: _Link) -> None:
        self._link = link
        self._known: dict[str, tuple[str, Any]] = {}  # name -> (state, value)

    def state(self, name: str) -> tuple[str, Any]:
        known = self._known.get(name)
        if known is None or known[0] != "done":
            state, value = self._link.request("result", [name])
            known = self._known[name] = (str(state), value)
        return known

    def __getitem__(self, name: str) -> Any:
        state, value = self.state(name)
        if state != "done":
            raise KeyError(name)
        return value

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.state(name)[0] == "done"

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._link.request("result_names", [])))

    def __len__(self) -> int:
        return len(self._link.request("result_names", []))


class _RemoteView:
    """What ``ctx.result`` and ``ctx.inputs`` read: the handler's view of the run."""

    def __init__(self, link: _Link) -> None:
        self._link = link
        self.results = _RemoteResults(link)
        self._inputs: Mapping[str, Any] | None = None

    @property
    def inputs(self) -> Mapping[str, Any]:
        if self._inputs is None:
            self._inputs = dict(self._link.request("inputs", []))
        return self._inputs

    def has_node(self, name: str) -> bool:
        return self.results.state(name)[0] != "unknown"


def _next_tasks_by_name(data: bytes, keyring: Keyring) -> bytes:
    # Tasks added with ctx.next_task(task) travel by import path when they have
    # one, so the handler need not accept pickles from the container.
    from .serialization import decode_result, encode_result
    from .serialization.results import TaskResult

    result = decode_result(data, keyring)
    requests = result.requests
    if not requests or not requests.get("next"):
        return data
    targets = []
    for target, goto in requests["next"]:
        if isinstance(target, Task):
            ref = TaskRef.from_callable(target.fn)
            if not ref.pickled and target.name == getattr(ref.resolve(), "name", None):
                target = {"task": ref.path}
        targets.append([target, goto])
    fields = {name: getattr(result, name) for name in TaskResult.__dataclass_fields__}
    fields["requests"] = {**requests, "next": targets}
    return encode_result(TaskResult(**fields), keyring)


class _Tracer:
    """The SDK of this container, set up on the first traced call (never, without one)."""

    def __init__(self) -> None:
        self._tried = False
        self._installed: tuple[Tracing, SpanCollector] | None = None

    def get(self) -> tuple[Tracing, SpanCollector] | None:
        if not self._tried:
            self._tried = True
            try:
                from .handlers._docker_otel import install
            except ImportError:  # no SDK in the image: calls run untraced
                _log.debug("traced call, but no OpenTelemetry SDK in the image")
                return None
            try:
                self._installed = install()
            except Exception as exc:  # tracing never stops a task
                _log.warning("tracing not set up", error=f"{type(exc).__name__}: {exc}")
        return self._installed


class _CallTracing:
    """The instrument of a call's worker here: it traces the attempt when the call
    carries a trace context (read where the worker decoded the call: no second
    decoding), setting the SDK up on the first such call; otherwise it does nothing
    and OpenTelemetry is never imported."""

    remote_starts = False  # the attempt runs here

    def __init__(self, tracer: _Tracer) -> None:
        self._tracer = tracer
        self._tracing: Tracing | None = None
        self.collector: SpanCollector | None = None
        self.carrier: dict[str, str] = {}  # of the call being traced

    def on_task_start(self, event: Any) -> None:
        call = current_call()
        if call is None or not call.trace:
            return
        installed = self._tracer.get()
        if installed is None:
            return
        self._tracing, self.collector = installed
        self.collector.take()  # what ended before this call is not this call's
        self.carrier = dict(call.trace)
        if (hook := self._tracing.on_task_start) is not None:
            hook(event)

    def on_task_end(self, event: Any) -> None:
        if self._tracing is not None and (hook := self._tracing.on_task_end) is not None:
            hook(event)

    on_task_retry = on_task_end


def _spans_frame(
    collector: SpanCollector, carrier: dict[str, str], keyring: Keyring
) -> bytes | None:
    from .handlers._docker_spans import carrier_trace_id, encode_spans

    trace_id = carrier_trace_id(carrier)
    if trace_id is None:
        collector.take()
        return None
    try:
        records = collector.records(trace_id)
        return encode_spans(records, keyring) if records else None
    except Exception as exc:  # spans never cost the result
        _log.warning("container spans not sent", error=f"{type(exc).__name__}: {exc}")
        return None


async def _serve(link: _Link) -> int:
    worker_id = f"container-{socket.gethostname()}"
    limit = max_payload_bytes_from_env()
    tracer = _Tracer()
    while True:
        item = await anyio.to_thread.run_sync(link.next_call, abandon_on_cancel=True)
        if item is None:
            return 0
        key, payload = item
        keyring = Keyring(key, max_payload_bytes=limit)
        link.keyring = keyring
        link.busy = True
        resources = RunResources(channel=_RemoteChannel(link), view=_RemoteView(link))
        tracing = _CallTracing(tracer)
        async with Worker(
            concurrency=None, worker_id=worker_id, keyring=keyring, instruments=[tracing]
        ) as worker:
            data = await worker.execute(payload, resources)
        data = _next_tasks_by_name(data, keyring)
        collector = tracing.collector
        spans = None if collector is None else _spans_frame(collector, tracing.carrier, keyring)
        link.busy = False
        if spans is not None:
            link.send(FrameKind.SPANS, spans)
        _end_stderr(key)
        link.send(FrameKind.RESULT, data)


def _end_stderr(key: bytes) -> None:
    """The call's stderr ends here: what the task wrote first, then the marker."""
    for stream in (sys.stdout, sys.stderr):  # the task's stdout goes to stderr
        with contextlib.suppress(Exception):
            stream.flush()
    os.write(2, (stderr_end(key) + "\n").encode())


def main() -> int:
    """Serve calls from stdin until it ends; the exit status (0: stdin ended)."""
    out_fd = os.dup(1)
    os.dup2(2, 1)  # the task's prints go to stderr: stdout carries frames only
    sys.stdout = os.fdopen(1, "w", buffering=1, closefd=False)
    configure_logging(os.environ.get(LOG_LEVEL_ENV, "INFO"), json=True, stream=sys.stderr)
    logging.getLogger(LOGGER_NAME).propagate = False
    link = _Link(0, out_fd, max_payload_bytes_from_env())
    try:
        return anyio.run(_serve, link)
    except KeyboardInterrupt:
        return 130
    except AioflowError as exc:
        _log.error("container cannot serve", error=exc.describe())
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
