"""The README stays true: its example runs, its quick start has two commands that CI uses,
the test command installs no benchmark peer, and it says what each example needs."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def quick_start_commands() -> list[str]:
    section = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.*?)\n```", section, flags=re.S)


def test_readme_example_runs() -> None:
    code = re.search(r"```python\n(.*?)\n```", README, flags=re.S)
    assert code is not None
    namespace: dict[str, object] = {"__name__": "readme_example"}
    exec(compile(code.group(1), "README.md", "exec"), namespace)  # asserts total == 12


def test_quick_start_has_two_commands_and_ci_runs_the_test_one() -> None:
    commands = quick_start_commands()
    assert len(commands) == 2
    install_and_run, install_and_test = commands
    assert "aioflow run examples/" in install_and_run
    assert "pytest" in install_and_test
    assert install_and_test in (ROOT / ".ci" / "run").read_text()


def test_quick_start_example_target_runs_through_the_cli() -> None:
    target = re.search(r"aioflow run (\S+)", quick_start_commands()[0])
    assert target is not None
    proc = subprocess.run(
        [sys.executable, "-m", "aioflow", "run", target.group(1)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "succeeded" in proc.stdout


# --- what the test command installs, and what the examples need ----------------------

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
EXTRAS: dict[str, list[str]] = PYPROJECT["project"]["optional-dependencies"]
BASE = {re.split(r"[\[<>=!~ ]", d, maxsplit=1)[0] for d in PYPROJECT["project"]["dependencies"]}
# Imported by an example, installed with the framework it belongs to.
COMES_WITH = {"pydantic": "fastapi"}


def requirement_names(extra: str) -> set[str]:
    return {re.split(r"[\[<>=!~ ]", d, maxsplit=1)[0].lower() for d in EXTRAS[extra]}


def test_dev_extra_installs_no_benchmark_peer() -> None:
    assert "graflow" in requirement_names("bench")
    dev = " ".join(EXTRAS["dev"])
    assert "bench" not in dev and "graflow" not in dev
    assert all("bench" not in d for d in EXTRAS["all"])


def third_party_imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return {
        COMES_WITH.get(name, name)
        for name in names
        if name not in sys.stdlib_module_names and name not in BASE and name != "aioflow"
    }


def test_readme_says_which_examples_need_extra_packages_and_dev_has_them() -> None:
    table = README.split("## Examples", 1)[1].split("\n## ", 1)[0]
    rows = {m.group(1): m.group(0) for m in re.finditer(r"^\| \[`(\w+)\.py`\].*$", table, re.M)}
    examples = sorted(p.stem for p in (ROOT / "examples").glob("*.py"))
    assert sorted(rows) == examples
    needing = {}
    for name in examples:
        packages = third_party_imports(ROOT / "examples" / f"{name}.py")
        for package in packages:
            assert f"`{package}`" in rows[name], f"README: say that {name}.py needs {package}"
            assert package in requirement_names("dev"), f"dev extra lacks {package}"
        if packages:
            needing[name] = packages
        else:
            assert "needs" not in rows[name]
    assert needing == {"fastapi_app": {"fastapi", "uvicorn"}, "aiohttp_app": {"aiohttp"}}
    assert '-e ".[dev]"' in table  # and how to get them
