"""The stores are a leaf: they never import the engine, and never unpickle anything."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

STORES = Path(__file__).resolve().parents[2] / "aioflow" / "stores"


def _imported(path: Path) -> set[str]:
    """Every module ``path`` imports; relative imports as ``.name`` / ``..name``."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            names.add("." * node.level + (node.module or ""))
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


@pytest.mark.parametrize("path", sorted(STORES.glob("*.py")), ids=lambda p: p.name)
def test_a_store_module_imports_only_errors_stores_and_the_standard_library(path: Path) -> None:
    for name in _imported(path):
        if name.startswith(".."):
            assert name in ("..errors", ".._redisutil"), f"{path.name} imports {name}"
        elif not name.startswith("."):
            assert name.split(".")[0] not in ("aioflow", "pickle", "cloudpickle", "msgpack"), (
                f"{path.name} imports {name}"
            )
