"""The click-cost measurement's simulated annotator (experiments/click_cost.py) on a tiny synthetic photo."""

from __future__ import annotations

import numpy as np

from experiments.click_cost import DOT_TOOL, POLYGON, SUPERPIXEL_TOOL, fix, iou, new_session, wrong_regions
from ssfnet.labels import IGNORE_INDEX, get_label_set

LIP = get_label_set("lip-20")
COAT, ARM = LIP.id_of("upper-clothes"), LIP.id_of("left-arm")


def case():
    """A 48 x 64 photo: a red shirt (truth) whose left part the proposal calls arm; a grey background."""
    image = np.full((48, 64, 3), 128, np.uint8)
    truth = np.zeros((48, 64), np.uint8)
    truth[10:40, 10:50] = COAT
    image[10:40, 10:50] = (200, 20, 20)
    proposal = truth.copy()
    proposal[10:40, 10:22] = ARM  # missed: 30 x 12 pixels of shirt
    proposal[0:8, 0:8] = COAT  # wrongly given: an 8 x 8 corner
    truth[45:, :] = IGNORE_INDEX  # unlabelled rows count for nothing
    return image, truth, proposal


def test_the_largest_wrong_region_and_its_centre():
    _, truth, proposal = case()
    regions = wrong_regions(proposal, truth, COAT)
    assert [r.mask.sum() for r in regions] == [360, 64]
    missed, extra = regions
    assert missed.label == COAT and missed.mask[10:40, 10:22].all() and missed.point[0] in range(14, 18)
    assert extra.label == 0 and extra.point in {(3, 3), (3, 4), (4, 3), (4, 4)}
    assert iou(proposal, truth, COAT) == (30 * 28) / (30 * 40 + 64)


def test_each_tool_fixes_the_shirt_in_the_clicks_it_needs():
    image, truth, proposal = case()
    outcomes = {
        tool: fix(new_session(image, proposal, LIP), truth, COAT, tool, target=0.999, max_steps=50, patience=2)
        for tool in ("Relabel region", "Flood fill (similar colour)", SUPERPIXEL_TOOL, POLYGON, DOT_TOOL)
    }
    # The arm region is one connected label and one flat colour: one click each, then the corner.
    assert outcomes["Relabel region"].clicks == 2 and outcomes["Relabel region"].iou_after == 1.0
    assert outcomes["Flood fill (similar colour)"].clicks == 2
    # The polygon: 4 corners and the close for the rectangle, then the corner's square (4 + 1).
    assert outcomes[POLYGON].clicks == 10 and outcomes[POLYGON].iou_after == 1.0
    # A dot is 1/40 of 64 px wide (2 px): many clicks for the same region.
    assert outcomes[DOT_TOOL].clicks > 20
    superpixel = outcomes[SUPERPIXEL_TOOL]
    assert superpixel.iou_after > iou(proposal, truth, COAT) and superpixel.setup_seconds > 0
    for out in outcomes.values():
        assert out.iou_before < out.iou_after <= 1.0 and out.seconds >= 0


def test_a_step_that_does_not_help_is_undone_and_counted():
    image, truth, proposal = case()
    proposal[0:8, 0:8] = 0
    truth[10:40, 50:64] = ARM  # a real arm right of the shirt ...
    proposal[10:40, 10:22] = COAT
    proposal[10:40, 40:64] = ARM  # ... that the proposal lets run into the shirt's right part
    session = new_session(image, proposal, LIP)
    before = iou(proposal, truth, COAT)
    # Relabelling the arm region takes the real arm too: the IoU falls, the click is undone.
    out = fix(session, truth, COAT, "Relabel region", target=0.999, max_steps=10, patience=1)
    assert (out.clicks, out.steps, out.iou_after) == (2, 1, before) and not len(session.history)
    assert np.array_equal(session.labels, proposal)
    # The polygon does it.
    out = fix(new_session(image, proposal, LIP), truth, COAT, POLYGON, target=0.999, max_steps=10, patience=1)
    assert out.iou_after == 1.0 and out.clicks == 5
