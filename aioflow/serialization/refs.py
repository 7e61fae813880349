"""Task references: how the code of a task travels.

An importable function travels by name, ``"module:qualname"``; the receiver
imports it. A lambda, a closure, a local function, a function of ``__main__``,
or one whose name does not import back to the same object, travels as
cloudpickle inside the signed call envelope ("pickled code").

Pickled code is unpickled only while decoding a verified call, and only when the
receiver allows pickled code (``allow_pickled_code``, default ``True``: every
payload is signed, so pickled code can only come from a holder of the key).
A refusal or a failure to load is kept and raised by :meth:`TaskRef.resolve`,
so the receiver still knows which call failed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, final

from ..errors import SerializationError, TaskNotFoundError
from . import _pickling
from .importing import ImportPathError, import_path, portable_path

__all__ = ["TaskRef", "ref_from_verified_wire", "ref_to_wire"]

_UNSET: Any = object()


@final
class TaskRef:
    """A reference to a task's code: an import path, or signed pickled code.

    ``TaskRef("package.module:function")`` names importable code;
    :meth:`from_callable` chooses by name or pickled code for a callable.

    Args:
        path: ``"module:qualname"``.

    Raises:
        TaskNotFoundError: ``path`` is not of the form ``module:qualname``.
    """

    __slots__ = ("_code", "_error", "_obj", "path", "pickled")

    path: str
    pickled: bool

    def __init__(self, path: str) -> None:
        module, sep, qualname = path.partition(":") if isinstance(path, str) else ("", "", "")
        names = (*module.split("."), *qualname.split("."))
        if not sep or not all(name.isidentifier() for name in names):
            raise TaskNotFoundError(
                f"malformed task reference {path!r}: expected 'module:qualname'",
                hint="Refer to a module-level function, e.g. 'mypackage.tasks:extract'.",
            )
        self.path = path
        self.pickled = False
        self._obj: Any = _UNSET
        self._code: bytes | None = None
        self._error: Callable[[], TaskNotFoundError] | None = None

    @classmethod
    def _make(
        cls,
        path: str,
        *,
        obj: Any = _UNSET,
        code: bytes | None = None,
        error: Callable[[], TaskNotFoundError] | None = None,
    ) -> TaskRef:
        ref = cls.__new__(cls)
        ref.path = path
        ref.pickled = True
        ref._obj = obj
        ref._code = code
        ref._error = error
        return ref

    @classmethod
    def from_callable(cls, func: Callable[..., Any], *, allow_pickled_code: bool = True) -> TaskRef:
        """Reference ``func`` by import path when possible, else as pickled code.

        Args:
            func: the task's function (or an object whose module attribute of the same
                name has ``.fn is func``, as aioflow's ``@task`` produces).
            allow_pickled_code: when ``False``, a function that is not importable is
                refused instead of being pickled.

        Returns:
            The reference.

        Raises:
            SerializationError: ``func`` is not callable, or it is not importable and
                pickled code is not allowed.
        """
        if not callable(func):
            raise SerializationError(
                f"a task reference needs a callable, got {type(func).__name__}",
                hint="Pass the task's function.",
            )
        path = portable_path(func)
        if path is not None:
            ref = cls(path)
            ref._obj = func
            return ref
        module = getattr(func, "__module__", None) or "?"
        qualname = getattr(func, "__qualname__", None) or type(func).__qualname__
        display = f"{module}:{qualname}"
        if not allow_pickled_code:
            raise SerializationError(
                f"task code {display} is not importable by name (a lambda, a local "
                "function, a function of __main__, or shadowed), and pickled code is not "
                "allowed",
                hint="Define the function at module level of an importable module, or "
                "allow pickled code.",
            )
        return cls._make(display, obj=func)

    @property
    def name(self) -> str:
        """``"module:qualname"`` (for pickled code: informative only)."""
        return self.path

    def resolve(self) -> Any:
        """Return the object the reference names (the caller unwraps a ``Task``'s ``.fn``).

        Returns:
            For a path: the object the path names on this side. For pickled code: the
            function that was unpickled when the call was decoded.

        Raises:
            TaskNotFoundError: the module cannot be imported or lacks the name; or the
                pickled code was refused or could not be loaded.
        """
        if self.pickled:
            if self._error is not None:
                raise self._error()
            return self._obj
        try:
            return import_path(self.path)
        except ImportPathError as exc:
            module = self.path.partition(":")[0]
            raise TaskNotFoundError(
                f"task reference {self.path!r} cannot be resolved here: {exc}",
                hint=f"Install the module {module!r} on the worker (the same version as "
                "on the sender), or allow pickled code so the function travels by value.",
            ) from exc

    # --- value semantics -------------------------------------------------------------

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TaskRef):
            return NotImplemented
        if self.pickled or other.pickled:
            if not (self.pickled and other.pickled and self.path == other.path):
                return False
            if self._obj is not _UNSET and self._obj is other._obj:
                return True
            return self._code is not None and self._code == other._code
        return self.path == other.path

    def __hash__(self) -> int:
        return hash((self.path, self.pickled))

    def __repr__(self) -> str:
        return f"TaskRef({self.path!r}{', pickled' if self.pickled else ''})"


def _refused(path: str) -> TaskNotFoundError:
    return TaskNotFoundError(
        f"task {path} arrived as pickled code, and this side does not accept pickled code",
        hint="Define the task at module level of a module installed on the worker (it "
        "then travels by name), or start the worker with pickled code allowed.",
    )


def _unloadable(path: str, exc: Exception) -> TaskNotFoundError:
    error = TaskNotFoundError(
        f"pickled code of task {path} cannot be loaded here ({type(exc).__name__}: {exc})",
        hint="Install the modules the task uses on the worker, in the same versions as on "
        "the sender, or define the task in a module installed on the worker.",
    )
    error.__cause__ = exc
    return error


def ref_to_wire(ref: TaskRef) -> str | list[Any]:
    """Return the wire form: the path, or ``[path, pickled code bytes]``.

    Raises:
        SerializationError: pickled code that cannot be pickled.
    """
    if not ref.pickled:
        return ref.path
    if ref._code is None:
        if ref._obj is _UNSET:
            raise SerializationError(
                f"task code {ref.path} was not received, so it cannot be sent on",
                hint="Send the call that carried it instead.",
            )
        try:
            ref._code = _pickling.pickle_value(ref._obj)
        except Exception as exc:
            raise SerializationError(
                f"cannot pickle task code {ref.path} ({type(exc).__name__}: {exc})",
                hint="Define the function at module level of an importable module, or "
                "keep unpicklable objects (locks, connections) out of its closure.",
            ) from exc
    return [ref.path, ref._code]


def ref_from_verified_wire(raw: object, *, allow_pickled_code: bool) -> TaskRef:
    """Rebuild a reference from the wire form found in a *verified* call body.

    Internal: it unpickles pickled code, so it must only ever see bytes that came
    out of a verified envelope (``decode_call`` is its only caller).

    Raises:
        SerializationError: malformed wire form.
    """
    if type(raw) is str:
        # The path is checked when it is resolved (import_path validates it).
        ref = TaskRef.__new__(TaskRef)
        ref.path, ref.pickled, ref._obj, ref._code, ref._error = raw, False, _UNSET, None, None
        return ref
    if type(raw) is not list or len(raw) != 2 or type(raw[0]) is not str:
        raise SerializationError("malformed task reference in call")
    path, code = raw
    if type(code) is not bytes:
        raise SerializationError("malformed task reference in call")
    if not allow_pickled_code:
        return TaskRef._make(path, code=code, error=lambda: _refused(path))
    try:
        obj = _pickling.unpickle_verified(code)
    except Exception as exc:
        failure = exc
        return TaskRef._make(path, code=code, error=lambda: _unloadable(path, failure))
    return TaskRef._make(path, obj=obj, code=code)
