"""Enum members and dataclass instances, sent by class path.

Wire forms: ``[Tag(24), "module:qualname", value]`` for an enum member,
``[Tag(25), "module:qualname", {field: value}]`` for a dataclass instance.

Only classes whose ``"module:qualname"`` imports back to the very same class
are sent this way; others (local classes, ``__main__``) are not portable and
are pickled or refused by the codec. Decoding imports the named module and
checks that the object really is an ``Enum`` subclass or a dataclass before
using it. An enum member is looked up by value. A dataclass is rebuilt like
``pickle`` does (no ``__init__``/``__post_init__`` call): its fields
(``dataclasses.fields``, ``init=False`` ones included) are set; unknown fields
(from a newer sender) are ignored and missing ones take their default.
Attributes that are not fields are not sent.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any

from ..errors import SerializationError
from .importing import ImportPathError, import_path, portable_path
from .tags import TAG, TAG_DATACLASS, TAG_ENUM, malformed

__all__ = ["build_dataclass", "build_enum", "encode_dataclass", "encode_enum", "load_class"]

_NOT_PORTABLE_CLASS = (
    "its class {} is not importable by 'module:qualname' (defined inside a function, "
    "in __main__, or shadowed)"
)

# class -> ("module:qualname", dataclass field names); only portable classes are cached.
_PORTABLE: dict[type, tuple[str, tuple[str, ...]]] = {}


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


def encode_enum(obj: enum.Enum) -> tuple[object, str]:
    """Return ``(wire form, "")``, or ``(None, reason)`` when the class is not portable."""
    info = _portable_class(type(obj))
    if info is None:
        return None, _NOT_PORTABLE_CLASS.format(type(obj).__qualname__)
    return [TAG[TAG_ENUM], info[0], obj.value], ""


def encode_dataclass(obj: Any) -> tuple[object, str]:
    """Return ``(wire form, "")``, or ``(None, reason)`` when the class is not portable."""
    info = _portable_class(type(obj))
    if info is None:
        return None, _NOT_PORTABLE_CLASS.format(type(obj).__qualname__)
    return [TAG[TAG_DATACLASS], info[0], {name: getattr(obj, name) for name in info[1]}], ""


# (path, kind) -> class, filled only after the class was checked.
_LOADED: dict[tuple[str, str], type] = {}


def load_class(path: object, kind: str) -> type:
    """Import the enum or dataclass class named ``path`` and check what it is.

    Args:
        path: ``"module:qualname"`` from the payload.
        kind: ``"enum"`` or ``"dataclass"``.

    Returns:
        The class, known to be an ``Enum`` subclass or a dataclass.

    Raises:
        SerializationError: malformed path, module not importable, or the object is
            not of the expected kind (nothing is constructed then).
    """
    if not isinstance(path, str):
        raise malformed(f"{kind} reference")
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
            hint="Run the same version of the code on the sender and the receiver.",
        )
    assert isinstance(found, type)
    _LOADED[(path, kind)] = found
    return found


def build_enum(items: list[Any]) -> enum.Enum:
    """Rebuild an enum member from ``[Tag, path, value]``."""
    if len(items) != 3:
        raise malformed("enum member")
    cls = load_class(items[1], "enum")
    try:
        return cls(items[2])  # type: ignore[no-any-return]
    except ValueError as exc:
        raise SerializationError(
            f"{items[1]!r} has no member with value {items[2]!r}",
            hint="Run the same version of the code on the sender and the receiver.",
        ) from exc


# dataclass -> its fields; filled by _build_dataclass.
_FIELDS: dict[type, tuple[dataclasses.Field[Any], ...]] = {}


def build_dataclass(items: list[Any]) -> object:
    """Rebuild a dataclass instance from ``[Tag, path, {field: value}]``."""
    if len(items) != 3 or type(items[2]) is not dict:
        raise malformed("dataclass")
    cls = load_class(items[1], "dataclass")
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
                hint="Run the same version of the code on the sender and the receiver.",
            )
        # Set like pickle does: frozen and slotted dataclasses included; only real
        # fields of the class are ever set (unknown names from the payload are ignored).
        object.__setattr__(obj, field.name, value)
    return obj
