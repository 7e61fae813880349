"""The Redis backend: a run's tasks execute on workers, anywhere Redis reaches.

``await aioflow.run(wf, backend="redis://host:6379/0")`` makes the caller's process
the run's *coordinator*: its scheduler decides everything, as in-process, and sends
each execution as a signed ``TaskCall`` to a Redis stream (one per queue and
priority level). Workers (``aioflow worker redis://host:6379/0 --import app.flows``)
read the streams through one consumer group, execute, store each signed outcome in
the run's outcome hash (the first outcome of a call wins) and announce a batch of
them in one ``PUBLISH`` on the run's channel, which the coordinator subscribed to
before it submitted anything. Key layout, messages and scripts:
:mod:`aioflow.backends._redis_layout`; the workers' side:
:mod:`aioflow.backends._redis_worker`; the whole story: ``docs/distributed.md``.

Import it from here (``from aioflow.backends.redis import RedisBackend``) or name it
by URL: importing :mod:`aioflow` never imports redis.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import math
import secrets
import time
import urllib.parse
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import AsyncExitStack
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeVar

import anyio
import msgpack  # type: ignore[import-untyped]

from .._redisutil import check_client, client_url, failure, redact_url, url_password
from ..errors import (
    AioflowError,
    BackendUnavailableError,
    ConfigurationError,
    MissingDependencyError,
    QueueFullError,
    SerializationError,
)
from ..observability.logging import get_logger
from ..serialization import (
    Keyring,
    PayloadKind,
    TaskResult,
    decode_result,
    encode_result,
    encode_value,
)
from . import _redis_admin as _admin
from . import _redis_progress as _progress
from ._calls import CallEncoder, apply_result, refused
from ._redis_admin import DeadLetter, WorkerInfo
from ._redis_layout import (
    DROP_UNDELIVERED,
    ENQUEUE,
    GROUP,
    Keys,
    Scripts,
    stream_field,
)
from ._redis_progress import ProgressPublisher
from ._redis_router import Inbox, Router
from .base import Backend, Execution, RunLink, Session, SessionStatistics, Status

if TYPE_CHECKING:
    from .._progress import ProgressSnapshot
    from ..channels import Channel
    from ..stores import RunStore

try:
    import redis.asyncio as aioredis
    from redis.asyncio.retry import Retry
    from redis.backoff import ExponentialWithJitterBackoff
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import RedisError, ResponseError
    from redis.exceptions import TimeoutError as RedisTimeoutError
except ImportError as exc:  # pragma: no cover - the redis extra is part of dev
    raise MissingDependencyError("the Redis backend", "redis", module="redis.asyncio") from exc

__all__ = ["DeadLetter", "RedisBackend", "WorkerInfo"]

T = TypeVar("T")

_log = get_logger("backend.redis")

#: Entries per enqueue script call (one script call blocks the server while it runs).
_ENQUEUE_CHUNK = 500
_CONNECTION_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError)
# Seconds without a message, tasks out, after which a run reads the stored outcomes
# anyway (doubling while it stays quiet, up to _QUIET_MAX).
_QUIET = 5.0
_QUIET_MAX = 60.0


def _positive(value: object, name: str, *, optional: bool = False) -> Any:
    if value is None and optional:
        return None
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise ConfigurationError(f"{name} must be a positive number, got {value!r}")
    if not value > 0 or math.isinf(value):
        raise ConfigurationError(f"{name} must be a positive number, got {value!r}")
    return value


def _int_at_least(value: object, name: str, low: int, *, optional: bool = False) -> Any:
    if value is None and optional:
        return None
    if type(value) is not int or value < low:
        raise ConfigurationError(f"{name} must be an int >= {low}, got {value!r}")
    return value


_URL_OPTIONS = {
    "prefix": str,
    "visibility_timeout": float,
    "max_deliveries": int,
    "max_queue_length": int,
    "queue_full": str,
    "result_ttl": float,
    "cancel_grace": float,
    "connect_timeout": float,
    "timeout": float,
    "retries": int,
    "max_connections": int,
}


def options_from_url(url: str) -> tuple[str, dict[str, Any]]:
    """Split the backend's own options (``?prefix=x&max_deliveries=3``) off a URL.

    Raises:
        ConfigurationError: an unknown option or a value of the wrong type.
    """
    parts = urllib.parse.urlsplit(url)
    options: dict[str, Any] = {}
    rest: list[tuple[str, str]] = []
    for name, value in urllib.parse.parse_qsl(parts.query, keep_blank_values=True):
        kind = _URL_OPTIONS.get(name)
        if kind is None:
            if name.startswith("ssl_"):
                rest.append((name, value))  # redis-py's own TLS options (rediss://)
                continue
            raise ConfigurationError(
                f"unknown Redis backend URL option {name!r}",
                hint=f"The options are {', '.join(sorted(_URL_OPTIONS))} (and ssl_* for "
                "rediss://); see docs/distributed.md.",
            )
        try:
            options[name] = kind(value)
        except ValueError:
            raise ConfigurationError(
                f"backend URL option {name}={value!r} is not a {kind.__name__}"
            ) from None
    clean = urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(rest)))
    return clean, options


#: Seconds outcomes, run state, channel keys and finished runs' journals are kept.
DEFAULT_RESULT_TTL = 86400.0


class RedisBackend(Backend):
    """Tasks run on workers that serve Redis streams; see the module documentation.

    Args:
        url_or_client: a ``redis://`` / ``rediss://`` URL (``redis://user:password@
            host:6379/0``; the password is never shown), or a ``redis.asyncio.Redis``
            made with ``decode_responses=False`` (the caller keeps it and closes it).
        prefix: namespace of every key; backends with different prefixes on one
            server are independent (their workers too).
        keyring: signs calls and verifies results (default: ``AIOFLOW_SECRET_KEY``;
            a local per-user key is refused: other machines cannot share it).
        visibility_timeout: seconds an entry may go without its worker's heartbeat
            before a live worker reclaims it (workers heartbeat every third of it).
        max_deliveries: an entry delivered more often than this (its workers kept
            dying) goes to the dead-letter stream; its task fails with
            :class:`~aioflow.errors.DeadLetteredError`.
        max_queue_length: most entries a queue holds (waiting or running); None: no
            bound.
        queue_full: ``"wait"`` (the coordinator waits for room) or ``"raise"`` (the
            tasks that found no room fail with :class:`QueueFullError`).
        result_ttl: seconds outcomes, run state and the channel's keys are kept.
        cancel_grace: seconds a run that ends early waits for its cancelled tasks to
            report back from the workers.
        connect_timeout, timeout: seconds to connect, and to wait for a reply.
        retries: retries of a command after a connection error (exponential backoff
            with jitter).
        max_connections: connections of the pool (a command waits for a free one).

    Raises:
        ConfigurationError: a bad option.
    """

    schemes: ClassVar[tuple[str, ...]] = ("redis", "rediss")
    remote: ClassVar[bool] = True

    def __init__(
        self,
        url_or_client: str | aioredis.Redis,
        *,
        prefix: str = "aioflow",
        keyring: Keyring | None = None,
        visibility_timeout: float = 15.0,
        max_deliveries: int = 5,
        max_queue_length: int | None = None,
        queue_full: Literal["wait", "raise"] = "wait",
        result_ttl: float = DEFAULT_RESULT_TTL,
        cancel_grace: float = 10.0,
        connect_timeout: float = 5.0,
        timeout: float = 10.0,
        retries: int = 5,
        max_connections: int = 64,
    ) -> None:
        if (
            not isinstance(prefix, str)
            or not 0 < len(prefix) <= 100
            or any(c in prefix for c in "{} ")
        ):
            raise ConfigurationError(
                f"prefix must be a short str without braces or spaces, got {prefix!r}"
            )
        if queue_full not in ("wait", "raise"):
            raise ConfigurationError(f"queue_full must be 'wait' or 'raise', got {queue_full!r}")
        self.prefix = prefix
        self.keys = Keys(prefix)
        self.visibility_timeout = float(_positive(visibility_timeout, "visibility_timeout"))
        self.max_deliveries = _int_at_least(max_deliveries, "max_deliveries", 1)
        self.max_queue_length = _int_at_least(
            max_queue_length, "max_queue_length", 1, optional=True
        )
        self.queue_full = queue_full
        self.result_ttl = float(_positive(result_ttl, "result_ttl"))
        self.cancel_grace = float(_positive(cancel_grace, "cancel_grace"))
        self.connect_timeout = float(_positive(connect_timeout, "connect_timeout"))
        self.timeout = float(_positive(timeout, "timeout"))
        self.retries = _int_at_least(retries, "retries", 0)
        self.max_connections = _int_at_least(max_connections, "max_connections", 4)
        self._keyring = keyring
        self._password: str | None = None
        self._owned = True
        self._opened = 0
        self._stack: AsyncExitStack | None = None
        self._tg: anyio.abc.TaskGroup | None = None
        self._router: Router | None = None
        self._store: RunStore | None = None
        self._streams: set[bytes] = set()  # streams known to exist (registered)
        self._publishers: set[ProgressPublisher] = set()  # runs' progress, being written
        if isinstance(url_or_client, str):
            if url_or_client.partition("://")[0].lower() not in self.schemes:
                raise ConfigurationError(
                    f"a Redis backend URL starts with redis:// or rediss://, got "
                    f"{redact_url(url_or_client)!r}",
                    hint="For example redis://127.0.0.1:6379/0.",
                )
            self._where = redact_url(url_or_client)
            self._password = url_password(url_or_client)
            try:
                # A blocking pool: past max_connections a command waits for a free
                # connection instead of failing (many tasks writing the channel).
                pool = aioredis.BlockingConnectionPool.from_url(
                    url_or_client,
                    max_connections=self.max_connections,
                    timeout=max(30.0, self.timeout),
                    decode_responses=False,
                    socket_connect_timeout=self.connect_timeout,
                    socket_timeout=self.timeout,
                    socket_keepalive=True,
                    retry=Retry(ExponentialWithJitterBackoff(base=0.02, cap=2.0), self.retries),
                    retry_on_error=[RedisConnectionError, RedisTimeoutError],
                    health_check_interval=30,
                )
                self.client: aioredis.Redis = aioredis.Redis(connection_pool=pool)
            except (ValueError, RedisError) as exc:
                raise ConfigurationError(
                    f"bad Redis URL {self._where!r}: {exc}",
                    hint="For example redis://user:password@host:6379/0.",
                ) from None
        elif isinstance(url_or_client, aioredis.Redis):
            check_client(url_or_client, "RedisBackend", ConfigurationError)
            self.client = url_or_client
            self._where = client_url(url_or_client)
            self._owned = False
        else:
            raise ConfigurationError(
                f"RedisBackend takes a redis:// URL or a redis.asyncio.Redis, got "
                f"{type(url_or_client).__name__}"
            )
        self.scripts = Scripts(enqueue=ENQUEUE, drop=DROP_UNDELIVERED)

    @classmethod
    def from_url(cls, url: str, **overrides: Any) -> RedisBackend:
        """The backend a URL names, its options taken from the query string."""
        clean, options = options_from_url(url)
        options.update(overrides)
        return cls(clean, **options)

    # --- what runs get from it ---------------------------------------------------------

    @property
    def keyring(self) -> Keyring:
        """The keyring calls are signed with (``AIOFLOW_SECRET_KEY`` unless given)."""
        if self._keyring is None:
            self._keyring = Keyring.from_env()
        return self._keyring

    def describe(self) -> str:
        suffix = "" if self.prefix == "aioflow" else f" (prefix {self.prefix!r})"
        return f"{self._where}{suffix}"

    def __repr__(self) -> str:
        return f"RedisBackend({self._where!r}, prefix={self.prefix!r})"

    def run_channel(self, run_id: str, keyring: Keyring) -> Channel:
        from ..channels.redis import RedisChannel

        return RedisChannel(self.client, run_id, keyring, prefix=self.prefix, ttl=self.result_ttl)

    def run_instruments(self, run_id: str, workflow: str) -> Sequence[object]:
        """A :class:`~aioflow.backends._redis_progress.ProgressPublisher`: the run's
        progress, for ``aioflow watch`` (its writer runs in this backend's task group)."""
        return (ProgressPublisher(self, run_id, workflow),)

    def _start_publisher(self, publisher: ProgressPublisher) -> bool:
        """Run ``publisher``'s writer in the backend's task group (False: not open)."""
        if self._tg is None:
            return False
        self._publishers.add(publisher)
        self._tg.start_soon(publisher.run)
        return True

    def run_store(self) -> RunStore:
        """The backend's journal store: one for all its runs (it opens on first use,
        shares the backend's client, and closes with the backend)."""
        if self._store is None or self._store.closed:
            from ..stores.redis import RedisStore

            self._store = RedisStore(self.client, prefix=self.prefix, retention=self.result_ttl)
        return self._store

    def error(self, exc: BaseException, doing: str) -> BackendUnavailableError:
        """A Redis failure as the error aioflow raises (the password masked)."""
        text, hint = failure(
            exc,
            where=self._where,
            password=self._password,
            connection=isinstance(exc, _CONNECTION_ERRORS),
            doc="docs/distributed.md",
        )
        return BackendUnavailableError(f"Redis at {self._where}: {doing} failed: {text}", hint=hint)

    # --- lifecycle ---------------------------------------------------------------------

    async def open(self) -> None:
        self._opened += 1
        if self._opened > 1:
            return
        try:
            await self.scripts.load(self.client)  # also: the server is there
        except (RedisError, OSError) as exc:
            self._opened = 0
            raise self.error(exc, "connecting") from exc

    async def aclose(self) -> None:
        if self._opened == 0:
            return
        self._opened -= 1
        if self._opened == 0:
            store, self._store = self._store, None
            if store is not None:
                await store.aclose()
        if self._opened == 0 and self._owned:
            # Shielded: closed by a cancelled caller, the pool must still let go of
            # its connections (else they leak, open, until garbage collection).
            with anyio.CancelScope(shield=True), contextlib.suppress(RedisError, OSError):
                await self.client.aclose()
                await self.client.connection_pool.disconnect()

    async def __aenter__(self) -> RedisBackend:
        # ``async with backend:`` also holds the task that reads the runs' outcomes
        # (one pub/sub connection for every run of this process; see _redis_router).
        await self.open()
        if self._opened == 1:
            stack = AsyncExitStack()
            try:
                self._tg = await stack.enter_async_context(anyio.create_task_group())
            except BaseException:
                await self.aclose()
                raise
            self._stack = stack
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if self._opened == 1 and self._stack is not None:
                if self._publishers:
                    # The runs' last progress snapshots are written before the task
                    # group goes (run() returns after them); bounded.
                    with anyio.CancelScope(shield=True), anyio.move_on_after(self.timeout):
                        for publisher in list(self._publishers):
                            await publisher.close()
                stack, self._stack = self._stack, None
                if self._tg is not None:
                    self._tg.cancel_scope.cancel()
                self._tg = None
                self._router = None
                await stack.__aexit__(exc_type, exc, tb)
        finally:
            await self.aclose()

    async def router(self) -> Router:
        """The pub/sub router of this backend's runs (started on first use)."""
        router = self._router
        if router is None or not router.running:
            if self._tg is None:
                raise ConfigurationError(
                    f"the Redis backend {self.describe()} is not open",
                    hint="Use `async with backend:` or pass the URL to run().",
                )
            router = self._router = Router(self.client, self.prefix)
            await self._tg.start(router.run)
            with contextlib.suppress(RedisError, OSError):
                if not await self.client.zcount(self.keys.workers, time.time(), "+inf"):
                    _log.warning(
                        "no live worker on this backend: tasks wait in their queues "
                        "until one starts (aioflow worker URL --import MODULE)",
                        backend=self.describe(),
                    )
        return router

    async def ensure_stream(self, queue: str, priority: int) -> bytes:
        """The stream of (queue, priority), created with its consumer group if new."""
        key = self.keys.stream(queue, priority)
        if key in self._streams:
            return key
        client = self.client
        try:
            await client.xgroup_create(key, GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        if await client.hsetnx(self.keys.queues, key, stream_field(queue, priority)):
            # Workers read the streams they know: tell them of a new one.
            await client.publish(self.keys.control, msgpack.packb(["s", key]))
        self._streams.add(key)
        return key

    # --- operating it ------------------------------------------------------------------

    async def workers(self) -> list[WorkerInfo]:
        """The live workers (heartbeat not expired) and what they run."""
        return await self._admin("listing workers", _admin.workers(self))

    async def dead_letters(self, limit: int | None = 100) -> list[DeadLetter]:
        """The dead-lettered entries, oldest first."""
        return await self._admin("reading the dead-letter stream", _admin.dead_letters(self, limit))

    async def retry_dead_letters(self, ids: Sequence[str] | None = None) -> int:
        """Put dead-lettered entries (all, or ``ids``) back on their queues."""
        chosen = None if ids is None else list(ids)
        return await self._admin("retrying dead letters", _admin.retry(self, chosen))

    async def purge_dead_letters(self, ids: Sequence[str] | None = None) -> int:
        """Delete dead-lettered entries (all, or ``ids``); how many went."""
        chosen = None if ids is None else list(ids)
        return await self._admin("purging dead letters", _admin.purge(self, chosen))

    async def cancel_run(self, run_id: str, reason: str = "cancelled by request") -> None:
        """Cancel a run from any process (``aioflow cancel RUN_ID``)."""
        await self._admin("cancelling the run", _admin.cancel_run(self, run_id, reason))

    async def follow_progress(self, run_id: str) -> AsyncIterator[ProgressSnapshot]:
        """The progress of run ``run_id`` as its coordinator publishes it
        (``aioflow watch``): the latest snapshot, then each new one, until the final
        one (its ``status`` is no longer ``"running"``).

        Raises:
            ConfigurationError: no progress of such a run here (a wrong id or prefix,
                or a run that ended more than ``result_ttl`` ago).
            RunStateError: the coordinator stopped publishing while the run ran (its
                process died; ``aioflow resume`` continues the run).
            BackendUnavailableError: Redis failed.
        """
        snapshots = _progress.follow(self, run_id)
        try:
            async for snapshot in snapshots:
                yield snapshot
        except (RedisError, OSError) as exc:
            raise self.error(exc, "reading the run's progress") from exc
        finally:
            await snapshots.aclose()

    async def _admin(self, doing: str, work: Coroutine[Any, Any, T]) -> T:
        try:
            return await work
        except (RedisError, OSError) as exc:
            raise self.error(exc, doing) from exc

    async def serve(self, worker: Any, *, queues: Sequence[str], grace: float) -> None:
        from ._redis_worker import Serving

        if worker._keyring is None and self._keyring is not None:
            worker._keyring = self._keyring
        worker.keyring.require_production(backend=self.describe())
        try:
            await Serving(self, worker, list(queues), grace).serve()
        except (RedisError, OSError) as exc:
            raise self.error(exc, "serving the queues") from exc

    @contextlib.asynccontextmanager
    async def session(self, link: RunLink) -> AsyncIterator[Session]:
        keyring = link.keyring if link.keyring is not None else self.keyring
        keyring.require_production(backend=self.describe())
        router = await self.router()
        session = RedisSession(link, self, keyring, router)
        publisher = next((p for p in self._publishers if p.run_id == link.run_id), None)
        if publisher is not None:
            publisher.session = session  # "running": what the session has out
            session.on_sent = publisher.touch
        try:
            await session.start()
        except (RedisError, OSError) as exc:
            await session.close()
            raise self.error(exc, "subscribing to the run's outcomes") from exc
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(session.write_loop)
                try:
                    yield session
                finally:
                    with anyio.CancelScope(shield=True):
                        await session.settle()
                        # Let a write in flight end: cancelled mid-reply, redis-py
                        # would drop its connection (a new one costs a handshake).
                        with anyio.move_on_after(self.timeout):
                            await session.stop_writing()
                    tg.cancel_scope.cancel()
        finally:
            if publisher is not None:
                publisher.session = None
            with anyio.CancelScope(shield=True):
                await session.close()


class RedisSession(Session):
    """One run's link to Redis: submits to the streams, receives outcomes by pub/sub."""

    def __init__(
        self, link: RunLink, backend: RedisBackend, keyring: Keyring, router: Router
    ) -> None:
        super().__init__(link)
        self._router = router
        self._inbox = Inbox()
        self.backend = backend
        self.client = backend.client
        self._keyring = keyring
        self._keys = backend.keys
        run_id = link.run_id
        self._encoder = CallEncoder(run_id, link.workflow, keyring)
        self._run = run_id.encode()
        self._out = self._keys.run(run_id, "out")
        self._res = self._keys.run(run_id, "res")
        self._reply = router.channel
        self._first: Any = None  # commands sent with the first submission
        self._names: set[str] = set()  # node names workers know of (P:run:{R}:nodes)
        self._new_names: list[str] = []  # dynamic tasks: to add there
        # Results of groups finished since the last send ([name, payload] ...): pushed
        # to P:run:{R}:res before their successors' entries, for ctx.result on workers.
        self._new_results: list[bytes] = []
        self._cancelled_key = self._keys.run(run_id, "cancelled")
        self._nonce = secrets.token_hex(4)  # call ids differ between coordinators of a run
        # Workers announce starts only when somebody here wants them (not a tracer).
        self._notify = link.on_started is not None and link.remote_starts
        self._outbox: list[tuple[bytes, bytes, Execution]] = []  # (stream, call id, ex)
        self._outbox_ready = anyio.Event()
        self._controls: list[bytes] = []  # control messages to publish
        self._waiting: dict[bytes, Execution] = {}  # call id -> sent, not back yet
        self._done: list[Execution] = []
        self._halted = False
        self._limit = link.max_concurrency
        self._parked: list[tuple[int, int, tuple[bytes, bytes, Execution]]] = []
        self._seq = 0
        self._closing = False
        self._writer_done = anyio.Event()
        self.on_sent: Callable[[], None] | None = None  # after each batch sent

    # --- setting up --------------------------------------------------------------------

    async def start(self) -> None:
        """Register for the run's outcomes (before anything is submitted) and prepare
        what the first submission sends along."""
        self._inbox = self._router.register(self._run)
        # Where `aioflow cancel RUN_ID` finds this coordinator.
        pipe_first = self.client.pipeline(transaction=False)
        pipe_first.set(
            self._keys.run(self.link.run_id, "coordinator"),
            self._router.channel,
            px=int(self.backend.result_ttl * 1000),
        )
        self._first = pipe_first
        # What workers read of the run goes in the same pipeline, before its first
        # entries: Redis runs a pipeline in order, so it is there before any task.
        view = self.link.view
        pipe = pipe_first
        ttl = int(self.backend.result_ttl * 1000)
        if view.inputs:
            data = encode_value(
                dict(view.inputs), self._keyring, allow_pickle=True, kind=PayloadKind.CHANNEL
            )
            pipe.set(self._keys.run(self.link.run_id, "inputs"), data, px=ttl)
        node_names = getattr(view, "node_names", None)
        if node_names is not None:  # ctx.result tells unknown names from unfinished ones
            names = node_names()
            self._names.update(names)
            nodes = self._keys.run(self.link.run_id, "nodes")
            for start in range(0, len(names), 10_000):
                pipe.rpush(nodes, *names[start : start + 10_000])
            pipe.pexpire(nodes, ttl)
        results = dict(view.results)
        if results:  # a resumed run: what finished before is readable on workers
            args: list[bytes] = []
            for name, value in results.items():
                args += [name.encode(), self._result_payload(name, value)]
            pipe.rpush(self._res, *args)
            pipe.pexpire(self._res, ttl)

    def _result_payload(self, name: str, value: Any) -> bytes:
        return encode_result(
            TaskResult(
                call_id="restored",
                run_id=self.link.run_id,
                task_name=name,
                attempt=1,
                status="succeeded",
                value=value,
            ),
            self._keyring,
        )

    def group_finished(self, name: str, value: Any) -> None:
        # Groups complete here, not on a worker: their results reach the workers as the
        # tasks' do, in the run's result list, before the successors' entries.
        try:
            payload = self._result_payload(name, value)
        except SerializationError as exc:  # too large, say: on workers ctx.result raises
            self._log.warning(
                "a group's result cannot be read on workers", group=name, error=str(exc)
            )
            return
        self._new_results += [name.encode(), payload]

    async def close(self) -> None:
        self._router.unregister(self._run)

    # --- submitting --------------------------------------------------------------------

    def _submit(self, executions: Sequence[Execution]) -> None:
        with self._encoder.batch():  # one submission: one publish span (traced runs)
            self._submit_batch(executions)
        if self._outbox or self._done:
            self._outbox_ready.set()

    def _submit_batch(self, executions: Sequence[Execution]) -> None:
        encoder = self._encoder
        run_id = self.link.run_id
        extra = {"notify": True} if self._notify else None
        keys = self._keys
        for execution in executions:
            if self._halted:
                execution.end_unrun(Status.NOT_STARTED)
                self._done.append(execution)
                continue
            call_id = f"{self._nonce}-{execution.call_id}"
            try:
                payload = encoder.encode(execution, call_id, extra)
            except SerializationError as exc:
                refused(execution, exc, run_id)
                self._done.append(execution)
                continue
            options = execution.task.options
            stream = keys.stream(options.queue, options.priority)
            if execution.name not in self._names:  # a dynamic task
                self._names.add(execution.name)
                self._new_names.append(execution.name)
            execution.handle = payload
            item = (stream, call_id.encode(), execution)
            if self._limit is not None and self._out_count() >= self._limit:
                # Over max_concurrency: held here, highest priority first, until
                # others come back.
                self._seq += 1
                heapq.heappush(self._parked, (-options.priority, self._seq, item))
            else:
                self._outbox.append(item)

    def _out_count(self) -> int:
        return len(self._waiting) + len(self._outbox)

    def _unpark(self) -> None:
        parked = self._parked
        if not parked or self._halted:
            return
        room = (self._limit or 0) - self._out_count()
        while parked and room > 0:
            self._outbox.append(heapq.heappop(parked)[2])
            room -= 1
        self._outbox_ready.set()

    def _cancel(self, execution: Execution) -> bool:
        for i, (_, _, queued) in enumerate(self._outbox):
            if queued is execution:
                del self._outbox[i]
                execution.end_unrun(Status.NOT_STARTED)
                self._done.append(execution)
                self._outbox_ready.set()
                return True
        for i, (_, _, item) in enumerate(self._parked):
            if item[2] is execution:
                self._parked[i] = self._parked[-1]
                self._parked.pop()
                heapq.heapify(self._parked)
                execution.end_unrun(Status.NOT_STARTED)
                self._done.append(execution)
                self._inbox.wake()
                return True
        call_id = f"{self._nonce}-{execution.call_id}"
        self._controls.append(
            msgpack.packb(["c", self.link.run_id, [call_id], execution.cancel_reason, self._nonce])
        )
        self._outbox_ready.set()
        return True

    def _halt(self) -> list[Execution]:
        self._halted = True
        dropped = [execution for _, _, execution in self._outbox]
        dropped += [item[2] for _, _, item in self._parked]
        self._outbox.clear()
        self._parked.clear()
        return dropped

    def out_sample(self, limit: int) -> tuple[int, list[str]]:
        """How many executions are out (handed to the workers, not back), and the
        task names of up to ``limit`` of them."""
        names = [execution.name for execution in itertools.islice(self._waiting.values(), limit)]
        return len(self._waiting), names

    def statistics(self) -> SessionStatistics:
        return SessionStatistics(
            queued=len(self._outbox) + len(self._parked), running=len(self._waiting)
        )

    async def stop_writing(self) -> None:
        """Return once the writer sent what it holds and stopped."""
        self._closing = True
        self._outbox_ready.set()
        await self._writer_done.wait()

    async def write_loop(self) -> None:
        """Send what was submitted, a batch per wake-up (one script call per stream)."""
        try:
            await self._write()
        finally:
            self._writer_done.set()

    async def _write(self) -> None:
        while True:
            await self._outbox_ready.wait()
            self._outbox_ready = anyio.Event()
            if self._closing and not self._controls:
                return  # what was not sent by now never will be (settle() ended it)
            try:
                if self._controls:
                    controls, self._controls = self._controls, []
                    await self._publish_controls(controls)
                if self._outbox:
                    batch, self._outbox = self._outbox, []
                    for _, call_id, execution in batch:
                        self._waiting[call_id] = execution  # out from now on
                    await self._send(batch)
                    if self.on_sent is not None:
                        self.on_sent()
            except (RedisError, OSError) as exc:
                # Retried by redis-py already: the run cannot go on.
                error = self.backend.error(exc, "submitting tasks")
                self._log.error("submitting to Redis failed", error=str(error))
                self._fail_waiting(error)

    async def _publish_controls(self, controls: list[bytes]) -> None:
        pipe = self.client.pipeline(transaction=False)
        for message in controls:
            pipe.publish(self._keys.control, message)
        await pipe.execute()

    async def _send(self, batch: list[tuple[bytes, bytes, Execution]]) -> None:
        by_stream: dict[bytes, list[tuple[bytes, Execution]]] = defaultdict(list)
        for stream, call_id, execution in batch:
            by_stream[stream].append((call_id, execution))
        for items in by_stream.values():
            execution = items[0][1]
            await self.backend.ensure_stream(
                execution.task.options.queue, execution.task.options.priority
            )
        while by_stream:
            full: dict[bytes, list[tuple[bytes, Execution]]] = {}
            pipe, self._first = self._first or self.client.pipeline(transaction=False), None
            if self._new_names:
                names, self._new_names = self._new_names, []
                pipe.rpush(self._keys.run(self.link.run_id, "nodes"), *names)
            if self._new_results:
                results, self._new_results = self._new_results, []
                pipe.rpush(self._res, *results)
                pipe.pexpire(self._res, int(self.backend.result_ttl * 1000))
            head = len(pipe)
            sent: list[tuple[bytes, list[tuple[bytes, Execution]]]] = []
            limit = self.backend.max_queue_length or 0
            for stream, items in by_stream.items():
                length_key = self._keys.queue_of(stream) + b":len"
                for call_id, execution in items:
                    self._waiting[call_id] = execution  # again, after waiting for room
                for start in range(0, len(items), _ENQUEUE_CHUNK):
                    chunk = items[start : start + _ENQUEUE_CHUNK]
                    args: list[Any] = [limit, self._reply]
                    for call_id, execution in chunk:
                        args += [self._run, call_id, execution.handle]
                    self.backend.scripts.queue(pipe, "enqueue", [stream, length_key], args)
                    sent.append((stream, chunk))
            replies = (await self.backend.scripts.execute(self.client, pipe))[head:]
            for (stream, chunk), reply in zip(sent, replies, strict=True):
                added = int(reply[0])
                for (_, execution), entry_id in zip(chunk, reply[2:], strict=False):
                    execution.handle = (stream, entry_id)
                if added < len(chunk):
                    rest = chunk[added:]
                    for call_id, _ in rest:
                        del self._waiting[call_id]
                    full.setdefault(stream, []).extend(rest)
            if not full:
                return
            by_stream = await self._no_room(full)

    async def _no_room(
        self, full: dict[bytes, list[tuple[bytes, Execution]]]
    ) -> dict[bytes, list[tuple[bytes, Execution]]]:
        """Entries that found their queue full: fail them, or wait for room."""
        if self.backend.queue_full == "raise":
            for stream, items in full.items():
                queue = stream.decode().partition("{")[2].partition("}")[0]
                for _, execution in items:
                    execution.end_unrun(
                        Status.FAILED,
                        QueueFullError(
                            f"queue {queue!r} holds max_queue_length="
                            f"{self.backend.max_queue_length} entries",
                            run_id=self.link.run_id,
                            task_name=execution.name,
                            attempt=execution.attempt,
                        ),
                    )
                    self._done.append(execution)
            self._wake()
            return {}
        # Wait for a worker to acknowledge something in these queues: it publishes on
        # the queue's room channel while our flag is set.
        pubsub: Any = self.client.pubsub()
        try:
            queues = {self._keys.queue_of(stream) for stream in full}
            await pubsub.subscribe(*(queue_key + b":room" for queue_key in queues))
            pipe = self.client.pipeline(transaction=False)
            for queue_key in queues:
                pipe.set(queue_key + b":waiting", b"1", px=60_000)
            await pipe.execute()
            self._log.info("queue full: waiting for room", queues=len(queues))
            # A message may be missed: after a second, look at the queue again anyway.
            await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
        finally:
            with contextlib.suppress(RedisError, OSError):
                await pubsub.aclose()
        if self._halted:
            for items in full.values():
                for _, execution in items:
                    execution.end_unrun(Status.NOT_STARTED)
                    self._done.append(execution)
            self._wake()
            return {}
        return full

    # --- receiving ---------------------------------------------------------------------

    def _wake(self) -> None:
        """A completion made here (not by a worker): wake receive()."""
        self._inbox.wake()

    def receive_nowait(self) -> list[Execution]:
        self._take_messages()
        done, self._done = self._done, []
        return done

    async def receive(self) -> list[Execution]:
        silence = _QUIET
        while not self._done:
            heard = self._inbox.heard
            await self._read_messages(silence)
            if self._done:
                break
            if self._inbox.heard != heard:
                silence = _QUIET
            elif self._waiting:
                # Nothing heard for a while: pub/sub delivers at most once, so an
                # announcement may be lost without a reconnect (a slow subscriber cut
                # off, a proxy): the stored outcomes say. Less often while it stays
                # quiet (long tasks).
                self._inbox.stale = True
                silence = min(silence * 2, _QUIET_MAX)
        done, self._done = self._done, []
        return done

    async def _read_messages(self, timeout: float) -> None:  # noqa: ASYNC109
        """Wait up to ``timeout`` for messages on the run's channel; handle them."""
        inbox = self._inbox
        if inbox.stale:
            await self._reconcile()
        if not self._done:
            await inbox.wait(timeout)
        self._take_messages()
        if inbox.stale:
            await self._reconcile()

    def _take_messages(self) -> None:
        inbox = self._inbox
        if inbox.messages:
            messages, inbox.messages = inbox.messages, []
            for data in messages:
                self._handle(data)

    def _handle(self, body: list[Any]) -> None:
        kind = body[0]
        if kind == b"o":
            self._outcomes(body[2], body[3])
        elif kind == b"s" and self.link.on_started is not None:
            for call_id in body[2]:
                execution = self._waiting.get(call_id)
                if execution is not None and not execution.started:
                    execution.started = True
                    self.link.on_started(execution)
        elif kind == b"x" and self.link.cancel is not None:
            reason = body[2].decode(errors="replace") if len(body) > 2 and body[2] else "cancelled"
            self._log.info("run cancelled by request", reason=reason)
            self.link.cancel(reason)

    def _outcomes(self, call_ids: list[bytes], results: list[bytes]) -> None:
        waiting = self._waiting
        # Starts of executions on workers, for whoever wants them (not a tracer alone).
        on_started = self.link.on_started if self.link.remote_starts else None
        run_id = self.link.run_id
        for call_id, data in zip(call_ids, results, strict=False):
            execution = waiting.get(call_id)
            if execution is None:
                continue  # not ours any more (a duplicate, or one we gave up on)
            try:
                result = decode_result(data, self._keyring)
            except AioflowError as exc:  # forged or damaged: the call is still out
                self._log.error("an outcome failed verification: ignored", error=str(exc))
                continue
            if result.call_id != call_id.decode(errors="replace") or result.run_id != run_id:
                self._log.error("an outcome of another call was announced: ignored")
                continue
            del waiting[call_id]
            try:
                apply_result(execution, result, self._keyring)
            except AioflowError as exc:  # a malformed control request in it
                execution.end_unrun(Status.FAILED, exc)
            else:
                if execution.status is not Status.NOT_STARTED and not execution.started:
                    execution.started = True
                    if on_started is not None:
                        on_started(execution)
            self._done.append(execution)
        if self._parked:
            self._unpark()

    async def _reconcile(self) -> None:
        """Read the stored outcomes of everything still out (after a lost message)."""
        self._inbox.stale = False
        ids = list(self._waiting)
        if not ids:
            return
        self._log.info("reconciling outcomes from Redis", waiting=len(ids))
        found_ids: list[bytes] = []
        found: list[bytes] = []
        try:
            for start in range(0, len(ids), 1000):
                chunk = ids[start : start + 1000]
                values: list[bytes | None] = await self.client.hmget(self._out, chunk)  # type: ignore[assignment]
                for call_id, value in zip(chunk, values, strict=True):
                    if value is not None:
                        found_ids.append(call_id)
                        found.append(value)
        except _CONNECTION_ERRORS as exc:
            self._log.warning("reconciling failed: trying again", error=str(exc))
            self._inbox.stale = True
            await anyio.sleep(0.1)
            return
        self._outcomes(found_ids, found)

    def _fail_waiting(self, error: BaseException) -> None:
        for execution in list(self._waiting.values()):
            execution.end_unrun(Status.FAILED, error)
            self._done.append(execution)
        self._waiting.clear()
        self._wake()

    # --- ending ------------------------------------------------------------------------

    async def settle(self) -> None:
        """The run's block is left: nothing of it may keep running on the workers.

        Tells the workers to cancel the run's tasks, deletes the entries no worker
        was given yet (they come back ``NOT_STARTED``), then waits up to
        ``cancel_grace`` for the cancelled ones to report back. What still has not
        is given up as cancelled (a worker may be gone with it: the entry is
        reclaimed and dropped later, since the run is marked cancelled).
        """
        self._halted = True
        for _, _, execution in self._outbox:
            execution.end_unrun(Status.NOT_STARTED)
            self._done.append(execution)
        for _, _, item in self._parked:
            item[2].end_unrun(Status.NOT_STARTED)
            self._done.append(item[2])
        self._outbox.clear()
        self._parked.clear()
        if not self._waiting:
            return
        try:
            await self._withdraw()
        except (RedisError, OSError) as exc:
            self._log.warning("withdrawing the run's queued tasks failed", error=str(exc))
        deadline = anyio.current_time() + self.backend.cancel_grace
        while self._waiting and anyio.current_time() < deadline:
            await self._read_messages(min(1.0, max(0.0, deadline - anyio.current_time())))
        if self._waiting:
            await self._reconcile()
        if self._waiting:
            self._log.warning(
                "tasks did not report back after the run was cancelled",
                count=len(self._waiting),
            )
            for execution in self._waiting.values():
                execution.end_unrun(Status.CANCELLED, None)
                self._done.append(execution)
            self._waiting.clear()

    async def _withdraw(self) -> None:
        message = msgpack.packb(["c", self.link.run_id, None, "the run ended", self._nonce])
        pipe = self.client.pipeline(transaction=False)
        # Workers that missed the message (reconnecting) find it here.
        pipe.set(self._cancelled_key, self._nonce, px=int(self.backend.result_ttl * 1000))
        pipe.publish(self._keys.control, message)
        by_stream: dict[bytes, list[bytes]] = defaultdict(list)
        for execution in self._waiting.values():
            handle = execution.handle
            if isinstance(handle, tuple):
                by_stream[handle[0]].append(handle[1])
        streams = list(by_stream)
        for stream in streams:
            length_key = self._keys.queue_of(stream) + b":len"
            self.backend.scripts.queue(
                pipe, "drop", [stream, length_key], [GROUP, *by_stream[stream]]
            )
        replies = await self.backend.scripts.execute(self.client, pipe)
        dropped: set[bytes] = set()
        for reply in replies[2:]:
            dropped.update(reply)
        if not dropped:
            return
        for call_id, execution in list(self._waiting.items()):
            handle = execution.handle
            if isinstance(handle, tuple) and handle[1] in dropped:
                del self._waiting[call_id]
                execution.end_unrun(Status.NOT_STARTED)
                self._done.append(execution)
