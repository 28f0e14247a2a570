"""Losses: cross-entropy with ignore, partial-label cross-entropy, the paper's weighted sum."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .labels import IGNORE_INDEX, LabelSet


def partial_cross_entropy(
    logits: torch.Tensor,
    target: torch.Tensor,
    membership: torch.Tensor,
    ignore_index: int = IGNORE_INDEX,
    value_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Cross-entropy where a label value may stand for a set of classes.

    For a pixel whose value v stands for the class set S_v the loss is
    ``-log sum_{c in S_v} p_c``; for a single class this is plain cross-entropy.
    Exact pixels go through the plain kernel; only the (usually few) pixels with
    a coarse value are gathered and scored in the set form, so the cost stays
    that of one cross-entropy.

    Args:
        logits: B x K x H x W (any float dtype; scored in fp32).
        target: B x H x W integer values; ``ignore_index`` (and any value
            without a row in ``membership``) is not scored.
        membership: V x K bool, row v = the classes value v allows
            (:attr:`ssfnet.labels.LabelSet.membership`).
        ignore_index: Value that is never scored.
        value_weights: Optional V weights, one per label value (exact classes
            first, then the coarse values; see :func:`balanced_class_weights`).

    Returns:
        Mean loss over scored pixels, weighted by their values' weights when
        ``value_weights`` is given (0 with a gradient when none is scored).
    """
    num_classes = logits.shape[1]
    num_values = membership.shape[0]
    valid = (target != ignore_index) & (target >= 0) & (target < num_values)
    exact = valid & (target < num_classes)
    coarse = valid & ~exact
    if not bool(valid.any()):
        return logits.sum() * 0.0
    logits = logits.float()
    exact_target = torch.where(exact, target, torch.full_like(target, ignore_index))
    weights = None
    if value_weights is not None:
        if value_weights.numel() != num_values:
            raise ValueError(f"value_weights has {value_weights.numel()} entries for {num_values} label values")
        weights = value_weights.to(logits.device, torch.float32)
    class_weights = None if weights is None else weights[:num_classes]
    total = F.cross_entropy(logits, exact_target, weight=class_weights, ignore_index=ignore_index, reduction="sum")
    # Normalised by the scored pixels' total weight, as the weighted cross-entropy's mean is.
    count = valid.sum() if weights is None else weights[target[valid]].sum()
    if bool(coarse.any()):
        # N x K logits of the coarse pixels only.
        picked = logits.permute(0, 2, 3, 1)[coarse]
        values = target[coarse]
        allowed = membership.to(logits.device)[values]
        log_all = torch.logsumexp(picked, dim=1)
        log_allowed = torch.logsumexp(picked.masked_fill(~allowed, float("-inf")), dim=1)
        loss = log_all - log_allowed
        total = total + (loss.sum() if weights is None else (weights[values] * loss).sum())
    # Every scored pixel may carry weight 0 (regions silenced for the class output): no loss then.
    return total / count.float().clamp_min(1e-6)


def balanced_class_weights(
    frequencies: np.ndarray | torch.Tensor, power: float = 0.5, limits: tuple[float, float] = (0.2, 10.0)
) -> torch.Tensor:
    """Weights ``(median / frequency) ** power`` for a cross-entropy that rare classes matter to.

    Median-frequency balancing (Eigen and Fergus, ICCV 2015) with an exponent:
    ``power=1`` is the original, ``0.5`` a milder square root, ``0`` no balancing.
    Values never seen get the largest weight; the median is taken over the
    values that occur. Weights are clipped to ``limits``.

    Args:
        frequencies: Pixel counts or shares of each label value (the exact
            classes, then the coarse values of a label set that has them).
        power: Exponent of the balancing.
        limits: Smallest and largest weight.
    """
    freq = torch.as_tensor(np.asarray(frequencies, dtype=np.float64))
    if freq.ndim != 1 or freq.numel() == 0 or bool((freq < 0).any()) or not bool(torch.isfinite(freq).all()):
        raise ValueError("frequencies must be a non-empty vector of finite counts >= 0")
    seen = freq > 0
    if not bool(seen.any()):
        return torch.ones(freq.numel(), dtype=torch.float32)
    median = float(np.median(freq[seen].numpy()))  # the mean of the middle two for an even count
    weights = torch.full_like(freq, limits[1])
    weights[seen] = (median / freq[seen]) ** power
    return weights.clamp(*limits).float()


def labels_at(target: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Label maps B x H x W brought to ``size`` by centre-aligned nearest sampling.

    Each output pixel takes the label at the centre of the input area it covers,
    which is where a stride-s network's feature for that pixel is centred.
    """
    if tuple(target.shape[-2:]) == tuple(size):
        return target
    h, w = target.shape[-2:]
    oh, ow = size
    rows = ((torch.arange(oh, device=target.device) + 0.5) * (h / oh)).long().clamp_(max=h - 1)
    cols = ((torch.arange(ow, device=target.device) + 0.5) * (w / ow)).long().clamp_(max=w - 1)
    return target[:, rows][:, :, cols]


class ParsingLoss(nn.Module):
    """The paper's Eq. 5: ``0.6 CE(out) + 0.5 CE(aux1) + 0.4 CE(aux2)``.

    Heads absent from the model's output (e.g. DeepLabV3 has no ``aux1``) are
    skipped. With a label set that has coarse labels, every term is the
    partial-label cross-entropy. Logits smaller than the labels (a network's
    ``native=True`` output) are scored against labels brought to their size
    (:func:`labels_at`): on a CPU, scoring full-resolution logits costs about as
    much as a light network's whole step.

    Args:
        label_set: Label set of the targets (its membership table is used).
        weights: Weights of ``out``, ``aux1``, ``aux2``.
        ignore_index: Value that is never scored.
        value_weights: Optional weights of the label values, exact classes
            then coarse values (:func:`balanced_class_weights`).
        part_targets: A 256-entry table from label value to body part
            (:func:`ssfnet.parts.part_targets`) for a model with a ``parts`` head.
        part_weight: Weight of the ``parts`` head's cross-entropy against those parts.
        membership: The classes each label value allows, if not ``label_set``'s own
            (:func:`ssfnet.parts.region_membership`).
    """

    def __init__(
        self,
        label_set: LabelSet | None = None,
        weights: tuple[float, float, float] = (0.6, 0.5, 0.4),
        ignore_index: int = IGNORE_INDEX,
        value_weights: torch.Tensor | None = None,
        part_targets: np.ndarray | None = None,
        part_weight: float = 0.0,
        membership: np.ndarray | None = None,
    ) -> None:
        super().__init__()
        self.part_weight = float(part_weight)
        table_parts = None if part_targets is None else torch.as_tensor(np.asarray(part_targets), dtype=torch.long)
        if table_parts is not None and table_parts.numel() != 256:
            raise ValueError("part_targets must have one entry per uint8 label value (256)")
        self.register_buffer("part_targets", table_parts, persistent=False)
        self.weights = dict(zip(("out", "aux1", "aux2"), weights))
        self.ignore_index = ignore_index
        if membership is None and label_set is not None:
            membership = label_set.membership
        table = (
            torch.from_numpy(np.asarray(membership, dtype=bool))
            if membership is not None
            else torch.zeros(0, 0, dtype=torch.bool)
        )
        self.register_buffer("membership", table, persistent=False)
        if value_weights is not None:
            value_weights = torch.as_tensor(value_weights, dtype=torch.float32)
            values = max(table.shape[0], 1) if table.numel() else None
            if values is not None and value_weights.numel() != values:
                raise ValueError(f"{value_weights.numel()} value weights for {values} label values")
        self.register_buffer("value_weights", value_weights, persistent=False)

    def term(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        target = labels_at(target, logits.shape[-2:])
        if self.membership.numel() == 0:
            weight = None if self.value_weights is None else self.value_weights.to(logits.dtype)
            return F.cross_entropy(logits, target, weight=weight, ignore_index=self.ignore_index)
        return partial_cross_entropy(logits, target, self.membership, self.ignore_index, self.value_weights)

    def forward(self, outputs: dict[str, torch.Tensor], target: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """Args: outputs: head -> B x K x H x W logits; target: B x H x W.

        Returns: the weighted total and each head's unweighted value (floats, for logs).
        """
        total = None
        parts = {}
        for head, weight in self.weights.items():
            if head not in outputs or weight == 0:
                continue
            value = self.term(outputs[head], target)
            parts[head] = float(value.detach())
            total = weight * value if total is None else total + weight * value
        if total is None:
            raise ValueError(f"outputs have none of the heads {list(self.weights)}")
        if "parts" in outputs and self.part_targets is not None and self.part_weight > 0:
            logits = outputs["parts"]
            regions = self.part_targets[labels_at(target, logits.shape[-2:]).long().clamp(0, 255)]
            if bool((regions != self.ignore_index).any()):
                value = F.cross_entropy(logits.float(), regions, ignore_index=self.ignore_index)
            else:
                value = logits.sum() * 0.0
            parts["parts"] = float(value.detach())
            total = total + self.part_weight * value
        return total, parts
