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
from train.evaluate import evaluate_dataset, held_out_ids, main, plot_results

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
    result = main(
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
