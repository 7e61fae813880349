"""Figures of the fleet a worker's backend knows, for the :class:`Metrics` instrument.

A seam in plain Python: backends never import OpenTelemetry (nor the engine), so
the Redis worker puts what it reads or does here and ``Metrics`` reads it back in
its observable callbacks, at collection time:

* :func:`count_dead_letter` — the worker dead-lettered an entry of a queue
  (``aioflow.tasks.dead_lettered``);
* :func:`publish_depths` — the entries waiting per (queue, priority) of the queues
  a worker serves (``aioflow.queue.depth``), refreshed on its heartbeat;
* :func:`wanted` — whether any of it is read: only while some active ``Metrics``
  subscribed (:func:`subscribe`). Otherwise the worker reads nothing more from
  Redis and counts nothing: it pays nothing.

Threads: the worker writes from its event loop; collection (a Prometheus scrape,
a periodic exporter) reads from another thread. Writers replace or increment;
readers copy (``list(d.items())``, atomic under the GIL) before iterating.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Mapping

__all__ = [
    "Subscription",
    "count_dead_letter",
    "publish_depths",
    "queue_depths",
    "subscribe",
    "wanted",
    "withdraw_depths",
]

Depths = Mapping[tuple[str, int], int]  # (queue, priority) -> entries waiting


class Subscription:
    """What one reader (the instruments of one meter provider) is told.

    ``dead_lettered``: queue -> entries dead-lettered since it subscribed.
    """

    __slots__ = ("__weakref__", "active", "dead_lettered")

    def __init__(self, active: Callable[[], bool]) -> None:
        self.active = active
        self.dead_lettered: dict[str, int] = {}


# Held weakly: a subscription lives as long as the instruments reading it.
_subscriptions: weakref.WeakSet[Subscription] = weakref.WeakSet()
# Publisher (a worker's own token) -> its last depths; replaced whole, never mutated.
_depths: dict[object, dict[tuple[str, int], int]] = {}


def subscribe(active: Callable[[], bool]) -> Subscription:
    """Start receiving; ``active()`` says whether the reader records now.

    The caller keeps the returned object (it is held weakly here).
    """
    subscription = Subscription(active)
    _subscriptions.add(subscription)
    return subscription


def wanted() -> bool:
    """Whether some active reader wants fleet figures (else publishing is wasted)."""
    return any(s.active() for s in list(_subscriptions))


def count_dead_letter(queue: str) -> None:
    """One entry of ``queue`` was dead-lettered (no-op without an active reader)."""
    for subscription in list(_subscriptions):
        if subscription.active():
            counts = subscription.dead_lettered
            counts[queue] = counts.get(queue, 0) + 1


def publish_depths(publisher: object, depths: Depths) -> None:
    """``publisher``'s current view of the entries waiting per (queue, priority)."""
    _depths[publisher] = dict(depths)


def withdraw_depths(publisher: object) -> None:
    """``publisher`` stopped: its depths are no longer reported."""
    _depths.pop(publisher, None)


def queue_depths() -> dict[tuple[str, int], int]:
    """The depths published, merged: workers of one process serving one queue read
    the same streams at different moments; the largest reading is reported."""
    merged: dict[tuple[str, int], int] = {}
    for depths in list(_depths.values()):
        for key, value in depths.items():
            if value > merged.get(key, -1):
                merged[key] = value
    return merged
