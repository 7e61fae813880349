"""Msgpack extension codes of the data codec, in one place.

Codes 1-15 are ext types whose data is raw bytes; codes from :data:`TAG_MIN` up
are empty *tags* heading an array (``[Tag(code), ...]``), see :mod:`.types`.
The msgpack timestamp ext (-1) is not used.
"""

from __future__ import annotations

from typing import Final

from msgpack import ExtType  # type: ignore[import-untyped]

from ..errors import SerializationError

__all__ = [
    "EXT_BIGINT",
    "EXT_PICKLE",
    "EXT_UUID",
    "TAG",
    "TAG_DATACLASS",
    "TAG_DATE",
    "TAG_DATETIME",
    "TAG_DECIMAL",
    "TAG_ENUM",
    "TAG_FROZENSET",
    "TAG_MIN",
    "TAG_SET",
    "TAG_TIME",
    "TAG_TIMEDELTA",
    "TAG_TUPLE",
    "TUPLE_TAG",
    "malformed",
]

EXT_BIGINT: Final = 1
EXT_PICKLE: Final = 2
EXT_UUID: Final = 3

TAG_MIN: Final = 16
TAG_TUPLE: Final = 16
TAG_SET: Final = 17
TAG_FROZENSET: Final = 18
TAG_DATETIME: Final = 19
TAG_DATE: Final = 20
TAG_TIME: Final = 21
TAG_TIMEDELTA: Final = 22
TAG_DECIMAL: Final = 23
TAG_ENUM: Final = 24
TAG_DATACLASS: Final = 25

#: The encoded tags, by code.
TAG: Final = {code: ExtType(code, b"") for code in range(TAG_TUPLE, TAG_DATACLASS + 1)}
#: The tag heading a tuple (tuples are the most frequent tagged value: a fast path).
TUPLE_TAG: Final = TAG[TAG_TUPLE]


def malformed(what: str) -> SerializationError:
    """The error for a wire form that does not have the expected shape."""
    return SerializationError(
        f"malformed {what} in payload",
        hint="Run the same aioflow version on the sender and the receiver.",
    )
