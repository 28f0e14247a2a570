"""Saving sessions as corrections: exact labels, full resolution, atomic, unique, validated, thread-safe."""

from __future__ import annotations

import io
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from demo.editing import resize_labels, working_size
from demo.session import Session, open_correction, read_upload
from ssfnet.data import corrections
from ssfnet.data.corrections import list_corrections, load_correction
from ssfnet.labels import IGNORE_INDEX, get_label_set

LIP = get_label_set("lip-20")
ASSETS = Path(__file__).resolve().parents[1] / "assets" / "examples"


def photo(tmp_path: Path, size=(48, 64), fmt="PNG", mode="RGB", name="photo.png", **save) -> Path:
    """A small synthetic photo file: a smooth gradient, so JPEG and resizing behave like on photos."""
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    rgb = np.stack([xx * 255 // max(1, w - 1), yy * 255 // max(1, h - 1), (xx + yy) % 256], -1).astype(np.uint8)
    path = tmp_path / name
    Image.fromarray(rgb).convert(mode).save(path, format=fmt, **save)
    return path


def labels_for(shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    """Blocky labels using classes, coarse labels and ignore."""
    rng = np.random.default_rng(seed)
    values = np.array([0, 2, 5, LIP.id_of("skin"), LIP.id_of("shoes"), IGNORE_INDEX], np.uint8)
    blocks = rng.choice(values, size=(shape[0] // 8 + 1, shape[1] // 8 + 1))
    return np.kron(blocks, np.ones((8, 8), np.uint8))[: shape[0], : shape[1]]


def session_from(path: Path, max_side: int = 1600, seed: int = 0) -> Session:
    full, source = read_upload(path)
    size = working_size(*full.shape[:2], max_side)
    session = Session.start(full, source, np.zeros(size, np.uint8), LIP, model="tiny", details={"flip": False})
    session.edit(labels_for(size, seed), "test labels")
    return session


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def test_save_writes_the_uploaded_bytes_exact_labels_and_metadata(tmp_path):
    upload = ASSETS / "ccp_0046.jpg"
    session = session_from(upload)
    record = session.save(tmp_path / "corr")
    image, labels, meta = load_correction(tmp_path / "corr", record)
    np.testing.assert_array_equal(labels, session.labels)
    np.testing.assert_array_equal(image, session.image)
    assert (tmp_path / "corr" / "images" / f"{record}.jpg").read_bytes() == upload.read_bytes()
    assert meta["model"] == "tiny" and meta["source_name"] == "ccp_0046.jpg" and meta["parent"] is None
    assert meta["edited_pixels"] == session.changed_pixels > 0
    assert meta["extra"]["labels_upscaled"] is False and meta["extra"]["flip"] is False
    assert session.parent == record and not session.unsaved


def test_large_images_are_edited_small_and_saved_at_full_resolution(tmp_path):
    upload = photo(tmp_path, size=(1000, 500))
    session = session_from(upload, max_side=400)
    assert session.image.shape[:2] == (200, 400) and session.downscaled
    record = session.save(tmp_path / "corr")
    image, labels, meta = load_correction(tmp_path / "corr", record)
    assert image.shape[:2] == labels.shape == (500, 1000)
    assert set(np.unique(labels)) == set(np.unique(session.labels))
    np.testing.assert_array_equal(resize_labels(labels, (200, 400)), session.labels)
    assert meta["extra"]["working_size"] == [200, 400] and meta["extra"]["labels_upscaled"] is True
    assert (tmp_path / "corr" / "images" / f"{record}.png").read_bytes() == upload.read_bytes()

    again = open_correction(tmp_path / "corr", record, max_side=400)
    np.testing.assert_array_equal(again.labels, session.labels)
    assert not again.unsaved and again.parent == record
    edited = again.labels.copy()
    edited[:10] = LIP.id_of("hair")
    again.edit(edited)
    child = again.save(tmp_path / "corr")
    assert load_correction(tmp_path / "corr", child)[2]["parent"] == record
    assert {m["id"] for m in list_corrections(tmp_path / "corr")} == {record, child}


@pytest.mark.parametrize(
    ("mode", "fmt", "kept"),
    [("RGB", "JPEG", True), ("L", "PNG", True), ("RGBA", "PNG", False), ("CMYK", "JPEG", False)],
)
def test_uploaded_bytes_are_kept_only_where_loaders_agree_on_the_pixels(tmp_path, mode, fmt, kept):
    upload = photo(tmp_path, mode=mode, fmt=fmt, name=f"p.{fmt.lower()}")
    session = session_from(upload)
    record = session.save(tmp_path / "corr")
    meta = load_correction(tmp_path / "corr", record)[2]
    stored = tmp_path / "corr" / "images" / f"{record}.{meta['image_ext']}"
    assert (stored.read_bytes() == upload.read_bytes()) is kept
    image, labels, _ = load_correction(tmp_path / "corr", record)
    np.testing.assert_array_equal(image, session.image)
    np.testing.assert_array_equal(labels, session.labels)


def test_exif_rotated_upload_is_saved_upright(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    upload = photo(tmp_path, size=(64, 40), fmt="JPEG", name="rotated.jpg", exif=exif)
    session = session_from(upload)
    assert session.image.shape[:2] == (64, 40)
    assert any("EXIF" in note for note in session.source.notes)
    image, labels, _ = load_correction(tmp_path / "c", session.save(tmp_path / "c"))
    assert image.shape[:2] == labels.shape == (64, 40)
    np.testing.assert_array_equal(labels, session.labels)


def test_invalid_labels_are_refused_and_nothing_is_written(tmp_path):
    session = session_from(photo(tmp_path))
    session.labels = session.labels.copy()
    session.labels[0, 0] = LIP.num_ids  # not a class, coarse label or ignore
    with pytest.raises(ValueError, match="outside"):
        session.save(tmp_path / "corr")
    assert files_under(tmp_path / "corr") == []
    assert session.parent is None and session.unsaved


def test_a_failed_write_leaves_no_record_and_no_debris(tmp_path, monkeypatch):
    session = session_from(photo(tmp_path))
    real_replace = corrections.os.replace

    def fail_on_meta(src, dst):
        if str(dst).endswith(".json"):
            raise OSError(28, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(corrections.os, "replace", fail_on_meta)
    with pytest.raises(OSError, match="No space left"):
        session.save(tmp_path / "corr")
    assert files_under(tmp_path / "corr") == [] and list_corrections(tmp_path / "corr") == []
    monkeypatch.setattr(corrections.os, "replace", real_replace)
    assert session.unsaved
    record = session.save(tmp_path / "corr")
    assert [m["id"] for m in list_corrections(tmp_path / "corr")] == [record]


def test_saving_the_same_labels_twice_gives_two_records_never_overwriting(tmp_path):
    session = session_from(photo(tmp_path))
    first = session.save(tmp_path / "corr")
    before = {p: p.read_bytes() for p in files_under(tmp_path / "corr")}
    session.saved_digest = None  # force a second save of identical content
    second = session.save(tmp_path / "corr")
    assert first != second
    assert all(p.read_bytes() == data for p, data in before.items())
    assert load_correction(tmp_path / "corr", second)[2]["parent"] == first


def test_concurrent_saves_from_threads_lose_nothing(tmp_path):
    root = tmp_path / "corr"
    sessions = [session_from(photo(tmp_path, name=f"p{i}.png"), seed=i) for i in range(4)]
    results: dict[tuple[int, int], str] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def worker(thread: int) -> None:
        try:
            barrier.wait()
            for round_ in range(4):
                # Each thread saves its own copies, so sessions are never shared between threads.
                base = sessions[(thread + round_) % len(sessions)]
                copy = Session.start(base.image, base.source, base.labels.copy(), LIP, model="tiny")
                results[(thread, round_)] = copy.save(root, accept_proposal=True)
        except BaseException as err:  # reported below; a thread's exception would otherwise vanish
            errors.append(err)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(set(results.values())) == 32
    assert {m["id"] for m in list_corrections(root)} == set(results.values())
    for (thread, round_), record in results.items():
        _, labels, _ = load_correction(root, record)
        np.testing.assert_array_equal(labels, sessions[(thread + round_) % len(sessions)].labels)
    assert not [p for p in files_under(root) if p.name.startswith(".")]


def test_reopening_a_label_map_of_the_wrong_size_fails_clearly(tmp_path):
    session = session_from(photo(tmp_path))
    record = session.save(tmp_path / "corr")
    label_path = tmp_path / "corr" / "labels" / f"{record}.png"
    buf = io.BytesIO()
    small = Image.fromarray(np.zeros((10, 10), np.uint8), mode="P")
    small.putpalette(LIP.palette_bytes())
    small.save(buf, format="PNG")
    label_path.write_bytes(buf.getvalue())
    with pytest.raises(ValueError, match="10x10"):
        open_correction(tmp_path / "corr", record, max_side=1600)
    with pytest.raises(FileNotFoundError):
        open_correction(tmp_path / "corr", "no-such-record", max_side=1600)
