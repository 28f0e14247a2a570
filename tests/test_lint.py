"""The code passes the project's linter and formatter (ruff, settings in pyproject.toml), and no function is long."""

import ast
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("args", [["check", "."], ["format", "--check", "."]])
def test_ruff(args):
    ruff = shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed (pip install -r requirements-dev.txt)")
    result = subprocess.run([ruff, *args], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


# The shipped packages' functions stay short enough to read at once.
MAX_FUNCTION_LINES = 80
LONG_FUNCTION_PACKAGES = ("ssfnet", "train", "demo")
# Functions still over the limit, by "path:name"; split them and take them off this list.
LONG_FUNCTIONS_LEFT: set[str] = set()


def long_functions(root: Path, packages: tuple[str, ...], limit: int) -> dict[str, int]:
    """Functions (methods and nested ones too) of more than ``limit`` lines: ``{"path:name": lines}``."""
    found = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    lines = node.end_lineno - node.lineno + 1
                    if lines > limit:
                        found[f"{path.relative_to(root).as_posix()}:{node.name}"] = lines
    return found


def test_no_function_is_over_80_lines():
    found = long_functions(ROOT, LONG_FUNCTION_PACKAGES, MAX_FUNCTION_LINES)
    new = {name: lines for name, lines in found.items() if name not in LONG_FUNCTIONS_LEFT}
    assert not new, f"functions over {MAX_FUNCTION_LINES} lines (split them): {new}"
    assert LONG_FUNCTIONS_LEFT <= set(found), f"now short enough, take off the list: {LONG_FUNCTIONS_LEFT - set(found)}"


def test_the_length_check_sees_functions(tmp_path):
    body = "\n".join(f"        x{i} = {i}" for i in range(81))
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "m.py").write_text(f"def short():\n    pass\n\n\nclass A:\n    def long(self):\n{body}\n")
    assert long_functions(tmp_path, ("pkg",), 80) == {"pkg/m.py:long": 82}
