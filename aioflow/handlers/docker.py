"""DockerHandler: run tasks in hardened containers, through the Docker Engine API (aiodocker).

``run(wf, handlers={"box": DockerHandler("myimage:1")})`` with ``@task(handler="box")``.
Each call is signed with a fresh per-execution key and written to the
container's attached stdin, where ``<python> -m aioflow.container``
(:mod:`aioflow.container`) runs it and writes back the signed result; the task's
``ctx.channel``, ``ctx.result`` and ``ctx.inputs`` are served over the same
stream, its control requests come back in the result, and its stderr goes to the
run's log. A traced attempt's trace context goes in with the call, and the spans
made inside come back before the result, to be re-created under the attempt's span
(:mod:`._docker_spans`). See ``docs/containers.md``.
"""

from __future__ import annotations

import re
import secrets
import uuid
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import anyio

from .._optional import require
from ..errors import (
    AioflowError,
    BackendUnavailableError,
    ConfigurationError,
    ContainerError,
    SerializationError,
)
from ..observability.logging import get_logger
from ..serialization import Keyring, TaskRef, decode_result, encode_call
from ..serialization.envelope import max_payload_bytes_from_env
from ..serialization.refs import ImportPathError, import_path
from ..task import Task
from ..worker import requests_from_wire
from ._docker_box import Box, read_until_result
from ._docker_config import call_of, check_env, check_mounts, labels, parse_size
from ._docker_errors import UNREACHABLE_HINT, engine_error
from ._docker_pool import Pool
from ._docker_serve import serve_request
from ._docker_spans import relay_container_spans
from ._docker_wire import KEY_BYTES, FrameKind
from .base import Handler

if TYPE_CHECKING:
    import aiodocker

    from ..context import TaskContext

__all__ = ["DockerHandler"]

_NAME = re.compile(r"[^a-zA-Z0-9_.-]+")
# Seconds a call waits, after its result, for the end of its stderr (it comes within
# milliseconds; the bound is for an image that writes no end marker).
_STDERR_END_WAIT = 2.0


class DockerHandler(Handler):
    """Runs each task call in a container of ``image``, hardened by default (R26).

    Args:
        image: the image (it must hold Python and aioflow, and the tasks' modules:
            see ``docs/containers.md``, or ``aioflow containers build-image``).
        python: the interpreter in the image; the container runs
            ``<python> -m aioflow.container``.
        pool_size: 0 (default): one fresh container per call, removed after it. N:
            keep up to N containers alive and feed them calls one after another
            (still one at a time each): no start-up cost per call, but calls of this
            handler share a container, so use a pool for tasks that trust each other.
        memory: memory limit (``"512m"``; swap is not allowed beyond it); None: none.
        cpus: CPU limit (1.0 = one CPU); None: none.
        pids: process/thread limit; None: none.
        network: the Docker network; ``"none"`` (default): no network at all (the
            channel and results come over the attached stream, not the network).
        user: ``"uid:gid"`` the task runs as (default nobody); None: the image's user.
        read_only: read-only root filesystem (``/tmp`` is a tmpfs of ``tmp_size``).
        env: environment variables for the task (never the signing key).
        mounts: ``"host:container[:ro]"`` binds or Engine API mount objects.
        docker_host: the engine's URL; default ``DOCKER_HOST``, else the local socket.
        max_tasks_per_container: a pool container is replaced after this many calls
            (its successor starts while it serves on: no call waits for it), and after
            any failure.
        tmp_size: size of the ``/tmp`` tmpfs.
        allow_pickle: accept pickled values and exceptions from the container (default
            False: a task in a container cannot run code in this process; its
            exception comes back as :class:`~aioflow.errors.RemoteTaskError` with the
            remote traceback, and results must be plain data). True for trusted images:
            the task's own exception type is raised, chained to that error.
        extra_labels: more labels on every container.

    All containers get ``--cap-drop ALL`` and ``no-new-privileges``.

    Raises:
        ConfigurationError: an invalid option.
        MissingDependencyError: aiodocker is not installed (``aioflow[docker]``), on entry.
    """

    def __init__(
        self,
        image: str,
        *,
        python: str = "python",
        pool_size: int = 0,
        memory: str | int | None = "512m",
        cpus: float | None = 1.0,
        pids: int | None = 256,
        network: str | None = "none",
        user: str | None = "65534:65534",
        read_only: bool = True,
        env: Mapping[str, str] | None = None,
        mounts: Sequence[str | Mapping[str, Any]] | None = None,
        docker_host: str | None = None,
        max_tasks_per_container: int = 100,
        tmp_size: str = "64m",
        allow_pickle: bool = False,
        extra_labels: Mapping[str, str] | None = None,
    ) -> None:
        if not isinstance(image, str) or not image.strip():
            raise ConfigurationError(f"image must be a non-empty str, got {image!r}")
        if isinstance(pool_size, bool) or not isinstance(pool_size, int) or pool_size < 0:
            raise ConfigurationError(f"pool_size must be an int >= 0, got {pool_size!r}")
        if (
            isinstance(max_tasks_per_container, bool)
            or not isinstance(max_tasks_per_container, int)
            or max_tasks_per_container < 1
        ):
            raise ConfigurationError(
                f"max_tasks_per_container must be an int >= 1, got {max_tasks_per_container!r}"
            )
        if cpus is not None and (not isinstance(cpus, int | float) or cpus <= 0):
            raise ConfigurationError(f"cpus must be a number > 0 or None, got {cpus!r}")
        if pids is not None and (not isinstance(pids, int) or pids < 1):
            raise ConfigurationError(f"pids must be an int >= 1 or None, got {pids!r}")
        self.image = image
        self.python = python
        self.pool_size = pool_size
        self.memory = memory
        self._memory_bytes = None if memory is None else parse_size(memory, "memory")
        self._tmp_size = parse_size(tmp_size, "tmp_size")
        self.cpus = cpus
        self.pids = pids
        self.network = network
        self.user = user
        self.read_only = read_only
        self._env = check_env(env)
        self._binds, self._mounts = check_mounts(mounts)
        self.docker_host = docker_host
        self.max_tasks_per_container = max_tasks_per_container
        self.allow_pickle = allow_pickle
        self._extra_labels = dict(extra_labels or {})
        self.id = uuid.uuid4().hex[:12]  # on the labels of this handler's containers
        self._docker: aiodocker.Docker | None = None
        self._client_error: BaseException | None = None
        self._refs: dict[int, tuple[Task[..., Any], TaskRef]] = {}
        # Whether the image's containers mark the end of a call's stderr (an image of
        # an older aioflow does not: once seen, calls stop waiting for the mark).
        self._stderr_marked = True
        self._pool: Pool | None = None
        self._limit = max_payload_bytes_from_env()
        self._log = get_logger("docker", handler=self.id, image=image)

    def __repr__(self) -> str:
        return f"<DockerHandler {self.image!r} pool_size={self.pool_size} id={self.id}>"

    # --- lifecycle -------------------------------------------------------------------

    async def open(self) -> None:
        """Create the Engine API client (one per handler, closed by :meth:`aclose`)."""
        aiodocker = require("aiodocker", feature="DockerHandler")
        self._client_error = None
        try:
            self._docker = aiodocker.Docker(url=self.docker_host)
        except Exception as exc:  # no DOCKER_HOST and no local socket: told per call
            self._docker = None
            self._client_error = exc
        if self.pool_size:
            self._pool = Pool(
                self.pool_size, self._start_box, max_tasks=self.max_tasks_per_container
            )

    async def aclose(self) -> None:
        """Remove the pool's containers and close the client (shielded, bounded)."""
        with anyio.CancelScope(shield=True):
            try:
                if self._pool is not None:
                    await self._pool.close()
            finally:
                self._pool = None
                docker, self._docker = self._docker, None
                if docker is not None:
                    await docker.close()

    def _client(self) -> aiodocker.Docker:
        if self._docker is None:
            if self._client_error is not None:
                raise BackendUnavailableError(
                    f"no Docker Engine to talk to: {self._client_error}", hint=UNREACHABLE_HINT
                ) from self._client_error
            raise AioflowError(
                "the DockerHandler is not open",
                hint="Pass it to run(..., handlers={'box': h}), or use `async with h:`.",
            )
        return self._docker

    async def serve(self) -> None:
        """Background work, run by each run and worker using the handler: a warm pool
        starts the successor of a container past ``max_tasks_per_container`` here,
        while the old one goes on serving, so no call waits for a container start."""
        pool = self._pool
        if pool is not None:
            await pool.serve()

    # --- containers ------------------------------------------------------------------

    def _config(self, run_id: str, task_name: str, *, pool: bool) -> dict[str, Any]:
        host: dict[str, Any] = {
            "CapDrop": ["ALL"],
            "SecurityOpt": ["no-new-privileges"],
            "ReadonlyRootfs": self.read_only,
            "Tmpfs": {"/tmp": f"rw,nosuid,nodev,size={self._tmp_size}"},
        }
        if self._memory_bytes is not None:
            host["Memory"] = host["MemorySwap"] = self._memory_bytes
        if self.cpus is not None:
            host["NanoCpus"] = int(self.cpus * 1e9)
        if self.pids is not None:
            host["PidsLimit"] = self.pids
        if self.network is not None:
            host["NetworkMode"] = self.network
        if self._binds:
            host["Binds"] = list(self._binds)
        if self._mounts:
            host["Mounts"] = list(self._mounts)
        env = {"PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1", "HOME": "/tmp"}
        env.update(self._env)
        config: dict[str, Any] = {
            "Image": self.image,
            "Cmd": [self.python, "-m", "aioflow.container"],
            "AttachStdin": True,
            "AttachStdout": True,
            "AttachStderr": True,
            "OpenStdin": True,
            "StdinOnce": True,  # our stream closes (we crashed): the container ends
            "Tty": False,
            "WorkingDir": "/tmp",
            "Env": [f"{k}={v}" for k, v in env.items()],
            "Labels": {
                **self._extra_labels,
                **labels(run_id, task_name, self.id, pool=pool),
            },
            "HostConfig": host,
        }
        if self.user is not None:
            config["User"] = self.user
        return config

    async def _start_box(self, ctx: TaskContext, *, pool: bool) -> Box:
        docker = self._client()
        what = f"the container of task {ctx.task_name!r} (image {self.image!r})"
        name = _NAME.sub("-", f"aioflow-{ctx.task_name}")[:40] + f"-{uuid.uuid4().hex[:8]}"
        return await Box.start(
            docker,
            self._config(ctx.run_id, ctx.task_name, pool=pool),
            name,
            limit=self._limit,
            describe=lambda: what,
            on_created=lambda cid: self._log.debug("container created", container_id=cid[:12]),
        )

    # --- one call --------------------------------------------------------------------

    def _ref(self, task: Task[..., Any]) -> TaskRef:
        known = self._refs.get(id(task))
        if known is None or known[0] is not task:
            known = self._refs[id(task)] = (task, TaskRef.from_callable(task.fn))
        return known[1]

    async def execute(
        self,
        task: Task[..., Any],
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
        ctx: TaskContext,
    ) -> Any:
        """Run the call in a container; return its value or raise its error.

        Raises:
            BackendUnavailableError: the Docker Engine cannot be reached.
            ImageNotFoundError: the image is not on the engine.
            ContainerMemoryError: the container was killed for memory.
            ContainerError: it exited before sending its result (stderr's tail says why).
            PayloadTooLargeError: the call or the result is over the size limit.
            RemoteTaskError: the task raised (or its own exception, see ``allow_pickle``).
        """
        # A fresh key for this call alone: what the container signs is good for
        # nothing else (it never sees the cluster's key).
        key = secrets.token_bytes(KEY_BYTES)
        keyring = Keyring(key, max_payload_bytes=self._limit)
        call = call_of(task, args, kwargs, ctx, self._ref(task))
        payload = encode_call(call, keyring)
        pool = self._pool
        if pool is None:
            box = await self._start_box(ctx, pool=False)
            try:
                data = await self._exchange(box, key, keyring, payload, ctx, call.trace)
            finally:
                await box.remove()
        else:
            box = await pool.acquire(ctx)
            ok = False
            try:
                data = await self._exchange(box, key, keyring, payload, ctx, call.trace)
                ok = True
            finally:
                await pool.release(box, ctx, ok=ok)
        return self._outcome(data, keyring, call.call_id, ctx)

    async def _exchange(
        self,
        box: Box,
        key: bytes,
        keyring: Keyring,
        payload: bytes,
        ctx: TaskContext,
        trace: Mapping[str, str],
    ) -> bytes:
        ids: dict[str, Any] = {
            "run_id": ctx.run_id,
            "task_name": ctx.task_name,
            "attempt": ctx.attempt,
        }
        if ctx.worker_id is not None:
            ids["worker_id"] = ctx.worker_id
        # Lines forwarded from the container's stderr carry these, and (added by the
        # logging processors, in this attempt's context) the trace and span ids.
        log = box.log.bind(**ids)
        box.broken = True  # until the result is in
        spans: list[bytes] = []
        try:
            await box.send(FrameKind.KEY, key)
            await box.send(FrameKind.CALL, payload)

            async def serve(body: bytes) -> None:
                await serve_request(body, ctx, keyring, box, allow_pickle=self.allow_pickle)

            async with anyio.create_task_group() as tg:
                data = await read_until_result(box, log, serve, tg, spans.append if trace else None)
                tg.cancel_scope.cancel()  # requests still served after the result: moot
        except (AioflowError, anyio.get_cancelled_exc_class()):
            raise
        except Exception as exc:
            raise engine_error(exc, f"the container of task {ctx.task_name!r}", image=None) from exc
        if spans:  # also of a failed attempt: they say where it failed
            root = {"aioflow.container.id": box.id, "aioflow.container.image": self.image}
            relay_container_spans(spans[0], keyring, trace, root, log)
        if data is None:
            raise await box.exit_error(None if self.memory is None else str(self.memory))
        if self._stderr_marked:
            # The call's last stderr lines may come after its result: forwarded now,
            # with its ids (not lost with the container, nor given the next call's).
            with anyio.move_on_after(_STDERR_END_WAIT) as waited:
                await box.finish_stderr(key, log)
            if waited.cancelled_caught:  # an image that marks nothing: do not wait again
                self._stderr_marked = False
                log.debug("the container does not mark the end of a call's stderr")
        box.broken = False
        box.tasks += 1
        return data

    def _outcome(self, data: bytes, keyring: Keyring, call_id: str, ctx: TaskContext) -> Any:
        result = decode_result(data, keyring, allow_pickle=self.allow_pickle)
        if result.call_id != call_id:
            raise ContainerError(f"the container of task {ctx.task_name!r} answered another call")
        wire = result.requests
        if wire and wire.get("next"):
            wire = {**wire, "next": [[_target(t), goto] for t, goto in wire["next"]]}
        ctx.requests = requests_from_wire(wire)
        if result.status == "succeeded":
            return result.value
        assert result.error is not None
        raise result.error.to_exception(
            run_id=result.run_id, task_name=result.task_name, attempt=result.attempt
        )


def _target(target: Any) -> Any:
    """A task added with ``ctx.next_task`` in a container: sent by import path."""
    if isinstance(target, dict) and isinstance(target.get("task"), str):
        try:
            found = import_path(target["task"])
        except ImportPathError as exc:
            raise SerializationError(
                f"ctx.next_task() in a container named task {target['task']!r}, which "
                f"cannot be imported here: {exc}",
                hint="Define tasks added at run time at module level, importable on both sides.",
            ) from exc
        if not isinstance(found, Task):
            raise SerializationError(f"{target['task']!r} does not name a task")
        return found
    return target
