"""Evaluation: perfect and known-wrong predictors, cross-set mapping, the CLI's JSON and plot."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from helpers import TINY
from PIL import Image

from ssfnet import build_model, get_label_set, save_checkpoint
from ssfnet.build import model_options
from ssfnet.labels import conversion_lut, eval_mapping
from train.evaluate import (
    evaluate_args,
    evaluate_dataset,
    held_out_ids,
    main,
    matrix_score,
    paired_bootstrap,
    parse_args,
    pooled_paired_bootstrap,
)
from train.plots import plot_results

LIP = get_label_set("lip-20")
FASHION = get_label_set("fashion-17")


class Pairs:
    """An in-memory dataset: ``load(i)`` returns the i-th (image, label) pair."""

    def __init__(self, pairs: list[tuple[np.ndarray, np.ndarray]]) -> None:
        self.pairs = pairs

    def __len__(self) -> int:
        return len(self.pairs)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        return self.pairs[index]


class LookupPredictor:
    """Predicts a fixed label map per image (looked up by the image's bytes), optionally relabelled."""

    def __init__(self, answers: list[tuple[np.ndarray, np.ndarray]], relabel: dict[int, int] | None = None) -> None:
        self.answers = {image.tobytes(): label for image, label in answers}
        self.relabel = relabel or {}
        self.calls = []

    def predict_batch(self, images, *, multiscale=False, flip=False):
        self.calls.append((len(images), multiscale, flip))
        out = []
        for image in images:
            label = self.answers[image.tobytes()].copy()
            for src, dst in self.relabel.items():
                label[self.answers[image.tobytes()] == src] = dst
            out.append(label)
        return out


def random_pairs(n: int, num_classes: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [
        (rng.integers(0, 256, (20, 16, 3), dtype=np.uint8), rng.integers(0, num_classes, (20, 16)).astype(np.uint8))
        for _ in range(n)
    ]


def test_perfect_predictor_scores_100():
    pairs = random_pairs(5, LIP.num_classes)
    predictor = LookupPredictor(pairs)
    cm = evaluate_dataset(predictor, Pairs(pairs), LIP.num_classes, batch_size=2, progress=False)
    metrics = cm.compute()
    assert metrics["miou"] == pytest.approx(100.0)
    assert metrics["pixel_acc"] == pytest.approx(100.0)
    assert cm.matrix.sum() == 5 * 20 * 16
    assert [c[0] for c in predictor.calls] == [2, 2, 1]


def test_known_wrong_predictor_gives_the_hand_computed_scores():
    gt = np.array([[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 2, 2], [2, 2, 2, 255]], np.uint8)
    image = np.zeros((4, 4, 3), np.uint8)
    predictor = LookupPredictor([(image, gt)], relabel={2: 1, 255: 0})  # calls every "2" a "1"
    metrics = evaluate_dataset(predictor, Pairs([(image, gt)]), 3, progress=False).compute()
    # Scored pixels: 15 (one is ignore). Class 0: 4 right. Class 1: 4 right, 7 false positives.
    # Class 2: 7 ground-truth pixels, none found.
    assert metrics["iou"] == pytest.approx([100.0, 100 * 4 / 11, 0.0])
    assert metrics["miou"] == pytest.approx((100.0 + 100 * 4 / 11 + 0.0) / 3)
    assert metrics["pixel_acc"] == pytest.approx(100 * 8 / 15)
    assert metrics["mean_acc"] == pytest.approx((100.0 + 100.0 + 0.0) / 3)


def test_per_image_matrices_sum_to_the_dataset_matrix():
    pairs = random_pairs(5, LIP.num_classes)
    predictor = LookupPredictor(pairs, relabel={3: 4})
    per_image: list[np.ndarray] = []
    cm = evaluate_dataset(predictor, Pairs(pairs), LIP.num_classes, batch_size=2, progress=False, per_item=per_image)
    assert len(per_image) == 5 and all(m.sum() == 20 * 16 for m in per_image)
    np.testing.assert_array_equal(np.sum(per_image, axis=0), cm.matrix)
    score = matrix_score("lip-20", "lip-20")
    assert score(cm.matrix) == pytest.approx(cm.compute()["miou"])


def test_paired_bootstrap_tells_a_sure_gain_from_no_change_and_from_a_coin_toss():
    score = matrix_score("lip-20", "lip-20")
    rng = np.random.default_rng(1)
    pairs = random_pairs(12, 3, seed=2)  # classes 0-2 only
    truth = [gt for _, gt in pairs]

    def matrices(error_rates):
        out = []
        for gt, rate in zip(truth, error_rates):
            pred = np.where(rng.random(gt.shape) < rate, (gt + 1) % 3, gt)
            one = evaluate_dataset(LookupPredictor([(gt, pred)]), Pairs([(gt, gt)]), LIP.num_classes, progress=False)
            out.append(one.matrix)
        return out

    before = matrices([0.4] * 12)
    same = paired_bootstrap(before, before, score, draws=200)
    assert same["delta"] == same["low"] == same["high"] == 0 and same["p_gain"] == 0
    better = paired_bootstrap(before, matrices([0.1] * 12), score, draws=200)
    assert better["delta"] > 10 and better["low"] > 0 and better["p_gain"] == 1.0
    # Better on half the photos, as much worse on the other half: the interval spans zero.
    mixed = paired_bootstrap(before, matrices([0.1, 0.7] * 6), score, draws=400)
    assert mixed["low"] < 0 < mixed["high"] and 0.05 < mixed["p_gain"] < 0.95
    assert better["images"] == 12 and better["draws"] == 200
    with pytest.raises(ValueError, match="equal non-empty"):
        paired_bootstrap(before, before[:-1], score)

    # Pooled over experiments: one experiment is the paired bootstrap itself, with or without ids.
    after = matrices([0.1] * 12)
    single = paired_bootstrap(before, after, score, draws=200)
    one = {**single, "runs": 1, "rose": 1, "images": [12]}
    assert pooled_paired_bootstrap([(before, after)], score, draws=200) == one
    photos = [f"p{i:02d}" for i in range(12)]
    assert pooled_paired_bootstrap([(before, after)], score, ids=[photos], draws=200) == one
    # The experiments are resampled too: a sure gain pooled with no change is half the gain, and
    # not sure (a quarter of the draws hold only the experiment without a change).
    half = pooled_paired_bootstrap([(before, after), (before, before)], score, draws=400)
    assert half["delta"] == pytest.approx(single["delta"] / 2, abs=0.01)
    assert half["low"] == 0 < half["high"] and 0.6 < half["p_gain"] < 0.9
    assert half["runs"] == 2 and half["rose"] == 1 and half["images"] == [12, 12]
    # Six experiments that all gain, each by its own amount: sure.
    gains = [(before, matrices([0.1 + 0.04 * i] * 12)) for i in range(6)]
    assert pooled_paired_bootstrap(gains, score, draws=400)["low"] > 0
    # Experiments scored on the same photos share their luck: with ids the photos are drawn once
    # for all, and four identical experiments are as unsure as one; drawn apart, they would look
    # twice as sure.
    coin = matrices([0.1, 0.7] * 6)
    lone = paired_bootstrap(before, coin, score, draws=800)
    joint = pooled_paired_bootstrap([(before, coin)] * 4, score, ids=[photos] * 4, draws=800)
    apart = pooled_paired_bootstrap([(before, coin)] * 4, score, draws=800)
    width = lone["high"] - lone["low"]
    assert joint["high"] - joint["low"] == pytest.approx(width, rel=0.15)
    assert apart["high"] - apart["low"] < 0.7 * width
    assert joint["low"] < 0 < joint["high"]
    # Overlapping photo sets: each experiment sums only the drawn photos it scored.
    shifted = pooled_paired_bootstrap(
        [(before, after), (before, after)], score, ids=[photos, [f"p{i:02d}" for i in range(6, 18)]], draws=200
    )
    assert shifted["delta"] == single["delta"] and shifted["low"] > 0
    with pytest.raises(ValueError, match="no experiments"):
        pooled_paired_bootstrap([], score)
    with pytest.raises(ValueError, match="ids"):
        pooled_paired_bootstrap([(before, after)], score, ids=[photos[:-1]])
    with pytest.raises(ValueError, match="distinct"):
        pooled_paired_bootstrap([(before, after)], score, ids=[["p00"] * 12])
    with pytest.raises(ValueError, match="experiments"):
        pooled_paired_bootstrap([(before, after)], score, ids=[photos, photos])


def test_lip_predictions_scored_against_fashion_ground_truth():
    lip = np.zeros((6, 6), np.uint8)
    lip[0, :] = LIP.id_of("hair")
    lip[1, :] = LIP.id_of("face")
    lip[2, :3], lip[2, 3:] = LIP.id_of("left-arm"), LIP.id_of("right-arm")
    lip[3, :] = LIP.id_of("upper-clothes")
    lip[4, :3], lip[4, 3:] = LIP.id_of("left-shoe"), LIP.id_of("right-shoe")
    gt = conversion_lut(LIP, FASHION)[lip]
    gt[5, :2] = FASHION.id_of("bag")  # not scored: a LIP model has no bag class
    image = np.zeros((6, 6, 3), np.uint8)
    # The model swaps the arms and the shoes: in fashion-17 both are one class, so still right.
    swapped = {
        LIP.id_of("left-arm"): LIP.id_of("right-arm"),
        LIP.id_of("right-arm"): LIP.id_of("left-arm"),
        LIP.id_of("left-shoe"): LIP.id_of("right-shoe"),
        LIP.id_of("right-shoe"): LIP.id_of("left-shoe"),
    }
    predictor = LookupPredictor([(image, lip)], relabel=swapped)
    mapping = eval_mapping(LIP, FASHION)
    cm = evaluate_dataset(
        predictor, Pairs([(image, gt)]), FASHION.num_classes, mapping=mapping, label_set=FASHION, progress=False
    )
    metrics = cm.compute()
    assert metrics["miou"] == pytest.approx(100.0)
    assert cm.matrix.sum() == 36 - 2  # the bag pixels are left out
    assert FASHION.id_of("bag") not in metrics["scored_classes"]


def write_ccp(root: Path, n: int = 3) -> Path:
    """A CCP-layout folder: photos/NNNN.jpg and annotations/pixel-level/NNNN.mat."""
    (root / "photos").mkdir(parents=True)
    (root / "annotations" / "pixel-level").mkdir(parents=True)
    names = get_label_set("ccp-59").names
    rng = np.random.default_rng(0)
    for i in range(1, n + 1):
        gt = np.zeros((40, 30), np.uint8)
        gt[2:8, 8:22] = names.index("hair")
        gt[8:14, 10:20] = names.index("skin")
        gt[14:30, 6:24] = names.index("t-shirt")
        gt[20:26, 24:28] = names.index("bag")
        gt[30:38, 8:22] = names.index("jeans")
        Image.fromarray(rng.integers(0, 256, (40, 30, 3), dtype=np.uint8)).save(root / "photos" / f"{i:04d}.jpg")
        scipy.io.savemat(root / "annotations" / "pixel-level" / f"{i:04d}.mat", {"groundtruth": gt})
    return root


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    model = build_model("ssfnet_lite", LIP.num_classes, **TINY)
    path = tmp_path_factory.mktemp("ckpt") / "tiny"
    return save_checkpoint(
        model.eval(),
        path,
        variant="ssfnet_lite",
        label_set="lip-20",
        options=model_options("ssfnet_lite", **TINY),
        metadata={"input_size": 64},
    )


def test_cli_writes_json_table_and_plot(checkpoint, tmp_path, capsys):
    ccp = write_ccp(tmp_path / "ccp")
    out = tmp_path / "eval"
    result = evaluate_args(
        parse_args(
            [
                "--checkpoint",
                str(checkpoint),
                "--data",
                f"ccp:{ccp}",
                "--gt-label-set",
                "fashion-17",
                "--multiscale",
                "--flip",
                "--scales",
                "0.5",
                "1.0",
                "--device",
                "cpu",
                "--out",
                str(out),
            ]
        )
    )
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["miou"] == pytest.approx(result["miou"])
    assert saved["mapping"] == "lip-20 -> fashion-17" and saved["images"] == 3
    assert saved["multiscale"] and saved["flip"] and saved["scales"] == [0.5, 1.0]
    rows = {row["class"]: row for row in saved["per_class"]}
    assert not rows["bag"]["scored"] and rows["skin"]["scored"]
    scored = [r["iou"] for r in saved["per_class"] if r["scored"] and r["iou"] is not None]
    assert saved["miou"] == pytest.approx(np.mean(scored))
    matrix = np.array(saved["matrix"])
    assert matrix.shape == (17, 17)
    assert matrix.sum() == 3 * (40 * 30 - 6 * 4)  # every pixel but the unscored bag
    assert Image.open(out / "confusion.png").size[0] > 200
    printed = capsys.readouterr().out
    assert "mIoU" in printed and "(not scored)" in printed


def write_pascal(root: Path, n: int = 2) -> Path:
    """A PASCAL-Person-Part folder: JPEGImages/*.jpg and palette SegmentationPart/*.png (index = part id)."""
    (root / "JPEGImages").mkdir(parents=True)
    (root / "SegmentationPart").mkdir(parents=True)
    rng = np.random.default_rng(1)
    for i in range(n):
        parts = np.zeros((40, 30), np.uint8)
        parts[2:10, 10:20] = 1  # head
        parts[10:24, 8:22] = 2  # torso
        parts[10:18, 4:8], parts[18:26, 4:8] = 3, 4  # arm
        parts[24:32, 9:21], parts[32:39, 9:21] = 5, 6  # legs
        parts[0, :] = 255
        label = Image.fromarray(parts)
        label.putpalette(get_label_set("pascal-person-part-7").palette_bytes())
        stem = f"2008_{i:06d}"
        label.save(root / "SegmentationPart" / f"{stem}.png")
        Image.fromarray(rng.integers(0, 256, (40, 30, 3), dtype=np.uint8)).save(root / "JPEGImages" / f"{stem}.jpg")
    return root


def test_lip_predictions_scored_on_pascal_person_and_head():
    pascal = get_label_set("pascal-person-part-7")
    parts = np.array([[0, 1, 1, 2, 3, 4], [5, 6, 6, 2, 0, 0]], np.uint8)
    gt = conversion_lut(pascal, "person-head-3")[parts]
    lip_id = LIP.id_of
    # Mostly right, but: the head's second pixel called a coat, a torso pixel called face, a
    # lower-leg pixel missed and a background pixel called a hat.
    lip = np.array(
        [
            [0, lip_id("hair"), lip_id("coat"), lip_id("upper-clothes"), lip_id("left-arm"), lip_id("glove")],
            [lip_id("pants"), lip_id("right-shoe"), 0, lip_id("face"), lip_id("hat"), 0],
        ],
        np.uint8,
    )
    image = np.zeros((2, 6, 3), np.uint8)
    person_head = get_label_set("person-head-3")
    cm = evaluate_dataset(
        LookupPredictor([(image, lip)]),
        Pairs([(image, gt)]),
        3,
        mapping=eval_mapping(LIP, person_head),
        label_set=person_head,
        progress=False,
    )
    metrics = cm.compute()
    # person: 9 ground-truth pixels, 9 predicted, 8 in common.
    assert metrics["person_iou"] == pytest.approx(100 * 8 / 10)
    # head: ground truth at (0,1), (0,2); predicted at (0,1), (1,3), (1,4).
    assert metrics["head_iou"] == pytest.approx(100 * 1 / 4)


def test_cli_scores_pascal_person_part_as_person_and_head(checkpoint, tmp_path, capsys):
    pascal = write_pascal(tmp_path / "pascal")
    out = tmp_path / "eval"
    args = ["--checkpoint", str(checkpoint), "--data", f"pascal-person-part:{pascal}"]
    result = evaluate_args(parse_args([*args, "--gt-label-set", "person-head-3", "--device", "cpu", "--out", str(out)]))
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["mapping"] == "lip-20 -> person-head-3" and saved["images"] == 2
    assert [row["class"] for row in saved["per_class"]] == ["background", "head", "body"]
    assert all(row["scored"] for row in saved["per_class"])
    for key in ("person_iou", "head_iou"):
        assert key in saved and saved[key] == result[key]
        assert saved[key] is None or 0 <= saved[key] <= 100
    assert saved["head_iou"] == saved["per_class"][1]["iou"]
    assert np.array(saved["matrix"]).sum() == 2 * 39 * 30  # every pixel but the ignored top row
    printed = capsys.readouterr().out
    assert "person IoU" in printed and "head IoU" in printed
    # PASCAL's own parts are no LIP-20 output: person-head-3 is the way to score on them.
    with pytest.raises(KeyError, match="no evaluation mapping lip-20 -> pascal-person-part-7"):
        main([*args, "--gt-label-set", "pascal-person-part-7", "--device", "cpu"])


class PartOracle:
    """Answers from the ground truth: face where PASCAL has head, upper-clothes on every other part."""

    def __init__(self, dataset) -> None:
        self.by_image = {}
        for i in range(len(dataset)):
            image, parts = dataset.load(i)
            lip = np.where(parts == 1, LIP.id_of("face"), LIP.id_of("upper-clothes")).astype(np.uint8)
            lip[(parts == 0) | (parts == 255)] = 0
            self.by_image[image.tobytes()] = lip

    def predict_batch(self, images, *, multiscale=False, flip=False):
        return [self.by_image[image.tobytes()] for image in images]


def test_shared_pascal_person_part_oracle_scores_100(dataset_dir):
    from ssfnet.data import open_source

    root = dataset_dir("pascal-person-part")
    person_head = get_label_set("person-head-3")
    parts = open_source(f"pascal-person-part:{root}", "pascal-person-part-7")
    ids = parts.ids[::300]
    dataset = open_source(f"pascal-person-part:{root}", person_head, ids=ids)
    oracle = PartOracle(open_source(f"pascal-person-part:{root}", "pascal-person-part-7", ids=ids))
    mapping = eval_mapping(LIP, person_head)
    metrics = evaluate_dataset(oracle, dataset, 3, mapping=mapping, label_set=person_head, progress=False).compute()
    assert metrics["person_iou"] == pytest.approx(100.0) and metrics["head_iou"] == pytest.approx(100.0)
    assert metrics["miou"] == pytest.approx(100.0)


def test_held_out_ids_follow_a_runs_split(tmp_path):
    split = {
        "seed": 0,
        "val_fraction": 0.1,
        "sources": [
            {"kind": "ccp", "path": str((tmp_path / "ccp").resolve()), "split": None, "val_ids": ["0002", "0007"]}
        ],
    }
    path = tmp_path / "split.json"
    path.write_text(json.dumps(split))
    assert held_out_ids(path, f"ccp:{tmp_path / 'ccp'}") == ["0002", "0007"]
    with pytest.raises(ValueError, match="lists no source"):
        held_out_ids(path, f"viton:{tmp_path / 'ccp'}")


def test_plot_marks_unscored_classes(tmp_path):
    metrics = {"iou": [90.0, None, 10.0], "miou": 50.0, "scored_classes": [0, 2]}
    path = plot_results(np.array([[9, 0, 1], [0, 0, 0], [3, 0, 1]]), metrics, ("a", "b", "c"), tmp_path / "p.png")
    assert Image.open(path).size[0] > 100
