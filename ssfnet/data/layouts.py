"""Datasets for the on-disk layouts of the benchmarks: LIP, CIHP, ATR, PASCAL-Person-Part, CCP, VITON.

They follow the contract of :mod:`ssfnet.data.base` (``Dataset(root, label_set=..., ids=None,
transform=None, **layout_options)``, ``load(i)`` -> ``(image, label)`` numpy arrays), whose
readers, base classes and generic :class:`FolderDataset` are importable from here too.

Images are decoded as stored, without applying an EXIF orientation: the benchmark
labels were drawn on the raw pixel grid, so rotating the photo would misalign them.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import scipy.io
from PIL import Image

from ssfnet.data.base import (
    IMAGE_EXTENSIONS,
    FolderDataset,
    Folders,
    ParsingDataset,
    Transform,
    label_conversion,
    list_stems,
    nearest_colour_ids,
    read_id_file,
    read_id_png,
    read_stored_image,
    require_dir,
)
from ssfnet.geometry import resize_labels
from ssfnet.labels import IGNORE_INDEX, LabelSet

__all__ = [
    "IMAGE_EXTENSIONS",
    "ATRDataset",
    "CCPDataset",
    "CIHPDataset",
    "FolderDataset",
    "Folders",
    "LIPDataset",
    "ParsingDataset",
    "PascalPersonPartDataset",
    "Transform",
    "VitonDataset",
    "label_conversion",
    "list_stems",
    "nearest_colour_ids",
    "read_id_file",
    "read_id_png",
    "read_stored_image",
    "require_dir",
]


def _optional(root: Path, relative: str) -> str | None:
    return relative if (root / relative).is_file() else None


class LIPDataset(FolderDataset):
    """LIP: ``<split>_images/*.jpg``, ``<split>_segmentations/*.png`` and ``<split>_id.txt`` (if present).

    Takes :class:`FolderDataset`'s arguments (label set LIP-20 by default; without ``ids``,
    the id file's ids, or all labelled images without one) and the layout option ``split``:
    ``"train"`` (the default) or ``"val"``.
    """

    layout = "LIP's <split>_images/ and <split>_segmentations/ folders"
    stored_label_set = "lip-20"

    @classmethod
    def folders(cls, root: Path, split: str = "train") -> Folders:
        return Folders(f"{split}_images", f"{split}_segmentations", _optional(root, f"{split}_id.txt"))


class CIHPDataset(FolderDataset):
    """CIHP: ``<split>/Images/*.jpg``, ``<split>/Category_ids/*.png`` and an id file if present.

    The id file is ``<split>/train_id.txt`` for ``Training`` and ``<split>/val_id.txt`` for
    ``Validation``. CIHP's classes are LIP's but for id 10, ``torso-skin`` (label set
    ``cihp-20``), which LIP-20 has no class for: returned in LIP-20 it is ignore.

    Takes :class:`FolderDataset`'s arguments (``root`` holds ``Training/`` and
    ``Validation/``; label set LIP-20 by default) and the layout option ``split``:
    ``"Training"`` (the default) or ``"Validation"``.
    """

    layout = "CIHP's <split>/Images/ and <split>/Category_ids/ folders"
    stored_label_set = "cihp-20"

    @classmethod
    def folders(cls, root: Path, split: str = "Training") -> Folders:
        id_name = {"Training": "train_id.txt", "Validation": "val_id.txt"}.get(split, f"{split.lower()}_id.txt")
        return Folders(f"{split}/Images", f"{split}/Category_ids", _optional(root, f"{split}/{id_name}"))


class ATRDataset(FolderDataset):
    """ATR: ``JPEGImages/*.jpg`` and ``SegmentationClassAug/*.png`` (grey ids 0-17).

    Args:
        root: The ATR folder.
        label_set: Label set of the returned label maps (default ATR-18: no conversion to
            other sets is defined).
        ids: Subset of ids; default: all labelled images.
        transform: Called as ``transform(image, label)`` by ``__getitem__``.
        id_file: Optional id list relative to ``root``, a keyword.
    """

    layout = "ATR's JPEGImages/ and SegmentationClassAug/ folders"
    default_label_set = "atr-18"
    stored_label_set = "atr-18"

    @classmethod
    def folders(cls, root: Path, id_file: str | None = None) -> Folders:
        return Folders("JPEGImages", "SegmentationClassAug", id_file)


class PascalPersonPartDataset(FolderDataset):
    """PASCAL-Person-Part with palette, colour-coded or grey part PNGs.

    Layout: ``JPEGImages/<id>.jpg`` and ``SegmentationPart/<id>.png``, ids in the order of
    :data:`ssfnet.labels.PASCAL_PERSON_PART_7` (0 background, 1 head, 2 torso, 3 upper-arm,
    4 lower-arm, 5 upper-leg, 6 lower-leg). Each PNG is read by its mode:

    - palette (``P``), the usual release: the palette index is the id; any index other than
      0-6 or 255 is a ValueError, since then the file does not index this label set;
    - RGB(A) in the VOC palette, with colours a few levels off (as some copies store them): each
      pixel takes the id of the nearest palette colour. Pixels farther than ``colour_tolerance``
      from every palette colour, and fully transparent pixels, become ignore (255);
    - grey (``L``): the values are the ids.

    Args:
        root: Dataset folder.
        label_set: Label set of the returned label maps (default ``pascal-person-part-7``;
            ``lip-20`` gives its coarse part labels, ``person-head-3`` head and body).
        ids: Subset of ids; default: the id file's ids or all labelled images.
        transform: Called as ``transform(image, label)`` by ``__getitem__``.
        colour_tolerance: Largest per-channel difference still matched to a palette colour;
            None matches every colour to its nearest (a keyword).
        **layout_options: ``image_dir`` and ``label_dir`` (relative to ``root``; default
            ``JPEGImages`` and ``SegmentationPart``) and ``id_file``, an optional id list.
    """

    layout = "PASCAL-Person-Part's JPEGImages/ and SegmentationPart/ (colour PNG) folders"
    default_label_set = "pascal-person-part-7"
    stored_label_set = "pascal-person-part-7"

    def __init__(self, root: str | os.PathLike, *args: Any, colour_tolerance: int | None = 32, **options: Any) -> None:
        self.colour_tolerance = colour_tolerance
        super().__init__(root, *args, **options)

    @classmethod
    def folders(
        cls, root: Path, image_dir: str = "JPEGImages", label_dir: str = "SegmentationPart", id_file: str | None = None
    ) -> Folders:
        return Folders(image_dir, label_dir, id_file)

    def read_label(self, path: Path) -> np.ndarray:
        """Palette, colour or grey PNG -> H x W uint8 pascal-person-part-7 ids.

        Raises:
            ValueError: A palette PNG uses an index that is no part id (nor 255).
        """
        with Image.open(path) as im:
            if im.mode == "L":
                return np.array(im)
            if im.mode == "P":
                # The index is the id; its colour may be anything, so the index is not recoloured.
                ids = np.array(im)
                self._check_part_ids(ids, path)
                return ids
            rgba = np.array(im.convert("RGBA"))
        ids = nearest_colour_ids(rgba, self.source_label_set.palette, self.colour_tolerance)
        ids[rgba[..., 3] == 0] = IGNORE_INDEX
        return ids

    def _check_part_ids(self, ids: np.ndarray, path: Path) -> None:
        # A palette PNG with other indices is another label set (or a quantised colour image):
        # reading it as part ids would silently mislabel it.
        values = np.unique(ids)
        bad = [int(v) for v in values if v >= self.source_label_set.num_ids and v != IGNORE_INDEX]
        if bad:
            shown = ", ".join(map(str, bad[:10])) + (" ..." if len(bad) > 10 else "")
            raise ValueError(
                f"{path}: palette indices {shown} are no {self.source_label_set.name} id "
                f"(expected 0-{self.source_label_set.num_ids - 1} or {IGNORE_INDEX})"
            )


class CCPDataset(ParsingDataset):
    """Clothing Co-Parsing: ``photos/NNNN.jpg`` and ``annotations/pixel-level/NNNN.mat``.

    Only photos with a pixel-level annotation are samples. The ``.mat`` variable
    ``groundtruth`` indexes the 59 CCP tags (:data:`ssfnet.labels.CCP_59`); the labels are
    converted to ``label_set`` (LIP-20 gives the coarse ``skin`` and ``shoes`` values, since
    CCP has one skin tag and no left/right).

    A label map up to ``size_tolerance`` pixels off the photo's size in each dimension is
    nearest-resized to the photo (an export off-by-one, not a different picture); a larger
    mismatch is a ValueError. The release itself has no mismatches.

    Args:
        root: The CCP folder.
        label_set: Label set of the returned label maps: ``lip-20`` (default), ``fashion-17`` or
            ``ccp-59``.
        ids: Subset of ids (``"0002"``, ...).
        transform: Called as ``transform(image, label)`` by ``__getitem__``.
        size_tolerance: Largest per-dimension size difference that is resized rather than refused.
    """

    layout = "CCP's photos/NNNN.jpg and annotations/pixel-level/NNNN.mat"

    def __init__(
        self,
        root: str | os.PathLike,
        label_set: str | LabelSet = "lip-20",
        ids: Iterable[str] | None = None,
        transform: Transform | None = None,
        *,
        size_tolerance: int = 2,
    ) -> None:
        super().__init__(root, label_set, "ccp-59", transform)
        self.size_tolerance = size_tolerance
        self.photo_dir = require_dir(self.root / "photos", "the CCP photos (NNNN.jpg) in photos/")
        self.annotation_dir = require_dir(
            self.root / "annotations" / "pixel-level",
            "the CCP pixel-level annotations (NNNN.mat, variable 'groundtruth') in annotations/pixel-level/",
        )
        self._photos = list_stems(self.photo_dir, (".jpg", ".jpeg", ".png"))
        self._annotations = list_stems(self.annotation_dir, (".mat",))
        self._setup(self._photos.keys() & self._annotations.keys(), ids)

    def read_annotation(self, path: Path) -> np.ndarray:
        """The ``groundtruth`` map of a CCP ``.mat`` file as H x W uint8 CCP-59 ids."""
        mat = scipy.io.loadmat(path, variable_names=["groundtruth"])
        if "groundtruth" not in mat:
            raise ValueError(f"{path} has no variable 'groundtruth'")
        values = np.asarray(mat["groundtruth"])
        if values.ndim != 2:
            raise ValueError(f"{path}: 'groundtruth' has shape {values.shape}, expected H x W")
        if values.dtype != np.uint8:
            if values.size and (values.min() < 0 or values.max() > 255):
                raise ValueError(f"{path}: 'groundtruth' values outside 0-255")
            values = values.astype(np.uint8)
        return values

    def read(self, sample_id: str) -> tuple[np.ndarray, np.ndarray]:
        image = read_stored_image(self._photos[sample_id])
        label = self.read_annotation(self._annotations[sample_id])
        (h, w), (lh, lw) = image.shape[:2], label.shape
        if (lh, lw) != (h, w):
            if abs(lh - h) > self.size_tolerance or abs(lw - w) > self.size_tolerance:
                raise ValueError(
                    f"{self._annotations[sample_id]} is {lw}x{lh} but photo {self._photos[sample_id]} is {w}x{h}"
                )
            label = resize_labels(label, (h, w))
        return image, label


class VitonDataset(ParsingDataset):
    """VITON: ``image/NNNNNN_0.jpg`` and ``image-parse/NNNNNN_0.png`` (palette PNG, LIP-20 indices).

    Args:
        root: The VITON folder.
        label_set: Label set of the returned label maps (default LIP-20).
        ids: Subset of ids (``"000003_0"``, ...).
        transform: Called as ``transform(image, label)`` by ``__getitem__``.
    """

    layout = "VITON's image/NNNNNN_0.jpg and image-parse/NNNNNN_0.png"

    def __init__(
        self,
        root: str | os.PathLike,
        label_set: str | LabelSet = "lip-20",
        ids: Iterable[str] | None = None,
        transform: Transform | None = None,
    ) -> None:
        super().__init__(root, label_set, "lip-20", transform)
        self.image_dir = require_dir(self.root / "image", "the VITON photos (NNNNNN_0.jpg) in image/")
        self.parse_dir = require_dir(self.root / "image-parse", "the VITON parses (NNNNNN_0.png) in image-parse/")
        self._images = list_stems(self.image_dir, IMAGE_EXTENSIONS)
        self._parses = list_stems(self.parse_dir, (".png",))
        self._setup(self._images.keys() & self._parses.keys(), ids)

    def read(self, sample_id: str) -> tuple[np.ndarray, np.ndarray]:
        return read_stored_image(self._images[sample_id]), read_id_png(self._parses[sample_id])
