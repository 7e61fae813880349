"""Child processes of the tests: stopped by PID, and never outliving the test run."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterable


def die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """``preexec_fn``: on Linux the child gets SIGTERM if the test process dies without
    stopping it (pytest-timeout, a crash: no fixture teardown)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the teardown (or .ci/run's trap) stops it
        pass


def stop(processes: Iterable[subprocess.Popen[bytes]], *, timeout: float = 15.0) -> None:
    """SIGTERM each process still running (by PID: ours only), wait for all, SIGKILL
    those that outlive ``timeout``."""
    processes = list(processes)
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
