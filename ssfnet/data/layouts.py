"""Datasets for the on-disk layouts of the human-parsing benchmarks.

Every dataset here follows one contract:

- ``Dataset(root, label_set=..., ids=None, transform=None, **layout_options)``;
- ``label_set``: the :class:`~ssfnet.labels.LabelSet` of the label maps it returns
  (stored labels are converted with :func:`ssfnet.labels.conversion_lut`);
- ``ids``: sorted list of sample ids (file stems);
- ``load(i)``: ``(H x W x 3 uint8 RGB image, H x W uint8 label map)`` as numpy arrays;
- ``dataset[i]``: ``transform(image, label)`` if a transform is set, else ``load(i)``.

Images are decoded as stored, without applying an EXIF orientation: the benchmark
labels were drawn on the raw pixel grid, so rotating the photo would misalign them.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import scipy.io
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


class FolderDataset(ParsingDataset):
    """Images plus grey (or palette) id PNGs with the same stem, the LIP / CIHP / ATR idea.

    Layout::

        root/<image_dir>/<id>.jpg|.jpeg|.png|...
        root/<label_dir>/<id>.png          # pixel value = label id in source_label_set
        root/<id_file>                     # optional: one id per line

    Args:
        root: Dataset folder.
        label_set: Label set of the returned label maps (default LIP-20).
        ids: Subset of ids to use; all labelled images if None.
        transform: Called as ``transform(image, label)`` by ``__getitem__``.
        image_dir: Image folder, relative to ``root``.
        label_dir: Label folder, relative to ``root``.
        id_file: Optional id list, relative to ``root``; it must exist if given, and every id in
            it must have an image and a label. Without it, every image with a label is used.
        source_label_set: Label set of the stored PNGs (default: ``label_set``).
    """

    layout = "<image_dir>/<id>.jpg|.png images and <label_dir>/<id>.png id maps"

    def __init__(
        self,
        root: str | os.PathLike,
        label_set: str | LabelSet = "lip-20",
        ids: Iterable[str] | None = None,
        transform: Transform | None = None,
        *,
        image_dir: str = "images",
        label_dir: str = "labels",
        id_file: str | None = None,
        source_label_set: str | LabelSet | None = None,
    ) -> None:
        super().__init__(root, label_set, source_label_set or label_set, transform)
        self.image_dir = require_dir(self.root / image_dir, f"the images (<id>.jpg or .png) in {image_dir}/")
        self.label_dir = require_dir(self.root / label_dir, f"the label maps (<id>.png) in {label_dir}/")
        self._images = list_stems(self.image_dir, IMAGE_EXTENSIONS)
        self._labels = list_stems(self.label_dir, (".png",))
        labelled = self._images.keys() & self._labels.keys()
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


def _optional(root: Path, relative: str) -> str | None:
    return relative if (root / relative).is_file() else None


class LIPDataset(FolderDataset):
    """LIP: ``<split>_images/*.jpg``, ``<split>_segmentations/*.png`` and ``<split>_id.txt`` (if present).

    Args:
        root: The LIP folder.
        label_set: Label set of the returned label maps (default LIP-20).
        ids: Subset of ids; default: the id file's ids, or all labelled images without one.
        transform: Called as ``transform(image, label)`` by ``__getitem__``.
        split: ``"train"`` or ``"val"``.
    """

    layout = "LIP's <split>_images/ and <split>_segmentations/ folders"

    def __init__(
        self,
        root: str | os.PathLike,
        label_set: str | LabelSet = "lip-20",
        ids: Iterable[str] | None = None,
        transform: Transform | None = None,
        *,
        split: str = "train",
    ) -> None:
        super().__init__(
            root,
            label_set,
            ids,
            transform,
            image_dir=f"{split}_images",
            label_dir=f"{split}_segmentations",
            id_file=_optional(Path(root), f"{split}_id.txt"),
            source_label_set="lip-20",
        )


class CIHPDataset(FolderDataset):
    """CIHP: ``<split>/Images/*.jpg``, ``<split>/Category_ids/*.png`` and an id file if present.

    The id file is ``<split>/train_id.txt`` for ``Training`` and ``<split>/val_id.txt`` for
    ``Validation``. CIHP uses LIP's 20 classes.

    Args:
        root: The CIHP folder (holding ``Training/`` and ``Validation/``).
        label_set: Label set of the returned label maps (default LIP-20).
        ids: Subset of ids; default: the id file's ids, or all labelled images without one.
        transform: Called as ``transform(image, label)`` by ``__getitem__``.
        split: ``"Training"`` or ``"Validation"``.
    """

    layout = "CIHP's <split>/Images/ and <split>/Category_ids/ folders"

    def __init__(
        self,
        root: str | os.PathLike,
        label_set: str | LabelSet = "lip-20",
        ids: Iterable[str] | None = None,
        transform: Transform | None = None,
        *,
        split: str = "Training",
    ) -> None:
        id_name = {"Training": "train_id.txt", "Validation": "val_id.txt"}.get(split, f"{split.lower()}_id.txt")
        super().__init__(
            root,
            label_set,
            ids,
            transform,
            image_dir=f"{split}/Images",
            label_dir=f"{split}/Category_ids",
            id_file=_optional(Path(root), f"{split}/{id_name}"),
            source_label_set="cihp-20",
        )


class ATRDataset(FolderDataset):
    """ATR: ``JPEGImages/*.jpg`` and ``SegmentationClassAug/*.png`` (grey ids 0-17).

    Args:
        root: The ATR folder.
        label_set: Label set of the returned label maps (default ATR-18: no conversion to
            other sets is defined).
        ids: Subset of ids; default: all labelled images.
        transform: Called as ``transform(image, label)`` by ``__getitem__``.
        id_file: Optional id list relative to ``root``.
    """

    layout = "ATR's JPEGImages/ and SegmentationClassAug/ folders"

    def __init__(
        self,
        root: str | os.PathLike,
        label_set: str | LabelSet = "atr-18",
        ids: Iterable[str] | None = None,
        transform: Transform | None = None,
        *,
        id_file: str | None = None,
    ) -> None:
        super().__init__(
            root,
            label_set,
            ids,
            transform,
            image_dir="JPEGImages",
            label_dir="SegmentationClassAug",
            id_file=id_file,
            source_label_set="atr-18",
        )


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
        image_dir: Image folder, relative to ``root``.
        label_dir: Colour label folder, relative to ``root``.
        id_file: Optional id list relative to ``root``.
        colour_tolerance: Largest per-channel difference still matched to a palette colour;
            None matches every colour to its nearest.
    """

    layout = "PASCAL-Person-Part's JPEGImages/ and SegmentationPart/ (colour PNG) folders"

    def __init__(
        self,
        root: str | os.PathLike,
        label_set: str | LabelSet = "pascal-person-part-7",
        ids: Iterable[str] | None = None,
        transform: Transform | None = None,
        *,
        image_dir: str = "JPEGImages",
        label_dir: str = "SegmentationPart",
        id_file: str | None = None,
        colour_tolerance: int | None = 32,
    ) -> None:
        self.colour_tolerance = colour_tolerance
        super().__init__(
            root,
            label_set,
            ids,
            transform,
            image_dir=image_dir,
            label_dir=label_dir,
            id_file=id_file,
            source_label_set="pascal-person-part-7",
        )

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
            rows = np.minimum(np.arange(h) * lh // h, lh - 1)
            cols = np.minimum(np.arange(w) * lw // w, lw - 1)
            label = label[rows[:, None], cols[None, :]]
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
