"""Fixtures of the distributed fault tests: a fresh key prefix per test, the shared
secret in the test process and its workers, a helper that starts real workers.

Every test starts its own ``aioflow worker`` processes (stopped by PID when it ends)
on the session's ``redis-server``, under a prefix no other test uses, so no test sees
another's streams, workers or dead letters.
"""

from __future__ import annotations

import gc
import re
import secrets
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
from redis_server import RedisServer
from worker_processes import WorkerProcesses

from aioflow.backends.redis import RedisBackend
from aioflow.serialization import Keyring

SECRET = secrets.token_hex(32)
IMPORTS = ["distributed.tasks"]


@pytest.fixture(autouse=True)
def _collect_garbage() -> Iterator[None]:
    """Unclosed connections of a failed run are reported by the test that left them
    (pytest turns their ResourceWarning into an error), not by whichever test the
    garbage collector happens to run in next."""
    yield
    gc.collect()


@pytest.fixture
def secret(monkeypatch: pytest.MonkeyPatch) -> str:
    """AIOFLOW_SECRET_KEY of this process (and of the workers started after it)."""
    monkeypatch.setenv("AIOFLOW_SECRET_KEY", SECRET)
    return SECRET


@pytest.fixture
def prefix(request: pytest.FixtureRequest) -> str:
    name = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[-40:]
    return f"dist-{name}-{secrets.token_hex(3)}"


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    return redis_server.url


@pytest.fixture
def url(redis_url: str, prefix: str, secret: str) -> str:
    """The backend URL of this test: its own prefix, short visibility timeout."""
    return f"{redis_url}?prefix={prefix}&visibility_timeout=2"


@pytest.fixture
def keyring(secret: str) -> Keyring:
    return Keyring(secret)


@pytest.fixture
def start_workers(
    prefix: str, secret: str, tmp_path: Path
) -> Iterator[Callable[..., WorkerProcesses]]:
    """``start_workers(url, count=2, concurrency=16, extra=())``: real workers, ready."""
    started: list[WorkerProcesses] = []
    logs = tmp_path / "worker-logs"
    logs.mkdir()

    def start(
        url: str,
        *,
        count: int = 2,
        concurrency: int = 16,
        extra: Sequence[str] = (),
        ready: bool = True,
    ) -> WorkerProcesses:
        # One set per test: worker ids are "test-w<index>-<pid of pytest>", so a second
        # set would reuse them (start more with workers.start_one()).
        assert not started, "start_workers() once per test; then workers.start_one()"
        workers = WorkerProcesses(
            url,
            imports=IMPORTS,
            count=count,
            concurrency=concurrency,
            env={"AIOFLOW_SECRET_KEY": secret},
            prefix=prefix,
            extra=extra,
            log_dir=logs,
        )
        started.append(workers)
        for _ in range(count):
            workers.start_one()
        if ready:
            workers.wait_ready()
        return workers

    yield start
    for workers in started:
        workers.stop()


def worker_logs(tmp_path: Path) -> str:
    """What the test's workers wrote (for assertion messages)."""
    return "\n".join(
        f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
        for p in sorted((tmp_path / "worker-logs").glob("*.log"))
    )


def backend_for(url: str, **options: object) -> RedisBackend:
    return RedisBackend.from_url(url, **options)
