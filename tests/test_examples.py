"""Every example in ``examples/`` runs here: its workflow, its script mode, its CLI load.

Each example needs at least one test marked ``@covers("name")``;
``test_every_example_is_covered`` fails when an example has none.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import runpy
import sqlite3
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

import anyio
import httpx
import pytest
from starlette.requests import Request

import aioflow
from aioflow import cli, task, workflow
from aioflow._cli.loading import load_workflow

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
ALL_EXAMPLES = sorted(p.stem for p in EXAMPLES.glob("*.py"))

F = TypeVar("F", bound=Callable[..., Any])
_covered: set[str] = set()


def covers(*names: str) -> Callable[[F], F]:
    """Mark a test as exercising the examples ``names`` (checked below)."""
    _covered.update(names)
    return lambda fn: fn


@functools.cache
def example(name: str) -> ModuleType:
    """Import ``examples/<name>.py`` by path, once."""
    spec = importlib.util.spec_from_file_location(f"examples_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_every_example_is_covered() -> None:
    assert ALL_EXAMPLES, "no examples found"
    assert set(ALL_EXAMPLES) - _covered == set(), "examples without a test: add one"


# --- etl -------------------------------------------------------------------------------


@covers("etl")
async def test_etl_loads_the_sample() -> None:
    result = await aioflow.run(example("etl").wf)
    assert result.output == {"loaded": 4, "revenue_eur": {"acme": 137.84, "globex": 116.06}}
    assert [r.status for r in result.tasks.values()] == ["succeeded"] * 3


@covers("etl")
async def test_etl_reads_a_file_filters_and_persists(tmp_path: Path) -> None:
    source = tmp_path / "orders.csv"
    source.write_text("order_id,customer,amount,currency\n1,a,10,EUR\n2,b,100,USD\n3,a,60,EUR\n")
    database = tmp_path / "orders.db"
    inputs = {"source": str(source), "min_eur": 50, "database": str(database)}
    result = await aioflow.run(example("etl").wf, inputs)
    assert result.output == {"loaded": 2, "revenue_eur": {"b": 92.0, "a": 60.0}}
    with sqlite3.connect(database) as db:
        rows = db.execute("SELECT order_id FROM orders ORDER BY order_id").fetchall()
    assert rows == [(2,), (3,)]


@covers("etl")
async def test_etl_fails_loudly_on_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(aioflow.WorkflowFailedError) as info:
        await aioflow.run(example("etl").wf, {"source": str(tmp_path / "nope.csv")})
    assert isinstance(info.value.__cause__, FileNotFoundError)
    assert info.value.result is not None
    assert info.value.result.tasks["extract"].attempts == 1  # only transient errors retry


# --- fanout ----------------------------------------------------------------------------


@covers("fanout")
async def test_fanout_keeps_the_cheapest_quote_despite_one_failure() -> None:
    result = await aioflow.run(example("fanout").wf, {"quantity": 30})
    assert result.output == {
        "supplier": "initech",
        "total_eur": 110.4,
        "answered": ["acme", "globex", "initech"],
        "missing": ["umbrella"],
    }
    assert result.tasks["quote_umbrella"].status == "failed"
    assert isinstance(result.tasks["quote_umbrella"].error, ConnectionError)
    assert set(result["quotes"]) == {"quote_acme", "quote_globex", "quote_initech"}


@covers("fanout")
async def test_fanout_fails_when_fewer_than_two_suppliers_answer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fanout = example("fanout")
    monkeypatch.setattr(fanout, "OFFLINE", {"acme", "globex", "umbrella"})
    with pytest.raises(aioflow.GroupFailedError) as info:
        await aioflow.run(fanout.wf)
    assert info.value.group == "quotes"
    assert info.value.outcomes["quote_initech"] == "succeeded"
    assert sorted(info.value.errors) == ["quote_acme", "quote_globex", "quote_umbrella"]


# --- loop ------------------------------------------------------------------------------


@covers("loop")
async def test_loop_converges() -> None:
    result = await aioflow.run(example("loop").wf, {"x": 1e6})
    assert result.output["sqrt"] == pytest.approx(1000.0, rel=1e-12)
    assert result.tasks["newton"].executions > 5  # it iterated
    assert result.tasks["report"].executions == 1  # its successor ran once, at the end


@covers("loop")
async def test_loop_is_bounded_by_max_cycles() -> None:
    loop = example("loop")
    with pytest.raises(aioflow.CycleLimitExceededError) as info:
        await aioflow.run(loop.wf, {"x": 1e300})  # halves each step: needs ~500 steps
    assert info.value.max_cycles == loop.MAX_CYCLES
    assert info.value.result is not None
    assert info.value.result.tasks["report"].status == "skipped"


# --- dynamic ---------------------------------------------------------------------------


@covers("dynamic")
async def test_dynamic_adds_a_thumbnail_for_images() -> None:
    result = await aioflow.run(example("dynamic").wf, {"filename": "Cat.png", "size": 2048})
    assert result["thumbnail"] == "thumbs/Cat.png.256.webp"
    assert result.tasks["thumbnail"].dynamic
    assert result["notify"] == "Cat.png is searchable as cat, image"


@covers("dynamic")
async def test_dynamic_goto_quarantine_skips_the_normal_path() -> None:
    result = await aioflow.run(example("dynamic").wf, {"filename": "x.iso", "size": 10**9})
    assert result.succeeded
    assert result["quarantine"]["quarantined"] == "x.iso"
    assert result.tasks["index"].status == "skipped"
    assert result.tasks["notify"].status == "skipped"
    assert "thumbnail" not in result.tasks


@covers("dynamic")
async def test_dynamic_adds_nothing_for_documents() -> None:
    result = await aioflow.run(example("dynamic").wf, {"filename": "a.txt", "size": 1})
    assert not any(record.dynamic for record in result.tasks.values())


# --- fastapi_app -----------------------------------------------------------------------


@pytest.fixture
async def fastapi_client() -> AsyncIterator[httpx.AsyncClient]:
    app = example("fastapi_app").app
    async with (
        app.router.lifespan_context(app),  # ASGITransport does not run the lifespan
        httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://test") as client,
    ):
        yield client


@covers("fastapi_app")
async def test_fastapi_endpoint_runs_the_workflow(fastapi_client: httpx.AsyncClient) -> None:
    text = "the cat and the hat and the bat sat; the cat ran"
    response = await fastapi_client.post("/analyze", json={"text": text, "top": 2})
    assert response.status_code == 200
    body = response.json()
    assert body["words"] == 12 and body["distinct"] == 7
    assert body["keywords"] == ["cat", "hat"]
    assert len(body["run_id"]) == 32


@covers("fastapi_app")
async def test_fastapi_failed_run_is_an_http_error_with_code_and_hint(
    fastapi_client: httpx.AsyncClient,
) -> None:
    response = await fastapi_client.post("/analyze", json={"text": " ... "})
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert detail["code"] == "aioflow.workflow_failed"
    assert detail["hint"]
    assert detail["cause"] == "ValueError: the text contains no words"


@covers("fastapi_app")
async def test_fastapi_lifespan_sets_up_the_services(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = example("fastapi_app")
    async with module.app.router.lifespan_context(module.app):
        services = module.app.state.services
        assert services.workflow is module.wf
        assert "the" in services.stopwords

    (tmp_path / "stopwords.txt").write_text("Cat\nhat\n")
    monkeypatch.setenv("STOPWORDS_FILE", str(tmp_path / "stopwords.txt"))
    async with (
        module.app.router.lifespan_context(module.app),
        httpx.AsyncClient(transport=httpx.ASGITransport(module.app), base_url="http://t") as client,
    ):
        assert module.app.state.services.stopwords == {"cat", "hat"}
        response = await client.post("/analyze", json={"text": "the cat, the hat", "top": 1})
        assert response.json()["keywords"] == ["the"]


@covers("fastapi_app")
async def test_fastapi_client_disconnect_cancels_the_run() -> None:
    started, stopped = anyio.Event(), anyio.Event()

    @task
    async def wait_for_ever() -> None:
        started.set()
        try:
            await anyio.sleep_forever()
        finally:
            stopped.set()

    with workflow("endless") as endless:
        endless.add(wait_for_ever)

    async def receive() -> dict[str, Any]:
        await started.wait()  # the client goes away while the run is running
        return {"type": "http.disconnect"}

    request = Request({"type": "http", "method": "POST", "path": "/", "headers": []}, receive)
    result = await example("fastapi_app").run_unless_disconnected(request, endless, {})
    assert result is None
    assert stopped.is_set()  # the task was cancelled, and finished before we returned


# --- aiohttp_app -----------------------------------------------------------------------


@covers("aiohttp_app")
async def test_aiohttp_handler_runs_the_workflow(aiohttp_client: Any) -> None:
    client = await aiohttp_client(example("aiohttp_app").create_app())
    response = await client.post("/stats", json={"values": [2, 4, 4, 4, 5, 5, 7, 9, "x"]})
    assert response.status == 200
    body = await response.json()
    assert body["count"] == 8
    assert body["mean"] == 5.0 and body["median"] == 4.5 and body["spread"] == 2.0


@covers("aiohttp_app")
async def test_aiohttp_failed_run_is_an_http_error_with_code_and_hint(aiohttp_client: Any) -> None:
    client = await aiohttp_client(example("aiohttp_app").create_app())
    response = await client.post("/stats", json={"values": ["a", True]})
    assert response.status == 422
    body = await response.json()
    assert body["code"] == "aioflow.workflow_failed"
    assert body["hint"]
    assert body["cause"] == "ValueError: no numeric values were given"

    response = await client.post("/stats", json=[1, 2])
    assert response.status == 400


# --- every example: as a script, and through the CLI -----------------------------------

SCRIPT_ARGS = {"fastapi_app": ["--demo"], "aiohttp_app": ["--demo"]}
CLI_INPUTS = {
    "fastapi_app": ["-i", "text=to be or not to be"],
    "aiohttp_app": ["-i", "values=[1, 2, 3]"],
}


@pytest.mark.parametrize("name", ALL_EXAMPLES)
def test_example_runs_as_a_script(
    name: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = EXAMPLES / f"{name}.py"
    monkeypatch.setattr(sys, "argv", [str(path), *SCRIPT_ARGS.get(name, [])])
    runpy.run_path(str(path), run_name="__main__")
    out = capsys.readouterr().out
    assert out.strip(), f"{name} printed nothing"


@pytest.mark.parametrize("name", ALL_EXAMPLES)
def test_example_runs_through_the_cli(
    name: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "path", sys.path[:])  # the CLI puts examples/ on it
    monkeypatch.delitem(sys.modules, name, raising=False)  # imported as `name`, then dropped
    target = f"{EXAMPLES / name}.py:wf"
    assert isinstance(load_workflow(target), aioflow.Workflow)
    code = cli.main(["run", target, "--json", *CLI_INPUTS.get(name, [])])
    out = capsys.readouterr().out
    assert code == 0
    assert json.loads(out)["status"] == "succeeded"
