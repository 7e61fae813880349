"""Loading ``FILE_OR_MODULE:WORKFLOW`` and parsing ``--input key=value``."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType
from typing import Any, NoReturn

from ..errors import AioflowError, ConfigurationError
from ..workflow import Workflow

__all__ = ["load_workflow", "parse_inputs"]

_SPEC_HINT = "Write FILE_OR_MODULE:WORKFLOW, e.g. examples/etl.py:wf or mypackage.flows:wf."


def load_workflow(spec: str) -> Workflow:
    """The :class:`Workflow` named by ``spec``: ``path/to/file.py:wf`` or ``package.module:wf``.

    A file is imported by path (its directory goes first on ``sys.path``, as with
    ``python file.py``); a module is imported from the current directory and
    ``sys.path`` (as with ``python -m``). ``WORKFLOW`` may be dotted (``flows.etl``).

    Raises:
        ConfigurationError: malformed spec, missing file or module, an import that
            failed (chained), or an attribute that is missing or not a Workflow.
        AioflowError: raised by the module itself while it was imported.
    """
    target, sep, attr = spec.rpartition(":")
    if not sep or not target or not attr:
        raise ConfigurationError(f"{spec!r} does not name a workflow", hint=_SPEC_HINT)
    module = _import_file(Path(target)) if _is_path(target) else _import_module(target)
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ConfigurationError(
                f"{target} has no attribute {attr!r}",
                hint=f"Name the variable bound by `with aioflow.workflow(...) as {attr}:`.",
            ) from None
    if not isinstance(obj, Workflow):
        raise ConfigurationError(
            f"{spec} is not a Workflow (it is of type {type(obj).__name__})",
            hint="Point at the object made by `with aioflow.workflow('name') as wf:`.",
        )
    return obj


def _is_path(target: str) -> bool:
    return target.endswith(".py") or "/" in target or os.sep in target


def _import_file(path: Path) -> ModuleType:
    path = path.resolve()
    if not path.is_file():
        raise ConfigurationError(
            f"no such file: {path}", hint="Check the path; it is relative to the current directory."
        )
    name = path.stem if path.stem.isidentifier() else "aioflow_workflow"
    existing = sys.modules.get(name)
    if existing is not None:
        if getattr(existing, "__file__", None) and Path(existing.__file__ or "").resolve() == path:
            return existing  # already imported (by the application, or a previous load)
        # The stem is taken by another module (a file named json.py...): keep both.
        name = f"aioflow_workflow_{hashlib.sha1(str(path).encode()).hexdigest()[:12]}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ConfigurationError(f"cannot import {path}", hint="Give the path of a .py file.")
    module = importlib.util.module_from_spec(spec)
    if str(path.parent) not in sys.path:
        sys.path.insert(0, str(path.parent))  # siblings are importable, as with `python file.py`
    sys.modules[name] = module  # registered first: dataclasses and pickling look it up
    try:
        spec.loader.exec_module(module)
    except BaseException as exc:
        del sys.modules[name]
        _reraise_import_error(str(path), exc)
    return module


def _import_module(name: str) -> ModuleType:
    cwd = os.getcwd()
    if "" not in sys.path and cwd not in sys.path:
        sys.path.insert(0, cwd)  # as with `python -m`: modules of the current directory
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (name == exc.name or name.startswith(exc.name + ".")):
            raise ConfigurationError(
                f"no module named {name!r}",
                hint="Check the module path (imported from the current directory and "
                "sys.path); for a file, give its path: path/to/file.py:wf.",
            ) from None
        _reraise_import_error(name, exc)
    except BaseException as exc:
        _reraise_import_error(name, exc)


def _reraise_import_error(what: str, exc: BaseException) -> NoReturn:
    if isinstance(exc, AioflowError) or not isinstance(exc, Exception):
        raise exc  # the module's own aioflow error (with code and hint), or an interrupt
    raise ConfigurationError(
        f"importing {what} failed: {type(exc).__name__}: {exc}",
        hint="Fix the error in the module; add --traceback to see where it was raised.",
    ) from exc


def parse_inputs(pairs: Iterable[str]) -> dict[str, Any]:
    """Run inputs from ``key=value`` strings; values are JSON when they parse, else text.

    ``n=3`` gives ``3``, ``tags=["a"]`` a list, ``flag=true`` ``True``, ``name=alice``
    the string ``"alice"`` and ``id="42"`` the string ``"42"``.

    Raises:
        ConfigurationError: a pair without ``=``, a key that is not an identifier, or a
            key given twice.
    """
    inputs: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise ConfigurationError(
                f"--input {pair!r} is not key=value",
                hint="Inputs fill task parameters of the same name: --input n=3 "
                "--input 'tags=[\"a\"]' (JSON when it parses, else text).",
            )
        if key in inputs:
            raise ConfigurationError(
                f"--input {key!r} is given twice", hint="Give each input once."
            )
        try:
            inputs[key] = json.loads(raw)
        except ValueError:
            inputs[key] = raw
    return inputs
