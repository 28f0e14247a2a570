"""Image geometry: the size a picture is brought to, and resizing of images and label maps.

The predictor, the training transforms and augmentation, the packs and the app's editing code
all follow these rules:

- :func:`long_side_size`: ``(h, w)`` with the longer side brought to N pixels, aspect kept, each
  side rounded and at least 1 pixel;
- :func:`resize_image`: area averaging when shrinking (no aliasing), bilinear when enlarging;
- :func:`resize_labels`: nearest neighbour sampling pixel centres, so no value is invented and
  a map enlarged and shrunk back is the original.

Sizes are ``(height, width)``, the order of numpy shapes; only OpenCV's calls take
``(width, height)``, and only this module makes them.
"""

from __future__ import annotations

import cv2
import numpy as np


def long_side_size(
    height: int, width: int, side: float, *, factor: float = 1.0, enlarge: bool = True
) -> tuple[int, int]:
    """The ``(h, w)`` at which the longer side of a ``height`` x ``width`` picture is ``side``.

    Args:
        height: Height of the picture.
        width: Width of the picture.
        side: Target length of the longer side.
        factor: A further scale on top (the predictor's multi-scale factors): the longer side
            becomes ``side * factor``.
        enlarge: If False, a picture already within ``side`` keeps its size (only shrinking).

    Returns:
        ``(h, w)``, each rounded to the nearest integer and at least 1.
    """
    if height < 1 or width < 1:
        raise ValueError(f"a picture needs at least one pixel, got {height}x{width} (h x w)")
    scale = side / max(height, width)
    if not enlarge:
        scale = min(1.0, scale)
    return max(1, round(height * scale * factor)), max(1, round(width * scale * factor))


def resize_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize an image (H x W x C or H x W) to ``size = (h, w)``.

    Area averaging when the result has fewer pixels, bilinear otherwise.

    Returns:
        The resized array, or ``image`` itself if it already has that size.
    """
    height, width = size
    if image.shape[:2] == (height, width):
        return image
    shrink = height * width < image.shape[0] * image.shape[1]
    interpolation = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    return cv2.resize(np.ascontiguousarray(image), (width, height), interpolation=interpolation)


def resize_labels(labels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a label map (H x W ids, or any array whose values must stay as they are) to ``(h, w)``.

    Nearest neighbour at pixel centres (``INTER_NEAREST_EXACT``; plain ``INTER_NEAREST`` shifts
    the map by up to half a pixel): every output value is one of the input's, and enlarging a
    map and shrinking it back gives the original exactly.

    Returns:
        The resized array, or ``labels`` itself if it already has that size.
    """
    height, width = size
    if labels.shape[:2] == (height, width):
        return labels
    return cv2.resize(np.ascontiguousarray(labels), (width, height), interpolation=cv2.INTER_NEAREST_EXACT)


def resize_long_side(image: np.ndarray, size: int, *, nearest: bool = False) -> np.ndarray:
    """Resize so the longer side is ``size`` pixels, keeping the aspect ratio.

    Args:
        image: H x W x C or H x W array (uint8).
        size: Target length of the longer side.
        nearest: Resize as a label map (:func:`resize_labels`); otherwise as an image
            (:func:`resize_image`).

    Returns:
        The resized array (the input itself if it already has that size).
    """
    target = long_side_size(*image.shape[:2], size)
    return resize_labels(image, target) if nearest else resize_image(image, target)
