"""Interrupted checkpoint swaps and stale temporaries: finished, rolled back or removed."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import time
from pathlib import Path

from ..files import writer_alive
from .schema import METADATA_FILE

logger = logging.getLogger("ssfnet.checkpoint")

# Temporaries of a swap: ``.<name>.tmp-<pid>-<random>`` (new folder) and ``.<name>.old-<pid>`` (old one).
_TEMPORARY = re.compile(r"\.(?P<name>.+)\.(?P<kind>tmp|old)-(?P<pid>\d+)(?:-[a-z0-9_]+)?")
# Temporaries named before the writer's pid was in the name: removed once surely abandoned.
_LEGACY_TEMPORARY = re.compile(r"\.(?P<name>.+)\.tmp-[a-z0-9_]{8}")
LEGACY_TEMPORARY_AGE_S = 3600.0


def _remove(path: Path) -> None:
    """Remove a file or folder as far as possible (a read-only folder must not stop a reader)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)


def recover_checkpoint(directory: str | Path) -> None:
    """Finish or roll back an interrupted replacement of ``directory`` and drop its dead temporaries.

    A writer killed between the two renames of :func:`save_checkpoint` leaves no ``directory``
    but ``.<name>.old-<pid>`` (the previous checkpoint) and ``.<name>.tmp-<pid>-*`` (the new
    one, complete once it has its metadata): the new one is put in place if complete, else the
    old one is put back. Temporaries of a living writer are left alone; run-checkpoint staging
    folders (``.<name>.staging-*``) are left to ``train.engine``.
    """
    directory = Path(directory)
    parent, name = directory.parent, directory.name
    try:
        entries = [p for p in parent.iterdir() if p.name.startswith(f".{name}.")]
    except OSError:
        return
    if not entries or any(p.name.startswith(f".{name}.staging-") for p in entries):
        return
    dead_tmp: dict[int, list[Path]] = {}
    dead_old: dict[int, Path] = {}
    now = time.time()
    for path in entries:
        match = _TEMPORARY.fullmatch(path.name)
        try:
            made_at = path.lstat().st_mtime
        except OSError:
            continue
        if match and match["name"] == name:
            pid = int(match["pid"])
            if writer_alive(pid, made_at):
                continue
            if match["kind"] == "old":
                dead_old[pid] = path
            else:
                dead_tmp.setdefault(pid, []).append(path)
        elif _LEGACY_TEMPORARY.fullmatch(path.name) and now - made_at > LEGACY_TEMPORARY_AGE_S:
            dead_tmp.setdefault(-1, []).append(path)
    for pid, old in sorted(dead_old.items()):
        if not directory.exists():
            complete = [p for p in dead_tmp.get(pid, []) if (p / METADATA_FILE).is_file()]
            source, action = (complete[0], "finished") if complete else (old, "rolled back")
            try:
                os.replace(source, directory)
                logger.warning("%s: %s the replacement that process %d left half done", directory, action, pid)
            except OSError:
                continue  # another process recovered it first
        _remove(old)
    for paths in dead_tmp.values():
        for path in paths:
            if path.exists():
                _remove(path)
                logger.info("removed %s, left by a writer that is gone", path)


def recover_checkpoints(root: str | Path) -> None:
    """:func:`recover_checkpoint` for every checkpoint name that has temporaries directly under ``root``."""
    root = Path(root)
    try:
        names = {
            m["name"]
            for p in root.iterdir()
            if (m := _TEMPORARY.fullmatch(p.name) or _LEGACY_TEMPORARY.fullmatch(p.name))
        }
    except OSError:
        return
    for name in sorted(names):
        recover_checkpoint(root / name)
