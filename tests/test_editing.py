"""The app's editing logic without Gradio: stroke snapping, click tools, edge snapping, history."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from demo import editing
from demo.session import Session, Source
from ssfnet.labels import IGNORE_INDEX, get_label_set

LIP = get_label_set("lip-20")
HAIR, HAT, BACKGROUND, UPPER = LIP.id_of("hair"), LIP.id_of("hat"), LIP.id_of("background"), LIP.id_of("upper-clothes")
SKIN, SHOES = LIP.id_of("skin"), LIP.id_of("shoes")


def colour(label_id: int) -> tuple[int, int, int]:
    return tuple(int(c) for c in LIP.colour_lut()[label_id])


def blank_layer(h: int = 64, w: int = 64) -> np.ndarray:
    return np.zeros((h, w, 4), dtype=np.uint8)


def test_paint_ids_cover_classes_coarse_labels_and_ignore_with_distinct_colours():
    ids, colours = editing.paint_ids(LIP)
    assert list(ids) == [*range(LIP.num_ids), IGNORE_INDEX]
    assert len({tuple(c) for c in colours.tolist()}) == len(ids)
    assert tuple(colours[-1]) == (255, 255, 255)


def test_antialiased_stroke_snaps_to_its_own_colour_not_a_darker_class():
    # cv2 antialiasing on RGBA scales colour and alpha together, so the fringe of a
    # red (hair) stroke holds dark reds, e.g. (128, 0, 0) = hat, at partial alpha.
    layer = blank_layer()
    cv2.line(layer, (8, 10), (56, 50), (*colour(HAIR), 255), thickness=9, lineType=cv2.LINE_AA)
    fringe = (layer[..., 3] > 0) & (layer[..., 3] < 255)
    assert fringe.any(), "the stroke should have an antialiased fringe"
    ids, colours = editing.paint_ids(LIP)
    rgb = layer[layer[..., 3] >= editing.ALPHA_THRESHOLD][:, :3].astype(int)
    naive = ids[((rgb[:, None] - colours[None].astype(int)) ** 2).sum(-1).argmin(1)]
    assert HAT in naive, "a plain nearest-colour read would mislabel the fringe: the case this test is about"
    painted, ids = editing.snap_strokes(layer, LIP)
    np.testing.assert_array_equal(painted, layer[..., 3] >= editing.ALPHA_THRESHOLD)
    assert set(np.unique(ids[painted])) == {HAIR}


def test_seam_between_two_strokes_never_becomes_a_third_label():
    # Red (hair) meets black (background); the blended seam is exactly hat's colour.
    layer = blank_layer()
    layer[8:56, 8:32] = (*colour(HAIR), 255)
    layer[8:56, 33:56] = (*colour(BACKGROUND), 255)
    layer[8:56, 32] = (*colour(HAT), 255)
    assert colour(HAT) == (128, 0, 0)
    painted, ids = editing.snap_strokes(layer, LIP)
    assert set(np.unique(ids[painted])) == {HAIR, BACKGROUND}
    assert (ids[8:56, 8:32] == HAIR).all() and (ids[8:56, 33:56] == BACKGROUND).all()


def test_seam_blend_at_partial_alpha_snaps_to_nearest_used_colour():
    layer = blank_layer()
    layer[10:50, 10:30] = (*colour(UPPER), 255)
    layer[10:50, 31:50] = (*colour(HAIR), 255)
    mix = (np.array(colour(UPPER)) * 0.6 + np.array(colour(HAIR)) * 0.4).astype(np.uint8)
    layer[10:50, 30] = (*mix, 200)
    _, ids = editing.snap_strokes(layer, LIP)
    assert (ids[10:50, 30] == UPPER).all()


def test_faint_pixels_are_not_painted():
    layer = blank_layer()
    layer[20:40, 20:40] = (*colour(HAIR), editing.ALPHA_THRESHOLD - 1)
    painted, _ = editing.snap_strokes(layer, LIP)
    assert not painted.any()
    labels = np.full((64, 64), UPPER, dtype=np.uint8)
    np.testing.assert_array_equal(editing.apply_strokes(labels, layer, LIP), labels)


def test_coarse_labels_and_ignore_are_paintable():
    layer = blank_layer()
    layer[5:20, 5:20] = (*colour(SKIN), 255)
    layer[30:45, 30:45] = (*colour(SHOES), 255)
    layer[50:60, 5:15] = (255, 255, 255, 255)
    labels = np.zeros((64, 64), dtype=np.uint8)
    out = editing.apply_strokes(labels, layer, LIP)
    assert (out[5:20, 5:20] == SKIN).all() and LIP.members(SKIN) == (13, 14, 15, 16, 17)
    assert (out[30:45, 30:45] == SHOES).all() and LIP.members(SHOES) == (18, 19)
    assert (out[50:60, 5:15] == IGNORE_INDEX).all()
    assert (out[0:5] == 0).all()
    LIP.validate(out)


def test_thin_strokes_without_an_inside_still_use_their_exact_colour():
    layer = blank_layer()
    layer[30, 5:60] = (*colour(HAT), 255)
    painted, ids = editing.snap_strokes(layer, LIP)
    assert painted.sum() == 55 and (ids[painted] == HAT).all()


def test_off_palette_colour_snaps_to_the_nearest_palette_colour():
    layer = blank_layer()
    layer[10:30, 10:30] = (250, 5, 3, 255)  # e.g. a colour-managed red
    _, ids = editing.snap_strokes(layer, LIP)
    assert (ids[10:30, 10:30] == HAIR).all()


def test_snap_rejects_layers_without_alpha():
    with pytest.raises(ValueError, match="RGBA"):
        editing.snap_strokes(np.zeros((8, 8, 3), np.uint8), LIP)
    with pytest.raises(ValueError, match="sizes differ"):
        editing.apply_strokes(np.zeros((8, 8), np.uint8), blank_layer(9, 8), LIP)


def test_connected_region_is_the_clicked_4_connected_blob_only():
    labels = np.zeros((20, 20), dtype=np.uint8)
    labels[2:6, 2:6] = HAIR
    labels[10:14, 10:14] = HAIR
    labels[6, 6] = HAIR  # touches the first blob only diagonally
    mask = editing.connected_region(labels, 3, 3)
    assert mask.sum() == 16 and mask[2:6, 2:6].all() and not mask[6, 6] and not mask[10:14, 10:14].any()
    assert editing.connected_region(labels, 0, 0).sum() == 400 - 33
    with pytest.raises(ValueError, match="outside"):
        editing.connected_region(labels, 20, 0)


def test_colour_region_follows_similar_colours_from_the_seed():
    image = np.zeros((30, 30, 3), dtype=np.uint8)
    image[:, :15] = (200, 40, 40)
    image[:, 15:] = (40, 40, 200)
    image[5:10, 5:10] = (210, 50, 30)  # close to the red half
    mask = editing.colour_region(image, 2, 2, tolerance=0)
    assert mask.sum() == 15 * 30 - 25
    mask = editing.colour_region(image, 2, 2, tolerance=12)
    assert mask.sum() == 15 * 30 and not mask[:, 15:].any()
    assert editing.colour_region(image, 2, 2, tolerance=255).all()


def test_colour_region_stays_within_the_clicked_label():
    image = np.zeros((20, 20, 3), dtype=np.uint8)  # one black garment ...
    labels = np.zeros((20, 20), dtype=np.uint8)
    labels[:, 10:] = 5  # ... labelled as two: skirt (0) and coat (5)
    mask = editing.colour_region(image, 2, 2, tolerance=0, labels=labels)
    assert mask[:, :10].all() and not mask[:, 10:].any()
    assert editing.colour_region(image, 2, 2, tolerance=0).all()  # without labels: all black pixels


def square_scene(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    image = np.full((96, 96, 3), 40, dtype=np.uint8)
    image[30:70, 25:65] = (220, 190, 60)
    noise = rng.integers(-12, 13, image.shape)
    truth = np.zeros((96, 96), dtype=bool)
    truth[30:70, 25:65] = True
    return np.clip(image.astype(int) + noise, 0, 255).astype(np.uint8), truth


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return (a & b).sum() / (a | b).sum()


def test_snap_to_edges_fits_a_rough_stroke_to_the_object():
    image, truth = square_scene(np.random.default_rng(0))
    stroke = np.zeros_like(truth)
    stroke[26:66, 30:72] = True  # shifted and too wide: spills over two edges, misses another
    snapped = editing.snap_to_edges(image, stroke)
    assert iou(stroke, truth) < 0.75
    assert iou(snapped, truth) > 0.9


def test_snap_to_edges_keeps_a_stroke_it_cannot_improve():
    image = np.zeros((20, 20, 3), dtype=np.uint8)
    assert not editing.snap_to_edges(image, np.zeros((20, 20), bool)).any()
    everything = np.ones((20, 20), bool)
    np.testing.assert_array_equal(editing.snap_to_edges(image, everything), everything)


def test_apply_strokes_snapped_labels_the_object():
    image, truth = square_scene(np.random.default_rng(1))
    layer = np.zeros((96, 96, 4), np.uint8)
    layer[28:68, 30:70] = (*colour(UPPER), 255)
    labels = np.zeros((96, 96), np.uint8)
    out = editing.apply_strokes_snapped(labels, image, layer, LIP)
    assert set(np.unique(out)) <= {0, UPPER}
    assert iou(out == UPPER, truth) > 0.9


def test_history_undo_redo_and_a_new_edit_clears_redo():
    history = editing.History()
    a = np.zeros((4, 5), np.uint8)
    b = a.copy()
    b[1, 2] = HAIR
    c = b.copy()
    c[3, :] = SKIN
    assert history.record(a, a) is None and len(history) == 0
    assert len(history.record(a, b, "one")) == 1
    assert len(history.record(b, c, "two")) == 5
    back, edit = history.undo(c)
    np.testing.assert_array_equal(back, b)
    assert edit.what == "two" and history.can_redo
    back, _ = history.undo(back)
    np.testing.assert_array_equal(back, a)
    assert history.undo(back) == (back, None)
    forward, _ = history.redo(back)
    np.testing.assert_array_equal(forward, b)
    d = forward.copy()
    d[0, 0] = UPPER
    history.record(forward, d)
    assert not history.can_redo and history.redo(d) == (d, None)


def test_history_forgets_the_oldest_edits_beyond_its_bounds():
    history = editing.History(max_edits=3)
    maps = [np.full((3, 3), v, np.uint8) for v in range(6)]
    for before, after in zip(maps, maps[1:]):
        history.record(before, after)
    assert len(history) == 3
    labels = maps[-1]
    for _ in range(3):
        labels, _ = history.undo(labels)
    np.testing.assert_array_equal(labels, maps[2])
    small = editing.History(max_bytes=1)
    small.record(maps[0], maps[1])
    small.record(maps[1], maps[2])
    assert len(small) == 1  # the newest edit is always kept


def make_session(labels: np.ndarray) -> Session:
    h, w = labels.shape
    image = np.full((h, w, 3), 128, np.uint8)
    source = Source(name="x.png", data=b"", ext="png", size=(h, w), keep_bytes=False)
    return Session.start(image, source, labels, LIP)


def test_session_counts_changes_from_the_proposal_and_resets_undoably():
    proposal = np.zeros((10, 10), np.uint8)
    session = make_session(proposal)
    new = session.labels.copy()
    new[:2] = HAIR
    assert session.edit(new, "paint") == 20 and session.changed_pixels == 20
    new = session.labels.copy()
    new[:2] = BACKGROUND  # painting the proposal back is an edit too, and the count drops
    assert session.edit(new) == 20 and session.changed_pixels == 0
    assert session.undo() == "" and session.changed_pixels == 20
    assert session.reset() == 20 and session.changed_pixels == 0
    assert session.undo() == "reset to the proposal" and session.changed_pixels == 20
    assert session.redo() == "reset to the proposal" and session.changed_pixels == 0
    assert session.redo() is None


def test_session_refuses_values_outside_the_label_set():
    session = make_session(np.zeros((4, 4), np.uint8))
    bad = session.labels.copy()
    bad[0, 0] = LIP.num_ids  # one past the last coarse label
    with pytest.raises(ValueError, match="outside"):
        session.edit(bad)
    assert session.changed_pixels == 0 and len(session.history) == 0


def test_working_size_and_nearest_resizing_keep_label_values():
    assert editing.working_size(3200, 2400, 1600) == (1600, 1200)
    assert editing.working_size(800, 600, 1600) == (800, 600)
    labels = np.random.default_rng(0).choice([0, HAIR, SKIN, IGNORE_INDEX], size=(40, 30)).astype(np.uint8)
    big = editing.resize_labels(labels, (80, 60))
    assert set(np.unique(big)) == set(np.unique(labels))
    np.testing.assert_array_equal(editing.resize_labels(big, (40, 30)), labels)
