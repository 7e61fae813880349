"""One container of a :class:`~aioflow.handlers.docker.DockerHandler`, and its stream.

A :class:`Box` is created (labelled), attached (before it starts, so nothing it
writes is lost), started, then fed calls over its stdin; what it writes on stdout
is cut into frames, what it writes on stderr is forwarded to the run's log line by
line. :meth:`Box.remove` kills and removes it; it is shielded and bounded, so it
also runs when the task was cancelled, and the handler calls it in ``finally``
on every path (R12). A box only ever removes its own container (R2).
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

import anyio

from ..errors import AioflowError, ContainerError, SerializationError
from ..observability.logging import get_logger
from ._docker_errors import engine_error, memory_error
from ._docker_wire import FrameKind, FrameReader, frame, is_stderr_end, stderr_end

if TYPE_CHECKING:
    import aiodocker
    import structlog
    from aiodocker.containers import DockerContainer
    from aiodocker.stream import Stream

__all__ = ["API_TIMEOUT", "Box"]

#: Bound of one Engine API call made while cleaning up (seconds).
API_TIMEOUT = 30.0
_STDERR_TAIL = 40  # lines of stderr kept for error messages
_LEVELS = {name: getattr(logging, name.upper()) for name in ("debug", "info", "warning", "error")}
_LEVELS["critical"] = logging.CRITICAL
_HOST_IDS = ("run_id", "task_name", "attempt", "worker_id", "container_id", "trace_id", "span_id")


class Box:
    """A started container with its attached stream. Made by :meth:`start`."""

    def __init__(
        self,
        docker: aiodocker.Docker,
        container: DockerContainer,
        stream: Stream,
        limit: int,
        describe: Callable[[], str],
    ) -> None:
        self.docker = docker
        self.container = container
        self.id: str = container.id
        self.stream = stream
        self.tasks = 0  # calls served
        self.broken = False  # a failure happened: never reuse it
        self._frames = FrameReader(limit)
        self._ready: collections.deque[tuple[FrameKind, bytes]] = collections.deque()
        self._stderr = bytearray()
        self._ended: str | None = None  # the last call-end marker read on stderr
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=_STDERR_TAIL)
        self._write_lock = anyio.Lock()
        self._describe = describe
        self.log: structlog.stdlib.BoundLogger = get_logger("container", container_id=self.id[:12])

    @classmethod
    async def start(
        cls,
        docker: aiodocker.Docker,
        config: dict[str, Any],
        name: str,
        *,
        limit: int,
        describe: Callable[[], str],
        on_created: Callable[[str], None],
    ) -> Box:
        """Create, attach and start a container; ``on_created(id)`` once it exists.

        Raises:
            ImageNotFoundError, BackendUnavailableError, ContainerError: see
            :func:`~._docker_errors.engine_error`.
        """
        from aiodocker.stream import Stream
        from yarl import URL

        # Shielded: once the engine created the container we must learn its id,
        # or nobody could remove it. Bounded by API_TIMEOUT.
        with anyio.CancelScope(shield=True):
            try:
                with anyio.fail_after(API_TIMEOUT):
                    container = await docker.containers.create(config, name=name)
            except BaseException as exc:
                raise engine_error(exc, describe(), image=str(config["Image"])) from exc
            on_created(container.id)
        query: dict[str, str | int] = {
            "stdin": 1,
            "stdout": 1,
            "stderr": 1,
            "stream": 1,
            "logs": 0,
            "detachKeys": "",
        }

        async def setup() -> tuple[URL, bytes | None, bool]:
            return URL(f"containers/{container.id}/attach").with_query(query), None, False

        stream = Stream(docker, setup, None)
        box = cls(docker, container, stream, limit, describe)
        try:
            await stream._init()  # the attach request, before the start
            await container.start()
        except BaseException as exc:
            # Cancelled or failed before the caller holds the box: remove it here.
            box.broken = True
            await box.remove()
            raise engine_error(exc, describe(), image=str(config["Image"])) from exc
        return box

    async def send(self, kind: FrameKind, body: bytes) -> None:
        async with self._write_lock:
            await self.stream.write_in(frame(kind, body))

    async def next_frame(self, log: structlog.stdlib.BoundLogger) -> tuple[FrameKind, bytes] | None:
        """The next frame the container wrote; None when its output ended.

        Lines it writes on stderr meanwhile are forwarded to ``log``.
        """
        while not self._ready:
            message = await self.stream.read_out()
            if message is None:
                self._flush_stderr(log, final=True)
                return None
            if message.stream == 2:
                self._stderr += message.data
                self._flush_stderr(log)
                continue
            self._ready.extend(self._frames.feed(message.data))
            if self._frames.dropped:
                sizes, self._frames.dropped = self._frames.dropped, []
                log.warning("container spans dropped: the frame is over the size limit", size=sizes)
        return self._ready.popleft()

    def _flush_stderr(self, log: structlog.stdlib.BoundLogger, *, final: bool = False) -> None:
        buffer = self._stderr
        while True:
            end = buffer.find(b"\n")
            if end < 0:
                if not final or not buffer:
                    return
                end = len(buffer)
            line = buffer[:end].decode("utf-8", errors="replace").rstrip("\r")
            del buffer[: end + 1]
            if is_stderr_end(line):
                self._ended = line
            elif line:
                self.stderr_tail.append(line)
                _forward(log, line)

    async def finish_stderr(self, key: bytes, log: structlog.stdlib.BoundLogger) -> None:
        """Forward what the call signed with ``key`` wrote on stderr, up to its end
        marker (it may come after the result: Docker reads the two streams apart), or
        to the end of the container's output. The caller bounds the wait (an image of
        an aioflow that writes no marker)."""
        marker = stderr_end(key)
        while self._ended != marker:
            message = await self.stream.read_out()
            if message is None:
                self._flush_stderr(log, final=True)
                return  # it ended: all of it was read
            if message.stream == 2:
                self._stderr += message.data
                self._flush_stderr(log)
            else:
                self._ready.extend(self._frames.feed(message.data))

    async def exit_error(self, memory: str | None) -> AioflowError:
        """Why the container's output ended before a result: its exit, as an error."""
        state: dict[str, Any] = {}
        with anyio.CancelScope(shield=True), anyio.move_on_after(API_TIMEOUT):
            try:
                await self.container.wait(timeout=API_TIMEOUT)
                info = await self.container.show()
                state = info.get("State", {})
            except Exception as exc:  # the engine went away as well
                error = engine_error(exc, self._describe(), image=None)
                assert isinstance(error, AioflowError)
                return error
        code = state.get("ExitCode")
        tail = "\n".join(self.stderr_tail)
        if state.get("OOMKilled") or code == 137:
            return memory_error(
                self._describe(), code, memory, oom=bool(state.get("OOMKilled")), stderr=tail
            )
        return ContainerError(
            f"{self._describe()} exited with status {code} before sending its result"
            + (f"; the end of its stderr:\n{tail}" if tail else " (its stderr was empty)"),
            exit_code=code if isinstance(code, int) else None,
            stderr=tail,
        )

    async def remove(self) -> None:
        """Kill and remove the container (shielded, bounded); never raises."""
        with anyio.CancelScope(shield=True):
            with contextlib.suppress(Exception):  # already closed by the engine's side
                await self.stream.close()
            try:
                with anyio.fail_after(API_TIMEOUT):
                    await self.container.delete(force=True, v=True)
            except Exception as exc:
                if getattr(exc, "status", None) != 404:  # 404: already gone
                    self.log.warning("container not removed", error=str(exc))


def _forward(log: structlog.stdlib.BoundLogger, line: str) -> None:
    """One stderr line: aioflow's JSON log lines keep their level and fields."""
    if line.startswith("{"):
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if isinstance(record, dict) and isinstance(record.get("event"), str):
            level = _LEVELS.get(str(record.pop("level", "info")).lower(), logging.INFO)
            event = record.pop("event")
            record.pop("timestamp", None)
            # Bound on ``log`` already: the task's ids as the handler knows them (the
            # worker's id, and the host's span, not the container's: its spans come
            # back with new ids).
            for key in _HOST_IDS:
                record.pop(key, None)
            log.log(level, event, source="container", **record)
            return
    log.info("container output", line=line)


async def read_until_result(
    box: Box,
    log: structlog.stdlib.BoundLogger,
    serve: Callable[[bytes], Coroutine[Any, Any, None]],
    tg: anyio.abc.TaskGroup,
    on_spans: Callable[[bytes], None] | None = None,
) -> bytes | None:
    """Serve the container's requests until it sends its result (None: it ended first).

    A SPANS frame goes to ``on_spans`` (dropped, and logged, without one or when a
    second one comes for the same call).
    """
    spans_seen = False
    while True:
        item = await box.next_frame(log)
        if item is None:
            return None
        kind, body = item
        if kind is FrameKind.RESULT:
            return body
        if kind is FrameKind.REQUEST:
            tg.start_soon(serve, body)
            continue
        if kind is FrameKind.SPANS:
            if on_spans is None or spans_seen:
                log.warning("container spans dropped: not expected", size=len(body))
            else:
                on_spans(body)
            spans_seen = True
            continue
        raise SerializationError(
            f"unexpected {kind.name} frame from a container",
            hint="Run the same aioflow version in the image as outside it.",
        )
