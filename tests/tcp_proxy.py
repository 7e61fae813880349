"""A TCP proxy on 127.0.0.1 for fault tests: it forwards every connection to a target
port, and on request severs them all or holds back what a client sends.

Usage (inside a task group)::

    proxy = TcpProxy(target_port)
    await tg.start(proxy.serve)
    proxy.port                  # point the client here
    proxy.hold(b"SUBSCRIBE")    # client bytes containing it wait for release()
    proxy.sever()               # every open connection is closed (the client sees EOF)
    await proxy.held.wait()     # a held chunk arrived (it is not forwarded yet)
    proxy.release()
    seen = proxy.watch(b"HMGET")  # an event: set once client bytes containing it pass
    proxy.drop(b"message")      # server bytes containing it are thrown away (counted)

Holding works on the chunks the proxy reads: a marker split across two reads is not
seen. Redis commands of a client are small and written at once, which is all the
tests need.
"""

from __future__ import annotations

import contextlib

import anyio
import anyio.abc

__all__ = ["TcpProxy"]


class TcpProxy:
    """See the module documentation."""

    def __init__(self, target_port: int, *, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self.connections = 0
        self.held = anyio.Event()
        self._marker: bytes | None = None
        self._released = anyio.Event()
        self._scopes: set[anyio.CancelScope] = set()
        self._watches: dict[bytes, anyio.Event] = {}
        self._drop: bytes | None = None
        self.dropped = 0

    async def serve(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        """Accept connections until cancelled (``await tg.start(proxy.serve)``)."""
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
        async with listener:
            self.port = listener.extra(anyio.abc.SocketAttribute.local_port)
            task_status.started()
            await listener.serve(self._handle)

    def hold(self, marker: bytes) -> None:
        """From now on, client bytes containing ``marker`` wait for :meth:`release`."""
        self._marker = marker
        self.held = anyio.Event()
        self._released = anyio.Event()

    def watch(self, marker: bytes) -> anyio.Event:
        """An event set once client bytes containing ``marker`` are forwarded."""
        event = self._watches[marker] = anyio.Event()
        return event

    def drop(self, marker: bytes | None) -> None:
        """From now on, server bytes containing ``marker`` never reach the client."""
        self._drop = marker

    def release(self) -> None:
        self._marker = None
        self._released.set()

    def sever(self) -> None:
        """Close every open connection (both ends)."""
        for scope in list(self._scopes):
            scope.cancel()

    async def _handle(self, client: anyio.abc.SocketStream) -> None:
        self.connections += 1
        with anyio.CancelScope() as scope:
            self._scopes.add(scope)
            try:
                async with (
                    client,
                    await anyio.connect_tcp(*self.target) as server,
                    anyio.create_task_group() as tg,
                ):
                    tg.start_soon(self._pump, client, server, True, tg.cancel_scope)
                    tg.start_soon(self._pump, server, client, False, tg.cancel_scope)
            finally:
                self._scopes.discard(scope)

    async def _pump(
        self,
        source: anyio.abc.SocketStream,
        sink: anyio.abc.SocketStream,
        from_client: bool,
        both: anyio.CancelScope,
    ) -> None:
        with contextlib.suppress(anyio.EndOfStream, anyio.BrokenResourceError, OSError):
            async for chunk in source:
                if not from_client and self._drop is not None and self._drop in chunk:
                    self.dropped += 1
                    continue
                marker = self._marker
                if from_client and marker is not None and marker in chunk:
                    self.held.set()
                    await self._released.wait()
                await sink.send(chunk)
                if from_client:
                    for watched, event in list(self._watches.items()):
                        if watched in chunk:
                            del self._watches[watched]
                            event.set()
        both.cancel()  # one side closed: close the other
