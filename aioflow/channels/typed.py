"""Typed channels: a TypedDict schema validated on every read and write (R18)."""

from __future__ import annotations

import types
import typing
from typing import Any, Generic, TypeVar, Union, get_args, get_origin

from ..errors import ChannelError, ChannelValidationError
from .base import Channel

__all__ = ["TypedChannel"]

S = TypeVar("S")

_MISSING: Any = object()


def _allows_none(annotation: Any) -> bool:
    if annotation is None or annotation is type(None) or annotation is Any:
        return True
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        return any(_allows_none(arg) for arg in get_args(annotation))
    return False


def _fields_of(schema: type[Any]) -> tuple[dict[str, Any], frozenset[str]]:
    """Field annotations and required keys of a TypedDict.

    Read from the resolved hints rather than ``__required_keys__``, which misses
    ``NotRequired[...]`` written as a string annotation on Python 3.11.
    """
    total = getattr(schema, "__total__", True)
    fields: dict[str, Any] = {}
    required: set[str] = set()
    for key, hint in typing.get_type_hints(schema, include_extras=True).items():
        origin = get_origin(hint)
        if origin is typing.NotRequired or origin is typing.Required:
            if origin is typing.Required:
                required.add(key)
            hint = get_args(hint)[0]
        elif total:
            required.add(key)
        fields[key] = hint
    return fields, frozenset(required)


class TypedChannel(Generic[S]):
    """A view of a channel whose keys and values follow a ``TypedDict`` schema.

    Every key must be a field of the schema; every value written or read is checked
    against the field's type. A field that may be absent (``NotRequired``) or may be
    None (``Optional``) reads as ``None`` when unset; reading an unset required field
    raises :class:`~aioflow.errors.ChannelError`.

    Args:
        channel: the underlying channel (usually ``ctx.channel``).
        schema: a ``TypedDict`` class.
        prefix: optional key prefix, to keep several typed views apart.
    """

    def __init__(self, channel: Channel, schema: type[S], *, prefix: str = "") -> None:
        if not typing.is_typeddict(schema):
            raise ChannelValidationError(
                f"{schema!r} is not a TypedDict",
                hint="Describe the channel with class Schema(TypedDict): ...",
            )
        self._channel = channel
        self._schema = schema
        self._prefix = prefix
        self._fields, self._required = _fields_of(schema)

    @property
    def schema(self) -> type[S]:
        return self._schema

    def _field(self, key: str) -> Any:
        try:
            return self._fields[key]
        except KeyError:
            raise ChannelValidationError(
                f"{key!r} is not a field of {self._schema.__name__}",
                hint=f"Fields are: {sorted(self._fields)}",
            ) from None

    def _check(self, key: str, value: Any, annotation: Any, action: str) -> None:
        # Imported on first use: typeguard costs tens of milliseconds at import time.
        from typeguard import TypeCheckError, check_type

        try:
            check_type(value, annotation)
        except TypeCheckError as exc:
            raise ChannelValidationError(
                f"{action} {self._schema.__name__}[{key!r}]: {exc}",
                hint=f"The field {key!r} is declared as {annotation!r}.",
            ) from exc

    async def get(self, key: str, default: Any = _MISSING) -> Any:
        """Read and validate ``key``.

        Raises:
            ChannelValidationError: unknown key, or the stored value has the wrong type.
            ChannelError: a required key is unset and no default was given.
        """
        annotation = self._field(key)
        value = await self._channel.get(self._prefix + key, _MISSING)
        if value is _MISSING:
            if default is not _MISSING:
                return default
            if key not in self._required or _allows_none(annotation):
                return None
            raise ChannelError(
                f"required field {key!r} of {self._schema.__name__} is not set",
                hint="Set it before reading, or pass a default: await tc.get(key, default).",
            )
        self._check(key, value, annotation, "read")
        return value

    async def set(self, key: str, value: Any, *, ttl: float | None = None) -> None:
        """Validate and write ``value`` under ``key``."""
        self._check(key, value, self._field(key), "write")
        await self._channel.set(self._prefix + key, value, ttl=ttl)

    async def update(self, values: S) -> None:
        """Validate and write several fields."""
        for key, value in typing.cast(dict[str, Any], values).items():
            self._check(key, value, self._field(key), "write")
        for key, value in typing.cast(dict[str, Any], values).items():
            await self._channel.set(self._prefix + key, value)

    async def delete(self, key: str) -> bool:
        self._field(key)
        return await self._channel.delete(self._prefix + key)

    async def to_dict(self) -> S:
        """All fields that are set, validated, as a dict of the schema's type."""
        out: dict[str, Any] = {}
        for key, annotation in self._fields.items():
            value = await self._channel.get(self._prefix + key, _MISSING)
            if value is not _MISSING:
                self._check(key, value, annotation, "read")
                out[key] = value
        return typing.cast(S, out)
