"""Bad input never crashes the decoders, and nothing unsigned is ever unpickled.

Seeded mutation loops (fast, reproducible) feed 330,000 inputs; hypothesis adds
5,000 more. Every input must end in an ``AioflowError`` subclass (or, for
correctly signed bodies, possibly in a value) - never another exception, never
a hang (pytest-timeout), and the unpickler entry point is never reached.
"""

from __future__ import annotations

import contextlib
import pickle
import random
import sys
import types
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import serialization_helpers as h
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aioflow.errors import AioflowError, PayloadSignatureError
from aioflow.serialization import (
    HEADER_SIZE,
    PayloadKind,
    TaskCall,
    TaskRef,
    TaskResult,
    _pickling,
    decode_call,
    decode_result,
    decode_value,
    encode_call,
    encode_result,
    encode_value,
    importing,
    sign_payload,
    verify_payload,
)

ENVELOPE_CASES = 100_000
BODY_CASES = 200_000
RANDOM_CASES = 30_000

KR = h.keyring()


class Opaque:
    """Not a supported data type: travels as a pickle."""

    def __init__(self, v: int) -> None:
        self.v = v


def _caught(function: Callable[[], Any]) -> BaseException:
    try:
        function()
    except BaseException as exc:
        return exc
    raise AssertionError("did not raise")


def _call() -> TaskCall:
    return TaskCall(
        run_id="run-1",
        task_name="t",
        ref=TaskRef.from_callable(lambda x: x + 1),  # pickled code
        args={"a": [1, (2, 3)], "o": Opaque(1), "c": h.Color.RED, "p": h.Point(1, 2)},
        options={"timeout": 1.0},
        trace={"traceparent": "00-1-2-01"},
        deadline=1.0,
    )


def _base_payloads() -> list[tuple[PayloadKind, bytes]]:
    call = _call()
    error = _caught(lambda: (_ for _ in ()).throw(h.CustomError("boom", 3)))
    return [
        (PayloadKind.VALUE, encode_value(h.sample_value(), KR, allow_pickle=True)),
        (PayloadKind.VALUE, encode_value([Opaque(2), {"k": Opaque(3)}], KR, allow_pickle=True)),
        (PayloadKind.CALL, encode_call(call, KR)),
        (PayloadKind.CALL, encode_call(TaskCall(run_id="r", task_name="t",
                                                ref=TaskRef.from_callable(h.module_task)), KR)),
        (PayloadKind.RESULT, encode_result(TaskResult.succeeded(call, Opaque(4)), KR)),
        (PayloadKind.RESULT, encode_result(TaskResult.failed(call, error), KR)),
        (PayloadKind.CHANNEL, encode_value({"n": 1}, KR, allow_pickle=True,
                                           kind=PayloadKind.CHANNEL)),
    ]  # fmt: skip


_INTERESTING = [
    b"\x00", b"\xff", b"\x7f", b"\x80", b"\xc1", b"\xc0",
    b"\xdd\xff\xff\xff\xff", b"\xdf\xff\xff\xff\xff", b"\xc6\xff\xff\xff\xff",
    b"\xd4\x10\x00", b"\xc7\x00\x19", b"\xc7\x00\x10", b"\xd5\x02ab", b"\xd4\x01\xff",
    b"\x91" * 2000, b"\x92\xc7\x00\x10", b"\xd8\x03" + b"\x00" * 16, b"\xa5hello",
]  # fmt: skip


def mutate(rng: random.Random, data: bytes) -> bytes:
    """One to three random structural mutations of ``data``."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 3)):
        size = len(out)
        op = rng.randrange(9)
        pos = rng.randrange(size + 1)
        if op == 0 and size:  # flip bits
            out[min(pos, size - 1)] ^= 1 << rng.randrange(8)
        elif op == 1 and size:  # overwrite a byte
            out[min(pos, size - 1)] = rng.randrange(256)
        elif op == 2:  # insert random bytes
            out[pos:pos] = rng.randbytes(rng.randint(1, 8))
        elif op == 3:  # delete a range
            del out[pos : pos + rng.randint(1, 16)]
        elif op == 4:  # truncate
            del out[pos:]
        elif op == 5:  # append
            out += rng.randbytes(rng.randint(1, 32))
        elif op == 6 and size:  # duplicate a chunk
            start = rng.randrange(size)
            out[pos:pos] = out[start : start + rng.randint(1, 32)]
        elif op == 7:  # splice in an interesting token
            token = rng.choice(_INTERESTING)
            out[pos : pos + rng.randint(0, len(token))] = token
        else:  # swap two bytes
            if size >= 2:
                i, j = rng.randrange(size), rng.randrange(size)
                out[i], out[j] = out[j], out[i]
    return bytes(out)


@pytest.fixture
def unpickle_spy(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Record every call of the unpickler entry point (and of pickle.loads), and fail it."""
    calls: list[int] = []

    def refuse(data: Any) -> Any:
        calls.append(len(data))
        raise AssertionError("unpickling reached")

    monkeypatch.setattr(_pickling, "unpickle_verified", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    return calls


@pytest.fixture
def no_new_imports(monkeypatch: pytest.MonkeyPatch) -> None:
    """Mutated class paths must not import random modules: allow only loaded ones."""

    def import_module(name: str) -> Any:
        if name in sys.modules:
            return sys.modules[name]
        raise ImportError(f"fuzz: importing {name!r} is not allowed")

    monkeypatch.setattr(importing, "importlib", types.SimpleNamespace(import_module=import_module))


def _decode(kind: PayloadKind, data: bytes, *, allow: bool) -> None:
    if kind is PayloadKind.CALL:
        call = decode_call(data, KR, allow_pickle=allow, allow_pickled_code=allow)
        call.ref.resolve()
    elif kind is PayloadKind.RESULT:
        decode_result(data, KR, allow_pickle=allow).unwrap()
    else:
        decode_value(data, KR, allow_pickle=allow, kind=kind)


def test_mutated_envelopes_are_refused_before_anything_is_decoded(
    unpickle_spy: list[int],
) -> None:
    rng = random.Random(20240501)
    bases = _base_payloads()
    count = 0
    while count < ENVELOPE_CASES:
        kind, original = rng.choice(bases)
        data = mutate(rng, original)
        if data == original:
            continue
        count += 1
        try:
            _decode(kind, data, allow=True)  # the most permissive receiver
        except PayloadSignatureError:
            continue
        except AioflowError as exc:
            # Only a size/kind problem may come before the signature check.
            raise AssertionError(f"not a signature error: {exc!r} for {data[:64]!r}") from exc
        raise AssertionError(f"mutated payload was accepted: {data[:64]!r}")
    assert count == ENVELOPE_CASES
    assert unpickle_spy == []


def test_mutated_signed_bodies_decode_or_fail_cleanly(
    unpickle_spy: list[int], no_new_imports: None
) -> None:
    rng = random.Random(7)
    bodies = [(kind, verify_payload(data, KR, kind=kind)) for kind, data in _base_payloads()]
    count = decoded = 0
    while count < BODY_CASES:
        kind, body = rng.choice(bodies)
        mutated = mutate(rng, body)
        data = sign_payload(mutated, KR, kind=kind)  # signed: only the body is hostile
        count += 1
        try:
            _decode(kind, data, allow=False)
            decoded += 1
        except AioflowError:
            pass
        except Exception as exc:  # pragma: no cover - the failure this test exists for
            raise AssertionError(f"{type(exc).__name__}: {exc} for body {mutated[:80]!r}") from exc
    assert count == BODY_CASES
    assert unpickle_spy == []  # pickled values and code were refused, never unpickled
    assert 0 < decoded < BODY_CASES  # the corpus exercised both outcomes


def test_random_bytes_are_refused(unpickle_spy: list[int]) -> None:
    rng = random.Random(99)
    kinds = list(PayloadKind)
    prefix = encode_value(None, KR, allow_pickle=False)[:16]  # a valid header start
    for index in range(RANDOM_CASES):
        size = rng.choice((0, 1, 16, 47, 48, 49, 64, 300, 4096))
        data = rng.randbytes(size)
        if index % 3 == 0:
            data = prefix + data
        kind = rng.choice(kinds)
        try:
            if kind in (PayloadKind.BLOB, PayloadKind.CHECKPOINT):
                verify_payload(data, KR, kind=kind)
            else:
                _decode(kind, data, allow=True)
        except PayloadSignatureError:
            continue
        raise AssertionError(f"random bytes not refused: {data[:64]!r}")
    assert unpickle_spy == []


@contextlib.contextmanager
def guarded() -> Iterator[list[int]]:
    """The fixtures' patches, for hypothesis tests (which cannot use function fixtures)."""
    calls: list[int] = []

    def refuse(data: Any) -> Any:
        calls.append(len(data))
        raise AssertionError("unpickling reached")

    def import_module(name: str) -> Any:
        if name in sys.modules:
            return sys.modules[name]
        raise ImportError(f"fuzz: importing {name!r} is not allowed")

    saved = _pickling.unpickle_verified, vars(importing)["importlib"]
    _pickling.unpickle_verified = refuse
    setattr(importing, "importlib", types.SimpleNamespace(import_module=import_module))  # noqa: B010
    try:
        yield calls
    finally:
        _pickling.unpickle_verified = saved[0]
        setattr(importing, "importlib", saved[1])  # noqa: B010


_KINDS = st.sampled_from([PayloadKind.VALUE, PayloadKind.CALL, PayloadKind.RESULT])


@settings(max_examples=3000, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.binary(max_size=400), _KINDS)
def test_hypothesis_binary_is_refused(data: bytes, kind: PayloadKind) -> None:
    with guarded() as calls, pytest.raises(PayloadSignatureError):
        _decode(kind, data, allow=True)
    assert calls == []


@settings(max_examples=2000, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.binary(max_size=200), _KINDS)
def test_hypothesis_signed_bodies_decode_or_fail_cleanly(body: bytes, kind: PayloadKind) -> None:
    with guarded() as calls, contextlib.suppress(AioflowError):
        _decode(kind, sign_payload(body, KR, kind=kind), allow=False)
    assert calls == []


def test_fuzz_volume_is_at_least_100k() -> None:
    assert ENVELOPE_CASES + BODY_CASES + RANDOM_CASES >= 100_000
    assert HEADER_SIZE == 48
