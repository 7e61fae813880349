"""The signed envelope: every payload that leaves the process is wrapped in it.

Layout (all integers big-endian; 48-byte header, then the body)::

    offset  size  field
    0       2     magic  b"AF"
    2       1     envelope version (1)
    3       1     payload kind (PayloadKind: 0 blob, 1 value, 2 call, 3 result ...)
    4       8     key id   = HMAC-SHA256(key, "aioflow/key-id/v1")[:8]
    12      4     body length n (unsigned 32-bit)
    16      32    tag      = HMAC-SHA256(key, bytes[0:16] || body)
    48      n     body (msgpack for values, calls and results)

The tag covers the header (so version, kind, key id and length cannot be
changed) and the whole body. Verification checks size, header, length, key id
and tag, in that order, with :func:`hmac.compare_digest`, before a single byte
of the body is decoded; decoders only accept the private :class:`VerifiedBody`
that :func:`open_envelope` returns.
"""

from __future__ import annotations

import enum
import hmac
import struct
from typing import final

from ..errors import PayloadSignatureError, SerializationError
from .keys import Keyring
from .limits import check_size, validate_max_payload_bytes

__all__ = [
    "ENVELOPE_VERSION",
    "HEADER_SIZE",
    "PayloadKind",
    "VerifiedBody",
    "open_envelope",
    "seal",
    "sign_payload",
    "verify_payload",
]

ENVELOPE_VERSION = 1
_MAGIC = b"AF"
_PREFIX = struct.Struct(">2sBB8sI")  # magic, version, kind, key id, body length
_TAG_SIZE = 32
_PREFIX_SIZE = _PREFIX.size  # 16
HEADER_SIZE = _PREFIX_SIZE + _TAG_SIZE  # 48

_ROTATION_HINT = (
    "Give every process the same AIOFLOW_SECRET_KEY; while rotating keys, keep the old "
    "key in AIOFLOW_SECRET_KEYS_OLD on the receivers until no payload signed with it "
    "remains. Never accept payloads from writers you do not trust."
)


class PayloadKind(enum.IntEnum):
    """What a payload holds; signed, so one kind can never be read as another."""

    BLOB = 0
    VALUE = 1
    CALL = 2
    RESULT = 3
    CHANNEL = 4
    CHECKPOINT = 5


@final
class VerifiedBody:
    """The body of an envelope whose signature was checked. Made only by :func:`open_envelope`."""

    __slots__ = ("body", "kind")

    def __init__(self, body: memoryview, kind: PayloadKind) -> None:
        self.body = body
        self.kind = kind


def _limit(keyring: Keyring, max_payload_bytes: int | None) -> int:
    if max_payload_bytes is None:
        return keyring.max_payload_bytes
    return validate_max_payload_bytes(max_payload_bytes)


def seal(body: bytes, keyring: Keyring, kind: PayloadKind, limit: int) -> bytes:
    """Sign ``body`` into an envelope (internal fast path: ``limit`` already validated)."""
    size = len(body)
    if HEADER_SIZE + size > limit:
        check_size(HEADER_SIZE + size, limit, what=f"signed {kind.name.lower()} payload")
    key = keyring.signing_key
    prefix = _PREFIX.pack(_MAGIC, ENVELOPE_VERSION, int(kind), key.key_id, size)
    return b"".join((prefix, key.mac(prefix, body), body))


def open_envelope(
    data: bytes | bytearray | memoryview, keyring: Keyring, kind: PayloadKind, limit: int
) -> VerifiedBody:
    """Check an envelope and return its verified body (internal; see :func:`verify_payload`)."""
    if type(data) is not bytes:
        if not isinstance(data, bytes | bytearray | memoryview):
            raise SerializationError(
                f"a signed payload must be bytes, got {type(data).__name__}",
                hint="Read payloads as bytes (e.g. a Redis client with decode_responses=False).",
            )
        data = memoryview(data).cast("B")  # a flat byte view of any buffer
    view = memoryview(data)
    size = len(view)
    if size > limit:
        check_size(size, limit, what="received payload")
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
    return VerifiedBody(body, kind)


def sign_payload(
    body: bytes,
    keyring: Keyring,
    *,
    kind: PayloadKind = PayloadKind.BLOB,
    max_payload_bytes: int | None = None,
) -> bytes:
    """Wrap raw bytes in a signed envelope.

    Args:
        body: the bytes to protect.
        keyring: signs with its current key.
        kind: what the bytes are; :func:`verify_payload` must be given the same kind.
        max_payload_bytes: size limit of the whole envelope (default: the keyring's).

    Returns:
        The envelope: 48-byte header followed by ``body``.

    Raises:
        PayloadTooLargeError: the envelope would exceed the limit.
        ConfigurationError: ``max_payload_bytes`` is invalid.
    """
    if not isinstance(body, bytes):
        body = bytes(body)
    return seal(body, keyring, PayloadKind(kind), _limit(keyring, max_payload_bytes))


def verify_payload(
    data: bytes | bytearray | memoryview,
    keyring: Keyring,
    *,
    kind: PayloadKind = PayloadKind.BLOB,
    max_payload_bytes: int | None = None,
) -> bytes:
    """Check a signed envelope and return its body.

    Args:
        data: the envelope, as produced by :func:`sign_payload`.
        keyring: accepts its current and previous keys.
        kind: the kind the envelope must hold.
        max_payload_bytes: size limit (default: the keyring's).

    Returns:
        The body bytes.

    Raises:
        PayloadTooLargeError: ``data`` is larger than the limit.
        PayloadSignatureError: truncated, unsigned, tampered, unknown key, unknown
            envelope version.
        SerializationError: ``data`` is not bytes, or holds another kind of payload.
    """
    verified = open_envelope(data, keyring, PayloadKind(kind), _limit(keyring, max_payload_bytes))
    return bytes(verified.body)


def resolve_limit(keyring: Keyring, max_payload_bytes: int | None) -> int:
    """Return the effective size limit (internal helper for the codecs)."""
    return _limit(keyring, max_payload_bytes)
