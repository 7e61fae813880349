"""The signed envelope, the keyring, rotation and the size limit."""

from __future__ import annotations

import hashlib
import hmac
import pickle
import struct
from pathlib import Path
from typing import Any

import msgpack  # type: ignore[import-untyped]
import pytest
import serialization_helpers as h

from aioflow.errors import (
    ConfigurationError,
    PayloadSignatureError,
    PayloadTooLargeError,
    SerializationError,
)
from aioflow.serialization import (
    Keyring,
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
from aioflow.serialization.envelope import DEFAULT_MAX_PAYLOAD_BYTES, HEADER_SIZE

KR = h.keyring()


@pytest.fixture(autouse=True)
def no_unpickling(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test here may unpickle anything: every payload below is refused first."""

    def refuse(data: Any) -> Any:
        raise AssertionError("unpickled although it must not")

    monkeypatch.setattr(refs, "unpickle_verified", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)


def test_layout_is_magic_version_kind_key_id_length_tag_body() -> None:
    body = b"hello body"
    data = h.sign(body, PayloadKind.VALUE)
    assert len(data) == HEADER_SIZE + len(body) == 48 + len(body)
    magic, version, kind, key_id, length = struct.unpack(">2sBB8sI", data[:16])
    assert (magic, version, kind, length) == (b"AF", 1, PayloadKind.VALUE, len(body))
    key = h.KEY.encode()
    assert key_id == hmac.new(key, b"aioflow/key-id/v1", hashlib.sha256).digest()[:8]
    assert data[16:48] == hmac.new(key, data[:16] + body, hashlib.sha256).digest()
    assert data[48:] == body
    assert h.body_of(data, PayloadKind.VALUE) == body
    value = encode_value(["x", 1], KR, allow_pickle=False)
    assert h.body_of(value, PayloadKind.VALUE) == msgpack.packb(["x", 1])  # the body: msgpack


def test_key_id_does_not_reveal_the_key() -> None:
    assert KR.key_id not in h.KEY.encode().hex()
    assert h.KEY not in repr(KR) and h.KEY.encode().hex() not in repr(KR)
    assert Keyring(h.OTHER_KEY).key_id != KR.key_id


def test_every_single_byte_change_is_refused() -> None:
    data = encode_value({"x": [1, 2, 3]}, KR, allow_pickle=True)
    for index in range(len(data)):
        for flip in (0x01, 0x80, 0xFF):
            tampered = bytearray(data)
            tampered[index] ^= flip
            with pytest.raises(PayloadSignatureError):
                decode_value(bytes(tampered), KR, allow_pickle=True)


def test_every_truncation_and_extension_is_refused() -> None:
    data = encode_value("some value", KR, allow_pickle=True)
    for size in range(len(data)):
        with pytest.raises(PayloadSignatureError):
            decode_value(data[:size], KR, allow_pickle=True)
    with pytest.raises(PayloadSignatureError, match="extra bytes"):
        decode_value(data + b"\x00", KR, allow_pickle=True)


@pytest.mark.parametrize(
    "raw",
    [
        pickle.dumps({"a": 1}),  # a plain pickle: the old engine's format
        msgpack.packb({"a": 1}),
        b"",
        b"AF",
        b"\x00" * 100,
    ],
)
def test_unsigned_payloads_are_refused_before_decoding(raw: bytes) -> None:
    with pytest.raises(PayloadSignatureError):
        decode_value(raw, KR, allow_pickle=True)


def test_pickle_inside_a_tampered_payload_is_never_unpickled() -> None:
    class Opaque:
        pass

    data = bytearray(encode_value([Opaque()], KR, allow_pickle=True))
    data[-1] ^= 1
    with pytest.raises(PayloadSignatureError):
        decode_value(bytes(data), KR, allow_pickle=True)


def test_signature_is_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    original = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        calls.append(1)
        return original(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)  # envelope.py calls hmac.compare_digest
    assert decode_value(encode_value(1, KR, allow_pickle=False), KR, allow_pickle=False) == 1
    assert calls == [1]


def test_unknown_key_is_refused_and_named() -> None:
    data = encode_value(1, Keyring(h.OTHER_KEY), allow_pickle=False)
    with pytest.raises(PayloadSignatureError, match="unknown key id") as info:
        decode_value(data, KR, allow_pickle=False)
    assert "AIOFLOW_SECRET_KEYS_OLD" in info.value.hint


def test_newer_envelope_version_is_refused_with_upgrade_hint() -> None:
    data = bytearray(encode_value(1, KR, allow_pickle=False))
    data[2] = 2
    with pytest.raises(PayloadSignatureError, match="version 2") as info:
        decode_value(bytes(data), KR, allow_pickle=False)
    assert "upgrade" in info.value.hint


def test_kind_is_signed_so_a_payload_cannot_be_read_as_another_kind() -> None:
    data = encode_value("x", KR, allow_pickle=False)
    with pytest.raises(SerializationError, match="holds a VALUE, expected a CALL"):
        decode_call(data, KR)
    forged = bytearray(data)
    forged[3] = PayloadKind.CALL
    with pytest.raises(PayloadSignatureError):
        decode_call(bytes(forged), KR)
    # A correctly signed envelope of a kind that does not exist (0 was the raw "blob").
    key = h.KEY.encode()
    key_id = hmac.new(key, b"aioflow/key-id/v1", hashlib.sha256).digest()[:8]
    head = struct.pack(">2sBB8sI", b"AF", 1, 0, key_id, 1)
    blob = head + hmac.new(key, head + b"x", hashlib.sha256).digest() + b"x"
    with pytest.raises(SerializationError, match="holds a kind 0, expected a VALUE"):
        decode_value(blob, KR, allow_pickle=False)


def test_bytes_like_inputs_are_accepted_and_others_refused() -> None:
    data = encode_value([1], KR, allow_pickle=False)
    assert decode_value(bytearray(data), KR, allow_pickle=False) == [1]
    assert decode_value(memoryview(data), KR, allow_pickle=False) == [1]
    with pytest.raises(SerializationError, match="must be bytes"):
        decode_value(data.decode("latin-1"), KR, allow_pickle=False)  # type: ignore[arg-type]


# --- rotation ---------------------------------------------------------------------------


def test_key_rotation_step_by_step() -> None:
    old = Keyring(h.OLD_KEY)
    in_flight = encode_value("old message", old, allow_pickle=False)
    # Step 1: receivers accept both keys, still sign with the old one.
    step1 = Keyring(h.OLD_KEY, [h.KEY])
    # Step 2: everyone signs with the new key and still accepts the old one.
    step2 = Keyring(h.KEY, [h.OLD_KEY])
    assert decode_value(in_flight, step1, allow_pickle=False) == "old message"
    assert decode_value(in_flight, step2, allow_pickle=False) == "old message"
    fresh = encode_value("new message", step2, allow_pickle=False)
    assert decode_value(fresh, step1, allow_pickle=False) == "new message"
    # Step 3: the old key is dropped; its payloads are now refused.
    step3 = Keyring(h.KEY)
    assert decode_value(fresh, step3, allow_pickle=False) == "new message"
    with pytest.raises(PayloadSignatureError):
        decode_value(in_flight, step3, allow_pickle=False)
    assert step2.key_ids == (step3.key_id, old.key_id)


def test_from_env_reads_current_and_old_keys() -> None:
    env = {
        "AIOFLOW_SECRET_KEY": h.KEY,
        "AIOFLOW_SECRET_KEYS_OLD": f" {h.OLD_KEY} ,, {h.OTHER_KEY}",
        "AIOFLOW_MAX_PAYLOAD_BYTES": "1_000_000",
    }
    ring = Keyring.from_env(env)
    assert ring.key_id == KR.key_id and not ring.is_local
    assert ring.key_ids == (KR.key_id, Keyring(h.OLD_KEY).key_id, Keyring(h.OTHER_KEY).key_id)
    assert ring.max_payload_bytes == 1_000_000


def test_from_env_without_key_is_the_local_keyring(tmp_path: Path) -> None:
    ring = Keyring.from_env({"AIOFLOW_HOME": str(tmp_path)})
    assert ring.is_local
    assert ring.key_id == Keyring.local(tmp_path).key_id
    assert ring.max_payload_bytes == DEFAULT_MAX_PAYLOAD_BYTES


@pytest.mark.parametrize(
    "env",
    [
        {"AIOFLOW_SECRET_KEY": "short"},
        {"AIOFLOW_SECRET_KEYS_OLD": h.OLD_KEY},
        {"AIOFLOW_SECRET_KEY": h.KEY, "AIOFLOW_SECRET_KEYS_OLD": "short"},
        {"AIOFLOW_SECRET_KEY": h.KEY, "AIOFLOW_MAX_PAYLOAD_BYTES": "lots"},
        {"AIOFLOW_SECRET_KEY": h.KEY, "AIOFLOW_MAX_PAYLOAD_BYTES": "0"},
    ],
)
def test_bad_configuration_is_a_configuration_error_with_hint(env: dict[str, str]) -> None:
    with pytest.raises(ConfigurationError) as info:
        Keyring.from_env(env)
    assert info.value.hint


def test_previous_keys_must_be_a_list() -> None:
    with pytest.raises(ConfigurationError, match="list of keys"):
        Keyring(h.KEY, h.OLD_KEY)


def test_from_env_reads_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIOFLOW_SECRET_KEY", h.OTHER_KEY)
    monkeypatch.setenv("AIOFLOW_MAX_PAYLOAD_BYTES", "4096")
    ring = Keyring.from_env()
    assert ring.key_id == Keyring(h.OTHER_KEY).key_id and ring.max_payload_bytes == 4096
    assert Keyring(h.KEY).max_payload_bytes == 4096  # the constructor reads the limit too


def test_local_key_is_only_for_the_in_process_backend() -> None:
    local = Keyring.local()
    assert local.is_local
    local.require_production(backend="memory")
    local.require_production(backend="memory://")
    for backend in ("redis", "redis://:hunter2@cache:6379/0", "docker"):
        with pytest.raises(ConfigurationError) as info:
            local.require_production(backend=backend)
        assert "hunter2" not in str(info.value)  # URLs may hold passwords
        assert "AIOFLOW_SECRET_KEY" in info.value.hint
    KR.require_production(backend="redis://cache:6379/0")


def test_keyring_cannot_be_pickled_or_sent() -> None:
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(KR)
    with pytest.raises(SerializationError, match=r"value\['keys'\]"):
        encode_value({"keys": KR}, KR, allow_pickle=True)


# --- size limit -------------------------------------------------------------------------


def test_too_large_payload_is_refused_on_encode_never_truncated() -> None:
    small = Keyring(h.KEY, max_payload_bytes=1000)
    with pytest.raises(PayloadTooLargeError) as info:
        encode_value(b"x" * 2000, small, allow_pickle=False)
    assert "1000" in str(info.value) and "reference" in info.value.hint
    for encode in (
        lambda: encode_call(TaskCall(run_id="r", task_name="t", ref=TaskRef("m:f"),
                                     args={"x": b"x" * 2000}), small),
        lambda: encode_result(TaskResult(call_id="c", run_id="r", task_name="t",
                                         value=b"x" * 2000), small),
    ):  # fmt: skip
        with pytest.raises(PayloadTooLargeError):
            encode()


def test_too_large_payload_is_refused_on_decode_before_verification() -> None:
    data = encode_value(b"x" * 2000, KR, allow_pickle=False)
    with pytest.raises(PayloadTooLargeError):
        decode_value(data, Keyring(h.KEY, max_payload_bytes=1000), allow_pickle=False)
    small = Keyring(h.KEY, max_payload_bytes=4096)
    with pytest.raises(PayloadTooLargeError):  # garbage, but too large: size first
        decode_value(b"\x00" * 5000, small, allow_pickle=False)
    for decode in (decode_call, decode_result):
        with pytest.raises(PayloadTooLargeError):
            decode(b"\x00" * 5000, small)
    exact = Keyring(h.KEY, max_payload_bytes=len(data))
    assert len(decode_value(data, exact, allow_pickle=False)) == 2000


@pytest.mark.parametrize("limit", [0, -1, 2**32, True, 1.5, "lots"])
def test_invalid_size_limits_are_configuration_errors(limit: Any) -> None:
    with pytest.raises(ConfigurationError, match="max_payload_bytes") as info:
        Keyring(h.KEY, max_payload_bytes=limit)
    assert "AIOFLOW_MAX_PAYLOAD_BYTES" in info.value.hint


def test_size_limit_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIOFLOW_MAX_PAYLOAD_BYTES", "512")
    ring = Keyring(h.KEY)
    with pytest.raises(PayloadTooLargeError):
        encode_value("y" * 600, ring, allow_pickle=False)
    monkeypatch.setenv("AIOFLOW_MAX_PAYLOAD_BYTES", "-5")
    with pytest.raises(ConfigurationError):
        Keyring(h.KEY)
