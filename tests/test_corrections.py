"""The corrections store: exact round trips, validation, atomic and concurrent writes, export."""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import re
import threading
import zipfile
from datetime import datetime, timezone

import numpy as np
import pytest
from PIL import Image

from ssfnet.data import CorrectionsDataset, export_zip, list_corrections, load_correction, save_correction
from ssfnet.data import corrections as corrections_module
from ssfnet.labels import ATR_18, FASHION_17, IGNORE_INDEX, LIP_20

ID_PATTERN = re.compile(r"^[0-9a-f]{12}-\d{8}T\d{12}Z(-[0-9a-f]{6})?$")


def _sample(h: int = 24, w: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    labels = rng.integers(0, LIP_20.num_ids, (h, w), dtype=np.uint8)
    labels[0, : LIP_20.num_ids - 20] = range(20, LIP_20.num_ids)  # every coarse LIP-20 value
    labels[-1, -1] = IGNORE_INDEX
    return image, labels


def _all_files(root) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_round_trip_is_exact(tmp_path):
    image, labels = _sample()
    record_id = save_correction(
        tmp_path,
        image,
        labels,
        "lip-20",
        model="ssfnet-r101@ckpt-3",
        edited_pixels=42,
        source_name="holiday.png",
        extra={"tool": "brush", "strokes": 3},
    )
    assert ID_PATTERN.match(record_id)
    stored_image = (tmp_path / "images" / f"{record_id}.png").read_bytes()
    assert record_id.startswith(hashlib.sha256(stored_image).hexdigest()[:12])

    loaded_image, loaded_labels, meta = load_correction(tmp_path, record_id)
    np.testing.assert_array_equal(loaded_image, image)
    np.testing.assert_array_equal(loaded_labels, labels)
    assert loaded_labels.dtype == np.uint8
    assert meta["id"] == record_id
    assert meta["label_set"] == "lip-20"
    assert meta["image_sha256"] == hashlib.sha256(stored_image).hexdigest()
    assert meta["model"] == "ssfnet-r101@ckpt-3"
    assert meta["edited_pixels"] == 42
    assert meta["image_size"] == {"width": 16, "height": 24}
    assert meta["source_name"] == "holiday.png"
    assert meta["parent"] is None
    assert meta["extra"] == {"tool": "brush", "strokes": 3}
    assert datetime.fromisoformat(meta["created"]).tzinfo is not None

    with Image.open(tmp_path / "labels" / f"{record_id}.png") as png:
        assert png.mode == "P"
        assert png.getpalette()[: 3 * LIP_20.num_ids] == LIP_20.palette_bytes()[: 3 * LIP_20.num_ids]
    assert _all_files(tmp_path) == [f"images/{record_id}.png", f"labels/{record_id}.png", f"meta/{record_id}.json"]


def test_original_bytes_are_stored_verbatim(tmp_path):
    image, labels = _sample(seed=1)
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=80)
    upload = buffer.getvalue()
    record_id = save_correction(tmp_path, image, labels, LIP_20, image_bytes=upload, image_ext="jpg")
    assert (tmp_path / "images" / f"{record_id}.jpg").read_bytes() == upload
    assert record_id.startswith(hashlib.sha256(upload).hexdigest()[:12])
    loaded_image, loaded_labels, meta = load_correction(tmp_path, record_id)
    assert loaded_image.shape == image.shape and meta["image_ext"] == "jpg"
    np.testing.assert_array_equal(loaded_labels, labels)
    with pytest.raises(ValueError, match="decode to 8x8"):
        small = io.BytesIO()
        Image.fromarray(image[:8, :8]).save(small, format="PNG")
        save_correction(tmp_path, image, labels, LIP_20, image_bytes=small.getvalue())


def test_exif_rotated_upload_is_loaded_as_displayed(tmp_path):
    # Stored 16 wide x 8 high, EXIF orientation 6 (rotate 90): shown 8 wide x 16 high.
    stored = np.zeros((8, 16, 3), np.uint8)
    stored[:, :4] = 255
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    Image.fromarray(stored).save(buffer, format="JPEG", exif=exif.tobytes(), quality=95)
    shown = np.ascontiguousarray(np.rot90(stored, k=-1))
    labels = np.zeros((16, 8), np.uint8)
    record_id = save_correction(tmp_path, shown, labels, LIP_20, image_bytes=buffer.getvalue(), image_ext="jpg")
    image, _, _ = load_correction(tmp_path, record_id)
    assert image.shape == (16, 8, 3)
    assert image[:4].mean() > 200 and image[-4:].mean() < 50


@pytest.mark.parametrize(
    "labels, message",
    [
        (np.full((24, 16), LIP_20.num_ids, np.uint8), rf"values \[{LIP_20.num_ids}\] outside lip-20"),
        (np.full((24, 16), 200, np.uint8), "outside lip-20"),
        (np.zeros((24, 15), np.uint8), "labels are 15x24 but the image is 16x24"),
        (np.zeros((24, 16), np.int64), "uint8"),
        (np.zeros((24, 16, 1), np.uint8), "H x W uint8"),
    ],
)
def test_invalid_labels_are_rejected_and_nothing_written(tmp_path, labels, message):
    image, _ = _sample()
    with pytest.raises(ValueError, match=message):
        save_correction(tmp_path / "store", image, labels, "lip-20")
    assert not (tmp_path / "store").exists()


def test_invalid_image_ext_and_extra_write_nothing(tmp_path):
    image, labels = _sample()
    with pytest.raises(ValueError, match="image_ext"):
        save_correction(tmp_path, image, labels, "lip-20", image_ext="../x")
    with pytest.raises(ValueError, match="JSON"):
        save_correction(tmp_path, image, labels, "lip-20", extra={"bad": object()})
    assert _all_files(tmp_path) == []


def test_same_image_same_instant_gets_new_id_never_overwrites(tmp_path, monkeypatch):
    frozen = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=timezone.utc)

    class FrozenClock(datetime):
        @classmethod
        def now(cls, tz=None):
            return frozen

    monkeypatch.setattr(corrections_module, "datetime", FrozenClock)
    image, labels = _sample()
    first = save_correction(tmp_path, image, labels, "lip-20")
    second = save_correction(tmp_path, image, np.zeros_like(labels), "lip-20")
    assert first.endswith("-20240506T070809123456Z")
    assert second.startswith(first + "-") and ID_PATTERN.match(second)
    np.testing.assert_array_equal(load_correction(tmp_path, first)[1], labels)
    assert (load_correction(tmp_path, second)[1] == 0).all()


def test_reopen_and_save_creates_child_record(tmp_path):
    image, labels = _sample()
    parent = save_correction(tmp_path, image, labels, "lip-20")
    reopened_image, reopened_labels, _ = load_correction(tmp_path, parent)
    reopened_labels[:4] = 2
    child = save_correction(tmp_path, reopened_image, reopened_labels, "lip-20", parent=parent)
    assert child != parent
    assert load_correction(tmp_path, child)[2]["parent"] == parent
    np.testing.assert_array_equal(load_correction(tmp_path, parent)[1], labels)
    assert [m["id"] for m in list_corrections(tmp_path)] == [child, parent]
    with pytest.raises(ValueError, match="invalid correction id"):
        save_correction(tmp_path, image, labels, "lip-20", parent="../../etc")


def test_list_corrections_skips_incomplete_and_unreadable_records(tmp_path):
    assert list_corrections(tmp_path / "missing") == []
    image, labels = _sample()
    ids = [save_correction(tmp_path, image, labels, "lip-20", model=f"m{i}") for i in range(3)]
    (tmp_path / "meta" / "garbage-1.json").write_text("{not json")
    (tmp_path / "meta" / "array-1.json").write_text("[1, 2]")
    (tmp_path / "meta" / "nolabel-1.json").write_text(json.dumps({"label_set": "lip-20", "image_ext": "png"}))
    (tmp_path / "images" / "nolabel-1.png").write_bytes((tmp_path / "images" / f"{ids[0]}.png").read_bytes())
    (tmp_path / "meta" / ".inflight.json.tmp").write_text("{}")
    listed = list_corrections(tmp_path)
    assert [m["id"] for m in listed] == ids[::-1]
    assert [m["model"] for m in listed] == ["m2", "m1", "m0"]
    with pytest.raises(FileNotFoundError, match="nolabel-1"):
        load_correction(tmp_path, "nolabel-1")
    with pytest.raises(FileNotFoundError, match="no correction"):
        load_correction(tmp_path, "absent-1")


def test_load_correction_rejects_mismatched_label_size(tmp_path):
    image, labels = _sample()
    record_id = save_correction(tmp_path, image, labels, "lip-20")
    Image.fromarray(labels[:10]).save(tmp_path / "labels" / f"{record_id}.png")
    with pytest.raises(ValueError, match="label map is 16x10 but image"):
        load_correction(tmp_path, record_id)


def test_concurrent_saves_all_land_with_distinct_ids(tmp_path):
    image, labels = _sample()
    ids: list[str] = []
    errors: list[BaseException] = []
    start = threading.Barrier(16)

    def worker(k: int) -> None:
        start.wait()
        try:
            ids.append(save_correction(tmp_path, image, labels, "lip-20", edited_pixels=k))
        except BaseException as err:  # collected and asserted below, so no failure is lost in a thread
            errors.append(err)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(set(ids)) == 16
    listed = list_corrections(tmp_path)
    assert sorted(m["id"] for m in listed) == sorted(ids)
    assert sorted(m["edited_pixels"] for m in listed) == list(range(16))
    for record_id in ids:
        np.testing.assert_array_equal(load_correction(tmp_path, record_id)[1], labels)
    assert not [p for p in tmp_path.rglob(".*") if p.is_file()]


def test_failed_write_removes_partial_files(tmp_path, monkeypatch):
    image, labels = _sample()
    keep = save_correction(tmp_path, image, labels, "lip-20")
    real_replace = os.replace

    def disk_full(src, dst):
        if str(dst).endswith(".json"):
            raise OSError(errno.ENOSPC, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(corrections_module.os, "replace", disk_full)
    with pytest.raises(OSError, match="could not save correction .* No space left") as caught:
        save_correction(tmp_path, image, labels, "lip-20")
    assert caught.value.errno == errno.ENOSPC
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("")
    with pytest.raises(OSError, match="could not prepare"):
        save_correction(blocked, image, labels, "lip-20")
    assert _all_files(tmp_path) == [
        f"images/{keep}.png",
        f"labels/{keep}.png",
        f"meta/{keep}.json",
        "not-a-folder",
    ]


def test_export_zip_holds_complete_records(tmp_path):
    store = tmp_path / "store"
    image, labels = _sample()
    ids = [save_correction(store, image, labels, "lip-20") for _ in range(2)]
    (store / "labels" / "orphan-1.png").write_bytes(b"partial")
    dest = export_zip(store, tmp_path / "out" / "corrections.zip")
    with zipfile.ZipFile(dest) as archive:
        names = sorted(archive.namelist())
        expected = sorted(
            f"{d}/{i}.{e}" for i in ids for d, e in (("images", "png"), ("labels", "png"), ("meta", "json"))
        )
        extras = ["README.txt", "id.txt", "label_sets.json", "list.txt"]
        assert names == sorted(expected + extras)
        assert archive.read(f"labels/{ids[0]}.png") == (store / "labels" / f"{ids[0]}.png").read_bytes()
        # Names and palette, and LIP-style list files, for other tools.
        lip = json.loads(archive.read("label_sets.json"))["lip-20"]["labels"]
        assert lip[2] == {"id": 2, "name": "hair", "rgb": list(LIP_20.palette[2])}
        assert sorted(archive.read("id.txt").decode().split()) == sorted(ids)
        assert f"images/{ids[0]}.png labels/{ids[0]}.png" in archive.read("list.txt").decode().splitlines()
    assert sorted(p.name for p in dest.parent.iterdir()) == ["corrections.zip"]


def test_list_files_leave_out_superseded_records_and_trash_is_recoverable(tmp_path):
    store = tmp_path / "store"
    image, labels = _sample()
    first = save_correction(store, image, labels, "lip-20")
    second = save_correction(store, image, labels, "lip-20", parent=first)
    assert corrections_module.latest_ids(list_corrections(store)) == [second]
    with zipfile.ZipFile(export_zip(store, tmp_path / "c.zip")) as archive:
        assert archive.read("id.txt").decode().split() == [second]
    trash = corrections_module.trash_correction(store, second)
    assert [m["id"] for m in list_corrections(store)] == [first]
    for folder in ("images", "labels", "meta"):  # moving the files back restores the record
        for path in (trash / folder).iterdir():
            path.rename(store / folder / path.name)
    assert {m["id"] for m in list_corrections(store)} == {first, second}
    with pytest.raises(FileNotFoundError):
        corrections_module.trash_correction(store, "no-such-id")


def test_corrections_dataset_converts_and_keeps_latest(tmp_path):
    image, labels = _sample()
    old = save_correction(tmp_path, image, labels, "lip-20")
    new = save_correction(tmp_path, image, labels, "lip-20", parent=old)
    other = save_correction(tmp_path, image[:8, :8], labels[:8, :8], "lip-20")

    ds = CorrectionsDataset(tmp_path)
    assert ds.ids == sorted([new, other]) and ds.label_set is LIP_20
    loaded_image, loaded_labels = ds.load(ds.ids.index(new))
    np.testing.assert_array_equal(loaded_labels, labels)
    np.testing.assert_array_equal(loaded_image, image)
    assert len(CorrectionsDataset(tmp_path, latest_only=False)) == 3

    fashion = CorrectionsDataset(tmp_path, label_set="fashion-17", ids=[new])
    _, converted = fashion.load(0)
    skin = np.isin(labels, [13, 14, 15, 16, 17, 20, 22, 23])
    assert (converted[skin] == FASHION_17.id_of("skin")).all()
    assert (converted[labels == IGNORE_INDEX] == IGNORE_INDEX).all()
    assert set(np.unique(converted).tolist()) <= set(range(FASHION_17.num_classes)) | {IGNORE_INDEX}

    save_correction(tmp_path, image, np.zeros_like(labels), ATR_18)
    with pytest.raises(ValueError, match="atr-18 cannot be converted to lip-20"):
        CorrectionsDataset(tmp_path)
    with pytest.raises(FileNotFoundError, match="meta"):
        CorrectionsDataset(tmp_path / "images")
