"""Scoring for fine-tunes: one model on named evaluation sets, through :func:`train.evaluate.confusion_over`."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from ssfnet.labels import LabelSet
from ssfnet.metrics import ConfusionMatrix
from ssfnet.predictor import Predictor

from ..evaluate import confusion_over, spread
from .budget import SCORING_ORDER
from .status import Progress

# The evaluation sets of a fine-tune, in the order reports list them.
EVAL_SETS = ("held_out_corrections", "train_corrections", "original_val")
# Images per scoring batch.
BATCH_SIZE = 4


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


def prefix_spread(items: Sequence) -> list:
    """``items`` in an order whose every prefix is spread over the whole list (each source keeps its share).

    The middle item first, then the middles of the two halves, and so on: a budget that scores only
    the first n items of a set scores a sample of all of it, not its first source.
    """
    order, intervals = [], deque([(0, len(items))])
    while intervals:
        lo, hi = intervals.popleft()
        if lo < hi:
            mid = (lo + hi) // 2
            order.append(items[mid])
            intervals.extend(((lo, mid), (mid + 1, hi)))
    return order


def _metrics(
    matrices: list[np.ndarray], items: Sequence[tuple[Dataset, int]], label_set: LabelSet, names: dict[int, str]
) -> dict | None:
    """:func:`score`'s figures from per-item matrices; ``sources`` per named dataset among ``items``."""
    if not matrices:
        return None

    def figures(chosen: list[np.ndarray]) -> dict:
        cm = ConfusionMatrix(label_set.num_classes, label_set=label_set)
        cm.merge(np.sum(chosen, axis=0))
        metrics = cm.compute()
        return {
            "images": len(chosen),
            "miou": round(metrics["miou"], 3),
            "pixel_acc": round(metrics["pixel_acc"], 3),
            "mean_acc": round(metrics["mean_acc"], 3),
        }

    result = figures(matrices)
    groups: dict[str, list[np.ndarray]] = {}
    for (dataset, _), matrix in zip(items, matrices):
        if id(dataset) in names:
            groups.setdefault(names[id(dataset)], []).append(matrix)
    if groups:
        result["sources"] = [{"name": name, **figures(chosen)} for name, chosen in groups.items()]
    return result


def evaluate_sets(
    model: torch.nn.Module,
    label_set: LabelSet,
    eval_sets: dict[str, list[tuple[Dataset, int]]],
    *,
    device: torch.device,
    input_size: int,
    progress: Progress,
    until: tuple[Callable[[], float], float] | None = None,
    names: dict[int, str] | None = None,
) -> dict[str, dict | None]:
    """Score ``model`` on every evaluation set, reporting progress and honouring a stop request.

    Args:
        until: ``(clock, deadline)`` for an evaluation sized to a time budget: the sets are scored in
            :data:`~train.finetune.budget.SCORING_ORDER`, each from its first item, as many images as
            the scoring time per image measured so far (the first image is timed alone) says fit
            before ``clock()`` reaches ``deadline``; at least one. None scores every image.
        names: A name per dataset (by ``id``) whose figures are also given apart (``sources``:
            ``{"name", "images", "miou", ...}`` each), e.g. each original source's validation photos.

    Returns:
        Per set, :func:`score`'s figures for the images scored (``images`` of them, the set's
        first), or None where none was.
    """
    predictor = Predictor(model, label_set, device=device, input_size=input_size)
    total = max(1, sum(len(items) for items in eval_sets.values()))
    done = 0
    began = until[0]() if until is not None else 0.0
    order = [n for n in SCORING_ORDER if n in eval_sets] + [n for n in eval_sets if n not in SCORING_ORDER]
    results = {}
    for name in order:
        items, matrices = eval_sets[name], []
        while len(matrices) < len(items):
            size = BATCH_SIZE
            if until is not None:
                clock, deadline = until
                now = clock()
                per_image = (now - began) / done if done else 0.0
                size = 1 if not done else min(size, int((deadline - now) / per_image) if per_image > 0 else size)
                if size < 1:
                    break
            batch = items[len(matrices) : len(matrices) + size]
            confusion_over(predictor, batch, label_set.num_classes, label_set=label_set, per_item=matrices)
            done += len(batch)
            progress.check()
            progress.write(done / total, f"{done}/{total} images")
        results[name] = _metrics(matrices, items, label_set, names or {})
    return {name: results[name] for name in eval_sets}


def scored_counts(metrics: dict[str, dict | None]) -> dict[str, int]:
    """Images scored per set."""
    return {name: (m or {}).get("images", 0) for name, m in metrics.items()}


def summary_line(metrics: dict[str, dict | None]) -> str:
    parts = []
    for name in EVAL_SETS:
        m = metrics.get(name)
        if m:
            sources = "".join(f"; {g['name']} {g['miou']:.2f} of {g['images']}" for g in m.get("sources") or [])
            parts.append(
                f"{name} mIoU {m['miou']:.2f} (pixel agreement {m['pixel_acc']:.2f}, {m['images']} images{sources})"
            )
    return "; ".join(parts) or "nothing to score"
