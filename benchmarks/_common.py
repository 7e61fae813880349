"""Shared helpers for the aioflow benchmark harnesses.

Nothing here imports aioflow or any peer engine: these helpers run in the
parent (orchestrating) process as well as in the measured child processes.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import resource
import subprocess
import sys
import traceback
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any, TextIO

__all__ = [
    "ChildOutcome",
    "emit",
    "machine_info",
    "machine_summary",
    "package_version",
    "peak_rss_mb",
    "python_summary",
    "run_child",
]

_MIB = 1024 * 1024


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB.

    ``ru_maxrss`` is in KiB on Linux and in bytes on macOS.
    """
    raw = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    scale = 1 if sys.platform == "darwin" else 1024
    return round(raw * scale / _MIB, 2)


def package_version(name: str) -> str | None:
    """Installed distribution version, or None when it is not installed."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _read_text(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


@cache
def machine_info() -> dict[str, Any]:
    """CPU count, CPU model, RAM, OS and Python of the machine running the benchmark."""
    cpu_model = platform.processor() or platform.machine()
    for line in _read_text("/proc/cpuinfo").splitlines():
        if line.lower().startswith("model name"):
            cpu_model = line.split(":", 1)[1].strip()
            break
    ram_gib: float | None = None
    for line in _read_text("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            ram_gib = round(int(line.split()[1]) / _MIB, 1)  # value is in KiB
            break
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not available on macOS
        usable = os.cpu_count() or 0
    return {
        "nproc": usable,
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model,
        "ram_gib": ram_gib,
        "os": f"{platform.system()} {platform.release()} {platform.machine()}",
    }


def machine_summary() -> str:
    """One-line description of the machine, for JSON records and docs."""
    info = machine_info()
    ram = f"{info['ram_gib']} GiB RAM" if info["ram_gib"] is not None else "RAM unknown"
    return f"{info['nproc']} CPU, {info['cpu_model']}, {ram}, {info['os']}"


def python_summary() -> str:
    """Implementation and version of the running interpreter, e.g. ``CPython 3.11.9``."""
    return f"{platform.python_implementation()} {platform.python_version()}"


def emit(record: Mapping[str, Any], stream: TextIO | None = None) -> None:
    """Write one JSON record as a single line and flush it immediately."""
    out = stream if stream is not None else sys.stdout
    out.write(json.dumps(record, sort_keys=False, default=str) + "\n")
    out.flush()


@dataclass(frozen=True)
class ChildOutcome:
    """What a measured child process produced."""

    record: dict[str, Any] | None  # last JSON object the child printed, if any
    returncode: int | None  # None when the child was killed on timeout
    timed_out: bool
    stderr_tail: str


def _last_json_object(lines: Iterable[str]) -> dict[str, Any] | None:
    found: dict[str, Any] | None = None
    for line in lines:
        text = line.strip()
        if not text.startswith("{"):
            continue
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            found = value
    return found


def _tail(text: str | bytes | None, limit: int = 2000) -> str:
    if text is None:
        return ""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    return text[-limit:].strip()


def run_child(
    argv: Sequence[str],
    timeout: float,
    cwd: str | None = None,
    pythonpath: Sequence[str] = (),
) -> ChildOutcome:
    """Run ``argv`` in a fresh process; collect its last JSON line; kill it on timeout.

    ``subprocess.run`` kills the child (SIGKILL) when the timeout expires, so a
    stuck engine never hangs the harness. ``pythonpath`` entries are prepended
    to the child's ``PYTHONPATH`` (used to import the working tree's aioflow).
    """
    env = dict(os.environ)
    env.setdefault("PYTHONHASHSEED", "0")
    if pythonpath:
        parts = [*pythonpath, *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
        env["PYTHONPATH"] = os.pathsep.join(parts)
    try:
        proc = subprocess.run(
            list(argv),
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=cwd,
            env=env,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        return ChildOutcome(
            record=_last_json_object(_tail(exc.stdout, 100_000).splitlines()),
            returncode=None,
            timed_out=True,
            stderr_tail=_tail(exc.stderr),
        )
    return ChildOutcome(
        record=_last_json_object(proc.stdout.splitlines()),
        returncode=proc.returncode,
        timed_out=False,
        stderr_tail=_tail(proc.stderr),
    )


#: The install command of the benchmark peers (``--vs ...``): their own extra.
PEER_INSTALL = 'pip install -e ".[bench]"'


def target_record(
    name: str,
    threshold: Any,
    value: float | None,
    met: bool | None,
    *,
    applicable: bool = True,
    note: str = "",
    **extra: Any,
) -> dict[str, Any]:
    """One ``"kind": "target"`` line: a target, its threshold, the value measured and
    whether it is met (None: not measured); ``extra`` fields follow the name."""
    return {
        "kind": "target",
        "target": name,
        **extra,
        "threshold": threshold,
        "value": value,
        "met": met,
        "applicable": applicable,
        "note": note,
    }


def fmt(value: Any, spec: str = "") -> str:
    """``value`` formatted for a summary table; ``-`` for None."""
    if value is None:
        return "-"
    return format(value, spec) if spec else str(value)


def verdict(target: Mapping[str, Any]) -> str:
    """``met``, ``NOT met`` or ``unknown`` for a target line."""
    return {True: "met", False: "NOT met", None: "unknown"}[target["met"]]


def missing_peer(engine: str) -> str | None:
    """The error report when peer ``engine`` is not installed, else None.

    Checked before anything is measured, so ``--vs ENGINE`` without it fails in a
    fraction of a second instead of after the aioflow runs.
    """
    try:
        found = importlib.util.find_spec(engine) is not None
    except (ImportError, ValueError):  # a broken or blocked package: not importable
        found = False
    if found:
        return None
    return (
        f"error [aioflow.missing_dependency] --vs {engine} needs the peer engine {engine!r}, "
        "which is not installed (module not importable)\n"
        f"  hint: {PEER_INSTALL} (the benchmark peers; not part of the dev extra)\n"
    )


def positive_int(text: str) -> int:
    """An argparse type: an int >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def count_list(text: str) -> list[int]:
    """An argparse type: ``"1,2,4"``, each >= 1."""
    try:
        values = [positive_int(s.strip()) for s in text.split(",") if s.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a list of counts: {text!r}") from exc
    if not values:
        raise argparse.ArgumentTypeError("no count given")
    return values


def record_failure(record: dict[str, Any], exc: BaseException) -> None:
    """A child's measurement that raised: status ``error``, its peak memory, the
    traceback on stderr (the parent reports it; nothing hangs or vanishes)."""
    record["peak_rss_mb"] = peak_rss_mb()
    record["status"] = "error"
    record["error"] = f"{type(exc).__name__}: {exc}"[:2000]
    traceback.print_exc(file=sys.stderr)
