"""The run history and the commands that read run stores: ``runs``, ``inspect``, ``purge``.

Driven through ``cli.main([...])`` on real SQLite stores: the history in the
per-test ``AIOFLOW_HOME`` (see conftest.py), and stores under ``tmp_path``.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import stat
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

import aioflow
from aioflow import cli
from aioflow._cli.loading import load_workflow
from aioflow.stores import JournalRecord, RecordKind, RunInfo, open_run_store

HFLOWS = """
import threading

from aioflow import RetryPolicy, task, workflow


class BadRow(ValueError):
    pass


@task
def parse(text: str = "a,b") -> list[str]:
    return text.split(",")


@task(retries=RetryPolicy(retries=1, backoff=0))
def validate(parse: list[str], limit: int = 1) -> int:
    if len(parse) > limit:
        raise BadRow(f"{len(parse)} rows, at most {limit}")
    return len(parse)


with workflow("checks") as checks:
    parse >> validate


@task
def one() -> int:
    return 1


with workflow("fine") as fine:
    fine.add(one)


@task
def lock() -> object:
    return threading.Lock()


with workflow("locking") as locking:
    locking.add(lock)


@task
def flaky(marker: str) -> str:
    try:
        with open(marker, "x"):
            pass
    except FileExistsError:
        return "ok"
    raise ConnectionError("mirror down")


with workflow("flaky") as flaky_wf:
    flaky_wf.add(flaky)
"""


@pytest.fixture(autouse=True)
def plain_output(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Wide, colourless, non-terminal output; imports made by a test are forgotten."""
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.delenv("AIOFLOW_HISTORY_RETENTION", raising=False)
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
        monkeypatch.delenv(name, raising=False)
    path, modules = sys.path[:], set(sys.modules)
    yield
    sys.path[:] = path
    for name in set(sys.modules) - modules:
        file = getattr(sys.modules[name], "__file__", None) or ""
        if name.startswith("hflows") or file.startswith(tempfile.gettempdir()):
            del sys.modules[name]


@pytest.fixture
def flows(tmp_path: Path) -> str:
    path = tmp_path / "wf" / "hflows.py"
    path.parent.mkdir()
    path.write_text(HFLOWS)
    return str(path)


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any]:
    """A command with --json: its exit code and the one JSON document on stdout."""
    code, out, _ = run_cli(capsys, *argv, "--json")
    return code, json.loads(out)


def start_run(capsys: pytest.CaptureFixture[str], target: str, *argv: str) -> str:
    """``aioflow run target ... --json``; the run's id."""
    _, doc = run_json(capsys, "run", target, *argv)
    return str(doc["run_id"])


# --- the history: recorded by default ------------------------------------------------


def test_runs_are_recorded_in_the_history_by_default(
    capsys: pytest.CaptureFixture[str], flows: str, aioflow_home: Path
) -> None:
    assert not aioflow_home.exists()
    ok = start_run(capsys, f"{flows}:fine")
    failed = start_run(capsys, f"{flows}:checks")
    assert (aioflow_home / "runs.db").is_file()
    if os.name == "posix":
        assert stat.S_IMODE(aioflow_home.stat().st_mode) == 0o700
    code, doc = run_json(capsys, "runs")
    assert code == 0
    assert doc["store"] == f"sqlite://{aioflow_home / 'runs.db'}"
    runs = doc["runs"]
    assert [(r["run_id"], r["workflow"], r["status"]) for r in runs] == [
        (failed, "checks", "failed"),  # newest first
        (ok, "fine", "succeeded"),
    ]
    assert (runs[0]["tasks_succeeded"], runs[0]["tasks_failed"], runs[0]["tasks_total"]) == (
        1,
        1,
        2,
    )
    assert "validate" in runs[0]["error"]
    for run in runs:  # machine-readable: ISO times, numbers
        assert datetime.fromisoformat(run["started_at"]) <= datetime.fromisoformat(
            run["finished_at"]
        )
        assert isinstance(run["duration"], float) and run["duration"] >= 0


def test_no_history_records_nothing(
    capsys: pytest.CaptureFixture[str], flows: str, aioflow_home: Path
) -> None:
    code, out, err = run_cli(capsys, "run", f"{flows}:fine", "--no-history")
    assert code == 0 and "fine succeeded" in out and err == ""
    assert not (aioflow_home / "runs.db").exists()
    code, out, err = run_cli(capsys, "runs")
    assert code == 0 and err == ""
    assert out.strip() == f"no runs in sqlite://{aioflow_home / 'runs.db'}"
    assert not (aioflow_home / "runs.db").exists()  # reading created nothing
    _, doc = run_json(capsys, "runs")
    assert doc["runs"] == []


def test_a_failed_history_run_says_how_to_inspect_and_resume_it(
    capsys: pytest.CaptureFixture[str], flows: str, tmp_path: Path, aioflow_home: Path
) -> None:
    target = f"{flows}:flaky_wf"
    code, out, err = run_cli(capsys, "run", target, "-i", f"marker={tmp_path / 'm'}", "--json")
    assert code == cli.EXIT_FAILED
    run_id = json.loads(out)["run_id"]
    history = aioflow_home / "runs.db"
    assert f"run {run_id} is recorded in {history}" in err
    assert f"see it with aioflow inspect {run_id}" in err
    command = f"aioflow resume {shlex.quote(str(history))} {shlex.quote(target)} --run-id {run_id}"
    assert f"continue it with: {command}" in " ".join(err.split())
    code, out, err = run_cli(capsys, *shlex.split(command)[1:], "--json")
    assert code == 0, err
    assert json.loads(out)["results"] == {"flaky": "ok"}
    _, doc = run_json(capsys, "runs")
    assert [(r["run_id"], r["status"]) for r in doc["runs"]] == [(run_id, "succeeded")]


def test_history_that_cannot_be_used_does_not_stop_the_run(
    capsys: pytest.CaptureFixture[str], flows: str, aioflow_home: Path
) -> None:
    aioflow_home.parent.mkdir(parents=True, exist_ok=True)
    aioflow_home.write_text("not a directory")
    code, out, err = run_cli(capsys, "run", f"{flows}:fine")
    assert code == 0 and "fine succeeded" in out
    assert "warning this run is not recorded in the run history" in err
    assert "--no-history" in err


def test_a_result_the_history_cannot_store_names_no_history(
    capsys: pytest.CaptureFixture[str], flows: str
) -> None:
    code, _, err = run_cli(capsys, "run", f"{flows}:locking")
    assert code == cli.EXIT_FAILED
    assert "cannot be journaled" in err
    assert "run with --no-history" in " ".join(err.split())
    code, _, _ = run_cli(capsys, "run", f"{flows}:locking", "--no-history")
    assert code == 0


def test_history_retention(
    capsys: pytest.CaptureFixture[str], flows: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIOFLOW_HISTORY_RETENTION", "0s")  # each run purges the others
    start_run(capsys, f"{flows}:fine")
    last = start_run(capsys, f"{flows}:fine")
    _, doc = run_json(capsys, "runs")
    assert [r["run_id"] for r in doc["runs"]] == [last]

    monkeypatch.setenv("AIOFLOW_HISTORY_RETENTION", "none")
    start_run(capsys, f"{flows}:fine")
    _, doc = run_json(capsys, "runs")
    assert len(doc["runs"]) == 2

    monkeypatch.setenv("AIOFLOW_HISTORY_RETENTION", "soon")
    code, out, err = run_cli(capsys, "run", f"{flows}:fine")
    assert code == cli.EXIT_USAGE and out == ""
    assert "AIOFLOW_HISTORY_RETENTION='soon' is not a duration" in err and "hint:" in err


# --- aioflow runs --------------------------------------------------------------------


def test_runs_table(capsys: pytest.CaptureFixture[str], flows: str) -> None:
    failed = start_run(capsys, f"{flows}:checks")
    ok = start_run(capsys, f"{flows}:fine")
    code, out, err = run_cli(capsys, "runs")
    assert code == 0 and err == ""
    assert "runs in sqlite://" in out
    header = next(line for line in out.splitlines() if "run id" in line)
    for column in ("workflow", "status", "started", "duration", "done", "failed", "total"):
        assert column in header
    rows = {line.split("│")[1].strip(): line for line in out.splitlines() if "│" in line}
    assert set(rows) == {failed, ok}
    cells = [cell.strip() for cell in rows[failed].split("│")[2:-1]]
    assert cells[:2] == ["checks", "failed"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", cells[2])
    assert re.fullmatch(r"\d+\.\d{3}s", cells[3])
    assert cells[4:] == ["1", "1", "2"]  # done, failed, total


def test_runs_table_shortens_ids_on_a_narrow_terminal(
    capsys: pytest.CaptureFixture[str], flows: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id = start_run(capsys, f"{flows}:fine")
    monkeypatch.setenv("COLUMNS", "80")
    code, out, _ = run_cli(capsys, "runs")
    assert code == 0
    assert run_id[:8] in out and run_id not in out
    assert "any unique prefix will do" in out
    assert max(len(line) for line in out.splitlines()) <= 80


def test_runs_filters_and_limit(capsys: pytest.CaptureFixture[str], flows: str) -> None:
    failed = start_run(capsys, f"{flows}:checks")
    first = start_run(capsys, f"{flows}:fine")
    second = start_run(capsys, f"{flows}:fine")
    _, doc = run_json(capsys, "runs", "--status", "failed")
    assert [r["run_id"] for r in doc["runs"]] == [failed]
    _, doc = run_json(capsys, "runs", "--workflow", "fine")
    assert [r["run_id"] for r in doc["runs"]] == [second, first]
    _, doc = run_json(capsys, "runs", "--limit", "1")
    assert [r["run_id"] for r in doc["runs"]] == [second]
    _, doc = run_json(capsys, "runs", "--limit", "0")
    assert len(doc["runs"]) == 3
    code, out, _ = run_cli(capsys, "runs", "--limit", "2")
    assert code == 0 and "the newest 2 (--limit N for more" in out
    code, out, _ = run_cli(capsys, "runs", "--status", "running", "--workflow", "fine")
    assert code == 0 and out.startswith("no runs in sqlite://")
    assert out.rstrip().endswith(" (status running, workflow 'fine')")


def test_runs_of_another_store(
    capsys: pytest.CaptureFixture[str], flows: str, tmp_path: Path
) -> None:
    store = tmp_path / "team.db"
    run_id = start_run(capsys, f"{flows}:fine", "--checkpoint", str(store))
    for name in (str(store), f"sqlite://{store}"):  # a path or a URL
        _, doc = run_json(capsys, "runs", "--store", name)
        assert [r["run_id"] for r in doc["runs"]] == [run_id]
    _, doc = run_json(capsys, "runs")
    assert doc["runs"] == []  # not in the history: --checkpoint was the journal
    _, doc = run_json(capsys, "runs", "--store", "memory://")
    assert doc == {"store": "memory://", "runs": []}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["runs", "--store", "{tmp}/missing.db"], "there is no run store at {tmp}/missing.db"),
        (["runs", "--store", "postgres://db/runs"], "unknown scheme"),
        (["inspect", "abcdef", "--store", "{tmp}/missing.db"], "there is no run store"),
        (["purge", "--older-than", "1d", "--store", "{tmp}/missing.db"], "there is no run store"),
        (["purge", "--older-than", "a week"], "invalid duration 'a week'"),
    ],
)
def test_store_and_duration_errors_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, argv: list[str], message: str
) -> None:
    code, out, err = run_cli(capsys, *(arg.format(tmp=tmp_path) for arg in argv))
    assert code == cli.EXIT_USAGE and out == ""
    assert message.format(tmp=tmp_path) in err and "hint:" in err
    assert not (tmp_path / "missing.db").exists()


@pytest.mark.parametrize(
    "argv",
    [
        ["runs", "--status", "lost"],
        ["runs", "--limit", "-1"],
        ["purge"],
        ["purge", "--older-than", "1d", "--status", "running"],
        ["inspect"],
        ["resume", "runs.db"],
    ],
)
def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    code, _, err = run_cli(capsys, *argv)
    assert code == 2 and "usage: aioflow" in err


# --- aioflow inspect -----------------------------------------------------------------


def test_inspect_shows_summary_timeline_and_each_failed_attempt(
    capsys: pytest.CaptureFixture[str], flows: str
) -> None:
    run_id = start_run(capsys, f"{flows}:checks", "-i", "text=x,y,z")
    code, out, err = run_cli(capsys, "inspect", run_id)
    assert code == 0 and err == ""
    assert f"run       {run_id}" in out
    assert "status    failed" in out and "workflow  checks" in out
    assert "tasks     1 succeeded · 1 failed · 2 in all" in out
    assert "inputs    text='x,y,z'" in out
    assert "timeline (" in out
    for kind in ("run_started", "task_finished", "run_finished"):
        assert kind in out
    assert "retrying" in out  # the first attempt of validate was retried
    assert "failed attempts (2)" in out
    assert "✗ validate  attempt 1 · worker in-process" in out and "retried" in out
    assert "✗ validate  attempt 2 · worker in-process" in out
    assert "hflows.BadRow: 3 rows, at most 1" in out
    assert "parse = ['x', 'y', 'z']" in out  # the arguments summary
    assert "Traceback (most recent call last)" in out
    assert 'raise BadRow(f"{len(parse)} rows, at most {limit}")' in out


def test_inspect_json(capsys: pytest.CaptureFixture[str], flows: str) -> None:
    run_id = start_run(capsys, f"{flows}:checks")
    code, doc = run_json(capsys, "inspect", run_id)
    assert code == 0
    assert doc["run"]["run_id"] == run_id and doc["run"]["status"] == "failed"
    assert doc["store"].startswith("sqlite://") and doc["warning"] is None
    assert doc["inputs"] == {}
    kinds = [record["kind"] for record in doc["timeline"]]
    assert kinds[0] == "run_started" and "run_finished" in kinds
    assert [r["seq"] for r in doc["timeline"]] == list(range(1, len(kinds) + 1))
    finished = [r for r in doc["timeline"] if r["kind"] == "task_finished"]
    assert [(r["task"], r["attempt"], r["status"]) for r in finished] == [
        ("parse", 1, "succeeded"),
        ("validate", 1, "retrying"),
        ("validate", 2, "failed"),
    ]
    for record in doc["timeline"]:
        datetime.fromisoformat(record["at"])
        assert record["elapsed"] >= 0
    first, second = doc["failures"]
    assert (first["task"], first["attempt"], first["status"]) == ("validate", 1, "retrying")
    assert (second["attempt"], second["status"]) == (2, "failed")
    assert second["type"] == "hflows.BadRow"
    assert second["message"] == "2 rows, at most 1"
    assert second["args"] == {"parse": "['a', 'b']"}
    assert second["worker"] is None
    assert "raise BadRow" in second["traceback"]
    assert isinstance(second["duration"], float)
    datetime.fromisoformat(second["at"])
    assert doc["in_flight"] == []


def test_inspect_takes_a_unique_prefix_of_a_run_id(
    capsys: pytest.CaptureFixture[str], flows: str, tmp_path: Path
) -> None:
    store = tmp_path / "runs.db"
    wf = load_workflow(f"{flows}:fine")
    for run_id in ("abcd-1", "abcd-2", "xyz-1"):
        aioflow.run_sync(wf, checkpoint=str(store), run_id=run_id)
    code, _, err = run_cli(capsys, "inspect", "xyz", "--store", str(store))
    assert code == cli.EXIT_USAGE and "no run 'xyz'" in err  # too short to be a prefix
    code, out, err = run_cli(capsys, "inspect", "xyz-", "--store", str(store), "--json")
    assert code == 0 and json.loads(out)["run"]["run_id"] == "xyz-1"
    code, out, err = run_cli(capsys, "inspect", "abcd", "--store", str(store))
    assert code == cli.EXIT_USAGE and out == ""
    assert "2 runs in" in err and "starting with 'abcd': abcd-2, abcd-1" in err  # newest first
    assert "hint: Give more of the run id" in err


def test_inspect_of_an_unknown_run_exits_2_with_a_hint(
    capsys: pytest.CaptureFixture[str], flows: str, tmp_path: Path
) -> None:
    start_run(capsys, f"{flows}:fine")
    code, out, err = run_cli(capsys, "inspect", "0123456789abcdef")
    assert code == cli.EXIT_USAGE and out == ""
    assert "[aioflow.checkpoint] no run '0123456789abcdef' in sqlite://" in err
    assert "hint: List the runs with `aioflow runs`" in err
    store = tmp_path / "other store.db"
    start_run(capsys, f"{flows}:fine", "--checkpoint", str(store))
    code, _, err = run_cli(capsys, "inspect", "nope", "--store", str(store))
    assert code == cli.EXIT_USAGE
    assert f"`aioflow runs --store {shlex.quote(str(store))}`" in " ".join(err.split())


def test_inspect_before_any_history(capsys: pytest.CaptureFixture[str], aioflow_home: Path) -> None:
    code, out, err = run_cli(capsys, "inspect", "0123456789abcdef")
    assert code == cli.EXIT_USAGE and out == ""
    assert "there is no run history at" in err and "--store" in err
    assert not (aioflow_home / "runs.db").exists()


def test_inspect_where_the_workflow_does_not_import(
    capsys: pytest.CaptureFixture[str], flows: str
) -> None:
    run_id = start_run(capsys, f"{flows}:checks")
    del sys.modules["hflows"]  # a new process, elsewhere: hflows.BadRow cannot be rebuilt
    sys.path.remove(str(Path(flows).parent))
    code, out, err = run_cli(capsys, "inspect", run_id)
    assert code == 0
    assert f"run       {run_id}" in out and "task_finished" in out
    # The error snapshot is text: it is shown although hflows.BadRow cannot be rebuilt.
    assert "failed attempts" in out and "BadRow" in out
    assert "warning" not in err
    _, doc = run_json(capsys, "inspect", run_id)
    assert doc["failures"] and "BadRow" in doc["failures"][0]["type"]
    assert not doc.get("warning")


def test_inspect_timeline_limit(capsys: pytest.CaptureFixture[str], flows: str) -> None:
    run_id = start_run(capsys, f"{flows}:checks")
    code, out, _ = run_cli(capsys, "inspect", run_id, "--limit", "2")
    assert code == 0
    assert re.search(r"the last 2; \d+ earlier \(--limit 0 or --json: all\)", out)
    assert "run_started" not in out and "run_finished" in out
    code, out, _ = run_cli(capsys, "inspect", run_id, "--limit", "0")
    assert "run_started" in out and "earlier" not in out


# --- aioflow purge -------------------------------------------------------------------


def test_purge(capsys: pytest.CaptureFixture[str], flows: str) -> None:
    start_run(capsys, f"{flows}:checks")
    ok = start_run(capsys, f"{flows}:fine")
    code, out, err = run_cli(capsys, "purge", "--older-than", "7d")
    assert code == 0 and err == ""
    assert out.strip().startswith("purged 0 finished runs older than 7d from sqlite://")
    code, doc = run_json(capsys, "purge", "--older-than", "0", "--status", "failed")
    assert code == 0
    assert doc["purged"] == 1 and doc["older_than"] == 0 and doc["status"] == "failed"
    _, runs = run_json(capsys, "runs")
    assert [r["run_id"] for r in runs["runs"]] == [ok]
    code, out, _ = run_cli(capsys, "purge", "--older-than", "0s")
    assert code == 0 and out.startswith("purged 1 finished run older than 0s")
    _, runs = run_json(capsys, "runs")
    assert runs["runs"] == []


def test_purge_of_another_store_and_of_no_history(
    capsys: pytest.CaptureFixture[str], flows: str, tmp_path: Path, aioflow_home: Path
) -> None:
    code, doc = run_json(capsys, "purge", "--older-than", "1h")
    assert code == 0 and doc["purged"] == 0
    assert not (aioflow_home / "runs.db").exists()
    store = f"sqlite://{tmp_path}/runs.db"
    start_run(capsys, f"{flows}:fine", "--checkpoint", store)
    code, doc = run_json(capsys, "purge", "--older-than", "0", "--store", store)
    assert code == 0 and doc["purged"] == 1


def test_inspect_a_run_whose_process_died(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A run left ``running``: when it was last written, and what was in flight."""
    store = f"sqlite://{tmp_path}/runs.db"
    now = time.time()

    async def abandon() -> None:
        async with open_run_store(store) as runs:
            info = RunInfo("dead-run-1", "nightly", "f" * 64, started_at=now, tasks_total=2)
            await runs.begin_run(
                info, [JournalRecord(RecordKind.RUN_STARTED, at=now, data=b"not signed")]
            )
            started = JournalRecord(RecordKind.TASK_STARTED, "extract", 1, at=now + 0.5)
            await runs.append("dead-run-1", [started])

    asyncio.run(abandon())
    code, out, err = run_cli(capsys, "inspect", "dead", "--store", store)
    assert code == 0
    assert "status    running" in out and "finished  not yet (last written " in out
    assert "running   extract (attempt 1): started, not finished" in out
    assert "task_started" in out and "0.500s" in out
    assert "warning the run's journal could not be decoded here" in err
    code, out, err = run_cli(capsys, "inspect", "dead-run-1", "--store", store, "--json")
    doc = json.loads(out)
    assert doc["run"]["status"] == "running" and doc["run"]["duration"] is None
    assert doc["in_flight"] == [{"task": "extract", "attempt": 1}]
    assert doc["inputs"] is None and doc["warning"]
    code, out, err = run_cli(capsys, "runs", "--store", store)
    assert code == 0 and err == ""
    row = next(line for line in out.splitlines() if "dead-run-1" in line)
    assert "running" in row and "—" in row


# --- a Redis store -----------------------------------------------------------------------


def test_a_redis_store_journals_lists_and_resumes(
    capsys: pytest.CaptureFixture[str], flows: str, redis_server: Any
) -> None:
    store = f"{redis_server.url}?prefix=cli-{uuid.uuid4().hex[:8]}"
    code, doc = run_json(capsys, "run", f"{flows}:checks", "--checkpoint", store)
    assert code == 1  # the checks workflow fails (BadRow)
    run_id = doc["run_id"]
    code, runs = run_json(capsys, "runs", "--store", store)
    assert code == 0 and [r["run_id"] for r in runs["runs"]] == [run_id]
    assert runs["runs"][0]["status"] == "failed"
    code, out, _ = run_cli(capsys, "inspect", run_id, "--store", store)
    assert code == 0 and "failed attempts" in out and "BadRow" in out
