"""The Redis backend's keys, messages and scripts: shared by the coordinator
(:mod:`aioflow.backends.redis`) and the workers (:mod:`aioflow.backends._redis_worker`).

Key layout (``P`` is the prefix; ``{...}`` is a Cluster hash tag, so every key of a
queue, and every key of a run, lives in one slot)::

    P:queue:{Q}:p<N>        stream: the entries of queue Q at priority N (consumer
                            group "aioflow"); entry fields r (run id), c (call id),
                            d (the signed TaskCall), p (the coordinator's channel,
                            where its outcome is announced), n (deliveries before a
                            hand-back)
    P:queue:{Q}:len         int: entries of Q enqueued and not acknowledged yet
    P:queue:{Q}:waiting     flag (expires): a coordinator waits for room in Q
    P:queue:{Q}:room        pub/sub: "there is room in Q" (sent when it waits)
    P:queues                hash: stream key -> "Q\\0N", every stream that exists
    P:run:{R}:out           hash: call id -> signed TaskResult (first outcome wins)
    P:run:{R}:res           list: name, signed TaskResult, ... successes in order
                            (``ctx.result`` on workers reads it)
    P:run:{R}:inputs        string: the run's inputs (signed)
    P:run:{R}:nodes         list: the names of the run's tasks and groups (dynamic
                            ones appended as they are submitted)
    P:run:{R}:cancelled     flag (expires): the run was cancelled
    P:run:{R}:coordinator   string (expires): the pub/sub channel of the run's
                            coordinator (where ``aioflow cancel`` reaches it)
    P:run:{R}:progress      stream (capped, expires): the run's progress snapshots,
                            field d (JSON; ``aioflow watch`` reads them; see
                            :mod:`aioflow.backends._redis_progress`)
    P:coordinator:<random>  pub/sub: outcomes of the runs of one coordinator
                            (msgpack ["o", run id, [call ids], [results]], batched)
    P:control               pub/sub: cancellations, new streams (msgpack)
    P:workers               sorted set: worker id -> when its heartbeat expires
    P:worker:<id>           string (expires): the worker's state (msgpack)
    P:dlq                   stream: dead-lettered entries with their last error
    P:rate:{T}              string (expires): the rate limit of the task whose code
                            is T (``module:qualname``; GCRA, no burst)

Every message body is msgpack; everything a process acts on (calls, results,
inputs) is also signed, so a forged message can at most name a call id.
"""

from __future__ import annotations

from typing import Any, Final

__all__ = [
    "ACK",
    "COMPLETE",
    "DEADLETTER",
    "DROP_UNDELIVERED",
    "ENQUEUE",
    "FORGET_CONSUMER",
    "GROUP",
    "HANDBACK",
    "RATE",
    "READ",
    "Keys",
    "Scripts",
]

GROUP: Final = b"aioflow"


class Keys:
    """Key names under one prefix."""

    __slots__ = ("control", "dlq", "prefix", "queues", "workers")

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.queues = f"{prefix}:queues".encode()
        self.control = f"{prefix}:control".encode()
        self.workers = f"{prefix}:workers".encode()
        self.dlq = f"{prefix}:dlq".encode()

    def stream(self, queue: str, priority: int) -> bytes:
        return f"{self.prefix}:queue:{{{queue}}}:p{priority}".encode()

    def queue_key(self, queue: str, what: str) -> bytes:
        return f"{self.prefix}:queue:{{{queue}}}:{what}".encode()

    def run(self, run_id: str, what: str) -> bytes:
        return f"{self.prefix}:run:{{{run_id}}}:{what}".encode()

    def progress(self, run_id: str) -> bytes:
        """The stream of run ``run_id``'s progress snapshots."""
        return self.run(run_id, "progress")

    def worker(self, worker_id: str) -> bytes:
        return f"{self.prefix}:worker:{worker_id}".encode()

    def rate(self, task: str) -> bytes:
        return f"{self.prefix}:rate:{{{task}}}".encode()

    def queue_of(self, stream: bytes) -> bytes:
        """The queue part of a stream key (``P:queue:{Q}:pN`` -> ``P:queue:{Q}``)."""
        return stream.rpartition(b":")[0]


def stream_field(queue: str, priority: int) -> bytes:
    """The registry value of a stream: ``Q\\0N``."""
    return f"{queue}\0{priority}".encode()


def parse_stream_field(value: bytes) -> tuple[str, int]:
    queue, _, priority = value.decode().partition("\0")
    return queue, int(priority)


# KEYS: stream, len; ARGV: max length (0: none), reply channel, then r, c, d per entry.
# Adds as many entries as there is room for; returns {added, length after, ids...}.
ENQUEUE: Final = r"""
local max = tonumber(ARGV[1])
local n = (#ARGV - 2) / 3
local len = tonumber(redis.call('GET', KEYS[2]) or '0')
local room = n
if max > 0 then room = math.min(n, math.max(0, max - len)) end
local out = {room, len + room}
for i = 0, room - 1 do
  local b = 3 + i * 3
  out[#out + 1] = redis.call('XADD', KEYS[1], '*', 'r', ARGV[b], 'c', ARGV[b + 1],
                             'd', ARGV[b + 2], 'p', ARGV[2])
end
if room > 0 then redis.call('INCRBY', KEYS[2], room) end
return out
"""

# KEYS: streams, highest priority first; ARGV: group, consumer, count.
# Reads up to count new entries, from the highest-priority stream that has some on.
READ: Final = r"""
local need = tonumber(ARGV[3])
local out = {}
for _, key in ipairs(KEYS) do
  if need <= 0 then break end
  local r = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', need,
                       'STREAMS', key, '>')
  if r then
    local entries = r[1][2]
    need = need - #entries
    out[#out + 1] = {key, entries}
  end
end
return out
"""

# KEYS: out, res; ARGV: retention ms, reply channel, run id, then call id, ok (1/0),
# name, result per outcome. The first outcome of a call wins; the new ones are
# published on the coordinator's channel in one message (msgpack ["o", run id,
# [ids], [results]]). Returns how many were new.
COMPLETE: Final = r"""
local ids, results = {}, {}
for i = 4, #ARGV, 4 do
  if redis.call('HSETNX', KEYS[1], ARGV[i], ARGV[i + 3]) == 1 then
    if ARGV[i + 1] == '1' then redis.call('RPUSH', KEYS[2], ARGV[i + 2], ARGV[i + 3]) end
    ids[#ids + 1] = ARGV[i]
    results[#results + 1] = ARGV[i + 3]
  end
end
if #ids > 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  if redis.call('EXISTS', KEYS[2]) == 1 then redis.call('PEXPIRE', KEYS[2], ARGV[1]) end
  redis.call('PUBLISH', ARGV[2], cmsgpack.pack({'o', ARGV[3], ids, results}))
end
return #ids
"""

# KEYS: stream, len, waiting, room; ARGV: group, ids... Acknowledges and deletes the
# entries; tells a waiting coordinator there is room.
ACK: Final = r"""
local ids = {}
for i = 2, #ARGV do ids[#ids + 1] = ARGV[i] end
local n = redis.call('XACK', KEYS[1], ARGV[1], unpack(ids))
redis.call('XDEL', KEYS[1], unpack(ids))
if n > 0 then
  if redis.call('DECRBY', KEYS[2], n) < 0 then redis.call('SET', KEYS[2], 0) end
  if redis.call('EXISTS', KEYS[3]) == 1 then redis.call('PUBLISH', KEYS[4], n) end
end
return n
"""

# KEYS: stream; ARGV: group, then id, deliveries, r, c, d, p per entry. Puts entries
# back at the end of their stream at once (a worker shutting down hands back its work).
HANDBACK: Final = r"""
local n = 0
for i = 2, #ARGV, 6 do
  if redis.call('XACK', KEYS[1], ARGV[1], ARGV[i]) == 1 then
    redis.call('XDEL', KEYS[1], ARGV[i])
    redis.call('XADD', KEYS[1], '*', 'r', ARGV[i + 2], 'c', ARGV[i + 3], 'd', ARGV[i + 4],
               'p', ARGV[i + 5], 'n', ARGV[i + 1])
    n = n + 1
  end
end
return n
"""

# KEYS: stream, len, dlq; ARGV: group, max dlq length, id, then field, value pairs.
# Moves one entry to the dead-letter stream (once: only if it was still pending).
DEADLETTER: Final = r"""
if redis.call('XACK', KEYS[1], ARGV[1], ARGV[3]) == 0 then return 0 end
redis.call('XDEL', KEYS[1], ARGV[3])
if redis.call('DECRBY', KEYS[2], 1) < 0 then redis.call('SET', KEYS[2], 0) end
local fields = {}
for i = 4, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[2], '*', unpack(fields))
return 1
"""

# KEYS: stream, len; ARGV: group, ids... Deletes the entries no consumer has been
# given yet (after the group's last delivered id); returns the ids deleted.
DROP_UNDELIVERED: Final = r"""
local last = nil
for _, g in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
  local name, delivered
  for i = 1, #g, 2 do
    if g[i] == 'name' then name = g[i + 1] end
    if g[i] == 'last-delivered-id' then delivered = g[i + 1] end
  end
  if name == ARGV[1] then last = delivered end
end
if not last then return {} end
local lms, lseq = string.match(last, '^(%d+)-(%d+)$')
lms, lseq = tonumber(lms), tonumber(lseq)
local out = {}
for i = 2, #ARGV do
  local ms, seq = string.match(ARGV[i], '^(%d+)-(%d+)$')
  ms, seq = tonumber(ms), tonumber(seq)
  if ms > lms or (ms == lms and seq > lseq) then
    if redis.call('XDEL', KEYS[1], ARGV[i]) == 1 then out[#out + 1] = ARGV[i] end
  end
end
if #out > 0 then
  if redis.call('DECRBY', KEYS[2], #out) < 0 then redis.call('SET', KEYS[2], 0) end
end
return out
"""

# KEYS: stream; ARGV: group, consumer, min idle ms. Deletes the consumer from the
# group when it holds no pending entry and has been idle that long (a dead worker's
# name, once its entries were reclaimed): checked and done in one step, so no entry
# it is given meanwhile is lost with it. Returns 1 when deleted.
FORGET_CONSUMER: Final = r"""
local ok, consumers = pcall(redis.call, 'XINFO', 'CONSUMERS', KEYS[1], ARGV[1])
if not ok then return 0 end
for _, c in ipairs(consumers) do
  local name, pending, idle
  for i = 1, #c, 2 do
    if c[i] == 'name' then name = c[i + 1] end
    if c[i] == 'pending' then pending = c[i + 1] end
    if c[i] == 'idle' then idle = c[i + 1] end
  end
  if name == ARGV[2] then
    if pending == 0 and idle >= tonumber(ARGV[3]) then
      redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
      return 1
    end
    return 0
  end
end
return 0
"""

# KEYS: the task's rate key; ARGV: count, period in ms. GCRA without a burst on the
# server's clock: starts are spaced period/count apart, so no window of one period
# holds more than count (+1 at its edge). Returns 0 when a start is allowed now (and
# takes it), else the ms to wait.
RATE: Final = r"""
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local interval = tonumber(ARGV[2]) / tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if now < tat then return math.ceil(tat - now) end
redis.call('SET', KEYS[1], string.format('%.3f', now + interval), 'PX',
           math.ceil(interval) + 1)
return 0
"""


class Scripts:
    """The scripts by name, called by SHA (``EVALSHA``) in pipelines.

    redis-py's ``Script`` objects make a pipeline ask ``SCRIPT EXISTS`` first: one
    more round trip per pipeline. Here the scripts are loaded once
    (:meth:`load`), pipelines call them by SHA, and a pipeline whose scripts the
    server lost (restarted, ``SCRIPT FLUSH``) runs again just the calls that failed
    (:meth:`execute`): a ``NOSCRIPT`` call did nothing.
    """

    def __init__(self, **sources: str) -> None:
        import hashlib

        self.sources = sources
        self.sha = {name: hashlib.sha1(src.encode()).hexdigest() for name, src in sources.items()}

    async def load(self, client: Any) -> None:
        pipe = client.pipeline(transaction=False)
        for source in self.sources.values():
            pipe.script_load(source)
        await pipe.execute()

    def queue(self, pipe: Any, name: str, keys: list[bytes], args: list[Any]) -> None:
        pipe.evalsha(self.sha[name], len(keys), *keys, *args)

    async def call(self, client: Any, name: str, keys: list[bytes], args: list[Any]) -> Any:
        """One script call (loading the scripts if the server lost them)."""
        try:
            return await client.evalsha(self.sha[name], len(keys), *keys, *args)
        except Exception as exc:
            if not _is_noscript(exc):
                raise
        await self.load(client)
        return await client.evalsha(self.sha[name], len(keys), *keys, *args)

    async def execute(self, client: Any, pipe: Any) -> list[Any]:
        """Run ``pipe``; calls that found no script are loaded and run again.

        Raises:
            the first other error of the pipeline, after every command ran.
        """
        commands = [args for args, _ in pipe.command_stack]
        replies: list[Any] = await pipe.execute(raise_on_error=False)
        missing = [i for i, r in enumerate(replies) if _is_noscript(r)]
        if missing:
            await self.load(client)
            again = client.pipeline(transaction=False)
            for i in missing:
                again.execute_command(*commands[i])
            for i, reply in zip(missing, await again.execute(raise_on_error=False), strict=True):
                replies[i] = reply
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return replies


def _is_noscript(reply: Any) -> bool:
    return isinstance(reply, Exception) and (
        type(reply).__name__ == "NoScriptError" or str(reply).startswith("NOSCRIPT")
    )
