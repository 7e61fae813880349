"""``examples/distributed/`` runs as its README says: two real ``aioflow worker``
processes on the session's redis-server, the coordinator as a script of its own,
one secret key shared by all three.

The workers import the example's ``flows.py`` by path (``--import .../flows.py``
registers it as the module ``flows``, the name the coordinator's tasks refer to);
the coordinator runs from the example's directory, as ``python coordinator.py``.
A prefix of its own keeps these keys apart from the other tests' on that server.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from redis_server import RedisServer
from worker_processes import WorkerProcesses

import aioflow

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "distributed"
PREFIX = "example-distributed"


def test_flows_give_the_same_summary_in_process(monkeypatch: pytest.MonkeyPatch) -> None:
    # Under a name of its own ("flows" is what other tests' workflow files are called),
    # registered for the test only: the serializing backend finds the tasks by it.
    spec = importlib.util.spec_from_file_location("example_distributed_flows", EXAMPLE / "flows.py")
    assert spec is not None and spec.loader is not None
    flows = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "example_distributed_flows", flows)
    spec.loader.exec_module(flows)
    result = aioflow.run_sync(flows.wf, backend="memory://?serialize=true")
    summary = result["summarize"]
    assert summary["documents"] == len(flows.DOCUMENTS) == summary["docs_done"]
    assert summary["longest"] == "queues"


def test_coordinator_runs_the_workflow_on_two_workers(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    url = f"{redis_server.url}?prefix={PREFIX}"
    env = {"AIOFLOW_SECRET_KEY": secrets.token_hex(32)}
    imports = [str(EXAMPLE / "flows.py")]
    with WorkerProcesses(
        url, imports=imports, count=2, concurrency=2, env=env, prefix=PREFIX, log_dir=tmp_path
    ) as workers:
        proc = subprocess.run(
            [sys.executable, "coordinator.py", url],
            cwd=EXAMPLE,
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert proc.returncode == 0, proc.stderr
        out = proc.stdout
        assert re.search(r"^run [0-9a-f]{32}: succeeded$", out, re.M), out
        for name in ("load_corpus", "count_intro", "count_queues", "summarize"):
            assert re.search(rf"^  {name} +succeeded", out, re.M), out
        assert "summary: 4 documents, 52 words, longest 'queues', docs_done=4" in out
        used = re.search(r"^workers used: (.+)$", out, re.M)
        assert used is not None, out
        ids = {workers.worker_id(i) for i in range(2)}
        assert set(used.group(1).split(", ")) <= ids  # ran on the workers, not in-process
