"""Zoom on the overlay, done on the server: the part of the working image shown and clicks mapped back.

A zoomed overlay is a crop of the working image around a centre, enlarged ``factor``
times with nearest neighbour, so that pixels stay crisp and Gradio's click coordinates
(pixels of the picture shown) map back exactly: working x = ``x0 + x // factor``. A CSS
zoom of the page would break them, as Gradio computes them with the picture's scale capped
at 1. The crop is 1/``factor`` of the image on each side, so the picture shown stays about
the working image's size at every zoom: memory does not grow with it.

Nothing here imports Gradio; the handlers are in :mod:`demo.panel_edit`.
"""

from __future__ import annotations

import dataclasses
import math
import weakref
from dataclasses import dataclass

import numpy as np

# The zoom factors offered: 1 shows the whole image.
ZOOMS = (1, 2, 4, 8)
# About the overlay box's longer side, in pixels. The browser only ever scales a picture down (and
# Gradio maps clicks with that scale capped at 1), so a photo under half of it is shown enlarged a
# whole number of times, at Fit and at every zoom, to fill the box rather than a corner of it.
FIT_SIDE = 1000


@dataclass(frozen=True)
class Window:
    """The part of the working image the overlay shows and how many times it is enlarged.

    Args:
        x0: Column of the first working pixel shown.
        y0: Row of the first working pixel shown.
        width: Working pixels shown across.
        height: Working pixels shown down.
        factor: Shown pixels per working pixel, on each side.
    """

    x0: int
    y0: int
    width: int
    height: int
    factor: int = 1

    @property
    def shown_size(self) -> tuple[int, int]:
        """``(height, width)`` of the picture shown."""
        return self.height * self.factor, self.width * self.factor

    def crop(self, array: np.ndarray) -> np.ndarray:
        """The shown part of ``array`` (H x W or H x W x C at the working size); a view, not a copy."""
        return array[self.y0 : self.y0 + self.height, self.x0 : self.x0 + self.width]

    def enlarge(self, crop: np.ndarray) -> np.ndarray:
        """``crop`` (h x w [x C]) with each pixel made a ``factor`` x ``factor`` block: (h * factor) x (w * factor)."""
        if self.factor == 1:
            return crop
        return np.repeat(np.repeat(crop, self.factor, axis=0), self.factor, axis=1)

    def to_working(self, x: int, y: int) -> tuple[int, int]:
        """The working pixel under pixel (x, y) of the picture shown (a point beyond it: the nearest edge's)."""
        column = min(max(int(x) // self.factor, 0), self.width - 1)
        row = min(max(int(y) // self.factor, 0), self.height - 1)
        return self.x0 + column, self.y0 + row

    def to_shown(self, x: int, y: int) -> tuple[int, int]:
        """Where working pixel (x, y), inside the window, is shown: the centre of its block."""
        half = self.factor // 2
        return (x - self.x0) * self.factor + half, (y - self.y0) * self.factor + half


def window(shape: tuple[int, ...], factor: int = 1, x: int = 0, y: int = 0) -> Window:
    """The window of a ``factor`` zoom on an image of ``shape`` (H, W, ...), centred on working pixel (x, y).

    The window stays inside the image: near a border the centre moves inward, so a zoom never
    shows less than 1/``factor`` of each side. A factor of 1 is the whole image.

    Raises:
        ValueError: ``factor`` is not one of :data:`ZOOMS`.
    """
    if factor not in ZOOMS:
        raise ValueError(f"zoom {factor!r}: choose one of {', '.join(map(str, ZOOMS))}")
    h, w = shape[:2]
    width, height = math.ceil(w / factor), math.ceil(h / factor)
    x0 = min(max(int(x) - width // 2, 0), w - width)
    y0 = min(max(int(y) - height // 2, 0), h - height)
    return Window(x0, y0, width, height, factor)


def step(factor: int, steps: int) -> int:
    """The zoom ``steps`` places along :data:`ZOOMS` from ``factor`` (kept within them)."""
    index = ZOOMS.index(factor) if factor in ZOOMS else 0
    return ZOOMS[min(max(index + steps, 0), len(ZOOMS) - 1)]


@dataclass(frozen=True)
class Zoom:
    """One user's zoom (kept in a ``gr.State``): ``factor`` around working pixel (x, y) of one photo.

    The zoom belongs to the session it was set on: every photo opened is a new session, so a
    zoom of the photo before shows the new one whole. The session is held weakly, so that a
    zoom keeps no closed photo in memory.
    """

    factor: int
    x: int
    y: int
    session: weakref.ReferenceType

    @classmethod
    def on(cls, session, factor: int, x: int, y: int) -> Zoom:
        """A zoom of ``session``'s overlay around (x, y), brought inside its working image."""
        if factor not in ZOOMS:
            raise ValueError(f"zoom {factor!r}: choose one of {', '.join(map(str, ZOOMS))}")
        h, w = session.labels.shape
        return cls(factor, min(max(int(x), 0), w - 1), min(max(int(y), 0), h - 1), weakref.ref(session))


def current_zoom(zoom: Zoom | None, session) -> Zoom:
    """``zoom`` if it was set on ``session``; else the whole image (factor 1 around its centre)."""
    if zoom is not None and zoom.session() is session:
        return zoom
    h, w = session.labels.shape
    return Zoom.on(session, 1, w // 2, h // 2)


def shown_window(zoom: Zoom | None, session) -> Window:
    """The window the overlay of ``session`` shows under ``zoom`` (see :func:`current_zoom`)."""
    zoom = current_zoom(zoom, session)
    return window(session.labels.shape, zoom.factor, zoom.x, zoom.y)


def fit_factor(shape: tuple[int, ...]) -> int:
    """How many times a picture of ``shape`` (H, W, ...) is enlarged to fill the overlay box (1: none)."""
    return max(1, FIT_SIDE // max(1, *shape[:2]))


def display_window(zoom: Zoom | None, session) -> Window:
    """:func:`shown_window` enlarged as :func:`fit_factor` says: what the overlay's picture is of."""
    view = shown_window(zoom, session)
    return dataclasses.replace(view, factor=view.factor * fit_factor(session.labels.shape))
