"""Backends: where task executions happen (see :mod:`aioflow.backends.base`).

``open_backend(url)`` picks the implementation by the URL's scheme, importing it
only then (importing aioflow never imports redis):

=========================  ==========================================================
URL                        backend
=========================  ==========================================================
``memory://``              :class:`MemoryBackend`: in-process, zero copy (the default)
``memory://?serialize=1``  :class:`MemoryBackend` (``serialize=True``): in-process, but
                           every execution crosses the full wire path
``redis://host:6379/0``    :class:`~aioflow.backends.redis.RedisBackend`: tasks run on
``rediss://...``           workers (``aioflow worker URL``); options in the query
                           string (``?prefix=x&max_deliveries=3``)
=========================  ==========================================================
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from ..errors import ConfigurationError
from .base import Backend as Backend
from .base import Execution as Execution
from .base import RunLink as RunLink
from .base import Session as Session
from .base import SessionStatistics as SessionStatistics
from .base import Status as Status
from .memory import MemoryBackend as MemoryBackend

if TYPE_CHECKING:
    from .redis import RedisBackend as RedisBackend

__all__ = [
    "SCHEMES",
    "Backend",
    "Execution",
    "MemoryBackend",
    "RedisBackend",
    "RunLink",
    "Session",
    "SessionStatistics",
    "Status",
    "journal_url",
    "open_backend",
]

#: The URL schemes ``open_backend`` knows, and what each one is.
SCHEMES = {
    "memory": "in-process (memory:// or memory://?serialize=true)",
    "redis": "Redis workers (redis://host:6379/0, rediss:// for TLS)",
}

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _flag(query: dict[str, list[str]], name: str, url: str) -> bool:
    values = query.pop(name, ["false"])
    value = values[-1].strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigurationError(
        f"backend URL {url!r}: {name}={values[-1]!r} is not a boolean",
        hint=f"Write {name}=true or {name}=false.",
    )


def journal_url(url: str) -> str:
    """The run store URL of a backend URL: a Redis backend journals its runs in its
    own Redis, under its prefix, keeping finished runs for its ``result_ttl`` (as its
    :meth:`~aioflow.backends.redis.RedisBackend.run_store` does; its other options are
    the backend's, not the store's). Other URLs are returned as they are."""
    scheme = url.partition("://")[0].strip().lower()
    if scheme not in ("redis", "rediss"):
        return url
    from .redis import DEFAULT_RESULT_TTL, options_from_url

    clean, options = options_from_url(url)
    query = {"retention": f"{float(options.get('result_ttl', DEFAULT_RESULT_TTL)):g}"}
    prefix = options.get("prefix")
    if prefix is not None:
        query["prefix"] = str(prefix)
    extra = "&".join(f"{key}={value}" for key, value in query.items())
    return f"{clean}{'&' if '?' in clean else '?'}{extra}"


def open_backend(url: str) -> Backend:
    """The backend a URL names (not opened yet: use ``async with``).

    Raises:
        ConfigurationError: an unknown scheme (the message lists those that exist),
            or options the backend does not take. Checked before anything else,
            keys included.
    """
    if not isinstance(url, str):
        raise ConfigurationError(
            f"backend= takes a URL or a Backend, got {type(url).__name__}",
            hint='For example backend="memory://".',
        )
    scheme = url.split("://", 1)[0].strip().lower() if "://" in url else url.strip().lower()
    if scheme == "memory":
        parts = urlsplit(url if "://" in url else "memory://")
        query = parse_qs(parts.query, keep_blank_values=True)
        serialize = _flag(query, "serialize", url)
        if query or parts.netloc or parts.path not in ("", "/"):
            raise ConfigurationError(
                f"backend URL {url!r}: memory:// takes no host, path or option other "
                "than serialize=",
                hint='Write "memory://" or "memory://?serialize=true".',
            )
        return MemoryBackend(serialize=serialize)
    if scheme in ("redis", "rediss"):
        from .redis import RedisBackend

        return RedisBackend.from_url(url)
    known = ", ".join(f"{name}:// ({what})" for name, what in SCHEMES.items())
    shown = scheme if len(scheme) <= 40 else scheme[:37] + "..."
    raise ConfigurationError(
        f"unknown backend scheme {shown!r} (available: {', '.join(f'{n}://' for n in SCHEMES)})",
        hint=f"Backends available: {known}.",
    )


def __getattr__(name: str) -> Any:
    if name == "RedisBackend":  # imported on first use (it imports redis)
        from .redis import RedisBackend

        return RedisBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
