"""train.wild: everyday-photo scores and the coat/face shortcut's proxies, with a predictor that paints coat."""

import numpy as np
from PIL import Image

from ssfnet.labels import LIP_20
from train import wild


class CoatEverywhere:
    """A predictor with the shortcut at its worst: every pixel coat."""

    label_set = LIP_20

    def predict_batch(self, images, **_):
        return [np.full(im.shape[:2], LIP_20.id_of("coat"), dtype=np.uint8) for im in images]


def write_everyday(root, n=3):
    folder = root / wild.EVERYDAY
    (folder / "images").mkdir(parents=True)
    (folder / "labels").mkdir()
    for i in range(n):
        label = np.zeros((20, 16), dtype=np.uint8)
        label[:5] = LIP_20.id_of("hair")
        label[5:12] = LIP_20.id_of("upper-clothes")
        label[12:, :8] = LIP_20.id_of("left-leg")
        label[12:, 8:] = LIP_20.id_of("coat")
        Image.fromarray(np.full((20, 16, 3), 90 + i, dtype=np.uint8)).save(folder / "images" / f"{i}.jpg")
        Image.fromarray(label).save(folder / "labels" / f"{i}.png")


def test_everyday_scores_show_coat_everywhere(tmp_path):
    write_everyday(tmp_path)
    report = wild.everyday_scores(CoatEverywhere(), tmp_path)
    assert report["images"] == 3
    assert report["upper_clothes_as_coat"] == report["legs_as_coat"] == 100.0
    assert report["arms_as_coat"] is None  # no arm in these labels
    assert report["hair_as_face"] == 0.0
    assert report["coat_predicted"] == 100.0
    assert report["coat_labelled"] == 20.0  # 4 x 8 of 20 x 16 pixels
    assert report["per_class"]["coat"] == 20.0


def test_pascal_proxies_and_references_on_real_photos(dataset_dir):
    root = dataset_dir("pascal-person-part").parent
    proxies = wild.pascal_proxies(CoatEverywhere(), root, limit=3)
    assert proxies["images"] == 3
    assert proxies["person_as_one_piece"] == proxies["person_as_coat"] == 100.0
    assert proxies["lower_arm_as_arm"] == 0.0
    assert proxies["head_hair_to_face"] is None
    dataset_dir("ccp"), dataset_dir("viton")
    scores = wild.source_scores(CoatEverywhere(), root, limit=2)
    assert {k: v["label_set"] for k, v in scores.items()} == dict(wild.SOURCES)
    assert all(row["images"] == 2 for row in scores.values())
    assert scores["pascal-person-part"]["head_iou"] == 0.0  # coat is body, never head
    refs = wild.ground_truth_references(root, limit=5)
    assert 0 < refs["ccp_person_as_one_piece"] < 100
    assert refs["viton_hair_to_face"] > 0


def test_report_skips_what_is_absent_and_other_label_sets(tmp_path, capsys):
    write_everyday(tmp_path)
    report = wild.wild_report(CoatEverywhere(), tmp_path, references=False)
    assert set(report) == {"everyday"}
    assert "mIoU" in wild.format_report(report)

    class Parts(CoatEverywhere):
        label_set = wild.get_label_set("pascal-person-part-7")

    assert wild.wild_report(Parts(), tmp_path) == {}
    assert wild.main(["--checkpoint", "x", "--data-root", str(tmp_path / "absent")]) == 0
    assert "absent" in capsys.readouterr().err
