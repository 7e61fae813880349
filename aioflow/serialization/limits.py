"""Payload size limits.

Every signed payload is refused, never truncated, when it is larger than the
limit: on encode (before it is sent) and on decode (before its signature is
checked). The limit comes from an explicit argument, else from the
``AIOFLOW_MAX_PAYLOAD_BYTES`` environment variable, else
:data:`DEFAULT_MAX_PAYLOAD_BYTES` (64 MiB).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from ..errors import ConfigurationError, PayloadTooLargeError

__all__ = [
    "DEFAULT_MAX_PAYLOAD_BYTES",
    "MAX_PAYLOAD_BYTES_ENV",
    "ABSOLUTE_MAX_PAYLOAD_BYTES",
    "check_size",
    "max_payload_bytes_from_env",
    "validate_max_payload_bytes",
]

#: Default size limit of one signed payload (64 MiB).
DEFAULT_MAX_PAYLOAD_BYTES = 64 * 1024 * 1024
#: Environment variable that overrides the default limit (a positive integer, in bytes).
MAX_PAYLOAD_BYTES_ENV = "AIOFLOW_MAX_PAYLOAD_BYTES"
#: The envelope stores the body length in 32 bits: no limit may exceed this.
ABSOLUTE_MAX_PAYLOAD_BYTES = 2**32 - 1


def validate_max_payload_bytes(value: object, *, source: str = "max_payload_bytes") -> int:
    """Check a size limit and return it as an ``int``.

    Args:
        value: the limit, in bytes (an ``int``, or a decimal string from the environment).
        source: where the value came from, for the error message.

    Returns:
        The limit, ``1 <= limit <= ABSOLUTE_MAX_PAYLOAD_BYTES``.

    Raises:
        ConfigurationError: the value is not a positive integer within range.
    """
    limit: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        limit = value
    elif isinstance(value, str):
        try:
            limit = int(value.strip().replace("_", ""))
        except ValueError:
            limit = None
    if limit is None or not 1 <= limit <= ABSOLUTE_MAX_PAYLOAD_BYTES:
        raise ConfigurationError(
            f"{source} must be an integer between 1 and {ABSOLUTE_MAX_PAYLOAD_BYTES} "
            f"(bytes), got {value!r}",
            hint=f"Set {MAX_PAYLOAD_BYTES_ENV} to a size in bytes, e.g. 67108864 for 64 MiB.",
        )
    return limit


def max_payload_bytes_from_env(environ: Mapping[str, str] | None = None) -> int:
    """Return the payload size limit configured in the environment.

    Args:
        environ: the environment to read (default ``os.environ``).

    Returns:
        ``AIOFLOW_MAX_PAYLOAD_BYTES`` when set and not empty, else
        :data:`DEFAULT_MAX_PAYLOAD_BYTES`.

    Raises:
        ConfigurationError: the variable is set to something that is not a valid limit.
    """
    env = os.environ if environ is None else environ
    raw = env.get(MAX_PAYLOAD_BYTES_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_PAYLOAD_BYTES
    return validate_max_payload_bytes(raw, source=MAX_PAYLOAD_BYTES_ENV)


def check_size(size: int, limit: int, *, what: str) -> None:
    """Refuse a payload of ``size`` bytes when it exceeds ``limit``.

    Args:
        size: the payload's size in bytes.
        limit: the largest size allowed.
        what: what the payload is (``"encoded task call"`` ...), for the message.

    Raises:
        PayloadTooLargeError: ``size > limit``.
    """
    if size > limit:
        raise PayloadTooLargeError(
            f"{what} is {size} bytes, more than the limit of {limit} bytes; "
            "it was refused, not truncated",
            hint=(
                "Pass a reference (a path, a URL, an object-store key) instead of the data, "
                f"or raise the limit with max_payload_bytes= or {MAX_PAYLOAD_BYTES_ENV} "
                "(on every process: senders and receivers)."
            ),
        )
