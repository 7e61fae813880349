"""Everything that leaves the process goes through here.

* :func:`encode_value` / :func:`decode_value`: msgpack data codec in a signed envelope.
* :class:`TaskCall` with :func:`encode_call` / :func:`decode_call`: the work message.
* :class:`TaskResult` (and its :class:`ErrorInfo`) with :func:`encode_result` /
  :func:`decode_result`: its outcome.
* :class:`TaskRef`: a task's code, by import path or as signed pickled code.
* :func:`pack_document` / :func:`seal_batch` / :func:`open_batch`: many small
  documents under one signature (the run journal's records).
* :class:`Keyring`: signing keys from ``AIOFLOW_SECRET_KEY`` / ``AIOFLOW_SECRET_KEYS_OLD``,
  else this user's local key (``$AIOFLOW_HOME/local.key``).

Modules, in dependency order: ``refs`` (import paths, task references, the only
pickling and unpickling functions), ``types`` (wire forms of the non-native
types), ``codec`` (msgpack pack/unpack), ``envelope`` (signing, size limit,
data payloads), ``keyfile`` and ``keys`` (the keyring), ``calls`` and ``results``
(the messages). This package is a leaf: it depends on :mod:`aioflow.errors`,
msgpack, cloudpickle and the standard library only. See ``docs/security.md``.
"""

from __future__ import annotations

from .batches import decode_nested as decode_nested
from .batches import open_batch as open_batch
from .batches import pack_document as pack_document
from .batches import seal_batch as seal_batch
from .calls import SCHEMA_VERSION as SCHEMA_VERSION
from .calls import TaskCall as TaskCall
from .calls import decode_call as decode_call
from .calls import encode_call as encode_call
from .envelope import PayloadKind as PayloadKind
from .envelope import decode_value as decode_value
from .envelope import encode_value as encode_value
from .keys import Keyring as Keyring
from .refs import TaskRef as TaskRef
from .results import ErrorInfo as ErrorInfo
from .results import TaskResult as TaskResult
from .results import decode_result as decode_result
from .results import encode_result as encode_result

__all__ = [
    "SCHEMA_VERSION",
    "ErrorInfo",
    "Keyring",
    "PayloadKind",
    "TaskCall",
    "TaskRef",
    "TaskResult",
    "decode_call",
    "decode_nested",
    "decode_result",
    "decode_value",
    "encode_call",
    "encode_result",
    "encode_value",
    "open_batch",
    "pack_document",
    "seal_batch",
]
