"""The fine-tune run folder's status protocol: what a running fine-tune writes, and what the app reads.

No torch here: the app polls a fine-tune it runs as a separate process through
:func:`read_progress`, and imports only this module for it.
"""

from __future__ import annotations

import json
import math
import os
import signal
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

PLAN_FILE = "finetune.json"
STATUS_FILE = "status.json"
REPORT_FILE = "report.json"
# Share of the whole run each phase takes, for one progress fraction (training dominates).
PHASES: dict[str, float] = {
    "setup": 0.03,
    "evaluate-before": 0.1,
    "train": 0.74,
    "evaluate-after": 0.1,
    "publish": 0.03,
}


class Cancelled(Exception):
    """The run was asked to stop (signal, stop file or cancel event)."""


def _finite(value: object) -> object:
    """``value`` with every non-finite float replaced by None (strict JSON)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def write_status_json(path: Path, value: dict) -> None:
    """Write ``value`` as strict JSON beside ``path`` and rename it into place (readers never see half)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(_finite(value), f, indent=2, allow_nan=False)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class Progress:
    """Writes ``status.json`` and prints phase lines; raises :class:`Cancelled` when a stop is requested."""

    def __init__(self, run_dir: Path, stop_file: Path, cancel: threading.Event) -> None:
        self.run_dir = run_dir
        self.stop_file = stop_file
        self.cancel = cancel
        self.phase = "setup"
        self.started = time.time()
        self._written = 0.0

    def stop_requested(self) -> bool:
        if not self.cancel.is_set() and self.stop_file.exists():
            self.cancel.set()
        return self.cancel.is_set()

    def check(self) -> None:
        if self.stop_requested():
            raise Cancelled("stop requested")

    def enter(self, phase: str, message: str) -> None:
        self.check()
        self.phase = phase
        step = list(PHASES).index(phase) + 1
        print(f"[finetune] phase {step}/{len(PHASES)} {phase}: {message}", flush=True)
        self.write(0.0, message, force=True)

    def write(self, fraction: float, message: str = "", *, force: bool = False, **extra) -> None:
        # Throttled: an evaluation reports every batch, the app polls every few seconds.
        now = time.time()
        if not force and now - self._written < 1.0:
            return
        self._written = now
        status = {
            "status": "running",
            "phase": self.phase,
            "phase_fraction": round(min(max(fraction, 0.0), 1.0), 4),
            "message": message,
            "started": self.started,
            "updated": now,
            "pid": os.getpid(),
            **extra,
        }
        write_status_json(self.run_dir / STATUS_FILE, status)

    def finish(self, status: str, message: str, **extra) -> None:
        payload = {
            "status": status,
            "phase": self.phase,
            "phase_fraction": 1.0 if status == "finished" else 0.0,
            "message": message,
            "started": self.started,
            "updated": time.time(),
            "pid": os.getpid(),
            **extra,
        }
        write_status_json(self.run_dir / STATUS_FILE, payload)
        print(f"[finetune] {status}: {message}", flush=True)


def last_jsonl_record(path: Path) -> dict | None:
    """The last complete line of a JSON-lines file, reading only its end."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 8192))
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        try:
            return json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
    return None


def read_json(path: Path) -> dict | None:
    try:
        value = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None


def read_progress(run_dir: str | Path) -> dict:
    """Where a fine-tune run stands, from its folder (for the app, which runs it as a process).

    Returns:
        ``status`` (``starting``, ``running``, ``finished``, ``cancelled``, ``failed``),
        ``phase``, ``fraction`` (0-1 of the whole run), ``message``, and while training
        ``iteration``, ``total_iters`` (None on a time budget) and ``loss``; once ended, the
        ``report`` dict.
    """
    run_dir = Path(run_dir)
    status = read_json(run_dir / STATUS_FILE) or {"status": "starting", "phase": "setup", "phase_fraction": 0.0}
    phase = status.get("phase", "setup")
    names = list(PHASES)
    index = names.index(phase) if phase in names else 0
    inside = float(status.get("phase_fraction", 0.0))
    result = {
        "status": status.get("status", "starting"),
        "phase": phase,
        "message": status.get("message", ""),
        "iteration": None,
        "total_iters": None,
        "loss": None,
    }
    if phase == "train" and result["status"] == "running":
        resolved = (read_json(run_dir / "config.json") or {}).get("resolved", {})
        last = last_jsonl_record(run_dir / "log.jsonl")
        result["total_iters"] = resolved.get("total_iters")
        if last is not None:
            result["iteration"], result["loss"] = last.get("iteration"), last.get("loss")
            if resolved.get("budget_s"):
                inside = float(last.get("elapsed_s", 0.0)) / float(resolved["budget_s"])
            elif resolved.get("total_iters"):
                inside = float(last.get("iteration", 0)) / float(resolved["total_iters"])
    fraction = sum(PHASES[n] for n in names[:index]) + PHASES[names[index]] * min(max(inside, 0.0), 1.0)
    if result["status"] == "finished":
        fraction = 1.0
    result["fraction"] = round(fraction, 4)
    if result["status"] in ("finished", "cancelled", "failed"):
        result["report"] = read_json(run_dir / REPORT_FILE)
    return result


def utc_stamp(now: datetime | None = None) -> str:
    """``YYYYmmddTHHMMSSZ`` in UTC, the suffix of run folders and published checkpoints."""
    return (now or datetime.now(timezone.utc)).strftime("%Y%m%dT%H%M%SZ")


@contextmanager
def signals_cancel(cancel: threading.Event) -> Iterator[None]:
    """SIGTERM and SIGINT set ``cancel`` (which the trainer polls too) instead of killing the process.

    Installed only in the main thread; a second Ctrl-C raises KeyboardInterrupt as usual.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame) -> None:
        if signum == signal.SIGINT and cancel.is_set():
            raise KeyboardInterrupt
        cancel.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
