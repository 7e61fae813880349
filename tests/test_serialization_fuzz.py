"""Bad input never crashes the decoders, and nothing unsigned is ever unpickled.

Seeded mutation loops (reproducible) feed 330,000 inputs in the ``slow`` run
(``pytest -m slow``: :func:`test_fuzz_volume_is_at_least_100k` counts what the
decoders were actually handed); hypothesis adds 5,000 more there. The default run
feeds a sample of each loop. Every input must end in an ``AioflowError`` subclass
(or, for correctly signed bodies, possibly in a value) - never another exception,
never a hang (pytest-timeout), and the unpickler entry point is never reached.
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
    PayloadKind,
    TaskCall,
    TaskRef,
    TaskResult,
    decode_call,
    decode_result,
    decode_value,
    encode_call,
    encode_result,
    encode_value,
    refs,
)

ENVELOPE_CASES = 100_000
BODY_CASES = 200_000
RANDOM_CASES = 30_000
#: Inputs per loop in the default run (the slow run feeds the full volume above).
SAMPLE_CASES = 2_000
#: The volume the security docs promise.
VOLUME_FLOOR = 100_000

#: Inputs actually handed to a decoder or verifier so far, by any test of this module.
fed = [0]

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
        iteration=2,
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
        (PayloadKind.RESULT, encode_result(TaskResult.succeeded(
            call, None, worker_id="w", started_at=1.0, finished_at=2.0,
            requests={"iterate": True, "data": Opaque(5), "next": [["t", False]]}), KR)),
        (PayloadKind.CHANNEL, encode_value({"n": 1}, KR, allow_pickle=True,
                                           kind=PayloadKind.CHANNEL)),
        (PayloadKind.CHECKPOINT, encode_value({"run": (1, h.Level.LOW)}, KR, allow_pickle=True,
                                              kind=PayloadKind.CHECKPOINT)),
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

    monkeypatch.setattr(refs, "unpickle_verified", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    return calls


@pytest.fixture
def no_new_imports(monkeypatch: pytest.MonkeyPatch) -> None:
    """Mutated class paths must not import random modules: allow only loaded ones."""

    def import_module(name: str) -> Any:
        if name in sys.modules:
            return sys.modules[name]
        raise ImportError(f"fuzz: importing {name!r} is not allowed")

    monkeypatch.setattr(refs, "importlib", types.SimpleNamespace(import_module=import_module))


def _decode(kind: PayloadKind, data: bytes, *, allow: bool) -> None:
    fed[0] += 1
    if kind is PayloadKind.CALL:
        call = decode_call(data, KR, allow_pickle=allow, allow_pickled_code=allow)
        call.ref.resolve()
    elif kind is PayloadKind.RESULT:
        result = decode_result(data, KR, allow_pickle=allow)
        if result.error is not None:  # what the receiver raises
            raise result.error.to_exception(run_id=result.run_id)
    else:
        decode_value(data, KR, allow_pickle=allow, kind=kind)


def feed_mutated_envelopes(cases: int) -> None:
    """Mutate signed payloads ``cases`` times; every mutation must fail its signature."""
    rng = random.Random(20240501)
    bases = _base_payloads()
    count = 0
    while count < cases:
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


def feed_mutated_bodies(cases: int) -> int:
    """Sign ``cases`` mutated bodies; each decodes or fails cleanly. Returns how many decoded."""
    rng = random.Random(7)
    bodies = [(kind, h.body_of(data, kind)) for kind, data in _base_payloads()]
    count = decoded = 0
    while count < cases:
        kind, body = rng.choice(bodies)
        mutated = mutate(rng, body)
        data = h.sign(mutated, kind)  # signed: only the body is hostile
        count += 1
        try:
            _decode(kind, data, allow=False)
            decoded += 1
        except AioflowError:
            pass
        except Exception as exc:  # pragma: no cover - the failure this test exists for
            raise AssertionError(f"{type(exc).__name__}: {exc} for body {mutated[:80]!r}") from exc
    return decoded


def feed_random_bytes(cases: int) -> None:
    """``cases`` random byte strings (a third behind a valid header start): all refused."""
    rng = random.Random(99)
    kinds = list(PayloadKind)
    prefix = encode_value(None, KR, allow_pickle=False)[:16]  # a valid header start
    for index in range(cases):
        size = rng.choice((0, 1, 16, 47, 48, 49, 64, 300, 4096))
        data = rng.randbytes(size)
        if index % 3 == 0:
            data = prefix + data
        kind = rng.choice(kinds)
        try:
            _decode(kind, data, allow=True)
        except PayloadSignatureError:
            continue
        raise AssertionError(f"random bytes not refused: {data[:64]!r}")


def test_mutated_envelopes_are_refused_before_anything_is_decoded(
    unpickle_spy: list[int],
) -> None:
    before = fed[0]
    feed_mutated_envelopes(SAMPLE_CASES)
    assert fed[0] - before == SAMPLE_CASES
    assert unpickle_spy == []


def test_mutated_signed_bodies_decode_or_fail_cleanly(
    unpickle_spy: list[int], no_new_imports: None
) -> None:
    decoded = feed_mutated_bodies(SAMPLE_CASES)
    assert unpickle_spy == []  # pickled values and code were refused, never unpickled
    assert 0 < decoded < SAMPLE_CASES  # the corpus exercised both outcomes


def test_random_bytes_are_refused(unpickle_spy: list[int]) -> None:
    feed_random_bytes(SAMPLE_CASES)
    assert unpickle_spy == []


@pytest.mark.slow
def test_fuzz_volume_is_at_least_100k(unpickle_spy: list[int], no_new_imports: None) -> None:
    """The full volume, counted where the inputs reach the decoders (not where looped)."""
    before = fed[0]
    feed_mutated_envelopes(ENVELOPE_CASES)
    decoded = feed_mutated_bodies(BODY_CASES)
    feed_random_bytes(RANDOM_CASES)
    total = fed[0] - before
    assert total == ENVELOPE_CASES + BODY_CASES + RANDOM_CASES
    assert total >= VOLUME_FLOOR, f"only {total} inputs reached the decoders"
    assert 0 < decoded < BODY_CASES
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

    saved = refs.unpickle_verified, vars(refs)["importlib"]
    refs.unpickle_verified = refuse
    setattr(refs, "importlib", types.SimpleNamespace(import_module=import_module))  # noqa: B010
    try:
        yield calls
    finally:
        refs.unpickle_verified = saved[0]
        setattr(refs, "importlib", saved[1])  # noqa: B010


_KINDS = st.sampled_from([PayloadKind.VALUE, PayloadKind.CALL, PayloadKind.RESULT])


@pytest.mark.slow
@settings(max_examples=3000, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.binary(max_size=400), _KINDS)
def test_hypothesis_binary_is_refused(data: bytes, kind: PayloadKind) -> None:
    with guarded() as calls, pytest.raises(PayloadSignatureError):
        _decode(kind, data, allow=True)
    assert calls == []


@pytest.mark.slow
@settings(max_examples=2000, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.binary(max_size=200), _KINDS)
def test_hypothesis_signed_bodies_decode_or_fail_cleanly(body: bytes, kind: PayloadKind) -> None:
    with guarded() as calls, contextlib.suppress(AioflowError):
        _decode(kind, h.sign(body, kind), allow=False)
    assert calls == []
