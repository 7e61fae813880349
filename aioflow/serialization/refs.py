"""Code by name or by value: ``"module:qualname"`` paths, task references, pickling.

An importable function travels by name, ``"module:qualname"``; the receiver
imports it. A lambda, a closure, a local function, a function of ``__main__``,
or one whose name does not import back to the same object, travels as
cloudpickle inside the signed call envelope ("pickled code"). The codec names
enum and dataclass classes by the same paths.

:func:`pickle_value` and :func:`unpickle_verified` are the only places where
aioflow pickles and unpickles. The decoders call :func:`unpickle_verified` only
on bytes that came out of a verified envelope (the tests patch it to prove that
nothing else reaches it). Pickled code is unpickled only while decoding a
verified call, and only when the receiver allows pickled code
(``allow_pickled_code``, default ``True``: every payload is signed, so pickled
code can only come from a holder of the key). A refusal or a failure to load is
kept and raised by :meth:`TaskRef.resolve`, so the receiver still knows which
call failed.
"""

from __future__ import annotations

import importlib
import pickle
from collections.abc import Callable
from typing import Any, final

import cloudpickle  # type: ignore[import-untyped]

from ..errors import SerializationError, TaskNotFoundError

__all__ = [
    "ImportPathError",
    "TaskRef",
    "import_path",
    "pickle_value",
    "portable_path",
    "ref_from_verified_wire",
    "ref_to_wire",
    "unpickle_verified",
]

_UNSET: Any = object()

# --- pickling -----------------------------------------------------------------------------


def pickle_value(obj: object) -> bytes:
    """Pickle ``obj`` with cloudpickle (code by value when it is not importable)."""
    data: bytes = cloudpickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    return data


def unpickle_verified(data: bytes | memoryview) -> Any:
    """Unpickle bytes taken from inside a verified, signed envelope."""
    return pickle.loads(data)


# --- import paths -------------------------------------------------------------------------


class ImportPathError(Exception):
    """Internal: a path is malformed or does not resolve. Callers turn it into an AioflowError."""


def _valid_dotted(name: str) -> bool:
    return bool(name) and all(part.isidentifier() for part in name.split("."))


def import_path(path: str) -> Any:
    """Import ``"module:qualname"`` and return the object it names.

    Only the named module is imported; attributes are then looked up one dotted
    part at a time. Nothing else is executed. Names of local objects
    (``<locals>``, ``<lambda>``) are malformed.

    Raises:
        ImportPathError: the path is malformed, the module cannot be imported, or
            the attribute does not exist.
    """
    if not isinstance(path, str) or path.count(":") != 1:
        raise ImportPathError(f"malformed reference {path!r}: expected 'module:qualname'")
    module_name, qualname = path.split(":")
    if not _valid_dotted(module_name) or not _valid_dotted(qualname):
        raise ImportPathError(f"malformed reference {path!r}: expected 'module:qualname'")
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as exc:  # ImportError, or the module's own import-time error
        raise ImportPathError(
            f"module {module_name!r} cannot be imported ({type(exc).__name__}: {exc})"
        ) from exc
    for part in qualname.split("."):
        try:
            obj = getattr(obj, part)
        except Exception as exc:
            raise ImportPathError(
                f"{path!r} does not resolve: {module_name} has no attribute {qualname!r}"
            ) from exc
    return obj


def portable_path(obj: object) -> str | None:
    """Return ``obj``'s ``"module:qualname"`` when importing it gives back ``obj``.

    An object found at the path whose ``.fn`` attribute is ``obj`` also counts:
    aioflow's ``@task`` replaces a module-level function by a ``Task`` that keeps
    the function in ``.fn``. Objects of ``__main__`` are never portable: the
    receiving process has its own ``__main__``.

    Returns:
        The path, or ``None`` (local objects, lambdas, ``__main__``, shadowed names).
    """
    module = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(qualname, str) or module == "__main__":
        return None
    path = f"{module}:{qualname}"
    try:
        found = import_path(path)  # also rejects "<locals>" and "<lambda>"
    except ImportPathError:
        return None
    if found is obj or getattr(found, "fn", None) is obj:
        return path
    return None


# --- task references ----------------------------------------------------------------------


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
        if not sep or not _valid_dotted(module) or not _valid_dotted(qualname):
            raise TaskNotFoundError(
                f"malformed task reference {path!r}: expected 'module:qualname'",
                hint="Refer to a module-level function, e.g. 'mypackage.tasks:extract'.",
            )
        self._set(path, False)

    def _set(
        self,
        path: str,
        pickled: bool,
        obj: Any = _UNSET,
        code: bytes | None = None,
        error: Callable[[], TaskNotFoundError] | None = None,
    ) -> TaskRef:
        self.path = path
        self.pickled = pickled
        self._obj = obj
        self._code = code
        self._error = error
        return self

    @classmethod
    def from_callable(cls, func: Callable[..., Any]) -> TaskRef:
        """Reference ``func`` by import path when possible, else as pickled code.

        ``func`` is the task's function; it also counts as importable when its
        module attribute of the same name has ``.fn is func``, as aioflow's
        ``@task`` produces. Whether the receiver accepts pickled code is its choice
        (``decode_call(..., allow_pickled_code=)``).

        Raises:
            SerializationError: ``func`` is not callable.
        """
        if not callable(func):
            raise SerializationError(
                f"a task reference needs a callable, got {type(func).__name__}",
                hint="Pass the task's function.",
            )
        path = portable_path(func)
        if path is not None:
            return cls.__new__(cls)._set(path, False, func)
        module = getattr(func, "__module__", None) or "?"
        qualname = getattr(func, "__qualname__", None) or type(func).__qualname__
        return cls.__new__(cls)._set(f"{module}:{qualname}", True, func)

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
            ref._code = pickle_value(ref._obj)
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
    ref = TaskRef.__new__(TaskRef)
    if type(raw) is str:
        return ref._set(raw, False)  # the path is checked when it is resolved
    if type(raw) is not list or len(raw) != 2 or type(raw[0]) is not str:
        raise SerializationError("malformed task reference in call")
    path, code = raw
    if type(code) is not bytes:
        raise SerializationError("malformed task reference in call")
    if not allow_pickled_code:
        return ref._set(path, True, code=code, error=lambda: _refused(path))
    try:
        obj = unpickle_verified(code)
    except Exception as exc:
        failure = exc
        return ref._set(path, True, code=code, error=lambda: _unloadable(path, failure))
    return ref._set(path, True, obj, code)
