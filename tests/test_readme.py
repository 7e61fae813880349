"""The README stays true: its example runs, its quick start has two commands that CI uses."""

from __future__ import annotations

import re
import subprocess
import sys
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
