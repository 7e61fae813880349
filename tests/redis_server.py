"""A real ``redis-server`` for the tests: started on a free port of 127.0.0.1, stopped by PID.

Usage (a session-scoped fixture)::

    with RedisServer(tmp_dir) as server:
        server.url          # "redis://127.0.0.1:PORT/0"

The server keeps nothing on disk (``--save '' --appendonly no``) and works in
``tmp_dir`` (its log is ``tmp_dir/redis.log``). When ``redis-server`` is not
installed, :class:`RedisServer` raises :class:`RedisServerMissing`: the tests fail
with that message, they are never skipped.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Self

import redis
from processes import die_with_parent, stop

INSTALL_HINT = (
    "redis-server is not installed: the Redis tests need a real server. Install it "
    "(Debian/Ubuntu: apt-get install -y redis-server; macOS: brew install redis); "
    ".ci/run installs it when it is missing."
)


class RedisServerMissing(RuntimeError):
    """``redis-server`` is not on PATH."""


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on (now)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    """One ``redis-server`` process on 127.0.0.1; see the module documentation."""

    def __init__(self, directory: Path, *, startup_timeout: float = 10.0) -> None:
        self.directory = directory
        self.startup_timeout = startup_timeout
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        """A new synchronous client of the server (close it when done)."""
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)

    def start(self) -> None:
        executable = shutil.which("redis-server")
        if executable is None:
            raise RedisServerMissing(INSTALL_HINT)
        self.directory.mkdir(parents=True, exist_ok=True)
        log = self.directory / "redis.log"
        for _ in range(5):  # another process may take the free port first
            self.port = free_port()
            self.process = subprocess.Popen(
                [
                    executable,
                    "--port",
                    str(self.port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    str(self.directory),
                    "--logfile",
                    str(log),
                    "--daemonize",
                    "no",
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                preexec_fn=die_with_parent,
            )
            if self._wait_until_ready():
                return
            self.stop()
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else "(no log)"
        raise RuntimeError(f"redis-server did not start; its log:\n{tail}")

    def _wait_until_ready(self) -> bool:
        assert self.process is not None
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False  # it exited (the port was taken meanwhile?)
            client = self.client()
            try:
                if client.ping():
                    return True
            except redis.RedisError:
                time.sleep(0.02)
            finally:
                client.close()
        return False

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None:
            stop([process], timeout=5)  # by PID: this server only

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
