"""Drafts (unsaved work kept on disk), the accept-as-correct rule and the photo queue, without Gradio."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from demo.drafts import Drafts
from demo.queue import PhotoQueue, mean_entropy
from demo.session import Session, read_upload
from ssfnet.labels import get_label_set

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((REPO / "assets" / "examples").glob("*.jpg"))
LIP = get_label_set("lip-20")


def session_of(photo: Path) -> Session:
    image, source = read_upload(photo)
    proposal = np.zeros(image.shape[:2], np.uint8)
    proposal[: image.shape[0] // 2] = LIP.id_of("hair")
    return Session.start(image, source, proposal, LIP, model="tiny")


def edited(session: Session) -> Session:
    new = session.labels.copy()
    new[:10, :10] = LIP.id_of("hat")
    session.edit(new, "test")
    return session


def test_a_draft_keeps_edits_until_saved_and_restores_them(tmp_path):
    drafts = Drafts(tmp_path / "drafts")
    session = session_of(EXAMPLES[0])
    assert not drafts.keep(session)  # nothing edited: no draft
    edited(session)
    assert drafts.keep(session) and drafts.exists(session.source.sha256)

    # The photo opened again (a new session from the same bytes) continues from the draft.
    again = session_of(EXAMPLES[0])
    assert drafts.restore_into(again)
    np.testing.assert_array_equal(again.labels, session.labels)
    assert again.changed_pixels == 100 and again.history.can_undo

    # Without the photo at hand: the draft holds its bytes.
    ((sha, meta),) = drafts.listing()
    restored = drafts.load(sha)
    assert meta["source_name"] == EXAMPLES[0].name and restored.source.data == EXAMPLES[0].read_bytes()
    np.testing.assert_array_equal(restored.labels, session.labels)
    np.testing.assert_array_equal(restored.proposal, session.proposal)

    # Saving leaves nothing unsaved: the draft goes.
    session.save(tmp_path / "corrections")
    assert not drafts.keep(session) and not drafts.exists(session.source.sha256)
    assert not drafts.restore_into(session_of(EXAMPLES[0]))


def test_an_unedited_proposal_is_saved_only_when_accepted(tmp_path):
    session = session_of(EXAMPLES[1])
    with pytest.raises(ValueError, match="accept the proposal"):
        session.save(tmp_path)
    assert not (tmp_path / "meta").exists()
    record = session.save(tmp_path, accept_proposal=True)
    meta = json.loads((tmp_path / "meta" / f"{record}.json").read_text())
    assert meta["extra"]["review"] == "accepted proposal" and meta["edited_pixels"] == 0
    assert meta["extra"]["source_sha256"] == session.source.sha256

    corrected = edited(session_of(EXAMPLES[2]))
    meta = json.loads((tmp_path / "meta" / f"{corrected.save(tmp_path)}.json").read_text())
    assert meta["extra"]["review"] == "corrected" and meta["edited_pixels"] == 100


def test_mean_entropy_is_zero_when_sure_and_one_when_uniform():
    sure = np.zeros((4, 8, 8), np.float32)
    sure[2] = 1.0
    assert mean_entropy(sure) == pytest.approx(0.0, abs=1e-5)
    assert mean_entropy(np.full((4, 8, 8), 0.25, np.float32)) == pytest.approx(1.0, abs=1e-5)
    half = np.zeros((4, 8, 8), np.float32)
    half[:2] = 0.5
    assert mean_entropy(half) == pytest.approx(0.5, abs=1e-5)


def test_queue_status_and_ranking_survive_a_restart(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for photo in EXAMPLES[:3]:
        shutil.copy(photo, folder / photo.name)
    (folder / "notes.txt").write_text("not a photo")
    corrections, drafts = tmp_path / "corrections", Drafts(tmp_path / "corrections" / "drafts")
    queue = PhotoQueue(tmp_path / "queue", corrections, drafts)
    photos = queue.load_folder(folder)
    assert [p.name for p in photos] == [p.name for p in EXAMPLES[:3]]
    assert queue.statuses(photos) == ["to do"] * 3

    drafts.keep(edited(session_of(photos[0])))
    session_of(photos[1]).save(corrections, accept_proposal=True)
    scores = {p.name: s for p, s in zip(photos, (0.2, 0.9, 0.5), strict=True)}
    calls = []

    def score(path: Path) -> float:
        calls.append(path.name)
        return scores[path.name]

    ranked = queue.rank("tiny@1", score)
    assert [p.name for p in ranked] == [photos[1].name, photos[2].name, photos[0].name]

    # A new app on the same folders: the same order, statuses and cached scores.
    again = PhotoQueue(tmp_path / "queue", corrections, drafts)
    assert again.photos() == ranked and again.ranked_by == "tiny@1"
    assert again.statuses(again.photos()) == ["saved", "to do", "draft"]
    again.rank("tiny@1", score)
    assert sorted(calls) == sorted(scores)  # each photo scored once
    html = again.table_html(0)
    assert "3 photos, by uncertainty" in html and "0.900" in html and "1 saved" in html


def test_uploads_join_the_queue_once(tmp_path):
    queue = PhotoQueue(tmp_path / "queue", tmp_path / "corrections", Drafts(tmp_path / "drafts"))
    queue.add_uploads([EXAMPLES[0], EXAMPLES[1]])
    photos = queue.add_uploads([EXAMPLES[0], tmp_path / "x.txt"])
    assert len(photos) == 2 and all(p.parent == tmp_path / "queue" / "uploads" for p in photos)


def test_checkpoint_choices_show_the_validation_score():
    from demo.models import describe

    release = {
        "variant": "v",
        "label_set": "lip-20",
        "metrics": {
            "sources": {"ccp": {"miou": 19.6, "label_set": "x"}, "viton": {"miou": 31.04, "label_set": "lip-20"}}
        },
    }
    assert "val mIoU 31.0 on viton" in describe(Path("base"), release)
    child = {"variant": "v", "label_set": "lip-20", "metrics": {"val_miou": 12.3}, "finetune": {"iterations": 4}}
    # A fine-tune's own figure is on other photos than its base's: not shown as if comparable.
    assert "no held-out score, 4 iterations" in describe(Path("child"), child)
    assert "12.3" not in describe(Path("child"), child)
    assert "no val score" in describe(
        Path("bare"), {"variant": "v", "label_set": "lip-20", "metrics": {"val_miou": "?"}}
    )


def test_opening_a_photo_leaves_a_draft_it_cannot_continue(tmp_path):
    drafts = Drafts(tmp_path / "drafts")
    drafts.keep(edited(session_of(EXAMPLES[0])))
    image, source = read_upload(EXAMPLES[0])
    other = Session.start(image, source, np.zeros(image.shape[:2], np.uint8), get_label_set("atr-18"))
    assert not drafts.restore_into(other)  # drawn with another label set
    assert drafts.keep(other)  # what every redraw calls: the draft stays


def age(folder: Path, seconds: float) -> None:
    """Make ``folder`` and its files look last written ``seconds`` ago."""
    then = time.time() - seconds
    for path in [*folder.iterdir(), folder]:
        os.utime(path, (then, then))


def test_pages_drafts_expire_after_the_session_lifetime_and_no_one_elses(tmp_path):
    drafts = Drafts(tmp_path / "drafts")
    session = edited(session_of(EXAMPLES[0]))
    owners = {
        "shared": drafts,
        "user": drafts.of("user alice"),
        "old page": drafts.of("page a"),
        "page": drafts.of("page b"),
    }
    for kept in owners.values():
        assert kept.keep(session)
    for name in ("shared", "user", "old page"):
        age(owners[name].folder(session.source.sha256), 7200)
    assert drafts.expire_pages(3600) == 1
    assert not owners["old page"].root.exists()  # its page folder went with its last draft
    assert all(owners[name].exists(session.source.sha256) for name in ("shared", "user", "page"))
    # Looked at most every ``every_s``: a page that ends meanwhile waits for the next look.
    age(owners["page"].folder(session.source.sha256), 7200)
    assert drafts.expire_pages(3600, every_s=300) == 0 and owners["page"].exists(session.source.sha256)
    assert drafts.expire_pages(3600, now=time.time() + 301, every_s=300) == 1
    assert not owners["page"].exists(session.source.sha256) and owners["user"].exists(session.source.sha256)
