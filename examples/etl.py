"""ETL: extract >> transform >> load, the aioflow quick start.

Orders are read from a CSV file (or the sample below), cleaned and converted to
euros, then loaded into SQLite, which reports the revenue per customer.

Run it:

    python examples/etl.py [orders.csv]
    aioflow run examples/etl.py:wf
    aioflow run examples/etl.py:wf --input min_eur=50 --input database=orders.db --json
"""

from __future__ import annotations

import csv
import io
import sqlite3
import sys
from contextlib import closing
from decimal import Decimal, InvalidOperation
from typing import Any

import anyio

import aioflow
from aioflow import RetryPolicy, TaskContext, task, workflow

SAMPLE_CSV = """\
order_id,customer,amount,currency
1001,acme,120.00,EUR
1002,globex,80.50,USD
1003,acme,15.25,GBP
1004,initech,not-a-number,EUR
1005,globex,42.00,EUR
1006,umbrella,300.00,CHF
"""

# Reference rates to EUR (a real pipeline would extract them too).
EUR_RATES = {"EUR": Decimal("1"), "USD": Decimal("0.92"), "GBP": Decimal("1.17")}


@task(retries=RetryPolicy(retries=2, retry_on=(ConnectionError, TimeoutError)))
async def extract(source: str | None = None) -> list[dict[str, str]]:
    """Read the orders CSV: the file at ``source``, or the built-in sample.

    Transient errors are retried; a missing file is not, and fails the run at once.
    """
    text = SAMPLE_CSV if source is None else await anyio.Path(source).read_text()
    return list(csv.DictReader(io.StringIO(text)))


@task
def transform(
    extract: list[dict[str, str]], ctx: TaskContext, min_eur: float = 0.0
) -> list[tuple[int, str, float]]:
    """Validate rows, convert amounts to EUR, drop orders below ``min_eur``."""
    rows: list[tuple[int, str, float]] = []
    rejected: list[str] = []
    for raw in extract:
        try:
            amount = Decimal(raw["amount"]) * EUR_RATES[raw["currency"]]
        except (InvalidOperation, KeyError):
            rejected.append(raw["order_id"])
            continue
        if amount >= Decimal(str(min_eur)):
            rows.append((int(raw["order_id"]), raw["customer"], float(round(amount, 2))))
    if rejected:
        ctx.log.warning("rows rejected", order_ids=rejected)
    return rows


@task
def load(transform: list[tuple[int, str, float]], database: str = ":memory:") -> dict[str, Any]:
    """Insert the rows into SQLite (sync: runs in a worker thread); report per customer."""
    with closing(sqlite3.connect(database)) as db, db:
        db.execute(
            "CREATE TABLE IF NOT EXISTS orders "
            "(order_id INTEGER PRIMARY KEY, customer TEXT NOT NULL, amount_eur REAL NOT NULL)"
        )
        db.executemany("INSERT OR REPLACE INTO orders VALUES (?, ?, ?)", transform)
        revenue = db.execute(
            "SELECT customer, ROUND(SUM(amount_eur), 2) FROM orders "
            "GROUP BY customer ORDER BY 2 DESC"
        ).fetchall()
    return {"loaded": len(transform), "revenue_eur": dict(revenue)}


with workflow("etl") as wf:
    extract >> transform >> load


if __name__ == "__main__":
    inputs = {"source": sys.argv[1]} if len(sys.argv) > 1 else {}
    result = aioflow.run_sync(wf, inputs)
    print(f"run {result.run_id} {result.status} in {result.duration:.3f}s")
    print(result.output)
