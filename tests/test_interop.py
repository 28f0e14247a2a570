"""Corrections to and from COCO, CVAT, Label Studio and CIHP (issue 36 item 5).

Round trips must give back every label pixel and the image bytes; the exported files are also read
with the libraries those tools use (pycocotools; the Label Studio converter's brush decoder), and
CVAT's masks with Pillow alone against the label set's colours. Bad input says what is wrong and
leaves the store as it was.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ssfnet.data import list_corrections, load_correction, save_correction
from ssfnet.data.review import APPROVED, set_review
from ssfnet.interop import InteropError, brush_rle, export_corrections, import_corrections
from ssfnet.interop.__main__ import main
from ssfnet.labels import IGNORE_INDEX, get_label_set

REPO = Path(__file__).resolve().parents[1]
PHOTO = REPO / "assets" / "examples" / "ccp_0046.jpg"
LIP = get_label_set("lip-20")
OUT = {"coco": "coco/instances.json", "cvat": "cvat/task.zip", "labelstudio": "ls/tasks.json", "cihp": "cihp.zip"}


def label_map(height: int, width: int, seed: int) -> np.ndarray:
    """Blocks of several labels, a coarse label (skin), unlabelled pixels and a one-pixel region."""
    rng = np.random.default_rng(seed)
    labels = np.zeros((height, width), np.uint8)
    for value in rng.choice(np.arange(1, LIP.num_classes), 6, replace=False):
        y, x = rng.integers(0, height - 8), rng.integers(0, width - 8)
        labels[y : y + rng.integers(4, height // 2), x : x + rng.integers(4, width // 2)] = value
    labels[height // 2 : height // 2 + 3] = IGNORE_INDEX
    labels[1:4, 1:6] = LIP.id_of("skin")
    labels[-1, -1] = LIP.id_of("hat")
    return labels


@pytest.fixture
def store(tmp_path) -> tuple[Path, list[str]]:
    """A store with a JPEG photo (kept byte for byte) and a small PNG record."""
    root = tmp_path / "store"
    width, height = Image.open(PHOTO).size
    first = save_correction(
        root, None, label_map(height, width, 0), "lip-20", image_bytes=PHOTO.read_bytes(), image_ext="jpg"
    )
    image = np.random.default_rng(1).integers(0, 255, (37, 29, 3), dtype=np.uint8)
    second = save_correction(root, image, label_map(37, 29, 1), "lip-20")
    return root, [first, second]


def same_records(a: Path, b: Path) -> None:
    """Every record of ``a`` has one in ``b`` with the same image bytes and the same labels, pixel for pixel."""
    back = {m["image_sha256"]: m for m in list_corrections(b)}
    records = list_corrections(a)
    assert len(back) == len(records)
    for meta in records:
        twin = back[meta["image_sha256"]]  # the same image bytes
        assert twin["label_set"] == "lip-20" and twin["image_size"] == meta["image_size"]
        assert np.array_equal(load_correction(a, meta["id"])[1], load_correction(b, twin["id"])[1])


@pytest.mark.parametrize("fmt", list(OUT))
def test_a_round_trip_gives_back_every_pixel(store, tmp_path, fmt):
    root, _ = store
    out, count = export_corrections(root, fmt, tmp_path / OUT[fmt])
    assert count == 2 and out.is_file()
    report = import_corrections(out, fmt, tmp_path / "back")
    assert len(report["imported"]) == 2 and report["unknown"] == {}
    same_records(root, tmp_path / "back")


def test_coco_export_reads_back_with_pycocotools(store, tmp_path):
    from pycocotools.coco import COCO

    root, ids = store
    out, _ = export_corrections(root, "coco", tmp_path / "coco.json")
    coco = COCO(str(out))
    names = {c["id"]: c["name"] for c in coco.loadCats(coco.getCatIds())}
    assert {"background", "skin", "hat"} <= set(names.values())
    for image in coco.loadImgs(coco.getImgIds()):
        record = Path(image["file_name"]).stem
        assert (out.parent / image["file_name"]).read_bytes() == next(
            (root / "images").glob(f"{record}.*")
        ).read_bytes()
        labels = np.full((image["height"], image["width"]), IGNORE_INDEX, np.uint8)
        for annotation in coco.loadAnns(coco.getAnnIds(imgIds=[image["id"]])):
            mask = coco.annToMask(annotation).astype(bool)
            assert annotation["area"] == mask.sum() and not (labels[mask] != IGNORE_INDEX).any()  # no overlap
            labels[mask] = LIP.all_names.index(names[annotation["category_id"]])
        assert np.array_equal(labels, load_correction(root, record)[1])
    assert sorted(Path(i["file_name"]).stem for i in coco.loadImgs(coco.getImgIds())) == sorted(ids)


def test_label_studio_brush_rle_reads_back_with_the_converters_decoder(store, tmp_path):
    brush = pytest.importorskip("label_studio_converter.brush")
    root, _ = store
    out, _ = export_corrections(root, "labelstudio", tmp_path / "tasks.json")
    tasks = json.loads(out.read_text())
    assert '<BrushLabels name="tag" toName="image">' in out.with_suffix(".xml").read_text()
    for task in tasks:
        record = task["data"]["record_id"]
        stored = load_correction(root, record)[1]
        labels = np.full(stored.shape, IGNORE_INDEX, np.uint8)
        for result in task["annotations"][0]["result"]:
            assert result["type"] == "brushlabels" and result["value"]["format"] == "rle"
            height, width = result["original_height"], result["original_width"]
            rgba = brush.decode_rle(result["value"]["rle"]).reshape(height, width, 4)
            assert set(np.unique(rgba).tolist()) <= {0, 255}
            (name,) = result["value"]["brushlabels"]
            labels[rgba[..., 3] == 255] = LIP.all_names.index(name)
        assert np.array_equal(labels, stored)
    # And the other way: the converter's own encoding (literal chunks as well as runs) reads back here.
    mask = np.random.default_rng(2).random((23, 31)) < 0.3
    mask[5:15] = True
    theirs = brush.encode_rle(np.repeat(mask.ravel().astype(np.uint8) * 255, 4))
    assert np.array_equal(brush_rle.decode(theirs, 23, 31), mask)


def test_cvat_zip_has_the_segmentation_mask_layout_and_the_label_colours(store, tmp_path):
    root, ids = store
    out, _ = export_corrections(root, "cvat", tmp_path / "task.zip")
    with zipfile.ZipFile(out) as archive:
        names = set(archive.namelist())
        lines = [line for line in archive.read("labelmap.txt").decode().splitlines() if not line.startswith("#")]
        colours = {}
        for line in lines:
            name, rgb, parts, actions = line.split(":")
            colours[tuple(int(v) for v in rgb.split(","))] = name
        assert sorted(archive.read("ImageSets/Segmentation/default.txt").decode().split()) == sorted(ids)
        for record in ids:
            assert {f"SegmentationClass/{record}.png", f"SegmentationObject/{record}.png"} <= names
            rgb = np.array(Image.open(archive.open(f"SegmentationClass/{record}.png")))
            labels = load_correction(root, record)[1]
            lut = LIP.colour_lut()
            for value in np.unique(labels).tolist():
                shown = {tuple(c) for c in rgb[labels == value].reshape(-1, 3).tolist()}
                assert shown == ({(224, 224, 192)} if value == IGNORE_INDEX else {tuple(lut[value].tolist())})
                if value != IGNORE_INDEX:
                    assert colours[tuple(lut[value].tolist())] == LIP.all_names[value]


def test_export_takes_a_selection(store, tmp_path):
    root, ids = store
    with pytest.raises(InteropError, match="no approved record"):
        export_corrections(root, "coco", tmp_path / "a.json", approved_only=True)
    set_review(root, ids[1], APPROVED)
    assert export_corrections(root, "coco", tmp_path / "a.json", approved_only=True)[1] == 1
    assert export_corrections(root, "cvat", tmp_path / "b.zip", ids=[ids[0]])[1] == 1
    with pytest.raises(InteropError, match="no complete correction nothere"):
        export_corrections(root, "cvat", tmp_path / "c.zip", ids=["nothere"])
    assert not (tmp_path / "c.zip").exists()


def test_unknown_label_names_are_reported_and_import_nothing_unless_asked(store, tmp_path):
    root, _ = store
    out, _ = export_corrections(root, "labelstudio", tmp_path / "tasks.json")
    tasks = json.loads(out.read_text())
    for result in tasks[0]["annotations"][0]["result"]:
        if result["value"]["brushlabels"] == ["hat"]:
            result["value"]["brushlabels"] = ["Helmet"]
    tasks[0]["annotations"][0]["result"][0]["value"]["brushlabels"] = ["Upper_Clothes"]  # loose spelling: known
    out.write_text(json.dumps(tasks))
    back = tmp_path / "back"
    with pytest.raises(InteropError, match=r"labels not in lip-20: 'Helmet' \(1 region\)\. Nothing was imported"):
        import_corrections(out, "labelstudio", back)
    assert list_corrections(back) == []
    report = import_corrections(out, "labelstudio", back, keep_unknown=True)
    assert report["unknown"] == {"Helmet": 1} and len(report["imported"]) == 2
    # The wrong label set: nearly every name is unknown.
    with pytest.raises(InteropError, match="labels not in pascal-person-part-7"):
        import_corrections(out, "labelstudio", tmp_path / "other", "pascal-person-part-7")


def test_corrupt_or_inconsistent_input_says_what_and_writes_nothing(store, tmp_path, capsys):
    root, _ = store
    back = tmp_path / "back"
    coco_out, _ = export_corrections(root, "coco", tmp_path / "coco" / "c.json")
    ls_out, _ = export_corrections(root, "labelstudio", tmp_path / "ls" / "t.json")
    cvat_out, _ = export_corrections(root, "cvat", tmp_path / "task.zip")

    coco_out.write_text(coco_out.read_text()[:-40])
    with pytest.raises(InteropError, match="is not a COCO instance JSON"):
        import_corrections(coco_out, "coco", back)

    good = ls_out.read_text()
    tasks = json.loads(good)
    tasks[1]["annotations"][0]["result"][0]["value"]["rle"] = tasks[1]["annotations"][0]["result"][0]["value"]["rle"][
        :9
    ]
    ls_out.write_text(json.dumps(tasks))
    with pytest.raises(InteropError, match="not a brush mask .*ends too early"):
        import_corrections(ls_out, "labelstudio", back)

    with zipfile.ZipFile(cvat_out) as archive, zipfile.ZipFile(tmp_path / "bad.zip", "w") as bad:
        for item in archive.namelist():
            data = archive.read(item)
            bad.writestr(item, b"hat:1,2\n" if item == "labelmap.txt" else data)
    with pytest.raises(InteropError, match=r"labelmap.txt, line 1 'hat:1,2'"):
        import_corrections(tmp_path / "bad.zip", "cvat", back)
    (tmp_path / "not.zip").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(InteropError, match="is not a zip"):
        import_corrections(tmp_path / "not.zip", "cvat", back)

    # An image that is not the one the masks were drawn on.
    tasks = json.loads(good)
    Image.new("RGB", (10, 10)).save(tmp_path / "ls" / "small.png")
    tasks[0]["data"]["image"] = "small.png"
    ls_out.write_text(json.dumps(tasks))
    with pytest.raises(InteropError, match="small.png is 10x10 but its masks are"):
        import_corrections(ls_out, "labelstudio", back)
    assert not back.exists() or list_corrections(back) == []

    # The command line says the same in one line, with status 2.
    assert main(["import", "--corrections", str(back), "--format", "cvat", "--input", str(tmp_path / "bad.zip")]) == 2
    assert "error:" in capsys.readouterr().err
    args = ["export", "--corrections", str(tmp_path / "empty"), "--format", "coco", "--out", str(tmp_path / "e.json")]
    assert main(args) == 2 and "nothing to export" in capsys.readouterr().err
    assert main(["import", "--corrections", str(back), "--format", "cvat", "--input", str(cvat_out)]) == 0
    assert "imported 2 record(s)" in capsys.readouterr().out
    same_records(root, back)


def test_label_studio_pre_annotations_served_from_local_files_come_back(store, tmp_path, capsys):
    root, _ = store
    out = tmp_path / "ls" / "tasks.json"
    args = ["export", "--corrections", str(root), "--format", "labelstudio", "--out", str(out)]
    assert main([*args, "--image-root", "/data/local-files/?d=project/images", "--predictions"]) == 0
    tasks = json.loads(out.read_text())
    assert all(t["data"]["image"].startswith("/data/local-files/?d=project/images/") for t in tasks)
    assert all("annotations" not in t and t["predictions"][0]["result"] for t in tasks)
    assert import_corrections(out, "labelstudio", tmp_path / "back")["unknown"] == {}
    same_records(root, tmp_path / "back")
    with pytest.raises(InteropError, match="options of the labelstudio format only"):
        export_corrections(root, "coco", tmp_path / "c.json", predictions=True)


def test_a_models_proposals_for_a_folder_become_label_studio_pre_annotations(tmp_path, capsys):
    import torch

    from ssfnet import build_model, load_predictor, save_checkpoint

    torch.manual_seed(0)
    checkpoint = save_checkpoint(
        build_model("ssfnet_lite", LIP.num_classes), tmp_path / "tiny", variant="ssfnet_lite", label_set="lip-20"
    )
    photos = tmp_path / "photos"
    photos.mkdir()
    for k, size in enumerate([(48, 40), (40, 56)]):
        Image.fromarray(np.random.default_rng(k).integers(0, 255, (*size, 3), dtype=np.uint8)).save(
            photos / f"new photo {k}.png"
        )
    (photos / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    (photos / "notes.txt").write_text("not a photo")
    out = tmp_path / "pre" / "tasks.json"
    args = ["propose", "--checkpoint", str(checkpoint), "--photos", str(photos), "--device", "cpu"]
    assert main([*args, "--format", "labelstudio", "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert "skipping broken.jpg" in said and "proposals for 2 photo(s)" in said
    tasks = json.loads(out.read_text())
    assert [t["data"]["image"] for t in tasks] == ["images/new_photo_0.png", "images/new_photo_1.png"]
    assert all("annotations" not in t for t in tasks)

    # Imported back they are the model's labels, pixel for pixel.
    report = import_corrections(out, "labelstudio", tmp_path / "back")
    predictor = load_predictor(checkpoint, "cpu")
    by_digest = {hashlib.sha256(p.read_bytes()).hexdigest(): p for p in photos.glob("*.png")}
    for record_id in report["imported"]:
        _, labels, meta = load_correction(tmp_path / "back", record_id)
        photo = np.array(Image.open(by_digest[meta["image_sha256"]]))
        assert np.array_equal(labels, predictor.predict(photo))
    assert main(["propose", "--checkpoint", str(tmp_path / "none"), "--photos", str(photos), "--format", "cvat",
                 "--out", str(tmp_path / "x.zip")]) == 2  # fmt: skip
    assert "error:" in capsys.readouterr().err and not (tmp_path / "x.zip").exists()
