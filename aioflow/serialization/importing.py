"""``"module:qualname"`` paths: naming importable objects and importing them back.

Used by task references and by the codec for enum and dataclass classes. Only
syntactically valid dotted identifiers are imported; names of local objects
(``<locals>``, ``<lambda>``) and of ``__main__`` are never considered portable,
because the receiving process has its own ``__main__``.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["ImportPathError", "import_path", "object_path", "portable_path"]


class ImportPathError(Exception):
    """Internal: a path is malformed or does not resolve. Callers turn it into an AioflowError.

    ``module_missing`` is true when the module itself could not be imported.
    """

    def __init__(self, message: str, *, module_missing: bool = False) -> None:
        super().__init__(message)
        self.module_missing = module_missing


def _valid_dotted(name: str) -> bool:
    return bool(name) and all(part.isidentifier() for part in name.split("."))


def object_path(obj: object) -> str | None:
    """Return ``"module:qualname"`` for ``obj``, or ``None`` when it has no portable name.

    Args:
        obj: a function, class or any object with ``__module__`` and ``__qualname__``.

    Returns:
        The path, or ``None`` for local objects, lambdas and objects of ``__main__``.
    """
    module = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(qualname, str):
        return None
    if module == "__main__" or not _valid_dotted(module) or not _valid_dotted(qualname):
        return None  # also rejects "<locals>" and "<lambda>"
    return f"{module}:{qualname}"


def import_path(path: str) -> Any:
    """Import ``"module:qualname"`` and return the object it names.

    Only the named module is imported; attributes are then looked up one dotted
    part at a time. Nothing else is executed.

    Args:
        path: ``"package.module:Outer.name"``.

    Returns:
        The object.

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
            f"module {module_name!r} cannot be imported ({type(exc).__name__}: {exc})",
            module_missing=True,
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
    """Return ``obj``'s path when importing it gives back ``obj``, else ``None``.

    An object found at the path whose ``.fn`` attribute is ``obj`` also counts:
    aioflow's ``@task`` replaces a module-level function by a ``Task`` that keeps
    the function in ``.fn``.

    Args:
        obj: the function or class to name.

    Returns:
        ``"module:qualname"`` or ``None``.
    """
    path = object_path(obj)
    if path is None:
        return None
    try:
        found = import_path(path)
    except ImportPathError:
        return None
    if found is obj or getattr(found, "fn", None) is obj:
        return path
    return None
