"""Real ``aioflow worker`` processes for the tests (started and stopped by PID).

Usage::

    with WorkerProcesses(url, imports=["backends.flows"], count=2, env=...) as workers:
        workers.pids                # their PIDs
        workers.kill(0)             # SIGKILL worker 0 (a crash)
        workers.terminate(1)        # SIGTERM worker 1 (a graceful shutdown)
        workers.start_one()         # one more

Each worker runs ``python -m aioflow worker URL --import M ...`` with ``tests/`` as
its working directory (so the test modules import as pytest imports them) and the
environment given (its AIOFLOW_SECRET_KEY above all). ``wait_ready`` waits until
every worker has registered its heartbeat key in Redis.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

import redis
from processes import die_with_parent, stop

TESTS = Path(__file__).resolve().parent


class WorkerProcesses:
    def __init__(
        self,
        url: str,
        *,
        imports: Sequence[str],
        count: int = 2,
        concurrency: int = 16,
        env: Mapping[str, str],
        prefix: str = "aioflow",
        extra: Sequence[str] = (),
        log_dir: Path | None = None,
    ) -> None:
        self.url = url
        self.imports = list(imports)
        self.count = count
        self.concurrency = concurrency
        self.env = {**os.environ, **env}
        self.prefix = prefix
        self.extra = list(extra)
        self.log_dir = log_dir
        self.processes: list[subprocess.Popen[bytes]] = []

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.processes]

    def start_one(self, *extra: str) -> subprocess.Popen[bytes]:
        n = len(self.processes)
        command = [sys.executable, "-m", "aioflow", "worker", self.url]
        for module in self.imports:
            command += ["--import", module]
        command += ["--concurrency", str(self.concurrency), "--worker-id", self.worker_id(n)]
        command += [*self.extra, *extra]
        # Output to the test's log directory, or nowhere; SIGTERM if this process dies.
        log_path = None if self.log_dir is None else self.log_dir / f"w{n}.log"
        with open(log_path or os.devnull, "wb") as log:  # the child keeps its copy
            process = subprocess.Popen(
                command,
                cwd=TESTS,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                preexec_fn=die_with_parent,
            )
        self.processes.append(process)
        return process

    def start(self) -> None:
        for _ in range(self.count):
            self.start_one()
        self.wait_ready()

    def worker_id(self, index: int) -> str:
        return f"test-w{index}-{os.getpid()}"

    def wait_ready(self, timeout: float = 20.0) -> None:
        """Until every running worker's heartbeat key exists in Redis."""
        client = redis.Redis.from_url(self.url.split("?")[0], socket_timeout=5)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                live = [i for i, p in enumerate(self.processes) if p.poll() is None]
                if len(live) < len(self.processes) and any(
                    p.returncode not in (0, -signal.SIGKILL, -signal.SIGTERM)
                    for p in self.processes
                    if p.returncode is not None
                ):
                    raise RuntimeError("a worker process exited with an error")
                keys = [f"{self.prefix}:worker:{self.worker_id(i)}" for i in live]
                if all(client.exists(key) for key in keys):
                    return
                time.sleep(0.05)  # a process starting up: nothing to wait on but time
        finally:
            client.close()
        raise RuntimeError("the workers did not register in time")

    def kill(self, index: int) -> None:
        """SIGKILL (a crash: nothing is handed back)."""
        process = self.processes[index]
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)

    def terminate(self, index: int) -> int:
        """SIGTERM (a graceful shutdown); returns the exit code."""
        process = self.processes[index]
        process.terminate()
        return process.wait(timeout=60)

    def stop(self) -> None:
        stop(self.processes)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
