"""The distributed example's coordinator: runs ``flows.wf`` on Redis workers.

    python coordinator.py [REDIS_URL]

The URL comes from the command line, else ``AIOFLOW_REDIS_URL``, else
``redis://127.0.0.1:6379/0``. This process is the run's coordinator: its
scheduler decides what runs when and sends each task to the workers started with
``aioflow worker REDIS_URL --import flows`` (see README.md here); it needs the
workers' ``AIOFLOW_SECRET_KEY``. The run is journaled in the same Redis, so
``aioflow resume REDIS_URL flows:wf --run-id ID`` continues it if this process dies.
"""

from __future__ import annotations

import os
import sys

import anyio
from flows import wf

import aioflow

DEFAULT_URL = "redis://127.0.0.1:6379/0"


async def main(url: str) -> None:
    result = await aioflow.run(wf, backend=url)
    print(f"run {result.run_id}: {result.status}")
    for name, record in result.tasks.items():
        value = result.results.get(name)
        worker = value.get("worker") if isinstance(value, dict) else None
        where = f" on {worker}" if worker else ""
        print(f"  {name:16} {record.status}{where}")
    summary = result["summarize"]
    print(
        f"summary: {summary['documents']} documents, {summary['words']} words, "
        f"longest {summary['longest']!r}, docs_done={summary['docs_done']}"
    )
    print(f"workers used: {', '.join(summary['workers'])}")


if __name__ == "__main__":
    url = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("AIOFLOW_REDIS_URL", DEFAULT_URL)
    anyio.run(main, url)
