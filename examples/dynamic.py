"""Dynamic tasks: an upload pipeline that decides at run time what to run.

The static graph is ``inspect_upload >> index >> notify``. ``inspect_upload`` adds
tasks with ``ctx.next_task(...)`` depending on what it finds:

* an image also gets a ``thumbnail`` task (added next to the static successors);
* an upload over the size limit goes to ``quarantine`` with ``goto=True``, which
  skips ``index`` and ``notify``: they end as ``skipped``, and the run succeeds.

Run it:

    python examples/dynamic.py holiday.png 2400000
    aioflow run examples/dynamic.py:wf --input filename=scan.pdf --input size=900000000
"""

from __future__ import annotations

import mimetypes
import sys
from typing import Any

import aioflow
from aioflow import TaskContext, task, workflow

MAX_BYTES = 100_000_000


@task
def thumbnail(inspect_upload: dict[str, Any]) -> str:
    """Added at run time for images only."""
    return f"thumbs/{inspect_upload['filename']}.256.webp"


@task
def quarantine(inspect_upload: dict[str, Any]) -> dict[str, Any]:
    """Added with goto=True: replaces the normal path for oversized uploads."""
    return {"quarantined": inspect_upload["filename"], "reason": "over the size limit"}


@task
def inspect_upload(
    ctx: TaskContext, filename: str = "holiday.png", size: int = 0
) -> dict[str, Any]:
    """Look at the upload and choose the tasks that follow."""
    kind = mimetypes.guess_type(filename)[0] or "application/octet-stream"
    meta = {"filename": filename, "size": size, "type": kind}
    if size > MAX_BYTES:
        ctx.next_task(quarantine, goto=True)
    elif kind.startswith("image/"):
        ctx.next_task(thumbnail)
    return meta


@task
async def index(inspect_upload: dict[str, Any]) -> list[str]:
    """Search terms for the upload."""
    stem = inspect_upload["filename"].rsplit(".", 1)[0]
    return sorted({stem.lower(), inspect_upload["type"].split("/")[0]})


@task
async def notify(index: list[str], inspect_upload: dict[str, Any]) -> str:
    """Tell the uploader."""
    return f"{inspect_upload['filename']} is searchable as {', '.join(index)}"


with workflow("dynamic") as wf:
    inspect_upload >> index >> notify


if __name__ == "__main__":
    name, size = (sys.argv[1], int(sys.argv[2])) if len(sys.argv) > 2 else ("holiday.png", 2048)
    result = aioflow.run_sync(wf, {"filename": name, "size": size})
    for task_name, record in result.tasks.items():
        shown = result.get(task_name, "-")
        print(f"{task_name:15} {record.status:10} {'(added)' if record.dynamic else '':8} {shown}")
