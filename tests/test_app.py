"""The launched app driven through gradio_client: parse, edit, save, reopen, export, bad input, several users.

The model is a randomly initialised SSFNet-lite saved to a temporary folder: its
labels are arbitrary but deterministic, which is all these tests need.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from helpers import app_settings, free_port, launched_app, wait_for_page
from PIL import Image

from demo.settings import Settings
from demo.zoom import window
from ssfnet import build_model, save_checkpoint
from ssfnet.labels import get_label_set

REPO = Path(__file__).resolve().parents[1]
PHOTO = REPO / "assets" / "examples" / "ccp_0046.jpg"
OTHER_PHOTO = REPO / "assets" / "examples" / "ccp_0757.jpg"
ZOOM_PHOTO = REPO / "assets" / "examples" / "ccp_0490.jpg"  # of no other test: no draft of theirs
LIP = get_label_set("lip-20")
UPPER, SKIN, SHOES = LIP.id_of("upper-clothes"), LIP.id_of("skin"), LIP.id_of("shoes")
VIEW = (0.5, ["0"])  # opacity, hidden labels (ids as the strings the API documents)


def write_tiny_checkpoint(folder: Path) -> Path:
    torch.manual_seed(0)
    model = build_model("ssfnet_lite", LIP.num_classes)
    return save_checkpoint(model, folder, variant="ssfnet_lite", label_set="lip-20", dtype=torch.float16)


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    """The app on a free localhost port with one tiny checkpoint; yields its settings and URL."""
    root = tmp_path_factory.mktemp("app")
    write_tiny_checkpoint(root / "checkpoints" / "tiny")
    settings = app_settings(root)
    with launched_app(settings):
        yield settings, f"http://127.0.0.1:{settings.port}/"


def connect(url: str) -> Client:
    return Client(url, verbose=False, analytics_enabled=False)


def parse(client: Client, photo: Path = PHOTO, checkpoint=None):
    """Returns (overlay, editor, legend, downloads, status, label, hidden, upload, message)."""
    return client.predict(handle_file(str(photo)), checkpoint, False, False, *VIEW, api_name="/parse")


def saved_ids(settings: Settings) -> set[str]:
    return {p.stem for p in (settings.corrections_dir / "meta").glob("*.json")}


def label_map(downloads: list[str]) -> np.ndarray:
    path = next(p for p in downloads if p.endswith("_labels.png"))
    with Image.open(path) as im:
        assert im.mode == "P"
        return np.array(im)


def summary_of(downloads: list[str]) -> dict:
    return json.loads(Path(next(p for p in downloads if p.endswith("_summary.json"))).read_text())


def test_parse_edit_undo_save_reopen_and_export(app, tmp_path):
    settings, url = app
    earlier = saved_ids(settings)
    client = connect(url)
    overlay, _, legend, downloads, status, *_, message = parse(client)
    assert "Parsed" in message and "tiny" in message and "**0 pixels changed**" in status
    proposal = label_map(downloads)
    photo = np.array(Image.open(PHOTO))
    assert proposal.shape == photo.shape[:2] and np.array(Image.open(overlay)).shape == photo.shape
    LIP.validate(proposal)
    info = summary_of(downloads)
    assert info["model"] == "tiny" and info["checkpoint"].endswith("tiny") and info["label_set"] == "lip-20"
    assert sum(c["pixels"] for c in info["classes"]) == proposal.size
    assert {c["id"] for c in info["classes"]} == set(np.unique(proposal).tolist())
    assert LIP.names[int(np.bincount(proposal.ravel()).argmax())] in legend
    assert sorted(Path(p).name for p in downloads) == [
        "ccp_0046_colour.png",
        "ccp_0046_labels.png",
        "ccp_0046_overlay.png",
        "ccp_0046_summary.json",
    ]

    # Click tool: relabel the region under (5, 5) as the coarse label "skin".
    expected = proposal.copy()
    region = cv2.floodFill(proposal.copy(), None, (5, 5), 0, 0, 0, 4 | cv2.FLOODFILL_MASK_ONLY | (1 << 8))[2]
    expected[region[1:-1, 1:-1].astype(bool)] = SKIN
    *_, downloads, status, _ = client.predict(5, 5, "Relabel region", SKIN, 24, *VIEW, api_name="/apply_click")
    np.testing.assert_array_equal(label_map(downloads), expected)

    # Brush: an antialiased upper-clothes stroke sent as the editor's RGBA layer.
    layer = np.zeros((*proposal.shape, 4), np.uint8)
    colour = tuple(int(c) for c in LIP.colour_lut()[UPPER])
    cv2.line(layer, (100, 300), (400, 500), (*colour, 255), thickness=25, lineType=cv2.LINE_AA)
    Image.fromarray(layer).save(tmp_path / "layer.png")
    editor = {"background": handle_file(overlay), "layers": [handle_file(str(tmp_path / "layer.png"))]}
    *_, downloads, status = client.predict({**editor, "composite": None}, *VIEW, api_name="/apply_strokes")
    after_stroke = expected.copy()
    after_stroke[layer[..., 3] >= 128] = UPPER
    np.testing.assert_array_equal(label_map(downloads), after_stroke)
    changed = int((after_stroke != proposal).sum())
    assert f"{changed:,} pixels changed" in status

    *_, downloads, status = client.predict(*VIEW, api_name="/undo")
    np.testing.assert_array_equal(label_map(downloads), expected)
    *_, downloads, status = client.predict(*VIEW, api_name="/redo")
    np.testing.assert_array_equal(label_map(downloads), after_stroke)

    _, message, status = client.predict(api_name="/save")
    (record,) = saved_ids(settings) - earlier
    assert record in message and "saved as" in status
    meta = json.loads((settings.corrections_dir / "meta" / f"{record}.json").read_text())
    assert meta["model"] == "tiny" and meta["edited_pixels"] == changed and meta["parent"] is None
    assert meta["label_set"] == "lip-20" and meta["source_name"] == "ccp_0046.jpg"
    with Image.open(settings.corrections_dir / "labels" / f"{record}.png") as im:
        np.testing.assert_array_equal(np.array(im), after_stroke)
    assert (settings.corrections_dir / "images" / f"{record}.jpg").read_bytes() == PHOTO.read_bytes()

    # Saving unchanged labels again writes nothing.
    client.predict(api_name="/save")
    assert saved_ids(settings) - earlier == {record}

    gallery = client.predict(api_name="/list_corrections")
    assert any(record in item["caption"] for item in gallery)

    # Reopen in a fresh session, edit, save: a new record whose parent is the first.
    other = connect(url)
    *_, downloads, status, _, _, _, message = other.predict(record, *VIEW, api_name="/reopen")
    assert "Reopened" in message
    np.testing.assert_array_equal(label_map(downloads), after_stroke)
    with pytest.raises(AppError, match="outside the 550x823 image"):
        other.predict(600, 5, "Relabel region", 0, 24, *VIEW, api_name="/apply_click")
    other.predict(540, 810, "Flood fill (similar colour)", LIP.id_of("hat"), 30, *VIEW, api_name="/apply_click")
    other.predict(api_name="/save")
    new = saved_ids(settings) - earlier
    metas = [json.loads((settings.corrections_dir / "meta" / f"{i}.json").read_text()) for i in new]
    assert len(metas) == 2 and [m["parent"] for m in metas if m["id"] != record] == [record]

    archive = client.predict(api_name="/export_zip")
    with zipfile.ZipFile(archive) as zf:
        names = set(zf.namelist())
    assert {f"labels/{m['id']}.png" for m in metas} | {f"meta/{m['id']}.json" for m in metas} <= names


def test_bad_uploads_give_a_message_and_keep_the_work(app, tmp_path):
    _, url = app
    client = connect(url)
    parse(client)
    *_, status_before = client.predict(5, 5, "Relabel region", SKIN, 24, *VIEW, api_name="/apply_click")[:5]
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(PHOTO.read_bytes()[:3000])
    tiny = tmp_path / "dot.png"
    Image.new("RGB", (1, 1)).save(tiny)
    for path, reason in [(bad, "corrupt or truncated"), (tiny, "only 1x1 pixels")]:
        out = parse(client, path)
        assert "Could not use this file" in out[-1] and reason in out[-1] and path.name in out[-1]
    # The earlier edit is still there: undo takes it back.
    *_, status = client.predict(*VIEW, api_name="/undo")
    assert "**0 pixels changed**" in status and status_before != status


def test_large_photos_are_parsed_at_the_working_size_and_saved_at_full_size(app, tmp_path):
    settings, url = app
    big = tmp_path / "big.jpg"
    Image.open(PHOTO).resize((2200, 3292)).save(big, quality=90)
    client = connect(url)
    *_, downloads, status, _, _, _, message = parse(client, big)
    assert "larger than 1600 px" in message and "working size 1069x1600" in status
    assert label_map(downloads).shape == (1600, 1069)
    # The proposal, unedited, is saved only when accepted as correct (and recorded as such).
    _, message, _ = client.predict(api_name="/save")
    assert "Not saved" in message and "Accept proposal as correct" in message
    _, message, _ = client.predict(api_name="/accept_proposal")
    record = message.split("`")[1]
    meta = json.loads((settings.corrections_dir / "meta" / f"{record}.json").read_text())
    assert meta["extra"]["review"] == "accepted proposal" and meta["edited_pixels"] == 0
    with Image.open(settings.corrections_dir / "labels" / f"{record}.png") as im:
        assert im.size == (2200, 3292)
    assert (settings.corrections_dir / "images" / f"{record}.jpg").read_bytes() == big.read_bytes()


def test_users_have_separate_sessions(app):
    _, url = app
    alice, bob = connect(url), connect(url)
    parse(alice)
    parse(bob, OTHER_PHOTO)
    alice_status = alice.predict(5, 5, "Relabel region", SKIN, 24, *VIEW, api_name="/apply_click")[4]
    assert "**0 pixels changed**" not in alice_status
    bob_status = bob.predict(540, 5, "Relabel region", UPPER, 24, *VIEW, api_name="/apply_click")[4]
    assert "**0 pixels changed**" not in bob_status and "550x825" in bob_status
    alice_status = alice.predict(*VIEW, api_name="/undo")[4]
    assert "**0 pixels changed**" in alice_status and "550x823" in alice_status
    assert bob.predict(*VIEW, api_name="/redo")[4] == bob_status  # Alice's undo left Bob's history alone


def test_checkpoints_added_later_are_offered_without_restart(app):
    settings, url = app
    client = connect(url)
    shutil.copytree(settings.checkpoints_dir / "tiny", settings.checkpoints_dir / "tuned")
    try:
        choices, _ = client.predict(None, api_name="/checkpoints")
        downloads = parse(client, checkpoint=str((settings.checkpoints_dir / "tuned").resolve()))[3]
        assert summary_of(downloads)["model"] == "tuned"
    finally:
        shutil.rmtree(settings.checkpoints_dir / "tuned")
    assert "tuned" in json.dumps(choices)


def test_snapped_strokes_follow_image_edges(app, tmp_path):
    _, url = app
    client = connect(url)
    overlay, *_ = parse(client)
    before = label_map(client.predict(*VIEW, api_name="/reset")[3])
    layer = np.zeros((*before.shape, 4), np.uint8)
    layer[200:320, 150:300] = (*LIP.colour_lut()[UPPER], 255)
    Image.fromarray(layer).save(tmp_path / "rough.png")
    editor = {"background": handle_file(overlay), "layers": [handle_file(str(tmp_path / "rough.png"))]}
    downloads = client.predict({**editor, "composite": None}, *VIEW, api_name="/snap_strokes")[3]
    after = label_map(downloads)
    changed = after != before
    assert changed.any() and set(np.unique(after[changed])) == {UPPER}
    # Snapping moves the boundary: the result is not simply the painted rectangle.
    assert not np.array_equal(after == UPPER, (layer[..., 3] > 0) | (before == UPPER))


def test_app_without_a_model_still_parses_by_hand_and_saves(tmp_path):
    settings = Settings(
        port=free_port(),
        corrections_dir=tmp_path / "corrections",
        checkpoints_dir=tmp_path / "no-checkpoints",
        checkpoint=tmp_path / "missing-checkpoint",
    )
    with launched_app(settings):
        client = connect(f"http://127.0.0.1:{settings.port}/")
        _, status = client.predict(None, api_name="/checkpoints")
        assert "No model is available" in status and "missing-checkpoint" in status
        *_, downloads, status, _, _, _, message = parse(client)
        assert "no model could be used" in message
        assert (label_map(downloads) == 0).all()
        client.predict(5, 5, "Flood fill (similar colour)", SKIN, 40, *VIEW, api_name="/apply_click")
        client.predict(api_name="/save")
        (meta,) = [json.loads(p.read_text()) for p in (settings.corrections_dir / "meta").glob("*.json")]
        assert meta["model"] == "" and meta["edited_pixels"] > 0


def test_app_py_starts_without_a_model(tmp_path):
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "GRADIO_ANALYTICS_ENABLED": "False",
        "SSFNET_CHECKPOINT": str(tmp_path / "missing"),
        "SSFNET_CORRECTIONS_DIR": str(tmp_path / "corrections"),
    }
    args = [sys.executable, "app.py", "--port", str(port), "--checkpoints-dir", str(tmp_path)]
    proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for_page(proc, port)
    finally:
        proc.terminate()
        output = proc.communicate(timeout=30)[0]
    assert "starting without a model" in output and "missing" in output


def test_every_documented_call_works_on_its_own_with_named_outputs(app, tmp_path):
    settings, url = app
    client = connect(url)
    api = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    unnamed = {name: r["label"] for name, e in api.items() for r in e["returns"] if r["label"].startswith("value_")}
    assert not unnamed, f"outputs named after component ids: {unnamed}"
    assert [r["label"] for r in api["/save"]["returns"]] == ["Saved corrections (newest first)", "Message", "Status"]
    params = {p["parameter_name"]: p for p in api["/apply_click"]["parameters"]}
    assert f"'{SKIN}'" in params["label"]["python_type"]["type"]  # ids documented as strings ...

    # ... and taken as documented, by a session that called nothing else first, with a checkpoint
    # added after the page was built (no /checkpoints call to make it known).
    later = settings.checkpoints_dir / "later"
    shutil.copytree(settings.checkpoints_dir / "tiny", later)
    try:
        downloads = parse(client, checkpoint=str(later.resolve()))[3]
        assert summary_of(downloads)["model"] == "later"
        clicked = client.predict(5, 5, "Relabel region", str(SKIN), 24, 0.5, ["0", "255"], api_name="/apply_click")
        downloads = clicked[3]
        assert label_map(downloads)[5, 5] == SKIN
        *_, agreement = client.predict(str(later.resolve()), None, False, False, *VIEW, api_name="/compare")
        assert "`later`" in agreement
    finally:
        shutil.rmtree(later)


def test_user_mistakes_are_shown_not_logged_as_tracebacks(app, capfd):
    settings, url = app
    client = connect(url)
    capfd.readouterr()
    with pytest.raises(AppError, match="Parse a photo"):
        client.predict(*VIEW, api_name="/undo")
    parse(client)
    with pytest.raises(AppError, match="No label 'nonsense'"):
        client.predict(5, 5, "Relabel region", "nonsense", 24, *VIEW, api_name="/apply_click")
    out, err = capfd.readouterr()
    assert "Traceback" not in out + err


def test_finetune_start_needs_the_base_the_panel_shows(app):
    settings, url = app
    client = connect(url)
    with pytest.raises(AppError, match="Choose a base checkpoint"):
        client.predict(None, 1, 0.001, 0.5, 0.2, False, api_name="/finetune_start")
    assert not settings.runs_dir.exists() or not list(settings.runs_dir.iterdir())


def test_animated_and_heic_uploads_say_what_was_done(app, tmp_path):
    _, url = app
    client = connect(url)
    first = Image.open(PHOTO).convert("RGB")
    frames = [first, Image.open(OTHER_PHOTO).convert("RGB").resize(first.size)]
    gif = tmp_path / "moving.gif"
    frames[0].save(gif, save_all=True, append_images=frames[1:], duration=200)
    message = parse(client, gif)[-1]
    assert "Parsed **moving.gif**" in message and "animated (2 frames)" in message and "first frame" in message
    heic = tmp_path / "iphone.heic"
    heic.write_bytes(b"\0\0\0\x18ftypheic\0\0\0\0mif1heic" + bytes(256))
    message = parse(client, heic)[-1]
    assert "Could not use this file" in message and "iphone.heic is a HEIC/HEIF image" in message
    assert "not supported" in message and "JPEG or PNG" in message


def test_gallery_hides_superseded_versions_trash_and_drafts(app):
    settings, url = app
    client = connect(url)
    parse(client, OTHER_PHOTO)
    client.predict(5, 5, "Relabel region", SKIN, 24, *VIEW, api_name="/apply_click")
    _, message, _ = client.predict(api_name="/save")
    first = message.split("`")[1]
    client.predict(record_id := first, *VIEW, api_name="/reopen")
    client.predict(20, 20, "Relabel region", UPPER, 24, *VIEW, api_name="/apply_click")
    _, message, _ = client.predict(api_name="/save")
    second = message.split("`")[1]

    # Captions name the photo and the date; the reopened-and-saved parent is hidden unless asked for.
    captions = [item["caption"] for item in client.predict(False, api_name="/list_corrections")]
    assert any(second in c and OTHER_PHOTO.name in c and "UTC" in c for c in captions)
    assert not any(record_id in c for c in captions)
    assert any(first in item["caption"] for item in client.predict(True, api_name="/list_corrections"))

    # Delete moves the record into the trash folder, where it can be recovered.
    *_, message = client.predict(second, False, api_name="/trash")
    assert "trash" in message and (settings.corrections_dir / "trash" / "meta" / f"{second}.json").is_file()
    assert second not in saved_ids(settings)

    # Edits left unsaved when another photo opens are kept as a draft, restorable on their own.
    client.predict(30, 30, "Relabel region", LIP.id_of("hat"), 24, *VIEW, api_name="/apply_click")
    message = parse(client)[-1]
    assert "kept as a draft" in message
    choices = client.predict(None, api_name="/drafts")["choices"]  # the list's update: (caption, id) pairs
    (draft,) = [sha for caption, sha in choices if OTHER_PHOTO.name in caption]
    *_, downloads, status, _, _, _, message = client.predict(draft, *VIEW, api_name="/restore_draft")
    assert "Restored the draft of **ccp_0757.jpg**" in message and "unsaved changes" in status


def test_zoom_shows_the_crop_enlarged_and_click_tools_keep_working_coordinates(app):
    _, url = app
    client = connect(url)
    overlay, *_, downloads, _, _, _, _, _ = parse(client, ZOOM_PHOTO)
    whole, labels = np.array(Image.open(overlay)), label_map(downloads)
    h, w = labels.shape

    # Zoomed 4x around (100, 700): the overlay shown is that crop, each pixel a crisp 4 x 4 block.
    view = window((h, w), 4, 100, 700)
    shown = np.array(Image.open(client.predict("4", 100, 700, *VIEW, api_name="/zoom")))
    assert shown.shape[:2] == view.shown_size and shown.shape[0] < h + 4 and shown.shape[1] < w + 4
    np.testing.assert_array_equal(shown, view.enlarge(view.crop(whole)))

    # A click tool where the zoomed picture shows (130, 210): apply_click takes that point in working pixels.
    x, y = view.to_working(130, 210)
    assert (x, y) == (view.x0 + 32, view.y0 + 52)
    expected = labels.copy()
    region = cv2.floodFill(labels.copy(), None, (x, y), 0, 0, 0, 4 | cv2.FLOODFILL_MASK_ONLY | (1 << 8))[2]
    expected[region[1:-1, 1:-1].astype(bool)] = SHOES  # a coarse label: never in a proposal
    shown, *_, downloads, status, _ = client.predict(x, y, "Relabel region", SHOES, 24, *VIEW, api_name="/apply_click")
    assert "1 undo step(s)" in status
    np.testing.assert_array_equal(label_map(downloads), expected)  # the downloads: the whole picture
    whole = np.array(Image.open(next(p for p in downloads if p.endswith("_overlay.png"))))
    assert whole.shape[:2] == (h, w)
    np.testing.assert_array_equal(np.array(Image.open(shown)), view.enlarge(view.crop(whole)))  # still zoomed

    # Undo and a new opacity keep the zoom.
    shown, *_, downloads, _ = client.predict(*VIEW, api_name="/undo")
    np.testing.assert_array_equal(label_map(downloads), labels)
    assert np.array(Image.open(shown)).shape[:2] == view.shown_size
    shown, downloads = client.predict(0.8, ["0"], api_name="/rerender")
    whole = np.array(Image.open(next(p for p in downloads if p.endswith("_overlay.png"))))
    np.testing.assert_array_equal(np.array(Image.open(shown)), view.enlarge(view.crop(whole)))

    # The Zoom in tool doubles the zoom around the point; the zoom then fits the whole image again.
    shown = client.predict(x, y, "Zoom in", 0, 24, *VIEW, api_name="/apply_click")[0]
    assert np.array(Image.open(shown)).shape[:2] == window((h, w), 8, x, y).shown_size
    shown = client.predict("1", None, None, *VIEW, api_name="/zoom")
    assert np.array(Image.open(shown)).shape[:2] == (h, w)

    # Another photo opens whole, and redraws of it stay so.
    client.predict("2", 10, 10, *VIEW, api_name="/zoom")
    overlay = parse(client, OTHER_PHOTO)[0]
    other = np.array(Image.open(overlay))
    assert other.shape[:2] == np.array(Image.open(OTHER_PHOTO)).shape[:2]
    shown, _ = client.predict(*VIEW, api_name="/rerender")
    np.testing.assert_array_equal(np.array(Image.open(shown)), other)
