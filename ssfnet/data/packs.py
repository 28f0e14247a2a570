"""Reading training packs (``python -m train.pack`` writes them): the ``pack:PATH`` source kind.

A pack is a zip of ``index.json`` (format, label set, samples), ``images/<id>.jpg`` and
``labels/<id>.png`` (palette PNG whose indices are label ids of the pack's label set).
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from ..labels import LabelSet, conversion_lut, get_label_set

PACK_FORMAT = "ssfnet-pack"
INDEX = "index.json"


class PackDataset(Dataset):
    """Samples of one or more pack zips, following the :mod:`ssfnet.data.layouts` dataset contract.

    Args:
        root: A pack zip, or a folder searched recursively for ``*.zip`` packs.
        label_set: Label set of the returned label maps (converted from the packs' own).
        ids: Subset of sample ids (``"<id>"`` as packed); all samples if None.
        transform: Called as ``transform(image, label)`` by ``__getitem__``.
    """

    def __init__(
        self, root: str | Path, label_set: str | LabelSet = "lip-20", ids: Iterable[str] | None = None, transform=None
    ) -> None:
        self.root = Path(root)
        paths = [self.root] if self.root.is_file() else sorted(self.root.rglob("*.zip"))
        paths = [p for p in paths if not p.name.startswith(".")]
        if not paths:
            raise FileNotFoundError(f"no training packs (*.zip) at {self.root}")
        self.label_set = get_label_set(label_set)
        self.transform = transform
        self._paths = [str(p) for p in paths]
        members: dict[str, tuple[int, dict]] = {}
        self.pack_label_set: LabelSet | None = None
        for k, path in enumerate(paths):
            with zipfile.ZipFile(path) as zf:
                index = json.loads(zf.read(INDEX))
            if index.get("format") != PACK_FORMAT:
                raise ValueError(f"{path} is not a training pack")
            stored = get_label_set(index["label_set"])
            if self.pack_label_set is not None and stored is not self.pack_label_set:
                raise ValueError(f"packs under {self.root} mix label sets {self.pack_label_set.name} and {stored.name}")
            self.pack_label_set = stored
            for sample in index["samples"]:
                if sample["id"] in members:
                    raise ValueError(f"sample {sample['id']} appears in two packs under {self.root}")
                members[sample["id"]] = (k, sample)
        self._lut = conversion_lut(self.pack_label_set, self.label_set)
        if ids is not None:
            wanted = [str(i) for i in ids]
            missing = [i for i in wanted if i not in members]
            if missing:
                raise ValueError(f"{len(missing)} requested ids are not in the packs at {self.root}: {missing[:5]}")
            members = {i: members[i] for i in wanted}
        self.ids = sorted(members)
        self._members = [members[i] for i in self.ids]
        self._open: dict[int, zipfile.ZipFile] = {}
        self._pid = os.getpid()

    def _zip(self, k: int) -> zipfile.ZipFile:
        # A zip handle shares its file offset with forked loader workers: each process opens its own.
        if self._pid != os.getpid():
            self._open, self._pid = {}, os.getpid()
        if k not in self._open:
            self._open[k] = zipfile.ZipFile(self._paths[k])
        return self._open[k]

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_open"] = {}
        return state

    def __len__(self) -> int:
        return len(self.ids)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Sample ``index`` as (H x W x 3 uint8 RGB, H x W uint8 ids of ``label_set``)."""
        k, sample = self._members[index]
        zf = self._zip(k)
        data = np.frombuffer(zf.read(f"images/{sample['id']}.jpg"), np.uint8)
        image = cv2.imdecode(data, cv2.IMREAD_COLOR)
        if image is None:
            raise ValueError(f"{self._paths[k]}: image of {sample['id']} cannot be decoded")
        with Image.open(io.BytesIO(zf.read(f"labels/{sample['id']}.png"))) as im:
            label = np.array(im)
        return np.ascontiguousarray(image[..., ::-1]), self._lut[label]

    def __getitem__(self, index: int):
        image, label = self.load(index)
        return (image, label) if self.transform is None else self.transform(image, label)

    def __repr__(self) -> str:
        return f"PackDataset(root={str(self.root)!r}, label_set={self.label_set.name!r}, n={len(self)})"


def open_pack(spec, label_set, ids, transform) -> PackDataset:
    """The ``pack:PATH`` source kind (:data:`ssfnet.data.SOURCE_KINDS`)."""
    if spec.split is not None:
        raise ValueError("pack sources have no splits")
    return PackDataset(spec.path, label_set, ids, transform)
