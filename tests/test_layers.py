"""The layers of docs/architecture.md: imports only go down (experiments, app -> demo -> train -> ssfnet)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# What each package may import of the project's other top-level packages.
ALLOWED = {
    "ssfnet": set(),
    "train": {"ssfnet"},
    "demo": {"ssfnet", "train"},
    # Research drivers and probes sit above the shipped packages: nothing shipped imports them.
    "experiments": {"ssfnet", "train", "demo"},
}
# The app polls fine-tunes, offers the fine-tune's defaults and works out its least budget through
# train modules that load no torch.
DEMO_FROM_TRAIN = {"train.finetune.status", "train.finetune.defaults", "train.finetune.budget"}


def project_imports(path: Path) -> set[str]:
    """Absolute module names of the project's packages that ``path`` imports (relative imports stay inside)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return {n for n in names if n.split(".")[0] in (*ALLOWED, "app")}


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_imports_only_go_down(package):
    wrong = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for name in project_imports(path):
            top = name.split(".")[0]
            if top == package:
                continue
            if top not in ALLOWED[package] or (package == "demo" and top == "train" and name not in DEMO_FROM_TRAIN):
                wrong.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not wrong, "\n".join(wrong)


def test_the_layer_test_sees_imports(tmp_path):
    source = tmp_path / "x.py"
    source.write_text("import os\nfrom train.train import main\nfrom .local import y\nimport ssfnet.io\n")
    assert project_imports(source) == {"train.train", "ssfnet.io"}


def test_the_train_modules_the_app_imports_load_no_torch():
    code = f"import sys; import {', '.join(sorted(DEMO_FROM_TRAIN))}; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
