"""The public face: everything in __all__ exists, is documented, and is light to import."""

from __future__ import annotations

import inspect
import subprocess
import sys
from pathlib import Path

import aioflow

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_all_names_exist_and_have_docstrings() -> None:
    assert len(aioflow.__all__) == len(set(aioflow.__all__))
    for name in aioflow.__all__:
        obj = getattr(aioflow, name)
        if inspect.ismodule(obj) or inspect.isclass(obj) or callable(obj):
            assert inspect.getdoc(obj), f"{name} has no docstring"


def test_every_public_name_is_in_the_api_reference() -> None:
    reference = (DOCS / "api.md").read_text()
    missing = [name for name in aioflow.__all__ if f"`{name}`" not in reference]
    assert not missing, f"document these in docs/api.md: {missing}"


def test_importing_aioflow_does_not_import_optional_dependencies() -> None:
    code = (
        "import sys, aioflow; "
        "heavy = [m for m in ('redis', 'aiodocker', 'opentelemetry', 'aiohttp') "
        "if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_package_is_typed() -> None:
    assert (Path(aioflow.__file__).parent / "py.typed").exists()
