"""Partial-label loss properties and confusion-matrix metrics against hand computations."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ssfnet.labels import IGNORE_INDEX, LIP_20, PERSON_HEAD_3, conversion_lut, eval_mapping
from ssfnet.losses import ParsingLoss, balanced_class_weights, partial_cross_entropy
from ssfnet.metrics import ConfusionMatrix, merged_iou, person_iou

MEMBERSHIP = torch.from_numpy(LIP_20.membership)


def test_partial_equals_ce_for_single_classes():
    torch.manual_seed(0)
    logits = torch.randn(2, 20, 5, 6)
    target = torch.randint(0, 20, (2, 5, 6))
    target[0, 0, 0] = IGNORE_INDEX
    got = partial_cross_entropy(logits, target, MEMBERSHIP)
    torch.testing.assert_close(got, F.cross_entropy(logits, target, ignore_index=IGNORE_INDEX))


def test_partial_coarse_is_log_of_summed_probability():
    torch.manual_seed(1)
    logits = torch.randn(1, 20, 1, 2)
    skin = LIP_20.id_of("skin")
    target = torch.tensor([[[skin, 3]]])
    p = logits.softmax(1)[0, :, 0]
    want = (-torch.log(p[[13, 14, 15, 16, 17], 0].sum()) - torch.log(p[3, 1])) / 2
    torch.testing.assert_close(partial_cross_entropy(logits, target, MEMBERSHIP), want)


def test_partial_coarse_not_above_any_member():
    torch.manual_seed(2)
    logits = torch.randn(1, 20, 3, 3, requires_grad=True)
    coarse = partial_cross_entropy(logits, torch.full((1, 3, 3), LIP_20.id_of("shoes")), MEMBERSHIP)
    for side in (18, 19):
        assert coarse <= partial_cross_entropy(logits, torch.full((1, 3, 3), side), MEMBERSHIP) + 1e-6
    coarse.backward()
    assert logits.grad is not None


def test_partial_all_ignored_is_zero_with_grad():
    logits = torch.randn(1, 20, 2, 2, requires_grad=True)
    loss = partial_cross_entropy(logits, torch.full((1, 2, 2), IGNORE_INDEX), MEMBERSHIP)
    assert loss.item() == 0.0
    loss.backward()


def test_parsing_loss_weights_and_order():
    target = torch.randint(0, 20, (2, 4, 4))
    good = F.one_hot(target, 20).permute(0, 3, 1, 2).float() * 10
    bad = torch.roll(good, 1, dims=1)
    loss = ParsingLoss(LIP_20)
    g, parts = loss({"out": good, "aux1": good, "aux2": good}, target)
    b, _ = loss({"out": bad, "aux1": bad, "aux2": bad}, target)
    assert g < b and set(parts) == {"out", "aux1", "aux2"}
    ce = F.cross_entropy(bad, target)
    torch.testing.assert_close(b, (0.6 + 0.5 + 0.4) * ce)
    only_aux2, parts = loss({"out": bad, "aux2": good}, target)  # DeepLab has no aux1
    assert set(parts) == {"out", "aux2"}
    with pytest.raises(ValueError):
        loss({"other": bad}, target)


def test_confusion_matrix_by_hand():
    gt = np.array([[0, 0, 1, 1], [2, 2, 2, IGNORE_INDEX]])
    pred = np.array([[0, 1, 1, 1], [2, 0, 2, 1]])
    cm = ConfusionMatrix(3)
    cm.update(pred, gt)
    # rows = gt, cols = pred
    assert cm.matrix.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 2]]
    r = cm.compute()
    iou = [1 / (2 + 2 - 1), 2 / (2 + 3 - 2), 2 / (3 + 2 - 2)]
    np.testing.assert_allclose(r["iou"], np.array(iou) * 100)
    assert r["miou"] == pytest.approx(np.mean(iou) * 100)
    assert r["pixel_acc"] == pytest.approx(5 / 7 * 100)


def test_perfect_prediction_scores_100():
    gt = np.random.default_rng(0).integers(0, 5, (10, 10))
    cm = ConfusionMatrix(5)
    cm.update(gt, gt)
    r = cm.compute()
    assert r["miou"] == 100 and r["pixel_acc"] == 100


def test_a_class_absent_from_the_ground_truth_counts_in_miou_not_in_miou_present():
    gt = np.zeros((4, 4), dtype=np.int64)
    gt[:2] = 1  # classes 0 and 1 occur; class 2 never does
    pred = gt.copy()
    pred[0, 0] = 2  # one stray pixel of the absent class
    cm = ConfusionMatrix(3)
    cm.update(pred, gt)
    r = cm.compute()
    assert r["iou"][2] == 0
    assert r["miou"] == pytest.approx((100 + 7 / 8 * 100 + 0) / 3)
    assert r["miou_present"] == pytest.approx((100 + 7 / 8 * 100) / 2)


def test_cross_set_mapping():
    m = eval_mapping("lip-20", "fashion-17")
    cm = ConfusionMatrix(17, mapping=m)
    pred = np.array([[14, 18, 3]])  # left-arm, left-shoe, glove
    gt = np.array([[16, 11, 13]])  # skin, shoes, bag (bag not scored)
    cm.update(pred, gt)
    r = cm.compute()
    assert r["iou"][16] == 100 and r["iou"][11] == 100
    assert cm.matrix.sum() == 2
    assert r["miou"] == 100


def test_coarse_ground_truth_accepts_any_member():
    cm = ConfusionMatrix(20, label_set=LIP_20)
    skin = LIP_20.id_of("skin")
    cm.update(np.array([[14, 5]]), np.array([[skin, skin]]))
    assert cm.matrix[14, 14] == 1 and cm.matrix[13, 5] == 1


def test_partial_loss_on_a_pascal_part_sums_its_lip_classes():
    torch.manual_seed(3)
    logits = torch.randn(1, 20, 1, 1)
    head = LIP_20.id_of("head")
    p = logits.softmax(1)[0, :, 0, 0]
    want = -torch.log(p[[1, 2, 4, 13]].sum())  # hat, hair, sunglasses, face
    torch.testing.assert_close(partial_cross_entropy(logits, torch.full((1, 1, 1), head), MEMBERSHIP), want)


def test_merged_and_person_iou_by_hand():
    # rows = gt (background, head, body), cols = prediction
    matrix = np.array([[50, 2, 8], [1, 10, 4], [5, 3, 30]])
    person_tp = 10 + 4 + 3 + 30
    assert person_iou(matrix) == pytest.approx(100 * person_tp / (person_tp + 1 + 5 + 2 + 8))
    assert merged_iou(matrix, [1]) == pytest.approx(100 * 10 / (15 + 15 - 10))
    assert merged_iou(matrix, [0, 1, 2]) == pytest.approx(100.0)
    assert person_iou(np.zeros((3, 3), np.int64)) is None


def test_person_head_keys_only_for_person_head_3():
    m = eval_mapping("lip-20", "person-head-3")
    cm = ConfusionMatrix(3, mapping=m, label_set=PERSON_HEAD_3)
    # Ground truth from PASCAL parts: background, head, head, torso, lower-leg, lower-leg.
    gt = conversion_lut("pascal-person-part-7", "person-head-3")[np.array([[0, 1, 1, 2, 6, 6]])]
    # Prediction: background, hair, upper-clothes (head missed), coat, left-shoe, background.
    cm.update(np.array([[0, 2, 5, 7, 18, 0]]), gt)
    r = cm.compute()
    assert r["head_iou"] == pytest.approx(50.0) and r["iou"][1] == r["head_iou"]
    assert r["person_iou"] == pytest.approx(100 * 4 / 5)  # one person pixel predicted background
    assert r["miou"] == pytest.approx(np.mean([50.0, 50.0, 100 * 2 / 4]))
    plain = ConfusionMatrix(3)
    plain.update(np.array([[0, 1, 2]]), np.array([[0, 1, 2]]))
    assert "person_iou" not in plain.compute() and "head_iou" not in plain.compute()


def test_value_weights_give_the_weighted_mean_of_per_pixel_losses():
    torch.manual_seed(2)
    logits = torch.randn(2, 20, 4, 5)
    target = torch.randint(0, 20, (2, 4, 5))
    target[0, 0, :3] = LIP_20.id_of("shoes")
    target[1, 1, 1] = IGNORE_INDEX
    weights = torch.rand(LIP_20.num_ids) + 0.1
    per_pixel = [
        (
            float(weights[v]),
            float(
                partial_cross_entropy(
                    logits[b : b + 1, :, i : i + 1, j : j + 1], target[b : b + 1, i : i + 1, j : j + 1], MEMBERSHIP
                )
            ),
        )
        for b in range(2)
        for i in range(4)
        for j in range(5)
        if (v := int(target[b, i, j])) != IGNORE_INDEX
    ]
    want = sum(w * loss for w, loss in per_pixel) / sum(w for w, _ in per_pixel)
    got = partial_cross_entropy(logits, target, MEMBERSHIP, value_weights=weights)
    assert float(got) == pytest.approx(want, rel=1e-5)
    ones = partial_cross_entropy(logits, target, MEMBERSHIP, value_weights=torch.ones(LIP_20.num_ids))
    torch.testing.assert_close(ones, partial_cross_entropy(logits, target, MEMBERSHIP))
    with pytest.raises(ValueError, match="value_weights"):
        partial_cross_entropy(logits, target, MEMBERSHIP, value_weights=torch.ones(20))


def test_balanced_weights_median_frequency_with_power_and_limits():
    freq = np.array([0.5, 0.25, 0.05, 0.0, 0.0001])
    weights = balanced_class_weights(freq, power=1.0, limits=(0.1, 100.0))
    median = np.median(freq[freq > 0])
    np.testing.assert_allclose(weights[[0, 1, 2]].numpy(), median / freq[[0, 1, 2]], rtol=1e-6)
    assert float(weights[3]) == 100.0  # never seen: the largest weight
    assert float(balanced_class_weights(freq, power=1.0)[4]) == 10.0  # clipped at the default limit
    np.testing.assert_allclose(balanced_class_weights(freq, power=0.0, limits=(0.0, 1.0))[:3].numpy(), 1.0)
    sqrt = balanced_class_weights(freq, power=0.5, limits=(0.0, 1e9))
    np.testing.assert_allclose(sqrt[:3].numpy() ** 2, weights[:3].numpy(), rtol=1e-5)
    with pytest.raises(ValueError):
        balanced_class_weights(np.array([0.5, -1.0]))


def test_label_frequencies_mix_sources_by_their_weights():
    from train.balance import label_frequencies

    a = [(None, np.array([[0, 1], [1, 1]], dtype=np.uint8))] * 3  # class 1: 3/4 of a's pixels
    b = [(None, np.array([[2, 2], [255, 0]], dtype=np.uint8))] * 5  # 2/3 class 2, 1/3 class 0; 255 ignored
    shares = label_frequencies([(a, 1.0), (b, 3.0)], num_values=3)
    np.testing.assert_allclose(shares, [(0.25 + 3 / 3) / 4, 0.75 / 4, 3 * (2 / 3) / 4], rtol=1e-6)
    assert shares.sum() == pytest.approx(1.0)
