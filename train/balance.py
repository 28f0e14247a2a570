"""Label-value frequencies of the training mixture, for a class-balanced loss (``--class-balance``)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from ssfnet.losses import balanced_class_weights


def label_frequencies(sources: Sequence[tuple[Dataset, float]], num_values: int, per_source: int = 200) -> np.ndarray:
    """Share of each label value among the labelled pixels of the weighted mixture of sources.

    Each source is sampled at ``per_source`` evenly spread items (its stored label maps, before
    augmentation); its class shares are mixed in by its sampling weight, so a small source drawn
    often counts as often as the trainer draws it. A coarse value (e.g. "shoes" for either
    shoe) is counted as itself, since the loss scores it as one set; ignored pixels are not
    counted.

    Args:
        sources: ``(dataset, weight)`` pairs whose items are ``(image, label map)``.
        num_values: Number of label values V (exact classes, then coarse values).
        per_source: Most label maps read from each source.

    Returns:
        V shares summing to 1 (all zeros if no labelled pixel was found).
    """
    mixture = np.zeros(num_values, dtype=np.float64)
    for dataset, weight in sources:
        n = len(dataset)
        if n == 0 or weight <= 0:
            continue
        counts = np.zeros(num_values, dtype=np.float64)
        for index in np.unique(np.linspace(0, n - 1, min(n, per_source)).round().astype(int)):
            label = np.asarray(dataset[int(index)][1])
            counts += np.bincount(label[label < num_values].ravel(), minlength=num_values)[:num_values]
        if counts.sum() > 0:
            mixture += weight * counts / counts.sum()
    total = mixture.sum()
    return mixture / total if total > 0 else mixture


def mixture_value_weights(
    sources: Sequence[tuple[Dataset, float]], num_values: int, power: float, per_source: int = 200
) -> tuple[torch.Tensor, np.ndarray]:
    """``(value weights, value shares)`` of a mixture (:func:`ssfnet.losses.balanced_class_weights`)."""
    shares = label_frequencies(sources, num_values, per_source)
    return balanced_class_weights(shares, power), shares
