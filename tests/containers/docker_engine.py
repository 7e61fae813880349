"""A private Docker Engine for the container tests: ``dockerd`` on a socket of a temp dir.

Usage (a session-scoped fixture)::

    with DockerEngine(tmp_dir) as engine:
        engine.host     # "unix:///tmp/.../docker.sock"

The daemon gets its own ``--data-root``, ``--exec-root`` and ``--pidfile`` in
``tmp_dir``, touches no iptables and no bridge (the tests' containers have no
network), and is stopped by its PID (SIGTERM, then SIGKILL); its data root is
removed. Without ``dockerd`` :class:`DockerEngine` raises :class:`DockerMissing`:
the tests fail with that message, they are never skipped.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from processes import die_with_parent, stop

INSTALL_HINT = (
    "dockerd is not installed: the container tests need a real Docker Engine. Install it "
    "(Debian/Ubuntu: apt-get install -y docker.io); .ci/run (.ci/docker.sh) installs it "
    "when it is missing. The tests start and stop their own daemon."
)


class DockerMissing(RuntimeError):
    """``dockerd`` is not on PATH."""


class _UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=2)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(2)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class DockerEngine:
    """One ``dockerd`` of the test session; see the module documentation."""

    def __init__(self, directory: Path, *, startup_timeout: float = 60.0) -> None:
        self.directory = directory
        self.startup_timeout = startup_timeout
        self.socket = directory / "docker.sock"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        return f"unix://{self.socket}"

    def ping(self) -> bool:
        conn = _UnixHTTP(str(self.socket))
        try:
            conn.request("GET", "/_ping")
            return conn.getresponse().status == 200
        except OSError:  # not listening yet, or a reply cut short while it starts
            return False
        finally:
            conn.close()

    def start(self) -> None:
        executable = shutil.which("dockerd") or (
            "/usr/sbin/dockerd" if os.path.exists("/usr/sbin/dockerd") else None
        )
        if executable is None:
            raise DockerMissing(INSTALL_HINT)
        self.directory.mkdir(parents=True, exist_ok=True)
        log = (self.directory / "dockerd.log").open("wb")
        env = {**os.environ, "PATH": f"{Path(executable).parent}:{os.environ.get('PATH', '')}"}
        self.process = subprocess.Popen(
            [
                executable,
                *("--data-root", str(self.directory / "data")),
                *("--exec-root", str(self.directory / "exec")),
                *("--pidfile", str(self.directory / "dockerd.pid")),
                *("-H", self.host, "--storage-driver", "overlay2"),
                *("--iptables=false", "--ip-masq=false", "--bridge=none"),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
        log.close()
        pids = os.environ.get("AIOFLOW_TEST_DOCKERD_PIDS")  # .ci/run's safety net
        if pids:
            with open(pids, "a", encoding="ascii") as record:
                record.write(f"{self.process.pid}\n")
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            if self.ping():
                return
            time.sleep(0.1)
        tail = (self.directory / "dockerd.log").read_text(errors="replace")[-3000:]
        self.stop()
        raise RuntimeError(f"dockerd did not start; its log ends with:\n{tail}")

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None:
            stop([process], timeout=30)  # by PID: the daemon we started, only
        shutil.rmtree(self.directory / "data", ignore_errors=True)
        shutil.rmtree(self.directory / "exec", ignore_errors=True)

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


async def containers(host: str, **labels: str) -> list[dict[str, Any]]:
    """Every container (running or not) with these labels (``aioflow.managed`` if none)."""
    import aiodocker

    wanted = [f"{k}={v}" for k, v in labels.items()] or ["aioflow.managed=true"]
    async with aiodocker.Docker(url=host) as docker:
        found = await docker.containers.list(all=True, filters=json.dumps({"label": wanted}))
        return [c._container for c in found]
