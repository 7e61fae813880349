"""aioflow inside FastAPI: text statistics computed by a workflow per request.

* The lifespan checks the workflow once at startup (a broken workflow stops the
  deployment, not the first request) and loads the shared state the tasks need.
* ``POST /analyze`` awaits ``aioflow.run(...)`` on the server's event loop. A failed
  run becomes an HTTP error whose body carries the error's ``code`` and ``hint``.
* If the client disconnects, the run is cancelled: every task of it stops.

Run it:

    python examples/fastapi_app.py --demo        # one request in-process, no server
    python examples/fastapi_app.py               # serve on :8000 (needs uvicorn)
    aioflow run examples/fastapi_app.py:wf --input text="to be or not to be"
"""

from __future__ import annotations

import os
import re
import sys
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio
from fastapi import FastAPI, HTTPException, Request
from pydantic import BaseModel, Field

import aioflow
from aioflow import AioflowError, Workflow, task, workflow

DEFAULT_STOPWORDS = frozenset({"a", "an", "and", "the", "of", "or", "to", "in", "is", "not"})


@task
def tokenize(text: str) -> list[str]:
    """Split ``text`` into lower-case words; an empty text is the client's mistake."""
    words = re.findall(r"[\w']+", text.lower())
    if not words:
        raise ValueError("the text contains no words")
    return words


@task
def keywords(
    tokenize: list[str], stopwords: frozenset[str] = DEFAULT_STOPWORDS, top: int = 3
) -> list[str]:
    """The most frequent words that are not stopwords."""
    counts = Counter(w for w in tokenize if w not in stopwords)
    return [word for word, _ in counts.most_common(top)]


@task
def stats(tokenize: list[str], keywords: list[str]) -> dict[str, Any]:
    """The response: counts and keywords."""
    return {"words": len(tokenize), "distinct": len(set(tokenize)), "keywords": keywords}


with workflow("text-stats") as wf:
    tokenize >> keywords >> stats


@dataclass(frozen=True)
class Services:
    """What the lifespan sets up once and every request uses."""

    workflow: Workflow
    stopwords: frozenset[str]
    runs: anyio.CapacityLimiter  # how many runs may execute at once


async def load_stopwords() -> frozenset[str]:
    """The file named by ``$STOPWORDS_FILE`` (one word a line), or a short default list."""
    path = os.environ.get("STOPWORDS_FILE")
    if not path:
        return DEFAULT_STOPWORDS
    text = await anyio.Path(path).read_text()
    return frozenset(word.lower() for word in text.split())


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    wf.validate()  # fail at startup if the workflow is broken
    stopwords = await load_stopwords()
    app.state.services = Services(wf, stopwords, anyio.CapacityLimiter(16))
    yield


app = FastAPI(title="text stats", lifespan=lifespan)


class AnalyzeRequest(BaseModel):
    text: str
    top: int = Field(default=3, ge=1, le=50)


async def run_unless_disconnected(
    request: Request, flow: Workflow, inputs: Mapping[str, Any]
) -> aioflow.RunResult | None:
    """Run ``flow``; cancel it and return None if the client disconnects first.

    After the body has been read, the next ASGI message is ``http.disconnect``: it
    arrives when the client goes away (or once the response is sent), so waiting for
    it costs nothing, and no polling is involved.
    """
    result: aioflow.RunResult | None = None
    error: AioflowError | None = None
    async with anyio.create_task_group() as tg:

        async def cancel_on_disconnect() -> None:
            while (await request.receive())["type"] != "http.disconnect":
                pass
            tg.cancel_scope.cancel()

        tg.start_soon(cancel_on_disconnect)
        try:
            result = await aioflow.run(flow, inputs)
        except AioflowError as exc:
            error = exc  # raised below: out of the task group, not wrapped in a group
        tg.cancel_scope.cancel()  # done: stop waiting for the disconnect
    if error is not None:
        raise error
    return result


def http_error(exc: AioflowError) -> HTTPException:
    """Map a run's error to an HTTP error with its code and hint."""
    cause = exc.__cause__
    if isinstance(exc, aioflow.WorkflowDefinitionError) or isinstance(cause, ValueError):
        status = 422  # the request's inputs cannot be processed
    elif isinstance(exc, aioflow.WorkflowCancelledError):
        status = 503
    else:
        status = 500
    detail: dict[str, Any] = {"code": exc.code, "message": exc.message, "hint": exc.hint}
    if cause is not None:
        detail["cause"] = f"{type(cause).__name__}: {cause}"
    return HTTPException(status_code=status, detail=detail)


@app.post("/analyze")
async def analyze(body: AnalyzeRequest, request: Request) -> dict[str, Any]:
    """Run the workflow on the posted text; respond with its output."""
    services: Services = request.app.state.services
    inputs = {"text": body.text, "top": body.top, "stopwords": services.stopwords}
    try:
        async with services.runs:
            result = await run_unless_disconnected(request, services.workflow, inputs)
    except AioflowError as exc:
        raise http_error(exc) from exc
    if result is None:
        raise HTTPException(status_code=499, detail={"code": "client_closed_request"})
    return {"run_id": result.run_id, **result.output}


def demo() -> None:
    """One request through the app in-process (lifespan included)."""
    from fastapi.testclient import TestClient

    with TestClient(app) as client:
        for text in ("To be, or not to be, that is the question.", "   "):
            response = client.post("/analyze", json={"text": text})
            print(response.status_code, response.json())


if __name__ == "__main__":
    if "--demo" in sys.argv:
        demo()
    else:
        try:
            import uvicorn
        except ModuleNotFoundError:
            raise SystemExit("serving needs uvicorn: pip install uvicorn (or try --demo)") from None
        uvicorn.run(app, port=8000)
