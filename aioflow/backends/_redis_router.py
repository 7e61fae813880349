"""One pub/sub channel for all the runs a coordinator (a backend object) drives.

The router subscribes its own channel (``P:coordinator:<random>``) once, on one
long-lived connection, before any run submits anything; each call names it as the
channel its outcome is announced on (``reply`` in the signed call), so a run costs
no subscription of its own. One task reads the connection and hands each message
(msgpack ``[kind, run id, ...]``) to its run's inbox. After the connection was lost
and redis-py re-subscribed it, every run is told to reconcile: messages sent
meanwhile are gone, the outcomes they announced are not (they are stored).

The runs are told once the server confirmed the subscription again, not when the
new connection is made: redis-py sends ``SUBSCRIBE`` on connecting, and a run that
read the stored outcomes before the server handled it could miss an outcome stored
and announced in between (neither read nor heard: the run waited for ever).
"""

from __future__ import annotations

import contextlib
import secrets
from typing import Any

import anyio
import anyio.abc
import msgpack  # type: ignore[import-untyped]

from ..observability.logging import get_logger

__all__ = ["Router"]

_CONNECTION_ERRORS: tuple[type[BaseException], ...] = (OSError,)
try:
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import RedisError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    _CONNECTION_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError)
except ImportError:  # pragma: no cover - imported through aioflow.backends.redis
    raise


class Inbox:
    """What a run receives: raw messages, and whether it must reconcile (``stale``)."""

    __slots__ = ("heard", "messages", "stale", "wakeup")

    # ``stale``: the run must read its stored outcomes (the connection came back, or
    # it heard nothing for a while), since messages may have been missed.

    def __init__(self) -> None:
        self.messages: list[list[Any]] = []
        self.heard = 0  # messages received so far
        self.stale = False
        self.wakeup: anyio.Event | None = None

    def wake(self) -> None:
        event = self.wakeup
        if event is not None:
            self.wakeup = None
            event.set()

    async def wait(self, timeout: float) -> None:  # noqa: ASYNC109
        """Until something arrives (or ``timeout`` seconds pass)."""
        if self.messages or self.stale:
            return
        event = self.wakeup = anyio.Event()
        with anyio.move_on_after(timeout):
            await event.wait()


class Router:
    """Reads one pub/sub connection; see the module documentation."""

    def __init__(self, client: Any, prefix: str) -> None:
        self._client = client
        self._pubsub: Any = None
        self._inboxes: dict[bytes, Inbox] = {}
        self._home = f"{prefix}:coordinator:{secrets.token_hex(6)}".encode()
        self._log = get_logger("backend.redis.router")
        self.failure: BaseException | None = None
        self.running = False

    async def run(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        """The reader task: started with ``await tg.start(router.run)``."""
        self._pubsub = self._client.pubsub()
        try:
            # A channel of its own, so that the connection exists before any run.
            await self._pubsub.subscribe(self._home)
            self.running = True
            task_status.started()
            await self._read()
        finally:
            self.running = False
            with anyio.CancelScope(shield=True):
                pubsub, self._pubsub = self._pubsub, None
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()
            for inbox in self._inboxes.values():
                inbox.stale = True
                inbox.wake()

    async def _read(self) -> None:
        pubsub = self._pubsub
        backoff = 0.05
        while True:
            try:
                message = await pubsub.get_message(timeout=None)
            except _CONNECTION_ERRORS as exc:
                # The next read connects again (and redis-py subscribes again).
                self._log.warning("pub/sub connection lost: reconnecting", error=str(exc))
                await anyio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
                continue
            backoff = 0.05
            if message is None:
                continue
            if message["type"] != "message":
                if message["type"] == "subscribe" and message["channel"] == self._home:
                    # Subscribed (again): from now on nothing announced is missed,
                    # what was announced before is stored. The first time, no run
                    # is registered yet.
                    self._reconnect_all()
                continue
            try:
                body = msgpack.unpackb(message["data"], raw=True, use_list=True)
                inbox = self._inboxes.get(body[1])
            except Exception:  # not ours: whoever sent it, it says nothing
                self._log.warning("malformed message on the coordinator's channel ignored")
                continue
            if inbox is not None:
                inbox.messages.append(body)
                inbox.heard += 1
                inbox.wake()

    def _reconnect_all(self) -> None:
        for inbox in self._inboxes.values():
            inbox.stale = True
            inbox.wake()

    @property
    def channel(self) -> bytes:
        """The channel the runs' outcomes are published on."""
        return self._home

    def register(self, run_id: bytes) -> Inbox:
        """The inbox of run ``run_id`` (messages naming it go there)."""
        inbox = self._inboxes[run_id] = Inbox()
        return inbox

    def unregister(self, run_id: bytes) -> None:
        self._inboxes.pop(run_id, None)
