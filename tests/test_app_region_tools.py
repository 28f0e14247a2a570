"""The superpixel and polygon click tools (issue 36 item 1), on the handlers and through ``gradio_client``.

Both relabel through :meth:`demo.session.Session.relabel`, so undo, drafts and saving treat them as
any click tool.
"""

from __future__ import annotations

from types import SimpleNamespace

import cv2
import gradio as gr
import numpy as np
import pytest
import torch
from gradio_client import Client, handle_file
from helpers import app_settings, launched_app
from PIL import Image

from demo import editing
from demo.keys import KEYS_JS, SHORTCUTS_MD
from demo.panel_edit import MASK_TOOLS, POLYGON_TOOL, SUPERPIXEL_TOOL, TOOLS, EditHandlers
from demo.render import draw_borders, draw_vertices
from demo.session import Session, Source
from demo.superpixels import SuperpixelCache, superpixels
from demo.zoom import window
from ssfnet import build_model, save_checkpoint
from ssfnet.labels import get_label_set

LIP = get_label_set("lip-20")
HAIR, FACE = LIP.id_of("hair"), LIP.id_of("face")
VIEW = (0.5, ["0"])


def tiles(height: int = 64, width: int = 96, side: int = 16) -> np.ndarray:
    """A photo of flat squares of distinct colours: superpixels cannot straddle two of them."""
    rng = np.random.default_rng(0)
    colours = rng.integers(0, 256, size=(height // side + 1, width // side + 1, 3), dtype=np.uint8)
    return np.repeat(np.repeat(colours, side, axis=0), side, axis=1)[:height, :width]


def session_on(image: np.ndarray) -> Session:
    h, w = image.shape[:2]
    source = Source(name="tiles.png", data=b"", ext="png", size=(h, w), keep_bytes=False)
    return Session.start(image, source, np.zeros((h, w), np.uint8), LIP)


def handlers() -> EditHandlers:
    ui = SimpleNamespace(view="view", session="session", editor="editor", label="label")
    app = SimpleNamespace(ui=ui, label_set_of=lambda session: LIP)
    app.views = lambda session, opacity, hidden, zoom: {"view": "redrawn"}
    app.shown = lambda session, zoom, opacity, hidden, full=None: "shown"
    return EditHandlers(app)


def click(edit, session, x, y, tool=SUPERPIXEL_TOOL, label=HAIR, coarseness=200, add=False):
    return edit.apply_click(session, None, x, y, tool, str(label), 24, *VIEW, coarseness, add)


def test_superpixels_follow_colour_edges_and_the_coarseness():
    image = tiles()
    tile = (np.arange(64)[:, None] // 16) * 10 + np.arange(96)[None, :] // 16
    for segments in (50, 200):
        ids = superpixels(image, segments)
        assert ids.shape == image.shape[:2] and ids.dtype == np.int32 and ids.min() == 0
        for segment in np.unique(ids):  # none crosses a tile's edge
            assert np.unique(tile[ids == segment]).size == 1
    assert superpixels(image, 200).max() > superpixels(image, 50).max()  # finer: more, smaller superpixels


def test_a_superpixel_click_relabels_exactly_its_segment_and_is_undone():
    edit, session = handlers(), session_on(tiles())
    assert click(edit, session, 20, 20) == {"view": "redrawn"}
    ids = session.superpixels.get(session.image, 200).ids
    assert np.array_equal(session.labels == HAIR, ids == ids[20, 20])
    assert len(session.history) == 1 and session.superpixel_segments == 200
    assert session.undo() is not None and not session.labels.any()


def test_added_superpixels_are_one_edit():
    edit, session = handlers(), session_on(tiles())
    click(edit, session, 5, 5)
    click(edit, session, 70, 40, add=True)
    click(edit, session, 40, 60, add=True)
    ids = session.superpixels.get(session.image, 200).ids
    chosen = np.isin(ids, [ids[5, 5], ids[40, 70], ids[60, 40]])
    assert np.array_equal(session.labels == HAIR, chosen)
    assert len(session.history) == 1  # one undo step takes all three back
    session.undo()
    assert not session.labels.any()
    # Without add, or with another label, a click is an edit of its own.
    click(edit, session, 5, 5)
    click(edit, session, 70, 40)
    click(edit, session, 40, 60, label=FACE, add=True)
    assert len(session.history) == 3 and (session.labels == FACE).sum() == (ids == ids[60, 40]).sum()


def test_the_coarseness_changes_the_segments_and_they_are_computed_once():
    edit, session = handlers(), session_on(tiles())
    click(edit, session, 20, 20, coarseness=50)
    coarse = session.labels == HAIR
    computed = session.superpixels.get(session.image, 50)
    assert session.superpixels.get(session.image, 50) is computed  # cached: not computed again
    session.undo()
    click(edit, session, 20, 20, coarseness=1000)
    assert (session.labels == HAIR).sum() < coarse.sum()
    with pytest.raises(gr.Error, match="coarseness 5"):
        click(edit, session, 20, 20, coarseness=5)


def test_the_note_computes_the_superpixels_before_the_first_click():
    edit, session = handlers(), session_on(tiles())
    assert not session.superpixels.ready(300)
    note = edit.tool_note(session, SUPERPIXEL_TOOL, 300)
    assert session.superpixels.ready(300) and "superpixels on this 96x64 photo" in note
    assert "Close polygon" in edit.tool_note(session, POLYGON_TOOL, 300)
    assert edit.tool_note(None, SUPERPIXEL_TOOL, 300).startswith("Click a superpixel")


def test_the_overlay_shows_the_borders_while_the_tool_is_chosen():
    edit, session = handlers(), session_on(tiles())
    edit.tool_note(session, SUPERPIXEL_TOOL, 200)
    assert session.show_superpixels and session.superpixels.latest.segments == 200
    assert edit.tool_view(session, None, *VIEW) == {"view": "shown"} and edit.tool_view(None, None, *VIEW) == gr.skip()
    edit.tool_note(session, POLYGON_TOOL, 200)
    assert not session.show_superpixels
    ids = np.zeros((4, 6), np.int32)
    ids[:, 3:] = 1
    picture = np.zeros((4, 6, 3), np.uint8)
    drawn = draw_borders(picture, ids, window((4, 6)))
    assert drawn[:, 3].tolist() == [[128] * 3] * 4 and not drawn[:, :3].any() and not drawn[:, 4:].any()
    # Zoomed 2x on columns 2-4: the border between columns 2 and 3 is one shown pixel wide.
    zoomed = draw_borders(np.zeros((4, 6, 3), np.uint8), ids, window((4, 6), 2, 3, 2))
    assert zoomed.any(axis=2).tolist() == [[False, False, True, False, False, False]] * 4


def test_a_click_on_a_photo_without_superpixels_says_it_computes_them(monkeypatch):
    said = []
    monkeypatch.setattr(gr, "Info", lambda message, *a, **k: said.append(message))
    edit, session = handlers(), session_on(tiles())
    click(edit, session, 3, 3)
    click(edit, session, 50, 3)
    assert len(said) == 1 and "superpixels" in said[0]


def test_a_polygon_fills_what_fillpoly_fills_and_is_one_undoable_edit():
    edit, session = handlers(), session_on(tiles())
    vertices = [(10, 5), (80, 12), (60, 55), (15, 40)]
    for x, y in vertices:
        assert click(edit, session, x, y, tool=POLYGON_TOOL) == {"view": "shown"}
    assert session.polygon == vertices and not session.labels.any() and not len(session.history)
    assert edit.close_polygon(session, None, str(FACE), *VIEW) == {"view": "redrawn"}
    expected = np.zeros(session.labels.shape, np.uint8)
    cv2.fillPoly(expected, [np.array(vertices, np.int32)], 1)
    assert np.array_equal(session.labels == FACE, expected.astype(bool))
    assert session.polygon == [] and len(session.history) == 1
    session.undo()
    assert not session.labels.any()


def test_cancel_clears_the_vertices_and_fewer_than_three_are_refused():
    edit, session = handlers(), session_on(tiles())
    click(edit, session, 10, 10, tool=POLYGON_TOOL)
    click(edit, session, 30, 10, tool=POLYGON_TOOL)
    with pytest.raises(gr.Error, match="at least 3 vertices to close; it has 2"):
        edit.close_polygon(session, None, str(FACE), *VIEW)
    assert len(session.polygon) == 2 and not session.labels.any()  # kept: one more click closes it
    assert edit.cancel_polygon(session, None, *VIEW) == {"view": "shown"}
    assert session.polygon == [] and not len(session.history)
    strokes = {"background": np.zeros((64, 96, 3), np.uint8), "layers": [np.full((64, 96, 4), 255, np.uint8)]}
    for x, y in [(1, 1), (40, 1), (40, 40)]:
        click(edit, session, x, y, tool=POLYGON_TOOL)
    with pytest.warns(UserWarning, match="Unapplied strokes"):
        assert edit.close_polygon(session, None, str(FACE), *VIEW, strokes) == gr.skip()
    assert len(session.polygon) == 3 and not session.labels.any()


def test_vertices_are_drawn_on_the_shown_picture():
    picture = np.zeros((64, 96, 3), np.uint8)
    drawn = draw_vertices(picture, [(10, 10), (50, 30)], window((64, 96)))
    assert drawn[10, 10].tolist() == [255, 255, 255] and drawn[30, 50].tolist() == [255, 255, 255]
    assert drawn[20, 30].any() and not drawn[60, 90].any() and not picture.any()
    zoomed = draw_vertices(np.zeros((64, 96, 3), np.uint8), [(40, 30)], window((64, 96), 2, 40, 30))
    assert zoomed[window((64, 96), 2, 40, 30).to_shown(40, 30)[::-1]].tolist() == [255, 255, 255]


def test_the_tools_are_listed_with_their_keys():
    assert SUPERPIXEL_TOOL in MASK_TOOLS and POLYGON_TOOL in TOOLS and POLYGON_TOOL not in MASK_TOOLS
    assert 'click("polygon-close")' in KEYS_JS and 'click("polygon-cancel")' in KEYS_JS and "#add-to-last" in KEYS_JS
    assert "`Enter` / `Esc`" in SHORTCUTS_MD and "Shift" in SHORTCUTS_MD
    assert isinstance(SuperpixelCache().ready(10), bool)


def test_relabel_joins_only_the_last_edit():
    session = session_on(tiles())
    a, b = np.zeros((64, 96), bool), np.zeros((64, 96), bool)
    a[:5], b[-5:] = True, True
    session.relabel(a, HAIR, "a")
    session.edit(session.labels.copy(), "nothing")  # no change: not recorded, a stays last
    session.relabel(b, HAIR, "b", add=True)
    assert len(session.history) == 1 and session.history.last.what == "a + b"
    session.reset()
    session.relabel(a, HAIR, "c", add=True)  # the reset came between: a new edit
    assert len(session.history) == 3


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    root = tmp_path_factory.mktemp("regions")
    torch.manual_seed(0)
    save_checkpoint(
        build_model("ssfnet_lite", LIP.num_classes),
        root / "checkpoints" / "tiny",
        variant="ssfnet_lite",
        label_set="lip-20",
    )
    settings = app_settings(root)
    with launched_app(settings) as demo:
        yield settings, f"http://127.0.0.1:{settings.port}/", demo


def test_a_polygon_through_the_api(app, tmp_path):
    _, url, _ = app
    client = Client(url, verbose=False, analytics_enabled=False)
    photo = tmp_path / "plain.png"
    Image.fromarray(tiles(96, 128)).save(photo)
    client.predict(handle_file(str(photo)), None, False, False, *VIEW, api_name="/parse")
    vertices = [(10, 10), (100, 20), (60, 80)]
    for x, y in vertices:
        client.predict(x, y, POLYGON_TOOL, str(FACE), 24, *VIEW, api_name="/apply_click")
    downloads = client.predict(str(FACE), *VIEW, api_name="/close_polygon")[3]
    with Image.open(next(p for p in downloads if p.endswith("_labels.png"))) as im:
        labels = np.array(im)
    assert (labels == FACE)[editing.polygon_mask(labels.shape, vertices)].all()
    # A superpixel click through the API with the coarseness given (callers before it omit the last two).
    downloads = client.predict(5, 90, SUPERPIXEL_TOOL, str(HAIR), 24, *VIEW, 300, False, api_name="/apply_click")[3]
    with Image.open(next(p for p in downloads if p.endswith("_labels.png"))) as im:
        labels = np.array(im)
    hair = labels == HAIR
    assert hair[90, 5] and hair[80:96, 0:16].sum() == hair.sum()  # within the clicked tile
