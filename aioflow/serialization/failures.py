"""ErrorInfo: a task's exception, carried across a process boundary (R11).

An error always travels as text: type name, message, ``code`` and ``hint`` when
it is an :class:`~aioflow.errors.AioflowError`, and the formatted traceback
(chained causes included). When the exception can be pickled, the pickled
exception travels too, inside the signed result, so the receiver re-raises the
real type with a :class:`~aioflow.errors.RemoteTaskError` holding the remote
traceback as its ``__cause__``. When it cannot be pickled, or cannot be rebuilt
on the receiver, or pickles are not accepted, the receiver raises that
``RemoteTaskError`` itself.

Wire form: ``[type_name, message, traceback, code | nil, hint | nil,
pickled exception | nil]``.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass, field
from typing import final

from ..errors import AioflowError, RemoteTaskError, SerializationError
from . import _pickling
from .schema import expect, expect_optional

__all__ = ["ErrorInfo", "error_from_wire", "error_to_wire"]

_WHAT = "task result error"
_SIZE = 6


def _qualified_name(cls: type) -> str:
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


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
        """Describe ``exc`` (call it where the exception was caught, to keep the traceback).

        Args:
            exc: the task's exception.

        Returns:
            The description, holding ``exc`` itself.
        """
        aioflow_error = exc if isinstance(exc, AioflowError) else None
        return cls(
            type_name=_qualified_name(type(exc)),
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
        (holding the remote traceback) as its ``__cause__``; else that
        ``RemoteTaskError`` itself.

        Args:
            run_id, task_name, attempt: context for the ``RemoteTaskError``.

        Returns:
            An exception, ready for ``raise``.
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


def error_to_wire(error: ErrorInfo, allow_pickle: bool) -> list[str | bytes | None]:
    """Wire form of ``error``; the exception is pickled when allowed and possible."""
    pickled: bytes | None = None
    if allow_pickle and error.exception is not None:
        try:
            pickled = _pickling.pickle_value(error.exception)
        except Exception:
            pickled = None  # travels as text only; the receiver raises RemoteTaskError
    return [error.type_name, error.message, error.traceback, error.code, error.hint, pickled]


def error_from_wire(raw: object, allow_pickle: bool) -> ErrorInfo:
    """Rebuild an :class:`ErrorInfo` from its wire form (part of a verified result).

    Raises:
        SerializationError: malformed wire form.
    """
    if type(raw) is not list or len(raw) < _SIZE:
        raise SerializationError(f"malformed {_WHAT}: error is not a list of {_SIZE}")
    what = f"{_WHAT} error"
    type_name, message, formatted, code, hint, pickled = raw[:_SIZE]
    exception: BaseException | None = None
    if allow_pickle and expect_optional(pickled, bytes, "exception", what) is not None:
        try:
            candidate = _pickling.unpickle_verified(pickled)
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
