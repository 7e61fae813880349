"""aioflow inside aiohttp: summary statistics computed by a workflow per request.

* ``create_app()`` is the app factory; its cleanup context (aiohttp's lifespan)
  checks the workflow at startup and sets up the state requests share.
* ``POST /stats`` awaits ``aioflow.run(...)`` in the handler. A failed run becomes a
  JSON error response carrying the error's ``code`` and ``hint``.
* Served with ``handler_cancellation=True``, a client that disconnects cancels its
  handler, and with it the run and every task of it.

Run it:

    python examples/aiohttp_app.py --demo        # one request on a local test server
    python examples/aiohttp_app.py               # serve on :8080
    aioflow run examples/aiohttp_app.py:wf --input 'values=[3, 1, 4, 1, 5]'
"""

from __future__ import annotations

import asyncio
import statistics
import sys
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

import aioflow
from aioflow import AioflowError, parallel, task, workflow


@task
def clean(values: list[Any]) -> list[float]:
    """Keep the numbers; no numbers at all is the client's mistake."""
    numbers = [float(v) for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
    if not numbers:
        raise ValueError("no numeric values were given")
    return numbers


@task
def mean(clean: list[float]) -> float:
    return statistics.fmean(clean)


@task
def median(clean: list[float]) -> float:
    return statistics.median(clean)


@task
def spread(clean: list[float]) -> float:
    return statistics.pstdev(clean)


@task
def summary(measures: dict[str, float], clean: list[float]) -> dict[str, Any]:
    """Fan-in of the ``measures`` group."""
    return {"count": len(clean), **measures}


with workflow("stats") as wf:
    clean >> parallel(mean, median, spread, name="measures") >> summary


RUNS = web.AppKey("runs", asyncio.Semaphore)
WORKFLOW = web.AppKey("workflow", aioflow.Workflow)


async def services(app: web.Application) -> AsyncIterator[None]:
    """Startup and shutdown (aiohttp's lifespan): check the workflow, share state."""
    wf.validate()
    app[WORKFLOW] = wf
    app[RUNS] = asyncio.Semaphore(16)  # how many runs may execute at once
    yield


def error_response(exc: AioflowError) -> web.Response:
    """Map a run's error to an HTTP error with its code and hint."""
    cause = exc.__cause__
    client_error = isinstance(exc, aioflow.WorkflowDefinitionError) or isinstance(cause, ValueError)
    body = {"code": exc.code, "message": exc.message, "hint": exc.hint}
    if cause is not None:
        body["cause"] = f"{type(cause).__name__}: {cause}"
    return web.json_response(body, status=422 if client_error else 500)


async def stats(request: web.Request) -> web.Response:
    """Run the workflow on the posted ``{"values": [...]}``."""
    payload = await request.json()
    if not isinstance(payload, dict) or not isinstance(payload.get("values"), list):
        hint = 'Post a JSON object: {"values": [1, 2, 3]}.'
        return web.json_response({"code": "bad_request", "hint": hint}, status=400)
    try:
        async with request.app[RUNS]:
            result = await aioflow.run(request.app[WORKFLOW], {"values": payload["values"]})
    except AioflowError as exc:
        return error_response(exc)
    return web.json_response({"run_id": result.run_id, **result.output})


def create_app() -> web.Application:
    """The application factory."""
    app = web.Application()
    app.cleanup_ctx.append(services)
    app.router.add_post("/stats", stats)
    return app


async def demo() -> None:
    """One request through a local test server (startup and shutdown included)."""
    from aiohttp.test_utils import TestClient, TestServer

    async with TestClient(TestServer(create_app())) as client:
        for values in ([3, 1, 4, 1, 5, 9, 2, 6], ["x"]):
            response = await client.post("/stats", json={"values": values})
            print(response.status, await response.json())


if __name__ == "__main__":
    if "--demo" in sys.argv:
        asyncio.run(demo())
    else:
        web.run_app(create_app(), port=8080, handler_cancellation=True)
