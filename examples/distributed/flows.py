"""The distributed example's workflow: word statistics of a small document set.

This module is what the workers import (``aioflow worker URL --import flows``) and
what the coordinator runs (``coordinator.py``): tasks travel to the workers by
reference (``flows:count_words``), so both sides must import it under the same
name. The graph::

    load_corpus >> parallel(count_<doc> for each document, name="counts") >> summarize

* ``load_corpus`` returns the documents (a database or an object store in real
  life).
* ``count_<doc>``: one task per document (the fan-out), spread over the workers.
  Each reads its text with ``ctx.result("load_corpus")`` — on a worker that reads
  the run's stored results in Redis — and writes to the run's channel, which every
  worker and the coordinator share.
* ``summarize`` (the fan-in) gets the group's ``{member: result}`` as its
  parameter ``counts`` and reads the channel back.

Every task may run more than once (at-least-once execution, see
``docs/distributed.md``): the channel writes are idempotent (``set`` of a key of
its own) except the ``docs_done`` counter, a progress figure that a task re-run
after a worker crash would count twice.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

import anyio

from aioflow import TaskContext, parallel, task, workflow

DOCUMENTS = {
    "intro": "Workflows are graphs of tasks. Tasks run when their predecessors are done.",
    "queues": "Each queue is a Redis stream per priority level, read by a consumer group "
    "of workers. Workers acknowledge an entry once its outcome is stored.",
    "recovery": "A worker that dies leaves its entries pending; a live worker reclaims "
    "them after the visibility timeout and runs them again.",
    "results": "Outcomes are stored in a hash per run and announced on the run's "
    "channel; the first outcome of a call wins.",
}
STOPWORDS = {"a", "an", "and", "are", "is", "of", "the", "them", "their", "when", "its", "on"}


@task
async def load_corpus() -> dict[str, str]:
    """The documents to analyse, by name."""
    await anyio.sleep(0.01)  # I/O in real life
    return dict(DOCUMENTS)


@task(retries=2)
async def count_words(doc: str, ctx: TaskContext) -> dict[str, Any]:
    """Word statistics of one document (one task per document)."""
    text: str = ctx.result("load_corpus")[doc]  # a finished task's result, on any worker
    await anyio.sleep(0.2)  # the real work would take a while
    words = [w for w in re.findall(r"[a-z']+", text.lower()) if w not in STOPWORDS]
    await ctx.channel.set(f"words:{doc}", len(words))  # idempotent: a re-run writes the same
    await ctx.channel.incr("docs_done")  # atomic across workers (but not idempotent)
    return {
        "words": len(words),
        "top": Counter(words).most_common(1)[0][0],
        "worker": ctx.worker_id,  # None in-process
    }


@task
async def summarize(counts: dict[str, dict[str, Any]], ctx: TaskContext) -> dict[str, Any]:
    """Fan-in: ``counts`` holds ``{member name: result}`` of the group."""
    stored = {doc: await ctx.channel.get(f"words:{doc}") for doc in DOCUMENTS}
    total = sum(c["words"] for c in counts.values())
    assert total == sum(stored.values()), "the channel and the results disagree"
    return {
        "documents": len(counts),
        "words": total,
        "longest": max(stored, key=lambda doc: stored[doc]),
        "docs_done": await ctx.channel.get("docs_done"),
        "workers": sorted({str(c["worker"]) for c in counts.values()}),
    }


with workflow("distributed-wordcount") as wf:
    counts = parallel(
        *(count_words.bind(name=f"count_{doc}", doc=doc) for doc in DOCUMENTS), name="counts"
    )
    load_corpus >> counts >> summarize
