"""Training-source specs (``kind[@split]:path[:weight]``), subsets of a source, and the kind -> dataset registry."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

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

    def to_text(self) -> str:
        """The spec as :func:`parse_source` reads it (the weight written where it is not 1 or the path has a ``:``)."""
        kind = f"{self.kind}@{self.split}" if self.split else self.kind
        weight = f":{self.weight!r}" if self.weight != 1.0 or ":" in str(self.path) else ""
        return f"{kind}:{self.path}{weight}"


@dataclass(frozen=True)
class SubsetSpec:
    """Some samples of one source, with a sampling weight: the typed form of ``subset:FILE.json[:weight]``.

    A program that chose the samples itself (the fine-tune: its training corrections, the original
    sources' training split) hands the trainer these, not files to read back.

    Args:
        source: The source the ids belong to (its own weight is not used).
        ids: The samples to use, by id.
        weight: Sampling weight in a mix.
        path: A subset file (``{"source": TEXT, "ids": [...]}``) recording the same samples, which the
            text form names; None for a subset held only in memory (its record is then a dict).
    """

    source: SourceSpec
    ids: tuple[str, ...]
    weight: float = 1.0
    path: Path | None = None
    kind: ClassVar[str] = "subset"
    split: ClassVar[str | None] = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "ids", tuple(str(i) for i in self.ids))
        if not math.isfinite(self.weight) or self.weight < 0:
            raise ValueError(f"subset of {self.source.to_text()}: weight must be a finite number >= 0")

    def to_record(self) -> str | dict:
        """``subset:PATH:WEIGHT`` where a file records it, else ``{"source", "ids", "weight"}`` (JSON-safe)."""
        if self.path is not None:
            return f"subset:{self.path}:{self.weight:.6g}"
        return {"source": self.source.to_text(), "ids": list(self.ids), "weight": self.weight}

    @classmethod
    def from_record(cls, record: dict) -> SubsetSpec:
        """The subset a ``{"source", "ids"[, "weight"]}`` record (:meth:`to_record`'s dict) names."""
        try:
            source = parse_source(record["source"])
            return cls(source, tuple(record["ids"]), float(record.get("weight", 1.0)))
        except (KeyError, TypeError) as err:
            raise ValueError(f"a subset record needs 'source' and 'ids', got {record!r}") from err


# What a training config lists as its data: a spec's text, a typed spec or a subset.
Source = SourceSpec | SubsetSpec


def as_source(item: Source | str | dict) -> Source:
    """The typed source of a config's data entry: text (:func:`parse_source`), a subset record, or a typed one."""
    if isinstance(item, (SourceSpec, SubsetSpec)):
        return item
    if isinstance(item, str):
        return parse_source(item)
    if isinstance(item, dict):
        return SubsetSpec.from_record(item)
    raise TypeError(f"a source is a spec's text, a SourceSpec or a SubsetSpec, not {type(item).__name__}")


def source_record(item: Source | str | dict) -> str | dict:
    """The JSON form of a data entry: text as given, a spec's text, a subset's text or record."""
    if isinstance(item, (str, dict)):
        return item
    if isinstance(item, SubsetSpec):
        return item.to_record()
    return item.to_text()


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
    subset = SubsetSpec(parse_source(plan["source"]), plan["ids"], spec.weight, Path(spec.path))
    return _open_subset(subset, label_set, ids, transform)


def _open_subset(
    subset: SubsetSpec, label_set: LabelSet | str, ids: list[str] | None, transform: Transform | None
) -> Dataset:
    """The subset's samples of its source (``ids``, if given, must be among them)."""
    allowed = list(subset.ids)
    if ids is not None:
        outside = sorted(set(ids) - set(allowed))
        if outside:
            where = subset.path if subset.path is not None else f"subset of {subset.source.to_text()}"
            raise ValueError(f"{where}: ids {outside[:5]} are not in the subset")
        allowed = list(ids)
    return open_source(subset.source, label_set, ids=allowed, transform=transform)


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
    spec: Source | str,
    label_set: LabelSet | str,
    ids: list[str] | None = None,
    transform: Transform | None = None,
) -> Dataset:
    """Build the dataset a spec names, returning labels in ``label_set``.

    Args:
        spec: A :class:`SourceSpec` or its text form, or a :class:`SubsetSpec`.
        label_set: Label set of the returned label maps.
        ids: Subset of sample ids.
        transform: Called as ``transform(image, label)`` by the dataset's ``__getitem__``.
    """
    if isinstance(spec, str):
        spec = parse_source(spec)
    if isinstance(spec, SubsetSpec):
        return _open_subset(spec, label_set, ids, transform)
    try:
        factory = SOURCE_KINDS[spec.kind]
    except KeyError:
        raise ValueError(f"unknown source kind {spec.kind!r}; known: {', '.join(sorted(SOURCE_KINDS))}") from None
    return factory(spec, label_set, ids, transform)
