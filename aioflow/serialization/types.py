"""The non-native types of the data codec: their wire forms, encoded and rebuilt.

``Tag(n)`` is an msgpack ext type ``n`` with empty data, always the first element
of an array; ext codes 1-15 carry raw bytes. The msgpack timestamp ext (-1) is
not used. See :mod:`.codec` for how they are packed and unpacked.

=================  ==========================================================
int > 64 bits      ext 1: two's-complement big-endian bytes
cloudpickle        ext 2: the pickle (only inside a signed body, see the codec)
uuid.UUID          ext 3: the 16 bytes
tuple              ``[Tag(16), *items]``
set / frozenset    ``[Tag(17), *items]`` / ``[Tag(18), *items]``
datetime           ``[Tag(19), y, mo, d, h, mi, s, us, fold, *tz]``
date               ``[Tag(20), y, mo, d]``
time               ``[Tag(21), h, mi, s, us, fold, *tz]``
timedelta          ``[Tag(22), days, seconds, microseconds]``
Decimal            ``[Tag(23), str(value)]``
Enum member        ``[Tag(24), "module:qualname", value]``
dataclass          ``[Tag(25), "module:qualname", {field: value}]``
=================  ==========================================================

``tz`` is ``nil`` (naive), a ``zoneinfo`` key (str), or a fixed offset in
microseconds (int), followed by the name when the ``datetime.timezone`` has one.
Other tzinfo implementations are not portable (pickled or refused).

Enum and dataclass classes are sent by class path, and only when that path
imports back to the very same class (others are pickled or refused). Decoding
imports the named module and checks that the object really is an ``Enum``
subclass or a dataclass before using it. An enum member is looked up by value.
A dataclass is rebuilt like ``pickle`` does (no ``__init__``/``__post_init__``
call): its fields (``init=False`` ones included) are set; unknown fields (from a
newer sender) are ignored and missing ones take their default. Attributes that
are not fields are not sent.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable
from datetime import date, datetime, time, timedelta, timezone, tzinfo
from decimal import Decimal
from typing import Any, Final
from uuid import UUID
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from msgpack import ExtType  # type: ignore[import-untyped]

from ..errors import SerializationError
from .refs import ImportPathError, import_path, portable_path

__all__ = [
    "EXT_BIGINT",
    "EXT_PICKLE",
    "TAG_MIN",
    "TAG_TUPLE",
    "TUPLE_TAG",
    "build_tagged",
    "decode_ext",
    "encode_special",
]

EXT_BIGINT: Final = 1
EXT_PICKLE: Final = 2
EXT_UUID: Final = 3
TAG_MIN: Final = 16  # codes from here up are tags (the wire forms are part of the schema)
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
_TAG: Final = {code: ExtType(code, b"") for code in range(TAG_TUPLE, TAG_DATACLASS + 1)}
#: The tag heading a tuple (tuples are the most frequent tagged value: a fast path).
TUPLE_TAG: Final = _TAG[TAG_TUPLE]
_ONE_US = timedelta(microseconds=1)
_SAME_VERSION_HINT = "Run the same version of the code on the sender and the receiver."


def _malformed(what: str) -> SerializationError:
    return SerializationError(
        f"malformed {what} in payload",
        hint="Run the same aioflow version on the sender and the receiver.",
    )


# --- enums and dataclasses, by class path ---------------------------------------------------

_NOT_PORTABLE_CLASS = (
    "its class {} is not importable by 'module:qualname' (defined inside a function, "
    "in __main__, or shadowed)"
)
# class -> ("module:qualname", dataclass field names); only portable classes are cached.
_PORTABLE: dict[type, tuple[str, tuple[str, ...]]] = {}
# (path, kind) -> class, filled only after the class was checked.
_LOADED: dict[tuple[str, str], type] = {}
# dataclass -> its fields.
_FIELDS: dict[type, tuple[dataclasses.Field[Any], ...]] = {}


def _portable_class(cls: type) -> tuple[str, tuple[str, ...]] | None:
    info = _PORTABLE.get(cls)
    if info is None:
        path = portable_path(cls)
        if path is None:
            return None
        names: tuple[str, ...] = ()
        if dataclasses.is_dataclass(cls):
            names = tuple(field.name for field in dataclasses.fields(cls))
        info = _PORTABLE[cls] = (path, names)
    return info


def _encode_by_class_path(obj: Any) -> tuple[object, str]:
    info = _portable_class(type(obj))
    if info is None:
        return None, _NOT_PORTABLE_CLASS.format(type(obj).__qualname__)
    path, names = info
    if isinstance(obj, enum.Enum):
        return [_TAG[TAG_ENUM], path, obj.value], ""
    return [_TAG[TAG_DATACLASS], path, {name: getattr(obj, name) for name in names}], ""


def _load_class(path: object, kind: str) -> type:
    """The enum or dataclass class named ``path``, checked to be one (nothing is built)."""
    if not isinstance(path, str):
        raise _malformed(f"{kind} reference")
    cls = _LOADED.get((path, kind))
    if cls is not None:
        return cls
    try:
        found = import_path(path)
    except ImportPathError as exc:
        module = path.partition(":")[0]
        raise SerializationError(
            f"cannot decode {kind} {path!r}: {exc}",
            hint=f"Install the module {module!r} on this side, in the same version as on "
            f"the sender; {kind} classes must be defined at module level.",
        ) from exc
    if kind == "enum":
        valid = isinstance(found, type) and issubclass(found, enum.Enum)
    else:
        valid = isinstance(found, type) and dataclasses.is_dataclass(found)
    if not valid:
        raise SerializationError(
            f"cannot decode {kind} {path!r}: that name is not a{'n' * (kind == 'enum')} "
            f"{kind} class here; refusing to construct it",
            hint=_SAME_VERSION_HINT,
        )
    assert isinstance(found, type)
    _LOADED[(path, kind)] = found
    return found


def _build_enum(items: list[Any]) -> enum.Enum:
    if len(items) != 3:
        raise _malformed("enum member")
    cls = _load_class(items[1], "enum")
    try:
        return cls(items[2])  # type: ignore[no-any-return]
    except ValueError as exc:
        raise SerializationError(
            f"{items[1]!r} has no member with value {items[2]!r}", hint=_SAME_VERSION_HINT
        ) from exc


def _build_dataclass(items: list[Any]) -> object:
    if len(items) != 3 or type(items[2]) is not dict:
        raise _malformed("dataclass")
    cls = _load_class(items[1], "dataclass")
    state: dict[Any, Any] = items[2]
    fields = _FIELDS.get(cls)
    if fields is None:
        fields = _FIELDS[cls] = dataclasses.fields(cls)
    obj: object = cls.__new__(cls)  # type: ignore[call-overload]
    for field in fields:
        if field.name in state:
            value = state[field.name]
        elif field.default is not dataclasses.MISSING:
            value = field.default
        elif field.default_factory is not dataclasses.MISSING:
            value = field.default_factory()
        else:
            raise SerializationError(
                f"cannot decode dataclass {items[1]!r}: field {field.name!r} is missing "
                "and has no default",
                hint=_SAME_VERSION_HINT,
            )
        # Set like pickle does: frozen and slotted dataclasses included; only real
        # fields of the class are ever set (unknown names from the payload are ignored).
        object.__setattr__(obj, field.name, value)
    return obj


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
        _TAG[TAG_DATETIME], value.year, value.month, value.day, value.hour,
        value.minute, value.second, value.microsecond, value.fold, *tz,
    ]  # fmt: skip


def _encode_time(value: time) -> object:
    tz = _tz_fields(value.tzinfo)
    if tz is None:
        return None
    return [_TAG[TAG_TIME], value.hour, value.minute, value.second, value.microsecond,
            value.fold, *tz]  # fmt: skip


_ENCODERS: dict[type, Callable[[Any], object]] = {
    tuple: lambda v: [_TAG[TAG_TUPLE], *v],
    set: lambda v: [_TAG[TAG_SET], *v],
    frozenset: lambda v: [_TAG[TAG_FROZENSET], *v],
    datetime: _encode_datetime,
    date: lambda v: [_TAG[TAG_DATE], v.year, v.month, v.day],
    time: _encode_time,
    timedelta: lambda v: [_TAG[TAG_TIMEDELTA], v.days, v.seconds, v.microseconds],
    Decimal: lambda v: [_TAG[TAG_DECIMAL], str(v)],
    UUID: lambda v: ExtType(EXT_UUID, v.bytes),
}


def encode_special(obj: object) -> tuple[object, str]:
    """Return ``(wire form, "")`` of a non-native supported value, else ``(None, reason)``.

    Args:
        obj: a value msgpack could not pack natively (not a big int: see the codec).
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
    if isinstance(obj, enum.Enum) or (dataclasses.is_dataclass(obj) and not isinstance(obj, type)):
        return _encode_by_class_path(obj)
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
        raise _malformed("time zone")
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
    raise _malformed("time zone")


def _build_datetime(items: list[Any]) -> datetime:
    if len(items) < 10:
        raise _malformed("datetime")
    year, month, day, hour, minute, second, micro, fold = items[1:9]
    return datetime(
        year, month, day, hour, minute, second, micro, tzinfo=_tz_from(items[9:]), fold=fold
    )


def _build_time(items: list[Any]) -> time:
    if len(items) < 7:
        raise _malformed("time")
    hour, minute, second, micro, fold = items[1:6]
    return time(hour, minute, second, micro, tzinfo=_tz_from(items[6:]), fold=fold)


def _fixed(count: int, what: str, build: Callable[..., Any]) -> Callable[[list[Any]], Any]:
    def builder(items: list[Any]) -> Any:
        if len(items) != count + 1:
            raise _malformed(what)
        return build(*items[1:])

    return builder


def _decimal(text: object) -> Decimal:
    if type(text) is not str:
        raise _malformed("decimal")
    return Decimal(text)


_BUILDERS: dict[int, Callable[[list[Any]], Any]] = {
    TAG_TUPLE: lambda items: tuple(items[1:]),
    TAG_SET: lambda items: set(items[1:]),
    TAG_FROZENSET: lambda items: frozenset(items[1:]),
    TAG_DATETIME: _build_datetime,
    TAG_DATE: _fixed(3, "date", date),
    TAG_TIME: _build_time,
    TAG_TIMEDELTA: _fixed(3, "timedelta", timedelta),
    TAG_DECIMAL: _fixed(1, "decimal", _decimal),
    TAG_ENUM: _build_enum,
    TAG_DATACLASS: _build_dataclass,
}


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
