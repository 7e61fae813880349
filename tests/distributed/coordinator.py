"""A coordinator process: ``python -m distributed.coordinator URL RUN_ID`` (cwd tests/).

Runs ``distributed.coordinated:wf`` on the backend URL (journaled there by default)
until it is killed (the test sends SIGKILL mid-run).
"""

from __future__ import annotations

import sys

import anyio

import aioflow

from . import coordinated


async def main(url: str, run_id: str) -> None:
    await aioflow.run(coordinated.wf, backend=url, run_id=run_id)


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], sys.argv[2])
