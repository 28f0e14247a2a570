"""int8 quantization: calibrated on training photos only, the held-out ids and validation folders never used."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers import TINY, write_viton

from ssfnet import build_model, save_checkpoint
from ssfnet.export import export_checkpoint
from ssfnet.onnx_predictor import OnnxPredictor
from train.quantize import held_out
from train.quantize import main as quantize_main
from train.score_onnx import main as score_main


@pytest.fixture(scope="module")
def fp32_model(tmp_path_factory):
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("q")
    model = build_model("ssfnet_lite", 20, **TINY)
    folder = save_checkpoint(
        model, root / "tiny", variant="ssfnet_lite", label_set="lip-20", options=TINY, metadata={"input_size": 48}
    )
    return export_checkpoint(folder, root / "tiny.onnx")


@pytest.fixture(scope="module")
def viton(tmp_path_factory):
    return write_viton(tmp_path_factory.mktemp("data") / "viton", n=16)


def test_int8_is_calibrated_on_training_photos_and_parses(fp32_model, viton, tmp_path, capsys):
    out = tmp_path / "tiny-int8.onnx"
    assert (
        quantize_main(["--model", str(fp32_model), "--out", str(out), "--data", f"viton:{viton}", "--count", "6"]) == 0
    )
    assert "wrote" in capsys.readouterr().out
    int8 = OnnxPredictor(out, threads=1)
    calibration = int8.onnx_metadata["calibration"]
    used = {entry.split(":", 1)[1] for entry in calibration["ids"]}
    assert len(used) == 6 and not used & held_out("viton")
    assert {"000008_0", "000011_0"} <= held_out("viton")  # the synthetic set has held-out ids to avoid
    assert int8.precision == "int8" and int8.label_set.name == "lip-20" and int8.input_size == 48
    labels = int8.predict(np.zeros((40, 30, 3), np.uint8), multiscale=True)
    assert labels.shape == (40, 30)


def test_validation_folders_are_refused(fp32_model, tmp_path, capsys):
    folder = write_viton(tmp_path / "lip-val74", n=2)
    argv = ["--model", str(fp32_model), "--out", str(tmp_path / "x.onnx"), "--data", f"viton:{folder}"]
    assert quantize_main(argv) == 2
    assert "validation photos only" in capsys.readouterr().err and not (tmp_path / "x.onnx").exists()


def test_score_onnx_compares_models_on_held_out_ids_and_applies_the_rule(fp32_model, viton, tmp_path):
    out = tmp_path / "score.md"
    argv = ["--model", str(fp32_model), "--model", str(fp32_model), "--data", f"viton:{viton}", "--threads", "1"]
    assert score_main([*argv, "--out", str(out)]) == 0
    record = json.loads(out.with_suffix(".json").read_text())
    first, second = record["results"]
    assert first["scores"]["viton"]["images"] == len(held_out("viton") & {f"{i:06d}_0" for i in range(16)})
    assert first["scores"]["viton"]["main"] == second["scores"]["viton"]["main"] and record["verdicts"][0]["passes"]
    assert "passes the rule" in out.read_text() and record["cpu"] in out.read_text()


def test_the_size_arithmetic_stays_float_so_int8_parses_any_size(viton, tmp_path):
    # EfficientNet-Lite0's "same" padding is computed from the input's shape in float: quantized with
    # the activations, ceil(80 / 2) came out 39 and the int8 model failed on every photo.
    torch.manual_seed(0)
    options = dict(TINY)
    model = build_model("ssfnet_lite0", 20, **options)
    meta = {"input_size": 64}
    folder = save_checkpoint(
        model, tmp_path / "lite0", variant="ssfnet_lite0", label_set="lip-20", options=options, metadata=meta
    )
    fp32 = export_checkpoint(folder, tmp_path / "lite0.onnx")
    argv = ["--model", str(fp32), "--out", str(tmp_path / "lite0-int8.onnx"), "--data", f"viton:{viton}"]
    assert quantize_main([*argv, "--count", "2"]) == 0
    int8 = OnnxPredictor(tmp_path / "lite0-int8.onnx", threads=1)
    for shape in [(64, 48), (61, 40), (40, 64)]:
        assert int8.predict(np.zeros((*shape, 3), np.uint8)).shape == shape
