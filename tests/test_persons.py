"""Person ids beside the part labels (issue 36 item 3): derived, split, merged, undone, saved and read back."""

from __future__ import annotations

import io
import json
import zipfile
from types import SimpleNamespace

import gradio as gr
import numpy as np
import pytest
import torch
from gradio_client import Client, handle_file
from helpers import app_settings, launched_app
from PIL import Image

from demo.drafts import Drafts
from demo.keys import KEYS_JS, POLYGON_TOOL, SHORTCUTS_MD
from demo.panel_edit import PERSON_CUT_TOOL, PERSON_MERGE_TOOL, PERSON_SPLIT_TOOL, TOOLS, EditHandlers
from demo.render import draw_persons
from demo.session import Session, Source, open_correction
from demo.zoom import window
from ssfnet import build_model, save_checkpoint
from ssfnet.data import correction_persons as cp
from ssfnet.data.corrections import (
    export_zip,
    list_corrections,
    load_correction,
    load_persons,
    save_correction,
    sweep_corrections,
    trash_correction,
)
from ssfnet.labels import get_label_set

LIP = get_label_set("lip-20")
HAIR, FACE, COAT = LIP.id_of("hair"), LIP.id_of("face"), LIP.id_of("coat")
VIEW = (0.5, ["0"])


def two_people(height: int = 40, width: int = 64) -> np.ndarray:
    """Labels of two people (hair over face over coat) side by side, 8 px apart, and a stray hand."""
    labels = np.zeros((height, width), np.uint8)
    for x0 in (4, 36):
        labels[2:10, x0 : x0 + 20] = HAIR
        labels[10:18, x0 : x0 + 20] = FACE
        labels[18:38, x0 : x0 + 20] = COAT
    labels[30:32, 25:27] = FACE  # 4 px cut off the left person's coat by a one-pixel gap
    return labels


def touching_people() -> np.ndarray:
    """Two people whose coats touch: one piece of person pixels."""
    labels = two_people()
    labels[18:38, 24:36] = COAT
    return labels


def session_on(labels: np.ndarray) -> Session:
    h, w = labels.shape
    image = np.full((h, w, 3), 128, np.uint8)
    source = Source(name="people.png", data=b"", ext="png", size=(h, w), keep_bytes=False)
    return Session.start(image, source, labels, LIP)


def handlers() -> EditHandlers:
    ui = SimpleNamespace(view="view", session="session", editor="editor", label="label")
    app = SimpleNamespace(ui=ui, label_set_of=lambda session: LIP)
    app.views = lambda session, opacity, hidden, zoom: {"view": "redrawn"}
    app.shown = lambda session, zoom, opacity, hidden, full=None: "shown"
    return EditHandlers(app)


def click(edit, session, x, y, tool, add=False):
    return edit.apply_click(session, None, x, y, tool, str(HAIR), 24, *VIEW, None, add)


@pytest.fixture(autouse=True)
def quiet_toasts(monkeypatch):
    said = []
    monkeypatch.setattr(gr, "Info", lambda message, *a, **k: said.append(message))
    return said


def test_derived_people_are_the_pieces_with_fragments_joined():
    labels = two_people()
    persons = cp.derive_persons(labels)
    assert persons.dtype == np.uint8 and cp.person_count(persons) == 2
    assert not persons[labels == 0].any() and persons[labels > 0].all()
    left, right = persons[20, 10], persons[20, 40]
    assert left != right and persons[30, 25] == left  # the stray hand joins the nearest person
    assert cp.person_count(cp.derive_persons(touching_people())) == 1
    # A small piece far from everyone is a person of its own (a child at the back), not a fragment.
    far = np.zeros((200, 200), np.uint8)
    far[10:110, 10:60] = COAT
    far[180:190, 180:190] = FACE
    assert cp.person_count(cp.derive_persons(far)) == 2


def test_fitting_keeps_ids_and_gives_new_pixels_the_nearest_or_a_new_one():
    labels = two_people()
    persons = cp.derive_persons(labels)
    swapped = np.where(persons == 1, 2, np.where(persons == 2, 1, 0)).astype(np.uint8)
    grown = labels.copy()
    grown[18:38, 24:26] = COAT  # the left coat widened: its new pixels touch the left person
    grown[0:2, 0:4] = HAIR  # and a new piece beside it
    fitted = cp.fit_persons(grown, swapped)
    assert np.array_equal(fitted[labels > 0], swapped[labels > 0])
    assert (fitted[18:38, 24:26] == swapped[20, 10]).all()
    erased = labels.copy()
    erased[:, :30] = 0
    assert not cp.fit_persons(erased, swapped)[:, :30].any()


def test_split_merge_and_cut_with_undo():
    edit, session = handlers(), session_on(touching_people())
    assert cp.person_count(session.person_ids()) == 1 and session.persons is None
    # The new-id tool on the right person's hair, then its face added: one edit, one new person.
    assert click(edit, session, 40, 5, PERSON_SPLIT_TOOL) == {"view": "redrawn"}
    click(edit, session, 40, 12, PERSON_SPLIT_TOOL, add=True)
    ids = session.person_ids()
    assert len(session.history) == 1 and cp.person_count(ids) == 2
    assert ids[5, 40] == ids[12, 40] != ids[5, 10] and ids[25, 40] == ids[5, 10]  # the coat stays
    assert np.array_equal(session.labels, touching_people())  # person tools never change labels
    session.undo()
    assert cp.person_count(session.person_ids()) == 1 and not session.persons_edited
    session.redo()
    assert cp.person_count(session.person_ids()) == 2
    session.undo()
    # A cut from above the heads to below the feet between the two people.
    click(edit, session, 30, 0, PERSON_CUT_TOOL)
    assert session.person_pick == (PERSON_CUT_TOOL, 30, 0) and len(session.history) == 0
    click(edit, session, 30, 39, PERSON_CUT_TOOL)
    ids = session.person_ids()
    assert session.person_pick is None and cp.person_count(ids) == 2
    assert ids[20, 10] != ids[20, 50] and (ids[2:38, 4:24] == ids[20, 10]).all()
    assert (ids[2:38, 36:56] == ids[20, 50]).all()
    # Merge: click the left person, then the right one.
    click(edit, session, 10, 20, PERSON_MERGE_TOOL)
    click(edit, session, 50, 20, PERSON_MERGE_TOOL)
    assert cp.person_count(session.person_ids()) == 1 and len(session.history) == 2
    session.undo()
    assert cp.person_count(session.person_ids()) == 2
    # A label edit and an undo between person edits: each undo takes back its own map.
    session.relabel(session.labels == HAIR, FACE, "hair to face")
    session.undo()
    assert np.array_equal(session.labels, touching_people()) and cp.person_count(session.person_ids()) == 2


def test_a_person_click_is_not_refused_for_a_label_it_does_not_use(quiet_toasts):
    edit, session = handlers(), session_on(touching_people())
    out = edit.click_in_browser(session, None, 40, 5, PERSON_SPLIT_TOOL, "no such label", 24, *VIEW, None, False, None)
    assert out == {"view": "redrawn"} and cp.person_count(session.person_ids()) == 2


def test_person_clicks_that_do_nothing_say_so(quiet_toasts):
    edit, session = handlers(), session_on(two_people())
    click(edit, session, 30, 1, PERSON_SPLIT_TOOL)
    click(edit, session, 30, 1, PERSON_MERGE_TOOL)
    click(edit, session, 10, 20, PERSON_MERGE_TOOL)
    click(edit, session, 12, 22, PERSON_MERGE_TOOL)  # the same person twice
    click(edit, session, 0, 0, PERSON_CUT_TOOL)
    click(edit, session, 2, 0, PERSON_CUT_TOOL)  # crosses nobody
    click(edit, session, 14, 0, PERSON_CUT_TOOL)
    click(edit, session, 14, 6, PERSON_CUT_TOOL)  # into the hair, not across the person
    assert len(session.history) == 0
    assert [m.split(":")[0].split(" (")[0] for m in quiet_toasts] == [
        "No person at",
        "No person at",
        "Person 1 chosen",
        "Nothing merged",
        "Cut started",
        "The cut crosses no person",
        "Cut started",
        "The cut does not divide person 1",
    ]


def test_the_tools_are_offered_and_outlined(quiet_toasts):
    assert "#show-persons" in KEYS_JS and "`O`" in SHORTCUTS_MD
    edit, session = handlers(), session_on(two_people())
    assert {PERSON_SPLIT_TOOL, PERSON_MERGE_TOOL, PERSON_CUT_TOOL} <= set(TOOLS)
    assert "2 people in this photo" in edit.tool_note(session, PERSON_MERGE_TOOL, 200)
    assert session.person_tool
    edit.tool_note(session, TOOLS[0], 200)
    assert not session.person_tool
    assert edit.show_persons(session, None, True, *VIEW) == {"view": "shown"} and session.show_persons
    persons = session.person_ids()
    picture = draw_persons(np.zeros((40, 64, 3), np.uint8), persons, window((40, 64)), pick=(5, 5))
    assert picture.shape == (40, 64, 3) and picture[2, 10].any() and not picture[39, 63].any()


def test_saved_persons_come_back_pixel_for_pixel_and_old_records_still_load(tmp_path):
    labels = touching_people()
    image = np.full((*labels.shape, 3), 100, np.uint8)
    old = save_correction(tmp_path, image, labels, LIP)
    assert load_persons(tmp_path, old) is None
    session = session_on(labels)
    session.split_person(session.labels == HAIR, "hair apart")
    record = session.save(tmp_path)
    meta = json.loads((tmp_path / "meta" / f"{record}.json").read_text())
    assert meta["persons"] == 2 and meta["extra"]["persons_edited"] is True
    assert meta["extra"]["review"] == "corrected"  # people split on the model's labels: a correction
    assert np.array_equal(load_persons(tmp_path, record), session.person_ids())
    reopened = open_correction(tmp_path, record, max_side=1600)
    assert np.array_equal(reopened.person_ids(), session.person_ids()) and not reopened.unsaved
    assert cp.person_count(open_correction(tmp_path, old, max_side=1600).person_ids()) == 1
    # The same photo opened again (queue, upload) continues from the record, its people included.
    again = session_on(labels)
    again.continue_saved(labels, record, load_persons(tmp_path, record, labels.shape))
    assert np.array_equal(again.person_ids(), session.person_ids()) and not again.unsaved
    assert {m["id"] for m in list_corrections(tmp_path)} == {old, record}
    names = zipfile.ZipFile(export_zip(tmp_path, tmp_path / "out.zip")).namelist()
    assert f"persons/{record}.png" in names and f"persons/{old}.png" not in names
    trash_correction(tmp_path, record)
    assert (tmp_path / "trash" / "persons" / f"{record}.png").is_file()
    assert not (tmp_path / "persons" / f"{record}.png").exists()
    load_correction(tmp_path, old)


def test_a_saved_photo_larger_than_the_working_size_keeps_its_persons(tmp_path):
    labels = touching_people()
    session = session_on(labels)
    big = np.repeat(np.repeat(labels, 2, 0), 2, 1)
    session.source = Source(name="big.png", data=b"", ext="png", size=big.shape, keep_bytes=False)
    session.split_person(labels == HAIR, "hair apart")
    full = session.full_persons()
    assert full.shape == big.shape and np.array_equal(full[::2, ::2], session.person_ids())


def test_bad_person_ids_write_nothing_and_a_killed_save_is_swept(tmp_path):
    labels = two_people()
    image = np.zeros((*labels.shape, 3), np.uint8)
    with pytest.raises(ValueError, match="person ids must be"):
        save_correction(tmp_path, image, labels, LIP, persons=np.zeros((3, 3), np.uint8))
    assert not list_corrections(tmp_path)
    stray = tmp_path / "persons" / "abc-1.png"
    stray.parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / "meta").mkdir()
    stray.write_bytes(cp.encode_persons(np.zeros((4, 4), np.uint8)))
    assert stray in sweep_corrections(tmp_path)


def test_drafts_keep_edited_persons(tmp_path):
    drafts = Drafts(tmp_path)
    session = session_on(touching_people())
    session.source = Source(name="people.png", data=_png(session.image), ext="png", size=(40, 64), keep_bytes=True)
    session.split_person(session.labels == HAIR, "hair apart")
    assert session.has_work and drafts.keep(session)
    restored = drafts.load(session.source.sha256)
    assert np.array_equal(restored.person_ids(), session.person_ids()) and restored.persons_edited


def _png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    root = tmp_path_factory.mktemp("persons")
    torch.manual_seed(0)
    model = build_model("ssfnet_lite", LIP.num_classes)
    save_checkpoint(model, root / "checkpoints" / "tiny", variant="ssfnet_lite", label_set="lip-20")
    settings = app_settings(root)
    with launched_app(settings) as demo:
        yield settings, f"http://127.0.0.1:{settings.port}/", demo


def test_person_tools_save_and_export_through_the_api(app, tmp_path):
    settings, url, _ = app
    client = Client(url, verbose=False, analytics_enabled=False)
    photo = tmp_path / "plain.png"
    Image.fromarray(np.full((64, 96, 3), 150, np.uint8)).save(photo)
    client.predict(handle_file(str(photo)), None, False, False, *VIEW, api_name="/parse")
    for x, y in [(0, 0), (95, 0), (95, 63), (0, 63)]:  # the whole photo background first
        client.predict(x, y, POLYGON_TOOL, "0", 24, *VIEW, api_name="/apply_click")
    client.predict("0", *VIEW, api_name="/close_polygon")
    for left in (5, 60):  # two people: a face each
        for x, y in [(left, 10), (left + 30, 10), (left + 30, 50), (left, 50)]:
            client.predict(x, y, POLYGON_TOOL, str(FACE), 24, *VIEW, api_name="/apply_click")
        client.predict(str(FACE), *VIEW, api_name="/close_polygon")
    client.predict(20, 30, PERSON_MERGE_TOOL, str(FACE), 24, *VIEW, 200, False, api_name="/apply_click")
    client.predict(70, 30, PERSON_MERGE_TOOL, str(FACE), 24, *VIEW, 200, False, api_name="/apply_click")
    client.predict(True, *VIEW, api_name="/show_persons")
    client.predict(api_name="/save")
    (record,) = [m["id"] for m in list_corrections(settings.corrections_dir)]
    persons = load_persons(settings.corrections_dir, record)
    assert persons is not None and cp.person_count(persons) == 1  # merged into one
    archive = client.predict("cihp", False, api_name="/export_corrections")[0]
    assert f"Training/Human_ids/{record}.png" in zipfile.ZipFile(archive).namelist()
