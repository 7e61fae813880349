"""RedisChannel: a run's channel in Redis, shared by every process of the run.

Import it from here (``from aioflow.channels.redis import RedisChannel``): importing
:mod:`aioflow` never imports redis.

Key layout (``P`` is ``prefix``; ``{run_id}`` is a hash tag, so every key of a run
lives in one Cluster slot): one Redis key per channel key, so each key has its own
TTL::

    P:run:{run_id}:chan:<key>   string: an int in Redis's decimal form (INCRBY works
                                on it), or a signed envelope (starts with b"AF")
                                list:   the marker b"aioflow:list", then one signed
                                envelope per item (append is RPUSH)

Values keep their types: everything but ``int`` (and ``list``, item by item) is
encoded by the signed codec (:func:`aioflow.serialization.encode_value`, kind
``CHANNEL``, pickling allowed), so tuples, sets, datetimes, decimals and dataclasses
come back as themselves, as copies. A value that fails its signature (tampered,
or signed with another key) is refused with :class:`~aioflow.errors.ChannelError`.
A ``bool`` or an int outside Redis's 64-bit range is stored encoded (``incr`` on it
is refused).

Atomicity (each method is one Redis command, one script or one MULTI transaction,
so it never interleaves with another process's update):

* ``get``: one script (type check and read together).
* ``set``: one ``SET`` (an int or an envelope), or for a list one MULTI (``DEL``,
  ``RPUSH``, ``PEXPIRE``).
* ``delete``, ``exists``: one ``DEL`` / ``EXISTS``.
* ``incr``: one script (type check, ``INCRBY``, TTL of a new key).
* ``append``: one script (type check, ``RPUSH``, TTL of a new key); the length is
  the list's length right after this item.
* ``keys``: ``SCAN`` of the run's keys (each key is read atomically, the set of
  keys is not a point-in-time view); ``snapshot`` reads each key with ``get``.
  ``SCAN`` walks the whole database: keep ``keys``/``snapshot`` off hot paths.
* ``clear`` (not in the contract): ``SCAN`` then ``DEL``, not atomic.

TTLs run on the Redis server's clock. ``ttl=`` of the channel is a retention: a key
written without its own ``ttl`` (``set`` without ``ttl``, or created by ``incr`` /
``append``) expires that many seconds after it was set or created; ``incr`` and
``append`` keep the expiry a key already has (like :class:`MemoryChannel`).
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import AsyncIterator
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, Final, Self

import anyio

from .._redisutil import check_client, client_url, failure, redact_url, url_password
from ..errors import AioflowError, ChannelError, MissingDependencyError, PayloadSignatureError
from ..serialization import PayloadKind, decode_value, encode_value
from .base import Channel

if TYPE_CHECKING:
    from ..serialization import Keyring

try:
    import redis.asyncio as aioredis
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import RedisError
    from redis.exceptions import TimeoutError as RedisTimeoutError
except ImportError as exc:  # pragma: no cover - the redis extra is part of dev
    raise MissingDependencyError("the Redis channel", "redis", module="redis.asyncio") from exc

__all__ = ["RedisChannel"]

LIST_MARKER: Final = b"aioflow:list"
_MAGIC: Final = b"AF"
_INT64 = (-(2**63), 2**63 - 1)
_NATIVE_INT = re.compile(rb"-?[0-9]+")
_MISSING: Final = object()

# KEYS[1]: the key. Replies: {'n'} absent, {'s', bytes}, {'l', items...}, {'x', type}.
_GET: Final = r"""
local t = redis.call('TYPE', KEYS[1]).ok
if t == 'none' then return {'n'} end
if t == 'string' then return {'s', redis.call('GET', KEYS[1])} end
if t == 'list' then
  local items = redis.call('LRANGE', KEYS[1], 0, -1)
  table.insert(items, 1, 'l')
  return items
end
return {'x', t}
"""

# KEYS[1]: the key; ARGV: amount, retention in ms or ''.
# Replies: {'ok', new value}, {'value', bytes} (not a native int), {'x', type}, {'err', text}.
_INCR: Final = r"""
local t = redis.call('TYPE', KEYS[1]).ok
if t == 'string' then
  local v = redis.call('GET', KEYS[1])
  if not string.match(v, '^%-?%d+$') then return {'value', v} end
elseif t ~= 'none' then
  return {'x', t}
end
local r = redis.pcall('INCRBY', KEYS[1], ARGV[1])
if type(r) == 'table' and r.err then return {'err', r.err} end
if t == 'none' and ARGV[2] ~= '' then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return {'ok', r}
"""

# KEYS[1]: the key; ARGV: the encoded item, retention in ms or '', the list marker.
# Replies: {'ok', new length}, {'value', bytes} (a string), {'x', type}.
_APPEND: Final = r"""
local t = redis.call('TYPE', KEYS[1]).ok
if t == 'none' then
  redis.call('RPUSH', KEYS[1], ARGV[3], ARGV[1])
  if ARGV[2] ~= '' then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
  return {'ok', 1}
end
if t == 'list' then return {'ok', redis.call('RPUSH', KEYS[1], ARGV[1]) - 1} end
if t == 'string' then return {'value', redis.call('GET', KEYS[1])} end
return {'x', t}
"""


def _check_name(value: object, what: str, example: str) -> str:
    if (
        not isinstance(value, str)
        or not 0 < len(value) <= 200
        or "{" in value
        or "}" in value
        or any(c.isspace() for c in value)
    ):
        raise ChannelError(
            f"{what} must be a non-empty str of at most 200 characters without braces or "
            f"spaces, got {value!r}",
            hint=f"For example {what}={example!r}.",
        )
    return value


def _glob_escape(text: str) -> str:
    return re.sub(r"([\\*?\[\]])", r"\\\1", text)


def _ttl_ms(ttl: object, what: str = "ttl") -> int | None:
    """``ttl`` seconds in milliseconds (at least 1 when positive, 0 when not), or None."""
    if ttl is None:
        return None
    if type(ttl) not in (int, float) or math.isnan(ttl):  # type: ignore[arg-type]
        raise ChannelError(f"{what} must be a number of seconds or None, got {ttl!r}")
    if ttl <= 0:  # type: ignore[operator]
        return 0
    return max(1, math.ceil(ttl * 1000))  # type: ignore[operator]


class RedisChannel(Channel):
    """The channel of run ``run_id`` in Redis; see the module documentation.

    Args:
        client_or_url: a ``redis://`` / ``rediss://`` URL (the password is never shown
            in messages; the channel owns the client it makes: :meth:`aclose` closes
            it), or a ``redis.asyncio.Redis`` made with ``decode_responses=False``
            (the caller keeps it and closes it).
        run_id: the run whose channel this is; channels of other runs are separate.
        keyring: signs the values written and verifies the values read; every
            process of the run needs the same key.
        prefix: the namespace of the keys (as for the run stores).
        ttl: retention in seconds of the keys written without their own ``ttl``
            (None: they stay until deleted).
        connect_timeout: seconds to connect (URL only).
        timeout: seconds to wait for a reply (URL only).

    Raises:
        ChannelError: a bad option, or a client that decodes responses.
    """

    durable: ClassVar[bool] = True  # a resumed run finds its values here

    def __init__(
        self,
        client_or_url: str | aioredis.Redis,
        run_id: str,
        keyring: Keyring,
        *,
        prefix: str = "aioflow",
        ttl: float | None = None,
        connect_timeout: float = 5.0,
        timeout: float = 10.0,
    ) -> None:
        self.run_id = _check_name(run_id, "run_id", "0f3c2a")
        self.prefix = _check_name(prefix, "prefix", "aioflow")
        self.keyring = keyring
        self.ttl = ttl
        retention = _ttl_ms(ttl, "the channel's ttl")
        if retention == 0:
            raise ChannelError(f"the channel's ttl must be positive, got {ttl!r}")
        self._retention: bytes = b"" if retention is None else str(retention).encode()
        self._password: str | None = None
        if isinstance(client_or_url, str):
            scheme = client_or_url.partition("://")[0].lower()
            self._where = redact_url(client_or_url)
            if scheme not in ("redis", "rediss"):
                raise ChannelError(
                    f"a Redis channel URL starts with redis:// or rediss://, got {self._where!r}",
                    hint="For example redis://127.0.0.1:6379/0.",
                )
            self._password = url_password(client_or_url)
            try:
                self._client: aioredis.Redis = aioredis.from_url(
                    client_or_url,
                    decode_responses=False,
                    socket_connect_timeout=connect_timeout,
                    socket_timeout=timeout,
                )
            except (ValueError, RedisError) as exc:
                raise self._error(exc, "connecting") from None
            self._owned = True
        elif isinstance(client_or_url, aioredis.Redis):
            check_client(client_or_url, "RedisChannel", ChannelError)
            self._client = client_or_url
            self._where = client_url(client_or_url)
            self._owned = False
        else:
            raise ChannelError(
                f"RedisChannel takes a redis:// URL or a redis.asyncio.Redis, got "
                f"{type(client_or_url).__name__}"
            )
        self._base = f"{self.prefix}:run:{{{self.run_id}}}:chan:"
        self._get_script = self._client.register_script(_GET)
        self._incr_script = self._client.register_script(_INCR)
        self._append_script = self._client.register_script(_APPEND)

    def __repr__(self) -> str:
        return f"RedisChannel({self._where!r}, run_id={self.run_id!r}, prefix={self.prefix!r})"

    async def aclose(self) -> None:
        """Close the client if the channel made it (from a URL)."""
        if self._owned:
            with contextlib.suppress(RedisError, OSError):
                await self._client.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # --- helpers ---------------------------------------------------------------------

    def _key(self, key: object) -> bytes:
        if not isinstance(key, str):
            raise ChannelError(f"a channel key is a str, got {type(key).__name__}")
        return (self._base + key).encode()

    def _error(self, exc: BaseException, doing: str) -> ChannelError:
        text, hint = failure(
            exc,
            where=self._where,
            password=self._password,
            connection=isinstance(exc, RedisConnectionError | RedisTimeoutError | OSError),
            doc="docs/channels.md",
        )
        return ChannelError(f"Redis channel at {self._where}: {doing} failed: {text}", hint=hint)

    @contextlib.asynccontextmanager
    async def _redis(self, doing: str, *, write: bool = False) -> AsyncIterator[aioredis.Redis]:
        """The client; Redis errors become ChannelError. A write is shielded from
        cancellation: it completes (or fails) before the cancellation is delivered."""
        try:
            with anyio.CancelScope(shield=write):
                yield self._client
        except (RedisError, OSError) as exc:
            raise self._error(exc, doing) from exc

    def _encode(self, key: str, value: Any) -> bytes:
        try:
            return encode_value(
                value, self.keyring, allow_pickle=True, kind=PayloadKind.CHANNEL, root=key
            )
        except AioflowError as exc:
            raise ChannelError(
                f"channel value under {key!r} of type {type(value).__name__} cannot be "
                f"stored: {exc}",
                hint="Store plain data (numbers, strings, lists, dicts, dataclasses), "
                "not connections, locks or open files.",
            ) from exc

    def _decode(self, key: str, data: bytes) -> Any:
        if not data.startswith(_MAGIC):
            if _NATIVE_INT.fullmatch(data):
                return int(data)
            raise ChannelError(
                f"the value under channel key {key!r} was not written by aioflow",
                hint="Write a run's channel keys through its channel only.",
            )
        try:
            return decode_value(data, self.keyring, allow_pickle=True, kind=PayloadKind.CHANNEL)
        except PayloadSignatureError as exc:
            raise ChannelError(
                f"the value under channel key {key!r} is refused: {exc}",
                hint="It was tampered with, or signed with another key: give every process "
                "of the run the same AIOFLOW_SECRET_KEY, and let no one else write the "
                "run's keys.",
            ) from exc
        except AioflowError as exc:
            raise ChannelError(
                f"the value under channel key {key!r} cannot be read: {exc}"
            ) from exc

    def _decode_list(self, key: str, items: list[bytes]) -> list[Any]:
        if not items or items[0] != LIST_MARKER:
            raise ChannelError(
                f"the list under channel key {key!r} was not written by aioflow",
                hint="Write a run's channel keys through its channel only.",
            )
        return [self._decode(key, item) for item in items[1:]]

    def _holds(self, key: str, reply: list[Any]) -> str:
        """The name of the type of a refused value (for incr/append errors)."""
        if reply[0] == b"value":
            value = self._decode(key, reply[1])
            return type(value).__name__
        return "list" if reply[1] == b"list" else f"Redis {reply[1].decode(errors='replace')}"

    # --- the contract ----------------------------------------------------------------

    async def get(self, key: str, default: Any = None) -> Any:
        name = self._key(key)
        async with self._redis(f"reading {key!r}") as client:
            reply = await self._get_script(keys=[name], client=client)
        tag = reply[0]
        if tag == b"n":
            return default
        if tag == b"s":
            return self._decode(key, reply[1])
        if tag == b"l":
            return self._decode_list(key, reply[1:])
        raise ChannelError(
            f"channel key {key!r} holds a Redis {reply[1].decode(errors='replace')}, "
            "not an aioflow value",
            hint="Write a run's channel keys through its channel only.",
        )

    async def set(self, key: str, value: Any, *, ttl: float | None = None) -> None:
        name = self._key(key)
        ms = _ttl_ms(ttl)
        if ms is None and self._retention:
            ms = int(self._retention)
        if ms == 0:  # expired at once
            await self.delete(key)
            return
        if type(value) is list:
            items = [LIST_MARKER, *(self._encode(key, item) for item in value)]
            async with self._redis(f"writing {key!r}", write=True) as client:
                pipe = client.pipeline(transaction=True)
                pipe.delete(name)
                pipe.rpush(name, *items)
                if ms is not None:
                    pipe.pexpire(name, ms)
                await pipe.execute()
            return
        if type(value) is int and _INT64[0] <= value <= _INT64[1]:
            data = str(value).encode()
        else:
            data = self._encode(key, value)
        async with self._redis(f"writing {key!r}", write=True) as client:
            await client.set(name, data, px=ms)

    async def delete(self, key: str) -> bool:
        name = self._key(key)
        async with self._redis(f"deleting {key!r}", write=True) as client:
            return bool(await client.delete(name))

    async def exists(self, key: str) -> bool:
        name = self._key(key)
        async with self._redis(f"reading {key!r}") as client:
            return bool(await client.exists(name))

    async def incr(self, key: str, amount: int = 1) -> int:
        name = self._key(key)
        if type(amount) is not int or not _INT64[0] <= amount <= _INT64[1]:
            raise ChannelError(f"incr takes a 64-bit int amount, got {amount!r}")
        async with self._redis(f"incrementing {key!r}", write=True) as client:
            reply = await self._incr_script(
                keys=[name], args=[amount, self._retention], client=client
            )
        if reply[0] == b"ok":
            return int(reply[1])
        if reply[0] == b"err":
            raise ChannelError(
                f"cannot incr {key!r}: {reply[1].decode(errors='replace')}",
                hint="Redis counts in 64 bits: keep counters within -2**63 .. 2**63-1.",
            )
        holds = self._holds(key, reply)
        if holds == "int":  # stored encoded: beyond Redis's 64-bit integers
            raise ChannelError(
                f"cannot incr {key!r}: its int is beyond the 64 bits Redis counts in",
                hint="Keep counters within -2**63 .. 2**63-1.",
            )
        raise ChannelError(
            f"cannot incr {key!r}: it holds a {holds}, not an int",
            hint="Use incr only on keys that hold integers (or are absent).",
        )

    async def append(self, key: str, value: Any) -> int:
        name = self._key(key)
        item = self._encode(key, value)
        async with self._redis(f"appending to {key!r}", write=True) as client:
            reply = await self._append_script(
                keys=[name], args=[item, self._retention, LIST_MARKER], client=client
            )
        if reply[0] == b"ok":
            return int(reply[1])
        raise ChannelError(
            f"cannot append to {key!r}: it holds a {self._holds(key, reply)}, not a list",
            hint="Use append only on keys that hold lists (or are absent).",
        )

    async def keys(self) -> list[str]:
        pattern = _glob_escape(self._base) + "*"
        found: dict[str, None] = {}
        start = len(self._base.encode())
        async with self._redis("listing the keys") as client:
            async for name in client.scan_iter(match=pattern.encode(), count=500):
                found[bytes(name)[start:].decode(errors="replace")] = None
        return list(found)

    async def clear(self) -> int:
        """Delete every key of the run's channel; how many there were.

        Not atomic: a key written meanwhile by another process may survive. For a
        run that is over (or before :func:`aioflow.resume` replays a journal into
        this channel, which expects it empty).
        """
        names = [self._key(key) for key in await self.keys()]
        deleted = 0
        async with self._redis("clearing the channel", write=True) as client:
            for start in range(0, len(names), 500):
                deleted += await client.delete(*names[start : start + 500])
        return deleted

    async def snapshot(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for key in await self.keys():
            value = await self.get(key, _MISSING)
            if value is not _MISSING:  # deleted or expired meanwhile
                values[key] = value
        return values
