"""Training-source specs (``kind[@split]:path[:weight]``) and the kind -> dataset registry."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from torch.utils.data import Dataset

from ssfnet.data.corrections import CorrectionsDataset
from ssfnet.data.layouts import (
    ATRDataset,
    CCPDataset,
    CIHPDataset,
    FolderDataset,
    LIPDataset,
    PascalPersonPartDataset,
    Transform,
    VitonDataset,
)
from ssfnet.data.packs import open_pack
from ssfnet.labels import LabelSet


@dataclass(frozen=True)
class SourceSpec:
    """One training source.

    Args:
        kind: Layout name, a key of :data:`SOURCE_KINDS` (``lip``, ``ccp``, ...).
        path: Dataset folder.
        weight: Sampling weight in a mix.
        split: Layout-specific split (``lip@val`` -> ``"val"``); None = the layout's default.
    """

    kind: str
    path: Path
    weight: float = 1.0
    split: str | None = None


SourceFactory = Callable[[SourceSpec, LabelSet | str, list[str] | None, Transform | None], Dataset]


def _no_split(spec: SourceSpec) -> None:
    if spec.split is not None:
        raise ValueError(f"source kind {spec.kind!r} has no splits (got @{spec.split})")


def _lip(spec: SourceSpec, label_set: LabelSet | str, ids: list[str] | None, transform: Transform | None) -> Dataset:
    return LIPDataset(spec.path, label_set, ids, transform, split=spec.split or "train")


def _cihp(spec: SourceSpec, label_set: LabelSet | str, ids: list[str] | None, transform: Transform | None) -> Dataset:
    return CIHPDataset(spec.path, label_set, ids, transform, split=spec.split or "Training")


def _folder(spec: SourceSpec, label_set: LabelSet | str, ids: list[str] | None, transform: Transform | None) -> Dataset:
    # A split names a subfolder holding its own images/ and labels/.
    root = spec.path / spec.split if spec.split else spec.path
    return FolderDataset(root, label_set, ids, transform)


def _without_split(dataset_class: type) -> SourceFactory:
    def factory(
        spec: SourceSpec, label_set: LabelSet | str, ids: list[str] | None, transform: Transform | None
    ) -> Dataset:
        _no_split(spec)
        return dataset_class(spec.path, label_set, ids, transform)

    return factory


def _subset(spec: SourceSpec, label_set: LabelSet | str, ids: list[str] | None, transform: Transform | None) -> Dataset:
    """The ``subset`` source kind: ``subset:FILE.json`` names a source and the ids to use of it.

    Fine-tuning hands the trainer exactly the samples it chose this way (training corrections,
    the original training split), so the trainer's own validation split is switched off.
    """
    if spec.split is not None:
        raise ValueError("source kind 'subset' has no splits")
    plan = json.loads(Path(spec.path).read_text())
    allowed = [str(i) for i in plan["ids"]]
    if ids is not None:
        outside = sorted(set(ids) - set(allowed))
        if outside:
            raise ValueError(f"{spec.path}: ids {outside[:5]} are not in the subset")
        allowed = list(ids)
    return open_source(plan["source"], label_set, ids=allowed, transform=transform)


# kind -> factory(spec, label_set, ids, transform). Add kinds with register_source().
SOURCE_KINDS: dict[str, SourceFactory] = {
    "lip": _lip,
    "cihp": _cihp,
    "atr": _without_split(ATRDataset),
    "pascal-person-part": _without_split(PascalPersonPartDataset),
    "ccp": _without_split(CCPDataset),
    "viton": _without_split(VitonDataset),
    "corrections": _without_split(CorrectionsDataset),
    "folder": _folder,
    "subset": _subset,
    "pack": open_pack,
}


def register_source(kind: str, factory: SourceFactory, *, replace: bool = False) -> None:
    """Make ``kind`` usable in source specs.

    Args:
        kind: Name used before the first ``:`` of a spec (no ``:`` or ``@``).
        factory: ``factory(spec, label_set, ids, transform) -> Dataset`` following the
            dataset contract of :mod:`ssfnet.data.layouts`.
        replace: Allow replacing an existing kind.
    """
    if not kind or ":" in kind or "@" in kind:
        raise ValueError(f"invalid source kind {kind!r}")
    if kind in SOURCE_KINDS and not replace:
        raise ValueError(f"source kind {kind!r} is already registered")
    SOURCE_KINDS[kind] = factory


def parse_source(text: str) -> SourceSpec:
    """Parse ``kind[@split]:path[:weight]``, e.g. ``ccp:../shared/datasets/ccp:0.5``.

    The weight defaults to 1.0. A last ``:``-separated part counts as the weight only if it
    is a number, so paths containing ``:`` still work when a weight follows them.

    Raises:
        ValueError: Unknown kind, empty path or a negative / non-finite weight.
    """
    kind, sep, rest = text.partition(":")
    kind = kind.strip()
    if not sep or not rest:
        raise ValueError(f"source {text!r} is not kind[@split]:path[:weight]")
    kind, _, split = kind.partition("@")
    if kind not in SOURCE_KINDS:
        raise ValueError(f"unknown source kind {kind!r} in {text!r}; known: {', '.join(sorted(SOURCE_KINDS))}")
    path, weight = rest, 1.0
    head, sep, tail = rest.rpartition(":")
    if sep:
        try:
            weight = float(tail)
            path = head
        except ValueError:
            pass
    if not path:
        raise ValueError(f"source {text!r} has no path")
    if not math.isfinite(weight) or weight < 0:
        raise ValueError(f"source {text!r}: weight must be a finite number >= 0")
    return SourceSpec(kind=kind, path=Path(path), weight=weight, split=split or None)


def open_source(
    spec: SourceSpec | str,
    label_set: LabelSet | str,
    ids: list[str] | None = None,
    transform: Transform | None = None,
) -> Dataset:
    """Build the dataset a spec names, returning labels in ``label_set``.

    Args:
        spec: A :class:`SourceSpec` or its text form.
        label_set: Label set of the returned label maps.
        ids: Subset of sample ids.
        transform: Called as ``transform(image, label)`` by the dataset's ``__getitem__``.
    """
    if isinstance(spec, str):
        spec = parse_source(spec)
    try:
        factory = SOURCE_KINDS[spec.kind]
    except KeyError:
        raise ValueError(f"unknown source kind {spec.kind!r}; known: {', '.join(sorted(SOURCE_KINDS))}") from None
    return factory(spec, label_set, ids, transform)
