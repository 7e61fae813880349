"""The backend contract suite runs every test on every backend below.

``redis``: a real redis-server (the session's) and two real ``aioflow worker``
processes serving it (started once per session, stopped by PID at the end); the
tests of this directory then run as coordinators with the same secret key.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis_server import RedisServer
from worker_processes import WorkerProcesses

from . import flows

BACKENDS = ["memory://", "memory://?serialize=true", "redis"]
PREFIX = "contract"
SECRET = secrets.token_hex(32)


@pytest.fixture(scope="session")
def contract_workers(
    redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """Two worker processes on the session's Redis; the URL runs use to reach them."""
    url = f"{redis_server.url}?prefix={PREFIX}&visibility_timeout=3&cancel_grace=5"
    env = {"AIOFLOW_SECRET_KEY": SECRET, flows.STATE_ENV: str(flows.STATE)}
    logs = tmp_path_factory.mktemp("worker-logs")
    with WorkerProcesses(
        url, imports=["backends.flows"], count=2, env=env, prefix=PREFIX, log_dir=logs
    ):
        yield url


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    url: str = request.param
    if url == "redis":
        url = request.getfixturevalue("contract_workers")
        monkeypatch.setenv("AIOFLOW_SECRET_KEY", SECRET)
    return url


def worker_logs(directory: Path) -> str:  # pragma: no cover - for debugging failures
    return "\n".join(p.read_text(errors="replace") for p in sorted(directory.glob("*.log")))


__all__ = ["BACKENDS", "SECRET", "backend", "contract_workers", "os"]
