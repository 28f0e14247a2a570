"""The brush size (issue 36 item 2): the slider, its keys, the paint brush and the dot tool that follow it.

The rules are tested on the handlers; the app itself through ``gradio_client`` with a randomly
initialised SSFNet-lite (its labels are arbitrary but deterministic).
"""

from __future__ import annotations

from types import SimpleNamespace

import gradio as gr
import numpy as np
import pytest
import torch
from gradio_client import Client, handle_file
from helpers import app_settings, launched_app
from PIL import Image

from demo import editing
from demo.keys import KEYS_JS, SHORTCUTS_MD
from demo.panel_edit import DOT_TOOL, TOOLS, EditHandlers
from demo.session import Session, Source
from demo.widgets import BRUSH_MAX, brush_choice, brush_size, brush_stepped
from ssfnet import build_model, save_checkpoint
from ssfnet.labels import get_label_set

LIP = get_label_set("lip-20")
HAIR = LIP.id_of("hair")
VIEW = (0.5, ["0"])


def blank_session(height: int = 80, width: int = 120) -> Session:
    source = Source(name="blank.png", data=b"", ext="png", size=(height, width), keep_bytes=False)
    labels = np.zeros((height, width), np.uint8)
    return Session.start(np.zeros((height, width, 3), np.uint8), source, labels, LIP)


def handlers() -> EditHandlers:
    ui = SimpleNamespace(session="session", editor="editor", painting="painting", label="label", brush_px="brush_px")
    return EditHandlers(SimpleNamespace(ui=ui, label_set_of=lambda session: LIP))


def test_a_dot_is_the_brush_footprint():
    mask = editing.disc((50, 60), 20, 10, 9)
    assert mask[10, 20] and mask[10, 24] and mask[14, 20] and not mask[10, 25] and not mask[15, 20]
    assert mask.sum() == 69  # pixel centres within 4.5 px: the digital disc of radius 4.5
    assert editing.disc((5, 5), 0, 0, 1).sum() == 1  # at least the clicked pixel
    with pytest.raises(ValueError, match="outside"):
        editing.disc((5, 5), 5, 0, 3)


def test_the_slider_value_is_checked_and_steps_by_a_quarter():
    assert brush_choice(0) is None and brush_choice("") is None and brush_choice(12.4) == 12
    with pytest.raises(gr.Error, match="between 0"):
        brush_choice(BRUSH_MAX + 1)
    with pytest.raises(gr.Error, match="must be a number"):
        brush_choice("wide")
    assert [brush_stepped(w, 1) for w in (1, 2, 4, 20, 250)] == [2, 3, 5, 25, BRUSH_MAX]
    assert [brush_stepped(w, -1) for w in (1, 2, 4, 25)] == [1, 1, 3, 20]


def test_the_chosen_size_sets_the_brush_and_follows_every_photo_opened():
    edit, session = handlers(), blank_session()
    assert brush_size(session) == 3  # proportional: 120 / 40
    out = edit.set_brush_size(session, 30, HAIR)
    assert set(out) == {"session", "editor"}  # the painting chip follows from the label's change
    assert session.brush_px == 30 and brush_size(session) == 30
    brush = out["editor"].brush
    assert brush.default_size == 30 and brush.colors == [brush.default_color]
    # The label keeps the size: the brush is rebuilt at it in the new colour.
    assert edit.label_typed(session, "face", 0)["editor"].brush.default_size == 30

    # Another photo opens at the proportional size; the redraw's hook gives it the slider's.
    other = blank_session(400, 200)
    assert brush_size(other) == 10
    follow = edit.brush_follow(other, 30, HAIR)
    assert other.brush_px == 30 and follow["editor"].brush.default_size == 30 and "brush 30 px" in follow["painting"]
    # Later redraws send the chip alone (a new photo may change the proportional width it shows).
    assert set(edit.brush_follow(other, 30, HAIR)) == {"painting"}
    # 0 on the slider: proportional again.
    assert edit.set_brush_size(other, 0, HAIR)["editor"].brush.default_size == 10 and other.brush_px is None


def test_the_keys_step_from_the_width_in_use():
    edit, session = handlers(), blank_session(400, 200)
    assert edit.brush_step(session, 0, 1) == 12  # from the proportional 10
    assert edit.brush_step(session, 12, -1) == 10
    assert edit.brush_step(None, 0, 1) == 31  # before a photo: from Gradio's 25
    assert 'click("brush-smaller")' in KEYS_JS and 'click("brush-bigger")' in KEYS_JS
    assert "`[` / `]`" in SHORTCUTS_MD and DOT_TOOL in TOOLS


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    root = tmp_path_factory.mktemp("brush")
    torch.manual_seed(0)
    model = build_model("ssfnet_lite", LIP.num_classes)
    save_checkpoint(model, root / "checkpoints" / "tiny", variant="ssfnet_lite", label_set="lip-20")
    settings = app_settings(root)
    with launched_app(settings) as demo:
        yield settings, f"http://127.0.0.1:{settings.port}/", demo


def test_the_app_offers_the_slider_and_its_buttons(app):
    *_, demo = app
    ids = {getattr(block, "elem_id", None): block for block in demo.blocks.values()}
    slider = ids["brush-size"]
    assert isinstance(slider, gr.Slider) and slider.minimum == 0 and slider.maximum == BRUSH_MAX
    assert isinstance(ids["brush-smaller"], gr.Button) and isinstance(ids["brush-bigger"], gr.Button)


def test_the_dot_tool_paints_a_disc_of_the_size_set_through_the_api(app, tmp_path):
    _, url, _ = app
    client = Client(url, verbose=False, analytics_enabled=False)
    photo = tmp_path / "plain.png"
    Image.fromarray(np.full((96, 128, 3), 128, np.uint8)).save(photo)
    client.predict(handle_file(str(photo)), None, False, False, *VIEW, api_name="/parse")
    client.predict(21, str(HAIR), api_name="/brush_size")
    downloads = client.predict(40, 50, DOT_TOOL, str(HAIR), 24, *VIEW, api_name="/apply_click")[3]
    with Image.open(next(p for p in downloads if p.endswith("_labels.png"))) as im:
        labels = np.array(im)
    assert np.array_equal(labels == HAIR, editing.disc(labels.shape, 40, 50, 21))


def test_a_click_tool_is_one_entry_of_the_table(monkeypatch):
    """Issue 35: a new relabelling tool is a function from (session, x, y, tolerance) to a mask."""
    from demo import panel_edit

    def column(session, x, y, tolerance):
        mask = np.zeros(session.labels.shape, bool)
        mask[:, x] = True
        return mask

    monkeypatch.setitem(panel_edit.MASK_TOOLS, "Paint column", column)
    edit, session = handlers(), blank_session()
    edit.app.views = lambda session, opacity, hidden, zoom: {"view": "redrawn"}
    assert edit.apply_click(session, None, 7, 3, "Paint column", str(HAIR), 24, *VIEW) == {"view": "redrawn"}
    assert (session.labels[:, 7] == HAIR).all() and (session.labels == HAIR).sum() == session.labels.shape[0]
    assert session.undo() is not None and not (session.labels == HAIR).any()  # undone like any edit
    with pytest.raises(gr.Error, match="unknown tool"):
        edit.apply_click(session, None, 7, 3, "Paint row", str(HAIR), 24, *VIEW)
    assert TOOLS[0] == "Pick label" and TOOLS[-1] == "Zoom in" and DOT_TOOL in TOOLS
