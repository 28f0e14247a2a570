"""Training and evaluation transforms on numpy (image, label) pairs.

Images are H x W x 3 uint8 RGB and labels H x W uint8 ids. Label maps are only ever resized
with nearest neighbour, so a transform never invents a value: its output holds the input's
values, their left/right mirrors (after a flip) and ``IGNORE_INDEX`` (padding).

The transforms return tensors: image ``3 x H x W`` uint8 (normalisation happens inside the
model) and label ``H x W`` int64.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import get_worker_info

from ssfnet.geometry import resize_image, resize_labels, resize_long_side
from ssfnet.labels import IGNORE_INDEX, LabelSet, conversion_lut, get_label_set

# ImageNet mean colour: padding with it gives ~0 after the model's normalisation.
MEAN_COLOUR = (124, 116, 104)


def flip_sample(image: np.ndarray, label: np.ndarray, label_set: str | LabelSet) -> tuple[np.ndarray, np.ndarray]:
    """Mirror an (image, label) pair left-right, swapping left/right ids (coarse ones too).

    Args:
        image: H x W x 3 uint8.
        label: H x W uint8 ids of ``label_set``.
        label_set: Provides ``flip_lut``.

    Returns:
        The mirrored image and label map (new contiguous arrays).
    """
    lut = get_label_set(label_set).flip_lut
    return np.ascontiguousarray(image[:, ::-1]), lut[label[:, ::-1]]


def to_tensors(image: np.ndarray, label: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """H x W x 3 uint8 image and H x W label -> (3 x H x W uint8 tensor, H x W int64 tensor)."""
    return (
        torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))),
        torch.from_numpy(label.astype(np.int64)),
    )


def _pair(size: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    height, width = size
    return int(height), int(width)


def _window(size: int, crop: int, rng: np.random.Generator) -> tuple[slice, slice]:
    """Random source and destination slices along one axis: crop if ``size >= crop``, else pad."""
    if size >= crop:
        start = int(rng.integers(0, size - crop + 1))
        return slice(start, start + crop), slice(0, crop)
    offset = int(rng.integers(0, crop - size + 1))
    return slice(0, size), slice(offset, offset + size)


class TrainTransform:
    """Random scale, random crop (padding when too small) and horizontal flip.

    The scale is relative to a base at which the image just fits the crop (for a square crop:
    its longer side equals ``crop_size``), so ``scale_range=(0.5, 1.5)`` spans half-size people
    surrounded by padding to enlarged close-ups, whatever the source resolution. A flip also
    swaps left/right ids through ``label_set.flip_lut``.

    Randomness: pass ``seed`` or ``rng`` for reproducible output in the main process. Inside
    DataLoader workers every worker would otherwise hold a copy of the same generator, so there
    the transform reseeds from ``(seed, worker seed)``; seed the DataLoader's ``generator`` to
    make multi-worker runs reproducible too.

    Args:
        crop_size: Output size, an int (square) or ``(height, width)``.
        scale_range: Range of the uniform random scale factor relative to the base.
        flip: Flip with probability 0.5.
        label_set: Label set of the label maps; required when ``flip`` is set.
        pad_colour: RGB fill for image padding (label padding is ``IGNORE_INDEX``).
        seed: Seed for a new generator.
        rng: A generator to draw from (takes precedence over ``seed`` in the main process).
    """

    def __init__(
        self,
        crop_size: int | tuple[int, int] = 473,
        scale_range: tuple[float, float] = (0.5, 1.5),
        flip: bool = True,
        label_set: str | LabelSet | None = None,
        *,
        pad_colour: tuple[int, int, int] = MEAN_COLOUR,
        seed: int | None = None,
        rng: np.random.Generator | None = None,
    ) -> None:
        self.crop_size = _pair(crop_size)
        if min(self.crop_size) < 1:
            raise ValueError(f"crop size must be positive, got {crop_size}")
        low, high = scale_range
        if not 0 < low <= high:
            raise ValueError(f"scale_range must satisfy 0 < low <= high, got {scale_range}")
        self.scale_range = (float(low), float(high))
        if flip and label_set is None:
            raise ValueError("flip=True needs the label_set, to swap left/right ids")
        self.flip = flip
        self.label_set = get_label_set(label_set) if label_set is not None else None
        self.pad_colour = tuple(int(c) for c in pad_colour)
        self.rng = rng if rng is not None else np.random.default_rng(seed)
        # Entropy for per-worker generators, fixed now so workers derive the same streams every run.
        self._worker_entropy = seed if seed is not None else int(self.rng.integers(2**63))
        self._worker_key: tuple[int, int] | None = None
        self._worker_rng: np.random.Generator | None = None

    def _generator(self) -> np.random.Generator:
        info = get_worker_info()
        if info is None:
            return self.rng
        if self._worker_key != (info.id, info.seed):
            self._worker_key = (info.id, info.seed)
            self._worker_rng = np.random.default_rng([self._worker_entropy, info.seed])
        return self._worker_rng

    def __call__(
        self, image: np.ndarray, label: np.ndarray, rng: np.random.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Augment one pair.

        Args:
            image: H x W x 3 uint8 RGB.
            label: H x W uint8 ids.
            rng: Generator for this call (default: the transform's own).

        Returns:
            Image ``3 x crop_h x crop_w`` uint8 tensor and label ``crop_h x crop_w`` int64 tensor.
        """
        if label.shape != image.shape[:2]:
            raise ValueError(f"label shape {label.shape} does not match image shape {image.shape[:2]}")
        rng = rng if rng is not None else self._generator()
        crop_h, crop_w = self.crop_size
        h, w = label.shape
        factor = min(crop_h / h, crop_w / w) * rng.uniform(*self.scale_range)
        new_h, new_w = max(1, round(h * factor)), max(1, round(w * factor))
        image = resize_image(image, (new_h, new_w))
        label = resize_labels(label, (new_h, new_w))

        rows_src, rows_dst = _window(new_h, crop_h, rng)
        cols_src, cols_dst = _window(new_w, crop_w, rng)
        out_image = np.empty((crop_h, crop_w, 3), dtype=np.uint8)
        out_image[:] = self.pad_colour
        out_label = np.full((crop_h, crop_w), IGNORE_INDEX, dtype=np.uint8)
        out_image[rows_dst, cols_dst] = image[rows_src, cols_src]
        out_label[rows_dst, cols_dst] = label[rows_src, cols_src]

        if self.flip and rng.random() < 0.5:
            out_image, out_label = flip_sample(out_image, out_label, self.label_set)
        return to_tensors(out_image, out_label)


class EvalTransform:
    """Deterministic resize so the longer side is ``size`` (aspect kept), then tensors.

    Args:
        size: Length of the longer side; None keeps the original resolution.
        label_set: If given, label values that are neither an id of this set nor ignore become
            ``IGNORE_INDEX``, so stray values cannot reach the metrics.
    """

    def __init__(self, size: int | None = 473, label_set: str | LabelSet | None = None) -> None:
        if size is not None and size < 1:
            raise ValueError(f"size must be positive, got {size}")
        self.size = size
        self.label_set = get_label_set(label_set) if label_set is not None else None
        self._lut = conversion_lut(self.label_set, self.label_set) if self.label_set is not None else None

    def __call__(self, image: np.ndarray, label: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Image H x W x 3 uint8, label H x W uint8 -> (3 x h x w uint8, h x w int64) tensors."""
        if label.shape != image.shape[:2]:
            raise ValueError(f"label shape {label.shape} does not match image shape {image.shape[:2]}")
        if self.size is not None:
            image = resize_long_side(image, self.size)
            label = resize_long_side(label, self.size, nearest=True)
        if self._lut is not None:
            label = self._lut[label]
        return to_tensors(image, label)
