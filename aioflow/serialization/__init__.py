"""Everything that leaves the process goes through here.

* :func:`encode_value` / :func:`decode_value`: msgpack data codec in a signed envelope.
* :class:`TaskCall` with :func:`encode_call` / :func:`decode_call`: the work message.
* :class:`TaskResult` with :func:`encode_result` / :func:`decode_result`: its outcome.
* :class:`TaskRef`: a task's code, by import path or as signed pickled code.
* :class:`Keyring`: signing keys from ``AIOFLOW_SECRET_KEY`` / ``AIOFLOW_SECRET_KEYS_OLD``.
* :func:`sign_payload` / :func:`verify_payload`: the envelope alone, for raw bytes.

This package is a leaf: it depends on :mod:`aioflow.errors`, msgpack, cloudpickle
and the standard library only. See ``docs/security.md``.
"""

from __future__ import annotations

from .calls import TaskCall as TaskCall
from .calls import decode_call as decode_call
from .calls import encode_call as encode_call
from .envelope import ENVELOPE_VERSION as ENVELOPE_VERSION
from .envelope import HEADER_SIZE as HEADER_SIZE
from .envelope import PayloadKind as PayloadKind
from .envelope import sign_payload as sign_payload
from .envelope import verify_payload as verify_payload
from .failures import ErrorInfo as ErrorInfo
from .keys import DEVELOPMENT_KEY as DEVELOPMENT_KEY
from .keys import MIN_KEY_BYTES as MIN_KEY_BYTES
from .keys import Keyring as Keyring
from .limits import DEFAULT_MAX_PAYLOAD_BYTES as DEFAULT_MAX_PAYLOAD_BYTES
from .refs import TaskRef as TaskRef
from .results import ResultStatus as ResultStatus
from .results import TaskResult as TaskResult
from .results import decode_result as decode_result
from .results import encode_result as encode_result
from .schema import SCHEMA_VERSION as SCHEMA_VERSION
from .values import decode_value as decode_value
from .values import encode_value as encode_value

__all__ = [
    "DEFAULT_MAX_PAYLOAD_BYTES",
    "DEVELOPMENT_KEY",
    "ENVELOPE_VERSION",
    "HEADER_SIZE",
    "MIN_KEY_BYTES",
    "SCHEMA_VERSION",
    "ErrorInfo",
    "Keyring",
    "PayloadKind",
    "ResultStatus",
    "TaskCall",
    "TaskRef",
    "TaskResult",
    "decode_call",
    "decode_result",
    "decode_value",
    "encode_call",
    "encode_result",
    "encode_value",
    "sign_payload",
    "verify_payload",
]
