"""Signed data payloads: task arguments, results, channel values, checkpoints."""

from __future__ import annotations

from typing import Any

from ..errors import SerializationError
from .codec import pack, unpack
from .envelope import PayloadKind, open_envelope, resolve_limit, seal
from .keys import Keyring

__all__ = ["decode_value", "encode_value"]

_DATA_KINDS = frozenset({PayloadKind.VALUE, PayloadKind.CHANNEL, PayloadKind.CHECKPOINT})


def _data_kind(kind: PayloadKind) -> PayloadKind:
    if kind is PayloadKind.VALUE:  # the common case, without an enum lookup
        return kind
    if kind not in _DATA_KINDS:
        raise SerializationError(
            f"encode_value/decode_value handle VALUE, CHANNEL and CHECKPOINT payloads, "
            f"not {kind!r}",
            hint="Use encode_call/decode_call and encode_result/decode_result for calls "
            "and results.",
        )
    return PayloadKind(kind)


def encode_value(
    value: object,
    keyring: Keyring,
    *,
    allow_pickle: bool,
    kind: PayloadKind = PayloadKind.VALUE,
    root: str = "value",
    max_payload_bytes: int | None = None,
) -> bytes:
    """Encode a value with the msgpack codec and sign it.

    Args:
        value: any supported value (see the module docs), nested arbitrarily.
        keyring: signs with its current key.
        allow_pickle: carry values the codec does not support as signed cloudpickle
            (``True``), or refuse them (``False``). Required: the choice is explicit.
        kind: ``VALUE`` (default), ``CHANNEL`` or ``CHECKPOINT``; the decoder must ask
            for the same kind.
        root: the value's name in error paths (``result['rows'][3]``).
        max_payload_bytes: size limit (default: the keyring's).

    Returns:
        The signed envelope.

    Raises:
        SerializationError: a part of the value cannot be encoded (the message names
            its type and path).
        PayloadTooLargeError: the payload exceeds the size limit.
    """
    kind = _data_kind(kind)
    limit = resolve_limit(keyring, max_payload_bytes)
    return seal(pack(value, allow_pickle=allow_pickle, root=root), keyring, kind, limit)


def decode_value(
    data: bytes | bytearray | memoryview,
    keyring: Keyring,
    *,
    allow_pickle: bool,
    kind: PayloadKind = PayloadKind.VALUE,
    max_payload_bytes: int | None = None,
) -> Any:
    """Verify and decode a payload made by :func:`encode_value`.

    Args:
        data: the signed envelope.
        keyring: accepts its current and previous keys.
        allow_pickle: accept signed pickled values (``True``) or refuse them. Required.
        kind: the kind the payload must hold.
        max_payload_bytes: size limit (default: the keyring's).

    Returns:
        The value, with its types.

    Raises:
        PayloadTooLargeError: ``data`` exceeds the size limit.
        PayloadSignatureError: truncated, unsigned, tampered or unknown key; nothing
            was decoded.
        SerializationError: malformed body, pickled value not allowed, class not importable.
    """
    kind = _data_kind(kind)
    verified = open_envelope(data, keyring, kind, resolve_limit(keyring, max_payload_bytes))
    return unpack(verified, allow_pickle=allow_pickle, what=f"{kind.name.lower()} payload")
