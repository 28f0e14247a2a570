"""Scoring for fine-tunes: one model on named evaluation sets, through :func:`train.evaluate.confusion_over`."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch.utils.data import Dataset

from ssfnet.labels import LabelSet
from ssfnet.predictor import Predictor

from .evaluate import confusion_over, spread
from .finetune_status import Progress

# The evaluation sets of a fine-tune, in the order reports list them.
EVAL_SETS = ("held_out_corrections", "train_corrections", "original_val")


def score(
    predictor: Predictor,
    items: list[tuple[Dataset, int]],
    label_set: LabelSet,
    *,
    batch_size: int = 4,
    on_batch: Callable[[int], None] | None = None,
) -> dict | None:
    """mIoU, pixel agreement and mean accuracy (percent) of ``predictor`` on ``(dataset, index)`` items.

    Coarse ground-truth values count as correct when the prediction is one of their classes.

    Returns:
        ``{"images", "miou", "pixel_acc", "mean_acc"}``, or None without items.
    """
    if not items:
        return None
    cm = confusion_over(
        predictor, items, label_set.num_classes, label_set=label_set, batch_size=batch_size, on_batch=on_batch
    )
    metrics = cm.compute()
    return {
        "images": len(items),
        "miou": round(metrics["miou"], 3),
        "pixel_acc": round(metrics["pixel_acc"], 3),
        "mean_acc": round(metrics["mean_acc"], 3),
    }


def spread_items(datasets: Sequence[Dataset], limit: int | None) -> list[tuple[Dataset, int]]:
    """At most ``limit`` items evenly spread over the concatenation (each source keeps its share)."""
    flat = [(dataset, i) for dataset in datasets for i in range(len(dataset))]
    return [flat[k] for k in spread(len(flat), limit)]


def evaluate_sets(
    model: torch.nn.Module,
    label_set: LabelSet,
    eval_sets: dict[str, list[tuple[Dataset, int]]],
    *,
    device: torch.device,
    input_size: int,
    progress: Progress,
    check: Callable[[float], None] | None = None,
) -> dict[str, dict | None]:
    """Score ``model`` on every evaluation set, reporting progress and honouring a stop request.

    Args:
        check: Called with the fraction scored after every batch (it may raise to stop).
    """
    predictor = Predictor(model, label_set, device=device, input_size=input_size)
    total = max(1, sum(len(items) for items in eval_sets.values()))
    done = 0

    def on_batch(n: int) -> None:
        nonlocal done
        done += n
        progress.check()
        progress.write(done / total, f"{done}/{total} images")
        if check is not None:
            check(done / total)

    return {name: score(predictor, items, label_set, on_batch=on_batch) for name, items in eval_sets.items()}


def summary_line(metrics: dict[str, dict | None]) -> str:
    parts = []
    for name in EVAL_SETS:
        m = metrics.get(name)
        if m:
            parts.append(f"{name} mIoU {m['miou']:.2f} (pixel agreement {m['pixel_acc']:.2f}, {m['images']} images)")
    return "; ".join(parts) or "nothing to score"
