"""RedisStore: run journals in Redis, shared by every process that reaches the server.

On ``redis.asyncio`` (with hiredis when installed): one connection pool per store,
connect and read timeouts, redis-py's retries with exponential backoff and jitter
on connection errors. Every write (``begin_run``, ``append``, ``finish_run`` with
its retention purge, ``reopen_run``, ``purge``) is **one Lua script**: Redis runs a
script atomically, so a batch is all-or-nothing and the ``seq`` numbers of a run
stay consecutive whatever the number of writers. Records are validated and
encoded before the script is sent: an invalid record fails the call with nothing
sent. A batch carries a random token, remembered (with a TTL) beside the run, so
a batch that redis-py sends again after a dropped connection is applied once.

Durability is Redis's: with ``appendonly yes`` and ``appendfsync always`` a
committed batch survives a crash of the server; with the defaults it may lose
the last second (AOF ``everysec``) or everything since the last snapshot. A
batch is never torn either way (a script is replicated and persisted whole).

Key layout (``P`` is ``prefix``; ``{run_id}`` is a hash tag: the keys of one run
share a Cluster slot)::

    P:meta                     hash: layout version
    P:stats                    hash: runs, running, records, blobs, blob_bytes
    P:created                  counter: creation order of runs (ties in list_runs)
    P:runs                     sorted set of every run: score started_at,
                               member "<creation order, 16 digits>:<run_id>"
    P:status:<status>          sorted set of the runs with that status (same members)
    P:finished                 sorted set of finished runs: score finished_at,
                               member run_id (purge and retention)
    P:run:{run_id}             hash: the run's summary and counters
    P:run:{run_id}:records     stream: the journal, entry id "<seq>-0"
    P:run:{run_id}:blobs       set: digests of the blobs the run stored
    P:run:{run_id}:batch:<tok> string, expires: the seq after batch <tok>
    P:blob:<digest>            string: the blob's bytes (stored once)
    P:blob:<digest>:refs       set: the runs that stored it; purge deletes the
                               blob with its last reference

The scripts touch the global keys (index, stats, blobs) beside the run's own
keys, so they need one Redis server (or one Cluster slot for the whole prefix:
write the prefix as a hash tag, ``prefix={aioflow}``).
"""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any, Final, cast

import anyio

from .._redisutil import check_client, client_url, failure, redact_url, url_password
from ..errors import CheckpointError, ConfigurationError, MissingDependencyError
from .base import Batch, RunStore
from .records import JournalRecord, RecordKind, RunInfo, RunStatus, StoreStatistics

try:
    import redis.asyncio as aioredis
    from redis.asyncio.retry import Retry
    from redis.backoff import ExponentialWithJitterBackoff
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import RedisError
    from redis.exceptions import TimeoutError as RedisTimeoutError
except ImportError as exc:  # pragma: no cover - the redis extra is part of dev
    raise MissingDependencyError("the Redis run store", "redis", module="redis.asyncio") from exc

__all__ = ["RedisStore"]

LAYOUT_VERSION: Final = b"1"
BATCH_TOKEN_TTL: Final = 3600  # seconds during which a re-sent batch is recognized
_KINDS: Final = {kind.value.encode(): kind for kind in RecordKind}
_PAGE: Final = 200

# --- the scripts -----------------------------------------------------------------------
#
# Batch scripts (begin, append, finish):
#   KEYS[1..9]  run hash, records, run blobs, batch token, runs, status:running,
#               stats, created, finished;  KEYS[10..]: per blob, blob and its refs
#   ARGV[1..7]  prefix, run_id, now, succeeded, failed, tasks_total or "", token
#   ARGV[8..12] the script's own arguments
#   ARGV[13]    number of records, then 6 values each: kind, task_name or "",
#               attempt or "", status or "", at, data; then the number of blobs,
#               then digest, bytes for each.
# Replies: {"ok", last_seq, HGETALL of the run}, {"unknown"}, {"finished", status},
# {"exists"}, {"succeeded"}; the purge script replies with a count.

_COMMON: Final = r"""
local P = ARGV[1]
local run_id = ARGV[2]

local function hash_reply(seq)
  return {'ok', seq, redis.call('HGETALL', KEYS[1])}
end

local function writable()
  local st = redis.call('HGET', KEYS[1], 'status')
  if not st then return {'unknown'} end
  if st ~= 'running' then return {'finished', st} end
  return nil
end

local function write_batch(last_seq)
  local n = tonumber(ARGV[13])
  local i = 14
  local seq = last_seq
  for _ = 1, n do
    seq = seq + 1
    local fields = {'k', ARGV[i]}
    if ARGV[i + 1] ~= '' then fields[#fields + 1] = 'n'; fields[#fields + 1] = ARGV[i + 1] end
    if ARGV[i + 2] ~= '' then fields[#fields + 1] = 'a'; fields[#fields + 1] = ARGV[i + 2] end
    if ARGV[i + 3] ~= '' then fields[#fields + 1] = 's'; fields[#fields + 1] = ARGV[i + 3] end
    fields[#fields + 1] = 't'; fields[#fields + 1] = ARGV[i + 4]
    fields[#fields + 1] = 'd'; fields[#fields + 1] = ARGV[i + 5]
    redis.call('XADD', KEYS[2], string.format('%d-0', seq), unpack(fields))
    i = i + 6
  end
  local nb = tonumber(ARGV[i])
  i = i + 1
  local k = 10
  for _ = 1, nb do
    local digest, data = ARGV[i], ARGV[i + 1]
    if redis.call('SADD', KEYS[3], digest) == 1 then
      redis.call('SADD', KEYS[k + 1], run_id)
      if redis.call('SET', KEYS[k], data, 'NX') then
        redis.call('HINCRBY', KEYS[7], 'blobs', 1)
        redis.call('HINCRBY', KEYS[7], 'blob_bytes', #data)
      end
    end
    i = i + 2
    k = k + 2
  end
  redis.call('HINCRBY', KEYS[1], 'tasks_succeeded', ARGV[4])
  redis.call('HINCRBY', KEYS[1], 'tasks_failed', ARGV[5])
  if ARGV[6] ~= '' then redis.call('HSET', KEYS[1], 'tasks_total', ARGV[6]) end
  local last = string.format('%d', seq)
  redis.call('HSET', KEYS[1], 'last_seq', last, 'updated_at', ARGV[3])
  redis.call('HINCRBY', KEYS[7], 'records', n)
  redis.call('SET', KEYS[4], last, 'EX', TOKEN_TTL)
  return last
end

local function remove_run(rid, st)
  local base = P .. ':run:{' .. rid .. '}'
  local index = redis.call('HGET', base, 'index')
  local records = redis.call('XLEN', base .. ':records')
  for _, digest in ipairs(redis.call('SMEMBERS', base .. ':blobs')) do
    local blob = P .. ':blob:' .. digest
    local refs = blob .. ':refs'
    redis.call('SREM', refs, rid)
    if redis.call('SCARD', refs) == 0 then
      local size = redis.call('STRLEN', blob)
      if redis.call('DEL', blob) == 1 then
        redis.call('HINCRBY', P .. ':stats', 'blobs', -1)
        redis.call('HINCRBY', P .. ':stats', 'blob_bytes', -size)
      end
      redis.call('DEL', refs)
    end
  end
  redis.call('DEL', base, base .. ':records', base .. ':blobs')
  if index then
    redis.call('ZREM', P .. ':runs', index)
    redis.call('ZREM', P .. ':status:' .. st, index)
  end
  redis.call('ZREM', P .. ':finished', rid)
  redis.call('HINCRBY', P .. ':stats', 'runs', -1)
  redis.call('HINCRBY', P .. ':stats', 'records', -records)
end

-- Remove the finished runs with finished_at < before (and status, unless ''), but keep.
local function purge(before, status, keep)
  local removed = 0
  for _, rid in ipairs(redis.call('ZRANGEBYSCORE', P .. ':finished', '-inf', '(' .. before)) do
    if rid ~= keep then
      local st = redis.call('HGET', P .. ':run:{' .. rid .. '}', 'status')
      if not st then
        redis.call('ZREM', P .. ':finished', rid)
      elseif st ~= 'running' and (status == '' or st == status) then
        remove_run(rid, st)
        removed = removed + 1
      end
    end
  end
  return removed
end
""".replace("TOKEN_TTL", str(BATCH_TOKEN_TTL))

# ARGV[8..10]: workflow, fingerprint, started_at.
_BEGIN: Final = (
    _COMMON
    + r"""
local done = redis.call('GET', KEYS[4])
if done then return hash_reply(done) end
if redis.call('EXISTS', KEYS[1]) == 1 then return {'exists'} end
local order = redis.call('INCR', KEYS[8])
local index = string.format('%016d:', order) .. run_id
redis.call('HSET', KEYS[1], 'run_id', run_id, 'workflow', ARGV[8], 'fingerprint', ARGV[9],
  'status', 'running', 'started_at', ARGV[10], 'tasks_total', '0', 'tasks_succeeded', '0',
  'tasks_failed', '0', 'index', index)
redis.call('ZADD', KEYS[5], ARGV[10], index)
redis.call('ZADD', KEYS[6], ARGV[10], index)
redis.call('HINCRBY', KEYS[7], 'runs', 1)
redis.call('HINCRBY', KEYS[7], 'running', 1)
return hash_reply(write_batch(0))
"""
)

_APPEND: Final = (
    _COMMON
    + r"""
local done = redis.call('GET', KEYS[4])
if done then return hash_reply(done) end
local refused = writable()
if refused then return refused end
return hash_reply(write_batch(tonumber(redis.call('HGET', KEYS[1], 'last_seq'))))
"""
)

# ARGV[8..12]: status, finished_at, has_error ("1" / "0"), error, purge_before or "".
_FINISH: Final = (
    _COMMON
    + r"""
local done = redis.call('GET', KEYS[4])
if done then return hash_reply(done) end
local refused = writable()
if refused then return refused end
local seq = write_batch(tonumber(redis.call('HGET', KEYS[1], 'last_seq')))
local status = ARGV[8]
local index = redis.call('HGET', KEYS[1], 'index')
local started = redis.call('HGET', KEYS[1], 'started_at')
redis.call('HSET', KEYS[1], 'status', status, 'finished_at', ARGV[9])
if ARGV[10] == '1' then
  redis.call('HSET', KEYS[1], 'error', ARGV[11])
else
  redis.call('HDEL', KEYS[1], 'error')
end
redis.call('ZREM', KEYS[6], index)
redis.call('ZADD', P .. ':status:' .. status, started, index)
redis.call('ZADD', KEYS[9], ARGV[9], run_id)
redis.call('HINCRBY', KEYS[7], 'running', -1)
if ARGV[12] ~= '' then purge(ARGV[12], '', run_id) end
return hash_reply(seq)
"""
)

# KEYS[1]: the run hash; ARGV[1..3]: prefix, run_id, now.
_REOPEN: Final = (
    _COMMON
    + r"""
local st = redis.call('HGET', KEYS[1], 'status')
if not st then return {'unknown'} end
if st == 'succeeded' then return {'succeeded'} end
if st ~= 'running' then
  local index = redis.call('HGET', KEYS[1], 'index')
  local started = redis.call('HGET', KEYS[1], 'started_at')
  redis.call('HSET', KEYS[1], 'status', 'running', 'updated_at', ARGV[3])
  redis.call('HDEL', KEYS[1], 'finished_at', 'error')
  redis.call('ZREM', P .. ':status:' .. st, index)
  redis.call('ZADD', P .. ':status:running', started, index)
  redis.call('ZREM', P .. ':finished', run_id)
  redis.call('HINCRBY', P .. ':stats', 'running', 1)
end
return hash_reply(redis.call('HGET', KEYS[1], 'last_seq'))
"""
)

# KEYS: finished, stats; ARGV[1..5]: prefix, "", before, status or "", keep or "".
_PURGE: Final = _COMMON + "\nreturn purge(ARGV[3], ARGV[4], ARGV[5])\n"


# --- URLs and messages -------------------------------------------------------------------


def _check_prefix(prefix: object) -> str:
    if not isinstance(prefix, str):
        prefix_ok = False
    else:
        inner = prefix[1:-1] if prefix.startswith("{") and prefix.endswith("}") else prefix
        prefix_ok = (
            0 < len(inner) <= 100
            and "{" not in inner
            and "}" not in inner
            and not any(c.isspace() for c in inner)
        )
    if not prefix_ok:
        raise ConfigurationError(
            f"prefix must be a non-empty str of at most 100 characters without spaces "
            f"(braces only around the whole prefix), got {prefix!r}",
            hint='For example prefix="aioflow" or prefix="myapp-runs".',
        )
    return cast(str, prefix)


def _number(value: object, name: str) -> float:
    if type(value) not in (int, float) or not 0 < value < 86400:  # type: ignore[operator]
        raise ConfigurationError(f"{name} must be a number of seconds in (0, 86400), got {value!r}")
    return float(value)  # type: ignore[arg-type]


class RedisStore(RunStore):
    """Run journals in Redis; see the module documentation for the layout.

    Args:
        url_or_client: a ``redis://`` / ``rediss://`` URL (``redis://user:password@
            host:6379/0``; the password is never shown in messages), or a
            ``redis.asyncio.Redis`` made with ``decode_responses=False`` (the caller
            keeps it: closing the store does not close it).
        prefix: the namespace of every key of the store; stores with different
            prefixes on one server are independent.
        connect_timeout: seconds to connect before failing.
        timeout: seconds to wait for a reply (socket timeout).
        retries: how many times redis-py retries a command after a connection error
            (exponential backoff with jitter); a retried batch is applied once.
        retention: seconds; see :class:`~aioflow.stores.RunStore`.
        clock: the time source; see :class:`~aioflow.stores.RunStore`.

    Raises:
        ConfigurationError: a bad option, or a client that decodes responses.
    """

    def __init__(
        self,
        url_or_client: str | aioredis.Redis,
        *,
        prefix: str = "aioflow",
        connect_timeout: float = 5.0,
        timeout: float = 10.0,
        retries: int = 3,
        retention: float | None = None,
        clock: Any = time.time,
    ) -> None:
        super().__init__(retention=retention, clock=clock)
        self.prefix = _check_prefix(prefix)
        self.connect_timeout = _number(connect_timeout, "connect_timeout")
        self.timeout = _number(timeout, "timeout")
        if type(retries) is not int or not 0 <= retries <= 100:
            raise ConfigurationError(f"retries must be an int in [0, 100], got {retries!r}")
        self.retries = retries
        self._client: aioredis.Redis | None = None
        self._url: str | None = None
        self._password: str | None = None
        self._owned = True
        if isinstance(url_or_client, str):
            scheme = url_or_client.partition("://")[0].lower()
            if scheme not in ("redis", "rediss"):
                raise ConfigurationError(
                    f"a Redis store URL starts with redis:// or rediss://, got "
                    f"{redact_url(url_or_client)!r}",
                    hint="For example redis://127.0.0.1:6379/0.",
                )
            self._url = url_or_client
            self._password = url_password(url_or_client)
            self._where = redact_url(url_or_client)
        elif isinstance(url_or_client, aioredis.Redis):
            check_client(url_or_client, "RedisStore", ConfigurationError)
            self._client = url_or_client
            self._owned = False
            self._where = client_url(url_or_client)
        else:
            raise ConfigurationError(
                f"RedisStore takes a redis:// URL or a redis.asyncio.Redis, got "
                f"{type(url_or_client).__name__}"
            )
        p = self.prefix
        self._stats = f"{p}:stats".encode()
        self._runs = f"{p}:runs".encode()
        self._running = f"{p}:status:running".encode()
        self._created = f"{p}:created".encode()
        self._finished = f"{p}:finished".encode()

    def describe(self) -> str:
        return f"{self._where} (prefix {self.prefix!r})"

    def __repr__(self) -> str:
        return f"RedisStore({self._where!r}, prefix={self.prefix!r}, retention={self.retention!r})"

    # --- talking to Redis ------------------------------------------------------------

    def _error(self, exc: BaseException, doing: str) -> CheckpointError:
        text, hint = failure(
            exc,
            where=self._where,
            password=self._password,
            connection=isinstance(exc, RedisConnectionError | RedisTimeoutError | OSError),
            doc="docs/stores.md",
        )
        return CheckpointError(f"{self.describe()}: {doing} failed: {text}", hint=hint)

    @contextlib.asynccontextmanager
    async def _redis(self, doing: str, *, write: bool = False) -> AsyncIterator[aioredis.Redis]:
        """The client; Redis errors become CheckpointError. A write is shielded from
        cancellation: it completes (or fails) before the cancellation is delivered."""
        client = self._client
        if client is None:  # only after a failed open; the base class refuses earlier
            raise CheckpointError(f"{self.describe()} is not open")
        try:
            with anyio.CancelScope(shield=write):
                yield client
        except (RedisError, OSError) as exc:
            raise self._error(exc, doing) from exc

    async def _open(self) -> None:
        if self._client is None:
            assert self._url is not None
            try:
                self._client = aioredis.from_url(
                    self._url,
                    decode_responses=False,
                    socket_connect_timeout=self.connect_timeout,
                    socket_timeout=self.timeout,
                    retry=Retry(ExponentialWithJitterBackoff(base=0.05, cap=2.0), self.retries),
                    retry_on_error=[RedisConnectionError, RedisTimeoutError],
                    health_check_interval=30,
                )
            except (ValueError, RedisError) as exc:
                raise self._error(exc, "connecting") from None
        client = self._client
        self._scripts = {
            name: client.register_script(source)
            for name, source in (
                ("begin", _BEGIN),
                ("append", _APPEND),
                ("finish", _FINISH),
                ("reopen", _REOPEN),
                ("purge", _PURGE),
            )
        }
        meta = f"{self.prefix}:meta".encode()
        try:
            async with self._redis("connecting"):
                await client.hsetnx(meta, b"layout", LAYOUT_VERSION)
                layout = await client.hget(meta, b"layout")
        except CheckpointError:
            await self._close()
            raise
        if layout != LAYOUT_VERSION:
            await self._close()
            raise CheckpointError(
                f"{self.describe()} holds a run store of layout {layout!r}, this aioflow "
                f"knows layout {LAYOUT_VERSION!r}",
                hint="Use the aioflow version that wrote it, or another prefix.",
            )

    async def _close(self) -> None:
        if not self._owned:
            return  # the caller's client: the caller closes it
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(RedisError, OSError):
                await client.aclose()

    # --- writing -----------------------------------------------------------------------

    def _run_key(self, run_id: str, suffix: str = "") -> bytes:
        return f"{self.prefix}:run:{{{run_id}}}{suffix}".encode()

    def _call_args(
        self, batch: Batch, extra: Sequence[str | bytes], succeeded: int = 0, failed: int = 0
    ) -> tuple[list[bytes], list[str | bytes | int]]:
        """KEYS and ARGV of a batch script (consumes and so validates the records)."""
        encoded: list[str | bytes | int] = []
        for r in batch.records:  # an invalid record raises here, before anything is sent
            encoded += (
                r.kind.value,
                r.task_name or "",
                "" if r.attempt is None else str(r.attempt),
                r.status or "",
                repr(float(r.at)),
                r.data,
            )
        counts = batch.counts
        run_id = batch.run_id
        keys = [
            self._run_key(run_id),
            self._run_key(run_id, ":records"),
            self._run_key(run_id, ":blobs"),
            self._run_key(run_id, f":batch:{secrets.token_hex(12)}"),
            self._runs,
            self._running,
            self._stats,
            self._created,
            self._finished,
        ]
        blob_args: list[str | bytes | int] = [len(batch.blobs)]
        for digest, data in batch.blobs.items():
            blob = f"{self.prefix}:blob:{digest}".encode()
            keys += (blob, blob + b":refs")
            blob_args += (digest, data)
        args: list[str | bytes | int] = [
            self.prefix,
            run_id,
            repr(float(batch.now)),
            succeeded + counts.succeeded,
            failed + counts.failed,
            "" if batch.tasks_total is None else str(batch.tasks_total),
            "",
            *extra,
            *[""] * (5 - len(extra)),
            counts.records,
            *encoded,
            *blob_args,
        ]
        return keys, args

    async def _batch_script(
        self, name: str, batch: Batch, keys: list[bytes], args: list[str | bytes | int]
    ) -> list[Any]:
        async with self._redis(f"writing run {batch.run_id!r}", write=True):
            reply = await self._scripts[name](keys=keys, args=args)
        tag = reply[0]
        if tag == b"ok":
            return list(reply)
        if tag == b"unknown":
            raise self.unknown_run(batch.run_id)
        if tag == b"finished":
            raise self.run_finished(batch.run_id, reply[1].decode())
        if tag == b"exists":
            raise self.run_exists(batch.run_id)
        raise CheckpointError(f"{self.describe()}: unexpected script reply {reply!r}")

    async def _begin_run(self, info: RunInfo, batch: Batch) -> int:
        keys, args = self._call_args(
            batch,
            (info.workflow, info.fingerprint, repr(float(info.started_at))),
            info.tasks_succeeded,
            info.tasks_failed,
        )
        reply = await self._batch_script("begin", batch, keys, args)
        return int(reply[1])

    async def _append(self, batch: Batch) -> int:
        keys, args = self._call_args(batch, ())
        return int((await self._batch_script("append", batch, keys, args))[1])

    async def _finish_run(
        self,
        batch: Batch,
        status: RunStatus,
        finished_at: float,
        error: str | None,
        purge_before: float | None,
    ) -> RunInfo:
        extra = (
            status,
            repr(float(finished_at)),
            "0" if error is None else "1",
            error or "",
            "" if purge_before is None else repr(float(purge_before)),
        )
        keys, args = self._call_args(batch, extra)
        reply = await self._batch_script("finish", batch, keys, args)
        return self._run_info(batch.run_id, _pairs(reply[2]))

    async def _reopen_run(self, run_id: str, now: float) -> RunInfo:
        async with self._redis(f"reopening run {run_id!r}", write=True):
            reply = await self._scripts["reopen"](
                keys=[self._run_key(run_id)], args=[self.prefix, run_id, repr(float(now))]
            )
        if reply[0] == b"unknown":
            raise self.unknown_run(run_id)
        if reply[0] == b"succeeded":  # finished meanwhile by another process
            raise self.run_finished(run_id, "succeeded")
        return self._run_info(run_id, _pairs(reply[2]))

    async def _purge(self, before: float, status: str | None, keep: str | None) -> int:
        async with self._redis("purging", write=True):
            removed = await self._scripts["purge"](
                keys=[self._finished, self._stats],
                args=[self.prefix, "", repr(float(before)), status or "", keep or ""],
            )
        return int(removed)

    # --- reading -----------------------------------------------------------------------

    def _corrupt(self, run_id: str, why: str) -> CheckpointError:
        return CheckpointError(
            f"the journal of run {run_id!r} in {self.describe()} is corrupt: {why}",
            hint="Something other than aioflow wrote to these keys; this run cannot be resumed.",
            run_id=run_id,
        )

    def _run_info(self, run_id: str, h: dict[bytes, bytes]) -> RunInfo:
        try:
            finished_at = h.get(b"finished_at")
            error = h.get(b"error")
            return RunInfo(
                run_id=h[b"run_id"].decode(),
                workflow=h[b"workflow"].decode(),
                fingerprint=h[b"fingerprint"].decode(),
                status=h[b"status"].decode(),  # type: ignore[arg-type]
                started_at=float(h[b"started_at"]),
                finished_at=None if finished_at is None else float(finished_at),
                tasks_total=int(h[b"tasks_total"]),
                tasks_succeeded=int(h[b"tasks_succeeded"]),
                tasks_failed=int(h[b"tasks_failed"]),
                error=None if error is None else error.decode(),
                updated_at=float(h[b"updated_at"]),
                last_seq=int(h[b"last_seq"]),
            )
        except (KeyError, ValueError, UnicodeDecodeError) as exc:
            raise self._corrupt(run_id, f"its summary is unreadable ({exc!r})") from None

    async def _get_run(self, run_id: str) -> RunInfo | None:
        async with self._redis(f"reading run {run_id!r}") as client:
            h = cast(dict[bytes, bytes], await client.hgetall(self._run_key(run_id)))
        return self._run_info(run_id, h) if h else None

    async def _read(self, run_id: str, after: int, limit: int | None) -> list[JournalRecord]:
        records = self._run_key(run_id, ":records")
        async with (
            self._redis(f"reading run {run_id!r}") as client,
            client.pipeline(transaction=True) as pipe,
        ):
            pipe.exists(self._run_key(run_id))
            pipe.xrange(records, f"{after + 1}-0", "+", count=limit)
            exists, entries = await pipe.execute()
        if not exists:
            raise self.unknown_run(run_id)
        return [self._record(run_id, after + i, e) for i, e in enumerate(entries, 1)]

    def _record(
        self, run_id: str, seq: int, entry: tuple[bytes, dict[bytes, bytes]]
    ) -> JournalRecord:
        entry_id, fields = entry
        if entry_id != f"{seq}-0".encode():
            raise self._corrupt(run_id, f"record {seq} is missing")
        kind = _KINDS.get(fields.get(b"k", b""))
        if kind is None:
            raise CheckpointError(
                f"run {run_id!r} has a record of kind {fields.get(b'k')!r} at seq {seq}, "
                "unknown to this aioflow (written by a newer version?)",
                hint="Upgrade aioflow to read this run.",
                run_id=run_id,
            )
        try:
            name, attempt, status = fields.get(b"n"), fields.get(b"a"), fields.get(b"s")
            return JournalRecord(
                kind,
                None if name is None else name.decode(),
                None if attempt is None else int(attempt),
                None if status is None else status.decode(),
                float(fields[b"t"]),
                fields[b"d"],
                seq,
            )
        except (KeyError, ValueError, UnicodeDecodeError):
            raise self._corrupt(run_id, f"record {seq} is unreadable") from None

    async def _list_runs(
        self, workflow: str | None, status: str | None, limit: int | None
    ) -> list[RunInfo]:
        index = self._runs if status is None else f"{self.prefix}:status:{status}".encode()
        wanted = workflow.encode() if workflow is not None else None
        page = _PAGE if limit is None or workflow is not None else limit
        found: list[RunInfo] = []
        seen: set[bytes] = set()
        start = 0
        async with self._redis("listing runs") as client:
            while limit is None or len(found) < limit:
                members = cast(list[bytes], await client.zrevrange(index, start, start + page - 1))
                if not members:
                    break
                start += len(members)
                async with client.pipeline(transaction=False) as pipe:
                    for member in members:
                        run_id = member.partition(b":")[2].decode()
                        pipe.hgetall(self._run_key(run_id))
                    hashes = await pipe.execute()
                for member, h in zip(members, hashes, strict=True):
                    if not h or member in seen:  # purged meanwhile, or seen on a shifted page
                        continue
                    seen.add(member)
                    if wanted is not None and h.get(b"workflow") != wanted:
                        continue
                    if status is not None and h.get(b"status") != status.encode():
                        continue
                    found.append(self._run_info(member.partition(b":")[2].decode(), h))
                    if limit is not None and len(found) == limit:
                        break
        return found

    async def _get_blob(self, digest: str) -> bytes | None:
        if not isinstance(digest, str):
            return None
        async with self._redis("reading a blob") as client:
            data = await client.get(f"{self.prefix}:blob:{digest}".encode())
        return cast(bytes | None, data)

    async def _statistics(self) -> StoreStatistics:
        async with self._redis("reading statistics") as client:
            values = await client.hmget(
                self._stats, [b"runs", b"running", b"records", b"blobs", b"blob_bytes"]
            )
        runs, running, records, blobs, size = (int(v or 0) for v in values)
        return StoreStatistics(
            runs=runs, running=running, records=records, blobs=blobs, blob_bytes=size
        )


def _pairs(flat: list[bytes]) -> dict[bytes, bytes]:
    return dict(zip(flat[::2], flat[1::2], strict=True))
