"""Fine-tuning from the app: ``python -m train.finetune`` as a background process, one at a time.

A fine-tune is a server resource, not per-user state: the app holds one :class:`FinetuneRunner`,
which starts at most one process and which every browser tab polls. The process runs in its own
process group (so that a cancel or the app's shutdown also reaches its data-loading workers) and
writes into its own run folder, from which :func:`train.finetune.status.read_progress` reads the phase
and the training progress; its console output goes to ``console.log`` there.

Cancelling sends SIGTERM (the fine-tune then stops without publishing) and creates the run's
``STOP`` file; a process still alive ``grace_s`` later is killed with its group. A thread waits
for each process, so that one which has ended (finished, cancelled or killed) is reaped at once
and never lingers as a zombie until someone looks at the panel.

New checkpoints are published into the ``finetuned/`` folder of the app's checkpoints folder
(:data:`train.finetune.defaults.FINETUNED_DIR`), which git ignores and the app lists too.
"""

from __future__ import annotations

import html
import os
import signal
import subprocess
import sys
import threading
import time
import weakref
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ssfnet.labels import LabelSet
from ssfnet.metrics import ConfusionMatrix
from train.finetune.defaults import FINETUNED_DIR, HOLDOUT, lower_priority
from train.finetune.status import REPORT_FILE, read_json, read_progress, utc_stamp

REPO_ROOT = Path(__file__).resolve().parent.parent
LOG_FILE = "console.log"
# Run folders looked at for the last finished fine-tune, newest first.
_RUNS_READ = 20


ENDED = ("finished", "cancelled", "failed")


class FinetuneBusy(RuntimeError):
    """A fine-tune is already running in this app."""


class FinetuneNotYours(PermissionError):
    """Someone else started the running fine-tune (only they, or an admin, may cancel it)."""


@dataclass(frozen=True)
class FinetuneRequest:
    """The options a user picks in the panel (everything else is the server's: ``--finetune-args``).

    Args:
        base: Checkpoint folder to start from (one the app offers).
        minutes: Budget of the whole fine-tune, evaluations included.
        lr: Base learning rate; None: the fine-tune's own choice (for a released base, a tenth
            of the rate it was trained at, with its optimizer).
        corrections_share: Share of every epoch drawn from the corrections; None: the fine-tune
            chooses it from how the base parses the corrections.
        holdout: Share of the corrections held out to score before and after.
        freeze_backbone: Train only the decoder.
        blend: Share of the fine-tune's change the published weights keep; None: chosen with the share.
        publish_anyway: Publish even a result that scores lower than its base on the corrections
            it trained on or on the held-out ones (by default such a run publishes nothing).
        approved_only: Train and score on the approved corrections only (``--approved-only``).
    """

    base: str
    minutes: float = 10.0
    lr: float | None = None
    corrections_share: float | None = None
    holdout: float = HOLDOUT
    freeze_backbone: bool = False
    blend: float | None = None
    publish_anyway: bool = False
    approved_only: bool = False

    def __post_init__(self) -> None:
        checks = (
            (0 < self.minutes <= 24 * 60, f"the time budget must be between 0 and 1440 minutes, got {self.minutes}"),
            (self.lr is None or 0 < self.lr < 1, f"the learning rate must be between 0 and 1, got {self.lr}"),
            (
                self.corrections_share is None or 0 < self.corrections_share <= 1.0,
                f"the corrections' share must be in (0, 1], got {self.corrections_share}",
            ),
            (0 <= self.holdout < 1, f"the held-out share must be in [0, 1), got {self.holdout}"),
            (
                self.blend is None or 0 < self.blend <= 1.0,
                f"the share of the change kept must be in (0, 1], got {self.blend}",
            ),
        )
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    def args(self) -> list[str]:
        return [
            "--base",
            self.base,
            "--max-minutes",
            f"{self.minutes:g}",
            *(["--lr", f"{self.lr:g}"] if self.lr is not None else []),
            *(["--corrections-share", f"{self.corrections_share:g}"] if self.corrections_share is not None else []),
            "--holdout",
            f"{self.holdout:g}",
            "--freeze-backbone" if self.freeze_backbone else "--no-freeze-backbone",
            *(["--blend", f"{self.blend:g}"] if self.blend is not None else []),
            *(["--publish-anyway"] if self.publish_anyway else []),
            *(["--approved-only"] if self.approved_only else []),
        ]


@dataclass
class FinetuneJob:
    """One started fine-tune process and its run folder."""

    run_dir: Path
    process: subprocess.Popen
    request: FinetuneRequest
    command: list[str]
    started: float
    owner: str | None = None
    cancel_requested: float | None = None

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    @property
    def name(self) -> str:
        return self.run_dir.name

    def progress(self) -> dict:
        """:func:`train.finetune.status.read_progress` plus the process's ``returncode`` and ``elapsed_s``.

        A process that ended without writing its end (killed, or stopped by an error before its
        run folder was set up) counts as cancelled when a cancel was requested, else as failed.
        """
        info = read_progress(self.run_dir)
        code = self.process.poll()
        if code is not None and info["status"] not in ENDED:
            info["status"] = "cancelled" if self.cancel_requested else "failed"
        info["returncode"] = code
        info["elapsed_s"] = time.time() - self.started
        return info

    def log_tail(self, lines: int = 40, max_bytes: int = 65536) -> str:
        """The last ``lines`` lines of the console output, progress-bar redraws collapsed."""
        try:
            with open(self.run_dir / LOG_FILE, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - max_bytes))
                text = f.read().decode("utf-8", errors="replace")
        except OSError:
            return ""
        # tqdm redraws its bar with carriage returns: keep what the last redraw shows.
        shown = [line.rsplit("\r", 1)[-1] for line in text.replace("\r\n", "\n").split("\n")]
        return "\n".join([line for line in shown if line.strip()][-lines:])


def _stop(processes: list[subprocess.Popen], grace_s: float = 5.0) -> None:
    """Ask running processes to stop, then kill their process groups (at app exit)."""
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for process in processes:
        try:
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _kill_group(process)


def _kill_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    process.wait()


def _reap(process: subprocess.Popen) -> None:
    """Wait for ``process`` to end (on a thread of its own): its exit status is collected at once."""
    process.wait()


def _kill_after(process: subprocess.Popen, grace_s: float) -> None:
    """Kill ``process``'s group if it is still alive ``grace_s`` after a cancel (on a thread of its own)."""
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        _kill_group(process)


class FinetuneRunner:
    """Starts, watches and cancels the app's fine-tune process (at most one at a time).

    Args:
        corrections_dir: The app's corrections folder (what is fine-tuned on).
        checkpoints_dir: The app's checkpoints folder: new checkpoints are published into its
            ``finetuned/`` folder (which the app offers too).
        runs_dir: Parent of the run folders (``finetune-<UTC timestamp>``).
        device: ``--device`` of the fine-tune; None = the fine-tune's default (CUDA when available).
        extra_args: More ``train.finetune`` options, set by whoever runs the server (data
            sources, crop size, workers ...); the panel's choices come after them and win.
        python: Interpreter to run ``-m train.finetune`` with.
        grace_s: Seconds a cancelled process gets to stop before its process group is killed.
    """

    def __init__(
        self,
        *,
        corrections_dir: str | Path,
        checkpoints_dir: str | Path,
        runs_dir: str | Path,
        device: str | None = None,
        extra_args: tuple[str, ...] = (),
        python: str = sys.executable,
        grace_s: float = 120.0,
    ) -> None:
        # Absolute: the process runs in the repository root, the app maybe elsewhere.
        self.corrections_dir = Path(corrections_dir).resolve()
        self.publish_dir = Path(checkpoints_dir).resolve() / FINETUNED_DIR
        self.runs_dir = Path(runs_dir).resolve()
        self.device = device
        self.on_cpu = (device or "").startswith("cpu") or (device is None and not torch.cuda.is_available())
        self.extra_args = tuple(extra_args)
        self.python = python
        self.grace_s = grace_s
        self._job: FinetuneJob | None = None
        self._lock = threading.Lock()
        self._processes: list[subprocess.Popen] = []
        # A fine-tune must not outlive the app that started it (and nobody could cancel it then).
        weakref.finalize(self, _stop, self._processes)

    def command(self, request: FinetuneRequest, run_dir: Path) -> list[str]:
        """The command line of a fine-tune writing into ``run_dir``."""
        command = [self.python, "-m", "train.finetune", "--corrections", str(self.corrections_dir)]
        command += ["--checkpoints-dir", str(self.publish_dir), "--out", str(run_dir)]
        if self.device:
            command += ["--device", self.device]
        return command + list(self.extra_args) + request.args()

    @property
    def job(self) -> FinetuneJob | None:
        """The running or last fine-tune of this app (its kill deadline enforced on every look)."""
        with self._lock:
            job = self._job
        if job is not None and job.running and job.cancel_requested is not None:
            if time.time() - job.cancel_requested > self.grace_s:
                _kill_group(job.process)
        return job

    def start(self, request: FinetuneRequest, owner: str | None = None) -> FinetuneJob:
        """Start a fine-tune for ``owner`` (who may cancel it; see :meth:`cancel`).

        Raises:
            FinetuneBusy: one is running already.
            OSError: the run folder or the process could not be created.
        """
        ended = self._job
        if ended is not None and ended.running and read_progress(ended.run_dir)["status"] in ENDED:
            # It has written its end and is only exiting (a second or two, more on a busy machine): a
            # start right after "Done" waits for that rather than being refused.
            try:
                ended.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
        with self._lock:
            if self._job is not None and self._job.running:
                raise FinetuneBusy(f"a fine-tune is already running ({self._job.name}); wait for it or cancel it")
            run_dir = self.runs_dir / f"finetune-{utc_stamp()}"
            suffix = 2
            while run_dir.exists():
                run_dir = self.runs_dir / f"finetune-{utc_stamp()}-{suffix}"
                suffix += 1
            run_dir.mkdir(parents=True)
            command = self.command(request, run_dir)
            env = {**os.environ, "PYTHONUNBUFFERED": "1", "TQDM_MININTERVAL": "5"}
            if self.on_cpu and "OMP_NUM_THREADS" not in env:
                # Leave a core to the app: two processes whose OpenMP pools each take every core
                # stall each other for seconds per step (measured: 25x slower steps on 2 cores).
                env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 2) - 1))
            env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
            with open(run_dir / LOG_FILE, "wb") as log:
                log.write(("$ " + " ".join(command) + "\n").encode())
                log.flush()
                process = subprocess.Popen(
                    command,
                    cwd=REPO_ROOT,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # its own process group: see the module docstring
                )
            lower_priority(process.pid)
            self._processes[:] = [p for p in self._processes if p.poll() is None] + [process]
            threading.Thread(target=_reap, args=(process,), name=f"reap-{run_dir.name}", daemon=True).start()
            self._job = FinetuneJob(run_dir, process, request, command, started=time.time(), owner=owner)
            return self._job

    def cancel(self, by: str | None = None, *, admin: bool = True) -> bool:
        """Ask the running fine-tune to stop, for ``by`` (its owner, unless ``admin``); False when none is running.

        Raises:
            FinetuneNotYours: ``by`` is not the fine-tune's owner and not an admin.
        """
        job = self.job
        if job is None or not job.running:
            return False
        if not admin and (by is None or by != job.owner):
            raise FinetuneNotYours(f"the fine-tune {job.name} was started by someone else")
        if job.cancel_requested is None:
            job.cancel_requested = time.time()
            # The deadline holds even if nobody looks at the panel again.
            threading.Thread(
                target=_kill_after, args=(job.process, self.grace_s), name=f"cancel-{job.name}", daemon=True
            ).start()
        # The stop file also covers the moment before the process has installed its signal handler.
        (job.run_dir / "STOP").touch()
        job.process.send_signal(signal.SIGTERM)
        return True

    def last_report(self) -> tuple[str, dict] | None:
        """``(run folder name, report)`` of the last fine-tune that finished: this app's, else the newest
        run folder here with a finished ``report.json`` (a fine-tune before the app's restart); None if none."""
        job = self.job
        if job is not None:
            info = job.progress()
            if info["status"] == "finished" and info.get("report"):
                return job.name, info["report"]
            if job.running:
                return None
        runs = sorted(self.runs_dir.glob("finetune-*"), key=lambda p: p.name, reverse=True)
        for run in runs[:_RUNS_READ]:
            report = read_json(run / REPORT_FILE)
            if report is not None and report.get("status") == "finished":
                return run.name, report
        return None

    def shutdown(self, grace_s: float = 5.0) -> None:
        """Stop a running fine-tune (SIGTERM, then SIGKILL of its group after ``grace_s``)."""
        _stop(self._processes, grace_s)


# ---------------------------------------------------------------------------------------------
# What the panel shows


# The evaluation sets as the panel names them, in the order it lists them.
SETS_SHOWN = (
    ("held_out_corrections", "held-out corrections (never trained on)"),
    ("train_corrections", "corrections trained on"),
    ("original_val", "original validation photos (forgetting)"),
)


def _change(before: dict, after: dict) -> str:
    return f"{before['miou']:.1f} → {after['miou']:.1f} ({after['miou'] - before['miou']:+.1f})"


def figures_html(report: dict) -> str:
    """The figures of a fine-tune's ``report.json``: mIoU before → after on each evaluation set, with the
    images scored of those there were, the original sources' validation photos one by one (forgetting),
    and the training time the budget gave; an empty string for a report without them."""
    metrics = report.get("metrics") or {}
    available = (report.get("evaluation") or {}).get("available") or {}
    rows = []
    for key, label in SETS_SHOWN:
        before = (metrics.get("before") or {}).get(key)
        after = (metrics.get("after") or {}).get(key)
        there = available.get(key)
        if before and after:
            count = f"{after['images']} of {there}" if there else f"{after['images']}"
            row = f"<li>mIoU on the {label}, {count} scored: <b>{_change(before, after)}</b>"
            earlier = {s.get("name"): s for s in before.get("sources") or [] if isinstance(s, dict)}
            sources = [
                f"<li>{html.escape(str(s['name']))} ({s['images']} photos): {_change(earlier[s['name']], s)}</li>"
                for s in after.get("sources") or []
                if isinstance(s, dict) and s.get("name") in earlier
            ]
            rows.append(row + (f"<ul>{''.join(sources)}</ul>" if sources else "") + "</li>")
        elif there:
            rows.append(f"<li>{label}: none of {there} scored (the budget's share for scoring ran out)</li>")
    settings = report.get("settings") or {}
    if settings.get("reason"):
        rows.insert(0, f"<li>Settings: {html.escape(str(settings['reason']))}</li>")
    training = report.get("training") or {}
    if training.get("seconds") is not None:
        budget = training.get("budget_minutes")
        of = f" of the {budget:g}-minute budget" if budget else ""
        rows.append(
            f"<li>Training: {training['seconds'] / 60:.1f} minutes{of}, {report.get('iterations', 0)} iterations</li>"
        )
    return f"<ul>{''.join(rows)}</ul>" if rows else ""


def status_html(job: FinetuneJob | None, *, corrections: int = 0, info: dict | None = None) -> str:
    """The panel's status: a progress bar and what the fine-tune is doing, or how it ended.

    Args:
        job: The app's running or last fine-tune, if any.
        corrections: How many corrections are saved (shown when no fine-tune has run).
        info: ``job.progress()``, if already read.
    """
    if job is None:
        return f"<p>No fine-tune has run since the app started. {corrections} saved correction(s) to train on.</p>"
    info = info or job.progress()
    percent = round(100 * info["fraction"])
    minutes, seconds = divmod(int(info["elapsed_s"]), 60)
    name = html.escape(job.name)
    bar = f"<progress max='100' value='{percent}' style='width:100%'></progress>"
    status = info["status"]
    if status in ("starting", "running"):
        detail = html.escape(info["phase"])
        if info.get("iteration") is not None:
            total = f"/{info['total_iters']}" if info.get("total_iters") else ""
            detail += f" · iteration {info['iteration']}{total} · loss {info['loss']:.3f}"
        elif info.get("message"):
            detail += f" · {html.escape(info['message'])}"
        waiting = " · cancelling…" if job.cancel_requested else ""
        return (
            f"{bar}<p><b>Fine-tuning</b> ({name}): <b>{percent}%</b> · {detail} · "
            f"{minutes}:{seconds:02d} elapsed{waiting}</p>"
        )
    report = info.get("report") or {}
    if status == "finished":
        figures = figures_html(report)
        worse = " and ".join(
            f"{html.escape(str(w.get('name')))} ({w.get('before', 0):.1f} → {w.get('after', 0):.1f})"
            for w in report.get("worse") or []
            if isinstance(w, dict)
        )
        if not report.get("checkpoint"):
            return (
                f"{bar}<p><b>Not published</b> ({name}, {minutes}:{seconds:02d}): the fine-tuned model scores "
                f"<b>lower than its base</b> on {worse or 'what it was scored on'}, so no checkpoint was "
                "written. Tick <i>Publish even if worse</i> to publish such a run.</p>"
                f"{figures}"
            )
        checkpoint = Path(report["checkpoint"]).name
        warning = f"<p>⚠️ <b>Worse than its base</b> on {worse}: published because you asked.</p>" if worse else ""
        return (
            f"{bar}<p><b>Done</b> ({name}, {minutes}:{seconds:02d}): new checkpoint "
            f"<code>{html.escape(checkpoint)}</code>, now in the checkpoint lists; <i>Compare on a held-out "
            f"correction</i> shows it beside its base.</p>{warning}{figures}"
        )
    if status == "cancelled":
        return f"<p><b>Cancelled</b> ({name}): no checkpoint was written.</p>"
    error = report.get("error") or f"the process exited with status {info['returncode']}"
    return f"<p><b>Failed</b> ({name}): {html.escape(error)}. See the log below.</p>"


def agreement(prediction: np.ndarray, labels: np.ndarray, label_set: LabelSet) -> float:
    """Percent of labelled pixels where ``prediction`` agrees with ``labels`` (coarse labels: any member).

    Both maps are H x W ids of ``label_set``; 255 in ``labels`` is not counted.
    """
    cm = ConfusionMatrix(label_set.num_classes, label_set=label_set)
    cm.update(prediction, labels)
    return cm.compute()["pixel_acc"]
