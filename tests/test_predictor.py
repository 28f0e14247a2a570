"""Predictor and the command-line tool, on a real CCP photo where the data is present."""

import numpy as np
import pytest
import torch
from helpers import TINY
from PIL import Image

from ssfnet import build_model, load_predictor, save_checkpoint
from ssfnet.io import ImageError, overlay, read_image
from ssfnet.predict import main as predict_main
from ssfnet.predictor import Predictor


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = build_model("ssfnet_lite", 20, **TINY)
    path = tmp_path_factory.mktemp("ck") / "tiny"
    return save_checkpoint(model, path, variant="ssfnet_lite", label_set="lip-20", options=TINY)


@pytest.fixture(scope="module")
def ccp_photo(datasets_root):
    path = datasets_root / "ccp" / "photos" / "0002.jpg"
    if not path.exists():
        pytest.skip(f"CCP photos not found at {path.parent} (set SSFNET_DATASETS)")
    return path


def test_predict_real_photo(checkpoint, ccp_photo):
    predictor = load_predictor(checkpoint, device="cpu")
    image = read_image(ccp_photo)
    labels = predictor.predict(image)
    assert labels.shape == image.shape[:2] and labels.dtype == np.uint8
    assert labels.max() < 20
    ms = predictor.predict(image, multiscale=True)
    assert ms.shape == labels.shape
    proba = predictor.predict_proba(image)
    np.testing.assert_allclose(proba.sum(0), 1, atol=1e-4)


def test_batch_matches_single(checkpoint):
    predictor = load_predictor(checkpoint, device="cpu")
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (60, 40, 3), dtype=np.uint8), rng.integers(0, 256, (30, 90, 3), dtype=np.uint8)]
    batch = predictor.predict_batch(images)
    assert [b.shape for b in batch] == [(60, 40), (30, 90)]
    for image, labels in zip(images + images[:1], predictor.predict_batch(images + images[:1])):
        np.testing.assert_array_equal(labels, predictor.predict(image))


def test_flip_test_is_mirror_symmetric():
    torch.manual_seed(0)
    model = build_model("ssfnet_lite", 20, **TINY)
    # input_size = image size: no resampling, whose rounding is not mirror-exact.
    predictor = Predictor(model, "lip-20", device="cpu", input_size=48)
    image = np.random.default_rng(1).integers(0, 256, (48, 48, 3), dtype=np.uint8)
    a = predictor.predict_proba(image, flip=True)
    b = predictor.predict_proba(image[:, ::-1].copy(), flip=True)
    # Mirroring the input mirrors the output and swaps left/right classes.
    perm = predictor.label_set.flip_lut[:20]
    np.testing.assert_allclose(a, b[perm][:, :, ::-1], atol=1e-5)


def test_odd_inputs(checkpoint):
    predictor = load_predictor(checkpoint, device="cpu")
    assert predictor.predict(np.zeros((1, 1, 3), np.uint8)).shape == (1, 1)
    assert predictor.predict(np.zeros((5, 7), np.uint8)).shape == (5, 7)
    assert predictor.predict(np.zeros((9, 4, 4), np.uint8)).shape == (9, 4)
    big = predictor.predict(np.zeros((2100, 300, 3), np.uint8))
    assert big.shape == (2100, 300)
    with pytest.raises(ValueError):
        predictor.predict(np.zeros((5, 5, 3), np.float32))


def test_missing_checkpoint_message(tmp_path, monkeypatch):
    monkeypatch.delenv("SSFNET_CHECKPOINT", raising=False)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_predictor(tmp_path / "nope")


def test_read_image_modes(tmp_path):
    rgba = Image.new("RGBA", (4, 3), (255, 0, 0, 0))
    rgba.save(tmp_path / "a.png")
    assert tuple(read_image(tmp_path / "a.png")[0, 0]) == (255, 255, 255)  # transparent -> white
    Image.new("CMYK", (4, 3), (0, 255, 0, 0)).save(tmp_path / "c.jpg")
    assert read_image(tmp_path / "c.jpg").shape == (3, 4, 3)
    Image.fromarray(np.full((3, 4), 65535, np.uint16)).save(tmp_path / "d.png")
    assert read_image(tmp_path / "d.png").max() == 255
    img = Image.new("RGB", (4, 2), (0, 0, 255))
    exif = img.getexif()
    exif[0x0112] = 6  # rotated 90 degrees
    img.save(tmp_path / "r.jpg", exif=exif)
    assert read_image(tmp_path / "r.jpg").shape == (4, 2, 3)
    (tmp_path / "x.jpg").write_bytes(b"not an image at all")
    with pytest.raises(ImageError, match="not an image"):
        read_image(tmp_path / "x.jpg")
    data = (tmp_path / "a.png").read_bytes()
    with pytest.raises(ImageError):
        read_image(data[:40])
    Image.new("L", (100, 100)).save(tmp_path / "big.png")
    with pytest.raises(ImageError, match="limit"):
        read_image(tmp_path / "big.png", max_pixels=5000)


def test_overlay_hides_classes():
    image = np.full((2, 2, 3), 100, np.uint8)
    labels = np.array([[0, 2], [5, 2]], np.uint8)
    from ssfnet.labels import LIP_20

    out = overlay(image, labels, LIP_20, alpha=1.0, hidden={0, 5})
    assert tuple(out[0, 0]) == (100, 100, 100) and tuple(out[1, 0]) == (100, 100, 100)
    assert tuple(out[0, 1]) == LIP_20.palette[2]


def test_cli_writes_pngs(checkpoint, tmp_path):
    img_dir = tmp_path / "in"
    img_dir.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 30, 3), dtype=np.uint8)).save(img_dir / "p.jpg")
    (img_dir / "bad.png").write_bytes(b"garbage")
    code = predict_main([str(img_dir), "--out", str(tmp_path / "out"), "--checkpoint", str(checkpoint)])
    assert code == 1  # one unreadable file is reported, the rest is written
    label = Image.open(tmp_path / "out" / "p.png")
    assert label.mode == "P" and label.size == (30, 40)
    assert (tmp_path / "out" / "p_overlay.png").exists()
    assert predict_main([str(img_dir), "--out", str(tmp_path / "o2"), "--checkpoint", str(tmp_path / "no")]) == 2


def _photo(path, seed: int = 0, size=(40, 30)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)).save(path)


def test_cli_never_writes_over_an_input_gives_every_image_its_output_and_reports_skips(checkpoint, tmp_path, capsys):
    folder = tmp_path / "photos"
    for seed, name in enumerate(["x.png", "a.jpg", "a.png", "person.jpg", "person.png", "sub/person.jpg"]):
        _photo(folder / name, seed)
    frames = [Image.fromarray(np.full((40, 30, 3), v, np.uint8)) for v in (0, 255)]
    frames[0].save(folder / "anim.gif", save_all=True, append_images=frames[1:])
    (folder / "y.heic").write_bytes(b"\0\0\0\x18ftypheic\0\0\0\0mif1heic" + bytes(64))
    (folder / "notes.txt").write_text("not a photo")
    before = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}

    # The output folder is the input folder: the worst case for overwriting.
    code = predict_main([str(folder), "--out", str(folder), "--checkpoint", str(checkpoint)])
    out, err = capsys.readouterr()
    assert code == 1
    assert all(path.read_bytes() == data for path, data in before.items())  # no input replaced
    written = {str(p.relative_to(folder)) for p in folder.rglob("*.png") if p not in before}
    assert written == {
        f"{name}{end}"
        for name in ("x-2", "a_jpg", "a_png", "person_jpg", "person_png", "sub/person", "anim")
        for end in (".png", "_overlay.png")
    }
    assert Image.open(folder / "a_png.png").mode == "P"
    assert "y.heic" in err and "HEIC" in err and "not supported" in err
    assert "notes.txt" in err and "not an image file" in err
    assert "anim.gif is animated (2 frames)" in out + err
    assert "parsed 7 of 9 files" in out and "2 skipped" in out


def test_missing_default_checkpoint_names_the_folders_there_are(tmp_path, monkeypatch):
    import ssfnet.predictor as predictor_module

    monkeypatch.delenv("SSFNET_CHECKPOINT", raising=False)
    monkeypatch.setattr(predictor_module, "DEFAULT_CHECKPOINT", tmp_path / "ssfnet_lite-lip20")
    (tmp_path / "notes").mkdir()
    with pytest.raises(FileNotFoundError, match="holds notes, but none is a checkpoint"):
        load_predictor()
    torch.manual_seed(0)
    model = build_model("ssfnet_lite", 20, **TINY)
    save_checkpoint(model, tmp_path / "mine", variant="ssfnet_lite", label_set="lip-20", options=TINY)
    with pytest.raises(FileNotFoundError) as err:
        load_predictor()
    message = str(err.value)
    assert "Checkpoint folders in" in message and "mine" in message
    assert f"--checkpoint {tmp_path / 'mine'}" in message and "SSFNET_CHECKPOINT" in message
    assert "add a checkpoint folder" not in message
