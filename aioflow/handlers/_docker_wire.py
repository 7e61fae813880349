"""The stream between a :class:`~aioflow.handlers.docker.DockerHandler` and its container.

Both directions carry frames over the container's attached stdin and stdout::

    kind (1 byte) | length n (4 bytes, big-endian) | body (n bytes)

========  ==========  ===============================================================
kind      direction   body
========  ==========  ===============================================================
KEY       in          the per-execution signing key (32 random bytes), sent before
                      each call; the container never sees the cluster's key
CALL      in          a ``TaskCall`` signed with that key
REQUEST   out         ``[id, op, args]`` (a signed ``CONTROL`` value): ``ctx.channel``
                      and ``ctx.result`` / ``ctx.inputs`` served by the handler
ANSWER    in          ``[id, ok, value | [type, message, hint]]`` (signed ``CONTROL``)
SPANS     out         the spans the call finished in the container, when it was traced
                      (a non-empty ``TaskCall.trace``): a list of plain records
                      (:mod:`._docker_spans`), msgpack, signed ``CONTROL``; before
                      the RESULT, at most one per call
RESULT    out         the ``TaskResult`` signed with the per-execution key
========  ==========  ===============================================================

A frame larger than the keyring's payload limit is refused before it is read.
The task's own stdout is redirected to stderr in the container: stdout carries
frames only.

Docker reads the container's stdout and stderr apart, so a line written on stderr
before the RESULT may reach the handler after it. So the container ends each call's
stderr with a marker line, :func:`stderr_end` of the call's key, before it sends the
RESULT; the handler reads stderr up to the marker (bounded) before it lets the call
go, and every line of the call is forwarded with the call's ids. Marker lines are
never forwarded.
"""

from __future__ import annotations

import enum
import hashlib
import struct
from typing import Any

from ..errors import PayloadTooLargeError, SerializationError
from ..serialization import Keyring, PayloadKind, decode_value, encode_value

__all__ = [
    "HEADER",
    "KEY_BYTES",
    "OPS",
    "FrameKind",
    "FrameReader",
    "decode_answer",
    "decode_request",
    "encode_answer",
    "encode_request",
    "frame",
    "is_stderr_end",
    "stderr_end",
]

HEADER = struct.Struct(">BI")
KEY_BYTES = 32
# Operations a task in a container may ask of its handler (nothing else is served).
OPS = frozenset(
    {"get", "set", "delete", "incr", "append", "keys", "result", "result_names", "inputs"}
)


class FrameKind(enum.IntEnum):
    KEY = 1
    CALL = 2
    REQUEST = 3
    ANSWER = 4
    RESULT = 5
    SPANS = 6


_STDERR_END = "\x1eaioflow-call-end "


def stderr_end(key: bytes) -> str:
    """The stderr line that ends the output of the call signed with ``key`` (it names
    the call by a digest of its key, never the key)."""
    return _STDERR_END + hashlib.sha256(key).hexdigest()[:16]


def is_stderr_end(line: str) -> bool:
    """Whether ``line`` is a marker of :func:`stderr_end` (of any call)."""
    return line.startswith(_STDERR_END)


def frame(kind: FrameKind, body: bytes) -> bytes:
    """One frame: header and body."""
    return HEADER.pack(int(kind), len(body)) + body


class FrameReader:
    """Cuts a byte stream into frames; refuses one larger than ``limit`` bytes (a SPANS
    frame that large is skipped instead, and its size added to :attr:`dropped`)."""

    __slots__ = ("_buffer", "_limit", "_skip", "dropped")

    def __init__(self, limit: int) -> None:
        self._buffer = bytearray()
        self._limit = limit
        self._skip = 0  # bytes of a skipped frame still to come
        self.dropped: list[int] = []  # sizes of the SPANS frames skipped

    def feed(self, data: bytes) -> list[tuple[FrameKind, bytes]]:
        """Add ``data``; return the frames now complete, in order.

        Raises:
            PayloadTooLargeError: a frame announces more than the limit.
            SerializationError: an unknown frame kind (the stream is corrupt).
        """
        buffer = self._buffer
        buffer += data
        frames: list[tuple[FrameKind, bytes]] = []
        while True:
            if self._skip:
                skipped = min(self._skip, len(buffer))
                del buffer[:skipped]
                self._skip -= skipped
                if self._skip:
                    break
            if len(buffer) < HEADER.size:
                break
            raw_kind, length = HEADER.unpack_from(buffer)
            if length > self._limit + HEADER.size and raw_kind == FrameKind.SPANS:
                # Telemetry never fails a call: too many spans are dropped (and logged).
                del buffer[: HEADER.size]
                self._skip = length
                self.dropped.append(length)
                continue
            if length > self._limit + HEADER.size:
                raise PayloadTooLargeError(
                    f"a container stream frame announces {length} bytes, more than the "
                    f"limit of {self._limit} bytes; it was refused",
                    hint="Return a reference (a path, a key) instead of the data, or raise "
                    "AIOFLOW_MAX_PAYLOAD_BYTES.",
                )
            if len(buffer) < HEADER.size + length:
                break
            try:
                kind = FrameKind(raw_kind)
            except ValueError:
                raise SerializationError(
                    f"corrupt container stream: unknown frame kind {raw_kind}",
                    hint="Run the same aioflow version in the image as outside it.",
                ) from None
            frames.append((kind, bytes(buffer[HEADER.size : HEADER.size + length])))
            del buffer[: HEADER.size + length]
        return frames


def encode_request(keyring: Keyring, request_id: int, op: str, args: list[Any]) -> bytes:
    """A REQUEST frame body (values of the task: pickles allowed, signed)."""
    return encode_value(
        [request_id, op, args],
        keyring,
        allow_pickle=True,
        kind=PayloadKind.CONTROL,
        root=f"ctx request {op!r}",
    )


def decode_request(
    body: bytes, keyring: Keyring, *, allow_pickle: bool
) -> tuple[int, str, list[Any]]:
    """Verify and decode a REQUEST body.

    Raises:
        PayloadSignatureError: not signed with this execution's key.
        SerializationError: malformed, or an operation that is not served.
    """
    value = decode_value(body, keyring, allow_pickle=allow_pickle, kind=PayloadKind.CONTROL)
    if (
        type(value) is not list
        or len(value) != 3
        or type(value[0]) is not int
        or value[1] not in OPS
        or type(value[2]) is not list
    ):
        raise SerializationError("malformed request from a container")
    return value[0], value[1], value[2]


def encode_answer(keyring: Keyring, request_id: int, ok: bool, value: Any) -> bytes:
    """An ANSWER frame body: the value (``ok``) or ``[type, message, hint]``."""
    return encode_value(
        [request_id, ok, value],
        keyring,
        allow_pickle=True,
        kind=PayloadKind.CONTROL,
        root="ctx answer",
    )


def decode_answer(body: bytes, keyring: Keyring) -> tuple[int, bool, Any]:
    """Verify and decode an ANSWER body (in the container: it trusts its handler)."""
    value = decode_value(body, keyring, allow_pickle=True, kind=PayloadKind.CONTROL)
    if type(value) is not list or len(value) != 3 or type(value[0]) is not int:
        raise SerializationError("malformed answer from the handler")
    return value[0], bool(value[1]), value[2]
