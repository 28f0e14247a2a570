"""The overlay's zoom without Gradio: the window shown, clamped at the borders, crisp, and clicks mapped back."""

from __future__ import annotations

import gc

import numpy as np
import pytest

from demo.render import render_overlay, zoomed_overlay
from demo.session import Session, Source
from demo.zoom import ZOOMS, Window, Zoom, current_zoom, display_window, shown_window, step, window
from ssfnet.labels import get_label_set

LIP = get_label_set("lip-20")


def make_session(h: int = 37, w: int = 53, seed: int = 0) -> Session:
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    labels = rng.integers(0, LIP.num_classes, (h, w), dtype=np.uint8)
    source = Source(name="x.png", data=b"", ext="png", size=(h, w), keep_bytes=False)
    return Session.start(image, source, labels, LIP)


def test_a_zoom_centres_on_its_point_and_stays_inside_the_image_at_the_borders():
    h, w = 100, 60
    assert window((h, w)) == Window(0, 0, w, h, 1)
    assert window((h, w), 4, 30, 50) == Window(30 - 7, 50 - 12, 15, 25, 4)  # centred: 15 x 25 of 60 x 100
    assert window((h, w), 4, 0, 0) == Window(0, 0, 15, 25, 4)  # top-left corner: moved inward
    assert window((h, w), 4, w - 1, h - 1) == Window(w - 15, h - 25, 15, 25, 4)  # bottom-right corner
    assert window((h, w), 8, -50, 10_000) == Window(0, h - 13, 8, 13, 8)  # points beyond the image
    for factor in ZOOMS:
        for x in range(-3, w + 3, 7):
            for y in range(-3, h + 3, 11):
                view = window((h, w), factor, x, y)
                assert 0 <= view.x0 and view.x0 + view.width <= w and 0 <= view.y0 and view.y0 + view.height <= h
                assert (view.width, view.height) == (-(-w // factor), -(-h // factor))
    with pytest.raises(ValueError, match="choose one of 1, 2, 4, 8"):
        window((h, w), 3, 0, 0)


@pytest.mark.parametrize("factor", ZOOMS)
def test_every_shown_pixel_maps_back_to_the_working_pixel_it_shows(factor):
    h, w = 29, 43  # sides no factor divides
    working = np.arange(h * w, dtype=np.int32).reshape(h, w)  # every pixel its own value
    for x, y in [(0, 0), (21, 14), (w - 1, h - 1), (w - 1, 0), (3, h - 2)]:
        view = window((h, w), factor, x, y)
        shown = view.enlarge(view.crop(working))
        assert shown.shape == view.shown_size
        sy, sx = np.mgrid[: shown.shape[0], : shown.shape[1]]
        back = np.vectorize(view.to_working)(sx, sy)
        np.testing.assert_array_equal(working[back[1], back[0]], shown)  # the click acts where it was shown
        # Round trip: a working pixel is shown at the centre of its block, which maps back to it.
        for wy in range(view.y0, view.y0 + view.height):
            for wx in range(view.x0, view.x0 + view.width):
                assert view.to_working(*view.to_shown(wx, wy)) == (wx, wy)
        # A point just beyond the picture is taken at its edge, never outside the window.
        assert view.to_working(-1, shown.shape[0] + 5) == (view.x0, view.y0 + view.height - 1)


def test_the_enlargement_is_crisp_and_bounded_by_the_working_size():
    h, w = 101, 61
    rgb = np.random.default_rng(1).integers(0, 256, (h, w, 3), dtype=np.uint8)
    for factor in ZOOMS:
        view = window((h, w), factor, 30, 50)
        crop = view.crop(rgb)
        assert np.shares_memory(crop, rgb)  # a view of the image: nothing is copied but the picture shown
        shown = view.enlarge(crop)
        assert shown.shape == (*view.shown_size, 3)
        assert shown.shape[0] < h + factor and shown.shape[1] < w + factor  # never much more than the image
        blocks = shown.reshape(view.height, factor, view.width, factor, 3)
        # Nearest neighbour: each working pixel is a block of one colour, no blend with its neighbours.
        np.testing.assert_array_equal(blocks, np.broadcast_to(crop[:, None, :, None], blocks.shape))


def test_the_zoomed_overlay_is_the_overlay_of_the_crop_enlarged():
    session = make_session()
    for factor in ZOOMS:
        view = window(session.labels.shape, factor, 40, 5)
        zoomed = zoomed_overlay(session, view, 0.6, {0, 3})
        whole = render_overlay(session, 0.6, {0, 3})
        np.testing.assert_array_equal(zoomed, view.enlarge(view.crop(whole)))


def test_a_zoom_belongs_to_the_photo_it_was_set_on():
    session = make_session()
    h, w = session.labels.shape
    zoom = Zoom.on(session, 4, 500, -2)  # the centre is brought inside the image
    assert (zoom.factor, zoom.x, zoom.y) == (4, w - 1, 0)
    assert current_zoom(zoom, session) is zoom
    assert shown_window(zoom, session) == window((h, w), 4, w - 1, 0)
    assert shown_window(None, session) == Window(0, 0, w, h, 1)

    # Another photo opened is another session: it shows whole, and the zoom keeps no photo alive.
    other = make_session(seed=1)
    assert current_zoom(zoom, other).factor == 1 and shown_window(zoom, other) == Window(0, 0, w, h, 1)
    del session
    gc.collect()
    assert zoom.session() is None
    with pytest.raises(ValueError):
        Zoom.on(other, 16, 0, 0)


def test_zoom_steps_stay_within_the_offered_factors():
    assert [step(1, 1), step(2, 1), step(4, 1), step(8, 1)] == [2, 4, 8, 8]
    assert [step(8, -1), step(2, -1), step(1, -1)] == [4, 1, 1]


def test_a_small_photo_is_shown_enlarged_to_fill_the_box_and_clicks_map_back():
    session = make_session(320, 416)
    view = display_window(None, session)  # Fit: the whole photo, twice as large
    assert view == Window(0, 0, 416, 320, 2) and view.shown_size == (640, 832)
    assert view.to_working(831, 639) == (415, 319) and view.to_working(2, 3) == (1, 1)
    zoomed = display_window(Zoom.on(session, 4, 100, 100), session)
    assert zoomed.factor == 8 and zoomed.shown_size == (80 * 8, 104 * 8)  # a zoom of it as enlarged
    assert display_window(None, make_session(823, 550)) == Window(0, 0, 550, 823, 1)  # large enough as it is
