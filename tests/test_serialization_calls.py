"""TaskCall and TaskResult: the thin, versioned DTOs that cross process boundaries (R4)."""

from __future__ import annotations

import socket
import threading
import time
import traceback
from typing import Any

import msgpack  # type: ignore[import-untyped]
import pytest
import serialization_helpers as h
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from serialization_helpers import Color, CustomError, Point, same

from aioflow.errors import (
    AioflowError,
    PayloadSignatureError,
    RemoteTaskError,
    SerializationError,
    TaskCancelledError,
    TaskTimeoutError,
)
from aioflow.serialization import (
    SCHEMA_VERSION,
    ErrorInfo,
    Keyring,
    PayloadKind,
    TaskCall,
    TaskRef,
    TaskResult,
    decode_call,
    decode_result,
    encode_call,
    encode_result,
)

KR = h.keyring()


def make_call(**overrides: Any) -> TaskCall:
    fields: dict[str, Any] = {
        "run_id": "run-42",
        "task_name": "double",
        "ref": TaskRef.from_callable(h.module_task),
        "args": {"x": 1, "rows": [(1, "a")], "color": Color.GREEN, "at": Point(1, 2)},
        "attempt": 2,
        "iteration": 3,
        "options": {"timeout": 10.0, "retries": 3, "queue": "fast", "priority": 5},
        "trace": {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
        "workflow": "etl",
    }
    fields.update(overrides)
    return TaskCall(**fields)


def rewrite(data: bytes, kind: PayloadKind, change: Any) -> bytes:
    """Decode the body of a signed payload as plain msgpack, change it, sign it again."""
    meta = msgpack.unpackb(h.body_of(data, kind), strict_map_key=False)
    assert isinstance(meta, list)
    change(meta)
    return h.sign(msgpack.packb(meta, use_bin_type=True), kind)


def reraise(result: TaskResult) -> None:
    """Raise what a receiver raises for ``result`` (as the serializing backend does)."""
    if result.error is not None:
        raise result.error.to_exception(
            run_id=result.run_id, task_name=result.task_name, attempt=result.attempt
        )


# --- TaskCall ---------------------------------------------------------------------------


def test_call_round_trips_every_field() -> None:
    call = make_call()
    data = encode_call(call, KR)
    decoded = decode_call(data, KR)
    assert decoded == call and decoded.iteration == 3
    assert decoded.args["rows"] == [(1, "a")] and decoded.args["color"] is Color.GREEN
    assert decoded.ref.resolve() is h.module_task
    meta = msgpack.unpackb(h.body_of(data, PayloadKind.CALL), strict_map_key=False)
    assert tuple(meta[:2]) == SCHEMA_VERSION == (1, 1)


def test_the_former_deadline_slot_stays_on_the_wire_as_nil() -> None:
    data = encode_call(make_call(), KR)
    meta = msgpack.unpackb(h.body_of(data, PayloadKind.CALL), strict_map_key=False)
    assert len(meta) == 14 and meta[8] is None  # the positional layout of schema 1.1
    assert (meta[7], meta[12], meta[13]) == (2, pytest.approx(time.time(), abs=60), 3)

    def with_deadline(m: list[Any]) -> None:
        m[8] = time.time() + 30  # what a sender of the same schema used to put there

    decoded = decode_call(rewrite(data, PayloadKind.CALL, with_deadline), KR)
    assert decoded == decode_call(data, KR)


def test_a_schema_1_0_call_defaults_its_iteration() -> None:
    data = rewrite(encode_call(make_call(), KR), PayloadKind.CALL, lambda m: m.__delitem__(13))
    assert decode_call(data, KR).iteration == 1


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.text(max_size=8), h.values, max_size=5))
def test_property_arguments_round_trip(args: dict[str, Any]) -> None:
    call = make_call(args=args)
    decoded = decode_call(encode_call(call, KR, allow_pickle=False), KR, allow_pickle=False)
    assert same(decoded.args, args)


def test_call_defaults() -> None:
    call = TaskCall(run_id="r", task_name="t", ref=TaskRef("m:f"))
    assert call.attempt == 1 and call.iteration == 1 and call.args == {}
    assert len(call.call_id) == 32 and call.call_id != TaskCall(**_ids(call)).call_id
    assert abs(call.created_at - time.time()) < 5


def _ids(call: TaskCall) -> dict[str, Any]:
    return {"run_id": call.run_id, "task_name": call.task_name, "ref": call.ref}


def test_call_is_frozen() -> None:
    call = make_call()
    with pytest.raises(AttributeError):
        call.attempt = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("run_id", ""),
        ("task_name", 3),
        ("attempt", 0),
        ("attempt", True),
        ("iteration", 0),
        ("created_at", "now"),
        ("args", {1: "positional?"}),
        ("options", []),
        ("trace", {"traceparent": 1}),
        ("ref", "module:function"),
        ("workflow", 1),
    ],
)
def test_invalid_fields_are_refused(field: str, value: Any) -> None:
    with pytest.raises(SerializationError, match=f"TaskCall.{field}"):
        make_call(**{field: value})


def test_lock_argument_is_refused_with_its_path() -> None:
    call = make_call(args={"x": 1, "lock": threading.Lock()})
    with pytest.raises(SerializationError) as info:
        encode_call(call, KR, allow_pickle=False)
    assert "args['lock']" in str(info.value) and "_thread.lock" in str(info.value)
    # Allowing pickle does not help a lock, and the error is still ours, with the path.
    with pytest.raises(SerializationError) as info:
        encode_call(call, KR, allow_pickle=True)
    assert "args['lock']" in str(info.value)
    assert "cannot be pickled" in str(info.value) and "Locks" in info.value.hint


@pytest.mark.parametrize("allow_pickle", [False, True])
def test_socket_argument_is_refused_with_its_path(allow_pickle: bool) -> None:
    with socket.socket() as sock, pytest.raises(SerializationError) as info:
        encode_call(make_call(args={"conn": [sock]}), KR, allow_pickle=allow_pickle)
    assert "args['conn'][0]" in str(info.value)


def test_context_like_object_with_a_connection_is_refused() -> None:
    class Context:  # what the old engine pickled: a context holding a client and a lock
        def __init__(self) -> None:
            self.client = socket.socket()
            self.lock = threading.Lock()

    ctx = Context()
    try:
        with pytest.raises(SerializationError, match=r"args\['ctx'\]"):
            encode_call(make_call(args={"ctx": ctx}), KR, allow_pickle=True)
    finally:
        ctx.client.close()


def test_options_must_be_plain_values() -> None:
    with pytest.raises(SerializationError, match=r"options\['on_retry'\]"):
        encode_call(make_call(options={"on_retry": lambda: None}), KR)


def test_pickled_argument_travels_when_allowed() -> None:
    class Opaque:
        value = 7

    decoded = decode_call(encode_call(make_call(args={"o": Opaque()}), KR), KR)
    assert decoded.args["o"].value == 7


def test_undecodable_arguments_keep_the_call_identity() -> None:
    data = encode_call(make_call(args={"o": threading.Event}), KR, allow_pickle=True)
    with pytest.raises(SerializationError) as info:
        decode_call(data, KR, allow_pickle=False)
    error = info.value
    assert (error.run_id, error.task_name, error.attempt) == ("run-42", "double", 2)
    assert "pickled values are not allowed" in str(error)


def test_unknown_fields_from_a_newer_minor_version_are_ignored() -> None:
    def newer(meta: list[Any]) -> None:
        meta[1] = 7
        meta += ["acme", {"cpu": 2}]

    decoded = decode_call(rewrite(encode_call(make_call(), KR), PayloadKind.CALL, newer), KR)
    assert decoded == make_call(call_id=decoded.call_id, created_at=decoded.created_at)


@pytest.mark.parametrize("major", [2, 0])
def test_incompatible_major_version_is_refused_with_upgrade_hint(major: int) -> None:
    def other(meta: list[Any]) -> None:
        meta[0:2] = [major, 0]
        del meta[5:]  # a different layout: the version is checked first

    data = rewrite(encode_call(make_call(), KR), PayloadKind.CALL, other)
    with pytest.raises(SerializationError, match=f"schema {major}.0") as info:
        decode_call(data, KR)
    assert "Upgrade" in info.value.hint


@pytest.mark.parametrize(
    "change",
    [
        lambda m: m.__delitem__(slice(12, None)),  # a field short of schema 1.0
        lambda m: m.__setitem__(3, None),  # run id
        lambda m: m.__setitem__(7, "2"),  # attempt
        lambda m: m.__setitem__(6, [1]),  # args
        lambda m: m.__setitem__(6, msgpack.packb([1, 2])),  # args not a dict
        lambda m: m.__setitem__(5, 42),  # ref
        lambda m: m.__setitem__(5, ["x", "not bytes"]),
        lambda m: m.__setitem__(10, {"a": 1}),  # trace
        lambda m: m.__setitem__(0, "1"),  # version
        lambda m: m.__setitem__(12, None),  # created_at
        lambda m: m.clear(),
    ],
)
def test_malformed_calls_are_serialization_errors(change: Any) -> None:
    data = rewrite(encode_call(make_call(), KR), PayloadKind.CALL, change)
    with pytest.raises(SerializationError):
        decode_call(data, KR)


def test_a_result_is_not_a_call() -> None:
    result = encode_result(TaskResult.succeeded(make_call(), 1), KR)
    with pytest.raises(SerializationError, match="expected a CALL"):
        decode_call(result, KR)


def test_tampered_call_is_refused() -> None:
    data = bytearray(encode_call(make_call(ref=TaskRef.from_callable(lambda: 1)), KR))
    data[60] ^= 0x10
    with pytest.raises(PayloadSignatureError):
        decode_call(bytes(data), KR)


# --- TaskResult -------------------------------------------------------------------------


def test_success_round_trips_with_its_metadata() -> None:
    call = make_call()
    result = TaskResult.succeeded(
        call, {"total": 12, "at": (1, 2)}, worker_id="w-1", started_at=1.0, finished_at=2.5
    )
    decoded = decode_result(encode_result(result, KR), KR)
    assert decoded == result and decoded.status == "succeeded" and decoded.error is None
    assert decoded.value == {"total": 12, "at": (1, 2)} and type(decoded.value["at"]) is tuple
    assert (decoded.call_id, decoded.attempt) == (call.call_id, 2)


def test_result_value_is_pickled_by_default_and_refused_when_not_allowed() -> None:
    class Frame:
        rows = 3

    result = TaskResult.succeeded(make_call(), {"frame": [Frame()]})
    assert decode_result(encode_result(result, KR), KR).value["frame"][0].rows == 3
    with pytest.raises(SerializationError, match=r"result\['frame'\]\[0\]"):
        encode_result(result, KR, allow_pickle=False)
    data = encode_result(result, KR)
    with pytest.raises(SerializationError) as info:
        decode_result(data, KR, allow_pickle=False)
    assert info.value.task_name == "double"


def failing() -> None:
    try:
        raise KeyError("inner")
    except KeyError as exc:
        raise CustomError("boom", 7) from exc


def caught(function: Any) -> BaseException:
    try:
        function()
    except BaseException as exc:
        return exc
    raise AssertionError("did not raise")


def test_failure_reraises_the_real_type_with_the_remote_traceback() -> None:
    exc = caught(failing)
    decoded = decode_result(encode_result(TaskResult.failed(make_call(), exc), KR), KR)
    assert decoded.status == "failed" and decoded.value is None
    with pytest.raises(CustomError) as info:
        reraise(decoded)
    assert info.value.detail == 7
    remote = info.value.__cause__
    assert isinstance(remote, RemoteTaskError)
    assert remote.remote_type == "serialization_helpers.CustomError"
    assert "in failing" in remote.remote_traceback and "KeyError: 'inner'" in str(remote)
    assert "Remote traceback" in "".join(traceback.format_exception(info.value))


def test_aioflow_error_keeps_code_and_hint() -> None:
    exc = TaskTimeoutError("double", 1.5, run_id="run-42", attempt=2)
    decoded = decode_result(encode_result(TaskResult.failed(make_call(), exc), KR), KR)
    assert decoded.error is not None
    assert (decoded.error.code, decoded.error.hint) == (exc.code, exc.hint)
    with pytest.raises(TaskTimeoutError) as info:
        reraise(decoded)
    assert info.value.timeout == 1.5 and info.value.task_name == "double"


def test_exception_that_cannot_travel_becomes_a_remote_task_error() -> None:
    class Holder(Exception):
        def __init__(self) -> None:
            super().__init__("holds a lock")
            self.lock = threading.Lock()

    exc = caught(lambda: (_ for _ in ()).throw(Holder()))
    decoded = decode_result(encode_result(TaskResult.failed(make_call(), exc), KR), KR)
    with pytest.raises(RemoteTaskError) as info:
        reraise(decoded)
    assert info.value.remote_message == "holds a lock" and "Holder" in info.value.remote_type
    assert (info.value.run_id, info.value.task_name, info.value.attempt) == ("run-42", "double", 2)


@pytest.mark.parametrize("allow_pickle", [True, False])
def test_exception_that_cannot_be_rebuilt_becomes_a_remote_task_error(allow_pickle: bool) -> None:
    exc = h.AwkwardError("a", "b") if allow_pickle else CustomError("x")
    data = encode_result(TaskResult.failed(make_call(), exc), KR)
    decoded = decode_result(data, KR, allow_pickle=allow_pickle)
    with pytest.raises(RemoteTaskError, match="a/b" if allow_pickle else "x"):
        reraise(decoded)


def test_failure_with_a_huge_exception_is_still_reported_as_text() -> None:
    exc = CustomError("too big", 0)
    exc.detail = "x" * 5000  # type: ignore[assignment]  # pickled, it exceeds the limit
    result = TaskResult.failed(make_call(), exc)
    small = Keyring(h.KEY, max_payload_bytes=4000)
    data = encode_result(result, small)
    assert len(data) <= 4000
    with pytest.raises(RemoteTaskError, match="too big"):
        reraise(decode_result(data, small))


def test_cancelled_result_raises_task_cancelled() -> None:
    call = make_call()
    exc = TaskCancelledError("task 'double' was cancelled: run cancelled by user")
    result = TaskResult(
        call_id=call.call_id,
        run_id=call.run_id,
        task_name=call.task_name,
        attempt=call.attempt,
        status="cancelled",
        error=ErrorInfo.from_exception(exc),
    )
    decoded = decode_result(encode_result(result, KR), KR)
    assert decoded.status == "cancelled"
    with pytest.raises(TaskCancelledError, match="run cancelled by user"):
        reraise(decoded)


def test_inconsistent_results_are_refused() -> None:
    info = ErrorInfo(type_name="ValueError", message="x")
    with pytest.raises(SerializationError):
        TaskResult(call_id="c", run_id="r", task_name="t", status="succeeded", error=info)
    with pytest.raises(SerializationError):
        TaskResult(call_id="c", run_id="r", task_name="t", status="failed")
    with pytest.raises(SerializationError):
        TaskResult(call_id="c", run_id="r", task_name="t", status="lost")  # type: ignore[arg-type]


def test_newer_result_schema_is_refused() -> None:
    data = encode_result(TaskResult.succeeded(make_call(), 1), KR)
    data = rewrite(data, PayloadKind.RESULT, lambda meta: meta.__setitem__(slice(0, 2), [3, 1]))
    with pytest.raises(SerializationError, match=r"schema 3\.1"):
        decode_result(data, KR)


@pytest.mark.parametrize(
    "change",
    [
        lambda m: m.__setitem__(6, "lost"),  # status
        lambda m: m.__setitem__(6, "failed"),  # failed without an error
        lambda m: m.__setitem__(7, "not bytes"),  # value
        lambda m: m.__setitem__(8, ["ValueError", "x"]),  # short error
        lambda m: m.__setitem__(8, [1, "x", "", None, None, None]),  # error type
        lambda m: m.__setitem__(5, 0),  # attempt
        lambda m: m.__setitem__(10, "yesterday"),  # started_at
        lambda m: m.__delitem__(slice(4, None)),
    ],
)
def test_malformed_results_are_serialization_errors(change: Any) -> None:
    data = encode_result(TaskResult.succeeded(make_call(), 1), KR)
    with pytest.raises(SerializationError):
        decode_result(rewrite(data, PayloadKind.RESULT, change), KR)


def test_errors_are_aioflow_errors() -> None:
    assert issubclass(RemoteTaskError, AioflowError) and RemoteTaskError.code
