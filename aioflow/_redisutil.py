"""Small helpers shared by the Redis store and the Redis channel (no Redis import here)."""

from __future__ import annotations

import urllib.parse
from typing import Any

__all__ = ["check_client", "client_url", "failure", "redact_url", "url_password"]


def redact_url(url: str) -> str:
    """``url`` without its password (``redis://user@host:port/db``), for messages."""
    try:
        parts = urllib.parse.urlsplit(url)
        netloc = parts.hostname or ""
        if ":" in netloc:
            netloc = f"[{netloc}]"
        if parts.port is not None:
            netloc = f"{netloc}:{parts.port}"
    except ValueError:
        return "redis://(unparsable URL)"
    if parts.username:
        netloc = f"{parts.username}@{netloc}"
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def client_url(client: Any) -> str:
    """Where a ``redis.asyncio.Redis`` client connects, without its password."""
    kwargs = client.connection_pool.connection_kwargs
    if "path" in kwargs:
        return f"unix://{kwargs['path']}"
    ssl = client.connection_pool.connection_class.__name__.startswith("SSL")
    user = kwargs.get("username")
    host = kwargs.get("host", "localhost")
    where = f"{user}@{host}" if user else str(host)
    scheme = "rediss" if ssl else "redis"
    return f"{scheme}://{where}:{kwargs.get('port', 6379)}/{kwargs.get('db', 0)}"


def failure(
    exc: BaseException, *, where: str, password: str | None, connection: bool, doc: str
) -> tuple[str, str]:
    """The text of a Redis failure (the password masked) and a hint saying what to check.

    ``connection``: the server could not be reached (connect, timeout, OS error).
    """
    text = f"{type(exc).__name__}: {exc}"
    if password:
        text = text.replace(password, "***")
    if connection:
        hint = (
            f"Check that Redis runs and is reachable at {where} (host, port, password, TLS); "
            f"see {doc}."
        )
    else:
        hint = f"Check the Redis server's log; see {doc}."
    return text, hint


def url_password(url: str) -> str | None:
    """The password in ``url`` (to mask it in messages), or None."""
    try:
        password = urllib.parse.urlsplit(url).password
    except ValueError:
        return None
    return urllib.parse.unquote(password) if password else None


def check_client(client: Any, owner: str, error: type[Exception]) -> None:
    """Refuse a ``redis.asyncio.Redis`` that decodes responses (aioflow reads bytes).

    ``error`` is the owner's error class (an :class:`~aioflow.errors.AioflowError`
    taking ``hint=``).
    """
    if client.connection_pool.connection_kwargs.get("decode_responses"):
        raise error(  # type: ignore[call-arg]
            f"the Redis client of a {owner} must not decode responses",
            hint="Make it with decode_responses=False (the default).",
        )
