"""The ``aioflow`` command line, driven through ``main([...])`` and, once, as a process."""

from __future__ import annotations

import json
import logging
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from importlib.metadata import entry_points
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

import aioflow
from aioflow import cli
from aioflow._cli.loading import load_workflow, parse_inputs
from aioflow._cli.progress import ProgressDisplay, RunTracker
from aioflow.observability.logging import LOGGER_NAME

ROOT = Path(__file__).resolve().parent.parent

FLOWS = """
import anyio
from aioflow import TaskContext, parallel, task, workflow


@task
def double(n: int = 2) -> int:
    return n * 2


@task
async def describe(double: int, label: str = "value") -> str:
    return f"{label}: {double}"


with workflow("arith") as arith:
    double >> describe


@task
def echo(n: int, name: str, tags: list[str], flag: bool, ratio: float) -> dict:
    return {"n": n, "name": name, "tags": tags, "flag": flag, "ratio": ratio}


with workflow("echo") as echo_wf:
    echo_wf.add(echo)


class BadRow(ValueError):
    pass


@task
async def parse() -> list[int]:
    return [1, 2]


@task
async def validate(parse: list[int]) -> None:
    try:
        {}["row 7"]
    except KeyError as exc:
        raise BadRow("bad row 7") from exc


@task
async def never(validate: None) -> None:
    raise AssertionError("must not run")


with workflow("failing") as failing:
    parse >> validate >> never


@task
async def ok() -> int:
    return 1


@task
async def broken() -> int:
    raise ConnectionError("host down")


with workflow("group") as strict_group:
    parallel(ok, broken, name="members")


@task
def needs(missing_param: int) -> int:
    return missing_param


with workflow("undefined") as undefined:
    undefined.add(needs)


@task
async def stop(ctx: TaskContext) -> None:
    ctx.cancel_workflow("operator said stop")


with workflow("cancelling") as cancelling:
    cancelling.add(stop)


@task
async def slow_first() -> str:
    await anyio.sleep(0.05)
    return "first"


@task
async def fast_second() -> str:
    return "second"


@task
async def flaky() -> int:
    raise ConnectionError("mirror down")


@task
async def report(tolerant: dict) -> list[str]:
    return sorted(tolerant)


with workflow("tolerant") as tolerant_wf:
    parallel(slow_first, fast_second, flaky, name="tolerant", policy="best_effort") >> report


@task
async def late() -> str:
    await anyio.sleep(0.05)
    return "late"


@task
async def early() -> str:
    return "early"


with workflow("ordered") as ordered:
    ordered.add(late, early)


@task
async def crash(ctx: TaskContext) -> None:
    raise RuntimeError("disk full")


with workflow("crashing") as crashing:
    ok >> crash


@task
def fetch(marker: str) -> int:
    with open(marker + ".log", "a") as log:
        log.write("fetch\\n")
    return 1


@task
def flaky_once(fetch: int, marker: str) -> int:
    try:
        with open(marker, "x") as first:  # the first attempt of all fails
            first.write("failed once")
    except FileExistsError:
        return fetch + 1
    raise ConnectionError("mirror down")


with workflow("once") as once:
    fetch >> flaky_once


not_a_workflow = 42
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
        if name.startswith(("flows", "aioflow_workflow", "pkgx")) or file.startswith(
            (str(ROOT / "examples"), tempfile.gettempdir())
        ):
            del sys.modules[name]


@pytest.fixture
def flows(tmp_path: Path) -> str:
    """Path of a module of small workflows (the CLI imports it by path)."""
    path = tmp_path / "flows.py"
    path.write_text(FLOWS)
    return str(path)


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# --- aioflow run ---------------------------------------------------------------------


def test_run_prints_results_table_and_summary(
    capsys: pytest.CaptureFixture[str], flows: str
) -> None:
    code, out, err = run_cli(capsys, "run", f"{flows}:arith", "--input", "n=21")
    assert code == 0
    assert "arith results" in out
    assert "double" in out and "42" in out
    assert "'value: 42'" in out  # repr of the value
    assert "✓ arith succeeded" in out and "2 succeeded" in out
    assert err == ""  # no live display, no logs: stdout is not a terminal
    assert "\x1b" not in out  # no control codes when piped


def test_run_json_is_one_clean_document(capsys: pytest.CaptureFixture[str], flows: str) -> None:
    code, out, _ = run_cli(capsys, "run", f"{flows}:arith", "--json", "-i", "label=total")
    assert code == 0
    doc = json.loads(out)
    assert doc["status"] == "succeeded"
    assert doc["workflow"] == "arith"
    assert doc["results"] == {"double": 4, "describe": "total: 4"}
    assert doc["tasks"]["double"]["status"] == "succeeded"
    assert doc["tasks"]["double"]["attempts"] == 1
    assert doc["error"] is None


def test_inputs_reach_tasks_parsed_as_json_or_text(
    capsys: pytest.CaptureFixture[str], flows: str
) -> None:
    argv = ["-i", "n=3", "-i", "name=alice", "-i", 'tags=["a", "b"]', "-i", "flag=true"]
    code, out, _ = run_cli(capsys, "run", f"{flows}:echo_wf", "--json", *argv, "-i", "ratio=0.5")
    assert code == 0
    expected = {"n": 3, "name": "alice", "tags": ["a", "b"], "flag": True, "ratio": 0.5}
    assert json.loads(out)["results"]["echo"] == expected


@pytest.mark.parametrize(
    ("pair", "value"),
    [
        ("n=3", 3),
        ("x=-1.5", -1.5),
        ("flag=false", False),
        ("nothing=null", None),
        ("name=alice", "alice"),
        ('id="42"', "42"),
        ("empty=", ""),
        ("expr=a=b", "a=b"),
        ('obj={"k": [1, 2]}', {"k": [1, 2]}),
        ("text=not json [", "not json ["),
    ],
)
def test_parse_inputs(pair: str, value: Any) -> None:
    key = pair.partition("=")[0]
    assert parse_inputs([pair]) == {key: value}


@pytest.mark.parametrize("argv", [["-i", "novalue"], ["-i", "=1"], ["-i", "a=1", "-i", "a=2"]])
def test_bad_inputs_are_usage_errors(
    capsys: pytest.CaptureFixture[str], flows: str, argv: list[str]
) -> None:
    code, out, err = run_cli(capsys, "run", f"{flows}:arith", *argv)
    assert code == cli.EXIT_USAGE == 2
    assert "[aioflow.configuration]" in err and "hint:" in err
    assert out == ""


def test_failed_run_exits_1_with_code_hint_and_cause(
    capsys: pytest.CaptureFixture[str], flows: str
) -> None:
    code, out, err = run_cli(capsys, "run", f"{flows}:failing")
    assert code == cli.EXIT_FAILED == 1
    assert "[aioflow.workflow_failed] task 'validate' failed" in err
    assert "hint:" in err
    assert "caused by flows.BadRow: bad row 7" in err
    assert "caused by KeyError: 'row 7'" in err
    assert "Traceback" not in err and "most recent call" not in err
    assert "parse" in out and "[1, 2]" in out  # partial results
    assert "✗ failing failed" in out and "1 skipped" in out


def test_traceback_option_shows_the_full_traceback(
    capsys: pytest.CaptureFixture[str], flows: str
) -> None:
    code, _, err = run_cli(capsys, "run", f"{flows}:failing", "--traceback")
    assert code == 1
    assert "Traceback" in err
    assert 'raise BadRow("bad row 7") from exc' in err
    assert "[aioflow.workflow_failed]" in err  # the summary still follows


def test_failed_run_json_carries_the_error(capsys: pytest.CaptureFixture[str], flows: str) -> None:
    code, out, err = run_cli(capsys, "run", f"{flows}:failing", "--json")
    assert code == 1
    doc = json.loads(out)
    assert doc["status"] == "failed"
    assert doc["results"] == {"parse": [1, 2]}
    assert doc["tasks"]["never"]["status"] == "skipped"
    error = doc["error"]
    assert error["code"] == "aioflow.workflow_failed"
    assert error["task_name"] == "validate"
    assert error["hint"]
    assert [c["type"] for c in error["causes"]] == ["flows.BadRow", "KeyError"]
    assert "[aioflow.workflow_failed]" in err  # humans reading stderr see it too


def test_group_failure_lists_members(capsys: pytest.CaptureFixture[str], flows: str) -> None:
    code, _, err = run_cli(capsys, "run", f"{flows}:strict_group")
    assert code == 1
    assert "[aioflow.group_failed]" in err
    assert "member broken: ConnectionError: host down" in err


def test_limits_are_passed_to_the_run(capsys: pytest.CaptureFixture[str], flows: str) -> None:
    code, out, _ = run_cli(capsys, "run", f"{flows}:arith", "--max-concurrency", "1", "--json")
    assert code == 0 and json.loads(out)["status"] == "succeeded"
    code, out, _ = run_cli(capsys, "run", f"{flows}:arith", "--max-concurrency", "0", "--json")
    assert code == 0 and json.loads(out)["status"] == "succeeded"  # 0: no limit
    code, _, err = run_cli(capsys, "run", f"{flows}:arith", "--max-steps", "1")
    assert code == 1
    assert "[aioflow.max_steps]" in err and "hint: Raise max_steps=" in err


def test_definition_error_exits_2(capsys: pytest.CaptureFixture[str], flows: str) -> None:
    code, out, err = run_cli(capsys, "run", f"{flows}:undefined")
    assert code == cli.EXIT_USAGE
    assert "[aioflow.definition] parameter 'missing_param' of task 'needs'" in err
    assert "hint: Bind it" in err
    assert out == ""


def test_cancelled_run_exits_130(capsys: pytest.CaptureFixture[str], flows: str) -> None:
    code, out, err = run_cli(capsys, "run", f"{flows}:cancelling")
    assert code == cli.EXIT_CANCELLED == 130
    assert "[aioflow.workflow_cancelled]" in err and "operator said stop" in err
    assert "⊘ cancelling cancelled" in out


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("{flows}", "does not name a workflow"),
        ("{flows}:nope", "has no attribute 'nope'"),
        ("{flows}:not_a_workflow", "is not a Workflow (it is of type int)"),
        ("{tmp}/missing.py:wf", "no such file"),
        ("no_such_pkg.flows:wf", "no module named 'no_such_pkg.flows'"),
        ("{tmp}/raises.py:wf", "importing"),
    ],
)
def test_loading_errors_exit_2(
    capsys: pytest.CaptureFixture[str], flows: str, tmp_path: Path, target: str, message: str
) -> None:
    (tmp_path / "raises.py").write_text("import no_such_dependency_xyz\n")
    spec = target.format(flows=flows, tmp=tmp_path)
    code, _, err = run_cli(capsys, "run", spec)
    assert code == 2
    assert "[aioflow.configuration]" in err and message in err and "hint:" in err


def test_import_failure_names_its_cause(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "raises.py").write_text("import no_such_dependency_xyz\n")
    code, _, err = run_cli(capsys, "run", f"{tmp_path}/raises.py:wf")
    assert code == 2
    assert "caused by ModuleNotFoundError: No module named 'no_such_dependency_xyz'" in err


def test_module_spec_is_imported_from_the_current_directory(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "pkgx"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "flows.py").write_text(FLOWS)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    code, out, _ = run_cli(capsys, "run", "pkgx.flows:arith", "--json")
    assert code == 0
    assert json.loads(out)["results"]["describe"] == "value: 4"


def test_file_named_like_a_loaded_module_does_not_replace_it(tmp_path: Path) -> None:
    path = tmp_path / "json.py"
    path.write_text(FLOWS)
    wf = load_workflow(f"{path}:arith")
    assert wf.name == "arith"
    assert sys.modules["json"] is json
    assert load_workflow(f"{path}:arith") is not None


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["run"],
        ["frobnicate"],
        ["run", "x.py:wf", "--max-concurrency", "-1"],
        ["run", "x.py:wf", "--log-level", "chatty"],
        ["graph", "x.py:wf", "--format", "png"],
    ],
)
def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    code, _, err = run_cli(capsys, *argv)
    assert code == 2
    assert "usage: aioflow" in err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "--version")
    assert code == 0
    assert out.strip() == f"aioflow {aioflow.__version__}"


def test_help_lists_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "--help")
    assert code == 0
    assert "run" in out and "graph" in out


def test_log_level_turns_logs_on_and_off_again(
    capsys: pytest.CaptureFixture[str], flows: str
) -> None:
    logger = logging.getLogger(LOGGER_NAME)
    handlers, level = logger.handlers[:], logger.level
    code, _, err = run_cli(capsys, "run", f"{flows}:arith", "--log-level", "info")
    assert code == 0
    assert "run started" in err and "run finished" in err
    assert logger.handlers == handlers and logger.level == level

    code, _, err = run_cli(capsys, "run", f"{flows}:arith", "--log-json", "--json")
    assert code == 0
    events = [json.loads(line)["event"] for line in err.splitlines()]
    assert events[0] == "run started" and events[-1] == "run finished"


def test_unexpected_errors_are_reported_as_bugs(
    capsys: pytest.CaptureFixture[str], flows: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode(spec: str) -> None:
        raise RuntimeError("kaboom")

    monkeypatch.setattr(cli, "load_workflow", explode)
    code, _, err = run_cli(capsys, "graph", f"{flows}:arith")
    assert code == 1
    assert "RuntimeError: kaboom" in err and "please report it" in err
    assert "Traceback" in err


# --- progress ------------------------------------------------------------------------


async def test_tracker_follows_a_run_with_dynamic_and_skipped_tasks(flows: str) -> None:
    wf = load_workflow(f"{ROOT}/examples/dynamic.py:wf")
    tracker = RunTracker()
    async with aioflow.start(wf, {"filename": "cat.png", "size": 10}) as handle:
        async for event in handle.events():
            tracker.apply(event)
        await handle.result()
    assert tracker.workflow == "dynamic"
    assert tracker.total == 4  # 3 static tasks + the thumbnail added at run time
    assert tracker.done == 4 and tracker.running == []
    assert tracker.status == "succeeded"

    tracker = RunTracker()
    async with aioflow.start(wf, {"filename": "big.iso", "size": 10**9}) as handle:
        async for event in handle.events():
            tracker.apply(event)
        await handle.result()
    assert tracker.total == 4  # quarantine added; index and notify skipped
    assert tracker.count("skipped") == 2
    assert tracker.done == 4


async def test_progress_display_renders_on_a_terminal(flows: str) -> None:
    wf = load_workflow(f"{flows}:failing")
    console = Console(file=StringIO(), force_terminal=True, width=120)
    tracker = RunTracker()
    with pytest.raises(aioflow.WorkflowFailedError):
        async with aioflow.start(wf) as handle:
            with ProgressDisplay(console, enabled=True, description=wf.name) as display:
                async for event in handle.events():
                    tracker.apply(event)
                    display.update(tracker)
            await handle.result()
    screen = console.file.getvalue()  # type: ignore[attr-defined]
    assert "failing" in screen and "3/3" in screen and "1 failed" in screen


# --- aioflow graph -------------------------------------------------------------------


@pytest.mark.parametrize(("fmt", "render"), [("mermaid", "to_mermaid"), ("dot", "to_dot")])
def test_graph(capsys: pytest.CaptureFixture[str], fmt: str, render: str) -> None:
    target = f"{ROOT}/examples/fanout.py:wf"
    code, out, _ = run_cli(capsys, "graph", target, "--format", fmt)
    assert code == 0
    assert out == getattr(load_workflow(target), render)()
    assert ("flowchart TD" if fmt == "mermaid" else "digraph") in out


def test_graph_defaults_to_mermaid(capsys: pytest.CaptureFixture[str], flows: str) -> None:
    code, out, _ = run_cli(capsys, "graph", f"{flows}:arith")
    assert code == 0
    assert "flowchart TD" in out and "-->" in out


# --- as a process ----------------------------------------------------------------------


def test_entry_point_is_declared() -> None:
    (script,) = [ep for ep in entry_points(group="console_scripts") if ep.name == "aioflow"]
    assert script.value == "aioflow.cli:main"


def test_python_m_aioflow_runs_the_quick_start() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "aioflow", "run", "examples/etl.py:wf", "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["results"]["load"] == {
        "loaded": 4,
        "revenue_eur": {"acme": 137.84, "globex": 116.06},
    }
    assert proc.stderr == ""


# A task that waits until cancelled; {start} is its first line.
_WAITS = """
import signal, threading, time
import anyio
from aioflow import task, workflow

def ctrl_c_in_this_thread():
    time.sleep(0.3)  # the main thread is asleep in the event loop by then
    signal.pthread_kill(threading.get_ident(), signal.SIGINT)

@task
async def wait() -> None:
    {start}
    try:
        await anyio.sleep_forever()
    finally:
        print("cleaned up", flush=True)

with workflow("waits") as wf:
    wf.add(wait)
"""


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT delivery is POSIX")
@pytest.mark.parametrize("taken_by", ["the main thread", "another thread"])
def test_ctrl_c_cancels_the_run_and_exits_130(tmp_path: Path, taken_by: str) -> None:
    """The kernel may hand SIGINT to any thread of the process: with "another thread",
    a thread of the task's takes it while the main thread sleeps in the event loop with
    nothing scheduled. asyncio.run's own handler never ran then (nothing woke the
    loop): the command hung."""
    if taken_by == "the main thread":
        start = 'print("started", flush=True)'
    else:
        start = "threading.Thread(target=ctrl_c_in_this_thread, daemon=True).start()"
    (tmp_path / "waits.py").write_text(_WAITS.format(start=start))
    proc = subprocess.Popen(
        [sys.executable, "-m", "aioflow", "run", f"{tmp_path}/waits.py:wf"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    if taken_by == "the main thread":
        assert proc.stdout is not None
        assert proc.stdout.readline() == "started\n"  # the task runs: interrupt it now
        proc.send_signal(signal.SIGINT)
    out, err = _communicate(proc)
    assert proc.returncode == 130, err
    assert out == "cleaned up\n"  # the task was cancelled and finished before exit
    assert "interrupted" in err and "Traceback" not in err


def _communicate(proc: subprocess.Popen[str], timeout: float = 30) -> tuple[str, str]:
    """The process's output once it exits; killed (and the test failed) if it hangs."""
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"still running {timeout} s after Ctrl-C; stdout {out!r}, stderr {err!r}")


# --- aioflow resume ------------------------------------------------------------------


def resume_line(store: Path | str, target: str, run_id: str | None = None) -> str:
    """The resume command the CLI prints, as a user would type it."""
    line = f"aioflow resume {shlex.quote(str(store))} {shlex.quote(target)}"
    return line if run_id is None else f"{line} --run-id {run_id}"


def printed_resume_command(err: str) -> list[str]:
    """The argv of the ``aioflow resume ...`` command printed on stderr (without "aioflow")."""
    match = re.search(
        r"continue it with: (aioflow resume .+? --run-id [0-9a-f]+)", " ".join(err.split())
    )
    assert match is not None, err
    argv = shlex.split(match.group(1))
    assert argv[0] == "aioflow"
    return argv[1:]


def test_failed_run_then_the_printed_resume_command_continues_it(
    capsys: pytest.CaptureFixture[str], flows: str, tmp_path: Path
) -> None:
    store, target = f"sqlite://{tmp_path}/runs.db", f"{flows}:once"
    marker = tmp_path / "marker"
    code, out, err = run_cli(capsys, "run", target, "-i", f"marker={marker}", "--checkpoint", store)
    assert code == cli.EXIT_FAILED
    assert "[aioflow.workflow_failed] task 'flaky_once' failed" in err
    (run_id,) = re.findall(r"run ([0-9a-f]{32})", out)
    assert f"continue it with: {resume_line(store, target, run_id)}" in err
    assert (tmp_path / "marker.log").read_text() == "fetch\n"

    code, out, err = run_cli(capsys, *printed_resume_command(err), "--json")
    assert code == cli.EXIT_OK, err
    doc = json.loads(out)
    assert doc["run_id"] == run_id  # the same run, continued
    assert doc["status"] == "succeeded"
    assert doc["results"] == {"fetch": 1, "flaky_once": 2}
    assert (tmp_path / "marker.log").read_text() == "fetch\n"  # finished before: not run again
    assert "continue it with" not in err

    code, _, err = run_cli(capsys, "resume", store, target, "--run-id", run_id)
    assert code == cli.EXIT_USAGE  # it succeeded: nothing left to resume
    assert "[aioflow.checkpoint]" in err and "nothing left to resume" in err


def test_resume_without_run_id_takes_the_one_unfinished_run(
    capsys: pytest.CaptureFixture[str], flows: str, tmp_path: Path
) -> None:
    store, target = tmp_path / "runs.db", f"{flows}:once"  # a plain path: a SQLite file
    code, _, err = run_cli(
        capsys, "run", target, "-i", f"marker={tmp_path / 'm'}", "--checkpoint", str(store)
    )
    assert code == cli.EXIT_FAILED
    assert resume_line(store, target) in err  # the path as it was given
    code, out, _ = run_cli(capsys, "resume", str(store), target, "--json")
    assert code == cli.EXIT_OK and json.loads(out)["status"] == "succeeded"


def test_resume_takes_a_run_id_prefix(
    capsys: pytest.CaptureFixture[str], flows: str, tmp_path: Path
) -> None:
    store, target = f"sqlite://{tmp_path}/runs.db", f"{flows}:once"
    for name in ("a", "b"):  # two unfinished runs: resume must be told which
        args = ("-i", f"marker={tmp_path / name}", "--checkpoint", store, "--json")
        code, out, _ = run_cli(capsys, "run", target, *args)
        assert code == cli.EXIT_FAILED
    run_id = json.loads(out)["run_id"]
    code, _, err = run_cli(capsys, "resume", store, target)
    assert code == cli.EXIT_USAGE
    assert "holds 2 unfinished runs" in err and "--run-id" in err
    code, out, _ = run_cli(capsys, "resume", store, target, "--run-id", run_id[:10], "--json")
    assert code == cli.EXIT_OK
    assert json.loads(out)["run_id"] == run_id


def test_resume_of_a_damaged_store_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], flows: str, tmp_path: Path
) -> None:
    path = tmp_path / "bad.db"
    path.write_bytes(b"this is not a run store")
    code, _, err = run_cli(capsys, "resume", str(path), f"{flows}:arith")
    assert code == 2
    assert "[aioflow.checkpoint]" in err and "hint:" in err
    assert path.read_bytes() == b"this is not a run store"


def test_resume_of_a_missing_store_creates_nothing(
    capsys: pytest.CaptureFixture[str], flows: str, tmp_path: Path
) -> None:
    path = tmp_path / "nothing-here.db"
    code, out, err = run_cli(capsys, "resume", f"sqlite://{path}", f"{flows}:arith")
    assert code == 2 and out == ""
    assert f"there is no run store at {path}" in err and "hint:" in err
    assert not path.exists()


def test_results_table_of_a_wide_run_is_capped() -> None:
    from aioflow._cli.report import results_table

    with aioflow.workflow("wide") as wf:
        wf.add(*(aioflow.task(name=f"t{i}")(lambda: 1) for i in range(60)))
    result = aioflow.run_sync(wf)
    console = Console(file=StringIO(), width=80)
    console.print(results_table(result, limit=5))
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert sum(1 for line in text.splitlines() if line.startswith("│ t")) == 5
    assert "… 55 more" in text and "--json" in text


# --- run --checkpoint: a run store, shared by many runs; say how to resume -------------


def test_cancelled_journaled_run_prints_the_resume_command(
    capsys: pytest.CaptureFixture[str], flows: str, tmp_path: Path
) -> None:
    store, target = f"sqlite://{tmp_path}/runs.db", f"{flows}:cancelling"
    code, out, err = run_cli(capsys, "run", target, "--checkpoint", store, "--json")
    assert code == cli.EXIT_CANCELLED
    assert resume_line(store, target, json.loads(out)["run_id"]) in err


def test_many_runs_share_one_store(
    capsys: pytest.CaptureFixture[str], flows: str, tmp_path: Path
) -> None:
    store = f"sqlite://{tmp_path}/runs.db"
    ids = []
    for target in ("arith", "arith", "crashing"):  # a store never overwrites a run
        code, out, _ = run_cli(capsys, "run", f"{flows}:{target}", "--checkpoint", store, "--json")
        assert code == (cli.EXIT_OK if target == "arith" else cli.EXIT_FAILED)
        ids.append(json.loads(out)["run_id"])
    code, out, _ = run_cli(capsys, "runs", "--store", store, "--json")
    assert code == 0
    runs = json.loads(out)["runs"]
    assert [r["run_id"] for r in runs] == ids[::-1]  # newest first
    assert [r["status"] for r in runs] == ["failed", "succeeded", "succeeded"]


def test_a_journaled_run_is_not_in_the_history(
    capsys: pytest.CaptureFixture[str], flows: str, tmp_path: Path, aioflow_home: Path
) -> None:
    store = f"sqlite://{tmp_path}/runs.db"
    assert run_cli(capsys, "run", f"{flows}:arith", "--checkpoint", store)[0] == 0
    assert not (aioflow_home / "runs.db").exists()  # the store given is the journal


def test_run_refuses_a_file_that_is_not_a_run_store(
    capsys: pytest.CaptureFixture[str], flows: str, tmp_path: Path
) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("my precious notes")
    code, out, err = run_cli(capsys, "run", f"{flows}:arith", "--checkpoint", str(notes))
    assert code == cli.EXIT_USAGE and out == ""  # nothing ran
    assert "[aioflow.checkpoint]" in err and "hint:" in err
    assert notes.read_text() == "my precious notes"


@pytest.mark.parametrize(
    ("store", "message"),
    [
        ("redis://localhost/zero", "the database must be a number"),
        ("ftp://host/runs.db", "unknown scheme"),
        ("sqlite:///tmp/x.db?frobnicate=1", "unknown option"),
    ],
)
def test_run_with_a_bad_store_url_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], flows: str, store: str, message: str
) -> None:
    code, out, err = run_cli(capsys, "run", f"{flows}:arith", "--checkpoint", store)
    assert code == cli.EXIT_USAGE and out == ""
    assert "[aioflow.configuration]" in err and message in err


def test_run_journaled_in_memory_prints_no_resume_command(
    capsys: pytest.CaptureFixture[str], flows: str
) -> None:
    code, _, err = run_cli(capsys, "run", f"{flows}:crashing", "--checkpoint", "memory://")
    assert code == cli.EXIT_FAILED
    assert "disk full" in err and "aioflow resume" not in err  # nothing durable to resume


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT delivery is POSIX")
def test_ctrl_c_of_a_journaled_run_prints_the_resume_command(tmp_path: Path) -> None:
    (tmp_path / "waits.py").write_text(
        textwrap.dedent(
            """
            import anyio
            from aioflow import task, workflow

            @task
            async def wait() -> None:
                print("started", flush=True)
                await anyio.sleep_forever()

            with workflow("waits") as wf:
                wf.add(wait)
            """
        )
    )
    store, target = f"sqlite://{tmp_path}/runs.db", f"{tmp_path}/waits.py:wf"
    proc = subprocess.Popen(
        [sys.executable, "-m", "aioflow", "run", target, "--checkpoint", store],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == "started\n"
    proc.send_signal(signal.SIGINT)
    _, err = _communicate(proc)
    assert proc.returncode == 130
    assert "interrupted" in err
    argv = printed_resume_command(err)
    assert argv[:3] == ["resume", store, target]
    runs = json.loads(
        subprocess.run(
            [sys.executable, "-m", "aioflow", "runs", "--store", store, "--json"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
    )["runs"]
    assert [(r["run_id"], r["status"]) for r in runs] == [(argv[-1], "cancelled")]


# --- what a run that succeeded reports ---------------------------------------------------


def test_success_with_tolerated_failures_names_them_on_stderr(
    capsys: pytest.CaptureFixture[str], flows: str
) -> None:
    code, out, err = run_cli(capsys, "run", f"{flows}:tolerant_wf")
    assert code == 0
    assert "✓ tolerant succeeded" in out
    assert "the run succeeded, but not every task did (1 failed)" in err
    assert "  flaky: ConnectionError: mirror down" in err
    code, out, err = run_cli(capsys, "run", f"{flows}:tolerant_wf", "--json")
    assert code == 0 and json.loads(out)["status"] == "succeeded"  # stdout stays one document
    assert "flaky: ConnectionError: mirror down" in err


def test_success_without_failures_is_quiet_on_stderr(
    capsys: pytest.CaptureFixture[str], flows: str
) -> None:
    code, _, err = run_cli(capsys, "run", f"{flows}:ordered")
    assert code == 0 and err == ""


def test_results_print_in_definition_order_not_completion_order(
    capsys: pytest.CaptureFixture[str], flows: str
) -> None:
    code, out, _ = run_cli(capsys, "run", f"{flows}:ordered", "--json")
    assert code == 0
    assert list(json.loads(out)["results"]) == ["late", "early"]
    code, out, _ = run_cli(capsys, "run", f"{flows}:tolerant_wf", "--json")
    assert list(json.loads(out)["results"]) == ["slow_first", "fast_second", "tolerant", "report"]
    code, out, _ = run_cli(capsys, "run", f"{flows}:tolerant_wf")
    rows = [line.split("│")[1].strip() for line in out.splitlines() if line.startswith("│ ")]
    assert rows == ["slow_first", "fast_second", "tolerant", "report"]


def test_graph_validates_like_run(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "cyclic.py").write_text(
        textwrap.dedent(
            """
            from aioflow import task, workflow

            @task
            async def a() -> None: ...

            @task
            async def b() -> None: ...

            with workflow("cyclic") as wf:
                a >> b >> a
            """
        )
    )
    code, out, err = run_cli(capsys, "graph", f"{tmp_path}/cyclic.py:wf")
    assert code == cli.EXIT_USAGE
    assert out == ""
    assert "[aioflow.definition]" in err and "cycle" in err
    assert (code, "[aioflow.definition]" in err) == (
        run_cli(capsys, "run", f"{tmp_path}/cyclic.py:wf")[0],
        True,
    )
