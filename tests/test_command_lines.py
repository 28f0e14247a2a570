"""Every ``python -m train.X`` (and ``experiments.X``) has ``parse_args(argv)`` and ``main(argv)``, and names itself
that way in its usage (not ``X.py``)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def command_name(path: Path) -> str:
    """``train/bench/parse.py`` -> ``train.bench.parse``; a package's ``__main__.py`` is the package."""
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__main__" else parts)


COMMANDS = sorted(
    command_name(p)
    for package in ("train", "experiments")
    for p in (ROOT / package).rglob("*.py")
    if 'if __name__ == "__main__":' in p.read_text()
)


@pytest.mark.parametrize("name", COMMANDS)
def test_help_shows_the_python_m_command(name, monkeypatch, capsys):
    module = importlib.import_module(name)
    if hasattr(module, "__path__"):  # a package: python -m runs its __main__
        module = importlib.import_module(f"{name}.__main__")
    # As under `python -m`: argv[0] is the module's file, which argparse would name the program by.
    monkeypatch.setattr(sys, "argv", [module.__file__, "--help"])
    assert callable(getattr(module, "parse_args", None)), f"{name} has no parse_args(argv)"
    with pytest.raises(SystemExit) as exit_info:
        module.main(["--help"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: python -m {name} ")
