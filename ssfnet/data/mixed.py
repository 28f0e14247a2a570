"""Train/validation splits and weighted mixing of several datasets."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from ssfnet.data.layouts import Transform
from ssfnet.labels import LabelSet


def _unit_hash(seed: int, sample_id: str) -> float:
    digest = hashlib.sha256(f"{seed}:{sample_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_ids(ids: Iterable[str], val_fraction: float, seed: int = 0) -> tuple[list[str], list[str]]:
    """Split ids into train and validation sets, deterministically and stably per id.

    Each id goes to validation when a hash of ``(seed, id)`` falls below ``val_fraction``, so
    the decision for one id never depends on the others: adding files does not move existing
    ids between the sets. The validation share is ``val_fraction`` on average, not exactly.

    Args:
        ids: Sample ids (duplicates are merged).
        val_fraction: Expected share of validation ids, in [0, 1].
        seed: Different seeds give independent splits.

    Returns:
        ``(train_ids, val_ids)``, each sorted, disjoint, together all ids.
    """
    if not 0.0 <= val_fraction <= 1.0:
        raise ValueError(f"val_fraction must be in [0, 1], got {val_fraction}")
    train, val = [], []
    for sample_id in sorted(set(ids)):
        (val if _unit_hash(seed, sample_id) < val_fraction else train).append(sample_id)
    return train, val


def holdout_split(ids: Sequence[str], fraction: float, seed: int = 0) -> tuple[list[str], list[str]]:
    """Split correction ids into (train, held out), deterministically and stably per id.

    As :func:`ssfnet.data.split_ids` (an id is held out when a hash of ``(seed, id)`` is below
    ``fraction``, so later corrections never move earlier ones), except that with ``fraction`` > 0
    and at least two ids, one is always held out (the one of the lowest hash) and one always trains;
    a single id always trains.
    """
    train, held = split_ids(ids, fraction, seed)
    if len(train) + len(held) < 2:
        return sorted(train + held), []
    if fraction > 0:
        if not held:
            first = min(train, key=lambda i: _unit_hash(seed, i))
            train.remove(first)
            held.append(first)
        elif not train:
            last = max(held, key=lambda i: _unit_hash(seed, i))
            held.remove(last)
            train.append(last)
    return sorted(train), sorted(held)


def mix_weights(correction_counts: Sequence[int], original_weights: Sequence[float], share: float) -> list[float]:
    """Source weights (corrections first) so that the corrections make ``share`` of every epoch.

    The corrections folders split their share by size; the original sources split the rest by
    the weights given in their specs. Without original sources the corrections get everything.
    """
    total = sum(correction_counts)
    if total <= 0:
        raise ValueError("no corrections to train on")
    if not original_weights or sum(original_weights) <= 0:
        return [c / total for c in correction_counts] + [0.0] * len(original_weights)
    rest = sum(original_weights)
    return [share * c / total for c in correction_counts] + [(1 - share) * w / rest for w in original_weights]


def _allocate(total: int, weights: np.ndarray) -> np.ndarray:
    """Split ``total`` into integer counts proportional to ``weights`` (largest remainders)."""
    quotas = total * weights / weights.sum()
    counts = np.floor(quotas).astype(np.int64)
    short = total - int(counts.sum())
    # Stable sort: equal remainders go to the earlier source, so the result is deterministic.
    order = np.argsort(-(quotas - counts), kind="stable")
    counts[order[:short]] += 1
    return counts


class MixedDataset(Dataset):
    """Draws an epoch of ``length`` samples from several datasets in proportion to weights.

    Each source contributes ``length * weight / sum(weights)`` samples per epoch (rounded),
    drawn without replacement from a shuffled order of its items and cycling through again if
    it is asked for more than it holds; the samples of all sources are then shuffled together.
    The mapping index -> (source, item) depends only on ``seed`` and the epoch: call
    :meth:`set_epoch` before each epoch (in the main process, before iterating a DataLoader;
    persistent workers keep the copy they were started with).

    Args:
        sources: ``(dataset, weight)`` pairs; each dataset has a ``label_set`` attribute, all equal.
            Weights are >= 0 with a positive sum.
        length: Samples per epoch; default: the sum of the source lengths.
        seed: Seed of the per-epoch plan.
        transform: If set, applied as ``transform(image, label)`` to each source's raw
            ``load(item)`` pair (the sources' own transforms are bypassed); if None, items are
            ``source[item]``.
    """

    def __init__(
        self,
        sources: Sequence[tuple[Dataset, float]],
        length: int | None = None,
        seed: int = 0,
        transform: Transform | None = None,
    ) -> None:
        if not sources:
            raise ValueError("MixedDataset needs at least one source")
        self.datasets = [dataset for dataset, _ in sources]
        self.weights = np.array([float(weight) for _, weight in sources])
        if not np.all(np.isfinite(self.weights)) or np.any(self.weights < 0) or self.weights.sum() <= 0:
            raise ValueError(f"weights must be finite, >= 0 and not all zero, got {self.weights.tolist()}")
        for dataset, weight in zip(self.datasets, self.weights):
            if weight > 0 and len(dataset) == 0:
                raise ValueError(f"source {dataset!r} is empty but has weight {weight}")
        self.label_set = self._common_label_set()
        self.length = sum(len(d) for d in self.datasets) if length is None else int(length)
        if self.length < 1:
            raise ValueError(f"length must be positive, got {length}")
        self.seed = seed
        self.transform = transform
        self.epoch = 0
        self._plan = self._make_plan()

    def _common_label_set(self) -> LabelSet:
        label_sets = []
        for dataset in self.datasets:
            label_set = getattr(dataset, "label_set", None)
            if not isinstance(label_set, LabelSet):
                raise ValueError(f"source {dataset!r} has no label_set attribute")
            label_sets.append(label_set)
        if any(s != label_sets[0] for s in label_sets):
            names = ", ".join(f"{d!r}: {s.name}" for d, s in zip(self.datasets, label_sets))
            raise ValueError(f"all sources must share one label set; got {names}")
        return label_sets[0]

    def _make_plan(self) -> np.ndarray:
        rng = np.random.default_rng([self.seed, self.epoch])
        parts = []
        for index, (dataset, count) in enumerate(zip(self.datasets, _allocate(self.length, self.weights))):
            if count == 0:
                continue
            rounds = -(-int(count) // len(dataset))
            items = np.concatenate([rng.permutation(len(dataset)) for _ in range(rounds)])[:count]
            parts.append(np.stack([np.full(count, index), items], axis=1))
        plan = np.concatenate(parts)
        rng.shuffle(plan)
        return plan

    def set_epoch(self, epoch: int) -> None:
        """Redraw the plan for ``epoch`` (the same epoch always gives the same plan)."""
        self.epoch = int(epoch)
        self._plan = self._make_plan()

    def counts(self) -> list[int]:
        """Samples per source in one epoch."""
        return np.bincount(self._plan[:, 0], minlength=len(self.datasets)).tolist()

    def locate(self, index: int) -> tuple[int, int]:
        """``(source index, item index)`` of sample ``index`` in the current epoch."""
        source, item = self._plan[index]
        return int(source), int(item)

    def __len__(self) -> int:
        return self.length

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The raw (image, label) pair of sample ``index`` from its source's ``load``."""
        source, item = self.locate(index)
        return self.datasets[source].load(item)

    def __getitem__(self, index: int) -> Any:
        source, item = self.locate(index)
        if self.transform is None:
            return self.datasets[source][item]
        return self.transform(*self.datasets[source].load(item))
