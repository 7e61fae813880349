"""The msgpack data codec (internal: use :mod:`aioflow.serialization`'s functions).

Native msgpack types (None, bool, int up to 64 bits, float, str, bytes, list,
dict) are packed by msgpack's C extension without any Python call. Every other
supported type reaches the ``default`` hook (``strict_types=True``, so tuples,
enum members of ``int``/``str`` and subclasses are not silently flattened) and
gets the wire form of :mod:`.types`: an ext type whose data is raw bytes, or an
array headed by an empty ext *tag* naming the type (a tuple is
``[Tag(TUPLE), *items]``). The ``list_hook`` rebuilds those bottom-up, so
decoding never nests a second ``unpackb`` call (no recursion, whatever the
nesting).

Pickles (ext :data:`~.types.EXT_PICKLE`) are produced only when the caller allows
them, and :func:`unpack` reads only a :class:`VerifiedBody`, which only
:func:`~.envelope.open_envelope` makes from a checked envelope (and the message
decoders from documents nested in one). When encoding fails, a walk of the value
finds *where* (``result['rows'][3]``) for the error message.
"""

from __future__ import annotations

import dataclasses
import enum
import threading
from collections.abc import Callable, Iterator
from typing import Any, Final, final

import msgpack  # type: ignore[import-untyped]

from ..errors import AioflowError, SerializationError
from . import refs
from .types import (
    EXT_BIGINT,
    EXT_PICKLE,
    TAG_MIN,
    TAG_TUPLE,
    TUPLE_TAG,
    build_tagged,
    decode_ext,
    encode_special,
)

__all__ = ["MAX_DEPTH", "VerifiedBody", "pack", "unpack"]

#: Deepest nesting the codec handles (msgpack's C packer and unpacker stacks).
MAX_DEPTH: Final = 1024


@final
class VerifiedBody:
    """The body of an envelope whose signature was checked: the only input of :func:`unpack`.

    Made by :func:`~.envelope.open_envelope`, and by the message decoders for the
    documents nested inside a verified body (covered by the same signature).
    """

    __slots__ = ("body",)

    def __init__(self, body: memoryview) -> None:
        self.body = body


_REFUSE_HINT = (
    "Send plain data (dict, list, str, numbers, datetimes, dataclasses and enums defined "
    "at module level...). Locks, sockets, connections and contexts never travel: create "
    "them inside the task from configuration. Otherwise allow signed pickles for this "
    "payload (allow_pickle=True)."
)
_UNPICKLABLE_HINT = (
    "Locks, sockets, open files, connections and contexts cannot travel between "
    "processes: pass their configuration (a URL, a path) and create them inside the task."
)


def _type_name(obj: object) -> str:
    cls = type(obj)
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


class _Refused(Exception):
    """Internal: raised by the ``default`` hook; turned into a SerializationError with a path."""

    def __init__(self, obj: object, reason: str, hint: str) -> None:
        super().__init__(reason)
        self.obj = obj
        self.reason = reason
        self.hint = hint


@final
class _Encoder:
    """One msgpack Packer and its ``default`` hook. One per thread and pickle policy."""

    __slots__ = ("allow_pickle", "busy", "packer")

    def __init__(self, allow_pickle: bool) -> None:
        self.allow_pickle = allow_pickle
        self.busy = False
        self.packer = msgpack.Packer(
            default=self.default, strict_types=True, use_bin_type=True, autoreset=True
        )

    def default(self, obj: object) -> object:
        kind = type(obj)
        if kind is tuple:
            return [TUPLE_TAG, *obj]  # type: ignore[misc]
        if kind is int:
            number: int = obj  # type: ignore[assignment]
            size = (number.bit_length() + 8) // 8
            return msgpack.ExtType(EXT_BIGINT, number.to_bytes(size, "big", signed=True))
        encoded, reason = encode_special(obj)
        if encoded is not None:
            return encoded
        if not self.allow_pickle:
            raise _Refused(obj, f"{reason}, and pickled values are not allowed here", _REFUSE_HINT)
        try:
            data = refs.pickle_value(obj)
        except Exception as exc:
            raise _Refused(
                obj, f"it cannot be pickled either ({type(exc).__name__}: {exc})", _UNPICKLABLE_HINT
            ) from exc
        return msgpack.ExtType(EXT_PICKLE, data)


_local = threading.local()


def _acquire(allow_pickle: bool) -> _Encoder:
    name = "pickle" if allow_pickle else "plain"
    encoder: _Encoder | None = getattr(_local, name, None)
    if encoder is None:
        encoder = _Encoder(allow_pickle)
        setattr(_local, name, encoder)
    if encoder.busy:  # re-entered (a __reduce__ encoding something): use a fresh one
        return _Encoder(allow_pickle)
    encoder.busy = True
    return encoder


def pack(value: object, *, allow_pickle: bool, root: str) -> bytes:
    """Encode ``value`` to msgpack bytes (unsigned: callers seal them in an envelope).

    ``allow_pickle``: carry unsupported values as cloudpickle, else refuse them;
    ``root``: the value's name in error paths (``"result"``, ``"args"``).

    Raises:
        SerializationError: a part of ``value`` cannot be encoded; the message
            names its type and its path.
    """
    encoder = _acquire(allow_pickle)
    try:
        return encoder.packer.pack(value)  # type: ignore[no-any-return]
    except _Refused as refused:
        culprit = refused.obj
        path = _find_path(value, lambda part: part is culprit, root) or root
        raise SerializationError(
            f"cannot encode {_type_name(culprit)} at {path}: {refused.reason}", hint=refused.hint
        ) from refused.__cause__
    except AioflowError:
        raise
    except Exception as exc:
        raise _packer_error(value, root, exc) from exc
    finally:
        encoder.busy = False


def _bad_str(part: object) -> bool:
    if type(part) is not str:
        return False
    try:
        part.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _packer_error(value: object, root: str, exc: Exception) -> SerializationError:
    if isinstance(exc, UnicodeEncodeError):
        path = _find_path(value, _bad_str, root) or root
        return SerializationError(
            f"cannot encode str at {path}: it is not valid UTF-8 ({exc.reason})",
            hint="Remove lone surrogates from the text, or send it as bytes.",
        )
    if isinstance(exc, ValueError) and "recursion" in str(exc):
        path = _find_cycle_or_depth(value, root, MAX_DEPTH) or root
        return SerializationError(
            f"cannot encode {root}: it nests too deeply or refers to itself, at {path}",
            hint=f"Flatten the data (at most {MAX_DEPTH} levels) and remove reference cycles.",
        )
    return SerializationError(
        f"cannot encode {root}: {type(exc).__name__}: {exc}", hint=_REFUSE_HINT
    )


@final
class _Decoder:
    """The hooks of one decode call. ``pending`` counts tags not yet consumed by an array."""

    __slots__ = ("allow_pickle", "pending")

    def __init__(self, allow_pickle: bool) -> None:
        self.allow_pickle = allow_pickle
        self.pending = 0

    def ext_hook(self, code: int, data: bytes) -> object:
        if code >= TAG_MIN:
            if data:
                raise SerializationError(f"malformed payload: tag {code} carries data")
            self.pending += 1
            return _TAGS[code]
        if code == EXT_PICKLE:
            if not self.allow_pickle:
                raise SerializationError(
                    "payload holds a pickled value, and pickled values are not allowed here",
                    hint="Decode with allow_pickle=True to accept signed pickled values, or "
                    "have the sender send plain data.",
                )
            try:
                return refs.unpickle_verified(data)
            except Exception as exc:
                raise SerializationError(
                    f"cannot unpickle a signed value ({type(exc).__name__}: {exc})",
                    hint="Install the modules the value's classes come from on this side, "
                    "in the same versions as on the sender.",
                ) from exc
        return decode_ext(code, data)

    def list_hook(self, items: list[Any]) -> object:
        if items:
            head = items[0]
            if head is _TUPLE:
                self.pending -= 1
                del items[0]
                return tuple(items)
            if type(head) is _Tag:
                self.pending -= 1
                return build_tagged(head.code, items)
        return items


@final
class _Tag:
    """Decoded form of a tag ext: consumed by ``list_hook`` as the head of an array."""

    __slots__ = ("code",)

    def __init__(self, code: int) -> None:
        self.code = code


_TAGS: dict[int, _Tag] = {code: _Tag(code) for code in range(TAG_MIN, 128)}
_TUPLE = _TAGS[TAG_TUPLE]


def unpack(verified: VerifiedBody, *, allow_pickle: bool, what: str) -> Any:
    """Decode a verified msgpack body; ``what`` names it in messages.

    Raises:
        SerializationError: the body is malformed, holds an unknown type, a class
            that cannot be imported, or a pickle that is not allowed.
    """
    if type(verified) is not VerifiedBody:
        raise SerializationError(
            "refusing to decode bytes that did not come out of a verified envelope",
            hint="Decode payloads with decode_value / decode_call / decode_result.",
        )
    decoder = _Decoder(allow_pickle)
    try:
        value = msgpack.unpackb(
            verified.body,
            ext_hook=decoder.ext_hook,
            list_hook=decoder.list_hook,
            strict_map_key=False,
            raw=False,
            use_list=True,
        )
    except AioflowError:
        raise
    except Exception as exc:
        raise SerializationError(
            f"cannot decode {what}: {type(exc).__name__}: {exc}",
            hint="The payload is malformed; check that sender and receiver run the same "
            "aioflow version.",
        ) from exc
    if decoder.pending:
        raise SerializationError(
            f"cannot decode {what}: malformed payload (a type tag outside its array)",
            hint="Run the same aioflow version on the sender and the receiver.",
        )
    return value


# --- where encoding failed -------------------------------------------------------------------
# Only runs after a failure, so it favours clarity over speed. The walks are iterative
# (no recursion limit), visit each container once, and descend only into what the
# codec itself descends into: exact dicts, lists, tuples, sets and frozensets, enum
# values and dataclass fields.


def _format_key(key: object) -> str:
    text = repr(key)  # shortened: a path stays readable
    return text if len(text) <= 40 else text[:37] + "..."


def _children(value: object, path: str) -> Iterator[tuple[object, str]] | None:
    kind = type(value)
    if kind is dict:
        assert isinstance(value, dict)
        return _dict_children(value, path)
    if kind is list or kind is tuple:
        assert isinstance(value, list | tuple)
        return ((item, f"{path}[{index}]") for index, item in enumerate(value))
    if kind is set or kind is frozenset:
        assert isinstance(value, set | frozenset)
        return ((item, f"{path}{{set item}}") for item in value)
    if isinstance(value, enum.Enum):
        return iter(((value.value, f"{path}.value"),))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return (
            (getattr(value, field.name, None), f"{path}.{field.name}")
            for field in dataclasses.fields(value)
        )
    return None


def _dict_children(value: dict[Any, Any], path: str) -> Iterator[tuple[object, str]]:
    for key, item in value.items():
        yield key, f"{path}{{key {_format_key(key)}}}"
        yield item, f"{path}[{_format_key(key)}]"


def _find_path(value: object, match: Callable[[object], bool], root: str) -> str | None:
    """The path (``result['rows'][3].owner``) of the first part for which ``match`` holds."""
    stack: list[tuple[object, str]] = [(value, root)]
    seen: set[int] = set()
    while stack:
        current, path = stack.pop()
        try:
            if match(current):
                return path
        except Exception:  # a predicate must never turn into a second failure
            pass
        children = _children(current, path)
        if children is None or id(current) in seen:
            continue
        seen.add(id(current))
        stack.extend(reversed(list(children)))
    return None


def _find_cycle_or_depth(value: object, root: str, max_depth: int) -> str | None:
    """The path where ``value`` refers back to itself or nests past ``max_depth``."""
    stack: list[tuple[object, str, int, bool]] = [(value, root, 0, False)]
    ancestors: set[int] = set()
    done: set[int] = set()
    while stack:
        current, path, depth, leaving = stack.pop()
        if leaving:
            ancestors.discard(id(current))
            done.add(id(current))
            continue
        children = _children(current, path)
        if children is None or id(current) in done:
            continue
        if id(current) in ancestors:
            return f"{path} (a reference cycle)"
        if depth >= max_depth:
            return f"{path} (nested more than {max_depth} levels deep)"
        ancestors.add(id(current))
        stack.append((current, path, depth, True))
        stack.extend((child, p, depth + 1, False) for child, p in reversed(list(children)))
    return None
