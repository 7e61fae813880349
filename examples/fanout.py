"""Fan-out / fan-in: ask every supplier for a quote, keep the cheapest.

One task per supplier runs in a parallel group named ``quotes`` under the policy
``AtLeast(2)``: one supplier is offline on purpose, and the run still succeeds
because enough suppliers answered. The fan-in task has a parameter named after the
group, so it receives ``{member_name: result}`` of the members that succeeded.

Run it:

    python examples/fanout.py
    aioflow run examples/fanout.py:wf --input quantity=40
"""

from __future__ import annotations

from dataclasses import dataclass

import aioflow
from aioflow import AtLeast, parallel, task, workflow

# Price lists by supplier: unit price in EUR, and the discount from 25 units on.
PRICE_LISTS = {
    "acme": (4.20, 0.10),
    "globex": (3.95, 0.00),
    "initech": (4.60, 0.20),
    "umbrella": (3.10, 0.05),  # cheapest, but offline: see ``quote``
}
OFFLINE = {"umbrella"}


@dataclass(frozen=True)
class Quote:
    supplier: str
    quantity: int
    total_eur: float


@task
async def quote(supplier: str, quantity: int = 10) -> Quote:
    """Ask one supplier for a price (an HTTP call in real life)."""
    if supplier in OFFLINE:
        raise ConnectionError(f"supplier {supplier!r} is not answering")
    unit, discount = PRICE_LISTS[supplier]
    if quantity >= 25:
        unit *= 1 - discount
    return Quote(supplier, quantity, round(unit * quantity, 2))


@task
def cheapest(quotes: dict[str, Quote]) -> dict[str, object]:
    """Fan-in: ``quotes`` holds the results of the suppliers that answered."""
    answered = sorted(q.supplier for q in quotes.values())
    best = min(quotes.values(), key=lambda q: q.total_eur)
    return {
        "supplier": best.supplier,
        "total_eur": best.total_eur,
        "answered": answered,
        "missing": sorted(set(PRICE_LISTS) - set(answered)),
    }


with workflow("fanout") as wf:
    asks = [quote.bind(name=f"quote_{name}", supplier=name) for name in PRICE_LISTS]
    parallel(*asks, name="quotes", policy=AtLeast(2)) >> cheapest


if __name__ == "__main__":
    result = aioflow.run_sync(wf, {"quantity": 30})
    for name, record in result.tasks.items():
        print(f"{name:16} {record.status}")
    print(result.output)
