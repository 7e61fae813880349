"""A loop: Newton's method iterates until the square root converges.

``newton`` calls ``ctx.next_iteration(data)`` while its estimate still moves by more
than ``tolerance``; each iteration receives the previous estimate as ``data``.
``report`` runs once, after the iteration that did not ask for another, and sees
its result. ``max_cycles`` bounds the loop: an input that would need more
iterations fails the run with ``CycleLimitExceededError`` instead of spinning.

Run it:

    python examples/loop.py 2
    aioflow run examples/loop.py:wf --input x=1e6 --input tolerance=1e-9
"""

from __future__ import annotations

import math
import sys

import aioflow
from aioflow import TaskContext, task, workflow

MAX_CYCLES = 60


@task(max_cycles=MAX_CYCLES)
def newton(
    ctx: TaskContext, x: float = 2.0, tolerance: float = 1e-12, data: float | None = None
) -> float:
    """One Newton step for sqrt(x), starting from x itself; iterate until stable."""
    if x < 0:
        raise ValueError(f"cannot take the square root of {x}")
    estimate = float(x) if data is None else data
    if estimate == 0:
        return 0.0
    better = (estimate + x / estimate) / 2
    if abs(better - estimate) > tolerance * max(1.0, better):
        ctx.next_iteration(better)
    return better


@task
def report(newton: float, x: float = 2.0) -> dict[str, float]:
    """Check the converged value against the math library."""
    return {"x": x, "sqrt": newton, "error": abs(newton - math.sqrt(x))}


with workflow("loop") as wf:
    newton >> report


if __name__ == "__main__":
    x = float(sys.argv[1]) if len(sys.argv) > 1 else 2.0
    result = aioflow.run_sync(wf, {"x": x})
    print(f"converged after {result.tasks['newton'].executions} iterations: {result.output}")
