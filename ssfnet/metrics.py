"""Confusion-matrix metrics: per-class IoU, mIoU, pixel accuracy, and IoU of merged classes."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch

from .labels import IGNORE_INDEX, PERSON_HEAD_3, EvalMapping, LabelSet


def merged_iou(matrix: np.ndarray, classes: Iterable[int]) -> float | None:
    """IoU in percent of a group of classes scored as one class.

    Args:
        matrix: K x K confusion matrix (rows = ground truth, columns = prediction).
        classes: The ids merged; confusions among them count as correct.

    Returns:
        The IoU, or None where the group has neither ground truth nor prediction.
    """
    m = np.asarray(matrix, dtype=np.float64)
    inside = np.zeros(m.shape[0], dtype=bool)
    inside[list(classes)] = True
    tp = m[np.ix_(inside, inside)].sum()
    union = m[inside].sum() + m[:, inside].sum() - tp
    return float(tp / union * 100) if union > 0 else None


def person_iou(matrix: np.ndarray, background: int = 0) -> float | None:
    """Person-vs-background IoU in percent: every class but ``background`` merged into one."""
    return merged_iou(matrix, [c for c in range(np.asarray(matrix).shape[0]) if c != background])


class ConfusionMatrix:
    """Accumulates a K x K confusion matrix (rows = ground truth, columns = prediction).

    Args:
        num_classes: K, the classes scored (of the target label set).
        mapping: Optional cross-set mapping: predictions go through
            ``mapping.pred_lut`` and ground truth through ``mapping.gt_lut``;
            mIoU then averages ``mapping.scored_classes`` only.
        label_set: Label set of the ground truth; where given, a coarse value
            (a set S of classes) counts as correct when the prediction is in S,
            and as its first class otherwise.
        ignore_index: Ground-truth value that is not scored.
    """

    def __init__(
        self,
        num_classes: int,
        *,
        mapping: EvalMapping | None = None,
        label_set: LabelSet | None = None,
        ignore_index: int = IGNORE_INDEX,
    ) -> None:
        self.num_classes = num_classes
        self.mapping = mapping
        self.label_set = label_set
        self.ignore_index = ignore_index
        self.matrix = np.zeros((num_classes, num_classes), dtype=np.int64)

    def update(self, pred: np.ndarray | torch.Tensor, gt: np.ndarray | torch.Tensor) -> None:
        """Add one or more label maps (same shape; any leading batch dims)."""
        pred = np.asarray(pred.cpu() if isinstance(pred, torch.Tensor) else pred).astype(np.int64)
        gt = np.asarray(gt.cpu() if isinstance(gt, torch.Tensor) else gt).astype(np.int64)
        if pred.shape != gt.shape:
            raise ValueError(f"prediction shape {pred.shape} != ground truth shape {gt.shape}")
        if self.mapping is not None:
            pred = self.mapping.pred_lut[np.clip(pred, 0, 255)].astype(np.int64)
            gt = self.mapping.gt_lut[np.clip(gt, 0, 255)].astype(np.int64)
        if self.label_set is not None and self.label_set.num_ids > self.label_set.num_classes:
            gt = self._resolve_coarse(pred, gt)
        valid = (gt != self.ignore_index) & (gt >= 0) & (gt < self.num_classes)
        valid &= (pred >= 0) & (pred < self.num_classes)
        index = gt[valid] * self.num_classes + pred[valid]
        self.matrix += np.bincount(index, minlength=self.num_classes**2).reshape(self.num_classes, self.num_classes)

    def _resolve_coarse(self, pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
        ls = self.label_set
        coarse = (gt >= ls.num_classes) & (gt < ls.num_ids)
        if not coarse.any():
            return gt
        gt = gt.copy()
        values = gt[coarse]
        p = np.clip(pred[coarse], 0, ls.num_classes - 1)
        allowed = ls.membership[values, p]
        first = np.array([ls.members(v)[0] for v in range(ls.num_ids)])[values]
        gt[coarse] = np.where(allowed, p, first)
        return gt

    def merge(self, other: ConfusionMatrix | np.ndarray) -> None:
        """Add another matrix (e.g. from another process)."""
        self.matrix += other.matrix if isinstance(other, ConfusionMatrix) else np.asarray(other, dtype=np.int64)

    def compute(self) -> dict:
        """Metrics in percent.

        Returns:
            ``iou`` (per class, ``None`` where a class has neither ground truth
            nor prediction), ``miou`` (mean over scored classes with a defined
            IoU), ``miou_present`` (mean over the scored classes that occur in the ground
            truth: a class absent from every ground-truth map but predicted on a few pixels
            counts 0 in ``miou`` and is left out here), ``pixel_acc``, ``mean_acc`` and
            ``scored_classes``. In
            ``person-head-3`` also ``person_iou`` (head and body merged against
            background) and ``head_iou`` (``None`` where undefined).
        """
        m = self.matrix.astype(np.float64)
        tp = np.diag(m)
        gt_count = m.sum(1)
        pred_count = m.sum(0)
        union = gt_count + pred_count - tp
        with np.errstate(invalid="ignore", divide="ignore"):
            iou = np.where(union > 0, tp / union, np.nan) * 100
            acc = np.where(gt_count > 0, tp / gt_count, np.nan) * 100
        scored = list(self.mapping.scored_classes) if self.mapping is not None else list(range(self.num_classes))
        scored_iou = iou[scored]
        present_iou = scored_iou[gt_count[scored] > 0]
        total = m.sum()
        result = {
            "iou": [None if np.isnan(v) else float(v) for v in iou],
            "miou": float(np.nanmean(scored_iou)) if np.isfinite(scored_iou).any() else 0.0,
            "miou_present": float(present_iou.mean()) if present_iou.size else 0.0,
            "pixel_acc": float(tp.sum() / total * 100) if total else 0.0,
            "mean_acc": float(np.nanmean(acc[scored])) if np.isfinite(acc[scored]).any() else 0.0,
            "scored_classes": scored,
        }
        if self.target_set is PERSON_HEAD_3:
            result["person_iou"] = person_iou(self.matrix, PERSON_HEAD_3.id_of("background"))
            result["head_iou"] = result["iou"][PERSON_HEAD_3.id_of("head")]
        return result

    @property
    def target_set(self) -> LabelSet | None:
        """The label set of the matrix's rows and columns, where known."""
        if self.mapping is not None:
            return self.mapping.target
        return self.label_set
