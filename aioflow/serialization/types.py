"""Encoding and rebuilding the non-native types of the data codec.

Wire forms (``Tag(n)`` is an msgpack ext type ``n`` with empty data, always the
first element of an array; codes in :mod:`.tags`; see :mod:`.codec`):

=================  ==========================================================
int > 64 bits      ext 1: two's-complement big-endian bytes
uuid.UUID          ext 3: the 16 bytes
tuple              ``[Tag(16), *items]``
set / frozenset    ``[Tag(17), *items]`` / ``[Tag(18), *items]``
datetime           ``[Tag(19), y, mo, d, h, mi, s, us, fold, *tz]``
date               ``[Tag(20), y, mo, d]``
time               ``[Tag(21), h, mi, s, us, fold, *tz]``
timedelta          ``[Tag(22), days, seconds, microseconds]``
Decimal            ``[Tag(23), str(value)]``
Enum member        ``[Tag(24), "module:qualname", value]`` (see :mod:`.classes`)
dataclass          ``[Tag(25), "module:qualname", {field: value}]``
=================  ==========================================================

``tz`` is ``nil`` (naive), a ``zoneinfo`` key (str), or a fixed offset in
microseconds (int), followed by the name when the ``datetime.timezone`` has one.
Other tzinfo implementations are not portable (pickled or refused).
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable
from datetime import date, datetime, time, timedelta, timezone, tzinfo
from decimal import Decimal
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from msgpack import ExtType  # type: ignore[import-untyped]

from ..errors import SerializationError
from .classes import build_dataclass, build_enum, encode_dataclass, encode_enum
from .tags import (
    EXT_BIGINT,
    EXT_UUID,
    TAG,
    TAG_DATACLASS,
    TAG_DATE,
    TAG_DATETIME,
    TAG_DECIMAL,
    TAG_ENUM,
    TAG_FROZENSET,
    TAG_SET,
    TAG_TIME,
    TAG_TIMEDELTA,
    TAG_TUPLE,
    malformed,
)

__all__ = ["build_tagged", "decode_ext", "encode_special"]

_ONE_US = timedelta(microseconds=1)

# --- encoding -----------------------------------------------------------------------------


def _tz_fields(tz: tzinfo | None) -> list[object] | None:
    if tz is None:
        return [None]
    if type(tz) is timezone:
        args = tz.__getinitargs__()  # type: ignore[attr-defined]  # (offset[, name])
        return [args[0] // _ONE_US, *args[1:]]
    if type(tz) is ZoneInfo and tz.key is not None:
        return [tz.key]
    return None


def _encode_datetime(value: datetime) -> object:
    tz = _tz_fields(value.tzinfo)
    if tz is None:
        return None
    return [
        TAG[TAG_DATETIME], value.year, value.month, value.day, value.hour,
        value.minute, value.second, value.microsecond, value.fold, *tz,
    ]  # fmt: skip


def _encode_time(value: time) -> object:
    tz = _tz_fields(value.tzinfo)
    if tz is None:
        return None
    return [TAG[TAG_TIME], value.hour, value.minute, value.second, value.microsecond,
            value.fold, *tz]  # fmt: skip


_ENCODERS: dict[type, Callable[[Any], object]] = {
    tuple: lambda v: [TAG[TAG_TUPLE], *v],
    set: lambda v: [TAG[TAG_SET], *v],
    frozenset: lambda v: [TAG[TAG_FROZENSET], *v],
    datetime: _encode_datetime,
    date: lambda v: [TAG[TAG_DATE], v.year, v.month, v.day],
    time: _encode_time,
    timedelta: lambda v: [TAG[TAG_TIMEDELTA], v.days, v.seconds, v.microseconds],
    Decimal: lambda v: [TAG[TAG_DECIMAL], str(v)],
    UUID: lambda v: ExtType(EXT_UUID, v.bytes),
}


def encode_special(obj: object) -> tuple[object, str]:
    """Return the wire form of a non-native supported value, or ``(None, reason)``.

    Args:
        obj: a value msgpack could not pack natively (not a big int: see the codec).

    Returns:
        ``(encoded, "")`` when supported, else ``(None, why it is not)``.
    """
    kind = type(obj)
    encoder = _ENCODERS.get(kind)
    if encoder is not None:
        encoded = encoder(obj)
        if encoded is not None:
            return encoded, ""
        zone = getattr(obj, "tzinfo", None)
        return None, (
            f"its tzinfo {type(zone).__qualname__} is neither datetime.timezone nor "
            "zoneinfo.ZoneInfo"
        )
    if isinstance(obj, enum.Enum):
        return encode_enum(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return encode_dataclass(obj)
    return None, "it is not a data type aioflow encodes"


# --- decoding -------------------------------------------------------------------------------


def decode_ext(code: int, data: bytes) -> object:
    """Decode a data-carrying ext (big int, UUID); raise for any other code."""
    if code == EXT_BIGINT:
        return int.from_bytes(data, "big", signed=True)
    if code == EXT_UUID:
        return UUID(bytes=bytes(data))
    raise SerializationError(
        f"payload holds unknown msgpack extension type {code}",
        hint="Run the same aioflow version on the sender and the receiver.",
    )


def _tz_from(fields: list[Any]) -> tzinfo | None:
    if not fields:
        raise malformed("time zone")
    spec = fields[0]
    if spec is None and len(fields) == 1:
        return None
    if type(spec) is int and len(fields) in (1, 2):
        offset = timedelta(microseconds=spec)
        return timezone(offset) if len(fields) == 1 else timezone(offset, fields[1])
    if type(spec) is str and len(fields) == 1:
        try:
            return ZoneInfo(spec)
        except ZoneInfoNotFoundError as exc:
            raise SerializationError(
                f"time zone {spec!r} is not known on this side",
                hint="Install the IANA time zone database here (pip install tzdata).",
            ) from exc
    raise malformed("time zone")


def _build_datetime(items: list[Any]) -> datetime:
    if len(items) < 10:
        raise malformed("datetime")
    year, month, day, hour, minute, second, micro, fold = items[1:9]
    return datetime(
        year, month, day, hour, minute, second, micro, tzinfo=_tz_from(items[9:]), fold=fold
    )


def _build_time(items: list[Any]) -> time:
    if len(items) < 7:
        raise malformed("time")
    hour, minute, second, micro, fold = items[1:6]
    return time(hour, minute, second, micro, tzinfo=_tz_from(items[6:]), fold=fold)


def _fixed(count: int, what: str, build: Callable[..., Any]) -> Callable[[list[Any]], Any]:
    def builder(items: list[Any]) -> Any:
        if len(items) != count + 1:
            raise malformed(what)
        return build(*items[1:])

    return builder


_BUILDERS: dict[int, Callable[[list[Any]], Any]] = {
    TAG_TUPLE: lambda items: tuple(items[1:]),
    TAG_SET: lambda items: set(items[1:]),
    TAG_FROZENSET: lambda items: frozenset(items[1:]),
    TAG_DATETIME: _build_datetime,
    TAG_DATE: _fixed(3, "date", date),
    TAG_TIME: _build_time,
    TAG_TIMEDELTA: _fixed(3, "timedelta", timedelta),
    TAG_DECIMAL: _fixed(1, "decimal", lambda text: Decimal(_checked_str(text))),
    TAG_ENUM: build_enum,
    TAG_DATACLASS: build_dataclass,
}


def _checked_str(text: object) -> str:
    if type(text) is not str:
        raise malformed("decimal")
    return text


def build_tagged(code: int, items: list[Any]) -> object:
    """Rebuild the value of a tagged array ``[Tag(code), ...]``.

    Raises:
        SerializationError: unknown tag or malformed content. Constructors may also
            raise ``ValueError``/``TypeError``/``OverflowError``: the codec wraps them.
    """
    builder = _BUILDERS.get(code)
    if builder is None:
        raise SerializationError(
            f"payload holds unknown type tag {code}",
            hint="Run the same aioflow version on the sender and the receiver.",
        )
    return builder(items)
