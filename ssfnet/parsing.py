"""What every predictor does around its network, whatever runs it (no torch here).

:class:`ImageParser` holds the public calls (:meth:`~ImageParser.predict`,
:meth:`~ImageParser.predict_proba`, :meth:`~ImageParser.predict_batch`) and the loop that
resizes each image to the input size at every scale, runs the images that share a size together,
brings the probabilities to the output size and averages them. A runtime supplies three steps:
the network's flip-averaged probabilities for a batch, their resize, and the final argmax and
conversion. :class:`ssfnet.Predictor` (PyTorch) and ``ssfnet.onnx_predictor.OnnxPredictor``
(onnxruntime) are the two.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .geometry import long_side_size, resize_image, resize_labels

# Probabilities are brought to at most this many pixels on the longer side; larger outputs are
# then enlarged with nearest neighbour (the network saw a ~473 px image, so nothing finer exists
# to recover).
MAX_PROB_SIDE = 1024


def check_image(image: np.ndarray) -> np.ndarray:
    """``image`` as contiguous H x W x 3 uint8 RGB: grey is repeated, RGBA's alpha dropped.

    Raises:
        ValueError: not an image of uint8 pixels with at least one pixel (the message says what it is).
    """
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise ValueError(f"expected an H x W x 3 RGB image, got shape {image.shape}")
    if image.shape[2] == 4:
        image = image[..., :3]
    if image.dtype != np.uint8:
        raise ValueError(f"expected uint8 pixels, got {image.dtype}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError("the image has no pixels")
    return np.ascontiguousarray(image)


class ImageParser:
    """Numpy images in, numpy label maps (or probabilities) out; see the module docstring.

    Subclasses set :attr:`input_size` and :attr:`scales` and implement :meth:`_batch_probabilities`,
    :meth:`_resize_probabilities` and :meth:`_labels_and_proba`. The arrays between those steps
    are the runtime's own (tensors on a device, or numpy), and only have to add and divide.
    """

    input_size: int
    scales: tuple[float, ...]

    def _batch_probabilities(self, batch: np.ndarray, flip: bool) -> Any:
        """Class probabilities for a B x h x w x 3 uint8 batch (one size), flip-averaged when ``flip``."""
        raise NotImplementedError

    def _resize_probabilities(self, prob: Any, index: int, size: tuple[int, int]) -> Any:
        """The ``index``-th image's probabilities of :meth:`_batch_probabilities`'s result, at ``size``."""
        raise NotImplementedError

    def _labels_and_proba(self, mean: Any, proba: bool) -> np.ndarray:
        """From averaged resized probabilities: K x H x W float32 when ``proba``, else H x W uint8 labels."""
        raise NotImplementedError

    def predict_proba(self, image: np.ndarray, *, multiscale: bool = False, flip: bool | None = None) -> np.ndarray:
        """Class probabilities (K x h x w float32) at the output size, see :meth:`predict`."""
        return self._predict_many([image], multiscale=multiscale, flip=flip, proba=True)[0]

    def predict(self, image: np.ndarray, *, multiscale: bool = False, flip: bool | None = None) -> np.ndarray:
        """Parse one image.

        Args:
            image: H x W x 3 uint8 RGB (H x W grayscale and RGBA are accepted).
            multiscale: Average over :attr:`scales` (slower, usually better).
            flip: Also average the mirrored image (default: with multiscale).

        Returns:
            H x W uint8 label map (ids of the predictor's label set).
        """
        return self.predict_batch([image], multiscale=multiscale, flip=flip)[0]

    def predict_batch(
        self,
        images: Sequence[np.ndarray],
        *,
        multiscale: bool = False,
        flip: bool | None = None,
        batch_size: int = 8,
    ) -> list[np.ndarray]:
        """Parse several images (any sizes); same options as :meth:`predict`."""
        out = []
        for start in range(0, len(images), batch_size):
            out += self._predict_many(images[start : start + batch_size], multiscale=multiscale, flip=flip)
        return out

    def _predict_many(self, images, *, multiscale: bool, flip: bool | None, proba: bool = False) -> list[np.ndarray]:
        images = [check_image(im) for im in images]
        flip = multiscale if flip is None else flip
        scales = self.scales if multiscale else (1.0,)
        accum: list[Any] = [None] * len(images)
        out_sizes = [long_side_size(*im.shape[:2], MAX_PROB_SIDE, enlarge=False) for im in images]
        for scale in scales:
            sizes = [long_side_size(*im.shape[:2], self.input_size, factor=scale) for im in images]
            # Images that resize to the same size share a run. Padding different sizes together
            # would change the pyramid pooling's global context, so a batch would not give the
            # same answer as one image.
            groups: dict[tuple[int, int], list[int]] = {}
            for i, size in enumerate(sizes):
                groups.setdefault(size, []).append(i)
            for (h, w), members in groups.items():
                prob = self._batch_probabilities(np.stack([resize_image(images[i], (h, w)) for i in members]), flip)
                for j, i in enumerate(members):
                    p = self._resize_probabilities(prob, j, out_sizes[i])
                    accum[i] = p if accum[i] is None else accum[i] + p
        results = []
        for im, acc in zip(images, accum):
            result = self._labels_and_proba(acc / len(scales), proba)
            results.append(result if proba else resize_labels(result, im.shape[:2]))
        return results
