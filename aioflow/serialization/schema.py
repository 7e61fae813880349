"""Schema versions and field checks shared by the TaskCall and TaskResult wire formats.

Both are positional msgpack arrays that start with ``major, minor``. A newer
*minor* version only appends fields, which older receivers ignore; a newer
*major* version changes the meaning, and older receivers refuse it with a hint
to upgrade.
"""

from __future__ import annotations

from typing import Any, Final, TypeVar

from ..errors import SerializationError

__all__ = ["SCHEMA_VERSION", "check_version", "expect", "expect_optional"]

#: (major, minor) of the TaskCall and TaskResult wire formats.
SCHEMA_VERSION: Final = (1, 0)

_T = TypeVar("_T")
_UPGRADE_HINT = "Run the same aioflow version on the sender and the receiver (upgrade the older)."


def check_version(meta: object, what: str, size: int) -> tuple[int, int]:
    """Return the sender's ``(major, minor)`` from a positional wire array.

    Args:
        meta: the decoded body: ``[major, minor, ...fields]``.
        what: what it is, for messages (``"task call"``).
        size: the number of elements this version needs (extra ones are ignored).

    Returns:
        ``(major, minor)``.

    Raises:
        SerializationError: no valid version, a major version this code does not read
            (with a hint to upgrade), or too few fields.
    """
    if type(meta) is not list or len(meta) < 2:
        raise SerializationError(f"malformed {what}: no schema version", hint=_UPGRADE_HINT)
    major, minor = meta[0], meta[1]
    if type(major) is not int or type(minor) is not int:
        raise SerializationError(f"malformed {what}: no schema version", hint=_UPGRADE_HINT)
    if major != SCHEMA_VERSION[0]:
        raise SerializationError(
            f"{what} uses schema {major}.{minor}; this aioflow reads schema "
            f"{SCHEMA_VERSION[0]}.x only",
            hint=(
                "Upgrade aioflow on this side to the sender's version."
                if major > SCHEMA_VERSION[0]
                else "Upgrade aioflow on the sender; this side no longer reads that schema."
            ),
        )
    if len(meta) < size:
        raise SerializationError(
            f"malformed {what}: {len(meta)} fields, schema {major}.{minor} has at least {size}",
            hint=_UPGRADE_HINT,
        )
    return major, minor


def expect(value: Any, kind: type[_T], name: str, what: str) -> _T:
    """Return ``value`` when it is exactly of type ``kind``.

    Raises:
        SerializationError: it is of another type.
    """
    if type(value) is not kind:
        raise SerializationError(
            f"malformed {what}: {name} should be {kind.__name__}, got {type(value).__name__}",
            hint=_UPGRADE_HINT,
        )
    return value


def expect_optional(value: Any, kind: type[_T], name: str, what: str) -> _T | None:
    """Like :func:`expect`, but ``None`` is accepted."""
    return None if value is None else expect(value, kind, name, what)
