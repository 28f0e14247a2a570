"""Superpixels of the working image, for the superpixel click tool: computed once per photo and coarseness.

SLIC (scikit-image) was picked over Felzenszwalb's graph segmentation by their time on a
1000 x 663 photo (CCP 0002) on the project's busy 2-core CPU: SLIC 2.3-3.9 s for 300-1500
segments, Felzenszwalb 4.3-7.0 s for as many; OpenCV's ``ximgproc`` superpixels need the
contrib build, which this project does not install. The Lab conversion is OpenCV's (0.02 s instead of
scikit-image's 0.35 s). Nothing here imports Gradio.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import cv2
import numpy as np

# The coarseness slider: about this many superpixels per photo (fewer: larger ones).
DEFAULT_SEGMENTS = 600
MIN_SEGMENTS = 50
MAX_SEGMENTS = 3000
# How much SLIC weighs closeness against colour (in Lab units): its authors' usual value.
COMPACTNESS = 10.0


def superpixels(image: np.ndarray, segments: int = DEFAULT_SEGMENTS) -> np.ndarray:
    """SLIC superpixels of ``image``: each a 4-connected region of similar colour.

    Args:
        image: H x W x 3 uint8 RGB.
        segments: About how many superpixels to make (SLIC's grid; the result differs a little).

    Returns:
        H x W int32 superpixel ids, 0 to N - 1.
    """
    from skimage.segmentation import slic  # imported on first use: the app starts without it

    lab = cv2.cvtColor(np.ascontiguousarray(image[..., :3]).astype(np.float32) / 255, cv2.COLOR_RGB2Lab)
    segments = int(np.clip(segments, 1, image.shape[0] * image.shape[1]))
    # slic rescales its input to [0, 1]: the compactness is scaled alike, so that colour weighs as
    # against Lab's own units (SLIC's usual 10).
    span = max(float(lab.max() - lab.min()), 1e-6)
    ids = slic(
        lab, n_segments=segments, compactness=COMPACTNESS / span, convert2lab=False, start_label=0, channel_axis=-1
    )
    return ids.astype(np.int32, copy=False)


@dataclass(frozen=True)
class Segmentation:
    """Superpixel ids of one image at one coarseness, and what they cost."""

    segments: int
    ids: np.ndarray
    seconds: float

    @property
    def count(self) -> int:
        return int(self.ids.max()) + 1


class SuperpixelCache:
    """One photo's superpixels, kept for the last coarseness asked (a session holds one).

    Thread-safe: a click that arrives while a prefetch computes them waits for it rather
    than computing them twice.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._done: Segmentation | None = None

    def ready(self, segments: int) -> bool:
        """Whether the superpixels at ``segments`` are computed (a click then costs nothing more)."""
        done = self._done
        return done is not None and done.segments == segments

    @property
    def latest(self) -> Segmentation | None:
        """The superpixels computed last (the ones the tool uses now), if any."""
        return self._done

    def get(self, image: np.ndarray, segments: int) -> Segmentation:
        """The superpixels of ``image`` (always the session's working image) at ``segments``; computed if needed."""
        with self._lock:
            if not self.ready(segments):
                start = time.perf_counter()
                ids = superpixels(image, segments)
                self._done = Segmentation(segments, ids, time.perf_counter() - start)
            return self._done
