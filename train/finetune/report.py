"""What a fine-tune returns: :class:`FinetuneReport`, whose :meth:`~FinetuneReport.to_dict` is ``report.json``.

No torch here, as in :mod:`.status`: the report is plain data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..train import TrainSummary

# The keys of report.json, in order: a run stopped before publishing, and one that finished.
CANCELLED_KEYS = ("status", "checkpoint", "base", "run", "phase", "elapsed_s")
FINISHED_KEYS = (
    "status",
    "checkpoint",
    "published",
    "worse",
    "note",
    "base",
    "run",
    "metrics",
    "delta_miou",
    "held_out_ids",
    "skipped_corrections",
    "iterations",
    "settings",
    "evaluation",
    "training",
    "elapsed_s",
    "train_summary",
)


@dataclass(frozen=True)
class FinetuneReport:
    """The outcome of :func:`train.finetune.run.run_finetune`, finished or cancelled.

    A cancelled run has the first five fields and ``phase``; a finished one has every field but
    ``phase``. :meth:`to_dict` gives each its own keys, as ``report.json`` holds them.

    Attributes:
        status: ``finished`` or ``cancelled``.
        checkpoint: The published checkpoint folder, absolute (None: nothing published).
        base: The base checkpoint folder (absolute when finished).
        run: The run folder (absolute when finished).
        elapsed_s: Seconds since the time budget started.
        phase: The phase a cancelled run stopped in.
        published: Whether a checkpoint was published.
        worse: Where the result scores lower than its base: ``{"set", "name", "before", "after"}`` each.
        note: Why nothing was published, or the warning it was published with ("" if none).
        metrics: ``{"before": ..., "after": ...}``: evaluation set -> its scores (or None).
        delta_miou: Evaluation set -> mIoU after minus before (the sets scored both times).
        held_out_ids: The corrections held out from training.
        skipped_corrections: The corrections left out, each with its folder (``root``) and why.
        iterations: Training iterations done.
        settings: How the corrections' share and the blend were chosen (:mod:`train.finetune.adapt`).
        evaluation: The images of each set scored and available, and the seconds the first scoring took.
        training: The time budget, the minutes training got and the seconds it took.
        train_summary: The trainer's summary.
    """

    status: str
    checkpoint: str | None
    base: str
    run: str
    elapsed_s: float
    phase: str | None = None
    published: bool = False
    worse: list[dict] = field(default_factory=list)
    note: str = ""
    metrics: dict[str, dict] = field(default_factory=dict)
    delta_miou: dict[str, float] = field(default_factory=dict)
    held_out_ids: list[str] = field(default_factory=list)
    skipped_corrections: list[dict] = field(default_factory=list)
    iterations: int = 0
    settings: dict | None = None
    evaluation: dict = field(default_factory=dict)
    training: dict = field(default_factory=dict)
    train_summary: TrainSummary | None = None

    def to_dict(self) -> dict:
        """The report as ``report.json`` holds it: a cancelled run's keys or a finished one's, in order."""
        keys = CANCELLED_KEYS if self.status == "cancelled" else FINISHED_KEYS
        record = {key: getattr(self, key) for key in keys}
        if "train_summary" in record and self.train_summary is not None:
            record["train_summary"] = self.train_summary.to_dict()
        return record
