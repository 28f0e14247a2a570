"""ONNX export and the onnxruntime backend: parity with the PyTorch model, metadata, no torch needed, errors.

The shipped checkpoints are exported once per session into a temporary folder and compared with
:class:`ssfnet.Predictor` in fp32 on real photos of several sizes; tiny random models cover the
rest (odd sizes, batches, a body-part head, the command lines).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import TINY
from PIL import Image

from ssfnet import build_model, save_checkpoint
from ssfnet.export import export_checkpoint
from ssfnet.export import main as export_main
from ssfnet.files import current_umask
from ssfnet.geometry import resize_image
from ssfnet.io import read_image
from ssfnet.onnx_predictor import OnnxModelError, OnnxPredictor
from ssfnet.predict import main as predict_main
from ssfnet.predictor import load_predictor

REPO = Path(__file__).resolve().parents[1]
SHIPPED = ["ssfnet_lite0-lip20", "ssfnet_lite0-pascal7"]
EXAMPLES = [REPO / "assets" / "examples" / name for name in ("ccp_0046.jpg", "ccp_0490.jpg")]
PASCAL_PHOTOS = ["2008_000008", "2008_000041"]


@pytest.fixture(scope="session")
def real_photos(datasets_root) -> list[np.ndarray]:
    """Photos of several sizes: the repository's examples, two PASCAL photos where the data is, and two odd sizes."""
    photos = [read_image(path) for path in EXAMPLES]
    pascal = datasets_root / "pascal-person-part" / "JPEGImages"
    if pascal.is_dir():
        photos += [read_image(pascal / f"{name}.jpg") for name in PASCAL_PHOTOS]
    photos += [resize_image(photos[0], (233, 157)), resize_image(photos[1], (97, 301))]
    return photos


@pytest.fixture(scope="session")
def exported(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("onnx")
    return {name: export_checkpoint(REPO / "checkpoints" / name, folder / f"{name}.onnx") for name in SHIPPED}


@pytest.mark.parametrize("name", SHIPPED)
def test_export_agrees_with_torch_on_real_photos(name, exported, real_photos):
    torch.set_num_threads(1)
    reference = load_predictor(REPO / "checkpoints" / name, device="cpu", precision="fp32")
    onnx = OnnxPredictor(exported[name], threads=1)
    assert onnx.input_size == reference.input_size and onnx.label_set is reference.label_set
    # Multi-scale + flip (six runs a parse) on two of the photos keeps the test quick.
    for multiscale, photos in [(False, real_photos), (True, real_photos[-3:-1])]:
        agree = total = 0
        for photo in photos:
            a = reference.predict(photo, multiscale=multiscale)
            b = onnx.predict(photo, multiscale=multiscale)
            assert b.shape == photo.shape[:2] and b.dtype == np.uint8
            assert (a == b).mean() >= 0.995, f"{name}, {photo.shape}, multiscale={multiscale}"
            agree, total = agree + int((a == b).sum()), total + a.size
        assert agree / total >= 0.995


def test_metadata_names_the_label_set_palette_size_and_checkpoint(exported):
    import onnx

    model = onnx.load(str(exported["ssfnet_lite0-lip20"]))
    meta = {p.key: p.value for p in model.metadata_props}
    shipped = json.loads((REPO / "checkpoints" / "ssfnet_lite0-lip20" / "metadata.json").read_text())
    assert meta["name"] == "ssfnet_lite0-lip20" and meta["label_set"] == "lip-20"
    assert json.loads(meta["input_size"]) == shipped["input_size"]
    names = json.loads(meta["label_names"])
    assert len(names) == 20 and names[0] == "background" and len(json.loads(meta["palette"])) == 20
    # A checkpoint with a body-part head exports it too (the predictor reads it when its gate is on).
    outputs = ["out", "parts"] if shipped["options"].get("part_classes") else ["out"]
    assert [i.name for i in model.graph.input] == ["images"] and [o.name for o in model.graph.output] == outputs
    dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 3, "height", "width"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model = build_model("ssfnet_lite", 20, **TINY)
    path = tmp_path_factory.mktemp("ck") / "tiny"
    return save_checkpoint(
        model, path, variant="ssfnet_lite", label_set="lip-20", options=TINY, metadata={"input_size": 48}
    )


@pytest.fixture(scope="module")
def tiny_onnx(tiny, tmp_path_factory) -> Path:
    return export_checkpoint(tiny, tmp_path_factory.mktemp("tiny-onnx") / "tiny.onnx")


def _images(seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    shapes = [(61, 40), (40, 61), (33, 33), (9, 70), (61, 40)]
    return [rng.integers(0, 256, (*shape, 3), dtype=np.uint8) for shape in shapes]


def _compare(reference, onnx, images):
    for multiscale in (False, True):
        for a, b in zip(
            reference.predict_batch(images, multiscale=multiscale), onnx.predict_batch(images, multiscale=multiscale)
        ):
            assert a.shape == b.shape and (a == b).mean() >= 0.99
        a = reference.predict_proba(images[0], multiscale=multiscale)
        b = onnx.predict_proba(images[0], multiscale=multiscale)
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, atol=1e-3)  # float32 sums in another order


def test_any_size_batches_multiscale_and_flip_match_torch(tiny, tiny_onnx):
    reference = load_predictor(tiny, device="cpu", precision="fp32")
    _compare(reference, OnnxPredictor(tiny_onnx, threads=1), _images())


def test_a_body_part_head_is_exported_and_steers_the_classes_as_in_torch(tmp_path):
    torch.manual_seed(1)
    options = {**TINY, "part_classes": 7}
    model = build_model("ssfnet_lite", 20, **options)
    # The release chose steering (part_gate in the metadata): both predictors follow it by default.
    meta = {"part_gate": True}
    folder = save_checkpoint(
        model, tmp_path / "parts", variant="ssfnet_lite", label_set="lip-20", options=options, metadata=meta
    )
    onnx = OnnxPredictor(export_checkpoint(folder, tmp_path / "parts.onnx"), threads=1)
    assert onnx.outputs == ["out", "parts"] and onnx._admits is not None
    _compare(load_predictor(folder, device="cpu", precision="fp32"), onnx, _images(1))
    assert OnnxPredictor(onnx.path, part_gate=False)._admits is None


def test_bad_images_get_the_same_messages_as_torch(tiny_onnx):
    onnx = OnnxPredictor(tiny_onnx)
    for bad, message in [
        (np.zeros((4, 4, 3), np.float32), "uint8"),
        (np.zeros((4, 4, 2), np.uint8), "RGB"),
        (np.zeros((0, 4, 3), np.uint8), "no pixels"),
    ]:
        with pytest.raises(ValueError, match=message):
            onnx.predict(bad)
    grey, rgba = np.full((20, 30), 128, np.uint8), np.full((20, 30, 4), 128, np.uint8)
    assert onnx.predict(grey).shape == onnx.predict(rgba).shape == (20, 30)


def test_runs_where_torch_cannot_be_imported(tiny_onnx, tmp_path):
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "torch.py").write_text("raise ImportError('torch is blocked in this test')\n")
    script = (
        "import sys, numpy as np\n"
        "from ssfnet import OnnxPredictor\n"
        f"p = OnnxPredictor({str(tiny_onnx)!r})\n"
        "labels = p.predict(np.zeros((50, 30, 3), np.uint8), multiscale=True)\n"
        "assert 'torch' not in sys.modules\n"
        "print('parsed', labels.shape, p.label_set.name)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(blocker), str(REPO)])}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "parsed (50, 30) lip-20" in done.stdout


def test_load_predictor_exports_a_checkpoint_once_and_reads_onnx_files(tiny, tiny_onnx, tmp_path, monkeypatch):
    monkeypatch.setenv("SSFNET_CACHE_DIR", str(tmp_path / "cache"))
    first = load_predictor(tiny, backend="onnxruntime")
    (cached,) = (tmp_path / "cache" / "onnx").glob("tiny-*.onnx")
    stamp = cached.stat().st_mtime_ns
    again = load_predictor(tiny, backend="onnxruntime", threads=1)
    assert again.path == first.path == cached and cached.stat().st_mtime_ns == stamp
    assert first.name == "tiny" and first.backend == "onnxruntime" and first.input_size == 48
    assert load_predictor(tiny_onnx, backend="onnxruntime").path == tiny_onnx
    with pytest.raises(ValueError, match="torch backend"):
        load_predictor(tiny, backend="onnxruntime", precision="bf16")
    with pytest.raises(ValueError, match="backend must be"):
        load_predictor(tiny, backend="tensorflow")
    with pytest.raises(FileNotFoundError):
        load_predictor(tmp_path / "none.onnx", backend="onnxruntime")


def test_an_onnx_file_from_elsewhere_is_refused_with_a_message(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["images"], ["out"])],
        "other",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1])],
    )
    onnx.save(helper.make_model(graph), tmp_path / "other.onnx")
    with pytest.raises(OnnxModelError, match="not an SSFNet ONNX model"):
        OnnxPredictor(tmp_path / "other.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(OnnxModelError, match="cannot be loaded"):
        OnnxPredictor(tmp_path / "junk.onnx")


def test_export_and_predict_command_lines(tiny, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SSFNET_CACHE_DIR", str(tmp_path / "cache"))
    assert export_main(["--checkpoint", str(tiny), "--out", str(tmp_path / "m.onnx")]) == 0
    assert "wrote" in capsys.readouterr().out and (tmp_path / "m.onnx").is_file()
    assert (tmp_path / "m.onnx").stat().st_mode & 0o777 == 0o666 & ~current_umask()  # readable as any file
    assert export_main(["--checkpoint", str(tmp_path / "missing"), "--out", str(tmp_path / "x.onnx")]) == 2
    assert "error:" in capsys.readouterr().err and not (tmp_path / "x.onnx").exists()
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(_images()[0]).save(photos / "a.png")
    for model, out in [(tmp_path / "m.onnx", "out1"), (tiny, "out2")]:
        argv = [str(photos), "--out", str(tmp_path / out), "--checkpoint", str(model), "--backend", "onnxruntime"]
        assert predict_main([*argv, "--threads", "1"]) == 0
        assert (tmp_path / out / "a.png").is_file() and (tmp_path / out / "a_overlay.png").is_file()
    assert predict_main([str(photos), "--out", str(tmp_path / "o3"), "--checkpoint", str(tiny), "--backend",
                         "onnxruntime", "--precision", "bf16"]) == 2  # fmt: skip
    assert "torch backend" in capsys.readouterr().err
