"""The only places where aioflow pickles and unpickles.

:func:`unpickle_verified` is called by the decoders only on bytes that came out
of a verified envelope; the tests patch it to prove nothing else reaches it.
"""

from __future__ import annotations

import pickle
from typing import Any

import cloudpickle  # type: ignore[import-untyped]

__all__ = ["pickle_value", "unpickle_verified"]


def pickle_value(obj: object) -> bytes:
    """Pickle ``obj`` with cloudpickle (code by value when it is not importable)."""
    data: bytes = cloudpickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    return data


def unpickle_verified(data: bytes | memoryview) -> Any:
    """Unpickle bytes taken from inside a verified, signed envelope."""
    return pickle.loads(data)
