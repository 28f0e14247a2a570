"""The app's temporary folders: named after the process, removed on exit, swept by the next start.

Scratch files and gallery thumbnails live in ``ssfnet-app-<pid>-*`` and ``ssfnet-thumbs-<pid>-*``
under the system's temporary folder. A normal exit, Ctrl-C and SIGTERM remove them
(:func:`remove_temp_dirs`, :func:`stop_on_sigterm`); an app killed outright (kill -9, power
loss) cannot, so the next app that starts removes the ones whose process is gone
(:func:`sweep_stale_temp_dirs`).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import tempfile
import threading
import time
from pathlib import Path

from ssfnet.files import writer_alive

logger = logging.getLogger(__name__)

PREFIXES = ("ssfnet-app-", "ssfnet-thumbs-")
_OURS = re.compile(r"ssfnet-(?:app|thumbs)-(?P<pid>\d+)-[a-z0-9_]+")
# Folders named before the pid was in the name: removed once surely abandoned.
_LEGACY = re.compile(r"ssfnet-(?:app|thumbs)-[a-z0-9_]{8}")
LEGACY_AGE_S = 24 * 3600.0

_made: list[Path] = []
_lock = threading.Lock()


def make_temp_dir(prefix: str) -> Path:
    """A new folder ``<prefix><pid>-<random>`` in the temporary folder, removed by :func:`remove_temp_dirs`."""
    path = Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-"))
    with _lock:
        _made.append(path)
    return path


def remove_temp_dirs() -> None:
    """Remove every folder this process made with :func:`make_temp_dir`."""
    with _lock:
        made, _made[:] = list(_made), []
    for path in made:
        shutil.rmtree(path, ignore_errors=True)


def sweep_stale_temp_dirs(root: str | os.PathLike | None = None) -> list[Path]:
    """Remove the app folders under ``root`` (default: the temporary folder) whose process is gone.

    Returns:
        The folders removed.
    """
    root = Path(root or tempfile.gettempdir())
    removed = []
    try:
        entries = list(root.iterdir())
    except OSError:
        return removed
    now = time.time()
    for path in entries:
        match = _OURS.fullmatch(path.name)
        try:
            made_at = path.lstat().st_mtime
        except OSError:
            continue
        if match:
            stale = not writer_alive(int(match["pid"]), made_at)
        else:
            stale = bool(_LEGACY.fullmatch(path.name)) and now - made_at > LEGACY_AGE_S
        if stale and path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    if removed:
        logger.info("removed %d temporary folders of apps that are gone", len(removed))
    return removed


def stop_on_sigterm() -> None:
    """Make SIGTERM end the app the way Ctrl-C does (so that ``finally`` blocks and clean-up run).

    Call from the main thread.
    """

    def handler(signum: int, frame) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, handler)
