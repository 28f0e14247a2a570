"""The review step (issue 36 item 4): a record's status in its meta, the gallery and queue showing it,
and the fine-tune's choice of approved corrections only.

The store and the fine-tune's selection without Gradio; the app's review of the open photo through
``gradio_client`` with a randomly initialised SSFNet-lite (its labels are arbitrary but deterministic).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from helpers import app_settings, launched_app
from PIL import Image

from demo.drafts import Drafts
from demo.finetune_runner import FinetuneRequest
from demo.queue import PhotoQueue, review_caption
from ssfnet import build_model, save_checkpoint
from ssfnet.data import list_corrections, load_correction, save_correction
from ssfnet.data.correction_files import sweep_corrections
from ssfnet.data.review import APPROVED, REJECTED, TO_REVIEW, is_approved, review_status, set_review
from ssfnet.labels import get_label_set
from train.finetune import run as finetune
from train.finetune.data import select_corrections

LIP = get_label_set("lip-20")
HAIR = LIP.id_of("hair")
VIEW = (0.5, ["0"])


def photo(seed: int, size: int = 24) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (size, size, 3), dtype=np.uint8)


def record(root: Path, seed: int, parent: str | None = None) -> str:
    labels = np.full((24, 24), seed % LIP.num_classes, np.uint8)
    return save_correction(root, photo(seed), labels, "lip-20", source_name=f"p{seed}.png", parent=parent)


def meta_bytes(root: Path, record_id: str) -> bytes:
    return (root / "meta" / f"{record_id}.json").read_bytes()


def test_a_review_is_stored_in_the_records_meta_and_logged(tmp_path):
    root = tmp_path / "corrections"
    rid = record(root, 1)
    assert review_status(list_corrections(root)[0]) == {"status": TO_REVIEW, "note": "", "by": None, "at": None}
    meta = set_review(root, rid, APPROVED, by="ana")
    stored = json.loads(meta_bytes(root, rid))
    assert stored["review_status"]["status"] == APPROVED and stored["review_status"]["by"] == "ana"
    assert "id" not in stored and stored["label_set"] == "lip-20" and meta["id"] == rid
    set_review(root, rid, REJECTED, "  left sleeve missed ")
    (listed,) = list_corrections(root)
    assert review_status(listed)["note"] == "left sleeve missed" and not is_approved(listed)
    assert [entry["status"] for entry in listed["review_log"]] == [APPROVED]
    assert load_correction(root, rid)[2]["review_status"]["status"] == REJECTED  # the record still reads whole
    assert sorted(p.name for p in (root / "meta").iterdir()) == [f"{rid}.json"]  # no temporary left


@pytest.mark.parametrize(
    ("status", "note", "error", "match"),
    [
        ("done", "", ValueError, "must be one of"),
        (REJECTED, "   ", ValueError, "needs a note"),
        (APPROVED, "x" * 2001, ValueError, "at most 2000"),
        (APPROVED, 5, ValueError, "is text"),
    ],
)
def test_a_bad_review_says_why_and_changes_nothing(tmp_path, status, note, error, match):
    root = tmp_path / "corrections"
    rid = record(root, 2)
    before = meta_bytes(root, rid)
    with pytest.raises(error, match=match):
        set_review(root, rid, status, note)
    assert meta_bytes(root, rid) == before


def test_a_review_of_a_missing_record_or_a_failed_write_loses_nothing(tmp_path, monkeypatch):
    root = tmp_path / "corrections"
    rid = record(root, 3)
    with pytest.raises(FileNotFoundError):
        set_review(root, rid.replace(rid[:4], "ffff"), APPROVED)
    with pytest.raises(ValueError, match="invalid correction id"):
        set_review(root, "../escape", APPROVED)
    before = meta_bytes(root, rid)

    def full_disk(*_):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", full_disk)
    with pytest.raises(OSError, match="could not store the review") as caught:
        set_review(root, rid, APPROVED)
    assert caught.value.errno == 28
    monkeypatch.undo()
    assert meta_bytes(root, rid) == before and sorted(os.listdir(root / "meta")) == [f"{rid}.json"]


def test_a_review_temporary_left_by_a_killed_writer_is_swept(tmp_path):
    root = tmp_path / "corrections"
    rid = record(root, 4)
    leftover = root / "meta" / f".{rid}.review-0a1b2c3d.meta.json.tmp"
    leftover.write_text("{")
    assert leftover in sweep_corrections(root) and not leftover.exists()
    assert [m["id"] for m in list_corrections(root)] == [rid]


def test_the_queue_shows_the_review_of_each_saved_photos_latest_record(tmp_path):
    folder, root = tmp_path / "photos", tmp_path / "corrections"
    folder.mkdir()
    paths = []
    for seed in (5, 6, 7):
        path = folder / f"p{seed}.png"
        Image.fromarray(photo(seed)).save(path)
        paths.append(path)
    first = save_correction(root, None, np.zeros((24, 24), np.uint8), "lip-20", image_bytes=paths[0].read_bytes())
    second = save_correction(root, None, np.zeros((24, 24), np.uint8), "lip-20", image_bytes=paths[1].read_bytes())
    set_review(root, first, APPROVED)
    set_review(root, second, REJECTED, "hair <b>missed</b>")
    queue = PhotoQueue(tmp_path / "queue", root, Drafts(root / "drafts"))
    queue.load_folder(folder)
    html = queue.table_html(None)
    rows = html.split("<tr")[2:]
    assert "✔ approved" in rows[0] and "✖ rejected: hair &lt;b&gt;missed&lt;/b&gt;" in rows[1]
    assert "to review" not in rows[2] and "<th>review</th>" in html
    # An edit of the approved record is a new record, to review again.
    save_correction(root, None, np.ones((24, 24), np.uint8), "lip-20", image_bytes=paths[0].read_bytes(), parent=first)
    assert "◻ to review" in queue.table_html(None).split("<tr")[2]
    assert review_caption({"review_status": {"status": "approved"}}) == "✔ approved"


def test_the_fine_tune_takes_approved_corrections_only_by_choice(tmp_path):
    root = tmp_path / "corrections"
    ids = [record(root, seed) for seed in range(10, 16)]
    for rid in ids[:4]:
        set_review(root, rid, APPROVED)
    set_review(root, ids[4], REJECTED, "wrong person")
    edited = record(root, 10, parent=ids[0])  # an approved record edited since: to review again
    said = []
    (everything,) = select_corrections([str(root)], LIP, 0.0, 0, said.append)
    assert sorted(everything["train_ids"]) == sorted([edited, *ids[1:]]) and "unapproved" not in everything
    (approved,) = select_corrections([str(root)], LIP, 0.5, 0, said.append, approved_only=True)
    assert sorted(approved["train_ids"] + approved["held_out_ids"]) == sorted(ids[1:4])
    assert approved["held_out_ids"] and approved["train_ids"]
    assert {u["id"]: u["status"] for u in approved["unapproved"]} == {
        edited: TO_REVIEW,
        ids[4]: REJECTED,
        ids[5]: TO_REVIEW,
    }
    assert "3 not approved left out" in said[-1]

    for rid in ids[1:4]:
        set_review(root, rid, TO_REVIEW)
    with pytest.raises(ValueError, match="no approved corrections.*--approved-only"):
        select_corrections([str(root)], LIP, 0.0, 0, said.append, approved_only=True)

    assert finetune.parse_args(["--approved-only"]).approved_only and not finetune.parse_args([]).approved_only
    assert "--approved-only" in FinetuneRequest(base="b", approved_only=True).args()
    assert "--approved-only" not in FinetuneRequest(base="b").args()


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    root = tmp_path_factory.mktemp("review")
    torch.manual_seed(0)
    model = build_model("ssfnet_lite", LIP.num_classes)
    save_checkpoint(model, root / "checkpoints" / "tiny", variant="ssfnet_lite", label_set="lip-20")
    settings = app_settings(root)
    with launched_app(settings):
        yield settings, f"http://127.0.0.1:{settings.port}/"


def test_the_app_reviews_the_open_photos_saved_record(app, tmp_path):
    settings, url = app
    client = Client(url, verbose=False, analytics_enabled=False)
    path = tmp_path / "reviewed.png"
    Image.fromarray(photo(20, 64)).save(path)
    client.predict(handle_file(str(path)), None, False, False, *VIEW, api_name="/parse")
    with pytest.raises(AppError, match="Save this photo first"):
        client.predict(APPROVED, "", False, api_name="/set_review")
    client.predict(3, 3, "Relabel region", str(HAIR), 24, *VIEW, api_name="/apply_click")
    client.predict(api_name="/save")
    (rid,) = [p.stem for p in (settings.corrections_dir / "meta").glob("*.json")]

    with pytest.raises(AppError, match="needs a note"):
        client.predict(REJECTED, "", False, api_name="/set_review")
    gallery, message = client.predict(REJECTED, "hair spills onto the wall", False, api_name="/set_review")
    assert "rejected" in message and rid in message
    assert gallery[0]["caption"].endswith(f"✖ rejected: hair spills onto the wall · {rid}")
    assert review_status(json.loads((settings.corrections_dir / "meta" / f"{rid}.json").read_text()))["status"] == (
        REJECTED
    )

    # Nothing approved: a fine-tune on approved corrections only is refused before it starts.
    with pytest.raises(AppError, match="No approved corrections"):
        client.predict("tiny", 1, "", 0.5, 0.2, False, 1.0, False, True, api_name="/finetune_start")
    assert not settings.runs_dir.exists() or not list(settings.runs_dir.iterdir())

    # Approving labels that differ from the saved record is refused: the approval would be of other labels.
    client.predict(30, 30, "Paint dot (brush size)", str(HAIR), 24, *VIEW, api_name="/apply_click")
    with pytest.raises(AppError, match="differ from the saved record"):
        client.predict(APPROVED, "", False, api_name="/set_review")
    client.predict(*VIEW, api_name="/undo")
    gallery, _ = client.predict(APPROVED, "", False, api_name="/set_review")
    assert "✔ approved" in gallery[0]["caption"]
    shutil.rmtree(settings.corrections_dir)


def test_the_panel_counts_approved_photos_as_the_fine_tune_picks_them(tmp_path):
    from types import SimpleNamespace

    from demo.panel_finetune import FinetuneHandlers
    from demo.settings import Settings

    root = tmp_path / "corrections"
    panel = FinetuneHandlers(SimpleNamespace(settings=Settings(corrections_dir=root), corrections_dir=root), None)
    older = record(root, 30)
    set_review(root, older, APPROVED)
    assert panel._approved() == 1
    # The same photo saved again without a link (accepted, later corrected): the fine-tune takes the newer one.
    newer = record(root, 30)
    assert panel._approved() == 0
    set_review(root, newer, APPROVED)
    assert panel._approved() == 1
