"""The layering DESIGN.md asks for, checked on the imports of the source files."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "aioflow"


def _imports(path: Path) -> set[str]:
    """Absolute names of the aioflow modules ``path`` imports (relative ones resolved)."""
    module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join([*parts, base]) if base else ".".join(parts)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name.startswith("aioflow")}


def test_the_engine_imports_no_concrete_backend() -> None:
    for module in ("engine.py", "_compile.py", "_runstate.py", "_run_events.py"):
        backends = {n for n in _imports(PACKAGE / module) if n.startswith("aioflow.backends")}
        contract = "aioflow.backends.base"
        assert all(n == contract or n.startswith(contract + ".") for n in backends), backends


@pytest.mark.parametrize("path", sorted((PACKAGE / "backends").glob("*.py")), ids=lambda p: p.name)
def test_backends_never_import_the_engine(path: Path) -> None:
    assert not {n for n in _imports(path) if n.startswith("aioflow.engine")}


@pytest.mark.parametrize(
    "path", sorted((PACKAGE / "serialization").glob("*.py")), ids=lambda p: p.name
)
def test_serialization_is_a_leaf(path: Path) -> None:
    allowed = ("aioflow.serialization", "aioflow.errors")
    assert all(name.startswith(allowed) for name in _imports(path)), _imports(path)


def test_importing_aioflow_imports_no_optional_dependency() -> None:
    import subprocess
    import sys

    code = (
        "import sys, aioflow; "
        "print(sorted(m for m in ('redis', 'aiodocker', 'opentelemetry') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
