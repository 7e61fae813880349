"""The signed envelope, the payload size limit, and the signed data payloads.

Every payload that leaves the process is wrapped in the envelope. Layout (all
integers big-endian; 48-byte header, then the body)::

    offset  size  field
    0       2     magic  b"AF"
    2       1     envelope version (1)
    3       1     payload kind (PayloadKind: 1 value, 2 call, 3 result ...)
    4       8     key id   = HMAC-SHA256(key, "aioflow/key-id/v1")[:8]
    12      4     body length n (unsigned 32-bit)
    16      32    tag      = HMAC-SHA256(key, bytes[0:16] || body)
    48      n     body (msgpack)

The tag covers the header (so version, kind, key id and length cannot be
changed) and the whole body. Verification checks size, header, length, key id
and tag, in that order, with :func:`hmac.compare_digest`, before a single byte
of the body is decoded; the codec only reads the :class:`~.codec.VerifiedBody`
that :func:`open_envelope` returns.

Size limit: a payload larger than the keyring's limit (``max_payload_bytes=``,
else ``AIOFLOW_MAX_PAYLOAD_BYTES``, default :data:`DEFAULT_MAX_PAYLOAD_BYTES`,
64 MiB) is refused, never truncated: on encode (before it is sent) and on decode
(before its signature is checked).
"""

from __future__ import annotations

import enum
import hmac
import os
import struct
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..errors import (
    ConfigurationError,
    PayloadSignatureError,
    PayloadTooLargeError,
    SerializationError,
)
from .codec import VerifiedBody, pack, unpack

if TYPE_CHECKING:
    from .keys import Keyring

__all__ = [
    "DEFAULT_MAX_PAYLOAD_BYTES",
    "ENVELOPE_VERSION",
    "HEADER_SIZE",
    "MAX_PAYLOAD_BYTES_ENV",
    "PayloadKind",
    "decode_value",
    "encode_value",
    "max_payload_bytes_from_env",
    "open_envelope",
    "seal",
    "validate_max_payload_bytes",
]

ENVELOPE_VERSION = 1
_MAGIC = b"AF"
_PREFIX = struct.Struct(">2sBB8sI")  # magic, version, kind, key id, body length
_PREFIX_SIZE = _PREFIX.size  # 16
HEADER_SIZE = _PREFIX_SIZE + 32  # and the tag: 48

#: Default size limit of one signed payload (64 MiB).
DEFAULT_MAX_PAYLOAD_BYTES = 64 * 1024 * 1024
#: Environment variable that overrides the default limit (a positive integer, in bytes).
MAX_PAYLOAD_BYTES_ENV = "AIOFLOW_MAX_PAYLOAD_BYTES"
#: The envelope stores the body length in 32 bits: no limit may exceed this.
_ABSOLUTE_MAX_PAYLOAD_BYTES = 2**32 - 1

_ROTATION_HINT = (
    "Give every process the same AIOFLOW_SECRET_KEY; while rotating keys, keep the old "
    "key in AIOFLOW_SECRET_KEYS_OLD on the receivers until no payload signed with it "
    "remains. Never accept payloads from writers you do not trust."
)


class PayloadKind(enum.IntEnum):
    """What a payload holds; signed, so one kind can never be read as another."""

    VALUE = 1
    CALL = 2
    RESULT = 3
    CHANNEL = 4
    CHECKPOINT = 5
    #: A request of a task in a container to its handler, or its answer.
    CONTROL = 6


_DATA_KINDS = frozenset(
    {PayloadKind.VALUE, PayloadKind.CHANNEL, PayloadKind.CHECKPOINT, PayloadKind.CONTROL}
)

# --- the size limit -------------------------------------------------------------------------


def validate_max_payload_bytes(value: object, *, source: str = "max_payload_bytes") -> int:
    """Check a size limit (an ``int``, or a decimal string from the environment).

    Raises:
        ConfigurationError: not an integer between 1 and 2**32 - 1 (``source`` names it).
    """
    limit: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        limit = value
    elif isinstance(value, str):
        try:
            limit = int(value.strip().replace("_", ""))
        except ValueError:
            limit = None
    if limit is None or not 1 <= limit <= _ABSOLUTE_MAX_PAYLOAD_BYTES:
        raise ConfigurationError(
            f"{source} must be an integer between 1 and {_ABSOLUTE_MAX_PAYLOAD_BYTES} "
            f"(bytes), got {value!r}",
            hint=f"Set {MAX_PAYLOAD_BYTES_ENV} to a size in bytes, e.g. 67108864 for 64 MiB.",
        )
    return limit


def max_payload_bytes_from_env(environ: Mapping[str, str] | None = None) -> int:
    """``AIOFLOW_MAX_PAYLOAD_BYTES`` when set and not empty, else the default.

    Raises:
        ConfigurationError: the variable is set to something that is not a valid limit.
    """
    env = os.environ if environ is None else environ
    raw = env.get(MAX_PAYLOAD_BYTES_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_PAYLOAD_BYTES
    return validate_max_payload_bytes(raw, source=MAX_PAYLOAD_BYTES_ENV)


def _too_large(size: int, limit: int, what: str) -> PayloadTooLargeError:
    return PayloadTooLargeError(
        f"{what} is {size} bytes, more than the limit of {limit} bytes; "
        "it was refused, not truncated",
        hint=(
            "Pass a reference (a path, a URL, an object-store key) instead of the data, "
            f"or raise the limit with max_payload_bytes= or {MAX_PAYLOAD_BYTES_ENV} "
            "(on every process: senders and receivers)."
        ),
    )


# --- sealing and opening --------------------------------------------------------------------


def seal(body: bytes, keyring: Keyring, kind: PayloadKind) -> bytes:
    """Sign ``body`` into an envelope of ``kind``.

    Raises:
        PayloadTooLargeError: the envelope would exceed the keyring's size limit.
    """
    size = len(body)
    limit = keyring.max_payload_bytes
    if HEADER_SIZE + size > limit:
        raise _too_large(HEADER_SIZE + size, limit, f"signed {kind.name.lower()} payload")
    key = keyring.signing_key
    prefix = _PREFIX.pack(_MAGIC, ENVELOPE_VERSION, int(kind), key.key_id, size)
    return b"".join((prefix, key.mac(prefix, body), body))


def open_envelope(
    data: bytes | bytearray | memoryview, keyring: Keyring, kind: PayloadKind
) -> VerifiedBody:
    """Check an envelope of ``kind`` and return its verified body.

    Raises:
        PayloadTooLargeError: ``data`` exceeds the keyring's size limit (checked first).
        PayloadSignatureError: truncated, unsigned, tampered, unknown key, unknown
            envelope version.
        SerializationError: ``data`` is not bytes, or holds another kind of payload.
    """
    if type(data) is not bytes:
        if not isinstance(data, bytes | bytearray | memoryview):
            raise SerializationError(
                f"a signed payload must be bytes, got {type(data).__name__}",
                hint="Read payloads as bytes (e.g. a Redis client with decode_responses=False).",
            )
        data = memoryview(data).cast("B")  # a flat byte view of any buffer
    view = memoryview(data)
    size = len(view)
    limit = keyring.max_payload_bytes
    if size > limit:
        raise _too_large(size, limit, "received payload")
    if size < HEADER_SIZE:
        raise PayloadSignatureError(
            f"payload of {size} bytes is shorter than the {HEADER_SIZE}-byte envelope "
            "header: truncated or unsigned; it was refused",
            hint=_ROTATION_HINT,
        )
    magic, version, raw_kind, key_id, length = _PREFIX.unpack_from(view)
    if magic != _MAGIC:
        raise PayloadSignatureError(
            "payload is not a signed aioflow envelope (bad magic bytes): unsigned data is refused",
            hint=_ROTATION_HINT,
        )
    if version != ENVELOPE_VERSION:
        raise PayloadSignatureError(
            f"payload uses envelope version {version}; this aioflow reads version "
            f"{ENVELOPE_VERSION} only",
            hint="Run the same aioflow version on the senders and the receivers (upgrade).",
        )
    if length != size - HEADER_SIZE:
        state = "truncated" if length > size - HEADER_SIZE else "followed by extra bytes"
        raise PayloadSignatureError(
            f"payload is {state}: the header announces {length} body bytes, "
            f"{size - HEADER_SIZE} are present",
            hint=_ROTATION_HINT,
        )
    key = keyring.verification_key(key_id)
    if key is None:
        raise PayloadSignatureError(
            f"payload is signed with unknown key id {key_id.hex()}; accepted ids: "
            f"{', '.join(keyring.key_ids)}",
            hint=_ROTATION_HINT,
        )
    body = view[HEADER_SIZE:]
    expected = key.mac(view[:_PREFIX_SIZE], body)
    if not hmac.compare_digest(expected, view[_PREFIX_SIZE:HEADER_SIZE]):
        raise PayloadSignatureError(
            f"payload signature does not match (key id {key_id.hex()}): the payload was "
            "tampered with or corrupted; it was refused before decoding",
            hint=_ROTATION_HINT,
        )
    if raw_kind != kind:
        try:
            got = PayloadKind(raw_kind).name
        except ValueError:
            got = f"kind {raw_kind}"
        raise SerializationError(
            f"payload holds a {got}, expected a {kind.name}",
            hint="Decode each payload with the function matching what was sent "
            "(decode_call for encode_call, decode_result for encode_result ...).",
        )
    return VerifiedBody(body)


# --- signed data payloads: task arguments, results, channel values, checkpoints -------------


def _data_kind(kind: PayloadKind) -> PayloadKind:
    if kind is PayloadKind.VALUE:  # the common case, without an enum lookup
        return kind
    if kind not in _DATA_KINDS:
        raise SerializationError(
            f"encode_value/decode_value handle VALUE, CHANNEL, CHECKPOINT and CONTROL payloads, "
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
) -> bytes:
    """Encode a value with the msgpack codec and sign it.

    Args:
        value: any supported value (see :mod:`.types`), nested arbitrarily.
        keyring: signs with its current key.
        allow_pickle: carry values the codec does not support as signed cloudpickle
            (``True``), or refuse them (``False``). Required: the choice is explicit.
        kind: ``VALUE`` (default), ``CHANNEL`` or ``CHECKPOINT``; the decoder must ask
            for the same kind.
        root: the value's name in error paths (``result['rows'][3]``).

    Returns:
        The signed envelope.

    Raises:
        SerializationError: a part of the value cannot be encoded (the message names
            its type and path).
        PayloadTooLargeError: the payload exceeds the keyring's size limit.
    """
    kind = _data_kind(kind)
    return seal(pack(value, allow_pickle=allow_pickle, root=root), keyring, kind)


def decode_value(
    data: bytes | bytearray | memoryview,
    keyring: Keyring,
    *,
    allow_pickle: bool,
    kind: PayloadKind = PayloadKind.VALUE,
) -> Any:
    """Verify and decode a payload made by :func:`encode_value`.

    Args:
        data: the signed envelope.
        keyring: accepts its current and previous keys.
        allow_pickle: accept signed pickled values (``True``) or refuse them. Required.
        kind: the kind the payload must hold.

    Returns:
        The value, with its types.

    Raises:
        PayloadTooLargeError: ``data`` exceeds the keyring's size limit.
        PayloadSignatureError: truncated, unsigned, tampered or unknown key; nothing
            was decoded.
        SerializationError: malformed body, pickled value not allowed, class not importable.
    """
    kind = _data_kind(kind)
    verified = open_envelope(data, keyring, kind)
    return unpack(verified, allow_pickle=allow_pickle, what=f"{kind.name.lower()} payload")
