"""Person ids in exports and imports (issue 36 item 3): CIHP's layout, COCO's ``person_id``, CVAT's
objects and Label Studio's regions, one per person per label.

The files are read with Pillow, pycocotools and the Label Studio converter, not with this project's
reader; every export imported again gives back the labels and the person ids pixel for pixel, and
records saved without person ids come back without them (CIHP, which always holds them, excepted).
"""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from ssfnet.data.correction_persons import derive_persons
from ssfnet.data.corrections import load_correction, load_persons, save_correction
from ssfnet.interop import InteropError, brush_rle, export_corrections, import_corrections
from ssfnet.interop.__main__ import main
from ssfnet.interop.cihp import part_instances
from ssfnet.labels import IGNORE_INDEX, get_label_set

LIP = get_label_set("lip-20")
HAIR, FACE, COAT = LIP.id_of("hair"), LIP.id_of("face"), LIP.id_of("coat")


def people() -> tuple[np.ndarray, np.ndarray]:
    """Labels of two touching people with a row of unlabelled pixels, and person ids that split them."""
    labels = np.zeros((30, 40), np.uint8)
    labels[2:8, 4:36] = HAIR
    labels[8:14, 4:36] = FACE
    labels[14:28, 4:36] = COAT
    labels[20, :] = IGNORE_INDEX
    persons = np.where((labels > 0) & (labels != IGNORE_INDEX), 1, 0).astype(np.uint8)
    persons[:, 20:] *= 3  # the right half is person 3
    return labels, persons


@pytest.fixture
def store(tmp_path):
    """A record saved with person ids and an older one without (derived on export)."""
    root = tmp_path / "store"
    labels, persons = people()
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (*labels.shape, 3), dtype=np.uint8)
    old = save_correction(root, image, labels, LIP)
    with_persons = save_correction(root, image[::-1].copy(), labels, LIP, persons=persons)
    return root, old, with_persons


def read_png(archive: zipfile.ZipFile, name: str) -> np.ndarray:
    with Image.open(io.BytesIO(archive.read(name))) as im:
        return np.array(im)


def test_cihp_export_holds_parts_persons_and_part_instances(store, tmp_path):
    root, old, with_persons = store
    out, count = export_corrections(root, "cihp", tmp_path / "cihp.zip", all_versions=True)
    assert count == 2
    labels, persons = people()
    archive = zipfile.ZipFile(out)
    names = set(archive.namelist())
    for record in (old, with_persons):
        for folder in ("Category_ids", "Categories", "Human_ids", "Humans", "Instance_ids", "Instances"):
            assert f"Training/{folder}/{record}.png" in names
        assert f"Training/Images/{record}.png" in names
        assert np.array_equal(read_png(archive, f"Training/Category_ids/{record}.png"), labels)
    assert np.array_equal(read_png(archive, f"Training/Human_ids/{with_persons}.png"), persons)
    assert np.array_equal(read_png(archive, f"Training/Human_ids/{old}.png"), derive_persons(labels))
    instances = read_png(archive, f"Training/Instance_ids/{with_persons}.png")
    # Two people times three labels: six part instances, each within one person and one label.
    assert sorted(np.unique(instances).tolist()) == list(range(7))
    for k in range(1, 7):
        assert np.unique(persons[instances == k]).size == 1 and np.unique(labels[instances == k]).size == 1
    assert archive.read("Training/train_id.txt").decode().split() == [old, with_persons]
    assert f"derived from the labels (not checked by a person) for: {old}" in archive.read("README.txt").decode()
    assert "2 hair" in archive.read("labels.txt").decode()


def test_part_instances_number_person_by_person():
    labels = np.array([[0, HAIR, FACE, HAIR]], np.uint8)
    persons = np.array([[0, 2, 2, 1]], np.uint8)
    assert part_instances(labels, persons).tolist() == [[0, 2, 3, 1]]


def test_cihp_refuses_mixed_label_sets(store, tmp_path):
    root, _, with_persons = store
    save_correction(root, np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4), np.uint8), "person-head-3")
    with pytest.raises(InteropError, match="several label sets"):
        export_corrections(root, "cihp", tmp_path / "mixed.zip", all_versions=True)
    assert not (tmp_path / "mixed.zip").exists()
    (tmp_path / "torn.zip").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(InteropError, match="is not a zip of the CIHP layout"):
        import_corrections(tmp_path / "torn.zip", "cihp", tmp_path / "back")
    command = ["export", "--corrections", str(root), "--format", "cihp", "--out", str(tmp_path / "one.zip")]
    assert main([*command, "--ids", with_persons]) == 0 and (tmp_path / "one.zip").is_file()


def test_coco_has_one_annotation_per_person_per_label_and_comes_back(store, tmp_path):
    root, old, with_persons = store
    out, _ = export_corrections(root, "coco", tmp_path / "coco" / "instances.json", ids=[with_persons, old])
    document = json.loads(out.read_text())
    labels, persons = people()
    names = {c["id"]: c["name"] for c in document["categories"]}
    first = [a for a in document["annotations"] if a["image_id"] == 1]
    # Background once, hair / face / coat once per person; decoded by pycocotools.
    assert sorted((names[a["category_id"]], a.get("person_id")) for a in first) == sorted(
        [("background", None)] + [(n, p) for n in ("hair", "face", "coat") for p in (1, 3)]
    )
    for annotation in first:
        mask = mask_utils.decode(annotation["segmentation"]).astype(bool)
        value = LIP.id_of(names[annotation["category_id"]])
        expected = labels == value
        if "person_id" in annotation:
            expected &= persons == annotation["person_id"]
        assert np.array_equal(mask, expected)
    # The record without person ids keeps one annotation per label, none with a person_id.
    assert all("person_id" not in a for a in document["annotations"] if a["image_id"] == 2)
    report = import_corrections(out, "coco", tmp_path / "back")
    back = {load_correction(tmp_path / "back", i)[2]["source_name"]: i for i in report["imported"]}
    again = back[f"{with_persons}.png"]
    assert np.array_equal(load_correction(tmp_path / "back", again)[1], labels)
    assert np.array_equal(load_persons(tmp_path / "back", again), persons)
    assert load_persons(tmp_path / "back", back[f"{old}.png"]) is None


def voc_numbers(rgb: np.ndarray) -> np.ndarray:
    """H x W: the Pascal VOC palette index of each pixel's colour (the object number), read independently."""
    palette = np.zeros((256, 3), np.uint8)
    for k in range(256):  # Pascal VOC's colour map, bit by bit
        c, r, g, b = k, 0, 0, 0
        for shift in range(7, -1, -1):
            r, g, b = r | (c & 1) << shift, g | (c >> 1 & 1) << shift, b | (c >> 2 & 1) << shift
            c >>= 3
        palette[k] = r, g, b
    lookup = {tuple(c): k for k, c in enumerate(palette.tolist())}
    return np.array([lookup[tuple(c)] for c in rgb.reshape(-1, 3).tolist()]).reshape(rgb.shape[:2])


def test_cvat_objects_are_one_per_person_per_label_and_come_back(store, tmp_path):
    root, old, with_persons = store
    out, _ = export_corrections(root, "cvat", tmp_path / "task.zip", ids=[with_persons, old])
    labels, persons = people()
    archive = zipfile.ZipFile(out)
    owners = json.loads(archive.read("ssfnet_persons.json"))["images"]
    assert list(owners) == [with_persons]  # the record without person ids is not listed
    objects = voc_numbers(read_png(archive, f"SegmentationObject/{with_persons}.png"))
    # Background once, hair / face / coat once per person; unlabelled pixels void (255).
    assert sorted(np.unique(objects).tolist()) == [*range(1, 8), 255]
    assert np.array_equal(objects == 255, labels == IGNORE_INDEX)
    for k in range(1, 8):
        inside = objects == k
        assert np.unique(labels[inside]).size == 1 and np.unique(persons[inside]).tolist() == [
            owners[with_persons][str(k)]
        ]
    assert {p for p in owners[with_persons].values()} == {0, 1, 3}
    # The record without person ids keeps one object per label.
    assert sorted(np.unique(voc_numbers(read_png(archive, f"SegmentationObject/{old}.png"))).tolist()) == [
        1,
        2,
        3,
        4,
        255,
    ]

    report = import_corrections(out, "cvat", tmp_path / "back")
    back = {load_correction(tmp_path / "back", i)[2]["source_name"]: i for i in report["imported"]}
    again = back[f"{with_persons}.png"]
    assert np.array_equal(load_correction(tmp_path / "back", again)[1], labels)
    assert np.array_equal(load_persons(tmp_path / "back", again), persons)
    assert load_persons(tmp_path / "back", back[f"{old}.png"]) is None


def test_cvat_objects_the_persons_file_misses_get_ids_and_a_zip_without_it_none(store, tmp_path):
    root, _, with_persons = store
    out, _ = export_corrections(root, "cvat", tmp_path / "task.zip", ids=[with_persons])
    labels, persons = people()
    archive = zipfile.ZipFile(out)
    owners = json.loads(archive.read("ssfnet_persons.json"))
    objects = voc_numbers(read_png(archive, f"SegmentationObject/{with_persons}.png"))
    # Person 3's hair, as if drawn in CVAT after the export: the store gives it ids again.
    hair_of_3 = next(
        k for k, p in owners["images"][with_persons].items() if p == 3 and (labels[objects == int(k)] == HAIR).all()
    )
    del owners["images"][with_persons][hair_of_3]
    edited, bare = tmp_path / "edited.zip", tmp_path / "bare.zip"
    with zipfile.ZipFile(edited, "w") as e, zipfile.ZipFile(bare, "w") as b:
        for name in archive.namelist():
            e.writestr(name, json.dumps(owners) if name == "ssfnet_persons.json" else archive.read(name))
            if name != "ssfnet_persons.json":
                b.writestr(name, archive.read(name))
    (record,) = import_corrections(edited, "cvat", tmp_path / "edited")["imported"]
    again, missed = load_persons(tmp_path / "edited", record), objects == int(hair_of_3)
    assert np.array_equal(again[~missed], persons[~missed])
    # Each pixel of it takes the id of the nearest person: 3's face below, or 1's hair beside it.
    assert set(np.unique(again[missed]).tolist()) <= {1, 3} and (again[missed][-15:] == 3).all()
    (record,) = import_corrections(bare, "cvat", tmp_path / "bare")["imported"]
    assert load_persons(tmp_path / "bare", record) is None
    owners["images"][with_persons]["1"] = 300
    with zipfile.ZipFile(tmp_path / "bad.zip", "w") as bad:
        for name in archive.namelist():
            bad.writestr(name, json.dumps(owners) if name == "ssfnet_persons.json" else archive.read(name))
    with pytest.raises(InteropError, match="person id 300, not between 0 and 255"):
        import_corrections(tmp_path / "bad.zip", "cvat", tmp_path / "bad")


def test_cihp_round_trip_gives_back_labels_and_person_ids(store, tmp_path):
    root, old, with_persons = store
    out, _ = export_corrections(root, "cihp", tmp_path / "cihp.zip", ids=[with_persons, old])
    report = import_corrections(out, "cihp", tmp_path / "back")
    assert report["unknown"] == {} and len(report["imported"]) == 2
    labels, persons = people()
    back = {load_correction(tmp_path / "back", i)[2]["source_name"]: i for i in report["imported"]}
    for record, ids in ((with_persons, persons), (old, derive_persons(labels))):  # CIHP always holds ids
        image, again, meta = load_correction(tmp_path / "back", back[f"{record}.png"])
        assert np.array_equal(again, labels) and meta["model"] == "import:cihp"
        assert np.array_equal(image, load_correction(root, record)[0])
        assert np.array_equal(load_persons(tmp_path / "back", back[f"{record}.png"]), ids)


def write_png(path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def test_cihp_dataset_folder_imports_by_cihps_names_and_reports_unknown_ids(tmp_path):
    """CIHP as distributed: splits, JPEG photos, no labels.txt, Instance_ids and colour folders beside."""
    top = tmp_path / "instance-level_human_parsing"
    labels, persons = people()
    photo = np.random.default_rng(3).integers(0, 255, (*labels.shape, 3), dtype=np.uint8)
    for split, stem in (("Training", "0000006"), ("Validation", "0000001")):
        (top / split / "Images").mkdir(parents=True)
        Image.fromarray(photo).save(top / split / "Images" / f"{stem}.jpg")
        write_png(top / split / "Category_ids" / f"{stem}.png", labels)
        write_png(top / split / "Instance_ids" / f"{stem}.png", part_instances(labels, persons))
        write_png(top / split / "Categories" / f"{stem}.png", LIP.colourise(labels))
    write_png(top / "Training" / "Human_ids" / "0000006.png", persons)  # the other image has none
    report = import_corrections(top, "cihp", tmp_path / "back")
    back = {load_correction(tmp_path / "back", i)[2]["source_name"]: i for i in report["imported"]}
    assert sorted(back) == ["0000001.jpg", "0000006.jpg"]
    for record in back.values():
        assert np.array_equal(load_correction(tmp_path / "back", record)[1], labels)
    assert np.array_equal(load_persons(tmp_path / "back", back["0000006.jpg"]), persons)
    assert load_persons(tmp_path / "back", back["0000001.jpg"]) is None

    odd = labels.copy()
    odd[0, :3] = 37
    write_png(top / "Training" / "Category_ids" / "0000006.png", odd)
    with pytest.raises(InteropError, match=r"labels not in lip-20: 'category id 37' \(1 region\)"):
        import_corrections(top, "cihp", tmp_path / "refused")
    assert not (tmp_path / "refused").exists() or not list((tmp_path / "refused").rglob("*.png"))
    report = import_corrections(top, "cihp", tmp_path / "kept", keep_unknown=True)
    assert report["unknown"] == {"category id 37": 1}
    write_png(top / "Training" / "Human_ids" / "0000006.png", persons[:-1])
    with pytest.raises(InteropError, match="Human_ids/0000006.png is 40x29 but"):
        import_corrections(top, "cihp", tmp_path / "other")
    write_png(top / "Training" / "Category_ids" / "0000006.png", LIP.colourise(labels))
    with pytest.raises(InteropError, match="is a RGB image, not 8-bit ids"):
        import_corrections(top, "cihp", tmp_path / "other")


def test_cihp_label_10_is_torso_skin_unknown_to_lip_20_and_kept_in_cihp_20(tmp_path):
    """CIHP's id 10 is torso-skin (LIP's jumpsuits): a LIP-20 store has no such label."""
    top = tmp_path / "instance-level_human_parsing"
    labels, persons = people()
    labels[24:28, 4:12] = 10  # bare skin of the torso
    (top / "Validation" / "Images").mkdir(parents=True)
    Image.fromarray(np.full((*labels.shape, 3), 128, np.uint8)).save(top / "Validation" / "Images" / "0000002.jpg")
    write_png(top / "Validation" / "Category_ids" / "0000002.png", labels)
    write_png(top / "Validation" / "Human_ids" / "0000002.png", persons)
    with pytest.raises(InteropError, match=r"labels not in lip-20: 'torso-skin' \(1 region\)"):
        import_corrections(top, "cihp", tmp_path / "refused")
    report = import_corrections(top, "cihp", tmp_path / "lip", keep_unknown=True)
    assert report["unknown"] == {"torso-skin": 1}
    lip_labels = load_correction(tmp_path / "lip", report["imported"][0])[1]
    assert np.array_equal(lip_labels, np.where(labels == 10, IGNORE_INDEX, labels))
    report = import_corrections(top, "cihp", tmp_path / "cihp", label_set="cihp-20")
    assert report["unknown"] == {} and report["label_set"] == "cihp-20"
    assert np.array_equal(load_correction(tmp_path / "cihp", report["imported"][0])[1], labels)


def test_label_studio_regions_are_one_per_person_per_label_and_come_back(store, tmp_path):
    brush = pytest.importorskip("label_studio_converter.brush")
    root, old, with_persons = store
    out, _ = export_corrections(root, "labelstudio", tmp_path / "ls" / "tasks.json", ids=[with_persons, old])
    tasks = json.loads(out.read_text())
    labels, persons = people()
    first, second = tasks
    assert first["data"]["persons"] is True and "persons" not in second["data"]
    seen = []
    for result in first["annotations"][0]["result"]:
        # Decoded by the converter: RGBA, the mask in every channel.
        mask = brush.decode_rle(result["value"]["rle"]).reshape(*labels.shape, 4)[..., 3] == 255
        (name,) = result["value"]["brushlabels"]
        person = result.get("meta", {}).get("person")
        expected = labels == LIP.id_of(name)
        if person is not None:
            assert result["meta"]["text"] == [f"person {person}"]
            expected &= persons == person
        assert np.array_equal(mask, expected)
        seen.append((name, person))
    assert sorted(seen, key=str) == sorted(
        [("background", None)] + [(n, p) for n in ("hair", "face", "coat") for p in (1, 3)], key=str
    )
    assert all("meta" not in r for r in second["annotations"][0]["result"])  # no person ids: one region per label

    report = import_corrections(out, "labelstudio", tmp_path / "back")
    back = {load_correction(tmp_path / "back", i)[2]["source_name"]: i for i in report["imported"]}
    again = back[f"{with_persons}.png"]
    assert np.array_equal(load_correction(tmp_path / "back", again)[1], labels)
    assert np.array_equal(load_persons(tmp_path / "back", again), persons)
    assert load_persons(tmp_path / "back", back[f"{old}.png"]) is None

    # As Label Studio may keep it: the person in the meta text only; a region without one gets ids again.
    for result in first["annotations"][0]["result"]:
        if "meta" in result:
            del result["meta"]["person"]
    plain = first["annotations"][0]["result"][-1]
    del plain["meta"]
    out.write_text(json.dumps([first]))
    (record,) = import_corrections(out, "labelstudio", tmp_path / "edited")["imported"]
    again = load_persons(tmp_path / "edited", record)
    missed = brush_rle.decode(plain["value"]["rle"], *labels.shape)
    assert np.array_equal(again[~missed], persons[~missed]) and (again[missed] > 0).all()
    plain["meta"] = {"person": "three"}
    out.write_text(json.dumps([first]))
    with pytest.raises(InteropError, match="person 'three' is not a whole number 0-255"):
        import_corrections(out, "labelstudio", tmp_path / "bad")
