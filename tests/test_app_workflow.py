"""The app as a script and an annotator meet it (issue 40): documented calls, typed labels, the queue's
saved photos, whose drafts are whose, and what the page shows around them.

Driven through ``gradio_client`` against a launched app, or through the handlers where the rule lives
there. The model is a randomly initialised SSFNet-lite: its labels are arbitrary but deterministic.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from helpers import app_settings, launched_app
from PIL import Image

from demo.ui import build_demo
from ssfnet import build_model, save_checkpoint
from ssfnet.labels import get_label_set

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((REPO / "assets" / "examples").glob("*.jpg"))
LIP = get_label_set("lip-20")
FACE, HAIR, UPPER = LIP.id_of("face"), LIP.id_of("hair"), LIP.id_of("upper-clothes")
VIEW = (0.5, ["0"])  # opacity, hidden labels (ids as the strings the API documents)


def write_tiny_checkpoint(folder: Path) -> Path:
    torch.manual_seed(0)
    model = build_model("ssfnet_lite", LIP.num_classes)
    return save_checkpoint(model, folder, variant="ssfnet_lite", label_set="lip-20", dtype=torch.float16)


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("workflow")
    write_tiny_checkpoint(root / "checkpoints" / "tiny")
    return root


@pytest.fixture(scope="module")
def app(root):
    """The app on a free localhost port (local-only, no logins); yields its settings and URL."""
    settings = app_settings(root)
    with launched_app(settings):
        yield settings, f"http://127.0.0.1:{settings.port}/"


def connect(url: str, **kwargs) -> Client:
    return Client(url, verbose=False, analytics_enabled=False, **kwargs)


def own_photo(tmp_path: Path, name: str, source: Path = EXAMPLES[0], size: tuple[int, int] | None = None) -> Path:
    """A photo of this test alone (mirrored, maybe resized): no draft or save of another test has its bytes."""
    image = Image.open(source).convert("RGB").transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    if size is not None:
        image = image.resize(size)
    path = tmp_path / name
    image.save(path, quality=92)
    return path


def parse(client: Client, photo: Path, checkpoint=None) -> list:
    """Returns (overlay, editor, legend, downloads, status, label, hidden, upload, message)."""
    return client.predict(handle_file(str(photo)), checkpoint, False, False, *VIEW, api_name="/parse")


def label_map(downloads: list[str]) -> np.ndarray:
    with Image.open(next(p for p in downloads if p.endswith("_labels.png"))) as im:
        return np.array(im)


def meta_of(settings, record: str) -> dict:
    return json.loads((settings.corrections_dir / "meta" / f"{record}.json").read_text())


# ---------------------------------------------------------------------------------------------
# Item 7: every documented call works as documented


def documented_choices(component) -> list:
    """The values the API documents for ``component``'s input: an enum is shown as ``Literal['1', ...]``."""
    info = component.api_info_as_input()
    if info.get("type") == "array":
        return [[str(v)] for v in info.get("items", {}).get("enum", [])]
    return [str(v) for v in info.get("enum", [])]


def test_every_documented_choice_is_accepted(root):
    blocks = build_demo(app_settings(root))
    checked = set()
    for fn in blocks.fns.values():
        if not fn.api_name or fn.api_visibility != "public":
            continue
        for component in fn.inputs:
            for value in documented_choices(component):
                component.preprocess(value)  # raises where a documented value is refused
                checked.add(fn.api_name)
    assert {"zoom", "apply_click", "parse"} <= checked


def test_zoom_takes_the_documented_factor_and_a_refused_upload_returns_the_open_photo(app, tmp_path):
    settings, url = app
    client = connect(url)
    photo = own_photo(tmp_path, "zoomed.jpg")
    overlay, *_, downloads, _, _, _, upload, _ = parse(client, photo)
    h, w = label_map(downloads).shape
    assert Path(upload).read_bytes() == photo.read_bytes()  # the Photo box holds the photo shown
    shown = client.predict("4", 10, 10, *VIEW, api_name="/zoom")
    assert np.array(Image.open(shown)).shape[:2] == (4 * -(-h // 4), 4 * -(-w // 4))

    # A file that is no photo: every output is the photo still open, the Photo box included.
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(photo.read_bytes()[:2000])
    out = parse(client, bad)
    overlay, editor, legend, downloads, status, label, hidden, upload, message = out
    assert not [value for value in out if value == {"__type__": "update"}]  # no output left without a value
    assert "Could not use this file" in message and "broken.jpg" in message
    assert np.array(Image.open(overlay)).shape[:2] == (h, w) and "working size" in status
    assert Path(upload).read_bytes() == photo.read_bytes()

    # Before any photo: nothing to show, and the refused file leaves the Photo box.
    fresh = connect(url)
    overlay, *_, status, _, _, upload, message = parse(fresh, bad)
    assert overlay is None and upload is None and "No photo yet" in status and "Could not use" in message


# ---------------------------------------------------------------------------------------------
# Item 1: a label typed by name


def test_a_label_is_named_by_its_id_its_entry_its_name_or_the_start_of_one():
    from demo.widgets import label_of

    for typed in (13, "13", "13.0", "13: face", "face", " Face ", "fa"):
        assert label_of(LIP, typed) == FACE, typed
    assert label_of(LIP, "Upper clothes") == label_of(LIP, "upper_clothes") == UPPER
    assert label_of(LIP, "ignore") == label_of(LIP, "ignore (unlabelled)") == 255
    assert label_of(LIP, "skin") == LIP.id_of("skin")  # a coarse label, named without its members
    for typed, refusal in [
        ("xyz", "No label 'xyz' in lip-20"),
        ("upper", "could be any of upper-clothes, upper-arm, upper-leg"),
        ("", "Choose a label"),
        (None, "Choose a label"),
        (31, "31 is not a label"),
        ("-1", "-1 is not a label"),
    ]:
        with pytest.raises(Exception, match=refusal):
            label_of(LIP, typed)


def test_a_typed_label_name_applies_that_label_and_an_unknown_one_is_refused(app, tmp_path):
    _, url = app
    client = connect(url)
    labels = label_map(parse(client, own_photo(tmp_path, "typed.jpg"))[3])
    *_, downloads, status, label = client.predict(5, 5, "Relabel region", "face", 24, *VIEW, api_name="/apply_click")
    assert label_map(downloads)[5, 5] == FACE and (label_map(downloads) != labels).any()
    with pytest.raises(AppError, match="No label 'nonsense' in lip-20"):
        client.predict(5, 5, "Relabel region", "nonsense", 24, *VIEW, api_name="/apply_click")
    *_, status = client.predict(*VIEW, api_name="/undo")
    assert "**0 pixels changed**" in status  # the refused click changed nothing
