"""Publishing a fine-tune: the new checkpoint with its lineage and scores, ``report.json`` and the plot.

A fine-tune that scores lower than its base on the corrections it trained on, or on the held-out
ones (:data:`GUARDED_SETS`), publishes nothing unless ``--publish-anyway`` is given: its report
says what got worse (and the panel shows it), and the trained weights stay in the run's ``last/``.

The checkpoint's metadata names the base, the run and the corrections folders by their paths
from the folder it is published in (``../tiny``, ``../../corrections``): never the server's
absolute layout, which the metadata would show to every user of the app and to every clone it
is committed to. The run's own ``report.json`` stays on the server and keeps absolute paths.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from ssfnet.checkpoint import default_name, publish

from ..config import TrainConfig
from ..plots import plot_report
from ..train import TrainSummary
from ..utils import write_json
from .data import FinetuneRun, Plan
from .report import FinetuneReport
from .score import EVAL_SETS
from .status import REPORT_FILE

PLOT_FILE = "finetune.png"
# The sets a fine-tune must not lose on to be published (each scored before and after on the same
# images), and how messages name them.
GUARDED_SETS = (
    ("train_corrections", "the corrections it trained on"),
    ("held_out_corrections", "the held-out corrections"),
)


def losses(before: dict, after: dict) -> list[dict]:
    """Where the fine-tuned model scores a lower mIoU than its base: ``{"set", "name", "before", "after"}`` each."""
    found = []
    for key, name in GUARDED_SETS:
        was, now = (before.get(key) or {}).get("miou"), (after.get(key) or {}).get("miou")
        if was is not None and now is not None and now < was:
            found.append({"set": key, "name": name, "before": was, "after": now})
    return found


def losses_text(worse: list[dict]) -> str:
    """``the held-out corrections (mIoU 78.00 -> 65.40)``, joined with "and"."""
    return " and ".join(f"{w['name']} (mIoU {w['before']:.2f} -> {w['after']:.2f})" for w in worse)


@dataclass
class Outcome:
    """What training produced: the scores before and after, the trainer's summary and config, the model."""

    before: dict
    after: dict
    summary: TrainSummary
    trainer: TrainConfig
    model: torch.nn.Module
    trained_meta: dict
    dtype: torch.dtype | None  # what the weights are stored in (None: float32), as they were rounded to
    eval_s: float | None = None  # what the evaluation before training took (loading the model included)


def relative_path(path: str | os.PathLike, folder: str | os.PathLike) -> str:
    """``path`` as seen from ``folder`` (``../tiny``), both resolved; how a checkpoint's metadata names folders."""
    return Path(os.path.relpath(Path(path).resolve(), Path(folder).resolve())).as_posix()


def lineage_entries(base: Path, base_meta: dict, home: Path) -> list[dict]:
    """The new checkpoint's lineage: its base, then the base's own lineage, paths from ``home``.

    The base's entries name paths from the base's folder (or, written before that, absolute ones):
    both are re-anchored at ``home``, where the new checkpoint goes.
    """
    entries = [{"name": base.name, "path": relative_path(base, home), "created": base_meta.get("created")}]
    for entry in base_meta.get("lineage") or []:
        if isinstance(entry.get("path"), str):
            entry = dict(entry, path=relative_path(base.parent / entry["path"], home))
        entries.append(entry)
    return entries


def finetune_record(run: FinetuneRun, plan: Plan, outcome: Outcome) -> dict:
    """The new checkpoint's ``finetune`` metadata: base, corrections (ids trained on and held out), recipe, scores.

    Paths are relative to the folder the checkpoint is published in.
    """
    config, base, run_dir = run.config, run.base, run.run_dir
    home = Path(config.checkpoints_dir)
    corrections, summary, trainer = plan.corrections, outcome.summary, outcome.trainer
    return {
        "base": dict(plan.record["base"], path=relative_path(base, home)),
        "corrections": [
            {"root": relative_path(c.root, home), "ids": c.train_ids, "held_out_ids": c.held_out_ids}
            for c in corrections
        ],
        "held_out_ids": sorted(i for c in corrections for i in c.held_out_ids),
        "holdout": config.holdout,
        "holdout_seed": config.train.seed,
        "corrections_share": plan.share,
        "lr": trainer.lr,
        "freeze_backbone": trainer.freeze_backbone,
        "blend": config.blend,
        # How the share and the blend were chosen (train.finetune.adapt): the domain shift measured and why.
        "settings": plan.record.get("settings"),
        "iterations": summary.iteration,
        "train_seconds": summary.elapsed_s,
        "metrics": {"before": outcome.before, "after": outcome.after},
        "run": relative_path(run_dir, home),
    }


def checkpoint_metadata(run: FinetuneRun, plan: Plan, outcome: Outcome) -> dict:
    """The new checkpoint's metadata: its training data and splits, the fine-tune, its lineage and scores."""
    config, base, base_meta, run_dir = run.config, run.base, run.base_meta, run.run_dir
    home = Path(config.checkpoints_dir)  # the new checkpoint's parent: the metadata's paths start there
    originals, train_cfg, after = plan.originals, config.train, outcome.after
    metadata = {
        "input_size": plan.input_size,
        "training": {
            "data": [o.text for o in originals],
            "splits": [{"spec": o.text, "val_fraction": o.val_fraction, "split_seed": o.split_seed} for o in originals],
            "val_fraction": train_cfg.val_fraction,
            "split_seed": train_cfg.split_seed,
            "init_checkpoint": relative_path(base, home),
            "run": relative_path(run_dir, home),
        },
        "finetune": finetune_record(run, plan, outcome),
        "lineage": lineage_entries(base, base_meta, home),
        "metrics": {
            "held_out_corrections_miou": (after["held_out_corrections"] or {}).get("miou"),
            "val_miou": (after["original_val"] or {}).get("miou"),
        },
    }
    terms = base_meta.get("data_terms")
    if terms or any(o.spec.kind == "viton" for o in originals):
        metadata["data_terms"] = terms or "trained on VITON (research use only)"
    return metadata


def publish_unless_worse(
    run: FinetuneRun, outcome: Outcome, metadata: dict, worse: list[dict]
) -> tuple[Path | None, str]:
    """The published checkpoint folder (None: not published, being ``worse`` than the base) and a note saying why."""
    config, base, run_dir = run.config, run.base, run.run_dir
    if worse and not config.publish_anyway:
        note = (
            f"not published: the fine-tuned model scores lower than its base on {losses_text(worse)}; "
            f"the trained weights stay in {run_dir / 'last'} (--publish-anyway publishes such a run)"
        )
        return None, note
    name = config.name or default_name(base)
    checkpoint = publish(
        outcome.model,
        Path(config.checkpoints_dir),
        name,
        run.stamp,
        base=base,
        meta=outcome.trained_meta,
        metadata=metadata,
        dtype=outcome.dtype,
    )
    note = ""
    if worse:
        note = f"published as asked, although it scores lower than its base on {losses_text(worse)}"
    if not config.keep_run_checkpoint:
        shutil.rmtree(run_dir / "last", ignore_errors=True)
    return checkpoint, note


def publish_run(
    run: FinetuneRun, plan: Plan, outcome: Outcome, *, clock: Callable[[], float] = time.perf_counter
) -> FinetuneReport:
    """Publish the fine-tuned model with its lineage and scores; write ``report.json`` and the plot; the report.

    ``clock`` is the time budget's, which ``run.began`` was read from.
    """
    config, base, run_dir, progress = run.config, run.base, run.run_dir, run.progress
    progress.enter("publish", f"writing the checkpoint to {config.checkpoints_dir}")
    before, after, summary = outcome.before, outcome.after, outcome.summary
    metadata = checkpoint_metadata(run, plan, outcome)
    progress.check()  # the last moment a stop prevents publishing; the write itself is atomic
    worse = losses(before, after)
    checkpoint, note = publish_unless_worse(run, outcome, metadata, worse)
    report = FinetuneReport(
        status="finished",
        checkpoint=str(checkpoint.resolve()) if checkpoint is not None else None,
        published=checkpoint is not None,
        worse=worse,
        note=note,
        base=str(base.resolve()),
        run=str(run_dir.resolve()),
        metrics={"before": before, "after": after},
        delta_miou={
            n: round(after[n]["miou"] - before[n]["miou"], 3) for n in EVAL_SETS if before.get(n) and after.get(n)
        },
        held_out_ids=metadata["finetune"]["held_out_ids"],
        skipped_corrections=[dict(s, root=c.root) for c in plan.corrections for s in c.skipped],
        iterations=summary.iteration,
        settings=plan.record.get("settings"),
        # What the budget bought: the images of each set scored (before and after alike, out of those
        # there were) and the training time.
        evaluation={
            "images": {n: (before.get(n) or {}).get("images", 0) for n in EVAL_SETS},
            "available": {n: plan.available.get(n, 0) for n in EVAL_SETS},
            "seconds_before": None if outcome.eval_s is None else round(outcome.eval_s, 1),
        },
        training={
            "budget_minutes": config.train.max_minutes,
            "minutes": outcome.trainer.max_minutes,
            "seconds": summary.elapsed_s,
        },
        elapsed_s=round(clock() - run.began, 1),
        train_summary=summary,
    )
    record = report.to_dict()
    write_json(run_dir / REPORT_FILE, record)
    plot_report(record, EVAL_SETS, run_dir / "log.jsonl", run_dir / PLOT_FILE)
    return report
