"""Signed batches: many small documents under one signature.

A journal commits its records in batches; signing each record would cost an HMAC
per record (about a microsecond, more than encoding a small record). Instead each
record's document is packed alone (:func:`pack_document`), and one seal per batch
(:func:`seal_batch`) signs a digest of all of them, bound to a ``context`` (which
run, which record numbers). :func:`open_batch` checks the seal against the
documents *before* decoding any of them, so, as everywhere, nothing is unpickled
before its signature is checked.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from typing import Any

from ..errors import PayloadSignatureError, SerializationError
from .codec import VerifiedBody, pack, unpack
from .envelope import PayloadKind, open_envelope, seal
from .keys import Keyring

__all__ = ["decode_nested", "open_batch", "pack_document", "seal_batch"]


def pack_document(value: object, *, root: str) -> bytes:
    """``value`` as one unsigned document of a batch (signed pickles allowed inside)."""
    return pack(value, allow_pickle=True, root=root)


def _digest(context: str, documents: Sequence[bytes]) -> bytes:
    h = hashlib.sha256(context.encode())
    for document in documents:
        h.update(len(document).to_bytes(8, "big"))
        h.update(document)
    return h.digest()


def seal_batch(documents: Sequence[bytes], keyring: Keyring, *, context: str) -> bytes:
    """The signed seal of ``documents`` (in order) in ``context``."""
    body = pack([context, _digest(context, documents)], allow_pickle=False, root="seal")
    return seal(body, keyring, PayloadKind.CHECKPOINT)


def open_batch(
    documents: Sequence[bytes], sealed: bytes, keyring: Keyring, *, context: str
) -> list[Any]:
    """Check ``sealed`` against ``documents`` in ``context``, then decode them.

    Raises:
        PayloadSignatureError: the seal is not signed with an accepted key, or does
            not match the documents (one changed, added, removed or reordered), or
            belongs to another context. Nothing was decoded.
        SerializationError: a document cannot be decoded.
    """
    meta = unpack(open_envelope(sealed, keyring, PayloadKind.CHECKPOINT), allow_pickle=False,
                  what="batch seal")  # fmt: skip
    if type(meta) is not list or len(meta) != 2 or type(meta[1]) is not bytes:
        raise SerializationError("malformed batch seal")
    if meta[0] != context or not hmac.compare_digest(meta[1], _digest(context, documents)):
        raise PayloadSignatureError(
            "a batch of records does not match its signed seal: a record was altered, "
            "added, removed or moved; it was refused before decoding",
            hint="The data was tampered with or corrupted; it cannot be used.",
        )
    return [
        unpack(VerifiedBody(memoryview(document)), allow_pickle=True, what="batch document")
        for document in documents
    ]


def decode_nested(document: bytes) -> Any:
    """Decode a document nested, as bytes, inside a document :func:`open_batch` returned.

    Only for such bytes: they were covered by the batch's seal (checked by
    :func:`open_batch`), as the nested documents of a verified call or result are.
    Decoding them apart lets a reader skip, or survive, what it cannot rebuild (an
    exception or value whose class is not importable here).

    Raises:
        SerializationError: it cannot be decoded here.
    """
    if type(document) is not bytes:
        raise SerializationError("a nested document must be bytes")
    return unpack(VerifiedBody(memoryview(document)), allow_pickle=True, what="nested document")
