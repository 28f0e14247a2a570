"""Losses: cross-entropy with ignore, partial-label cross-entropy, the paper's weighted sum."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .labels import IGNORE_INDEX, LabelSet


def partial_cross_entropy(
    logits: torch.Tensor,
    target: torch.Tensor,
    membership: torch.Tensor,
    ignore_index: int = IGNORE_INDEX,
) -> torch.Tensor:
    """Cross-entropy where a label value may stand for a set of classes.

    For a pixel whose value v stands for the class set S_v the loss is
    ``-log sum_{c in S_v} p_c``; for a single class this is plain cross-entropy.

    Args:
        logits: B x K x H x W.
        target: B x H x W integer values; ``ignore_index`` (and any value
            without a row in ``membership``) is not scored.
        membership: V x K bool, row v = the classes value v allows
            (:attr:`ssfnet.labels.LabelSet.membership`).
        ignore_index: Value that is never scored.

    Returns:
        Mean loss over scored pixels (0 with a gradient when none is scored).
    """
    num_values = membership.shape[0]
    valid = (target != ignore_index) & (target >= 0) & (target < num_values)
    if not bool(valid.any()):
        return logits.sum() * 0.0
    safe = torch.where(valid, target, torch.zeros_like(target))
    if int(safe.max()) < logits.shape[1] and bool(membership[: logits.shape[1]].diagonal().all()):
        # No coarse value in this batch: the plain (faster) kernel gives the same result.
        return F.cross_entropy(
            logits, torch.where(valid, target, torch.full_like(target, ignore_index)), ignore_index=ignore_index
        )
    log_probs = F.log_softmax(logits.float(), dim=1)
    allowed = membership.to(logits.device)[safe].permute(0, 3, 1, 2)  # B x K x H x W
    masked = log_probs.masked_fill(~allowed, float("-inf"))
    per_pixel = -torch.logsumexp(masked, dim=1)
    return per_pixel[valid].mean()


class ParsingLoss(nn.Module):
    """The paper's Eq. 5: ``0.6 CE(out) + 0.5 CE(aux1) + 0.4 CE(aux2)``.

    Heads absent from the model's output (e.g. DeepLabV3 has no ``aux1``) are
    skipped. With a label set that has coarse labels, every term is the
    partial-label cross-entropy.

    Args:
        label_set: Label set of the targets (its membership table is used).
        weights: Weights of ``out``, ``aux1``, ``aux2``.
        ignore_index: Value that is never scored.
    """

    def __init__(
        self,
        label_set: LabelSet | None = None,
        weights: tuple[float, float, float] = (0.6, 0.5, 0.4),
        ignore_index: int = IGNORE_INDEX,
    ) -> None:
        super().__init__()
        self.weights = dict(zip(("out", "aux1", "aux2"), weights))
        self.ignore_index = ignore_index
        table = torch.from_numpy(label_set.membership) if label_set is not None else torch.zeros(0, 0, dtype=torch.bool)
        self.register_buffer("membership", table, persistent=False)

    def term(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.membership.numel() == 0:
            return F.cross_entropy(logits, target, ignore_index=self.ignore_index)
        return partial_cross_entropy(logits, target, self.membership, self.ignore_index)

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
        return total, parts
