"""Run store URLs: ``memory://`` and ``sqlite://...``, parsed and checked.

Forms::

    memory://                          a new, empty in-memory store (nothing durable)
    sqlite:///var/lib/app/runs.db      absolute path: three slashes (scheme "sqlite://"
                                       followed by the path "/var/lib/app/runs.db")
    sqlite://runs/dev.db               relative path (to the current directory): two
    sqlite://~/.aioflow/runs.db        "~" is the user's home directory

Beware: SQLAlchemy reads ``sqlite:///x.db`` as *relative*; here it is ``/x.db``.

Query options (all optional)::

    sqlite:///path/runs.db?synchronous=full&retention=7d&busy_timeout=30s&check=quick
    memory://?retention=1h

``synchronous``: ``normal`` (default) or ``full``; ``retention``: a duration
(``parse_duration``) or ``none``; ``busy_timeout``: a duration (default 10s);
``check``: ``quick`` (default), ``full`` or ``off``. A path containing ``?``,
``#`` or ``%`` writes them percent-encoded (``%3F``, ``%23``, ``%25``).

Redis (``rediss://`` for TLS; username and password percent-encoded)::

    redis://127.0.0.1:6379/0?prefix=myapp&retention=7d&timeout=10s&connect_timeout=5s
    rediss://user:password@redis.example.com:6380/2

``str()`` of a Redis URL shows no password.
"""

from __future__ import annotations

import os
import re
import urllib.parse
from dataclasses import dataclass, field
from typing import Final, Literal, cast

from ..errors import ConfigurationError
from .durations import format_duration, parse_duration

__all__ = ["SCHEMES", "StoreURL", "parse_store_url"]

SCHEMES: Final = (
    "memory://",
    "sqlite:///abs/path.db",
    "sqlite://relative/path.db",
    "redis://host:port/db",
    "rediss://host:port/db",
)
_SCHEME: Final = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*)://")
_OPTIONS: Final = {
    "memory": ("retention",),
    "sqlite": ("synchronous", "retention", "busy_timeout", "check"),
    "redis": ("prefix", "retention", "timeout", "connect_timeout"),
    "rediss": ("prefix", "retention", "timeout", "connect_timeout"),
}
_REDIS_TIMEOUT: Final = 10.0
_REDIS_CONNECT_TIMEOUT: Final = 5.0
_DEFAULT_BUSY_TIMEOUT: Final = 10.0
_HINT: Final = (
    "Use memory:// (nothing durable), sqlite:///absolute/path/runs.db, "
    "sqlite://relative/path/runs.db or redis://host:6379/0; see docs/stores.md."
)


@dataclass(frozen=True, slots=True)
class StoreURL:
    """A parsed, checked run store URL; ``str()`` gives its canonical form.

    Attributes:
        scheme: ``"memory"`` or ``"sqlite"``.
        path: the database file as written (``~`` not expanded; relative to the
            current directory unless absolute); None for memory.
        synchronous: ``"normal"`` or ``"full"`` (SQLite).
        retention: seconds, or None.
        busy_timeout: seconds (SQLite).
        check: ``"quick"``, ``"full"`` or ``"off"`` (SQLite).
        redis_url: the Redis connection URL, without aioflow's options (Redis);
            never shown by ``repr()`` or ``str()`` with its password.
        prefix: the namespace of the store's keys (Redis).
        timeout: seconds to wait for a reply (Redis).
        connect_timeout: seconds to connect (Redis).
    """

    scheme: Literal["memory", "sqlite", "redis", "rediss"]
    path: str | None = None
    synchronous: Literal["normal", "full"] = "normal"
    retention: float | None = None
    busy_timeout: float = _DEFAULT_BUSY_TIMEOUT
    check: Literal["quick", "full", "off"] = "quick"
    redis_url: str | None = field(default=None, repr=False)
    prefix: str = "aioflow"
    timeout: float = _REDIS_TIMEOUT
    connect_timeout: float = _REDIS_CONNECT_TIMEOUT

    def __str__(self) -> str:
        options: list[tuple[str, str]] = []
        if self.scheme in ("redis", "rediss"):
            return self._redis_str()
        if self.synchronous != "normal":
            options.append(("synchronous", self.synchronous))
        if self.retention is not None:
            options.append(("retention", format_duration(self.retention)))
        if self.busy_timeout != _DEFAULT_BUSY_TIMEOUT:
            options.append(("busy_timeout", format_duration(self.busy_timeout)))
        if self.check != "quick":
            options.append(("check", self.check))
        query = f"?{urllib.parse.urlencode(options)}" if options else ""
        path = "" if self.path is None else urllib.parse.quote(self.path, safe="/~:@!$&'()*+,;=")
        return f"{self.scheme}://{path}{query}"

    def _redis_str(self) -> str:
        options: list[tuple[str, str]] = []
        if self.prefix != "aioflow":
            options.append(("prefix", self.prefix))
        if self.retention is not None:
            options.append(("retention", format_duration(self.retention)))
        if self.timeout != _REDIS_TIMEOUT:
            options.append(("timeout", format_duration(self.timeout)))
        if self.connect_timeout != _REDIS_CONNECT_TIMEOUT:
            options.append(("connect_timeout", format_duration(self.connect_timeout)))
        query = f"?{urllib.parse.urlencode(options)}" if options else ""
        return _without_password(self.redis_url or f"{self.scheme}://") + query


def _without_password(url: str) -> str:
    """``url`` with its password (if any) replaced by ``***``."""
    scheme, sep, rest = url.partition("://")
    userinfo, at, host = rest.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    return f"{scheme}{sep}{userinfo.partition(':')[0]}:***@{host}"


def _bad(url: str, why: str, hint: str = _HINT) -> ConfigurationError:
    return ConfigurationError(f"invalid run store URL {url!r}: {why}", hint=hint)


def _choice(url: str, key: str, value: str, allowed: tuple[str, ...]) -> str:
    lowered = value.lower()
    if lowered not in allowed:
        raise _bad(url, f"{key} must be one of {', '.join(allowed)}, got {value!r}")
    return lowered


def _duration(url: str, key: str, value: str) -> float:
    try:
        return parse_duration(value)
    except ConfigurationError as exc:
        raise _bad(url, f"{key}: {exc.message}", exc.hint) from None


def parse_store_url(url: str) -> StoreURL:
    """Parse and check a run store URL (forms and options: see the module documentation).

    Raises:
        ConfigurationError: not a str, an unknown scheme (the message names the
            schemes there are), a missing or unusable path, an unknown or repeated
            option, or a bad option value.
    """
    if not isinstance(url, str):
        raise ConfigurationError(f"a run store URL is a str, got {type(url).__name__}", hint=_HINT)
    match = _SCHEME.match(url)
    if match is None:
        guess = f"; did you mean sqlite://{url}?" if url.endswith(".db") else ""
        raise _bad(url, f"no scheme (expected one of {', '.join(SCHEMES)}){guess}")
    scheme = match.group(1).lower()
    rest = url[match.end() :]
    if scheme not in _OPTIONS:
        raise _bad(url, f"unknown scheme {scheme + '://'!r}; known: {', '.join(SCHEMES)}")
    if "#" in rest:
        raise _bad(url, "a fragment (#...) has no meaning here; write '#' in a path as %23")
    raw_path, _, query = rest.partition("?")
    options = _parse_query(url, query, _OPTIONS[scheme])
    if scheme in ("redis", "rediss"):
        return _redis(url, scheme, raw_path, options)
    if scheme == "memory":
        if raw_path:
            raise _bad(url, "memory:// takes no path (each memory store is new and empty)")
        return StoreURL("memory", retention=_retention(url, options))
    try:
        path = urllib.parse.unquote(raw_path, errors="strict")
    except UnicodeDecodeError:
        raise _bad(url, "the path has percent-escapes that are not UTF-8") from None
    return _sqlite(url, path, options)


def _retention(url: str, options: dict[str, str]) -> float | None:
    value = options.get("retention", "none")
    return None if value.lower() == "none" else _duration(url, "retention", value)


def _sqlite(url: str, path: str, options: dict[str, str]) -> StoreURL:
    if not path:
        raise _bad(url, "no database path")
    if path == ":memory:":
        raise _bad(url, "an in-memory SQLite database is not durable", hint="Use memory://.")
    if "\x00" in path:
        raise _bad(url, "the path contains a NUL character")
    if path.endswith("/") or os.path.basename(path) in ("", ".", "..", "~"):
        raise _bad(url, "the path names a directory, not a database file")
    if os.name == "nt" and re.match(r"/[A-Za-z]:[/\\]", path):
        path = path[1:]  # sqlite:///C:/data/runs.db
    return StoreURL(
        "sqlite",
        path,
        synchronous=cast(
            Literal["normal", "full"],
            _choice(url, "synchronous", options.get("synchronous", "normal"), ("normal", "full")),
        ),
        retention=_retention(url, options),
        busy_timeout=_duration(
            url, "busy_timeout", options.get("busy_timeout", str(_DEFAULT_BUSY_TIMEOUT))
        ),
        check=cast(
            Literal["quick", "full", "off"],
            _choice(url, "check", options.get("check", "quick"), ("quick", "full", "off")),
        ),
    )


def _redis(url: str, scheme: str, rest: str, options: dict[str, str]) -> StoreURL:
    shown = _without_password(url)
    hint = "For example redis://127.0.0.1:6379/0 or rediss://user:password@host:6380/0."
    try:
        parts = urllib.parse.urlsplit(f"{scheme}://{rest}")
        port = parts.port
    except ValueError as exc:
        raise _bad(shown, f"not a Redis URL ({exc})", hint) from None
    if not parts.hostname:
        raise _bad(shown, "no host", hint)
    if port == 0:
        raise _bad(shown, "port 0", hint)
    db = parts.path.lstrip("/")
    if parts.path not in ("", "/") and not (db.isdigit() and db.isascii()):
        raise _bad(shown, f"the database must be a number, got {db!r}", hint)
    prefix = options.get("prefix", "aioflow")
    if not prefix or any(c.isspace() for c in prefix):
        raise _bad(shown, f"prefix must be non-empty and without spaces, got {prefix!r}", hint)
    return StoreURL(
        cast(Literal["redis", "rediss"], scheme),
        retention=_retention(shown, options),
        redis_url=f"{scheme}://{rest}",
        prefix=prefix,
        timeout=_duration(shown, "timeout", options.get("timeout", str(_REDIS_TIMEOUT))),
        connect_timeout=_duration(
            shown, "connect_timeout", options.get("connect_timeout", str(_REDIS_CONNECT_TIMEOUT))
        ),
    )


def _parse_query(url: str, query: str, known: tuple[str, ...]) -> dict[str, str]:
    if not query:
        return {}
    try:
        pairs = urllib.parse.parse_qsl(
            query, keep_blank_values=True, strict_parsing=True, errors="strict"
        )
    except (ValueError, UnicodeDecodeError) as exc:
        raise _bad(url, f"malformed query ({exc})") from None
    options: dict[str, str] = {}
    for key, value in pairs:
        if key not in known:
            raise _bad(url, f"unknown option {key!r}; options here: {', '.join(known)}")
        if key in options:
            raise _bad(url, f"option {key!r} is given twice")
        options[key] = value
    return options
