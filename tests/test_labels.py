"""Label sets, coarse labels, conversions and evaluation mappings."""

import numpy as np
import pytest

from ssfnet.labels import (
    CCP_59,
    CIHP_20,
    FASHION_17,
    IGNORE_INDEX,
    LABEL_SETS,
    LIP_20,
    PASCAL_PERSON_PART_7,
    PERSON_HEAD_3,
    conversion_lut,
    eval_mapping,
    get_label_set,
)
from ssfnet.metrics import ConfusionMatrix

# The LIP-20 classes each PASCAL-Person-Part part may hold, as documented in ssfnet.labels.
PART_SETS = {
    "head": {"hat", "hair", "sunglasses", "face"},
    "torso": {"upper-clothes", "coat", "dress", "jumpsuits", "scarf", "pants", "skirt", "face"},
    "upper-arm": {"left-arm", "right-arm", "upper-clothes", "coat", "dress", "jumpsuits", "scarf"},
    "lower-arm": {"left-arm", "right-arm", "glove", "upper-clothes", "coat", "dress", "jumpsuits"},
    "upper-leg": {"pants", "skirt", "dress", "coat", "jumpsuits", "upper-clothes", "socks", "left-leg", "right-leg"},
    "lower-leg": {
        "pants", "skirt", "dress", "coat", "jumpsuits", "socks", "left-leg", "right-leg", "left-shoe", "right-shoe",
    },
}  # fmt: skip


def test_sets_have_expected_sizes():
    sizes = {"lip-20": 20, "cihp-20": 20, "atr-18": 18, "pascal-person-part-7": 7, "ppss-8": 8,
             "ccp-59": 59, "fashion-17": 17, "person-head-3": 3}  # fmt: skip
    for name, k in sizes.items():
        assert get_label_set(name).num_classes == k
    assert FASHION_17.names[:4] == ("background", "hat", "hair", "sunglasses")
    assert FASHION_17.names[-1] == "skin" and FASHION_17.names[16] == "skin"


def test_lip_palette_matches_viton_parses():
    # The usual LIP palette (VITON's PNGs store it with 255 written as 254).
    assert LIP_20.palette[2] == (255, 0, 0) and LIP_20.palette[13] == (0, 0, 255)


def test_flip_lut_swaps_sides_and_keeps_coarse():
    lut = LIP_20.flip_lut
    assert lut[14] == 15 and lut[15] == 14 and lut[18] == 19
    assert lut[13] == 13 and lut[LIP_20.id_of("skin")] == LIP_20.id_of("skin")
    assert lut[IGNORE_INDEX] == IGNORE_INDEX
    for name in LABEL_SETS.values():
        assert (name.flip_lut[name.flip_lut] == np.arange(256)).all(), "flipping twice is the identity"


def test_coarse_membership():
    skin = LIP_20.id_of("skin")
    assert LIP_20.members(skin) == (13, 14, 15, 16, 17)
    assert LIP_20.membership.shape == (30, 20) and LIP_20.num_ids == 30
    assert LIP_20.membership[5].sum() == 1 and LIP_20.membership[5, 5]
    with pytest.raises(ValueError):
        LIP_20.members(40)


def test_ccp_to_lip_conversion():
    lut = conversion_lut("ccp-59", "lip-20")
    c = CCP_59.id_of
    assert lut[c("skin")] == LIP_20.id_of("skin")
    assert lut[c("sneakers")] == LIP_20.id_of("shoes")
    assert lut[c("jeans")] == LIP_20.id_of("pants")
    assert lut[c("romper")] == LIP_20.id_of("jumpsuits")
    assert lut[c("gloves")] == LIP_20.id_of("glove")
    assert lut[c("tights")] == LIP_20.id_of("socks")
    assert lut[c("bag")] == 0 and lut[c("purse")] == 0
    assert lut[c("belt")] == IGNORE_INDEX and lut[c("necklace")] == IGNORE_INDEX
    assert lut[c("glasses")] == LIP_20.id_of("sunglasses")


def test_ccp_to_fashion_covers_every_tag():
    lut = conversion_lut("ccp-59", "fashion-17")
    assert (lut[:59] < 17).all()
    assert lut[CCP_59.id_of("cardigan")] == FASHION_17.id_of("coat")
    assert lut[CCP_59.id_of("tie")] == FASHION_17.id_of("scarf")


def test_eval_mapping_lip_to_ccp_coarse():
    m = eval_mapping("lip-20", "fashion-17")
    f = FASHION_17.id_of
    assert m.pred_lut[LIP_20.id_of("left-arm")] == f("skin")
    assert m.pred_lut[LIP_20.id_of("right-shoe")] == f("shoes")
    assert m.pred_lut[LIP_20.id_of("glove")] == f("accessories")
    assert m.gt_lut[f("bag")] == IGNORE_INDEX and m.gt_lut[f("skin")] == f("skin")
    assert f("belt") not in m.scored_classes and len(m.scored_classes) == 14
    with pytest.raises(KeyError):
        eval_mapping("atr-18", "fashion-17")


def test_validate_and_colourise():
    labels = np.array([[0, 5], [23, 255]], dtype=np.uint8)
    LIP_20.validate(labels)
    LIP_20.validate(np.array([[24, 29]], dtype=np.uint8))  # PASCAL part labels
    with pytest.raises(ValueError, match="30"):
        LIP_20.validate(np.array([[30]], dtype=np.uint8))
    rgb = LIP_20.colourise(labels)
    assert rgb.shape == (2, 2, 3) and tuple(rgb[0, 1]) == LIP_20.palette[5]
    assert tuple(rgb[1, 1]) == (255, 255, 255)


def test_pascal_parts_are_coarse_lip_labels_after_the_existing_ones():
    # Existing ids keep their meaning: stored corrections and checkpoints rely on them.
    assert [LIP_20.id_of(n) for n in ("skin", "shoes", "arms", "legs")] == [20, 21, 22, 23]
    assert LIP_20.all_names[24:] == PASCAL_PERSON_PART_7.names[1:]
    lut = conversion_lut("pascal-person-part-7", "lip-20")
    assert lut[0] == LIP_20.id_of("background")
    for part, expected in PART_SETS.items():
        value = int(lut[PASCAL_PERSON_PART_7.id_of(part)])
        assert value == LIP_20.id_of(part) and value >= LIP_20.num_classes
        assert {LIP_20.names[c] for c in LIP_20.members(value)} == expected, part
        assert "background" not in expected
    assert (lut[7:] == IGNORE_INDEX).all()


def test_part_labels_are_mirror_symmetric_and_distinctly_coloured():
    for part in PART_SETS:
        value = LIP_20.id_of(part)
        assert LIP_20.flip_lut[value] == value
        members = set(LIP_20.members(value))
        assert {int(LIP_20.flip_lut[c]) for c in members} == members
    # Every member set differs, so flipping cannot turn one coarse label into another.
    assert len({frozenset(members) for _, members in LIP_20.coarse}) == len(LIP_20.coarse)
    assert len(set(LIP_20.all_colours) | {(255, 255, 255)}) == LIP_20.num_ids + 1


def test_lip_fashion_conversion_ignores_part_labels():
    lut = conversion_lut("lip-20", "fashion-17")
    assert all(lut[LIP_20.id_of(part)] == IGNORE_INDEX for part in PART_SETS)


def test_person_head_conversions_and_eval_mapping():
    head, body = PERSON_HEAD_3.id_of("head"), PERSON_HEAD_3.id_of("body")
    pascal = conversion_lut("pascal-person-part-7", "person-head-3")
    assert pascal[:7].tolist() == [0, head, body, body, body, body, body]
    assert pascal[IGNORE_INDEX] == IGNORE_INDEX
    m = eval_mapping("lip-20", "person-head-3")
    assert m.scored_classes == (0, 1, 2) and m.gt_lut[:3].tolist() == [0, 1, 2]
    heads = {LIP_20.id_of(n) for n in ("hat", "hair", "sunglasses", "face")}
    for c in range(LIP_20.num_classes):
        assert m.pred_lut[c] == (0 if c == 0 else head if c in heads else body), LIP_20.names[c]
    # Training and scoring agree: a LIP-20 model learns PASCAL's head as exactly the classes scored head.
    assert set(LIP_20.members(LIP_20.id_of("head"))) == heads
    # LIP-20 ground truth: PASCAL's head region is head even where a scarf may be; skin is face or limb.
    lip = conversion_lut("lip-20", "person-head-3")
    assert lip[LIP_20.id_of("head")] == head and lip[LIP_20.id_of("lower-leg")] == body
    assert lip[LIP_20.id_of("shoes")] == body and lip[LIP_20.id_of("skin")] == IGNORE_INDEX
    # Through LIP-20 or directly, a PASCAL map lands on the same person-head values.
    np.testing.assert_array_equal(lip[conversion_lut("pascal-person-part-7", "lip-20")][:7], pascal[:7])
    # A body-part model is scored on the same person / head scale as the LIP-20 default.
    parts = eval_mapping("pascal-person-part-7", "person-head-3")
    assert parts.scored_classes == (0, 1, 2) and parts.pred_lut[:7].tolist() == pascal[:7].tolist()


def test_cihp_names_id_10_torso_skin_and_lip_20_ignores_it():
    assert get_label_set("cihp-20") is CIHP_20 and CIHP_20.num_ids == 20  # classes only, no coarse labels
    torso_skin = CIHP_20.id_of("torso-skin")
    assert torso_skin == 10 and LIP_20.names[10] == "jumpsuits"
    assert [n for i, n in enumerate(CIHP_20.names) if i != 10] == [n for i, n in enumerate(LIP_20.names) if i != 10]
    assert CIHP_20.palette == LIP_20.palette and CIHP_20.flip_pairs == LIP_20.flip_pairs
    # CIHP loaded as LIP-20 (training or scoring a LIP-20 model): torso-skin has no class, so ignore.
    lut = conversion_lut("cihp-20", "lip-20")
    assert lut[:20].tolist() == [IGNORE_INDEX if c == torso_skin else c for c in range(20)]
    assert lut[20] == IGNORE_INDEX and lut[IGNORE_INDEX] == IGNORE_INDEX


def test_eval_mapping_lip_on_cihp_leaves_torso_skin_unscored_and_jumpsuits_wrong():
    m = eval_mapping("lip-20", "cihp-20")
    torso_skin, upper = CIHP_20.id_of("torso-skin"), CIHP_20.id_of("upper-clothes")
    assert m.target is CIHP_20 and m.pred_lut[:20].tolist() == list(range(20))
    assert m.gt_lut[torso_skin] == IGNORE_INDEX and m.gt_lut[upper] == upper
    assert torso_skin not in m.scored_classes and len(m.scored_classes) == 19
    cm = ConfusionMatrix(CIHP_20.num_classes, mapping=m, label_set=CIHP_20)
    jumpsuits = LIP_20.id_of("jumpsuits")
    # Ground truth: two torso-skin pixels (not scored whatever is predicted) and two upper-clothes
    # pixels, one of them predicted as jumpsuits, a class CIHP has not: a miss.
    cm.update(np.array([[upper, jumpsuits, jumpsuits, upper]]), np.array([[torso_skin, torso_skin, upper, upper]]))
    assert cm.matrix.sum() == 2 and cm.matrix[upper, upper] == 1 and cm.matrix[upper, torso_skin] == 1
    assert cm.compute()["iou"][upper] == 50.0
    # Without --gt-label-set the same ground truth, loaded as LIP-20, scores upper-clothes alike.
    plain = ConfusionMatrix(LIP_20.num_classes, label_set=LIP_20)
    gt = conversion_lut("cihp-20", "lip-20")[np.array([[torso_skin, torso_skin, upper, upper]])]
    plain.update(np.array([[upper, jumpsuits, jumpsuits, upper]]), gt)
    assert plain.compute()["iou"][upper] == 50.0
