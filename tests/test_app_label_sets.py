"""A body-part checkpoint beside the LIP-20 default: parse, legend, correct and save in its own label set."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
import torch
from gradio_client import Client, handle_file
from helpers import TINY, app_settings, launched_app
from PIL import Image
from test_app import PHOTO, VIEW, label_map, summary_of, write_tiny_checkpoint

from ssfnet import build_model, save_checkpoint
from ssfnet.labels import get_label_set

PARTS = get_label_set("pascal-person-part-7")


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    root = tmp_path_factory.mktemp("app-parts")
    write_tiny_checkpoint(root / "checkpoints" / "tiny")
    torch.manual_seed(1)
    model = build_model("ssfnet_lite", PARTS.num_classes, **TINY)
    save_checkpoint(
        model,
        root / "checkpoints" / "parts",
        variant="ssfnet_lite",
        label_set=PARTS.name,
        options=TINY,
        dtype=torch.float16,
    )
    settings = app_settings(root)
    with launched_app(settings):
        yield settings, f"http://127.0.0.1:{settings.port}/"


def test_body_part_model_parses_corrects_and_saves_in_its_label_set(app):
    settings, url = app
    client = Client(url, verbose=False, analytics_enabled=False)
    choices, _ = client.predict(None, api_name="/checkpoints")
    assert "parts" in json.dumps(choices)
    parts = str((settings.checkpoints_dir / "parts").resolve())
    _, _, legend, downloads, *_, message = client.predict(
        handle_file(str(PHOTO)), parts, False, False, *VIEW, api_name="/parse"
    )
    assert "Parsed" in message
    info = summary_of(downloads)
    assert info["model"] == "parts" and info["label_set"] == PARTS.name
    proposal = label_map(downloads)
    assert proposal.max() < PARTS.num_classes
    present = {PARTS.names[i] for i in np.unique(proposal)}
    assert all(name in legend for name in present)
    assert "upper-clothes" not in legend  # no LIP-20 row in a body-part legend

    torso = PARTS.id_of("torso") if proposal[5, 5] != PARTS.id_of("torso") else PARTS.id_of("head")
    client.predict(5, 5, "Relabel region", torso, 24, *VIEW, api_name="/apply_click")
    _, message, _ = client.predict(api_name="/save")
    assert "saved" in message.lower(), message
    (meta_path,) = (settings.corrections_dir / "meta").glob("*.json")
    meta = json.loads(meta_path.read_text())
    assert meta["label_set"] == PARTS.name and meta["model"] == "parts" and meta["edited_pixels"] > 0
    with Image.open(settings.corrections_dir / "labels" / f"{meta['id']}.png") as im:
        saved = np.array(im)
    assert saved[5, 5] == torso and saved.max() < PARTS.num_classes

    archive = client.predict(api_name="/export_zip")
    with zipfile.ZipFile(archive) as zf:
        text = " ".join(zf.read(n).decode("utf-8", "replace") for n in zf.namelist() if n.endswith(".json"))
    assert PARTS.name in text and "torso" in text
