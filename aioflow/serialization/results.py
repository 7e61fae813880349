"""TaskResult: the outcome of a task attempt, sent back by a worker; ErrorInfo, its error.

Wire form: a signed ``RESULT`` envelope whose body is an msgpack array
(positional; versioned like the call, see :mod:`.calls`)::

    [major, minor, call_id, run_id, task_name, attempt,
     status,       # "succeeded" | "failed" | "cancelled"
     value,        # bytes: a nested msgpack document | nil
     error,        # nil | [type_name, message, traceback, code | nil, hint | nil,
                   #        pickled exception bytes | nil]
     worker_id (str | nil), started_at (float | nil), finished_at (float | nil),
     requests,     # schema 1.1: bytes, a nested msgpack document {str: value} | nil
     ...]          # fields appended by newer minor versions: ignored

An error always travels as text: type name, message, ``code`` and ``hint`` when
it is an :class:`~aioflow.errors.AioflowError`, and the formatted traceback
(chained causes included). When the exception can be pickled, the pickled
exception travels too, inside the signed result, so the receiver re-raises the
real type with a :class:`~aioflow.errors.RemoteTaskError` holding the remote
traceback as its ``__cause__`` (R11). When it cannot be pickled, or cannot be
rebuilt on the receiver, or pickles are not accepted, the receiver raises that
``RemoteTaskError`` itself.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass, field
from typing import Any, Literal, final

from ..errors import AioflowError, PayloadTooLargeError, RemoteTaskError, SerializationError
from . import refs
from .calls import SCHEMA_VERSION, TaskCall, check_version, expect, expect_optional
from .codec import VerifiedBody, pack, unpack
from .envelope import PayloadKind, open_envelope, seal
from .keys import Keyring

__all__ = ["ErrorInfo", "TaskResult", "decode_result", "encode_result"]

_Status = Literal["succeeded", "failed", "cancelled"]
_STATUSES = ("succeeded", "failed", "cancelled")
_WHAT = "task result"
_MAJOR, _MINOR = SCHEMA_VERSION
_SIZE = 12  # fields of schema 1.0
_ERROR_SIZE = 6

# --- the error ------------------------------------------------------------------------------


def _safe_str(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:
        return f"<unprintable {type(exc).__name__}>"


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class ErrorInfo:
    """A task's exception, as text plus (when it could travel) the exception itself.

    Attributes:
        type_name: ``module.QualName`` of the exception.
        message: ``str(exc)``.
        traceback: the formatted traceback, chained causes included.
        code, hint: the error's ``code`` and ``hint`` when it is an ``AioflowError``.
        exception: the exception object (sender side; receiver side when it was
            pickled, pickles were accepted, and it could be rebuilt), else ``None``.
    """

    type_name: str
    message: str
    traceback: str = ""
    code: str | None = None
    hint: str | None = None
    exception: BaseException | None = field(default=None, compare=False, repr=False)

    @classmethod
    def from_exception(cls, exc: BaseException) -> ErrorInfo:
        """Describe ``exc``, holding it (call it where it was caught, to keep the traceback)."""
        kind = type(exc)
        aioflow_error = exc if isinstance(exc, AioflowError) else None
        return cls(
            type_name=(
                kind.__qualname__
                if kind.__module__ == "builtins"
                else f"{kind.__module__}.{kind.__qualname__}"
            ),
            message=_safe_str(exc),
            traceback="".join(traceback.format_exception(exc)),
            code=None if aioflow_error is None else str(aioflow_error.code),
            hint=None if aioflow_error is None else str(aioflow_error.hint),
            exception=exc,
        )

    def to_exception(
        self, *, run_id: str | None = None, task_name: str | None = None, attempt: int | None = None
    ) -> BaseException:
        """Return the exception to raise on this side.

        The rebuilt exception when available, with a :class:`RemoteTaskError`
        (holding the remote traceback, and ``run_id``, ``task_name``, ``attempt``
        as context) as its ``__cause__``; else that ``RemoteTaskError`` itself.
        """
        remote = RemoteTaskError(
            self.type_name,
            self.message,
            remote_traceback=self.traceback,
            remote_code=self.code,
            hint=self.hint,
            run_id=run_id,
            task_name=task_name,
            attempt=attempt,
        )
        if self.exception is None:
            return remote
        self.exception.__cause__ = remote
        return self.exception


def _error_to_wire(error: ErrorInfo, allow_pickle: bool) -> list[str | bytes | None]:
    pickled: bytes | None = None
    if allow_pickle and error.exception is not None:
        try:
            pickled = refs.pickle_value(error.exception)
        except Exception:
            pickled = None  # travels as text only; the receiver raises RemoteTaskError
    return [error.type_name, error.message, error.traceback, error.code, error.hint, pickled]


def _error_from_wire(raw: object, allow_pickle: bool) -> ErrorInfo:
    """Rebuild an :class:`ErrorInfo` from its wire form (part of a verified result)."""
    what = f"{_WHAT} error"
    if type(raw) is not list or len(raw) < _ERROR_SIZE:
        raise SerializationError(f"malformed {what}: not a list of {_ERROR_SIZE}")
    type_name, message, formatted, code, hint, pickled = raw[:_ERROR_SIZE]
    exception: BaseException | None = None
    if allow_pickle and expect_optional(pickled, bytes, "exception", what) is not None:
        try:
            candidate = refs.unpickle_verified(pickled)
        except Exception:
            candidate = None  # class not importable here...: fall back to RemoteTaskError
        if isinstance(candidate, BaseException):
            exception = candidate
    return ErrorInfo(
        type_name=expect(type_name, str, "error type", what),
        message=expect(message, str, "error message", what),
        traceback=expect(formatted, str, "traceback", what),
        code=expect_optional(code, str, "error code", what),
        hint=expect_optional(hint, str, "error hint", what),
        exception=exception,
    )


# --- the result -----------------------------------------------------------------------------


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class TaskResult:
    """The outcome of one task attempt.

    Attributes:
        call_id, run_id, task_name, attempt: copied from the :class:`TaskCall`.
        status: ``"succeeded"``, ``"failed"`` or ``"cancelled"``.
        value: the task's return value (``None`` unless succeeded).
        error: what went wrong (``None`` when succeeded); ``error.to_exception()``
            is what to raise.
        worker_id: the worker that ran the attempt.
        started_at, finished_at: epoch seconds.
        requests: the control requests the task made (``next_iteration``,
            ``next_task``, ``terminate_workflow``, ``cancel_workflow``), as a dict of
            plain values and tasks (by reference), or ``None``.

    Raises:
        SerializationError: inconsistent fields (e.g. failed without an error).
    """

    call_id: str
    run_id: str
    task_name: str
    attempt: int = 1
    status: _Status = "succeeded"
    value: Any = None
    error: ErrorInfo | None = None
    worker_id: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    requests: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.status not in _STATUSES:
            raise SerializationError(f"TaskResult.status must be one of {_STATUSES}")
        if (self.status == "succeeded") != (self.error is None):
            raise SerializationError(
                "TaskResult needs an error exactly when its status is not 'succeeded'",
                hint="Use TaskResult.succeeded / .failed, or pass an ErrorInfo.",
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
) -> bytes:
    """Encode and sign a :class:`TaskResult`.

    Args:
        result: the outcome.
        keyring: signs with its current key.
        allow_pickle: carry values the codec does not support, and the exception, as
            signed cloudpickle (default ``True`` for results).

    Returns:
        The signed ``RESULT`` envelope.

    Raises:
        SerializationError: the value cannot be encoded (the path is named, from ``result``).
        PayloadTooLargeError: the payload exceeds the keyring's size limit. (A failure whose
            pickled exception is too large is sent again without it, as text only,
            so that a failure can always be reported.)
    """
    value = None
    if result.status == "succeeded":
        value = pack(result.value, allow_pickle=allow_pickle, root="result")
    requests = None
    if result.requests is not None:
        requests = pack(result.requests, allow_pickle=allow_pickle, root="requests")
    error = result.error
    try:
        return _seal_result(result, value, requests, allow_pickle, keyring)
    except PayloadTooLargeError:
        if error is None or not allow_pickle or error.exception is None:
            raise
        return _seal_result(result, value, requests, False, keyring)


def _seal_result(
    result: TaskResult,
    value: bytes | None,
    requests: bytes | None,
    pickle_error: bool,
    keyring: Keyring,
) -> bytes:
    error = result.error
    meta = [
        _MAJOR,
        _MINOR,
        result.call_id,
        result.run_id,
        result.task_name,
        result.attempt,
        _STATUSES[_STATUSES.index(result.status)],  # a plain str, also for a StrEnum
        value,
        None if error is None else _error_to_wire(error, pickle_error),
        result.worker_id,
        None if result.started_at is None else float(result.started_at),
        None if result.finished_at is None else float(result.finished_at),
        requests,
    ]
    return seal(pack(meta, allow_pickle=False, root=_WHAT), keyring, PayloadKind.RESULT)


def _nested(raw: bytes, allow_pickle: bool, what: str) -> Any:
    # A nested document of the verified body: it is covered by the same signature.
    return unpack(VerifiedBody(memoryview(raw)), allow_pickle=allow_pickle, what=what)


def decode_result(
    data: bytes | bytearray | memoryview,
    keyring: Keyring,
    *,
    allow_pickle: bool = True,
) -> TaskResult:
    """Verify and decode a payload made by :func:`encode_result`.

    Args:
        data: the signed envelope.
        keyring: accepts its current and previous keys.
        allow_pickle: accept signed pickled values and exceptions (default ``True``).
            When ``False``, a failure is rebuilt as :class:`RemoteTaskError`.

    Returns:
        The result.

    Raises:
        PayloadTooLargeError: ``data`` exceeds the keyring's size limit.
        PayloadSignatureError: truncated, unsigned, tampered or unknown key.
        SerializationError: malformed result, newer incompatible schema, or a value
            that cannot be decoded here (``run_id``, ``task_name``, ``attempt`` set).
    """
    verified = open_envelope(data, keyring, PayloadKind.RESULT)
    meta = unpack(verified, allow_pickle=False, what=_WHAT)
    check_version(meta, _WHAT, _SIZE)
    (call_id, run_id, task_name, attempt, status, raw_value, raw_error, worker_id, started_at,
     finished_at) = meta[2:_SIZE]  # fmt: skip
    raw_requests = meta[_SIZE] if len(meta) > _SIZE else None  # schema 1.1
    run_id = expect(run_id, str, "run id", _WHAT)
    task_name = expect(task_name, str, "task name", _WHAT)
    attempt = expect(attempt, int, "attempt", _WHAT)
    raw_value = expect_optional(raw_value, bytes, "value", _WHAT)
    value = None
    if raw_value is not None:
        try:
            value = _nested(raw_value, allow_pickle, "task result value")
        except SerializationError as exc:
            raise SerializationError(
                f"cannot decode the result of task {task_name!r} (run {run_id}, attempt "
                f"{attempt}): {exc}",
                hint=exc.hint,
                run_id=run_id,
                task_name=task_name,
                attempt=attempt,
            ) from exc
    requests = None
    raw_requests = expect_optional(raw_requests, bytes, "requests", _WHAT)
    if raw_requests is not None:
        requests = _nested(raw_requests, allow_pickle, "task control requests")
        if type(requests) is not dict:
            raise SerializationError(f"malformed {_WHAT}: requests is not a map")
    return TaskResult(
        call_id=expect(call_id, str, "call id", _WHAT),
        run_id=run_id,
        task_name=task_name,
        attempt=attempt,
        # The value is checked by __post_init__.
        status=expect(status, str, "status", _WHAT),  # type: ignore[arg-type]
        value=value,
        error=None if raw_error is None else _error_from_wire(raw_error, allow_pickle),
        worker_id=expect_optional(worker_id, str, "worker id", _WHAT),
        started_at=expect_optional(started_at, float, "started_at", _WHAT),
        finished_at=expect_optional(finished_at, float, "finished_at", _WHAT),
        requests=requests,
    )
