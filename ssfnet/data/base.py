"""The dataset contract shared by every layout, the file readers and the generic folder layout.

Every dataset (the benchmark layouts in :mod:`ssfnet.data.layouts`, the corrections store, the
packs) follows one contract:

- ``Dataset(root, label_set=..., ids=None, transform=None, **layout_options)``;
- ``label_set``: the :class:`~ssfnet.labels.LabelSet` of the label maps it returns
  (stored labels are converted with :func:`ssfnet.labels.conversion_lut`);
- ``ids``: sorted list of sample ids (file stems);
- ``load(i)``: ``(H x W x 3 uint8 RGB image, H x W uint8 label map)`` as numpy arrays;
- ``dataset[i]``: ``transform(image, label)`` if a transform is set, else ``load(i)``.

:func:`read_stored_image` decodes images as stored, without applying an EXIF orientation: the
benchmark labels were drawn on the raw pixel grid, so rotating the photo would misalign them.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from ssfnet.labels import IGNORE_INDEX, LabelSet, conversion_lut, get_label_set

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")

Transform = Callable[[np.ndarray, np.ndarray], Any]


def read_stored_image(path: str | os.PathLike) -> np.ndarray:
    """Decode a dataset image as H x W x 3 uint8 RGB (grey, palette, CMYK and alpha images converted).

    Unlike :func:`ssfnet.io.read_image` (for uploads), the EXIF orientation is not applied:
    a benchmark's label maps match the stored pixels.
    """
    with Image.open(path) as im:
        return np.array(im.convert("RGB"))


def read_id_png(path: str | os.PathLike) -> np.ndarray:
    """Read a PNG whose pixel values are label ids (grey ``L`` or palette ``P``) as H x W uint8.

    For a palette PNG the palette indices are the ids; the colours are ignored.

    Raises:
        ValueError: The PNG holds colours (RGB/RGBA) or values above 255.
    """
    with Image.open(path) as im:
        mode = im.mode
        values = np.array(im)
    if mode in ("L", "P"):
        return values
    if mode.startswith("I") and values.ndim == 2:
        # 16/32-bit grey PNGs appear in some conversions; accept them if the values fit.
        if values.size and (values.min() < 0 or values.max() > 255):
            raise ValueError(f"{path}: label values outside 0-255 in a mode {mode} PNG")
        return values.astype(np.uint8)
    raise ValueError(f"{path}: expected a single-channel id PNG (mode L or P), got mode {mode}")


def nearest_colour_ids(
    rgb: np.ndarray, palette: Sequence[tuple[int, int, int]], max_error: int | None = None
) -> np.ndarray:
    """Map every pixel of a colour-coded label image to the id of its nearest palette colour.

    Args:
        rgb: H x W x 3 (or H x W x 4, alpha ignored) uint8 colours.
        palette: One RGB colour per id.
        max_error: If set, pixels farther than this from every palette colour (largest
            per-channel difference) become ``IGNORE_INDEX`` instead, so stray colours such as
            VOC's (224, 224, 192) boundary do not turn into a class.

    Returns:
        H x W uint8 ids.
    """
    if rgb.ndim != 3 or rgb.shape[2] < 3:
        raise ValueError(f"expected H x W x 3 colours, got shape {rgb.shape}")
    pixels = rgb[..., :3].astype(np.int32)
    packed = (pixels[..., 0] << 16) | (pixels[..., 1] << 8) | pixels[..., 2]
    # Label images hold a handful of distinct colours: match those, then scatter back.
    colours, inverse = np.unique(packed.ravel(), return_inverse=True)
    unique_rgb = np.stack([(colours >> 16) & 255, (colours >> 8) & 255, colours & 255], axis=1)
    pal = np.asarray(palette, dtype=np.int32).reshape(-1, 3)
    diff = unique_rgb[:, None, :] - pal[None, :, :]
    nearest = np.argmin((diff**2).sum(axis=2), axis=1)
    ids = nearest.astype(np.uint8)
    if max_error is not None:
        error = np.abs(diff[np.arange(len(colours)), nearest]).max(axis=1)
        ids[error > max_error] = IGNORE_INDEX
    return ids[inverse].reshape(packed.shape)


def read_id_file(path: str | os.PathLike) -> list[str]:
    """Ids listed one per line (blank lines skipped; a trailing image extension is dropped)."""
    ids = []
    for line in Path(path).read_text().splitlines():
        tokens = line.split()
        if not tokens:
            continue
        # Some lists hold "images/<id>.jpg labels/<id>.png" pairs: the first file names the id.
        name = Path(tokens[0]).name
        ids.append(Path(name).stem if Path(name).suffix.lower() in IMAGE_EXTENSIONS else name)
    return ids


def list_stems(folder: Path, extensions: Iterable[str]) -> dict[str, Path]:
    """Map file stem -> path for the files in ``folder`` with one of ``extensions`` (first extension wins)."""
    order = {ext: i for i, ext in enumerate(extensions)}
    found: dict[str, tuple[int, Path]] = {}
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.name.startswith(".") or not entry.is_file():
                continue
            stem, ext = os.path.splitext(entry.name)
            rank = order.get(ext.lower())
            if rank is not None and (stem not in found or rank < found[stem][0]):
                found[stem] = (rank, Path(entry.path))
    return {stem: path for stem, (_, path) in found.items()}


def require_dir(path: Path, what: str) -> Path:
    """Return ``path`` if it is a directory, else raise a FileNotFoundError saying what belongs there."""
    if not path.is_dir():
        raise FileNotFoundError(f"{path} not found: expected {what}")
    return path


def label_conversion(source: LabelSet, target: LabelSet) -> np.ndarray:
    """The 256-entry LUT from ``source`` to ``target``, or a ValueError naming both sets."""
    try:
        return conversion_lut(source, target)
    except KeyError as err:
        raise ValueError(f"labels in {source.name} cannot be converted to {target.name}: {err.args[0]}") from None


class ParsingDataset(Dataset, ABC):
    """Base of the layout datasets: id selection, label conversion, size checks and transforms.

    Subclasses set ``self.root`` and call :meth:`_setup` with the ids they found, and implement
    :meth:`read`, which returns the stored image and label map in ``source_label_set``.

    Args:
        root: Dataset folder.
        label_set: Label set of the returned label maps.
        source_label_set: Label set the files are stored in.
        transform: Called as ``transform(image, label)`` by ``__getitem__``.
    """

    layout: ClassVar[str] = "a folder of images and label maps"

    def __init__(
        self,
        root: str | os.PathLike,
        label_set: str | LabelSet,
        source_label_set: str | LabelSet,
        transform: Transform | None = None,
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"dataset folder {self.root} not found: expected {self.layout}")
        self.label_set = get_label_set(label_set)
        self.source_label_set = get_label_set(source_label_set)
        # Even the identity LUT is applied: it turns values outside the set into ignore.
        self._lut = label_conversion(self.source_label_set, self.label_set)
        self.transform = transform
        self.ids: list[str] = []

    def _setup(self, available: Iterable[str], ids: Iterable[str] | None) -> None:
        available = set(available)
        if ids is None:
            self.ids = sorted(available)
            return
        wanted = [str(i) for i in ids]
        missing = [i for i in wanted if i not in available]
        if missing:
            shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
            raise ValueError(f"{len(missing)} requested ids are not in {self.root}: {shown}")
        self.ids = sorted(set(wanted))

    @abstractmethod
    def read(self, sample_id: str) -> tuple[np.ndarray, np.ndarray]:
        """The stored image (H x W x 3 uint8 RGB) and label map (H x W uint8, source label set)."""

    def __len__(self) -> int:
        return len(self.ids)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Sample ``index`` as (H x W x 3 uint8 RGB image, H x W uint8 label map in ``label_set``)."""
        sample_id = self.ids[index]
        image, label = self.read(sample_id)
        if label.shape != image.shape[:2]:
            raise ValueError(
                f"{self.root}: sample {sample_id} has a {label.shape[1]}x{label.shape[0]} label map "
                f"for a {image.shape[1]}x{image.shape[0]} image"
            )
        return image, self._lut[label]

    def __getitem__(self, index: int) -> Any:
        image, label = self.load(index)
        if self.transform is None:
            return image, label
        return self.transform(image, label)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(root={str(self.root)!r}, label_set={self.label_set.name!r}, n={len(self)})"


@dataclass(frozen=True)
class Folders:
    """Where a :class:`FolderDataset` finds its files, relative to its root."""

    image_dir: str
    label_dir: str
    id_file: str | None = None


class FolderDataset(ParsingDataset):
    """Images plus grey (or palette) id PNGs with the same stem, the LIP / CIHP / ATR idea.

    Layout::

        root/<image_dir>/<id>.jpg|.jpeg|.png|...
        root/<label_dir>/<id>.png          # pixel value = label id in the stored label set
        root/<id_file>                     # optional: one id per line

    A benchmark's layout is a subclass that names its stored label set
    (:attr:`stored_label_set`), its default returned set and, in :meth:`folders`, how its
    layout options (a split, say) become folders.

    Args:
        root: Dataset folder.
        label_set: Label set of the returned label maps (default :attr:`default_label_set`).
        ids: Subset of ids to use; all labelled images if None.
        transform: Called as ``transform(image, label)`` by ``__getitem__``.
        **layout_options: The arguments of :meth:`folders`; here ``image_dir`` and
            ``label_dir`` (relative to ``root``) and ``id_file``, an optional id list relative
            to ``root``: it must exist if given, and every id in it must have an image and a
            label. Without it, every image with a label is used.
    """

    layout = "<image_dir>/<id>.jpg|.png images and <label_dir>/<id>.png id maps"
    default_label_set: ClassVar[str] = "lip-20"
    #: Label set of the stored PNGs; None: they hold the returned label set's ids.
    stored_label_set: ClassVar[str | None] = None

    def __init__(
        self,
        root: str | os.PathLike,
        label_set: str | LabelSet | None = None,
        ids: Iterable[str] | None = None,
        transform: Transform | None = None,
        **layout_options: Any,
    ) -> None:
        label_set = label_set or self.default_label_set
        super().__init__(root, label_set, self.stored_label_set or label_set, transform)
        folders = self.folders(self.root, **layout_options)
        self.image_dir = require_dir(
            self.root / folders.image_dir, f"the images (<id>.jpg or .png) in {folders.image_dir}/"
        )
        self.label_dir = require_dir(
            self.root / folders.label_dir, f"the label maps (<id>.png) in {folders.label_dir}/"
        )
        self._images = list_stems(self.image_dir, IMAGE_EXTENSIONS)
        self._labels = list_stems(self.label_dir, (".png",))
        labelled = self._images.keys() & self._labels.keys()
        id_file = folders.id_file
        if id_file is None and not labelled and (self._images or self._labels):
            raise ValueError(self._no_pairs_message())
        if id_file is not None:
            listed = read_id_file(self._id_file_path(id_file))
            unlabelled = [i for i in listed if i not in labelled]
            if unlabelled:
                shown = ", ".join(unlabelled[:5]) + (" ..." if len(unlabelled) > 5 else "")
                raise FileNotFoundError(
                    f"{len(unlabelled)} ids of {self.root / id_file} lack an image in {self.image_dir} "
                    f"or a label in {self.label_dir}: {shown}"
                )
            labelled = set(listed)
        self._setup(labelled, ids)

    @classmethod
    def folders(
        cls, root: Path, image_dir: str = "images", label_dir: str = "labels", id_file: str | None = None
    ) -> Folders:
        """The folders and id list of the layout options (``root`` is there to look for optional files)."""
        return Folders(image_dir, label_dir, id_file)

    def _no_pairs_message(self) -> str:
        """Why no image has a label: a side is empty, or the names never match (with examples of each)."""
        if not self._images:
            kinds = ", ".join(IMAGE_EXTENSIONS)
            return f"{self.image_dir} holds no images ({kinds}) for the {len(self._labels)} labels"
        if not self._labels:
            return f"{self.label_dir} holds no label maps (<id>.png) for the {len(self._images)} images"
        images = ", ".join(p.name for p in sorted(self._images.values())[:3])
        labels = ", ".join(p.name for p in sorted(self._labels.values())[:3])
        return (
            f"no image in {self.image_dir} has a label of the same name in {self.label_dir}: an image <id>.jpg "
            f"needs the label <id>.png, but the {len(self._images)} images are named like {images} and the "
            f"{len(self._labels)} labels like {labels}"
        )

    def _id_file_path(self, id_file: str) -> Path:
        path = self.root / id_file
        if not path.is_file():
            raise FileNotFoundError(f"id list {path} not found: expected one sample id per line")
        return path

    def image_path(self, sample_id: str) -> Path:
        return self._images[sample_id]

    def label_path(self, sample_id: str) -> Path:
        return self._labels[sample_id]

    def read_label(self, path: Path) -> np.ndarray:
        """A stored label file -> H x W uint8 ids in ``source_label_set``."""
        return read_id_png(path)

    def read(self, sample_id: str) -> tuple[np.ndarray, np.ndarray]:
        return read_stored_image(self._images[sample_id]), self.read_label(self._labels[sample_id])
