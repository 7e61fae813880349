"""TaskResult: the outcome of a task attempt, sent back by a worker.

Wire form: a signed ``RESULT`` envelope whose body is an msgpack array
(positional; see :mod:`.schema` for versioning)::

    [major, minor, call_id, run_id, task_name, attempt,
     status,       # "succeeded" | "failed" | "cancelled"
     value,        # bytes: a nested msgpack document | nil
     error,        # nil | [type_name, message, traceback, code | nil, hint | nil,
                   #        pickled exception bytes | nil]
     worker_id (str | nil), started_at (float | nil), finished_at (float | nil),
     ...]          # fields appended by newer minor versions: ignored

An error travels as an :class:`~.failures.ErrorInfo`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, final

from ..errors import PayloadTooLargeError, SerializationError, TaskCancelledError
from .calls import TaskCall
from .codec import pack, unpack
from .envelope import PayloadKind, VerifiedBody, open_envelope, resolve_limit, seal
from .failures import ErrorInfo, error_from_wire, error_to_wire
from .keys import Keyring
from .schema import SCHEMA_VERSION, check_version, expect, expect_optional

__all__ = ["TaskResult", "ResultStatus", "decode_result", "encode_result"]

ResultStatus = Literal["succeeded", "failed", "cancelled"]
_STATUSES = ("succeeded", "failed", "cancelled")
_WHAT = "task result"
_MAJOR, _MINOR = SCHEMA_VERSION
_SIZE = 12  # fields of schema 1.0


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class TaskResult:
    """The outcome of one task attempt.

    Attributes:
        call_id, run_id, task_name, attempt: copied from the :class:`TaskCall`.
        status: ``"succeeded"``, ``"failed"`` or ``"cancelled"``.
        value: the task's return value (``None`` unless succeeded).
        error: what went wrong (``None`` when succeeded).
        worker_id: the worker that ran the attempt.
        started_at, finished_at: epoch seconds.
        schema_version: the sender's schema version (set when decoded).

    Raises:
        SerializationError: inconsistent fields (e.g. failed without an error).
    """

    call_id: str
    run_id: str
    task_name: str
    attempt: int = 1
    status: ResultStatus = "succeeded"
    value: Any = None
    error: ErrorInfo | None = None
    worker_id: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    schema_version: tuple[int, int] = SCHEMA_VERSION

    def __post_init__(self) -> None:
        if self.status not in _STATUSES:
            raise SerializationError(f"TaskResult.status must be one of {_STATUSES}")
        if (self.status == "succeeded") != (self.error is None):
            raise SerializationError(
                "TaskResult needs an error exactly when its status is not 'succeeded'",
                hint="Use TaskResult.succeeded / .failed / .cancelled.",
            )
        if type(self.attempt) is not int or self.attempt < 1:
            raise SerializationError("TaskResult.attempt must be an int >= 1")

    @classmethod
    def succeeded(cls, call: TaskCall, value: Any, **meta: Any) -> TaskResult:
        """Result of a successful attempt of ``call`` (``meta``: worker_id, started_at...)."""
        return cls(**_ids(call), status="succeeded", value=value, **meta)

    @classmethod
    def failed(cls, call: TaskCall, exc: BaseException, **meta: Any) -> TaskResult:
        """Result of an attempt of ``call`` that raised ``exc``."""
        return cls(**_ids(call), status="failed", error=ErrorInfo.from_exception(exc), **meta)

    @classmethod
    def cancelled(cls, call: TaskCall, reason: str | None = None, **meta: Any) -> TaskResult:
        """Result of an attempt of ``call`` that was cancelled."""
        exc = TaskCancelledError(
            f"task {call.task_name!r} was cancelled" + (f": {reason}" if reason else ""),
            run_id=call.run_id,
            task_name=call.task_name,
            attempt=call.attempt,
        )
        return cls(**_ids(call), status="cancelled", error=ErrorInfo.from_exception(exc), **meta)

    @property
    def ok(self) -> bool:
        """True when the attempt succeeded."""
        return self.status == "succeeded"

    def unwrap(self) -> Any:
        """Return the value, or raise the task's error.

        Raises:
            BaseException: the task's own exception (rebuilt), chained from a
                :class:`RemoteTaskError` holding the remote traceback; or that
                ``RemoteTaskError`` when the exception could not travel.
        """
        if self.error is None:
            return self.value
        raise self.error.to_exception(
            run_id=self.run_id, task_name=self.task_name, attempt=self.attempt
        )


def _ids(call: TaskCall) -> dict[str, Any]:
    return {
        "call_id": call.call_id,
        "run_id": call.run_id,
        "task_name": call.task_name,
        "attempt": call.attempt,
    }


def encode_result(
    result: TaskResult,
    keyring: Keyring,
    *,
    allow_pickle: bool = True,
    max_payload_bytes: int | None = None,
) -> bytes:
    """Encode and sign a :class:`TaskResult`.

    Args:
        result: the outcome.
        keyring: signs with its current key.
        allow_pickle: carry values the codec does not support, and the exception, as
            signed cloudpickle (default ``True`` for results).
        max_payload_bytes: size limit (default: the keyring's).

    Returns:
        The signed ``RESULT`` envelope.

    Raises:
        SerializationError: the value cannot be encoded (the path is named, from ``result``).
        PayloadTooLargeError: the payload exceeds the size limit. (A failure whose
            pickled exception is too large is sent again without it, as text only,
            so that a failure can always be reported.)
    """
    limit = resolve_limit(keyring, max_payload_bytes)
    value = None
    if result.status == "succeeded":
        value = pack(result.value, allow_pickle=allow_pickle, root="result")
    error = result.error
    try:
        return _seal_result(result, value, error, allow_pickle, keyring, limit)
    except PayloadTooLargeError:
        if error is None or not allow_pickle or error.exception is None:
            raise
        return _seal_result(result, value, error, False, keyring, limit)


def _seal_result(
    result: TaskResult,
    value: bytes | None,
    error: ErrorInfo | None,
    pickle_error: bool,
    keyring: Keyring,
    limit: int,
) -> bytes:
    meta = [
        _MAJOR,
        _MINOR,
        result.call_id,
        result.run_id,
        result.task_name,
        result.attempt,
        _STATUSES[_STATUSES.index(result.status)],  # a plain str, also for a StrEnum
        value,
        None if error is None else error_to_wire(error, pickle_error),
        result.worker_id,
        None if result.started_at is None else float(result.started_at),
        None if result.finished_at is None else float(result.finished_at),
    ]
    return seal(pack(meta, allow_pickle=False, root=_WHAT), keyring, PayloadKind.RESULT, limit)


def decode_result(
    data: bytes | bytearray | memoryview,
    keyring: Keyring,
    *,
    allow_pickle: bool = True,
    max_payload_bytes: int | None = None,
) -> TaskResult:
    """Verify and decode a payload made by :func:`encode_result`.

    Args:
        data: the signed envelope.
        keyring: accepts its current and previous keys.
        allow_pickle: accept signed pickled values and exceptions (default ``True``).
            When ``False``, a failure is rebuilt as :class:`RemoteTaskError`.
        max_payload_bytes: size limit (default: the keyring's).

    Returns:
        The result.

    Raises:
        PayloadTooLargeError: ``data`` exceeds the size limit.
        PayloadSignatureError: truncated, unsigned, tampered or unknown key.
        SerializationError: malformed result, newer incompatible schema, or a value
            that cannot be decoded here (``run_id``, ``task_name``, ``attempt`` set).
    """
    limit = resolve_limit(keyring, max_payload_bytes)
    verified = open_envelope(data, keyring, PayloadKind.RESULT, limit)
    meta = unpack(verified, allow_pickle=False, what=_WHAT)
    version = check_version(meta, _WHAT, _SIZE)
    (call_id, run_id, task_name, attempt, status, raw_value, raw_error, worker_id, started_at,
     finished_at) = meta[2:_SIZE]  # fmt: skip
    run_id = expect(run_id, str, "run id", _WHAT)
    task_name = expect(task_name, str, "task name", _WHAT)
    attempt = expect(attempt, int, "attempt", _WHAT)
    raw_value = expect_optional(raw_value, bytes, "value", _WHAT)
    value = None
    if raw_value is not None:
        try:
            value = unpack(
                VerifiedBody(memoryview(raw_value), PayloadKind.RESULT),
                allow_pickle=allow_pickle,
                what="task result value",
            )
        except SerializationError as exc:
            raise SerializationError(
                f"cannot decode the result of task {task_name!r} (run {run_id}, attempt "
                f"{attempt}): {exc}",
                hint=exc.hint,
                run_id=run_id,
                task_name=task_name,
                attempt=attempt,
            ) from exc
    return TaskResult(
        call_id=expect(call_id, str, "call id", _WHAT),
        run_id=run_id,
        task_name=task_name,
        attempt=attempt,
        # The value is checked by __post_init__.
        status=expect(status, str, "status", _WHAT),  # type: ignore[arg-type]
        value=value,
        error=None if raw_error is None else error_from_wire(raw_error, allow_pickle),
        worker_id=expect_optional(worker_id, str, "worker id", _WHAT),
        started_at=expect_optional(started_at, float, "started_at", _WHAT),
        finished_at=expect_optional(finished_at, float, "finished_at", _WHAT),
        schema_version=version,
    )
