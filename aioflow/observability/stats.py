"""Cluster-wide figures kept in Redis, read by ``aioflow stats``.

Workers count the outcomes they store, one ``HINCRBY`` per (queue, outcome) in each
flush batch, into a hash per minute (kept two hours)::

    P:stats:<minute>    hash: "<outcome>" and "<outcome>:<queue>" -> count
                        (outcome: succeeded, failed, cancelled; minute: unix time // 60)

:func:`read_stats` adds to them what Redis knows already: queue depths
(``P:queue:{Q}:len``), the dead-letter stream's length, and the live workers'
heartbeats (in flight, capacity).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["FleetStatistics", "QueueStatistics", "count_outcomes", "read_stats"]

STATS_TTL = 2 * 3600  # seconds a minute's counters are kept
OUTCOMES = ("succeeded", "failed", "cancelled")


def stats_key(prefix: str, minute: int) -> bytes:
    return f"{prefix}:stats:{minute}".encode()


def count_outcomes(pipe: Any, prefix: str, outcomes: Iterable[tuple[bytes, str]]) -> None:
    """Queue on ``pipe`` the counting of ``(stream key, outcome status)`` pairs."""
    counts = Counter((stream.split(b"{", 1)[-1].rpartition(b"}")[0], s) for stream, s in outcomes)
    if not counts:
        return
    key = stats_key(prefix, int(time.time() // 60))
    per_outcome: Counter[str] = Counter()
    for (queue, status), n in counts.items():
        per_outcome[status] += n
        pipe.hincrby(key, f"{status}:{queue.decode()}", n)
    for status, n in per_outcome.items():
        pipe.hincrby(key, status, n)
    pipe.expire(key, STATS_TTL)


@dataclass(frozen=True, slots=True)
class QueueStatistics:
    """One queue: entries waiting or running (``depth``), and outcomes in the window."""

    name: str
    depth: int
    succeeded: int = 0
    failed: int = 0
    cancelled: int = 0


@dataclass(frozen=True, slots=True)
class FleetStatistics:
    """A snapshot of the whole fleet (``aioflow stats``), over the last ``window`` s."""

    window: float
    succeeded: int
    failed: int
    cancelled: int
    throughput: float  # outcomes per second over the window
    failure_rate: float  # failed / (succeeded + failed), 0 when nothing ran
    workers: int
    in_flight: int
    capacity: int
    dead_letters: int
    queues: list[QueueStatistics] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


async def read_stats(backend: Any, *, window: int = 60) -> FleetStatistics:
    """The fleet's figures from Redis: outcomes over the last ``window`` seconds
    (whole minutes, the current one included), queue depths, workers.

    Args:
        backend: a connected :class:`~aioflow.backends.redis.RedisBackend`.
        window: seconds to look back (rounded up to whole minutes, at least one).
    """
    from ..backends._redis_admin import workers as live_workers
    from ..backends._redis_layout import parse_stream_field

    client: Any = backend.client
    keys = backend.keys
    now = int(time.time() // 60)
    minutes = max(1, -(-window // 60))
    pipe = client.pipeline(transaction=False)
    for m in range(now - minutes + 1, now + 1):
        pipe.hgetall(stats_key(keys.prefix, m))
    pipe.hgetall(keys.queues)
    pipe.xlen(keys.dlq)
    *hashes, registry, dead = await pipe.execute()
    totals: Counter[str] = Counter()
    for h in hashes:
        for k, v in h.items():
            totals[k.decode()] += int(v)
    names = sorted({parse_stream_field(v)[0] for v in registry.values()})
    depths = await client.mget([f"{keys.prefix}:queue:{{{q}}}:len" for q in names]) if names else []
    queues = [
        QueueStatistics(
            name=q,
            depth=int(d or 0),
            **{o: totals.get(f"{o}:{q}", 0) for o in OUTCOMES},
        )
        for q, d in zip(names, depths, strict=True)
    ]
    fleet = await live_workers(backend)
    # The current minute is partly over: the window is what has elapsed of it.
    elapsed = (minutes - 1) * 60 + (time.time() - now * 60)
    done = totals["succeeded"] + totals["failed"] + totals["cancelled"]
    judged = totals["succeeded"] + totals["failed"]
    return FleetStatistics(
        window=round(elapsed, 3),
        succeeded=totals["succeeded"],
        failed=totals["failed"],
        cancelled=totals["cancelled"],
        throughput=done / elapsed if elapsed > 0 else 0.0,
        failure_rate=totals["failed"] / judged if judged else 0.0,
        workers=len(fleet),
        in_flight=sum(w.running for w in fleet),
        capacity=sum(w.concurrency for w in fleet),
        dead_letters=int(dead),
        queues=queues,
    )
