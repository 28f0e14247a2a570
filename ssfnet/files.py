"""Files written safely: atomic writes, folder swaps, strict JSON, hashes, and whether a writer lives.

Everything the project writes goes through :func:`atomic_write_bytes` (a file) or
:func:`replace_dir` (a folder): a reader never sees half of either, and a crash leaves debris that
:func:`writer_alive` tells apart from another process's write in progress.
"""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import shutil
import tempfile
from pathlib import Path


def current_umask() -> int:
    """The process's umask, read without changing it where ``/proc`` allows (changing it races other threads)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


def json_safe(value: object) -> object:
    """``value`` with every float that is not finite (NaN, inf) replaced by ``None``, for strict JSON.

    Python writes NaN as a bare ``NaN``, which is not JSON: other readers (browsers, jq) refuse the file.
    """
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def json_bytes(value: object, *, indent: int | None = 2) -> bytes:
    """Strict JSON of ``value`` (non-finite floats as ``null``), with a final newline when indented."""
    text = json.dumps(json_safe(value), indent=indent, allow_nan=False)
    return (text + "\n" if indent is not None else text).encode()


def _process_start(pid: int) -> float | None:
    """When process ``pid`` started (seconds since the epoch), where ``/proc`` says so."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        boot = next(
            float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines() if line.startswith("btime")
        )
        return boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def writer_alive(pid: int, made_at: float) -> bool:
    """Whether the process that made a file at ``made_at`` (its mtime) may still be writing it.

    True for this process, and for a running process ``pid`` that started before the file
    was made; a process with that pid started later is another one (pids are reused).
    """
    if pid == os.getpid():
        return True
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: it exists
    except OSError:
        return False
    started = _process_start(pid)
    return started is None or started <= made_at + 2.0  # /proc's boot time is rounded to seconds


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def replace_dir(new: str | Path, target: str | Path) -> Path:
    """Put the finished folder ``new`` in place of ``target`` by renames, never leaving half a folder.

    An existing ``target`` is first renamed aside to ``.NAME.old-PID`` and removed after the swap;
    a crash between the two renames leaves both, which :mod:`ssfnet.checkpoint.recovery` finishes.
    """
    new, target = Path(new), Path(target)
    if not target.exists():
        os.replace(new, target)
        return target
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    if old.exists():
        shutil.rmtree(old)
    os.replace(target, old)
    os.replace(new, target)
    shutil.rmtree(old, ignore_errors=True)
    return target


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to a temporary file beside ``path`` and rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        # mkstemp creates 0600; give the file the permissions a plain open() would.
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
            free = shutil.disk_usage(path.parent).free
            raise OSError(
                err.errno, f"no space left to write {path}: it needs {len(data) / 1e6:.1f} MB, {free / 1e6:.1f} MB free"
            ) from err
        raise
    return path
