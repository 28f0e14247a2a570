"""Paths as the page shows them: named after the app's folders, never the server's absolute layout.

Messages and the fine-tune log go to every user of the page, who need the name of a correction's
trash folder or of a checkpoint, not where the server keeps its files. Messages on the server's
own console (the library's, the trainer's, the app's log) keep their absolute paths.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .settings import Settings

# (absolute folder, the name the page shows for it); "." shows paths inside it relative to it.
Roots = Sequence[tuple[Path, str]]

REPO_ROOT = Path(__file__).resolve().parent.parent
# Before a root: not inside a longer path ("/mnt/data" holds no root "/data").
_START = r"(?<![\w.~/-])"
# After a root: the end of its name (not "corrections2", "corrections-old", "corrections.bak").
_END = r"(?![\w-]|\.[\w-])"


def page_roots(settings: Settings) -> list[tuple[Path, str]]:
    """The folders of an app of ``settings`` that the page names: its corrections, runs and
    checkpoints folders (and the start-up checkpoint's), the working directory, the repository
    (where fine-tunes run) and the Python interpreter and installation (in the fine-tune's log).

    A folder inside the working directory is named by its path from there, another by its own name.
    """
    cwd = Path.cwd()
    folders = [settings.corrections_dir, settings.runs_dir, settings.checkpoints_dir]
    if settings.checkpoint is not None:
        folders.append(Path(settings.checkpoint).parent)
    roots = []
    for folder in folders:
        absolute = Path(os.path.abspath(folder))
        inside = absolute.is_relative_to(cwd) and absolute != cwd
        roots.append((absolute, str(absolute.relative_to(cwd)) if inside else absolute.name or "."))
    roots += [(cwd, "."), (REPO_ROOT, "."), (Path(sys.executable), "python"), (Path(sys.prefix), "<python>")]
    return roots


def _variants(roots: Roots) -> list[tuple[str, str]]:
    """``(absolute text, name)`` of each root as given and as resolved (links), longest first."""
    pairs = {}
    for folder, name in roots:
        for form in (Path(os.path.abspath(folder)), Path(folder).resolve()):
            if str(form) != form.anchor:  # "/" would match everything
                pairs.setdefault(str(form), name)
    return sorted(pairs.items(), key=lambda pair: -len(pair[0]))


def shown_path(path: str | os.PathLike, roots: Roots) -> str:
    """``path`` named from the innermost of ``roots`` that holds it (``corrections/trash/meta``); a path
    outside all of them by its own name only."""
    for form in (Path(os.path.abspath(path)), Path(path).resolve()):
        for text, name in _variants(roots):
            if form.is_relative_to(text):
                inner = form.relative_to(text)
                if name == ".":
                    return str(inner)
                return name if inner == Path(".") else f"{name}/{inner.as_posix()}"
    return Path(path).name


def shown_text(text: str, roots: Roots) -> str:
    """``text`` (a message, a log) with every absolute path under ``roots`` named as :func:`shown_path` does."""
    for absolute, name in _variants(roots):
        inner = "" if name == "." else f"{name}/"
        text = re.sub(_START + re.escape(absolute + os.sep) + r"(?=[^\s/])", lambda _, inner=inner: inner, text)
        text = re.sub(_START + re.escape(absolute) + _END, lambda _, name=name: name, text)
    return text
